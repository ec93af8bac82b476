"""The on-host half of `sfp-server restore`: put one set's data into a freshly installed org.

    python -m installer.restore_job --config FILE

The controller has already checked the set (it exists, the recovery key opens it, its settings
object verifies), written the set's secrets into the org's vault and installed the org with only
its database started, so the database container runs a fresh cluster initialised with the backup's
passwords. This job then stops every other service of the org that runs (none after that install;
an org restored over itself by hand may have some), moves the fresh storage directory aside, and
calls the backup library's restore_set (which checks every object before applying anything).
The services stay stopped: the controller's second install starts them with the restored data.

For `ansible_connection: local` orgs the controller calls `run` directly; for remote orgs
playbooks/restore.yml writes FILE (0600, removed afterwards: it holds the recovery identity and
the S3 keys) and runs this module on the host. Nothing secret is on a command line.

Config keys: org (the org whose set is restored: the source, which may differ from the target
with --as-org), set_id, identity, signing_public_keys (the keys the set must be signed with: the
job checks the signature again itself, before it reads anything else of the set), allow_unsigned
(only for sets made before sets were signed), backup (the `sfp_org.backup` block locating the
store), keys (BACKUP_* values from the vault), project, org_dir, container, storage_dir, jobs,
env_file (optional: AWS_* lines for `credentials.source: env`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import backup_inventory
from .backup_job import load_env_file, run_job
from .errors import SfpError


@dataclass
class RestoreJobOutcome:
    org: str
    set_id: str
    databases: list[str] = field(default_factory=list)
    storage_files: int = 0
    key_files: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    signed_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def settings_of(cfg: dict[str, Any]) -> Any:
    from .backup import parse_settings  # lazy: about 220 ms of CPU on every `sfp-server` start otherwise

    # A restore only decrypts: the recipient the settings require may be absent (key kept offline).
    data = backup_inventory.settings_data(cfg["backup"], cfg.get("keys") or {}, placeholder_recipient=True)
    return parse_settings(data, source=f"{cfg['org']}: sfp_org.backup")


def _compose(cfg: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    org_dir = Path(cfg["org_dir"])
    return subprocess.run(["docker", "compose", "-p", str(cfg["project"]), "--project-directory", str(org_dir),
                           "-f", str(org_dir / "compose.yaml"), *args], capture_output=True, text=True, check=False)


def stop_all_but_db(cfg: dict[str, Any]) -> list[str]:
    """Stop every running service of the org but `db`: nothing may write to the database or the storage
    tree meanwhile. Returns the services it stopped (none after the restore's own install)."""
    listed = _compose(cfg, "ps", "--services", "--status", "running", "--status", "restarting", "--status", "paused")
    if listed.returncode != 0:
        raise SfpError(f"cannot read the services of {cfg['project']}: {listed.stderr.strip()[-400:]}",
                       f"check {cfg['org_dir']}/compose.yaml; the install before the restore must have succeeded")
    others = [s for s in listed.stdout.split() if s != "db"]
    if others:
        stop = _compose(cfg, "stop", *others)
        if stop.returncode != 0:
            raise SfpError(f"cannot stop the services of {cfg['project']}: {stop.stderr.strip()[-400:]}",
                           "check `docker compose ps` of the org, then run the restore again")
    return others


def run(cfg: dict[str, Any], progress: Callable[[str], None] | None = None, *, client: Any = None) -> RestoreJobOutcome:
    from .backup import DockerExecDatabase, Trust, api  # lazy: see settings_of

    say = progress or (lambda _m: None)
    load_env_file(cfg)
    settings = settings_of(cfg)
    trust = Trust(tuple(str(k) for k in cfg.get("signing_public_keys") or []), bool(cfg.get("allow_unsigned")))
    # Before anything is stopped or moved: the set must be the org's (signature) and well formed.
    api.show_set(settings.store, str(cfg["org"]), str(cfg["set_id"]), trust=trust, client=client)
    stopped = stop_all_but_db(cfg)
    say(f"stopped {', '.join(stopped) or 'nothing'} (the database stays up for the restore)")
    storage_dir = Path(cfg["storage_dir"])
    aside = storage_dir.with_name(f"{storage_dir.name}.fresh-{int(time.time())}")
    if storage_dir.exists():
        storage_dir.rename(aside)
    storage_dir.mkdir(parents=True)
    say(f"restoring set {cfg['set_id']} of {cfg['org']} (every object is checked before anything is applied)")
    try:
        result = api.restore_set(settings.store, str(cfg["org"]), str(cfg["set_id"]), str(cfg["identity"]),
                                 DockerExecDatabase(str(cfg["container"])), trust=trust, storage_dir=storage_dir,
                                 jobs=int(cfg.get("jobs") or settings.jobs), workdir=None, client=client)
    except BaseException:
        # Nothing was applied to storage if the set was refused: put the fresh tree back.
        if aside.exists() and not any(storage_dir.iterdir()):
            storage_dir.rmdir()
            aside.rename(storage_dir)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return RestoreJobOutcome(org=str(cfg["org"]), set_id=result.set_id, databases=list(result.databases),
                             storage_files=result.storage_files, key_files=list(result.key_files),
                             timings=dict(result.timings), signed_by=result.signed_by)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m installer.restore_job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="the restore config playbooks/restore.yml writes (0600)")
    args = parser.parse_args(argv)
    code, outcome = run_job(args.config, "the recovery key", lambda cfg: run(cfg, lambda m: print(m, file=sys.stderr, flush=True)),
                            "the org is half restored; run `sfp-server restore` again")
    if outcome is None:
        return code
    # The last line of stdout is what the controller reads.
    print(json.dumps(outcome.as_dict()))
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
