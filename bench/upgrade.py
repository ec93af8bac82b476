"""Upgrade downtime benchmark: `sfp-server upgrade` against a bare `docker compose up --wait` of the
same services, measured the same way, side by side in one run.

    .venv/bin/python bench/upgrade.py

One org of the test catalog (stand-ins: this measures the orchestration's downtime, not upstream's
start-up times) is installed on v0.8.0 with backups to `rclone serve s3`. A client sends a request
through the gateway every 50 ms (Auth's health, with the service key) for the whole run; downtime
is the sum of the spans from a failed request to the next answered one.
  ours  the upgrade to v0.8.1 (plan, pull, verified backup, deploy, gate); the client sees only
        the deploy's restarts
  bare  `docker compose up -d --wait --force-recreate` of the same services on the upgraded org
goal: ours / bare <= 1.2. The total time of the upgrade (with its backup) is printed beside it.
PostgreSQL 15 -> 17 (the issue's second figure) is not implemented yet, so not measured. Not run in CI.
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

from installer.actions import secrets  # noqa: E402
from installer.actions import upgrade as upgrade_action  # noqa: E402
from installer.context import resolve  # noqa: E402
from installer.inventory import Inventory  # noqa: E402
from tests.backup_stack.conftest import deployed_with_backups, quiet  # noqa: E402

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


def main() -> None:
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
