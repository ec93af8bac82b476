"""`sfp-server restore`: rebuild an org from a backup set (disaster recovery).

Local and remote orgs alike: check on the controller what needs no change (the set exists and is
signed by the org's signing key, the recovery key opens it, its settings object verifies and
holds only what the toolkit writes); with --to-host move the org's entry in hosts.yml to that
machine group; refuse over an org present on its host unless --force (which first takes a safety
backup and purges it); write the set's secrets (the names the toolkit knows) back into the org's
vault (API keys keep verifying), and on a new controller what the offline key file holds
(recovery identity, signing public key); install the org (a fresh database initialised by the
stack); run installer.restore_job on the host (in process for local orgs, through
playbooks/restore.yml otherwise): stop every service but the database, restore roles, databases
and storage files with the library (which checks every object before applying anything); run
the install again and check the org is healthy.

The backup library is imported where it is used (about 220 ms of CPU on every `sfp-server` start
otherwise; see installer/actions/backup_config.py).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from .. import backup_inventory as binv
from .. import restore_job, runner
from ..context import OrgContext, resolve
from ..errors import SfpError
from ..hosts_file import move_host_in_file
from ..inventory import Inventory, Org, UnknownOrgError
from . import deploy
from . import status as status_action
from .backup_config import env_file, job_keys, plain
from .backup_keys import key_material, trust
from .backup_run import run as run_backup
from .local_docker import project_containers


@dataclass
class RestoreOutcome:
    org: str
    source_org: str
    set_id: str
    safety_set: str | None = None
    databases: list[str] = field(default_factory=list)
    storage_files: int = 0
    key_files: list[str] = field(default_factory=list)
    secrets_written: int = 0
    healthy: bool = False
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    moved_from: list[str] = field(default_factory=list)
    machine: str = ""
    ignored_secrets: list[str] = field(default_factory=list)
    """Names in the set's secrets that are not the toolkit's: not written into the vault."""


@dataclass
class Presence:
    """What of an org is on its host: its directory, its containers (name -> state)."""

    org_dir: bool
    containers: dict[str, str]

    @property
    def present(self) -> bool:
        return self.org_dir or bool(self.containers)

    def running(self, container: str) -> bool:
        return self.containers.get(container) == "running"


def presence(ctx: OrgContext, console: Console, verbose: bool = False) -> Presence:
    """Anything of the org on its host (read-only): local orgs directly, remote ones through playbooks/restore.yml."""
    if ctx.transport.local:
        return Presence(org_dir=Path(ctx.org_dir).exists(), containers=project_containers(ctx.project))
    inv = ctx.inventory
    result = runner.run_playbook("restore.yml", inv.path, [ctx.name], inv.vault_password_file, console=console,
                                 extravars={"sfp_restore_step": "check"}, verbose=verbose)
    runner.require_success(result, f"looking for {ctx.name} on its host")
    msg = result.reports.get(ctx.name, {}).get("present", {}).get("msg") or {}
    rows = [str(r) for r in msg.get("containers") or []]
    return Presence(org_dir=bool(msg.get("org_dir")), containers=dict(r.split(" ", 1) for r in rows if " " in r))


def resolve_machine(ctx: OrgContext, to_host: str | None) -> str | None:
    """The machine group to move the target org into for --to-host, or None when it is already there."""
    if to_host is None or to_host == ctx.machine:
        return None
    inv = ctx.inventory
    groups = binv.machine_groups(inv)
    if to_host not in groups:
        known = ", ".join(sorted(groups)) or "none"
        raise SfpError(f"--to-host {to_host!r} is not a machine of the inventory (machines: {known})",
                       f"add the new machine as a group under sfp_orgs in {inv.hosts_file.name} (its vars say how to "
                       "reach it, like inventory.example), then run restore again with --to-host GROUP")
    group = groups[to_host]
    return None if group in inv.groups_of(ctx.name) else group


def move_org(inv: Inventory, name: str, group: str) -> tuple[bytes, list[str]]:
    """Move the org's entry in hosts.yml into machine group `group` (comments kept); returns the old
    bytes (to revert) and the groups left."""
    return move_host_in_file(inv.hosts_file, name, group)


def config_document(store: Any, manifest: Any, ident: str) -> dict[str, Any]:
    """The set's org settings and secrets, checked against the manifest like every other object."""
    from ..backup import s3  # lazy: see the module docstring
    from ..backup.content import check_config_document
    from ..backup.keys import identity_for
    from ..backup.manifest import set_prefix
    from ..backup.verify import check_object

    key = identity_for(ident, manifest.recipient, manifest.set_id)
    entry = manifest.entry("config")
    if entry is None:
        raise SfpError(f"set {manifest.set_id} has no settings object", "restore another set")
    sink = io.BytesIO()
    problem = check_object(s3.client(store), store, set_prefix(store.prefix, manifest.org, manifest.set_id), entry, key, sink=sink)
    if problem:
        raise SfpError(f"set {manifest.set_id}: {entry.key}: {problem}; nothing was changed", "restore an older verified set")
    try:
        doc = yaml.safe_load(sink.getvalue()) or {}
    except yaml.YAMLError:
        raise SfpError(f"set {manifest.set_id}: {entry.key} is not YAML; nothing was changed", "restore an older verified set") from None
    return check_config_document(doc, manifest.org, manifest.set_id)


