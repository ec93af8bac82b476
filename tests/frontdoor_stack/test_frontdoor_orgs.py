"""The TLS front door in front of real orgs: `sfp-server install` with sfp_org.hostname puts the
shared deployment's two orgs (test image catalog: real PostgreSQL, stand-ins for the gateway,
Realtime and Storage, which prove the routing, not upstream's behaviour) behind the host's real
Apache httpd, each on its own name with a certificate from a CA this test makes; orga's Studio
behind its OpenID provider (oidc-provider), orgb's behind its SAML IdP (pysaml2), both set up by
`install` from the inventory.

Runs last of the shared deployment's tests (tests/conftest.py): it changes the orgs' public URL,
and its clean-up uninstalls them from the front door and the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
import yaml
from rich.console import Console

from installer import frontdoor
from installer.actions import deploy, secrets, status
from installer.context import read_secrets, write_secrets
from installer.inventory import Inventory
from tests.conftest import write_yaml
from tests.frontdoor import client, pki
from tests.frontdoor.apache_lock import apache_lock
from tests.frontdoor.conftest import wait_for
from tests.frontdoor.login import loopback_names, oidc_login, saml_login
from tests.frontdoor.saml_idp import SamlTestIdP
from tests.sso.idp_fixtures import ensure_oidc_idp_installed, start_oidc_idp, stop
from tests.stack.conftest import docker
from tests.stack_shared import ORG_A, ORG_B, SharedDeployment

NAMES = {ORG_A: f"{ORG_A}.sfp.test", ORG_B: f"{ORG_B}.sfp.test"}
HTTPS, HTTP = 443, 80
SITES = Path("/etc/apache2/sites-enabled")

# pysaml2 7.5 (the SAML IdP) touches a cryptography symbol deprecated upstream; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:CFB has been moved:cryptography.utils.CryptographyDeprecationWarning")


def console() -> Console:
    return Console(record=True, width=200, file=open(os.devnull, "w"))


def set_org(inv_path: Path, org: str, **changes: object) -> None:
    """Change the org's settings in host_vars/<org>/main.yml (None removes a key)."""
    path = inv_path / "host_vars" / org / "main.yml"
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            data["sfp_org"].pop(key, None)
        else:
            data["sfp_org"][key] = value
    write_yaml(path, data)


def headers_of(values: dict[str, str]) -> dict[str, str]:
    return {"apikey": values["ANON_KEY"], "Authorization": f"Bearer {values['ANON_KEY']}"}


def container_env(project: str, service: str) -> dict[str, str]:
    name = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                  "--filter", f"label=com.docker.compose.service={service}").stdout.split()[0]
    env = json.loads(docker("inspect", "--format", "{{json .Config.Env}}", name).stdout)
    return dict(e.split("=", 1) for e in env)


@pytest.fixture
def host_apache() -> Iterator[None]:
    """The machine's one Apache, for this test alone: another pytest run's front door tests wait
    (tests/frontdoor/conftest.py takes the same lock)."""
    with apache_lock():
        yield


