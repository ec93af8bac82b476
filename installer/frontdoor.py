"""An org's TLS front door (roles/frontdoor): its hostname, its certificate, who may open Studio.

The inventory side: `sfp_org.hostname`, `sfp_org.tls` and `sfp_org.studio_access` (schema:
installer/schema/org.yml) with the secrets they name in the org's vault, checked here for what a
schema cannot say, and turned into the role's inputs (`frontdoor__*`, filter
sfp_frontdoor_inputs). Everything that comes from outside the vault is parsed before it is used:
the operator's certificate and key (PEM, matched to each other and to the hostname), the ACME
server's CA file, and the SAML IdP metadata Studio's sign-in trusts (the SSO library's checks).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets as _random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from .errors import ConfigError, Problem
from .sso import config as sso_config
from .sso import saml as sso_saml
from .sso_inventory import SSO_VAR

TLS_CERTIFICATE = "TLS_CERTIFICATE"
TLS_PRIVATE_KEY = "TLS_PRIVATE_KEY"
STUDIO_OIDC_CLIENT_SECRET = "STUDIO_OIDC_CLIENT_SECRET"
SESSION_SECRET = "FRONTDOOR_SESSION_SECRET"
STUDIO_SAML_SP_KEY = "STUDIO_SAML_SP_KEY"
STUDIO_SAML_SP_CERT = "STUDIO_SAML_SP_CERT"
# Values the operator brings; the others here are generated (`generated_secrets`).
OPERATOR_SET = (TLS_CERTIFICATE, TLS_PRIVATE_KEY, STUDIO_OIDC_CLIENT_SECRET)
DESCRIPTIONS = {
    TLS_CERTIFICATE: "the front door's certificate of sfp_org.hostname, PEM, leaf first then the chain (tls.source: provided)",
    TLS_PRIVATE_KEY: "its private key, PEM, unencrypted (tls.source: provided)",
    STUDIO_OIDC_CLIENT_SECRET: "secret of Studio's OIDC client at the org's provider (studio_access)",
    SESSION_SECRET: "key of the front door's Studio session cookies (one per org: a cookie of one org is worthless on another)",
    STUDIO_SAML_SP_KEY: "private key of Studio's SAML service provider at the front door (studio_access with a SAML provider)",
    STUDIO_SAML_SP_CERT: "its certificate, published in the service provider's metadata",
}
# Where Studio's sign-in answers on the org's hostname: outside every path the gateway routes.
OIDC_CALLBACK_PATH = "/sfp-frontdoor/oidc/callback"
CERT_WARNING_DAYS = 30


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    issuer: str
    not_after: dt.datetime
    names: tuple[str, ...]

    def covers(self, hostname: str) -> bool:
        return any(_name_matches(n, hostname) for n in self.names)

    def days_left(self, now: dt.datetime | None = None) -> float:
        return (self.not_after - (now or dt.datetime.now(dt.UTC))).total_seconds() / 86400


def _name_matches(pattern: str, hostname: str) -> bool:
    pattern, hostname = pattern.lower().rstrip("."), hostname.lower().rstrip(".")
    if pattern.startswith("*."):
        # A wildcard stands for exactly one leftmost label (RFC 6125).
        head, _, rest = hostname.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == hostname


def certificate_info(pem: str) -> CertificateInfo:
    """The leaf (first certificate) of a PEM chain; ValueError when it is not one."""
    certs = x509.load_pem_x509_certificates(pem.encode())
    leaf = certs[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return CertificateInfo(leaf.subject.rfc4514_string(), leaf.issuer.rfc4514_string(),
                           leaf.not_valid_after_utc, names)


def _public_bytes(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def _private_key(pem: str) -> Any:
    """The operator's key; ValueError saying why it cannot be used (never quoting it)."""
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError:
        raise ValueError("it is encrypted with a passphrase; the front door needs it unencrypted (0600 on the "
                         "host): openssl pkey -in KEY -out PLAIN") from None
    except ValueError:
        raise ValueError("it is not a PEM private key") from None


def key_problem(cert_pem: str, key_pem: str) -> str | None:
    """Why the key cannot serve the certificate, or None. The key's text is never quoted."""
    try:
        key = _private_key(key_pem)
    except ValueError as exc:
        return f"TLS_PRIVATE_KEY: {exc}"
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return "TLS_PRIVATE_KEY is neither an RSA, an EC nor an Ed25519 key"
    leaf = x509.load_pem_x509_certificates(cert_pem.encode())[0]
    if _public_bytes(key.public_key()) != _public_bytes(leaf.public_key()):
        return "TLS_PRIVATE_KEY is not the key of TLS_CERTIFICATE's first certificate"
    return None


