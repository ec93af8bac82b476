"""`sfp-server logs export`: a time window of an org's logs to a zstd JSON-lines archive plus a
manifest, on local disk or in S3, and retention of such exports.

An export is complete when, and only when, its manifest exists: the archive is written first (to a
temporary name that is renamed into place, or streamed to the object store, where it exists only
once the upload completes), and the manifest, which holds the archive's sha256 and size, is written
last. An export killed midway therefore leaves at most a `.partial` file (removed by
`apply_retention`) or an unfinished multipart upload (aborted when the export fails in-process; S3
lifecycle rules or `abort_stale_uploads` clean those of killed processes), and nothing that lists as
complete. The S3 side (client, upload, listing, deletion, cleanup) is installer/objectstore's, shared
with backups.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO, Any

import zstandard

from installer import objectstore
from installer.errors import SfpError
from installer.objectstore import ObjectStore, Stored

from .api import LogQuery, read_events
from .event import LogEvent, rfc3339_from_ns
from .source import DockerEndpoint
from .timespec import parse_time_spec

FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
ARCHIVE_SUFFIX = ".jsonl.zst"
PART_SIZE = 8 * 1024 * 1024  # S3 multipart part size (minimum 5 MiB except the last)


class S3Target(ObjectStore):
    """The export store: the object-store model, built from the export's own names for the keys
    (given keys are used; without them, boto3's usual chain: AWS_* environment, ~/.aws, an instance role)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, region: str | None = None,
                 path_style: bool = False, access_key: str | None = None, secret_key: str | None = None,
                 session_token: str | None = None, verify_tls: bool | str = True) -> None:
        super().__init__(bucket=bucket, prefix=prefix.strip("/"), endpoint_url=endpoint_url, region=region or "us-east-1",
                         path_style=path_style, credentials="vault" if access_key else "instance",
                         access_key_id=access_key, secret_access_key=secret_key, session_token=session_token,
                         verify_tls=verify_tls)

    @property
    def access_key(self) -> str | None:
        return self.access_key_id

    @property
    def secret_key(self) -> str | None:
        return self.secret_access_key

    def client(self) -> Any:
        return objectstore.client(self)


@dataclass
class ExportResult:
    archive: str
    manifest_location: str
    manifest: dict[str, Any]


def archive_name(org: str, since_ns: int, until_ns: int) -> str:
    def stamp(ns: int) -> str:
        return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"sfp-logs-{org}-{stamp(since_ns)}-{stamp(until_ns)}{ARCHIVE_SUFFIX}"


class _Sink:
    """Compressed bytes go here; counts bytes and hashes them."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self._put(data)
        return len(data)

    def _put(self, data: bytes) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def flush(self) -> None:
        pass


class _FileSink(_Sink):
    def __init__(self, fh: IO[bytes]) -> None:
        super().__init__()
        self.fh = fh

    def _put(self, data: bytes) -> None:
        self.fh.write(data)


class _StreamSink(_Sink):
    """Into the object store's upload sink (installer/objectstore: s3transfer, multipart above PART_SIZE)."""

    def __init__(self, sink: objectstore.UploadSink) -> None:
        super().__init__()
        self.sink = sink

    def _put(self, data: bytes) -> None:
        self.sink.write(data)


def _write_events(events: Iterable[LogEvent], sink: _Sink, level: int) -> tuple[Counter[str], int | None, int | None]:
    counts: Counter[str] = Counter()
    first = last = None
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
    with cctx.stream_writer(sink, closefd=False) as zw:  # type: ignore[arg-type]
        batch: list[str] = []
        for ev in events:
            batch.append(ev.to_json())
            counts[ev.service] += 1
            if first is None:
                first = ev.time_ns
            last = ev.time_ns
            if len(batch) >= 2048:
                batch.append("")
                zw.write("\n".join(batch).encode("utf-8"))
                batch = []
        if batch:
            batch.append("")
            zw.write("\n".join(batch).encode("utf-8"))
    return counts, first, last


def _manifest(org: str, name: str, since_ns: int, until_ns: int, counts: Counter[str],
              first: int | None, last: int | None, sink: _Sink, extra: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "kind": "sfp-logs-export",
        "org": org,
        "archive": name,
        "compression": "zstd",
        "content": "application/x-ndjson; one event per line, see installer/logs/event.schema.json",
        "window": {"since": rfc3339_from_ns(since_ns), "until": rfc3339_from_ns(until_ns)},
        "time_range": {"first": rfc3339_from_ns(first) if first is not None else None,
                       "last": rfc3339_from_ns(last) if last is not None else None},
        "counts": dict(sorted(counts.items())),
        "total": sum(counts.values()),
        "size": sink.size,
        "sha256": sink.sha.hexdigest(),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **(extra or {}),
    }


