"""The Kong stand-in's config reading and gateway rules, in-process (no Docker needed)."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

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