def check_secret(name: str, value: str) -> str | None:
    """What is wrong with a value `secrets set` was given for one of the front door's names."""
    if name == TLS_CERTIFICATE:
        try:
            certificate_info(value)
        except ValueError:
            return "not a PEM certificate chain (-----BEGIN CERTIFICATE----- blocks, leaf first)"
    if name == STUDIO_OIDC_CLIENT_SECRET and (re.search(r'[\s"\\]', value) or "${" in value):
        # It goes into Apache's configuration inside quotes (a 0600 file the front door includes).
        return "it holds a space, a quote, a backslash or '${', which the front door cannot pass on"
    if name == TLS_PRIVATE_KEY:
        try:
            _private_key(value)
        except ValueError as exc:
            return str(exc)
    return None


def _sso_provider(sso: Any, name: str) -> tuple[str, Mapping[str, Any]] | None:
    if not isinstance(sso, Mapping):
        return None
    for kind in ("saml", "oidc"):
        for item in sso.get(kind) or []:
            if isinstance(item, Mapping) and item.get("name") == name:
                return kind, item
    return None


def _oidc_issuer(item: Mapping[str, Any]) -> str | None:
    """The issuer the front door discovers (the SSO library's rule, on sso.yml's raw entry)."""
    return sso_config.discovery_issuer(str(item.get("provider")), item.get("issuer") or None, item.get("url") or None)


def problems(org: str, cfg: Mapping[str, Any], hostvars: Mapping[str, Any], secrets: Mapping[str, Any],
             *, inventory_dir: Path | None, with_secrets: bool = True) -> list[Problem]:
    """What the schema cannot say about the org's front door, every problem at once.

    `cfg` is sfp_org with its defaults. `with_secrets`: the vault was read (validate without the
    vault password checks the settings only)."""
    where = f"host_vars/{org}: sfp_org"
    found: list[Problem] = []
    hostname = cfg.get("hostname")
    raw = hostvars.get("sfp_org") if isinstance(hostvars.get("sfp_org"), Mapping) else {}
    raw_public = raw.get("public_url")
    studio = cfg.get("studio_access")
    if not hostname:
        if raw.get("tls"):
            found.append(Problem(f"{where}.tls", "is set but the org has no hostname", "set sfp_org.hostname, or remove tls"))
        if studio:
            found.append(Problem(f"{where}.studio_access", "needs the front door, and the org has no hostname",
                                 "set sfp_org.hostname, or remove studio_access (Studio then stays behind basic auth)"))
        return found
    if isinstance(raw_public, str) and raw_public.rstrip("/") != f"https://{hostname}":
        found.append(Problem(f"{where}.public_url", f"{raw_public!r} is not https://{hostname}",
                             "leave public_url out: with a hostname the public URL is https://HOSTNAME"))
    tls = cfg.get("tls") or {}
    source = tls.get("source", "provided")
    if source == "provided" and with_secrets:
        found += _provided_problems(org, str(hostname), secrets)
    if source == "acme" and tls.get("acme_ca_file"):
        found += _ca_file_problems(where, tls["acme_ca_file"], inventory_dir)
    if isinstance(studio, Mapping):
        found += _studio_problems(org, where, studio, hostvars.get(SSO_VAR), secrets, with_secrets=with_secrets)
    return found


def _provided_problems(org: str, hostname: str, secrets: Mapping[str, Any]) -> list[Problem]:
    where = f"vault of {org}"
    cert, key = secrets.get(TLS_CERTIFICATE), secrets.get(TLS_PRIVATE_KEY)
    missing = [n for n, v in ((TLS_CERTIFICATE, cert), (TLS_PRIVATE_KEY, key)) if not v]
    if missing:
        return [Problem(f"{where}: {n}", "is missing (sfp_org.tls.source is provided)",
                        f"`sfp-server secrets set --org {org} {n} --from-file FILE.pem`, or set sfp_org.tls.source "
                        "to acme or self_signed") for n in missing]
    try:
        info = certificate_info(str(cert))
    except ValueError:
        return [Problem(f"{where}: {TLS_CERTIFICATE}", "is not a PEM certificate chain",
                        f"set it again from the PEM file: `sfp-server secrets set --org {org} {TLS_CERTIFICATE} --from-file chain.pem`")]
    found = []
    if not info.covers(hostname):
        found.append(Problem(f"{where}: {TLS_CERTIFICATE}",
                             f"does not cover {hostname} (its names: {', '.join(info.names) or 'none'})",
                             "have the CA issue a certificate with the hostname as a subjectAltName DNS name"))
    if info.days_left() <= 0:
        found.append(Problem(f"{where}: {TLS_CERTIFICATE}", f"expired on {info.not_after:%Y-%m-%d}",
                             "renew it and set it again with `secrets set`"))
    wrong_key = key_problem(str(cert), str(key))
    if wrong_key:
        found.append(Problem(f"{where}: {TLS_PRIVATE_KEY}", wrong_key,
                             f"set the matching key: `sfp-server secrets set --org {org} {TLS_PRIVATE_KEY} --from-file key.pem`"))
    return found


