"""Where objects live and how to reach them: the store settings model and the one S3 client factory.

Backup sets and log exports are both kept in an S3-compatible store; both describe it with
`ObjectStore` and get their client from `client()`, so retries, timeouts, addressing and checksum
behaviour are the same for every feature. Every call that can fail goes through `errors()`, which
turns botocore's exceptions into an SfpError saying what failed and what to do, never quoting a key.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import boto3  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]

from ..errors import SfpError

ChecksumMode = Literal["when_required", "when_supported"]
CredentialsSource = Literal["vault", "env", "instance"]

_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken",
                     "Forbidden", "403", "AuthorizationHeaderMalformed", "InvalidClientTokenId"}
# Operations whose body the store may be asked to check: with checksum_mode when_required the SDK
# sends no checksum, but buckets with Object Lock refuse writes that carry none.
_MD5_OPERATIONS = ("PutObject", "UploadPart")


@dataclass(frozen=True)
class ObjectStore:
    """An S3-compatible store and a key prefix in one bucket.

    credentials: `vault` uses the keys given here (the org's vault holds them), `env` only the
    AWS_* variables, `instance` boto3's usual chain (environment, ~/.aws, an instance role).
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    path_style: bool = False
    checksum_mode: ChecksumMode = "when_supported"
    credentials: CredentialsSource = "instance"
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    verify_tls: bool | str = True
    """False to skip certificate checks, or the path of a CA bundle."""

    def describe(self) -> str:
        """Where the objects live, for messages (never the keys)."""
        where = self.endpoint_url or f"AWS S3 ({self.region})"
        return f"s3://{self.bucket}/{self.prefix} at {where}"

    def key(self, name: str) -> str:
        """The key of `name` under the prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def at(self, url: str) -> ObjectStore:
        """The same store, pointed at `s3://bucket[/prefix]` instead."""
        m = re.match(r"^s3://([^/]+)/?(.*)$", url)
        if not m:
            raise SfpError(f"cannot read the S3 address {url!r}", "write it as s3://bucket or s3://bucket/prefix")
        values = {f.name: getattr(self, f.name) for f in fields(ObjectStore)}
        return ObjectStore(**{**values, "bucket": m.group(1), "prefix": m.group(2).strip("/")})


def content_md5(data: bytes) -> str:
    """Content-MD5 header value: the checksum every S3 store accepts (Object Lock buckets need one)."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _add_content_md5(params: dict[str, Any], **_kw: Any) -> None:
    """Give a write that carries no checksum a Content-MD5 (seekable bodies are read and rewound)."""
    headers = params.setdefault("headers", {})
    if any(h.lower() == "content-md5" or h.lower().startswith("x-amz-checksum-") for h in headers):
        return
    body: Any = params.get("body")
    if isinstance(body, bytes | bytearray):
        headers["Content-MD5"] = content_md5(bytes(body))
    elif hasattr(body, "seek") and hasattr(body, "tell"):
        start = body.tell()
        digest = hashlib.md5(usedforsecurity=False)
        while chunk := body.read(1024 * 1024):
            digest.update(chunk)
        body.seek(start)
        headers["Content-MD5"] = base64.b64encode(digest.digest()).decode()


def _credentials(store: ObjectStore) -> dict[str, Any]:
    if store.credentials == "vault":
        return {"aws_access_key_id": store.access_key_id, "aws_secret_access_key": store.secret_access_key,
                "aws_session_token": store.session_token}
    if store.credentials == "env":
        # Only the AWS_* variables: no shared config or instance profile behind the operator's back.
        if not os.environ.get("AWS_ACCESS_KEY_ID") or not os.environ.get("AWS_SECRET_ACCESS_KEY"):
            raise SfpError("credentials source is env but AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set",
                           "export both variables (and AWS_SESSION_TOKEN if the keys are temporary)")
        return {"aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
                "aws_session_token": os.environ.get("AWS_SESSION_TOKEN")}
    return {}


def client(store: ObjectStore, max_connections: int = 20) -> Any:
    """A boto3 S3 client for `store`; credentials come from the source the settings name.

    `max_connections` bounds the HTTP pool: give it at least the number of parts in flight.
    """
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
    kwargs: dict[str, Any] = {"endpoint_url": store.endpoint_url, "config": config, "verify": store.verify_tls,
                              **_credentials(store)}
    try:
        cli = boto3.session.Session().client("s3", **kwargs)
    except botocore.exceptions.BotoCoreError as exc:
        raise SfpError(f"cannot set up the S3 client for {store.describe()}: {exc}", "check the store settings") from None
    if store.checksum_mode == "when_required":
        for operation in _MD5_OPERATIONS:
            cli.meta.events.register(f"before-call.s3.{operation}", _add_content_md5)
    return cli


@contextlib.contextmanager
def errors(store: ObjectStore, action: str, settings: str = "the store settings") -> Iterator[None]:
    """Translate botocore failures of `action` into an SfpError the operator can act on.

    `settings` names, in hints, the settings that describe this store (e.g. "the backup store settings").
    """
    try:
        yield
    except botocore.exceptions.NoCredentialsError:
        raise SfpError(f"{action}: no S3 credentials were found ({store.credentials} source)",
                       "put the keys in the org's vault (source: vault), export AWS_* (source: env), "
                       "or give the machine an instance role (source: instance)") from None
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError) as exc:
        raise SfpError(f"{action}: the object store {store.endpoint_url or 'AWS S3'} is unreachable ({type(exc).__name__})",
                       "check the endpoint URL, DNS and firewall, then run the command again; no stored object was changed") from None
    except botocore.exceptions.ClientError as exc:
        raise _client_error(store, action, settings, exc) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise SfpError(f"{action}: S3 request failed: {exc}", f"check {settings}") from None


def _client_error(store: ObjectStore, action: str, settings: str, exc: Any) -> SfpError:
    err = exc.response.get("Error", {})
    code = str(err.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _CREDENTIAL_CODES or status == 403:
        return SfpError(f"{action}: the object store refused the credentials ({code or status})",
                        f"check the access key and its permissions on bucket {store.bucket!r} (list, get, put, delete)")
    if code == "NoSuchBucket" or (code in ("404", "NotFound") and action.startswith("checking bucket")):
        return SfpError(f"{action}: bucket {store.bucket!r} does not exist at {store.endpoint_url or 'AWS S3'}",
                        "create the bucket (with versioning/Object Lock if you want immutable objects) or fix the bucket setting")
    return SfpError(f"{action}: the object store answered {code or status}: {err.get('Message', '')}".rstrip(": "),
                    f"check {settings} and the store's logs")


def is_missing(exc: SfpError) -> bool:
    """The SfpError `errors()` raised says the object does not exist."""
    return "NoSuchKey" in exc.message or "404" in exc.message
