"""`sfp-server backup run|list|show|verify|prune`: backups of one org.

The backup runs where the org's database container and storage volume are: for an org with
`ansible_connection: local` the controller calls the job directly (installer.backup_job, with
DockerExecDatabase("sfp-<org>-db") and <org_dir>/volumes/storage); for a remote org it runs
playbooks/backup.yml, whose role runs the same job on the host. list/show/verify/prune only
talk to the object store and run on the controller.

The backup library is imported where it is used (about 220 ms of CPU on every `sfp-server` start
otherwise; see installer/actions/backup_config.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from .. import backup_job, runner
from ..context import OrgContext
from ..errors import SfpError
from .backup_config import job_config, settings
from .backup_keys import forget_unused_recovery_keys, key_material, trust
from .local_docker import container_running


def run(ctx: OrgContext, console: Console, *, verbose: bool = False,
        progress: Callable[[str], None] | None = None, prune: bool = True) -> backup_job.JobOutcome:
    """One backup set now; then the retention, unless `prune` is false (it runs with the next set)."""
    settings(ctx, encrypting=True)  # a clear error before anything starts
    if ctx.transport.local:
        return backup_job.run({**job_config(ctx), "prune": prune}, progress)
    return _run_remote(ctx, console, verbose, prune)


def run_verified(ctx: OrgContext, console: Console, *, verbose: bool = False,
                 say: Callable[[str], None] = lambda _m: None) -> str:
    """A backup set taken and verified before a change that a failure must be able to undo
    (an upgrade, a rotation); returns its id."""
    job = run(ctx, console, verbose=verbose, progress=say)
    verify(ctx, job.set_id)
    say(f"{ctx.name}: backup {job.set_id} verified")
    return job.set_id


def _run_remote(ctx: OrgContext, console: Console, verbose: bool, prune: bool) -> backup_job.JobOutcome:
    inv, name = ctx.inventory, ctx.name
    result = runner.run_playbook("backup.yml", inv.path, [name], inv.vault_password_file, console=console,
                                 extravars={"backup__run_now": True, "backup__run_prune": prune}, verbose=verbose)
    runner.require_success(result, "backup")
    out = str(result.reports.get(name, {}).get("backup", {}).get("stdout", ""))
    try:
        data = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SfpError(f"the backup on {name}'s host printed no summary", "run it with -v to see the task output") from None
    return backup_job.JobOutcome(org=name, set_id=data["set_id"], size=data["size_bytes"], seconds=data["duration_seconds"],
                                 objects=data["objects"], pruned=data.get("pruned", []), warnings=data.get("warnings", []))


def list_sets(ctx: OrgContext) -> list[Any]:
    from ..backup import api  # lazy: see the module docstring

    return api.list_sets(settings(ctx).store, ctx.name, include_incomplete=True)


def show(ctx: OrgContext, set_id: str, identity_file: Path | None = None) -> Any:
    """The manifest; its signature is checked when a signing key of the org is known (else shown as unchecked)."""
    from ..backup import api  # lazy: see the module docstring

    file_keys = key_material(ctx, identity_file)[1] if identity_file is not None else []
    known = trust(ctx, file_keys)
    return api.show_set(settings(ctx, identity_file).store, ctx.name, set_id,
                        trust=known if known.public_keys else None)


def verify(ctx: OrgContext, set_id: str, identity_file: Path | None = None, allow_unsigned: bool = False) -> Any:
    from ..backup import DockerExecDatabase, api  # lazy: see the module docstring

    ident, file_keys = key_material(ctx, identity_file)
    tools = None
    if ctx.transport.local and container_running(f"{ctx.project}-db"):
        tools = DockerExecDatabase(f"{ctx.project}-db")  # adds `pg_restore --list` on every dump
    return api.verify_set(settings(ctx, identity_file).store, ctx.name, set_id, ident,
                          trust=trust(ctx, file_keys, allow_unsigned), tools=tools)


def prune(ctx: OrgContext, history: list[dict[str, Any]], dry_run: bool = False) -> Any:
    """The org's retention; `history` (deployed.json's, from `status`) names the pre-upgrade sets kept."""
    from ..backup import api  # lazy: see the module docstring
    from ..backup.retention import upgrade_pins

    s = settings(ctx)
    report = api.prune(s.store, ctx.name, s.retention, dry_run=dry_run, pinned=upgrade_pins(history))
    if not dry_run:
        # Earlier recovery keys are kept only while a set made with them is left.
        report.forgotten_keys, report.keys_kept_for = forget_unused_recovery_keys(ctx, s.store)
    return report
