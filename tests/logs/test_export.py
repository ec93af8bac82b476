"""Export of a window to a zstd JSON-lines archive + manifest (local file and `rclone serve s3`),
exports killed midway, and retention."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from sfp_logs_stack import SECRET_A, Stack

from installer.logs import (
    SCHEMA_PATH,
    LogQuery,
    S3Target,
    StoredExport,
    apply_retention,
    export_events,
    export_logs,
    list_exports,
    plan_retention,
    read_archive,
    read_events,
)
from installer.logs.event import LogEvent, rfc3339_from_ns
from installer.objectstore.maintenance import unfinished_uploads
from tests.backup.support import ACCESS_KEY, SECRET_KEY, RcloneS3

REPO = Path(__file__).resolve().parents[2]
RCLONE = shutil.which("rclone") or str(Path(sys.executable).parent / "rclone")


def window(stack: Stack) -> tuple[str, str]:
    events = list(read_events(LogQuery(org=stack.a.name)))
    return rfc3339_from_ns(events[0].time_ns), rfc3339_from_ns(events[-1].time_ns)


def check_archive(data: bytes, manifest: dict, expected: list[LogEvent]) -> None:
    assert manifest["format_version"] == 1
    assert manifest["size"] == len(data)
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    got = list(read_archive(io.BytesIO(data)))
    assert [e.to_dict() for e in got] == [e.to_dict() for e in expected]
    assert manifest["counts"] == dict(Counter(e.service for e in expected))
    assert manifest["total"] == len(expected)
    assert manifest["time_range"]["first"] == expected[0].time_str
    assert manifest["time_range"]["last"] == expected[-1].time_str
    schema = json.loads(SCHEMA_PATH.read_text())
    import zstandard

    for line in zstandard.ZstdDecompressor().decompressobj().decompress(data).decode().splitlines():
        jsonschema.validate(json.loads(line), schema)


def test_export_to_local_file(stack: Stack, tmp_path: Path) -> None:
    since, until = window(stack)
    q = LogQuery(org=stack.a.name, since=since, until=until)
    expected = list(read_events(q, secrets={SECRET_A}))
    assert len({e.service for e in expected}) == 4
    res = export_logs(q, to=tmp_path, secrets={SECRET_A})
    archive = Path(res.archive)
    assert archive.parent == tmp_path and archive.name.endswith(".jsonl.zst")
    manifest = json.loads(Path(res.manifest_location).read_text())
    assert manifest == res.manifest and manifest["org"] == stack.a.name and manifest["host"] == "local"
    check_archive(archive.read_bytes(), manifest, expected)
    assert SECRET_A.encode() not in __import__("zstandard").ZstdDecompressor().decompressobj().decompress(archive.read_bytes())
    assert [e.archive for e in list_exports(tmp_path)] == [str(archive)]
    assert not list(tmp_path.glob("*.partial"))


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Target]:
    root = tmp_path_factory.mktemp("s3")
    (root / "logs-bucket").mkdir()
    server = RcloneS3(root)
    try:
        yield S3Target(bucket="logs-bucket", endpoint_url=server.endpoint, path_style=True,
                       access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-east-1")
    finally:
        server.stop()


def keys(s3: S3Target, prefix: str) -> list[str]:
    resp = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
    return sorted(o["Key"] for o in resp.get("Contents", []))


def test_export_to_s3(stack: Stack, s3_server: S3Target) -> None:
    since, until = window(stack)
    q = LogQuery(org=stack.a.name, since=since, until=until)
    expected = list(read_events(q, secrets={SECRET_A}))
    res = export_logs(q, to="s3://logs-bucket/exports/a", s3=s3_server, secrets={SECRET_A})
    listed = keys(s3_server, "exports/a/")
    assert len(listed) == 2 and listed[1] == listed[0] + ".manifest.json"
    client = s3_server.client()
    data = client.get_object(Bucket="logs-bucket", Key=listed[0])["Body"].read()
    manifest = json.loads(client.get_object(Bucket="logs-bucket", Key=listed[1])["Body"].read())
    assert manifest == res.manifest
    check_archive(data, manifest, expected)
    assert [e.archive for e in list_exports("s3://logs-bucket/exports/a", s3=s3_server)] == [res.archive]


def fake_events(n: int) -> Iterator[LogEvent]:
    base = 1_795_640_400_000_000_000
    for i in range(n):
        yield LogEvent(base + i * 1000, "info", secrets.token_hex(60), {"i": i}, org="k", host="h",
                       service=("auth", "db")[i % 2], container="c")


KILLER = """
import os, signal, sys
import installer.logs.export as ex
from installer.logs import S3Target
from installer.logs.event import LogEvent
import secrets
ex.PART_SIZE = 5 * 1024 * 1024
def events():
    base = 1_795_640_400_000_000_000
    for i in range(10**9):
        if i == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)  # killed midway, no chance to clean up
        yield LogEvent(base + i, "info", secrets.token_hex(100), {}, org="k", host="h", service="auth", container="c")
