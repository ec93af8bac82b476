"""`sfp_org.backup`: validated by the backup library through `sfp-server validate`; keys from the vault."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from installer.actions import backup as backup_action
from installer.actions import secrets
from installer.inventory import Inventory
from tests.conftest import org_config
from tests.unit.test_cli import sfp

BLOCK = {"store": {"bucket": "sfp-backups", "endpoint_url": "http://127.0.0.1:9", "path_style": True,
                   "credentials": {"source": "vault"}},
         "schedule": "17 3 * * *", "retention": {"keep_daily": 3}}


def test_bad_backup_fields_are_named_exit_2_nothing_touched(make_inventory: Callable[..., Path]) -> None:
    bad = {"store": {"bucket": "Bad_Bucket", "endpoint_url": "ftp://x", "credentials": {"source": "vault"}},
           "schedule": "every day", "retnetion": {}}
    inv = make_inventory({"acme": org_config(18000, 15432, 16543, backup=bad)})
    done = sfp("-i", str(inv), "validate")
    assert done.returncode == 2, done.stderr
    text = " ".join(done.stderr.split())
    for where in ("sfp_org.backup: Additional properties", "retnetion"):
        assert where in text, text
    fixed = {**bad, "retention": {}}
    fixed.pop("retnetion")
    (inv / "host_vars" / "acme" / "main.yml").write_text(yaml.safe_dump(
        {"sfp_org": org_config(18000, 15432, 16543, backup=fixed)}))
    text = " ".join(sfp("-i", str(inv), "validate").stderr.split())
    for where in ("sfp_org.backup.store.bucket", "sfp_org.backup.store.endpoint_url", "sfp_org.backup.schedule",
                  "sfp_org.backup.store.credentials.secret_access_key", "BACKUP_S3_SECRET_ACCESS_KEY"):
        assert where in text, text
    assert not (inv / "host_vars" / "acme" / "vault.yml").exists()


def test_vault_keys_complete_the_settings_and_the_recovery_key_is_made_once(make_inventory: Callable[..., Path]) -> None:
    inv_path = make_inventory({"acme": org_config(18000, 15432, 16543, backup=BLOCK)})
    for name, value in (("BACKUP_S3_ACCESS_KEY_ID", "AKIDEXAMPLE"), ("BACKUP_S3_SECRET_ACCESS_KEY", "s3cr3t/value")):
        done = sfp("-i", str(inv_path), "secrets", "set", "--org", "acme", name, stdin=value + "\n")
        assert done.returncode == 0, done.stderr
    assert sfp("-i", str(inv_path), "validate").returncode == 0
    inv = Inventory(inv_path, inv_path / ".vault-pass")
    assert backup_action.ensure_recovery_key(inv, "acme") == ["BACKUP_RECOVERY_IDENTITY", "BACKUP_RECOVERY_RECIPIENT"]
    assert backup_action.ensure_recovery_key(inv, "acme") == []
    values = secrets.read(inv, "acme")
    settings = backup_action.settings(inv, "acme")
    assert settings.recipient == values["BACKUP_RECOVERY_RECIPIENT"]
    assert settings.store.secret_access_key == "s3cr3t/value" and settings.retention.keep_daily == 3
    shown = sfp("-i", str(inv_path), "backup", "key", "--org", "acme")
    assert shown.returncode == 0 and shown.stdout.strip() == values["BACKUP_RECOVERY_IDENTITY"]
    config = backup_action.job_config(inv, backup_action.org_of(inv, "acme"))
    assert "BACKUP_RECOVERY_IDENTITY" not in config["secrets"] and "BACKUP_RECOVERY_IDENTITY" not in config["keys"]
    assert config["container"] == "sfp-acme-db" and config["storage_dir"].endswith("/orgs/acme/volumes/storage")


def test_an_org_without_backup_block_is_untouched(make_inventory: Callable[..., Path]) -> None:
    inv_path = make_inventory({"acme": org_config(18000, 15432, 16543)})
    inv = Inventory(inv_path, inv_path / ".vault-pass")
    assert backup_action.ensure_recovery_key(inv, "acme") == []
    done = sfp("-i", str(inv_path), "backup", "list", "--org", "acme")
    assert done.returncode == 1 and "has no backup settings" in done.stderr


def test_cron_schedule_becomes_systemd_on_calendar() -> None:
    import importlib.util

    from installer import paths

    spec = importlib.util.spec_from_file_location("sfp_backup", paths.roles_dir() / "backup" / "filter_plugins" / "sfp_backup.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.on_calendar("17 3 * * *") == "*-*-* 03:17:00"
    assert mod.on_calendar("0 */6 * * 1-5") == "Mon..Fri *-*-* 0/6:00:00"
    assert mod.on_calendar("30 2 1 * *") == "*-*-01 02:30:00"
    assert mod.on_calendar("5,35 * * * 0") == "Sun *-*-* *:05,35:00"
