"""Fast checks (no stack): restore's argument checks, --to-host's inventory move, env credentials
for scheduled jobs, and the backup role's present/absent states run standalone."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer import backup_job
from installer.actions import restore as action
from installer.context import resolve
from installer.errors import SfpError
from installer.hosts_file import move_host
from installer.inventory import Inventory
from tests.conftest import org_config
from tests.roles.test_roles_standalone import play, recap

BLOCK = {"store": {"bucket": "b", "endpoint_url": "http://127.0.0.1:9", "path_style": True, "credentials": {"source": "env"}},
         "schedule": "5 1 * * *"}


def two_machines(make_inventory: Callable[..., Path]) -> Inventory:
    path = make_inventory({"bkra": org_config(18001, 18002, 18003), "bkrb": org_config(18011, 18012, 18013)})
    (path / "hosts.yml").write_text("""\
# machines
all:
  children:
    sfp_orgs:
      children:
        machine_a:
          vars:
            sfp_machine: hosta   # the old one
            ansible_connection: local
          hosts:
            bkra:
            bkrb: null  # spare
        machine_b:
          vars:
            sfp_machine: hostb
            ansible_host: 10.0.0.9
          hosts: {}
""")
    return Inventory(path, path / ".vault-pass")


def test_as_org_must_be_another_org_of_the_inventory(make_inventory: Callable[..., Path]) -> None:
    inv = two_machines(make_inventory)
    with pytest.raises(SfpError) as exc:
        action.check_arguments(inv, "bkra", "bkra")
    assert "names the org itself" in exc.value.message
    with pytest.raises(SfpError) as exc:
        action.check_arguments(inv, "bkra", "bkrz")
    assert "--as-org 'bkrz' is not an org" in exc.value.message and "host_vars/bkrz/main.yml" in (exc.value.hint or "")
    with pytest.raises(SfpError) as exc:
        action.check_arguments(inv, "bkrz", None)
    assert "unknown org" in exc.value.message
    assert action.check_arguments(inv, "bkrz", "bkrb") == "bkrb"  # a source known only to the bucket
    assert action.check_arguments(inv, "bkra", None) == "bkra"


def test_to_host_names_a_machine_of_the_inventory(make_inventory: Callable[..., Path]) -> None:
    inv = two_machines(make_inventory)
    org = resolve(inv, "bkra")
    for same in (None, "hosta", "machine_a"):
        assert action.resolve_machine(org, same) is None
    for other in ("hostb", "machine_b", "10.0.0.9"):
        assert action.resolve_machine(org, other) == "machine_b"
    with pytest.raises(SfpError) as exc:
        action.resolve_machine(org, "hostc")
    assert "hostc" in exc.value.message and "hosta" in exc.value.message and "machine_b" in exc.value.message
    assert "under sfp_orgs" in (exc.value.hint or "")


def test_moving_an_org_keeps_the_rest_of_hosts_yml(make_inventory: Callable[..., Path]) -> None:
    inv = two_machines(make_inventory)
    before, left = action.move_org(inv, "bkrb", "machine_b")
    assert left == ["machine_a"]
    text = inv.hosts_file.read_text()
    assert "# machines" in text and "# the old one" in text and "bkrb:  # spare" in text
    moved = Inventory(inv.path, inv.vault_password_file)
    assert moved.org("bkrb").machine == "hostb" and moved.org("bkra").machine == "hosta"
    _, left = action.move_org(moved, "bkra", "machine_b")
    data = yaml.safe_load(inv.hosts_file.read_text())["all"]["children"]["sfp_orgs"]["children"]
    assert data["machine_a"]["hosts"] == {} and set(data["machine_b"]["hosts"]) == {"bkra", "bkrb"}
    inv.hosts_file.write_bytes(before)
    assert Inventory(inv.path, inv.vault_password_file).org("bkrb").machine == "hosta"


def test_an_org_with_variables_in_hosts_yml_is_moved_by_hand() -> None:
    text = "all:\n  children:\n    sfp_orgs:\n      children:\n        a:\n          hosts:\n            x:\n              ansible_port: 2\n        b:\n          hosts: {}\n"
    with pytest.raises(SfpError) as exc:
        move_host(text, "x", "b")
    assert "variables written in hosts.yml" in exc.value.message and "yourself" in (exc.value.hint or "")


def test_env_file_fills_what_the_environment_lacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in backup_job.ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "backup.env"
    cfg: dict[str, Any] = {"org": "bkra", "backup": BLOCK, "env_file": str(path)}
    with pytest.raises(SfpError) as exc:
        backup_job.load_env_file(cfg)
    assert "source is env" in exc.value.message and str(path) in exc.value.message and "0600" in (exc.value.hint or "")
    path.write_text("# keys\nexport AWS_ACCESS_KEY_ID=AKIDX\nAWS_SECRET_ACCESS_KEY=\"s e=cret\"\nOTHER=1\n")
    path.chmod(0o640)
    with pytest.raises(SfpError) as exc:
        backup_job.load_env_file(cfg)
    assert "readable by others" in exc.value.message
    path.chmod(0o600)
    assert sorted(backup_job.load_env_file(cfg)) == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "s e=cret" and "OTHER" not in os.environ
    # vault / instance credentials never read the file
    assert backup_job.load_env_file({**cfg, "backup": {"store": {"credentials": {"source": "vault"}}}, "env_file": "/nope"}) == []


def role_vars(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    org_dir = tmp_path / "orgs" / "bkrr"
    return {"backup__org": "bkrr", "backup__settings": BLOCK, "backup__schedule": "5 1 * * *", "backup__secrets": {},
            "backup__org_dir": str(org_dir), "backup__container": "sfp-bkrr-db", "backup__storage_dir": str(org_dir / "storage"),
            "backup__config_dir": str(org_dir / "backup"), "backup__config_file": str(org_dir / "backup" / "backup.json"),
            "backup__log_file": str(org_dir / "backup" / "backup.log"), "backup__metrics_dir": str(org_dir / "backup" / "metrics"),
            "backup__scheduler": "cron", "backup__cron_dir": str(tmp_path / "cron.d"), "backup__systemd_dir": str(tmp_path / "units"),
            "backup__env_file": str(tmp_path / "s3.env"), **extra}


def test_role_refuses_env_credentials_the_schedule_could_not_read(tmp_path: Path) -> None:
    (tmp_path / "cron.d").mkdir()
    done = play(tmp_path, "backup", role_vars(tmp_path))
    assert done.returncode != 0
    assert "credentials.source is env" in done.stdout and f"{tmp_path / 's3.env'}" in done.stdout
    assert "does not exist" in done.stdout and "source: vault" in done.stdout
    assert not (tmp_path / "cron.d" / "sfp-backup-bkrr").exists()
    (tmp_path / "s3.env").write_text("AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n")
    (tmp_path / "s3.env").chmod(0o644)
    done = play(tmp_path, "backup", role_vars(tmp_path))
    assert done.returncode != 0 and "is readable by others" in done.stdout


def test_role_installs_then_removes_the_schedule_idempotently(tmp_path: Path) -> None:
    (tmp_path / "cron.d").mkdir()
    (tmp_path / "s3.env").write_text("AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n")
    (tmp_path / "s3.env").chmod(0o600)
    cron = tmp_path / "cron.d" / "sfp-backup-bkrr"
    config = tmp_path / "orgs" / "bkrr" / "backup" / "backup.json"
    done = play(tmp_path, "backup", role_vars(tmp_path))
    assert done.returncode == 0, done.stdout
    assert cron.exists() and config.exists()
    assert play(tmp_path, "backup", role_vars(tmp_path)).stdout.count("changed=0") == 1
    absent = role_vars(tmp_path, backup__state="absent", backup__settings={})
    checked = play(tmp_path, "backup", absent, "--check")
    assert checked.returncode == 0 and recap(checked.stdout)["changed"] == 1 and cron.exists()
    done = play(tmp_path, "backup", absent)
    assert done.returncode == 0, done.stdout
    assert not cron.exists() and not config.exists()
    again = play(tmp_path, "backup", absent)
    assert again.returncode == 0 and recap(again.stdout)["changed"] == 0, again.stdout


def test_restore_entry_points_validate_their_inputs(tmp_path: Path) -> None:
    playbook = Path(__file__).resolve().parents[2] / "playbooks" / "restore.yml"
    text = playbook.read_text()
    assert "tasks_from: restore_check" in text and "tasks_from: restore\n" in text
    specs = yaml.safe_load((Path(__file__).resolve().parents[2] / "roles/backup/meta/argument_specs.yml").read_text())
    spec = specs["argument_specs"]["restore"]["options"]["backup__restore_config"]
    assert spec["no_log"] is True and spec["required"] is True
