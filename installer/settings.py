"""The settings model: one JSON Schema per settings area (installer/schema/<area>.yml) and what follows from it.

The schemas are the only place a default value is written. Everything else derives from them:
    check(...)          validation, one Problem per wrong field (the CLI and the playbooks say the same)
    with_defaults(...)  a value with every documented default filled in (recursively, through $ref)
    org_settings(...)   an org's validated, defaulted settings plus the machine settings
    role_inputs(...)    every `<role>__<name>` input the playbooks give the roles, from the schemas'
                        `x-role-var` annotations plus the few values computed from several settings
The role defaults, argument specs and inventory.example are generated from the same schemas
(installer/settings_docs.py), so a standalone role run sees the same defaults as an install.

Foundation module: it imports only the standard library, yaml, jsonschema, referencing and
installer.errors, so every layer (and the playbooks' filter plugins) may import it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .errors import ConfigError, Problem, SfpError

ORG_VAR = "sfp_org"
SECRETS_VAR = "sfp_org_secrets"
# Beside the secrets in the same vault file: when each was made or last changed (UTC stamps).
SECRET_AGES_VAR = "sfp_org_secret_ages"
_METRIC_LABEL = re.compile(r"[A-Za-z0-9_]{1,128}")
SSO_VAR = "sfp_org_sso"
ROLE_VAR = "x-role-var"
ROLE_DEFAULTS_VAR = "x-role-defaults-var"
"""Role variables that carry a property's schema default itself (e.g. the per-service resource
limits a standalone role run merges its overrides over), not the org's value."""

# No setting is more than one line of text. A line break or another control character in a URL,
# a name or an address would split the line of the file it is rendered into (compose.yaml, .env,
# the cron line, a mail header); schema patterns cannot refuse it, as their `$` matches before a
# final newline.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MISSING = object()
EMPTY: dict[str, Any] = {"object": {}, "array": []}


# Secrets the stack's .env never gets (role_inputs).
NOT_IN_STACK_ENV = ("BACKUP_", "TLS_", "FRONTDOOR_", "STUDIO_")


def empty_of(node: Mapping[str, Any]) -> Any:
    """The empty value a role takes as "none" for an object or array setting (MISSING otherwise)."""
    kind = node.get("type")
    return copy.deepcopy(EMPTY[kind]) if isinstance(kind, str) and kind in EMPTY else MISSING


# -- the schemas ------------------------------------------------------------------------------------
def schema_names() -> list[str]:
    return sorted(p.name.removesuffix(".yml") for p in resources.files("installer.schema").iterdir()
                  if p.name.endswith(".yml"))


@cache
def schema(name: str) -> dict[str, Any]:
    """The schema of one settings area (machine, org, backup, sso, logs), as loaded from its YAML."""
    try:
        text = resources.files("installer.schema").joinpath(f"{name}.yml").read_text()
    except FileNotFoundError:
        raise SfpError(f"no settings schema {name!r}", f"one of: {', '.join(schema_names())}") from None
    # libyaml's loader where PyYAML has it: the CLI loads schemas at start-up, and the pure-Python
    # loader took most of that time (tens of milliseconds per command).
    loaded: dict[str, Any] = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return loaded


@cache
def registry() -> Registry[Any]:
    """Every schema by its file name, so `$ref: backup.yml` in org.yml resolves to the backup schema."""
    pairs = [(f"{n}.yml", Resource.from_contents(schema(n), default_specification=DRAFT202012)) for n in schema_names()]
    return Registry().with_resources(pairs)


@cache
def format_checker() -> FormatChecker:
    """jsonschema's checks of `format`; "uri" needs an RFC 3986 parser (rfc3986-validator), without
    which jsonschema would skip every URL check silently, so its absence is an error."""
    checker = FormatChecker()
    if "uri" not in checker.checkers:
        raise SfpError("URL checks are unavailable: the package rfc3986-validator is not installed",
                       "reinstall sfp-server (`pip install sfp-server` installs it), or `pip install rfc3986-validator`")
    return checker


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name), registry=registry(), format_checker=format_checker())


