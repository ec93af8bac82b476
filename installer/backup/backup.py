"""One backup run: every database, the storage volume and the org's secrets into a new set.

Pipelines run in parallel (databases bounded by `jobs`). The manifest is written only after
every object is complete; on any failure the run aborts its multipart uploads and deletes the
objects it finished, so an interrupted or failed run never leaves something that looks valid
(a SIGKILL leaves unfinished uploads and a manifest-less prefix, which `cleanup` removes). The
manifest is signed with the org's signing key (manifest.sig, written just before it), so verify
and restore can tell the org's sets from anything else written into the bucket.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from ..errors import SfpError
from . import db as dbtools
from . import s3
from .config import BackupSettings
from .keys import parse_recipient, parse_signing_key, sign_manifest
from .manifest import (
    GLOBALS_KEY,
    MANIFEST,
    SECRETS_KEY,
    SIGNATURE,
    STORAGE_KEY,
    Manifest,
    ObjectEntry,
    database_key,
    is_plain_identifier,
    new_set_id,
    set_prefix,
    utcnow,
)
from .storage_tar import tar_source
from .streams import IN_FLIGHT, PART_SIZE, PipelineStats, upload_encrypted


@dataclass
class BackupResult:
    org: str
    set_id: str
    manifest: Manifest
    seconds: float
    size: int
    warnings: list[str] = field(default_factory=list)


class _Procs:
    """The running dump processes, so a failure in one pipeline stops the others."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.failed = False
        self.first_error: BaseException | None = None
        """The failure that started it all (the dumps killed because of it fail too, but say less)."""

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.procs.append(proc)
            if self.failed:
                proc.kill()

    def stop_all(self, cause: BaseException | None = None) -> None:
        with self.lock:
            if not self.failed and cause is not None:
                self.first_error = cause
            self.failed = True
            for proc in self.procs:
                if proc.poll() is None:
                    proc.kill()


