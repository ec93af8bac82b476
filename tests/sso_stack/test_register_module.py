"""The supabase_sso role's registration module, run by ansible-playbook against the recording
admin-API stand-in of tests/sso (no Docker): check mode writes nothing, a second run writes nothing,
a rotated client secret is sent, a bad IdP fails before any write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.sso.gotrue_standin import GoTrueAdminStandIn
from tests.sso.idp_fixtures import LoopbackHTTP, build_saml_idp

KEY = "service-role-key-for-module-tests"
PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - sfp_sso_providers:
        api_url: "{{ api_url }}"
        service_role_key: "{{ key }}"
        settings: "{{ settings }}"
        secrets: "{{ secrets }}"
        rotate_secrets: "{{ rotate | default([]) }}"
        toolkit_path: "{{ toolkit }}"
      register: r
    - copy: {content: "{{ r | to_json }}", dest: "{{ out }}"}
      check_mode: false
"""


@pytest.fixture
def standin() -> Iterator[GoTrueAdminStandIn]:
    s = GoTrueAdminStandIn(KEY)
    yield s
    s.close()


def run(tmp_path: Path, standin: GoTrueAdminStandIn, settings: dict[str, Any], *, check: bool = False,
        rotate: list[str] | None = None, secret: str = "first-secret") -> tuple[int, dict[str, Any], str]:
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    out = tmp_path / "result.json"
    out.unlink(missing_ok=True)
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"api_url": standin.url.removesuffix("/"), "key": KEY, "settings": settings,
                                 "secrets": {"SSO_CORP_OIDC_CLIENT_SECRET": secret}, "rotate": rotate or [],
                                 "toolkit": str(REPO), "out": str(out)}))
    env = {**os.environ, "ANSIBLE_LIBRARY": str(REPO / "roles" / "supabase_sso" / "library"),
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "ANSIBLE_NOCOLOR": "1"}
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", f"@{extra}", "-e", f"ansible_python_interpreter={sys.executable}", str(play)]
    if check:
        cmd.append("--check")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    return done.returncode, json.loads(out.read_text()) if out.exists() else {}, done.stdout + done.stderr


def test_module_is_idempotent_and_honours_check_mode(tmp_path: Path, standin: GoTrueAdminStandIn) -> None:
    http = LoopbackHTTP()
    try:
        idp = build_saml_idp(tmp_path, http)
        settings = {"allow_insecure_loopback": True,
                    "saml": [{"name": "corp", "metadata_url": idp.metadata_url, "domains": ["corp.example"]}],
                    "oidc": [{"name": "corp-oidc", "provider": "custom", "issuer": "https://idp.corp.example",
                              "client_id": "sb"}]}
        rc, res, log = run(tmp_path, standin, settings, check=True)
        assert rc == 0, log
        assert res["changed"] is True and res["writes"] == 2
        assert [r.method for r in standin.requests] == ["GET", "GET"] and not standin.saml

        rc, res, log = run(tmp_path, standin, settings)
        assert rc == 0, log
        assert [r["action"] for r in res["results"]] == ["created", "created"]
        assert len(standin.saml) == 1 and list(standin.custom) == ["custom:corp-oidc"]
        assert "first-secret" not in log and KEY not in log

        standin.requests.clear()
        rc, res, log = run(tmp_path, standin, settings)
        assert rc == 0 and res["changed"] is False and res["writes"] == 0, log
        assert not standin.writes

        rc, res, log = run(tmp_path, standin, settings, rotate=["corp-oidc"], secret="second-secret")
        assert rc == 0 and res["changed"] is True, log
        assert [(w.method, sorted(w.body)) for w in standin.writes] == [("PUT", ["client_secret"])]
        assert standin.custom_secrets["custom:corp-oidc"] == "second-secret"

        # A bad IdP (here: a different entityID than pinned) fails before anything is written.
        standin.requests.clear()
        settings["saml"][0]["expected_entity_id"] = "https://other.example/idp"
        rc, res, log = run(tmp_path, standin, settings)
        assert rc != 0 and "entityID" in log
        assert standin.requests == []
    finally:
        http.close()
