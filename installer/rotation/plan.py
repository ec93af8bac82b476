"""The plan of one org's rotation: what changes, which services restart and which keep running,
who must be given the new values. Built from the rotate role's `rotation_plan` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .groups import Group, handed_out, names_finished, secret_names


@dataclass
class RotationPlan:
    org: str
    groups: list[Group]
    services: list[str]
    """Recreated, dependencies first: the services that read a rotated name."""
    running: list[str]
    """Every service of the org (its compose file): those not in `services` are not touched."""
    db_roles: list[str] = field(default_factory=list)
    """Database roles whose password changes (those that have one)."""
    db_stale: list[str] = field(default_factory=list)
    """Roles the vault's value does not open now: a rotation stopped half-way (`--from-vault` applies it)."""
    backup_first: bool = False
    show: str = ""
    """The command that prints a rotated value (for the clients that need it)."""
    key_file: str = ""
    """The command that prints the org's backup key file."""
    finish: bool = False
    """The plan ends the grace period of the groups' replaced values (`--finish`), it makes no new ones."""
    kept: dict[str, datetime | None] = field(default_factory=dict)
    """Group -> when the grace period of the values it keeps now ends (None: it keeps none)."""

    @property
    def names(self) -> list[str]:
        if self.finish:
            return names_finished(self.groups)
        return secret_names(self.groups)

    def grace_notes(self) -> list[str]:
        """What happens to values kept from an earlier rotation: they stop working now."""
        out = []
        for g in self.groups:
            ends = self.kept.get(g.name)
            if ends is None:
                continue
            out.append(f"what the last {g.name} rotation replaced (kept until {ends:%Y-%m-%d %H:%M} UTC) stops working "
                       "now" + ("" if self.finish else ": this rotation replaces it"))
        return out

    @property
    def untouched(self) -> list[str]:
        return [s for s in self.running if s not in self.services]

    @property
    def downtime(self) -> str:
        if not self.services:
            return "none: no service reads these secrets"
        if "db" in self.services:
            return ("connections to the database drop while it restarts (seconds); the services that read the secret "
                    "fail their requests until each is recreated and healthy again (usually under a minute); "
                    f"{', '.join(self.untouched) or 'nothing else'} keep running")
        return f"requests to {', '.join(self.services)} fail while they restart (seconds each); the rest keeps answering"

    def clients(self) -> list[str]:
        return [g.clients.format(show=" and ".join(f"`{self.show.format(name=n)}`" for n in handed_out(g)),
                                 key_file=self.key_file) for g in self.groups]

    def as_dict(self) -> dict[str, Any]:
        return {
            "org": self.org, "groups": [g.name for g in self.groups], "secrets": self.names,
            "does": {g.name: g.does for g in self.groups}, "recreates": self.services, "untouched": self.untouched,
            "db_roles": self.db_roles, "db_stale": self.db_stale, "backup_first": self.backup_first, "downtime": self.downtime,
            "clients": [] if self.finish else self.clients(),
            "breaks": [g.breaks for g in self.groups if g.breaks and not self.finish] + self.grace_notes(),
            "finish": self.finish,
            "grace": {g: (e.strftime("%Y-%m-%dT%H:%M:%SZ") if e else None) for g, e in self.kept.items()},
        }


def build(org: str, groups: list[Group], section: dict[str, Any], *, backup_first: bool, show: str,
          key_file: str = "") -> RotationPlan:
    """`section` is the role's report; names not rotated here are ignored, a malformed one raises ValueError."""
    services, roles, every = section.get("services"), section.get("db_roles"), section.get("org_services")
    stale = section.get("db_stale")
    if not all(isinstance(x, list) for x in (services, roles, every, stale)):
        raise ValueError("rotation_plan without services, org_services, db_roles or db_stale")
    assert isinstance(services, list) and isinstance(roles, list) and isinstance(every, list) and isinstance(stale, list)
    return RotationPlan(org=org, groups=list(groups), services=[str(s) for s in services], running=[str(s) for s in every],
                        db_roles=[str(r) for r in roles], db_stale=[str(r) for r in stale], backup_first=backup_first, show=show,
                        key_file=key_file)
