"""Validation of the inventory before anything runs: schema first, then what a schema cannot say.

Every problem is collected and reported at once, each naming the file and field and the fix,
so an operator fixes the inventory in one pass instead of one error per run.
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from . import backup_inventory, catalog, frontdoor, settings, sso_inventory
from .errors import ConfigError, Problem
from .inventory import ORG_GROUP, ORG_VAR, SECRET_AGES_VAR, SECRETS_VAR, Inventory, Org

# An org name becomes a DNS label (host names), a Compose project and container names.
ORG_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
EMAIL = re.compile(r"[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")  # fullmatch: `$` would let a final newline by
# Variables the toolkit reads besides the machine settings; any other `sfp_*` is most likely a typo.
KNOWN_SFP_VARS = {ORG_VAR, SECRETS_VAR, SECRET_AGES_VAR, "sfp_machine", "sfp_org_sso", *settings.machine_names()}


def check_org(org: Org) -> list[Problem]:
    where = f"host_vars/{org.name}"
    problems: list[Problem] = []
    if not ORG_NAME.match(org.name):
        problems.append(Problem(
            f"hosts.yml: {org.name}",
            "org name is not a DNS label",
            "use 1-32 characters: lower-case letters, digits and '-', starting with a letter, not ending with '-'",
        ))
    raw = org.hostvars.get(ORG_VAR)
    # The schemas (sfp_org and the machine settings): the same check a plain playbook run makes.
    problems += settings.problems(org.name, org.hostvars)
    if not isinstance(raw, dict):
        return problems
    for key in sorted(k for k in org.hostvars if k.startswith("sfp_") and k not in KNOWN_SFP_VARS):
        problems.append(Problem(f"settings of {org.name}: {key}", "unknown setting", f"known settings: {', '.join(sorted(KNOWN_SFP_VARS))}"))

    image_catalog = org.settings.get("sfp_image_catalog")
    known_catalog = isinstance(image_catalog, str) and image_catalog in catalog.image_catalog_ids()
    if isinstance(image_catalog, str) and not known_catalog:
        problems.append(Problem(f"settings of {org.name}: sfp_image_catalog", f"unknown image catalog {image_catalog!r}", f"one of: {', '.join(catalog.image_catalog_ids())}"))
    # A test image catalog's variants are releases only for orgs that use that catalog.
    releases = catalog.release_ids(image_catalog if known_catalog else None)
    release = raw.get("release")
    if isinstance(release, str) and release not in releases:
        problems.append(Problem(f"{where}: {ORG_VAR}.release", f"unknown release {release!r}", f"supported releases: {', '.join(releases)}"))

    smtp = raw.get("smtp")
    if isinstance(smtp, dict) and isinstance(smtp.get("admin_email"), str) and not EMAIL.fullmatch(smtp["admin_email"]):
        problems.append(Problem(f"{where}: {ORG_VAR}.smtp.admin_email", f"{smtp['admin_email']!r} is not an email address", "write it as name@domain.example"))

    problems += _pool_fits(where, raw)

    # single sign-on (host_vars/<org>/sso.yml), checked by the SSO library
    problems += sso_inventory.check(org.name, org.hostvars)
    # sfp_org.backup, checked field by field by the backup library
    problems += backup_inventory.check(org.name, org.hostvars)
    # sfp_org.hostname, tls and studio_access: the front door (its secrets when the vault was read)
    inventory_dir = org.hostvars.get("inventory_dir")
    problems += frontdoor.problems(org.name, org.config, org.hostvars, org.hostvars.get(SECRETS_VAR) or {},
                                   inventory_dir=Path(inventory_dir) if inventory_dir else None,
                                   with_secrets=SECRETS_VAR in org.hostvars)

    ports = raw.get("ports")
    if isinstance(ports, dict):
        seen: dict[Any, str] = {}
        for key, port in ports.items():
            if port in seen:
                problems.append(Problem(f"{where}: {ORG_VAR}.ports.{key}", f"port {port} is also used for {seen[port]}", "give each published port its own number"))
            seen[port] = key
    return problems


def _pool_fits(where: str, raw: dict[str, Any]) -> list[Problem]:
    """The pooler's server connections must leave PostgreSQL room for the services' own."""
    cfg = settings.org_config(raw)
    pooler, postgres = cfg.get("pooler"), cfg.get("postgres")
    pool = pooler.get("default_pool_size") if isinstance(pooler, dict) else None
    most = postgres.get("max_connections") if isinstance(postgres, dict) else None
    if not isinstance(pool, int) or not isinstance(most, int) or pool < most:
        return []  # fits, or a wrong type the schema check names already
    return [Problem(f"{where}: {ORG_VAR}.pooler.default_pool_size",
                    f"{pool} pooled server connections leave none of postgres.max_connections ({most}) to the other services",
                    "lower pooler.default_pool_size or raise postgres.max_connections")]


def _binds(org: Org) -> list[tuple[str, int, str]]:
    cfg = org.config
    ports = cfg.get("ports") or {}
    address = str(cfg.get("bind_address", "127.0.0.1"))
    return [(address, int(p), key) for key, p in ports.items() if isinstance(p, int)]


def _overlap(a: str, b: str) -> bool:
    # 0.0.0.0 takes the port on every address, so it clashes with any other binding of that port.
    try:
        return a == b or ipaddress.ip_address(a).is_unspecified or ipaddress.ip_address(b).is_unspecified
    except ValueError:
        return a == b


def check_cross(orgs: list[Org]) -> list[Problem]:
    """Checks across orgs: two orgs on one machine must not publish the same port."""
    problems: list[Problem] = []
    by_machine: dict[str, list[Org]] = defaultdict(list)
    for org in orgs:
        by_machine[org.machine].append(org)
    for machine, members in by_machine.items():
        taken: list[tuple[str, int, str, str]] = []
        for org in sorted(members, key=lambda o: o.name):
            for address, port, key in _binds(org):
                for other_addr, other_port, other_key, other_org in taken:
                    if port == other_port and _overlap(address, other_addr):
                        problems.append(Problem(
                            f"host_vars/{org.name}: {ORG_VAR}.ports.{key}",
                            f"port {port} clashes with org {other_org!r} ({other_key}) on machine {machine!r}",
                            "choose a port no other org on that machine publishes",
                        ))
            taken += [(a, p, k, org.name) for a, p, k in _binds(org)]
    return problems


def validate(inv: Inventory, names: list[str] | None = None) -> list[Org]:
    """Validate the named orgs (all if None) plus every cross-org rule; raise ConfigError listing all problems."""
    if not inv.org_names():
        raise ConfigError([Problem(inv.hosts_file.name, f"group {ORG_GROUP!r} has no orgs", "add at least one org under sfp_orgs (see inventory.example)")])
    everyone = inv.orgs()
    problems: list[Problem] = []
    for org in everyone:
        if names is None or org.name in names:
            problems += check_org(org)
    # Port clashes involve orgs that are not being installed too: they already hold those ports.
    problems += check_cross([o for o in everyone if isinstance(o.raw.get("ports"), dict)])
    if problems:
        raise ConfigError(problems, source=str(inv.path))
    return [o for o in everyone if names is None or o.name in names]

