"""A SAML identity provider on loopback for the front door's Studio gate (tests/frontdoor).

A pysaml2 `Server` behind a small threaded HTTP server: /metadata (its signed metadata), and
/sso/redirect, the HTTP-Redirect binding of single sign-on. There is no login form: the user the
test put in `idp.user` "logs in", and the answer is a signed Response (and assertion) sent back by
HTTP-POST, the auto-submitting form a browser would post to the service provider. Service
providers are trusted once their metadata is added with `add_sp` (the test fetches it from the
front door, as an IdP's administrator would).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.sso.idp_fixtures import make_key_and_cert


class SamlTestIdP:
    def __init__(self, directory: Path) -> None:
        from saml2 import BINDING_HTTP_REDIRECT  # type: ignore[import-untyped]
        from saml2.attribute_converter import AttributeConverter  # type: ignore[import-untyped]
        from saml2.config import IdPConfig  # type: ignore[import-untyped]
        from saml2.metadata import create_metadata_string  # type: ignore[import-untyped]
        from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_TRANSIENT  # type: ignore[import-untyped]
        from saml2.server import Server  # type: ignore[import-untyped]
        from saml2.sigver import get_xmlsec_binary  # type: ignore[import-untyped]

        # Who "logs in" next: {"name_id": ..., "email": [...], "groups": [...]} (attribute name ->
        # values, released as the front door's email_claim / groups_claim name them).
        self.user: dict[str, Any] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                outer.requests.append(url.path)
                if url.path == "/metadata":
                    self._send(200, outer.metadata_xml.encode(), "application/samlmetadata+xml")
                elif url.path == "/sso/redirect":
                    try:
                        body = outer._sso(parse_qs(url.query))
                    except Exception as exc:  # the test reads the reason in the body
                        self._send(400, f"SSO refused: {exc!r}".encode(), "text/plain")
                        return
                    self._send(200, body.encode(), "text/html")
                else:
                    self._send(404, b"not found", "text/plain")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        now = datetime.now(UTC)
        key, cert = make_key_and_cert(directory, not_before=now - timedelta(days=1), not_after=now + timedelta(days=30),
                                      cn="sfp frontdoor test IdP", stem="frontdoor-idp")
        self.entity_id = f"{self.base}/metadata"
        conf = IdPConfig()
        conf.load({
            "entityid": self.entity_id,
            "service": {"idp": {
                "name": "sfp frontdoor test IdP",
                "endpoints": {"single_sign_on_service": [(f"{self.base}/sso/redirect", BINDING_HTTP_REDIRECT)]},
                "name_id_format": [NAMEID_FORMAT_TRANSIENT],
                # Attributes under the names the test gives them (no OID mapping).
                "policy": {"default": {"lifetime": {"minutes": 15}, "name_form": NAME_FORMAT_BASIC}},
            }},
            "key_file": str(key),
            "cert_file": str(cert),
            "xmlsec_binary": get_xmlsec_binary(),
            "metadata": {},
        })
        # No attribute maps: pysaml2 would rename `email` to urn:mace:dir:attribute-def:email; the
        # front door reads the names the test gives (email_claim / groups_claim).
        as_given = AttributeConverter()
        as_given.from_dict({"identifier": NAME_FORMAT_BASIC, "fro": {}, "to": {}})
        conf.attribute_converters = [as_given]
        self.server = Server(config=conf)
        xml = create_metadata_string(None, config=conf, valid=24, sign=True)
        self.metadata_xml = xml.decode() if isinstance(xml, bytes) else xml
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add_sp(self, metadata_xml: str) -> None:
        self.server.metadata.load("inline", metadata_xml)

    def _sso(self, query: dict[str, list[str]]) -> str:
        from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
        from saml2.saml import NAMEID_FORMAT_TRANSIENT, NameID

        request = self.server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        relay_state = query.get("RelayState", [""])[0]
        args = self.server.response_args(request.message, [BINDING_HTTP_POST])
        user = dict(self.user)
        name_id = NameID(format=NAMEID_FORMAT_TRANSIENT, text=str(user.pop("name_id", "someone")))
        response = self.server.create_authn_response(
            user, userid=name_id.text, name_id=name_id,
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
            sign_response=True, sign_assertion=True, **args)
        http_args = self.server.apply_binding(BINDING_HTTP_POST, str(response), args["destination"], relay_state,
                                              response=True)
        return str(http_args["data"])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
