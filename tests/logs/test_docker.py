"""`logs` against the real local Docker engine: two orgs started by the session fixture (conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from sfp_logs_stack import SECRET_A, Stack, docker, raw_logs, run_standin, wait_for_log

from installer.context import write_secrets
from installer.errors import SfpError
from installer.inventory import Inventory
from installer.logs import SCHEMA_PATH, DockerEndpoint, LogQuery, read_events
from installer.logs.event import LEVEL_RANK

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads(SCHEMA_PATH.read_text())


@pytest.fixture
def inv(stack: Stack, make_inventory: Callable[..., Path]) -> Path:
    """An inventory naming the two orgs (this machine), org A's vault holding the secret its auth prints."""
    path = make_inventory({stack.a.name: {}, stack.b.name: {}})
    write_secrets(Inventory(path, path / ".vault-pass"), stack.a.name, {"JWT_SECRET": SECRET_A})
    return path


def logs_argv(inv: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "installer.cli", "-i", str(inv), "logs", *args]


def cli(inv: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`sfp-server -i INV logs ARGS`."""
    return subprocess.run(logs_argv(inv, *args), capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
                          check=False)


def test_org_shows_its_containers_only(stack: Stack) -> None:
    a, b = stack.a, stack.b
    events = list(read_events(LogQuery(org=a.name)))
    assert {e.container for e in events} == set(a.containers.values())
    assert {e.org for e in events} == {a.name}
    assert {e.service for e in events} == {"db", "auth", "kong", "realtime"}
    assert not any(b.name in e.message for e in events)
    assert all(e.host == "local" for e in events)
    times = [e.time_ns for e in events]
    assert times == sorted(times), "merged output is in time order"
    b_events = list(read_events(LogQuery(org=b.name)))
    assert {e.container for e in b_events} == set(b.containers.values())
    assert not any(a.name in e.message for e in b_events)
    rest = [e for e in b_events if e.service == "rest" and "fields" and e.fields.get("status")]
    assert any(e.level == "warn" and e.message == "GET /todos?apikey=*** HTTP/1.1 404" for e in rest)
    assert any(e.level == "error" and e.fields["status"] == 503 for e in rest)


def test_unknown_org_service_and_missing_container_are_clear_errors(stack: Stack) -> None:
    with pytest.raises(SfpError) as exc:
        read_events(LogQuery(org="no-such-org-x1"))
    assert "no-such-org-x1" in exc.value.message and exc.value.hint and stack.a.name in exc.value.hint
    with pytest.raises(SfpError) as exc:
        read_events(LogQuery(org=stack.a.name, services=["bogus"]))
    assert "bogus" in exc.value.message and "auth" in (exc.value.hint or "")
    with pytest.raises(SfpError) as exc:
        read_events(LogQuery(org=stack.b.name, services=["db"]))  # a known service whose container is not there
    assert "no db container" in exc.value.message
    with pytest.raises(SfpError):
        read_events(LogQuery(org=stack.a.name, grep="("))
    with pytest.raises(SfpError):
        read_events(LogQuery(org=stack.a.name, level="loud"))


def test_wrong_password_is_found_as_fatal_db_event(stack: Stack) -> None:
    events = list(read_events(LogQuery(org=stack.a.name, level="error")))
    assert events and all(LEVEL_RANK[e.level] >= LEVEL_RANK["error"] for e in events)
    fatal = [e for e in events if "password authentication failed" in e.message]
    assert len(fatal) == 1
    ev = fatal[0]
    assert ev.service == "db" and ev.level == "fatal" and ev.fields["severity"] == "FATAL"
    assert ev.fields["user"] == "supabase_admin" and "pg_hba.conf" in ev.fields["detail"]
    stmt = [e for e in events if e.service == "db" and "no_such_table" in e.message]
    assert len(stmt) == 1 and stmt[0].level == "error"
    assert stmt[0].fields["statement"].splitlines()[-1].strip() == "from no_such_table"


def test_since_until_select_exactly_the_window(stack: Stack) -> None:
    name = stack.a.containers["auth"]
    raw = raw_logs(name)
    lo, hi = raw[6][0], raw[20][0]
    expected = [text for ts, text in raw if lo <= ts <= hi]
    assert len(expected) == 15
    got = list(read_events(LogQuery(org=stack.a.name, services=["auth"], since=lo, until=hi)))
    assert len(got) == len(expected)
    assert [e.fields.get("request_id") for e in got] == [json.loads(t).get("request_id") for t in expected]
    # and across services: every event of the window, none outside
    everything = list(read_events(LogQuery(org=stack.a.name)))
    inside = [e for e in everything if e.time_str[:29] >= lo[:29] and e.time_str[:29] <= hi[:29]]
    windowed = list(read_events(LogQuery(org=stack.a.name, since=lo, until=hi)))
    assert [e.to_dict() for e in windowed] == [e.to_dict() for e in inside]


def test_grep_level_and_tail(stack: Stack) -> None:
    a = stack.a.name
    got = list(read_events(LogQuery(org=a, services=["auth"], grep=r"auth line 1[0-9]$")))
    assert [e.message for e in got] == [f"{a} auth line {i}" for i in range(10, 20)]
    warns = list(read_events(LogQuery(org=a, services=["auth", "kong"], level="warn")))
    assert warns and {e.level for e in warns} <= {"warn", "error", "fatal"}
    all_events = list(read_events(LogQuery(org=a)))
    assert [e.to_dict() for e in read_events(LogQuery(org=a, tail=7))] == [e.to_dict() for e in all_events[-7:]]
    errors = [e for e in all_events if LEVEL_RANK[e.level] >= LEVEL_RANK["error"]]
    tail_err = list(read_events(LogQuery(org=a, tail=3, level="error")))
    assert [e.to_dict() for e in tail_err] == [e.to_dict() for e in errors[-3:]]
    assert list(read_events(LogQuery(org=a, tail=0))) == []
    kong_grep = list(read_events(LogQuery(org=a, services=["kong"], grep="id=eq.2[0-9]&", tail=4)))
    assert [e.fields["kong_request_id"] for e in kong_grep] == [f"{i:032x}" for i in range(26, 30)]


def test_binary_line_is_kept(stack: Stack) -> None:
    got = [e for e in read_events(LogQuery(org=stack.a.name, services=["auth"])) if "binary" in e.message]
    assert len(got) == 1 and got[0].level == "info" and "\ufffd" in got[0].message


def test_json_output_validates_and_is_masked(stack: Stack, inv: Path) -> None:
    proc = cli(inv, "--org", stack.a.name, "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) > 60
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    for line in lines:
        validator.validate(json.loads(line))
    assert SECRET_A not in proc.stdout and "eyJhbGciOiJIUzI1NiJ9" not in proc.stdout
    assert "apikey=key1value" not in proc.stdout and "apikey=***" in proc.stdout
    assert "uses ***" in proc.stdout
    term = cli(inv, "--org", stack.a.name)
    assert term.returncode == 0
    assert SECRET_A not in term.stdout and "eyJhbGciOiJIUzI1NiJ9" not in term.stdout
    assert "\x1b[" not in term.stdout  # not a terminal: no colour codes
    first = term.stdout.splitlines()[0].split()
    assert first[1] in {"db", "auth", "kong", "realtime"} and first[2] in {"debug", "info", "warn", "error", "fatal"}
    bad = cli(inv, "--org", "no-such-org-x2")  # not an org of the inventory: an invalid argument
    assert bad.returncode == 2 and "no-such-org-x2" in bad.stderr and "Traceback" not in bad.stderr


def test_follow_prints_new_lines_across_restart_and_recreate_and_stops_on_sigint(stack: Stack, inv: Path) -> None:
    org = stack.a
    name = run_standin(org, "storage", "storage", 3, GAP="0")
    try:
        wait_for_log(name, "storage line 2")
        proc = subprocess.Popen(logs_argv(inv, "--org", org.name, "--service", "storage", "--follow", "--tail", "2"), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, bufsize=1,
                                env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"})
        assert proc.stdout is not None and proc.stderr is not None
        lines: list[str] = []
        pump = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),  # type: ignore[union-attr]
                                daemon=True)
        pump.start()

        def seen() -> str:
            return "".join(lines)

        def wait_for(text: str, timeout: float = 30) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if text in seen():
                    return
                assert proc.poll() is None, f"follow ended early: {proc.stderr.read()}"  # type: ignore[union-attr]
                time.sleep(0.1)
            raise AssertionError(f"{text!r} not printed; got:\n{seen()}")

        try:
            wait_for("storage line 2")
            assert "storage line 0" not in seen()  # --tail 2
            docker("exec", name, "sh", "-c", "echo 'written after follow started' > /proc/1/fd/1")
            wait_for("written after follow started")
            docker("restart", "-t", "0", name)
            wait_for_log(name, "storage line 2")
            docker("exec", name, "sh", "-c", "echo 'after the restart' > /proc/1/fd/1")
            wait_for("after the restart")
            docker("rm", "-f", name)
            run_standin(org, "storage", "storage", 1, GAP="0")
            docker("exec", name, "sh", "-c", "echo 'in the new container' > /proc/1/fd/1")
            wait_for("in the new container")
            assert seen().count("written after follow started") == 1  # nothing repeated on re-attach
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        err = proc.stderr.read()
        assert rc == 0, err
        assert "Traceback" not in err
    finally:
        docker("rm", "-f", name, check=False)
        org.containers.pop("storage", None)


def test_endpoint_errors_for_local_engine() -> None:
    ep = DockerEndpoint(docker_binary="/nonexistent/docker-cli")
    with pytest.raises(SfpError) as exc:
        ep.check()
    assert "not installed" in exc.value.message
    with pytest.raises(SfpError):
        DockerEndpoint("tcp://1.2.3.4:2375")