def _ca_file_problems(where: str, name: str, inventory_dir: Path | None) -> list[Problem]:
    try:
        read_ca_file(name, inventory_dir)
    except ValueError as exc:
        return [Problem(f"{where}.tls.acme_ca_file", str(exc), "name a PEM file of CA certificates, relative to the inventory")]
    return []


def read_ca_file(name: str, inventory_dir: Path | None) -> str:
    """The PEM certificates of an operator's CA file, re-encoded from the parsed certificates (so
    nothing but certificates reaches the host); ValueError with the reason."""
    path = Path(name) if Path(name).is_absolute() or inventory_dir is None else inventory_dir / name
    try:
        if not path.is_file():
            raise ValueError(f"{path} is not a file")
        data = path.read_bytes()[: 1024 * 1024 + 1]
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > 1024 * 1024:
        raise ValueError(f"{path} is larger than 1 MiB")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(f"{path} holds no PEM certificate") from None
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _studio_problems(org: str, where: str, studio: Mapping[str, Any], sso: Any, secrets: Mapping[str, Any],
                     *, with_secrets: bool) -> list[Problem]:
    found = []
    if not (studio.get("allow_emails") or studio.get("allow_groups")):
        found.append(Problem(f"{where}.studio_access", "lets nobody in: allow_emails and allow_groups are both empty",
                             "list the e-mail addresses or the groups of the people who administer this org"))
    provider = _sso_provider(sso, str(studio.get("provider")))
    if provider is None:
        found.append(Problem(f"{where}.studio_access.provider",
                             f"{studio.get('provider')!r} is not a provider in host_vars/{org}/sso.yml",
                             f"add it with `sfp-server sso add --org {org} ...`, or name one of the org's SAML or OIDC providers"))
        return found
    kind, item = provider
    if kind == "oidc":
        if not _oidc_issuer(item):
            found.append(Problem(f"{where}.studio_access.provider",
                                 f"OIDC provider {item.get('name')!r} has no issuer the front door can discover",
                                 "use a custom provider (with issuer) or keycloak (with url)"))
        if not studio.get("client_id"):
            found.append(Problem(f"{where}.studio_access.client_id", "is required for an OIDC provider",
                                 "register a client for Studio at the provider (redirect URI "
                                 f"https://HOSTNAME{OIDC_CALLBACK_PATH}) and write its id here"))
        if with_secrets and not secrets.get(STUDIO_OIDC_CLIENT_SECRET):
            found.append(Problem(f"vault of {org}: {STUDIO_OIDC_CLIENT_SECRET}", "is missing (studio_access names an OIDC provider)",
                                 f"`sfp-server secrets set --org {org} {STUDIO_OIDC_CLIENT_SECRET}` with the secret of Studio's client"))
    elif studio.get("client_id"):
        found.append(Problem(f"{where}.studio_access.client_id", "is for OIDC providers only",
                             f"remove it: {item.get('name')!r} is a SAML provider"))
    return found


def generated_secrets(cfg: Mapping[str, Any], sso: Any, values: Mapping[str, str]) -> dict[str, str]:
    """The front door's secrets the org needs and does not have yet (never a new value for one it has)."""
    out: dict[str, str] = {}
    hostname = cfg.get("hostname")
    if not hostname:
        return out
    if SESSION_SECRET not in values:
        out[SESSION_SECRET] = _random.token_urlsafe(48)
    studio = cfg.get("studio_access")
    provider = _sso_provider(sso, str(studio.get("provider"))) if isinstance(studio, Mapping) else None
    if provider is not None and provider[0] == "saml" and STUDIO_SAML_SP_KEY not in values:
        key, cert = _sp_key_and_cert(str(hostname))
        out[STUDIO_SAML_SP_KEY], out[STUDIO_SAML_SP_CERT] = key, cert
    return out


