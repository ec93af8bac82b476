"""Per-org backup settings: the model the rest of the package takes, and its validation.

The settings are plain data (from the inventory, with S3 keys from the org's vault when the
credentials source is `vault`). Their schema, defaults included, is installer/schema/backup.yml;
`parse_settings` checks the data against it (installer.settings.check), then checks what a schema
cannot say (bucket and prefix naming, URLs, the age recipient, the cron expression, which keys go
with which credentials source), and raises a ConfigError naming every bad field at once, so
nothing starts with a half-valid configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

from pyrage import x25519  # type: ignore[import-untyped]

from .. import objectstore, settings
from ..errors import ConfigError, Problem
from .cron import cron_problem

ChecksumMode = Literal["when_required", "when_supported"]
CredentialsSource = Literal["vault", "env", "instance"]
AREA = "backup"  # installer/schema/backup.yml

# S3 bucket naming rules (the common subset every S3-compatible store accepts).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_SECRET_FIELD = "secret_access_key"


def _default(*path: str) -> Any:
    """The schema's default of one field: the dataclasses below take theirs from it, never a literal."""
    return settings.default_of(AREA, *path)


_CHECKSUM_MODE: ChecksumMode = _default("store", "checksum_mode")
_CREDENTIALS: CredentialsSource = _default("store", "credentials", "source")


@dataclass(frozen=True)
class ObjectStore(objectstore.ObjectStore):
    """The backup store: the object-store model (installer/objectstore) with the schema's defaults."""

    prefix: str = _default("store", "prefix")
    endpoint_url: str | None = _default("store", "endpoint_url")
    region: str = _default("store", "region")
    path_style: bool = _default("store", "path_style")
    checksum_mode: ChecksumMode = _CHECKSUM_MODE
    credentials: CredentialsSource = _CREDENTIALS


@dataclass(frozen=True)
class Retention:
    keep_daily: int = _default("retention", "keep_daily")
    keep_weekly: int = _default("retention", "keep_weekly")
    keep_monthly: int = _default("retention", "keep_monthly")
    keep_yearly: int = _default("retention", "keep_yearly")


@dataclass(frozen=True)
class BackupSettings:
    store: ObjectStore
    recipient: str
    schedule: str = _default("schedule")
    retention: Retention = field(default_factory=Retention)
    webhook_url: str | None = _default("webhook_url")
    jobs: int = _default("jobs")


def _split(source: str) -> tuple[str, str]:
    """`host_vars/acme: sfp_org.backup` -> (file, variable); a bare `backup` names the variable only."""
    where, _, var = source.rpartition(": ")
    return where, var


def _field(source: str, *path: str) -> str:
    return ".".join([source, *path])


def schema_problems(data: Any, source: str = "backup") -> list[Problem]:
    """What installer/schema/backup.yml says of `data`, each problem named `<source>.<field>`."""
    where, var = _split(source)
    out = []
    for p in settings.check(where, var, data, AREA):
        name = p.where if where else p.where.removeprefix(": ")  # no file part: the field alone
        # A schema message may quote the value; never quote a secret (the type is what is wrong).
        message = p.message
        if name.endswith(f".{_SECRET_FIELD}") and message != "is required" and "control character" not in message:
            message = "has the wrong type"
        out.append(Problem(name, message, p.hint))
    return out


