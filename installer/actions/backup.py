"""Backups of an org (`sfp-server backup …`) and disaster-recovery restore (`sfp-server restore`).

The backup runs where the org's database container and storage volume are: for an org with
`ansible_connection: local` the controller calls the job directly (installer.backup_job, with
DockerExecDatabase("sfp-<org>-db") and <org_dir>/volumes/storage); for a remote org it runs
playbooks/backup.yml, whose role runs the same job on the host. list/show/verify/prune only
talk to the object store and run on the controller.

Restore, local and remote orgs alike: check on the controller what needs no change (the set
exists and is signed by the org's signing key, the recovery key opens it, its settings object
verifies and holds only what the toolkit writes); with --to-host move the org's
entry in hosts.yml to that machine group; refuse over an org present on its host unless --force
(which first takes a safety backup and purges it); write the set's secrets (the names the toolkit
knows) back into the org's vault (API keys keep verifying), and on a new controller what the
offline key file holds (recovery identity, signing public key); install the org (a fresh database initialised by the stack);
run installer.restore_job on the host (in process for local orgs, through playbooks/restore.yml
otherwise): stop every service but the database, restore roles, databases and storage files
with the library (which checks every object before applying anything); run the install again
and check the org is healthy.
"""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from .. import backup_inventory as binv
from .. import backup_job, restore_job, runner, validate
from ..errors import SfpError
from ..inventory import SECRETS_VAR, Inventory, Org, UnknownOrgError
from . import deploy, secrets
from . import status as status_action

DEFAULT_METRICS_SUBDIR = "backup/metrics"


# -- settings ----------------------------------------------------------------------------------
def org_of(inv: Inventory, name: str) -> Org:
    if name not in inv.org_names():
        raise inv.unknown_org(name)
    return inv.org(name)


def settings(inv: Inventory, name: str, identity_file: Path | None = None, *, encrypting: bool = False) -> Any:
    """The org's BackupSettings. Only a backup encrypts (`encrypting`): every other command reads the
    store without the recipient, which a new controller may not have yet (disaster recovery with the
    offline key file: the recipient is derived from `identity_file` when the vault has none)."""
    org = org_of(inv, name)
    values = secrets.read(inv, name)
    if identity_file is not None and not values.get(binv.RECIPIENT):
        from ..backup.keys import recipient_of

        values[binv.RECIPIENT] = recipient_of(identity_file.read_text())
    parsed = binv.parse(name, org.hostvars, values, placeholder_recipient=not encrypting)
    if parsed is None:
        raise SfpError(f"org {name!r} has no backup settings",
                       f"add a `backup:` block to sfp_org in host_vars/{name}/main.yml (see installer/schema/org.yml)")
    return parsed


def is_local(org: Org) -> bool:
    return str(org.hostvars.get("ansible_connection", "")) == "local"


def metrics_dir(org: Org) -> str:
    return str(org.hostvars.get("backup__metrics_dir") or f"{org.org_dir}/{DEFAULT_METRICS_SUBDIR}")


