"""`sfp_org.backup`: validated by the backup library through `sfp-server validate`; keys from the vault."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from installer.actions import backup_config, backup_keys, restore, secrets
from installer.backup.keys import public_key_of, read_key_file
from installer.context import resolve
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
    # The block's schema (installer/schema/backup.yml) names an unknown key as every inventory check does.
    for where in ("sfp_org.backup: unknown key 'retnetion'", "allowed keys: jobs, paths, recipient, retention"):
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
    assert backup_keys.ensure_recovery_key(resolve(inv, "acme")) == ["BACKUP_RECOVERY_IDENTITY", "BACKUP_RECOVERY_RECIPIENT",
                                                              "BACKUP_SIGNING_KEY", "BACKUP_SIGNING_PUBLIC_KEY"]
    assert backup_keys.ensure_recovery_key(resolve(inv, "acme")) == []
    values = secrets.read(inv, "acme")
    settings = backup_config.settings(resolve(inv, "acme"), encrypting=True)
    assert settings.recipient == values["BACKUP_RECOVERY_RECIPIENT"]
    assert settings.store.secret_access_key == "s3cr3t/value" and settings.retention.keep_daily == 3
    assert public_key_of(values["BACKUP_SIGNING_KEY"]) == values["BACKUP_SIGNING_PUBLIC_KEY"]
    # `backup key`: an age identity file that also carries the signing public key (never its private half).
    shown = sfp("-i", str(inv_path), "backup", "key", "--org", "acme")
    assert shown.returncode == 0, shown.stderr
    assert read_key_file(shown.stdout) == (values["BACKUP_RECOVERY_IDENTITY"], [values["BACKUP_SIGNING_PUBLIC_KEY"]])
    assert values["BACKUP_SIGNING_KEY"] not in shown.stdout
    out = inv_path.parent / "acme.key"
    written = sfp("-i", str(inv_path), "backup", "key", "--org", "acme", "--output", str(out))
    assert written.returncode == 0 and out.read_text() == shown.stdout and stat.S_IMODE(out.stat().st_mode) == 0o600
    again = sfp("-i", str(inv_path), "backup", "key", "--org", "acme", "--output", str(out))
    assert again.returncode != 0 and "not overwritten" in again.stderr
    config = backup_config.job_config(resolve(inv, "acme"))
    assert "BACKUP_RECOVERY_IDENTITY" not in config["secrets"] and "BACKUP_RECOVERY_IDENTITY" not in config["keys"]
    # The job signs with the key of its 0600 config; the key is not among the secrets a set carries.
    assert config["keys"]["BACKUP_SIGNING_KEY"] == values["BACKUP_SIGNING_KEY"]
    assert "BACKUP_SIGNING_KEY" not in config["secrets"]
    assert config["container"] == "sfp-acme-db" and config["storage_dir"].endswith("/orgs/acme/volumes/storage")


def test_an_org_without_backup_block_is_untouched(make_inventory: Callable[..., Path]) -> None:
    inv_path = make_inventory({"acme": org_config(18000, 15432, 16543)})
    inv = Inventory(inv_path, inv_path / ".vault-pass")
    assert backup_keys.ensure_recovery_key(resolve(inv, "acme")) == []
    done = sfp("-i", str(inv_path), "backup", "list", "--org", "acme")
    assert done.returncode == 1 and "has no backup settings" in done.stderr


def test_cron_schedule_becomes_systemd_on_calendar() -> None:
    import importlib.util

    from installer import paths

    spec = importlib.util.spec_from_file_location("sfp_backup", paths.roles_dir() / "backup" / "filter_plugins" / "sfp_backup.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.on_calendar("17 3 * * *") == ["*-*-* 03:17:00"]
    assert mod.on_calendar("0 */6 * * 1-5") == ["Mon..Fri *-*-* 00,06,12,18:00:00"]
    assert mod.on_calendar("30 2 1 * *") == ["*-*-01 02:30:00"]
    assert mod.on_calendar("5,35 * * * 0") == ["Sun *-*-* *:05,35:00"]


def test_a_new_controller_reads_and_verifies_the_sets_with_the_key_file_alone(
        make_inventory: Callable[..., Path], tmp_path: Path) -> None:
    """Disaster recovery, the controller's half: hosts.yml, the org's main.yml, S3 keys and the offline
    key file are enough to list, show and verify the org's sets (the recipient and the signing public
    key come from the key file); the vault the restore writes keeps the old signing key trusted."""
    from installer.backup import api
    from installer.backup.manifest import MANIFEST, set_prefix
    from tests.backup.support import ACCESS_KEY, SECRET_KEY, PgCluster, RcloneS3

    (tmp_path / "s3").mkdir()
    server = RcloneS3(tmp_path / "s3")
    cluster = PgCluster("dr")
    try:
        store = server.store("dr-sets")
        block = {"store": {"bucket": "dr-sets", "endpoint_url": server.endpoint, "path_style": True,
                           "credentials": {"source": "vault"}}}
        orgs = {"acme": org_config(18000, 15432, 16543, backup=block)}
        old_path = make_inventory(orgs, name="old")
        for name, value in (("BACKUP_S3_ACCESS_KEY_ID", ACCESS_KEY), ("BACKUP_S3_SECRET_ACCESS_KEY", SECRET_KEY)):
            assert sfp("-i", str(old_path), "secrets", "set", "--org", "acme", name, stdin=value).returncode == 0
        old = Inventory(old_path, old_path / ".vault-pass")
        backup_keys.ensure_recovery_key(resolve(old, "acme"))
        old_values = secrets.read(old, "acme")
        result = api.run_backup(backup_config.settings(resolve(old, "acme"), encrypting=True), "acme", cluster.database(),
                                storage_dir=None, org_config={}, secrets={"JWT_SECRET": "j" * 40},
                                signing_key=old_values["BACKUP_SIGNING_KEY"])
        key = tmp_path / "acme.key"
        assert sfp("-i", str(old_path), "backup", "key", "--org", "acme", "--output", str(key)).returncode == 0

        # The new controller: the same org files, S3 keys in a new vault, nothing else.
        new_path = make_inventory(orgs, name="new")
        for name, value in (("BACKUP_S3_ACCESS_KEY_ID", ACCESS_KEY), ("BACKUP_S3_SECRET_ACCESS_KEY", SECRET_KEY)):
            assert sfp("-i", str(new_path), "secrets", "set", "--org", "acme", name, stdin=value).returncode == 0
        new = Inventory(new_path, new_path / ".vault-pass")
        assert set(secrets.read(new, "acme")) == {"BACKUP_S3_ACCESS_KEY_ID", "BACKUP_S3_SECRET_ACCESS_KEY"}
        listed = sfp("-i", str(new_path), "backup", "list", "--org", "acme", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [s["set_id"] for s in json.loads(listed.stdout)] == [result.set_id]
        shown = sfp("-i", str(new_path), "backup", "show", "--org", "acme", "--identity-file", str(key))
        assert shown.returncode == 0 and "signature: verified" in shown.stdout, shown.stdout + shown.stderr
        verified = sfp("-i", str(new_path), "backup", "verify", "--org", "acme", "--identity-file", str(key))
        assert verified.returncode == 0 and f"set {result.set_id} verified" in verified.stdout, verified.stderr
        no_key = sfp("-i", str(new_path), "backup", "verify", "--org", "acme")
        assert no_key.returncode != 0 and "no recovery key in its vault" in no_key.stderr

        # The vault a restore writes from the key file: identity, recipient, the old signing key kept
        # as a previous key; install then makes the new host's signing key.
        values = restore.vault_after_restore({"JWT_SECRET": "j" * 40}, secrets.read(new, "acme"), new.org("acme"),
                                                   same_org=True, ident=old_values["BACKUP_RECOVERY_IDENTITY"],
                                                   file_keys=[old_values["BACKUP_SIGNING_PUBLIC_KEY"]])
        assert values["BACKUP_RECOVERY_IDENTITY"] == old_values["BACKUP_RECOVERY_IDENTITY"]
        assert values["BACKUP_RECOVERY_RECIPIENT"] == old_values["BACKUP_RECOVERY_RECIPIENT"]
        secrets.write(new, "acme", values)
        assert backup_keys.ensure_recovery_key(resolve(new, "acme")) == ["BACKUP_SIGNING_KEY", "BACKUP_SIGNING_PUBLIC_KEY"]
        new_values = secrets.read(new, "acme")
        assert new_values["BACKUP_SIGNING_PREVIOUS_PUBLIC_KEYS"] == old_values["BACKUP_SIGNING_PUBLIC_KEY"]
        assert new_values["BACKUP_SIGNING_PUBLIC_KEY"] != old_values["BACKUP_SIGNING_PUBLIC_KEY"]
        assert sfp("-i", str(new_path), "backup", "verify", "--org", "acme").returncode == 0  # old sets still verify
        printed = sfp("-i", str(new_path), "backup", "key", "--org", "acme").stdout
        assert read_key_file(printed)[1] == [new_values["BACKUP_SIGNING_PUBLIC_KEY"], old_values["BACKUP_SIGNING_PUBLIC_KEY"]]

        # A manifest changed after signing: refused, in plain words, naming the set and what to do.
        cli = s3_client(store)
        where = set_prefix("sfp", "acme", result.set_id) + MANIFEST
        body = cli.get_object(Bucket="dr-sets", Key=where)["Body"].read()
        cli.put_object(Bucket="dr-sets", Key=where, Body=body.replace(b'"postgres_major": 15', b'"postgres_major": 16'))
        refused = sfp("-i", str(new_path), "backup", "verify", "--org", "acme")
        text = " ".join(refused.stderr.split())
        assert refused.returncode != 0 and f"set {result.set_id} of acme is refused" in text, text
        assert "signature does not verify: the set was not made by this org's backup job or was altered after" in text
        assert "restore an older set" in text and "who can write to bucket 'dr-sets'" in text
    finally:
        cluster.destroy()
        server.stop()


def s3_client(store: Any) -> Any:
    from installer.backup import s3

    return s3.client(store)
