"""roles/supabase_upgrade's sfp_gateway_probe against a real HTTP server on loopback, through
`ansible` (the module as a playbook runs it): answered checks pass, a websocket handshake needs
101, a wrong answer is retried until the timeout and then named with what came back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

LIBRARY = Path(__file__).resolve().parents[2] / "roles" / "supabase_upgrade" / "library"
KEY = "probe-key-not-a-secret"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("apikey") != KEY:
            self.send_response(401)
        elif self.path.startswith("/ws"):
            upgrade = self.headers.get("Upgrade", "").lower() == "websocket" and self.headers.get("Sec-WebSocket-Key")
            self.send_response(101 if upgrade and f"apikey={KEY}" in self.path else 400)
            if upgrade:
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
        else:
            self.send_response({"/ok": 200, "/down": 503}.get(self.path, 404))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def probe(url: str, checks: list[dict[str, Any]], key: str = KEY, timeout: int = 2) -> dict[str, Any]:
    args = json.dumps({"url": url, "api_key": key, "checks": checks, "timeout": timeout})
    done = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "sfp_gateway_probe", "-a", args,
                           "-e", f"ansible_python_interpreter={sys.executable}"],
                          capture_output=True, text=True, check=False, timeout=120,
                          env={**os.environ, "ANSIBLE_LIBRARY": str(LIBRARY), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
                               "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_LOCALHOST_WARNING": "0"})
    assert done.returncode in (0, 2), done.stderr
    result: dict[str, Any] = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert KEY not in done.stdout or key != KEY  # the key is no_log: never in the module's output
    return result


def test_answered_checks_pass_and_a_wrong_answer_is_named(server: str) -> None:
    out = probe(server, [{"name": "auth", "path": "/ok", "expect": [200]},
                         {"name": "realtime", "path": "/ws?vsn=1.0.0", "websocket": True, "expect": [101]},
                         {"name": "storage", "path": "/down", "expect": [200]}])
    assert [(r["name"], r["ok"], r["status"]) for r in out["results"]] == [
        ("auth", True, 200), ("realtime", True, 101), ("storage", False, 503)]
    assert [r["name"] for r in out["failed_checks"]] == ["storage"]
    assert out["failed_checks"][0]["detail"] == "storage: /down answered HTTP 503, expected 200"
    assert out["failed_checks"][0]["seconds"] >= 2  # retried until the timeout
    assert not out.get("failed") and not out.get("changed")


def test_a_wrong_key_and_no_server_are_failures_not_errors(server: str) -> None:
    out = probe(server, [{"name": "auth", "path": "/ok", "expect": [200]}], key="wrong", timeout=0)
    assert out["failed_checks"][0]["status"] == 401
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    out = probe(f"http://127.0.0.1:{closed}", [{"name": "auth", "path": "/ok"}], timeout=0)
    assert out["failed_checks"][0]["status"] == 0 and "ConnectionRefusedError" in out["failed_checks"][0]["detail"]


def test_a_url_that_is_not_http_is_refused(server: str) -> None:
    out = probe("ftp://127.0.0.1:21", [{"name": "auth", "path": "/ok"}])
    assert out.get("failed") and "is not http(s)://host[:port]" in out["msg"]
