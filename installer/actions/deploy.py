"""Install, check and remove org stacks: validate, make sure secrets exist, run the playbook."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from .. import frontdoor, runner, validate
from ..context import of_validated
from ..errors import ConfigError
from ..inventory import Inventory
from . import secrets
from .backup_keys import ensure_recovery_key


@dataclass
class OrgSummary:
    org: str
    info: dict[str, Any]


@dataclass
class DeployOutcome:
    result: runner.RunResult
    generated: dict[str, list[str]]
    orgs: list[OrgSummary]


def preflight(inv: Inventory, names: list[str], console: Console, verbose: bool = False) -> runner.RunResult:
    validate.validate(inv, names)
    return runner.run_playbook(
        "preflight.yml", inv.path, names, inv.vault_password_file, console=console, verbose=verbose
    )


def preflight_checks(result: runner.RunResult) -> dict[str, list[dict[str, str]]]:
    """Per org, the list of {check, status, detail} the preflight role reported."""
    out: dict[str, list[dict[str, str]]] = {}
    for host, reports in result.reports.items():
        checks = reports.get("checks", {}).get("msg")
        if isinstance(checks, list):
            out[host] = checks
    return out


def install(
    inv: Inventory, names: list[str], console: Console, *, check: bool = False, verbose: bool = False,
    database_only: bool = False,
) -> DeployOutcome:
    """Install or update the orgs (playbooks/site.yml). `database_only`: render everything but start
    only the database, with no SSO registration and no backup schedule (a restore's first step: its
    data goes in before any other service starts; the install after it does the rest)."""
    contexts = of_validated(inv, validate.validate(inv, names))
    generated: dict[str, list[str]] = {}
    if not check:
        # Secrets first: they are made on the controller and read back by every later run.
        for ctx in contexts:
            added = secrets.ensure(inv, ctx.name)
            added += ensure_recovery_key(ctx)  # only when sfp_org.backup is set
            if added:
                generated[ctx.name] = added
    # What the vault holds for the front door (the operator's certificate and key, Studio's client
    # secret) is checked before any host changes; validate saw only the settings when the vault was new.
    found = [p for ctx in contexts
             for p in frontdoor.problems(ctx.name, ctx.settings, ctx.hostvars, secrets.read(inv, ctx.name),
                                         inventory_dir=inv.path, with_secrets=not check)]
    if found:
        raise ConfigError(found, source=str(inv.path))
    result = runner.run_playbook(
        "site.yml", inv.path, names, inv.vault_password_file, console=console, check=check, verbose=verbose,
        extravars={"supabase_stack__start_services": ["db"]} if database_only else None,
        skip_tags=["sso", "backup", "frontdoor"] if database_only else None,
    )
    orgs = [
        OrgSummary(host, reports["org"].get("msg", {}))
        for host, reports in sorted(result.reports.items())
        if "org" in reports
    ]
    return DeployOutcome(result=result, generated=generated, orgs=orgs)


def uninstall(inv: Inventory, names: list[str], console: Console, *, purge: bool, verbose: bool = False) -> runner.RunResult:
    # Only the org names must be known: a broken sfp_org must not stop its removal.
    return runner.run_playbook(
        "uninstall.yml", inv.path, names, inv.vault_password_file,
        console=console, extravars={"sfp_purge": purge}, verbose=verbose,
    )


def parse_ps(stdout: str) -> list[dict[str, Any]]:
    """`docker compose ps --format json`: a JSON array (older Compose) or one object per line (newer)."""
    text = stdout.strip()
    if not text:
        return []
    if text.startswith("["):
        data = json.loads(text)
        return data if isinstance(data, list) else []
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def decode_slurp(res: dict[str, Any]) -> dict[str, Any] | None:
    content = res.get("content")
    if not content:
        return None
    try:
        data = json.loads(base64.b64decode(content))
    except (ValueError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
