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

from installer import settings
from installer.errors import ConfigError, Problem, SfpError
from installer.sso import _net, xmldsig
from installer.sso.sp import check_saml_private_key, service_provider_info

AREA = "sso"  # installer/schema/sso.yml: every field, its type, rule and default
LOOPBACK_KEY = "allow_insecure_loopback"
SAML_PRIVATE_KEY_VAULT_KEY = "SAML_PRIVATE_KEY"
# Built-ins that are OpenID providers with a fixed issuer (used by `check` when none is configured).
KNOWN_ISSUERS: dict[str, str] = {
    "google": "https://accounts.google.com",
    "apple": "https://appleid.apple.com",
    "linkedin_oidc": "https://www.linkedin.com/oauth",
    "slack_oidc": "https://slack.com",
}
# Exact host-name syntax after normalisation (the schema's pattern admits any case and a final dot).
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
# JSON Schema types as Python types (bool is an int to Python, never to JSON Schema).
_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "boolean": (bool,), "array": (list,), "object": (Mapping,),
                                       "integer": (int,), "number": (int, float), "null": (type(None),)}
_TYPE_MESSAGES = {"boolean": "must be true or false", "array": "must be a list", "object": "must be a mapping"}

FieldPath = tuple[str | int, ...]


def _node(path: FieldPath) -> dict[str, Any]:
    """The schema of the field at `path` (list indexes step into `items`), `$ref`s followed, {} if none."""
    node, resolver = settings.resolve(settings.schema(AREA), settings.root_resolver(AREA))
    for step in path:
        if isinstance(step, int):
            sub = node.get("items")
        else:
            props = node.get("properties") or {}
            sub = props[step] if step in props else node.get("additionalProperties")
        if not isinstance(sub, dict):
            return {}
        node, resolver = settings.resolve(sub, resolver)
    return node


# GoTrue's built-in OAuth providers (inventory name -> env name part, GOTRUE_EXTERNAL_<NAME>_) and the
# NameID formats it accepts: the schema's lists (`custom` is ours, not a built-in).
BUILTIN_PROVIDERS: dict[str, str] = {n: n.upper() for n in _node(("oidc", 0, "provider"))["enum"] if n != "custom"}
NAME_ID_FORMATS: tuple[str, ...] = tuple(_node(("saml", 0, "name_id_format"))["enum"])


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
        return discovery_issuer(self.provider, self.issuer, self.url)


def discovery_issuer(provider: str, issuer: str | None, url: str | None) -> str | None:
    """An OIDC provider's issuer, when one is known: its own, keycloak's realm URL, or a built-in's
    (`sso check` discovers it, and so does Studio's gate at the front door)."""
    if issuer:
        return issuer
    if provider == "keycloak":
        return url or None
    return KNOWN_ISSUERS.get(provider)


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


# -- validation: the schema (installer.settings.check), then what a schema cannot say ---------------
@dataclass(frozen=True)
class _Found:
    path: FieldPath
    message: str
    hint: str | None = None


def _render(where: str, path: FieldPath) -> str:
    return where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _data_path(data: Any, dotted: str) -> FieldPath:
    """`saml.0.domains.1` as the path into `data` it names (an index where the data has a list)."""
    out: list[str | int] = []
    value = data
    for step in dotted.split(".") if dotted else []:
        if isinstance(value, list) and step.isdigit():
            out.append(int(step))
            value = value[int(step)] if int(step) < len(value) else None
        else:
            out.append(step)
            value = value.get(step) if isinstance(value, Mapping) else None
    return tuple(out)


def _value(data: Any, path: FieldPath) -> Any:
    for step in path:
        if isinstance(step, int):
            data = data[step] if isinstance(data, list) and step < len(data) else None
        else:
            data = data.get(step) if isinstance(data, Mapping) else None
    return data


def _type_mismatch(node: Mapping[str, Any], value: Any) -> str | None:
    declared = node.get("type")
    kinds = [declared] if isinstance(declared, str) else list(declared or [])
    if not kinds or any(isinstance(value, _TYPES.get(k, ())) and not (isinstance(value, bool) and k in ("integer", "number"))
                        for k in kinds):
        return None
    return _TYPE_MESSAGES.get(kinds[0], f"must be a {kinds[0]}, not {type(value).__name__}")


