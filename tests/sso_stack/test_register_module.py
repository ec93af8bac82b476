"""The supabase_sso role's registration (read on the org's host, plan on the controller, apply on the
org's host), run by ansible-playbook against the recording admin-API stand-in of tests/sso (no
Docker): check mode writes nothing, a second run writes nothing, a rotated client secret is sent,
removal deletes, a bad IdP fails before any write, an Auth error names the provider, no secret is
printed, and the controller-side planning never receives a secret value."""

from __future__ import annotations

import json
import os
import re
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
- hosts: org
  gather_facts: false
  roles:
    - supabase_sso
  post_tasks:
    - ansible.builtin.copy:
        content: "{{ {'plan': supabase_sso__r_plan | default({}), 'apply': supabase_sso__r_apply | default({})} | to_json }}"
        dest: "{{ out }}"
      check_mode: false
      changed_when: false
      no_log: true
"""


@pytest.fixture
def standin() -> Iterator[GoTrueAdminStandIn]:
    s = GoTrueAdminStandIn(KEY)
    yield s
    s.close()


@pytest.fixture(scope="module")
def idp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    http = LoopbackHTTP()
    idp = build_saml_idp(tmp_path_factory.mktemp("idp"), http)
    yield idp.metadata_url
    http.close()


def run(tmp_path: Path, standin: GoTrueAdminStandIn, settings: dict[str, Any], *, check: bool = False,
        rotate: list[str] | None = None, remove: list[str] | None = None,
        secret: str = "first-secret") -> tuple[int, dict[str, Any], str, int]:
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    out = tmp_path / "result.json"
    out.unlink(missing_ok=True)
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({
        "supabase_sso__api_url": standin.url, "supabase_sso__settings": settings,
        "supabase_sso__secrets": {"SERVICE_ROLE_KEY": KEY, "SSO_CORP_OIDC_CLIENT_SECRET": secret,
                                  "POSTGRES_PASSWORD": "not-for-auth-0123"},
        "supabase_sso__rotate_secrets": rotate or [], "supabase_sso__remove": remove or [], "out": str(out),
    }))
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "ANSIBLE_NOCOLOR": "1",
           # The role's report (set_stats sfp_report) printed at the end of the run.
           "ANSIBLE_SHOW_CUSTOM_STATS": "1"}
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "org,", "-c", "local",
           "-e", f"@{extra}", "-e", f"ansible_python_interpreter={sys.executable}", str(play)]
    if check:
        cmd.append("--check")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    log = done.stdout + done.stderr
    recap = re.search(r"org\s*:\s*ok=\d+\s+changed=(\d+)", log)
    return done.returncode, json.loads(out.read_text()) if out.exists() else {}, log, int(recap.group(1)) if recap else -1


def settings_for(idp_url: str) -> dict[str, Any]:
    return {"allow_insecure_loopback": True,
            "saml": [{"name": "corp", "metadata_url": idp_url, "domains": ["corp.example"]}],
            "oidc": [{"name": "corp-oidc", "provider": "custom", "issuer": "https://idp.corp.example", "client_id": "sb"}]}


def test_role_is_idempotent_and_honours_check_mode(tmp_path: Path, standin: GoTrueAdminStandIn, idp_url: str) -> None:
    settings = settings_for(idp_url)
    rc, res, log, changed = run(tmp_path, standin, settings, check=True)
    assert rc == 0, log
    assert changed == 1 and res["apply"]["writes"] == 2 and res["apply"]["applied"] is False
    assert [r.method for r in standin.requests] == ["GET", "GET"] and not standin.saml

    rc, res, log, changed = run(tmp_path, standin, settings)
    assert rc == 0 and changed == 1, log
    assert [r["action"] for r in res["apply"]["results"]] == ["created", "created"]
    # Ids of created providers come from Auth's answers on the host.
    assert res["apply"]["results"][0]["provider_id"] in standin.saml
    assert len(standin.saml) == 1 and list(standin.custom) == ["custom:corp-oidc"]
    assert standin.custom_secrets["custom:corp-oidc"] == "first-secret"
    assert "first-secret" not in log and KEY not in log and "not-for-auth" not in log
    # The plan made on the controller holds no secret value, only the vault key to fill in.
    assert "first-secret" not in json.dumps(res["plan"]) and KEY not in json.dumps(res["plan"])
    assert res["plan"]["secret_keys"] == ["SSO_CORP_OIDC_CLIENT_SECRET"]
    report = re.search(r'writes: "?(\d+)', log)
    assert report and report.group(1) == "2", log

    standin.requests.clear()
    rc, res, log, changed = run(tmp_path, standin, settings)
    assert rc == 0 and changed == 0, log
    assert res["plan"]["writes"] == 0 and res["apply"].get("skipped") is True
    assert not standin.writes
    rc, res, log, changed = run(tmp_path, standin, settings, check=True)
    assert rc == 0 and changed == 0, log

    rc, res, log, changed = run(tmp_path, standin, settings, rotate=["corp-oidc"], secret="second-secret")
    assert rc == 0 and changed == 1, log
    assert [(w.method, sorted(w.body)) for w in standin.writes] == [("PUT", ["client_secret"])]
    assert standin.custom_secrets["custom:corp-oidc"] == "second-secret"
    assert "second-secret" not in log

    # Removal takes the named providers out of Auth (and only those), and is idempotent too.
    standin.requests.clear()
    rc, res, log, changed = run(tmp_path, standin, settings, remove=["corp", "corp-oidc"])
    assert rc == 0 and changed == 1, log
    assert sorted((r["name"], r["action"]) for r in res["apply"]["results"]) == [("corp", "removed"), ("corp-oidc", "removed")]
    assert [w.method for w in standin.writes] == ["DELETE", "DELETE"]
    assert not standin.saml and not standin.custom
    rc, res, log, changed = run(tmp_path, standin, settings, remove=["corp", "corp-oidc"])
    assert rc == 0 and changed == 0, log
    assert sorted(r["action"] for r in res["plan"]["results"]) == ["absent", "absent"]


def test_bad_idp_and_auth_errors_are_named(tmp_path: Path, standin: GoTrueAdminStandIn, idp_url: str) -> None:
    settings = settings_for(idp_url)
    # A bad IdP (here: a different entityID than pinned) fails before anything is written.
    settings["saml"][0]["expected_entity_id"] = "https://other.example/idp"
    rc, _, log, _ = run(tmp_path, standin, settings)
    assert rc != 0 and "SAML provider corp" in log and "entityID" in log
    assert not standin.writes
    # Auth refusing a write: the message names the provider, the request and Auth's reason.
    del settings["saml"][0]["expected_entity_id"]
    standin.requests.clear()
    real = standin.dispatch

    def refuse_posts(rec: Any) -> tuple[int, Any]:
        if rec.method == "POST" and rec.path.endswith("/custom-providers"):
            return 400, {"code": 400, "error_code": "validation_failed", "msg": "issuer is not reachable"}
        return real(rec)

    standin.dispatch = refuse_posts  # type: ignore[method-assign]
    rc, _, log, _ = run(tmp_path, standin, settings)
    assert rc != 0, log
    assert "OIDC provider corp-oidc" in log and "HTTP 400" in log and "issuer is not reachable" in log, log
    assert "first-secret" not in log and KEY not in log
    # A vault without the client secret is refused on the controller, naming the vault key.
    standin.dispatch = real  # type: ignore[method-assign]
    settings["oidc"][0]["name"] = "other"
    rc, _, log, _ = run(tmp_path, standin, settings)
    assert rc != 0 and "SSO_OTHER_CLIENT_SECRET" in log, log
    # A wrong service_role key: Auth's 401 is explained.
    standin.key = "another-key"
    rc, _, log, _ = run(tmp_path, standin, settings_for(idp_url))
    assert rc != 0 and "HTTP 401" in log and "service_role key" in log, log
