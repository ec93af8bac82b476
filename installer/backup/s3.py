"""Backup sets in the object store: listing them, reading their manifests, cleaning up after failed runs.

The S3 work itself (client, error translation, uploads, deletion, unfinished uploads) is the
object-store package's (installer/objectstore), shared with log export; this module knows only how
sets are laid out under <prefix>/<org>/<set_id>/ and what makes one complete.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import objectstore
from ..errors import SfpError
from ..objectstore import ObjectStore, client, content_md5, delete_keys
from .keys import Trust, check_signature
from .manifest import (
    CLOCK_TOLERANCE,
    MANIFEST,
    SIGNATURE,
    VERIFIED,
    Manifest,
    is_set_id,
    manifest_problems,
    org_prefix,
    set_order,
    set_prefix,
    set_time,
)

__all__ = ["CleanupReport", "SetInfo", "check_bucket", "cleanup", "client", "delete_keys", "put_small", "read_manifest",
           "s3_errors", "scan"]


def s3_errors(store: ObjectStore, action: str) -> contextlib.AbstractContextManager[None]:
    """Translate botocore failures of `action` into an SfpError the operator can act on."""
    return objectstore.errors(store, action, settings="the backup store settings")


def put_small(cli: Any, store: ObjectStore, key: str, body: bytes, action: str) -> None:
    """A small JSON object (manifest, verified marker), with Content-MD5 so Object Lock buckets take it in any checksum mode."""
    with s3_errors(store, action):
        cli.put_object(Bucket=store.bucket, Key=key, Body=body, ContentType="application/json", ContentMD5=content_md5(body))


def check_bucket(cli: Any, store: ObjectStore) -> None:
    """Fail fast (before any dump starts) if the bucket is unreachable or the keys are refused."""
    with s3_errors(store, f"checking bucket {store.bucket!r}"):
        cli.head_bucket(Bucket=store.bucket)


@dataclass
class SetInfo:
    set_id: str
    created: datetime
    """When the set says it was made (from its id)."""
    complete: bool
    """manifest.json is present."""
    verified_at: datetime | None
    size: int
    objects: int
    keys: list[str] = field(repr=False, default_factory=list)
    uploaded: datetime | None = None
    """When its newest object was stored (the store's LastModified): what cleanup ages by."""
    future: bool = False
    """Dated later than the time of listing (beyond CLOCK_TOLERANCE): never `latest`, kept out of retention, reported."""

    @property
    def order(self) -> tuple[datetime, int, str]:
        return set_order(self.set_id)

    def to_json(self) -> dict[str, Any]:
        return {"set_id": self.set_id, "created": self.created.isoformat(), "complete": self.complete,
                "verified_at": self.verified_at.isoformat() if self.verified_at else None,
                "size": self.size, "objects": self.objects, "future": self.future}


def scan(cli: Any, store: ObjectStore, org: str, now: datetime | None = None) -> list[SetInfo]:
    """Every set prefix of the org, complete or not, oldest first (by time, then counter: see manifest.set_order)."""
    now = now or datetime.now(UTC)
    base = org_prefix(store.prefix, org)
    grouped: dict[str, list[dict[str, Any]]] = {}
    with s3_errors(store, f"listing the sets of {org}"):
        for obj in objectstore.list_objects(cli, store, base):
            set_id, _, _rest = obj["Key"][len(base):].partition("/")
            if is_set_id(set_id):
                grouped.setdefault(set_id, []).append(obj)
    sets = []
    for set_id in sorted(grouped, key=set_order):
        objs = grouped[set_id]
        names = {o["Key"][len(base) + len(set_id) + 1:]: o for o in objs}
        verified = names.get(VERIFIED)
        created = set_time(set_id)
        stamps = [o["LastModified"].astimezone(UTC) for o in objs if o.get("LastModified") is not None]
        sets.append(SetInfo(
            set_id=set_id,
            created=created,
            complete=MANIFEST in names,
            verified_at=verified["LastModified"].astimezone(UTC) if verified and MANIFEST in names else None,
            size=sum(o["Size"] for o in objs),
            objects=len(objs),
            keys=[o["Key"] for o in objs],
            uploaded=max(stamps) if stamps else None,
            future=created > now + CLOCK_TOLERANCE,
        ))
    return sets


# A manifest lists a few objects per database: anything near this is not one (and is not read whole).
_SMALL_LIMIT = 8 * 1024 * 1024


def _get(cli: Any, store: ObjectStore, key: str, action: str) -> bytes | None:
    """A small object's bytes, or None when it does not exist."""
    try:
        with s3_errors(store, action):
            body = cli.get_object(Bucket=store.bucket, Key=key)["Body"]
            data = bytes(body.read(_SMALL_LIMIT + 1))
            body.close()
    except SfpError as exc:
        if objectstore.is_missing(exc):
            return None
        raise
    if len(data) > _SMALL_LIMIT:
        raise SfpError(f"{key} is larger than {_SMALL_LIMIT} bytes: not an object a backup job writes",
                       "restore an older set (`backup list`), and check who can write to the bucket")
    return data


def read_manifest(cli: Any, store: ObjectStore, org: str, set_id: str, trust: Trust | None) -> Manifest:
    """The manifest of <prefix>/<org>/<set_id>/, authenticated: its signature (manifest.sig) is
    checked against `trust` before the bytes are even parsed, then the manifest must name this
    org and set and list only objects the toolkit writes. Raises SfpError saying what to do.

    `trust=None` reads without checking the signature: only for showing a manifest when no
    signing key of the org is known; nothing may be downloaded or applied on such a read.
    """
    where = set_prefix(store.prefix, org, set_id)
    body = _get(cli, store, where + MANIFEST, f"reading the manifest of {set_id}")
    if body is None:
        raise SfpError(f"set {set_id} of {org} has no manifest: it is incomplete or does not exist",
                       "list the complete sets with `backup list` and pick one of them")
    signed_by = None
    if trust is not None:
        signature = _get(cli, store, where + SIGNATURE, f"reading the signature of {set_id}")
        signed_by = check_signature(body, signature, trust, org=org, set_id=set_id, bucket=store.bucket)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than the parser goes, which no backup job writes.
        raise SfpError(f"the manifest of {set_id} is not JSON", "the set is damaged; use an older set") from None
    manifest = Manifest.from_json(data, f"manifest of {set_id}")
    problems = manifest_problems(manifest, org, set_id)
    if problems:
        raise SfpError(f"set {set_id} of {org} is refused, nothing was downloaded: {'; '.join(problems)}",
                       "restore an older set (`backup list`), and check who can write to the bucket")
    if trust is not None:
        manifest.authenticity = "signed" if signed_by else "unsigned"
        manifest.signed_by = signed_by
    return manifest


@dataclass
class CleanupReport:
    aborted_uploads: list[str] = field(default_factory=list)
    """Keys whose unfinished multipart uploads were aborted."""
    removed_sets: list[str] = field(default_factory=list)
    """Manifest-less set prefixes that were removed."""


def cleanup(cli: Any, store: ObjectStore, org: str, grace: timedelta = timedelta(hours=24),
            now: datetime | None = None, dry_run: bool = False) -> CleanupReport:
    """Abort multipart uploads and remove manifest-less sets whose newest object was stored more than
    `grace` ago (a run may still be going)."""
    now = now or datetime.now(UTC)
    base = org_prefix(store.prefix, org)
    report = CleanupReport()
    report.aborted_uploads = objectstore.abort_uploads(cli, store, base, older_than=grace, now=now, dry_run=dry_run)
    for info in scan(cli, store, org, now=now):
        # Aged by when its objects were stored, not by the date its id claims (a planted id in the
        # past would get a running backup removed; one in the future would never be removed).
        if info.complete or info.uploaded is None or now - info.uploaded < grace:
            continue
        report.removed_sets.append(info.set_id)
        if not dry_run:
            delete_keys(cli, store, info.keys, f"removing incomplete set {info.set_id}")
    return report
