"""`sfp-server status`: one row per org with each service's state and health."""

from __future__ import annotations

import base64
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console

from .. import frontdoor, runner, validate
from ..inventory import Inventory
from .deploy import decode_slurp, parse_ps


@dataclass
class ServiceState:
    service: str
    state: str
    health: str
    image: str


@dataclass
class OrgStatus:
    org: str
    machine: str
    installed: bool
    release: str | None
    image_catalog: str | None
    services: list[ServiceState] = field(default_factory=list)
    error: str | None = None
    last_backup_success: float | None = None
    """Unix time of the last successful backup (from the backup metric file), if the org has one."""
    last_backup_size_bytes: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    """Upgrades and rollbacks of the org, oldest first (deployed.json on its host)."""
    frontdoor: dict[str, Any] | None = None
    """The org at its host's TLS front door (roles/frontdoor state.json): hostname, certificate
    (source, not_after, issuer, acme renewal), studio_access; None without one."""

    @property
    def healthy(self) -> bool:
        return self.installed and bool(self.services) and all(
            s.state == "running" and s.health in ("healthy", "") for s in self.services
        )

    @property
    def verdict(self) -> str:
        if self.error:
            return "unreachable"
        if not self.installed:
            return "not installed"
        if not self.services:
            return "stopped"
        return "healthy" if self.healthy else "degraded"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict
        data["healthy"] = self.healthy
        return data


def gather(inv: Inventory, names: list[str], console: Console) -> list[OrgStatus]:
    orgs = {o.name: o for o in validate.validate(inv, names)}
    result = runner.run_playbook("status.yml", inv.path, names, inv.vault_password_file, console=console)
    failures = {host: msg for host, _task, msg in result.failures}
    out: list[OrgStatus] = []
    for name in names:
        reports = result.reports.get(name, {})
        deployed = decode_slurp(reports.get("deployed", {}))
        rows = parse_ps(str(reports.get("services", {}).get("stdout", "")))
        services = sorted(
            (
                ServiceState(
                    service=str(r.get("Service", "")),
                    state=str(r.get("State", "")),
                    health=str(r.get("Health", "")),
                    image=str(r.get("Image", "")),
                )
                for r in rows
            ),
            key=lambda s: s.service,
        )
        out.append(OrgStatus(
            org=name,
            machine=orgs[name].machine,
            installed=deployed is not None,
            release=(deployed or {}).get("release"),
            image_catalog=(deployed or {}).get("image_catalog"),
            history=list((deployed or {}).get("history") or []),
            services=services,
            error=failures.get(name),
            frontdoor=decode_slurp(reports.get("frontdoor", {})),
            **_backup_metrics(reports.get("backup_metrics", {})),
        ))
    return out


def backup_summary(row: OrgStatus) -> str:
    """'2026-11-25 03:17Z, 1.2 GiB' for the status table; '-' without a successful backup."""
    if not row.last_backup_success:
        return "-"
    size = row.last_backup_size_bytes or 0
    units = next((u, size / 1024**i) for i, u in enumerate(("B", "KiB", "MiB", "GiB", "TiB")) if size < 1024 ** (i + 1) or u == "TiB")
    return f"{time.strftime('%Y-%m-%d %H:%MZ', time.gmtime(row.last_backup_success))}, {units[1]:.1f} {units[0]}"


def _backup_metrics(res: dict[str, Any]) -> dict[str, Any]:
    """Last success time and size from the org's backup textfile metric (absent: nothing)."""
    try:
        text = base64.b64decode(res.get("content") or "").decode()
    except ValueError:
        return {}
    values = dict(re.findall(r'^(sfp_backup_last_(?:success_timestamp_seconds|size_bytes))\{[^}]*\} (\S+)$', text, re.M))
    out: dict[str, Any] = {}
    if float(values.get("sfp_backup_last_success_timestamp_seconds", 0)) > 0:
        out["last_backup_success"] = float(values["sfp_backup_last_success_timestamp_seconds"])
    if "sfp_backup_last_size_bytes" in values:
        out["last_backup_size_bytes"] = int(float(values["sfp_backup_last_size_bytes"]))
    return out


def frontdoor_summary(row: OrgStatus, now: float | None = None) -> str:
    """'acme.example.com, cert until 2027-01-05 (34 d), Studio: oidc' for the status table; '-'
    without a front door. A failed ACME renewal and a certificate within 30 days are said first."""
    door = row.frontdoor
    if not door:
        return "-"
    cert = door.get("certificate") if isinstance(door.get("certificate"), dict) else {}
    parts = [str(door.get("hostname", "?"))]
    not_after = cert.get("not_after")
    if isinstance(not_after, int | float) and not_after > 0:
        days = (not_after - (now if now is not None else time.time())) / 86400
        when = time.strftime("%Y-%m-%d", time.gmtime(not_after))
        warn = "EXPIRED " if days <= 0 else "EXPIRES SOON " if days <= frontdoor.CERT_WARNING_DAYS else ""
        parts.append(f"{warn}{cert.get('source', '?')} cert until {when} ({int(days)} d)")
    else:
        parts.append(f"{cert.get('source', '?')} cert: none served yet")
    acme = cert.get("acme") if isinstance(cert.get("acme"), dict) else None
    if acme is not None and not acme.get("renewal_ok", True):
        # When mod_md last reported the failure: where to look in Apache's error log.
        failed_at = acme.get("last_error_at")
        at = f" at {time.strftime('%Y-%m-%d %H:%MZ', time.gmtime(failed_at))}" if isinstance(failed_at, int | float) and failed_at > 0 else ""
        parts.append(f"ACME RENEWAL FAILED{at}")
    parts.append(f"Studio: {door.get('studio_access', 'basic')}")
    return ", ".join(parts)
