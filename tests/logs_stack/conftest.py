"""The logs suite runs on the shared deployment (tests/stack_shared.py): two orgs of the test catalog
installed through the toolkit on the local Docker engine, plus the S3 store (`rclone serve s3`, as in
tests/logs) that orga's `logs.export` names, its keys in orga's vault.

These tests read logs and export them; they change no org, so they share the orgs with the SSO suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from installer.actions import secrets
from installer.inventory import Inventory
from installer.logs import S3Target
from tests.stack_shared import LOGS_BUCKET, LOGS_PREFIX, SHARED_ORGS, SharedDeployment

ORGS = SHARED_ORGS
BUCKET = LOGS_BUCKET
PREFIX = LOGS_PREFIX


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


def logs_view(shared: SharedDeployment) -> LogsDeployment:
    return LogsDeployment(shared.fresh(), shared.ports, shared.s3)


@pytest.fixture
def log_orgs(shared_orgs: SharedDeployment) -> LogsDeployment:
    """The shared orgs, with the inventory as it is on disk when the test starts."""
    return logs_view(shared_orgs)
