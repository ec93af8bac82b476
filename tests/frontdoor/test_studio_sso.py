"""Studio only after a login at the org's own identity provider (roles/frontdoor, issue #14).

Real Apache (Debian's apache2 with mod_auth_openidc and mod_auth_mellon), real identity providers
(panva's oidc-provider on Node, a pysaml2 IdP), real role files: tasks/studio.yml and the
templates studio_oidc.conf.j2 / studio_saml.conf.j2 run through ansible-playbook for four orgs
(alpha and bravo sign in with OIDC, charlie and delta with SAML). Apache is a private instance
(its own ServerRoot, loopback port, test CA) whose virtual hosts stand for the role's: TLS,
ProxyPass / to the org's gateway, the gate included inside. Each org's gateway is a stand-in for
Kong and Studio: Studio paths answer 401 unless the dashboard's basic credentials come with them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from tests.frontdoor.conftest import HOST_PYTHON
from tests.frontdoor.login import loopback_names, oidc_login, raw_get, saml_login
from tests.frontdoor.pki import TestCA as CA
from tests.frontdoor.saml_idp import SamlTestIdP
from tests.sso.idp_fixtures import ensure_oidc_idp_installed, make_key_and_cert, start_oidc_idp, stop

pytestmark = [
    # pysaml2 7.5 touches a cryptography symbol deprecated upstream; not ours to fix.
    pytest.mark.filterwarnings("ignore:CFB has been moved:cryptography.utils.CryptographyDeprecationWarning"),
]

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "frontdoor"
APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
# The prefixes upstream's kong.yml routes to an API (the rest is Studio's).
API_PREFIXES = ("/auth/v1/", "/rest/v1/", "/graphql/v1", "/realtime/v1/", "/storage/v1/", "/functions/v1/",
                "/.well-known/oauth-authorization-server")

ORGS: dict[str, dict[str, Any]] = {
    "alpha": {"access": "oidc", "emails": ["alice@example.com"], "groups": ["db-admins"]},
    "bravo": {"access": "oidc", "emails": ["alice@example.com"], "groups": []},
    "charlie": {"access": "saml", "emails": ["carol@example.com"], "groups": ["db-admins"]},
    "delta": {"access": "saml", "emails": ["carol@example.com"], "groups": []},
}
# oidc-provider accounts (the login typed into its form is the account id).
ACCOUNTS = {
    "alice": {"email": "Alice@Example.COM", "email_verified": True, "groups": ["staff"]},
    "bob": {"email": "bob@example.com", "email_verified": True, "groups": ["db-admins", "staff"]},
    "mallory": {"email": "mallory@example.com", "email_verified": True, "groups": ["staff"]},
    # alice's address, not verified by the provider: proves nothing.
    "eve": {"email": "alice@example.com", "email_verified": False, "groups": []},
}
CAROL = {"name_id": "carol", "email": ["Carol@Example.com"], "groups": ["staff"]}
DAVE = {"name_id": "dave", "email": ["dave@example.com"], "groups": ["db-admins"]}
MALLORY = {"name_id": "mallory", "email": ["mallory@example.com"], "groups": ["staff"]}


# -- the stand-in gateway ---------------------------------------------------------------
class Gateway:
    """Kong + Studio of one org: API prefixes answer without credentials; every other path only
    with the dashboard's basic credentials. Remembers what it was sent."""

    def __init__(self, org: str, username: str, password: str) -> None:
        self.org = org
        self.expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.seen: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                headers = {k.lower(): v for k, v in self.headers.items()}
                api = path.startswith(API_PREFIXES)
                studio_ok = headers.get("authorization") == outer.expected
                outer.seen.append({"path": self.path, "headers": headers, "api": api, "studio": studio_ok})
                if api:
                    status, body = 200, f"api of {outer.org}: {path}"
                elif studio_ok:
                    status, body = 200, f"studio of {outer.org}: {path}"
                else:
                    status, body = 401, "dashboard credentials needed"
                data = body.encode()
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="studio"')
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def studio_hits(self) -> list[dict[str, Any]]:
        return [s for s in self.seen if not s["api"]]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the harness --------------------------------------------------------------------------
