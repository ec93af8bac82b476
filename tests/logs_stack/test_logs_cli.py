"""`sfp-server logs` and `sfp-server logs export` through the CLI (a subprocess, like an operator),
on two orgs installed by the toolkit: isolation between orgs, filters, follow, masking, the event
schema, export to a file and to S3 with retention, and the errors an operator can act on.

One deployment for the session; the requests whose log lines the window tests read are made once,
by the `window` fixture, for whichever of those tests runs first: the tests pass in any order.
"""

from __future__ import annotations

import io
import json
import queue
import re
import secrets as pysecrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
import pytest
import requests
import zstandard

from installer.actions import logs as logs_action
from installer.context import resolve
from installer.inventory import Inventory
from installer.logs import SCHEMA_PATH, read_archive
from tests.conftest import write_yaml
from tests.logs_stack.conftest import BUCKET, PREFIX, LogsDeployment, logs_view
from tests.stack.conftest import free_ports
from tests.stack_shared import SharedDeployment

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads(SCHEMA_PATH.read_text())
MARK = "mk" + pysecrets.token_hex(4)  # the window's requests; nothing else logs it
FOLLOW_MARK = "fl" + pysecrets.token_hex(4)


def cli(inv: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def json_lines(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    for ev in events:
        jsonschema.validate(ev, SCHEMA)
    return events


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hit(d: LogsDeployment, n: int, *, apikey_in_path: bool = False) -> None:
    """A request through orga's gateway to the Auth stand-in: the gateway logs the request line
    (with its query), Auth a GoTrue-style JSON line."""
    anon = d.secrets("orga")["ANON_KEY"]
    query = f"probe={MARK}-{n}" + (f"&apikey={anon}" if apikey_in_path else "")
    r = requests.get(f"{d.api_url('orga')}/auth/v1/health?{query}", headers={"apikey": anon}, timeout=10)
    assert r.status_code == 200, r.text


def wait_for(d: LogsDeployment, pattern: str, count: int = 1, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = json_lines(cli(d.inv_path, "logs", "--org", "orga", "--service", "kong", "--json", "--grep", pattern))
        if len(got) >= count:
            return
        assert time.monotonic() < deadline, f"{pattern!r} was not logged {count} times"
        time.sleep(0.3)


def test_json_shows_only_the_orgs_own_services(log_orgs: LogsDeployment) -> None:
    a = json_lines(cli(log_orgs.inv_path, "logs", "--org", "orga", "--json"))
    proc_b = cli(log_orgs.inv_path, "logs", "--org", "orgb", "--json")
    b = json_lines(proc_b)
    assert a and b
    assert {e["org"] for e in a} == {"orga"} and {e["org"] for e in b} == {"orgb"}
    assert all(e["container"] == f"sfp-orga-{e['service']}" for e in a)
    assert all(e["container"] == f"sfp-orgb-{e['service']}" for e in b)
    assert {e["service"] for e in a} >= {"db", "kong", "auth"}
    raw = cli(log_orgs.inv_path, "logs", "--org", "orga", "--json").stdout
    assert "orgb" not in raw and "sfp-orgb" not in raw
    # the org's own secrets (the vault's values) never print
    for name in ("POSTGRES_PASSWORD", "JWT_SECRET", "DASHBOARD_PASSWORD", "SECRET_KEY_BASE"):
        assert log_orgs.secrets("orga")[name] not in raw, name
    # the terminal form has the same lines, one `time service level message` each
    text = cli(log_orgs.inv_path, "logs", "--org", "orga").stdout.splitlines()
    heads = [line for line in text if re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \S+ +(debug|info|warn|error|fatal) ", line)]
    assert len(heads) >= len(a)  # continuation lines of multi-line entries come without a head


def test_wrong_database_password_is_found_as_an_error(log_orgs: LogsDeployment) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=log_orgs.ports["orga"]["postgres"], user="postgres",
                        password="definitely-wrong-" + MARK, dbname="postgres", connect_timeout=10)
    deadline = time.monotonic() + 20
    while True:
        events = json_lines(cli(log_orgs.inv_path, "logs", "--org", "orga", "--service", "db", "--level", "error", "--json"))
        found = [e for e in events if "password authentication failed" in e["message"]]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert found, events
    assert all(e["service"] == "db" and e["level"] in ("error", "fatal") for e in events)
    assert "definitely-wrong" not in json.dumps(events)
    # orgb's database saw nothing of it
    b = json_lines(cli(log_orgs.inv_path, "logs", "--org", "orgb", "--service", "db", "--level", "error", "--json"))
    assert not [e for e in b if "password authentication failed" in e["message"]]


# The window of each shared deployment (keyed by its base dir): made once, read by several tests.
_WINDOWS: dict[str, dict[str, str]] = {}


@pytest.fixture
def window(shared_orgs: SharedDeployment) -> dict[str, str]:
    """Five requests through orga's gateway, MARK-0 .. MARK-4, and the times between them:
    start | 0 | t1 | 1 2 | t2 | 3 4 (its API key in the query) | end. Made once per deployment."""
    key = str(shared_orgs.base_dir)
    if key not in _WINDOWS:
        _WINDOWS[key] = make_window(logs_view(shared_orgs))
    return _WINDOWS[key]


def make_window(log_orgs: LogsDeployment) -> dict[str, str]:
    times = {"start": now_iso()}
    hit(log_orgs, 0)
    time.sleep(1.0)
    times["t1"] = now_iso()
    hit(log_orgs, 1)
    hit(log_orgs, 2)
    time.sleep(1.0)
    times["t2"] = now_iso()
    hit(log_orgs, 3)
    hit(log_orgs, 4, apikey_in_path=True)
    wait_for(log_orgs, MARK, 5)
    time.sleep(1.0)
    times["end"] = now_iso()
    return times


def test_since_until_grep_tail_select_the_right_lines(log_orgs: LogsDeployment, window: dict[str, str]) -> None:
    inv = log_orgs.inv_path
    between = json_lines(cli(inv, "logs", "--org", "orga", "--since", window["t1"], "--until", window["t2"],
                             "--grep", MARK, "--json"))
    assert [e["service"] for e in between] == ["kong", "kong"]
    assert [f"{MARK}-1" in e["message"] for e in between] == [True, False]
    assert f"{MARK}-2" in between[1]["message"]

    tail = json_lines(cli(inv, "logs", "--org", "orga", "--grep", f"{MARK}-[0-9]", "--tail", "2", "--json"))
    assert [f"{MARK}-3" in tail[0]["message"], f"{MARK}-4" in tail[1]["message"]] == [True, True]
    since = json_lines(cli(inv, "logs", "--org", "orga", "--service", "kong", "--since", window["t2"], "--grep", MARK, "--json"))
    assert len(since) == 2
    # ISO times and durations: everything of the last 10 minutes has the five
    assert len(json_lines(cli(inv, "logs", "--org", "orga", "--since", "10m", "--grep", MARK, "--json"))) == 5

    # Auth's GoTrue-style JSON lines, parsed into message + fields
    auth = json_lines(cli(inv, "logs", "--org", "orga", "--service", "auth", "--since", window["start"],
                          "--until", window["end"], "--grep", "^request completed$", "--json"))
    through_gateway = [e for e in auth if e["fields"].get("path") == "/health" and e["fields"].get("method") == "GET"]
    assert len(through_gateway) >= 5, auth
    assert all(e["level"] == "info" and e["fields"].get("status") == 200 for e in through_gateway)


def test_jwt_in_a_logged_path_is_masked(log_orgs: LogsDeployment, window: dict[str, str]) -> None:
    anon = log_orgs.secrets("orga")["ANON_KEY"]
    inv = log_orgs.inv_path
    for fmt in ((), ("--json",)):
        proc = cli(inv, "logs", "--org", "orga", "--grep", f"{MARK}-4", *fmt)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == 1, proc.stdout
        assert anon not in proc.stdout and anon.split(".")[0] + "." not in proc.stdout
        assert "apikey=***" in proc.stdout
    raw = subprocess.run(["docker", "logs", "sfp-orga-kong"], capture_output=True, text=True, check=True).stdout
    assert anon in raw  # the gateway did log it: it is the masking that hides it


def test_follow_prints_new_lines_and_exits_0_on_sigint(log_orgs: LogsDeployment) -> None:
    marker = FOLLOW_MARK  # not MARK: the window tests count MARK's lines, whenever this test runs
    proc = subprocess.Popen([sys.executable, "-m", "installer.cli", "-i", str(log_orgs.inv_path), "logs", "--org", "orga",
                             "--service", "kong", "--follow", "--grep", marker, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        time.sleep(3)  # past the history read, following
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        anon = log_orgs.secrets("orga")["ANON_KEY"]
        deadline = time.monotonic() + 30
        got = None
        while got is None and time.monotonic() < deadline:
            requests.get(f"{log_orgs.api_url('orga')}/auth/v1/health?probe={marker}", headers={"apikey": anon}, timeout=10)
            try:
                got = json.loads(lines.get(timeout=3))
            except queue.Empty:
                continue
        assert got is not None, "the line written after --follow started was not printed"
        jsonschema.validate(got, SCHEMA)
        assert marker in got["message"] and got["org"] == "orga" and got["service"] == "kong"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def manifest_counts(events: list[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(e["service"] for e in events).items()))


def test_export_to_file_then_s3_with_retention(log_orgs: LogsDeployment, window: dict[str, str], tmp_path: Path) -> None:
    inv = log_orgs.inv_path
    anon = log_orgs.secrets("orga")["ANON_KEY"]
    span = ("--since", window["start"], "--until", window["end"])
    expected = json_lines(cli(inv, "logs", "--org", "orga", *span, "--json"))
    assert any(f"{MARK}-4" in e["message"] for e in expected)

    proc = cli(inv, "logs", "export", "--org", "orga", *span, "--to", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    manifests = list(tmp_path.glob("*.manifest.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert manifest["org"] == "orga" and manifest["total"] == len(expected)
    assert manifest["counts"] == manifest_counts(expected)
    archive = Path(str(manifests[0])[: -len(".manifest.json")])
    data = archive.read_bytes()
    text = zstandard.ZstdDecompressor().decompressobj().decompress(data).decode()
    assert anon not in text and "orgb" not in text
    for line in text.splitlines():
        jsonschema.validate(json.loads(line), SCHEMA)
    assert [e.to_dict() for e in read_archive(io.BytesIO(data))] == expected
    assert f"exported {len(expected)} events" in proc.stdout

    # To S3 (orga's logs.export store, keys from its vault): twice, so that keep_last: 1 removes one.
    first = cli(inv, "logs", "export", "--org", "orga", "--since", window["start"], "--until", window["t2"])
    assert first.returncode == 0, first.stderr
    assert "nothing to remove" in first.stdout
    time.sleep(1.1)  # manifests record their creation to the second: keep the two apart
    second = cli(inv, "logs", "export", "--org", "orga", *span, "--to", f"s3://{BUCKET}/{PREFIX}")
    assert second.returncode == 0, second.stderr
    assert "removed 1 older export" in second.stdout and "removed   s3://" in second.stdout
    client = log_orgs.s3.client()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX + "/").get("Contents", []))
    assert len(keys) == 2 and keys[1] == keys[0] + ".manifest.json", keys
    s3_manifest = json.loads(client.get_object(Bucket=BUCKET, Key=keys[1])["Body"].read())
    assert s3_manifest["counts"] == manifest["counts"] and s3_manifest["total"] == manifest["total"]
    assert s3_manifest["sha256"] == manifest["sha256"]  # same window, same events, same bytes


def test_errors_are_clear_and_non_zero(log_orgs: LogsDeployment, tmp_path: Path) -> None:
    inv = log_orgs.inv_path
    cases = [
        (("logs", "--org", "nosuch"), "unknown org 'nosuch'"),
        (("logs", "--org", "orga", "--service", "bogus"), "unknown service: bogus"),
        (("logs", "--org", "orga", "--service", "analytics"), "has no analytics container"),
        (("logs", "--org", "orga", "--since", "yesterday-ish"), "cannot read the time"),
        (("logs", "export", "--org", "orgb", "--since", "1h", "--until", "0s"), "has no export store"),
    ]
    for args, message in cases:
        proc = cli(inv, *args)
        assert proc.returncode != 0, (args, proc.stdout)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr

    # An org on a machine nobody answers on: a closed port on another loopback address.
    key = tmp_path / "id_test"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = free_ports(1)[0]
    remote = tmp_path / "inv"
    write_yaml(remote / "hosts.yml", {"all": {"children": {"sfp_orgs": {"children": {"machine_far": {
        "vars": {"sfp_machine": "far", "ansible_host": "127.0.0.2", "ansible_user": "root", "ansible_port": port,
                 "ansible_ssh_private_key_file": str(key)},
        "hosts": {"logr": None}}}}}}})
    write_yaml(remote / "host_vars" / "logr" / "main.yml", {"sfp_org": {"release": "v0.8.1", "public_url": "http://127.0.0.2"}})
    (remote / ".vault-pass").write_text("unused\n")
    proc = cli(remote, "logs", "--org", "logr", timeout=60)
    assert proc.returncode != 0 and "cannot reach ssh://root@127.0.0.2:" in proc.stderr, proc.stderr


def test_endpoint_comes_from_the_inventory_host(log_orgs: LogsDeployment, tmp_path: Path) -> None:
    inv = Inventory(log_orgs.inv_path, log_orgs.inv_path / ".vault-pass")
    assert not logs_action.endpoint_for(inv.org("orga")).is_remote
    key = tmp_path / "key"
    key.write_text("x")
    known = tmp_path / "known_hosts"
    org = inv.org("orga")
    org.hostvars = {"ansible_host": "db1.example.test", "ansible_user": "ops", "ansible_port": 2222,
                    "ansible_ssh_private_key_file": str(key),
                    "ansible_ssh_common_args": f"-o UserKnownHostsFile={known}"}
    ep = logs_action.endpoint_for(org)
    assert ep.url == "ssh://ops@db1.example.test:2222" and ep.identity_file == str(key)
    assert ep.known_hosts_file == str(known) and ep.strict_host_key_checking
    org.hostvars = {"ansible_host": "db1.example.test", "ansible_host_key_checking": False}
    ep = logs_action.endpoint_for(org)
    assert ep.url == "ssh://db1.example.test" and not ep.strict_host_key_checking and ep.known_hosts_file is None
    org.hostvars = {"ansible_host": "127.0.0.1", "ansible_user": "ops"}
    assert not logs_action.endpoint_for(org).is_remote
    # the masker gets the org's secrets, not the values that are ordinary words or numbers
    values = logs_action.secret_values(resolve(inv, "orga"))
    sec = log_orgs.secrets("orga")
    assert sec["POSTGRES_PASSWORD"] in values and sec["ANON_KEY"] in values
    assert sec["DASHBOARD_USERNAME"] not in values and sec["API_KEYS_ISSUED_AT"] not in values
