"""`sfp-server secrets rotate db-password` on a real org (test catalog: real PostgreSQL 17, the
pooler a stand-in that forwards to it, so the database itself checks every login).

One scenario, one test (each step needs the org as the step before left it):
- `--plan` names the services that read the password and those left alone, and changes nothing;
  groups this version cannot rotate, and unknown names, exit 2 with nothing changed;
- the rotation: a verified backup first; the backup job on the host has the new value; through the pooler the old password is refused and the
  new one works; every service healthy; the services that do not read the password (the gateway)
  kept running; neither password on any command line, in the command's output or in the log of any
  container; `secrets age` restarted for it; a probe measured how long the org was not fully healthy;
- a plain `ansible-playbook playbooks/rotate.yml` afterwards changes nothing;
- a rotation to a crafted value that Auth's stand-in refuses to turn healthy with: the command
  fails, the vault holds the value before again (with its age), and the org is healthy with it.
- dashboard: only the gateway restarts; the old basic-auth password is refused, the new one opens Studio;
- legacy-jwt-secret: refused without --confirm; the old HS256 anon key is refused at the gateway, the
  new one and the opaque key work; only the services that read it restart;
- recovery-key: no service restarts; a set made before (with the old key) and one after both verify,
  the one before restores, and the vault keeps the new key and the old one.
Stand-ins prove the orchestration (what restarts, health, rollback), not upstream's services.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from rich.console import Console

from installer.actions import rotate as rotate_action
from installer.actions import secrets
from installer.context import read_secret_ages, resolve
from installer.inventory import Inventory
from installer.rotation.groups import GROUPS
from tests.backup_stack.conftest import BackupDeployment, deployed_with_backups
from tests.proc_sampler import INTERVAL, ProcSampler
from tests.stack.conftest import docker, project_containers, service_health, service_start_times

pytestmark = pytest.mark.stack

ORG = "rota"
BUCKET = "sfp-rotate-backups"
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Not the org's role passwords' own roles: what a client of the pooler logs in as.
POOLER_USER = "postgres"


def cli(inv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), *args], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "COLUMNS": "200"})


def vault(org: BackupDeployment) -> dict[str, str]:
    return secrets.read(Inventory(org.inventory.path, org.inventory.vault_password_file), ORG)


def started() -> dict[str, str]:
    return service_start_times(f"sfp-{ORG}")


def healthy() -> dict[str, str]:
    return service_health(f"sfp-{ORG}")


def pooler_login(port: int, password: str) -> str | None:
    """None when the pooler lets `postgres` in with `password`, else the error (the password never in it)."""
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user=POOLER_USER, password=password, dbname="postgres",
                             connect_timeout=5) as conn:
            conn.execute("select 1")
        return None
    except psycopg.Error as exc:
        return type(exc).__name__ + ": " + str(exc).replace(password, "<password>")


def container_logs() -> str:
    return "".join(docker("logs", cid, check=False).stdout + docker("logs", cid, check=False).stderr
                   for cid in project_containers(f"sfp-{ORG}"))


class Probe:
    """Asks the org, every 0.2 s, through the gateway (Auth health) and through the pooler (a login
    with the password the vault holds at that moment, as a client handed the new value would):
    how long it was not fully healthy while a rotation ran."""

    def __init__(self, org: BackupDeployment) -> None:
        self.api, self.port, self.org = f"http://127.0.0.1:{org.ports['api']}", org.ports["postgres"], org
        self.failures: list[float] = []
        self.samples = 0
        self._vault_file = org.inventory.vault_file(ORG)
        self._seen: tuple[int, dict[str, str]] = (-1, {})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _values(self) -> dict[str, str]:
        """The vault's values, decrypted again only when the file changed (the machine is busy enough)."""
        stamp = self._vault_file.stat().st_mtime_ns
        if stamp != self._seen[0]:
            self._seen = (stamp, vault(self.org))
        return self._seen[1]

    def _ok(self) -> bool:
        values = self._values()  # the values a client handed the new ones would use
        try:
            r = requests.get(f"{self.api}/auth/v1/health", headers={"apikey": values["ANON_KEY"]}, timeout=2)
        except requests.RequestException:
            return False
        return r.status_code == 200 and pooler_login(self.port, values["POSTGRES_PASSWORD"]) is None

    def _run(self) -> None:
        while not self._stop.is_set():
            at = time.monotonic()
            if not self._ok():
                self.failures.append(at)
            self.samples += 1
            self._stop.wait(0.2)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def unhealthy_seconds(self) -> float:
        """The span from the first failed sample to the last (0 when none failed)."""
        return (self.failures[-1] - self.failures[0] + 0.2) if self.failures else 0.0


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[BackupDeployment]:
    # Signing with the EC key (the opt-in): the jwt-signing-key rotation is about sessions it signs.
    with deployed_with_backups(tmp_path_factory.mktemp("rotate-stack"), ORG, BUCKET, auth={"asymmetric_keys": True}) as d:
        yield d


