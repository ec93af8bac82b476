"""The per-org knobs reach the rendered stack, through the role alone and through the playbooks.

The role renders (`--tags render`: nothing starts) and the real `docker compose config` resolves
compose.yaml against .env, as the deploy will; each knob must come out in the service it is for.
A site.yml run over a real inventory proves the playbooks hand the roles the validated model
(installer.settings), defaults sized from the org's memory limit included, and that a bad setting
stops a plain ansible-playbook run with the field-naming message `sfp-server validate` gives.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer import secrets
from tests.conftest import org_config, write_yaml
from tests.roles.test_compose_escaping import resolved, text
from tests.roles.test_roles_standalone import BIN, REPO, play, recap
from tests.unit.test_cli import sfp

OPENAI_KEY = "sk-test-$OPENAI'\"key"
SOCKET = "/run/user/1000/docker.sock"


def pg_options(command: list[str]) -> dict[str, str]:
    """The `-c NAME=VALUE` server options of the db container's command."""
    assert command[0] == "postgres"
    pairs = [command[i + 1] for i, arg in enumerate(command) if arg == "-c"]
    assert len(pairs) * 2 == len(command) - 1, command  # nothing but option pairs after `postgres`
    return dict(p.split("=", 1) for p in pairs)


def environment(config: dict[str, Any], service: str) -> dict[str, str]:
    return {k: text(str(v)) for k, v in config["services"][service]["environment"].items()}


@pytest.fixture(scope="module")
def knobs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp_path = tmp_path_factory.mktemp("knobs")
    values, _ = secrets.complete({})
    done = play(tmp_path, "supabase_stack", {
        "supabase_stack__org": "knobs", "supabase_stack__release": "v0.8.1", "supabase_stack__base_dir": str(tmp_path / "sfp"),
        "supabase_stack__public_url": "http://127.0.0.1:1",
        "supabase_stack__ports": {"api": 18101, "postgres": 18102, "pooler_transaction": 18103},
        "supabase_stack__pooler": {"default_pool_size": 37, "max_client_conn": 412},
        "supabase_stack__rest": {"schemas": ["public", "storage", "graphql_public", "api"]},
        "supabase_stack__postgres": {"max_connections": 250, "shared_buffers": "3GB", "work_mem": "8MB",
                                     "effective_cache_size": "9GB"},
        "supabase_stack__functions": {"verify_jwt": True},
        "supabase_stack__docker_socket": SOCKET,
        "supabase_stack__secrets": {**values, "OPENAI_API_KEY": OPENAI_KEY},
    }, "--tags", "render")
    assert done.returncode == 0, done.stdout
    org_dir = tmp_path / "sfp" / "orgs" / "knobs"
    return org_dir, resolved(org_dir)


def test_pooler_limits_reach_supavisor(knobs: tuple[Path, dict[str, Any]]) -> None:
    env = environment(knobs[1], "supavisor")
    assert env["POOLER_DEFAULT_POOL_SIZE"] == "37" and env["POOLER_MAX_CLIENT_CONN"] == "412"


def test_rest_schemas_reach_postgrest_and_studio(knobs: tuple[Path, dict[str, Any]]) -> None:
    for service in ("rest", "studio"):
        assert environment(knobs[1], service)["PGRST_DB_SCHEMAS"] == "public,storage,graphql_public,api"


def test_postgres_tuning_becomes_server_options(knobs: tuple[Path, dict[str, Any]]) -> None:
    options = pg_options(knobs[1]["services"]["db"]["command"])
    assert options == {"config_file": "/etc/postgresql/postgresql.conf", "log_min_messages": "fatal",
                       "max_connections": "250", "shared_buffers": "3GB", "work_mem": "8MB", "effective_cache_size": "9GB"}


def test_functions_verify_jwt(knobs: tuple[Path, dict[str, Any]]) -> None:
    assert environment(knobs[1], "functions")["VERIFY_JWT"] == "true"


def test_openai_key_comes_from_env_file_only(knobs: tuple[Path, dict[str, Any]]) -> None:
    org_dir, config = knobs
    assert environment(config, "studio")["OPENAI_API_KEY"] == OPENAI_KEY
    assert "OPENAI_API_KEY=" in (org_dir / ".env").read_text()
    compose = (org_dir / "compose.yaml").read_text()
    assert "sk-test" not in compose and "OPENAI_API_KEY: ${OPENAI_API_KEY:-}" in compose


def test_log_collector_reads_the_configured_socket(knobs: tuple[Path, dict[str, Any]]) -> None:
    mounts = {(m["source"], m["target"], m.get("read_only", False)) for m in knobs[1]["services"]["vector"]["volumes"]}
    assert (SOCKET, "/var/run/docker.sock", True) in mounts
    assert not any(source == "/var/run/docker.sock" for source, _, _ in mounts)


