"""Re-validate every IdP an org is configured with; meant for a daily cron job.

`check_all` never raises for IdP problems: it returns a report whose `exit_status` the caller
may use (0 all good, 1 warnings only, 2 errors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import requests

from installer.sso import _net
from installer.sso.config import SsoSettings
from installer.sso.oidc import validate_oidc_provider
from installer.sso.report import Findings
from installer.sso.saml import validate_provider_metadata


@dataclass
class IdpCheck:
    kind: Literal["saml", "oidc", "certificate"]
    name: str
    source: str  # metadata URL/file or issuer
    findings: Findings = field(default_factory=Findings)
    fingerprint: str | None = None  # SAML: current metadata fingerprint (store it after apply)
    drifted: bool = False
    signature: str | None = None  # SAML: unsigned / signed, not verified / verified with the pinned certificate

    @property
    def status(self) -> Literal["ok", "warning", "error"]:
        return "error" if self.findings.errors else "warning" if self.findings.warnings else "ok"


@dataclass
class CheckReport:
    items: list[IdpCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(i.status != "error" for i in self.items)

    @property
    def exit_status(self) -> int:
        statuses = {i.status for i in self.items}
        return 2 if "error" in statuses else 1 if "warning" in statuses else 0

    def text(self) -> str:
        """Plain-text summary (cron mails it); no secrets are ever part of it."""
        if not self.items:
            return "no SSO identity providers configured"
        lines: list[str] = []
        for i in self.items:
            lines.append(f"[{i.status.upper()}] {i.kind} {i.name} ({i.source})")
            if i.signature:
                lines.append(f"    metadata signature: {i.signature}")
            lines += [f"    {f}" for f in i.findings.items]
        return "\n".join(lines)


def check_all(
    settings: SsoSettings,
    *,
    applied_fingerprints: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    timeout: float = _net.DEFAULT_TIMEOUT,
    allow_insecure_loopback: bool = False,
    now: datetime | None = None,
    session: requests.Session | None = None,
) -> CheckReport:
    """Check each SAML metadata (reachability, certificates, validUntil, entityID, drift) and
    each OIDC provider with a known issuer (discovery, issuer, JWKS, clock skew). A SAML provider
    with a pinned certificate (metadata_cert) must have metadata whose signature verifies with it.

    `applied_fingerprints` maps SAML provider name -> the fingerprint (or raw sha256) recorded
    when its metadata was last applied to GoTrue; a difference is reported as drift.
    `base_dir` resolves relative metadata_file paths (the inventory directory).
    """
    report = CheckReport()
    applied = applied_fingerprints or {}
    for s in settings.saml:
        r = validate_provider_metadata(s, base_dir=base_dir, allow_hosts=settings.allow_hosts, timeout=timeout,
                                       allow_insecure_loopback=allow_insecure_loopback, now=now, session=session)
        item = IdpCheck("saml", s.name, r.source, r.findings, r.fingerprint,
                        signature=r.signature.detail if r.signature else None)
        stored = applied.get(s.name)
        if stored and r.fingerprint and stored not in (r.fingerprint, r.raw_sha256):
            item.drifted = True
            item.findings.warning(
                "metadata changed since it was last applied to GoTrue (entityID, SSO endpoints or signing "
                "certificates differ)",
                "review the change with the IdP administrator, then re-apply SSO for this org")
        report.items.append(item)
    for o in settings.oidc:
        issuer = o.discovery_issuer
        if not issuer:
            item = IdpCheck("oidc", o.name, o.provider)
            report.items.append(item)  # plain OAuth2 built-in (github, ...): nothing to discover
            continue
        orep = validate_oidc_provider(issuer, allow_insecure_loopback=allow_insecure_loopback, timeout=timeout,
                                      now=now, session=session, allow_hosts=settings.allow_hosts)
        report.items.append(IdpCheck("oidc", o.name, issuer, orep.findings))
    return report
