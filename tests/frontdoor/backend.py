"""A stand-in for an org's gateway (Kong) on loopback: it says what it was sent.

Every request is answered with JSON: which org's backend answered, the Host and forwarding
headers it got, and the body's size and sha256 (read as it streams in, with the time the first
byte arrived). /slow?seconds=N sends its answer a line at a time for N seconds. A websocket
upgrade on /realtime/v1/websocket is accepted and every text frame echoed back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


def ws_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_send(sock: socket.socket, payload: bytes, opcode: int = 1, mask: bool = False) -> None:
    head = bytes([0x80 | opcode])
    length = len(payload)
    bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", length)
    if mask:
        key = b"\x01\x02\x03\x04"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    sock.sendall(head + payload)


def _exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("websocket closed")
        data += chunk
    return data


def ws_recv(sock: socket.socket) -> tuple[int, bytes]:
    b1, b2 = _exact(sock, 2)
    length = b2 & 0x7F
    if length == 126:
        length = struct.unpack("!H", _exact(sock, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", _exact(sock, 8))[0]
    key = _exact(sock, 4) if b2 & 0x80 else b""
    payload = _exact(sock, length)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return b1 & 0x0F, payload


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Backend

    def log_message(self, *args: object) -> None:
        pass

    def _body(self) -> tuple[int, str, float | None]:
        digest, size, first = hashlib.sha256(), 0, None

        def take(data: bytes) -> None:
            nonlocal size, first
            if data and first is None:
                first = time.time()
            size += len(data)
            digest.update(data)

        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                n = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = n
                while left:
                    data = self.rfile.read(min(left, 1 << 16))
                    take(data)
                    left -= len(data)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                data = self.rfile.read(min(left, 1 << 16))
                if not data:
                    break
                take(data)
                left -= len(data)
        return size, digest.hexdigest(), first

    def _answer(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/realtime/v1/websocket" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket()
            return
        size, sha, first = self._body()
        if url.path == "/slow":
            self._slow(float(parse_qs(url.query).get("seconds", ["3"])[0]))
            return
        self.server.requests.append({"path": url.path, "size": size})
        body = json.dumps({
            "org": self.server.org, "method": self.command, "path": self.path, "host": self.headers.get("Host"),
            "x_forwarded_proto": self.headers.get("X-Forwarded-Proto"), "x_forwarded_for": self.headers.get("X-Forwarded-For"),
            "x_forwarded_host": self.headers.get("X-Forwarded-Host"), "x_real_ip": self.headers.get("X-Real-IP"),
            "forwarded": self.headers.get("Forwarded"), "size": size, "sha256": sha, "first_byte_at": first,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        # An app's own policy (an Edge Function may send one): the front door must keep it.
        for policy in parse_qs(url.query).get("csp", []):
            self.send_header("Content-Security-Policy", policy)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _slow(self, seconds: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            line = f"{self.server.org} tick {n}\n".encode()
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()
            n += 1
            time.sleep(0.2)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _websocket(self) -> None:
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", ws_accept(self.headers["Sec-WebSocket-Key"]))
        self.end_headers()
        self.wfile.flush()
        sock = self.connection
        try:
            while True:
                opcode, payload = ws_recv(sock)
                if opcode == 8:
                    ws_send(sock, payload, opcode=8)
                    break
                if opcode == 9:
                    ws_send(sock, payload, opcode=10)
                    continue
                ws_send(sock, f"{self.server.org}: ".encode() + payload)
        except (ConnectionError, OSError):
            pass
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_HEAD = do_DELETE = _answer


class Backend(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, org: str) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.org = org
        self.requests: list[dict[str, object]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
