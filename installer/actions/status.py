"""`sfp-server status`: one row per org with each service's state and health."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console

from .. import runner, validate
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
            services=services,
            error=failures.get(name),
        ))
    return out
