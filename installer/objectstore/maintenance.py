"""Listing, deletion, cleanup of unfinished uploads and retention: what backup and log export share.

Both features store units that are complete when, and only when, a marker object exists (a backup
set's manifest.json, an export's manifest). Deleting such a unit removes the marker first, so a
deletion interrupted midway leaves something that no longer lists as complete, never a marker
whose objects are gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.exceptions  # type: ignore[import-untyped]

from ..errors import SfpError
from .store import ObjectStore, errors

_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


def list_objects(cli: Any, store: ObjectStore, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under `prefix` (ListObjectsV2 entries: Key, Size, LastModified, …), paged."""
    paginator = cli.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store.bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def delete_keys(cli: Any, store: ObjectStore, keys: Sequence[str], action: str) -> None:
    """Delete `keys` in batches; any key the store keeps (e.g. under Object Lock) is an SfpError."""
    with errors(store, action):
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start:start + _DELETE_BATCH]
            reply = cli.delete_objects(Bucket=store.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            failed = reply.get("Errors") or []
            if failed:
                first = failed[0]
                raise SfpError(f"{action}: {len(failed)} object(s) could not be deleted, e.g. {first.get('Key')}: {first.get('Code')}",
                               "the bucket may hold them under Object Lock retention; they go once retention ends")


def unfinished_uploads(cli: Any, store: ObjectStore, prefix: str) -> list[dict[str, Any]]:
    """Multipart uploads under `prefix` that were started and never completed or aborted."""
    paginator = cli.get_paginator("list_multipart_uploads")
    try:
        return [u for page in paginator.paginate(Bucket=store.bucket, Prefix=prefix) for u in page.get("Uploads", [])]
    except botocore.exceptions.ClientError as exc:
        # rclone's S3 server answers NoSuchUpload for a bucket that never had a multipart upload.
        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
            raise
        return []


def abort_uploads(cli: Any, store: ObjectStore, prefix: str, *, older_than: timedelta, now: datetime | None = None,
                  dry_run: bool = False) -> list[str]:
    """Abort the unfinished multipart uploads under `prefix` started more than `older_than` ago (a
    younger one may belong to a run still going). Returns their keys."""
    now = now or datetime.now(UTC)
    aborted = []
    with errors(store, f"listing unfinished uploads under {prefix or '/'}"):
        uploads = unfinished_uploads(cli, store, prefix)
    for upload in uploads:
        initiated = upload.get("Initiated")
        if initiated is not None and now - initiated.astimezone(UTC) < older_than:
            continue
        aborted.append(upload["Key"])
        if not dry_run:
            with errors(store, f"aborting the unfinished upload of {upload['Key']}"):
                cli.abort_multipart_upload(Bucket=store.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    return aborted


@dataclass(frozen=True)
class Stored:
    """One unit retention acts on: complete while `marker` exists; `keys` are all its objects."""

    name: str
    created: datetime
    marker: str
    keys: tuple[str, ...] = ()


def never_newest(units: Iterable[Stored], doomed: Iterable[str], newest: str | None = None) -> list[str]:
    """`doomed` without the unit a feature must always keep: `newest` if named (backup keeps its
    newest verified set), else the newest unit. A policy, however written, cannot delete the last one."""
    if newest is None:
        ordered = sorted(units, key=lambda u: u.created)
        newest = ordered[-1].name if ordered else None
    return [name for name in doomed if name != newest]


def delete_units(cli: Any, store: ObjectStore, units: Iterable[Stored], what: str = "unit",
                 marker: str = "marker") -> list[str]:
    """Delete each unit, its marker first. Returns the names deleted, in order."""
    deleted = []
    for unit in units:
        delete_keys(cli, store, [unit.marker], f"deleting the {marker} of {what} {unit.name}")
        rest = [k for k in unit.keys if k != unit.marker]
        if rest:
            delete_keys(cli, store, rest, f"deleting the objects of {what} {unit.name}")
        deleted.append(unit.name)
    return deleted
