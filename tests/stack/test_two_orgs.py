"""Two orgs on one Docker engine: healthy, isolated, idempotent, removable one at a time.

Runs the very templates and roles of production with the test image catalog (real PostgreSQL
17 and postgres-meta; stand-ins for the other services). One deployment for the module; the tests
that take an org down (uninstall, purge) leave it to the `two_orgs` fixture to install it again
before the next test, so the tests pass in any order.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import jwt
import psycopg
import pytest
import requests
import yaml
from rich.console import Console

from installer import secrets as secret_gen
from installer.actions import deploy, status
from tests.stack.conftest import Deployment, docker, inspect, project_containers

ALL = ["analytics", "auth", "db", "functions", "imgproxy", "kong", "meta", "realtime", "rest", "storage", "studio", "supavisor", "vector"]
CORE = ["auth", "db", "kong", "meta", "realtime", "rest", "storage", "studio", "supavisor"]


def quiet() -> Console:
    return Console(record=True, width=200, file=open(os.devnull, "w"))


def cli(inv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "installer.cli", "-i", str(inv), *args],
        capture_output=True, text=True, timeout=900,
    )


def pg_connect(port: int, password: str) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=port, user="postgres", password=password, dbname="postgres", connect_timeout=5)


def test_both_orgs_are_healthy(two_orgs: Deployment) -> None:
    rows = wait_healthy(two_orgs, ["alpha", "beta"])
    assert rows["alpha"].verdict == "healthy", rows["alpha"]
    assert rows["beta"].verdict == "healthy", rows["beta"]
    assert sorted(s.service for s in rows["alpha"].services) == ALL
    assert sorted(s.service for s in rows["beta"].services) == CORE
    assert rows["alpha"].release == "v0.8.1" and rows["alpha"].image_catalog == "test"
    for s in rows["alpha"].services:
        assert s.state == "running"


def test_each_database_accepts_only_its_own_org_credentials(two_orgs: Deployment) -> None:
    a, b = two_orgs.secrets("alpha"), two_orgs.secrets("beta")
    assert a["POSTGRES_PASSWORD"] != b["POSTGRES_PASSWORD"]
    with pg_connect(two_orgs.ports["alpha"]["postgres"], a["POSTGRES_PASSWORD"]) as conn:
        assert conn.execute("select current_user").fetchone() == ("postgres",)
        roles = {r[0] for r in conn.execute("select rolname from pg_roles")}
        assert {"supabase_admin", "authenticator", "anon", "authenticated", "service_role",
                "supabase_auth_admin", "supabase_storage_admin"} <= roles
        schemas = {r[0] for r in conn.execute("select nspname from pg_namespace")}
        assert {"auth", "storage", "realtime", "_realtime", "supabase_functions"} <= schemas
        assert conn.execute("select count(*) from pg_publication where pubname = 'supabase_realtime'").fetchone() == (1,)
        assert conn.execute("select count(*) from pg_database where datname = '_supabase'").fetchone() == (1,)
        assert conn.execute("show app.settings.jwt_exp").fetchone() == ("3600",)
    with pg_connect(two_orgs.ports["beta"]["postgres"], b["POSTGRES_PASSWORD"]) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg_connect(two_orgs.ports["alpha"]["postgres"], b["POSTGRES_PASSWORD"])
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg_connect(two_orgs.ports["beta"]["postgres"], a["POSTGRES_PASSWORD"])


def test_service_roles_log_in_with_the_org_password(two_orgs: Deployment) -> None:
    # roles.sql set these from POSTGRES_PASSWORD at init; the stand-ins' health depends on it too.
    pw = two_orgs.secrets("alpha")["POSTGRES_PASSWORD"]
    for user in ("authenticator", "supabase_auth_admin", "supabase_storage_admin", "supabase_functions_admin", "pgbouncer"):
        with psycopg.connect(host="127.0.0.1", port=two_orgs.ports["alpha"]["postgres"], user=user, password=pw,
                             dbname="postgres", connect_timeout=5) as conn:
            assert conn.execute("select current_user").fetchone() == (user,)


def test_api_keys_verify_and_gateway_enforces_them(two_orgs: Deployment) -> None:
    s = two_orgs.secrets("alpha")
    claims = jwt.decode(s["ANON_KEY"], s["JWT_SECRET"], algorithms=["HS256"], issuer="supabase")
    assert claims["role"] == "anon"
    assert secret_gen.verify_api_key(s["SERVICE_ROLE_KEY_ASYMMETRIC"], s)["role"] == "service_role"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(s["ANON_KEY"], two_orgs.secrets("beta")["JWT_SECRET"], algorithms=["HS256"])
    api = f"http://127.0.0.1:{two_orgs.ports['alpha']['api']}"
    # The gateway (a stand-in reading the rendered kong.yml) routes and checks keys as configured.
    assert requests.get(f"{api}/auth/v1/health", timeout=10).status_code == 401
    assert requests.get(f"{api}/auth/v1/health", headers={"apikey": s["ANON_KEY"]}, timeout=10).status_code == 200
    assert requests.get(f"{api}/auth/v1/health", headers={"apikey": s["SUPABASE_PUBLISHABLE_KEY"]}, timeout=10).status_code == 200
    beta_key = two_orgs.secrets("beta")["ANON_KEY"]
    assert requests.get(f"{api}/auth/v1/health", headers={"apikey": beta_key}, timeout=10).status_code == 401
    # pg-meta (real) behind the service role only. Upstream gives pg-meta no health check, so
    # `up --wait` does not wait for it: give it the time it needs to listen.
    assert requests.get(f"{api}/pg/tables", headers={"apikey": s["ANON_KEY"]}, timeout=10).status_code == 403
    deadline = time.monotonic() + 120
    while True:
        tables = requests.get(f"{api}/pg/tables", headers={"apikey": s["SERVICE_ROLE_KEY"]}, timeout=10)
        if tables.status_code != 502 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert tables.status_code == 200 and isinstance(tables.json(), list)
    # Studio behind basic auth.
    assert requests.get(f"{api}/", timeout=10).status_code == 401
    assert requests.get(f"{api}/", auth=(s["DASHBOARD_USERNAME"], s["DASHBOARD_PASSWORD"]), timeout=10).status_code == 200


def test_a_new_org_signs_sessions_as_upstream_does_by_default(two_orgs: Deployment) -> None:
    # sfp_org.auth.asymmetric_keys unset on a new org: HS256 with the JWT secret (the vault records
    # the mode), no key set for Auth; REST verifies such a session with the secret.
    s = two_orgs.secrets("alpha")
    assert s["JWT_SIGNING_MODE"] == "symmetric"
    env = dict(e.split("=", 1) for e in inspect("sfp-alpha-auth")["Config"]["Env"])
    assert "GOTRUE_JWT_KEYS" not in env
    api = f"http://127.0.0.1:{two_orgs.ports['alpha']['api']}"
    session = requests.post(f"{api}/auth/v1/token?grant_type=password", headers={"apikey": s["SUPABASE_PUBLISHABLE_KEY"]},
                            json={"email": "ana@example.test", "password": "x"}, timeout=10)
    assert session.status_code == 200, session.text
    token = session.json()["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert jwt.decode(token, s["JWT_SECRET"], algorithms=["HS256"], audience="authenticated")["email"] == "ana@example.test"
    def rest_root(bearer: str) -> int:
        return requests.get(f"{api}/rest/v1/", headers={"apikey": s["SERVICE_ROLE_KEY"], "Authorization": f"Bearer {bearer}"},
                            timeout=10).status_code

    assert rest_root(token) == 200
    forged = jwt.encode(jwt.decode(token, options={"verify_signature": False}), two_orgs.secrets("beta")["JWT_SECRET"],
                        algorithm="HS256")
    assert rest_root(forged) == 401


def test_containers_of_one_org_cannot_reach_the_other_database(two_orgs: Deployment) -> None:
    beta_db_ip = next(iter(inspect("sfp-beta-db")["NetworkSettings"]["Networks"].values()))["IPAddress"]
    probe = (
        "import socket,sys\n"
        "for host in sys.argv[1:]:\n"
        "    try:\n"
        "        socket.create_connection((host, 5432), timeout=3).close(); print('reached', host)\n"
        "    except OSError as e:\n"
        "        print('blocked', host, type(e).__name__)\n"
    )
    out = docker("exec", "sfp-alpha-rest", "python3", "-c", probe, "sfp-beta-db", "db.sfp-beta", beta_db_ip).stdout
    assert "reached" not in out, out
    assert out.count("blocked") == 3, out
    # ...while its own database is right there.
    own = docker("exec", "sfp-alpha-rest", "python3", "-c", probe, "db").stdout
    assert "reached db" in own, own


def test_isolation_networks_volumes_and_directories(two_orgs: Deployment) -> None:
    for org in ("alpha", "beta"):
        info = inspect(f"sfp-{org}-db")
        assert list(info["NetworkSettings"]["Networks"]) == [f"sfp-{org}"]
        mounts = {m["Destination"]: m for m in info["Mounts"]}
        assert mounts["/var/lib/postgresql/data"]["Source"] == str(two_orgs.base_dir / "orgs" / org / "volumes/db/data")
        assert mounts["/etc/postgresql-custom"]["Name"] == f"sfp-{org}-db-config"
        published = info["HostConfig"]["PortBindings"]
        assert published == {}, "the database itself is never published; clients go through the pooler"
        pooler = inspect(f"sfp-{org}-supavisor")["HostConfig"]["PortBindings"]
        assert pooler["5432/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(two_orgs.ports[org]["postgres"])}]


def test_resource_limits_and_log_rotation_are_set_on_running_containers(two_orgs: Deployment) -> None:
    for name in project_containers("sfp-alpha"):
        host = inspect(name)["HostConfig"]
        service = name.removeprefix("sfp-alpha-")
        expected_cpus = {"db": 1.0, "meta": 0.5, "studio": 1.0}.get(service, 0.25)
        expected_mem = {"db": 512, "meta": 256, "studio": 256}.get(service, 128) * 1024 * 1024
        assert host["NanoCpus"] == int(expected_cpus * 1e9), name
        assert host["Memory"] == expected_mem, name
        assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "5", "max-size": "20m"}}, name


def test_postgres_runs_with_the_tuning_sized_from_its_memory_limit(two_orgs: Deployment) -> None:
    # alpha's db has 512m (SMALL) and no sfp_org.postgres: 25% buffers, 75% cache, a quarter over 100 connections.
    with pg_connect(two_orgs.ports["alpha"]["postgres"], two_orgs.secrets("alpha")["POSTGRES_PASSWORD"]) as conn:
        shown = {name: conn.execute(f"show {name}").fetchone()[0]  # type: ignore[index]
                 for name in ("shared_buffers", "effective_cache_size", "work_mem", "max_connections")}
    assert shown == {"shared_buffers": "128MB", "effective_cache_size": "384MB", "work_mem": "1310kB", "max_connections": "100"}


def test_secrets_are_encrypted_private_and_never_printed(two_orgs: Deployment) -> None:
    inv = two_orgs.inventory
    for org in ("alpha", "beta"):
        vault_file = inv.vault_file(org)
        assert stat.S_IMODE(vault_file.stat().st_mode) == 0o600
        raw = vault_file.read_text()
        assert raw.startswith("$ANSIBLE_VAULT;1.1;AES256")
        env_file = two_orgs.base_dir / "orgs" / org / ".env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        values = [v for k, v in two_orgs.secrets(org).items() if k not in ("DASHBOARD_USERNAME", "API_KEYS_ISSUED_AT")]
        assert not any(v in raw for v in values)
        assert not any(v in two_orgs.console_text for v in values)
        compose = (two_orgs.base_dir / "orgs" / org / "compose.yaml").read_text()
        assert not any(v in compose for v in values), "the compose file refers to secrets, never holds them"


def test_second_install_changes_nothing(two_orgs: Deployment) -> None:
    again = deploy.install(two_orgs.inventory, ["alpha", "beta"], quiet())
    assert again.result.ok
    assert again.generated == {}
    assert again.result.changed == 0, again.result.changed_tasks


def test_check_mode_after_install_reports_no_change(two_orgs: Deployment) -> None:
    dry = deploy.install(two_orgs.inventory, ["alpha", "beta"], quiet(), check=True)
    assert dry.result.ok, dry.result.failures
    assert dry.result.changed == 0, dry.result.changed_tasks


def test_status_json_through_the_cli(two_orgs: Deployment) -> None:
    wait_healthy(two_orgs, ["alpha", "beta"])
    done = cli(two_orgs.inventory.path, "status", "--all", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["org"]: r for r in json.loads(done.stdout)}
    assert rows["alpha"]["verdict"] == "healthy" and rows["beta"]["verdict"] == "healthy"
    assert rows["alpha"]["machine"] == "local"
    services = {s["service"]: s for s in rows["alpha"]["services"]}
    assert services["db"]["health"] == "healthy"
    assert services["db"]["image"] == "sfp-test/postgres:17"


def containers_state() -> list[str]:
    """Name, id and state of every container of this test's orgs (not their uptime, which ticks)."""
    out = docker("ps", "-a", "--filter", "label=org.sfp.org", "--format", "{{.Names}} {{.ID}} {{.State}}").stdout
    return sorted(line for line in out.splitlines() if line.startswith(("sfp-alpha-", "sfp-beta-")))


