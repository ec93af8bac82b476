"""roles/frontdoor on this machine's Apache: two orgs on one host, each behind its own name.

The clients connect to 127.0.0.1 and speak the org's name (SNI, Host); the orgs' gateways are
tests/frontdoor/backend.py, which says what reached it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.frontdoor import client
from tests.frontdoor.backend import Backend
from tests.frontdoor.conftest import (
    APACHE_DIR,
    HTTP_PORT,
    HTTPS_PORT,
    ROLE_PATHS,
    Run,
    Runner,
    apache_pids,
    wait_for,
)
from tests.frontdoor.pki import Leaf, TestCA

A, B = "orga.sfp.test", "orgb.sfp.test"


def tree_digest(*roots: Path) -> dict[str, str]:
    """Every file (and link target) under the roots, with its content's digest and mode."""
    out: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in paths:
            if path.is_symlink():
                out[str(path)] = "-> " + os.readlink(path)
            elif path.is_file():
                out[str(path)] = f"{oct(path.stat().st_mode)} {hashlib.sha256(path.read_bytes()).hexdigest()}"
    return out


def served_serial(name: str) -> int:
    return client.peer_cert(name, HTTPS_PORT).serial_number


def provided(leaf: Leaf) -> dict[str, str]:
    return {"source": "provided", "cert": leaf.chain_pem, "key": leaf.key_pem}


def apache_rss() -> int:
    total = 0
    for pid in apache_pids():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]
    return total


def test_check_mode_on_a_fresh_host_reports_changes_and_changes_nothing(frontdoor_host, run_role: Runner, test_ca: TestCA) -> None:
    frontdoor_host()
    before = tree_digest(APACHE_DIR)
    done = run_role({"orga": {"frontdoor__hostname": A, "frontdoor__upstream": "http://127.0.0.1:9",
                              "frontdoor__certificate": provided(test_ca.issue(A))}}, "--check")
    assert done.rc == 0, done.stdout[-3000:]
    assert done.recap("orga")["changed"] > 0
    assert tree_digest(APACHE_DIR) == before
    assert not any(p.exists() for p in ROLE_PATHS)
    assert not apache_pids()


@dataclass
class TwoOrgs:
    a: Backend
    b: Backend
    leaf_a: Leaf
    leaf_b: Leaf
    first_run: str

    def org_vars(self) -> dict[str, dict[str, object]]:
        return {"orga": {"frontdoor__hostname": A, "frontdoor__upstream": self.a.url, "frontdoor__certificate": provided(self.leaf_a)},
                "orgb": {"frontdoor__hostname": B, "frontdoor__upstream": self.b.url, "frontdoor__certificate": provided(self.leaf_b)}}


@pytest.fixture(scope="module")
def two_orgs(frontdoor_host, run_role: Runner, test_ca: TestCA) -> Iterator[TwoOrgs]:
    """Two orgs installed in one play (forks: their shared steps run one at a time), packages included."""
    frontdoor_host()
    orgs = TwoOrgs(Backend("orga"), Backend("orgb"), test_ca.issue(A), test_ca.issue(B), "")
    done = run_role(orgs.org_vars(), "-v", install_packages=True)
    assert done.rc == 0, done.stdout[-5000:]
    orgs.first_run = done.stdout + done.stderr
    wait_for(lambda: served_serial(A) == orgs.leaf_a.serial and served_serial(B) == orgs.leaf_b.serial, what="both names served")
    yield orgs
    orgs.a.stop()
    orgs.b.stop()


def test_each_name_gets_its_own_certificate_from_the_test_ca(two_orgs: TwoOrgs, ca_file: Path) -> None:
    for name, leaf in ((A, two_orgs.leaf_a), (B, two_orgs.leaf_b)):
        with client.tls(name, HTTPS_PORT, ca_file) as sock:  # verifies the chain and the name
            der = sock.getpeercert(binary_form=True)
            assert der is not None
            assert x509.load_der_x509_certificate(der).serial_number == leaf.serial


def test_a_request_reaches_its_own_orgs_gateway_with_honest_forwarding_headers(two_orgs: TwoOrgs, ca_file: Path) -> None:
    spoof = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.example", "Forwarded": "for=6.6.6.6"}
    for name, org in ((A, "orga"), (B, "orgb")):
        got = client.request(name, HTTPS_PORT, "/rest/v1/items?select=*", ca=ca_file, headers=spoof)
        assert got.status == 200
        seen = got.json()
        assert seen["org"] == org and seen["path"] == "/rest/v1/items?select=*"
        assert seen["host"] == f"{name}:{HTTPS_PORT}"
        assert seen["x_forwarded_proto"] == "https"
        assert seen["x_forwarded_for"] == "127.0.0.1" and seen["x_real_ip"] == "127.0.0.1"
        assert seen["forwarded"] is None and "evil" not in str(seen["x_forwarded_host"])
        assert got.headers["Strict-Transport-Security"] == "max-age=63072000"