# -- through the playbooks -------------------------------------------------------------------------
def site(inv: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv), str(REPO / "playbooks" / "site.yml"),
                           "--limit", "acme", "--vault-password-file", str(inv / ".vault-pass"), *extra],
                          capture_output=True, text=True, env=env, timeout=600, cwd=REPO)


def inventory(make_inventory: Callable[..., Path], tmp_path: Path, **org: Any) -> Path:
    return make_inventory({"acme": org_config(18201, 18202, 18203, **org)},
                          settings={"sfp_base_dir": str(tmp_path / "sfp"), "sfp_image_catalog": "test",
                                    "sfp_docker_socket": SOCKET})


def test_the_playbooks_render_the_validated_model(make_inventory: Callable[..., Path], tmp_path: Path) -> None:
    inv = inventory(make_inventory, tmp_path, resources={"db": {"memory": "4g"}}, postgres={"max_connections": 200},
                    pooler={"max_client_conn": 300}, rest={"schemas": ["public", "api"]}, functions={"verify_jwt": True})
    assert sfp("-i", str(inv), "secrets", "ensure", "--org", "acme").returncode == 0
    stored = sfp("-i", str(inv), "secrets", "set", "--org", "acme", "OPENAI_API_KEY", stdin=OPENAI_KEY + "\n")
    assert stored.returncode == 0, stored.stderr
    done = site(inv, "--tags", "render,metrics")
    assert done.returncode == 0, done.stdout + done.stderr
    org_dir = tmp_path / "sfp" / "orgs" / "acme"
    config = resolved(org_dir)
    # The vault's ages (every generated secret, and the key set by hand) reach the textfile.
    metric = (org_dir / "metrics" / "sfp_secrets_acme.prom").read_text()
    changed = [ln for ln in metric.splitlines() if ln.startswith("sfp_secret_changed_timestamp_seconds{")]
    assert {ln.split('secret="')[1].split('"')[0] for ln in changed} == {*secrets.NAMES, "OPENAI_API_KEY"}
    assert all(abs(int(ln.rsplit(" ", 1)[1]) - time.time()) < 600 for ln in changed)
    assert 'sfp_secret_max_age_seconds{org="acme"} 31536000' in metric
    assert OPENAI_KEY not in metric
    # Sized from the 4g limit the org gave its database: 25%, 75%, a quarter over 200 connections.
    options = pg_options(config["services"]["db"]["command"])
    assert {k: options[k] for k in ("shared_buffers", "effective_cache_size", "work_mem", "max_connections")} == \
        {"shared_buffers": "1024MB", "effective_cache_size": "3072MB", "work_mem": "5242kB", "max_connections": "200"}
    assert config["services"]["db"]["deploy"]["resources"]["limits"]["memory"] == str(4 * 1024**3)
    supavisor = environment(config, "supavisor")
    assert (supavisor["POOLER_DEFAULT_POOL_SIZE"], supavisor["POOLER_MAX_CLIENT_CONN"]) == ("20", "300")
    assert environment(config, "rest")["PGRST_DB_SCHEMAS"] == "public,api"
    assert environment(config, "functions")["VERIFY_JWT"] == "true"
    assert environment(config, "studio")["OPENAI_API_KEY"] == OPENAI_KEY
    assert any(m["source"] == SOCKET for m in config["services"]["vector"]["volumes"])
    # Defaults the org did not write come from the schema too (auth's jwt_expiry among them).
    assert environment(config, "auth")["GOTRUE_JWT_EXP"] == "3600"


@pytest.mark.parametrize("org, machine, message", [
    ({"postgres": {"shared_buffers": "lots"}}, {},
     "host_vars/acme: sfp_org.postgres.shared_buffers: 'lots' is not accepted here"),
    ({"auth": {"jwt_expiry": 5}}, {}, "host_vars/acme: sfp_org.auth.jwt_expiry: 5 is less than the minimum of 60"),
    ({}, {"sfp_docker_socket": "/etc:/x"}, "settings of acme: sfp_docker_socket: '/etc:/x' is not accepted here"),
])
def test_a_plain_playbook_run_refuses_a_bad_setting_as_the_cli_does(make_inventory: Callable[..., Path], tmp_path: Path,
                                                                    org: dict[str, Any], machine: dict[str, Any],
                                                                    message: str) -> None:
    inv = inventory(make_inventory, tmp_path, **org)
    if machine:
        group_vars = inv / "group_vars" / "all" / "main.yml"
        write_yaml(group_vars, {**yaml.safe_load(group_vars.read_text()), **machine})
    cli = sfp("-i", str(inv), "validate")
    assert cli.returncode == 2 and message in " ".join(cli.stderr.split()), cli.stderr
    done = site(inv)
    assert done.returncode != 0
    assert message in " ".join(done.stdout.split()), done.stdout
    assert not (tmp_path / "sfp").exists(), "nothing is touched before the settings are valid"


