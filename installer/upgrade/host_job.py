"""The on-host steps of an upgrade that handle the org's data: its local copy, and its clusters.

    python -m installer.upgrade.host_job --config FILE

Steps (`step` in the config), run by the controller around the stack role's deploys:
  copy       the pre-upgrade copy of an org without a backup block: its databases (the database
             container's own tools, services running), key files and storage files, written to
             <org_dir>/upgrade/<copy> (installer/upgrade/dataset.py); earlier copies are removed.
  detach     a PostgreSQL major upgrade, first half: stop every service, clear what an earlier
             attempt left of the target's cluster (its data directory and config volume: never the
             ones the org runs), and start the old cluster as its own container, `<project>-db-old`.
  move       second half, once the target's database runs its new cluster: stream every database
             from the old cluster into it (installer/upgrade/dataset.move: the new container's
             pg_dump feeding its pg_restore), carry the key files, then stop and remove the old server.
  release_old  stop and remove `<project>-db-old` (before the old release starts on its directory).
  stop       stop every service but the database (before a copy is loaded back).
  load       load a copy into the org's running database (a new cluster, or the org's own for a
             rollback), with its storage files when `storage` is set, then remove the copy.
  drop       remove a cluster's data directory and config volume (the old one after `upgrade --finish`,
             the new one after a rollback), refusing the ones the org's compose.yaml names.
  drop_copy  remove a copy (`upgrade --finish`).

For `ansible_connection: local` orgs the controller calls `run` directly; the config holds no
secret (the tools run in the org's containers, which hold the password in their environment).
Config keys: step, project, org_dir, and per step: copy (the copy's directory name under
<org_dir>/upgrade), data_dir and config_volume (the cluster to clear or drop: a directory name
under <org_dir>/volumes/db, a volume name after the project's), old_data_dir and old_config_volume
(detach: the old cluster's), storage (load: the files too).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..errors import SfpError
from ..restore_job import stop_all_but_db
from . import dataset

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def _name(cfg: dict[str, Any], key: str) -> str:
    value = str(cfg.get(key) or "")
    if not _NAME.match(value) or ".." in value:
        raise SfpError(f"{key} {value!r} is not a plain directory or volume name", "the controller wrote a bad config")
    return value


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def _compose(cfg: dict[str, Any]) -> dict[str, Any]:
    """The org's compose.yaml (the toolkit renders it), read once per question asked of it."""
    data = yaml.safe_load((Path(cfg["org_dir"]) / "compose.yaml").read_text())
    return data if isinstance(data, dict) else {}


def _in_use(cfg: dict[str, Any]) -> tuple[str, str]:
    """The data directory and config volume the org's compose.yaml mounts into the database."""
    compose = _compose(cfg)
    mounts = [str(v) for v in ((compose.get("services") or {}).get("db") or {}).get("volumes") or []]
    data = next((m.split(":", 1)[0].removeprefix("./volumes/db/") for m in mounts
                 if m.startswith("./volumes/db/") and ":/var/lib/postgresql/data" in m), None)
    volume = ((compose.get("volumes") or {}).get("db-config") or {}).get("name")
    if not data or not volume:
        raise SfpError(f"cannot tell which cluster {cfg['org_dir']}/compose.yaml runs", "install the org, then upgrade again")
    return data, str(volume)


def drop_cluster(cfg: dict[str, Any]) -> list[str]:
    """Remove the data directory and config volume `cfg` names, unless the org runs them."""
    data_dir, volume = _name(cfg, "data_dir"), f"{cfg['project']}-{_name(cfg, 'config_volume')}"
    used_dir, used_volume = _in_use(cfg)
    if data_dir == used_dir or volume == used_volume:
        raise SfpError(f"{data_dir} / {volume} is the cluster {cfg['project']} runs: not removed",
                       "only the other major's cluster is removed (after --finish or a rollback)")
    removed = []
    path = Path(cfg["org_dir"]) / "volumes" / "db" / data_dir
    if path.exists():
        shutil.rmtree(path)
        removed.append(str(path))
    if _docker("volume", "inspect", volume).returncode == 0:
        r = _docker("volume", "rm", volume)
        if r.returncode != 0:
            raise SfpError(f"cannot remove volume {volume}: {r.stderr.strip()[-300:]}", "stop what uses it, then run the step again")
        removed.append(volume)
    return removed