def warm() -> None:
    """Load and compile every schema now (what the caches above keep). ansible-playbook runs each task
    in a forked worker: loaded once in its main process (callback plugin sfp_settings_warm), the
    schemas are inherited by every worker instead of being parsed again for each task of each org
    (measured: a quarter of a no-change install)."""
    for name in schema_names():
        _validator(name)


# -- validation --------------------------------------------------------------------------------------
def _field(path: list[Any] | Any) -> str:
    return ".".join(str(p) for p in path)


def _problem(where: str, var: str, err: ValidationError) -> Problem:
    loc = _field([var, *err.absolute_path]) if var else _field(list(err.absolute_path))
    if err.validator == "additionalProperties":
        allowed = sorted((err.schema.get("properties") or {}).keys())
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        return Problem(f"{where}: {loc}", f"unknown key {', '.join(map(repr, extra))}", f"allowed keys: {', '.join(allowed)}")
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        desc = ((err.schema.get("properties") or {}).get(missing) or {}).get("description", "") or err.schema.get("x-hint", "")
        return Problem(f"{where}: {_field([*([var] if var else []), *err.absolute_path, missing])}", "is required", desc.strip() or None)
    if "propertyNames" in err.schema_path:
        allowed = err.schema.get("enum") or []
        return Problem(f"{where}: {loc}", f"unknown service {err.instance!r}", f"one of: {', '.join(allowed)}")
    description = (err.schema.get("description") or "").strip() or None
    if err.validator == "format":
        return Problem(f"{where}: {loc}", f"{err.instance!r} is not a valid {err.validator_value}", description)
    if err.validator == "pattern":
        return Problem(f"{where}: {loc}", f"{err.instance!r} is not accepted here", description or f"it must match {err.validator_value}")
    return Problem(f"{where}: {loc}", err.message, description)


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


def check(where: str, var: str, value: Any, name: str) -> list[Problem]:
    """Every problem of `value` against schema `name`, each named `<where>: <var>.<field>`."""
    errors = sorted(_validator(name).iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [_problem(where, var, e) for e in errors]
    return problems + _control_characters(where, [var] if var else [], value)


# -- defaults ----------------------------------------------------------------------------------------
def resolve(node: Any, resolver: Any) -> tuple[dict[str, Any], Any]:
    """Follow `$ref` (to another area's file or within one) until a schema without it."""
    while isinstance(node, dict) and "$ref" in node:
        resolved = resolver.lookup(node["$ref"])
        # Keywords beside $ref (description, default, x-role-var) annotate the reference itself.
        beside = {k: v for k, v in node.items() if k != "$ref"}
        node, resolver = {**resolved.contents, **beside}, resolved.resolver
    return (node if isinstance(node, dict) else {}), resolver


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = copy.deepcopy(base)
        for key, value in over.items():
            out[key] = _merge(out[key], value) if key in out else copy.deepcopy(value)
        return out
    return copy.deepcopy(over)


def _fill(node: Any, resolver: Any, value: Any) -> Any:
    node, resolver = resolve(node, resolver)
    if isinstance(value, dict) and isinstance(node.get("default"), dict):
        # An object given in part keeps the defaults of what it leaves out (resources.db: {cpus: 4}).
        value = _merge(node["default"], value)
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for key, sub in (node.get("properties") or {}).items():
        if key in out:
            out[key] = _fill(sub, resolver, out[key])
            continue
        default = derived_default(sub, resolver)
        if default is not MISSING:
            out[key] = default
    return out


def derived_default(node: Any, resolver: Any) -> Any:
    """A property's default: its own `default` (filled further), else, for an object that needs no
    key, the object its properties' defaults make up (so `auth` absent still means every auth default).
    An object with required keys (smtp, backup.store) has none: it exists only when written."""
    node, resolver = resolve(node, resolver)
    if "default" in node:
        return _fill(node, resolver, copy.deepcopy(node["default"]))
    if node.get("type") == "object" and not node.get("required") and node.get("properties"):
        filled = _fill(node, resolver, {})
        return filled if filled else MISSING
    return MISSING


def root_resolver(name: str) -> Any:
    return registry().resolver(base_uri=f"{name}.yml")


def with_defaults(name: str, value: Any) -> Any:
    """`value` (valid against schema `name`) with every documented default filled in."""
    return _fill(schema(name), root_resolver(name), copy.deepcopy(value))


def default_of(name: str, *path: str) -> Any:
    """The default the schema documents for one property (KeyError when it has none); a property
    without one of its own takes it from the nearest enclosing default (resources.db.memory)."""
    nodes = [resolve(schema(name), root_resolver(name))]
    for key in path:
        node, resolver = nodes[-1]
        nodes.append(resolve((node.get("properties") or {})[key], resolver))
    for depth in range(len(path), 0, -1):
        found = dig(derived_default(*nodes[depth]), path[depth:])
        if found is not MISSING:
            return found
    raise KeyError(".".join(path))


def role_vars(name: str) -> Iterator[tuple[tuple[str, ...], dict[str, Any], Any]]:
    """(path, property schema, resolver) of every property of schema `name` that names role variables."""
    def walk(node: Any, resolver: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict[str, Any], Any]]:
        node, resolver = resolve(node, resolver)
        if ROLE_VAR in node or ROLE_DEFAULTS_VAR in node:
            yield path, node, resolver
        for key, sub in (node.get("properties") or {}).items():
            yield from walk(sub, resolver, (*path, key))
    yield from walk(schema(name), root_resolver(name), ())


