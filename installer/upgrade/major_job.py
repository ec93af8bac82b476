"""The on-host half of a PostgreSQL major upgrade (`sfp-server upgrade` to a release with another major).

    python -m installer.upgrade.major_job --config FILE

Steps (`step` in the config), run by the controller around the stack role's deploys:
  dump   stop every service of the org but the database, clear what an earlier attempt left of the
         target's cluster (its data directory and config volume: never the ones the org runs),
         write a copy of the databases with the target major's pg_dump (installer/upgrade/dataset.py)
         and stop the database.
  load   load the copy into the new, freshly initialised cluster, then remove the copy.
  drop   remove a cluster's data directory and config volume (the old one after `upgrade --finish`,
         the new one after a rollback), refusing the ones the org's compose.yaml names.

For `ansible_connection: local` orgs the controller calls `run` directly; the config holds no
secret (the tools run in the org's containers, which hold the password in their environment).
Config keys: step, project, org_dir, and per step: copy (the copy's directory name under
<org_dir>/upgrade), image (dump: the target's database image, whose pg_dump reads the old server
over the org's network), data_dir and config_volume (the cluster to clear or drop: a directory name
under <org_dir>/volumes/db, a volume name after the project's).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _in_use(cfg: dict[str, Any]) -> tuple[str, str]:
    """The data directory and config volume the org's compose.yaml mounts into the database."""
    compose = (Path(cfg["org_dir"]) / "compose.yaml").read_text()
    data = re.search(r"^\s*- \./volumes/db/([^/:\s]+):/var/lib/postgresql/data", compose, re.M)
    vol = re.search(r"^  db-config:\n    name: \"?([^\"\n]+)\"?", compose, re.M)
    if not data or not vol:
        raise SfpError(f"cannot tell which cluster {cfg['org_dir']}/compose.yaml runs", "install the org, then upgrade again")
    return data.group(1), vol.group(1)


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


def _password(container: str) -> str:
    """supabase_admin's password, from the database container's own environment (never a file or argv)."""
    r = _docker("exec", container, "printenv", "POSTGRES_PASSWORD")
    if r.returncode != 0 or not r.stdout.strip():
        raise SfpError(f"cannot read the database password of {container}", "check that the container runs, then upgrade again")
    return r.stdout.rstrip("\n")


def run(cfg: dict[str, Any], progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from ..backup import DockerExecDatabase  # lazy: see installer/restore_job.py

    say = progress or (lambda _m: None)
    step = cfg.get("step")
    copy_dir = Path(cfg["org_dir"]) / "upgrade" / _name(cfg, "copy") if step in ("dump", "load") else None
    database = DockerExecDatabase(f"{cfg['project']}-db")
    if step == "dump":
        assert copy_dir is not None
        stopped = stop_all_but_db(cfg)
        say(f"stopped {', '.join(stopped) or 'nothing'}; clearing what an earlier attempt left")
        cleared = drop_cluster(cfg)
        if copy_dir.exists():
            dataset.remove(copy_dir)
        copy_dir.parent.mkdir(mode=0o700, exist_ok=True)
        say(f"dumping the databases into {copy_dir}")
        tools = dataset.DockerRunDatabase(str(cfg["image"]), str(cfg["project"]), password=_password(database.container))
        copy, timings = dataset.dump(tools, copy_dir, files_from=database)
        r = _docker("stop", "-t", "60", f"{cfg['project']}-db")
        if r.returncode != 0:
            raise SfpError(f"cannot stop {cfg['project']}-db: {r.stderr.strip()[-300:]}", "stop it by hand, then upgrade again")
        return {"step": step, "stopped": stopped, "cleared": cleared, "databases": copy.databases,
                "bytes": sum(copy.files.values()), "postgres_major": copy.postgres_major, "timings": timings}
    if step == "load":
        assert copy_dir is not None
        copy = dataset.read(copy_dir)
        say(f"loading {', '.join(copy.databases)} into the new cluster")
        timings = dataset.load(database, copy, jobs=int(cfg.get("jobs") or 2))
        dataset.remove(copy_dir)
        return {"step": step, "databases": copy.databases, "timings": timings}
    if step == "drop":
        return {"step": step, "removed": drop_cluster(cfg)}
    raise SfpError(f"unknown step {step!r}", "use dump, load or drop")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m installer.upgrade.major_job", description=__doc__.split("\n\n")[0])
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