def test_plan_rotate_no_leak_and_undo(org: BackupDeployment, record_property: pytest.RecordProperty) -> None:
    inv = org.inventory.path
    pooler = org.ports["postgres"]
    old = vault(org)
    before = started()
    # The pooler stand-in forwards to the real database: it checks the password.
    assert pooler_login(pooler, old["POSTGRES_PASSWORD"]) is None

    # -- the plan changes nothing ---------------------------------------------------------------
    planned = cli(inv, "secrets", "rotate", "--org", ORG, "db-password", "--plan", "--json")
    assert planned.returncode == 0, planned.stderr
    p = json.loads(planned.stdout)
    assert p["secrets"] == ["POSTGRES_PASSWORD"] and p["backup_first"] is True
    assert p["recreates"][0] == "db", p["recreates"]
    assert {"auth", "rest", "realtime", "storage", "meta", "studio", "supavisor"} <= set(p["recreates"])
    assert "kong" in p["untouched"] and "kong" not in p["recreates"]
    assert {"authenticator", "pgbouncer", "postgres", "supabase_admin", "supabase_auth_admin",
            "supabase_storage_admin"} <= set(p["db_roles"]), p["db_roles"]
    assert "anon" not in p["db_roles"] and p["db_stale"] == [], p  # no password, none to change; the vault opens all
    assert "POSTGRES_PASSWORD" in " ".join(p["clients"])
    assert started() == before and vault(org) == old

    for names, why in ((("jwt-signing-key", "db-password"), "rotated in steps and on its own"),
                       (("NOPE",), "unknown secret or group")):
        refused = cli(inv, "secrets", "rotate", "--org", ORG, *names)
        assert refused.returncode == 2 and why in refused.stderr, refused.stderr
    assert started() == before and vault(org) == old

    # -- the rotation ---------------------------------------------------------------------------
    stamps_before = read_secret_ages(org.inventory, ORG)
    sampler = ProcSampler(INTERVAL, ignore=lambda line: "rclone" in line)
    with sampler, Probe(org) as probe:
        done = cli(inv, "secrets", "rotate", "--org", ORG, "db-password", "--json")
    new = vault(org)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout)
    assert outcome["result"] == "rotated" and outcome["backup_set"], outcome
    assert new["POSTGRES_PASSWORD"] != old["POSTGRES_PASSWORD"]
    assert {k: v for k, v in new.items() if k != "POSTGRES_PASSWORD"} == {k: v for k, v in old.items() if k != "POSTGRES_PASSWORD"}

    refused_old = pooler_login(pooler, old["POSTGRES_PASSWORD"])
    assert refused_old is not None and "password authentication failed" in refused_old, refused_old
    assert pooler_login(pooler, new["POSTGRES_PASSWORD"]) is None
    assert set(healthy().values()) <= {"healthy", "running"}, healthy()
    after = started()
    assert after["kong"] == before["kong"], "the gateway reads no database password: it must keep running"
    for service in outcome["recreated"]:
        assert after[service] != before[service], service
    assert set(outcome["recreated"]) == set(p["recreates"])

    # Neither password on a command line (the sampler watched: it saw the playbook and psql), in the
    # command's output, or in any container's log (the database does not log the ALTER ROLE).
    assert sampler.saw("rotate.yml") and sampler.saw("psql"), sampler.command_lines()[:20]
    passwords = {"old": old["POSTGRES_PASSWORD"], "new": new["POSTGRES_PASSWORD"]}
    assert not sampler.leaks(passwords), json.dumps(sampler.leaks(passwords), indent=1)
    logs = container_logs()
    for label, value in passwords.items():
        assert value not in done.stdout + done.stderr, label
        assert value not in logs, label

    # The recovery key that opens every set is not on the org's host (only the job's signing key and
    # the recipient, in the job's config).
    env_file = (org.base_dir / "orgs" / ORG / ".env").read_text()
    assert "BACKUP_" not in env_file and new["BACKUP_RECOVERY_IDENTITY"] not in env_file
    # The backup job on the host puts the org's secrets into every set: it has the new value.
    job_config = (org.base_dir / "orgs" / ORG / "backup" / "backup.json").read_text()
    assert new["POSTGRES_PASSWORD"] in job_config and old["POSTGRES_PASSWORD"] not in job_config

    ages = read_secret_ages(org.inventory, ORG)
    assert ages["POSTGRES_PASSWORD"] != stamps_before.get("POSTGRES_PASSWORD")
    assert (datetime.now(UTC) - datetime.fromisoformat(ages["POSTGRES_PASSWORD"])).total_seconds() < 900
    assert {k: v for k, v in ages.items() if k != "POSTGRES_PASSWORD"} == \
        {k: v for k, v in stamps_before.items() if k != "POSTGRES_PASSWORD"}
    record_property("db_password_unhealthy_seconds", round(probe.unhealthy_seconds(), 1))
    record_property("db_password_apply_seconds", round(outcome["apply_seconds"], 1))
    print(f"db-password rotation: not fully healthy for {probe.unhealthy_seconds():.1f} s "
          f"({len(probe.failures)} of {probe.samples} samples); apply took {outcome['apply_seconds']:.1f} s")
    assert probe.samples > 10 and probe.unhealthy_seconds() < outcome["apply_seconds"] + 1

    # -- the plain playbook converges to what it already is ---------------------------------------
    plain_playbook_changes_nothing(inv, ["POSTGRES_PASSWORD"])
    assert started() == after

    # -- a rotation whose restart fails is undone -----------------------------------------------
    ctx = resolve(Inventory(inv, inv / ".vault-pass"), ORG)
    crafted = "rotation-fails-here-" + os.urandom(6).hex()
    with pytest.raises(rotate_action.RotationFailed, match="failed and was undone"):
        rotate_action.rotate(ctx, [GROUPS["db-password"]], Console(file=open(os.devnull, "w"), width=200),  # noqa: SIM115
                             chosen={"POSTGRES_PASSWORD": crafted})
    assert vault(org) == new
    assert read_secret_ages(org.inventory, ORG) == ages
    assert pooler_login(pooler, crafted) is not None
    assert pooler_login(pooler, new["POSTGRES_PASSWORD"]) is None
    assert set(healthy().values()) <= {"healthy", "running"}, healthy()
    assert started()["kong"] == before["kong"]
    assert secrets.read(org.inventory, ORG)["POSTGRES_PASSWORD"] == new["POSTGRES_PASSWORD"]


