"""Validate an OpenID Connect provider: discovery, issuer, endpoints, JWKS, clock skew.

Issuer rule (OpenID Connect Discovery 1.0, sections 4 and 4.3): the discovery document is at
the issuer with any trailing "/" removed plus "/.well-known/openid-configuration", and the
`issuer` value in it MUST be identical to the configured issuer — no normalisation, so
"https://idp/x" and "https://idp/x/" are different issuers. GoTrue does the same
(supabase/auth v2.196.0 internal/utilities/oidc_discovery.go compares with `!=`;
internal/models/custom_oauth_provider.go GetDiscoveryURL uses TrimRight(issuer, "/")).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests

from installer.errors import SfpError
from installer.sso import _net
from installer.sso.report import Finding, Findings

REQUIRED_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")
SKEW_WARNING_SECONDS = 60.0
SKEW_ERROR_SECONDS = 300.0
SIGNING_KTY = ("RSA", "EC", "OKP")


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass
class OidcReport:
    issuer: str
    discovery_url: str
    document: dict[str, Any] | None = None
    signing_key_ids: list[str] = field(default_factory=list)
    clock_skew_seconds: float | None = None  # IdP Date header minus local time
    findings: Findings = field(default_factory=Findings)

    @property
    def ok(self) -> bool:
        return self.findings.ok

    @property
    def problems(self) -> list[Finding]:
        return self.findings.items

    def raise_for_errors(self) -> None:
        self.findings.raise_for_errors(f"OIDC provider {self.issuer}")


def validate_oidc_provider(
    issuer: str,
    *,
    allow_insecure_loopback: bool = False,
    timeout: float = _net.DEFAULT_TIMEOUT,
    now: datetime | None = None,
    session: requests.Session | None = None,
    allow_hosts: Collection[str] = (),
) -> OidcReport:
    """Check the provider at `issuer`; every problem is a finding, nothing raises.

    `allow_insecure_loopback` lets http:// URLs to 127.0.0.0/8, ::1 or localhost through (tests);
    everything else must be https. Link-local and cloud metadata-service addresses are refused
    unless their host is in `allow_hosts`. `now` overrides the local clock (tests).
    """
    report = OidcReport(issuer=issuer, discovery_url=discovery_url(issuer))
    f = report.findings

    parts = urlsplit(issuer)
    problem = _net.url_scheme_problem(issuer, "issuer", allow_insecure_loopback=allow_insecure_loopback)
    if problem:
        f.error(problem, "the issuer must be the IdP's https URL exactly as it appears in its discovery document")
        return report
    if parts.query or parts.fragment:
        f.error(f"issuer {issuer!r} has a query or fragment; OpenID issuers must not",
                "use the issuer URL without ?… or #…")
        return report

    try:
        resp = _net.http_get(report.discovery_url, what="OIDC discovery document", timeout=timeout,
                             accept="application/json", session=session,
                             allow_insecure_loopback=allow_insecure_loopback, allow_hosts=allow_hosts)
    except SfpError as exc:
        f.error(exc.message, exc.hint)
        return report
    local = now or datetime.now(UTC)
    _clock_skew(resp, local, report)

    if resp.status != 200:
        f.error(f"OIDC discovery at {report.discovery_url} answered HTTP {resp.status}",
                "check the issuer URL (for Keycloak: https://HOST/realms/REALM; for Entra ID: "
                "https://login.microsoftonline.com/TENANT/v2.0)")
        return report
    doc = _json_object(resp.body)
    if doc is None:
        f.error(f"OIDC discovery at {report.discovery_url} did not return a JSON object",
                "check that the issuer URL points at an OpenID provider, not at a login page")
        return report
    report.document = doc

    doc_issuer = doc.get("issuer")
    if doc_issuer != issuer:
        hint = (f"set the issuer to exactly {doc_issuer!r} (issuers are compared character for character, "
                "including a trailing '/')" if isinstance(doc_issuer, str) and doc_issuer.rstrip("/") == issuer.rstrip("/")
                else "the configured issuer points at a different provider or realm; copy the issuer from the IdP")
        f.error(f"issuer mismatch: configured {issuer!r}, discovery document says {doc_issuer!r}", hint)

    missing = [k for k in REQUIRED_ENDPOINTS if not isinstance(doc.get(k), str) or not doc.get(k)]
    if missing:
        f.error(f"discovery document lacks required field(s): {', '.join(missing)}",
                "GoTrue rejects such a provider; check the IdP's OpenID Connect configuration")
    for key in (*REQUIRED_ENDPOINTS, "userinfo_endpoint"):
        value = doc.get(key)
        if isinstance(value, str) and value:
            p = _net.url_scheme_problem(value, key, allow_insecure_loopback=allow_insecure_loopback)
            if p:
                f.error(p, "the IdP must publish https endpoints")

    jwks_uri = doc.get("jwks_uri")
    if isinstance(jwks_uri, str) and jwks_uri and "jwks_uri" not in missing:
        _check_jwks(jwks_uri, report, timeout=timeout, session=session,
                    allow_insecure_loopback=allow_insecure_loopback, allow_hosts=allow_hosts)
    return report


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested past the parser
        return None
    return value if isinstance(value, dict) else None


def _clock_skew(resp: _net.Response, local: datetime, report: OidcReport) -> None:
    f = report.findings
    date = resp.headers.get("date")
    if not date:
        f.warning("the IdP sent no HTTP Date header; clock skew was not checked",
                  "make sure this machine's clock is NTP-synchronised")
        return
    try:
        remote = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        f.warning(f"the IdP's HTTP Date header {date!r} cannot be parsed; clock skew was not checked")
        return
    if remote.tzinfo is None:
        remote = remote.replace(tzinfo=UTC)
    skew = (remote - local).total_seconds()
    report.clock_skew_seconds = skew
    msg = f"clock skew between this machine and the IdP is {abs(skew):.0f} s (IdP {'ahead' if skew > 0 else 'behind'})"
    hint = "synchronise this machine's clock with NTP (timedatectl set-ntp true); tokens are time-limited"
    if abs(skew) > SKEW_ERROR_SECONDS:
        f.error(msg, hint)
    elif abs(skew) > SKEW_WARNING_SECONDS:
        f.warning(msg, hint)


def _check_jwks(jwks_uri: str, report: OidcReport, *, timeout: float, session: requests.Session | None,
                allow_insecure_loopback: bool, allow_hosts: Collection[str]) -> None:
    f = report.findings
    if _net.url_scheme_problem(jwks_uri, "jwks_uri", allow_insecure_loopback=allow_insecure_loopback):
        return  # already reported
    try:
        resp = _net.http_get(jwks_uri, what="JWKS (the IdP's signing keys)", timeout=timeout,
                             accept="application/json", session=session,
                             allow_insecure_loopback=allow_insecure_loopback, allow_hosts=allow_hosts)
    except SfpError as exc:
        f.error(exc.message, exc.hint)
        return
    if resp.status != 200:
        f.error(f"JWKS at {jwks_uri} answered HTTP {resp.status}", "the IdP's jwks_uri must serve its public keys")
        return
    doc = _json_object(resp.body)
    keys = doc.get("keys") if doc is not None else None
    if not isinstance(keys, list):
        f.error(f"JWKS at {jwks_uri} is not a JSON key set ({{\"keys\": [...]}})",
                "the IdP's jwks_uri must serve a JSON Web Key Set")
        return
    for k in keys:
        if not isinstance(k, dict) or k.get("kty") not in SIGNING_KTY or k.get("use", "sig") != "sig":
            continue
        try:
            jwt.PyJWK(k)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        report.signing_key_ids.append(str(k.get("kid", "")))
    if not report.signing_key_ids:
        f.error(f"JWKS at {jwks_uri} holds no usable signing key ({len(keys)} key(s) listed)",
                "GoTrue cannot verify ID tokens without one; the IdP must publish its RSA/EC signing key(s)")
