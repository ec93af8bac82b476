"""The Kong stand-in's config reading and gateway rules, in-process (no Docker needed)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.sso.idp_fixtures import LoopbackHTTP, Route, free_closed_port

STANDIN = Path(__file__).parent / "standin" / "standin.py"

KONG_YML = """\
_format_version: '2.1'
_transform: true

### consumers
consumers:
  - username: DASHBOARD
  - username: anon
    keyauth_credentials:
      - key: $ANON_KEY
      - key: $UNSET_KEY
  - username: service_role
    keyauth_credentials:
      - key: ${SERVICE_KEY}
acls:
  - consumer: anon
    group: anon
  - consumer: service_role
    group: admin
basicauth_credentials:
  - consumer: DASHBOARD
    username: '$DASHBOARD_USERNAME'
    password: "$DASHBOARD_PASSWORD"
services:
  - name: rest-openapi
    url: http://upstream:1/
    routes:
      - name: rest-openapi
        strip_path: true
        expression: http.path == "/rest/v1/"
    plugins:
      - name: key-auth
      - name: acl
        config: {hide_groups_header: true, allow: [admin]}
  - name: rest
    _comment: 'PostgREST: /rest/v1/* -> http://rest:3000/*'
    url: http://upstream:1/
    routes:
      - name: rest-all
        strip_path: true
        paths:
        - /rest/v1/
    plugins:
      - name: cors
      - name: key-auth
        config:
          hide_credentials: false
      - name: request-transformer
        config:
          add:
            headers:
              - "Authorization: $LUA_AUTH_EXPR"  # dropped by the stand-in
      - name: acl
        config:
          allow:
            - admin
            - anon
  - name: graphql
    url: http://upstream:1/rpc/graphql
    routes:
      - name: graphql
        paths: [/graphql/v1]
  - name: storage
    url: http://upstream:1/
    routes:
      - name: storage
        paths:
          - /storage/v1/
    plugins:
      - name: post-function
        config:
          access:
            - |
              local auth = kong.request.get_header("authorization")
              if auth == "" then kong.service.request.clear_header("authorization") end
  - name: mcp
    url: http://upstream:1/api/mcp
    routes:
      - name: mcp
        paths:
          - /mcp
    plugins:
      - name: request-termination
        config:
          status_code: 403
          message: Access is forbidden.
  - name: dashboard
    url: http://upstream:1/
    routes:
      - name: dashboard
        paths:
          - /
    plugins:
      - name: basic-auth
        config:
          hide_credentials: true