def test_plain_http_redirects_permanently_to_https(two_orgs: TwoOrgs) -> None:
    got = client.plain(A, HTTP_PORT, "/auth/v1/health?x=1")
    assert got.status == 301
    assert got.headers["Location"] == f"https://{A}:{HTTPS_PORT}/auth/v1/health?x=1"


SANDBOX = "sandbox allow-downloads allow-forms allow-modals allow-popups allow-scripts"


def test_what_api_paths_serve_runs_in_an_origin_of_its_own(two_orgs: TwoOrgs, ca_file: Path) -> None:
    """Studio shares the org's origin with Storage objects and Edge Functions' answers: HTML served
    there must not run as Studio's origin (it would read the service key out of Studio)."""
    for path in ("/storage/v1/object/public/avatars/x.html", "/functions/v1/page", "/rest/v1/rpc/html",
                 "/auth/v1/verify?token=x", "/graphql/v1", "/.well-known/oauth-authorization-server"):
        got = client.request(A, HTTPS_PORT, path, ca=ca_file)
        assert got.status == 200 and got.json()["org"] == "orga", path
        assert got.headers.get_all("Content-Security-Policy") == [SANDBOX], path
        assert "allow-same-origin" not in SANDBOX
        assert got.headers["X-Content-Type-Options"] == "nosniff", path
    # A policy of the app's own is kept beside it: a browser enforces both.
    got = client.request(A, HTTPS_PORT, "/functions/v1/page?csp=default-src%20%27self%27", ca=ca_file)
    assert sorted(got.headers.get_all("Content-Security-Policy") or []) == sorted(["default-src 'self'", SANDBOX])
    # Studio's own pages (every other path, the look-alikes too) are not sandboxed: they are Studio.
    for path in ("/project/default", "/", "/storage/v1", "/Storage/v1/object/x", "/api/platform/profile"):
        got = client.request(A, HTTPS_PORT, path, ca=ca_file)
        assert got.status == 200 and got.headers.get("Content-Security-Policy") is None, path


@pytest.mark.parametrize(("version", "accepted"), [
    (ssl.TLSVersion.TLSv1_1, False), (ssl.TLSVersion.TLSv1_2, True), (ssl.TLSVersion.TLSv1_3, True),
])
def test_only_tls_12_and_13_are_accepted(two_orgs: TwoOrgs, ca_file: Path, version: ssl.TLSVersion, accepted: bool) -> None:
    if accepted:
        with client.tls(A, HTTPS_PORT, ca_file, version=version) as sock:
            assert sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    else:
        with pytest.raises(ssl.SSLError):
            client.tls(A, HTTPS_PORT, ca_file, version=version).close()


def test_http2_is_offered(two_orgs: TwoOrgs, ca_file: Path) -> None:
    with client.tls(A, HTTPS_PORT, ca_file, alpn=["h2", "http/1.1"]) as sock:
        assert sock.selected_alpn_protocol() == "h2"


def test_an_unknown_name_gets_no_orgs_content(two_orgs: TwoOrgs) -> None:
    before = len(two_orgs.a.requests) + len(two_orgs.b.requests)
    org_serials = {two_orgs.leaf_a.serial, two_orgs.leaf_b.serial}
    assert served_serial("unknown.sfp.test") not in org_serials
    # An unknown SNI, with or without an org's name in Host: refused, never proxied.
    for host in ("unknown.sfp.test", A):
        conn_sock = client.tls("unknown.sfp.test", HTTPS_PORT, None)
        conn_sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn_sock.recv(65536):
            answer += chunk
        conn_sock.close()
        assert re.match(rb"HTTP/1.1 (403|421) ", answer), answer[:200]
    # One org's name in SNI, the other's in Host.
    with client.tls(A, HTTPS_PORT, None) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {B}\r\nConnection: close\r\n\r\n".encode())
        assert re.match(rb"HTTP/1.1 (403|421) ", sock.recv(65536))
    assert client.plain("unknown.sfp.test", HTTP_PORT).status == 403
    assert len(two_orgs.a.requests) + len(two_orgs.b.requests) == before


def test_a_websocket_upgrade_reaches_realtime(two_orgs: TwoOrgs, ca_file: Path) -> None:
    with client.websocket(B, HTTPS_PORT, ca=ca_file) as ws:
        assert client.ws_echo(ws, "phx_join") == "orgb: phx_join"
        assert client.ws_echo(ws, "x" * 70000) == "orgb: " + "x" * 70000


