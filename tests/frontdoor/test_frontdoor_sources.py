"""Where an org's certificate comes from besides a provided one: made on the host (self_signed), or
from an ACME CA through Apache's mod_md (acme, against Debian's pebble).

Both orgs are installed by one play on a fresh host, and run again by a second one (two orgs of
one host, as in production); each test reads what concerns its own org."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from installer.actions.status import OrgStatus, frontdoor_summary
from tests.frontdoor import client
from tests.frontdoor.backend import Backend
from tests.frontdoor.conftest import HTTPS_PORT, Run, Runner, wait_for
from tests.frontdoor.pki import TestCA


def md_log() -> str:
    log = Path("/var/log/apache2/error.log")
    return "\n".join(ln for ln in (log.read_text(errors="replace") if log.exists() else "").splitlines() if ":md:" in ln or "md_" in ln)[-4000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Link:
    """A TCP relay on loopback between mod_md and pebble. cut() makes the CA unreachable (connection
    refused), as an outage of the CA or of the network to it would; restore() brings it back with
    pebble's accounts and orders intact, which a restarted pebble would have forgotten."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        if self._listener is not None:
            return
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() waiting on it (Linux)
            listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                near, _ = listener.accept()
            except OSError:
                return
            try:
                far = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                near.close()
                continue
            far.settimeout(None)
            with self._lock:
                self._open |= {near, far}
            done = threading.Semaphore(0)
            for src, dst in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(src, dst, near, far, done), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, near: socket.socket, far: socket.socket,
              done: threading.Semaphore) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        # The second direction to finish closes the pair.
        if done.acquire(blocking=False):
            with self._lock:
                self._open -= {near, far}
            near.close()
            far.close()
        else:
            done.release()