@dataclass
class Org:
    name: str
    access: str
    hostname: str
    studio: dict[str, Any]
    gateway: Gateway
    dir: Path

    def url(self, port: int, path: str = "/project/default") -> str:
        return f"https://{self.hostname}:{port}{path}"


@dataclass
class Gate:
    root: Path
    port: int
    ca: str
    orgs: dict[str, Org]
    saml: SamlTestIdP
    oidc_issuer: str
    ansible_output: str
    apache: subprocess.Popen[bytes]
    extra: dict[str, Any] = field(default_factory=dict)

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # the test CA, not REQUESTS_CA_BUNDLE; no proxy for loopback
        s.verify = self.ca
        return s

    def error_log(self) -> str:
        return (self.root / "error.log").read_text(errors="replace")


def _apache_conf(root: Path, port: int, orgs: dict[str, Org], cert: Path, key: Path) -> str:
    mods = ["mpm_event", "authn_core", "authz_core", "authz_user", "headers", "proxy", "proxy_http", "ssl",
            "socache_shmcb", "auth_openidc", "auth_mellon"]
    loads = "\n".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in mods)
    hosts = "\n".join(f"""
<VirtualHost 127.0.0.1:{port}>
    ServerName {o.hostname}
    SSLEngine on
    SSLCertificateFile {cert}
    SSLCertificateKeyFile {key}
    ProxyRequests Off
    ProxyPreserveHost On
    ProxyPass "/" "http://127.0.0.1:{o.gateway.port}/"
    ProxyPassReverse "/" "http://127.0.0.1:{o.gateway.port}/"
    Include {o.dir}/vhost-gate.conf
</VirtualHost>""" for o in orgs.values())
    return f"""ServerRoot "{root}"
ServerName localhost
DefaultRuntimeDir "{root}/run"
PidFile "{root}/run/httpd.pid"
Mutex file:{root}/run default
ErrorLog "{root}/error.log"
LogLevel warn auth_openidc:info auth_mellon:info
User www-data
Group www-data
{loads}
StartServers 2
ServerLimit 2
ThreadsPerChild 8
MaxRequestWorkers 16
Listen 127.0.0.1:{port} https
SSLSessionCache none
SSLStrictSNIVHostCheck on
<VirtualHost 127.0.0.1:{port}>
    ServerName default.invalid
    SSLEngine on
    SSLCertificateFile {cert}
    SSLCertificateKeyFile {key}
    <Location "/">
        Require all denied
    </Location>
</VirtualHost>
{hosts}
"""


PLAYBOOK = """\
- hosts: all
  connection: local
  gather_facts: false
  handlers:
    - name: Reload Apache
      ansible.builtin.debug:
        msg: the test starts its own Apache
  tasks:
    - name: The role's gate files
      ansible.builtin.include_tasks: {tasks}
    - name: The role's gate snippet, as the virtual host includes it
      ansible.builtin.template:
        src: {templates}/studio_{{{{ frontdoor__studio.access }}}}.conf.j2
        dest: "{{{{ frontdoor__r_dir }}}}/vhost-gate.conf"
        mode: "0644"
"""


ROLE_VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())


def write_playbook(root: Path, orgs: dict[str, Org]) -> None:
    inv = root / "inventory"
    (inv / "host_vars").mkdir(parents=True, exist_ok=True)
    (inv / "hosts.yml").write_text(json.dumps({"all": {"hosts": {o.name: {} for o in orgs.values()}}}))
    for o in orgs.values():
        hv = inv / "host_vars" / f"{o.name}.yml"
        hv.write_text(json.dumps({
            "ansible_connection": "local", "ansible_python_interpreter": HOST_PYTHON,
            "frontdoor__org": o.name, "frontdoor__hostname": o.hostname, "frontdoor__r_dir": str(o.dir),
            "frontdoor__base_dir": str(o.dir.parent),
            "frontdoor__studio": o.studio,
            # The one derived value the gate's templates read from vars/main.yml, which this play
            # does not load (its other derived paths would win over the ones set here).
            "frontdoor__r_api_prefixes": ROLE_VARS["frontdoor__r_api_prefixes"],
        }))
        hv.chmod(0o600)
    (root / "play.yml").write_text(PLAYBOOK.format(tasks=ROLE / "tasks" / "studio.yml", templates=ROLE / "templates"))


