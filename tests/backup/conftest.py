"""Session fixtures: one rclone S3 server, one seeded source cluster, the org's recovery key; the
org's signing key (SIGNING_KEY signs every set the tests make, TRUST accepts its sets)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from installer.backup import BackupSettings, Retention, Trust, generate_recovery_key, generate_signing_key

from .seed import seed
from .support import PgCluster, RcloneS3


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: real PostgreSQL + S3 round trips (seconds each); they run in CI, "
                            "deselect locally with -m 'not slow'")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    root = tmp_path_factory.mktemp("s3") / "root"
    root.mkdir()
    server = RcloneS3(root)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def source_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster("source")
    try:
        seed(cluster)
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def fresh_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster("target")
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def recovery_key() -> tuple[str, str]:
    return generate_recovery_key()


@pytest.fixture(scope="session")
def storage_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A storage volume as the file backend lays it out, metadata in user.supabase.* xattrs."""
    root = tmp_path_factory.mktemp("storage") / "storage"
    files = {
        "stub/stub/avatars/folder/1.png/5f1c-version": os.urandom(300_000),
        "stub/stub/avatars/folder/2.png/77ab-version": os.urandom(1000),
        "stub/stub/docs/report ü.pdf/0001-version": b"%PDF-1.7 " * 5000,
        "stub/stub/docs/empty.txt/0002-version": b"",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.setxattr(path, "user.supabase.content-type", b"image/png" if rel.endswith("version") and "png" in rel else b"application/pdf")
        os.setxattr(path, "user.supabase.cache-control", b"max-age=3600")
        os.setxattr(path, "user.supabase.etag", f'"{len(data):x}"'.encode())
    os.setxattr(root / "stub/stub/docs/empty.txt/0002-version", "user.supabase.raw", b"\xff\x00\xfe not utf-8")
    (root / "stub/stub/empty-bucket").mkdir(parents=True)
    os.chmod(root / "stub/stub/docs/report ü.pdf/0001-version", 0o640)
    os.utime(root / "stub/stub/avatars/folder/2.png/77ab-version", (1_700_000_000, 1_700_000_000))
    os.symlink("1.png", root / "stub/stub/avatars/folder/latest")
    return root


def make_settings(store, recipient: str, **kw) -> BackupSettings:  # type: ignore[no-untyped-def]
    return BackupSettings(store=store, recipient=recipient, retention=kw.pop("retention", Retention()), jobs=kw.pop("jobs", 2), **kw)


SIGNING_KEY, SIGNING_PUBLIC_KEY = generate_signing_key()
TRUST = Trust((SIGNING_PUBLIC_KEY,))

SECRETS = {"POSTGRES_PASSWORD": "pg-secret-value-123", "JWT_SECRET": "jwt-secret-value-abcdefghijklmnopqrstuvwxyz",
           "ANON_KEY": "anon.key.value"}
ORG_CONFIG = {"public_url": "https://acme.example.org", "bind_address": "127.0.0.1"}
