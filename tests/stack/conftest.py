"""A real two-org deployment of the test image catalog on the local Docker engine.

The test catalog runs real PostgreSQL 17 and the real postgres-meta; every other service is a
stand-in (tests/images/standin). These tests therefore prove orchestration: rendering, secrets,
ports, credentials, networks, limits, start order, idempotence. Not upstream behaviour.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from installer.actions import deploy, secrets
from installer.inventory import Inventory

# require_test_images: the suites' own module fixtures import it from here.
from tests.conftest import require_test_images as require_test_images
from tests.conftest import write_yaml


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def inspect(container: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(docker("inspect", container).stdout)
    return data[0]


def project_containers(project: str) -> list[str]:
    out = docker("ps", "-a", "--filter", f"label=com.docker.compose.project={project}", "--format", "{{.Names}}").stdout
    return sorted(out.split())


def service_start_times(project: str) -> dict[str, str]:
    """Service -> its container's start time (a restart or a recreation changes it)."""
    out: dict[str, str] = {}
    for cid in project_containers(project):
        info = inspect(cid)
        out[info["Config"]["Labels"]["com.docker.compose.service"]] = info["State"]["StartedAt"]
    return out


def service_health(project: str) -> dict[str, str]:
    """Service -> its health, or its state ("running") when it has no health check (pg-meta)."""
    out: dict[str, str] = {}
    for cid in project_containers(project):
        info = inspect(cid)
        state = info["State"]
        out[info["Config"]["Labels"]["com.docker.compose.service"]] = (state.get("Health") or {}).get("Status", state["Status"])
    return out


def remove_orgs(orgs: tuple[str, ...] | list[str], base_dir: Path) -> None:
    """Remove everything the orgs own on the engine and disk, whatever state a test left them in."""
    for org in orgs:
        project = f"sfp-{org}"
        ids = project_containers(project)
        if ids:
            docker("rm", "-f", *ids, check=False)
        # By id: an interrupted run can leave two networks of one name, which `rm NAME` refuses.
        nets = docker("network", "ls", "-q", "--filter", f"name=^{project}$").stdout.split()
        if nets:
            docker("network", "rm", *nets, check=False)
        vols = docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}").stdout.split()
        if vols:
            docker("volume", "rm", *vols, check=False)
    # Data written by containers (postgres uid) is removed as root, like the role's purge.
    shutil.rmtree(base_dir, ignore_errors=True)


@dataclass
class Deployment:
    inventory: Inventory
    base_dir: Path
    ports: dict[str, dict[str, int]]
    console_text: str

    def secrets(self, org: str) -> dict[str, str]:
        return secrets.read(self.inventory, org)


def build_inventory(root: Path, orgs: dict[str, dict[str, Any]], base_dir: Path) -> Path:
    inv = root / "inventory"
    from installer import paths

    shutil.copytree(paths.inventory_example(), inv)
    shutil.rmtree(inv / "host_vars")
    write_yaml(inv / "hosts.yml", {"all": {"children": {"sfp_orgs": {"children": {"machine_local": {
        "vars": {"sfp_machine": "local", "ansible_connection": "local",
                 "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "hosts": {n: None for n in orgs},
    }}}}}})
    write_yaml(inv / "group_vars" / "all" / "main.yml", {
        "sfp_base_dir": str(base_dir),
        "sfp_image_catalog": "test",
        "sfp_min_free_disk_gb": 1,
    })
    for org, cfg in orgs.items():
        write_yaml(inv / "host_vars" / org / "main.yml", {"sfp_org": cfg})
    from installer.vault import create_password_file

    create_password_file(inv / ".vault-pass")
    return inv


# Small limits: stand-ins need little, and two orgs must fit a 2-core CI machine.
# Health checks run inside the container's limits: Studio's (upstream's `node -e fetch(...)`)
# needs a whole CPU to start node within its timeout on a busy 2-core machine.
SMALL = {
    "db": {"cpus": 1, "memory": "512m"},
    "meta": {"cpus": 0.5, "memory": "256m"},
    "studio": {"cpus": 1, "memory": "256m"},
    **{s: {"cpus": 0.25, "memory": "128m"} for s in
       ("kong", "auth", "rest", "realtime", "storage", "imgproxy", "functions", "analytics", "vector", "supavisor")},
}
# SMALL with room for the gateway and Auth, for suites that drive them (SSO admin API, logs).
SMALL_API = {**SMALL, "kong": {"cpus": 0.5, "memory": "128m"}, "auth": {"cpus": 0.5, "memory": "128m"}}
# The optional services switched off: faster stacks, and the "off" path of the templates exercised.
OPTIONAL_OFF = {"analytics": False, "functions": False, "imgproxy": False}


def org_ports(*orgs: str) -> dict[str, dict[str, int]]:
    """Free ports for the published services (api, postgres, pooler) of each org."""
    p = free_ports(3 * len(orgs))
    return {org: {"api": p[i], "postgres": p[i + 1], "pooler_transaction": p[i + 2]}
            for org, i in zip(orgs, range(0, len(p), 3), strict=True)}


def org_settings(ports: dict[str, int], **extra: Any) -> dict[str, Any]:
    return {
        "release": "v0.8.1",
        "public_url": f"http://127.0.0.1:{ports['api']}",
        "ports": ports,
        "resources": SMALL,
        "smtp": {"host": "smtp.example.test", "port": 2525, "admin_email": "admin@example.test"},
        **extra,
    }


def running_containers(project: str) -> list[str]:
    out = docker("ps", "--filter", f"label=com.docker.compose.project={project}", "--filter", "status=running",
                 "--format", "{{.Names}}").stdout
    return sorted(out.split())


def reinstall_stopped(d: Deployment, orgs: tuple[str, ...]) -> None:
    """Install again the orgs a test took down (uninstall, purge): the next test, whichever it is, finds
    them running. Costs nothing when every org is up, which is the case in file order."""
    down = [org for org in orgs if not running_containers(f"sfp-{org}")]
    if down:
        outcome = deploy.install(d.inventory, down, Console(file=open("/dev/null", "w")))  # noqa: SIM115
        assert outcome.result.ok, (outcome.result.failures, outcome.result.stdout_tail)


@pytest.fixture
def two_orgs(two_orgs_deployed: Deployment) -> Deployment:
    """Both orgs installed, for each test: no test depends on which test ran before it."""
    reinstall_stopped(two_orgs_deployed, ("alpha", "beta"))
    return two_orgs_deployed


@pytest.fixture(scope="module")
def two_orgs_deployed(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("stack")
    base_dir = root / "hosts" / "sfp"
    ports = org_ports("alpha", "beta")
    inv_path = build_inventory(root, {
        "alpha": org_settings(ports["alpha"]),
        # beta runs without the optional services, so switching them off is exercised too.
        "beta": org_settings(ports["beta"], services=OPTIONAL_OFF),
    }, base_dir)
    inv = Inventory(inv_path, inv_path / ".vault-pass")
    console = Console(record=True, width=200, file=open("/dev/null", "w"))  # noqa: SIM115
    try:
        outcome = deploy.install(inv, ["alpha", "beta"], console)
        assert outcome.result.ok, outcome.result.failures
        yield Deployment(inv, base_dir, ports, console.export_text())
    finally:
        remove_orgs(("alpha", "beta"), base_dir)
