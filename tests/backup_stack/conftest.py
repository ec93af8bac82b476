"""One org of the test catalog on the local Docker engine, with backups to `rclone serve s3` on loopback.

Patterns of tests/stack/conftest.py (own org name, random ports, cleanup in finally); the S3
server is the backup library's test fixture (tests/backup/support.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from installer.actions import deploy, secrets
from installer.inventory import Inventory
from tests.backup.support import ACCESS_KEY, SECRET_KEY, RcloneS3
from tests.conftest import write_yaml
from tests.sshd import SshServer, running_sshd
from tests.stack.conftest import (
    OPTIONAL_OFF,
    build_inventory,
    org_ports,
    org_settings,
    remove_orgs,
)

ORG = "bkstack"
BUCKET = "sfp-stack-backups"


@dataclass
class BackupDeployment:
    inventory: Inventory
    base_dir: Path
    ports: dict[str, int]
    s3: RcloneS3
    cron_dir: Path

    @property
    def org_dir(self) -> Path:
        return self.base_dir / "orgs" / ORG

    def secrets(self) -> dict[str, str]:
        return secrets.read(Inventory(self.inventory.path, self.inventory.vault_password_file), ORG)


def logical_dump(org: str) -> str:
    """The org's `postgres` database as pg_dump prints it, run in its own database container."""
    done = subprocess.run(["docker", "exec", "-e", "PGUSER=supabase_admin", f"sfp-{org}-db", "pg_dump", "-d", "postgres",
                           "--no-comments"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    # pg_dump 17.6+ brackets its output with a random \restrict key: not data.
    return "\n".join(line for line in done.stdout.splitlines() if not re.match(r"^\\(un)?restrict ", line))


def storage_tree(root: Path) -> dict[str, tuple[str, dict[str, bytes]]]:
    """Every file under the storage volume: sha256 of its content and the storage service's xattrs."""
    tree: dict[str, tuple[str, dict[str, bytes]]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            attrs = {a: os.getxattr(path, a) for a in os.listxattr(path) if a.startswith("user.supabase.")}
            tree[str(path.relative_to(root))] = (hashlib.sha256(path.read_bytes()).hexdigest(), attrs)
    return tree


def quiet() -> Console:
    return Console(record=True, width=200, file=open(os.devnull, "w"))


@contextlib.contextmanager
def deployed_with_backups(root: Path, org: str, bucket: str, **extra: Any) -> Iterator[BackupDeployment]:
    """`org` installed from the test catalog with a backup block to a fresh `rclone serve s3` bucket
    (schedule in a temp cron.d), removed again afterwards. `extra` are further sfp_org settings."""
    (root / "s3").mkdir()
    server = RcloneS3(root / "s3")
    base_dir = root / "hosts" / "sfp"
    cron_dir = root / "cron.d"
    cron_dir.mkdir()
    ports = org_ports(org)[org]
    backup_block: dict[str, Any] = {
        "store": {"bucket": bucket, "prefix": "sfp", "endpoint_url": server.endpoint, "path_style": True,
                  "credentials": {"source": "vault"}},
        "schedule": "41 2 * * *",
        "retention": {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 0},
    }
    settings = org_settings(ports, services=OPTIONAL_OFF, backup=backup_block, **extra)
    # Studio's health check starts node inside its limit: give it the whole (busy, shared) machine.
    settings["resources"] = {**settings["resources"], "studio": {"cpus": 2, "memory": "512m"}}
    inv_path = build_inventory(root, {org: settings}, base_dir)
    # Where the role puts the schedule on this test machine (no systemd; a temp dir for cron.d).
    write_yaml(inv_path / "host_vars" / org / "backup.yml", {"backup__scheduler": "cron", "backup__cron_dir": str(cron_dir)})
    inv = Inventory(inv_path, inv_path / ".vault-pass")
    secrets.set_value(inv, org, "BACKUP_S3_ACCESS_KEY_ID", ACCESS_KEY)
    secrets.set_value(inv, org, "BACKUP_S3_SECRET_ACCESS_KEY", SECRET_KEY)
    server.store(bucket)  # creates the bucket
    try:
        outcome = deploy.install(Inventory(inv_path, inv_path / ".vault-pass"), [org], quiet())
        assert outcome.result.ok, (outcome.result.failures, outcome.result.stdout_tail)
        assert "BACKUP_RECOVERY_IDENTITY" in outcome.generated[org]
        yield BackupDeployment(Inventory(inv_path, inv_path / ".vault-pass"), base_dir, ports, server, cron_dir)
    finally:
        remove_orgs((org,), base_dir)
        server.stop()


@pytest.fixture(scope="module")
def backup_org(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[BackupDeployment]:
    with deployed_with_backups(tmp_path_factory.mktemp("backup-stack"), ORG, BUCKET) as deployment:
        yield deployment


# -- remote orgs (tests/backup_stack/test_remote.py) --------------------------------------------
# A second sshd on a random loopback port stands for the org's host (the fixture of
# tests/logs/test_remote.py): Ansible reaches it with `ansible_connection: ssh`, and its Docker
# engine is this machine's. Two machine groups, each with its own base dir and cron dir, stand for
# two machines: restore --to-host moves an org between them.
REMOTE_ORG = "bkra"
NEW_ORG = "bkrb"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@dataclass
class RemoteDeployment:
    inventory: Inventory
    root: Path
    ports: dict[str, dict[str, int]]
    s3: RcloneS3

    def base_dir(self, machine: str) -> Path:
        return self.root / machine / "sfp"

    def cron_dir(self, machine: str) -> Path:
        return self.root / machine / "cron.d"

    def org_dir(self, machine: str, org: str) -> Path:
        return self.base_dir(machine) / "orgs" / org

    def fresh(self) -> Inventory:
        return Inventory(self.inventory.path, self.inventory.vault_password_file)

    def secrets(self, org: str) -> dict[str, str]:
        return secrets.read(self.fresh(), org)


def remote_backup_block(endpoint: str) -> dict[str, Any]:
    return {
        "store": {"bucket": BUCKET, "prefix": "remote", "endpoint_url": endpoint, "path_style": True,
                  "credentials": {"source": "vault"}},
        "schedule": "23 4 * * *",
        "retention": {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 0},
    }


def remote_machine_vars(root: Path, machine: str, ssh: SshServer) -> dict[str, Any]:
    return {
        "sfp_machine": machine,
        "sfp_base_dir": str(root / machine / "sfp"),
        # The host "has the toolkit installed" at this interpreter (the wheel install needs a package index).
        **ssh.ansible_vars(sys.executable),
        "backup__python": sys.executable,
        "backup__scheduler": "cron",
        "backup__cron_dir": str(root / machine / "cron.d"),
    }


@pytest.fixture(scope="module")
def remote_org(tmp_path_factory: pytest.TempPathFactory, sshd: SshServer, docker_engine: None) -> Iterator[RemoteDeployment]:
    root = tmp_path_factory.mktemp("backup-remote")
    (root / "s3").mkdir()
    server = RcloneS3(root / "s3")
    for machine in ("hosta", "hostb"):
        (root / machine / "cron.d").mkdir(parents=True)
    ports = org_ports(REMOTE_ORG, NEW_ORG)
    orgs = {REMOTE_ORG: org_settings(ports[REMOTE_ORG], services=OPTIONAL_OFF, backup=remote_backup_block(server.endpoint)),
            NEW_ORG: org_settings(ports[NEW_ORG], services=OPTIONAL_OFF)}
    for cfg in orgs.values():
        cfg["resources"] = {**cfg["resources"], "studio": {"cpus": 2, "memory": "512m"}}
    inv_path = build_inventory(root, orgs, root / "hosta" / "sfp")
    # Each machine's base dir is a var of its group: group_vars/all would override it (Ansible precedence).
    write_yaml(inv_path / "group_vars" / "all" / "main.yml", {"sfp_image_catalog": "test", "sfp_min_free_disk_gb": 1})
    write_yaml(inv_path / "hosts.yml", {"all": {"children": {"sfp_orgs": {"children": {
        "machine_a": {"vars": remote_machine_vars(root, "hosta", sshd), "hosts": {REMOTE_ORG: None, NEW_ORG: None}},
        "machine_b": {"vars": remote_machine_vars(root, "hostb", sshd), "hosts": {}},
    }}}}})
    inv = Inventory(inv_path, inv_path / ".vault-pass")
    secrets.set_value(inv, REMOTE_ORG, "BACKUP_S3_ACCESS_KEY_ID", ACCESS_KEY)
    secrets.set_value(inv, REMOTE_ORG, "BACKUP_S3_SECRET_ACCESS_KEY", SECRET_KEY)
    server.store(BUCKET)
    try:
        outcome = deploy.install(Inventory(inv_path, inv_path / ".vault-pass"), [REMOTE_ORG], quiet())
        assert outcome.result.ok, (outcome.result.failures, outcome.result.stdout_tail)
        yield RemoteDeployment(Inventory(inv_path, inv_path / ".vault-pass"), root, ports, server)
    finally:
        for machine in ("hosta", "hostb"):
            remove_orgs((REMOTE_ORG, NEW_ORG), root / machine / "sfp")
        server.stop()
