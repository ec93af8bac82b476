"""STAND-IN for GoTrue's admin API (supabase/auth v2.196.0) — not GoTrue.

A recording loopback HTTP server that answers /auth/v1/admin/sso/providers[/{id}] and
/auth/v1/admin/custom-providers[/{identifier}] the way the documented API does
(internal/api/ssoadmin.go, custom_oauth_admin.go, models/sso.go): list omits metadata_xml,
POST answers 201, the entityID cannot change on PUT, an omitted name_id_format is cleared,
duplicate entityID/domains are refused, client_secret is never returned, DELETE of a custom
provider answers 204. Every request is recorded with method, path, headers and JSON body.
The real GoTrue is exercised by the Docker-stack test, not here.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import defusedxml.ElementTree as DET  # type: ignore[import-untyped]

PREFIX = "/auth/v1/admin"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class GoTrueAdminStandIn:
    def __init__(self, service_role_key: str) -> None:
        self.key = service_role_key
        self.requests: list[Recorded] = []
        self.saml: dict[str, dict[str, Any]] = {}
        self.custom: dict[str, dict[str, Any]] = {}
        self.custom_secrets: dict[str, str] = {}
        self.fail_next: tuple[int, dict[str, Any]] | None = None  # inject one error response
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                rec = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                outer.requests.append(rec)
                status, payload = outer.dispatch(rec)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]

    # -- routing ---------------------------------------------------------------------------
    def dispatch(self, rec: Recorded) -> tuple[int, Any]:
        if rec.headers.get("apikey") != self.key or rec.headers.get("authorization") != f"Bearer {self.key}":
            return 401, {"code": 401, "error_code": "no_authorization", "msg": "This endpoint requires a valid Bearer token"}
        if self.fail_next:
            status, payload = self.fail_next
            self.fail_next = None
            return status, payload
        path = urlsplit(rec.path).path.rstrip("/")
        if not path.startswith(PREFIX):
            return 404, {"code": 404, "msg": "Not Found"}
        path = path[len(PREFIX):]
        if path == "/sso/providers":
            return self.saml_list() if rec.method == "GET" else self.saml_create(rec.body) if rec.method == "POST" else (405, None)
        if path.startswith("/sso/providers/"):
            pid = unquote(path.rsplit("/", 1)[1])
            if pid not in self.saml:
                return 404, {"code": 404, "error_code": "sso_provider_not_found", "msg": "SSO Identity Provider not found"}
            if rec.method == "GET":
                return 200, self.saml[pid]
            if rec.method == "PUT":
                return self.saml_update(pid, rec.body)
            if rec.method == "DELETE":
                return 200, self.saml.pop(pid)
        if path == "/custom-providers":
            if rec.method == "GET":
                return 200, {"providers": list(self.custom.values())}
            if rec.method == "POST":
                return self.custom_create(rec.body)
        if path.startswith("/custom-providers/"):
            ident = unquote(path.rsplit("/", 1)[1])
            if not ident.startswith("custom:"):
                return 400, {"code": 400, "error_code": "validation_failed", "msg": "identifier must start with 'custom:' prefix"}
            if ident not in self.custom:
                return 404, {"code": 404, "error_code": "custom_provider_not_found", "msg": "Custom OAuth provider not found"}
            if rec.method == "GET":
                return 200, self.custom[ident]
            if rec.method == "PUT":
                self.custom[ident].update({k: v for k, v in rec.body.items() if k not in ("client_secret", "identifier")})
                if rec.body.get("client_secret"):
                    self.custom_secrets[ident] = rec.body["client_secret"]
                return 200, self.custom[ident]
            if rec.method == "DELETE":
                del self.custom[ident]
                return 204, None
        return 404, {"code": 404, "msg": "Not Found"}

    # -- SAML ------------------------------------------------------------------------------
    @staticmethod
    def _bad(msg: str, code: str = "validation_failed") -> tuple[int, Any]:
        return 400, {"code": 400, "error_code": code, "msg": msg}

    def saml_list(self) -> tuple[int, Any]:
        items = []
        for p in self.saml.values():
            q = json.loads(json.dumps(p))
            q["saml"].pop("metadata_xml", None)
            items.append(q)
        return 200, {"items": items}

    def _metadata(self, body: dict[str, Any]) -> tuple[str, str] | tuple[int, Any]:
        if body.get("metadata_url") and body.get("metadata_xml"):
            return self._bad("Only one of metadata_xml or metadata_url needs to be set")
        if body.get("metadata_url"):
            if not str(body["metadata_url"]).startswith("https://"):
                return self._bad("metadata_url is not a HTTPS URL")
            return self._bad("this stand-in does not fetch metadata_url")
        xml = body.get("metadata_xml") or ""
        root = DET.fromstring(xml.encode(), forbid_dtd=True)
        entity_id = root.get("entityID") or ""
        if len(root.findall(f"{{{MD}}}IDPSSODescriptor")) != 1:
            return self._bad("SAML Metadata does not contain any IDPSSODescriptor")
        return entity_id, xml

    def _domain_owner(self, domain: str) -> str | None:
        return next((pid for pid, p in self.saml.items() if any(d["domain"] == domain for d in p["domains"])), None)

    def saml_create(self, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("type") != "saml":
            return self._bad("Only 'saml' supported for SSO provider type")
        md = self._metadata(body)
        if isinstance(md[0], int):
            return md  # type: ignore[return-value]
        entity_id, xml = md  # type: ignore[misc]
        if any(p["saml"]["entity_id"] == entity_id for p in self.saml.values()):
            return 422, {"code": 422, "error_code": "saml_idp_already_exists",
                         "msg": f"SAML Identity Provider with this EntityID ({entity_id}) already exists"}
        for d in body.get("domains") or []:
            if self._domain_owner(d):
                return self._bad(f"SSO Domain '{d}' is already assigned to an SSO identity provider",
                                 "sso_domain_already_exists")
        pid = str(uuid.uuid4())
        saml: dict[str, Any] = {"entity_id": entity_id, "metadata_xml": xml,
                                "attribute_mapping": body.get("attribute_mapping") or {}}
        if body.get("name_id_format"):
            saml["name_id_format"] = body["name_id_format"]
        self.saml[pid] = {"id": pid, "disabled": body.get("disabled"), "saml": saml,
                          "domains": [{"domain": d} for d in body.get("domains") or []],
                          "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
        return 201, self.saml[pid]

    def saml_update(self, pid: str, body: dict[str, Any]) -> tuple[int, Any]:
        p = self.saml[pid]
        if body.get("metadata_xml") or body.get("metadata_url"):
            md = self._metadata(body)
            if isinstance(md[0], int):
                return md  # type: ignore[return-value]
            entity_id, xml = md  # type: ignore[misc]
            if entity_id != p["saml"]["entity_id"]:
                return self._bad("SAML Metadata can be updated only if the EntityID matches for the provider",
                                 "saml_entity_id_mismatch")
            p["saml"]["metadata_xml"] = xml
        if body.get("domains") is not None:
            for d in body["domains"]:
                owner = self._domain_owner(d)
                if owner and owner != pid:
                    return self._bad(f"SSO domain '{d}' already assigned to another provider", "sso_domain_already_exists")
            p["domains"] = [{"domain": d} for d in body["domains"]]
        if (body.get("attribute_mapping") or {}).get("keys") is not None:
            p["saml"]["attribute_mapping"] = body["attribute_mapping"]
        if body.get("name_id_format"):
            p["saml"]["name_id_format"] = body["name_id_format"]
        else:
            p["saml"].pop("name_id_format", None)  # as GoTrue: omitted/empty clears it
        if body.get("disabled") is not None:
            p["disabled"] = body["disabled"]
        return 200, p

    # -- custom providers ------------------------------------------------------------------
    def custom_create(self, body: dict[str, Any]) -> tuple[int, Any]:
        for required in ("identifier", "name", "client_id", "client_secret"):
            if not body.get(required):
                return self._bad(f"{required} is required")
        if body.get("provider_type") not in ("oauth2", "oidc"):
            return self._bad("provider_type must be either 'oauth2' or 'oidc'")
        if body["provider_type"] == "oidc" and not body.get("issuer"):
            return self._bad("issuer is required for OIDC providers")
        ident = body["identifier"]
        if ident in self.custom:
            return self._bad("A custom OAuth provider with this identifier already exists", "conflict")
        scopes = list(body.get("scopes") or [])
        if "openid" not in scopes:
            scopes.insert(0, "openid")
        self.custom_secrets[ident] = body["client_secret"]
        self.custom[ident] = {
            "id": str(uuid.uuid4()), "provider_type": body["provider_type"], "identifier": ident,
            "name": body["name"], "client_id": body["client_id"],
            "acceptable_client_ids": body.get("acceptable_client_ids") or [], "scopes": scopes,
            "pkce_enabled": body.get("pkce_enabled", True), "attribute_mapping": body.get("attribute_mapping") or {},
            "custom_claims_allowlist": body.get("custom_claims_allowlist") or [],
            "authorization_params": body.get("authorization_params") or {}, "enabled": body.get("enabled", True),
            "email_optional": body.get("email_optional", False), "issuer": body.get("issuer"),
            "skip_nonce_check": body.get("skip_nonce_check", False),
        }
        if body.get("discovery_url"):
            self.custom[ident]["discovery_url"] = body["discovery_url"]
        return 201, self.custom[ident]
