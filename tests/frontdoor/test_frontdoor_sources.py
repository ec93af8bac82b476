"""Where an org's certificate comes from besides a provided one: made on the host (self_signed), or
from an ACME CA through Apache's mod_md (acme, against Debian's pebble).

Both orgs are installed by one play on a fresh host, and run again by a second one (two orgs of
one host, as in production); each test reads what concerns its own org."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

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


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory, test_ca: TestCA, ca_file: Path) -> Iterator[tuple[str, str]]:
    """Debian's pebble on loopback, its directory served over TLS with a certificate from the test CA;
    every challenge passes (PEBBLE_VA_ALWAYS_VALID). Yields (directory URL, management URL)."""
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
        yield f"https://localhost:{port}/dir", f"https://localhost:{mgmt}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


SELF, ACME = "self.sfp.test", "acme.sfp.test"


@dataclass
class Sources:
    first: Run
    again: Run
    # What the first run left, for the tests to see that the second left it so.
    served: dict[str, int]
    files: dict[str, str]


ORGC_FILES = ("/etc/sfp-frontdoor/orgc/state.json", "sfp_frontdoor_orgc.prom")


def orgc_files(run_role: Runner) -> dict[str, str]:
    return {f: (Path(f) if f.startswith("/") else run_role.metrics_dir / f).read_text() for f in ORGC_FILES}


@pytest.fixture(scope="module")
def sources(frontdoor_host, run_role: Runner, pebble: tuple[str, str], ca_file: Path) -> Iterator[Sources]:
    """orgs (self_signed) and orgc (acme) installed on a fresh host in one play, then run again."""
    frontdoor_host()
    gateways = [Backend("orgs"), Backend("orgc")]
    orgs = {"orgs": {"frontdoor__hostname": SELF, "frontdoor__upstream": gateways[0].url,
                     "frontdoor__certificate": {"source": "self_signed"}},
            "orgc": {"frontdoor__hostname": ACME, "frontdoor__upstream": gateways[1].url,
                     "frontdoor__certificate": {"source": "acme", "directory_url": pebble[0], "email": "ops@sfp.test",
                                                "ca": ca_file.read_text()}}}
    try:
        first = run_role(orgs)
        assert first.rc == 0, first.stdout[-3000:] + md_log()
        wait_for(lambda: client.peer_cert(SELF, HTTPS_PORT).issuer == client.peer_cert(SELF, HTTPS_PORT).subject,
                 what="the self-signed certificate")
        served = {name: client.peer_cert(name, HTTPS_PORT).serial_number for name in (SELF, ACME)}
        yield Sources(first, run_role(orgs), served, orgc_files(run_role))
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


def test_acme_certificate_from_pebble(sources: Sources, run_role: Runner, pebble: tuple[str, str], ca_file: Path,
                                      tmp_path: Path) -> None:
    done = sources.first
    _, management = pebble
    name = ACME
    assert done.rc == 0, done.stdout[-2000:] + md_log()
    # Issued by pebble for the name: the handshake verifies against pebble's root.
    ctx = ssl.create_default_context(cafile=str(ca_file))
    root = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(management.rsplit(":", 1)[1]))), server_hostname="localhost")
    root.sendall(b"GET /roots/0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    answer = b""
    while chunk := root.recv(65536):
        answer += chunk
    root.close()
    (tmp_path / "pebble-root.pem").write_bytes(answer.split(b"\r\n\r\n", 1)[1])
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