def start_playbook(root: Path, *, check: bool = False) -> subprocess.Popen[str]:
    """ansible-playbook on the files write_playbook wrote; the caller waits (communicate)."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_RETRY_FILES_ENABLED": "0"}
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(root / "inventory" / "hosts.yml"), str(root / "play.yml"),
           "--diff", "-v"] + (["--check"] if check else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root)


def finish_playbook(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_playbook(root: Path, orgs: dict[str, Org], *, check: bool = False) -> subprocess.CompletedProcess[str]:
    write_playbook(root, orgs)
    return finish_playbook(start_playbook(root, check=check))


def _wait_listening(port: int, proc: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"apache2 exited: {(root / 'error.log').read_text(errors='replace')[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("apache2 did not listen")


@pytest.fixture(scope="module")
def gate() -> Iterator[Gate]:
    if not (Path(APACHE).exists() and (MODULES / "mod_auth_openidc.so").exists() and (MODULES / "mod_auth_mellon.so").exists()):
        pytest.skip("needs apache2, libapache2-mod-auth-openidc and libapache2-mod-auth-mellon")
    ensure_oidc_idp_installed()
    # Apache's children (www-data) read the IdP's metadata: a root they can traverse (pytest's
    # own temporary directories are 0700).
    root = Path(tempfile.mkdtemp(prefix="sfp-studio-gate-"))
    root.chmod(0o755)
    (root / "run").mkdir()
    port = free_port()
    hostnames = {name: f"{name}.sfp.test" for name in ORGS}
    ca = CA()
    ca_path = ca.write(root / "ca.pem")
    leaf = ca.issue(*hostnames.values(), "default.invalid")
    cert, key = root / "server.pem", root / "server.key"
    cert.write_text(leaf.chain_pem)
    key.write_text(leaf.key_pem)
    key.chmod(0o600)

    clients = [{"client_id": f"studio-{n}", "client_secret": secrets.token_hex(24),
                "redirect_uris": [f"https://{hostnames[n]}:{port}/sfp-frontdoor/oidc/callback"]}
               for n, spec in ORGS.items() if spec["access"] == "oidc"]
    idp = start_oidc_idp(clients=clients, accounts=ACCOUNTS)
    idp_proc, issuer = idp.process, idp.issuer
    saml = SamlTestIdP(root)
    cleanup: list[Any] = [lambda: stop(idp_proc), saml.close]
    apache: subprocess.Popen[bytes] | None = None
    try:
        orgs: dict[str, Org] = {}
        for name, spec in ORGS.items():
            username, password = f"dash-{name}", secrets.token_urlsafe(24)
            gw = Gateway(name, username, password)
            cleanup.append(gw.close)
            studio: dict[str, Any] = {
                "access": spec["access"], "allow": {"emails": spec["emails"], "groups": spec["groups"]},
                "email_claim": "email", "groups_claim": "groups",
                "session_secret": secrets.token_urlsafe(48),
                "dashboard_username": username, "dashboard_password": password,
            }
            if spec["access"] == "oidc":
                client = next(c for c in clients if c["client_id"] == f"studio-{name}")
                studio.update(issuer=issuer, client_id=client["client_id"], client_secret=client["client_secret"],
                              scopes=["openid", "email", "groups"], allow_insecure_loopback=True)
            else:
                now = datetime.now(UTC)
                k, c = make_key_and_cert(root, not_before=now - timedelta(days=1), not_after=now + timedelta(days=30),
                                         cn=f"Studio SP {hostnames[name]}", stem=f"sp-{name}")
                studio.update(idp_metadata=saml.metadata_xml, sp_key=k.read_text(), sp_cert=c.read_text())
                k.unlink()
            orgs[name] = Org(name, spec["access"], hostnames[name], studio, gw, root / "etc" / name)
            orgs[name].dir.mkdir(parents=True, mode=0o700)
        result = run_playbook(root, orgs)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-6000:]
        (root / "httpd.conf").write_text(_apache_conf(root, port, orgs, cert, key))
        test = subprocess.run([APACHE, "-d", str(root), "-f", str(root / "httpd.conf"), "-t"], capture_output=True, text=True)
        assert test.returncode == 0, test.stderr
        apache = subprocess.Popen([APACHE, "-d", str(root), "-f", str(root / "httpd.conf"), "-DFOREGROUND"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        _wait_listening(port, apache, root)
        g = Gate(root, port, str(ca_path), orgs, saml, issuer, output, apache)
        with loopback_names(*hostnames.values()):
            # The IdP's administrator trusts each SAML org by its metadata, served by the front door.
            for o in orgs.values():
                if o.access == "saml":
                    r = g.session().get(o.url(port, "/sfp-frontdoor/saml/metadata"), timeout=10)
                    assert r.status_code == 200, (r.status_code, r.text[:500], g.error_log()[-3000:])
                    g.extra[f"{o.name}_sp_metadata"] = r.text
                    saml.add_sp(r.text)
            yield g
    finally:
        if apache is not None and apache.poll() is None:
            apache.send_signal(signal.SIGTERM)
            try:
                apache.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(apache.pid, signal.SIGKILL)
                apache.wait(timeout=5)
        if apache is not None and apache.stderr:
            apache.stderr.close()
        for close in reversed(cleanup):
            close()
        shutil.rmtree(root, ignore_errors=True)


def _is_idp_redirect(r: requests.Response, gate: Gate, session: requests.Session | None = None) -> bool:
    """A redirect to the IdP, or to the gate's own login endpoint (mod_auth_mellon's first hop)
    that redirects to the IdP."""
    loc = r.headers.get("location", "")
    if r.status_code not in (302, 303):
        return False
    if urlsplit(loc).path.startswith("/sfp-frontdoor/saml/login"):
        r = (session or gate.session()).get(loc, allow_redirects=False, timeout=10)
        loc = r.headers.get("location", "") if r.status_code in (302, 303) else ""
    return loc.startswith((gate.oidc_issuer, gate.saml.base))


def _studio_body(org: Org) -> str:
    return f"studio of {org.name}:"


# -- without a session -----------------------------------------------------------------------
@pytest.mark.parametrize("org", list(ORGS))
def test_studio_needs_a_login_and_the_api_does_not(gate: Gate, org: str) -> None:
    o = gate.orgs[org]
    s = gate.session()
    before = len(o.gateway.studio_hits())
    r = s.get(o.url(gate.port), allow_redirects=False, timeout=10)
    assert _is_idp_redirect(r, gate), (r.status_code, r.headers, r.text[:300])
    assert len(o.gateway.studio_hits()) == before  # Studio never saw the request
    for path in ("/auth/v1/health", "/rest/v1/todos?select=*", "/graphql/v1", "/realtime/v1/api/ping",
                 "/storage/v1/object/public/a/b.png", "/functions/v1/hello",
                 "/.well-known/oauth-authorization-server"):
        r = s.get(o.url(gate.port, path), allow_redirects=False, timeout=10,
                  headers={"Authorization": "Bearer app-jwt", "apikey": "anon"})
        assert r.status_code == 200 and r.text.startswith(f"api of {org}:"), (path, r.status_code, r.text[:200])
        # The app's own Authorization reaches Kong untouched: no dashboard credentials on API paths.
        assert o.gateway.seen[-1]["headers"]["authorization"] == "Bearer app-jwt"


@pytest.mark.parametrize("org", list(ORGS))
def test_basic_auth_alone_no_longer_opens_studio(gate: Gate, org: str) -> None:
    o = gate.orgs[org]
    creds = (o.studio["dashboard_username"], o.studio["dashboard_password"])
    before = len(o.gateway.studio_hits())
    r = gate.session().get(o.url(gate.port), auth=creds, allow_redirects=False, timeout=10)
    assert _is_idp_redirect(r, gate), (r.status_code, r.text[:200])
    assert len(o.gateway.studio_hits()) == before


# Targets sent verbatim: none may reach a Studio path of the gateway without a login.
TRICKS = [
    "/auth/v1/../project/default",
    "/auth/v1/%2e%2e/project/default",
    "/auth/v1/%2E%2E/%2E%2E/project",
    "//project/default",
    "///auth/v1/../project",
    "/AUTH/v1/x",
    "/Auth/V1/",
    "/auth/v1",
    "/rest/v1",
    "/auth%2Fv1/x",
    "/auth/v1%2F..%2Fproject",
    "/auth/v1/..%2Fproject",
    "/%61uth/v1/../project",
    "/realtime/v1/../../project",
    "/pg/query",
    "/mcp",
    "/api/platform/profile",
    "/project?next=/auth/v1/",
    "/sfp-frontdoor/../project",
    "/.well-known/../project",
    "/auth/v1/.%2e/project",
]


@pytest.mark.parametrize("org", ["alpha", "charlie"])
def test_path_tricks_do_not_pass_the_gate(gate: Gate, org: str) -> None:
    o = gate.orgs[org]
    creds = base64.b64encode(f"{o.studio['dashboard_username']}:{o.studio['dashboard_password']}".encode()).decode()
    for target in TRICKS:
        before = len(o.gateway.studio_hits())
        status, headers, body = raw_get(o.hostname, gate.port, target, gate.ca, {"Authorization": f"Basic {creds}"})
        reached = o.gateway.studio_hits()[before:]
        assert not reached, (target, status, reached)
        # 401: mod_auth_openidc answers a client that does not look like a browser (no
        # Accept: text/html) with 401 instead of a redirect; the gateway's own 401 would be a hit.
        assert status in (302, 303, 400, 401, 403, 404), (target, status, body[:200])
        if status in (302, 303):
            assert headers["location"].startswith((gate.oidc_issuer, gate.saml.base, o.url(gate.port, "/sfp-frontdoor/saml/login"))), (target, headers)
        assert f"studio of {org}" not in body


# -- OIDC ---------------------------------------------------------------------------------------
def test_oidc_login_opens_studio(gate: Gate) -> None:
    o = gate.orgs["alpha"]
    s = gate.session()
    r = oidc_login(s, o.url(gate.port, "/project/default?tab=sql"), "alice")
    assert r.status_code == 200 and r.text.startswith(_studio_body(o)), (r.status_code, r.url, r.text[:500],
                                                                         gate.error_log()[-3000:])
    hit = o.gateway.seen[-1]
    assert hit["path"] == "/project/default?tab=sql" and hit["studio"]
    # The session cookie stays at the front door; the gateway gets the dashboard's credentials only.
    cookie = f"sfp_studio_{o.name}"
    assert cookie in s.cookies.get_dict(domain=o.hostname) or any(c.name == cookie for c in s.cookies)
    assert cookie not in hit["headers"].get("cookie", "")
    assert not any(k.startswith("oidc_") for k in hit["headers"])
    # A client's own Authorization is replaced on Studio paths...
    r = s.get(o.url(gate.port), headers={"Authorization": "Basic d3Jvbmc6d3Jvbmc="}, timeout=10)
    assert r.status_code == 200 and r.text.startswith(_studio_body(o))
    # ...and left alone on API paths, with the session cookie or without.
    r = s.get(o.url(gate.port, "/rest/v1/todos"), headers={"Authorization": "Bearer user-jwt"}, timeout=10)
    assert r.status_code == 200 and o.gateway.seen[-1]["headers"]["authorization"] == "Bearer user-jwt"
    assert cookie not in o.gateway.seen[-1]["headers"].get("cookie", "")
    gate.extra["alpha_session"] = s


def test_oidc_group_member_gets_in(gate: Gate) -> None:
    o = gate.orgs["alpha"]
    r = oidc_login(gate.session(), o.url(gate.port), "bob")  # db-admins, address not listed
    assert r.status_code == 200 and r.text.startswith(_studio_body(o)), (r.status_code, r.text[:300])


@pytest.mark.parametrize("login", ["mallory", "eve", "bob@bravo"])
def test_oidc_user_outside_the_allow_list_is_refused(gate: Gate, login: str) -> None:
    org, _, user = ("bravo", "", "bob") if login == "bob@bravo" else ("alpha", "", login)
    o = gate.orgs[org]
    before = len(o.gateway.studio_hits())
    r = oidc_login(gate.session(), o.url(gate.port), user)
    assert r.status_code == 403, (login, r.status_code, r.url, r.text[:300])
    assert len(o.gateway.studio_hits()) == before


def _move_cookies(src: requests.Session, src_org: Org, dst: requests.Session, dst_org: Org, rename: dict[str, str]) -> int:
    moved = 0
    for c in src.cookies:
        if c.domain.lstrip(".") == src_org.hostname:
            for old, new in rename.items():
                if c.name.startswith(old):
                    dst.cookies.set(new + c.name[len(old):], c.value, domain=dst_org.hostname, path="/")
                    moved += 1
    return moved


def test_oidc_session_of_one_org_is_refused_by_another(gate: Gate) -> None:
    a, b = gate.orgs["alpha"], gate.orgs["bravo"]
    s = gate.extra.get("alpha_session")
    if s is None:
        s = gate.session()
        assert oidc_login(s, a.url(gate.port), "alice").status_code == 200
    assert s.get(a.url(gate.port), timeout=10).text.startswith(_studio_body(a))
    before = len(b.gateway.studio_hits())
    for rename in ({"sfp_studio_alpha": "sfp_studio_bravo"}, {"sfp_studio_alpha": "sfp_studio_alpha"}):
        other = gate.session()
        assert _move_cookies(s, a, other, b, rename) >= 1
        r = other.get(b.url(gate.port), allow_redirects=False, timeout=10)
        assert _is_idp_redirect(r, gate), (rename, r.status_code, r.text[:300])
    assert len(b.gateway.studio_hits()) == before
    # alice may use bravo too, after her own login there.
    r = oidc_login(s, b.url(gate.port), "alice")
    assert r.status_code == 200 and r.text.startswith(_studio_body(b)), (r.status_code, r.text[:300])


# -- SAML ---------------------------------------------------------------------------------------
def test_saml_sp_metadata_is_published(gate: Gate) -> None:
    xml = gate.extra["charlie_sp_metadata"]
    assert 'entityID="https://charlie.sfp.test/sfp-frontdoor/saml/metadata"' in xml
    assert "/sfp-frontdoor/saml/postResponse" in xml
    assert "PRIVATE KEY" not in xml


def test_saml_login_opens_studio(gate: Gate) -> None:
    o = gate.orgs["charlie"]
    gate.saml.user = CAROL  # listed address, other case
    s = gate.session()
    r = saml_login(s, o.url(gate.port, "/project/default?tab=sql"))
    assert r.status_code == 200 and r.text.startswith(_studio_body(o)), (r.status_code, r.url, r.text[:500],
                                                                         gate.error_log()[-3000:])
    hit = o.gateway.seen[-1]
    assert hit["path"] == "/project/default?tab=sql" and hit["studio"]
    assert "mellon-" not in hit["headers"].get("cookie", "")
    r = s.get(o.url(gate.port), headers={"Authorization": "Basic d3Jvbmc6d3Jvbmc="}, timeout=10)
    assert r.status_code == 200 and r.text.startswith(_studio_body(o))
    r = s.get(o.url(gate.port, "/storage/v1/object/x"), headers={"Authorization": "Bearer user-jwt"}, timeout=10)
    assert r.status_code == 200 and o.gateway.seen[-1]["headers"]["authorization"] == "Bearer user-jwt"
    gate.extra["charlie_session"] = s


def test_saml_group_member_gets_in(gate: Gate) -> None:
    o = gate.orgs["charlie"]
    gate.saml.user = DAVE
    r = saml_login(gate.session(), o.url(gate.port))
    assert r.status_code == 200 and r.text.startswith(_studio_body(o)), (r.status_code, r.text[:300])


@pytest.mark.parametrize("who", ["mallory", "dave@delta"])
def test_saml_user_outside_the_allow_list_is_refused(gate: Gate, who: str) -> None:
    o = gate.orgs["delta" if who == "dave@delta" else "charlie"]
    gate.saml.user = DAVE if who == "dave@delta" else MALLORY
    before = len(o.gateway.studio_hits())
    r = saml_login(gate.session(), o.url(gate.port))
    assert r.status_code == 403, (who, r.status_code, r.url, r.text[:300])
    assert len(o.gateway.studio_hits()) == before


def test_saml_session_of_one_org_is_refused_by_another(gate: Gate) -> None:
    c, d = gate.orgs["charlie"], gate.orgs["delta"]
    s = gate.extra.get("charlie_session")
    if s is None:
        gate.saml.user = CAROL
        s = gate.session()
        assert saml_login(s, c.url(gate.port)).status_code == 200
    assert s.get(c.url(gate.port), timeout=10).text.startswith(_studio_body(c))
    before = len(d.gateway.studio_hits())
    for rename in ({"mellon-sfp-studio-charlie": "mellon-sfp-studio-delta"},
                   {"mellon-sfp-studio-charlie": "mellon-sfp-studio-charlie"}):
        other = gate.session()
        assert _move_cookies(s, c, other, d, rename) >= 1
        r = other.get(d.url(gate.port), allow_redirects=False, timeout=10)
        assert _is_idp_redirect(r, gate), (rename, r.status_code, r.text[:300])
    assert len(d.gateway.studio_hits()) == before
    # Refused by mod_auth_mellon's binding of the session to the cookie's name and domain (both
    # orgs share this Apache's session cache, as orgs of one host do).
    assert "Session cookie parameter mismatch" in gate.error_log()
    # The same cookie still opens charlie's Studio: it is the binding that refused it, not a logout.
    assert s.get(c.url(gate.port), timeout=10).text.startswith(_studio_body(c))


# -- secrets ---------------------------------------------------------------------------------
def test_no_secret_outside_the_0600_files(gate: Gate) -> None:
    values: list[str] = []
    for o in gate.orgs.values():
        st = o.studio
        values += [st["session_secret"], st["dashboard_password"],
                   base64.b64encode(f"{st['dashboard_username']}:{st['dashboard_password']}".encode()).decode()]
        if o.access == "oidc":
            values.append(st["client_secret"])
        else:
            values.append(re.sub(r"-----[A-Z ]+-----|\s", "", st["sp_key"])[-200:-120])  # the private part, not the modulus
    for v in values:
        assert v not in gate.ansible_output
    for o in gate.orgs.values():
        assert (o.dir / "studio").stat().st_mode & 0o777 == 0o700
        for f in (o.dir / "studio").iterdir():
            mode = f.stat().st_mode & 0o777
            text = f.read_text()
            if any(v in text.replace("\n", "") for v in values):
                assert mode == 0o600, f
        gate_conf = (o.dir / "vhost-gate.conf").read_text()
        assert not any(v in gate_conf for v in values)
    assert not any(v in gate.error_log() for v in values)


def test_second_run_changes_nothing_and_check_mode_too(gate: Gate) -> None:
    # Both at once (each run is mostly one controller process waiting on its workers): neither
    # writes anything unless the gate is not idempotent, which the second run's recap shows anyway.
    write_playbook(gate.root, gate.orgs)
    started = {check: start_playbook(gate.root, check=check) for check in (True, False)}
    try:
        for check in (True, False):
            result = finish_playbook(started[check])
            assert result.returncode == 0, result.stdout[-3000:]
            recap = re.findall(r"changed=(\d+)", result.stdout)
            assert recap and all(n == "0" for n in recap), result.stdout[-3000:]
    finally:
        for proc in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