def _sp_key_and_cert(hostname: str) -> tuple[str, str]:
    """A key pair for Studio's SAML service provider, with the self-signed certificate its metadata
    publishes (SAML trusts the certificate in the metadata, not a CA)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Studio SP {hostname}")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def _saml_metadata(name: str, sso: Mapping[str, Any], inventory_dir: Path | None) -> str:
    """The IdP's metadata, fetched or read and checked exactly as for Auth (signature against the
    pinned certificate, entity id, expiry); ValueError with the findings when it fails."""
    settings = sso_config.parse_sso_settings(sso, where=f"{SSO_VAR}")
    provider = next(p for p in settings.saml if p.name == name)
    report = sso_saml.validate_provider_metadata(provider, base_dir=inventory_dir, allow_hosts=settings.allow_hosts,
                                                 allow_insecure_loopback=sso.get(sso_config.LOOPBACK_KEY) is True)
    if not report.ok or report.raw is None:
        raise ValueError(f"SAML metadata of {name!r}: " + "; ".join(str(f) for f in report.findings.errors))
    return report.raw.decode("utf-8")


def role_inputs(org: str, cfg: Mapping[str, Any], hostvars: Mapping[str, Any], secrets: Mapping[str, Any], *,
                inventory_dir: Path | None, strict: bool = True) -> dict[str, Any]:
    """The `frontdoor__*` inputs of one org. strict=False (removal) never fails and fetches nothing."""
    hostname = cfg.get("hostname") or ""
    bind = str(cfg.get("bind_address") or "127.0.0.1")
    ports = cfg.get("ports") if isinstance(cfg.get("ports"), Mapping) else {}
    inputs: dict[str, Any] = {
        "frontdoor__state": "present" if hostname else "absent",
        "frontdoor__org": org,
        "frontdoor__hostname": hostname,
        # A wildcard binding is reached on loopback from the front door on the same host.
        "frontdoor__upstream": f"http://{'127.0.0.1' if bind == '0.0.0.0' else bind}:{ports.get('api')}",
        "frontdoor__certificate": {"source": "self_signed"},
        "frontdoor__studio": {"access": "basic"},
    }
    if not hostname:
        return inputs
    if strict:
        found = problems(org, cfg, hostvars, secrets, inventory_dir=inventory_dir)
        if found:
            raise ConfigError(found, source=f"org {org}")
    tls = cfg.get("tls") or {}
    source = tls.get("source", "provided")
    certificate: dict[str, Any] = {"source": source}
    if source == "provided":
        certificate.update(cert=str(secrets.get(TLS_CERTIFICATE, "")).strip() + "\n",
                           key=str(secrets.get(TLS_PRIVATE_KEY, "")).strip() + "\n")
    elif source == "acme":
        certificate.update(directory_url=tls.get("acme_directory_url"), email=tls.get("acme_email"))
        if tls.get("acme_ca_file") and strict:
            certificate["ca"] = read_ca_file(str(tls["acme_ca_file"]), inventory_dir)
    inputs["frontdoor__certificate"] = certificate
    studio = cfg.get("studio_access")
    sso = hostvars.get(SSO_VAR) if isinstance(hostvars.get(SSO_VAR), Mapping) else {}
    provider = _sso_provider(sso, str(studio.get("provider"))) if isinstance(studio, Mapping) else None
    if not isinstance(studio, Mapping) or provider is None or not strict:
        return inputs
    kind, item = provider
    gate: dict[str, Any] = {
        "access": kind,
        "allow": {"emails": [e.lower() for e in studio.get("allow_emails") or []],
                  "groups": list(studio.get("allow_groups") or [])},
        "email_claim": studio.get("email_claim", "email"),
        "groups_claim": studio.get("groups_claim", "groups"),
        "session_secret": secrets.get(SESSION_SECRET, ""),
        "dashboard_username": secrets.get("DASHBOARD_USERNAME", ""),
        "dashboard_password": secrets.get("DASHBOARD_PASSWORD", ""),
    }
    if kind == "oidc":
        issuer = str(_oidc_issuer(item) or "")
        gate.update(issuer=issuer, client_id=studio.get("client_id"),
                    client_secret=secrets.get(STUDIO_OIDC_CLIENT_SECRET, ""),
                    scopes=list(studio.get("scopes") or ["openid", "email", "profile"]),
                    require_email_verified=bool(studio.get("require_email_verified", True)),
                    allow_insecure_loopback=bool(sso.get("allow_insecure_loopback")))
    else:
        try:
            metadata = _saml_metadata(str(item["name"]), sso, inventory_dir)
        except (ValueError, ConfigError) as exc:
            raise ConfigError([Problem(f"host_vars/{org}: sfp_org.studio_access.provider", str(exc),
                                       f"fix the provider's metadata (`sfp-server sso check --org {org}`)")],
                              source=f"org {org}") from None
        gate.update(idp_metadata=metadata, sp_key=secrets.get(STUDIO_SAML_SP_KEY, ""),
                    sp_cert=secrets.get(STUDIO_SAML_SP_CERT, ""))
    inputs["frontdoor__studio"] = gate
    return inputs