def test_a_100_mb_upload_streams_through_without_growing_apache(two_orgs: TwoOrgs, ca_file: Path) -> None:
    size, chunk = 100 * 1024 * 1024, os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    samples: list[int] = []
    last_sent: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(apache_rss())
            time.sleep(0.1)

    def body() -> Iterator[bytes]:
        for _ in range(size // len(chunk)):
            digest.update(chunk)
            yield chunk
        last_sent.append(time.time())

    baseline = apache_rss()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        got = client.request(A, HTTPS_PORT, "/storage/v1/object/bucket/big.bin", ca=ca_file, method="POST", body=body(),
                             headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
    finally:
        stop.set()
        sampler.join()
    assert got.status == 200, got.body[:300]
    seen = got.json()
    assert seen["size"] == size and seen["sha256"] == digest.hexdigest()
    # Streamed: the gateway had the first byte before the client sent its last one.
    assert seen["first_byte_at"] < last_sent[0]
    growth = max(samples) - baseline
    assert growth < 30 * 1024 * 1024, f"Apache grew by {growth / 2**20:.0f} MiB during the upload"


def test_a_chunked_upload_streams_too(two_orgs: TwoOrgs, ca_file: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    got = client.request(B, HTTPS_PORT, "/storage/v1/upload/resumable", ca=ca_file, method="PATCH",
                         body=iter([data[:1 << 20], data[1 << 20:]]), headers={"Transfer-Encoding": "chunked"})
    assert got.status == 200
    assert got.json()["sha256"] == hashlib.sha256(data).hexdigest()


def test_state_and_metric_of_each_org(two_orgs: TwoOrgs, run_role: Runner) -> None:
    for org, name, leaf in (("orga", A, two_orgs.leaf_a), ("orgb", B, two_orgs.leaf_b)):
        cert = x509.load_pem_x509_certificate(leaf.cert_pem.encode())
        not_after = int(cert.not_valid_after_utc.timestamp())
        state_file = Path(f"/etc/sfp-frontdoor/{org}/state.json")
        assert oct(state_file.stat().st_mode & 0o777) == "0o644"
        state = json.loads(state_file.read_text())
        assert state["hostname"] == name and state["studio_access"] == "basic"
        assert state["certificate"]["source"] == "provided" and state["certificate"]["not_after"] == not_after
        assert state["certificate"]["issuer"] == "CN=sfp frontdoor test CA"
        metric = (run_role.metrics_dir / f"sfp_frontdoor_{org}.prom").read_text()
        assert f'sfp_frontdoor_certificate_not_after_seconds{{org="{org}",hostname="{name}",source="provided"}} {not_after}' in metric


def test_the_key_is_in_no_output_and_no_file_but_its_own(two_orgs: TwoOrgs, run_role: Runner) -> None:
    for org, leaf in (("orga", two_orgs.leaf_a), ("orgb", two_orgs.leaf_b)):
        body = "".join(leaf.key_pem.strip().splitlines()[1:-1])
        lines = leaf.key_pem.strip().splitlines()[1:-1]
        assert not any(line in two_orgs.first_run for line in lines), "a line of the key is in ansible-playbook -v's output"
        found = subprocess.run(["grep", "-rlF", "-e", lines[1], "/etc", "/var/lib/sfp-frontdoor", "/var/log/apache2",
                                "/usr/local/lib/sfp-frontdoor", str(run_role.metrics_dir), "/root/.ansible"],
                               capture_output=True, text=True, check=False).stdout.split()
        # The test's own inventories hold it (they play the org's vault); nothing the role wrote does.
        found = [f for f in found if not f.startswith(str(run_role.workdir)) and "/pytest-of-" not in f]
        assert found == [f"/etc/sfp-frontdoor/{org}/key.pem"], found
        key = Path(found[0])
        assert oct(key.stat().st_mode & 0o777) == "0o600" and key.stat().st_uid == 0
        assert oct(key.parent.stat().st_mode & 0o777) == "0o700"
        assert body


def test_a_second_run_changes_nothing(two_orgs: TwoOrgs, run_role: Runner) -> None:
    done = run_role(two_orgs.org_vars())
    assert done.rc == 0, done.stdout[-3000:]
    assert done.recap("orga")["changed"] == 0 and done.recap("orgb")["changed"] == 0, done.stdout


BAD_INPUTS = {
    "mismatched_key": "`key` is not the private key of `cert`",
    "other_name": "`cert` does not cover frontdoor__hostname orga.sfp.test",
    "bad_hostname": "frontdoor__hostname \"orga..sfp.test\" is not a DNS name",
    "expired": "`cert` expired",
    "not_pem": "`cert` is not a readable PEM certificate",
}


@dataclass
class Refused:
    done: Run
    before: dict[str, str]
    after: dict[str, str]
    served: int
    expected: int


@pytest.fixture(scope="module")
def refused(two_orgs: TwoOrgs, run_role: Runner, test_ca: TestCA) -> Refused:
    """orga's installed front door given each bad input at once, in one play: one inventory host per
    bad input, each of them org orga (its name, its directories), so every refusal meets orga as
    installed. Their checks come before anything is written, so none can see another's doing."""
    good = two_orgs.org_vars()["orga"]
    hosts = {}
    for bad in BAD_INPUTS:
        org = {**good, "frontdoor__org": "orga", "frontdoor__org_dir": run_role.org_vars("orga")["frontdoor__org_dir"]}
        if bad == "mismatched_key":
            org["frontdoor__certificate"] = {**provided(test_ca.issue(A)), "key": test_ca.issue(A).key_pem}
        elif bad == "other_name":
            org["frontdoor__certificate"] = provided(test_ca.issue("orgz.sfp.test", "*.other.test"))
        elif bad == "bad_hostname":
            org["frontdoor__hostname"] = "orga..sfp.test"
        elif bad == "expired":
            org["frontdoor__certificate"] = provided(test_ca.issue(A, expired=True))
        else:
            org["frontdoor__certificate"] = {"source": "provided", "key": two_orgs.leaf_a.key_pem,
                                             "cert": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"}
        hosts[f"orga_{bad}"] = org
    before = tree_digest(APACHE_DIR, Path("/etc/sfp-frontdoor"), run_role.metrics_dir)
    done = run_role(hosts)
    after = tree_digest(APACHE_DIR, Path("/etc/sfp-frontdoor"), run_role.metrics_dir)
    return Refused(done, before, after, served_serial(A), two_orgs.leaf_a.serial)


@pytest.mark.parametrize(("bad", "message"), list(BAD_INPUTS.items()))
def test_a_refused_certificate_or_name_changes_nothing(refused: Refused, bad: str, message: str) -> None:
    done, host = refused.done, f"orga_{bad}"
    assert done.rc != 0
    assert done.recap(host)["failed"] == 1
    failure = done.failure(host)
    assert message in failure, done.stdout[-3000:]
    assert "frontdoor__" in message or "frontdoor__certificate" in failure
    assert done.recap(host)["changed"] == 0
    assert refused.after == refused.before
    assert refused.served == refused.expected


def test_a_new_certificate_is_served_without_dropping_connections(two_orgs: TwoOrgs, run_role: Runner, test_ca: TestCA,
                                                                  ca_file: Path) -> None:
    # A long response and an open websocket, both started on the old certificate.
    conn = client.request_stream(A, HTTPS_PORT, "/slow?seconds=120", ca=ca_file)
    ticks_before = [conn.readline() for _ in range(2)]
    assert ticks_before[1].startswith(b"orga tick")
    ws = client.websocket(A, HTTPS_PORT, ca=ca_file)
    assert client.ws_echo(ws, "before") == "orga: before"

    new_leaf = test_ca.issue(A)
    two_orgs.leaf_a = new_leaf
    done = run_role(two_orgs.org_vars())
    assert done.rc == 0, done.stdout[-3000:]
    assert done.recap("orga")["changed"] > 0 and done.recap("orgb")["changed"] == 0
    wait_for(lambda: served_serial(A) == new_leaf.serial, what="the new certificate")
    with client.tls(A, HTTPS_PORT, ca_file):
        pass

    # Both kept going through the graceful reload.
    start = time.monotonic()
    tick = conn.readline()
    assert tick.startswith(b"orga tick") and time.monotonic() - start < 2
    assert client.ws_echo(ws, "after") == "orga: after"
    ws.close()
    conn.close()


def test_absent_removes_one_org_and_the_other_keeps_serving(two_orgs: TwoOrgs, run_role: Runner, ca_file: Path) -> None:
    org_b = two_orgs.org_vars()["orgb"]
    done = run_role({"orgb": {**org_b, "frontdoor__state": "absent"}})
    assert done.rc == 0, done.stdout[-3000:]
    wait_for(lambda: served_serial(B) != two_orgs.leaf_b.serial, what="orgb gone")
    assert not Path("/etc/sfp-frontdoor/orgb").exists()
    assert not (APACHE_DIR / "sites-available/sfp-frontdoor-orgb.conf").exists()
    assert not (run_role.metrics_dir / "sfp_frontdoor_orgb.prom").exists()
    assert client.request(A, HTTPS_PORT, "/", ca=ca_file).json()["org"] == "orga"
    again = run_role({"orgb": {**org_b, "frontdoor__state": "absent"}})
    assert again.rc == 0 and again.recap("orgb")["changed"] == 0, again.stdout[-3000:]
