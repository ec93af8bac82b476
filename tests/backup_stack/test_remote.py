"""Backups and restore of an org whose host is reached over SSH (sshd on loopback, this machine's
Docker engine), through the CLI, against S3 on loopback.

One scenario, one test, on one deployment (conftest `remote_org`): each step needs what the one
before made, so the steps are functions called in order and pass the set they made as an argument;
no test depends on another. The steps: the schedule installed by the
role on the host, `backup run` running the job on the host, restore refusing to replace a present
org, purge + restore on the same host, restore --as-org onto another machine (--to-host moves the
org's inventory entry), env credentials read from the host's file, and removing the backup block
removing the schedule. The toolkit's wheel install (roles/backup/tasks/toolkit.yml) needs a package
index and is not exercised: the "host" has the toolkit at backup__python.

The `backup run` and the restore on the host are also watched by a process sampler
(tests/proc_sampler.py): no secret of the org is on any process's command line (readable by every
user of the machine) on either side, the controller (the CLI, ansible-playbook, ssh) or the host
(sshd's sessions, the module runs, the backup and restore jobs, docker exec, the containers). The
secrets looked for are every value of the org's vault, among them the S3 secret key and the
recovery identity a restore hands to its host. Only S3 test servers (`rclone serve s3 --auth-key
ID,SECRET`, of this suite or of another running on the machine) are ignored: they stand for a
storage service elsewhere, not for anything the toolkit starts (its S3 client is boto3).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import requests
import yaml

from installer.actions import deploy
from tests.backup.support import ACCESS_KEY, SECRET_KEY
from tests.backup_stack.conftest import (
    NEW_ORG,
    REMOTE_ORG,
    RemoteDeployment,
    logical_dump,
    quiet,
    storage_tree,
)
from tests.conftest import write_yaml
from tests.proc_sampler import INTERVAL, ProcSampler, assert_clean, vault_secrets
from tests.stack.conftest import inspect, project_containers

SEED = """
CREATE ROLE remote_reader NOLOGIN;
CREATE TABLE public.notes (id bigserial PRIMARY KEY, body text NOT NULL, doc jsonb);
INSERT INTO public.notes (body, doc) SELECT 'note ' || g, jsonb_build_object('n', g) FROM generate_series(1, 3000) g;
GRANT SELECT ON public.notes TO remote_reader;
"""
OBJECT = ("avatars/grace/photo.png", os.urandom(120_000), "image/png")


def cli(inv: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def psql(org: str, sql: str) -> str:
    done = subprocess.run(["docker", "exec", "-i", "-e", "PGUSER=supabase_admin", f"sfp-{org}-db", "psql", "-X", "-q",
                           "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-At"], input=sql, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout








def s3_test_server(command_line: str) -> bool:
    argv = command_line.split()
    return len(argv) > 2 and argv[0].endswith("/rclone") and argv[1:3] == ["serve", "s3"]


def sampler(d: RemoteDeployment) -> ProcSampler:
    return ProcSampler(INTERVAL, ignore_pids=[d.s3.proc.pid], ignore=s3_test_server)


def org_secrets(d: RemoteDeployment) -> dict[str, str]:
    values = vault_secrets(d.secrets(REMOTE_ORG))
    # What a restore carries to the host must be among them (the vault is where they come from).
    assert values["BACKUP_RECOVERY_IDENTITY"].startswith("AGE-SECRET-KEY-")
    assert values["BACKUP_S3_SECRET_ACCESS_KEY"] == SECRET_KEY
    return values


def keys_work(d: RemoteDeployment, org: str) -> None:
    values = d.secrets(org)
    claims = jwt.decode(values["ANON_KEY"], values["JWT_SECRET"], algorithms=["HS256"], issuer="supabase")
    assert claims["role"] == "anon"
    api = f"http://127.0.0.1:{d.ports[org]['api']}"
    assert requests.get(f"{api}/auth/v1/health", headers={"apikey": values["ANON_KEY"]}, timeout=10).status_code == 200
    key, body, _ctype = OBJECT
    got = requests.get(f"{api}/storage/v1/object/{key}", timeout=10,
                       headers={"Authorization": f"Bearer {values['SERVICE_ROLE_KEY']}", "apikey": values["SERVICE_ROLE_KEY"]})
    assert got.status_code == 200 and got.content == body


def test_backups_and_restores_of_a_remote_org(remote_org: RemoteDeployment) -> None:
    schedule_is_installed_on_the_remote_host(remote_org)
    write_data_and_an_object(remote_org)
    state = backup_run_on_the_remote_host(remote_org)
    restore_over_a_present_remote_org_refuses_and_changes_nothing(remote_org)
    purge_then_restore_on_the_remote_host(remote_org, state)
    restore_as_new_org_onto_another_machine(remote_org, state)
    env_credentials_come_from_the_hosts_file(remote_org, state)
    removing_the_backup_block_removes_the_schedule(remote_org)


def schedule_is_installed_on_the_remote_host(remote_org: RemoteDeployment) -> None:
    cron = remote_org.cron_dir("hosta") / f"sfp-backup-{REMOTE_ORG}"
    line = next(ln for ln in cron.read_text().splitlines() if ln and not ln.startswith("#") and "=" not in ln.split()[0])
    assert line.startswith("23 4 * * * root ") and f"{sys.executable} -m installer.backup_job --config " in line
    config = remote_org.org_dir("hosta", REMOTE_ORG) / "backup" / "backup.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert remote_org.secrets(REMOTE_ORG)["BACKUP_RECOVERY_IDENTITY"] not in config.read_text()


def write_data_and_an_object(remote_org: RemoteDeployment) -> None:
    psql(REMOTE_ORG, SEED)
    s = remote_org.secrets(REMOTE_ORG)
    key, body, ctype = OBJECT
    bucket, _, name = key.partition("/")
    r = requests.post(f"http://127.0.0.1:{remote_org.ports[REMOTE_ORG]['api']}/storage/v1/object/{bucket}/{name}", data=body,
                      timeout=20, headers={"Authorization": f"Bearer {s['SERVICE_ROLE_KEY']}", "apikey": s["SERVICE_ROLE_KEY"],
                                           "Content-Type": ctype})
    assert r.status_code == 200, r.text


def backup_run_on_the_remote_host(remote_org: RemoteDeployment) -> dict[str, Any]:
    """The org's first set: its id, and the dump and storage files it holds."""
    inv = remote_org.inventory.path
    with sampler(remote_org) as seen:
        done = cli(inv, "-v", "backup", "run", "--org", REMOTE_ORG)
    assert done.returncode == 0, done.stdout + done.stderr
    set_id = re.search(r"backup (\S+) complete", done.stdout)
    assert set_id, done.stdout
    # The sampler watched the whole chain: the playbook on the controller, the job on the host and
    # the dump inside the org's database container.
    assert_clean(seen, done, org_secrets(remote_org),
                      ("ansible-playbook", "/env/extravars", "installer.backup_job", "pg_dump"))
    verified = cli(inv, "backup", "verify", "--org", REMOTE_ORG)
    assert verified.returncode == 0, verified.stderr
    assert f"set {set_id.group(1)} verified" in verified.stdout
    # The job ran on the host: its metric is in the org's directory there.
    metric = remote_org.org_dir("hosta", REMOTE_ORG) / "backup" / "metrics" / f"sfp_backup_{REMOTE_ORG}.prom"
    assert "sfp_backup_last_success_timestamp_seconds" in metric.read_text()
    return {"set_id": set_id.group(1), "dump": logical_dump(REMOTE_ORG),
            "tree": storage_tree(remote_org.org_dir("hosta", REMOTE_ORG) / "volumes" / "storage")}


