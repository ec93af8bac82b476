"""Upgrade downtime benchmark: `sfp-server upgrade` against a bare `docker compose up --wait` of the
same services, measured the same way, side by side in one run.

    .venv/bin/python bench/upgrade.py [--minor | --major | --all]

One org of the test catalog (stand-ins: this measures the orchestration's downtime, not upstream's
start-up times) is installed on v0.8.0 with backups to `rclone serve s3`. A client sends a request
through the gateway every 50 ms (Auth's health, with the service key) for the whole run; downtime
is the sum of the spans from a failed request to the next answered one.
  ours  the upgrade to v0.8.1 (plan, pull, verified backup, deploy, gate); the client sees only
        the deploy's restarts
  bare  `docker compose up -d --wait --force-recreate` of the same services on the upgraded org
goal: ours / bare <= 1.2. The total time of the upgrade (with its backup) is printed beside it.

PostgreSQL 15 -> 17 (`--major`, or both with `--all`): an org on v0.8.1-pg15 (real PostgreSQL 15)
with a database of about 1.1 GiB is upgraded to v0.8.1 (real PostgreSQL 17), then, on the kept
PostgreSQL 15 cluster and a fresh PostgreSQL 17 container:
  ours  the whole `sfp-server upgrade` (plan, pull check, dump, new cluster, load, every service
        started, gate), and the downtime the gateway's client sees
  bare  `pg_dump -Fc` of the old database plus `pg_restore -j 2` into a new one
goal: ours / bare <= 1.3.
Not run in CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from installer.actions import deploy, secrets  # noqa: E402
from installer.actions import upgrade as upgrade_action  # noqa: E402
from installer.context import resolve  # noqa: E402
from installer.inventory import Inventory  # noqa: E402
from tests.backup_stack.conftest import deployed_with_backups, quiet  # noqa: E402
from tests.stack.conftest import OPTIONAL_OFF, build_inventory, org_ports, org_settings, remove_orgs  # noqa: E402

ORG = "bnup"


class Client:
    """Requests through the gateway in a loop; records (time, answered) of each."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.samples: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                ok = session.get(self.url, headers={"apikey": self.key}, timeout=2).status_code == 200
            except requests.RequestException:
                ok = False
            self.samples.append((time.monotonic(), ok))
            time.sleep(0.05)

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def downtime(self) -> float:
        total, down_since = 0.0, None
        for at, ok in self.samples:
            if not ok and down_since is None:
                down_since = at
            elif ok and down_since is not None:
                total += at - down_since
                down_since = None
        if down_since is not None:
            total += self.samples[-1][0] - down_since
        return total


MAJOR_ORG = "bnpg"
# At least 1 GiB, as the goal says; SFP_BENCH_MIB measures another size (the fixed part of an
# upgrade, its plan and the services' start, weighs less as the data grows).
MAJOR_MIB = int(os.environ.get("SFP_BENCH_MIB", "1100"))


