#!/usr/bin/env python3
"""Install time of `sfp-server install` against a bare `docker compose up -d --wait`.

Measured side by side in one run, on the same rendered project with the test image catalog
(images present, fresh org each time: empty data directory, so the database initialises in
both). Prints the ratio (goal: at most 1.5) and the time of an unchanged re-run (goal: under
15 s). Run: .venv/bin/python bench/install.py [--rounds N]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from installer import paths  # noqa: E402
from installer.vault import create_password_file  # noqa: E402

ORG = "benchorg"
PROJECT = f"sfp-{ORG}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], cwd: Path | None = None) -> float:
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    took = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return took


def wipe(org_dir: Path) -> None:
    """Remove the org's containers, volumes and data, keeping the rendered files."""
    subprocess.run(["docker", "compose", "-p", PROJECT, "down", "-v", "--remove-orphans"], cwd=org_dir,
                   capture_output=True, check=False)
    shutil.rmtree(org_dir / "volumes" / "db" / "data", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="sfp-bench-install-"))
    inv = root / "inventory"
    shutil.copytree(paths.inventory_example(), inv)
    shutil.rmtree(inv / "host_vars")
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"sfp_orgs": {"children": {"machine_local": {
        "vars": {"sfp_machine": "local", "ansible_connection": "local",
                 "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "hosts": {ORG: None}}}}}}}))
    (inv / "group_vars" / "all" / "main.yml").write_text(yaml.safe_dump({
        "sfp_base_dir": str(root / "sfp"), "sfp_image_catalog": "test", "sfp_min_free_disk_gb": 1}))
    (inv / "host_vars" / ORG).mkdir(parents=True)
    api = free_port()
    (inv / "host_vars" / ORG / "main.yml").write_text(yaml.safe_dump({"sfp_org": {
        "release": "v0.8.1", "public_url": f"http://127.0.0.1:{api}",
        "ports": {"api": api, "postgres": free_port(), "pooler_transaction": free_port()},
        "resources": {"db": {"cpus": 1, "memory": "512m"}},
    }}))
    create_password_file(inv / ".vault-pass")
    sfp = [sys.executable, "-m", "installer.cli", "-i", str(inv)]
    org_dir = root / "sfp" / "orgs" / ORG

    ours: list[float] = []
    bare: list[float] = []
    rerun: list[float] = []
    try:
        for i in range(args.rounds):
            ours.append(run([*sfp, "install", "--org", ORG]))
            rerun.append(run([*sfp, "install", "--org", ORG]))
            wipe(org_dir)
            bare.append(run(["docker", "compose", "-p", PROJECT, "up", "-d", "--wait"], cwd=org_dir))
            wipe(org_dir)
            print(f"round {i + 1}: sfp-server install {ours[-1]:.1f}s, unchanged re-run {rerun[-1]:.1f}s, "
                  f"docker compose up --wait {bare[-1]:.1f}s", flush=True)
    finally:
        subprocess.run([*sfp, "uninstall", "--org", ORG, "--purge", "--confirm", ORG], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)

    best_ours, best_bare, best_rerun = min(ours), min(bare), min(rerun)
    print(f"install / compose-up ratio: {best_ours / best_bare:.2f} (goal <= 1.5; best of {args.rounds}: "
          f"{best_ours:.1f}s vs {best_bare:.1f}s)")
    print(f"unchanged re-run: {best_rerun:.1f}s (goal < 15 s)")


if __name__ == "__main__":
    main()
