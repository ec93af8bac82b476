"""What a browser does to open Studio behind the front door's SSO gate, with requests.Session.

- `loopback_names`: the test's public names (alpha.sfp.test, ...) resolve to 127.0.0.1 inside the
  block, for requests only (urllib3's connection factory), so SNI, Host and cookie domains are the
  real names and nothing on the machine (/etc/hosts) changes.
- `oidc_login`: Studio -> the provider's authorization endpoint -> oidc-provider's devInteractions
  login form (any password) -> its consent form -> the front door's callback -> Studio.
- `saml_login`: Studio -> the IdP's SSO endpoint (HTTP-Redirect) -> the auto-submitting form with
  the signed Response -> the front door's assertion consumer -> Studio.
- `raw_get`: one request whose target goes on the wire exactly as written (requests and urllib3
  would resolve `..` and re-encode), for the path tricks.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import requests
import urllib3.util.connection


@contextlib.contextmanager
def loopback_names(*names: str) -> Iterator[None]:
    real = urllib3.util.connection.create_connection

    def connect(address: tuple[str, int], *args: Any, **kw: Any) -> socket.socket:
        host, port = address
        return real(("127.0.0.1" if host in names else host, port), *args, **kw)

    urllib3.util.connection.create_connection = connect  # type: ignore[assignment]
    try:
        yield
    finally:
        urllib3.util.connection.create_connection = real


class _Forms(HTMLParser):
    """Every <form>: its action, method and the named <input>s' values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get").lower(), "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")


def forms(html: str) -> list[dict[str, Any]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def _submit(session: requests.Session, response: requests.Response, extra: dict[str, str]) -> requests.Response:
    found = forms(response.text)
    if not found:
        raise AssertionError(f"no form at {response.url} ({response.status_code}): {response.text[:500]}")
    form = found[0]
    data = {**form["fields"], **extra}
    return session.post(urljoin(response.url, form["action"]), data=data, timeout=20)


def oidc_login(session: requests.Session, url: str, login: str) -> requests.Response:
    """Open `url` (a Studio page) and sign in as `login` at oidc-provider; the final response."""
    r = session.get(url, timeout=20)
    for _ in range(4):  # the login form, then consent (once per client and account)
        found = forms(r.text) if r.status_code == 200 else []
        if not found or "prompt" not in found[0]["fields"]:
            return r
        if found[0]["fields"]["prompt"] == "login":
            r = _submit(session, r, {"login": login, "password": "any"})
        else:
            r = _submit(session, r, {})
    return r


def saml_login(session: requests.Session, url: str) -> requests.Response:
    """Open `url` (a Studio page); the IdP answers for its current user; the final response."""
    r = session.get(url, timeout=20)
    found = forms(r.text) if r.status_code == 200 else []
    if found and "SAMLResponse" in found[0]["fields"]:
        r = _submit(session, r, {})
    return r


def raw_get(host: str, port: int, target: str, ca: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """GET `target` verbatim over TLS to 127.0.0.1:port with SNI and Host `host`."""
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=20)
    # The certificate and SNI are the public name's, the socket is loopback's.
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20), server_hostname=host)
    conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", f"{host}:{port}")
    for name, value in (headers or {}).items():
        conn.putheader(name, value)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read().decode("utf-8", "replace")
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
