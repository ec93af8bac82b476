"""Disaster-recovery restore of one set into a fresh cluster and an empty storage directory.

The manifest comes from `s3.read_manifest` with a Trust: its signature was checked before this
module reads anything else of the set. Nothing is applied before every object of the set has been downloaded (parallel ranged GETs)
and its stored bytes checked against the manifest (size, sha256); a damaged set is refused
whole, naming the objects, and a wrong key is refused on the small objects before any change.
Then: roles (psql); each database restored while it is decrypted (schema and data from the
stream, the post-data section with `pg_restore -j N` from a copy written on the way; age's
authenticated chunks and the plaintext sha256 are checked as it flows); the storage tree with its
xattrs. The org's settings and secrets are returned to the caller. Even a signed set is held to
what the toolkit writes (content.py): role statements only in the roles script, the toolkit's own
key files only, database names that are plain identifiers.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from pyrage import x25519  # type: ignore[import-untyped]

from ..errors import SfpError
from . import db as dbtools
from . import s3
from .config import ObjectStore
from .content import check_config_document, globals_script, key_files
from .keys import check_identity
from .manifest import Manifest, ObjectEntry, manifest_problems, set_prefix
from .storage_tar import extract_tar
from .verify import ProcessSink, ThreadSink, check_object

_CHUNK = 1024 * 1024
_TRANSFER = TransferConfig(multipart_threshold=64 * _CHUNK, multipart_chunksize=16 * _CHUNK, max_concurrency=4)


@dataclass
class RestoreResult:
    org: str
    set_id: str
    manifest: Manifest
    org_config: dict[str, Any]
    secrets: dict[str, str] = field(repr=False)
    databases: list[str] = field(default_factory=list)
    storage_files: int = 0
    key_files: list[str] = field(default_factory=list)
    """Files of the database's environment put back (KEY_FILES); the server was restarted to read them."""
    timings: dict[str, float] = field(default_factory=dict)
    signed_by: str | None = None
    """The signing public key that verified the set (None: unsigned, accepted with allow_unsigned)."""