def changed_services(before: dict[str, str]) -> set[str]:
    after = started()
    return {s for s in after if after[s] != before.get(s)}


def test_dashboard_password_changes_at_the_gateway_only(org: BackupDeployment) -> None:
    inv, api = org.inventory.path, f"http://127.0.0.1:{org.ports['api']}"
    old, before = vault(org), started()
    user = old["DASHBOARD_USERNAME"]
    assert requests.get(f"{api}/", auth=(user, old["DASHBOARD_PASSWORD"]), timeout=10).status_code != 401

    with Probe(org) as probe:
        done = cli(inv, "secrets", "rotate", "--org", ORG, "dashboard", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"dashboard rotation: not fully healthy for {probe.unhealthy_seconds():.1f} s "
          f"({len(probe.failures)} of {probe.samples} samples)")
    outcome = json.loads(done.stdout)
    new = vault(org)
    assert outcome["recreated"] == ["kong"] and changed_services(before) == {"kong"}
    assert new["DASHBOARD_PASSWORD"] != old["DASHBOARD_PASSWORD"]
    assert {k for k in new if new[k] != old[k]} == {"DASHBOARD_PASSWORD"}
    assert requests.get(f"{api}/", auth=(user, old["DASHBOARD_PASSWORD"]), timeout=10).status_code == 401
    assert requests.get(f"{api}/", auth=(user, new["DASHBOARD_PASSWORD"]), timeout=10).status_code != 401
    assert new["DASHBOARD_PASSWORD"] not in done.stdout + done.stderr + container_logs()


