"""A local copy of an org's data on its own host: written from one cluster, loaded into another.

Two uses. A PostgreSQL major upgrade moves the data with it: every other service is stopped, the
old cluster (15) is dumped by the target major's pg_dump (DockerRunDatabase), the target release's
image initialises a new cluster (17) beside the old one, and the copy is loaded into that. An
upgrade of an org without a backup block writes a copy before anything changes (the database
container's own tools, services running: each database's dump is one snapshot), with the storage
files, and a rollback that must bring data back loads it into the org's cluster again.

Layout of a copy (a directory, 0700; files 0600):
    globals.sql            roles, passwords and memberships (pg_dumpall --globals-only)
    <db>.dump              each database (pg_dump -Fc, uncompressed: read once, on the same disk)
    key/<n>                the server's key files (db.KEY_FILES: pgsodium's root key)
    storage/               the Storage service's files with their extended attributes (optional)
    complete.json          written last: the databases, each file's size. A directory without it is
                           an interrupted copy and is never loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..backup import db as dbtools
from ..backup.content import globals_script
from ..errors import SfpError

COMPLETE = "complete.json"
FORMAT = 1


@dataclass
class Copy:
    """A complete copy, as its complete.json describes it."""

    path: Path
    databases: list[str]
    files: dict[str, int]
    postgres_major: int
    key_files: list[str] = field(default_factory=list)
    storage: bool = False


def _private_file(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def _safe_name(database: str) -> str:
    """A database name as a file name: names come from the org's own catalog, but a name with a
    slash or a leading dot must still not leave the directory."""
    if not database or "/" in database or "\0" in database or database.startswith("."):
        raise SfpError(f"database name {database!r} cannot be a file name of the copy",
                       "rename the database (ALTER DATABASE ... RENAME TO) and upgrade again")
    return database


def _dump_to(source: dbtools.Database, tool: str, args: list[str], dest: Path, what: str) -> None:
    with tempfile.TemporaryFile() as stderr, open(_private_file(dest), "wb") as out:
        proc = dbtools.popen(source, tool, args, stdout=out, stderr=stderr)
        code = proc.wait()
        if code != 0:
            stderr.seek(0)
            raise SfpError(f"{tool} of {what} failed on {source.description} (exit {code}): {dbtools.tail(stderr.read())}",
                           "check that the database runs and the disk has room, then upgrade again")


def dump(source: dbtools.Database, path: Path, *, storage_dir: Path | None = None) -> tuple[Copy, dict[str, float]]:
    """Write a copy of `source` into the new directory `path` (which must not exist), with the tree
    `storage_dir` when given."""
    timings: dict[str, float] = {}
    path.mkdir(mode=0o700, parents=False)
    (path / "key").mkdir(mode=0o700)
    major = dbtools.server_major(source)
    t = time.monotonic()
    _dump_to(source, "pg_dumpall", ["--globals-only"], path / "globals.sql", "the cluster's roles")
    names = [_safe_name(d) for d in dbtools.databases(source)]
    for name in names:
        # No compression: the copy is read once, on the same disk; compressing would cost the
        # upgrade more CPU time than the bytes cost in disk time.
        _dump_to(source, "pg_dump", ["-Fc", "-Z", "0", "-d", name], path / f"{name}.dump", f"database {name!r}")
    timings["dump_seconds"] = round(time.monotonic() - t, 3)
    keys = []
    for key_path in dbtools.KEY_FILES:
        data = source.read_file(key_path)
        if data is not None:
            with open(_private_file(path / "key" / Path(key_path).name), "wb") as fh:
                fh.write(data)
            keys.append(key_path)
    if storage_dir is not None:
        t = time.monotonic()
        _copy_tree(storage_dir, path / "storage")
        timings["storage_copy_seconds"] = round(time.monotonic() - t, 3)
    files = {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.iterdir()) if p.is_file()}
    files.update({str(p.relative_to(path)): p.stat().st_size for p in sorted((path / "key").iterdir())})
    manifest = {"format": FORMAT, "postgres_major": major, "databases": names, "files": files, "key_files": keys,
                "storage": storage_dir is not None}
    tmp = path / f".{COMPLETE}.tmp"
    with open(_private_file(tmp), "w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.rename(path / COMPLETE)
    return Copy(path, names, files, major, keys, storage=storage_dir is not None), timings


def read(path: Path) -> Copy:
    """The copy in `path`, checked: complete, and every file as large as when it was written."""
    try:
        manifest = json.loads((path / COMPLETE).read_text())
    except FileNotFoundError:
        raise SfpError(f"{path} holds no complete copy (no {COMPLETE}: the dump was interrupted)",
                       "remove the directory and upgrade again") from None
    except ValueError:
        raise SfpError(f"{path / COMPLETE} is damaged", "remove the directory and upgrade again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SfpError(f"{path / COMPLETE} is not a copy this toolkit wrote", "remove the directory and upgrade again")
    files = {str(k): int(v) for k, v in dict(manifest.get("files") or {}).items()}
    for name, size in files.items():
        f = path / name
        if f.resolve().parent not in (path.resolve(), (path / "key").resolve()) or not f.is_file() or f.stat().st_size != size:
            raise SfpError(f"{f} is missing or changed since the dump", "remove the directory and upgrade again")
    names = [_safe_name(str(d)) for d in manifest.get("databases") or []]
    keys = [str(k) for k in manifest.get("key_files") or [] if k in dbtools.KEY_FILES]
    storage = manifest.get("storage") is True
    if storage and not (path / "storage").is_dir():
        raise SfpError(f"{path}/storage is missing", "remove the directory and upgrade again")
    return Copy(path, names, files, int(manifest.get("postgres_major") or 0), keys, storage=storage)


def _load_database(target: dbtools.Database, name: str, src: IO[bytes], jobs: int) -> dict[str, float]:
    """Load one database's archive (pg_dump -Fc) read from `src` into `target`.

    Schema and data are restored from the stream itself (they need no seeking), and the same bytes
    are written beside into a file the server's tools can read, from which `pg_restore -j` builds
    the indexes, constraints and triggers in parallel: the copy into the container overlaps the
    load, and the load overlaps whatever writes `src` (a dump running at the same time)."""
    timings: dict[str, float] = {}
    t = time.monotonic()
    # --create --clean: the database gets the archive's properties, replacing the cluster's own.
    argv, env = target.argv("pg_restore", ["--section=pre-data", "--section=data", "--create", "--clean",
                                            "--if-exists", "--exit-on-error", "-d", dbtools.MAINTENANCE_DB])
    with target.file_sink(f"{name}.dump") as (beside, inside), tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr)
        assert proc.stdin is not None
        try:
            while chunk := src.read(1 << 20):
                beside.write(chunk)
                proc.stdin.write(chunk)
        except BrokenPipeError:
            pass  # pg_restore stopped: its own message follows
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            code = proc.wait()
        if code != 0:
            stderr.seek(0)
            raise SfpError(f"pg_restore of database {name!r} failed on {target.description} (exit {code}): "
                           f"{dbtools.tail(stderr.read())}", "the old state is untouched; see the database's log")
        beside.close()
        timings[f"load_{name}_data_seconds"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        dbtools.run(target, "pg_restore", ["-j", str(max(1, jobs)), "--section=post-data", "--exit-on-error",
                                           "-d", name, inside], options=dbtools.POST_DATA_OPTIONS)
    timings[f"load_{name}_post_data_seconds"] = round(time.monotonic() - t, 3)
    return timings


def _copy_file(src: str, dst: str) -> None:
    """copy2 (content, mode, times and the extended attributes Storage keeps an object's metadata in),
    and the owner, which copy2 leaves to whoever copies (root here, the service's user there)."""
    shutil.copy2(src, dst, follow_symlinks=False)
    st = os.lstat(src)
    with contextlib.suppress(PermissionError):
        os.lchown(dst, st.st_uid, st.st_gid)


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True, copy_function=_copy_file)
    for root, dirs, _files in os.walk(src):
        for d in [".", *dirs]:
            st = os.lstat(os.path.join(root, d))
            with contextlib.suppress(PermissionError):
                os.lchown(dst / Path(root).relative_to(src) / d, st.st_uid, st.st_gid)


def restore_storage(copy: Copy, storage_dir: Path) -> None:
    """Put the copy's storage tree in place of `storage_dir` (the current one is removed only once
    the copy is in place beside it)."""
    if not copy.storage:
        return
    incoming = storage_dir.with_name(storage_dir.name + ".sfp-incoming")
    shutil.rmtree(incoming, ignore_errors=True)
    _copy_tree(copy.path / "storage", incoming)
    aside = storage_dir.with_name(storage_dir.name + ".sfp-replaced")
    shutil.rmtree(aside, ignore_errors=True)
    if storage_dir.exists():
        storage_dir.rename(aside)
    incoming.rename(storage_dir)
    shutil.rmtree(aside, ignore_errors=True)


def _load_globals(target: dbtools.Database, text: str) -> None:
    # Only role statements run (content.globals_script refuses anything else), and roles the new
    # cluster's init already made are altered, not created.
    roles = set(dbtools.query(target, "SELECT rolname FROM pg_roles"))
    script = globals_script(text, roles)
    dbtools.run(target, "psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbtools.MAINTENANCE_DB], input=script.encode())


def _finish(target: dbtools.Database, databases: list[str], key_files: dict[str, bytes], jobs: int) -> dict[str, float]:
    """After the databases: collation versions refreshed, statistics gathered (a loaded database has
    none, and the planner needs them at once), then the key files, which the server reads at start
    (pgsodium's root key: Vault's rows are encrypted under the carried one)."""
    timings: dict[str, float] = {}
    t = time.monotonic()
    for name in databases:
        dbtools.run(target, "psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbtools.MAINTENANCE_DB, "-v", f"db={name}"],
                    input=b'ALTER DATABASE :"db" REFRESH COLLATION VERSION;\n')
    dbtools.run(target, "vacuumdb", ["--all", "--analyze-only", "-j", str(max(1, jobs)), "-q"])
    timings["analyze_seconds"] = round(time.monotonic() - t, 3)
    if key_files:
        t = time.monotonic()
        for key_path, data in key_files.items():
            target.replace_file(key_path, data)
        target.restart()
        timings["key_files_seconds"] = round(time.monotonic() - t, 3)
    return timings


def load(target: dbtools.Database, copy: Copy, *, jobs: int = 2) -> dict[str, float]:
    """Load a checked copy into `target`: roles, every database, the key files."""
    timings: dict[str, float] = {}
    t = time.monotonic()
    _load_globals(target, (copy.path / "globals.sql").read_text())
    timings["load_globals_seconds"] = round(time.monotonic() - t, 3)
    for name in copy.databases:
        with open(copy.path / f"{name}.dump", "rb") as src:
            timings.update(_load_database(target, name, src, jobs))
    keys = {k: (copy.path / "key" / Path(k).name).read_bytes() for k in copy.key_files}
    timings.update(_finish(target, copy.databases, keys, jobs))
    return timings


# One database from the old server into the new one, inside the new server's container, with that
# image's client tools (the target major's: a newer pg_dump carries what an older server holds into
# the newer major exactly, where 15's would write `GRANT ALL`, which 17 widens by MAINTAIN). pg_dump
# feeds pg_restore as it writes, so dump and load overlap; the same bytes go to a file beside, from
# which `pg_restore -j` builds indexes, constraints and triggers in parallel. The container's
# PGPASSWORD is supabase_admin's, the same in both clusters. Arguments, never interpolated:
# $0 the old server's host, $1 the database, $2 the file, $3 parallel jobs.
_MOVE_SCRIPT = r"""set -eo pipefail
trap 'rm -f "$2"' EXIT
umask 077
pg_dump -h "$0" -Fc -Z 0 -d "$1" | tee "$2" \
  | pg_restore --section=pre-data --section=data --create --clean --if-exists --exit-on-error -d template1
pg_restore -j "$3" --section=post-data --exit-on-error -d "$1" "$2"
"""


def move(source_host: str, source: dbtools.Database, target: dbtools.Database, *, jobs: int = 2) -> tuple[list[str], dict[str, float]]:
    """Move every database of the running old server (`source`: its own container, reached from the
    target's as `source_host`) into the running new one, `target`: roles, databases, key files."""
    timings: dict[str, float] = {}
    t = time.monotonic()
    _load_globals(target, dbtools.run(target, "pg_dumpall", ["-h", source_host, "--globals-only"]).decode())
    timings["load_globals_seconds"] = round(time.monotonic() - t, 3)
    names = [_safe_name(d) for d in dbtools.databases(source)]
    for name in names:
        t = time.monotonic()
        # The sessions' options (PGOPTIONS) are the post-data pass's, for the dump and the pre-data too:
        # they only raise maintenance_work_mem, which those do not use.
        dbtools.run(target, "bash", ["-c", _MOVE_SCRIPT, source_host, name, f"/tmp/sfp-move-{name}.dump", str(max(1, jobs))],
                    options=dbtools.POST_DATA_OPTIONS)
        timings[f"move_{name}_seconds"] = round(time.monotonic() - t, 3)
    keys = {k: data for k in dbtools.KEY_FILES if (data := source.read_file(k)) is not None}
    timings.update(_finish(target, names, keys, jobs))
    return names, timings


def remove(path: Path) -> None:
    """Remove a copy (or what an interrupted dump left): complete.json first, so that a removal cut
    short never leaves a directory that still looks complete."""
    with contextlib.suppress(FileNotFoundError):
        (path / COMPLETE).unlink()
    shutil.rmtree(path, ignore_errors=True)
