"""Authenticated sets (issue #10 A): signatures, what even a signed set may hold, set ordering,
future-dated sets, cleanup by upload time, the offline key file.

Crafted sets are written the way an attacker with write access to the bucket would: objects
zstd-compressed and age-encrypted to the org's (public) recipient, a manifest listing their
digests, signed with a key of the attacker's own, with none, or (a compromised job) with the
org's real signing key.
"""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
import zstandard

from installer import backup_inventory as binv
from installer import backup_job
from installer.actions import restore as action
from installer.backup import Retention, Trust, api, generate_recovery_key, generate_signing_key, s3
from installer.backup import db as dbtools
from installer.backup.keys import key_file, parse_identity, read_key_file, recipient_of, sign_manifest
from installer.backup.manifest import (
    GLOBALS_KEY,
    MANIFEST,
    SECRETS_KEY,
    SIGNATURE,
    Manifest,
    ObjectEntry,
    database_key,
    new_set_id,
    set_order,
    set_prefix,
    set_time,
    utcnow,
)
from installer.backup.report import metrics_path, read_metrics
from installer.backup.retention import select
from installer.backup.s3 import SetInfo
from installer.backup.streams import upload_encrypted
from installer.errors import SfpError

from .conftest import ORG_CONFIG, SECRETS, SIGNING_KEY, SIGNING_PUBLIC_KEY, TRUST, make_settings
from .support import PgCluster, RcloneS3

pytestmark = pytest.mark.slow
FORGED = "signature does not verify: the set was not made by this org's backup job or was altered after"
ROOT_KEY = "a8" * 32


@dataclass
class Pieces:
    """Genuine content to build crafted sets from: the source cluster's roles script and a dump of `app`."""

    globals_sql: str
    app_dump: bytes


@pytest.fixture(scope="module")
def pieces(source_cluster: PgCluster) -> Pieces:
    db = source_cluster.database()
    return Pieces(dbtools.run(db, "pg_dumpall", ["--globals-only"]).decode(),
                  dbtools.run(db, "pg_dump", ["-Fc", "-Z0", "-d", "app"]))


def config_document(secrets: dict[str, str] | None = None, key_files: dict[str, str] | None = None,
                    org: str = "acme") -> bytes:
    return yaml.safe_dump({"org": org, "config": ORG_CONFIG, "secrets": secrets if secrets is not None else SECRETS,
                           "key_files": key_files if key_files is not None else {dbtools.KEY_FILES[0]: ROOT_KEY}}).encode()


