"""The public API the CLI calls: explicit arguments in, dataclasses out, SfpError on failure.

    identity, recipient = generate_recovery_key()
    signing_key, public_key = generate_signing_key()
    settings = parse_settings(inventory_data)
    result = run_backup(settings, "acme", DockerExecDatabase("sfp-acme-db"), storage_dir=..., org_config=..., secrets=...,
                        signing_key=signing_key)
    sets = list_sets(settings.store, "acme")
    trust = Trust((public_key,))
    verify_set(settings.store, "acme", "latest", identity_text, trust=trust)
    restore_set(settings.store, "acme", "latest", identity_text, target_db, trust=trust, storage_dir=...)
    prune(settings.store, "acme", settings.retention)
    cleanup(settings.store, "acme")
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import SfpError
from . import backup as _backup
from . import report, retention, s3
from .backup import BackupResult
from .config import BackupSettings, ObjectStore, Retention
from .db import Database
from .keys import Trust, identity_for
from .manifest import Manifest
from .restore import RestoreResult, restore_manifest
from .s3 import CleanupReport, SetInfo
from .verify import VerifyReport, verify_manifest


def _client(store: ObjectStore, client: Any) -> Any:
    return client if client is not None else s3.client(store)


def run_backup(
    settings: BackupSettings,
    org: str,
    database: Database,
    *,
    storage_dir: Path | None,
    org_config: dict[str, Any],
    secrets: dict[str, str],
    signing_key: str,
    release: str | None = None,
    images: dict[str, str] | None = None,
    postgres_major: int | None = None,
    metrics_dir: Path | None = None,
    secret_ages: dict[str, str] | None = None,
    client: Any = None,
    **tuning: Any,
) -> BackupResult:
    """Back up one org into a new set. On failure: failure metric, webhook, then the SfpError is raised.

    `tuning`: part_size, in_flight, zstd_threads (see streams.py).
    """
    started = time.time()
    try:
        result = _backup.run_backup(settings, org, database, storage_dir=storage_dir, org_config=org_config,
                                    secrets=secrets, signing_key=signing_key, release=release, images=images,
                                    postgres_major=postgres_major, secret_ages=secret_ages,
                                    client=client, **tuning)
    except BaseException as exc:
        message = exc.message if isinstance(exc, SfpError) else f"{type(exc).__name__}: backup interrupted or failed"
        report_failure(settings, org, message, metrics_dir=metrics_dir, started=started)
        raise
    if metrics_dir is not None:
        report.write_metrics(metrics_dir, org, last_success_timestamp_seconds=time.time(),
                             last_size_bytes=result.size, last_duration_seconds=result.seconds)
    if settings.webhook_url:
        problem = report.post_webhook(settings.webhook_url, {
            "event": "backup.succeeded", "org": org, "set_id": result.set_id, "size_bytes": result.size,
            "duration_seconds": result.seconds, "objects": len(result.manifest.objects)})
        if problem:
            result.warnings.append(problem)
    return result


def report_failure(settings: BackupSettings, org: str, message: str, *, metrics_dir: Path | None,
                   started: float | None = None) -> None:
    """A failed run: the failure metric and the webhook (never a secret in either)."""
    if metrics_dir is not None:
        report.write_metrics(metrics_dir, org, last_failure_timestamp_seconds=time.time())
    if settings.webhook_url:
        report.post_webhook(settings.webhook_url, {"event": "backup.failed", "org": org, "error": message,
                                                   "started": started or time.time(), "failed": time.time()})


def list_sets(store: ObjectStore, org: str, *, include_incomplete: bool = False, client: Any = None) -> list[SetInfo]:
    """The org's sets, oldest first; only complete ones (manifest present) unless asked."""
    sets = s3.scan(_client(store, client), store, org)
    return sets if include_incomplete else [s for s in sets if s.complete]


def resolve_set(store: ObjectStore, org: str, set_id: str, *, client: Any = None, verified: bool = False) -> str:
    """`latest` (newest complete set, or newest verified with verified=True) or an id that must be complete.

    A set dated in the future (beyond manifest.CLOCK_TOLERANCE) is never `latest`: a host with a
    wrong clock, or a set planted to be picked; it can still be named by its id.
    """
    sets = list_sets(store, org, client=client)
    if verified:
        sets = [s for s in sets if s.verified_at is not None]
    if set_id == "latest":
        current = [s for s in sets if not s.future]
        if not current:
            kind = "verified " if verified else ""
            future = f" (set(s) dated in the future, not taken: {', '.join(s.set_id for s in sets)})" if sets else ""
            raise SfpError(f"{org} has no complete {kind}set in {store.describe()}{future}",
                           "run a backup (and verify it) first, or check the bucket and prefix")
        return current[-1].set_id
    if set_id not in {s.set_id for s in sets}:
        raise SfpError(f"set {set_id} of {org} is not a complete{' verified' if verified else ''} set in {store.describe()}",
                       "pick one from `backup list`; sets without a manifest are incomplete and cannot be used")
    return set_id


def show_set(store: ObjectStore, org: str, set_id: str, *, trust: Trust | None = None, client: Any = None) -> Manifest:
    """The set's manifest; with `trust`, only if its signature verifies (see s3.read_manifest)."""
    cli = _client(store, client)
    return s3.read_manifest(cli, store, org, resolve_set(store, org, set_id, client=cli), trust)


def verify_set(store: ObjectStore, org: str, set_id: str, identity: str, *, trust: Trust,
               tools: Database | None = None, client: Any = None) -> VerifyReport:
    """Check the set's signature, then every object; `tools` (any Database) adds `pg_restore --list` on each dump.

    Raises SfpError for a set not signed by a key of `trust` (before any object is downloaded) and
    naming each damaged object; on success records verified.json in the set. `identity`: one or more
    recovery keys (an age identity file); the one the set is encrypted to is used.
    """
    cli = _client(store, client)
    manifest = s3.read_manifest(cli, store, org, resolve_set(store, org, set_id, client=cli), trust)
    key = identity_for(identity, manifest.recipient, manifest.set_id)
    return verify_manifest(cli, store, manifest, key, tools)


def restore_set(store: ObjectStore, org: str, set_id: str, identity: str, target: Database, *, trust: Trust,
                storage_dir: Path | None, jobs: int = 2, workdir: Path | None = None,
                databases: list[str] | None = None, client: Any = None) -> RestoreResult:
    """Restore a complete set into a fresh cluster (and an empty storage dir); returns the org's settings and secrets.

    The set's signature is checked first (keys of `trust`), then every object against the manifest,
    all before anything is applied.
    """
    cli = _client(store, client)
    manifest = s3.read_manifest(cli, store, org, resolve_set(store, org, set_id, client=cli), trust)
    key = identity_for(identity, manifest.recipient, manifest.set_id)
    result = restore_manifest(cli, store, manifest, key, target, storage_dir=storage_dir, jobs=jobs,
                              workdir=workdir, databases=databases)
    result.signed_by = manifest.signed_by
    return result


def prune(store: ObjectStore, org: str, policy: Retention, *, dry_run: bool = False, client: Any = None,
          pinned: Mapping[str, str] | None = None) -> retention.PruneReport:
    return retention.prune(_client(store, client), store, org, policy, dry_run=dry_run, pinned=pinned)


def cleanup(store: ObjectStore, org: str, *, grace: timedelta = timedelta(hours=24), dry_run: bool = False,
            now: datetime | None = None, client: Any = None) -> CleanupReport:
    return s3.cleanup(_client(store, client), store, org, grace=grace, now=now, dry_run=dry_run)