def test_two_orgs_on_their_own_names_behind_one_front_door(shared_orgs: SharedDeployment, host_apache: None,
                                                            tmp_path: Path) -> None:
    ca = pki.TestCA()
    ca_file = ca.write(tmp_path / "ca.pem")
    inv_path = shared_orgs.inv_path
    leaves = {}
    for org, name in NAMES.items():
        leaves[org] = ca.issue(name, days=20)
        set_org(inv_path, org, hostname=name, tls={"source": "provided"}, public_url=None)
        inv = Inventory(inv_path, inv_path / ".vault-pass")
        secrets.set_value(inv, org, "TLS_CERTIFICATE", leaves[org].chain_pem)
        secrets.set_value(inv, org, "TLS_PRIVATE_KEY", leaves[org].key_pem)
    stack = ExitStack()
    try:
        outcome = deploy.install(shared_orgs.fresh(), [ORG_A, ORG_B], console())
        assert outcome.result.ok, (outcome.result.failures, outcome.result.stdout_tail)
        values = {org: secrets.read(shared_orgs.fresh(), org) for org in NAMES}
        direct_status: dict[str, int] = {}

        for org, name in NAMES.items():
            # Each name gets its own certificate, and it verifies against the test CA.
            assert client.peer_cert(name, HTTPS).serial_number == leaves[org].serial
            # Plain HTTP goes to HTTPS, on the same name and path.
            plain = client.plain(name, HTTP, "/rest/v1/?select=1")
            assert plain.status in (301, 308), plain.status
            assert plain.headers["Location"] == f"https://{name}/rest/v1/?select=1"
            # An API request with the org's key reaches the org's gateway: what the gateway answers
            # directly, the front door answers, HSTS added; without the key the gateway refuses.
            path, headers = "/rest/v1/", headers_of(values[org])
            direct = requests.get(shared_orgs.api_url(org) + path, headers=headers, timeout=20)
            direct_status[org] = direct.status_code
            via = client.request(name, HTTPS, path, ca=ca_file, headers=headers)
            assert (via.status, via.body) == (direct.status_code, direct.content), (via.status, via.body[:300])
            assert via.headers["Strict-Transport-Security"].startswith("max-age=")
            assert client.request(name, HTTPS, path, ca=ca_file).status == 401
            # A websocket upgrade on /realtime/v1 reaches the org's Realtime service.
            ws = client.websocket(name, HTTPS, ca=ca_file,
                                  path=f"/realtime/v1/websocket?apikey={values[org]['ANON_KEY']}&vsn=1.0.0")
            ws.close()
            # Studio stays behind the gateway's basic auth (no studio_access).
            studio = client.request(name, HTTPS, "/project/default", ca=ca_file)
            assert studio.status == 401 and "Basic" in studio.headers.get("WWW-Authenticate", "")
            # Auth knows its public URL: the front door's.
            auth_env = container_env(f"sfp-{org}", "auth")
            assert auth_env["API_EXTERNAL_URL"] == f"https://{name}/auth/v1", auth_env.get("API_EXTERNAL_URL")

        # Storage through the front door: an upload with the service key streams to the org's
        # Storage and comes back the same (the 100 MB, flat-memory upload is tests/frontdoor's).
        data = os.urandom(8 * 1024 * 1024)
        key = values[ORG_A]["SERVICE_ROLE_KEY"]
        auth = {"Authorization": f"Bearer {key}", "apikey": key}
        put = client.request(NAMES[ORG_A], HTTPS, "/storage/v1/object/frontdoor/blob.bin", ca=ca_file, method="PUT",
                             body=data, headers={**auth, "Content-Type": "application/octet-stream"})
        assert put.status == 200, put.body[:300]
        got = client.request(NAMES[ORG_A], HTTPS, "/storage/v1/object/frontdoor/blob.bin", ca=ca_file, headers=auth)
        assert hashlib.sha256(got.body).digest() == hashlib.sha256(data).digest()

        # Studio of orga behind its OpenID provider (the real oidc-provider): Studio's own client,
        # an allow-list; Auth gets the provider too (sso.yml), as `sso add` would have set it up.
        studio_secret = "studio-client-secret-0123456789"
        ensure_oidc_idp_installed()
        idp = start_oidc_idp(
            clients=[{"client_id": "studio-orga", "client_secret": studio_secret,
                      "redirect_uris": [f"https://{NAMES[ORG_A]}/sfp-frontdoor/oidc/callback"]}],
            accounts={"admin@orga.test": {"email": "admin@orga.test", "email_verified": True},
                      "intruder@orga.test": {"email": "intruder@orga.test", "email_verified": True}})
        stack.callback(stop, idp.process)
        write_yaml(inv_path / "host_vars" / ORG_A / "sso.yml", {"sfp_org_sso": {
            "allow_insecure_loopback": True,
            "oidc": [{"name": "corp", "provider": "custom", "issuer": idp.issuer, "client_id": "supabase"}]}})
        inv = shared_orgs.fresh()
        write_secrets(inv, ORG_A, {**read_secrets(inv, ORG_A), "SSO_CORP_CLIENT_SECRET": "auth-client-secret"})
        secrets.set_value(inv, ORG_A, "STUDIO_OIDC_CLIENT_SECRET", studio_secret)
        set_org(inv_path, ORG_A, studio_access={"provider": "corp", "client_id": "studio-orga",
                                                "allow_emails": ["Admin@orga.test"], "scopes": ["openid", "email"]})
        # Studio of orgb behind its SAML IdP (pysaml2): the same provider Auth gets, its metadata
        # handed over as a file, as `sso add --metadata-file` keeps it.
        saml = SamlTestIdP(tmp_path)
        stack.callback(saml.close)
        metadata = inv_path / ".sso-metadata" / ORG_B / "corp.xml"
        metadata.parent.mkdir(parents=True, exist_ok=True)
        metadata.write_text(saml.metadata_xml)
        write_yaml(inv_path / "host_vars" / ORG_B / "sso.yml", {"sfp_org_sso": {"allow_insecure_loopback": True, "saml": [
            {"name": "corp", "metadata_file": f".sso-metadata/{ORG_B}/corp.xml", "domains": ["orgb.test"]}]}})
        set_org(inv_path, ORG_B, studio_access={"provider": "corp", "allow_emails": ["carol@orgb.test"]})
        gated = deploy.install(shared_orgs.fresh(), [ORG_A, ORG_B], console())
        assert gated.result.ok, (gated.result.failures, gated.result.stdout_tail)
        studio_url = f"https://{NAMES[ORG_A]}/project/default"
        dashboard = (values[ORG_A]["DASHBOARD_USERNAME"], values[ORG_A]["DASHBOARD_PASSWORD"])
        with loopback_names(*NAMES.values()), requests.Session() as browser:
            # Not the machine's CA bundle from REQUESTS_CA_BUNDLE, which would win over `verify`.
            browser.trust_env, browser.verify = False, str(ca_file)
            # No session: to the provider, even with the right basic credentials.
            for auth in (None, dashboard):
                r = browser.get(studio_url, auth=auth, allow_redirects=False, timeout=20)
                assert r.status_code == 302 and r.headers["Location"].startswith(idp.issuer), (r.status_code, r.headers)
            # The API stays open to apps with their keys.
            api = browser.get(f"https://{NAMES[ORG_A]}/rest/v1/", headers=headers_of(values[ORG_A]), timeout=20)
            assert api.status_code == direct_status[ORG_A], api.text[:300]
            # A full login of an allowed user (the address in another case) opens Studio: the front
            # door signs in to the gateway with the dashboard credentials.
            opened = oidc_login(browser, studio_url, "admin@orga.test")
            assert opened.status_code == 200 and opened.headers.get("X-SFP-Upstream-Stand-In") == "studio", (
                opened.status_code, opened.headers, opened.text[:300])
            # orga's session is worthless on orgb's name: to orgb's own login.
            other = browser.get(f"https://{NAMES[ORG_B]}/project/default", allow_redirects=False, timeout=20)
            assert other.status_code in (302, 303) and "/sfp-frontdoor/saml/login" in other.headers["Location"], (
                other.status_code, other.headers)
        with loopback_names(*NAMES.values()), requests.Session() as stranger:
            stranger.trust_env, stranger.verify = False, str(ca_file)
            refused = oidc_login(stranger, studio_url, "intruder@orga.test")
            assert refused.status_code == 403, (refused.status_code, refused.text[:300])

        # orgb's SAML gate, set up by install: the IdP's administrator trusts the service provider
        # the front door publishes; a listed user gets in, another does not.
        studio_b = f"https://{NAMES[ORG_B]}/project/default"
        with loopback_names(*NAMES.values()), requests.Session() as browser:
            browser.trust_env, browser.verify = False, str(ca_file)
            sp = browser.get(f"https://{NAMES[ORG_B]}/sfp-frontdoor/saml/metadata", timeout=20)
            assert sp.status_code == 200 and f'entityID="https://{NAMES[ORG_B]}/sfp-frontdoor/saml/metadata"' in sp.text
            saml.add_sp(sp.text)
            saml.user = {"name_id": "mallory", "email": ["mallory@orgb.test"]}
            assert saml_login(browser, studio_b).status_code == 403
        with loopback_names(*NAMES.values()), requests.Session() as browser:
            browser.trust_env, browser.verify = False, str(ca_file)
            saml.user = {"name_id": "carol", "email": ["carol@orgb.test"]}
            opened = saml_login(browser, studio_b)
            assert opened.status_code == 200 and opened.headers.get("X-SFP-Upstream-Stand-In") == "studio", (
                opened.status_code, opened.headers, opened.text[:300])
            # orgb's session opens nothing of orga's: to orga's provider.
            other = browser.get(studio_url, allow_redirects=False, timeout=20)
            assert other.status_code == 302 and other.headers["Location"].startswith(idp.issuer), other.status_code

        # status: each org's name, its certificate's expiry and how Studio is guarded.
        rows = {r.org: r for r in status.gather(shared_orgs.fresh(), [ORG_A, ORG_B], console())}
        for org, name in NAMES.items():
            door = rows[org].frontdoor
            assert door is not None and door["hostname"] == name
            assert door["certificate"]["source"] == "provided"
            expires = frontdoor.certificate_info(leaves[org].cert_pem).not_after
            assert door["certificate"]["not_after_iso"][:10] == expires.strftime("%Y-%m-%d")
            assert door["studio_access"] == ("oidc" if org == ORG_A else "saml")

        # A second install changes nothing, at the front door or anywhere else.
        again = deploy.install(shared_orgs.fresh(), [ORG_A, ORG_B], console())
        assert again.result.ok and again.result.changed == 0, again.result.changed_tasks

        # In one install: orga's certificate replaced (`secrets set`, as an operator renews it) while
        # a request loop runs through orga's name, and orgb, which loses its hostname, leaves the
        # front door. The reload drops no request; the loop sees the old certificate, then the new.
        replaced = ca.issue(NAMES[ORG_A], days=40)
        inv = shared_orgs.fresh()
        secrets.set_value(inv, ORG_A, "TLS_CERTIFICATE", replaced.chain_pem)
        secrets.set_value(inv, ORG_A, "TLS_PRIVATE_KEY", replaced.key_pem)
        set_org(inv_path, ORG_B, hostname=None, tls=None, studio_access=None, public_url=shared_orgs.api_url(ORG_B))
        with client.RequestLoop(NAMES[ORG_A], HTTPS, headers=headers_of(values[ORG_A]), ca=ca_file,
                                accept=lambda status, _: status == direct_status[ORG_A]) as loop:
            gone = deploy.install(shared_orgs.fresh(), [ORG_A, ORG_B], console())
            assert gone.result.ok, gone.result.failures
            wait_for(lambda: loop.serials[-1:] == [replaced.serial], what="a request on the replaced certificate")
        assert loop.failures == [], loop.failures[:5]
        assert loop.serials[0] == leaves[ORG_A].serial and set(loop.serials) == {leaves[ORG_A].serial, replaced.serial}
        assert not any(ORG_B in p.name for p in SITES.iterdir())
        with pytest.raises(OSError):
            client.request(NAMES[ORG_B], HTTPS, "/rest/v1/", ca=ca_file)
        assert client.request(NAMES[ORG_A], HTTPS, "/rest/v1/", ca=ca_file).status == 401
    finally:
        stack.close()
        removed = deploy.uninstall(shared_orgs.fresh(), [ORG_A, ORG_B], console(), purge=False)
        subprocess.run(["apache2ctl", "stop"], check=False, capture_output=True)
    assert removed.ok, removed.failures
    # The orgs' sites are gone (tests/frontdoor's own, on other names, are its session's to remove).
    assert not [p.name for p in SITES.iterdir() if any(org in p.name for org in NAMES)]
    assert not Path(f"/etc/sfp-frontdoor/{ORG_A}").exists()