def names(node: Mapping[str, Any], keyword: str = ROLE_VAR) -> list[str]:
    value = node.get(keyword) or []
    return [value] if isinstance(value, str) else list(value)


# -- PostgreSQL sizing --------------------------------------------------------------------------------
_UNITS = {"k": 1, "m": 1024, "g": 1024 * 1024}
# Shares of the db container's memory limit, as PostgreSQL's own tuning guidance has them: a quarter
# for its buffers, three quarters assumed available as cache (its buffers plus the kernel's), and a
# quarter shared out as per-operation sort/hash memory over the connections.
SHARED_BUFFERS_SHARE = 0.25
EFFECTIVE_CACHE_SHARE = 0.75
WORK_MEM_SHARE = 0.25
WORK_MEM_FLOOR_KB = 64  # PostgreSQL's own minimum


def memory_kb(size: str) -> int:
    """A Docker memory size (512m, 2g, 1.5g) in kB."""
    found = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([kmg])", size.strip().lower())
    if not found:
        raise SfpError(f"{size!r} is not a memory size", "write it like 512m or 2g")
    return int(float(found.group(1)) * _UNITS[found.group(2)])


def pg_size(kb: int) -> str:
    """kB as a PostgreSQL size setting, in MB when it is a whole number of them."""
    return f"{kb // 1024}MB" if kb % 1024 == 0 else f"{kb}kB"


