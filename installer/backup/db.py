"""Where the PostgreSQL client tools run: inside the org's database container, or locally.

In production the tools run in the org's own database container with `docker exec -i`, so the
client always matches the server's major version. Tests and benches use local binaries. A
password travels only in the child's environment (PGPASSWORD), never on a command line.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from ..errors import SfpError

# Files of the database's environment that are not in any dump but without which restored data is
# unreadable: the upstream image generates pgsodium's root key at its first start into the
# db-config volume, and Vault's secrets are encrypted under it.
KEY_FILES = ("/etc/postgresql-custom/pgsodium_root.key",)

# Index and constraint builds of a restore's post-data pass (pg_restore -j) sort in memory instead
# of spilling to disk; at -j 2 that is 512 MiB at most, within the database container's default 2 GiB.
POST_DATA_OPTIONS = "-c maintenance_work_mem=256MB"

LIST_DATABASES = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"
MAINTENANCE_DB = "template1"


class Database(Protocol):
    """A PostgreSQL cluster and the client tools that reach it."""

    description: str

    def argv(self, tool: str, args: Sequence[str], options: str | None = None) -> tuple[list[str], dict[str, str]]:
        """Command line and environment that run `tool args` against the cluster; `options` becomes the
        sessions' PGOPTIONS (server settings such as `-c maintenance_work_mem=256MB`)."""
        ...

    def file_sink(self, name: str) -> contextlib.AbstractContextManager[tuple[IO[bytes] | Any, str]]:
        """A new private file the tools can read: yields (writer, path the tools see); removed on exit."""
        ...

    def read_file(self, path: str) -> bytes | None:
        """A file of the server's environment (KEY_FILES), or None where it has none."""
        ...

    def replace_file(self, path: str, data: bytes) -> None:
        """Write a file of the server's environment, owned by the server's user, mode 0600."""
        ...

    def restart(self) -> None:
        """Restart the server (it reads KEY_FILES at start) and wait until it accepts connections."""
        ...