def craft_set(store: Any, set_id: str, recipient: str, *, globals_sql: str, databases: dict[str, bytes],
              config: bytes, signing_key: str | None, org: str = "acme", manifest_org: str | None = None,
              manifest_set_id: str | None = None) -> bytes:
    """Write a whole set as a backup job would (objects, manifest.sig, manifest.json); returns the manifest bytes."""
    from installer.backup.keys import parse_recipient

    cli = s3.client(store)
    prefix = set_prefix(store.prefix, org, set_id)
    entries = []
    parts = [(GLOBALS_KEY, "globals", None, globals_sql.encode()), (SECRETS_KEY, "config", None, config)]
    parts += [(database_key(name), "database", name, dump) for name, dump in databases.items()]
    for key, kind, name, data in parts:
        stats = upload_encrypted(io.BytesIO(data), cli, store.bucket, prefix + key, parse_recipient(recipient), zstd_threads=1)
        entries.append(ObjectEntry(key=key, kind=kind, size=stats.size, sha256=stats.sha256, plaintext_size=stats.plaintext_size,
                                   plaintext_sha256=stats.plaintext_sha256, seconds=stats.seconds, database=name))
    manifest = Manifest(org=manifest_org or org, set_id=manifest_set_id or set_id, created=utcnow(), finished=utcnow(),
                        toolkit_version="0", recipient=recipient, objects=entries, postgres_major=15)
    body = (json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n").encode()
    if signing_key is not None:
        cli.put_object(Bucket=store.bucket, Key=prefix + SIGNATURE, Body=sign_manifest(body, signing_key))
    cli.put_object(Bucket=store.bucket, Key=prefix + MANIFEST, Body=body)
    return body


def recording_client(store: Any) -> tuple[Any, list[str]]:
    """An S3 client that records the key of every object read (GET or HEAD)."""
    cli = s3.client(store)
    read: list[str] = []

    def record(params: dict[str, Any], **_kw: Any) -> None:
        read.append(str(params["Key"]))

    cli.meta.events.register("before-parameter-build.s3.GetObject", record)
    cli.meta.events.register("before-parameter-build.s3.HeadObject", record)
    return cli, read


def untouched(cluster: PgCluster) -> bool:
    """The fresh cluster got nothing of a set: no role of the backup, no database of it."""
    return cluster.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'app_owner'").strip() == "0" and \
        cluster.psql("SELECT count(*) FROM pg_database WHERE datname = 'app'").strip() == "0"


def test_a_set_made_without_the_signing_key_is_refused_before_any_object_is_read(
        s3_server: RcloneS3, source_cluster: PgCluster, fresh_cluster: PgCluster, recovery_key: tuple[str, str],
        pieces: Pieces, tmp_path: Path) -> None:
    identity, recipient = recovery_key
    store = s3_server.store("forged")
    # The org's own set; the signing key handed in with the secrets never reaches the bucket.
    genuine = api.run_backup(make_settings(store, recipient), "acme", source_cluster.database(), storage_dir=None,
                             org_config=ORG_CONFIG, secrets={**SECRETS, binv.SIGNING_KEY: SIGNING_KEY},
                             signing_key=SIGNING_KEY)
    report = api.verify_set(store, "acme", genuine.set_id, identity, trust=TRUST)
    assert report.ok and report.authenticity == "signed" and report.signed_by == SIGNING_PUBLIC_KEY
    document = action.config_document(store, api.show_set(store, "acme", genuine.set_id, trust=TRUST), identity)
    assert document["secrets"] == SECRETS and SIGNING_KEY not in json.dumps(document)

    # Someone who can write to the bucket: everything encrypted to the right recipient, their own
    # JWT secret and a newer id, so it is `latest`; signed with a key of their own, or not at all.
    attacker_key, _ = generate_signing_key()
    forged = new_set_id()
    craft_set(store, forged, recipient, globals_sql=pieces.globals_sql, databases={"app": pieces.app_dump},
              config=config_document({**SECRETS, "JWT_SECRET": "attacker-chosen"}), signing_key=attacker_key)
    assert api.resolve_set(store, "acme", "latest") == forged
    prefix = set_prefix(store.prefix, "acme", forged)
    for sign in ("attacker's key", "no signature"):
        if sign == "no signature":
            s3.client(store).delete_object(Bucket=store.bucket, Key=prefix + SIGNATURE)
        cli, read = recording_client(store)
        with pytest.raises(SfpError) as err:
            api.verify_set(store, "acme", "latest", identity, trust=TRUST, client=cli)
        message = err.value.message
        assert f"set {forged} of acme is refused" in message
        assert (FORGED if sign == "attacker's key" else "has no signature") in message, message
        assert "restore" in (err.value.hint or "") and "who can write to bucket 'forged'" in (err.value.hint or "")
        # Only the manifest and its signature were read: no object was downloaded or decrypted.
        assert set(read) <= {prefix + MANIFEST, prefix + SIGNATURE}, read
        cli, read = recording_client(store)
        with pytest.raises(SfpError, match="is refused") as err:
            api.restore_set(store, "acme", "latest", identity, fresh_cluster.database(), trust=TRUST,
                            storage_dir=tmp_path / "st", workdir=tmp_path, client=cli)
        assert set(read) <= {prefix + MANIFEST, prefix + SIGNATURE}, read
        assert untouched(fresh_cluster) and not (tmp_path / "st").exists()
    assert "--allow-unsigned" in (err.value.hint or "")
    # Unsigned sets are read only on explicit request (sets made before signing), and say so.
    opted = api.verify_set(store, "acme", forged, identity, trust=Trust(TRUST.public_keys, allow_unsigned=True))
    assert opted.ok and opted.authenticity == "unsigned" and opted.signed_by is None
    # Without any known public key nothing can be checked: refused, with the way out.
    with pytest.raises(SfpError) as err:
        api.verify_set(store, "acme", genuine.set_id, identity, trust=Trust(()))
    assert "no signing public key of acme is known" in err.value.message and "--identity-file" in (err.value.hint or "")


def test_a_manifest_altered_after_signing_is_refused(s3_server: RcloneS3, source_cluster: PgCluster,
                                                     fresh_cluster: PgCluster, recovery_key: tuple[str, str],
                                                     tmp_path: Path) -> None:
    identity, recipient = recovery_key
    store = s3_server.store("altered")
    genuine = api.run_backup(make_settings(store, recipient), "acme", source_cluster.database(), storage_dir=None,
                             org_config=ORG_CONFIG, secrets=SECRETS, signing_key=SIGNING_KEY)
    prefix = set_prefix(store.prefix, "acme", genuine.set_id)
    cli = s3.client(store)
    original = cli.get_object(Bucket=store.bucket, Key=prefix + MANIFEST)["Body"].read()
    # Swap the settings object for one of the attacker's and fix up its digest in the manifest.
    from installer.backup.keys import parse_recipient

    stats = upload_encrypted(io.BytesIO(config_document({**SECRETS, "SERVICE_ROLE_KEY": "attacker"})), cli, store.bucket,
                             prefix + SECRETS_KEY, parse_recipient(recipient), zstd_threads=1)
    data = json.loads(original)
    for entry in data["objects"]:
        if entry["key"] == SECRETS_KEY:
            entry.update(size=stats.size, sha256=stats.sha256, plaintext_size=stats.plaintext_size,
                         plaintext_sha256=stats.plaintext_sha256)
    for body in ((json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), original + b" "):
        cli.put_object(Bucket=store.bucket, Key=prefix + MANIFEST, Body=body)
        with pytest.raises(SfpError) as err:
            api.verify_set(store, "acme", genuine.set_id, identity, trust=TRUST)
        assert FORGED in err.value.message
        with pytest.raises(SfpError, match="signature does not verify"):
            api.restore_set(store, "acme", genuine.set_id, identity, fresh_cluster.database(), trust=TRUST,
                            storage_dir=None, workdir=tmp_path)
        assert untouched(fresh_cluster)
    # An unsigned-sets opt-in does not accept a signature that fails.
    with pytest.raises(SfpError, match="signature does not verify"):
        api.verify_set(store, "acme", genuine.set_id, identity, trust=Trust(TRUST.public_keys, allow_unsigned=True))


@pytest.mark.parametrize("case", ["key file path", "key file content", "database name", "globals shell",
                                  "globals copy program", "other org", "other set"])
def test_a_signed_set_with_hostile_content_is_refused_with_nothing_changed(
        case: str, s3_server: RcloneS3, fresh_cluster: PgCluster, recovery_key: tuple[str, str], pieces: Pieces,
        tmp_path: Path) -> None:
    """A compromised backup job signs what it writes: what a set may hold is checked all the same."""
    identity, recipient = recovery_key
    store = s3_server.store("hostile-signed")
    marker = tmp_path / "shell-ran"
    kwargs: dict[str, Any] = {"globals_sql": pieces.globals_sql, "databases": {"app": pieces.app_dump},
                              "config": config_document(), "signing_key": SIGNING_KEY}
    expected = {
        "key file path": "key file '/root/.ssh/authorized_keys' is not one the toolkit backs up",
        "key file content": "does not hold a root key",
        "database name": "database 'host=evil dbname=x' is not a plain identifier",
        "globals shell": "roles script of the set (db/globals.sql) is refused",
        "globals copy program": "CopyStmt is not a role statement",
        "other org": "it names org 'other' but was read from the prefix of 'acme'",
        "other set": "but was read from",
    }[case]
    set_id = new_set_id()
    if case == "key file path":
        kwargs["config"] = config_document(key_files={"/root/.ssh/authorized_keys": "ssh-ed25519 AAAA attacker"})
    elif case == "key file content":
        kwargs["config"] = config_document(key_files={dbtools.KEY_FILES[0]: ROOT_KEY + "\n$(touch /tmp/x)"})
    elif case == "database name":
        kwargs["databases"] = {"host=evil dbname=x": pieces.app_dump}
    elif case == "globals shell":
        kwargs["globals_sql"] = pieces.globals_sql + f"\n\\! touch {marker}\n"
    elif case == "globals copy program":
        kwargs["globals_sql"] = pieces.globals_sql + f"\nCOPY (SELECT 1) TO PROGRAM 'touch {marker}';\n"
    elif case == "other org":
        kwargs["manifest_org"] = "other"
    else:  # a genuine set of another time copied under a newer id, to become `latest`
        kwargs["manifest_set_id"] = new_set_id(datetime(2025, 1, 1, tzinfo=UTC))
    craft_set(store, set_id, recipient, **kwargs)
    with pytest.raises(SfpError) as err:
        api.verify_set(store, "acme", set_id, identity, trust=TRUST)
    assert expected in err.value.message, err.value.message
    with pytest.raises(SfpError) as err:
        api.restore_set(store, "acme", set_id, identity, fresh_cluster.database(), trust=TRUST,
                        storage_dir=tmp_path / "st", workdir=tmp_path)
    assert expected in err.value.message, err.value.message
    assert untouched(fresh_cluster) and not marker.exists()


def test_a_signed_set_brings_back_only_the_toolkits_secret_names(
        s3_server: RcloneS3, recovery_key: tuple[str, str], pieces: Pieces, tmp_path: Path) -> None:
    identity, recipient = recovery_key
    store = s3_server.store("secret-names")
    set_id = new_set_id()
    planted = {**SECRETS, "ANSIBLE_BECOME_PASSWORD": "x", "sfp_org": "y", "BACKUP_SIGNING_KEY": "planted",
               "BACKUP_RECOVERY_RECIPIENT": "age1planted", "SSO_CORP_CLIENT_SECRET": "corp", "MY_CLIENT_KEY": "custom"}
    craft_set(store, set_id, recipient, globals_sql=pieces.globals_sql, databases={}, config=config_document(planted),
              signing_key=SIGNING_KEY)
    document = action.config_document(store, api.show_set(store, "acme", set_id, trust=TRUST), identity)
    sso = {"sfp_org_sso": {"oidc": [{"name": "custom", "client_secret_vault_key": "MY_CLIENT_KEY"}]}}
    kept, ignored = binv.restorable(document["secrets"], sso)
    assert kept == {**SECRETS, "SSO_CORP_CLIENT_SECRET": "corp", "MY_CLIENT_KEY": "custom"}
    assert ignored == ["ANSIBLE_BECOME_PASSWORD", "BACKUP_RECOVERY_RECIPIENT", "BACKUP_SIGNING_KEY", "sfp_org"]
    assert "MY_CLIENT_KEY" in binv.restorable(document["secrets"], {})[1]  # only names the target's sso.yml uses


def test_sets_are_ordered_by_time_then_counter_never_by_the_random_part(s3_server: RcloneS3) -> None:
    now = datetime(2025, 6, 1, 3, 4, 5, 678901, tzinfo=UTC)
    made = [new_set_id(now) for _ in range(50)]  # one instant: the counter orders them
    assert sorted(made, key=set_order) == made and len(set(made)) == 50
    stepped_back = new_set_id(now - timedelta(milliseconds=300))  # the clock stepped back a little: still after
    assert set_order(stepped_back) > set_order(made[-1])
    # A far date (a test's, or a clock corrected by hours) is not followed by the next real-clock id.
    new_set_id(datetime.now(UTC) + timedelta(days=30))
    assert set_time(new_set_id()) < datetime.now(UTC) + timedelta(minutes=1)
    # Within one second: the random part of the newer set is the smaller one; old-format ids still read.
    store = s3_server.store("ordering")
    cli = s3.client(store)
    ids = ["20250101T000000Z-ffffff", "20250101T000000.500000Z-0000-ffffff", "20250101T000000.700000Z-0000-000000",
           "20250101T000000.700000Z-0001-000000"]
    for set_id in reversed(ids):
        cli.put_object(Bucket=store.bucket, Key=f"sfp/acme/{set_id}/{MANIFEST}", Body=b"{}")
    assert [s.set_id for s in api.list_sets(store, "acme")] == ids
    assert api.resolve_set(store, "acme", "latest") == ids[-1]
    selection = select(api.list_sets(store, "acme"), Retention(keep_daily=1, keep_weekly=0, keep_monthly=0, keep_yearly=0))
    assert list(selection.keep) == [ids[-1]]


def test_a_future_dated_set_is_not_latest_and_retention_leaves_it(
        s3_server: RcloneS3, source_cluster: PgCluster, recovery_key: tuple[str, str], pieces: Pieces) -> None:
    identity, recipient = recovery_key
    store = s3_server.store("future")
    genuine = api.run_backup(make_settings(store, recipient), "acme", source_cluster.database(), storage_dir=None,
                             org_config=ORG_CONFIG, secrets=SECRETS, signing_key=SIGNING_KEY)
    # Signed with the org's key: a host whose clock runs two days ahead.
    ahead = new_set_id(datetime.now(UTC) + timedelta(days=2))
    craft_set(store, ahead, recipient, globals_sql=pieces.globals_sql, databases={}, config=config_document(),
              signing_key=SIGNING_KEY)
    listed = {s.set_id: s for s in api.list_sets(store, "acme")}
    assert listed[ahead].future and not listed[genuine.set_id].future
    assert api.resolve_set(store, "acme", "latest") == genuine.set_id
    assert api.verify_set(store, "acme", ahead, identity, trust=TRUST).ok  # still usable by its id
    report = api.prune(store, "acme", Retention(0, 0, 0, 0))
    assert report.future == [ahead] and report.deleted == [] and list(report.kept) == [genuine.set_id]
    assert {s.set_id for s in api.list_sets(store, "acme")} == {genuine.set_id, ahead}
    assert "dated in the future" in backup_job.future_warning("acme", ahead)
    # Even a planted set alone is never `latest`.
    lone = s3_server.store("future-only")
    craft_set(lone, ahead, recipient, globals_sql=pieces.globals_sql, databases={}, config=config_document(),
              signing_key=SIGNING_KEY)
    with pytest.raises(SfpError, match="dated in the future"):
        api.resolve_set(lone, "acme", "latest")


def test_cleanup_ages_incomplete_sets_by_upload_time_not_by_their_id(s3_server: RcloneS3) -> None:
    store = s3_server.store("cleanup-age")
    cli = s3.client(store)
    now = datetime.now(UTC)
    past, future = new_set_id(now - timedelta(days=400)), new_set_id(now + timedelta(days=400))
    for set_id in (past, future):
        cli.put_object(Bucket=store.bucket, Key=f"sfp/acme/{set_id}/db/postgres.pgdump.zst.age", Body=b"partial")
    # Just uploaded: both may be a backup still running, whatever their ids say.
    assert api.cleanup(store, "acme", grace=timedelta(hours=1)).removed_sets == []
    # A day later, both are left-overs: the future-dated one is not kept for ever.
    report = api.cleanup(store, "acme", grace=timedelta(hours=1), now=now + timedelta(days=1))
    assert sorted(report.removed_sets, key=set_order) == [past, future]
    assert api.list_sets(store, "acme", include_incomplete=True) == []


def test_key_file_holds_identity_and_signing_key_and_age_reads_it(
        s3_server: RcloneS3, source_cluster: PgCluster, tmp_path: Path) -> None:
    identity, recipient = generate_recovery_key()
    text = key_file("acme", identity, [SIGNING_PUBLIC_KEY])
    assert f"# sfp-backup-signing-key: {SIGNING_PUBLIC_KEY}\n" in text and f"# public key: {recipient}\n" in text
    assert read_key_file(text) == (identity, [SIGNING_PUBLIC_KEY])
    assert str(parse_identity(text)) == identity and recipient_of(text) == recipient  # pyrage: comments skipped
    with pytest.raises(SfpError, match="not an Ed25519 signing public key"):
        read_key_file(text.replace(SIGNING_PUBLIC_KEY, "bm90IGEga2V5"))
    # The reference age tool reads the same file as an identity file and opens a real set's object.
    store = s3_server.store("keyfile")
    result = api.run_backup(make_settings(store, recipient), "acme", source_cluster.database(), storage_dir=None,
                            org_config=ORG_CONFIG, secrets=SECRETS, signing_key=SIGNING_KEY)
    path = tmp_path / "acme.key"
    path.write_text(text)
    path.chmod(0o600)
    encrypted = s3.client(store).get_object(Bucket=store.bucket, Key=f"sfp/acme/{result.set_id}/{SECRETS_KEY}")["Body"].read()
    done = subprocess.run(["age", "--decrypt", "-i", str(path)], input=encrypted, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    document = yaml.safe_load(zstandard.ZstdDecompressor().stream_reader(io.BytesIO(done.stdout)).read())
    assert document["secrets"] == SECRETS


def test_backup_refuses_databases_whose_name_is_not_a_plain_identifier(s3_server: RcloneS3,
                                                                       recovery_key: tuple[str, str]) -> None:
    store = s3_server.store("odd-names")
    cluster = PgCluster("odd-names")
    try:
        cluster.psql('CREATE DATABASE "host=evil dbname=x"; CREATE DATABASE ok_name;')
        with pytest.raises(SfpError) as err:
            api.run_backup(make_settings(store, recovery_key[1]), "acme", cluster.database(), storage_dir=None,
                           org_config={}, secrets={}, signing_key=SIGNING_KEY)
        assert "'host=evil dbname=x'" in err.value.message and "plain identifiers" in err.value.message
        assert "RENAME TO" in (err.value.hint or "")
        assert api.list_sets(store, "acme", include_incomplete=True) == []
    finally:
        cluster.destroy()


def test_a_job_config_without_signing_key_fails_and_alerts(s3_server: RcloneS3, recovery_key: tuple[str, str],
                                                            tmp_path: Path) -> None:
    store = s3_server.store("nokey")
    block = {"store": {"bucket": store.bucket, "endpoint_url": store.endpoint_url, "path_style": True,
                       "credentials": {"source": "vault"}}}
    cfg = {"org": "acme", "org_dir": str(tmp_path), "container": "sfp-acme-db", "backup": block, "metrics_dir": str(tmp_path / "m"),
           "keys": {binv.RECIPIENT: recovery_key[1], binv.ACCESS_KEY: store.access_key_id, binv.SECRET_KEY: store.secret_access_key},
           "secrets": dict(SECRETS)}
    with pytest.raises(SfpError) as err:
        backup_job.run(cfg)
    assert "no signing key (BACKUP_SIGNING_KEY)" in err.value.message and "sfp-server install --org acme" in (err.value.hint or "")
    assert read_metrics(metrics_path(tmp_path / "m", "acme"))["sfp_backup_last_failure_timestamp_seconds"] > 0
    # Where the role renders the vault's values into `secrets`, the job finds the key there, and keeps it out of the set.
    assert backup_job.signing_key_of({**cfg, "secrets": {**SECRETS, binv.SIGNING_KEY: SIGNING_KEY}}) == SIGNING_KEY
    assert binv.SIGNING_KEY not in backup_job.set_secrets({**cfg, "secrets": {**SECRETS, binv.SIGNING_KEY: SIGNING_KEY}})


def test_retention_ignores_future_sets_for_its_rules() -> None:
    day = datetime(2025, 3, 3, tzinfo=UTC)
    sets = [SetInfo(new_set_id(day.replace(hour=h)), day.replace(hour=h), True, None, 1, 1) for h in (1, 2)]
    sets.append(SetInfo(new_set_id(day + timedelta(days=30)), day + timedelta(days=30), True, None, 1, 1, future=True))
    selection = select(sets, Retention(keep_daily=1, keep_weekly=0, keep_monthly=0, keep_yearly=0))
    assert list(selection.keep) == [sets[1].set_id] and selection.delete == [sets[0].set_id]
    assert selection.future == [sets[2].set_id]