def test_legacy_jwt_secret_needs_confirmation_and_replaces_the_hs256_keys(org: BackupDeployment) -> None:
    inv, api = org.inventory.path, f"http://127.0.0.1:{org.ports['api']}"
    old, before = vault(org), started()

    refused = cli(inv, "secrets", "rotate", "--org", ORG, "legacy-jwt-secret")
    assert refused.returncode == 2 and f"pass --confirm {ORG}" in refused.stderr, refused.stderr
    planned = cli(inv, "secrets", "rotate", "--org", ORG, "legacy-jwt-secret", "--plan", "--json")
    assert planned.returncode == 0, planned.stderr
    p = json.loads(planned.stdout)
    assert p["breaks"] and "sign in again" in p["breaks"][0]
    assert {"kong", "auth", "rest", "realtime", "storage"} <= set(p["recreates"]) and "db" in p["untouched"]
    assert "ANON_KEY" in p["clients"][0] and "SERVICE_ROLE_KEY" in p["clients"][0]
    assert vault(org) == old and started() == before

    with Probe(org) as probe:
        done = cli(inv, "secrets", "rotate", "--org", ORG, "legacy-jwt-secret", "--confirm", ORG, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"legacy-jwt-secret rotation: not fully healthy for {probe.unhealthy_seconds():.1f} s "
          f"({len(probe.failures)} of {probe.samples} samples)")
    new = vault(org)
    assert {k for k in new if new[k] != old[k]} == {"JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY", "JWT_KEYS", "JWT_JWKS"}
    assert changed_services(before) == set(json.loads(done.stdout)["recreated"]) == set(p["recreates"])
    rest = f"{api}/rest/v1/"
    assert requests.get(rest, headers={"apikey": old["ANON_KEY"]}, timeout=10).status_code == 401
    assert requests.get(rest, headers={"apikey": new["ANON_KEY"]}, timeout=10).status_code != 401
    # The opaque keys are not made from the legacy secret: they keep working.
    assert requests.get(rest, headers={"apikey": new["SUPABASE_PUBLISHABLE_KEY"]}, timeout=10).status_code != 401
    assert set(healthy().values()) <= {"healthy", "running"}, healthy()
    for name in ("JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY"):
        assert new[name] not in done.stdout + done.stderr, name