def wait_healthy(two_orgs: Deployment, orgs: list[str], timeout: float = 120) -> dict[str, status.OrgStatus]:
    """Status until every org is healthy: a health check can fail once on a loaded machine and recover."""
    deadline = time.monotonic() + timeout
    while True:
        rows = {r.org: r for r in status.gather(two_orgs.inventory, orgs, quiet())}
        if all(r.verdict == "healthy" for r in rows.values()) or time.monotonic() > deadline:
            return rows
        time.sleep(5)


def test_bad_inventory_changes_nothing(two_orgs: Deployment) -> None:
    before = containers_state()
    main = two_orgs.inventory.path / "host_vars" / "beta" / "main.yml"
    original = main.read_text()
    try:
        clash = yaml.safe_load(original)
        clash["sfp_org"]["ports"]["api"] = two_orgs.ports["alpha"]["api"]
        main.write_text(yaml.safe_dump(clash))
        done = cli(two_orgs.inventory.path, "install", "--all")
        assert done.returncode == 2
        assert f"port {two_orgs.ports['alpha']['api']} clashes with org 'alpha'" in done.stderr
        assert "no host was changed" in done.stderr
    finally:
        main.write_text(original)
    assert containers_state() == before


def test_preflight_reports_every_check(two_orgs: Deployment) -> None:
    done = cli(two_orgs.inventory.path, "preflight", "--all")
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("docker engine", "docker compose v2", "ports", "disk", "memory", "cpu"):
        assert check in done.stdout
    assert "held by this org's running stack" in done.stdout