"""

ENV = {
    "ANON_KEY": "anon-key",
    "SERVICE_KEY": "service-key",
    "DASHBOARD_USERNAME": "supabase",
    "DASHBOARD_PASSWORD": "dash-pw",
}


@pytest.fixture(scope="module")
def standin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sfp_standin", STANDIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def kong(standin: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, echo_port: int) -> Any:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("UNSET_KEY", raising=False)
    path = tmp_path / "kong.yml"
    path.write_text(KONG_YML.replace("upstream:1", f"127.0.0.1:{echo_port}"))
    return standin.Kong(standin.load_kong_config(str(path)))


def request(standin: ModuleType, path: str, headers: dict[str, str] | None = None) -> Any:
    target = path
    return standin.Request("GET", target, path.split("?")[0], {}, headers or {}, b"", "10.0.0.9")


def test_yaml_subset_reads_like_pyyaml(standin: ModuleType) -> None:
    assert standin.MiniYaml(KONG_YML).parse() == yaml.safe_load(KONG_YML)


def test_variables_are_substituted_and_empty_keys_ignored(kong: Any) -> None:
    assert set(kong.keys) == {"anon-key", "service-key"}
    assert kong.basic["supabase"][0] == "dash-pw"


@pytest.mark.parametrize(
    ("path", "service", "target"),
    [
        ("/rest/v1/", "rest-openapi", "/"),
        ("/rest/v1/todos?select=id", "rest", "/todos?select=id"),
        ("/graphql/v1", "graphql", "/rpc/graphql"),
        ("/storage/v1/object/b/k", "storage", "/object/b/k"),
        ("/rest/v1", "dashboard", "/rest/v1"),
        ("/", "dashboard", "/"),
    ],
)
def test_routing_and_strip_path(standin: ModuleType, kong: Any, path: str, service: str, target: str) -> None:
    route = kong.match(request(standin, path))
    assert route.service["name"] == service
    assert kong.upstream(request(standin, path), route)[3] == target


@pytest.mark.parametrize(
    ("path", "headers", "status", "message"),
    [
        ("/rest/v1/x", {}, 401, "No API key found in request"),
        ("/rest/v1/x", {"apikey": "nope"}, 401, "Invalid authentication credentials"),
        ("/rest/v1/", {"apikey": "anon-key"}, 403, "You cannot consume this service"),
        ("/mcp", {}, 403, "Access is forbidden."),
        ("/", {}, 401, "Unauthorized"),
        ("/", {"authorization": "Basic c3VwYWJhc2U6d3Jvbmc="}, 401, "Invalid authentication credentials"),
    ],
)
def test_plugins_reject(
    standin: ModuleType, kong: Any, path: str, headers: dict[str, str], status: int, message: str
) -> None:
    response = kong.handle(request(standin, path, headers))
    assert response.status == status
    assert json.loads(response.body) == {"message": message}


def test_accepted_request_is_proxied(standin: ModuleType, kong: Any) -> None:
    response = kong.handle(request(standin, "/rest/v1/todos", {"apikey": "anon-key"}))
    assert response.status == 200
    assert ("X-SFP-Stand-In", "kong") in response.headers
    upstream = json.loads(response.body)
    assert upstream["path"] == "/todos"
    assert upstream["headers"]["x-consumer-username"] == "anon"
    assert upstream["headers"]["apikey"] == "anon-key"


def test_basic_auth_hides_credentials(standin: ModuleType, kong: Any) -> None:
    auth = {"authorization": "Basic c3VwYWJhc2U6ZGFzaC1wdw=="}  # supabase:dash-pw
    response = kong.handle(request(standin, "/project/default", auth))
    assert response.status == 200
    assert "authorization" not in json.loads(response.body)["headers"]


def test_no_route(standin: ModuleType) -> None:
    kong = standin.Kong({"_format_version": "2.1", "services": []})
    response = kong.handle(request(standin, "/anything"))
    assert response.status == 404
    assert json.loads(response.body) == {"message": "no Route matched with those values"}


@pytest.mark.parametrize(
    "expression",
    ['http.path = "/x"', 'tls.sni == "x"', 'http.path == "/x" &&', '(http.path == "/x"'],
)
def test_bad_expressions_are_refused(standin: ModuleType, expression: str) -> None:
    with pytest.raises(standin.YamlError):
        standin.compile_expression(expression)


# STANDIN_UNHEALTHY: each service's health path answers 503, any other path is served as before.
HEALTH_PROBES = {
    "auth": "/health",
    "rest": "/ready",
    "realtime": "/api/tenants/realtime-dev/health",
    "storage": "/status",
    "imgproxy": "/health",
    "functions": "/_internal/health",
    "studio": "/api/platform/profile",
    "analytics": "/health",
    "vector": "/health",
    "supavisor": "/api/health",
}


@pytest.fixture
def served(standin: ModuleType) -> Any:
    """What the service itself answers, to tell a passed-through request from a switched one."""
    return standin.json_response(200, {"served": True})


@pytest.mark.parametrize(("service", "path"), sorted(HEALTH_PROBES.items()))
def test_unhealthy_switch_fails_health_paths_only(
    standin: ModuleType, served: Any, service: str, path: str
) -> None:
    app = standin.health_switch(lambda req: served, service, True)
    response = app(request(standin, path))
    assert response.status == 503
    assert json.loads(response.body)["message"] == "stand-in: unhealthy on purpose (STANDIN_UNHEALTHY)"
    assert app(request(standin, "/some/other/path")) is served
    assert standin.health_switch(lambda req: served, service, False)(request(standin, path)) is served


def test_unhealthy_when_another_variable_holds_the_crafted_text(standin: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STANDIN_UNHEALTHY", raising=False)
    switch = {"STANDIN_UNHEALTHY_WHEN_ENV_HOLDS": "rotation-fails-here"}
    url = "postgres://supabase_auth_admin:{}@db:5432/postgres"
    assert standin.told_unhealthy({**switch, "GOTRUE_DB_DATABASE_URL": url.format("rotation-fails-here")})
    # The switch's own value does not count, nor does another value.
    assert not standin.told_unhealthy({**switch, "GOTRUE_DB_DATABASE_URL": url.format("0123abcd")})
    assert not standin.told_unhealthy({"GOTRUE_DB_DATABASE_URL": url.format("rotation-fails-here")})
    # Several texts, one per test that needs a switch; an empty one never matches everything.
    either = {"STANDIN_UNHEALTHY_WHEN_ENV_HOLDS": "rotation-fails-here|upgrade-fails-here"}
    assert standin.told_unhealthy({**either, "GOTRUE_SMTP_SENDER_NAME": "upgrade-fails-here"})
    assert not standin.told_unhealthy({**either, "GOTRUE_SMTP_SENDER_NAME": "ops"})
    assert not standin.told_unhealthy({"STANDIN_UNHEALTHY_WHEN_ENV_HOLDS": "|", "GOTRUE_SMTP_SENDER_NAME": "ops"})
    monkeypatch.setenv("STANDIN_UNHEALTHY", "true")
    assert standin.told_unhealthy({})


def test_every_service_with_a_health_path_is_probed(standin: ModuleType) -> None:
    # kong's check is the `kong health` command (bin/kong), not a path.
    assert set(standin.HEALTH_PATHS) == set(standin.SERVICES) - {"kong"} == set(HEALTH_PROBES)


def test_realtime_healthcheck_path_and_other_tenants(standin: ModuleType, served: Any) -> None:
    app = standin.health_switch(lambda req: served, "realtime", True)
    assert app(request(standin, "/healthcheck")).status == 503
    assert app(request(standin, "/api/tenants/other/health")).status == 503
    assert app(request(standin, "/api/tenants/realtime-dev/health/x")) is served


# STANDIN_STORAGE_MIGRATION, against a fake DB-API connection.


class _NotYet(Exception):
    pass


class _Cursor:
    def __init__(self, conn: _Conn) -> None:
        self.conn = conn

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, params: tuple[Any, ...] | None = None) -> None:
        if self.conn.fail_sql:
            raise RuntimeError("permission denied for schema storage")
        self.conn.calls.append((sql, params))


class _Conn:
    def __init__(self, fail_sql: bool = False) -> None:
        self.fail_sql = fail_sql
        self.calls: list[tuple[str, tuple[Any, ...] | None]] = []
        self.events: list[str] = []

    def cursor(self) -> _Cursor:
        return _Cursor(self)

    def commit(self) -> None:
        self.events.append("commit")

    def rollback(self) -> None:
        self.events.append("rollback")

    def close(self) -> None:
        self.events.append("close")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _connect_after(failures: int, conn: _Conn) -> Any:
    attempts = [0]

    def connect() -> _Conn:
        attempts[0] += 1
        if attempts[0] <= failures:
            raise _NotYet("the database system is starting up")
        return conn

    return connect


def test_storage_migration_runs_fixed_sql_with_bound_name(standin: ModuleType) -> None:
    conn, clock = _Conn(), _Clock()
    name = "v0.8.1'); DROP TABLE x; --"
    standin.apply_storage_migration(name, _connect_after(3, conn), (_NotYet,), sleep=clock.sleep, clock=clock)
    assert conn.calls == [
        (
            "CREATE TABLE IF NOT EXISTS storage.standin_migrations "
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            None,
        ),
        ("INSERT INTO storage.standin_migrations (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,)),
    ]
    assert conn.events == ["commit", "close"]
    assert clock.now == 3.0


def test_storage_migration_gives_up_after_the_wait(standin: ModuleType) -> None:
    conn, clock = _Conn(), _Clock()
    with pytest.raises(_NotYet):
        standin.apply_storage_migration(
            "m", _connect_after(1000, conn), (_NotYet,), wait=60.0, sleep=clock.sleep, clock=clock
        )
    assert clock.now == 60.0
    assert conn.calls == []


def test_storage_migration_sql_error_rolls_back_without_retry(standin: ModuleType) -> None:
    conn, clock = _Conn(fail_sql=True), _Clock()
    with pytest.raises(RuntimeError):
        standin.apply_storage_migration(
            "m", _connect_after(0, conn), (_NotYet,), sleep=clock.sleep, clock=clock
        )
    assert conn.events == ["rollback", "close"]
    assert clock.now == 0.0


# WebSocket upgrades: the realtime stand-in accepts a Realtime client's handshake, the kong stand-in
# relays it (the upgrade health gate's path), both served for real on loopback ports.

JWT_SECRET = "realtime-test-secret-with-at-least-32-chars"
RFC_KEY, RFC_ACCEPT = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455, 1.3


def _jwt(claims: dict[str, Any], secret: str) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signed = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signed}.{b64(hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest())}"


ANON_JWT = _jwt({"role": "anon", "iss": "supabase"}, JWT_SECRET)


@contextlib.contextmanager
def _serving(standin: ModuleType, app: Any) -> Iterator[int]:
    server = standin.StandInServer(0, app, standin.plain_access_log)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def realtime_port(standin: ModuleType) -> Iterator[int]:
    with _serving(standin, standin.realtime_app("realtime-dev", JWT_SECRET)) as port:
        yield port


@pytest.fixture(scope="module")
def gateway_port(standin: ModuleType, realtime_port: int) -> Iterator[int]:
    # The realtime websocket route as roles/supabase_stack/templates/kong.yml.j2 renders it.
    config = {
        "consumers": [{"username": "anon", "keyauth_credentials": [{"key": ANON_JWT}, {"key": "not-a-jwt"}]}],
        "acls": [{"consumer": "anon", "group": "anon"}],
        "services": [
            {
                "name": "realtime-v1-ws",
                "url": f"http://127.0.0.1:{realtime_port}/socket",
                "protocol": "ws",
                "routes": [{"name": "realtime-v1-ws", "strip_path": True, "paths": ["/realtime/v1/"]}],
                "plugins": [
                    {"name": "cors"},
                    {"name": "key-auth", "config": {"hide_credentials": False}},
                    {"name": "acl", "config": {"hide_groups_header": True, "allow": ["admin", "anon"]}},
                ],
            }
        ],
    }
    with _serving(standin, standin.Kong(config).handle) as port:
        yield port


def _handshake(port: int, path: str, key: str = RFC_KEY) -> tuple[socket.socket, int, dict[str, str]]:
    """Sends a Realtime client's opening handshake; the socket, the status and the answer's headers."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    head = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    )
    sock.sendall(head.encode())
    answer = b""
    while not answer.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)  # one at a time, so that no frame after the head is swallowed
        assert byte, f"closed during the handshake: {answer!r}"
        answer += byte
    status_line, *lines = answer.decode().split("\r\n")[:-2]
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    # A refusal's body is read too: closing with unread bytes would reset the connection.
    if int(headers.get("content-length", "0")):
        sock.recv(int(headers["content-length"]), socket.MSG_WAITALL)
    return sock, int(status_line.split()[1]), headers