def plain(value: Any) -> Any:
    """Inventory values as plain Python types (Ansible tags its strings; YAML and JSON need the base types)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def job_keys(raw: dict[str, Any], values: dict[str, str]) -> dict[str, str]:
    """The vault's BACKUP_* values a job needs: the recipient, the signing key, and the S3 keys only with
    `credentials.source: vault`."""
    wanted = [binv.RECIPIENT, binv.SIGNING_KEY] + (
        [binv.ACCESS_KEY, binv.SECRET_KEY] if backup_job.credentials_source(raw) == "vault" else [])
    return {k: values[k] for k in wanted if k in values}


def job_config(inv: Inventory, org: Org) -> dict[str, Any]:
    """What the backup role renders into <org_dir>/backup/backup.json on the host, built on the controller."""
    values = secrets.read(inv, org.name)
    raw = binv.block(org.hostvars)
    if raw is None:
        raise SfpError(f"org {org.name!r} has no backup settings", "add a `backup:` block to its sfp_org")
    return {
        "org": org.name,
        "org_dir": org.org_dir,
        "container": f"{org.project}-db",
        "storage_dir": f"{org.org_dir}/volumes/storage",
        "metrics_dir": metrics_dir(org),
        "backup": plain(raw),
        "keys": job_keys(raw, values),
        "org_config": plain(org.raw),
        "secrets": {k: v for k, v in values.items() if k not in binv.NOT_IN_SETS},
        "env_file": env_file(org),
    }


def ensure_recovery_key(inv: Inventory, name: str) -> list[str]:
    """On an org's first install with backups configured: make its backup keys, keep them in the vault.

    The recovery key (unless the block names a `recipient`: its identity is kept elsewhere) and the
    signing key. A signing public key already in the vault without its private half (written by a
    restore from the offline key file) becomes a previous key: the sets it signed still verify.
    """
    org = org_of(inv, name)
    raw = binv.block(org.hostvars)
    if raw is None:
        return []
    from ..backup import generate_recovery_key, generate_signing_key
    from ..backup.keys import public_key_of

    values = secrets.read(inv, name)
    added: list[str] = []
    if not raw.get("recipient") and not values.get(binv.IDENTITY):
        values[binv.IDENTITY], values[binv.RECIPIENT] = generate_recovery_key()
        added += [binv.IDENTITY, binv.RECIPIENT]
    if not values.get(binv.SIGNING_KEY):
        earlier = binv.public_keys(values)
        values[binv.SIGNING_KEY], values[binv.SIGNING_PUBLIC_KEY] = generate_signing_key()
        if earlier:
            values[binv.SIGNING_PREVIOUS] = " ".join(earlier)
        added += [binv.SIGNING_KEY, binv.SIGNING_PUBLIC_KEY]
    elif values.get(binv.SIGNING_PUBLIC_KEY) != public_key_of(values[binv.SIGNING_KEY]):
        values[binv.SIGNING_PUBLIC_KEY] = public_key_of(values[binv.SIGNING_KEY])
        added.append(binv.SIGNING_PUBLIC_KEY)
    if added:
        secrets._vault(inv).write(inv.vault_file(name), {SECRETS_VAR: values})
    return added


def key_material(inv: Inventory, name: str, identity_file: Path | None = None) -> tuple[str, list[str]]:
    """(the recovery identity, the signing public keys of the key file) from --identity-file, else from the vault."""
    if identity_file is not None:
        from ..backup.keys import read_key_file

        return read_key_file(identity_file.read_text())
    value = secrets.read(inv, name).get(binv.IDENTITY)
    if not value:
        raise SfpError(f"org {name!r} has no recovery key in its vault",
                       "pass --identity-file with the key kept offline (`backup key` printed it)")
    return value, []


def identity(inv: Inventory, name: str, identity_file: Path | None = None) -> str:
    return key_material(inv, name, identity_file)[0]


def trust(inv: Inventory, name: str, file_keys: list[str], allow_unsigned: bool = False) -> Any:
    """The signing keys a set of `name` must be signed with: the vault's (current, previous) and the key file's."""
    from ..backup import Trust

    keys = list(dict.fromkeys([*binv.public_keys(secrets.read(inv, name)), *file_keys]))
    return Trust(tuple(keys), allow_unsigned)


def key_text(inv: Inventory, name: str) -> tuple[str, bool]:
    """The key file to keep offline (recovery identity and signing public keys), and whether it has a signing key."""
    from ..backup.keys import key_file

    values = secrets.read(inv, name)
    keys = binv.public_keys(values)
    return key_file(name, identity(inv, name), keys), bool(keys)


# -- backup ------------------------------------------------------------------------------------
def run(inv: Inventory, name: str, console: Console, *, verbose: bool = False,
        progress: Callable[[str], None] | None = None) -> backup_job.JobOutcome:
    validate.validate(inv, [name])
    org = org_of(inv, name)
    settings(inv, name, encrypting=True)  # a clear error before anything starts
    if is_local(org):
        return backup_job.run(job_config(inv, org), progress)
    return _run_remote(inv, name, console, verbose)


def _run_remote(inv: Inventory, name: str, console: Console, verbose: bool) -> backup_job.JobOutcome:
    import json

    result = runner.run_playbook("backup.yml", inv.path, [name], inv.vault_password_file, console=console,
                                 extravars={"backup__run_now": True}, verbose=verbose)
    runner.require_success(result, "backup")
    out = str(result.reports.get(name, {}).get("backup", {}).get("stdout", ""))
    try:
        data = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SfpError(f"the backup on {name}'s host printed no summary", "run it with -v to see the task output") from None
    return backup_job.JobOutcome(org=name, set_id=data["set_id"], size=data["size_bytes"], seconds=data["duration_seconds"],
                                 objects=data["objects"], pruned=data.get("pruned", []), warnings=data.get("warnings", []))


def list_sets(inv: Inventory, name: str) -> list[Any]:
    from ..backup import api

    return api.list_sets(settings(inv, name).store, name, include_incomplete=True)


def show(inv: Inventory, name: str, set_id: str, identity_file: Path | None = None) -> Any:
    """The manifest; its signature is checked when a signing key of the org is known (else shown as unchecked)."""
    from ..backup import api

    file_keys = key_material(inv, name, identity_file)[1] if identity_file is not None else []
    known = trust(inv, name, file_keys)
    return api.show_set(settings(inv, name, identity_file).store, name, set_id,
                        trust=known if known.public_keys else None)


def verify(inv: Inventory, name: str, set_id: str, identity_file: Path | None = None, allow_unsigned: bool = False) -> Any:
    from ..backup import DockerExecDatabase, api

    org = org_of(inv, name)
    ident, file_keys = key_material(inv, name, identity_file)
    tools = None
    if is_local(org) and _container_running(f"{org.project}-db"):
        tools = DockerExecDatabase(f"{org.project}-db")  # adds `pg_restore --list` on every dump
    return api.verify_set(settings(inv, name, identity_file).store, name, set_id, ident,
                          trust=trust(inv, name, file_keys, allow_unsigned), tools=tools)


def prune(inv: Inventory, name: str, dry_run: bool = False) -> Any:
    from ..backup import api

    s = settings(inv, name)
    return api.prune(s.store, name, s.retention, dry_run=dry_run)


# -- restore -----------------------------------------------------------------------------------
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


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def _container_running(name: str) -> bool:
    r = _docker("inspect", "-f", "{{.State.Running}}", name)
    return r.returncode == 0 and r.stdout.strip() == "true"


def presence(inv: Inventory, org: Org, console: Console, verbose: bool = False) -> Presence:
    """Anything of the org on its host (read-only): local orgs directly, remote ones through playbooks/restore.yml."""
    if is_local(org):
        listed = _docker("ps", "-a", "--filter", f"label=com.docker.compose.project={org.project}",
                         "--format", "{{.Names}} {{.State}}").stdout
        containers = dict(line.split(" ", 1) for line in listed.splitlines() if " " in line)
        return Presence(org_dir=Path(org.org_dir).exists(), containers=containers)
    result = runner.run_playbook("restore.yml", inv.path, [org.name], inv.vault_password_file, console=console,
                                 extravars={"sfp_restore_step": "check"}, verbose=verbose)
    runner.require_success(result, f"looking for {org.name} on its host")
    msg = result.reports.get(org.name, {}).get("present", {}).get("msg") or {}
    rows = [str(r) for r in msg.get("containers") or []]
    return Presence(org_dir=bool(msg.get("org_dir")), containers=dict(r.split(" ", 1) for r in rows if " " in r))


def env_file(org: Org) -> str:
    """Where the host keeps AWS_* for `credentials.source: env` (the backup role's backup__env_file)."""
    return str(org.hostvars.get("backup__env_file") or f"/etc/sfp/backup-{org.name}.env")


def resolve_machine(inv: Inventory, target: Org, to_host: str | None) -> str | None:
    """The machine group to move the target org into for --to-host, or None when it is already there."""
    if to_host is None or to_host == target.machine:
        return None
    groups = binv.machine_groups(inv)
    if to_host not in groups:
        known = ", ".join(sorted(groups)) or "none"
        raise SfpError(f"--to-host {to_host!r} is not a machine of the inventory (machines: {known})",
                       f"add the new machine as a group under sfp_orgs in {inv.hosts_file.name} (its vars say how to "
                       "reach it, like inventory.example), then run restore again with --to-host GROUP")
    group = groups[to_host]
    host = inv._inv.get_host(target.name)
    current = {g.name for g in host.get_groups()} if host is not None else set()
    return None if group in current else group


def move_org(inv: Inventory, name: str, group: str) -> tuple[bytes, list[str]]:
    """Move the org's entry in hosts.yml into machine group `group`; returns the old bytes (to revert) and the groups left."""
    before = inv.hosts_file.read_bytes()
    text, left = binv.moved_hosts_text(before.decode(), name, group)
    inv.hosts_file.write_text(text)
    return before, left


def _config_document(store: Any, manifest: Any, ident: str) -> dict[str, Any]:
    """The set's org settings and secrets, checked against the manifest like every other object."""
    from ..backup import s3
    from ..backup.keys import check_identity, parse_identity
    from ..backup.manifest import set_prefix
    from ..backup.verify import check_object

    key = parse_identity(ident)
    check_identity(key, manifest.recipient, manifest.set_id)
    entry = manifest.entry("config")
    if entry is None:
        raise SfpError(f"set {manifest.set_id} has no settings object", "restore another set")
    sink = io.BytesIO()
    problem = check_object(s3.client(store), store, set_prefix(store.prefix, manifest.org, manifest.set_id), entry, key, sink=sink)
    if problem:
        raise SfpError(f"set {manifest.set_id}: {entry.key}: {problem}; nothing was changed", "restore an older verified set")
    from ..backup.content import check_config_document

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


def restore_job_config(inv: Inventory, source: str, target: Org, set_id: str, ident: str, src_settings: Any,
                       set_trust: Any) -> dict[str, Any]:
    """What installer.restore_job needs on the target's host (holds the identity: never logged, 0600 on disk)."""
    known = source in inv.org_names()
    source_hv = inv.org(source).hostvars if known else target.hostvars
    keys = secrets.read(inv, source if known else target.name)
    return {
        "org": source,
        "set_id": set_id,
        "identity": ident,
        "signing_public_keys": list(set_trust.public_keys),
        "allow_unsigned": bool(set_trust.allow_unsigned),
        "backup": plain(binv.block(source_hv)),
        "keys": job_keys(binv.block(source_hv) or {}, keys),
        "project": target.project,
        "org_dir": target.org_dir,
        "container": f"{target.project}-db",
        "storage_dir": f"{target.org_dir}/volumes/storage",
        "jobs": src_settings.jobs,
        "env_file": env_file(target),
    }


def vault_after_restore(restored: dict[str, str], current: dict[str, str], target: Org, *, same_org: bool,
                        ident: str | None, file_keys: list[str]) -> dict[str, str]:
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
        from ..backup.keys import recipient_of

        values[binv.IDENTITY], values[binv.RECIPIENT] = ident.strip(), recipient_of(ident)
    known = binv.public_keys(values)
    earlier = [k for k in file_keys if k not in known]
    if earlier:
        previous = values.get(binv.SIGNING_PREVIOUS, "").split()
        values[binv.SIGNING_PREVIOUS] = " ".join([*previous, *earlier])
    return values


def restore_data(inv: Inventory, target: Org, cfg: dict[str, Any], console: Console, *, verbose: bool = False,
                 say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The on-host step of a restore (installer.restore_job): in process for local orgs, else through playbooks/restore.yml."""
    import json

    if is_local(target):
        return restore_job.run(cfg, say).as_dict()
    result = runner.run_playbook("restore.yml", inv.path, [target.name], inv.vault_password_file, console=console,
                                 extravars={"sfp_restore_step": "restore", "backup__restore_config": cfg}, verbose=verbose)
    runner.require_success(result, f"restoring the data of {target.name} on its host")
    out = str(result.reports.get(target.name, {}).get("restore", {}).get("stdout", ""))
    try:
        data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SfpError(f"the restore on {target.name}'s host printed no summary", "run it with -v to see the task output") from None
    return data


def restore(inv: Inventory, source: str, set_ref: str, console: Console, *, as_org: str | None = None,
            to_host: str | None = None, force: bool = False, identity_file: Path | None = None,
            allow_unsigned: bool = False, verbose: bool = False,
            say: Callable[[str], None] | None = None) -> RestoreOutcome:
    from ..backup import api

    say = say or (lambda _m: None)
    started = time.monotonic()
    target_name = check_arguments(inv, source, as_org)
    target = org_of(inv, target_name)
    validate.validate(inv, [target_name])
    group = resolve_machine(inv, target, to_host)
    # Without a move, refuse before anything else (even before reading the bucket): nothing is changed.
    found = presence(inv, target, console, verbose) if group is None else None
    if found is not None and found.present and not force:
        raise _refuse(target_name, target.machine)
    known = source in inv.org_names()
    source_hv = inv.org(source).hostvars if known else target.hostvars
    key_org = source if known else target_name
    ident, file_keys = key_material(inv, key_org, identity_file)
    # A restore only decrypts: the recipient the settings require is not needed (a new controller
    # restoring with the offline key file has none in its vault yet).
    src_settings = binv.parse(source, source_hv, secrets.read(inv, source) if known else None, placeholder_recipient=True)
    if src_settings is None:
        raise SfpError(f"no backup settings to find {source}'s sets", f"add a backup block to sfp_org of {target_name}")
    store = src_settings.store
    set_trust = trust(inv, key_org, file_keys, allow_unsigned)
    set_id = api.resolve_set(store, source, set_ref)
    # The signature first, before any object is read: a set anyone else wrote into the bucket stops here.
    manifest = api.show_set(store, source, set_id, trust=set_trust)
    if manifest.authenticity == "unsigned":
        say(f"WARNING: set {set_id} has no signature; restoring it only because --allow-unsigned was given")
    # Everything that can be checked before a change: the key opens the set, the settings object is intact.
    document = _config_document(store, manifest, ident)
    outcome = RestoreOutcome(org=target_name, source_org=source, set_id=set_id)

    if group is not None:
        before, outcome.moved_from = move_org(inv, target_name, group)
        inv = Inventory(inv.path, inv.vault_password_file)
        target = org_of(inv, target_name)
        try:
            if binv.machine_groups(inv).get(target.machine) != group:
                raise SfpError(f"{target_name} is in group {group} now but its variables still name machine {target.machine!r}",
                               f"remove sfp_machine / ansible_host from host_vars/{target_name}, then run restore again")
            found = presence(inv, target, console, verbose)
            if found.present and not force:
                raise _refuse(target_name, target.machine)
        except BaseException:
            inv.hosts_file.write_bytes(before)  # nothing changed after all
            raise
        say(f"moved {target_name} to machine group {group} in {inv.hosts_file.name} (from {', '.join(outcome.moved_from) or 'no group'}); "
            f"the old machine is not touched: if it comes back, remove {target_name}'s stack and backup schedule there "
            "before it backs up into the same bucket")
    assert found is not None
    outcome.machine = target.machine

    if found.present:
        if binv.configured(target.hostvars) and found.running(f"{target.project}-db"):
            say(f"safety backup of {target_name} before it is replaced")
            outcome.safety_set = run(inv, target_name, console, verbose=verbose, progress=say).set_id
            say(f"safety backup {outcome.safety_set} done")
        say(f"removing {target_name} and its data on {target.machine}")
        runner.require_success(deploy.uninstall(inv, [target_name], console, purge=True, verbose=verbose), "uninstall")

    # Secrets first: the fresh stack is initialised with the backup's passwords and JWT secret. Only
    # the names the toolkit knows go back (even a signed set is not trusted to name vault entries).
    restored, outcome.ignored_secrets = binv.restorable(document["secrets"], target.hostvars)
    if outcome.ignored_secrets:
        say(f"warning: left out {len(outcome.ignored_secrets)} secret(s) of set {set_id} that are not the toolkit's: "
            f"{', '.join(outcome.ignored_secrets)}")
    values = vault_after_restore(restored, secrets.read(inv, target_name), target, same_org=target_name == source,
                                 ident=ident if identity_file is not None else None, file_keys=file_keys)
    secrets._vault(inv).write(inv.vault_file(target_name), {SECRETS_VAR: values})
    outcome.secrets_written = len(restored)
    say(f"wrote {len(restored)} secrets of set {set_id} into {inv.vault_file(target_name)}")

    say(f"installing {target_name} on {target.machine} (fresh database)")
    inv = Inventory(inv.path, inv.vault_password_file)  # re-read: the vault changed
    first = deploy.install(inv, [target_name], console, verbose=verbose)
    runner.require_success(first.result, "install")

    cfg = restore_job_config(inv, source, org_of(inv, target_name), set_id, ident, src_settings, set_trust)
    say(f"restoring set {set_id} (every object is checked before anything is applied)")
    data = restore_data(inv, org_of(inv, target_name), cfg, console, verbose=verbose, say=say)
    outcome.databases, outcome.storage_files = list(data["databases"]), int(data["storage_files"])
    outcome.key_files = [str(k) for k in data.get("key_files") or []]
    outcome.timings = {str(k): float(v) for k, v in (data.get("timings") or {}).items()}

    say(f"starting {target_name} again")
    inv = Inventory(inv.path, inv.vault_password_file)
    again = deploy.install(inv, [target_name], console, verbose=verbose)
    runner.require_success(again.result, "install")
    rows = status_action.gather(inv, [target_name], console)
    outcome.healthy = bool(rows) and rows[0].healthy
    outcome.seconds = time.monotonic() - started
    if not outcome.healthy:
        raise SfpError(f"{target_name} was restored from {set_id} but is not healthy ({rows[0].verdict if rows else 'no status'})",
                       f"see `sfp-server status --org {target_name}` and the containers' logs")
    return outcome


def _refuse(name: str, machine: str) -> SfpError:
    return SfpError(f"org {name!r} exists on machine {machine!r}; restoring would replace its data; nothing was changed",
                    "pass --force to take a safety backup, remove it and restore (or restore --as-org NEW)")
