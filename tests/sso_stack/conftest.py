"""Two orgs (ssoa, ssob) of the test catalog on the local Docker engine, plus real test IdPs.

Same pattern as tests/stack (fixture `two_orgs`), with other org names and free ports so that both
suites can run side by side. The optional services are off: SSO concerns Auth and the gateway only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from installer.actions import deploy
from installer.inventory import Inventory
from tests.sso.idp_fixtures import (
    LoopbackHTTP,
    OidcIdP,
    SamlIdP,
    build_saml_idp,
    ensure_oidc_idp_installed,
    start_oidc_idp,
    stop,
)
from tests.stack.conftest import (
    OPTIONAL_OFF,
    SMALL_API,
    build_inventory,
    org_ports,
    org_settings,
    remove_orgs,
    require_test_images,
)

ORGS = ("ssoa", "ssob")


def pytest_configure(config: pytest.Config) -> None:
    # pysaml2 7.5 touches a cryptography symbol deprecated upstream; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:CFB has been moved:cryptography.utils.CryptographyDeprecationWarning")


@dataclass
class SsoDeployment:
    inventory: Inventory
    base_dir: Path
    ports: dict[str, dict[str, int]]

    @property
    def inv_path(self) -> Path:
        return self.inventory.path

    def fresh(self) -> Inventory:
        """The inventory as it is on disk now (the CLI rewrites sso.yml and the vault)."""
        return Inventory(self.inventory.path, self.inventory.path / ".vault-pass")

    def api_url(self, org: str) -> str:
        return f"http://127.0.0.1:{self.ports[org]['api']}"


@pytest.fixture(scope="session")
def sso_orgs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SsoDeployment]:
    require_test_images()
    root = tmp_path_factory.mktemp("sso_stack")
    base_dir = root / "hosts" / "sfp"
    ports = org_ports(*ORGS)
    inv_path = build_inventory(root, {org: org_settings(ports[org], services=OPTIONAL_OFF, resources=SMALL_API) for org in ORGS}, base_dir)
    inv = Inventory(inv_path, inv_path / ".vault-pass")
    console = Console(record=True, width=200, file=open("/dev/null", "w"))  # noqa: SIM115
    try:
        outcome = deploy.install(inv, list(ORGS), console)
        if not outcome.result.ok and all("is unhealthy" in msg for _, _, msg in outcome.result.failures):
            # A starved CI machine can make a stand-in's health check (studio's starts node) miss its
            # timeout; install is safe to re-run, so give it one more go.
            outcome = deploy.install(inv, list(ORGS), console)
        assert outcome.result.ok, outcome.result.failures
        yield SsoDeployment(inv, base_dir, ports)
    finally:
        remove_orgs(ORGS, base_dir)


@pytest.fixture(scope="session")
def idp_http() -> Iterator[LoopbackHTTP]:
    server = LoopbackHTTP()
    yield server
    server.close()


@pytest.fixture(scope="session")
def saml_idp(tmp_path_factory: pytest.TempPathFactory, idp_http: LoopbackHTTP) -> SamlIdP:
    """A pysaml2 IdP whose signed metadata is served on loopback (valid certificate)."""
    return build_saml_idp(tmp_path_factory.mktemp("idp"), idp_http)


@pytest.fixture(scope="session")
def expired_idp(tmp_path_factory: pytest.TempPathFactory, idp_http: LoopbackHTTP) -> SamlIdP:
    """Another IdP whose only signing certificate has expired."""
    return build_saml_idp(tmp_path_factory.mktemp("expired"), idp_http, cert_expired=True, path="/expired/metadata",
                          stem="expired")


@pytest.fixture(scope="session")
def oidc_idp() -> Iterator[OidcIdP]:
    """panva's oidc-provider on loopback (tests/sso/oidc_idp)."""
    ensure_oidc_idp_installed()
    idp = start_oidc_idp()
    yield idp
    stop(idp.process)