def check_arguments(inv: Inventory, source: str, as_org: str | None) -> str:
    """The target org's name; refuses argument combinations that cannot work before anything is read."""
    if as_org is not None and as_org == source:
        raise SfpError(f"--as-org {as_org} names the org itself", "leave --as-org out to restore the org in place")
    target_name = as_org or source
    if target_name not in inv.org_names():
        if as_org is not None:
            raise UnknownOrgError(f"--as-org {as_org!r} is not an org of the inventory",
                           f"add {as_org} to hosts.yml under the machine it should run on and write host_vars/{as_org}/main.yml "
                           "(its own ports; a backup block is optional), then run restore again")
        raise inv.unknown_org(source)
    return target_name


def source_context(target: OrgContext, source: str) -> OrgContext:
    """The org whose set is restored: itself, another org of the inventory, or (known only to the
    bucket) the target, whose backup block then locates the store and whose vault holds the keys."""
    if source == target.name or source not in target.inventory.org_names():
        return target
    return resolve(target.inventory, source)


def restore_job_config(source: OrgContext, target: OrgContext, source_name: str, set_id: str, ident: str,
                       src_settings: Any, set_trust: Any) -> dict[str, Any]:
    """What installer.restore_job needs on the target's host (holds the identity: never logged, 0600 on disk)."""
    raw = binv.block(source.hostvars)
    return {
        "org": source_name,
        "set_id": set_id,
        "identity": ident,
        "signing_public_keys": list(set_trust.public_keys),
        "allow_unsigned": bool(set_trust.allow_unsigned),
        "backup": plain(raw),
        "keys": job_keys(raw or {}, source.secrets),
        "project": target.project,
        "org_dir": target.org_dir,
        "container": f"{target.project}-db",
        "storage_dir": f"{target.org_dir}/volumes/storage",
        "jobs": src_settings.jobs,
        "env_file": env_file(target),
    }


def vault_after_restore(restored: dict[str, str], current: dict[str, str], target: Org, *,
                        same_org: bool, ident: str | None, file_keys: list[str]) -> dict[str, str]:
    """The target's vault after a restore: the set's secrets, then the target's own backup keys on top.

    Restoring an org itself from the offline key file (a new controller: no vault yet), the key
    file also brings back what it holds: the recovery identity (unless the backup block names a
    recipient, i.e. the identity is kept elsewhere) and the signing public keys, kept as previous
    keys so the org's earlier sets still verify once install makes the new host's signing key.
    """
    values = {**restored, **{k: current[k] for k in binv.VAULT_KEYS if k in current}}
    if not same_org:
        return values
    block = binv.block(target.hostvars) or {}
    if ident is not None and not values.get(binv.IDENTITY) and not block.get("recipient"):
        current, *earlier = ident.strip().splitlines()  # key_material: current first, one per line
        from ..backup.keys import recipient_of  # lazy: see the module docstring

        values[binv.IDENTITY], values[binv.RECIPIENT] = current.strip(), recipient_of(current)
        if earlier:
            values[binv.PREVIOUS_IDENTITIES] = "\n".join(e.strip() for e in earlier)
    known = binv.public_keys(values)
    earlier = [k for k in file_keys if k not in known]
    if earlier:
        previous = values.get(binv.SIGNING_PREVIOUS, "").split()
        values[binv.SIGNING_PREVIOUS] = " ".join([*previous, *earlier])
    return values


