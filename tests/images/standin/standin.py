"""Stand-ins for the upstream Supabase services that cannot run on a machine without a registry.

One program, one service per container, chosen by STANDIN_SERVICE. A stand-in proves orchestration
(ports, health checks, credentials, networks, start order), not upstream behaviour: its health
checks log into the org's real database with the credentials upstream would use, and every
response carries `X-SFP-Stand-In: <service>`. Command-line arguments are ignored on purpose, since
the compose template passes the upstream commands unchanged.

Switches for tests: STANDIN_BUILD names the build (sfp-test/standin:0 sets 0 to stand for the previous
release in upgrade tests; default 1), STANDIN_UNHEALTHY makes the health checks fail while everything
else is served, STANDIN_STORAGE_MIGRATION makes the storage stand-in migrate its database at start.

Only the standard library, psycopg2 and PyJWT with cryptography (Debian's python3-psycopg2, python3-jwt
and python3-cryptography) are used.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SERVICE = os.environ.get("STANDIN_SERVICE", "").strip()
BUILD = os.environ.get("STANDIN_BUILD", "").strip() or "1"
VERSION = f"stand-in (build {BUILD})"
STAND_IN_HEADER = "X-SFP-Stand-In"
MAX_BODY = 256 * 1024 * 1024

_log_lock = threading.Lock()


def log(line: str) -> None:
    with _log_lock:
        sys.stdout.write(line.rstrip("\n") + "\n")
        sys.stdout.flush()


def now_utc() -> datetime:
    return datetime.now(UTC)


def rfc3339(ts: datetime | None = None) -> str:
    return (ts or now_utc()).strftime("%Y-%m-%dT%H:%M:%SZ")


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    # Go's strconv.ParseBool, which the Go services use, accepts these.
    return value.strip() in ("1", "t", "T", "TRUE", "true", "True")


def env_port(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    match = re.search(r"(\d+)$", value)
    return int(match.group(1)) if match else default


def db_login_error(dsn: str = "", **params: Any) -> str | None:
    """None if a login with these credentials works, else why not."""
    if not dsn and not params:
        return "no database credentials configured"
    # Imported here so that the config parsing can be tested on a host without psycopg2.
    import psycopg2

    try:
        conn = psycopg2.connect(dsn, connect_timeout=3, application_name=f"stand-in {SERVICE}", **params)
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    conn.close()
    return None


# --------------------------------------------------------------------------------------------
# HTTP plumbing


@dataclass
class Request:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    client_ip: str
    version: str = "HTTP/1.1"
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def bearer(self) -> str:
        auth = self.header("authorization")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return ""


Reader = Callable[[int], bytes]  # returns what is there, at most n bytes; b"" at end of stream
# Serves a connection after its 101 answer: the socket to write to and a reader for what the peer
# sends, which must be used instead of recv() since the request's reader may already hold frames.
Takeover = Callable[[socket.socket, Reader], None]


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    takeover: Takeover | None = None  # with status 101: serves the connection after the head


def json_response(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, json.dumps(payload).encode(), "application/json; charset=utf-8", list(headers))


def text_response(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(status, text.encode(), content_type)


App = Callable[[Request], Response]
AccessLog = Callable[[Request, Response, float], str]


def plain_access_log(req: Request, resp: Response, seconds: float) -> str:
    return f"stand-in {SERVICE}: {req.method} {req.target} {resp.status} {seconds * 1000:.1f}ms"


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, port: int, app: App, access_log: AccessLog) -> None:
        self.app = app
        self.access_log = access_log
        # Dual stack where the container has IPv6, so `localhost` works whichever address it is.
        try:
            self.address_family = socket.AF_INET6
            super().__init__(("::", port), StandInHandler)
        except OSError:
            self.address_family = socket.AF_INET
            super().__init__(("0.0.0.0", port), StandInHandler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class StandInHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"sfp-stand-in/{SERVICE or 'unknown'}"
    sys_version = ""
    timeout = 120  # idle keep-alive connections must not pin threads forever
    server: StandInServer

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ValueError("request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        started = time.monotonic()
        split = urllib.parse.urlsplit(self.path)
        try:
            body = self._read_body()
        except (ValueError, OSError) as exc:
            self.close_connection = True
            body = b""
            response: Response | None = json_response(400, {"message": f"bad request: {exc}"})
        else:
            response = None
        req = Request(
            method=self.command,
            target=self.path,
            path=split.path or "/",
            query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            client_ip=str(self.client_address[0]).removeprefix("::ffff:"),
            version=self.request_version,
        )
        if response is None:
            try:
                response = self.server.app(req)
            except Exception as exc:
                response = json_response(500, {"message": f"stand-in {SERVICE} error: {exc}"})
                log(f"stand-in {SERVICE}: error handling {req.method} {req.path}: {exc!r}")
        self._send(response, head_only=self.command == "HEAD")
        if response.takeover is not None:
            # The connection no longer speaks HTTP: once the takeover returns it is closed.
            self.close_connection = True
            with contextlib.suppress(OSError, EOFError):
                response.takeover(self.connection, self.rfile.read1)  # type: ignore[attr-defined]
        # Logged when the exchange ends, as nginx does, so a websocket's line comes at its close.
        with contextlib.suppress(Exception):
            log(self.server.access_log(req, response, time.monotonic() - started))

    def _send(self, response: Response, head_only: bool) -> None:
        self.send_response(response.status)
        names = {name.lower() for name, _ in response.headers}
        for name, value in response.headers:
            self.send_header(name, value)
        if "content-type" not in names and response.content_type:
            self.send_header("Content-Type", response.content_type)
        informational = 100 <= response.status < 200  # carries no body, so no Content-Length (RFC 9110)
        if not informational:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if not head_only and not informational and response.body:
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def send_response(self, code: int, message: str | None = None) -> None:
        self._stand_in_header_sent = False
        super().send_response(code, message)

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == STAND_IN_HEADER.lower():
            self._stand_in_header_sent = True
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        # Also covers the errors http.server answers by itself (malformed requests).
        if not getattr(self, "_stand_in_header_sent", True):
            self.send_header(STAND_IN_HEADER, SERVICE)
        super().end_headers()

    def version_string(self) -> str:
        return self.server_version

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # each service writes its own access log line

    def log_message(self, format: str, *args: Any) -> None:
        log(f"stand-in {SERVICE}: {format % args}")


# --------------------------------------------------------------------------------------------
# STANDIN_UNHEALTHY: the paths the compose health checks (and bin/postgrest, bin/imgproxy) call. A
# container must be able to go unhealthy while it keeps serving, so that tests see what the server
# does with a service that started but never passes its check (an upgrade that must roll back).

HEALTH_PATHS: dict[str, re.Pattern[str]] = {
    service: re.compile(pattern)
    for service, pattern in {
        "auth": r"/health",
        "rest": r"/ready|/live",
        "realtime": r"/api/tenants/[^/]+/health|/healthcheck",
        "storage": r"/status",
        "imgproxy": r"/health",
        # Upstream's check only opens TCP port 9000, which no HTTP answer can fail; this is the
        # edge runtime's own health path, for tests that ask it directly.
        "functions": r"/_internal/health",
        "studio": r"/api/platform/profile",
        "analytics": r"/health",
        "vector": r"/health",
        "supavisor": r"/api/health",
        # kong: `kong health` is a command, not a path (bin/kong reads STANDIN_UNHEALTHY itself).
    }.items()
}
UNHEALTHY_MESSAGE = "stand-in: unhealthy on purpose (STANDIN_UNHEALTHY)"


def is_health_path(service: str, path: str) -> bool:
    pattern = HEALTH_PATHS.get(service)
    return pattern is not None and pattern.fullmatch(path) is not None


def health_switch(app: App, service: str, unhealthy: bool) -> App:
    """`app`, except that its health paths answer 503 when `unhealthy`."""
    if not unhealthy:
        return app

    def switched(req: Request) -> Response:
        if is_health_path(service, req.path):
            return json_response(503, {"message": UNHEALTHY_MESSAGE, "stand_in": service})
        return app(req)

    return switched


def told_unhealthy(environ: dict[str, str]) -> bool:
    """STANDIN_UNHEALTHY, or STANDIN_UNHEALTHY_WHEN_ENV_HOLDS=TEXT[|TEXT...] and another variable's
    value holds one TEXT: a rotation test gives a secret a crafted value, and the service turns
    unhealthy only when it is recreated with that value (and healthy again when the old one comes
    back); a fleet upgrade test gives one org a setting that only the target release's stand-in
    is told to fail on."""
    texts = [t for t in environ.get("STANDIN_UNHEALTHY_WHEN_ENV_HOLDS", "").split("|") if t]
    held = any(t in v for k, v in environ.items() if k != "STANDIN_UNHEALTHY_WHEN_ENV_HOLDS" for t in texts)
    return held or env_bool("STANDIN_UNHEALTHY")


def serve(port: int, app: App, access_log: AccessLog = plain_access_log) -> None:
    server = StandInServer(port, health_switch(app, SERVICE, told_unhealthy(dict(os.environ))), access_log)
    threading.Thread(target=server.serve_forever, name=f"http-{port}", daemon=True).start()
    log(f"stand-in {SERVICE}: listening on port {port}")


def pump(read: Reader, dst: socket.socket) -> None:
    """Copies until `read` ends or fails, then closes dst's sending half so its peer sees the end."""
    try:
        while data := read(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def splice(a: socket.socket, a_read: Reader, b: socket.socket, b_read: Reader) -> None:
    """Relays bytes both ways, unbuffered, until both directions have ended."""
    other = threading.Thread(target=pump, args=(b_read, a), daemon=True)
    other.start()
    pump(a_read, b)
    other.join()


# --------------------------------------------------------------------------------------------
# WebSocket (RFC 6455), as far as the gates need it: the realtime stand-in accepts the handshake a
# Realtime client sends and then only keeps the socket (pings, the closing handshake); the kong
# stand-in relays an upgraded connection.

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_IDLE = 30.0  # seconds without a frame after which the realtime stand-in closes the socket
WS_MAX_PAYLOAD = 1024 * 1024
WS_CLOSE, WS_PING, WS_PONG = 0x8, 0x9, 0xA


def is_websocket_upgrade(req: Request) -> bool:
    tokens = {token.strip() for token in req.header("connection").lower().split(",")}
    return "upgrade" in tokens and req.header("upgrade").strip().lower() == "websocket"


def websocket_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def websocket_handshake_error(req: Request) -> Response | None:
    """Why `req` is not a handshake a server may accept, as the answer to give; None if it is one."""
    if req.method != "GET" or not is_websocket_upgrade(req):
        return json_response(400, {"message": "expected a websocket upgrade (GET, Connection: Upgrade)"})
    if req.header("sec-websocket-version").strip() != "13":
        supported = [("Sec-WebSocket-Version", "13")]
        return json_response(426, {"message": "unsupported websocket version"}, supported)
    try:
        nonce = base64.b64decode(req.header("sec-websocket-key").strip(), validate=True)
    except ValueError:
        nonce = b""
    if len(nonce) != 16:
        return json_response(400, {"message": "Sec-WebSocket-Key must be 16 bytes in base64"})
    return None


def read_exact(read: Reader, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = read(n - len(data))
        if not chunk:
            raise EOFError("peer closed the connection")
        data += chunk
    return data


def read_frame(read: Reader) -> tuple[int, bytes]:
    """Opcode and unmasked payload of the next frame (fragments are returned one by one)."""
    first, second = read_exact(read, 2)
    length = second & 0x7F
    if length >= 126:
        length = int.from_bytes(read_exact(read, 2 if length == 126 else 8), "big")
    if length > WS_MAX_PAYLOAD:
        raise EOFError(f"frame of {length} bytes refused")
    mask = read_exact(read, 4) if second & 0x80 else b""
    payload = read_exact(read, length)
    if mask:
        payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return first & 0x0F, payload


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    # A server's frames are not masked, and control frames carry at most 125 bytes.
    payload = payload[:125]
    return bytes([0x80 | opcode, len(payload)]) + payload


def websocket_session(sock: socket.socket, read: Reader) -> None:
    """Keeps an accepted websocket open: answers pings and the closing handshake, ignores data."""
    sock.settimeout(WS_IDLE)  # an idle peer (or one that vanished) must not hold a thread for good
    while True:
        opcode, payload = read_frame(read)
        if opcode == WS_CLOSE:
            sock.sendall(control_frame(WS_CLOSE, payload[:2]))  # echo the status code, as RFC 6455 asks
            return
        if opcode == WS_PING:
            sock.sendall(control_frame(WS_PONG, payload))


# --------------------------------------------------------------------------------------------
# Log formats imitating the upstream services


def combined_log(req: Request, resp: Response, user: str = "-") -> str:
    stamp = now_utc().strftime("%d/%b/%Y:%H:%M:%S +0000")
    size = len(resp.body) if req.method != "HEAD" else 0
    return (
        f'{req.client_ip} - {user} [{stamp}] "{req.method} {req.target} {req.version}" {resp.status} {size} '
        f'"{req.header("referer", "-")}" "{req.header("user-agent", "-")}"'
    )


def elixir_log(req: Request, resp: Response, seconds: float) -> str:
    stamp = now_utc().strftime("%H:%M:%S.%f")[:-3]
    return (
        f"{stamp} request_id={req.request_id} [info] {req.method} {req.path} "
        f"- Sent {resp.status} in {seconds * 1000:.1f}ms"
    )


def gotrue_log(req: Request, resp: Response, seconds: float) -> str:
    return json.dumps(
        {
            "component": "api",
            "duration": int(seconds * 1e9),
            "level": "info",
            "method": req.method,
            "msg": "request completed",
            "path": req.path,
            "referer": req.header("referer"),
            "remote_addr": req.client_ip,
            "request_id": req.request_id,
            "status": resp.status,
            "time": rfc3339(),
            "stand_in": True,
        }
    )


def pino_log(req: Request, resp: Response, seconds: float) -> str:
    return json.dumps(
        {
            "level": 30,
            "time": now_utc().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "reqId": req.request_id,
            "tenantId": env("TENANT_ID", "stub"),
            "type": "request",
            "req": {"method": req.method, "url": req.target, "remoteAddress": req.client_ip},
            "res": {"statusCode": resp.status},
            "responseTime": round(seconds * 1000, 3),
            "msg": f"{req.method} | {resp.status} | {req.client_ip} | {req.request_id} | {req.target}",
            "stand_in": True,
        }
    )


def imgproxy_log(req: Request, resp: Response, seconds: float) -> str:
    return (
        f'time="{rfc3339()}" level=info msg="Completed in {seconds * 1000:.3f}ms {req.path}" '
        f"request_id={req.request_id} method={req.method} status={resp.status} client_ip={req.client_ip}"
    )


# --------------------------------------------------------------------------------------------
# Services


def not_found(req: Request) -> Response:
    return json_response(404, {"message": f"stand-in {SERVICE}: no route for {req.method} {req.path}"})


# -- Auth admin SSO API (stand-in) ------------------------------------------------------------
# The subset of GoTrue's admin API that `sfp-server sso` uses (supabase/auth v2.196.0,
# internal/api/ssoadmin.go, custom_oauth_admin.go): GET/POST /admin/sso/providers,
# GET/PUT/DELETE /admin/sso/providers/{id}, GET/POST /admin/custom-providers,
# GET/PUT/DELETE /admin/custom-providers/{identifier}. A STAND-IN: it stores what it is given in
# the org's database (table auth.sfp_standin_sso_providers) and never fetches metadata or talks to
# an IdP. Requests need `Authorization: Bearer <JWT>` signed HS256 with GOTRUE_JWT_SECRET whose
# role is one of GOTRUE_JWT_ADMIN_ROLES, as GoTrue's admin middleware requires.

SAML_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
SSO_TABLE = "auth.sfp_standin_sso_providers"


def verify_hs256(token: str, secret: str) -> dict[str, Any] | None:
    """The claims of a valid, unexpired HS256 JWT signed with `secret`, else None (verify_session
    with the secret as plain text, never as a key set; no secret opens nothing)."""
    if not secret or secret.lstrip().startswith("{"):
        return None
    return verify_session(token, secret)


# Sessions: GoTrue signs an access token with the one key of GOTRUE_JWT_KEYS whose key_ops has
# "sign" (the others only verify) and names it by kid in the header; PostgREST, Realtime and Storage
# verify with a key set (PGRST_JWT_SECRET, API_JWT_JWKS, JWT_JWKS: a JWKS, or a plain HS256 secret),
# the key picked by kid. PyJWT does the cryptography.
def session_signing_key(keys_json: str) -> dict[str, Any]:
    """The JWK that signs sessions: exactly one of the set may carry "sign", as GoTrue requires."""
    keys = json.loads(keys_json)
    signing = [k for k in keys if isinstance(k, dict) and "sign" in (k.get("key_ops") or [])]
    if len(signing) != 1:
        raise ValueError(f"GOTRUE_JWT_KEYS must mark exactly one key for signing, not {len(signing)}")
    return signing[0]


def issue_session(keys_json: str, subject: str, email: str, lifetime: int, secret: str = "") -> str:
    """Without a key set (GOTRUE_JWT_KEYS unset: upstream's default), GoTrue signs HS256 with its
    JWT secret and names no key."""
    import jwt

    now = int(time.time())
    claims = {"sub": subject, "email": email, "role": "authenticated", "aud": "authenticated", "iat": now,
              "exp": now + lifetime, "session_id": str(uuid.uuid4())}
    if not keys_json.strip():
        if not secret:
            raise ValueError("neither GOTRUE_JWT_KEYS nor GOTRUE_JWT_SECRET is set")
        return jwt.encode(claims, secret, algorithm="HS256")
    key = session_signing_key(keys_json)
    signer = jwt.PyJWK(key)
    return jwt.encode(claims, signer.key, algorithm=key.get("alg", "ES256"), headers={"kid": key["kid"]})


def verify_session(token: str, secret: str) -> dict[str, Any] | None:
    """The claims of `token` when a key of `secret` (a JWKS or an HS256 secret) verifies it and it has
    not expired, else None. A kid in the token picks the key; without one, each key is tried."""
    import jwt

    try:
        header = jwt.get_unverified_header(token)
        parsed = json.loads(secret) if secret.lstrip().startswith("{") else None
    except (jwt.PyJWTError, ValueError):
        return None
    if parsed is None:
        keys: list[tuple[Any, str]] = [(secret.encode(), "HS256")]
    else:
        keys = []
        for jwk in parsed.get("keys", []) if isinstance(parsed, dict) else []:
            if not isinstance(jwk, dict) or ("kid" in header and jwk.get("kid") != header["kid"]):
                continue
            with contextlib.suppress(jwt.PyJWTError, ValueError, KeyError):
                keys.append((jwt.PyJWK(jwk).key, jwk.get("alg") or ("HS256" if jwk.get("kty") == "oct" else "ES256")))
    for key, alg in keys:
        if alg != header.get("alg"):
            continue
        with contextlib.suppress(jwt.PyJWTError):
            return jwt.decode(token, key, algorithms=[alg], options={"verify_aud": False})
    return None


def gotrue_error(status: int, code: str, msg: str) -> Response:
    return json_response(status, {"code": status, "error_code": code, "msg": msg})


class SsoAdminStore:
    """Providers kept in the org's Postgres, so they survive a restart of the auth container."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.lock = threading.Lock()
        self.ready = False

    def _conn(self) -> Any:
        import psycopg2

        conn = psycopg2.connect(self.dsn, connect_timeout=5, application_name="stand-in auth sso")
        conn.autocommit = True
        if not self.ready:
            with conn.cursor() as cur:
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {SSO_TABLE} (id text PRIMARY KEY, kind text NOT NULL, "
                    "key text NOT NULL, data text NOT NULL, secret text, UNIQUE (kind, key))"
                )
            self.ready = True
        return conn

    def all(self, kind: str) -> list[dict[str, Any]]:
        conn = self._conn()
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT data FROM {SSO_TABLE} WHERE kind = %s ORDER BY key", (kind,))
                return [json.loads(row[0]) for row in cur.fetchall()]
        finally:
            conn.close()

    def put(self, kind: str, key: str, data: dict[str, Any], secret: str | None = None) -> None:
        conn = self._conn()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {SSO_TABLE} (id, kind, key, data, secret) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key, data = EXCLUDED.data, "
                    "secret = COALESCE(EXCLUDED.secret, " + SSO_TABLE.split(".")[1] + ".secret)",
                    (data["id"], kind, key, json.dumps(data), secret),
                )
        finally:
            conn.close()

    def delete(self, pid: str) -> None:
        conn = self._conn()
        try:
            with conn.cursor() as cur:
                cur.execute(f"DELETE FROM {SSO_TABLE} WHERE id = %s", (pid,))
        finally:
            conn.close()


def saml_entity_id(xml: str) -> tuple[str | None, str | None]:
    """(entityID, None) or (None, error) for IdP metadata; DTDs are refused, as GoTrue's parser does."""
    import xml.etree.ElementTree as ET

    if "<!DOCTYPE" in xml or "<!ENTITY" in xml:
        return None, "SAML Metadata could not be parsed: DTDs are not allowed"
    try:
        root = ET.fromstring(xml.encode())
    except ET.ParseError as exc:
        return None, f"SAML Metadata could not be parsed: {exc}"
    if root.tag != f"{{{SAML_MD}}}EntityDescriptor":
        return None, "SAML Metadata could not be parsed: not an EntityDescriptor"
    if len(root.findall(f"{{{SAML_MD}}}IDPSSODescriptor")) != 1:
        return None, "SAML Metadata does not contain an IDPSSODescriptor"
    entity_id = (root.get("entityID") or "").strip()
    if not entity_id:
        return None, "SAML Metadata does not contain an EntityID"
    return entity_id, None


def sso_admin_app(store: SsoAdminStore) -> App:
    admin_roles = {r.strip() for r in env("GOTRUE_JWT_ADMIN_ROLES", "service_role").split(",") if r.strip()}

    def body_of(req: Request) -> dict[str, Any]:
        if not req.body:
            return {}
        data = json.loads(req.body)
        if not isinstance(data, dict):
            raise ValueError("request body must be a JSON object")
        return data

    def metadata(body: dict[str, Any]) -> tuple[str, str] | Response:
        if body.get("metadata_url") and body.get("metadata_xml"):
            return gotrue_error(400, "validation_failed", "Only one of metadata_xml or metadata_url needs to be set")
        if body.get("metadata_url"):
            if not str(body["metadata_url"]).startswith("https://"):
                return gotrue_error(400, "validation_failed", "metadata_url is not a HTTPS URL")
            return gotrue_error(400, "validation_failed", "stand-in: metadata_url is not fetched; send metadata_xml")
        xml = str(body.get("metadata_xml") or "")
        if not xml:
            return gotrue_error(400, "validation_failed", "Either metadata_xml or metadata_url must be set")
        entity_id, error = saml_entity_id(xml)
        if error or entity_id is None:
            return gotrue_error(400, "validation_failed", error or "bad metadata")
        return entity_id, xml

    def domain_owner(items: list[dict[str, Any]], domain: str) -> str | None:
        return next((p["id"] for p in items if any(d["domain"] == domain for d in p["domains"])), None)

    def saml(req: Request, rest: str) -> Response:
        if not env_bool("GOTRUE_SAML_ENABLED"):
            return gotrue_error(404, "saml_provider_disabled", "SAML 2.0 is disabled")
        items = store.all("saml")
        if rest == "":
            if req.method == "GET":
                listed = []
                for p in items:
                    q = json.loads(json.dumps(p))
                    q["saml"].pop("metadata_xml", None)  # the list omits it, as GoTrue's does
                    listed.append(q)
                return json_response(200, {"items": listed})
            if req.method != "POST":
                return gotrue_error(405, "method_not_allowed", "method not allowed")
            body = body_of(req)
            if body.get("type") != "saml":
                return gotrue_error(400, "validation_failed", "Only 'saml' supported for SSO provider type")
            md = metadata(body)
            if isinstance(md, Response):
                return md
            entity_id, xml = md
            if any(p["saml"]["entity_id"] == entity_id for p in items):
                return gotrue_error(422, "saml_idp_already_exists",
                                    f"SAML Identity Provider with this EntityID ({entity_id}) already exists")
            for d in body.get("domains") or []:
                if domain_owner(items, d):
                    return gotrue_error(400, "sso_domain_already_exists",
                                        f"SSO Domain '{d}' is already assigned to an SSO identity provider")
            pid = str(uuid.uuid4())
            saml_part: dict[str, Any] = {"entity_id": entity_id, "metadata_xml": xml,
                                         "attribute_mapping": body.get("attribute_mapping") or {}}
            if body.get("name_id_format"):
                saml_part["name_id_format"] = body["name_id_format"]
            stamp = rfc3339()
            provider = {"id": pid, "resource_id": None, "disabled": bool(body.get("disabled")), "saml": saml_part,
                        "domains": [{"domain": d} for d in body.get("domains") or []],
                        "created_at": stamp, "updated_at": stamp}
            store.put("saml", entity_id, provider)
            return json_response(201, provider)
        provider = next((p for p in items if p["id"] == rest), None)
        if provider is None:
            return gotrue_error(404, "sso_provider_not_found", "SSO Identity Provider not found")
        if req.method == "GET":
            return json_response(200, provider)
        if req.method == "DELETE":
            store.delete(rest)
            return json_response(200, provider)
        if req.method != "PUT":
            return gotrue_error(405, "method_not_allowed", "method not allowed")
        body = body_of(req)
        if body.get("metadata_xml") or body.get("metadata_url"):
            md = metadata(body)
            if isinstance(md, Response):
                return md
            entity_id, xml = md
            if entity_id != provider["saml"]["entity_id"]:
                return gotrue_error(400, "saml_entity_id_mismatch",
                                    "SAML Metadata can be updated only if the EntityID matches for the provider")
            provider["saml"]["metadata_xml"] = xml
        if body.get("domains") is not None:
            for d in body["domains"]:
                owner = domain_owner(items, d)
                if owner and owner != rest:
                    return gotrue_error(400, "sso_domain_already_exists", f"SSO domain '{d}' already assigned to another provider")
            provider["domains"] = [{"domain": d} for d in body["domains"]]
        if (body.get("attribute_mapping") or {}).get("keys") is not None:
            provider["saml"]["attribute_mapping"] = body["attribute_mapping"]
        if body.get("name_id_format"):
            provider["saml"]["name_id_format"] = body["name_id_format"]
        else:
            provider["saml"].pop("name_id_format", None)  # as GoTrue: omitted or empty clears it
        if body.get("disabled") is not None:
            provider["disabled"] = bool(body["disabled"])
        provider["updated_at"] = rfc3339()
        store.put("saml", provider["saml"]["entity_id"], provider)
        return json_response(200, provider)

    def custom(req: Request, rest: str) -> Response:
        if not env_bool("GOTRUE_CUSTOM_OAUTH_ENABLED"):
            return gotrue_error(404, "feature_disabled", "Custom OAuth providers are disabled")
        items = store.all("custom")
        if rest == "":
            if req.method == "GET":
                return json_response(200, {"providers": items})
            if req.method != "POST":
                return gotrue_error(405, "method_not_allowed", "method not allowed")
            body = body_of(req)
            for required in ("identifier", "name", "client_id", "client_secret"):
                if not body.get(required):
                    return gotrue_error(400, "validation_failed", f"{required} is required")
            if body.get("provider_type") not in ("oauth2", "oidc"):
                return gotrue_error(400, "validation_failed", "provider_type must be either 'oauth2' or 'oidc'")
            if body["provider_type"] == "oidc" and not body.get("issuer"):
                return gotrue_error(400, "validation_failed", "issuer is required for OIDC providers")
            ident = str(body["identifier"])
            if not ident.startswith("custom:"):
                return gotrue_error(400, "validation_failed", "identifier must start with 'custom:' prefix")
            if any(p["identifier"] == ident for p in items):
                return gotrue_error(400, "conflict", "A custom OAuth provider with this identifier already exists")
            scopes = list(body.get("scopes") or [])
            if "openid" not in scopes and body["provider_type"] == "oidc":
                scopes.insert(0, "openid")
            stamp = rfc3339()
            provider = {
                "id": str(uuid.uuid4()), "provider_type": body["provider_type"], "identifier": ident,
                "name": body["name"], "client_id": body["client_id"],
                "acceptable_client_ids": body.get("acceptable_client_ids") or [], "scopes": scopes,
                "pkce_enabled": body.get("pkce_enabled", True), "attribute_mapping": body.get("attribute_mapping") or {},
                "custom_claims_allowlist": body.get("custom_claims_allowlist") or [],
                "authorization_params": body.get("authorization_params") or {}, "enabled": body.get("enabled", True),
                "email_optional": body.get("email_optional", False), "issuer": body.get("issuer"),
                "skip_nonce_check": body.get("skip_nonce_check", False),
                "created_at": stamp, "updated_at": stamp,
            }
            if body.get("discovery_url"):
                provider["discovery_url"] = body["discovery_url"]
            store.put("custom", ident, provider, str(body["client_secret"]))
            return json_response(201, provider)  # the client secret is never returned
        ident = urllib.parse.unquote(rest)
        if not ident.startswith("custom:"):
            return gotrue_error(400, "validation_failed", "identifier must start with 'custom:' prefix")
        provider = next((p for p in items if p["identifier"] == ident), None)
        if provider is None:
            return gotrue_error(404, "custom_provider_not_found", "Custom OAuth provider not found")
        if req.method == "GET":
            return json_response(200, provider)
        if req.method == "DELETE":
            store.delete(provider["id"])
            return Response(204, b"", "")
        if req.method != "PUT":
            return gotrue_error(405, "method_not_allowed", "method not allowed")
        body = body_of(req)
        provider.update({k: v for k, v in body.items() if k not in ("client_secret", "identifier", "provider_type", "id")})
        provider["updated_at"] = rfc3339()
        store.put("custom", ident, provider, str(body["client_secret"]) if body.get("client_secret") else None)
        return json_response(200, provider)

    def app(req: Request) -> Response:
        claims = verify_hs256(req.bearer(), env("GOTRUE_JWT_SECRET"))
        if claims is None:
            return gotrue_error(401, "bad_jwt", "invalid JWT: unable to parse or verify signature")
        if str(claims.get("role", "")) not in admin_roles:
            return gotrue_error(403, "not_admin", "User not allowed")
        path = req.path.rstrip("/")
        try:
            if path == "/admin/sso/providers" or path.startswith("/admin/sso/providers/"):
                return saml(req, path[len("/admin/sso/providers/"):] if path != "/admin/sso/providers" else "")
            if path == "/admin/custom-providers" or path.startswith("/admin/custom-providers/"):
                return custom(req, path[len("/admin/custom-providers/"):] if path != "/admin/custom-providers" else "")
        except ValueError as exc:
            return gotrue_error(400, "validation_failed", f"bad request body: {exc}")
        return gotrue_error(404, "not_found", "stand-in: not implemented")

    return app


def run_auth() -> None:
    providers = [
        "anonymous_users",
        "apple",
        "azure",
        "bitbucket",
        "discord",
        "email",
        "facebook",
        "figma",
        "github",
        "gitlab",
        "google",
        "kakao",
        "keycloak",
        "linkedin",
        "linkedin_oidc",
        "notion",
        "phone",
        "slack",
        "slack_oidc",
        "spotify",
        "twitch",
        "twitter",
        "workos",
        "zoom",
    ]

    def settings() -> dict[str, Any]:
        external = {name: False for name in providers}
        for key in os.environ:
            match = re.fullmatch(r"GOTRUE_EXTERNAL_(\w+)_ENABLED", key)
            if match:
                external[match.group(1).lower()] = env_bool(key)
        return {
            "external": external,
            "disable_signup": env_bool("GOTRUE_DISABLE_SIGNUP"),
            "mailer_autoconfirm": env_bool("GOTRUE_MAILER_AUTOCONFIRM"),
            "phone_autoconfirm": env_bool("GOTRUE_SMS_AUTOCONFIRM"),
            "sms_provider": env("GOTRUE_SMS_PROVIDER"),
            "saml_enabled": env_bool("GOTRUE_SAML_ENABLED"),
            "stand_in": True,
        }

    sso_admin = sso_admin_app(SsoAdminStore(env("GOTRUE_DB_DATABASE_URL") or env("DATABASE_URL")))

    def password_grant(req: Request) -> Response:
        # A STAND-IN: the password is not checked against any user; the session is signed as GoTrue
        # signs one, so the verifiers' key handling (a signing key rotation) can be tested.
        try:
            body = json.loads(req.body or b"{}")
            email = str(body["email"])
        except (ValueError, KeyError, TypeError):
            return gotrue_error(400, "validation_failed", "email and password are required")
        try:
            token = issue_session(env("GOTRUE_JWT_KEYS"), str(uuid.uuid5(uuid.NAMESPACE_URL, email)), email,
                                  int(env("GOTRUE_JWT_EXP", "3600")), env("GOTRUE_JWT_SECRET"))
        except (ValueError, KeyError) as exc:
            return gotrue_error(500, "unexpected_failure", f"stand-in: cannot sign: {exc}")
        return json_response(200, {"access_token": token, "token_type": "bearer",
                                   "expires_in": int(env("GOTRUE_JWT_EXP", "3600")), "user": {"email": email}})

    def app(req: Request) -> Response:
        if req.path == "/health" and req.method in ("GET", "HEAD"):
            error = db_login_error(env("GOTRUE_DB_DATABASE_URL") or env("DATABASE_URL"))
            if error:
                return json_response(503, {"code": 503, "error_code": "unexpected_failure", "msg": error})
            return json_response(200, {"version": VERSION, "name": "GoTrue", "description": "stand-in"})
        if req.path == "/settings" and req.method in ("GET", "HEAD"):
            return json_response(200, settings())
        if req.path.startswith(("/admin/sso/", "/admin/custom-providers")):
            return sso_admin(req)
        if req.path == "/token" and req.method == "POST" and req.query.get("grant_type") == ["password"]:
            return password_grant(req)
        return json_response(
            404, {"code": 404, "error_code": "not_found", "msg": "stand-in: not implemented"}
        )

    serve(env_port("GOTRUE_API_PORT", 9999), app, gotrue_log)


def run_rest() -> None:
    def app(req: Request) -> Response:
        # PostgREST refuses a request whose JWT its key set does not verify (PGRST301); none: anon.
        if req.bearer() and verify_session(req.bearer(), env("PGRST_JWT_SECRET")) is None:
            return json_response(401, {"code": "PGRST301", "details": None, "hint": None,
                                       "message": "stand-in: the JWT does not verify with PGRST_JWT_SECRET"})
        if req.path == "/" and req.method in ("GET", "HEAD"):
            return json_response(
                200,
                {
                    "swagger": "2.0",
                    "info": {
                        "title": "stand-in for PostgREST",
                        "description": "stand-in",
                        "version": VERSION,
                    },
                    "stand_in": True,
                },
            )
        return json_response(
            404, {"code": "PGRST000", "details": None, "hint": None, "message": "stand-in: not implemented"}
        )

    def admin(req: Request) -> Response:
        if req.path in ("/ready", "/live") and req.method in ("GET", "HEAD"):
            error = db_login_error(env("PGRST_DB_URI"))
            return Response(503 if error else 200, (error or "").encode(), "text/plain; charset=utf-8")
        return Response(404, b"", "text/plain")

    def access(req: Request, resp: Response, seconds: float) -> str:
        return combined_log(req, resp, user=env("PGRST_DB_ANON_ROLE", "anon"))

    serve(env_port("PGRST_SERVER_PORT", 3000), app, access)
    serve(env_port("PGRST_ADMIN_SERVER_PORT", 3001), admin, access)


def realtime_app(tenant: str, jwt_secret: str) -> App:
    def websocket(req: Request) -> Response:
        refused = websocket_handshake_error(req)
        if refused is not None:
            return refused
        # Realtime's socket takes the key from the apikey parameter (what supabase-js sends) or the
        # x-api-key header (what Kong adds) and refuses it unless it is a JWT signed with
        # API_JWT_SECRET; Phoenix answers a refused connect with 403.
        token = req.query.get("apikey", [""])[0] or req.header("x-api-key")
        if not token:
            return json_response(403, {"message": "Unauthorized: missing apikey"})
        if verify_hs256(token, jwt_secret) is None:
            return json_response(403, {"message": "Unauthorized: apikey is not a valid JWT"})
        accept = websocket_accept(req.header("sec-websocket-key").strip())
        upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)]
        return Response(101, b"", "", upgrade, takeover=websocket_session)

    def app(req: Request) -> Response:
        if req.path == "/socket/websocket":
            return websocket(req)
        match = re.fullmatch(r"/api/tenants/([^/]+)/health", req.path)
        if match and req.method in ("GET", "HEAD"):
            if match.group(1) != tenant:
                return json_response(404, {"error": "Tenant not found"})
            if not req.bearer():
                return json_response(403, {"message": "Unauthorized: missing Authorization: Bearer <token>"})
            error = db_login_error(
                host=env("DB_HOST", "db"),
                port=env("DB_PORT", "5432"),
                user=env("DB_USER"),
                password=env("DB_PASSWORD"),
                dbname=env("DB_NAME", "postgres"),
            )
            if error:
                return json_response(503, {"healthy": False, "db_connected": False, "message": error})
            return json_response(200, {"healthy": True, "db_connected": True, "connected_cluster": 1})
        if req.path in ("/", "/healthcheck"):
            return json_response(200, {"message": "stand-in for realtime"})
        return not_found(req)

    return app


