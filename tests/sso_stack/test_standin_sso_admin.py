"""The auth stand-in's admin SSO API in-process (tests/images/standin/standin.py), with its
Postgres store replaced by a dict: JWT checks, documented answers, no secret ever returned."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from types import ModuleType
from typing import Any

import jwt
import pytest

from tests.conftest import REPO

SECRET = "jwt-secret-for-the-stand-in-tests-0123456789"
XML = ('<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example/e">'
       '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/></md:EntityDescriptor>')


@pytest.fixture(scope="module")
def standin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sfp_standin_sso", REPO / "tests" / "images" / "standin" / "standin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str, dict[str, Any], str | None]] = {}

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(json.dumps(d)) for k, _, d, _ in sorted(self.rows.values(), key=lambda r: r[1]) if k == kind]

    def put(self, kind: str, key: str, data: dict[str, Any], secret: str | None = None) -> None:
        old = self.rows.get(data["id"])
        self.rows[data["id"]] = (kind, key, json.loads(json.dumps(data)), secret or (old[3] if old else None))

    def delete(self, pid: str) -> None:
        self.rows.pop(pid, None)


@pytest.fixture
def app(standin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("GOTRUE_JWT_SECRET", SECRET)
    monkeypatch.setenv("GOTRUE_SAML_ENABLED", "true")
    monkeypatch.setenv("GOTRUE_CUSTOM_OAUTH_ENABLED", "true")
    store = MemoryStore()
    handler = standin.sso_admin_app(store)
    handler.store = store
    return handler


def token(role: str = "service_role", secret: str = SECRET, **extra: Any) -> str:
    return jwt.encode({"role": role, "iss": "supabase", "exp": int(time.time()) + 60, **extra}, secret, algorithm="HS256")


def call(standin: ModuleType, app: Any, method: str, path: str, body: Any = None, tok: str | None = None) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {tok if tok is not None else token()}"}
    raw = json.dumps(body).encode() if body is not None else b""
    resp = app(standin.Request(method, path, path, {}, headers, raw, "10.0.0.9"))
    return resp.status, json.loads(resp.body) if resp.body else None


def test_admin_api_needs_a_service_role_jwt_signed_with_the_org_secret(standin: ModuleType, app: Any) -> None:
    assert call(standin, app, "GET", "/admin/sso/providers", tok="")[0] == 401
    assert call(standin, app, "GET", "/admin/sso/providers", tok=token(secret="another-orgs-secret-000000000000"))[0] == 401
    assert call(standin, app, "GET", "/admin/sso/providers", tok=token(exp=int(time.time()) - 10))[0] == 401
    assert call(standin, app, "GET", "/admin/sso/providers", tok=token(role="anon"))[0] == 403
    assert call(standin, app, "GET", "/admin/sso/providers") == (200, {"items": []})


def test_saml_providers_as_gotrue_answers(standin: ModuleType, app: Any) -> None:
    status, created = call(standin, app, "POST", "/admin/sso/providers",
                           {"type": "saml", "metadata_xml": XML, "domains": ["corp.example"]})
    assert status == 201 and created["saml"]["entity_id"] == "https://idp.example/e"
    _, listed = call(standin, app, "GET", "/admin/sso/providers")
    assert "metadata_xml" not in listed["items"][0]["saml"]
    assert call(standin, app, "GET", f"/admin/sso/providers/{created['id']}")[1]["saml"]["metadata_xml"] == XML
    assert call(standin, app, "POST", "/admin/sso/providers", {"type": "saml", "metadata_xml": XML})[0] == 422
    assert call(standin, app, "POST", "/admin/sso/providers",
                {"type": "saml", "metadata_url": "http://idp.example/md"})[0] == 400
    status, updated = call(standin, app, "PUT", f"/admin/sso/providers/{created['id']}", {"domains": ["b.example"]})
    assert status == 200 and updated["domains"] == [{"domain": "b.example"}] and updated["id"] == created["id"]
    assert call(standin, app, "PUT", f"/admin/sso/providers/{created['id']}",
                {"metadata_xml": XML.replace("idp.example/e", "other.example/e")})[1]["error_code"] == "saml_entity_id_mismatch"
    assert call(standin, app, "DELETE", f"/admin/sso/providers/{created['id']}")[0] == 200
    assert call(standin, app, "GET", f"/admin/sso/providers/{created['id']}")[0] == 404


def test_custom_providers_never_return_the_secret(standin: ModuleType, app: Any) -> None:
    body = {"identifier": "custom:corp", "provider_type": "oidc", "name": "corp", "client_id": "c",
            "client_secret": "top-secret", "issuer": "https://idp.example", "scopes": ["email"]}
    status, created = call(standin, app, "POST", "/admin/custom-providers", body)
    assert status == 201 and "client_secret" not in created and created["scopes"] == ["openid", "email"]
    assert "top-secret" not in json.dumps(call(standin, app, "GET", "/admin/custom-providers")[1])
    assert app.store.rows[created["id"]][3] == "top-secret"
    status, updated = call(standin, app, "PUT", "/admin/custom-providers/custom:corp", {"client_id": "d"})
    assert status == 200 and updated["client_id"] == "d" and app.store.rows[created["id"]][3] == "top-secret"
    assert call(standin, app, "GET", "/admin/custom-providers/corp")[0] == 400
    assert call(standin, app, "DELETE", "/admin/custom-providers/custom:corp")[0] == 204
    assert call(standin, app, "GET", "/admin/custom-providers") == (200, {"providers": []})


def test_sso_api_is_off_unless_auth_has_it_enabled(standin: ModuleType, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOTRUE_SAML_ENABLED", "false")
    monkeypatch.delenv("GOTRUE_CUSTOM_OAUTH_ENABLED")
    assert call(standin, app, "GET", "/admin/sso/providers")[0] == 404
    assert call(standin, app, "GET", "/admin/custom-providers")[0] == 404
