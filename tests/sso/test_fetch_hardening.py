"""IdP fetches (SAML metadata, OIDC discovery, JWKS) check every redirect hop and every address.

Real HTTP servers on loopback (tests/sso/idp_fixtures.LoopbackHTTP) answer with redirects; host
names that must resolve somewhere else are mapped with a patched resolver, and every TCP connection
the HTTP client opens is recorded, so a test sees that a refused target was never contacted.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3.util.connection

from installer.sso import _net
from installer.sso.oidc import validate_oidc_provider
from installer.sso.saml import validate_saml_metadata
from tests.sso.idp_fixtures import LoopbackHTTP, Route, SamlIdP, redirect

PASSWD_MARKERS = ("root:", "/bin/", "nologin", "daemon:")


def _messages(report: Any) -> str:
    return "\n".join(str(f) for f in report.findings.items)


@pytest.fixture
def front() -> Iterator[LoopbackHTTP]:
    """A second loopback server: the URL the operator gave, which redirects."""
    server = LoopbackHTTP()
    yield server
    server.close()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every connection the HTTP client opens; only loopback ones really connect (no test leaves the machine)."""
    opened: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def record(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        host, port = address
        opened.append((host, port))
        if host not in ("127.0.0.1", "localhost", "::1"):
            resolved = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
            if resolved != "127.0.0.1":
                raise OSError(f"test: no connection to {host} ({resolved}) leaves this machine")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", record)
    return opened


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Host name -> address, for names tests make up (the rest resolve as usual)."""
    names: dict[str, str] = {}
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host in names:
            address = names[host]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, int(port or 0), 0, 0) if family == socket.AF_INET6 else (address, int(port or 0))
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return names


@pytest.mark.parametrize("address", [
    "169.254.169.254", "169.254.0.1", "169.254.170.2", "fe80::1", "fe80::1%eth0", "fd00:ec2::254",
    "100.100.100.200", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1",
])
def test_link_local_and_metadata_addresses_are_forbidden(address: str) -> None:
    assert _net.forbidden_address(address)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "192.168.1.10", "93.184.216.34", "2001:db8::1", "::1"])
def test_ordinary_addresses_are_not(address: str) -> None:
    assert not _net.forbidden_address(address)


def test_redirect_between_loopback_urls_is_followed(saml_idp: Callable[..., SamlIdP], front: LoopbackHTTP,
                                                    loopback_http: LoopbackHTTP) -> None:
    idp = saml_idp()
    front.routes["/start"] = redirect(idp.metadata_url)
    report = validate_saml_metadata(url=front.url("/start"), allow_insecure_loopback=True)
    assert report.ok, _messages(report)
    assert report.entity_id == idp.entity_id
    assert loopback_http.hits == ["/idp/metadata"]


def test_redirect_to_plain_http_elsewhere_is_refused_before_it_is_requested(
        saml_idp: Callable[..., SamlIdP], front: LoopbackHTTP, loopback_http: LoopbackHTTP,
        resolver: dict[str, str], connections: list[tuple[str, int]]) -> None:
    # The name resolves to the real IdP: a client that followed the redirect would get valid metadata.
    idp = saml_idp()
    resolver["idp.corp.example"] = "127.0.0.1"
    target = f"http://idp.corp.example:{loopback_http.port}/idp/metadata"
    front.routes["/start"] = redirect(target)
    report = validate_saml_metadata(url=front.url("/start"), allow_insecure_loopback=True)
    assert not report.ok
    text = _messages(report)
    assert f"redirected to {target!r}, which is refused" in text and "does not use https" in text
    assert loopback_http.hits == [], "the http:// target must not be requested"
    assert all(host != "idp.corp.example" for host, _ in connections)
    assert idp.metadata_url  # the IdP was up all along


def test_redirect_to_a_file_url_is_refused(front: LoopbackHTTP) -> None:
    front.routes["/start"] = redirect("file:///etc/passwd")
    report = validate_saml_metadata(url=front.url("/start"), allow_insecure_loopback=True)
    assert not report.ok
    text = _messages(report)
    assert "redirected to 'file:///etc/passwd', which is refused" in text and "not an absolute http(s) URL" in text
    assert not any(m in text for m in PASSWD_MARKERS)


def test_redirect_to_the_metadata_service_is_refused_without_connecting(
        front: LoopbackHTTP, connections: list[tuple[str, int]]) -> None:
    front.routes["/start"] = redirect("https://169.254.169.254/latest/meta-data/iam/security-credentials/")
    report = validate_saml_metadata(url=front.url("/start"), allow_insecure_loopback=True, timeout=2)
    assert not report.ok
    text = _messages(report)
    assert "169.254.169.254" in text and "link-local or cloud metadata service address" in text
    assert "--allow-host" in text
    assert [h for h, _ in connections] == ["127.0.0.1"], connections


def test_a_name_resolving_to_link_local_is_refused_unless_allowed(
        resolver: dict[str, str], connections: list[tuple[str, int]]) -> None:
    resolver["idp.corp.example"] = "169.254.7.7"
    report = validate_oidc_provider("https://idp.corp.example/realms/corp", timeout=2)
    text = _messages(report)
    assert "idp.corp.example is (or resolves to) 169.254.7.7" in text
    assert connections == []
    # Allowed by name: the address rule lets it through (the test's connection guard then stops it).
    allowed = validate_oidc_provider("https://idp.corp.example/realms/corp", timeout=2,
                                     allow_hosts=["IDP.corp.example."])
    assert "link-local" not in _messages(allowed) and "cannot reach" in _messages(allowed)
    assert ("idp.corp.example", 443) in connections


def test_link_local_ipv6_and_metadata_names_are_refused(connections: list[tuple[str, int]]) -> None:
    for url in ("https://[fe80::1]/metadata", "https://metadata.google.internal/computeMetadata/v1/"):
        report = validate_saml_metadata(url=url, timeout=2)
        assert not report.ok
        assert "metadata service" in _messages(report), url
    assert connections == []


def test_oidc_discovery_redirect_to_the_metadata_service_is_refused(
        front: LoopbackHTTP, connections: list[tuple[str, int]]) -> None:
    front.routes["/.well-known/openid-configuration"] = redirect("https://169.254.169.254/openid-configuration")
    report = validate_oidc_provider(front.url(""), allow_insecure_loopback=True, timeout=2)
    assert not report.ok
    assert "redirected to 'https://169.254.169.254/openid-configuration', which is refused" in _messages(report)
    assert [h for h, _ in connections] == ["127.0.0.1"]


def test_jwks_redirect_to_plain_http_elsewhere_is_refused(
        front: LoopbackHTTP, connections: list[tuple[str, int]]) -> None:
    issuer = front.url("")
    front.routes["/.well-known/openid-configuration"] = Route(200, json.dumps({
        "issuer": issuer, "authorization_endpoint": f"{issuer}/auth", "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
    }).encode(), "application/json")
    front.routes["/jwks"] = redirect("http://10.1.2.3/jwks", status=307)
    report = validate_oidc_provider(issuer, allow_insecure_loopback=True, timeout=2)
    text = _messages(report)
    assert "JWKS" in text and "redirected to 'http://10.1.2.3/jwks', which is refused" in text
    assert "does not use https" in text
    assert all(h != "10.1.2.3" for h, _ in connections)


def test_redirects_are_bounded(front: LoopbackHTTP) -> None:
    front.routes["/loop"] = redirect("/loop")
    report = validate_saml_metadata(url=front.url("/loop"), allow_insecure_loopback=True)
    assert f"redirected more than {_net.MAX_REDIRECTS} times" in _messages(report)
    assert len(front.hits) == _net.MAX_REDIRECTS + 1


def test_oversized_metadata_file_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.xml"
    big.write_bytes(b"<?xml version='1.0'?><!--" + b"x" * _net.MAX_BYTES + b"--><md:EntityDescriptor/>")
    report = validate_saml_metadata(file=big)
    assert not report.ok
    assert f"is larger than {_net.MAX_BYTES // (1024 * 1024)} MiB" in _messages(report)
    assert "well-formed" not in _messages(report)  # refused by size, never parsed
