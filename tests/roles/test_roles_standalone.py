"""Each role stands on its own: run with plain ansible-playbook, inputs validated by its argument spec."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def play(tmp_path: Path, role: str, variables: dict[str, object], *extra: str) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": f"standalone {role}",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {"ansible_python_interpreter": sys.executable},
        "roles": [{"role": role, "vars": variables}],
    }]))
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), *extra],
                          capture_output=True, text=True, env=env, timeout=300)


def recap(out: str) -> dict[str, int]:
    line = next(ln for ln in out.splitlines() if ln.startswith("localhost") and "ok=" in ln)
    return {k: int(v) for k, v in (part.split("=") for part in line.split(":", 1)[1].split())}


def test_docker_engine_verifies_and_is_idempotent(tmp_path: Path) -> None:
    for _ in range(2):
        done = play(tmp_path, "docker_engine", {"docker_engine__install": True})
        assert done.returncode == 0, done.stdout
        assert recap(done.stdout)["changed"] == 0


def test_docker_engine_names_what_is_missing(tmp_path: Path) -> None:
    done = play(tmp_path, "docker_engine", {"docker_engine__min_version": "99.0"})
    assert done.returncode != 0
    assert "Docker Engine 99.0 or newer must run on localhost" in done.stdout
    assert "sfp_docker_install: true" in done.stdout


def test_docker_engine_rejects_bad_input(tmp_path: Path) -> None:
    done = play(tmp_path, "docker_engine", {"docker_engine__source": "snap"})
    assert done.returncode != 0
    assert "docker_engine__source" in done.stdout and "snap" in done.stdout


def test_preflight_reports_a_busy_port_and_changes_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = play(tmp_path, "preflight", {
            "preflight__org": "probe", "preflight__ports": [port],
            "preflight__base_dir": str(tmp_path / "not-yet"), "preflight__min_free_disk_gb": 0.1,
        })
    assert done.returncode != 0
    assert f"in use on 127.0.0.1: {port}" in done.stdout
    assert "preflight failed on probe: ports" in done.stdout
    assert recap(done.stdout)["changed"] == 0
    assert not (tmp_path / "not-yet").exists()


def test_preflight_refuses_limits_the_host_cannot_give(tmp_path: Path) -> None:
    done = play(tmp_path, "preflight", {
        "preflight__org": "big", "preflight__resources": {"db": {"cpus": 512, "memory": "4096g"}},
        "preflight__min_free_disk_gb": 0.1,
    })
    assert done.returncode != 0
    assert "the org's memory limits add up to" in done.stdout
    assert "limited to 512.0 CPUs" in done.stdout


@pytest.mark.parametrize("bad, message", [
    ({"supabase_stack__org": "Bad_Name"}, "is not a DNS label"),
    ({"supabase_stack__release": "v0.0.0"}, "is not in the release catalog"),
    ({"supabase_stack__state": "gone"}, "supabase_stack__state"),
    ({"supabase_stack__secrets": {}}, "secrets lack POSTGRES_PASSWORD, JWT_SECRET, ANON_KEY"),
])
def test_supabase_stack_validates_inputs_before_touching_the_host(tmp_path: Path, bad: dict[str, object], message: str) -> None:
    variables: dict[str, object] = {
        "supabase_stack__org": "probe", "supabase_stack__release": "v0.8.1",
        "supabase_stack__public_url": "http://127.0.0.1:1", "supabase_stack__base_dir": str(tmp_path / "sfp"),
        "supabase_stack__ports": {"api": 1, "postgres": 2, "pooler_transaction": 3},
        "supabase_stack__secrets": {"POSTGRES_PASSWORD": "x"},
    }
    variables.update(bad)
    done = play(tmp_path, "supabase_stack", variables)
    assert done.returncode != 0
    assert message in done.stdout
    assert not (tmp_path / "sfp").exists()


def test_upgrade_prechecks_of_an_org_that_does_not_run_fail_naming_why(tmp_path: Path) -> None:
    org_dir = tmp_path / "orgs" / "ghost"
    org_dir.mkdir(parents=True)
    done = play(tmp_path, "supabase_upgrade", {"supabase_upgrade__org": "ghost", "supabase_upgrade__org_dir": str(org_dir),
                                               "supabase_upgrade__images": ["sfp-test/standin:1", "sfp-test/nope:9"]},
                "--tags", "precheck")
    assert done.returncode != 0, done.stdout
    assert "upgrade pre-checks failed on ghost" in done.stdout
    assert "no container runs: install the org before upgrading it" in done.stdout
    assert "the database container does not answer" in done.stdout
    assert recap(done.stdout)["changed"] == 0


def test_upgrade_role_rejects_bad_input(tmp_path: Path) -> None:
    done = play(tmp_path, "supabase_upgrade", {"supabase_upgrade__org": "ghost", "supabase_upgrade__org_dir": str(tmp_path),
                                               "supabase_upgrade__gate_timeout": "soon"}, "--tags", "precheck")
    assert done.returncode != 0
    assert "supabase_upgrade__gate_timeout" in done.stdout


def test_rotate_role_of_an_org_that_is_not_installed_says_so(tmp_path: Path) -> None:
    done = play(tmp_path, "supabase_rotate", {"supabase_rotate__org": "ghost", "supabase_rotate__org_dir": str(tmp_path),
                                              "supabase_rotate__names": ["POSTGRES_PASSWORD"]})
    assert done.returncode != 0, done.stdout
    assert "ghost has no compose.yaml" in done.stdout and "it is not installed there" in done.stdout
    assert recap(done.stdout)["changed"] == 0


@pytest.mark.parametrize(("names", "message"), [
    ([], "supabase_rotate__names must list the vault names being rotated"),
    (["postgres_password; drop"], "supabase_rotate__names must list the vault names being rotated"),
])
def test_rotate_role_rejects_bad_names(tmp_path: Path, names: list[str], message: str) -> None:
    done = play(tmp_path, "supabase_rotate", {"supabase_rotate__org": "ghost", "supabase_rotate__org_dir": str(tmp_path),
                                              "supabase_rotate__names": names})
    assert done.returncode != 0 and message in done.stdout, done.stdout
    assert recap(done.stdout)["changed"] == 0