def popen(db: Database, tool: str, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    argv, env = db.argv(tool, args)
    try:
        return subprocess.Popen(argv, env=env, **kwargs)
    except FileNotFoundError as exc:
        raise SfpError(f"cannot run {argv[0]}: {exc.strerror}", f"install it or fix the path ({db.description})") from None


def run(db: Database, tool: str, args: Sequence[str], stdin: IO[bytes] | None = None, input: bytes | None = None,
        options: str | None = None) -> bytes:
    """Run a tool to completion; a failure raises SfpError with the tool's own message."""
    argv, env = db.argv(tool, args, options)
    try:
        proc = subprocess.run(argv, env=env, stdin=stdin, input=input, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise SfpError(f"cannot run {argv[0]}: {exc.strerror}", f"install it or fix the path ({db.description})") from None
    if proc.returncode != 0:
        raise SfpError(
            f"{tool} failed on {db.description} (exit {proc.returncode}): {tail(proc.stderr)}",
            "check that the database is running and reachable, then run the command again",
        )
    return proc.stdout


def tail(stderr: bytes, lines: int = 8) -> str:
    text = stderr.decode("utf-8", "replace").strip().splitlines()
    return " | ".join(text[-lines:]) or "no message"


def query(db: Database, sql: str, dbname: str = MAINTENANCE_DB) -> list[str]:
    """One column of a query's rows, via psql (no driver needed inside a container)."""
    out = run(db, "psql", ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-c", sql])
    return [line for line in out.decode().splitlines() if line]


def databases(db: Database) -> list[str]:
    return query(db, LIST_DATABASES)


def server_major(db: Database) -> int:
    return int(query(db, "SHOW server_version_num")[0]) // 10000


@dataclass
class LocalDatabase:
    """A cluster reached over TCP (or a socket directory) with local client binaries."""

    host: str
    port: int
    user: str
    password_env: str | None = None
    """Name of the variable in this process's environment that holds the password."""
    bindir: Path | None = None
    description: str = field(default="")

    def __post_init__(self) -> None:
        self.description = self.description or f"PostgreSQL at {self.host}:{self.port}"

    def argv(self, tool: str, args: Sequence[str], options: str | None = None) -> tuple[list[str], dict[str, str]]:
        exe = str(self.bindir / tool) if self.bindir else tool
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user, PGAPPNAME="sfp-backup")
        if options:
            env["PGOPTIONS"] = options
        if self.password_env:
            env["PGPASSWORD"] = os.environ.get(self.password_env, "")
        return [exe, *args], env

    @contextlib.contextmanager
    def file_sink(self, name: str) -> Iterator[tuple[IO[bytes] | Any, str]]:
        fd, path = tempfile.mkstemp(prefix="sfp-restore-", suffix=f"-{name}")
        try:
            with open(fd, "wb") as writer:
                yield writer, path
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def read_file(self, path: str) -> bytes | None:
        """A server reached over TCP has no files of its own here: nothing to capture."""
        return None

    def replace_file(self, path: str, data: bytes) -> None:
        raise SfpError(f"cannot place {path} for {self.description}",
                       "copy it from the set's settings object onto the server's host yourself, then restart the server")

    def restart(self) -> None:
        raise SfpError(f"cannot restart {self.description}", "restart the server yourself")


@dataclass
class DockerExecDatabase:
    """The tools of the org's database container, run with `docker exec -i` over the unix socket.

    The container's environment already holds PGPASSWORD; `password_env` names a variable of this
    process to pass instead (forwarded by name with `-e NAME`, so the value is not on argv).
    """

    container: str
    user: str = "supabase_admin"
    password_env: str | None = None
    docker: str = "docker"
    description: str = field(default="")

    def __post_init__(self) -> None:
        self.description = self.description or f"container {self.container}"

    def argv(self, tool: str, args: Sequence[str], options: str | None = None) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        argv = [self.docker, "exec", "-i", "-e", f"PGUSER={self.user}", "-e", "PGAPPNAME=sfp-backup"]
        if options:
            argv += ["-e", f"PGOPTIONS={options}"]
        if self.password_env:
            env["PGPASSWORD"] = os.environ.get(self.password_env, "")
            argv += ["-e", "PGPASSWORD"]  # value taken from our environment, not the command line
        return [*argv, self.container, tool, *args], env

    @contextlib.contextmanager
    def file_sink(self, name: str) -> Iterator[tuple[IO[bytes] | Any, str]]:
        """Written straight into the container by `cat` (no second copy with docker cp afterwards).

        `cat` runs as the container's default user, like the tools that read the file later.
        """
        inside = f"/tmp/sfp-restore-{uuid.uuid4().hex}-{name}"
        proc = subprocess.Popen([self.docker, "exec", "-i", self.container, "sh", "-c", 'umask 077 && exec cat > "$0"', inside],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stdin is not None and proc.stderr is not None
        writer = _CheckedPipe(proc, f"cannot write {name} into {self.container}")
        try:
            yield writer, inside
            writer.close()
        finally:
            writer.close(check=False)
            subprocess.run([self.docker, "exec", "-u", "0", self.container, "rm", "-f", inside], capture_output=True, check=False)


    def read_file(self, path: str) -> bytes | None:
        r = subprocess.run([self.docker, "exec", "-u", "0", self.container, "sh", "-c", 'test ! -e "$0" || cat "$0"', path],
                           capture_output=True, check=False)
        if r.returncode != 0:
            raise SfpError(f"cannot read {path} in {self.container}: {tail(r.stderr)}", "check that the container runs")
        return r.stdout or None

    def replace_file(self, path: str, data: bytes) -> None:
        # As the server's user, so the file keeps the owner the image's key script gave it.
        r = subprocess.run([self.docker, "exec", "-i", "-u", "postgres", self.container, "sh", "-c",
                            'umask 077 && cat > "$0.sfp-new" && mv -f "$0.sfp-new" "$0"', path],
                           input=data, capture_output=True, check=False)
        if r.returncode != 0:
            raise SfpError(f"cannot write {path} in {self.container}: {tail(r.stderr)}",
                           "check that the container runs and the directory belongs to postgres")

    def restart(self, timeout: float = 120) -> None:
        r = subprocess.run([self.docker, "restart", self.container], capture_output=True, check=False)
        if r.returncode != 0:
            raise SfpError(f"cannot restart {self.container}: {tail(r.stderr)}", "check `docker ps -a` and the container's logs")
        deadline = time.monotonic() + timeout
        while True:
            ready = subprocess.run([self.docker, "exec", self.container, "pg_isready", "-q"], capture_output=True, check=False)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise SfpError(f"{self.container} did not accept connections within {timeout:.0f}s after its restart",
                               f"see `docker logs {self.container}`")
            time.sleep(0.5)


class _CheckedPipe(io.RawIOBase):
    """A process's stdin whose close() waits for the process and raises if it failed (disk full, gone)."""

    def __init__(self, proc: subprocess.Popen[bytes], what: str) -> None:
        self.proc, self.what, self.done = proc, what, False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
        except BrokenPipeError:
            self.close()  # raises with the process's message
            raise
        return len(memoryview(data))

    def close(self, check: bool = True) -> None:  # type: ignore[override]
        if self.done:
            return
        self.done = True
        assert self.proc.stdin is not None and self.proc.stderr is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        code = self.proc.wait()
        if check and code != 0:
            raise SfpError(f"{self.what} (exit {code}): {tail(self.proc.stderr.read())}",
                           "check that the container runs and its /tmp has room for the dump")
        super().close()
