"""Two orgs (loga, logb) of the test catalog installed through the toolkit on the local Docker
engine, plus an S3 store (`rclone serve s3`, as in tests/logs) that loga's `logs.export` names.

Same pattern as tests/stack and tests/sso_stack (other org names, free ports, so the suites can run
side by side); the optional services are off: these tests read logs, they need a few services only.
Everything is removed at the end, whatever happens.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from installer.actions import deploy, secrets
from installer.inventory import Inventory
from installer.logs import S3Target
from tests.backup.support import ACCESS_KEY, SECRET_KEY, RcloneS3
from tests.stack.conftest import (
    OPTIONAL_OFF,
    SMALL_API,
    build_inventory,
    org_ports,
    org_settings,
    remove_orgs,
    require_test_images,
)

ORGS = ("loga", "logb")
BUCKET = "logs-bucket"
PREFIX = "exports/loga"
RCLONE = shutil.which("rclone") or str(Path(sys.executable).parent / "rclone")


@dataclass
class LogsDeployment:
    inventory: Inventory
    ports: dict[str, dict[str, int]]
    s3: S3Target

    @property
    def inv_path(self) -> Path:
        return self.inventory.path

    def secrets(self, org: str) -> dict[str, str]:
        return secrets.read(self.inventory, org)

    def api_url(self, org: str) -> str:
        return f"http://127.0.0.1:{self.ports[org]['api']}"


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Target]:
    """`rclone serve s3` on a free loopback port (the server of the backup tests)."""
    root = tmp_path_factory.mktemp("s3")
    (root / BUCKET).mkdir()
    server = RcloneS3(root)
    try:
        yield S3Target(bucket=BUCKET, prefix=PREFIX, endpoint_url=server.endpoint, path_style=True,
                       access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-east-1")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def log_orgs(tmp_path_factory: pytest.TempPathFactory, s3_store: S3Target) -> Iterator[LogsDeployment]:
    require_test_images()
    root = tmp_path_factory.mktemp("logs_stack")
    base_dir = root / "hosts" / "sfp"
    ports = org_ports(*ORGS)
    export = {"endpoint_url": s3_store.endpoint_url, "region": "us-east-1", "path_style": True,
              "bucket": BUCKET, "prefix": PREFIX, "retention": {"keep_last": 1}}
    inv_path = build_inventory(root, {
        "loga": org_settings(ports["loga"], services=OPTIONAL_OFF, resources=SMALL_API, logs={"export": export}),
        "logb": org_settings(ports["logb"], services=OPTIONAL_OFF, resources=SMALL_API),
    }, base_dir)
    inv = Inventory(inv_path, inv_path / ".vault-pass")
    console = Console(record=True, width=200, file=open("/dev/null", "w"))  # noqa: SIM115
    try:
        outcome = deploy.install(inv, list(ORGS), console)
        if not outcome.result.ok:
            # A health check that timed out on a loaded machine (Studio's starts node): the install
            # is idempotent, so one more run waits again for what is still starting.
            outcome = deploy.install(inv, list(ORGS), console)
        assert outcome.result.ok, outcome.result.failures
        # The export store's keys, kept in loga's vault like an operator would (`secrets set`).
        secrets.set_value(inv, "loga", "LOGS_S3_ACCESS_KEY_ID", str(s3_store.access_key))
        secrets.set_value(inv, "loga", "LOGS_S3_SECRET_ACCESS_KEY", str(s3_store.secret_key))
        yield LogsDeployment(Inventory(inv_path, inv_path / ".vault-pass"), ports, s3_store)
    finally:
        remove_orgs(ORGS, base_dir)
