"""Clients of the front door: connect to 127.0.0.1, speak the org's name (SNI and Host)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptography import x509

from tests.frontdoor.backend import ws_accept, ws_recv, ws_send

ADDRESS = "127.0.0.1"


def context(ca: Path | None, *, version: ssl.TLSVersion | None = None, alpn: list[str] | None = None) -> ssl.SSLContext:
    if ca is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(ca))
    if version is not None:
        # OpenSSL's default security level refuses TLS 1.0/1.1 on this side before the server can.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls(name: str, port: int, ca: Path | None, **kw: Any) -> ssl.SSLSocket:
    sock = socket.create_connection((ADDRESS, port), timeout=30)
    try:
        return context(ca, **kw).wrap_socket(sock, server_hostname=name)
    except BaseException:
        sock.close()
        raise


def peer_cert(name: str, port: int) -> x509.Certificate:
    with tls(name, port, None) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


class Response:
    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self.status = raw.status
        self.headers = raw.headers
        self.body = raw.read()

    def json(self) -> Any:
        return json.loads(self.body)


def request(name: str, port: int, path: str = "/", *, ca: Path | None, method: str = "GET",
            body: bytes | Iterable[bytes] | None = None, headers: dict[str, str] | None = None) -> Response:
    conn = http.client.HTTPConnection(name, port, timeout=60)
    conn.sock = tls(name, port, ca)
    try:
        chunked = (headers or {}).get("Transfer-Encoding") == "chunked"
        conn.request(method, path, body=body, headers={k: v for k, v in (headers or {}).items() if not chunked or k != "Transfer-Encoding"},
                     encode_chunked=chunked)
        return Response(conn.getresponse())
    finally:
        conn.close()


def plain(name: str, port: int, path: str = "/") -> Response:
    conn = http.client.HTTPConnection(ADDRESS, port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": name})
        return Response(conn.getresponse())
    finally:
        conn.close()


def websocket(name: str, port: int, *, ca: Path | None, path: str = "/realtime/v1/websocket?apikey=x&vsn=1.0.0") -> ssl.SSLSocket:
    """An open websocket (the handshake checked); the caller sends and closes."""
    sock = tls(name, port, ca, alpn=["http/1.1"])
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {name}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError(f"closed during the handshake: {head!r}")
        head += chunk
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 101"), lines
    fields = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    assert fields.get("sec-websocket-accept") == ws_accept(key), fields
    return sock


def ws_echo(sock: ssl.SSLSocket, text: str) -> str:
    ws_send(sock, text.encode(), mask=True)
    opcode, payload = ws_recv(sock)
    assert opcode == 1, opcode
    return payload.decode()


class Stream:
    """A response read as it arrives (readline), its connection open until close()."""

    def __init__(self, conn: http.client.HTTPConnection, raw: http.client.HTTPResponse) -> None:
        self.conn, self.raw = conn, raw

    def readline(self) -> bytes:
        return self.raw.readline()

    def close(self) -> None:
        self.conn.close()


def request_stream(name: str, port: int, path: str, *, ca: Path | None) -> Stream:
    conn = http.client.HTTPConnection(name, port, timeout=60)
    conn.sock = tls(name, port, ca)
    conn.request("GET", path)
    raw = conn.getresponse()
    assert raw.status == 200, raw.status
    return Stream(conn, raw)


class RequestLoop:
    """One new connection after the other to `name` (handshake, GET `path`, answer) until the block
    ends: the serial of the certificate each was served, and what failed (an answer `accept`
    refuses, or an error)."""

    def __init__(self, name: str, port: int, path: str = "/rest/v1/", *, accept: Callable[[int, bytes], bool],
                 headers: dict[str, str] | None = None, ca: Path | None = None) -> None:
        self.name, self.port, self.path, self.accept, self.headers, self.ca = name, port, path, accept, headers or {}, ca
        self.serials: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = http.client.HTTPConnection(self.name, self.port, timeout=10)
            try:
                conn.sock = tls(self.name, self.port, self.ca)
                der = conn.sock.getpeercert(binary_form=True)
                conn.request("GET", self.path, headers=self.headers)
                answer = conn.getresponse()
                body = answer.read()
                if not self.accept(answer.status, body):
                    self.failures.append(f"{answer.status} {body[:200]!r}")
                elif der is not None:
                    self.serials.append(x509.load_der_x509_certificate(der).serial_number)
            except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
            finally:
                conn.close()
            time.sleep(0.02)