def psql(sql: str) -> str:
    done = subprocess.run(["docker", "exec", "-i", "-e", "PGUSER=supabase_admin", f"sfp-{ORG}-db", "psql", "-X", "-q",
                           "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-At"], input=sql, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_recovery_key_sets_made_before_and_after_both_open(org: BackupDeployment) -> None:
    inv = org.inventory.path
    psql("CREATE TABLE IF NOT EXISTS public.keyed (id int PRIMARY KEY); TRUNCATE public.keyed;"
         " INSERT INTO public.keyed SELECT generate_series(1, 10);")
    old, before = vault(org), started()

    with Probe(org) as probe:
        done = cli(inv, "secrets", "rotate", "--org", ORG, "recovery-key", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert probe.samples > 10 and probe.failures == [], "no service reads the recovery key: nothing may fail"
    outcome = json.loads(done.stdout)
    made_before = outcome["backup_set"]  # the rotation's own backup, encrypted to the old key
    new = vault(org)
    assert outcome["recreated"] == [] and started() == before, "no service reads the recovery key"
    assert new["BACKUP_RECOVERY_RECIPIENT"] != old["BACKUP_RECOVERY_RECIPIENT"]
    assert new["BACKUP_RECOVERY_PREVIOUS_IDENTITIES"].splitlines()[0] == old["BACKUP_RECOVERY_IDENTITY"]
    job_config = json.loads((org.base_dir / "orgs" / ORG / "backup" / "backup.json").read_text())
    assert job_config["keys"]["BACKUP_RECOVERY_RECIPIENT"] == new["BACKUP_RECOVERY_RECIPIENT"]
    # The keys that open the sets are not on the host (the job config holds only their ages).
    assert old["BACKUP_RECOVERY_IDENTITY"] not in json.dumps(job_config)
    assert new["BACKUP_RECOVERY_IDENTITY"] not in json.dumps(job_config)

    psql("INSERT INTO public.keyed SELECT generate_series(11, 20);")
    after = cli(inv, "backup", "run", "--org", ORG, "--json")
    assert after.returncode == 0, after.stderr[-2000:]
    made_after = json.loads(after.stdout)["set_id"]
    shown = {s: json.loads(cli(inv, "backup", "show", "--org", ORG, s, "--json").stdout)["recipient"]
             for s in (made_before, made_after)}
    assert shown == {made_before: old["BACKUP_RECOVERY_RECIPIENT"], made_after: new["BACKUP_RECOVERY_RECIPIENT"]}
    for set_id in (made_before, made_after):
        verified = cli(inv, "backup", "verify", "--org", ORG, set_id)
        assert verified.returncode == 0, (set_id, verified.stderr[-2000:])
    key_file = cli(inv, "backup", "key", "--org", ORG).stdout
    assert old["BACKUP_RECOVERY_IDENTITY"] in key_file and new["BACKUP_RECOVERY_IDENTITY"] in key_file

    # The set made with the old key restores, and the vault keeps the new key (and the kept one).
    restored = cli(inv, "restore", "--org", ORG, "--backup", made_before, "--force")
    assert restored.returncode == 0, restored.stderr[-3000:]
    assert psql("SELECT count(*) FROM public.keyed").strip() == "10"
    now = vault(org)
    assert now["BACKUP_RECOVERY_IDENTITY"] == new["BACKUP_RECOVERY_IDENTITY"]
    assert now["BACKUP_RECOVERY_PREVIOUS_IDENTITIES"] == new["BACKUP_RECOVERY_PREVIOUS_IDENTITIES"]


def plain_playbook_changes_nothing(inv: Path, names: list[str]) -> None:
    """`ansible-playbook playbooks/rotate.yml` with the vault as it is: the org is in line with it."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    plain = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv), str(REPO / "playbooks" / "rotate.yml"),
                            "--limit", ORG, "--vault-password-file", str(inv / ".vault-pass"),
                            "-e", json.dumps({"sfp_rotate_names": names})],
                           capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert plain.returncode == 0, plain.stdout[-3000:]
    assert "changed=0" in plain.stdout[-400:], plain.stdout[-1500:]


def plan_then_rotate(org: BackupDeployment, group: str, *args: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """`--plan` (which must change nothing), then the rotation under the probe, which is printed:
    (the plan, the outcome, the command's output)."""
    inv, old, before = org.inventory.path, vault(org), started()
    planned = cli(inv, "secrets", "rotate", "--org", ORG, group, "--plan", "--json")
    assert planned.returncode == 0, planned.stderr
    assert started() == before and vault(org) == old
    with Probe(org) as probe:
        done = cli(inv, "secrets", "rotate", "--org", ORG, group, *args, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout)
    print(f"{group} rotation: not fully healthy for {probe.unhealthy_seconds():.1f} s ({len(probe.failures)} of "
          f"{probe.samples} samples); applying took {outcome['apply_seconds']:.1f} s")
    return json.loads(planned.stdout), outcome, done.stdout + done.stderr


def test_service_keys_recreate_only_their_readers_and_the_pooler_registers_anew(org: BackupDeployment) -> None:
    inv = org.inventory.path
    group = GROUPS["service-keys"]
    # The pooler's schema holds its tenant, encrypted with VAULT_ENC_KEY: a marker shows it is reset.
    psql_in = lambda sql: subprocess.run(  # noqa: E731
        ["docker", "exec", "-i", f"sfp-{ORG}-db", "psql", "-X", "-q", "-U", "supabase_admin", "-d", "_supabase", "-At",
         "-v", "ON_ERROR_STOP=1"], input=sql, capture_output=True, text=True, check=True).stdout.strip()
    psql_in("CREATE SCHEMA IF NOT EXISTS _supavisor; CREATE TABLE IF NOT EXISTS _supavisor.marker (id int);")
    old, before = vault(org), started()

    p, outcome, printed = plan_then_rotate(org, "service-keys")
    # This org runs without Analytics and the log collector (they would be recreated too).
    readers = {"realtime", "supavisor", "meta", "studio", "analytics", "vector", "storage"}
    assert set(p["recreates"]) == readers & set(before) and {"realtime", "supavisor", "storage"} <= set(before), p
    assert {"db", "kong", "auth", "rest"} <= set(p["untouched"])
    assert "S3_PROTOCOL_ACCESS_KEY_SECRET" in p["clients"][0]
    new = vault(org)
    assert {k for k in new if new[k] != old.get(k)} == set(group.secrets)
    assert changed_services(before) == set(outcome["recreated"]) == set(p["recreates"])
    assert set(healthy().values()) <= {"healthy", "running"}, healthy()
    assert psql_in("SELECT count(*) FROM pg_tables WHERE schemaname = '_supavisor' AND tablename = 'marker'") == "0"
    # Each recreated service runs with the new values (what it reads of them).
    for service, name in (("storage", "S3_PROTOCOL_ACCESS_KEY_SECRET"), ("supavisor", "VAULT_ENC_KEY"),
                          ("realtime", "DB_ENC_KEY"), ("meta", "CRYPTO_KEY"), ("realtime", "SECRET_KEY_BASE")):
        seen = docker("exec", f"sfp-{ORG}-{service}", "printenv", name).stdout.strip()
        source = {"DB_ENC_KEY": "REALTIME_DB_ENC_KEY", "CRYPTO_KEY": "PG_META_CRYPTO_KEY"}.get(name, name)
        assert seen == new[source] != old[source], service
    for name in group.secrets:
        assert new[name] not in printed, name

    # Applied again with the same values, nothing restarts and the pooler's tenant stays.
    psql_in("CREATE TABLE _supavisor.marker (id int);")
    after = started()
    plain_playbook_changes_nothing(inv, list(group.secrets))
    assert started() == after
    assert psql_in("SELECT count(*) FROM pg_tables WHERE schemaname = '_supavisor' AND tablename = 'marker'") == "1"


def test_api_keys_old_ones_work_through_the_grace_period_and_stop_at_finish(org: BackupDeployment) -> None:
    inv, api = org.inventory.path, f"http://127.0.0.1:{org.ports['api']}"
    root = f"{api}/rest/v1/"  # the service role's only: what a secret key opens

    def answer(key: str) -> int:
        return requests.get(root, headers={"apikey": key}, timeout=10).status_code

    old, before = vault(org), started()
    assert answer(old["SUPABASE_SECRET_KEY"]) not in (401, 403)

    p, outcome, printed = plan_then_rotate(org, "api-keys", "--grace", "2h")
    assert "kong" in p["recreates"] and {"db", "auth", "rest", "storage"} <= set(p["untouched"]), p
    assert p["breaks"] == [] and p["grace"] == {"api-keys": None}
    new = vault(org)
    assert new["SUPABASE_SECRET_KEY"] != old["SUPABASE_SECRET_KEY"]
    assert new["SUPABASE_SECRET_KEY_PREVIOUS"] == old["SUPABASE_SECRET_KEY"]
    assert new["SUPABASE_PUBLISHABLE_KEY_PREVIOUS"] == old["SUPABASE_PUBLISHABLE_KEY"]
    until = datetime.fromisoformat(outcome["grace_until"])
    assert 7000 < (until - datetime.now(UTC)).total_seconds() <= 7200
    assert changed_services(before) == set(outcome["recreated"]) == set(p["recreates"])
    assert set(healthy().values()) <= {"healthy", "running"}, healthy()
    # During the grace period the gateway takes both the old and the new keys, each as its role.
    for key in (old["SUPABASE_SECRET_KEY"], new["SUPABASE_SECRET_KEY"]):
        assert answer(key) not in (401, 403)
    assert answer(new["SUPABASE_PUBLISHABLE_KEY"]) == 403  # anon: not the service role's root
    assert answer(old["SUPABASE_PUBLISHABLE_KEY"]) == 403
    for name in ("SUPABASE_SECRET_KEY", "SUPABASE_PUBLISHABLE_KEY"):
        assert new[name] not in printed, name

    # Past the grace period `status` says the vault still holds the old keys, and how to remove them.
    ctx = resolve(Inventory(inv, inv / ".vault-pass"), ORG)
    ctx.write_secrets({**new, "API_KEYS_PREVIOUS_UNTIL": "2026-01-01T00:00:00Z"})
    status = cli(inv, "status", "--org", ORG)
    assert "grace period of the api-keys" in status.stderr and "--finish api-keys" in status.stderr, status.stderr
    ctx.write_secrets(new)

    during = started()
    finished = cli(inv, "secrets", "rotate", "--org", ORG, "api-keys", "--finish", "--json")
    assert finished.returncode == 0, finished.stderr[-3000:]
    ended = json.loads(finished.stdout)
    assert ended["result"] == "finished" and ended["recreated"] == ["kong"] and changed_services(during) == {"kong"}
    after = vault(org)
    assert not {"SUPABASE_SECRET_KEY_PREVIOUS", "SUPABASE_PUBLISHABLE_KEY_PREVIOUS", "API_KEYS_PREVIOUS_UNTIL"} & set(after)
    assert after["SUPABASE_SECRET_KEY"] == new["SUPABASE_SECRET_KEY"]
    assert answer(old["SUPABASE_SECRET_KEY"]) == 401 and answer(old["SUPABASE_PUBLISHABLE_KEY"]) == 401
    assert answer(new["SUPABASE_SECRET_KEY"]) not in (401, 403)

    settled = started()
    again = cli(inv, "secrets", "rotate", "--org", ORG, "api-keys", "--finish")
    assert again.returncode == 0 and "nothing to finish" in again.stdout, again.stdout + again.stderr
    assert started() == settled


def test_jwt_signing_key_sessions_signed_before_verify_through_the_grace_period(org: BackupDeployment) -> None:
    """Auth's stand-in signs sessions with the key GOTRUE_JWT_KEYS marks for signing; REST's verifies
    them with the key set it was given (PGRST_JWT_SECRET), by kid: the sequence is what is proven."""
    from installer import secrets as gen

    inv, api = org.inventory.path, f"http://127.0.0.1:{org.ports['api']}"
    old, before = vault(org), started()

    def session() -> str:
        r = requests.post(f"{api}/auth/v1/token?grant_type=password", headers={"apikey": vault(org)["ANON_KEY"]},
                          json={"email": "ops@example.test", "password": "stand-in"}, timeout=10)
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def rest_with(token: str) -> int:
        return requests.get(f"{api}/rest/v1/", headers={"apikey": vault(org)["SERVICE_ROLE_KEY"],
                                                        "Authorization": f"Bearer {token}"}, timeout=10).status_code

    signed_before = session()
    old_kid = gen.signing_jwk(old)["kid"]
    assert jwt_kid(signed_before) == old_kid and rest_with(signed_before) == 200
    assert rest_with(signed_before[:-4] + "AAAA") == 401  # the stand-in does verify

    p, outcome, _ = plan_then_rotate(org, "jwt-signing-key", "--grace", "2h")
    assert {"auth", "rest", "realtime", "storage", "kong"} <= set(p["recreates"]) and "db" in p["untouched"], p
    new = vault(org)
    new_kid = gen.signing_jwk(new)["kid"]
    assert new_kid != old_kid and [k["kid"] for k in gen.ec_jwks(new)] == [new_kid, old_kid]
    assert {k for k in new if new[k] != old.get(k)} == set(GROUPS["jwt-signing-key"].secrets)
    assert changed_services(before) == set(outcome["recreated"]) == set(p["recreates"])
    assert set(healthy().values()) <= {"healthy", "running"}, healthy()

    signed_after = session()
    assert jwt_kid(signed_after) == new_kid
    assert rest_with(signed_after) == 200 and rest_with(signed_before) == 200  # the grace period
    assert rest_with(new["ANON_KEY_ASYMMETRIC"]) == 200 and jwt_kid(new["ANON_KEY_ASYMMETRIC"]) == new_kid

    during = started()
    finished = cli(inv, "secrets", "rotate", "--org", ORG, "jwt-signing-key", "--finish", "--json")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert json.loads(finished.stdout)["result"] == "finished"
    assert "db" not in changed_services(during) and "kong" not in changed_services(during)
    after = vault(org)
    assert [k["kid"] for k in gen.ec_jwks(after)] == [new_kid] and "JWT_SIGNING_KEY_PREVIOUS_UNTIL" not in after
    assert rest_with(signed_before) == 401 and rest_with(old["ANON_KEY_ASYMMETRIC"]) == 401
    assert rest_with(signed_after) == 200 and rest_with(after["ANON_KEY_ASYMMETRIC"]) == 200
    assert set(healthy().values()) <= {"healthy", "running"}, healthy()


def jwt_kid(token: str) -> str:
    import jwt

    return str(jwt.get_unverified_header(token)["kid"])


def test_prune_keeps_the_newest_set_and_forgets_the_recovery_keys_no_set_needs(org: BackupDeployment) -> None:
    """Last in the module, after the rotations' backups (the job prunes the older ones after each run,
    on the host, where the vault is not): `backup prune` from the controller applies the same
    retention, keeps the newest set, and drops from the vault the earlier recovery key once no set
    left is encrypted to it. The set kept still verifies."""
    import pyrage

    inv = org.inventory.path
    values = vault(org)
    earlier = values["BACKUP_RECOVERY_PREVIOUS_IDENTITIES"]
    assert earlier, "the recovery-key rotation kept the earlier key"
    earlier_recipient = str(pyrage.x25519.Identity.from_str(earlier.splitlines()[0]).to_public())

    def complete() -> list[str]:
        done = cli(inv, "backup", "list", "--org", ORG, "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        return [s["set_id"] for s in json.loads(done.stdout) if s["complete"]]

    sets = complete()
    assert sets, "the rotations made sets"
    def recipient(set_id: str) -> str:
        return str(json.loads(cli(inv, "backup", "show", "--org", ORG, set_id, "--json").stdout)["recipient"])

    assert recipient(sets[-1]) == values["BACKUP_RECOVERY_RECIPIENT"]

    dry = cli(inv, "backup", "prune", "--org", ORG, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr[-2000:]
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True and sets[-1] not in planned["deleted"] and set(planned["deleted"]) <= set(sets)
    assert complete() == sets and vault(org)["BACKUP_RECOVERY_PREVIOUS_IDENTITIES"] == earlier

    done = cli(inv, "backup", "prune", "--org", ORG, "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["deleted"] == planned["deleted"] and report["keys_kept_for"] == {}
    assert report["forgotten_keys"] == [earlier_recipient]
    left = complete()
    assert left == [s for s in sets if s not in report["deleted"]] and left[-1] == sets[-1]
    assert {recipient(s) for s in left} == {values["BACKUP_RECOVERY_RECIPIENT"]}
    assert not vault(org).get("BACKUP_RECOVERY_PREVIOUS_IDENTITIES")
    key_file = cli(inv, "backup", "key", "--org", ORG).stdout
    assert earlier.splitlines()[0] not in key_file and values["BACKUP_RECOVERY_IDENTITY"] in key_file
    verified = cli(inv, "backup", "verify", "--org", ORG, left[-1])
    assert verified.returncode == 0, verified.stderr[-2000:]