def _client_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)  # a client must mask its frames
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def _server_frame(sock: socket.socket) -> tuple[int, bytes]:
    first, length = sock.recv(2, socket.MSG_WAITALL)
    return first & 0x0F, sock.recv(length, socket.MSG_WAITALL) if length else b""


def _ping_and_close(sock: socket.socket) -> None:
    """Bytes after the handshake reach the stand-in and its answers come back; then the close."""
    sock.sendall(_client_frame(0x9, b"are you there"))
    assert _server_frame(sock) == (0xA, b"are you there")
    sock.sendall(_client_frame(0x8, b"\x03\xe8bye"))
    assert _server_frame(sock) == (0x8, b"\x03\xe8")
    assert sock.recv(1) == b""  # and the connection ends
    sock.close()


def test_realtime_accepts_websocket_handshake(realtime_port: int) -> None:
    sock, status, headers = _handshake(realtime_port, f"/socket/websocket?vsn=1.0.0&apikey={ANON_JWT}")
    assert status == 101
    assert headers["sec-websocket-accept"] == RFC_ACCEPT
    assert headers["upgrade"] == "websocket"
    assert "content-length" not in headers
    _ping_and_close(sock)


def test_realtime_closes_an_idle_websocket(
    standin: ModuleType, realtime_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(standin, "WS_IDLE", 0.2)
    sock, status, _ = _handshake(realtime_port, f"/socket/websocket?apikey={ANON_JWT}")
    assert status == 101
    assert sock.recv(1) == b""
    sock.close()


def _ws_request(standin: ModuleType, query: dict[str, list[str]], **headers: str) -> Any:
    base = {
        "connection": "keep-alive, Upgrade",
        "upgrade": "websocket",
        "sec-websocket-version": "13",
        "sec-websocket-key": RFC_KEY,
    }
    base.update({name.replace("_", "-"): value for name, value in headers.items()})
    return standin.Request("GET", "/socket/websocket", "/socket/websocket", query, base, b"", "10.0.0.9")


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ({}, {}, 403),
        ({"apikey": [_jwt({"role": "anon"}, "another-secret")]}, {}, 403),
        ({"apikey": ["not-a-jwt"]}, {}, 403),
        ({}, {"x_api_key": ANON_JWT}, 101),
        ({"apikey": [ANON_JWT]}, {"upgrade": "", "connection": ""}, 400),
        ({"apikey": [ANON_JWT]}, {"sec_websocket_version": "8"}, 426),
        ({"apikey": [ANON_JWT]}, {"sec_websocket_key": "c2hvcnQ="}, 400),
    ],
)
def test_realtime_websocket_refusals(
    standin: ModuleType, query: dict[str, list[str]], headers: dict[str, str], status: int
) -> None:
    response = standin.realtime_app("realtime-dev", JWT_SECRET)(_ws_request(standin, query, **headers))
    assert response.status == status
    assert (response.takeover is not None) == (status == 101)