def test_uninstall_keeps_data_and_leaves_the_other_org_alone(two_orgs: Deployment) -> None:
    pw = two_orgs.secrets("alpha")["POSTGRES_PASSWORD"]
    with pg_connect(two_orgs.ports["alpha"]["postgres"], pw) as conn:
        conn.execute("create table kept (v text)")
        conn.execute("insert into kept values ('still here')")
    beta_before = {n: inspect(n)["Id"] for n in project_containers("sfp-beta")}
    done = cli(two_orgs.inventory.path, "uninstall", "--org", "alpha")
    assert done.returncode == 0, done.stderr
    assert project_containers("sfp-alpha") == []
    assert (two_orgs.base_dir / "orgs" / "alpha" / "volumes" / "db" / "data" / "PG_VERSION").exists()
    assert {n: inspect(n)["Id"] for n in project_containers("sfp-beta")} == beta_before
    rows = {r.org: r for r in status.gather(two_orgs.inventory, ["alpha"], quiet())}
    assert rows["alpha"].verdict == "stopped"
    assert wait_healthy(two_orgs, ["beta"])["beta"].verdict == "healthy"
    # Installing again brings the same data back, with the same secrets.
    again = deploy.install(two_orgs.inventory, ["alpha"], quiet())
    assert again.result.ok, (again.result.failures, again.result.stdout_tail)
    assert again.generated == {}
    with pg_connect(two_orgs.ports["alpha"]["postgres"], pw) as conn:
        assert conn.execute("select v from kept").fetchone() == ("still here",)


def test_purge_needs_confirmation_then_removes_the_data(two_orgs: Deployment) -> None:
    refused = cli(two_orgs.inventory.path, "uninstall", "--org", "alpha", "--purge")
    assert refused.returncode != 0 and "--confirm alpha" in refused.stderr
    assert project_containers("sfp-alpha") != []
    wrong = cli(two_orgs.inventory.path, "uninstall", "--org", "alpha", "--purge", "--confirm", "beta")
    assert wrong.returncode != 0 and "does not match" in wrong.stderr
    done = cli(two_orgs.inventory.path, "uninstall", "--org", "alpha", "--purge", "--confirm", "alpha")
    assert done.returncode == 0, done.stderr
    assert project_containers("sfp-alpha") == []
    assert not (two_orgs.base_dir / "orgs" / "alpha").exists()
    assert docker("volume", "ls", "-q", "--filter", "label=com.docker.compose.project=sfp-alpha").stdout.strip() == ""
    assert docker("network", "ls", "-q", "--filter", "name=^sfp-alpha$").stdout.strip() == ""
    beta = wait_healthy(two_orgs, ["beta"])["beta"]
    assert beta.verdict == "healthy", beta.services
