"""One deployment shared by the suites that only need "a running org": tests/logs_stack and tests/sso_stack.

Two orgs of the test catalog (orga, orgb; optional services off, room for the gateway and Auth)
installed once per session, plus the S3 store that orga's `logs.export` names, its keys in orga's
vault before the install (as an operator's `secrets set` would put them), so that a later install
of the org changes nothing. The logs suite reads the orgs' logs; the SSO suite adds and removes
providers, which recreates Auth and leaves the orgs running. Neither takes an org down: the tests
that must (idempotence of a fresh deploy, uninstall, purge, restore, remote hosts over SSH) keep
deployments of their own.

Registered as a plugin by tests/conftest.py, so both suites see the fixture; `docker_engine`
marks every test that uses it `stack`. Made on first use and removed once the last test that
uses it has run: tests/conftest.py runs those tests one after the other (one xdist group).
"""

from __future__ import annotations

import os
from contextlib import ExitStack
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
)

ORG_A, ORG_B = SHARED_ORGS = ("orga", "orgb")
LOGS_BUCKET = "logs-bucket"
LOGS_PREFIX = f"exports/{ORG_A}"


@dataclass
class SharedDeployment:
    inventory: Inventory
    base_dir: Path
    ports: dict[str, dict[str, int]]
    s3: S3Target  # orga's logs.export store

    @property
    def inv_path(self) -> Path:
        return self.inventory.path

    def fresh(self) -> Inventory:
        """The inventory as it is on disk now (the CLI rewrites sso.yml and the vault)."""
        return Inventory(self.inventory.path, self.inventory.path / ".vault-pass")

    def api_url(self, org: str) -> str:
        return f"http://127.0.0.1:{self.ports[org]['api']}"


def deploy_shared(root: Path, stack: ExitStack) -> SharedDeployment:
    (root / "s3" / LOGS_BUCKET).mkdir(parents=True)
    server = RcloneS3(root / "s3")
    stack.callback(server.stop)
    store = S3Target(bucket=LOGS_BUCKET, prefix=LOGS_PREFIX, endpoint_url=server.endpoint, path_style=True,
                     access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-east-1")
    base_dir = root / "hosts" / "sfp"
    stack.callback(remove_orgs, SHARED_ORGS, base_dir)
    ports = org_ports(*SHARED_ORGS)
    export = {"endpoint_url": server.endpoint, "region": "us-east-1", "path_style": True,
              "bucket": LOGS_BUCKET, "prefix": LOGS_PREFIX, "retention": {"keep_last": 1}}
    inv_path = build_inventory(root, {
        ORG_A: org_settings(ports[ORG_A], services=OPTIONAL_OFF, resources=SMALL_API, logs={"export": export}),
        ORG_B: org_settings(ports[ORG_B], services=OPTIONAL_OFF, resources=SMALL_API),
    }, base_dir)
    inv = Inventory(inv_path, inv_path / ".vault-pass")
    secrets.set_value(inv, ORG_A, "LOGS_S3_ACCESS_KEY_ID", ACCESS_KEY)
    secrets.set_value(inv, ORG_A, "LOGS_S3_SECRET_ACCESS_KEY", SECRET_KEY)
    console = Console(record=True, width=200, file=open(os.devnull, "w"))  # noqa: SIM115
    outcome = deploy.install(Inventory(inv_path, inv_path / ".vault-pass"), list(SHARED_ORGS), console)
    if not outcome.result.ok and all("is unhealthy" in msg for _, _, msg in outcome.result.failures):
        # A starved CI machine can make a stand-in's health check (Studio's starts node) miss its
        # timeout; install is safe to re-run, so give it one more go.
        outcome = deploy.install(Inventory(inv_path, inv_path / ".vault-pass"), list(SHARED_ORGS), console)
    assert outcome.result.ok, (outcome.result.failures, outcome.result.stdout_tail)
    return SharedDeployment(Inventory(inv_path, inv_path / ".vault-pass"), base_dir, ports, store)


class _Shared:
    """The one deployment of this process (an xdist worker or a plain run) and its clean-up."""

    deployment: SharedDeployment | None = None
    failed: BaseException | None = None
    cleanup = ExitStack()


def close_shared() -> None:
    _Shared.deployment, _Shared.failed = None, None
    _Shared.cleanup.close()


@pytest.fixture
def shared_orgs(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> SharedDeployment:
    """The shared deployment, made on first use. Not a session fixture: it is removed as soon as
    the last test that uses it has run (pytest_runtest_teardown below), so its containers do not
    load the machine for the rest of the run. tests/conftest.py orders its users together."""
    if _Shared.failed is not None:
        pytest.fail(f"the shared deployment could not be made: {_Shared.failed}")
    if _Shared.deployment is None:
        try:
            _Shared.deployment = deploy_shared(tmp_path_factory.mktemp("shared_stack"), _Shared.cleanup)
        except BaseException as exc:  # one failed deploy fails its users, it is not retried by each
            _Shared.failed = exc
            _Shared.cleanup.close()
            raise
    return _Shared.deployment


def uses_shared(item: pytest.Item | None) -> bool:
    return item is not None and "shared_orgs" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if uses_shared(item) and not uses_shared(nextitem):
        close_shared()


def pytest_sessionfinish() -> None:
    close_shared()
