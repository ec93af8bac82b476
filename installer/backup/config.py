"""Per-org backup settings: the model the rest of the package takes, and its validation.

The settings are plain data (from the inventory, with S3 keys from the org's vault when the
credentials source is `vault`); `parse_settings` checks them all at once and raises a
ConfigError naming every bad field, so nothing starts with a half-valid configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from ..errors import ConfigError, Problem
from .cron import cron_problem

ChecksumMode = Literal["when_required", "when_supported"]
CredentialsSource = Literal["vault", "env", "instance"]

# S3 bucket naming rules (the common subset every S3-compatible store accepts).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["store", "recipient"],
    "properties": {
        "store": {
            "type": "object",
            "additionalProperties": False,
            "required": ["bucket"],
            "properties": {
                "endpoint_url": {"type": ["string", "null"], "description": "https://host[:port] of an S3-compatible store; empty for AWS"},
                "region": {"type": "string", "minLength": 1, "description": "the store's region, e.g. us-east-1"},
                "bucket": {"type": "string", "description": "an existing bucket"},
                "prefix": {"type": "string", "description": "key prefix under which every org's sets live, e.g. sfp"},
                "path_style": {"type": "boolean", "description": "true for stores that need path-style addressing (MinIO, Ceph, rclone)"},
                "checksum_mode": {
                    "enum": ["when_required", "when_supported"],
                    "description": "when_required for older S3-compatible stores that reject the newer checksum headers",
                },
                "credentials": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["source"],
                    "properties": {
                        "source": {"enum": ["vault", "env", "instance"], "description": "vault: keys given here; env: AWS_* variables; instance: the default AWS chain"},
                        "access_key_id": {"type": "string", "minLength": 1},
                        "secret_access_key": {"type": "string", "minLength": 1},
                    },
                },
            },
        },
        "recipient": {"type": "string", "description": "the org's age recovery recipient (age1…), made by `generate_recovery_key`"},
        "schedule": {"type": "string", "description": "cron expression (five fields, or @hourly, @daily, @weekly, @monthly, @yearly), e.g. '17 3 * * *'"},
        "retention": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                k: {"type": "integer", "minimum": 0, "description": "number of periods to keep (0: none)"}
                for k in ("keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
            },
        },
        "webhook_url": {"type": ["string", "null"], "description": "http(s) URL that receives a JSON POST after each run"},
        "jobs": {"type": "integer", "minimum": 1, "maximum": 32, "description": "databases dumped and restored in parallel"},
    },
}


@dataclass(frozen=True)
class ObjectStore:
    bucket: str
    prefix: str = "sfp"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    path_style: bool = False
    checksum_mode: ChecksumMode = "when_supported"
    credentials: CredentialsSource = "instance"
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """Where the sets live, for messages (never the keys)."""
        where = self.endpoint_url or f"AWS S3 ({self.region})"
        return f"s3://{self.bucket}/{self.prefix} at {where}"


@dataclass(frozen=True)
class Retention:
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 12
    keep_yearly: int = 0


@dataclass(frozen=True)
class BackupSettings:
    store: ObjectStore
    recipient: str
    schedule: str = "17 3 * * *"
    retention: Retention = field(default_factory=Retention)
    webhook_url: str | None = None
    jobs: int = 2


def _where(source: str, path: Any) -> str:
    return ".".join([source, *(str(p) for p in path)])


def parse_settings(data: Any, source: str = "backup") -> BackupSettings:
    """Validate `data` (a mapping as written in the inventory) and build the settings.

    Every problem is reported at once, each naming its field (`backup.store.bucket`, …).
    """
    problems: list[Problem] = []
    for err in sorted(Draft202012Validator(SCHEMA).iter_errors(data), key=lambda e: list(e.absolute_path)):
        desc = (err.schema.get("description") or None) if isinstance(err.schema, dict) else None
        if err.validator == "required":
            missing = err.message.split("'")[1] if "'" in err.message else err.message
            problems.append(Problem(_where(source, [*err.absolute_path, missing]), "is required"))
        elif err.validator == "additionalProperties":
            allowed = ", ".join(sorted((err.schema.get("properties") or {}).keys()))
            problems.append(Problem(_where(source, err.absolute_path), err.message, f"allowed keys: {allowed}"))
        else:
            # The message of a schema error may quote the value; never quote a secret.
            secret = "secret_access_key" in err.absolute_path
            problems.append(Problem(_where(source, err.absolute_path), "has the wrong type" if secret else err.message, desc))
    if problems:
        raise ConfigError(problems, source=f"{source} settings")

    store = data["store"]
    creds = store.get("credentials") or {"source": "instance"}
    if not _BUCKET.match(store["bucket"]):
        problems.append(Problem(f"{source}.store.bucket", f"{store['bucket']!r} is not a valid bucket name",
                                "3-63 characters: lower-case letters, digits, dots and hyphens"))
    prefix = str(store.get("prefix", "sfp")).strip("/")
    if not _PREFIX.match(prefix):
        problems.append(Problem(f"{source}.store.prefix", f"{store.get('prefix')!r} is not a usable key prefix",
                                "letters, digits, '.', '_', '-' separated by '/', e.g. sfp or backups/sfp"))
    endpoint = store.get("endpoint_url") or None
    if endpoint is not None:
        parsed = urlparse(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            problems.append(Problem(f"{source}.store.endpoint_url", f"{endpoint!r} is not an http(s) URL",
                                    "e.g. https://s3.example.net or http://127.0.0.1:9000"))
    if creds["source"] == "vault":
        for key in ("access_key_id", "secret_access_key"):
            if not creds.get(key):
                problems.append(Problem(f"{source}.store.credentials.{key}", "is required when source is vault",
                                        "store the key in the org's vault, or use source: env / instance"))
    elif creds.get("access_key_id") or creds.get("secret_access_key"):
        problems.append(Problem(f"{source}.store.credentials", f"keys are given but source is {creds['source']!r}",
                                "set source: vault to use them, or remove them"))
    recipient = data["recipient"]
    try:
        from pyrage import x25519  # type: ignore[import-untyped]

        x25519.Recipient.from_str(recipient)
    except Exception:
        problems.append(Problem(f"{source}.recipient", "is not an age X25519 recipient (age1…)",
                                "make a recovery key with `generate_recovery_key` and put its recipient here"))
    schedule = data.get("schedule", BackupSettings.schedule)
    why = cron_problem(schedule)
    if why:
        problems.append(Problem(f"{source}.schedule", f"{schedule!r} is not a backup schedule: {why}",
                                "five cron fields (minute hour day-of-month month day-of-week), e.g. '17 3 * * *', "
                                "or @hourly, @daily, @weekly, @monthly, @yearly; the same schedule drives cron and systemd"))
    webhook = data.get("webhook_url") or None
    if webhook is not None:
        parsed = urlparse(webhook)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            problems.append(Problem(f"{source}.webhook_url", "is not an http(s) URL", "e.g. https://hooks.example.net/backup"))
    if problems:
        raise ConfigError(problems, source=f"{source} settings")

    return BackupSettings(
        store=ObjectStore(
            bucket=store["bucket"],
            prefix=prefix,
            endpoint_url=endpoint,
            region=store.get("region", "us-east-1"),
            path_style=bool(store.get("path_style", False)),
            checksum_mode=store.get("checksum_mode", "when_supported"),
            credentials=creds["source"],
            access_key_id=creds.get("access_key_id"),
            secret_access_key=creds.get("secret_access_key"),
        ),
        recipient=recipient,
        schedule=schedule,
        retention=Retention(**(data.get("retention") or {})),
        webhook_url=webhook,
        jobs=int(data.get("jobs", 2)),
    )
