"""Per-org SSO settings (inventory `sfp_org.sso`) and the GoTrue environment they produce.

Inventory shape::

    sfp_org:
      sso:
        saml:
          - name: acme-okta
            metadata_url: https://acme.okta.com/app/xyz/sso/saml/metadata   # or metadata_file (outside what
                                                # Ansible parses as inventory: .sso-metadata/<org>/<name>.xml)
            metadata_cert: MIIC...             # optional: the metadata must be signed with this certificate
                                                # (base64 DER on one line; PEM accepted)
            domains: [acme.com]
            expected_entity_id: http://www.okta.com/xyz        # optional
            attribute_mapping: {keys: {email: {name: mail}}}   # optional, GoTrue's format
            name_id_format: urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress  # optional
        oidc:
          - name: corp-keycloak
            provider: keycloak          # a GoTrue built-in provider, or `custom`
            issuer: https://kc.acme.com/realms/acme
            client_id: supabase
            # client_secret comes from the vault, key SSO_CORP_KEYCLOAK_CLIENT_SECRET unless
            # client_secret_vault_key names another one
        saml_allow_encrypted_assertions: false      # optional
        saml_relay_state_validity_period: 2m        # optional, Go duration
        allow_hosts: [idp.internal.example]         # optional: may resolve to link-local addresses

Secrets never appear in the generated compose environment: it carries `${NAME}` references
and `gotrue_dotenv` returns the values for the org's .env file.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from installer.errors import ConfigError, Problem, SfpError
from installer.sso import _net, xmldsig
from installer.sso.sp import check_saml_private_key, service_provider_info

# GoTrue v2.196.0 internal/conf/configuration.go `ProviderConfiguration` (OAuthProviderConfiguration
# fields; env prefix GOTRUE_EXTERNAL_<NAME>_). Key = inventory name, value = env name part.
BUILTIN_PROVIDERS: dict[str, str] = {
    name: name.upper()
    for name in (
        "apple", "azure", "bitbucket", "discord", "facebook", "snapchat", "figma", "fly", "github",
        "gitlab", "google", "kakao", "notion", "keycloak", "linkedin", "linkedin_oidc", "spotify",
        "slack", "slack_oidc", "twitter", "twitch", "vercel_marketplace", "workos", "x", "zoom",
    )
}
# Built-ins whose GOTRUE_EXTERNAL_<NAME>_URL is required by GoTrue (keycloak: the realm URL).
URL_REQUIRED = frozenset({"keycloak"})
# Built-ins that are OpenID providers with a fixed issuer (used by `check` when none is configured).
KNOWN_ISSUERS: dict[str, str] = {
    "google": "https://accounts.google.com",
    "apple": "https://appleid.apple.com",
    "linkedin_oidc": "https://www.linkedin.com/oauth",
    "slack_oidc": "https://slack.com",
}

SAML_PRIVATE_KEY_VAULT_KEY = "SAML_PRIVATE_KEY"
NAME_ID_FORMATS = (
    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_SSO_VAULT_KEY = re.compile(r"^SSO_[A-Z0-9_]+\Z")
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


@dataclass(frozen=True)
class SamlProviderSettings:
    name: str
    domains: tuple[str, ...]
    metadata_url: str | None = None
    metadata_file: str | None = None
    expected_entity_id: str | None = None
    attribute_mapping: dict[str, Any] = field(default_factory=dict)
    name_id_format: str = ""
    metadata_cert: str | None = None  # base64 DER: the metadata must be signed with it (verified on every fetch)


@dataclass(frozen=True)
class OidcProviderSettings:
    name: str
    provider: str  # a BUILTIN_PROVIDERS key, or "custom"
    client_id: str
    issuer: str | None = None
    url: str | None = None  # GOTRUE_EXTERNAL_<NAME>_URL for built-ins (keycloak realm, self-hosted gitlab, ...)
    client_secret_vault_key: str = ""
    scopes: tuple[str, ...] = ()
    skip_nonce_check: bool = False
    email_optional: bool = False

    @property
    def is_custom(self) -> bool:
        return self.provider == "custom"

    @property
    def discovery_issuer(self) -> str | None:
        """The issuer `check` validates discovery for, when one is known."""
        if self.issuer:
            return self.issuer
        if self.provider == "keycloak":
            return self.url
        return KNOWN_ISSUERS.get(self.provider)


@dataclass(frozen=True)
class SsoSettings:
    saml: tuple[SamlProviderSettings, ...] = ()
    oidc: tuple[OidcProviderSettings, ...] = ()
    saml_allow_encrypted_assertions: bool = False
    saml_relay_state_validity_period: str | None = None
    allow_hosts: tuple[str, ...] = ()  # IdP hosts that may resolve to link-local / metadata-service addresses

    @property
    def vault_keys(self) -> list[str]:
        """Vault entries the settings need (SAML key, OIDC client secrets)."""
        keys = [SAML_PRIVATE_KEY_VAULT_KEY] if self.saml else []
        return keys + [o.client_secret_vault_key for o in self.oidc]


def default_secret_key(name: str) -> str:
    return "SSO_" + re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_CLIENT_SECRET"


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, where: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(where, message, hint))

    def str_field(self, item: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
        value = item.get(key)
        if value is None or value == "":
            if required:
                self.add(f"{where}.{key}", "is required")
            return None
        if not isinstance(value, str):
            self.add(f"{where}.{key}", f"must be a string, not {type(value).__name__}")
            return None
        return value.strip()

    def bool_field(self, item: Mapping[str, Any], key: str, where: str, default: bool = False) -> bool:
        value = item.get(key, default)
        if not isinstance(value, bool):
            self.add(f"{where}.{key}", "must be true or false")
            return default
        return value

    def url_field(self, item: Mapping[str, Any], key: str, where: str, *, required: bool = False,
                  https: bool = True, allow_insecure_loopback: bool = False) -> str | None:
        value = self.str_field(item, key, where, required=required)
        if value is None:
            return None
        problem = (_net.url_scheme_problem(value, "URL", allow_insecure_loopback=allow_insecure_loopback)
                   if https else None)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.add(f"{where}.{key}", f"{value!r} is not an absolute URL")
        elif problem:
            self.add(f"{where}.{key}", f"{value!r} must use https", "GoTrue refuses non-https IdP URLs")
        return value


def _unknown_keys(c: _Collector, item: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in sorted(set(item) - allowed):
        c.add(f"{where}.{key}", "is not a known setting", f"allowed: {', '.join(sorted(allowed))}")


def _attribute_mapping(c: _Collector, value: Any, where: str) -> dict[str, Any]:
    if value in (None, {}):
        return {}
    if not isinstance(value, Mapping) or set(value) - {"keys"} or not isinstance(value.get("keys", {}), Mapping):
        c.add(where, "must look like {keys: {<user field>: {name: <SAML attribute>}}}")
        return {}
    out: dict[str, Any] = {}
    for k, spec in (value.get("keys") or {}).items():
        w = f"{where}.keys.{k}"
        if not isinstance(spec, Mapping) or set(spec) - {"name", "names", "default", "array"}:
            c.add(w, "must be a mapping with name / names / default / array")
            continue
        if "name" in spec and not isinstance(spec["name"], str):
            c.add(f"{w}.name", "must be a string")
        if "names" in spec and (not isinstance(spec["names"], list) or not all(isinstance(n, str) for n in spec["names"])):
            c.add(f"{w}.names", "must be a list of strings")
        if "array" in spec and not isinstance(spec["array"], bool):
            c.add(f"{w}.array", "must be true or false")
        out[str(k)] = dict(spec)
    return {"keys": out}


def parse_sso_settings(data: Mapping[str, Any] | None, *, where: str = "sfp_org.sso",
                       allow_insecure_loopback: bool = False) -> SsoSettings:
    """Validate the inventory's SSO block; raise ConfigError naming every bad field."""
    if data is None:
        return SsoSettings()
    c = _Collector()
    if not isinstance(data, Mapping):
        raise ConfigError([Problem(where, "must be a mapping with saml: and/or oidc: lists")])
    _unknown_keys(c, data, {"saml", "oidc", "saml_allow_encrypted_assertions", "saml_relay_state_validity_period",
                            "allow_hosts"}, where)

    names: set[str] = set()
    saml: list[SamlProviderSettings] = []
    owners: dict[str, str] = {}
    for i, item in enumerate(_list(c, data.get("saml"), f"{where}.saml")):
        w = f"{where}.saml[{i}]"
        if not isinstance(item, Mapping):
            c.add(w, "must be a mapping")
            continue
        _unknown_keys(c, item, {"name", "metadata_url", "metadata_file", "domains", "expected_entity_id",
                                "attribute_mapping", "name_id_format", "metadata_cert"}, w)
        name = _name(c, item, w, names)
        url = c.url_field(item, "metadata_url", w, allow_insecure_loopback=allow_insecure_loopback)
        path = c.str_field(item, "metadata_file", w)
        if (url is None) == (path is None) and not any(p.where.startswith(f"{w}.metadata_") for p in c.problems):
            c.add(w, "set exactly one of metadata_url or metadata_file")
        domains: list[str] = []
        raw_domains = item.get("domains")
        if not isinstance(raw_domains, list) or not raw_domains:
            c.add(f"{w}.domains", "must be a non-empty list of email domains (e.g. [acme.com])",
                  "users whose email is in these domains are sent to this IdP")
        else:
            for j, d in enumerate(raw_domains):
                dom = d.strip().lower() if isinstance(d, str) else ""
                if not _DOMAIN.match(dom):
                    c.add(f"{w}.domains[{j}]", f"{d!r} is not a domain name")
                elif dom in owners:
                    c.add(f"{w}.domains[{j}]", f"{dom} is already assigned to SAML provider {owners[dom]!r}",
                          "a domain can route to one IdP only")
                else:
                    owners[dom] = name or w
                    domains.append(dom)
        nif = c.str_field(item, "name_id_format", w) or ""
        if nif and nif not in NAME_ID_FORMATS:
            c.add(f"{w}.name_id_format", f"{nif!r} is not supported by GoTrue", f"use one of: {', '.join(NAME_ID_FORMATS)}")
        saml.append(SamlProviderSettings(
            name=name or "", domains=tuple(domains), metadata_url=url, metadata_file=path,
            expected_entity_id=c.str_field(item, "expected_entity_id", w),
            attribute_mapping=_attribute_mapping(c, item.get("attribute_mapping"), f"{w}.attribute_mapping"),
            name_id_format=nif, metadata_cert=_pinned_certificate(c, item, w),
        ))

    oidc: list[OidcProviderSettings] = []
    builtins_seen: dict[str, str] = {}
    for i, item in enumerate(_list(c, data.get("oidc"), f"{where}.oidc")):
        w = f"{where}.oidc[{i}]"
        if not isinstance(item, Mapping):
            c.add(w, "must be a mapping")
            continue
        _unknown_keys(c, item, {"name", "provider", "issuer", "url", "client_id", "client_secret_vault_key",
                                "scopes", "skip_nonce_check", "email_optional", "client_secret"}, w)
        if "client_secret" in item:
            c.add(f"{w}.client_secret", "secrets do not belong in the inventory",
                  f"store it in the org's vault under {default_secret_key(str(item.get('name', 'NAME')))} "
                  "(or the key named by client_secret_vault_key) and remove it from this file")
        name = _name(c, item, w, names)
        provider = c.str_field(item, "provider", w, required=True)
        if provider is not None and provider != "custom" and provider not in BUILTIN_PROVIDERS:
            c.add(f"{w}.provider", f"{provider!r} is not a GoTrue built-in provider",
                  f"use `custom` for any other OpenID provider, or one of: {', '.join(BUILTIN_PROVIDERS)}")
        elif provider in BUILTIN_PROVIDERS:
            if provider in builtins_seen:
                c.add(f"{w}.provider", f"{provider} is already configured by {builtins_seen[provider]!r}",
                      "GoTrue has one configuration per built-in provider; use `custom` for a second one")
            builtins_seen[provider] = name or w
        issuer = c.url_field(item, "issuer", w, required=provider == "custom",
                             allow_insecure_loopback=allow_insecure_loopback)
        url = c.url_field(item, "url", w, required=provider in URL_REQUIRED, allow_insecure_loopback=allow_insecure_loopback)
        if provider == "custom" and url:
            c.add(f"{w}.url", "is for built-in providers; a custom provider is configured by its issuer")
        scopes = item.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
            c.add(f"{w}.scopes", "must be a list of scope names")
            scopes = []
        secret_key = c.str_field(item, "client_secret_vault_key", w) or default_secret_key(name or "")
        if not _SSO_VAULT_KEY.match(secret_key):
            # Any other vault name would hand one of the org's own secrets (the service_role key,
            # the database password) to the identity provider as a client secret.
            c.add(f"{w}.client_secret_vault_key", f"{secret_key!r} is not an SSO secret's name",
                  "name a vault key of the form SSO_<NAME> (letters, digits, _), or leave it out for "
                  "the default SSO_<NAME>_CLIENT_SECRET")
        oidc.append(OidcProviderSettings(
            name=name or "", provider=provider or "", client_id=c.str_field(item, "client_id", w, required=True) or "",
            issuer=issuer, url=url, client_secret_vault_key=secret_key, scopes=tuple(scopes),
            skip_nonce_check=c.bool_field(item, "skip_nonce_check", w),
            email_optional=c.bool_field(item, "email_optional", w),
        ))

    period = data.get("saml_relay_state_validity_period")
    if period is not None and (not isinstance(period, str) or not _DURATION.match(period)):
        c.add(f"{where}.saml_relay_state_validity_period", "must be a Go duration such as 90s, 2m or 1h")
        period = None
    settings = SsoSettings(
        saml=tuple(saml), oidc=tuple(oidc),
        saml_allow_encrypted_assertions=c.bool_field(data, "saml_allow_encrypted_assertions", where),
        saml_relay_state_validity_period=period, allow_hosts=_allow_hosts(c, data.get("allow_hosts"), where),
    )
    if c.problems:
        raise ConfigError(c.problems)
    return settings