def _schema_findings(data: Mapping[str, Any], *, inventory: bool) -> list[_Found]:
    """installer.settings.check's problems, said the SSO library's way: `x-message` / `x-hint` of the
    field (installer/schema/sso.yml) for a broken rule; unknown keys one by one (`inventory`: those
    of the block itself as the rest of the inventory's checks name them); control characters only
    for the inventory (the library takes a PEM certificate on several lines and keeps it on one)."""
    sentinel = "sso"
    found: list[_Found] = []
    for p in settings.check(sentinel, "", data, AREA):
        dotted = p.where.removeprefix(f"{sentinel}: ").removeprefix(sentinel)
        path = _data_path(data, dotted)
        if "control character" in p.message:
            if inventory:
                found.append(_Found(path, p.message, p.hint))
            continue
        if p.message.startswith("unknown key "):  # settings.check's additionalProperties problem
            found += _unknown_keys(data, path, inventory=inventory)
            continue
        if p.message == "is required":
            found.append(_Found(path, p.message, p.hint))
            continue
        node, value = _node(path), _value(data, path)
        mismatch = _type_mismatch(node, value)
        template = (node.get("x-type-message") or node.get("x-message")) if mismatch else node.get("x-message")
        message = template.replace("{value!r}", repr(value)) if template else (mismatch or p.message)
        hint = node.get("x-hint")
        enum = ", ".join(map(str, node.get("enum") or []))
        found.append(_Found(path, message, hint.replace("{enum}", enum) if hint else p.hint))
    return found


def _unknown_keys(data: Mapping[str, Any], path: FieldPath, *, inventory: bool) -> list[_Found]:
    value, node = _value(data, path), _node(path)
    allowed = sorted((node.get("properties") or {}).keys())
    # A client secret written in an OIDC item is named by _oidc_findings: it belongs in the vault.
    extra = [k for k in value if k not in allowed and not (k == "client_secret" and path[:1] == ("oidc",))]
    if not extra:
        return []
    if inventory and not path:
        # As `validate` names an unknown key of any other inventory variable.
        return [_Found(path, f"unknown key {', '.join(map(repr, sorted(extra)))}", f"allowed keys: {', '.join(allowed)}")]
    return [_Found((*path, k), "is not a known setting", f"allowed: {', '.join(allowed)}") for k in extra]


def _url_finding(item: Mapping[str, Any], key: str, path: FieldPath, loopback: bool) -> list[_Found]:
    """The host policy: https only (http to this machine's loopback when the settings allow it)."""
    value = item.get(key)
    if not isinstance(value, str):
        return []
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [_Found((*path, key), f"{value!r} is not an absolute URL")]
    if _net.url_scheme_problem(value, "URL", allow_insecure_loopback=loopback):
        return [_Found((*path, key), f"{value!r} must use https", "GoTrue refuses non-https IdP URLs")]
    return []


def _items(data: Mapping[str, Any], kind: str) -> list[tuple[FieldPath, Mapping[str, Any]]]:
    value = data.get(kind)
    return [((kind, i), item) for i, item in enumerate(value) if isinstance(item, Mapping)] if isinstance(value, list) else []


def _names_findings(data: Mapping[str, Any]) -> list[_Found]:
    seen: set[str] = set()
    found = []
    for path, item in _items(data, "saml") + _items(data, "oidc"):
        name = item.get("name")
        if not isinstance(name, str):
            continue
        if name in seen:
            found.append(_Found((*path, "name"), f"{name!r} is used twice", "SSO provider names are unique per org"))
        seen.add(name)
    return found


def _saml_findings(data: Mapping[str, Any], loopback: bool) -> list[_Found]:
    found: list[_Found] = []
    owners: dict[str, str] = {}
    for path, item in _items(data, "saml"):
        found += _url_finding(item, "metadata_url", path, loopback)
        domains = item.get("domains")
        for j, d in enumerate(domains if isinstance(domains, list) else []):
            dom = d.strip().lower() if isinstance(d, str) else None
            if dom is None:
                continue
            if dom in owners:
                found.append(_Found((*path, "domains", j), f"{dom} is already assigned to SAML provider {owners[dom]!r}",
                                    "a domain can route to one IdP only"))
            else:
                owners[dom] = str(item.get("name") or _render("", path))
        cert = item.get("metadata_cert")
        if isinstance(cert, str):
            try:
                xmldsig.one_line(cert)
            except ValueError as exc:
                found.append(_Found((*path, "metadata_cert"), f"is not an X.509 certificate ({exc})",
                                    "give the IdP's metadata signing certificate as base64 DER on one line (the body "
                                    "of its PEM file); `sfp-server sso add ... --metadata-cert FILE.pem` writes it"))
    return found


def _oidc_findings(data: Mapping[str, Any], loopback: bool) -> list[_Found]:
    found: list[_Found] = []
    builtins_seen: dict[str, str] = {}
    for path, item in _items(data, "oidc"):
        name, provider = item.get("name"), item.get("provider")
        if "client_secret" in item:
            found.append(_Found((*path, "client_secret"), "secrets do not belong in the inventory",
                                f"store it in the org's vault under {default_secret_key(str(name or 'NAME'))} "
                                "(or the key named by client_secret_vault_key) and remove it from this file"))
        if isinstance(provider, str) and provider in BUILTIN_PROVIDERS:
            if provider in builtins_seen:
                found.append(_Found((*path, "provider"), f"{provider} is already configured by {builtins_seen[provider]!r}",
                                    "GoTrue has one configuration per built-in provider; use `custom` for a second one"))
            builtins_seen[provider] = str(name or _render("", path))
        found += _url_finding(item, "issuer", path, loopback) + _url_finding(item, "url", path, loopback)
        if provider == "custom" and item.get("url"):
            found.append(_Found((*path, "url"), "is for built-in providers; a custom provider is configured by its issuer"))
    return found