@dataclass
class Pebble:
    directory: str
    """The ACME directory URL, through `link`."""
    management: str
    link: Link


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory, test_ca: TestCA, ca_file: Path) -> Iterator[Pebble]:
    """Debian's pebble on loopback, its directory served over TLS with a certificate from the test CA;
    every challenge passes (PEBBLE_VA_ALWAYS_VALID). mod_md reaches it through a Link the tests can
    cut (pebble builds its URLs from the Host it is asked for, so they all go through the link)."""
    tmp_path = tmp_path_factory.mktemp("pebble")
    if shutil.which("pebble") is None:
        pytest.fail("pebble is not installed; run `bash scripts/bootstrap`")
    leaf = test_ca.issue("localhost")
    (tmp_path / "cert.pem").write_text(leaf.chain_pem)
    (tmp_path / "key.pem").write_text(leaf.key_pem)
    port, mgmt = free_port(), free_port()
    (tmp_path / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{mgmt}",
        "certificate": str(tmp_path / "cert.pem"), "privateKey": str(tmp_path / "key.pem"),
        "httpPort": free_port(), "tlsPort": free_port(), "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
    env = {**os.environ, "PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
           "PEBBLE_AUTHZREUSE": "100"}
    log = (tmp_path / "pebble.log").open("w")
    proc = subprocess.Popen(["pebble", "-config", str(tmp_path / "pebble.json")], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None, what="pebble")
        link = Link(port)
        yield Pebble(f"https://localhost:{link.port}/dir", f"https://localhost:{mgmt}", link)
        link.cut()
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


SELF, ACME = "self.sfp.test", "acme.sfp.test"


@dataclass
class Sources:
    orgs: dict[str, dict[str, Any]]
    """The role's inputs of each org, for a test's own run."""
    first: Run
    again: Run
    # What the first run left, for the tests to see that the second left it so.
    served: dict[str, int]
    files: dict[str, str]


ORGC_FILES = ("/etc/sfp-frontdoor/orgc/state.json", "sfp_frontdoor_orgc.prom")


def orgc_files(run_role: Runner) -> dict[str, str]:
    return {f: (Path(f) if f.startswith("/") else run_role.metrics_dir / f).read_text() for f in ORGC_FILES}


@pytest.fixture(scope="module")
def sources(frontdoor_host, run_role: Runner, pebble: Pebble, ca_file: Path) -> Iterator[Sources]:
    """orgs (self_signed) and orgc (acme) installed on a fresh host in one play, then run again."""
    frontdoor_host()
    gateways = [Backend("orgs"), Backend("orgc")]
    orgs = {"orgs": {"frontdoor__hostname": SELF, "frontdoor__upstream": gateways[0].url,
                     "frontdoor__certificate": {"source": "self_signed"}},
            "orgc": {"frontdoor__hostname": ACME, "frontdoor__upstream": gateways[1].url,
                     "frontdoor__certificate": {"source": "acme", "directory_url": pebble.directory, "email": "ops@sfp.test",
                                                "ca": ca_file.read_text()}}}
    try:
        first = run_role(orgs)
        assert first.rc == 0, first.stdout[-3000:] + md_log()
        wait_for(lambda: client.peer_cert(SELF, HTTPS_PORT).issuer == client.peer_cert(SELF, HTTPS_PORT).subject,
                 what="the self-signed certificate")
        served = {name: client.peer_cert(name, HTTPS_PORT).serial_number for name in (SELF, ACME)}
        yield Sources(orgs, first, run_role(orgs), served, orgc_files(run_role))
    finally:
        for gw in gateways:
            gw.stop()


def test_self_signed_is_made_once_kept_and_warned_about(sources: Sources, run_role: Runner) -> None:
    done = sources.first
    assert done.rc == 0, done.stdout[-3000:]
    assert "[WARNING]" in done.stdout + done.stderr and "SELF-SIGNED" in done.stdout + done.stderr
    # The warning is orgs', not orgc's (acme).
    assert f"orgs: https://{SELF} is served with a SELF-SIGNED" in " ".join((done.stdout + done.stderr).split())
    assert f"https://{ACME} is served with a SELF-SIGNED" not in " ".join((done.stdout + done.stderr).split())
    wait_for(lambda: client.peer_cert(SELF, HTTPS_PORT).issuer == client.peer_cert(SELF, HTTPS_PORT).subject,
             what="the self-signed certificate")
    cert = client.peer_cert(SELF, HTTPS_PORT)
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [SELF]
    key = Path("/etc/sfp-frontdoor/orgs/key.pem")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    # Trusting that very certificate, a client gets through to the gateway.
    pinned = Path(run_role.workdir / "self.pem")
    pinned.write_text(Path("/etc/sfp-frontdoor/orgs/cert.pem").read_text())
    assert client.request(SELF, HTTPS_PORT, "/", ca=pinned).json()["org"] == "orgs"
    again = sources.again
    assert again.rc == 0 and again.recap("orgs")["changed"] == 0, again.stdout[-3000:]
    # Kept: the certificate served after the first run is the one served after the second.
    assert sources.served[SELF] == cert.serial_number
    assert client.peer_cert(SELF, HTTPS_PORT).serial_number == cert.serial_number


def pebble_root(pebble: Pebble, ca_file: Path, dest: Path) -> Path:
    """pebble's root certificate (made anew by each pebble), from its management interface."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    root = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(pebble.management.rsplit(":", 1)[1]))),
                           server_hostname="localhost")
    root.sendall(b"GET /roots/0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    answer = b""
    while chunk := root.recv(65536):
        answer += chunk
    root.close()
    dest.write_bytes(answer.split(b"\r\n\r\n", 1)[1])
    return dest


def test_acme_certificate_from_pebble(sources: Sources, run_role: Runner, pebble: Pebble, ca_file: Path,
                                      tmp_path: Path) -> None:
    done = sources.first
    name = ACME
    assert done.rc == 0, done.stdout[-2000:] + md_log()
    # Issued by pebble for the name: the handshake verifies against pebble's root.
    pebble_root(pebble, ca_file, tmp_path / "pebble-root.pem")
    with client.tls(name, HTTPS_PORT, tmp_path / "pebble-root.pem") as sock:
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        cert = x509.load_der_x509_certificate(der)
    assert "Pebble" in cert.issuer.rfc4514_string()
    # The certificate, state and metric read here are the first run's: the second one kept them.
    assert cert.serial_number == sources.served[ACME]
    assert orgc_files(run_role) == sources.files
    assert client.request(name, HTTPS_PORT, "/rest/v1/", ca=tmp_path / "pebble-root.pem").json()["org"] == "orgc"
    state = json.loads(Path("/etc/sfp-frontdoor/orgc/state.json").read_text())
    assert state["certificate"]["source"] == "acme"
    assert state["certificate"]["not_after"] == int(cert.not_valid_after_utc.timestamp())
    assert state["certificate"]["acme"]["renewal_ok"] is True
    metric = (run_role.metrics_dir / "sfp_frontdoor_orgc.prom").read_text()
    assert f'sfp_frontdoor_acme_renewal_ok{{org="orgc",hostname="{name}",source="acme"}} 1' in metric
    assert "Pebble" in state["certificate"]["issuer"]
    # mod_md's keys stay root's.
    for key in Path("/etc/sfp-frontdoor/_acme").rglob("privkey.pem"):
        assert key.stat().st_mode & 0o077 == 0, key
    again = sources.again
    assert again.rc == 0 and again.recap("orgc")["changed"] == 0, again.stdout[-4000:]


CRON_FILE = Path("/etc/cron.d/sfp-frontdoor")
CHECK_LOG = Path("/var/log/apache2/sfp-frontdoor-check.log")
STAGED = Path(f"/etc/sfp-frontdoor/_acme/staging/{ACME}/pubcert.pem")
ORGC_STATE = Path("/etc/sfp-frontdoor/orgc/state.json")
ORGC_LABELS = f'org="orgc",hostname="{ACME}",source="acme"'
# A certificate is inside the renew window the renewal tests set once it is this old: the one in
# service already is when the run reloads Apache, the renewed one is not yet when the hourly check
# activates it (so mod_md does not renew it again while the test looks).
WINDOW_MARGIN = 15


def md_events() -> dict[str, int]:
    path = Path(f"/var/lib/sfp-frontdoor/md-events/{ACME}.json")
    return json.loads(path.read_text()) if path.exists() else {}


def cron_check() -> str:
    """The hourly check as cron runs it: the one job line of the role's cron file, its command through
    the file's SHELL as the line's user (root, as these tests are), with the file's variables over
    cron's own and nothing of this process's environment. Returns what the command logged."""
    env = {"HOME": "/root", "LOGNAME": "root", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}
    jobs = []
    for line in CRON_FILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if variable := re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$", line):
            env[variable[1]] = variable[2]
        else:
            jobs.append(line.split(None, 6))
    [[*schedule, user, command]] = jobs
    # Hourly; and cron would end the command at a '%' (what follows goes to its stdin).
    assert re.fullmatch(r"[1-5]?[0-9]", schedule[0]) and schedule[1:] == ["*"] * 4, schedule
    assert user == "root" and "%" not in command, (user, command)
    logged = CHECK_LOG.stat().st_size if CHECK_LOG.exists() else 0
    done = subprocess.run([env["SHELL"], "-c", command], env=env, capture_output=True, text=True, timeout=120, check=False)
    log = CHECK_LOG.read_bytes()[logged:].decode()
    assert done.returncode == 0, done.stdout + done.stderr + log + md_log()
    return log


@dataclass
class FailedRenewal:
    in_service: x509.Certificate
    started: int
    """Unix time just before the run that made the renewal due."""
    log: str
    """What the hourly check logged after mod_md's failure."""
    run: Run
    state: dict[str, Any]
    metric: str


@pytest.fixture(scope="module")
def failed_renewal(sources: Sources, run_role: Runner, pebble: Pebble) -> Iterator[FailedRenewal]:
    """orgc's certificate made due for renewal (frontdoor__acme_renew_window) while mod_md cannot
    reach pebble, then the hourly check. The same org and certificate as the first issuance."""
    in_service = client.peer_cert(ACME, HTTPS_PORT)
    born = in_service.not_valid_before_utc.timestamp()
    lifetime = int(in_service.not_valid_after_utc.timestamp() - born)
    time.sleep(max(0.0, born + WINDOW_MARGIN + 1 - time.time()))
    started = int(time.time())
    pebble.link.cut()
    try:
        done = run_role({"orgc": {**sources.orgs["orgc"], "frontdoor__acme_renew_window": f"{lifetime - WINDOW_MARGIN}s",
                                  # mod_md's own 30 s (doubled on each failure) would make the test wait.
                                  "frontdoor__acme_retry_delay": "1s",
                                  # Activating the renewal is the hourly check's job here, not the run's.
                                  "frontdoor__acme_wait": 0},
                         # In the same play: an org whose timing mod_md would refuse (100% of the
                         # lifetime; 'm' is no unit of mod_md's) stops before it changes anything.
                         "orgx": {**sources.orgs["orgc"], "frontdoor__hostname": "x.sfp.test",
                                  "frontdoor__acme_renew_window": "100%", "frontdoor__acme_retry_delay": "5m"}})
        assert done.recap("orgc")["failed"] == 0, done.stdout[-3000:]
        wait_for(lambda: md_events().get("errored", 0) >= started, timeout=30, what=f"mod_md's errored event\n{md_log()}")
        log = cron_check()
        yield FailedRenewal(in_service, started, log, done, json.loads(ORGC_STATE.read_text()),
                            (run_role.metrics_dir / "sfp_frontdoor_orgc.prom").read_text())
    finally:
        pebble.link.restore()


def test_acme_timing_mod_md_would_refuse_is_refused_first(failed_renewal: FailedRenewal) -> None:
    done = failed_renewal.run
    assert done.recap("orgx")["failed"] == 1 and done.recap("orgx")["changed"] == 0, done.stdout[-3000:]
    failure = done.failure("orgx")
    # (Up to the apostrophe, which the YAML callback doubles.)
    assert 'frontdoor__acme_renew_window "100%" must be a share of the certificate' in failure, failure
    assert 'frontdoor__acme_retry_delay "5m" must be a duration with its unit' in failure, failure
    assert not Path("/etc/sfp-frontdoor/orgx").exists()


def test_a_failed_acme_renewal_shows_in_state_metric_and_status(failed_renewal: FailedRenewal) -> None:
    failed = failed_renewal
    events = md_events()
    # mod_md tried, failed and said so (MDMessageCmd); it staged nothing, so the check reloaded nothing.
    assert events["errored"] >= failed.started, events
    assert events["errored"] > max(events.get("renewed", 0), events.get("installed", 0)), events
    assert not STAGED.exists()
    assert "reloaded" not in failed.log, failed.log
    acme = failed.state["certificate"]["acme"]
    assert acme["renewal_ok"] is False and acme["pending_activation"] is False, acme
    assert acme["last_error_at"] >= failed.started
    assert f"sfp_frontdoor_acme_renewal_ok{{{ORGC_LABELS}}} 0\n" in failed.metric
    assert f"sfp_frontdoor_acme_pending_activation{{{ORGC_LABELS}}} 0\n" in failed.metric
    # The certificate in service stays in service, and is the one the state and metric name.
    assert client.peer_cert(ACME, HTTPS_PORT).serial_number == failed.in_service.serial_number
    not_after = int(failed.in_service.not_valid_after_utc.timestamp())
    assert failed.state["certificate"]["not_after"] == not_after
    assert f"sfp_frontdoor_certificate_not_after_seconds{{{ORGC_LABELS}}} {not_after}\n" in failed.metric
    # `sfp-server status` renders its front door column from this state.json (read by playbooks/status.yml).
    row = OrgStatus(org="orgc", machine="local", installed=True, release=None, image_catalog=None, frontdoor=failed.state)
    failed_at = time.strftime("%Y-%m-%d %H:%MZ", time.gmtime(acme["last_error_at"]))
    assert f"{ACME}, acme cert until " in frontdoor_summary(row)
    assert f", ACME RENEWAL FAILED at {failed_at}, " in frontdoor_summary(row)


def test_the_retried_renewal_is_activated_by_the_hourly_check_without_dropping_connections(
        failed_renewal: FailedRenewal, pebble: Pebble, run_role: Runner, ca_file: Path, tmp_path: Path) -> None:
    old = failed_renewal.in_service
    pebble.link.restore()
    # mod_md's next retry (MDRetryDelay, doubled on each failure in a row) gets the certificate and
    # stages it; Apache goes on serving the old one.
    wait_for(STAGED.exists, timeout=90, what=f"mod_md's retry to stage a renewed certificate\n{md_log()}")
    renewed = x509.load_pem_x509_certificates(STAGED.read_bytes())[0]
    assert renewed.serial_number != old.serial_number
    assert renewed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [ACME]
    assert client.peer_cert(ACME, HTTPS_PORT).serial_number == old.serial_number

    # A long response open across the activation, and new connections all along it.
    stream = client.request_stream(ACME, HTTPS_PORT, "/slow?seconds=30", ca=None)
    assert stream.readline().startswith(b"orgc tick")
    with client.RequestLoop(ACME, HTTPS_PORT, accept=lambda status, body: status == 200 and json.loads(body)["org"] == "orgc") as requests:
        wait_for(lambda: len(requests.serials) > 0, what="a request on the old certificate")
        log = cron_check()
        wait_for(lambda: requests.serials[-1:] == [renewed.serial_number], what="a request on the renewed certificate")
    start = time.monotonic()
    assert stream.readline().startswith(b"orgc tick") and time.monotonic() - start < 2
    stream.close()
    assert "reloaded" in log, log
    assert requests.failures == [], requests.failures[:5]
    assert requests.serials[0] == old.serial_number and set(requests.serials) == {old.serial_number, renewed.serial_number}
    # The renewal is pebble's, for the name: it verifies against pebble's root.
    with client.tls(ACME, HTTPS_PORT, pebble_root(pebble, ca_file, tmp_path / "pebble-root.pem")) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None and x509.load_der_x509_certificate(der).serial_number == renewed.serial_number

    # What the check wrote after the reload: the renewed certificate, renewal ok, nothing pending.
    events = md_events()
    assert events["errored"] < events["renewed"] <= events["installed"], events
    state = json.loads(ORGC_STATE.read_text())
    acme = state["certificate"]["acme"]
    assert acme["renewal_ok"] is True and acme["pending_activation"] is False, acme
    # mod_md says `installed` as the reload puts the certificate in service, which may come a moment
    # after the check wrote the state: then the state's good renewal is the `renewed` one.
    assert acme["last_renewal_at"] in (events["renewed"], events["installed"]), (acme, events)
    not_after = int(renewed.not_valid_after_utc.timestamp())
    assert state["certificate"]["not_after"] == not_after
    metric = (run_role.metrics_dir / "sfp_frontdoor_orgc.prom").read_text()
    assert f"sfp_frontdoor_acme_renewal_ok{{{ORGC_LABELS}}} 1\n" in metric
    assert f"sfp_frontdoor_acme_pending_activation{{{ORGC_LABELS}}} 0\n" in metric
    assert f"sfp_frontdoor_certificate_not_after_seconds{{{ORGC_LABELS}}} {not_after}\n" in metric
    assert not STAGED.exists()
    row = OrgStatus(org="orgc", machine="local", installed=True, release=None, image_catalog=None, frontdoor=state)
    assert "FAILED" not in frontdoor_summary(row)