def psql(container: str, sql: str, db: str = "postgres") -> str:
    done = subprocess.run(["docker", "exec", "-i", "-e", "PGUSER=supabase_admin", container, "psql", "-X", "-q", "-v",
                           "ON_ERROR_STOP=1", "-At", "-d", db], input=sql, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"psql in {container} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def seed(container: str, mib: int) -> int:
    """A table of about `mib` MiB with an index in the org's `postgres` database; returns its bytes."""
    rows = mib * 1024 * 1024 // 200
    psql(container, f"""
        CREATE TABLE public.events (id bigint PRIMARY KEY, account int, kind text, amount numeric(12,2),
                                    at timestamptz, note text, payload jsonb);
        INSERT INTO public.events SELECT i, i % 10007, (ARRAY['login','purchase','refund','logout'])[1 + i % 4],
               (i % 100000) / 100.0, timestamptz '2024-01-01' + i * interval '1 second',
               md5(i::text) || ' ' || md5((i * 7)::text),
               jsonb_build_object('ip', '10.0.' || (i % 256) || '.' || (i % 251), 'ok', i % 3 = 0)
        FROM generate_series(1, {rows}) AS i;
        CREATE INDEX events_account ON public.events (account, at);
        VACUUM ANALYZE public.events;
    """)
    return int(psql(container, "SELECT pg_database_size('postgres')"))


def bare_dump_restore(org_dir: Path, password: str) -> tuple[float, float]:
    """pg_dump -Fc on the kept PostgreSQL 15 cluster, pg_restore -j 2 into a fresh PostgreSQL 17: seconds of each."""
    work = Path(tempfile.mkdtemp(prefix="sfp-bench-pgmajor-"))
    work.chmod(0o777)
    old, new = "sfp-bench-pg15", "sfp-bench-pg17"
    env = {**os.environ, "POSTGRES_PASSWORD": password}
    try:
        # The org's limits (2 CPUs, 2 GiB, /dev/shm as large), so both sides run in the same room.
        limits = ["--cpus", "2", "--memory", "2g", "--shm-size", "2g"]
        subprocess.run(["docker", "run", "-d", "--name", old, *limits, "-v", f"{org_dir}/volumes/db/data-pg15:/var/lib/postgresql/data",
                        "-v", f"{work}:/bench", "sfp-test/postgres:15"], check=True, capture_output=True)
        subprocess.run(["docker", "run", "-d", "--name", new, *limits, "-e", "POSTGRES_PASSWORD", "-v", f"{work}:/bench",
                        "sfp-test/postgres:17"], check=True, capture_output=True, env=env)
        for c in (old, new):
            # Over TCP, as the compose health check asks: the entrypoint's first, socket-only server
            # answers on the socket while the cluster is still being initialised.
            while subprocess.run(["docker", "exec", c, "pg_isready", "-q", "-h", "localhost"], check=False).returncode != 0:
                time.sleep(0.5)
        psql(new, "CREATE DATABASE restored")
        t = time.monotonic()
        subprocess.run(["docker", "exec", "-e", "PGUSER=supabase_admin", old, "pg_dump", "-Fc", "-d", "postgres",
                        "-f", "/bench/db.dump"], check=True, capture_output=True)
        dump_s = time.monotonic() - t
        t = time.monotonic()
        # Objects of the fresh cluster's own init clash with a few of the dump's: counted, not fatal.
        subprocess.run(["docker", "exec", "-e", "PGUSER=supabase_admin", new, "pg_restore", "-j", "2", "-d", "restored",
                        "/bench/db.dump"], check=False, capture_output=True)
        restore_s = time.monotonic() - t
        return dump_s, restore_s
    finally:
        subprocess.run(["docker", "rm", "-f", old, new], capture_output=True, check=False)
        subprocess.run(["rm", "-rf", str(work)], check=False)


def major() -> None:
    root = Path(tempfile.mkdtemp(prefix="sfp-bench-pgmajor-"))
    base_dir = root / "hosts" / "sfp"
    ports = org_ports(MAJOR_ORG)[MAJOR_ORG]
    settings = org_settings(ports, release="v0.8.1-pg15", services=OPTIONAL_OFF)
    settings["resources"] = {**settings["resources"], "db": {"cpus": 2, "memory": "2g"}, "studio": {"cpus": 2, "memory": "512m"}}
    inv_path = build_inventory(root, {MAJOR_ORG: settings}, base_dir)
    inv = Inventory(inv_path, inv_path / ".vault-pass")
    try:
        assert deploy.install(inv, [MAJOR_ORG], quiet()).result.ok
        size = seed(f"sfp-{MAJOR_ORG}-db", MAJOR_MIB)
        keys = secrets.read(inv, MAJOR_ORG)
        url = f"http://127.0.0.1:{ports['api']}/auth/v1/health"
        ctx = resolve(inv, MAJOR_ORG, check=True)
        started = time.monotonic()
        with Client(url, keys["SERVICE_ROLE_KEY"]) as client:
            outcome = upgrade_action.upgrade(ctx, "v0.8.1", quiet())
        ours = time.monotonic() - started
        print(f"ours: {ours:.1f} s in all; downtime seen through the gateway {client.downtime():.1f} s; "
              f"steps: {', '.join(f'{k} {v:.1f}' for k, v in sorted(outcome.timings.items()))}", flush=True)
        dump_s, restore_s = bare_dump_restore(base_dir / "orgs" / MAJOR_ORG, keys["POSTGRES_PASSWORD"])
        bare = dump_s + restore_s
        print(f"PostgreSQL 15 -> 17, databases of {size / 2**30:.2f} GiB")
        print(f"bare: pg_dump -Fc {dump_s:.1f} s + pg_restore -j 2 {restore_s:.1f} s = {bare:.1f} s")
        print(f"time ratio ours / bare: {ours / bare:.2f} (goal <= 1.3)")
    finally:
        remove_orgs((MAJOR_ORG,), base_dir)


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "--minor"
    if which in ("--major", "--all"):
        major()
    if which in ("--minor", "--all"):
        minor()


def minor() -> None:
    root = Path(tempfile.mkdtemp(prefix="sfp-bench-upgrade-"))
    with deployed_with_backups(root, ORG, "sfp-bench-upgrade", release="v0.8.0") as d:
        inv = Inventory(d.inventory.path, d.inventory.vault_password_file)
        key = secrets.read(inv, ORG)["SERVICE_ROLE_KEY"]
        url = f"http://127.0.0.1:{d.ports['api']}/auth/v1/health"
        ctx = resolve(inv, ORG, check=True)
        started = time.monotonic()
        with Client(url, key) as ours:
            outcome = upgrade_action.upgrade(ctx, "v0.8.1", quiet())
        total = time.monotonic() - started
        services = outcome.restarted
        org_dir = d.base_dir / "orgs" / ORG
        with Client(url, key) as bare:
            subprocess.run(["docker", "compose", "-p", f"sfp-{ORG}", "up", "-d", "--wait", "--force-recreate", "--no-deps", *services],
                           cwd=org_dir, check=True, capture_output=True, env={**os.environ})
            time.sleep(1)
        print(f"services restarted: {', '.join(services)}")
        print(f"ours: downtime {ours.downtime():.1f} s of an upgrade taking {total:.1f} s (with its verified backup)")
        print(f"bare: downtime {bare.downtime():.1f} s (compose up --wait --force-recreate of the same services)")
        print(f"downtime ratio ours / bare: {ours.downtime() / max(bare.downtime(), 0.05):.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
