"""Disaster-recovery restore of one set into a fresh cluster and an empty storage directory.

Nothing is applied before every object of the set has been downloaded and checked against
the manifest (sha256 of the stored bytes, then of the decrypted content); a damaged set is
refused whole, naming the objects. Then: roles (psql), each database (pg_restore -j N
--create from a local file, so it restores in parallel), the storage tree with its xattrs,
and the org's settings and secrets are returned to the caller.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pyrage import x25519  # type: ignore[import-untyped]

from ..errors import SfpError
from . import db as dbtools
from .config import ObjectStore
from .keys import check_identity
from .manifest import Manifest, ObjectEntry, set_prefix
from .storage_tar import extract_tar
from .verify import check_object

_CREATE_ROLE = re.compile(r'^CREATE ROLE (?P<name>"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*);$')


@dataclass
class RestoreResult:
    org: str
    set_id: str
    manifest: Manifest
    org_config: dict[str, Any]
    secrets: dict[str, str] = field(repr=False)
    databases: list[str] = field(default_factory=list)
    storage_files: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def _role_name(token: str) -> str:
    return token[1:-1].replace('""', '"') if token.startswith('"') else token


def globals_script(text: str, existing_roles: set[str]) -> str:
    """pg_dumpall's globals without `CREATE ROLE` for roles the target already has (its bootstrap
    superuser, and the roles an image's init scripts make): their `ALTER ROLE` lines still apply
    the attributes and password of the backup, and ON_ERROR_STOP stays usable for everything else."""
    out = []
    for line in text.splitlines():
        match = _CREATE_ROLE.match(line)
        if match and _role_name(match["name"]) in existing_roles:
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def _stage(cli: Any, store: ObjectStore, prefix: str, entry: ObjectEntry, identity: x25519.Identity, workdir: Path) -> tuple[ObjectEntry, Path | str]:
    """Download, check and decrypt one object in one pass into a local plaintext file.

    Returns (entry, path) or (entry, problem). The stored bytes' sha256 and the plaintext's are
    both checked before the caller applies anything; age's authenticated chunks mean a damaged
    object fails during decryption too.
    """
    plain = workdir / entry.key.replace("/", "__").removesuffix(".zst.age")
    with open(plain, "wb") as sink:
        problem = check_object(cli, store, prefix, entry, identity, sink=sink)
    if problem:
        plain.unlink()
        return entry, problem
    return entry, plain


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
        t = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            staged = list(pool.map(lambda e: _stage(cli, store, prefix, e, identity, tmp), wanted))
        bad = [(e, p) for e, p in staged if isinstance(p, str)]
        if bad:
            lines = "; ".join(f"{e.key}: {p}" for e, p in bad)
            raise SfpError(f"set {manifest.set_id} of {manifest.org} is damaged, nothing was restored: {lines}",
                           "restore an older verified set (`backup list`), and check the bucket")
        files = {e.key: p for e, p in staged if isinstance(p, Path)}
        timings["download_seconds"] = round(time.monotonic() - t, 3)

        entry = manifest.entry("config")
        assert entry is not None
        document = yaml.safe_load(files[entry.key].read_text())
        result = RestoreResult(org=manifest.org, set_id=manifest.set_id, manifest=manifest,
                               org_config=document.get("config") or {}, secrets=document.get("secrets") or {})

        t = time.monotonic()
        globals_entry = manifest.entry("globals")
        assert globals_entry is not None
        roles = set(dbtools.query(target, "SELECT rolname FROM pg_roles"))
        script = globals_script(files[globals_entry.key].read_text(), roles)
        dbtools.run(target, "psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbtools.MAINTENANCE_DB], input=script.encode())
        timings["globals_seconds"] = round(time.monotonic() - t, 3)

        for e in manifest.databases():
            if e.key not in files:
                continue
            t = time.monotonic()
            with target.local_file(files[e.key]) as path:
                # --create --clean --if-exists: the database is created with the backup's properties
                # (encoding, locale, owner, settings, ACL), replacing an empty one of a fresh cluster.
                dbtools.run(target, "pg_restore", ["-j", str(max(1, jobs)), "--create", "--clean", "--if-exists",
                                                  "--exit-on-error", "-d", dbtools.MAINTENANCE_DB, path])
            files[e.key].unlink()
            result.databases.append(str(e.database))
            timings[f"restore_{e.database}_seconds"] = round(time.monotonic() - t, 3)

        storage = manifest.entry("storage")
        if storage_dir is not None and storage is not None:
            t = time.monotonic()
            with open(files[storage.key], "rb") as fh:
                result.storage_files = extract_tar(fh, storage_dir)
            timings["storage_seconds"] = round(time.monotonic() - t, 3)
        result.timings = timings
        return result
    except subprocess.SubprocessError as exc:
        raise SfpError(f"restore of {manifest.set_id} failed: {exc}", "check the target cluster") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