def export_events(events: Iterable[LogEvent], *, org: str, since_ns: int, until_ns: int, to: str | Path,
                  s3: S3Target | None = None, zstd_level: int = 6, extra: dict[str, Any] | None = None,
                  ) -> ExportResult:
    """Write `events` (already filtered and masked, in time order) as an archive + manifest.

    `to` is an `s3://bucket/prefix` (then `s3` carries the endpoint/credentials; its bucket/prefix
    are taken from `to`), a directory (a name is made from org and window), or a file path ending in
    .jsonl.zst. The manifest is `<archive>.manifest.json`, written last."""
    target = str(to)
    if target.startswith("s3://"):
        return _export_s3(events, (s3 or S3Target(bucket="")).at(target), org, since_ns, until_ns, zstd_level, extra)
    return _export_file(events, Path(target), org, since_ns, until_ns, zstd_level, extra)


def _export_file(events: Iterable[LogEvent], path: Path, org: str, since_ns: int, until_ns: int,
                 level: int, extra: dict[str, Any] | None) -> ExportResult:
    if path.is_dir() or str(path).endswith("/"):
        path.mkdir(parents=True, exist_ok=True)
        path = path / archive_name(org, since_ns, until_ns)
    if not path.name.endswith(ARCHIVE_SUFFIX):
        path = path.with_name(path.name + ARCHIVE_SUFFIX)
    if not path.parent.is_dir():
        raise SfpError(f"the directory {path.parent} does not exist", "create it or choose another --to")
    manifest_path = path.with_name(path.name + MANIFEST_SUFFIX)
    # A previous complete export of the same name stops being complete before we overwrite it.
    manifest_path.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            sink = _FileSink(fh)
            counts, first, last = _write_events(events, sink, level)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        manifest = _manifest(org, path.name, since_ns, until_ns, counts, first, last, sink, extra)
        _atomic_write(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return ExportResult(str(path), str(manifest_path), manifest)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _s3_errors(store: ObjectStore) -> Any:
    return objectstore.errors(store, f"exporting to s3://{store.bucket}/{store.prefix}", settings="the logs.export settings")


def _export_s3(events: Iterable[LogEvent], store: ObjectStore, org: str, since_ns: int, until_ns: int,
               level: int, extra: dict[str, Any] | None) -> ExportResult:
    client = objectstore.client(store)
    name = archive_name(org, since_ns, until_ns)
    key = store.key(name)
    manifest_key = key + MANIFEST_SUFFIX
    with _s3_errors(store):
        # A previous complete export of the same name stops being complete before it is overwritten.
        client.delete_object(Bucket=store.bucket, Key=manifest_key)
        with objectstore.upload_stream(client, store.bucket, key, part_size=PART_SIZE, content_type="application/zstd") as up:
            sink = _StreamSink(up)
            counts, first, last = _write_events(events, sink, level)
        manifest = _manifest(org, name, since_ns, until_ns, counts, first, last, sink, extra)
        client.put_object(Bucket=store.bucket, Key=manifest_key, ContentType="application/json",
                          Body=(json.dumps(manifest, indent=2) + "\n").encode())
    return ExportResult(f"s3://{store.bucket}/{key}", f"s3://{store.bucket}/{manifest_key}", manifest)


def read_archive(fh: IO[bytes]) -> Iterator[LogEvent]:
    """The events of an archive, streamed (for checks and re-imports)."""
    reader = zstandard.ZstdDecompressor().stream_reader(fh)
    for line in io.TextIOWrapper(reader, encoding="utf-8"):
        if line.strip():
            yield LogEvent.from_dict(json.loads(line))


# ---------------------------------------------------------------- retention

@dataclass(frozen=True)
class StoredExport:
    archive: str       # path or key of the archive
    manifest: str      # path or key of the manifest
    created: datetime  # from the manifest's created_at (or the file time)


def plan_retention(exports: Iterable[StoredExport], *, keep_last: int | None = None,
                   keep_days: float | None = None, now: datetime | None = None) -> list[StoredExport]:
    """Which complete exports to delete: those neither among the newest `keep_last` nor younger than
    `keep_days` (with both given, an export is kept if either keeps it; with neither, none is deleted)."""
    if keep_last is None and keep_days is None:
        return []
    now = now or datetime.now(UTC)
    ordered = sorted(exports, key=lambda e: e.created, reverse=True)
    doomed = []
    for i, e in enumerate(ordered):
        kept_by_count = keep_last is not None and i < keep_last
        kept_by_age = keep_days is not None and now - e.created < timedelta(days=keep_days)
        if not (kept_by_count or kept_by_age):
            doomed.append(e)
    return doomed


def _created(manifest: dict[str, Any], fallback: float) -> datetime:
    try:
        return datetime.strptime(manifest["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (KeyError, ValueError, TypeError):
        return datetime.fromtimestamp(fallback, UTC)


# An export's manifest is a few hundred bytes; anything far larger was not written by an export.
_MANIFEST_LIMIT = 1024 * 1024


def _manifest_fields(raw: bytes) -> dict[str, Any] | None:
    """An export manifest's fields, or None for what no export writes: too large, not JSON, nested past
    the parser, not an object. The directory and the bucket are outside the vault: such a file is
    neither listed nor ever deleted by retention."""
    if len(raw) > _MANIFEST_LIMIT:
        return None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def list_exports(to: str | Path, *, s3: S3Target | None = None, org: str | None = None) -> list[StoredExport]:
    """Complete exports (those with a manifest) at a directory or s3://bucket/prefix."""
    target = str(to)
    found: list[StoredExport] = []
    if target.startswith("s3://"):
        return _list_s3((s3 or S3Target(bucket="")).at(target), org)
    d = Path(target)
    for m in sorted(d.glob("*" + ARCHIVE_SUFFIX + MANIFEST_SUFFIX)):
        try:
            with m.open("rb") as f:
                body = _manifest_fields(f.read(_MANIFEST_LIMIT + 1))
        except OSError:
            continue
        if body is None or (org and body.get("org") != org):
            continue
        found.append(StoredExport(str(m)[:-len(MANIFEST_SUFFIX)], str(m), _created(body, m.stat().st_mtime)))
    return found


def _list_s3(store: ObjectStore, org: str | None) -> list[StoredExport]:
    client = objectstore.client(store)
    prefix = f"{store.prefix}/" if store.prefix else ""
    found = []
    with _s3_errors(store):
        for obj in objectstore.list_objects(client, store, prefix):
            k = obj["Key"]
            if not k.endswith(MANIFEST_SUFFIX) or "/" in k[len(prefix):]:
                continue
            stream = client.get_object(Bucket=store.bucket, Key=k)["Body"]
            body = _manifest_fields(stream.read(_MANIFEST_LIMIT + 1))
            stream.close()
            if body is None or (org and body.get("org") != org):
                continue
            found.append(StoredExport(f"s3://{store.bucket}/{k[:-len(MANIFEST_SUFFIX)]}", f"s3://{store.bucket}/{k}",
                                      _created(body, obj["LastModified"].timestamp())))
    return found


def apply_retention(to: str | Path, *, keep_last: int | None = None, keep_days: float | None = None,
                    s3: S3Target | None = None, org: str | None = None, now: datetime | None = None,
                    stale_partial_hours: float = 24) -> list[StoredExport]:
    """Delete complete exports the policy does not keep (manifest first, so a half-done deletion never
    lists as complete; never the newest export, whatever the policy), and, on disk, `.partial`
    leftovers of killed exports older than `stale_partial_hours`. Returns what was deleted."""
    exports = list_exports(to, s3=s3, org=org)
    units = {e.archive: Stored(e.archive, e.created, e.manifest, (e.manifest, e.archive)) for e in exports}
    planned = {e.archive for e in plan_retention(exports, keep_last=keep_last, keep_days=keep_days, now=now)}
    allowed = set(objectstore.never_newest(units.values(), planned))
    doomed = [e for e in exports if e.archive in allowed]
    target = str(to)
    if target.startswith("s3://"):
        store = (s3 or S3Target(bucket="")).at(target)
        with _s3_errors(store):
            objectstore.delete_units(objectstore.client(store), store, [_s3_unit(units[e.archive]) for e in doomed],
                                     what="export", marker="manifest")
        return doomed
    for e in doomed:
        Path(e.manifest).unlink(missing_ok=True)
        Path(e.archive).unlink(missing_ok=True)
    cutoff = time.time() - stale_partial_hours * 3600
    for p in Path(target).glob(".*.partial"):
        with contextlib.suppress(OSError):
            if p.stat().st_mtime < cutoff:
                p.unlink()
    return doomed


def _s3_unit(unit: Stored) -> Stored:
    """The unit with bucket-relative keys (s3://bucket/key → key)."""
    def key(location: str) -> str:
        return location[len("s3://"):].partition("/")[2]
    return Stored(unit.name, unit.created, key(unit.marker), tuple(key(k) for k in unit.keys))


def abort_stale_uploads(s3: S3Target, *, older_than_hours: float = 24, now: datetime | None = None) -> int:
    """Abort multipart uploads under the prefix started more than `older_than_hours` ago (exports
    killed midway). Returns how many were aborted."""
    client = objectstore.client(s3)
    return len(objectstore.abort_uploads(client, s3, s3.prefix, older_than=timedelta(hours=older_than_hours), now=now))


def export_logs(query: LogQuery, *, to: str | Path, endpoint: DockerEndpoint | None = None,
                secrets: Iterable[str] = (), s3: S3Target | None = None, now: datetime | None = None,
                tz: tzinfo | None = None, zstd_level: int = 6) -> ExportResult:
    """What `sfp-server logs export` does: the org's events of [since, until] (both required),
    filtered and masked like `logs --json`, to an archive + manifest at `to`."""
    q = query
    if q.since is None or q.until is None:
        raise SfpError("an export needs both --since and --until", "give the window to export, e.g. --since 1d --until 0s")
    now = now or datetime.now(UTC)
    since_ns = parse_time_spec(q.since, now=now, tz=tz)
    until_ns = parse_time_spec(q.until, now=now, tz=tz)
    endpoint = endpoint or DockerEndpoint()
    events = read_events(q, endpoint=endpoint, secrets=secrets, now=now, tz=tz)
    return export_events(events, org=q.org, since_ns=since_ns, until_ns=until_ns, to=to, s3=s3,
                         zstd_level=zstd_level, extra={"host": endpoint.host})
