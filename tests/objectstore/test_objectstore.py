"""The object-store package against a real S3 server (`rclone serve s3`, as tests/backup uses):
streaming uploads of unknown size, nothing left behind by a failing stream, the retention helpers,
and a client that honours the store's addressing and checksum settings."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import botocore.exceptions  # type: ignore[import-untyped]
import pytest

from installer import objectstore
from installer.errors import SfpError
from installer.objectstore import ObjectStore, Stored
from tests.backup.support import ACCESS_KEY, SECRET_KEY, RcloneS3

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    root = tmp_path_factory.mktemp("s3") / "root"
    root.mkdir()
    s3 = RcloneS3(root)
    yield s3
    s3.stop()


def make_store(server: RcloneS3, bucket: str, **kw: Any) -> ObjectStore:
    store = ObjectStore(bucket=bucket, prefix="t", endpoint_url=server.endpoint, path_style=True, credentials="vault",
                        access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, **kw)
    cli = objectstore.client(store)
    if not any(b["Name"] == bucket for b in cli.list_buckets().get("Buckets", [])):
        cli.create_bucket(Bucket=bucket)
    return store


def record(cli: Any, event: str) -> list[Any]:
    """Every request of `event` (e.g. before-send.s3.UploadPart) the client sends, as sent."""
    seen: list[Any] = []
    cli.meta.events.register(event, lambda request, **_kw: seen.append(request))
    return seen


def wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def keys(cli: Any, store: ObjectStore) -> list[str]:
    return sorted(o["Key"] for o in objectstore.list_objects(cli, store, ""))


def unfinished(cli: Any, store: ObjectStore) -> list[dict[str, Any]]:
    return objectstore.unfinished_uploads(cli, store, "")


def test_unknown_size_stream_above_the_threshold_is_one_multipart_object(server: RcloneS3) -> None:
    store = make_store(server, "stream")
    cli = objectstore.client(store)
    parts = record(cli, "before-send.s3.UploadPart")
    data = os.urandom(2 * PART + 123_457)  # three parts, the last one short
    with objectstore.upload_stream(cli, store.bucket, "t/big", part_size=PART, in_flight=2) as sink:
        for start in range(0, len(data), 64 * 1024):  # as age writes: small chunks, no size known up front
            sink.write(data[start:start + 64 * 1024])
        # Every byte is written, two parts have gone out, and still no object: only the end of the block completes it.
        with pytest.raises(botocore.exceptions.ClientError):
            cli.head_object(Bucket=store.bucket, Key="t/big")
    assert len(parts) == 3
    stored = cli.get_object(Bucket=store.bucket, Key="t/big")["Body"].read()
    assert stored == data
    assert sink.size == len(data) and sink.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    assert unfinished(cli, store) == []


def test_a_small_stream_is_a_single_put(server: RcloneS3) -> None:
    store = make_store(server, "small")
    cli = objectstore.client(store)
    puts, parts = record(cli, "before-send.s3.PutObject"), record(cli, "before-send.s3.UploadPart")
    with objectstore.upload_stream(cli, store.bucket, "t/small", part_size=PART, content_type="application/zstd") as sink:
        sink.write(b"x" * 1000)
    assert len(puts) == 1 and parts == []
    head = cli.head_object(Bucket=store.bucket, Key="t/small")
    assert head["ContentLength"] == 1000 and head["ContentType"] == "application/zstd"


@pytest.mark.parametrize("written", [PART // 2, 2 * PART + 1], ids=["below-threshold", "multipart"])
def test_a_failing_stream_leaves_no_object_and_no_unfinished_upload(server: RcloneS3, written: int) -> None:
    store = make_store(server, f"fail-{written}")
    cli = objectstore.client(store)
    parts = record(cli, "before-send.s3.UploadPart")
    with pytest.raises(RuntimeError, match="the producer died"), \
            objectstore.upload_stream(cli, store.bucket, "t/broken", part_size=PART, in_flight=2) as sink:
        sink.write(os.urandom(written))
        if written > PART:  # let a part reach the store first: there is something to abort
            wait_for(lambda: parts)
        raise RuntimeError("the producer died")  # e.g. pg_dump's exit status, checked after its last byte
    assert (len(parts) > 0) == (written > PART)
    assert keys(cli, store) == []
    assert unfinished(cli, store) == []


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain-writer", "wrapping-writer"])
def test_an_upload_refused_by_the_store_is_reported_not_a_broken_pipe(server: RcloneS3, wrapped: bool) -> None:
    store = make_store(server, "refused")
    cli = objectstore.client(store)
    # The writer would block for ever on a full pipe if the uploader stopped reading without telling it;
    # what it then sees (a broken pipe, or that wrapped by an encoder as age does) is not the news.
    with pytest.raises(botocore.exceptions.ClientError) as err, \
            objectstore.upload_stream(cli, "no-such-bucket", "t/x", part_size=PART, in_flight=1) as sink:
        try:
            for _ in range(40):
                sink.write(os.urandom(MiB))
        except OSError as exc:
            if wrapped:
                raise RuntimeError(f"encoder: {exc}") from exc
            raise
    assert err.value.response["Error"]["Code"] == "NoSuchBucket"
    # Through errors(), the operator reads what happened, not botocore's exception.
    with pytest.raises(SfpError, match="bucket 'no-such-bucket' does not exist"), \
            objectstore.errors(dataclasses.replace(store, bucket="no-such-bucket"), "writing t/x"):
        cli.put_object(Bucket="no-such-bucket", Key="t/x", Body=b"x")


def test_abort_uploads_removes_only_stale_unfinished_uploads(server: RcloneS3) -> None:
    store = make_store(server, "stale")
    cli = objectstore.client(store)
    upload = cli.create_multipart_upload(Bucket=store.bucket, Key="t/killed")["UploadId"]
    cli.upload_part(Bucket=store.bucket, Key="t/killed", UploadId=upload, PartNumber=1, Body=b"partial")
    assert objectstore.abort_uploads(cli, store, "t/", older_than=timedelta(hours=1)) == []  # may be running
    later = datetime.now(UTC) + timedelta(hours=2)
    assert objectstore.abort_uploads(cli, store, "t/", older_than=timedelta(hours=1), now=later, dry_run=True) == ["t/killed"]
    assert len(unfinished(cli, store)) == 1
    assert objectstore.abort_uploads(cli, store, "t/", older_than=timedelta(hours=1), now=later) == ["t/killed"]
    assert unfinished(cli, store) == [] and keys(cli, store) == []


def test_retention_helper_never_deletes_the_newest(server: RcloneS3) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    units = [Stored(f"u{i}", now - timedelta(days=i), f"t/u{i}/marker", (f"t/u{i}/marker", f"t/u{i}/data")) for i in range(4)]
    everything = [u.name for u in units]
    # A policy that keeps nothing still leaves the newest; the order units are listed in does not matter.
    assert objectstore.never_newest(reversed(units), everything) == ["u1", "u2", "u3"]
    # A feature can name the one it keeps (backup: its newest verified set, not the newest one).
    assert objectstore.never_newest(units, everything, newest="u2") == ["u0", "u1", "u3"]
    assert objectstore.never_newest([], []) == []

    store = make_store(server, "retention")
    cli = objectstore.client(store)
    for unit in units:
        for key in unit.keys:
            cli.put_object(Bucket=store.bucket, Key=key, Body=b"x")
    batches: list[list[str]] = []
    cli.meta.events.register("before-parameter-build.s3.DeleteObjects",
                             lambda params, **_kw: batches.append([o["Key"] for o in params["Delete"]["Objects"]]))
    doomed = {u.name: u for u in units}
    deleted = objectstore.delete_units(cli, store, [doomed[n] for n in objectstore.never_newest(units, everything)], what="set")
    assert deleted == ["u1", "u2", "u3"]
    assert keys(cli, store) == ["t/u0/data", "t/u0/marker"]
    # Marker first: an interrupted deletion leaves a unit that no longer lists as complete.
    assert batches == [["t/u1/marker"], ["t/u1/data"], ["t/u2/marker"], ["t/u2/data"], ["t/u3/marker"], ["t/u3/data"]]


@pytest.mark.parametrize("path_style", [True, False])
def test_client_factory_honours_path_style(path_style: bool) -> None:
    # AWS itself (no endpoint): there the default is the bucket in the host name.
    store = ObjectStore(bucket="sfp-bucket", region="eu-central-1", path_style=path_style,
                        credentials="vault", access_key_id="a", secret_access_key="b")
    cli = objectstore.client(store)
    urls: list[str] = []

    def stop(request: Any, **_kw: Any) -> None:
        urls.append(request.url)
        raise _Sent

    cli.meta.events.register("before-send.s3.HeadObject", stop)
    with pytest.raises(_Sent):
        cli.head_object(Bucket="sfp-bucket", Key="k")
    assert len(urls) == 1
    url = urlparse(urls[0])
    if path_style:
        assert url.path == "/sfp-bucket/k" and not url.netloc.startswith("sfp-bucket."), urls
    else:
        assert url.path == "/k" and url.netloc.startswith("sfp-bucket."), urls


class _Sent(Exception):
    """Raised by a before-send hook: the request was built and is not sent anywhere."""


@pytest.mark.parametrize("mode", ["when_required", "when_supported"])
def test_client_factory_honours_checksum_mode(server: RcloneS3, mode: str) -> None:
    store = make_store(server, f"sum-{mode.replace('_', '-')}", checksum_mode=mode)
    cli = objectstore.client(store)
    sent = record(cli, "before-send.s3.PutObject")
    parts = record(cli, "before-send.s3.UploadPart")
    cli.put_object(Bucket=store.bucket, Key="t/small", Body=b"hello")
    with objectstore.upload_stream(cli, store.bucket, "t/big", part_size=PART) as sink:
        sink.write(os.urandom(PART + 1))
    for request in [*sent, *parts]:
        names = {h.lower() for h in request.headers}
        flexible = {h for h in names if h.startswith("x-amz-checksum-") or h == "x-amz-trailer"}
        if mode == "when_required":
            # Older stores reject the newer checksum headers; Object Lock buckets still need one: Content-MD5.
            assert "content-md5" in names and not flexible, names
        else:
            assert flexible and "content-md5" not in names, names
    assert len(sent) == 1 and len(parts) == 2
    assert cli.get_object(Bucket=store.bucket, Key="t/small")["Body"].read() == b"hello"


def test_store_model_points_at_an_s3_address() -> None:
    store = ObjectStore(bucket="", endpoint_url="http://127.0.0.1:9", path_style=True, credentials="vault",
                        access_key_id="a", secret_access_key="secret-value")
    moved = store.at("s3://logs/acme/exports/")
    assert (moved.bucket, moved.prefix, moved.endpoint_url, moved.path_style) == ("logs", "acme/exports", "http://127.0.0.1:9", True)
    assert moved.key("x.zst") == "acme/exports/x.zst" and store.at("s3://logs").key("x") == "x"
    assert "secret-value" not in repr(moved)
    with pytest.raises(SfpError, match="s3://bucket"):
        store.at("https://logs/acme")


def test_part_size_grows_so_an_expected_size_fits_in_ten_thousand_parts() -> None:
    gib = 1024 * MiB
    assert objectstore.part_size_for(None) == objectstore.PART_SIZE
    assert objectstore.part_size_for(10 * gib) == objectstore.PART_SIZE  # 1,280 parts of 16 MiB, with room to spare
    for size in (200 * gib, 3 * 1024 * gib):
        part = objectstore.part_size_for(size)
        assert part > objectstore.PART_SIZE and part * 10_000 >= 2 * size