def test_playbooks_and_roles_import_the_toolkit_without_path_tricks() -> None:
    """The filters import the toolkit as the library it is (installed where ansible-playbook runs)."""
    for path in [*(REPO / "playbooks").rglob("*.py"), *(REPO / "roles").rglob("*.py")]:
        assert "sys.path" not in path.read_text(), path


def test_an_org_with_settings_that_no_longer_validate_stays_removable(make_inventory: Callable[..., Path],
                                                                      tmp_path: Path) -> None:
    inv = inventory(make_inventory, tmp_path, postgres={"max_connections": 5})
    assert sfp("-i", str(inv), "secrets", "ensure", "--org", "acme").returncode == 0
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv), str(REPO / "playbooks" / "uninstall.yml"),
                           "--limit", "acme", "--vault-password-file", str(inv / ".vault-pass")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout
    assert "failed=0" in done.stdout


def test_start_services_must_name_services_the_org_runs(tmp_path: Path) -> None:
    """A restore starts [db] first (installer/actions/restore.py); a name the org does not run stops
    the role before anything is rendered, with the services it could name."""
    values, _ = secrets.complete({})
    done = play(tmp_path, "supabase_stack", {
        "supabase_stack__org": "starts", "supabase_stack__release": "v0.8.1", "supabase_stack__base_dir": str(tmp_path / "sfp"),
        "supabase_stack__public_url": "http://127.0.0.1:1",
        "supabase_stack__ports": {"api": 18111, "postgres": 18112, "pooler_transaction": 18113},
        "supabase_stack__services": {"analytics": False},
        "supabase_stack__secrets": values,
        "supabase_stack__start_services": ["db", "analytics"],
    }, "--tags", "render")
    assert done.returncode != 0
    assert "supabase_stack__start_services names analytics, which the org does not run" in done.stdout, done.stdout
    assert "db" in done.stdout.split("use some of", 1)[1].split("\n")[0]
    assert not (tmp_path / "sfp" / "orgs" / "starts").exists()


def test_secret_ages_textfile_is_idempotent_and_leaves_with_the_org(tmp_path: Path) -> None:
    """The role alone: the ages it is given become sfp_secrets_<org>.prom in the metrics directory;
    a second run and a check-mode run change nothing; removing the org removes the file."""
    values, _ = secrets.complete({})
    metrics = tmp_path / "textfile_collector"
    variables: dict[str, Any] = {
        "supabase_stack__org": "ages", "supabase_stack__release": "v0.8.1", "supabase_stack__base_dir": str(tmp_path / "sfp"),
        "supabase_stack__public_url": "http://127.0.0.1:1",
        "supabase_stack__ports": {"api": 18121, "postgres": 18122, "pooler_transaction": 18123},
        "supabase_stack__secrets": values, "supabase_stack__secrets_metrics_dir": str(metrics),
        "supabase_stack__secrets_max_age_days": 90,
        "supabase_stack__secret_ages": {"POSTGRES_PASSWORD": 1700000000, "JWT_SECRET": 1700000100},
    }
    first = play(tmp_path, "supabase_stack", variables, "--tags", "metrics")
    assert first.returncode == 0, first.stdout
    assert (metrics / "sfp_secrets_ages.prom").read_text().splitlines() == [
        "# HELP sfp_secret_changed_timestamp_seconds When the org's secret was made or last changed (sfp-server secrets age).",
        "# TYPE sfp_secret_changed_timestamp_seconds gauge",
        'sfp_secret_changed_timestamp_seconds{org="ages",secret="JWT_SECRET"} 1700000100',
        'sfp_secret_changed_timestamp_seconds{org="ages",secret="POSTGRES_PASSWORD"} 1700000000',
        "# HELP sfp_secret_max_age_seconds The org's maximum secret age (sfp_org.secrets.max_age_days).",
        "# TYPE sfp_secret_max_age_seconds gauge",
        'sfp_secret_max_age_seconds{org="ages"} 7776000',
    ]
    assert oct((metrics / "sfp_secrets_ages.prom").stat().st_mode & 0o777) == "0o644"
    for extra in ((), ("--check",)):
        again = play(tmp_path, "supabase_stack", variables, "--tags", "metrics", *extra)
        assert again.returncode == 0 and recap(again.stdout)["changed"] == 0, again.stdout
    removed = play(tmp_path, "supabase_stack", {**variables, "supabase_stack__state": "absent"}, "--tags", "remove")
    assert removed.returncode == 0, removed.stdout
    assert not (metrics / "sfp_secrets_ages.prom").exists()