def _allow_hosts_findings(data: Mapping[str, Any]) -> list[_Found]:
    hosts = data.get("allow_hosts")
    found = []
    for j, h in enumerate(hosts if isinstance(hosts, list) else []):
        host = _net.normalize_host(h) if isinstance(h, str) else None
        if host is not None and not (_HOSTNAME.match(host) or _is_ip(host)):
            found.append(_Found(("allow_hosts", j), f"{h!r} is not a host name or IP address",
                                "name the host only: no scheme, port or path"))
    return found


def _position(data: Any, path: FieldPath) -> tuple[int, ...]:
    """Where a field is written (keys in the order they appear), so problems read top to bottom."""
    out = []
    for step in path:
        if isinstance(step, int):
            out.append(step)
            data = data[step] if isinstance(data, list) and step < len(data) else None
        else:
            keys = list(data) if isinstance(data, Mapping) else []
            out.append(keys.index(step) if step in keys else len(keys))
            data = data.get(step) if isinstance(data, Mapping) else None
    return tuple(out)


def sso_problems(data: Mapping[str, Any], *, where: str = "sfp_org.sso", inventory: bool = False,
                 allow_insecure_loopback: bool = False) -> list[Problem]:
    """Every problem of the SSO settings `data`, each naming its field (`<where>.saml[0].name`):
    the schema's, then the rules across fields and providers, one problem per field, in the order
    the fields are written."""
    loopback = allow_insecure_loopback or data.get(LOOPBACK_KEY) is True
    findings = (_schema_findings(data, inventory=inventory) + _names_findings(data) + _saml_findings(data, loopback)
                + _oidc_findings(data, loopback) + _allow_hosts_findings(data))
    first: dict[FieldPath, _Found] = {}
    for f in findings:
        first.setdefault(f.path, f)  # the schema's finding first: a wrong value is named once
    ordered = sorted(first.values(), key=lambda f: _position(data, f.path))
    return [Problem(_render(where, f.path), f.message, f.hint) for f in ordered]


def parse_sso_settings(data: Mapping[str, Any] | None, *, where: str = "sfp_org.sso",
                       allow_insecure_loopback: bool = False) -> SsoSettings:
    """Validate the inventory's SSO block; raise ConfigError naming every bad field."""
    if data is None:
        return SsoSettings()
    if not isinstance(data, Mapping):
        raise ConfigError([Problem(where, "must be a mapping with saml: and/or oidc: lists")])
    problems = sso_problems(data, where=where, allow_insecure_loopback=allow_insecure_loopback)
    if problems:
        raise ConfigError(problems)
    return _settings(data)


def _item_defaults(kind: str) -> dict[str, Any]:
    # settings.with_defaults fills objects, not the items of a list: each provider gets its own here.
    return {k: v["default"] for k, v in (_node((kind, 0)).get("properties") or {}).items() if "default" in v}


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _settings(data: Mapping[str, Any]) -> SsoSettings:
    """The model of valid settings, with the schema's defaults."""
    full = settings.with_defaults(AREA, dict(data))
    saml = tuple(
        SamlProviderSettings(
            name=item["name"].strip(), domains=tuple(d.strip().lower() for d in item["domains"]),
            metadata_url=_text(item.get("metadata_url")), metadata_file=_text(item.get("metadata_file")),
            expected_entity_id=_text(item.get("expected_entity_id")),
            attribute_mapping={"keys": {str(k): dict(v) for k, v in (item["attribute_mapping"].get("keys") or {}).items()}}
            if item.get("attribute_mapping") else {},
            name_id_format=item.get("name_id_format") or "",
            metadata_cert=xmldsig.one_line(item["metadata_cert"]) if item.get("metadata_cert") else None,
        )
        for item in ({**_item_defaults("saml"), **i} for i in full.get("saml") or []))
    oidc_defaults = _item_defaults("oidc")
    oidc = tuple(
        OidcProviderSettings(
            name=item["name"].strip(), provider=item["provider"], client_id=item["client_id"].strip(),
            issuer=_text(item.get("issuer")), url=_text(item.get("url")),
            client_secret_vault_key=item.get("client_secret_vault_key") or default_secret_key(item["name"].strip()),
            scopes=tuple(item["scopes"] or oidc_defaults["scopes"]),  # an empty list means the default
            skip_nonce_check=item["skip_nonce_check"], email_optional=item["email_optional"],
        )
        for item in ({**oidc_defaults, **i} for i in full.get("oidc") or []))
    return SsoSettings(
        saml=saml, oidc=oidc, saml_allow_encrypted_assertions=full["saml_allow_encrypted_assertions"],
        saml_relay_state_validity_period=full.get("saml_relay_state_validity_period"),
        allow_hosts=tuple(sorted({_net.normalize_host(h) for h in full["allow_hosts"]})),
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


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
