"""Faults: a backup killed mid-upload, an unreachable store, refused keys, damaged objects, wrong keys."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import botocore.exceptions  # type: ignore[import-untyped]
import pytest

from installer import objectstore
from installer.backup import api, generate_recovery_key, s3
from installer.backup.report import metrics_path, read_metrics
from installer.errors import SfpError

from .conftest import ORG_CONFIG, SECRETS, SIGNING_KEY, TRUST, make_settings
from .support import PG_BINDIR, PgCluster, RcloneS3, free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@pytest.fixture(scope="module")
def acme_set(s3_server: RcloneS3, source_cluster: PgCluster, recovery_key: tuple[str, str]) -> tuple[Any, str]:
    # A bucket of its own each time the fixture is made (the S3 server lives for the session, and a
    # shuffled run makes this module fixture more than once): the tests count the sets in it.
    store = s3_server.store(f"faults-{uuid.uuid4().hex[:8]}")
    result = api.run_backup(make_settings(store, recovery_key[1]), "acme", source_cluster.database(), storage_dir=None,
                            org_config=ORG_CONFIG, secrets=SECRETS, signing_key=SIGNING_KEY)
    return store, result.set_id


def test_unreachable_store_fails_clearly_and_leaves_sets(acme_set: tuple[Any, str], source_cluster: PgCluster,
                                                         recovery_key: tuple[str, str], tmp_path: Path,
                                                         webhook: tuple[str, list[dict[str, Any]]]) -> None:
    store, set_id = acme_set
    url, received = webhook
    dead = dataclasses.replace(store, endpoint_url=f"http://127.0.0.1:{free_port()}")
    settings = make_settings(dead, recovery_key[1], webhook_url=url)
    with pytest.raises(SfpError) as err:
        api.run_backup(settings, "acme", source_cluster.database(), storage_dir=None, org_config=ORG_CONFIG,
                       secrets=SECRETS, signing_key=SIGNING_KEY, metrics_dir=tmp_path)
    assert "unreachable" in err.value.message and dead.endpoint_url in err.value.message
    assert err.value.hint and "endpoint" in err.value.hint
    assert read_metrics(metrics_path(tmp_path, "acme"))["sfp_backup_last_failure_timestamp_seconds"] > 0
    assert received and received[0]["event"] == "backup.failed" and received[0]["org"] == "acme"
    body = json.dumps(received)
    assert not any(v in body for v in SECRETS.values())
    assert [s.set_id for s in api.list_sets(store, "acme")] == [set_id]


def test_refused_credentials_fail_clearly(acme_set: tuple[Any, str], source_cluster: PgCluster,
                                          recovery_key: tuple[str, str]) -> None:
    store, set_id = acme_set
    wrong = dataclasses.replace(store, secret_access_key="not-the-right-secret-key-0000")
    with pytest.raises(SfpError) as err:
        api.run_backup(make_settings(wrong, recovery_key[1]), "acme", source_cluster.database(), storage_dir=None,
                       org_config={}, secrets=SECRETS, signing_key=SIGNING_KEY)
    assert "refused the credentials" in err.value.message
    assert "not-the-right-secret" not in str(err.value)
    with pytest.raises(SfpError, match="refused the credentials"):
        api.list_sets(wrong, "acme")
    assert [s.set_id for s in api.list_sets(store, "acme")] == [set_id]


def test_missing_bucket(s3_server: RcloneS3, source_cluster: PgCluster, recovery_key: tuple[str, str]) -> None:
    store = dataclasses.replace(s3_server.store("faults"), bucket="no-such-bucket")
    with pytest.raises(SfpError, match="bucket 'no-such-bucket' does not exist"):
        api.run_backup(make_settings(store, recovery_key[1]), "acme", source_cluster.database(), storage_dir=None,
                       org_config={}, secrets={}, signing_key=SIGNING_KEY)


def test_database_down_fails_without_a_set(s3_server: RcloneS3, recovery_key: tuple[str, str]) -> None:
    store = s3_server.store("faults-db")
    cluster = PgCluster("down")
    cluster.destroy()
    with pytest.raises(SfpError, match="psql failed"):
        api.run_backup(make_settings(store, recovery_key[1]), "acme", cluster.database(), storage_dir=None,
                       org_config={}, secrets={}, signing_key=SIGNING_KEY)
    assert api.list_sets(store, "acme", include_incomplete=True) == []


def test_wrong_recovery_key(acme_set: tuple[Any, str], fresh_cluster: PgCluster, tmp_path: Path) -> None:
    store, set_id = acme_set
    other_identity, _ = generate_recovery_key()
    with pytest.raises(SfpError, match="recovery key does not match set"):
        api.verify_set(store, "acme", set_id, other_identity, trust=TRUST)
    with pytest.raises(SfpError, match="recovery key does not match set"):
        api.restore_set(store, "acme", set_id, other_identity, fresh_cluster.database(), trust=TRUST, storage_dir=None)
    with pytest.raises(SfpError, match="not an age identity"):
        api.verify_set(store, "acme", set_id, "AGE-SECRET-KEY-1NOTAKEY", trust=TRUST)
    assert "app" not in fresh_cluster.psql("SELECT datname FROM pg_database")


def test_unknown_or_incomplete_set_is_refused(acme_set: tuple[Any, str], s3_server: RcloneS3, fresh_cluster: PgCluster,
                                              recovery_key: tuple[str, str]) -> None:
    store, _ = acme_set
    # A prefix with objects but no manifest (what a killed run leaves).
    cli = s3.client(store)
    stray = "sfp/acme/20200101T000000Z-abcdef/db/postgres.pgdump.zst.age"
    cli.put_object(Bucket=store.bucket, Key=stray, Body=b"partial")
    with pytest.raises(SfpError, match="not a complete set"):
        api.restore_set(store, "acme", "20200101T000000Z-abcdef", recovery_key[0], fresh_cluster.database(), trust=TRUST,
                        storage_dir=None)
    assert "20200101T000000Z-abcdef" not in [s.set_id for s in api.list_sets(store, "acme")]
    # Aged by upload time, not by the 2020 its id claims: just written, it may be a running backup.
    assert api.cleanup(store, "acme", grace=timedelta(hours=1)).removed_sets == []
    later = datetime.now(UTC) + timedelta(hours=2)
    report = api.cleanup(store, "acme", grace=timedelta(hours=1), now=later)
    assert report.removed_sets == ["20200101T000000Z-abcdef"]
    assert "Contents" not in cli.list_objects_v2(Bucket=store.bucket, Prefix="sfp/acme/20200101T000000Z-abcdef/")


def _rewrite(store: Any, key: str, change: Any) -> None:
    """Replace an uploaded object with changed bytes, through the S3 API (as bit rot or tampering would)."""
    cli = s3.client(store)
    data = bytearray(cli.get_object(Bucket=store.bucket, Key=key)["Body"].read())
    cli.put_object(Bucket=store.bucket, Key=key, Body=bytes(change(data)))


def _flip(store: Any, key: str, offset: int | None = None) -> None:
    def change(data: bytearray) -> bytearray:
        data[len(data) // 2 if offset is None else offset] ^= 0x01
        return data
    _rewrite(store, key, change)


def test_flipped_byte_is_caught_by_verify_and_restore(s3_server: RcloneS3, source_cluster: PgCluster,
                                                      fresh_cluster: PgCluster, recovery_key: tuple[str, str],
                                                      storage_dir: Path, tmp_path: Path) -> None:
    identity, recipient = recovery_key
    store = s3_server.store("flip")
    result = api.run_backup(make_settings(store, recipient), "acme", source_cluster.database(), storage_dir=storage_dir,
                            org_config={}, secrets=SECRETS, signing_key=SIGNING_KEY)
    assert api.verify_set(store, "acme", result.set_id, identity, trust=TRUST).ok
    assert api.list_sets(store, "acme")[0].verified_at is not None
    set_dir = f"sfp/acme/{result.set_id}/"
    app = set_dir + "db/app.pgdump.zst.age"
    _flip(store, app)
    with pytest.raises(SfpError) as err:
        api.verify_set(store, "acme", result.set_id, identity, trust=TRUST, tools=source_cluster.database())
    assert "db/app.pgdump.zst.age" in err.value.message and "sha256" in err.value.message
    assert "db/postgres.pgdump.zst.age" not in err.value.message  # only the damaged object is named
    assert api.list_sets(store, "acme")[0].verified_at is None  # the earlier verification no longer counts

    with pytest.raises(SfpError) as err:
        api.restore_set(store, "acme", result.set_id, identity, fresh_cluster.database(), trust=TRUST,
                        storage_dir=tmp_path / "st", workdir=tmp_path)
    assert "db/app.pgdump.zst.age" in err.value.message and "nothing was restored" in err.value.message
    assert fresh_cluster.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'app_owner'").strip() == "0"
    assert not (tmp_path / "st").exists()

    # The age header (first bytes) and the tail (last chunk's tag) are caught too, and so is truncation.
    _flip(store, app)  # undo
    _flip(store, set_dir + "storage/objects.tar.zst.age", 20)
    _rewrite(store, set_dir + "config/secrets.yaml.zst.age", lambda data: data[:-1])
    with pytest.raises(SfpError) as err:
        api.verify_set(store, "acme", result.set_id, identity, trust=TRUST)
    assert "storage/objects.tar.zst.age" in err.value.message and "config/secrets.yaml.zst.age" in err.value.message
    assert "db/app.pgdump.zst.age" not in err.value.message
    assert "truncated" in err.value.message


def test_killed_backup_leaves_no_set_and_cleanup_reports_it(s3_server: RcloneS3, recovery_key: tuple[str, str]) -> None:
    identity, recipient = recovery_key
    store = s3_server.store("killed")
    cluster = PgCluster("bulk")
    try:
        # ~60 MB of incompressible rows: enough 5 MiB parts to be caught mid-upload.
        cluster.psql("CREATE EXTENSION pgcrypto; CREATE TABLE blob (id int, b bytea);"
                     "INSERT INTO blob SELECT i, gen_random_bytes(1024) FROM generate_series(1, 60000) i;")
        db = cluster.database()
        first = api.run_backup(make_settings(store, recipient), "acme", db, storage_dir=None, org_config={}, secrets={},
                               signing_key=SIGNING_KEY)
        cli = s3.client(store)
        spec = {"org": "acme", "recipient": recipient, "signing_key": SIGNING_KEY, "store": dataclasses.asdict(store),
                "database": {"host": db.host, "port": db.port, "user": db.user, "password_env": db.password_env,
                             "bindir": str(PG_BINDIR)}}
        child = subprocess.Popen([sys.executable, "-m", "tests.backup.child_backup", json.dumps(spec)], cwd=REPO,
                                 start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        caught = None
        deadline = time.monotonic() + 60
        while caught is None and time.monotonic() < deadline and child.poll() is None:
            for upload in cli.list_multipart_uploads(Bucket=store.bucket, Prefix="sfp/acme/").get("Uploads", []):
                try:
                    parts = cli.list_parts(Bucket=store.bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get("Parts", [])
                except botocore.exceptions.ClientError:  # completed between the two calls
                    continue
                if parts and upload["Key"].endswith("db/postgres.pgdump.zst.age"):
                    caught = upload["Key"]
                    break
            else:
                time.sleep(0.02)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        assert caught, f"the child finished before a part was seen: {child.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]

        assert [s.set_id for s in api.list_sets(store, "acme")] == [first.set_id]
        killed_set = caught.split("/")[2]
        report = api.cleanup(store, "acme", grace=timedelta(0))
        assert caught in report.aborted_uploads
        assert cli.list_multipart_uploads(Bucket=store.bucket, Prefix="sfp/acme/").get("Uploads", []) == []
        if report.removed_sets:
            assert report.removed_sets == [killed_set]
        assert [s.set_id for s in api.list_sets(store, "acme", include_incomplete=True)] == [first.set_id]

        second = api.run_backup(make_settings(store, recipient), "acme", db, storage_dir=None, org_config={}, secrets={},
                                signing_key=SIGNING_KEY)
        assert [s.set_id for s in api.list_sets(store, "acme")] == [first.set_id, second.set_id]
        assert api.verify_set(store, "acme", second.set_id, identity, trust=TRUST).ok
    finally:
        cluster.destroy()


def test_failing_dump_leaves_nothing_behind(s3_server: RcloneS3, recovery_key: tuple[str, str]) -> None:
    """pg_dump of one database fails after other objects were uploaded: the run aborts its uploads,
    deletes what it finished, and says which database failed."""
    store = s3_server.store("faildump")
    cluster = PgCluster("faildump")
    try:
        cluster.psql("CREATE DATABASE aaa; CREATE DATABASE zzz;")
        cluster.psql("CREATE TABLE t AS SELECT i, md5(i::text) m FROM generate_series(1, 200000) i;", "aaa")
        hba = cluster.data / "pg_hba.conf"
        hba.write_text("host zzz all 127.0.0.1/32 reject\n" + hba.read_text())
        cluster.psql("SELECT pg_reload_conf()")
        with pytest.raises(SfpError) as err:
            api.run_backup(make_settings(store, recovery_key[1], jobs=2), "acme", cluster.database(), storage_dir=None,
                           org_config={}, secrets={}, signing_key=SIGNING_KEY)
        assert "pg_dump of database 'zzz' failed" in err.value.message
        assert api.list_sets(store, "acme", include_incomplete=True) == []
        cli = s3.client(store)
        # Through the helper: rclone answers NoSuchUpload when a bucket never had a multipart upload,
        # which is the case here when every object of the run was small enough for a single PUT.
        assert objectstore.unfinished_uploads(cli, store, "sfp/") == []
        assert "Contents" not in cli.list_objects_v2(Bucket=store.bucket, Prefix="sfp/")
    finally:
        cluster.destroy()