def postgres_tuning(db_memory: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The org's PostgreSQL settings: what it sets, the rest sized from the db memory limit."""
    memory = memory_kb(db_memory)
    out = dict(given)
    out.setdefault("max_connections", default_of("org", "postgres", "max_connections"))
    out.setdefault("shared_buffers", pg_size(math.floor(memory * SHARED_BUFFERS_SHARE)))
    out.setdefault("effective_cache_size", pg_size(math.floor(memory * EFFECTIVE_CACHE_SHARE)))
    out.setdefault("work_mem", pg_size(max(WORK_MEM_FLOOR_KB, math.floor(memory * WORK_MEM_SHARE / int(out["max_connections"])))))
    return out


# -- the org model --------------------------------------------------------------------------------------
def machine_names() -> list[str]:
    return sorted((schema("machine").get("properties") or {}).keys())


def machine_settings(hostvars: Mapping[str, Any]) -> dict[str, Any]:
    """The machine settings (`sfp_*`) an org's host has, with their defaults."""
    given = {k: hostvars[k] for k in machine_names() if k in hostvars}
    out: dict[str, Any] = with_defaults("machine", given)
    return out


def org_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """`sfp_org` (valid) with every default applied, including the computed ones."""
    cfg: dict[str, Any] = with_defaults("org", dict(raw))
    if cfg.get("hostname"):
        # Behind the TLS front door the org is reached at its hostname (validate refuses another public_url).
        cfg.setdefault("public_url", f"https://{cfg['hostname']}")
    cfg.setdefault("site_url", cfg.get("public_url"))
    given = dig(cfg, ("resources", "db", "memory"))
    db_memory = str(default_of("org", "resources", "db", "memory") if given is MISSING else given)
    # Before validation (cross-org checks read every org) a wrong size stays as written: validation names it.
    with contextlib.suppress(SfpError, TypeError, ValueError, ZeroDivisionError):
        cfg["postgres"] = postgres_tuning(db_memory, cfg.get("postgres") or {})
    return cfg


def problems(org_name: str, hostvars: Mapping[str, Any]) -> list[Problem]:
    """The schema problems of an org's settings (`sfp_org` and the machine settings)."""
    where = f"host_vars/{org_name}"
    raw = hostvars.get(ORG_VAR)
    if raw is None:
        return [Problem(f"{where}: {ORG_VAR}", "is missing", f"create {where}/main.yml with an `{ORG_VAR}:` mapping (see inventory.example)")]
    if not isinstance(raw, Mapping):
        return [Problem(f"{where}: {ORG_VAR}", "must be a mapping", "see inventory.example")]
    found = check(where, ORG_VAR, raw, "org")
    machine = {k: hostvars[k] for k in machine_names() if k in hostvars}
    return found + check(f"settings of {org_name}", "", machine, "machine")


def org_settings(org_name: str, hostvars: Mapping[str, Any], strict: bool = True) -> dict[str, Any]:
    """{"org": defaulted sfp_org, "machine": defaulted sfp_* settings}; ConfigError when invalid
    (strict=False: as far as the settings allow, for removing an org whatever its settings say)."""
    found = problems(org_name, hostvars)
    if found and strict:
        raise ConfigError(found, source=f"org {org_name}")
    raw = hostvars.get(ORG_VAR)
    machine = {k: plain(hostvars[k]) for k in machine_names() if k in hostvars}
    return {"org": org_config(plain(raw) if isinstance(raw, Mapping) else {}), "machine": machine_settings(machine)}


def org_dir(base_dir: str, org_name: str) -> str:
    return f"{base_dir.rstrip('/')}/orgs/{org_name}"


def project(org_name: str) -> str:
    """The Compose project name: every container, network and volume of the org carries it."""
    return f"sfp-{org_name}"


def dig(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return MISSING
        value = value[key]
    return value


def _mapped(area: str, root: Any, inputs: dict[str, Any]) -> None:
    for path, node, resolver in role_vars(area):
        for var in names(node, ROLE_DEFAULTS_VAR):
            default = derived_default(node, resolver)
            if default is not MISSING:
                inputs[var] = default
        value = dig(root, path)
        if value is MISSING:  # inside a block the org does not have (backup.schedule without backup)
            value = derived_default(node, resolver)
        if value is MISSING:
            # Not written and no default (smtp, backup): the empty value the role takes as "none".
            value = empty_of(node)
        if value is MISSING:
            continue
        for var in names(node):
            inputs[var] = copy.deepcopy(value)


def role_inputs(org_name: str, hostvars: Mapping[str, Any], strict: bool = True) -> dict[str, Any]:
    """Every `<role>__<name>` setting input of the site, status and uninstall playbooks for one org.

    The mapped ones come from the schemas' `x-role-var`; the rest are computed here, once, from
    several settings (directories, project, the ports preflight probes). Their names are
    input_names(); playbooks/vars/org.yml hands each to the roles.
    """
    model = org_settings(org_name, hostvars, strict=strict)
    cfg, machine = model["org"], model["machine"]
    inputs: dict[str, Any] = {}
    _mapped("machine", machine, inputs)
    _mapped("org", cfg, inputs)
    directory = org_dir(str(machine["sfp_base_dir"]), org_name)
    bind = str(cfg.get("bind_address"))
    ports = cfg.get("ports") if isinstance(cfg.get("ports"), dict) else {}
    secrets = plain(hostvars.get(SECRETS_VAR) or {})
    inputs.update({
        "supabase_stack__org": org_name,
        "supabase_stack__org_dir": directory,
        "supabase_stack__project": project(org_name),
        # The stack's .env gets every secret but the backup job's (BACKUP_*): the recovery key opens
        # every set and must not sit on the host beside the data; the job's own config carries the
        # signing key, the S3 keys and the recipient it needs (roles/backup). Nor the front door's
        # (TLS key, session key, Studio's SSO client): no service of the stack reads them.
        "supabase_stack__secrets": {k: v for k, v in secrets.items() if not str(k).startswith(NOT_IN_STACK_ENV)},
        "preflight__org": org_name,
        "preflight__project": project(org_name),
        "preflight__ports": sorted(p for p in ports.values() if isinstance(p, int)),
        "supabase_sso__org": org_name,
        "supabase_sso__settings": plain(hostvars.get(SSO_VAR) or {}),
        "supabase_sso__secrets": secrets,
        # The admin API is called from the org's host: a wildcard binding is reached on loopback.
        "supabase_sso__api_url": f"http://{'127.0.0.1' if bind == '0.0.0.0' else bind}:{ports.get('api')}",
        "supabase_sso__compose_file": f"{directory}/compose.yaml",
        "backup__org": org_name,
        "backup__org_dir": directory,
        "backup__secrets": secrets,
        # Stored in each set, so that a restore brings back when each secret was made.
        "backup__secret_ages": {k: str(v) for k, v in plain(hostvars.get(SECRET_AGES_VAR) or {}).items()},
        # Stored in each set so that a restore knows the org as it was written.
        "backup__org_config": plain(hostvars.get(ORG_VAR) or {}),
    })
    # Optional paths whose default follows from the org (the schema's description says which).
    inputs.setdefault("backup__metrics_dir", org_path_default("backup", "paths.metrics_dir", org=org_name, org_dir=directory))
    inputs.setdefault("backup__env_file", org_path_default("backup", "paths.env_file", org=org_name, org_dir=directory))
    inputs.setdefault("supabase_stack__secrets_metrics_dir", org_path_default("org", "secrets.metrics_dir", org=org_name,
                                                                              org_dir=directory))
    inputs["supabase_stack__secret_ages"] = secret_epochs(plain(hostvars.get(SECRET_AGES_VAR) or {}))
    return inputs


def secret_epochs(stamps: Any) -> dict[str, int]:
    """The vault's secret ages (name -> UTC stamp) as Unix times for the Prometheus textfile. The
    names become label values: only plain names pass, and a stamp that does not parse is left out."""
    out: dict[str, int] = {}
    for name, stamp in (stamps.items() if isinstance(stamps, Mapping) else ()):
        if not isinstance(name, str) or not _METRIC_LABEL.fullmatch(name) or not isinstance(stamp, str):
            continue
        try:
            at = datetime.fromisoformat(stamp)
        except ValueError:
            continue
        if at.tzinfo is not None:
            out[name] = int(at.timestamp())
    return dict(sorted(out.items()))


def org_path_default(name: str, dotted: str, *, org: str, org_dir: str) -> str:
    """The default of a field that follows from the org (`x-default-template` in the schema)."""
    node = schema(name)
    for key in dotted.split("."):
        node = node["properties"][key]
    return str(node["x-default-template"]).format(org=org, org_dir=org_dir.rstrip("/"))


def input_names() -> list[str]:
    """The names role_inputs returns for every org (whatever its settings)."""
    example = {ORG_VAR: {"release": "x", "public_url": "http://x", "ports": {"api": 1, "postgres": 2, "pooler_transaction": 3}}}
    return sorted(role_inputs("example", example, strict=False))


def plain(value: Any) -> Any:
    """Ansible's wrapped strings and lazy mappings as plain Python data (JSON round trip)."""
    return json.loads(json.dumps(value, default=str))