def _pinned_certificate(c: _Collector, item: Mapping[str, Any], where: str) -> str | None:
    text = c.str_field(item, "metadata_cert", where)
    if text is None:
        return None
    try:
        return xmldsig.one_line(text)
    except ValueError as exc:
        c.add(f"{where}.metadata_cert", f"is not an X.509 certificate ({exc})",
              "give the IdP's metadata signing certificate as base64 DER on one line (the body of its PEM "
              "file); `sfp-server sso add ... --metadata-cert FILE.pem` writes it")
        return None


def _allow_hosts(c: _Collector, value: Any, where: str) -> tuple[str, ...]:
    hosts: list[str] = []
    for j, h in enumerate(_list(c, value, f"{where}.allow_hosts")):
        host = _net.normalize_host(h) if isinstance(h, str) else ""
        if not (_HOSTNAME.match(host) or _is_ip(host)):
            c.add(f"{where}.allow_hosts[{j}]", f"{h!r} is not a host name or IP address",
                  "name the host only: no scheme, port or path")
            continue
        hosts.append(host)
    return tuple(sorted(set(hosts)))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _list(c: _Collector, value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        c.add(where, "must be a list")
        return []
    return value


def _name(c: _Collector, item: Mapping[str, Any], where: str, seen: set[str]) -> str | None:
    name = c.str_field(item, "name", where, required=True)
    if name is None:
        return None
    if not _NAME.match(name):
        c.add(f"{where}.name", f"{name!r} must be lower-case letters, digits, '-' or '_' (max 63)")
    elif name in seen:
        c.add(f"{where}.name", f"{name!r} is used twice", "SSO provider names are unique per org")
    seen.add(name)
    return name


def _ref(key: str) -> str:
    return "${" + key + "}"


def gotrue_env(settings: SsoSettings, secrets: Mapping[str, str], *, public_url: str) -> dict[str, str]:
    """Auth service environment for the compose file. Secret values are `${VAULT_KEY}` references
    (their values come from `gotrue_dotenv`); raises SfpError if a needed secret is missing/invalid."""
    _require_secrets(settings, secrets)
    sp = service_provider_info(public_url)
    env: dict[str, str] = {"GOTRUE_SAML_ENABLED": "true" if settings.saml else "false"}
    if settings.saml:
        env["GOTRUE_SAML_PRIVATE_KEY"] = _ref(SAML_PRIVATE_KEY_VAULT_KEY)
        env["GOTRUE_SAML_EXTERNAL_URL"] = sp.auth_external_url
        env["GOTRUE_SAML_ALLOW_ENCRYPTED_ASSERTIONS"] = "true" if settings.saml_allow_encrypted_assertions else "false"
        if settings.saml_relay_state_validity_period:
            env["GOTRUE_SAML_RELAY_STATE_VALIDITY_PERIOD"] = settings.saml_relay_state_validity_period
    if any(o.is_custom for o in settings.oidc):
        env["GOTRUE_CUSTOM_OAUTH_ENABLED"] = "true"
    for o in settings.oidc:
        if o.is_custom:
            continue  # configured through the admin API (gotrue_admin.apply_custom_oidc_provider)
        p = f"GOTRUE_EXTERNAL_{BUILTIN_PROVIDERS[o.provider]}_"
        env[p + "ENABLED"] = "true"
        env[p + "CLIENT_ID"] = o.client_id
        env[p + "SECRET"] = _ref(o.client_secret_vault_key)
        env[p + "REDIRECT_URI"] = sp.oidc_redirect_uri
        if o.url:
            env[p + "URL"] = o.url
        if o.skip_nonce_check:
            env[p + "SKIP_NONCE_CHECK"] = "true"
        if o.email_optional:
            env[p + "EMAIL_OPTIONAL"] = "true"
    return env


def gotrue_dotenv(settings: SsoSettings, secrets: Mapping[str, str]) -> dict[str, str]:
    """The secret values `gotrue_env` references, for the org's .env file (mode 0600)."""
    _require_secrets(settings, secrets)
    keys = [SAML_PRIVATE_KEY_VAULT_KEY] if settings.saml else []
    keys += [o.client_secret_vault_key for o in settings.oidc if not o.is_custom]
    return {k: secrets[k] for k in keys}


def _require_secrets(settings: SsoSettings, secrets: Mapping[str, str]) -> None:
    missing = [k for k in settings.vault_keys if not secrets.get(k)]
    if missing:
        raise SfpError(f"the org's vault lacks SSO secret(s): {', '.join(missing)}",
                       "SAML_PRIVATE_KEY: `sfp-server secrets ensure --org ORG` generates it once; client secrets: "
                       "`sfp-server sso add --org ORG --oidc ... --client-secret-file FILE` stores them")
    if settings.saml:
        try:
            check_saml_private_key(secrets[SAML_PRIVATE_KEY_VAULT_KEY])
        except SfpError as exc:
            raise SfpError(f"vault entry {SAML_PRIVATE_KEY_VAULT_KEY}: {exc.message}", exc.hint) from None
