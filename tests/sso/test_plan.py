"""installer.sso.plan without Ansible or HTTP to Auth: what is planned from a snapshot of Auth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from installer.errors import SfpError
from installer.sso import config
from installer.sso.plan import plan
from tests.sso.idp_fixtures import LoopbackHTTP, Route, SamlIdP, make_tls_cert

API = "http://127.0.0.1:18000"


def settings(idp: SamlIdP) -> config.SsoSettings:
    path = idp.cert_path.parent / "metadata.xml"
    path.write_text(idp.metadata_xml)
    return config.parse_sso_settings({
        "saml": [{"name": "corp", "metadata_file": str(path), "domains": ["corp.example"]}],
        "oidc": [{"name": "corp-oidc", "provider": "custom", "issuer": "https://idp.corp.example", "client_id": "sb"}],
    }, where="sfp_org_sso")


def empty(enabled: bool = True) -> dict[str, object]:
    return {k: {"enabled": enabled, "providers": [], "detail": "disabled"} for k in ("saml", "custom")}


def test_plan_creates_without_secret_values_then_nothing(saml_idp_file: SamlIdP) -> None:
    s = settings(saml_idp_file)
    p = plan(s, empty(), api_url=API, secret_names=["SSO_CORP_OIDC_CLIENT_SECRET"])
    assert [(r.method, r.path) for r in p.requests] == [("POST", "/sso/providers"), ("POST", "/custom-providers")]
    assert p.requests[1].secret_fields == {"client_secret": "SSO_CORP_OIDC_CLIENT_SECRET"}
    assert "client_secret" not in (p.requests[1].body or {})
    assert p.secret_keys == ["SSO_CORP_OIDC_CLIENT_SECRET"]
    assert [(r["name"], r["action"], r["request"]) for r in p.results] == [("corp", "created", 0), ("corp-oidc", "created", 1)]
    assert "\x00" not in json.dumps([r.to_dict() for r in p.requests])

    # What Auth holds after those requests: nothing more to send.
    saml_body = p.requests[0].body or {}
    custom_body = {**(p.requests[1].body or {}), "id": "c1"}
    state = {"saml": {"enabled": True, "providers": [{
        "id": "s1", "domains": [{"domain": d} for d in saml_body["domains"]],
        "saml": {"entity_id": saml_idp_file.entity_id, "metadata_xml": saml_body["metadata_xml"],
                 "attribute_mapping": saml_body["attribute_mapping"]}}]},
        "custom": {"enabled": True, "providers": [custom_body]}}
    again = plan(s, state, api_url=API, secret_names=["SSO_CORP_OIDC_CLIENT_SECRET"])
    assert again.requests == [] and [r["action"] for r in again.results] == ["unchanged", "unchanged"]
    removal = plan(s, state, api_url=API, secret_names=["SSO_CORP_OIDC_CLIENT_SECRET"], remove=["corp", "corp-oidc"])
    assert [(r.method, r.path) for r in removal.requests] == [("DELETE", "/sso/providers/s1"),
                                                              ("DELETE", "/custom-providers/custom:corp-oidc")]


def test_plan_errors_name_the_provider(saml_idp_file: SamlIdP) -> None:
    s = settings(saml_idp_file)
    with pytest.raises(SfpError) as exc:
        plan(s, empty(), api_url=API, secret_names=[])
    assert "OIDC provider corp-oidc" in exc.value.message and "SSO_CORP_OIDC_CLIENT_SECRET" in exc.value.message
    with pytest.raises(SfpError) as exc:
        plan(s, empty(enabled=False), api_url=API, secret_names=["SSO_CORP_OIDC_CLIENT_SECRET"])
    assert "SAML provider corp" in exc.value.message and "404" in exc.value.message
    # Check mode before SSO is switched on: a real run would create everything.
    dry = plan(s, empty(enabled=False), api_url=API, secret_names=["SSO_CORP_OIDC_CLIENT_SECRET"], check_mode=True)
    assert [r.method for r in dry.requests] == ["POST", "POST"]
    with pytest.raises(SfpError, match="cannot remove nope"):
        plan(s, empty(), api_url=API, remove=["nope"])


@pytest.fixture
def saml_idp_file(tmp_path: Path) -> SamlIdP:
    from tests.sso.idp_fixtures import LoopbackHTTP, build_saml_idp

    http = LoopbackHTTP()
    try:
        return build_saml_idp(tmp_path, http)
    finally:
        http.close()


def test_pinned_metadata_is_sent_inline_even_from_an_https_url(saml_idp_file: SamlIdP, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # GoTrue refreshes a metadata URL itself, without the signature check: with a pin it gets the
    # verified document instead. Served over real TLS (trusted for this test only).
    cert, key = make_tls_cert(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    https = LoopbackHTTP(tls=(cert, key))
    try:
        https.routes["/md"] = Route(200, saml_idp_file.metadata_xml.encode())
        item = {"name": "corp", "metadata_url": https.url("/md"), "domains": ["corp.example"]}

        def body(**extra: str) -> dict[str, object]:
            s = config.parse_sso_settings({"saml": [{**item, **extra}]}, where="sfp_org_sso")
            [request] = plan(s, empty(), api_url=API).requests
            return request.body or {}

        assert body()["metadata_url"] == https.url("/md") and "metadata_xml" not in body()
        pinned = body(metadata_cert=saml_idp_file.cert_path.read_text())
        assert pinned["metadata_xml"] == saml_idp_file.metadata_xml and "metadata_url" not in pinned
    finally:
        https.close()