def _dump(database: dbtools.Database, tool: str, args: list[str], what: str, procs: _Procs,
          upload: Callable[..., PipelineStats]) -> PipelineStats:
    with tempfile.TemporaryFile() as errors:
        proc = dbtools.popen(database, tool, args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        procs.add(proc)
        assert proc.stdout is not None

        def check() -> None:
            code = proc.wait()
            if code != 0:
                errors.seek(0)
                raise SfpError(f"{tool} of {what} failed on {database.description} (exit {code}): {dbtools.tail(errors.read())}",
                               "check that the database runs and has room; no set was written")

        try:
            return upload(proc.stdout, check=check)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()


def _database_sizes(database: dbtools.Database) -> dict[str, int]:
    """Each database's size on disk: its dump's upload picks a part size that fits (see upload_encrypted)."""
    rows = dbtools.query(database, "SELECT datname || '|' || pg_database_size(datname) FROM pg_database "
                                   "WHERE datallowconn AND NOT datistemplate")
    sizes = {}
    for row in rows:
        name, _, size = row.rpartition("|")
        if size.isdigit():
            sizes[name] = int(size)
    return sizes


def _tree_size(root: Path) -> int:
    """The bytes of the files under `root` (what its tar roughly holds); unreadable entries count 0,
    the tar itself reports them."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def run_backup(
    settings: BackupSettings,
    org: str,
    database: dbtools.Database,
    *,
    storage_dir: Path | None,
    org_config: dict[str, Any],
    secrets: dict[str, str],
    signing_key: str,
    release: str | None = None,
    images: dict[str, str] | None = None,
    postgres_major: int | None = None,
    secret_ages: dict[str, str] | None = None,
    client: Any = None,
    part_size: int = PART_SIZE,
    in_flight: int = IN_FLIGHT,
    zstd_threads: int | None = None,
) -> BackupResult:
    """Make one complete set for `org`, signed with `signing_key` (see keys.py), or raise SfpError
    and leave no set behind."""
    started = time.monotonic()
    created = utcnow()
    store = settings.store
    recipient = parse_recipient(settings.recipient)
    parse_signing_key(signing_key)  # a bad key fails before anything is dumped
    # The signing key never goes into the bucket, whatever name the caller's secrets give it.
    secrets = {k: v for k, v in secrets.items() if v.strip() != signing_key.strip()}
    cli = client or s3.client(store, max_connections=settings.jobs * in_flight + in_flight + 4)
    s3.check_bucket(cli, store)
    names = dbtools.databases(database)
    odd = [n for n in names if not is_plain_identifier(n)]
    if odd:
        # Restore refuses such names (a client tool may read one as a connection string): a set
        # holding one would not restore whole, so none is made.
        raise SfpError(f"database(s) {', '.join(repr(n) for n in odd)} on {database.description} have names that are not "
                       "plain identifiers (letters, digits, _ and $, not starting with a digit, at most 63 bytes); no set was written",
                       "rename them, e.g. ALTER DATABASE \"odd name\" RENAME TO odd_name, then back up again")
    if postgres_major is None:
        postgres_major = dbtools.server_major(database)
    set_id = new_set_id()
    prefix = set_prefix(store.prefix, org, set_id)
    threads = zstd_threads if zstd_threads is not None else max(1, min(4, os.cpu_count() or 1))
    procs = _Procs()
    done: list[str] = []

    sizes = _database_sizes(database)

    def upload(key: str, expected_size: int | None = None) -> Callable[..., PipelineStats]:
        def go(source: Any, check: Callable[[], object] | None = None) -> PipelineStats:
            with s3.s3_errors(store, f"uploading {key} of set {set_id}"):
                stats = upload_encrypted(source, cli, store.bucket, prefix + key, recipient, zstd_threads=threads,
                                         part_size=part_size, in_flight=in_flight, check=check,
                                         expected_size=expected_size)
            done.append(prefix + key)
            return stats
        return go

    def entry(stats: PipelineStats, key: str, kind: str, name: str | None = None) -> ObjectEntry:
        return ObjectEntry(key=key, kind=kind, size=stats.size, sha256=stats.sha256, plaintext_size=stats.plaintext_size,
                           plaintext_sha256=stats.plaintext_sha256, seconds=stats.seconds, database=name)

    def dump_database(name: str) -> ObjectEntry:
        key = database_key(name)
        try:
            stats = _dump(database, "pg_dump", ["-Fc", "-Z0", "-d", name], f"database {name!r}", procs,
                          upload(key, sizes.get(name)))
        except BaseException as exc:
            procs.stop_all(exc)
            raise
        return entry(stats, key, "database", name)

    objects: list[ObjectEntry] = []
    timings: dict[str, float] = {}
    try:
        t = time.monotonic()
        stats = _dump(database, "pg_dumpall", ["--globals-only"], "the cluster's roles", procs, upload(GLOBALS_KEY))
        objects.append(entry(stats, GLOBALS_KEY, "globals"))
        if storage_dir is not None and not storage_dir.is_dir():
            raise SfpError(f"storage directory {storage_dir} does not exist", "pass the org's volumes/storage directory")
        with ThreadPoolExecutor(max_workers=settings.jobs, thread_name_prefix="sfp-dump") as pool:
            futures = [pool.submit(dump_database, n) for n in names]
            try:
                if storage_dir is not None:
                    expected = _tree_size(storage_dir)
                    source, wait = tar_source(storage_dir)
                    with source:
                        stats = upload(STORAGE_KEY, expected)(source, check=wait)
                    objects.append(entry(stats, STORAGE_KEY, "storage"))
                for future in futures:
                    exc = future.exception()
                    if exc is not None:
                        raise procs.first_error or exc
                    objects.append(future.result())
            except BaseException as exc:
                procs.stop_all(exc)  # before the pool waits for the other dumps to finish
                raise
        timings["dump_seconds"] = round(time.monotonic() - t, 3)
        key_files = {}
        for path in dbtools.KEY_FILES:
            data = database.read_file(path)
            if data is not None:
                key_files[path] = data.decode("utf-8", "surrogateescape")
        # secret_ages: when each secret was made or last changed, so a restore keeps their ages.
        ages = {k: str(v) for k, v in (secret_ages or {}).items() if k in secrets}
        document = yaml.safe_dump({"org": org, "config": org_config, "secrets": secrets, "key_files": key_files,
                                   "secret_ages": ages}, sort_keys=True).encode()
        stats = upload(SECRETS_KEY)(io.BytesIO(document))
        objects.append(entry(stats, SECRETS_KEY, "config"))
        manifest = Manifest(
            org=org, set_id=set_id, created=created, finished=utcnow(), toolkit_version=__version__,
            recipient=settings.recipient, objects=objects, release=release, images=dict(images or {}),
            postgres_major=postgres_major, timings={**timings, "total_seconds": round(time.monotonic() - started, 3)},
        )
        body = (json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n").encode()
        # The signature first: a manifest (what makes a set exist) is never there without it.
        signature = sign_manifest(body, signing_key)
        s3.put_small(cli, store, prefix + SIGNATURE, signature, f"writing the signature of set {set_id}")
        done.append(prefix + SIGNATURE)
        s3.put_small(cli, store, prefix + MANIFEST, body, f"writing the manifest of set {set_id}")
    except BaseException:
        procs.stop_all()
        try:
            if done:
                s3.delete_keys(cli, store, list(done), f"removing the objects of failed set {set_id}")
        except SfpError:
            pass  # unreachable store: cleanup() removes the manifest-less prefix later
        raise
    return BackupResult(org=org, set_id=set_id, manifest=manifest, seconds=round(time.monotonic() - started, 3),
                        size=manifest.size + len(body) + len(signature))
