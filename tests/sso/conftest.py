"""Fixtures for tests/sso: real IdPs on loopback (see idp_fixtures.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def pytest_configure(config: pytest.Config) -> None:
    # pysaml2 7.5 touches a cryptography symbol deprecated upstream; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:CFB has been moved:cryptography.utils.CryptographyDeprecationWarning")


@pytest.fixture
def loopback_http() -> Iterator[LoopbackHTTP]:
    server = LoopbackHTTP()
    yield server
    server.close()


@pytest.fixture
def saml_idp(tmp_path: Path, loopback_http: LoopbackHTTP) -> Callable[..., SamlIdP]:
    def make(**kw: Any) -> SamlIdP:
        return build_saml_idp(tmp_path, loopback_http, **kw)

    return make


@pytest.fixture(scope="session")
def oidc_idp_installed() -> None:
    ensure_oidc_idp_installed()


@pytest.fixture
def oidc_idp(oidc_idp_installed: None) -> Iterator[Callable[..., OidcIdP]]:
    started: list[OidcIdP] = []

    def make(**kw: Any) -> OidcIdP:
        idp = start_oidc_idp(**kw)
        started.append(idp)
        return idp

    yield make
    for idp in started:
        stop(idp.process)
