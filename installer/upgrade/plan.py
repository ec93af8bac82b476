"""What an upgrade of one org changes, worked out before anything changes.

The roles report what the host has and what the target release would render (the `render_plan`
and `upgrade_checks` sections, installer/schema/report.yml); this module turns them and the
release catalog into an OrgPlan: images, files and services that change, the notes of every
release crossed, the pre-checks, and whether the upgrade may go ahead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .. import catalog


@dataclass(frozen=True)
class ImageChange:
    service: str
    before: str | None
    after: str | None


@dataclass
class OrgPlan:
    org: str
    current: str | None
    target: str
    postgres_before: int | None
    postgres_after: int
    images: list[ImageChange] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    diffs: dict[str, str] = field(default_factory=dict)
    env_changed: bool = False
    recreates: list[str] = field(default_factory=list)
    """Services whose definition in compose.yaml changes: Compose recreates them (a new version starts)."""
    restarts: list[str] = field(default_factory=list)
    """Services Compose will recreate (their definition in compose.yaml changes) and their dependents,
    which it stops and starts around them."""
    notes: list[tuple[str, catalog.Note]] = field(default_factory=list)
    """(release, note) of every release crossed, oldest first."""
    checks: list[dict[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Why the upgrade cannot go ahead (empty: it can)."""
    migrates: list[str] = field(default_factory=list)
    """Recreated services that migrate the database when a new version starts: a rollback restores
    the data. A dependent that only restarts runs the version it ran before and migrates nothing."""

    @property
    def no_op(self) -> bool:
        return self.current == self.target and not self.restarts and not self.files and not self.env_changed

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def major_upgrade(self) -> bool:
        return self.postgres_before is not None and self.postgres_before != self.postgres_after

    @property
    def downtime(self) -> str:
        """What clients see while the changed services restart."""
        if not self.restarts:
            return "none: no service restarts"
        if self.major_upgrade:
            return ("every API fails while the databases are dumped, the new PostgreSQL cluster is initialised and "
                    "loaded, and every service starts again (minutes per GiB of data)")
        if "db" in self.restarts:
            return "every API fails until the database and the services after it are healthy again (usually under a minute)"
        if "kong" in self.restarts:
            return "every API fails while the gateway restarts (seconds)"
        return f"requests to {', '.join(self.restarts)} fail while they restart (seconds each); the rest keeps answering"

    def as_dict(self) -> dict[str, Any]:
        return {
            "org": self.org, "current": self.current, "target": self.target,
            "postgres_major": {"before": self.postgres_before, "after": self.postgres_after},
            "images": [vars(c) for c in self.images], "files": self.files, "env_changed": self.env_changed,
            "recreates": self.recreates, "restarts": self.restarts, "migrates": self.migrates, "downtime": self.downtime,
            "notes": [{"release": r, "kind": n.kind, "text": n.text} for r, n in self.notes],
            "checks": self.checks, "problems": self.problems, "can_upgrade": self.ok, "no_op": self.no_op,
            "diffs": self.diffs,
        }


def _services(compose_text: str) -> dict[str, Any]:
    if not compose_text.strip():
        return {}
    data = yaml.safe_load(compose_text)
    services = data.get("services") if isinstance(data, dict) else None
    return services if isinstance(services, dict) else {}


def changed_services(before: str, after: str) -> list[str]:
    """Services whose definition differs between two compose files (what `up` recreates), in the
    order of the new file."""
    old, new = _services(before), _services(after)
    return [name for name, body in new.items() if old.get(name) != body] + sorted(set(old) - set(new))


def with_dependents(compose_text: str, services: list[str]) -> list[str]:
    """`services` and every service that depends on one of them, directly or not: Compose stops
    and starts a service's dependents when it recreates the service, so they restart too."""
    graph = _services(compose_text)
    out = list(services)
    grew = True
    while grew:
        grew = False
        for name, body in graph.items():
            deps = body.get("depends_on") if isinstance(body, dict) else None
            if name not in out and isinstance(deps, (dict, list)) and any(d in out for d in deps):
                out.append(name)
                grew = True
    return out


def build(org: str, target: str, image_catalog: str | None, render: dict[str, Any],
          checks: list[dict[str, str]], *, rollback: bool = False) -> OrgPlan:
    """The plan of `org` from its render_plan section (`render`) and pre-checks."""
    before = render.get("before") or {}
    current = before.get("release")
    target_release = catalog.load_release(target, image_catalog)
    plan = OrgPlan(org=org, current=current, target=target,
                   postgres_before=int(before["postgres_major"]) if before.get("postgres_major") is not None else None,
                   postgres_after=int(render["postgres_major"]), checks=list(checks))
    old_images: dict[str, str] = dict(before.get("images") or {})
    new_images: dict[str, str] = dict(render.get("images") or {})
    for service in sorted(set(old_images) | set(new_images)):
        old_ref = (old_images.get(service) or {}).get("ref") if isinstance(old_images.get(service), dict) else old_images.get(service)
        if old_ref != new_images.get(service):
            plan.images.append(ImageChange(service, old_ref, new_images.get(service)))
    plan.files = sorted(p for p in render.get("changed", []) if p != "deployed.json")
    plan.diffs = {p: d for p, d in (render.get("diffs") or {}).items() if p in plan.files}
    plan.env_changed = bool(render.get("env_changed"))
    plan.recreates = changed_services(str(render.get("compose_before") or ""), str(render["compose_after"]))
    plan.restarts = with_dependents(str(render["compose_after"]), plan.recreates)
    plan.migrates = [s for s in plan.recreates if s in target_release.migrates]

    if current is None:
        plan.problems.append(f"{org} is not installed on its host: install it (sfp-server install --org {org})")
        return plan
    known = catalog.release_ids(image_catalog)
    if current not in known:
        plan.problems.append(f"{org} runs release {current}, which this toolkit's catalog does not know")
        return plan
    newer = catalog.release_version(target) > catalog.release_version(current)
    if not rollback and not newer and current != target:
        plan.problems.append(f"{target} is older than {current}, which {org} runs: an upgrade only goes forward "
                             f"(`sfp-server upgrade --org {org} --rollback` returns to the release before the last upgrade)")
    if plan.major_upgrade and not rollback and (plan.postgres_before or 0) > plan.postgres_after:
        plan.problems.append(f"{target} runs PostgreSQL {plan.postgres_after}, older than the {plan.postgres_before} "
                             f"{org} runs: a major only goes forward (`sfp-server upgrade --org {org} --rollback` returns "
                             "to the cluster kept from before the last upgrade)")
    for release in catalog.releases_between(current, target, image_catalog) if newer else []:
        plan.notes += [(release.id, n) for n in release.notes]
    plan.problems += [c["detail"] for c in checks if c.get("status") == "fail"]
    return plan
