"""`sso add --metadata-file` with hostile-but-valid metadata, on the real two-org deployment.

The metadata validates (pysaml2's, signed by xmlsec1) and hides an INI inventory in an XML comment
(tests/sso/idp_fixtures.with_inventory_payload). Copied where Ansible parses inventory, its
variables' templates ran `touch SENTINEL` on the controller during the very playbook `sso add` runs.
On orga of the shared deployment, from a known start (`reset_sso`: no provider, no sso.yml), so it
passes in any order with the other tests of the orgs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from installer.sso import xmldsig
from tests.conftest import REPO
from tests.sso.idp_fixtures import SamlIdP, with_inventory_payload
from tests.sso_stack.conftest import SsoDeployment
from tests.sso_stack.test_sso_stack import admin, auth_env, cli, reset_sso, sso_file

pytestmark = pytest.mark.stack


def inventory_listing(inv: Path, config: Path) -> str:
    env = {**os.environ, "ANSIBLE_CONFIG": str(config), "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inv), "--list",
                           "--vault-password-file", str(inv / ".vault-pass")],
                          capture_output=True, text=True, env=env, timeout=300, cwd=inv.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_hostile_metadata_file_is_data_not_inventory(sso_orgs: SsoDeployment, saml_idp: SamlIdP,
                                                     tmp_path: Path) -> None:
    reset_sso(sso_orgs, "orga")
    sentinel = tmp_path / "pwned"
    payload = with_inventory_payload(saml_idp.metadata_xml, sentinel, "orga")
    given = tmp_path / "idp-metadata.xml"
    given.write_text(payload)
    done = cli(sso_orgs.inv_path, "sso", "add", "--org", "orga", "--saml", "--metadata-file", str(given),
               "--name", "filed", "--domain", "filed.example", "--metadata-cert", str(saml_idp.cert_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert not sentinel.exists(), "the metadata was parsed as inventory and its payload ran"
    copy = sso_orgs.inv_path / ".sso-metadata" / "orga" / "filed.xml"
    assert copy.read_text() == payload and not (sso_orgs.inv_path / "sso").exists()
    [item] = yaml.safe_load(sso_file(sso_orgs, "orga").read_text())["sfp_org_sso"]["saml"]
    assert item["metadata_file"] == ".sso-metadata/orga/filed.xml"
    # The pin is kept on one line (every inventory setting is), the certificate's base64 DER.
    assert item["metadata_cert"] == xmldsig.one_line(saml_idp.cert_path.read_text()) and "\n" not in item["metadata_cert"]
    defaults = tmp_path / "defaults.cfg"
    defaults.write_text("[defaults]\n")  # every inventory plugin enabled: the copy is still never read
    for config in (REPO / "ansible.cfg", defaults):
        listing = inventory_listing(sso_orgs.inv_path, config)
        assert set(json.loads(listing)["_meta"]["hostvars"]) == {"orga", "orgb"}
        assert "sfp_pwned" not in listing and str(sentinel) not in listing
    # The provider was registered from the verified metadata, and both commands say it was verified.
    providers = admin(sso_orgs, "orga").list_saml_providers()
    assert [p["saml"]["entity_id"] for p in providers] == [saml_idp.entity_id]
    shown = cli(sso_orgs.inv_path, "sso", "show", "--org", "orga", "filed", "--json")
    assert json.loads(shown.stdout)["metadata_signature"].startswith("signed, verified with the pinned certificate")
    checked = cli(sso_orgs.inv_path, "sso", "check", "--org", "orga", "--json")
    assert checked.returncode == 0, checked.stdout
    [item] = json.loads(checked.stdout)["items"]
    assert item["signature"].startswith("signed, verified with the pinned certificate")

    removed = cli(sso_orgs.inv_path, "sso", "remove", "--org", "orga", "filed")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not copy.exists() and "GOTRUE_SAML_ENABLED" not in auth_env("orga")  # no provider left: SAML off
    assert not sentinel.exists()
