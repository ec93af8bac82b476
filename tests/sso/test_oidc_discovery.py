"""OIDC discovery/JWKS validation against a real OpenID Provider (panva oidc-provider on Node)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from installer.sso.oidc import discovery_url, validate_oidc_provider
from tests.sso.idp_fixtures import LoopbackHTTP, OidcIdP, Route, free_closed_port


def test_discovery_and_jwks_pass(oidc_idp: Callable[..., OidcIdP]) -> None:
    idp = oidc_idp()
    report = validate_oidc_provider(idp.issuer, allow_insecure_loopback=True)
    assert report.ok, report.problems
    assert report.problems == []
    assert report.document is not None and report.document["issuer"] == idp.issuer
    assert report.signing_key_ids == ["sfp-test-rs256"]
    assert report.clock_skew_seconds is not None and abs(report.clock_skew_seconds) < 5


def test_wrong_issuer(oidc_idp: Callable[..., OidcIdP]) -> None:
    # The IdP advertises http://localhost:<port>; we configured http://127.0.0.1:<port>.
    idp = oidc_idp(issuer_host="localhost")
    configured = idp.base_url
    report = validate_oidc_provider(configured, allow_insecure_loopback=True)
    assert not report.ok
    [err] = report.findings.errors
    assert err.message == f"issuer mismatch: configured {configured!r}, discovery document says {idp.issuer!r}"
    assert "different provider or realm" in (err.hint or "")


def test_trailing_slash_is_a_different_issuer(oidc_idp: Callable[..., OidcIdP]) -> None:
    idp = oidc_idp()
    configured = idp.issuer + "/"
    assert discovery_url(configured) == idp.issuer + "/.well-known/openid-configuration"
    report = validate_oidc_provider(configured, allow_insecure_loopback=True)
    [err] = report.findings.errors
    assert err.message.startswith("issuer mismatch")
    assert f"set the issuer to exactly {idp.issuer!r}" in (err.hint or "")


def test_unreachable_issuer() -> None:
    issuer = f"http://127.0.0.1:{free_closed_port()}"
    report = validate_oidc_provider(issuer, allow_insecure_loopback=True, timeout=3)
    [err] = report.findings.errors
    assert err.message == (f"cannot reach OIDC discovery document at {issuer}/.well-known/openid-configuration: "
                           "connection refused")
    assert "reachable from this machine" in (err.hint or "")


def test_empty_jwks(oidc_idp: Callable[..., OidcIdP]) -> None:
    idp = oidc_idp(empty_jwks=True)
    report = validate_oidc_provider(idp.issuer, allow_insecure_loopback=True)
    [err] = report.findings.errors
    assert err.message == f"JWKS at {idp.issuer}/jwks holds no usable signing key (0 key(s) listed)"


def test_http_issuer_needs_the_loopback_flag(oidc_idp: Callable[..., OidcIdP]) -> None:
    idp = oidc_idp()
    report = validate_oidc_provider(idp.issuer)
    [err] = report.findings.errors
    assert err.message == f"issuer {idp.issuer!r} does not use https"


def test_http_to_non_loopback_is_refused_even_with_flag() -> None:
    report = validate_oidc_provider("http://idp.example.com/realms/acme", allow_insecure_loopback=True)
    [err] = report.findings.errors
    assert "does not use https" in err.message


def test_clock_skew_thresholds(oidc_idp: Callable[..., OidcIdP]) -> None:
    idp = oidc_idp()
    fast = validate_oidc_provider(idp.issuer, allow_insecure_loopback=True,
                                  now=datetime.now(UTC) + timedelta(seconds=120))
    assert fast.ok
    [warning] = fast.findings.warnings
    assert "clock skew between this machine and the IdP is 12" in warning.message and "IdP behind" in warning.message

    slow = validate_oidc_provider(idp.issuer, allow_insecure_loopback=True,
                                  now=datetime.now(UTC) - timedelta(seconds=600))
    [err] = slow.findings.errors
    assert "clock skew" in err.message and "IdP ahead" in err.message and "NTP" in (err.hint or "")


def test_not_an_openid_provider(loopback_http: LoopbackHTTP) -> None:
    loopback_http.routes["/.well-known/openid-configuration"] = Route(200, b"<html>login</html>", "text/html")
    report = validate_oidc_provider(loopback_http.url(""), allow_insecure_loopback=True)
    [err] = report.findings.errors
    assert "did not return a JSON object" in err.message


def test_a_document_nested_past_the_parser_is_not_a_json_object(loopback_http: LoopbackHTTP) -> None:
    # Within the size limit, deep enough that Python's JSON parser gives up with RecursionError.
    loopback_http.routes["/.well-known/openid-configuration"] = Route(200, b"[" * 200_000, "application/json")
    report = validate_oidc_provider(loopback_http.url(""), allow_insecure_loopback=True)
    [err] = report.findings.errors
    assert "did not return a JSON object" in err.message


def test_missing_endpoints(loopback_http: LoopbackHTTP) -> None:
    issuer = loopback_http.url("")
    loopback_http.routes["/.well-known/openid-configuration"] = Route(
        200, json.dumps({"issuer": issuer, "authorization_endpoint": issuer + "/auth"}).encode(), "application/json")
    report = validate_oidc_provider(issuer, allow_insecure_loopback=True)
    [err] = report.findings.errors
    assert err.message == "discovery document lacks required field(s): token_endpoint, jwks_uri"