def restore_over_a_present_remote_org_refuses_and_changes_nothing(remote_org: RemoteDeployment) -> None:
    inv = remote_org.inventory.path
    before = {n: inspect(n)["Id"] for n in project_containers(f"sfp-{REMOTE_ORG}")}
    files = {p: p.read_bytes() for p in (inv / "hosts.yml", inv / "host_vars" / REMOTE_ORG / "vault.yml")}
    for extra in ((), ("--to-host", "hosta"), ("--to-host", "machine_a")):
        done = cli(inv, "restore", "--org", REMOTE_ORG, "--backup", "latest", *extra)
        assert done.returncode != 0
        assert "--force" in done.stderr and "hosta" in done.stderr, done.stderr
    unknown = cli(inv, "restore", "--org", REMOTE_ORG, "--backup", "latest", "--to-host", "nowhere")
    assert unknown.returncode != 0 and "machine_b" in unknown.stderr and "hostb" in unknown.stderr
    assert {n: inspect(n)["Id"] for n in project_containers(f"sfp-{REMOTE_ORG}")} == before
    assert all(inspect(n)["State"]["Running"] for n in before)
    assert {p: p.read_bytes() for p in files} == files


def purge_then_restore_on_the_remote_host(remote_org: RemoteDeployment, state: dict[str, Any]) -> None:
    inv = remote_org.inventory.path
    purged = cli(inv, "uninstall", "--org", REMOTE_ORG, "--purge", "--confirm", REMOTE_ORG)
    assert purged.returncode == 0, purged.stderr
    assert project_containers(f"sfp-{REMOTE_ORG}") == [] and not remote_org.org_dir("hosta", REMOTE_ORG).exists()
    values = org_secrets(remote_org)
    with sampler(remote_org) as seen:
        done = cli(inv, "-v", "restore", "--org", REMOTE_ORG, "--backup", "latest")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"set {state['set_id']}" in done.stdout and "healthy" in done.stdout
    # The restore's playbook got the recovery identity and the S3 keys (backup__restore_config) from
    # its private extravars file; the job on the host read them from its 0600 config.
    assert_clean(seen, done, values, ("ansible-playbook", "/env/extravars", "installer.restore_job", "pg_restore"))
    assert logical_dump(REMOTE_ORG) == state["dump"]
    assert psql(REMOTE_ORG, "SELECT rolname FROM pg_roles WHERE rolname = 'remote_reader'").strip() == "remote_reader"
    assert storage_tree(remote_org.org_dir("hosta", REMOTE_ORG) / "volumes" / "storage") == state["tree"]
    keys_work(remote_org, REMOTE_ORG)
    # No restore config (it holds the recovery key) is left on the host.
    assert not list(Path("/tmp").glob("sfp-restore-*/restore.json"))