def run_realtime() -> None:
    app = realtime_app(env("SELF_HOST_TENANT_NAME", "realtime-dev"), env("API_JWT_SECRET"))
    serve(env_port("PORT", 4000), app, elixir_log)


# STANDIN_STORAGE_MIGRATION: upgrade tests need a release whose start changes the database, as
# storage-api's own migrations do. The SQL is fixed; the name is only ever a bound parameter.
STORAGE_MIGRATION_SQL: tuple[str, str] = (
    "CREATE TABLE IF NOT EXISTS storage.standin_migrations "
    "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO storage.standin_migrations (name) VALUES (%s) ON CONFLICT DO NOTHING",
)
STORAGE_MIGRATION_WAIT = 60.0


def apply_storage_migration(
    name: str,
    connect: Callable[[], Any],
    retry_on: tuple[type[BaseException], ...],
    wait: float = STORAGE_MIGRATION_WAIT,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Records `name` in storage.standin_migrations in one transaction. Connecting is retried for
    `wait` seconds on `retry_on`, since compose may start storage before the database accepts
    logins; an error of the SQL itself is not retried."""
    deadline = clock() + wait
    last_reason = ""
    while True:
        try:
            conn = connect()
            break
        except retry_on as exc:
            if clock() >= deadline:
                raise
            # Once per distinct reason: a minute of identical lines would bury the rest of the log.
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if reason != last_reason:
                log(f"stand-in storage: database not reachable yet, retrying for up to {wait:.0f} s: {reason}")
                last_reason = reason
            sleep(1.0)
    try:
        with conn.cursor() as cur:
            cur.execute(STORAGE_MIGRATION_SQL[0])
            cur.execute(STORAGE_MIGRATION_SQL[1], (name,))
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.close()
    log(f"stand-in storage: applied migration {name}")


def migrate_storage(name: str, dsn: str) -> None:
    import psycopg2

    if not dsn:
        log("stand-in storage: error: STANDIN_STORAGE_MIGRATION needs DATABASE_URL")
        sys.exit(1)

    def connect() -> Any:
        return psycopg2.connect(dsn, connect_timeout=5, application_name="stand-in storage migration")

    try:
        apply_storage_migration(name, connect, (psycopg2.OperationalError,))
    except psycopg2.Error as exc:
        # Upstream's storage-api exits when its migrations fail; compose's restart policy retries.
        log(f"stand-in storage: error: migration {name} failed: {str(exc).strip()}")
        sys.exit(1)


def run_storage() -> None:
    migration = env("STANDIN_STORAGE_MIGRATION").strip()
    if migration:
        migrate_storage(migration, env("DATABASE_URL"))
    root = env("FILE_STORAGE_BACKEND_PATH", "/var/lib/storage")
    service_key = env("SERVICE_KEY")

    def error(status: int, name: str, message: str) -> Response:
        return json_response(status, {"statusCode": str(status), "error": name, "message": message})

    def object_dir(bucket: str, key: str) -> str | None:
        # Upstream's file backend layout: <root>/<GLOBAL_S3_BUCKET>/<tenant>/<bucket>/<key>/<version>.
        parts = [env("GLOBAL_S3_BUCKET"), env("TENANT_ID", "stub"), bucket, *key.split("/")]
        parts = [p for p in parts[:1] if p] + parts[1:]
        if any(p in ("", ".", "..") or "\0" in p for p in parts[1:]):
            return None
        return os.path.join(root, *parts)

    def versions(directory: str) -> list[os.DirEntry[str]]:
        try:
            entries = [e for e in os.scandir(directory) if e.is_file() and not e.name.startswith(".")]
        except OSError:
            return []
        return sorted(entries, key=lambda e: e.stat().st_mtime_ns)

    def put(req: Request, bucket: str, key: str, directory: str) -> Response:
        existing = versions(directory)
        upsert = req.header("x-upsert").lower() == "true"
        if existing and req.method == "POST" and not upsert:
            return error(409, "Duplicate", "The resource already exists")
        os.makedirs(directory, exist_ok=True)
        version = str(uuid.uuid4())
        tmp = os.path.join(directory, f".{version}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(req.body)
        content_type = req.header("content-type") or "application/octet-stream"
        os.setxattr(tmp, "user.supabase.content-type", content_type.encode())
        os.setxattr(tmp, "user.supabase.cache-control", (req.header("cache-control") or "no-cache").encode())
        os.replace(tmp, os.path.join(directory, version))
        for old in existing:
            with contextlib.suppress(OSError):
                os.unlink(old.path)
        return json_response(200, {"Key": f"{bucket}/{key}", "Id": version})

    def get(req: Request, directory: str) -> Response:
        found = versions(directory)
        if not found:
            return error(404, "not_found", "Object not found")
        path = found[-1].path
        with open(path, "rb") as fh:
            data = fh.read()
        headers = [
            ("ETag", f'"{hashlib.md5(data).hexdigest()}"'),
            ("Last-Modified", formatdate(found[-1].stat().st_mtime, usegmt=True)),
        ]
        with contextlib.suppress(OSError):
            headers.append(("Cache-Control", os.getxattr(path, "user.supabase.cache-control").decode()))
        try:
            content_type = os.getxattr(path, "user.supabase.content-type").decode()
        except OSError:
            content_type = "application/octet-stream"
        return Response(200, data, content_type, headers)

    def app(req: Request) -> Response:
        if req.path == "/status" and req.method in ("GET", "HEAD"):
            failure = db_login_error(env("DATABASE_URL"))
            return error(503, "Unavailable", failure) if failure else json_response(200, {"stand_in": True})
        match = re.fullmatch(r"/object/(?:authenticated/)?([^/]+)/(.+)", req.path)
        if not match:
            return not_found(req)
        token = req.bearer()
        if not token:
            return error(401, "Unauthorized", "stand-in: requests need Authorization: Bearer <service key>")
        if not service_key or token != service_key:
            return error(403, "Unauthorized", "invalid signature")
        bucket = urllib.parse.unquote(match.group(1))
        key = urllib.parse.unquote(match.group(2))
        directory = object_dir(bucket, key)
        if directory is None:
            return error(400, "InvalidKey", f"invalid object name {key!r}")
        if req.method in ("PUT", "POST"):
            return put(req, bucket, key, directory)
        if req.method in ("GET", "HEAD"):
            return get(req, directory)
        if req.method == "DELETE":
            found = versions(directory)
            for entry in found:
                os.unlink(entry.path)
            if not found:
                return error(404, "not_found", "Object not found")
            return json_response(200, {"message": "Successfully deleted"})
        return not_found(req)

    serve(env_port("SERVER_PORT", 5000), app, pino_log)


def run_imgproxy() -> None:
    def app(req: Request) -> Response:
        if req.path == "/health":
            return text_response(200, "imgproxy is running (stand-in)")
        return text_response(404, "stand-in: not implemented")

    serve(
        env_port("IMGPROXY_BIND", 5001) if env("IMGPROXY_BIND") else env_port("PORT", 5001), app, imgproxy_log
    )


def run_functions() -> None:
    def app(req: Request) -> Response:
        return json_response(
            200, {"stand_in": "functions", "message": "stand-in for the edge runtime", "path": req.path}
        )

    serve(9000, app)


def run_studio() -> None:
    def app(req: Request) -> Response:
        if req.path == "/api/platform/profile":
            return json_response(
                200,
                {
                    "id": 1,
                    "primary_email": "stand-in@localhost",
                    "username": "stand-in",
                    "first_name": "Stand-in",
                    "last_name": "Studio",
                    "stand_in": True,
                },
            )
        if not req.path.startswith("/api/") and req.method in ("GET", "HEAD"):
            # Studio is a single-page app: every page path answers with the app.
            page = (
                "<!doctype html><html><head><title>Studio stand-in</title></head>"
                "<body><h1>Supabase Studio stand-in</h1><p>This is a stand-in, not the upstream image."
                "</p></body></html>"
            )
            return text_response(200, page, "text/html; charset=utf-8")
        return not_found(req)

    serve(env_port("PORT", 3000), app)


def run_analytics() -> None:
    def app(req: Request) -> Response:
        if req.path == "/health":
            return json_response(200, {"status": "ok", "stand_in": True})
        if req.path.startswith("/api/logs") and req.method == "POST":
            return json_response(200, {"message": "Logged!"})
        return not_found(req)

    serve(env_port("PORT", 4000), app, elixir_log)


def run_vector() -> None:
    def app(req: Request) -> Response:
        if req.path == "/health":
            return json_response(200, {"ok": True, "stand_in": True})
        return not_found(req)

    serve(9001, app)


def run_supavisor() -> None:
    target_host = env("POSTGRES_HOST")
    target_port = env("POSTGRES_PORT")
    # Upstream gives supavisor the database only inside DATABASE_URL (ecto://user:pw@host:port/db).
    parsed = urllib.parse.urlsplit(env("DATABASE_URL"))
    with contextlib.suppress(ValueError):
        target_host = target_host or parsed.hostname or ""
        target_port = target_port or str(parsed.port or "")
    target = (target_host or "db", int(target_port or 5432))

    def app(req: Request) -> Response:
        if req.path == "/api/health":
            return json_response(200, {"status": "ok", "stand_in": True})
        return not_found(req)

    serve(env_port("PORT", 4000), app, elixir_log)
    for name, default in (("PROXY_PORT_SESSION", 5432), ("PROXY_PORT_TRANSACTION", 6543)):
        tcp_forward(env_port(name, default), target)


def tcp_forward(port: int, target: tuple[str, int]) -> None:
    try:
        listener = socket.create_server(
            ("::", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=128
        )
    except OSError:
        listener = socket.create_server(("0.0.0.0", port), backlog=128)

    def handle(client: socket.socket, peer: str) -> None:
        stamp = now_utc().strftime("%H:%M:%S.%f")[:-3]
        try:
            upstream = socket.create_connection(target, timeout=5)
        except OSError as exc:
            log(f"{stamp} [error] stand-in: {peer} -> {target[0]}:{target[1]} failed: {exc}")
            client.close()
            return
        upstream.settimeout(None)
        log(f"{stamp} [info] stand-in: forwarding {peer} via :{port} to {target[0]}:{target[1]}")
        splice(client, client.recv, upstream, upstream.recv)
        client.close()
        upstream.close()

    def accept_loop() -> None:
        while True:
            try:
                client, addr = listener.accept()
            except OSError:
                continue
            peer = str(addr[0]).removeprefix("::ffff:")
            threading.Thread(target=handle, args=(client, peer), daemon=True).start()

    threading.Thread(target=accept_loop, name=f"tcp-{port}", daemon=True).start()
    log(f"stand-in {SERVICE}: forwarding port {port} to {target[0]}:{target[1]}")


# --------------------------------------------------------------------------------------------
# Kong: a subset of its declarative config (DB-less mode, format 2.1)


class YamlError(ValueError):
    pass


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"" and (i == 0 or line[i - 1] in " \t:-[{,"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _split_flow(text: str) -> list[str]:
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def _key_split(text: str) -> tuple[str, str] | None:
    """`key: rest` -> (key, rest); None if the text is not a mapping entry."""
    if text[:1] in ("'", '"'):
        end = text.find(text[0], 1)
        while end != -1 and text[0] == "'" and text[end + 1 : end + 2] == "'":
            end = text.find("'", end + 2)
        if end == -1 or not text[end + 1 :].lstrip().startswith(":"):
            return None
        rest = text[end + 1 :].lstrip()[1:]
        if rest and not rest[0].isspace():
            return None
        return str(_scalar(text[: end + 1])), rest.strip()
    if text[:1] in "[{":
        return None
    match = re.match(r"^([^:]+?)\s*:(?:\s+(.*)|$)", text)
    if not match:
        return None
    return match.group(1), (match.group(2) or "").strip()


def _scalar(text: str) -> Any:
    text = text.strip()
    if text[:1] == "'" and text[-1:] == "'" and len(text) >= 2:
        return text[1:-1].replace("''", "'")
    if text[:1] == '"' and text[-1:] == '"' and len(text) >= 2:
        try:
            return json.loads(text)
        except ValueError:
            return text[1:-1]
    if text[:1] == "[" and text[-1:] == "]":
        return [_scalar(item) for item in _split_flow(text[1:-1])]
    if text[:1] == "{" and text[-1:] == "}":
        result = {}
        for item in _split_flow(text[1:-1]):
            pair = _key_split(item)
            if pair is None:
                raise YamlError(f"cannot read flow mapping entry {item!r}")
            result[pair[0]] = _scalar(pair[1])
        return result
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?", text):
        return float(text)
    return text


class MiniYaml:
    """Block mappings and sequences, flow collections on one line, quoted and block scalars: the
    part of YAML that Kong declarative configs use."""

    def __init__(self, text: str) -> None:
        self.lines = text.replace("\t", "    ").splitlines()
        self.i = 0

    def parse(self) -> Any:
        nxt = self._peek()
        if nxt is None:
            return None
        value = self._block(nxt[0])
        if self._peek() is not None:
            raise YamlError(f"line {self.i + 1}: unexpected indentation")
        return value

    def _peek(self) -> tuple[int, str] | None:
        while self.i < len(self.lines):
            line = _strip_comment(self.lines[self.i]).rstrip()
            content = line.strip()
            if content and content not in ("---", "..."):
                return len(line) - len(line.lstrip(" ")), content
            self.i += 1
        return None

    def _block(self, indent: int) -> Any:
        nxt = self._peek()
        assert nxt is not None
        if nxt[1] == "-" or nxt[1].startswith("- "):
            return self._sequence(indent)
        return self._mapping(indent)

    def _sequence(self, indent: int) -> list[Any]:
        items: list[Any] = []
        while (nxt := self._peek()) is not None:
            ind, content = nxt
            if ind != indent or not (content == "-" or content.startswith("- ")):
                break
            rest = content[1:].strip()
            if not rest:
                self.i += 1
                items.append(self._nested(indent))
            elif rest[:1] in "|>":
                self.i += 1
                items.append(self._block_scalar(rest, indent))
            elif _key_split(rest) is not None:
                # "- key: value" opens a mapping whose keys line up with "key".
                raw = self.lines[self.i]
                self.lines[self.i] = raw[:ind] + " " + raw[ind + 1 :]
                items.append(self._mapping(self._peek()[0]))  # type: ignore[index]
            elif rest.startswith("- "):
                raw = self.lines[self.i]
                self.lines[self.i] = raw[:ind] + " " + raw[ind + 1 :]
                items.append(self._sequence(self._peek()[0]))  # type: ignore[index]
            else:
                self.i += 1
                items.append(_scalar(rest))
        return items

    def _mapping(self, indent: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while (nxt := self._peek()) is not None:
            ind, content = nxt
            if ind < indent or (ind == indent and content.startswith("- ")):
                break
            if ind > indent:
                raise YamlError(f"line {self.i + 1}: unexpected indentation")
            pair = _key_split(content)
            if pair is None:
                raise YamlError(f"line {self.i + 1}: expected 'key: value', got {content!r}")
            key, rest = pair
            self.i += 1
            if not rest:
                result[key] = self._nested(indent)
            elif rest[:1] in "|>":
                result[key] = self._block_scalar(rest, indent)
            else:
                result[key] = _scalar(rest)
        return result

    def _nested(self, indent: int) -> Any:
        nxt = self._peek()
        if nxt is None:
            return None
        ind, content = nxt
        if ind > indent or (ind == indent and (content == "-" or content.startswith("- "))):
            return self._block(ind)
        return None

    def _block_scalar(self, header: str, indent: int) -> str:
        lines: list[str] = []
        while self.i < len(self.lines):
            raw = self.lines[self.i]
            if raw.strip() and len(raw) - len(raw.lstrip(" ")) <= indent:
                break
            lines.append(raw)
            self.i += 1
        while lines and not lines[-1].strip():
            lines.pop()
        body = [line for line in lines if line.strip()]
        cut = min((len(line) - len(line.lstrip(" ")) for line in body), default=0)
        lines = [line[cut:] for line in lines]
        text = " ".join(lines) if header.startswith(">") else "\n".join(lines)
        return text if "-" in header else text + "\n"


def load_kong_config(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()

    # Upstream's entrypoint runs the file through `eval echo`: unset variables become empty.
    def substitute(match: re.Match[str]) -> str:
        return os.environ.get(match.group(1) or match.group(2), "")

    text = re.sub(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)", substitute, text)
    config = json.loads(text) if text.lstrip().startswith("{") else MiniYaml(text).parse()
    if not isinstance(config, dict):
        raise YamlError("the declarative config is not a mapping")
    if str(config.get("_format_version", "")) not in ("1.1", "2.1", "3.0"):
        raise YamlError(f"unsupported _format_version {config.get('_format_version')!r}")
    return config


@dataclass
class Consumer:
    username: str
    id: str
    groups: set[str] = field(default_factory=set)


@dataclass
class Route:
    prefix: str  # what strip_path removes
    strip_path: bool
    methods: set[str]
    service: dict[str, Any]
    plugins: list[dict[str, Any]]
    expression: Callable[[Request], bool] | None = None
    priority: int = 0


_EXPR_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>r#"[\s\S]*?"#)|(?P<op>&&|\|\||==|!=|\^=|=\^|~|[()!])'
    r"|(?P<word>[A-Za-z_][\w.-]*)|(?P<num>\d+))"
)


def compile_expression(text: str) -> tuple[Callable[[Request], bool], str]:
    """A route `expression` of Kong's expressions router, the part that matches on the request
    line: http.path/method/host, net.protocol, http.headers.<name>, http.queries.<name> with
    ==, !=, ^=, =^, ~ and contains, joined by &&, || and !. Returns the matcher and the path
    that strip_path removes (from the first `http.path ==` or `http.path ^=`)."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        match = _EXPR_TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise YamlError(f"cannot read route expression {text!r} at {text[pos:]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "str":
            value = json.loads(value)
        elif kind == "raw":
            value = value[3:-2]
        tokens.append(("str" if kind == "raw" else kind, value))
        pos = match.end()
    strip = [""]
    index = [0]

    def peek() -> tuple[str, str]:
        return tokens[index[0]] if index[0] < len(tokens) else ("end", "")

    def take() -> tuple[str, str]:
        token = peek()
        index[0] += 1
        return token

    def field_value(name: str, req: Request) -> str:
        if name == "http.path":
            return req.path
        if name == "http.method":
            return req.method
        if name == "http.host":
            return req.header("host").split(":")[0]
        if name == "net.protocol":
            return "http"
        if name.startswith("http.headers."):
            return req.header(name[13:].replace("_", "-"))
        if name.startswith("http.queries."):
            return req.query.get(name[13:], [""])[0]
        raise YamlError(f"unsupported field {name!r} in route expression {text!r}")

    def predicate() -> Callable[[Request], bool]:
        kind, name = take()
        if kind == "op" and name == "(":
            inner = disjunction()
            if take() != ("op", ")"):
                raise YamlError(f"missing ')' in route expression {text!r}")
            return inner
        if kind == "op" and name == "!":
            inner = predicate()
            return lambda req: not inner(req)
        if kind != "word":
            raise YamlError(f"expected a field in route expression {text!r}, got {name!r}")
        field_value(name, Request("GET", "/", "/", {}, {}, b"", ""))  # rejects unknown fields now
        op = take()
        if op[0] == "word" and op[1] == "contains":
            op = ("op", "contains")
        kind, value = take()
        if kind not in ("str", "num") or op[0] != "op":
            raise YamlError(f"cannot read route expression {text!r}")
        if name == "http.path" and op[1] in ("==", "^=") and not strip[0]:
            strip[0] = value
        tests: dict[str, Callable[[str], bool]] = {
            "==": lambda got: got == value,
            "!=": lambda got: got != value,
            "^=": lambda got: got.startswith(value),
            "=^": lambda got: got.endswith(value),
            "~": lambda got: re.search(value, got) is not None,
            "contains": lambda got: value in got,
        }
        if op[1] not in tests:
            raise YamlError(f"unsupported operator {op[1]!r} in route expression {text!r}")
        test = tests[op[1]]
        return lambda req: test(field_value(name, req))

    def conjunction() -> Callable[[Request], bool]:
        parts = [predicate()]
        while peek() == ("op", "&&"):
            take()
            parts.append(predicate())
        return lambda req: all(part(req) for part in parts)

    def disjunction() -> Callable[[Request], bool]:
        parts = [conjunction()]
        while peek() == ("op", "||"):
            take()
            parts.append(conjunction())
        return lambda req: any(part(req) for part in parts)

    matcher = disjunction()
    if peek()[0] != "end":
        raise YamlError(f"unexpected {peek()[1]!r} in route expression {text!r}")
    return matcher, strip[0]


class Kong:
    def __init__(self, config: dict[str, Any]) -> None:
        self.consumers: dict[str, Consumer] = {}
        self.keys: dict[str, Consumer] = {}
        self.basic: dict[str, tuple[str, Consumer]] = {}
        for item in config.get("consumers") or []:
            name = str(item.get("username") or item.get("custom_id") or "")
            consumer = Consumer(name, str(item.get("id") or uuid.uuid5(uuid.NAMESPACE_URL, f"kong:{name}")))
            self.consumers[name] = consumer
            self.consumers[consumer.id] = consumer
            for cred in item.get("keyauth_credentials") or []:
                self._add_key(cred.get("key"), consumer)
            for cred in item.get("basicauth_credentials") or []:
                self._add_basic(cred, consumer)
            for acl in item.get("acls") or []:
                consumer.groups.add(str(acl.get("group")))
        for cred in config.get("keyauth_credentials") or []:
            self._add_key(cred.get("key"), self.consumers.get(str(cred.get("consumer"))))
        for cred in config.get("basicauth_credentials") or []:
            self._add_basic(cred, self.consumers.get(str(cred.get("consumer"))))
        for acl in config.get("acls") or []:
            member = self.consumers.get(str(acl.get("consumer")))
            if member is not None:
                member.groups.add(str(acl.get("group")))
        global_plugins = [
            p for p in config.get("plugins") or [] if not p.get("service") and not p.get("route")
        ]
        self.routes: list[Route] = []
        for service in config.get("services") or []:
            for route in service.get("routes") or []:
                plugins = [*global_plugins, *(service.get("plugins") or []), *(route.get("plugins") or [])]
                plugins = [p for p in plugins if p.get("enabled", True) is not False]
                methods = {str(m).upper() for m in route.get("methods") or []}
                strip = route.get("strip_path", True) is not False
                if route.get("expression"):
                    matcher, prefix = compile_expression(str(route["expression"]))
                    priority = int(route.get("priority") or 0)
                    self.routes.append(Route(prefix, strip, methods, service, plugins, matcher, priority))
                    continue
                # A path emptied by an unset variable would match every request.
                for prefix in [str(p) for p in route.get("paths") or ["/"] if p not in (None, "")]:
                    self.routes.append(Route(prefix, strip, methods, service, plugins))
        # Expression routes first (by their priority), then the longest path first, as Kong does.
        self.routes.sort(key=lambda r: (r.expression is None, -r.priority, -len(r.prefix)))

    def _add_key(self, key: Any, consumer: Consumer | None) -> None:
        # A key left empty by an unset variable must not match a request that sends no key.
        if consumer is not None and key not in (None, ""):
            self.keys[str(key)] = consumer

    def _add_basic(self, cred: dict[str, Any], consumer: Consumer | None) -> None:
        if consumer is not None and cred.get("username") not in (None, ""):
            self.basic[str(cred["username"])] = (str(cred.get("password") or ""), consumer)

    def match(self, req: Request) -> Route | None:
        for route in self.routes:
            if route.methods and req.method not in route.methods:
                continue
            if route.expression(req) if route.expression else req.path.startswith(route.prefix):
                return route
        return None

    def handle(self, req: Request) -> Response:
        route = self.match(req)
        if route is None:
            return json_response(404, {"message": "no Route matched with those values"})
        plugins = {str(p.get("name")): p.get("config") or {} for p in route.plugins}
        cors = "cors" in plugins
        if cors and req.method == "OPTIONS" and req.header("access-control-request-method"):
            return Response(200, b"", "", self._cors_headers(req))
        response = self._guarded(req, route, plugins)
        if cors and req.header("origin"):
            response.headers.extend(self._cors_headers(req))
        return response

    @staticmethod
    def _cors_headers(req: Request) -> list[tuple[str, str]]:
        return [
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Allow-Methods", "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"),
            ("Access-Control-Allow-Headers", req.header("access-control-request-headers", "*")),
        ]

    def _guarded(self, req: Request, route: Route, plugins: dict[str, dict[str, Any]]) -> Response:
        headers = dict(req.headers)
        consumer: Consumer | None = None
        # Plugins in Kong's priority order: key-auth, basic-auth, acl, request-termination.
        if "key-auth" in plugins:
            conf = plugins["key-auth"]
            names = [str(n).lower() for n in conf.get("key_names") or ["apikey"]]
            key = ""
            for name in names:
                if conf.get("key_in_header", True) is not False and headers.get(name):
                    key = headers[name]
                    if conf.get("hide_credentials"):
                        headers.pop(name, None)
                    break
                if conf.get("key_in_query", True) is not False and req.query.get(name, [""])[0]:
                    key = req.query[name][0]
                    break
            anonymous = self.consumers.get(str(conf.get("anonymous") or ""))
            if not key:
                if anonymous is None:
                    return json_response(
                        401,
                        {"message": "No API key found in request"},
                        [("WWW-Authenticate", 'Key realm="kong"')],
                    )
                consumer = anonymous
            elif key in self.keys:
                consumer = self.keys[key]
            elif anonymous is not None:
                consumer = anonymous
            else:
                return json_response(401, {"message": "Invalid authentication credentials"})
        if "basic-auth" in plugins and consumer is None:
            conf = plugins["basic-auth"]
            challenge = [("WWW-Authenticate", 'Basic realm="kong"')]
            auth = headers.get("authorization") or headers.get("proxy-authorization") or ""
            if not auth.lower().startswith("basic "):
                return json_response(401, {"message": "Unauthorized"}, challenge)
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return json_response(401, {"message": "Invalid authentication credentials"}, challenge)
            stored = self.basic.get(user)
            if stored is None or stored[0] != password:
                return json_response(401, {"message": "Invalid authentication credentials"}, challenge)
            consumer = stored[1]
            if conf.get("hide_credentials"):
                headers.pop("authorization", None)
                headers.pop("proxy-authorization", None)
        if "acl" in plugins:
            conf = plugins["acl"]
            if consumer is None:
                return json_response(401, {"message": "Unauthorized"})
            allow = {str(g) for g in conf.get("allow") or conf.get("whitelist") or []}
            deny = {str(g) for g in conf.get("deny") or conf.get("blacklist") or []}
            if (allow and not consumer.groups & allow) or consumer.groups & deny:
                return json_response(403, {"message": "You cannot consume this service"})
            if not conf.get("hide_groups_header"):
                headers["x-consumer-groups"] = ", ".join(sorted(consumer.groups))
        if "request-termination" in plugins:
            conf = plugins["request-termination"]
            status = int(conf.get("status_code") or 503)
            if conf.get("body"):
                return Response(
                    status, str(conf["body"]).encode(), str(conf.get("content_type") or "text/plain")
                )
            return json_response(status, {"message": conf.get("message") or "Service unavailable"})
        if consumer is not None:
            headers["x-consumer-id"] = consumer.id
            headers["x-consumer-username"] = consumer.username
        return self._proxy(req, route, headers)

    @staticmethod
    def upstream(req: Request, route: Route) -> tuple[str, str, int, str]:
        """Scheme, host, port and request target that Kong sends the request to."""
        service = route.service
        url = urllib.parse.urlsplit(str(service.get("url") or ""))
        host = url.hostname or str(service.get("host") or "")
        scheme = url.scheme or str(service.get("protocol") or "http")
        port = url.port or int(service.get("port") or (443 if scheme in ("https", "wss") else 80))
        base = url.path or str(service.get("path") or "") or "/"
        stripped = route.strip_path and req.path.startswith(route.prefix)
        rest = req.path[len(route.prefix) :] if stripped else req.path
        if not rest:
            path = base
        elif base.endswith("/") and rest.startswith("/"):
            path = base + rest[1:]
        elif not base.endswith("/") and not rest.startswith("/"):
            path = base + "/" + rest
        else:
            path = base + rest
        query = urllib.parse.urlsplit(req.target).query
        return scheme, host, port, path + ("?" + query if query else "")

    def _proxy(self, req: Request, route: Route, headers: dict[str, str]) -> Response:
        service = route.service
        scheme, host, port, target = self.upstream(req, route)
        hop_by_hop = {
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "host",
            "content-length",
            "expect",
        }
        out = {k: v for k, v in headers.items() if k not in hop_by_hop}
        forwarded_for = headers.get("x-forwarded-for")
        out["x-forwarded-for"] = f"{forwarded_for}, {req.client_ip}" if forwarded_for else req.client_ip
        out["x-real-ip"] = req.client_ip
        out["x-forwarded-proto"] = "http"
        out["x-forwarded-host"] = (req.header("host") or "").split(":")[0]
        out["x-forwarded-port"] = "8000"
        out["x-forwarded-path"] = req.path
        if route.strip_path and route.prefix not in ("", "/"):
            out["x-forwarded-prefix"] = route.prefix.rstrip("/")
        out["host"] = host if port in (80, 443) else f"{host}:{port}"
        # Kong passes a websocket upgrade on (nginx's Upgrade/Connection pass-through) and, when the
        # upstream switches protocols, relays the connection instead of reading a body.
        websocket = is_websocket_upgrade(req)
        if websocket:
            out["connection"], out["upgrade"] = "Upgrade", "websocket"
        timeout = float(service.get("read_timeout") or 60000) / 1000
        started = time.monotonic()
        try:
            conn_class = (
                http.client.HTTPSConnection if scheme in ("https", "wss") else http.client.HTTPConnection
            )
            conn = conn_class(host, port, timeout=float(service.get("connect_timeout") or 60000) / 1000)
            conn.connect()
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            conn.request(
                req.method,
                target,
                body=req.body if req.body or req.method in ("POST", "PUT", "PATCH") else None,
                headers=out,
            )
            upstream = conn.getresponse()
            upgraded = websocket and upstream.status == 101
            body = b"" if upgraded else upstream.read()
            if not upgraded:
                conn.close()
        except socket.gaierror:
            return json_response(503, {"message": "name resolution failed"})
        except TimeoutError:
            return json_response(504, {"message": "The upstream server is timed out"})
        except (OSError, http.client.HTTPException):
            return json_response(
                502, {"message": "An invalid response was received from the upstream server"}
            )
        latency = int((time.monotonic() - started) * 1000)
        drop = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}
        resp_headers = []
        for name, value in upstream.getheaders():
            if name.lower() in drop:
                continue
            if name.lower() == STAND_IN_HEADER.lower():
                name = "X-SFP-Upstream-Stand-In"
            resp_headers.append((name, value))
        resp_headers += [
            ("X-Kong-Upstream-Latency", str(latency)),
            ("X-Kong-Proxy-Latency", "0"),
            ("Via", "kong/2.8.1"),
            (STAND_IN_HEADER, "kong"),
        ]
        if upgraded:
            resp_headers.append(("Connection", "Upgrade"))
            return Response(101, b"", "", resp_headers, takeover=self._relay(conn, upstream))
        return Response(upstream.status, body, "", resp_headers)

    @staticmethod
    def _relay(conn: http.client.HTTPConnection, upstream: http.client.HTTPResponse) -> Takeover:
        """Relays an upgraded client connection to `conn`, whose 101 answer `upstream` has read."""
        sock = conn.sock
        assert sock is not None  # connected: it has just answered

        def relay(client: socket.socket, client_read: Reader) -> None:
            try:
                # Read through the response's buffer: frames may have come with the 101's head.
                splice(client, client_read, sock, upstream.fp.read1)
            finally:
                conn.close()

        return relay


def run_kong() -> None:
    path = env("KONG_DECLARATIVE_CONFIG", "/home/kong/kong.yml")
    # Upstream's compose renders kong.yml from temp.yml in the kong user's home; when that step ran
    # as another user (or not at all), the template itself is the config.
    if not (os.path.isfile(path) and os.path.getsize(path) > 0):
        fallback = "/home/kong/temp.yml"
        if not os.path.isfile(fallback):
            log(f"stand-in kong: error: no declarative config at {path} (KONG_DECLARATIVE_CONFIG)")
            sys.exit(1)
        path = fallback
    try:
        kong = Kong(load_kong_config(path))
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        log(f"stand-in kong: error: cannot load declarative config {path}: {exc}")
        sys.exit(1)
    log(f"stand-in kong: loaded {path}: {len(kong.routes)} route paths, {len(kong.keys)} API keys")

    def access(req: Request, resp: Response, seconds: float) -> str:
        return combined_log(req, resp)

    # KONG_PROXY_LISTEN is a list like "0.0.0.0:8000, 0.0.0.0:8443 ssl"; the plain one is served.
    port = 8000
    for listen in env("KONG_PROXY_LISTEN").split(","):
        words = listen.split()
        if words and "ssl" not in words[1:] and re.search(r":(\d+)$", words[0]):
            port = int(words[0].rsplit(":", 1)[1])
            break
    serve(port, kong.handle, access)


SERVICES: dict[str, Callable[[], None]] = {
    "auth": run_auth,
    "rest": run_rest,
    "realtime": run_realtime,
    "storage": run_storage,
    "imgproxy": run_imgproxy,
    "functions": run_functions,
    "studio": run_studio,
    "analytics": run_analytics,
    "vector": run_vector,
    "supavisor": run_supavisor,
    "kong": run_kong,
}


def main() -> None:
    def stop(signum: int, _frame: object) -> None:
        log(f"stand-in {SERVICE}: received {signal.Signals(signum).name}, exiting")
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"stand-in for {SERVICE or '?'} (build {BUILD}): not the upstream image")
    if env_bool("STANDIN_UNHEALTHY"):
        log(f"stand-in {SERVICE}: STANDIN_UNHEALTHY is set: health checks answer 503 on purpose")
    runner = SERVICES.get(SERVICE)
    if runner is None:
        log(f"stand-in: error: set STANDIN_SERVICE to one of: {', '.join(sorted(SERVICES))}")
        sys.exit(2)
    try:
        runner()
    except OSError as exc:
        log(f"stand-in {SERVICE}: error: {exc}")
        sys.exit(1)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