def parse_settings(data: Any, source: str = "backup") -> BackupSettings:
    """Validate `data` (a mapping as written in the inventory, S3 keys and recipient filled in from
    the vault) and build the settings, with the schema's defaults for whatever it leaves out.

    Every problem is reported at once, each naming its field (`backup.store.bucket`, …): the schema's
    first (a field of the wrong type cannot be checked further), then everything else.
    """
    problems = schema_problems(data, source)
    if problems:
        raise ConfigError(problems, source=f"{source} settings")
    problems = _residual_problems(data, source)
    if problems:
        raise ConfigError(problems, source=f"{source} settings")
    full = settings.with_defaults(AREA, data)
    store, creds = full["store"], full["store"]["credentials"]
    return BackupSettings(
        store=ObjectStore(
            bucket=store["bucket"],
            prefix=str(store["prefix"]).strip("/"),
            endpoint_url=store["endpoint_url"] or None,
            region=store["region"],
            path_style=bool(store["path_style"]),
            checksum_mode=store["checksum_mode"],
            credentials=creds["source"],
            access_key_id=creds.get("access_key_id"),
            secret_access_key=creds.get("secret_access_key"),
        ),
        recipient=full["recipient"],
        schedule=full["schedule"],
        retention=Retention(**full["retention"]),
        webhook_url=full["webhook_url"] or None,
        jobs=int(full["jobs"]),
    )


def _residual_problems(data: dict[str, Any], source: str) -> list[Problem]:
    """What the schema cannot say: naming rules, URLs, the recipient, the cron expression, and which
    keys go with which credentials source. `data` is valid against the schema."""
    problems: list[Problem] = []
    store = data["store"]
    creds = store.get("credentials") or {"source": _default("store", "credentials", "source")}
    if not _BUCKET.match(store["bucket"]):
        problems.append(Problem(_field(source, "store", "bucket"), f"{store['bucket']!r} is not a valid bucket name",
                                "3-63 characters: lower-case letters, digits, dots and hyphens"))
    prefix = str(store.get("prefix", _default("store", "prefix"))).strip("/")
    if not _PREFIX.match(prefix):
        problems.append(Problem(_field(source, "store", "prefix"), f"{store.get('prefix')!r} is not a usable key prefix",
                                "letters, digits, '.', '_', '-' separated by '/', e.g. sfp or backups/sfp"))
    endpoint = store.get("endpoint_url") or None
    if endpoint is not None and not _http_url(endpoint):
        problems.append(Problem(_field(source, "store", "endpoint_url"), f"{endpoint!r} is not an http(s) URL",
                                "e.g. https://s3.example.net or http://127.0.0.1:9000"))
    if creds["source"] == "vault":
        for key in ("access_key_id", _SECRET_FIELD):
            if not creds.get(key):
                problems.append(Problem(_field(source, "store", "credentials", key), "is required when source is vault",
                                        "store the key in the org's vault, or use source: env / instance"))
    elif creds.get("access_key_id") or creds.get(_SECRET_FIELD):
        problems.append(Problem(_field(source, "store", "credentials"), f"keys are given but source is {creds['source']!r}",
                                "set source: vault to use them, or remove them"))
    problems += _recipient_problems(data.get("recipient"), source)
    schedule = data.get("schedule", _default("schedule"))
    why = cron_problem(schedule)
    if why:
        problems.append(Problem(_field(source, "schedule"), f"{schedule!r} is not a backup schedule: {why}",
                                "five cron fields (minute hour day-of-month month day-of-week), e.g. '17 3 * * *', "
                                "or @hourly, @daily, @weekly, @monthly, @yearly; the same schedule drives cron and systemd"))
    webhook = data.get("webhook_url") or None
    if webhook is not None and not _http_url(webhook):
        problems.append(Problem(_field(source, "webhook_url"), "is not an http(s) URL", "e.g. https://hooks.example.net/backup"))
    return problems


def _recipient_problems(recipient: Any, source: str) -> list[Problem]:
    # Optional in the inventory (the vault's is filled in), required by the time the settings are built.
    hint = "make a recovery key with `generate_recovery_key` and put its recipient here"
    if recipient is None:
        return [Problem(_field(source, "recipient"), "is required", hint)]
    try:
        x25519.Recipient.from_str(recipient)
    except Exception:
        return [Problem(_field(source, "recipient"), "is not an age X25519 recipient (age1…)", hint)]
    return []


def _http_url(text: str) -> bool:
    parsed = urlparse(text)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)
