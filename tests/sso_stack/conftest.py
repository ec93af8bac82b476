"""The SSO suite's orgs are the shared deployment's (tests/stack_shared.py: orga and orgb of the test
catalog on the local Docker engine, optional services off: SSO concerns Auth and the gateway only),
plus real test IdPs. Adding and removing providers recreates an org's Auth and leaves it running, so
the logs suite can share the orgs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.sso.idp_fixtures import (
    LoopbackHTTP,
    OidcIdP,
    SamlIdP,
    build_saml_idp,
    ensure_oidc_idp_installed,
    start_oidc_idp,
    stop,
)
from tests.stack_shared import SHARED_ORGS, SharedDeployment

ORGS = SHARED_ORGS


def pytest_configure(config: pytest.Config) -> None:
    # pysaml2 7.5 touches a cryptography symbol deprecated upstream; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:CFB has been moved:cryptography.utils.CryptographyDeprecationWarning")


# The SSO tests' view of the shared deployment: the same object, its inventory re-read from disk
# when the test starts (the CLI rewrites sso.yml and the vault).
SsoDeployment = SharedDeployment


@pytest.fixture
def sso_orgs(shared_orgs: SharedDeployment) -> SsoDeployment:
    return replace(shared_orgs, inventory=shared_orgs.fresh())


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