def test_kong_relays_websocket_to_realtime(gateway_port: int) -> None:
    sock, status, headers = _handshake(gateway_port, f"/realtime/v1/websocket?vsn=1.0.0&apikey={ANON_JWT}")
    assert status == 101
    assert headers["sec-websocket-accept"] == RFC_ACCEPT
    assert headers["x-sfp-stand-in"] == "kong"
    _ping_and_close(sock)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 401),  # kong's key-auth: no API key
        ("&apikey=unknown", 401),  # kong's key-auth: not a consumer's key
        ("&apikey=not-a-jwt", 403),  # kong lets it through, realtime refuses it: passed back as is
    ],
)
def test_kong_refuses_websocket_without_valid_key(gateway_port: int, query: str, status: int) -> None:
    sock, got, headers = _handshake(gateway_port, f"/realtime/v1/websocket?vsn=1.0.0{query}")
    sock.close()
    assert got == status
    assert "sec-websocket-accept" not in headers


# The stand-in image's `node` answers upstream Studio's health-check one-liner with curl (bin/node);
# the template's command must stay the one it recognises, or every probe would start Node.js again.
NODE_SHIM = Path(__file__).parent / "standin" / "bin" / "node"
COMPOSE_TEMPLATE = Path(__file__).parents[2] / "roles" / "supabase_stack" / "templates" / "compose.yaml.j2"


