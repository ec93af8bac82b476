"""Backup → purge → restore of a real org (test catalog) through the CLI, against S3 on loopback.

One scenario, one test: each step needs what the one before made (the data, the set, the purged
org), so the steps are functions called in order and pass what they made as arguments; no test
depends on another. What is proved: the same application data (a full
logical dump), the same storage files with their xattrs, the same secrets (API keys still verify
and open the gateway), the schedule installed without secrets, idempotence, and that restore
refuses to replace a running org without --force.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import requests

from installer.actions import deploy, secrets
from installer.context import read_secret_ages
from installer.inventory import Inventory
from installer.secrets import verify_api_key
from installer.vault import create_password_file
from tests.backup.support import ACCESS_KEY, SECRET_KEY
from tests.backup_stack.conftest import BUCKET, ORG, BackupDeployment, logical_dump, quiet, storage_tree
from tests.stack.conftest import docker, inspect, project_containers

DB = f"sfp-{ORG}-db"
SEED = """
CREATE ROLE app_reader NOLOGIN;
CREATE TABLE public.customers (id bigserial PRIMARY KEY, name text NOT NULL, tags text[], doc jsonb);
INSERT INTO public.customers (name, tags, doc)
  SELECT 'customer ' || g, ARRAY['t' || (g % 7)], jsonb_build_object('n', g) FROM generate_series(1, 5000) g;
CREATE TABLE public.orders (id bigserial PRIMARY KEY, customer_id bigint REFERENCES public.customers(id), total numeric(10,2));
INSERT INTO public.orders (customer_id, total) SELECT (g % 5000) + 1, g * 1.25 FROM generate_series(1, 20000) g;
CREATE INDEX orders_customer ON public.orders (customer_id);
GRANT SELECT ON public.customers TO app_reader;
SET ROLE supabase_auth_admin;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text UNIQUE, encrypted_password text, created_at timestamptz DEFAULT now());
INSERT INTO auth.users (id, email, encrypted_password)
  VALUES ('7b0a8c56-4a4c-4d3e-9d1c-5f0e2b1a9c11', 'ada@example.test', '$2a$10$abcdefghijklmnopqrstuv');
