"""Validation of the inventory before anything runs: schema first, then what a schema cannot say.

Every problem is collected and reported at once, each naming the file and field and the fix,
so an operator fixes the inventory in one pass instead of one error per run.
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from functools import cache
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from . import catalog
from .errors import ConfigError, Problem, SfpError
from .inventory import MACHINE_DEFAULTS, ORG_GROUP, ORG_VAR, SECRETS_VAR, Inventory, Org

# An org name becomes a DNS label (host names), a Compose project and container names.
ORG_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
EMAIL = re.compile(r"[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")  # fullmatch: `$` would let a final newline by
# No setting is more than one line of text. A line break or another control character in a URL,
# a name or an address would split the line of the file it is rendered into (compose.yaml, .env,
# the cron line, a mail header); schema patterns cannot refuse it, as their `$` matches before a
# final newline.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Variables the toolkit reads besides the machine settings; any other `sfp_*` is most likely a typo.
KNOWN_SFP_VARS = {ORG_VAR, SECRETS_VAR, "sfp_machine", "sfp_org_sso", *MACHINE_DEFAULTS}


@cache
def schema(name: str) -> dict[str, Any]:
    text = resources.files("installer.schema").joinpath(f"{name}.yml").read_text()
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def _field(path: list[Any] | Any) -> str:
    return ".".join(str(p) for p in path)


def _schema_problem(where: str, var: str, err: ValidationError, sub_schema: dict[str, Any]) -> Problem:
    loc = _field([var, *err.absolute_path])
    if err.validator == "additionalProperties":
        allowed = sorted((err.schema.get("properties") or {}).keys())
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        return Problem(f"{where}: {loc}", f"unknown key {', '.join(map(repr, extra))}", f"allowed keys: {', '.join(allowed)}")
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        desc = ((err.schema.get("properties") or {}).get(missing) or {}).get("description", "")
        return Problem(f"{where}: {_field([var, *err.absolute_path, missing])}", "is required", desc.strip() or None)
    if "propertyNames" in err.schema_path:
        allowed = err.schema.get("enum") or []
        return Problem(f"{where}: {loc}", f"unknown service {err.instance!r}", f"one of: {', '.join(allowed)}")
    description = (err.schema.get("description") or "").strip() or None
    if err.validator == "format":
        return Problem(f"{where}: {loc}", f"{err.instance!r} is not a valid {err.validator_value}", description)
    if err.validator == "pattern":
        return Problem(f"{where}: {loc}", f"{err.instance!r} is not accepted here", description or f"it must match {err.validator_value}")
    return Problem(f"{where}: {loc}", err.message, description)


@cache
def format_checker() -> FormatChecker:
    """jsonschema's checks of `format`; "uri" needs an RFC 3986 parser (rfc3986-validator), without
    which jsonschema would skip every URL check silently, so its absence is an error."""
    checker = FormatChecker()
    if "uri" not in checker.checkers:
        raise SfpError("URL checks are unavailable: the package rfc3986-validator is not installed",
                       "reinstall sfp-server (`pip install sfp-server` installs it), or `pip install rfc3986-validator`")
    return checker


def _control_characters(where: str, path: list[Any], value: Any) -> list[Problem]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _control_characters(where, [*path, k], v)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _control_characters(where, [*path, i], v)]
    found = CONTROL.search(value) if isinstance(value, str) else None
    if found:
        # The value is not shown: a block such as backup.store.credentials may hold a secret.
        return [Problem(f"{where}: {_field(path)}", f"contains a line break or another control character "
                        f"({found.group()!r} at position {found.start()})", "write it on one line, without control characters")]
    return []


def check_schema(where: str, var: str, value: Any, name: str) -> list[Problem]:
    validator = Draft202012Validator(schema(name), format_checker=format_checker())
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    problems = [_schema_problem(where, var, e, schema(name)) for e in errors]
    return problems + _control_characters(where, [var] if var else [], value)


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
    if raw is None:
        problems.append(Problem(f"{where}: {ORG_VAR}", "is missing", f"create {where}/main.yml with an `{ORG_VAR}:` mapping (see inventory.example)"))
        return problems
    if not isinstance(raw, dict):
        problems.append(Problem(f"{where}: {ORG_VAR}", "must be a mapping", "see inventory.example"))
        return problems
    problems += check_schema(where, ORG_VAR, raw, "org")

    machine = {k: v for k, v in org.hostvars.items() if k in MACHINE_DEFAULTS}
    problems += check_schema(f"settings of {org.name}", "", machine, "machine")
    for key in sorted(k for k in org.hostvars if k.startswith("sfp_") and k not in KNOWN_SFP_VARS):
        problems.append(Problem(f"settings of {org.name}: {key}", "unknown setting", f"known settings: {', '.join(sorted(KNOWN_SFP_VARS))}"))

    release = raw.get("release")
    if isinstance(release, str) and release not in catalog.release_ids():
        problems.append(Problem(f"{where}: {ORG_VAR}.release", f"unknown release {release!r}", f"supported releases: {', '.join(catalog.release_ids())}"))
    image_catalog = org.settings.get("sfp_image_catalog")
    if isinstance(image_catalog, str) and image_catalog not in catalog.image_catalog_ids():
        problems.append(Problem(f"settings of {org.name}: sfp_image_catalog", f"unknown image catalog {image_catalog!r}", f"one of: {', '.join(catalog.image_catalog_ids())}"))

    smtp = raw.get("smtp")
    if isinstance(smtp, dict) and isinstance(smtp.get("admin_email"), str) and not EMAIL.fullmatch(smtp["admin_email"]):
        problems.append(Problem(f"{where}: {ORG_VAR}.smtp.admin_email", f"{smtp['admin_email']!r} is not an email address", "write it as name@domain.example"))

    from . import sso_inventory  # single sign-on (host_vars/<org>/sso.yml), checked by the SSO library

    problems += sso_inventory.check(org.name, org.hostvars)
    from . import backup_inventory  # sfp_org.backup, checked field by field by the backup library

    problems += backup_inventory.check(org.name, org.hostvars)

    ports = raw.get("ports")
    if isinstance(ports, dict):
        seen: dict[Any, str] = {}
        for key, port in ports.items():
            if port in seen:
                problems.append(Problem(f"{where}: {ORG_VAR}.ports.{key}", f"port {port} is also used for {seen[port]}", "give each published port its own number"))
            seen[port] = key
    return problems


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