def restore_as_new_org_onto_another_machine(remote_org: RemoteDeployment, state: dict[str, Any]) -> None:
    inv = remote_org.inventory.path
    done = cli(inv, "restore", "--org", REMOTE_ORG, "--backup", state["set_id"], "--as-org", NEW_ORG,
               "--to-host", "hostb")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"moved {NEW_ORG} to machine group machine_b" in done.stderr
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())["all"]["children"]["sfp_orgs"]["children"]
    assert list(hosts["machine_a"]["hosts"]) == [REMOTE_ORG] and list(hosts["machine_b"]["hosts"]) == [NEW_ORG]
    assert logical_dump(NEW_ORG) == state["dump"]
    assert storage_tree(remote_org.org_dir("hostb", NEW_ORG) / "volumes" / "storage") == state["tree"]
    assert not remote_org.org_dir("hosta", NEW_ORG).exists()
    keys_work(remote_org, NEW_ORG)
    # Same secrets as the source: keys made for the source org open the new one.
    assert remote_org.secrets(NEW_ORG)["JWT_SECRET"] == remote_org.secrets(REMOTE_ORG)["JWT_SECRET"]


def env_credentials_come_from_the_hosts_file(remote_org: RemoteDeployment, state: dict[str, Any]) -> None:
    inv = remote_org.inventory.path
    main = inv / "host_vars" / REMOTE_ORG / "main.yml"
    original = main.read_text()
    data = yaml.safe_load(original)
    data["sfp_org"]["backup"]["store"]["credentials"] = {"source": "env"}
    env_file = remote_org.root / "hosta" / "backup-bkra.env"
    # The path is a setting (installer/schema/backup.yml), not a role variable: a host variable
    # backup__env_file would lose to the play's inputs, which are built from the settings.
    data["sfp_org"]["backup"].setdefault("paths", {})["env_file"] = str(env_file)
    write_yaml(main, data)
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    try:
        missing = subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), "backup", "run", "--org", REMOTE_ORG],
                                 capture_output=True, text=True, timeout=600, env=clean_env)
        assert missing.returncode != 0
        assert str(env_file) in missing.stderr and "does not exist" in missing.stderr, missing.stderr
        env_file.write_text(f"# S3 keys of the backups\nAWS_ACCESS_KEY_ID={ACCESS_KEY}\nexport AWS_SECRET_ACCESS_KEY='{SECRET_KEY}'\n")
        env_file.chmod(0o644)
        loose = subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), "backup", "run", "--org", REMOTE_ORG],
                               capture_output=True, text=True, timeout=600, env=clean_env)
        assert loose.returncode != 0 and "is readable by others" in loose.stderr, loose.stderr
        env_file.chmod(0o600)
        done = subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), "backup", "run", "--org", REMOTE_ORG, "--json"],
                              capture_output=True, text=True, timeout=600, env=clean_env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["set_id"] != state["set_id"]
        config = json.loads((remote_org.org_dir("hosta", REMOTE_ORG) / "backup" / "backup.json").read_text())
        assert config["env_file"] == str(env_file) and ACCESS_KEY not in json.dumps(config["keys"])
    finally:
        main.write_text(original)


def removing_the_backup_block_removes_the_schedule(remote_org: RemoteDeployment) -> None:
    inv = remote_org.inventory.path
    cron = remote_org.cron_dir("hosta") / f"sfp-backup-{REMOTE_ORG}"
    config = remote_org.org_dir("hosta", REMOTE_ORG) / "backup" / "backup.json"
    assert cron.exists() and config.exists()
    main = inv / "host_vars" / REMOTE_ORG / "main.yml"
    data = yaml.safe_load(main.read_text())
    del data["sfp_org"]["backup"]
    write_yaml(main, data)
    checked = deploy.install(remote_org.fresh(), [REMOTE_ORG], quiet(), check=True)
    assert checked.result.ok, checked.result.failures
    assert cron.exists() and config.exists()  # check mode changes nothing
    assert any("Remove the schedule" in task for _h, task in checked.result.changed_tasks)
    done = deploy.install(remote_org.fresh(), [REMOTE_ORG], quiet())
    assert done.result.ok, done.result.failures
    assert not cron.exists() and not config.exists()
    again = deploy.install(remote_org.fresh(), [REMOTE_ORG], quiet())
    assert again.result.ok and again.result.changed == 0, again.result.changed_tasks
