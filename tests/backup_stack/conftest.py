"""One org of the test catalog on the local Docker engine, with backups to `rclone serve s3` on loopback.

Patterns of tests/stack/conftest.py (own org name, random ports, cleanup in finally); the S3
server is the backup library's test fixture (tests/backup/support.py).
"""

from __future__ import annotations

import os
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
from tests.stack.conftest import (
    build_inventory,
    free_ports,
    org_settings,
    remove_orgs,
    require_test_images,
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


def quiet() -> Console:
    return Console(record=True, width=200, file=open(os.devnull, "w"))


@pytest.fixture(scope="module")
def backup_org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackupDeployment]:
    require_test_images()
    root = tmp_path_factory.mktemp("backup-stack")
    (root / "s3").mkdir()
    server = RcloneS3(root / "s3")
    base_dir = root / "hosts" / "sfp"
    cron_dir = root / "cron.d"
    cron_dir.mkdir()
    p = free_ports(3)
    ports = {"api": p[0], "postgres": p[1], "pooler_transaction": p[2]}
    backup_block: dict[str, Any] = {
        "store": {"bucket": BUCKET, "prefix": "sfp", "endpoint_url": server.endpoint, "path_style": True,
                  "credentials": {"source": "vault"}},
        "schedule": "41 2 * * *",
        "retention": {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 0},
    }
    settings = org_settings(ports, services={"analytics": False, "functions": False, "imgproxy": False}, backup=backup_block)
    # Studio's health check starts node inside its limit: give it the whole (busy, shared) machine.
    settings["resources"] = {**settings["resources"], "studio": {"cpus": 2, "memory": "512m"}}
    inv_path = build_inventory(root, {ORG: settings}, base_dir)
    # Where the role puts the schedule on this test machine (no systemd; a temp dir for cron.d).
    write_yaml(inv_path / "host_vars" / ORG / "backup.yml", {"backup__scheduler": "cron", "backup__cron_dir": str(cron_dir)})
    inv = Inventory(inv_path, inv_path / ".vault-pass")
    secrets.set_value(inv, ORG, "BACKUP_S3_ACCESS_KEY_ID", ACCESS_KEY)
    secrets.set_value(inv, ORG, "BACKUP_S3_SECRET_ACCESS_KEY", SECRET_KEY)
    server.store(BUCKET)  # creates the bucket
    try:
        outcome = deploy.install(Inventory(inv_path, inv_path / ".vault-pass"), [ORG], quiet())
        assert outcome.result.ok, (outcome.result.failures, outcome.result.stdout_tail)
        assert "BACKUP_RECOVERY_IDENTITY" in outcome.generated[ORG]
        yield BackupDeployment(Inventory(inv_path, inv_path / ".vault-pass"), base_dir, ports, server, cron_dir)
    finally:
        remove_orgs((ORG,), base_dir)
        server.stop()
