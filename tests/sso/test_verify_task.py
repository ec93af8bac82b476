"""roles/supabase_sso/tasks/verify.yml reads Auth's environment from the compose file as YAML.

Run by ansible-playbook against compose files written the ways supabase_stack may write them
(plain keys, or every key and value quoted): only a GOTRUE_SAML_ENABLED that is really "true" passes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def run_verify(tmp_path: Path, compose: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "compose.yaml").write_text(compose)
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"ansible_python_interpreter": sys.executable, "supabase_sso__settings": {"saml": [{"name": "a"}]},
                 "supabase_sso__compose_file": str(tmp_path / "compose.yaml")},
        "tasks": [{"ansible.builtin.include_tasks": str(REPO / "roles" / "supabase_sso" / "tasks" / "verify.yml")}],
    }]))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "0"}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(play)], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.parametrize("line", ['GOTRUE_SAML_ENABLED: "true"', '"GOTRUE_SAML_ENABLED": "true"'])
def test_saml_switched_on_passes_however_quoted(tmp_path: Path, line: str) -> None:
    done = run_verify(tmp_path, f"services:\n  auth:\n    environment:\n      {line}\n")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("compose", [
    'services:\n  auth:\n    environment:\n      "GOTRUE_SAML_ENABLED": "false"\n',
    'services:\n  auth:\n    environment:\n      "X_NOTE": "GOTRUE_SAML_ENABLED: \\"true\\""\n',
    "services: {}\n",
])
def test_saml_switched_off_fails_with_the_fix(tmp_path: Path, compose: str) -> None:
    done = run_verify(tmp_path, compose)
    assert done.returncode != 0
    assert "does not set GOTRUE_SAML_ENABLED=true" in done.stdout + done.stderr
