"""No secret of the org on any process's command line during a remote `backup run` and a remote restore.

A command line is readable by every user of the machine (`ps`). The org's host is reached over SSH
(conftest `remote_org`: sshd on loopback, this machine's Docker engine), so the sampler of
tests/proc_sampler.py sees both sides at once: the controller (the CLI, ansible-playbook, ssh) and
the host (sshd's sessions, the module runs, the backup and restore jobs, docker exec, the
containers' own processes). The secrets looked for are every value of the org's vault, read with
the toolkit's own reader, among them the S3 secret key and the recovery identity that a restore
hands to its host.

The only processes ignored are S3 test servers (`rclone serve s3 --auth-key ID,SECRET`, this
module's and those of other suites running on the machine with the same test keys), which stand
for a storage service elsewhere, not for anything the toolkit starts (its S3 client is boto3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backup.support import SECRET_KEY
from tests.backup_stack.conftest import REMOTE_ORG, RemoteDeployment
from tests.proc_sampler import ProcSampler, positive_control, vault_secrets
from tests.stack.conftest import project_containers

pytestmark = pytest.mark.stack

# Wide enough to catch a process that lives a few tens of milliseconds (docker exec, ssh, a shell);
# the positive control below proves it with processes of 50 ms.
INTERVAL = 0.005


def cli(inv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), *args],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})


def secrets_of(d: RemoteDeployment) -> dict[str, str]:
    values = vault_secrets(d.secrets(REMOTE_ORG))
    # What a restore carries to the host must be among them (the vault is where they come from).
    assert values["BACKUP_RECOVERY_IDENTITY"].startswith("AGE-SECRET-KEY-")
    assert values["BACKUP_S3_SECRET_ACCESS_KEY"] == SECRET_KEY
    return values


def s3_test_server(command_line: str) -> bool:
    argv = command_line.split()
    return len(argv) > 2 and argv[0].endswith("/rclone") and argv[1:3] == ["serve", "s3"]


def sampler(d: RemoteDeployment) -> ProcSampler:
    return ProcSampler(INTERVAL, ignore_pids=[d.s3.proc.pid], ignore=s3_test_server)


def assert_watched_and_clean(seen: ProcSampler, done: subprocess.CompletedProcess[str], values: dict[str, str],
                             steps: tuple[str, ...]) -> None:
    """The sampler saw every step of the chain, and no secret was on any command line or in the output."""
    for step in steps:
        assert seen.saw(step), (step, seen.command_lines())
    leaks = seen.leaks(values)
    assert not leaks, json.dumps(leaks, indent=1)
    for name, value in values.items():
        assert value not in done.stdout + done.stderr, name


def test_the_sampler_catches_a_secret_on_a_command_line() -> None:
    caught, runs = positive_control(runs=5, lifetime=0.05, interval=INTERVAL)
    assert caught == runs


def test_remote_backup_run_and_restore_put_no_secret_on_a_command_line(remote_org: RemoteDeployment) -> None:
    # One test, not two: the restore needs the set this backup makes, and tests must not depend on order.
    inv = remote_org.inventory.path
    values = secrets_of(remote_org)
    with sampler(remote_org) as seen:
        done = cli(inv, "-v", "backup", "run", "--org", REMOTE_ORG)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "complete" in done.stdout
    # The sampler watched the whole chain: the playbook on the controller, the job on the host and
    # the dump inside the org's database container.
    assert_watched_and_clean(seen, done, values, ("ansible-playbook", "/env/extravars", "installer.backup_job", "pg_dump"))

    purged = cli(inv, "uninstall", "--org", REMOTE_ORG, "--purge", "--confirm", REMOTE_ORG)
    assert purged.returncode == 0, purged.stderr
    assert project_containers(f"sfp-{REMOTE_ORG}") == []
    with sampler(remote_org) as seen:
        done = cli(inv, "-v", "restore", "--org", REMOTE_ORG, "--backup", "latest")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "healthy" in done.stdout
    # The restore's playbook got the recovery identity and the S3 keys (backup__restore_config) from
    # its private extravars file; the job on the host read them from its 0600 config.
    assert_watched_and_clean(seen, done, values,
                             ("ansible-playbook", "/env/extravars", "installer.restore_job", "pg_restore"))