def run(cfg: dict[str, Any], progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from ..backup import DockerExecDatabase  # lazy: see installer/restore_job.py

    say = progress or (lambda _m: None)
    step = cfg.get("step")
    org_dir = Path(cfg["org_dir"])
    copy_dir = org_dir / "upgrade" / _name(cfg, "copy") if step in ("copy", "load", "drop_copy") else None
    database = DockerExecDatabase(f"{cfg['project']}-db")
    if step == "copy":
        assert copy_dir is not None
        _clear_copies(org_dir)
        say(f"copying the databases and storage files into {copy_dir}")
        copy, timings = dataset.dump(database, copy_dir, storage_dir=org_dir / "volumes" / "storage")
        return {"step": step, "databases": copy.databases, "bytes": sum(copy.files.values()), "timings": timings}
    if step == "detach":
        stopped = stop_all_but_db(cfg)
        say(f"stopped {', '.join(stopped) or 'nothing'}; clearing what an earlier attempt left")
        cleared = drop_cluster(cfg)
        _clear_copies(org_dir)
        old = _old_server_argv(cfg)
        r = _docker("stop", "-t", "60", f"{cfg['project']}-db")
        if r.returncode != 0:
            raise SfpError(f"cannot stop {cfg['project']}-db: {r.stderr.strip()[-300:]}", "stop it by hand, then upgrade again")
        release_old_server(cfg)
        r = _docker(*old)
        if r.returncode != 0:
            raise SfpError(f"cannot start the old cluster beside the new one: {r.stderr.strip()[-300:]}",
                           "see `docker logs " + f"{cfg['project']}-db-old`; the old cluster is untouched")
        _wait_ready(f"{cfg['project']}-db-old")
        return {"step": step, "stopped": stopped, "cleared": cleared}
    if step == "move":
        old_db = DockerExecDatabase(f"{cfg['project']}-db-old")
        say("moving the databases from the old cluster into the new one")
        t = time.monotonic()
        names, timings = dataset.move(old_db.container, old_db, database, jobs=int(cfg.get("jobs") or 2))
        timings["move_seconds"] = round(time.monotonic() - t, 3)
        release_old_server(cfg)
        return {"step": step, "databases": names, "timings": timings}
    if step == "release_old":
        return {"step": step, "released": release_old_server(cfg)}
    if step == "stop":
        return {"step": step, "stopped": stop_all_but_db(cfg)}
    if step == "load":
        assert copy_dir is not None
        copy = dataset.read(copy_dir)
        say(f"loading {', '.join(copy.databases)} into the database")
        timings = dataset.load(database, copy, jobs=int(cfg.get("jobs") or 2))
        if cfg.get("storage"):
            dataset.restore_storage(copy, org_dir / "volumes" / "storage")
        dataset.remove(copy_dir)
        return {"step": step, "databases": copy.databases, "storage": bool(cfg.get("storage") and copy.storage),
                "timings": timings}
    if step == "drop":
        release_old_server(cfg)
        return {"step": step, "removed": drop_cluster(cfg)}
    if step == "drop_copy":
        assert copy_dir is not None
        existed = copy_dir.exists()
        dataset.remove(copy_dir)
        return {"step": step, "removed": [str(copy_dir)] if existed else []}
    raise SfpError(f"unknown step {step!r}", "use copy, detach, move, release_old, stop, load, drop or drop_copy")


def _old_server_argv(cfg: dict[str, Any]) -> list[str]:
    """`docker run` of the old cluster as its own container (`<project>-db-old`, outside the Compose
    project), from the database's definition in the org's current compose.yaml: the new release's
    database takes the service's name and starts beside it, and the data streams from one to the
    other. Only the data directory and config volume are mounted: nothing initialises anything."""
    db = (_compose(cfg).get("services") or {}).get("db") or {}
    command = [str(c) for c in db.get("command") or []]
    if not db.get("image") or not command:
        raise SfpError(f"{cfg['org_dir']}/compose.yaml has no database service to start", "install the org, then upgrade again")
    data_dir = Path(cfg["org_dir"]) / "volumes" / "db" / _name(cfg, "old_data_dir")
    volume = f"{cfg['project']}-{_name(cfg, 'old_config_volume')}"
    return ["run", "-d", "--name", f"{cfg['project']}-db-old", "--network", str(cfg["project"]),
            "--shm-size", str(db.get("shm_size") or "256m"), "--stop-signal", "SIGINT",
            "-v", f"{data_dir}:/var/lib/postgresql/data", "-v", f"{volume}:/etc/postgresql-custom",
            str(db["image"]), *command]


def release_old_server(cfg: dict[str, Any]) -> bool:
    """Stop (a clean shutdown) and remove `<project>-db-old`. Always before the old release's own
    database starts again on that data directory: two servers on one directory would corrupt it."""
    name = f"{cfg['project']}-db-old"
    if _docker("inspect", name).returncode != 0:
        return False
    _docker("stop", "-t", "120", name)
    r = _docker("rm", "-f", name)
    if r.returncode != 0:
        raise SfpError(f"cannot remove {name}: {r.stderr.strip()[-300:]}", f"remove it by hand (`docker rm -f {name}`) before anything else")
    return True


def _wait_ready(container: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    # Over TCP: an image's first, socket-only server answers on the socket while it initialises.
    while _docker("exec", container, "pg_isready", "-q", "-h", "localhost").returncode != 0:
        if time.monotonic() > deadline:
            raise SfpError(f"{container} did not accept connections within {timeout:.0f} s", f"see `docker logs {container}`")
        time.sleep(0.5)


def _clear_copies(org_dir: Path) -> None:
    """One copy at a time per org: a new upgrade's copy replaces what earlier ones left."""
    root = org_dir / "upgrade"
    root.mkdir(mode=0o700, exist_ok=True)
    for old in root.iterdir():
        if old.is_dir():
            dataset.remove(old)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m installer.upgrade.host_job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="the step's config (JSON)")
    args = parser.parse_args(argv)
    try:
        out = run(json.loads(args.config.read_text()), lambda m: print(m, file=sys.stderr, flush=True))
    except SfpError as exc:
        print(f"error: {exc.message}\nhint: {exc.hint}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