def _fetch(cli: Any, store: ObjectStore, prefix: str, entry: ObjectEntry, workdir: Path) -> tuple[ObjectEntry, Path | str]:
    """Download one object's stored (encrypted) bytes into a local file and check size and sha256.

    boto3's download_file fetches large objects with parallel ranged GETs. Returns (entry, path)
    or (entry, problem); nothing is decrypted or applied here.
    """
    local = workdir / (entry.key.replace("/", "__") + ".part")
    with s3.s3_errors(store, f"downloading {entry.key}"):
        cli.download_file(store.bucket, prefix + entry.key, str(local), Config=_TRANSFER)
    digest, size = hashlib.sha256(), 0
    with open(local, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    if size != entry.size:
        return entry, f"size {size} differs from the manifest's {entry.size} (truncated or replaced)"
    if digest.hexdigest() != entry.sha256:
        return entry, "sha256 of the stored bytes differs from the manifest (the object was damaged or modified)"
    return entry, local


def _decrypt(store: ObjectStore, prefix: str, entry: ObjectEntry, identity: x25519.Identity, local: Path,
             sink: IO[bytes] | Any) -> None:
    """Decrypt and decompress a fetched object into `sink`, checking the plaintext's sha256."""
    with open(local, "rb") as source:
        problem = check_object(None, store, prefix, entry, identity, sink=sink, source=source)
    if problem:
        raise SfpError(f"{entry.key}: {problem}", "restore an older verified set (`backup list`), and check the bucket")


class _Tee(ProcessSink):
    """Writes every chunk to pg_restore's stdin and to the file the post-data pass reads.

    If pg_restore stops reading (it failed), the file still gets everything: the caller reports
    pg_restore's own error, not a broken pipe.
    """

    def __init__(self, proc: subprocess.Popen[bytes], copy: IO[bytes] | Any) -> None:
        super().__init__(proc)
        self.copy = copy

    def write(self, data: Any) -> int:
        self.copy.write(data)
        return super().write(data)


def _restore_database(target: dbtools.Database, store: ObjectStore, prefix: str, entry: ObjectEntry,
                      identity: x25519.Identity, local: Path, jobs: int) -> dict[str, float]:
    """Restore one dump while it is being decrypted, then build its indexes in parallel.

    Schema and data need no seeking, so they are restored from the decrypted stream itself
    (--create --clean --if-exists: the database gets the backup's properties, replacing the empty
    one of a fresh cluster); the same bytes are written beside into a file, from which
    `pg_restore -j` runs the post-data section (indexes, constraints, triggers) in parallel.
    Decryption overlaps the data load instead of preceding it.
    """
    timings: dict[str, float] = {}
    t = time.monotonic()
    argv, env = target.argv("pg_restore", ["--section=pre-data", "--section=data", "--create", "--clean",
                                            "--if-exists", "--exit-on-error", "-d", dbtools.MAINTENANCE_DB])
    with target.file_sink(entry.key.replace("/", "__").removesuffix(".zst.age")) as (copy, path):
        with tempfile.TemporaryFile() as stderr:
            try:
                proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr)
            except FileNotFoundError as exc:
                raise SfpError(f"cannot run {argv[0]}: {exc.strerror}", f"install it or fix the path ({target.description})") from None
            try:
                _decrypt(store, prefix, entry, identity, local, _Tee(proc, copy))
            finally:
                assert proc.stdin is not None
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
                code = proc.wait()
            stderr.seek(0)
            if code != 0:
                raise SfpError(f"pg_restore of database {entry.database!r} failed on {target.description} (exit {code}): "
                               f"{dbtools.tail(stderr.read())}", "check the target cluster, then restore again")
        local.unlink()
        timings[f"restore_{entry.database}_data_seconds"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        copy.close()
        dbtools.run(target, "pg_restore", ["-j", str(max(1, jobs)), "--section=post-data", "--exit-on-error",
                                           "-d", str(entry.database), path], options=dbtools.POST_DATA_OPTIONS)
        timings[f"restore_{entry.database}_post_data_seconds"] = round(time.monotonic() - t, 3)
    return timings


def restore_manifest(
    cli: Any,
    store: ObjectStore,
    manifest: Manifest,
    identity: x25519.Identity,
    target: dbtools.Database,
    *,
    storage_dir: Path | None,
    jobs: int = 2,
    workdir: Path | None = None,
    databases: list[str] | None = None,
) -> RestoreResult:
    problems = manifest_problems(manifest, manifest.org, manifest.set_id)
    if problems:
        raise SfpError(f"set {manifest.set_id} of {manifest.org} is refused, nothing was restored: {'; '.join(problems)}",
                       "restore an older set (`backup list`), and check who can write to the bucket")
    check_identity(identity, manifest.recipient, manifest.set_id)
    if storage_dir is not None and storage_dir.exists() and any(storage_dir.iterdir()):
        raise SfpError(f"storage directory {storage_dir} is not empty",
                       "restore into an empty directory (move the current one aside first)")
    wanted = [e for e in manifest.objects
              if e.kind in ("globals", "config") or (e.kind == "storage" and storage_dir is not None)
              or (e.kind == "database" and (databases is None or e.database in databases))]
    prefix = set_prefix(store.prefix, manifest.org, manifest.set_id)
    timings: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="sfp-restore-", dir=workdir))
    try:
        # 1. Fetch every object and check its stored bytes against the manifest before anything is
        #    applied: a damaged set is refused whole, naming the objects.
        t = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(2, jobs)) as pool:
            fetched = list(pool.map(lambda e: _fetch(cli, store, prefix, e, tmp), wanted))
        bad = [(e, p) for e, p in fetched if isinstance(p, str)]
        if bad:
            lines = "; ".join(f"{e.key}: {p}" for e, p in bad)
            raise SfpError(f"set {manifest.set_id} of {manifest.org} is damaged, nothing was restored: {lines}",
                           "restore an older verified set (`backup list`), and check the bucket")
        files = {e.key: p for e, p in fetched if isinstance(p, Path)}
        timings["download_seconds"] = round(time.monotonic() - t, 3)

        # 2. The small objects decrypt in memory; a wrong key or bad content stops here, still before any change.
        def small(kind: str) -> bytes:
            entry = manifest.entry(kind)
            assert entry is not None
            buffer = io.BytesIO()
            _decrypt(store, prefix, entry, identity, files[entry.key], buffer)
            return buffer.getvalue()

        # Even a signed set is held to what the toolkit writes: a compromised job signs too.
        try:
            document = check_config_document(yaml.safe_load(small("config")) or {}, manifest.org, manifest.set_id)
        except yaml.YAMLError:
            raise SfpError(f"the settings object of set {manifest.set_id} is not YAML, nothing was changed",
                           "restore an older verified set (`backup list`), and check the bucket") from None
        result = RestoreResult(org=manifest.org, set_id=manifest.set_id, manifest=manifest,
                               org_config=document.get("config") or {}, secrets=document.get("secrets") or {})
        try:
            globals_sql = small("globals").decode()
        except UnicodeDecodeError:
            raise SfpError(f"the roles script of set {manifest.set_id} is not UTF-8 text, nothing was changed",
                           "restore an older verified set (`backup list`), and check the bucket") from None
        roles = set(dbtools.query(target, "SELECT rolname FROM pg_roles"))
        script = globals_script(globals_sql, roles)  # refuses anything but role statements, before any change

        t = time.monotonic()
        dbtools.run(target, "psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbtools.MAINTENANCE_DB],
                    input=script.encode())
        timings["globals_seconds"] = round(time.monotonic() - t, 3)

        for e in manifest.databases():
            if e.key not in files:
                continue
            t = time.monotonic()
            timings.update(_restore_database(target, store, prefix, e, identity, files[e.key], jobs))
            result.databases.append(str(e.database))
            timings[f"restore_{e.database}_seconds"] = round(time.monotonic() - t, 3)

        files_of_set = key_files(document)  # only db.KEY_FILES, at the toolkit's own paths
        if files_of_set and result.databases:
            # After the data: the fresh server generated its own key at first start; the restored
            # rows (Vault secrets) need the backup's, which the server reads when it starts.
            t = time.monotonic()
            for path, data in sorted(files_of_set.items()):
                target.replace_file(path, data)
                result.key_files.append(path)
            target.restart()
            timings["key_files_seconds"] = round(time.monotonic() - t, 3)

        storage = manifest.entry("storage")
        if storage_dir is not None and storage is not None:
            t = time.monotonic()
            tar = ThreadSink(lambda reader: extract_tar(reader, storage_dir))
            try:
                _decrypt(store, prefix, storage, identity, files[storage.key], tar)
            finally:
                tar.finish()
            if isinstance(tar.error, SfpError):  # a refused archive: its rule and hint, not "writable"
                raise SfpError(f"cannot unpack the storage files of {manifest.set_id}: {tar.error.message}",
                               tar.error.hint)
            if tar.error is not None:
                raise SfpError(f"cannot unpack the storage files of {manifest.set_id}: {tar.error}",
                               f"check that {storage_dir} is writable and has room")
            result.storage_files = tar.result if isinstance(tar.result, int) else 0
            timings["storage_seconds"] = round(time.monotonic() - t, 3)
        result.timings = timings
        return result
    except subprocess.SubprocessError as exc:
        raise SfpError(f"restore of {manifest.set_id} failed: {exc}", "check the target cluster") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
