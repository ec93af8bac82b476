"""The production path: tools run in the org's database container with `docker exec -i`.

Uses the test catalog's sfp-test/postgres:17 image (PostgreSQL 17 with the roles and schemas the
upstream supabase/postgres image starts with), so it carries the `stack` marker: it needs the
local Docker engine and the test images, like the other stack tests.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from installer.backup import DockerExecDatabase, api
from installer.backup import db as dbtools

from .conftest import ORG_CONFIG, SECRETS, SIGNING_KEY, TRUST, make_settings
from .support import RcloneS3

pytestmark = pytest.mark.stack
IMAGE = "sfp-test/postgres:17"

SEED = r"""
CREATE ROLE app_owner LOGIN PASSWORD 'app-owner-pw';
ALTER ROLE authenticator SET statement_timeout = '8s';
CREATE DATABASE app OWNER app_owner;
\c app
CREATE EXTENSION pgcrypto;
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text, secret bytea);
ALTER TABLE orders OWNER TO app_owner;
INSERT INTO orders (note, secret) SELECT md5(i::text), gen_random_bytes(16) FROM generate_series(1, 20000) i;
GRANT SELECT ON orders TO authenticated;
\c postgres
CREATE SCHEMA IF NOT EXISTS storage AUTHORIZATION supabase_storage_admin;
CREATE TABLE storage.objects (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text);
ALTER TABLE storage.objects OWNER TO supabase_storage_admin;
INSERT INTO storage.objects (name) SELECT 'f' || i FROM generate_series(1, 1000) i;
"""


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def db_container() -> Iterator[Callable[[], DockerExecDatabase]]:
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.fail(f"{IMAGE} is missing: build the test images (tests/images) first")  # a failure, not a skip
    started: list[str] = []

    def start() -> DockerExecDatabase:
        name = f"sfp-bktest{secrets.token_hex(3)}-db"
        docker("run", "-d", "--name", name, "-e", f"POSTGRES_PASSWORD={secrets.token_hex(12)}", IMAGE)
        started.append(name)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            logs = docker("logs", name, check=False).stderr
            if "initialisation complete" in logs and docker("exec", name, "pg_isready", "-q", check=False).returncode == 0:
                return DockerExecDatabase(name)
            time.sleep(0.5)
        raise RuntimeError(f"{name} did not start: {docker('logs', name, check=False).stderr[-2000:]}")

    yield start
    for name in started:
        docker("rm", "-f", "-v", name, check=False)


def dumpall(db: DockerExecDatabase) -> str:
    text = dbtools.run(db, "pg_dumpall", ["--no-sync"]).decode()
    return re.sub(r"^\\(un)?restrict \S+$", r"\\\1restrict KEY", text, flags=re.M)


def test_docker_exec_backup_restore(db_container: Callable[[], DockerExecDatabase], s3_server: RcloneS3,
                                    recovery_key: tuple[str, str], tmp_path: Path) -> None:
    identity, recipient = recovery_key
    source = db_container()
    dbtools.run(source, "psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"], input=SEED.encode())
    store = s3_server.store("docker")
    result = api.run_backup(make_settings(store, recipient), "acme", source, storage_dir=None, org_config=ORG_CONFIG,
                            secrets=SECRETS, signing_key=SIGNING_KEY)
    assert result.manifest.postgres_major == 17
    assert api.verify_set(store, "acme", result.set_id, identity, trust=TRUST, tools=source).ok

    # A fresh container of the same image: its init made the Supabase roles already (with other
    # passwords); the restore keeps them and applies the backup's attributes and password hashes.
    target = db_container()
    restored = api.restore_set(store, "acme", result.set_id, identity, target, trust=TRUST, storage_dir=None, jobs=2, workdir=tmp_path)
    assert restored.secrets == SECRETS and sorted(restored.databases) == ["app", "postgres"]
    assert dumpall(target) == dumpall(source)
    # pg_restore -j read a copy inside the container; nothing is left there.
    assert docker("exec", target.container, "sh", "-c", "ls /tmp | grep -c sfp-restore || true").stdout.strip() == "0"
