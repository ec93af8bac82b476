"""The object store: a boto3 client made from the settings, listing of sets, and cleanup.

Every S3 call that can fail goes through `s3_errors`, which turns botocore's exceptions into
an SfpError that says what failed (unreachable, refused credentials, missing bucket, …) and
what to do, without ever quoting a key.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]

from ..errors import SfpError
from .config import ObjectStore
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

_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken",
                     "Forbidden", "403", "AuthorizationHeaderMalformed", "InvalidClientTokenId"}


def client(store: ObjectStore, max_connections: int = 20) -> Any:
    """A boto3 S3 client for `store`; credentials come from the source the settings name."""
    config = Config(
        region_name=store.region,
        s3={"addressing_style": "path" if store.path_style else "auto"},
        request_checksum_calculation=store.checksum_mode,
        response_checksum_validation=store.checksum_mode,
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=max_connections,
        signature_version="s3v4",
    )
    kwargs: dict[str, Any] = {"endpoint_url": store.endpoint_url, "config": config}
    if store.credentials == "vault":
        kwargs["aws_access_key_id"] = store.access_key_id
        kwargs["aws_secret_access_key"] = store.secret_access_key
    try:
        if store.credentials == "env":
            # Only the AWS_* variables: no shared config or instance profile behind the operator's back.
            import os

            if not os.environ.get("AWS_ACCESS_KEY_ID") or not os.environ.get("AWS_SECRET_ACCESS_KEY"):
                raise SfpError("credentials source is env but AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set",
                               "export both variables (and AWS_SESSION_TOKEN if the keys are temporary)")
            kwargs["aws_access_key_id"] = os.environ["AWS_ACCESS_KEY_ID"]
            kwargs["aws_secret_access_key"] = os.environ["AWS_SECRET_ACCESS_KEY"]
            kwargs["aws_session_token"] = os.environ.get("AWS_SESSION_TOKEN")
        return boto3.session.Session().client("s3", **kwargs)
    except botocore.exceptions.BotoCoreError as exc:
        raise SfpError(f"cannot set up the S3 client for {store.describe()}: {exc}", "check the backup store settings") from None


@contextlib.contextmanager
def s3_errors(store: ObjectStore, action: str) -> Iterator[None]:
    """Translate botocore failures of `action` into an SfpError the operator can act on."""
    try:
        yield
    except botocore.exceptions.NoCredentialsError:
        raise SfpError(f"{action}: no S3 credentials were found ({store.credentials} source)",
                       "put the keys in the org's vault (source: vault), export AWS_* (source: env), "
                       "or give the machine an instance role (source: instance)") from None
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError) as exc:
        raise SfpError(f"{action}: the object store {store.endpoint_url or 'AWS S3'} is unreachable ({type(exc).__name__})",
                       "check the endpoint URL, DNS and firewall, then run the command again; no set was changed") from None
    except botocore.exceptions.ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _CREDENTIAL_CODES or status == 403:
            raise SfpError(f"{action}: the object store refused the credentials ({code or status})",
                           f"check the access key and its permissions on bucket {store.bucket!r} (list, get, put, delete)") from None
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and action.startswith("checking bucket")):
            raise SfpError(f"{action}: bucket {store.bucket!r} does not exist at {store.endpoint_url or 'AWS S3'}",
                           "create the bucket (with versioning/Object Lock if you want immutable sets) or fix store.bucket") from None
        raise SfpError(f"{action}: the object store answered {code or status}: {err.get('Message', '')}".rstrip(": "),
                       "check the backup store settings and the store's logs") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise SfpError(f"{action}: S3 request failed: {exc}", "check the backup store settings") from None


def put_small(cli: Any, store: ObjectStore, key: str, body: bytes, action: str) -> None:
    """A small JSON object (manifest, verified marker), with Content-MD5 so Object Lock buckets take it in any checksum mode."""
    from .streams import content_md5

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


def _list(cli: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    paginator = cli.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def scan(cli: Any, store: ObjectStore, org: str, now: datetime | None = None) -> list[SetInfo]:
    """Every set prefix of the org, complete or not, oldest first (by time, then counter: see manifest.set_order)."""
    now = now or datetime.now(UTC)
    base = org_prefix(store.prefix, org)
    grouped: dict[str, list[dict[str, Any]]] = {}
    with s3_errors(store, f"listing the sets of {org}"):
        for obj in _list(cli, store.bucket, base):
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


def list_complete(cli: Any, store: ObjectStore, org: str) -> list[SetInfo]:
    return [s for s in scan(cli, store, org) if s.complete]


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
        if "NoSuchKey" in exc.message or "404" in exc.message:
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
    except ValueError:
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


def delete_keys(cli: Any, store: ObjectStore, keys: list[str], action: str) -> None:
    with s3_errors(store, action):
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            reply = cli.delete_objects(Bucket=store.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            errors = reply.get("Errors") or []
            if errors:
                first = errors[0]
                raise SfpError(f"{action}: {len(errors)} object(s) could not be deleted, e.g. {first.get('Key')}: {first.get('Code')}",
                               "the bucket may hold them under Object Lock retention; they go once retention ends")


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
    with s3_errors(store, f"listing unfinished uploads of {org}"):
        paginator = cli.get_paginator("list_multipart_uploads")
        try:
            uploads = [u for page in paginator.paginate(Bucket=store.bucket, Prefix=base) for u in page.get("Uploads", [])]
        except botocore.exceptions.ClientError as exc:
            # rclone's S3 server answers NoSuchUpload for a bucket that never had a multipart upload.
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise
            uploads = []
    for upload in uploads:
        initiated = upload.get("Initiated")
        if initiated is not None and now - initiated.astimezone(UTC) < grace:
            continue
        report.aborted_uploads.append(upload["Key"])
        if not dry_run:
            with s3_errors(store, f"aborting the unfinished upload of {upload['Key']}"):
                cli.abort_multipart_upload(Bucket=store.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for info in scan(cli, store, org, now=now):
        # Aged by when its objects were stored, not by the date its id claims (a planted id in the
        # past would get a running backup removed; one in the future would never be removed).
        if info.complete or info.uploaded is None or now - info.uploaded < grace:
            continue
        report.removed_sets.append(info.set_id)
        if not dry_run:
            delete_keys(cli, store, info.keys, f"removing incomplete set {info.set_id}")
    return report
