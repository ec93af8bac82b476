"""Real identity providers on loopback for tests/sso.

- OIDC: panva's oidc-provider on Node (tests/sso/oidc_idp/server.mjs), one process per test.
- SAML: a pysaml2 IdP (saml2.server.Server) with a freshly generated key and certificate; its
  signed metadata (saml2.metadata.create_metadata_string, xmlsec1) is served over HTTP.
- LoopbackHTTP: a tiny threaded HTTP server serving fixed routes (metadata payloads).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

OIDC_IDP_DIR = Path(__file__).resolve().parent / "oidc_idp"


# -- plain loopback HTTP ----------------------------------------------------------------
@dataclass
class Route:
    status: int
    body: bytes
    content_type: str = "application/xml"
    headers: dict[str, str] = field(default_factory=dict)


def redirect(location: str, status: int = 302) -> Route:
    return Route(status, b"", "text/plain", {"Location": location})


class LoopbackHTTP:
    """Serves `routes` (path -> Route) on 127.0.0.1:<free port> in a daemon thread; over TLS when
    given a (certificate, key) pair (see `make_tls_cert`)."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                route = outer.routes.get(self.path, Route(404, b"not found", "text/plain"))
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls is not None:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- certificates -----------------------------------------------------------------------
def make_key_and_cert(directory: Path, *, not_before: datetime, not_after: datetime, cn: str = "sfp test IdP",
                      stem: str = "idp") -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def make_tls_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1 (trust it with REQUESTS_CA_BUNDLE)."""
    import ipaddress

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# -- SAML IdP (pysaml2) -----------------------------------------------------------------
@dataclass
class SamlIdP:
    entity_id: str
    metadata_xml: str
    metadata_url: str
    cert_path: Path
    key_path: Path
    extra: dict[str, object] = field(default_factory=dict)


def build_saml_idp(directory: Path, http: LoopbackHTTP, *, cert_valid_days: float = 365,
                   cert_expired: bool = False, path: str = "/idp/metadata", stem: str = "idp") -> SamlIdP:
    """A pysaml2 IdP whose signed metadata is served at http.url(path)."""
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT  # type: ignore[import-untyped]
    from saml2.config import IdPConfig  # type: ignore[import-untyped]
    from saml2.metadata import create_metadata_string  # type: ignore[import-untyped]
    from saml2.saml import NAMEID_FORMAT_EMAILADDRESS  # type: ignore[import-untyped]
    from saml2.server import Server  # type: ignore[import-untyped]
    from saml2.sigver import get_xmlsec_binary  # type: ignore[import-untyped]

    now = datetime.now(UTC)
    if cert_expired:
        nb, na = now - timedelta(days=400), now - timedelta(days=35)
    else:
        nb, na = now - timedelta(days=1), now + timedelta(days=cert_valid_days)
    key_path, cert_path = make_key_and_cert(directory, not_before=nb, not_after=na, stem=stem)
    base = http.url("/idp")
    entity_id = http.url(path)
    conf = IdPConfig()
    conf.load({
        "entityid": entity_id,
        "description": "sfp-server test IdP",
        "service": {"idp": {
            "name": "sfp test IdP",
            "endpoints": {"single_sign_on_service": [
                (f"{base}/sso/redirect", BINDING_HTTP_REDIRECT),
                (f"{base}/sso/post", BINDING_HTTP_POST),
            ]},
            "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
            "policy": {"default": {"lifetime": {"minutes": 15}}},
        }},
        "key_file": str(key_path),
        "cert_file": str(cert_path),
        "xmlsec_binary": get_xmlsec_binary(),
        "metadata": {},
        "valid_for": 24 * 365,  # hours: metadata validUntil
    })
    server = Server(config=conf)  # a working pysaml2 IdP: proves the config/keys load
    assert server.config.entityid == entity_id
    metadata = create_metadata_string(None, config=conf, valid=24 * 365, sign=True)
    xml = metadata.decode() if isinstance(metadata, bytes) else metadata
    http.routes[path] = Route(200, xml.encode())
    return SamlIdP(entity_id, xml, entity_id, cert_path, key_path)


def with_inventory_payload(xml: str, sentinel: Path, host: str) -> str:
    """Metadata that still validates, with an INI inventory hidden in an XML comment: parsed as
    inventory, it sets connection variables whose templates run commands on the controller
    (`touch sentinel`), and `sfp_pwned` on every host and on `host`."""
    import sys

    decl, rest = xml.split("?>", 1)
    payload = (
        "\n<!--\n"
        "[all:vars]\n"
        f"ansible_python_interpreter=\"sh -c 'touch {sentinel}' #\"\n"
        "sfp_pwned=all\n"
        "[sfp_orgs]\n"
        f"{host} sfp_pwned=host ansible_python_interpreter=\"{{{{ lookup('pipe', 'touch {sentinel}; "
        f"echo {sys.executable}') }}}}\"\n"
        "-->"
    )
    return f"{decl}?>{payload}{rest}"


# -- OIDC IdP (node oidc-provider) ------------------------------------------------------
def ensure_oidc_idp_installed() -> None:
    """`npm ci` (lockfile) in tests/sso/oidc_idp once, when node_modules is missing."""
    if (OIDC_IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        raise RuntimeError("tests/sso needs Node.js 20+ and npm on PATH (for the oidc-provider test IdP)")
    # pytest -n 2 runs two sessions at once: one installs, the other waits for it and finds it done.
    with open(OIDC_IDP_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (OIDC_IDP_DIR / "node_modules" / "oidc-provider").is_dir():
            return
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=OIDC_IDP_DIR, capture_output=True,
                                text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"npm ci in {OIDC_IDP_DIR} failed:\n{result.stdout}\n{result.stderr}")


@dataclass
class OidcIdP:
    issuer: str
    port: int
    process: subprocess.Popen[str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_oidc_idp(*, issuer_host: str = "127.0.0.1", empty_jwks: bool = False, startup_timeout: float = 20,
                   clients: list[dict[str, object]] | None = None,
                   accounts: dict[str, dict[str, object]] | None = None) -> OidcIdP:
    """`clients`: more registered clients (client_id, client_secret, redirect_uris); `accounts`: the
    claims (email, email_verified, groups) of each login typed into the provider's login form."""
    env = {**os.environ, "ISSUER_HOST": issuer_host, "PORT": "0", "EMPTY_JWKS": "1" if empty_jwks else "0"}
    if clients:
        env["CLIENTS_JSON"] = json.dumps(clients)
    if accounts is not None:
        env["ACCOUNTS_JSON"] = json.dumps(accounts)
    proc = subprocess.Popen(["node", "server.mjs"], cwd=OIDC_IDP_DIR, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(startup_timeout)
    if not line or not line[0].strip():
        proc.kill()
        _, err = proc.communicate(timeout=5)
        raise RuntimeError(f"oidc-provider test IdP did not start: {err[-2000:]}")
    info = json.loads(line[0])
    return OidcIdP(issuer=info["issuer"], port=int(info["port"]), process=proc)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()