s3 = S3Target(**__import__("json").loads(sys.argv[3])) if len(sys.argv) > 3 else None
ex.export_events(events(), org="k", since_ns=1, until_ns=2, to=sys.argv[1], s3=s3, zstd_level=1)
"""


def test_export_killed_midway_leaves_nothing_complete(tmp_path: Path, s3_server: S3Target) -> None:
    # local file
    proc = subprocess.run([sys.executable, "-c", KILLER, str(tmp_path), "120000"], cwd=REPO, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert list_exports(tmp_path) == []
    assert not list(tmp_path.glob("*.manifest.json")) and not list(tmp_path.glob("*.jsonl.zst"))
    partial = list(tmp_path.glob(".*.partial"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0  # it was really midway
    apply_retention(tmp_path, keep_last=5, stale_partial_hours=0)
    assert not list(tmp_path.glob(".*.partial"))
    # S3: parts were uploaded (two 5 MiB parts) but the upload was never completed
    settings = {"bucket": "", "endpoint_url": s3_server.endpoint_url, "path_style": True,
                "access_key": s3_server.access_key, "secret_key": s3_server.secret_key, "region": "us-east-1"}
    proc = subprocess.run([sys.executable, "-c", KILLER, "s3://logs-bucket/killed", "120000", json.dumps(settings)],
                          cwd=REPO, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert keys(s3_server, "killed/") == []
    assert list_exports("s3://logs-bucket/killed", s3=s3_server) == []


def test_export_failing_in_process_aborts_the_upload(s3_server: S3Target, tmp_path: Path) -> None:
    def broken() -> Iterator[LogEvent]:
        yield from fake_events(1000)
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        export_events(broken(), org="k", since_ns=1, until_ns=2, to="s3://logs-bucket/broken", s3=s3_server)
    assert keys(s3_server, "broken/") == []
    # The library's listing: rclone's S3 server answers NoSuchUpload for a bucket without a multipart
    # upload in progress, which unfinished_uploads reads as none.
    assert unfinished_uploads(s3_server.client(), s3_server, "broken/") == []
    with pytest.raises(RuntimeError):
        export_events(broken(), org="k", since_ns=1, until_ns=2, to=tmp_path, s3=None)
    assert os.listdir(tmp_path) == []


def test_retention_policy() -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    exports = [StoredExport(f"a{i}", f"m{i}", now - timedelta(days=i)) for i in range(10)]
    names = lambda xs: sorted(e.archive for e in xs)  # noqa: E731
    assert plan_retention(exports, now=now) == []
    assert names(plan_retention(exports, keep_last=3, now=now)) == [f"a{i}" for i in range(3, 10)]
    assert names(plan_retention(exports, keep_days=4.5, now=now)) == [f"a{i}" for i in range(5, 10)]
    # both: kept if either policy keeps it
    assert names(plan_retention(exports, keep_last=6, keep_days=2, now=now)) == [f"a{i}" for i in range(6, 10)]
    assert names(plan_retention(exports, keep_last=0, now=now)) == names(exports)


def test_retention_on_disk_and_s3(tmp_path: Path, s3_server: S3Target) -> None:
    day = 86_400 * 10**9
    base = 1_795_640_400_000_000_000
    for i in range(4):
        for target in (tmp_path, "s3://logs-bucket/ret"):
            res = export_events(fake_events(10), org="k", since_ns=base + i * day, until_ns=base + (i + 1) * day,
                                to=target, s3=s3_server)
            # pretend export i was made i days ago
            res.manifest["created_at"] = (datetime.now(UTC) - timedelta(days=i, hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            body = (json.dumps(res.manifest) + "\n").encode()
            if str(target).startswith("s3://"):
                s3_server.client().put_object(Bucket="logs-bucket", Key=res.manifest_location.split("/", 3)[3], Body=body)
            else:
                Path(res.manifest_location).write_bytes(body)
    for target in (str(tmp_path), "s3://logs-bucket/ret"):
        assert len(list_exports(target, s3=s3_server)) == 4
        gone = apply_retention(target, keep_last=1, keep_days=2, s3=s3_server)
        assert len(gone) == 2  # kept: the newest (0 days) and the one of 1 day
        left = list_exports(target, s3=s3_server)
        assert len(left) == 2
    assert len(list(tmp_path.iterdir())) == 4  # two archives + two manifests
    assert len(keys(s3_server, "ret/")) == 4


def test_export_needs_a_window() -> None:
    from installer.errors import SfpError

    with pytest.raises(SfpError) as exc:
        export_logs(LogQuery(org="a", since="1h"), to="/tmp")
    assert "--since and --until" in exc.value.message


def test_retention_never_removes_the_newest_export(tmp_path: Path, s3_server: S3Target) -> None:
    """keep_days alone, and every export older than that: the newest stays (it used to go too)."""
    day = 86_400 * 10**9
    base = 1_795_640_400_000_000_000
    for target in (tmp_path, "s3://logs-bucket/newest"):
        made = []
        for i in range(3):
            res = export_events(fake_events(5), org="k", since_ns=base + i * day, until_ns=base + (i + 1) * day,
                                to=target, s3=s3_server)
            res.manifest["created_at"] = (datetime.now(UTC) - timedelta(days=30 - i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            body = (json.dumps(res.manifest) + "\n").encode()
            if str(target).startswith("s3://"):
                s3_server.client().put_object(Bucket="logs-bucket", Key=res.manifest_location.split("/", 3)[3], Body=body)
            else:
                Path(res.manifest_location).write_bytes(body)
            made.append(res.archive)
        gone = apply_retention(target, keep_days=7, s3=s3_server)
        assert sorted(e.archive for e in gone) == sorted(made[:2])
        assert [e.archive for e in list_exports(target, s3=s3_server)] == [made[2]]


def test_manifests_no_export_writes_are_neither_listed_nor_deleted(tmp_path: Path, s3_server: S3Target) -> None:
    """The export directory and bucket are outside the vault: a manifest that is not JSON, is nested
    past the parser, is not an object or is far too large is skipped (never a crash, never deleted);
    the genuine export beside them lists, and retention keeps it as the newest."""
    crafted = {"notjson": b'{"org": "k", "created_at": ', "deep": b"[" * 200_000, "list": b'["org", "k"]',
               "huge": b'{"org": "k", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'}
    for target in (tmp_path, "s3://logs-bucket/crafted"):
        made = export_events(fake_events(5), org="k", since_ns=1_795_640_400_000_000_000,
                             until_ns=1_795_640_500_000_000_000, to=target, s3=s3_server)
        for name, body in crafted.items():
            if str(target).startswith("s3://"):
                s3_server.client().put_object(Bucket="logs-bucket", Key=f"crafted/{name}.jsonl.zst.manifest.json", Body=body)
            else:
                (tmp_path / f"{name}.jsonl.zst.manifest.json").write_bytes(body)
        listed = list_exports(str(target), s3=s3_server, org="k")
        assert [e.archive for e in listed] == [made.archive]
        assert apply_retention(str(target), keep_last=1, s3=s3_server, org="k") == []
    assert all((tmp_path / f"{name}.jsonl.zst.manifest.json").exists() for name in crafted)
    assert {f"crafted/{name}.jsonl.zst.manifest.json" for name in crafted} <= set(keys(s3_server, "crafted/"))