RESET ROLE;
"""
OBJECTS = {
    "avatars/ada/face.png": (os.urandom(200_000), "image/png"),
    "docs/report ü.pdf": (b"%PDF-1.7 " * 3000, "application/pdf"),
    "docs/empty.txt": (b"", "text/plain"),
}


def cli(inv: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def psql(sql: str) -> str:
    done = subprocess.run(["docker", "exec", "-i", "-e", "PGUSER=supabase_admin", DB, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                           "-d", "postgres", "-At"], input=sql, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def root_key() -> str:
    """The pgsodium root key file the database image keeps in the db-config volume."""
    return docker("exec", "-u", "0", f"sfp-{ORG}-db", "cat", "/etc/postgresql-custom/pgsodium_root.key").stdout








def test_backup_purge_restore_and_disaster_recovery(backup_org: BackupDeployment, tmp_path: Path) -> None:
    write_data_and_objects(backup_org)
    schedule_is_installed_without_secrets_and_install_is_idempotent(backup_org)
    state = backup_run_list_verify(backup_org)
    restore_over_a_running_org_refuses_without_force(backup_org)
    purge_then_restore_brings_back_data_files_and_keys(backup_org, state)
    disaster_recovery_on_a_new_controller_with_the_key_file_alone(backup_org, tmp_path, state)


def write_data_and_objects(backup_org: BackupDeployment) -> None:
    psql(SEED)
    s = backup_org.secrets()
    api = f"http://127.0.0.1:{backup_org.ports['api']}"
    for key, (body, ctype) in OBJECTS.items():
        bucket, _, name = key.partition("/")
        r = requests.post(f"{api}/storage/v1/object/{bucket}/{name}", data=body, timeout=20,
                          headers={"Authorization": f"Bearer {s['SERVICE_ROLE_KEY']}", "apikey": s["SERVICE_ROLE_KEY"],
                                   "Content-Type": ctype, "Cache-Control": "max-age=60"})
        assert r.status_code == 200, r.text
    tree = storage_tree(backup_org.org_dir / "volumes" / "storage")
    assert len(tree) == len(OBJECTS)
    assert all(attrs.get("user.supabase.content-type") for _sha, attrs in tree.values())


def schedule_is_installed_without_secrets_and_install_is_idempotent(backup_org: BackupDeployment) -> None:
    cron = backup_org.cron_dir / f"sfp-backup-{ORG}"
    text = cron.read_text()
    line = next(ln for ln in text.splitlines() if ln and not ln.startswith("#") and "=" not in ln.split()[0])
    assert line.startswith("41 2 * * * root ")
    assert "-m installer.backup_job --config " in line
    config = backup_org.org_dir / "backup" / "backup.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    values = backup_org.secrets()
    assert "BACKUP_RECOVERY_IDENTITY" not in json.loads(config.read_text())["secrets"]
    assert values["BACKUP_RECOVERY_IDENTITY"] not in config.read_text()
    assert not any(v in text for k, v in values.items() if k not in ("DASHBOARD_USERNAME", "API_KEYS_ISSUED_AT"))
    again = deploy.install(Inventory(backup_org.inventory.path, backup_org.inventory.vault_password_file), [ORG], quiet())
    assert again.result.ok, (again.result.failures, again.result.changed_tasks)
    assert again.generated == {}
    assert again.result.changed == 0, again.result.changed_tasks


def backup_run_list_verify(backup_org: BackupDeployment) -> dict[str, Any]:
    """The org's first set: its id, and the dump, storage files and root key it holds."""
    inv = backup_org.inventory.path
    done = cli(inv, "backup", "run", "--org", ORG)
    assert done.returncode == 0, done.stderr
    set_id = re.search(r"backup (\S+) complete", done.stdout)
    assert set_id, done.stdout
    for word in ("size", "duration", "throughput"):
        assert word in done.stdout
    listed = cli(inv, "backup", "list", "--org", ORG, "--json")
    assert listed.returncode == 0, listed.stderr
    sets = json.loads(listed.stdout)
    assert [s["set_id"] for s in sets if s["complete"]] == [set_id.group(1)]
    verified = cli(inv, "backup", "verify", "--org", ORG)
    assert verified.returncode == 0, verified.stderr
    assert f"set {set_id.group(1)} verified" in verified.stdout
    metric = backup_org.org_dir / "backup" / "metrics" / f"sfp_backup_{ORG}.prom"
    assert "sfp_backup_last_success_timestamp_seconds" in metric.read_text()
    status = cli(inv, "status", "--org", ORG, "--json")
    row = json.loads(status.stdout)[0]
    assert row["last_backup_success"] and row["last_backup_size_bytes"] > 0
    # The set is signed (manifest.sig beside the manifest), with the key of the job's config.
    set_dir = backup_org.s3.root / BUCKET / "sfp" / ORG / set_id.group(1)
    assert (set_dir / "manifest.sig").is_file() and (set_dir / "manifest.json").is_file()
    assert "signature: verified" in cli(inv, "backup", "show", "--org", ORG).stdout
    return {"set_id": set_id.group(1), "dump": logical_dump(ORG),
            "tree": storage_tree(backup_org.org_dir / "volumes" / "storage"), "root_key": root_key()}


def restore_over_a_running_org_refuses_without_force(backup_org: BackupDeployment) -> None:
    before = {n: inspect(n)["Id"] for n in project_containers(f"sfp-{ORG}")}
    vault_before = (backup_org.inventory.path / "host_vars" / ORG / "vault.yml").read_bytes()
    done = cli(backup_org.inventory.path, "restore", "--org", ORG, "--backup", "latest")
    assert done.returncode != 0
    assert "--force" in done.stderr
    assert {n: inspect(n)["Id"] for n in project_containers(f"sfp-{ORG}")} == before
    assert all(inspect(n)["State"]["Running"] for n in before)
    assert (backup_org.inventory.path / "host_vars" / ORG / "vault.yml").read_bytes() == vault_before