def _studio_check_expression() -> str:
    for line in COMPOSE_TEMPLATE.read_text().splitlines():
        if "node -e" in line and "fetch(" in line:
            command = json.loads(line.split("test:", 1)[1])[1]
            return command.split("node -e ", 1)[1].strip('"').replace('\\"', '"')
    raise AssertionError("Studio's node health check is gone from compose.yaml.j2")


def test_node_shim_keeps_studios_rule_healthy_on_200_only() -> None:
    server = LoopbackHTTP()
    try:
        expression = _studio_check_expression().replace("http://localhost:3000", server.url(""))
        assert expression != _studio_check_expression()
        for status, rc in ((200, 0), (503, 1), (302, 1)):
            server.routes["/api/platform/profile"] = Route(status, b"", "text/plain")
            done = subprocess.run(["sh", str(NODE_SHIM), "-e", expression], capture_output=True, text=True, timeout=30)
            assert done.returncode == rc, (status, done.stderr)
    finally:
        server.close()
    # Nobody listening: unhealthy, as Node's rejected fetch would be.
    closed = expression.replace(f":{server.port}/", f":{free_closed_port()}/")
    assert subprocess.run(["sh", str(NODE_SHIM), "-e", closed], capture_output=True, timeout=30).returncode == 1


def test_node_shim_runs_the_real_node_for_anything_else() -> None:
    done = subprocess.run(["sh", str(NODE_SHIM), "-e", "console.log(6 * 7)"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "42")


def test_sessions_are_signed_by_the_one_signing_key_and_verified_by_kid(standin: ModuleType) -> None:
    from installer import secrets as gen

    values, _ = gen.complete({})
    token = standin.issue_session(values["JWT_KEYS"], "u1", "u1@example.test", 60)
    assert jwt_header(token)["kid"] == gen.signing_jwk(values)["kid"]
    assert standin.verify_session(token, values["JWT_JWKS"])["email"] == "u1@example.test"
    # The legacy HS256 keys verify with the symmetric entry of the set, and with the plain secret.
    assert standin.verify_session(values["SERVICE_ROLE_KEY"], values["JWT_JWKS"])["role"] == "service_role"
    assert standin.verify_session(values["ANON_KEY"], values["JWT_SECRET"])["role"] == "anon"
    assert standin.verify_session(values["ANON_KEY_ASYMMETRIC"], values["JWT_JWKS"])["role"] == "anon"

    switched = gen.with_signing_key_switched(gen.with_signing_key_published(values))
    after = standin.issue_session(switched["JWT_KEYS"], "u1", "u1@example.test", 60)
    assert jwt_header(after)["kid"] == gen.signing_jwk(switched)["kid"] != jwt_header(token)["kid"]
    assert standin.verify_session(token, switched["JWT_JWKS"]) is not None  # the grace period
    assert standin.verify_session(token, gen.without_verify_only_keys(switched)["JWT_JWKS"]) is None
    assert standin.verify_session(after, values["JWT_JWKS"]) is None  # a verifier that was not given the new key

    other, _ = gen.complete({})
    expired = standin.issue_session(values["JWT_KEYS"], "u1", "u1@example.test", -10)
    for bad in (standin.issue_session(other["JWT_KEYS"], "u", "u@x", 60), expired, "not.a.jwt", "", other["ANON_KEY"]):
        assert standin.verify_session(bad, values["JWT_JWKS"]) is None, bad
    with pytest.raises(ValueError, match="exactly one key"):
        standin.issue_session(json.dumps(gen.ec_jwks(gen.with_signing_key_published(values))[:1] * 2), "u", "u@x", 60)


def test_without_a_key_set_sessions_are_hs256_with_the_secret(standin: ModuleType) -> None:
    from installer import secrets as gen

    values, _ = gen.complete({})
    token = standin.issue_session("", "u1", "u1@example.test", 60, values["JWT_SECRET"])
    assert jwt_header(token) == {"alg": "HS256", "typ": "JWT"}
    # REST verifies it whether it has the plain secret (the default) or the key set (the opt-in).
    assert standin.verify_session(token, values["JWT_SECRET"])["email"] == "u1@example.test"
    assert standin.verify_session(token, values["JWT_JWKS"])["email"] == "u1@example.test"
    assert standin.verify_session(token, gen.complete({})[0]["JWT_SECRET"]) is None
    with pytest.raises(ValueError, match="neither"):
        standin.issue_session("", "u1", "u1@example.test", 60, "")


def jwt_header(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