def restore_data(target: OrgContext, cfg: dict[str, Any], console: Console, *, verbose: bool = False,
                 say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The on-host step of a restore (installer.restore_job): in process for local orgs, else through playbooks/restore.yml."""
    if target.transport.local:
        return restore_job.run(cfg, say).as_dict()
    inv = target.inventory
    result = runner.run_playbook("restore.yml", inv.path, [target.name], inv.vault_password_file, console=console,
                                 extravars={"sfp_restore_step": "restore", "backup__restore_config": cfg}, verbose=verbose)
    runner.require_success(result, f"restoring the data of {target.name} on its host")
    out = str(result.reports.get(target.name, {}).get("restore", {}).get("stdout", ""))
    try:
        data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SfpError(f"the restore on {target.name}'s host printed no summary", "run it with -v to see the task output") from None
    return data


def _move(target: OrgContext, group: str, force: bool, console: Console, verbose: bool,
          outcome: RestoreOutcome, say: Callable[[str], None]) -> tuple[OrgContext, Presence]:
    """--to-host: the org's entry moves to `group` in hosts.yml (reverted when the new machine refuses)."""
    inv = target.inventory
    before, outcome.moved_from = move_org(inv, target.name, group)
    try:
        target = target.reload(check=False)
        if binv.machine_groups(target.inventory).get(target.machine) != group:
            raise SfpError(f"{target.name} is in group {group} now but its variables still name machine {target.machine!r}",
                           f"remove sfp_machine / ansible_host from host_vars/{target.name}, then run restore again")
        found = presence(target, console, verbose)
        if found.present and not force:
            raise _refuse(target.name, target.machine)
    except BaseException:
        inv.hosts_file.write_bytes(before)  # nothing changed after all
        raise
    say(f"moved {target.name} to machine group {group} in {inv.hosts_file.name} (from {', '.join(outcome.moved_from) or 'no group'}); "
        f"the old machine is not touched: if it comes back, remove {target.name}'s stack and backup schedule there "
        "before it backs up into the same bucket")
    return target, found


def restore(target: OrgContext, source: str, set_ref: str, console: Console, *, to_host: str | None = None,
            force: bool = False, identity_file: Path | None = None, allow_unsigned: bool = False,
            verbose: bool = False, say: Callable[[str], None] | None = None) -> RestoreOutcome:
    """Restore set `set_ref` of org `source` into the org `target` (itself, or --as-org)."""
    from ..backup import api  # lazy: see the module docstring
    from ..backup.content import secret_ages as set_secret_ages

    say = say or (lambda _m: None)
    started = time.monotonic()
    group = resolve_machine(target, to_host)
    # Without a move, refuse before anything else (even before reading the bucket): nothing is changed.
    found = presence(target, console, verbose) if group is None else None
    if found is not None and found.present and not force:
        raise _refuse(target.name, target.machine)
    src = source_context(target, source)
    ident, file_keys = key_material(src, identity_file)
    # A restore only decrypts: the recipient the settings require is not needed (a new controller
    # restoring with the offline key file has none in its vault yet).
    src_settings = binv.parse(source, src.hostvars, src.secrets if src is not target or source == target.name else None,
                              placeholder_recipient=True)
    if src_settings is None:
        raise SfpError(f"no backup settings to find {source}'s sets", f"add a backup block to sfp_org of {target.name}")
    store = src_settings.store
    set_trust = trust(src, file_keys, allow_unsigned)
    set_id = api.resolve_set(store, source, set_ref)
    # The signature first, before any object is read: a set anyone else wrote into the bucket stops here.
    manifest = api.show_set(store, source, set_id, trust=set_trust)
    if manifest.authenticity == "unsigned":
        say(f"WARNING: set {set_id} has no signature; restoring it only because --allow-unsigned was given")
    # Everything that can be checked before a change: the key opens the set, the settings object is intact.
    document = config_document(store, manifest, ident)
    outcome = RestoreOutcome(org=target.name, source_org=source, set_id=set_id)

    if group is not None:
        target, found = _move(target, group, force, console, verbose, outcome, say)
    assert found is not None
    outcome.machine = target.machine

    if found.present:
        if binv.configured(target.hostvars) and found.running(f"{target.project}-db"):
            say(f"safety backup of {target.name} before it is replaced")
            # No retention after it: it would prune the set about to be restored when that is an
            # earlier set of the same day (the policy keeps one a day, and the newest verified).
            outcome.safety_set = run_backup(target.reload(check=True), console, verbose=verbose, progress=say,
                                            prune=False).set_id
            say(f"safety backup {outcome.safety_set} done")
        say(f"removing {target.name} and its data on {target.machine}")
        runner.require_success(deploy.uninstall(target.inventory, [target.name], console, purge=True, verbose=verbose),
                               "uninstall")

    # Secrets first: the fresh stack is initialised with the backup's passwords and JWT secret. Only
    # the names the toolkit knows go back (even a signed set is not trusted to name vault entries).
    restored, outcome.ignored_secrets = binv.restorable(document["secrets"], target.hostvars)
    if outcome.ignored_secrets:
        say(f"warning: left out {len(outcome.ignored_secrets)} secret(s) of set {set_id} that are not the toolkit's: "
            f"{', '.join(outcome.ignored_secrets)}")
    values = vault_after_restore(restored, target.secrets, target.org, same_org=target.name == source,
                                 ident=ident if identity_file is not None else None, file_keys=file_keys)
    # The restored values keep the ages the set recorded (a secret made a year ago is a year old
    # after a disaster recovery, not new); values the target keeps as its own are not the set's.
    ages = {k: v for k, v in set_secret_ages(document, datetime.now(UTC)).items() if values.get(k) == restored.get(k)}
    target.write_secrets(values, known_ages=ages)
    outcome.secrets_written = len(restored)
    say(f"wrote {len(restored)} secrets of set {set_id} into {target.inventory.vault_file(target.name)}")

    say(f"installing {target.name} on {target.machine} (a fresh database; the other services start after the restore)")
    target = target.reload(check=False)  # re-read: the vault changed
    first = deploy.install(target.inventory, [target.name], console, verbose=verbose, database_only=True)
    runner.require_success(first.result, "install")

    cfg = restore_job_config(source_context(target, source), target, source, set_id, ident, src_settings, set_trust)
    say(f"restoring set {set_id} (every object is checked before anything is applied)")
    data = restore_data(target, cfg, console, verbose=verbose, say=say)
    outcome.databases, outcome.storage_files = list(data["databases"]), int(data["storage_files"])
    outcome.key_files = [str(k) for k in data.get("key_files") or []]
    outcome.timings = {str(k): float(v) for k, v in (data.get("timings") or {}).items()}

    say(f"starting {target.name} again")
    target = target.reload(check=False)
    again = deploy.install(target.inventory, [target.name], console, verbose=verbose)
    runner.require_success(again.result, "install")
    rows = status_action.gather(target.inventory, [target.name], console)
    outcome.healthy = bool(rows) and rows[0].healthy
    outcome.seconds = time.monotonic() - started
    if not outcome.healthy:
        raise SfpError(f"{target.name} was restored from {set_id} but is not healthy ({rows[0].verdict if rows else 'no status'})",
                       f"see `{target.command('status', '--org', target.name)}` and the containers' logs")
    return outcome


def _refuse(name: str, machine: str) -> SfpError:
    return SfpError(f"org {name!r} exists on machine {machine!r}; restoring would replace its data; nothing was changed",
                    "pass --force to take a safety backup, remove it and restore (or restore --as-org NEW)")