def purge_then_restore_brings_back_data_files_and_keys(backup_org: BackupDeployment, state: dict[str, Any]) -> None:
    inv = backup_org.inventory.path
    purged = cli(inv, "uninstall", "--org", ORG, "--purge", "--confirm", ORG)
    assert purged.returncode == 0, purged.stderr
    assert project_containers(f"sfp-{ORG}") == [] and not backup_org.org_dir.exists()
    assert not (backup_org.cron_dir / f"sfp-backup-{ORG}").exists(), "uninstall must remove the schedule"
    done = cli(inv, "restore", "--org", ORG, "--backup", "latest", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"set {state['set_id']}" in done.stdout and "healthy" in done.stdout
    # Only the database ran before the data was in: no service migrated a database the restore replaced.
    assert "stopped nothing (the database stays up" in done.stderr, done.stderr
    assert logical_dump(ORG) == state["dump"]
    assert psql("SELECT count(*) FROM public.orders; SELECT email FROM auth.users;").split() == ["20000", "ada@example.test"]
    assert psql("SELECT rolname FROM pg_roles WHERE rolname = 'app_reader'").strip() == "app_reader"
    assert storage_tree(backup_org.org_dir / "volumes" / "storage") == state["tree"]
    # The fresh database made its own root key at first start; the backup's is back (Vault secrets).
    assert len(state["root_key"]) == 64 and root_key() == state["root_key"]
    values = backup_org.secrets()
    claims = jwt.decode(values["ANON_KEY"], values["JWT_SECRET"], algorithms=["HS256"], issuer="supabase")
    assert claims["role"] == "anon"
    api = f"http://127.0.0.1:{backup_org.ports['api']}"
    assert requests.get(f"{api}/auth/v1/health", headers={"apikey": values["ANON_KEY"]}, timeout=10).status_code == 200
    got = requests.get(f"{api}/storage/v1/object/avatars/ada/face.png", timeout=10,
                       headers={"Authorization": f"Bearer {values['SERVICE_ROLE_KEY']}", "apikey": values["SERVICE_ROLE_KEY"]})
    assert got.status_code == 200 and got.content == OBJECTS["avatars/ada/face.png"][0]
    assert docker("inspect", "-f", "{{.State.Health.Status}}", f"sfp-{ORG}-db").stdout.strip() == "healthy"


def disaster_recovery_on_a_new_controller_with_the_key_file_alone(backup_org: BackupDeployment, tmp_path: Path,
                                                                  state: dict[str, Any]) -> None:
    """The controller is lost with the machine: a new inventory directory holds hosts.yml, the org's
    main.yml (its backup block), the S3 keys and the key file kept offline, and no vault of the org.
    Restore reads the recipient and the signing public key from the key file and writes the set's
    secrets back into the new vault: the same data, files and API keys."""
    old_inv = backup_org.inventory.path
    key = tmp_path / f"{ORG}.key"
    kept = cli(old_inv, "backup", "key", "--org", ORG, "--output", str(key))
    assert kept.returncode == 0, kept.stderr
    old_values = backup_org.secrets()
    old_ages = read_secret_ages(Inventory(old_inv, old_inv / ".vault-pass"), ORG)
    purged = cli(old_inv, "uninstall", "--org", ORG, "--purge", "--confirm", ORG)
    assert purged.returncode == 0, purged.stderr

    new_inv = tmp_path / "new-controller"
    (new_inv / "host_vars" / ORG).mkdir(parents=True)
    shutil.copy(old_inv / "hosts.yml", new_inv / "hosts.yml")
    shutil.copytree(old_inv / "group_vars", new_inv / "group_vars")
    for name in ("main.yml", "backup.yml"):  # the org's settings; backup.yml: where this test machine keeps cron files
        shutil.copy(old_inv / "host_vars" / ORG / name, new_inv / "host_vars" / ORG / name)
    create_password_file(new_inv / ".vault-pass")
    for name, value in (("BACKUP_S3_ACCESS_KEY_ID", ACCESS_KEY), ("BACKUP_S3_SECRET_ACCESS_KEY", SECRET_KEY)):
        done = subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(new_inv), "secrets", "set", "--org", ORG, name],
                              input=value, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
    fresh = Inventory(new_inv, new_inv / ".vault-pass")
    assert set(secrets.read(fresh, ORG)) == {"BACKUP_S3_ACCESS_KEY_ID", "BACKUP_S3_SECRET_ACCESS_KEY"}

    listed = cli(new_inv, "backup", "list", "--org", ORG, "--json")
    assert listed.returncode == 0, listed.stderr
    assert state["set_id"] in [s["set_id"] for s in json.loads(listed.stdout)]
    done = cli(new_inv, "restore", "--org", ORG, "--backup", "latest", "--identity-file", str(key), timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"set {state['set_id']}" in done.stdout and "healthy" in done.stdout

    assert logical_dump(ORG) == state["dump"]
    assert storage_tree(backup_org.org_dir / "volumes" / "storage") == state["tree"]
    assert root_key() == state["root_key"]
    values = secrets.read(Inventory(new_inv, new_inv / ".vault-pass"), ORG)
    for name in ("JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY", "POSTGRES_PASSWORD", "BACKUP_RECOVERY_IDENTITY",
                 "BACKUP_RECOVERY_RECIPIENT"):
        assert values[name] == old_values[name], name
    # The set carried when each secret was made: on the new controller they are as old as before
    # (the S3 keys set by hand above, and the host's new signing key, are new).
    new_ages = read_secret_ages(Inventory(new_inv, new_inv / ".vault-pass"), ORG)
    for name in ("JWT_SECRET", "ANON_KEY", "POSTGRES_PASSWORD", "DASHBOARD_PASSWORD"):
        assert new_ages[name] == old_ages[name], (name, new_ages[name], old_ages[name])
    # The old host's signing key stays trusted for the sets it made; the new host signs with its own.
    assert values["BACKUP_SIGNING_PREVIOUS_PUBLIC_KEYS"] == old_values["BACKUP_SIGNING_PUBLIC_KEY"]
    assert values["BACKUP_SIGNING_PUBLIC_KEY"] != old_values["BACKUP_SIGNING_PUBLIC_KEY"]
    for name in ("ANON_KEY", "SERVICE_ROLE_KEY"):
        assert verify_api_key(values[name], values)["role"] in ("anon", "service_role")
    api = f"http://127.0.0.1:{backup_org.ports['api']}"
    assert requests.get(f"{api}/auth/v1/health", headers={"apikey": values["ANON_KEY"]}, timeout=10).status_code == 200
    got = requests.get(f"{api}/storage/v1/object/avatars/ada/face.png", timeout=10,
                       headers={"Authorization": f"Bearer {values['SERVICE_ROLE_KEY']}", "apikey": values["SERVICE_ROLE_KEY"]})
    assert got.status_code == 200 and got.content == OBJECTS["avatars/ada/face.png"][0]
    # The new controller backs up with the new host's key, and still verifies the old host's set.
    again = cli(new_inv, "backup", "run", "--org", ORG)
    assert again.returncode == 0, again.stderr
    assert cli(new_inv, "backup", "verify", "--org", ORG).returncode == 0
    old_set = cli(new_inv, "backup", "verify", "--org", ORG, str(state["set_id"]))
    assert old_set.returncode == 0 and f"set {state['set_id']} verified" in old_set.stdout, old_set.stderr
