"""Two small orgs of real containers on the local Docker engine, for the logs tests.

Org A: db (sfp-test/postgres:17, real PostgreSQL), auth, kong, realtime (sfp-test/standin:1 running
tests/logs/emitter.py); org B: auth (emitter), rest (the stand-in as it is, STANDIN_SERVICE=rest).
Every container gets a random name prefix and is removed at the end of the session, whatever happens.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
EMITTER = (HERE / "emitter.py").read_text()
PG_IMAGE = "sfp-test/postgres:17"
STANDIN_IMAGE = "sfp-test/standin:1"
SECRET_A = "orgA-own-secret-3f9c2b7e"
PG_PASSWORD = "pw-" + secrets.token_hex(8)


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def labels(org: str, service: str) -> list[str]:
    out: list[str] = []
    for k, v in {"com.docker.compose.project": f"sfp-{org}", "com.docker.compose.service": service,
                 "org.sfp.org": org, "org.sfp.service": service}.items():
        out += ["--label", f"{k}={v}"]
    return out


@dataclass
class Org:
    name: str
    containers: dict[str, str] = field(default_factory=dict)  # service -> container name


@dataclass
class Stack:
    a: Org
    b: Org
    started: list[str]

    def name(self, org: Org, service: str) -> str:
        return org.containers[service]


def run_standin(org: Org, service: str, emit: str, n: int, **env: str) -> str:
    name = f"sfp-{org.name}-{service}"
    args = ["run", "-d", "--name", name, *labels(org.name, service), "--log-driver", "json-file",
            "-e", f"EMIT={emit}", "-e", f"N={n}", "-e", f"ORG={org.name}", "-e", f"STANDIN_SERVICE={service}"]
    for k, v in env.items():
        args += ["-e", f"{k}={v}"]
    docker(*args, "--entrypoint", "python3", STANDIN_IMAGE, "-c", EMITTER)
    org.containers[service] = name
    return name


def run_real_standin(org: Org, service: str) -> str:
    """The stand-in image as it is (STANDIN_SERVICE picks the service), logging like upstream."""
    name = f"sfp-{org.name}-{service}"
    docker("run", "-d", "--name", name, *labels(org.name, service), "--log-driver", "json-file",
           "-e", f"STANDIN_SERVICE={service}", STANDIN_IMAGE)
    org.containers[service] = name
    return name


def run_postgres(org: Org) -> str:
    name = f"sfp-{org.name}-db"
    docker("run", "-d", "--name", name, *labels(org.name, "db"), "--log-driver", "json-file",
           "-e", f"POSTGRES_PASSWORD={PG_PASSWORD}", PG_IMAGE)
    org.containers["db"] = name
    return name


def wait_for_log(container: str, text: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = docker("logs", container, check=False)
        if text in got.stdout or text in got.stderr:
            return
        time.sleep(0.3)
    raise AssertionError(f"{container} did not log {text!r} within {timeout}s")


def raw_logs(container: str) -> list[tuple[str, str]]:
    """(docker timestamp, line) of a container, straight from `docker logs --timestamps`."""
    got = subprocess.run(["docker", "logs", "--timestamps", container], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, check=True, timeout=60)
    lines = []
    for line in got.stdout.decode("utf-8", "replace").splitlines():
        ts, _, text = line.partition(" ")
        lines.append((ts, text))
    return lines


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is required for tests/logs (CI installs it)")
    for image in (PG_IMAGE, STANDIN_IMAGE):
        if docker("image", "inspect", image, check=False).returncode != 0:
            pytest.fail(f"image {image} is missing: run tests/images/build first")
    prefix = "t" + secrets.token_hex(3)
    a, b = Org(f"{prefix}a"), Org(f"{prefix}b")
    started: list[str] = []
    try:
        started.append(run_postgres(a))
        started.append(run_standin(a, "auth", "auth", 30, SECRET=SECRET_A, BINARY="1"))
        started.append(run_standin(a, "kong", "kong", 30))
        started.append(run_standin(a, "realtime", "realtime", 12))
        started.append(run_standin(b, "auth", "auth", 30))
        started.append(run_real_standin(b, "rest"))
        for org, svc, n in ((a, "auth", 30), (a, "kong", 30), (a, "realtime", 12), (b, "auth", 30)):
            wait_for_log(org.containers[svc], f"line {n - 1}" if svc != "kong" else f"id=eq.{n - 1}&")
        wait_for_log(b.containers["rest"], "listening on port 3001")
        # PostgREST-style access lines from the stand-in: a 404 (with an apikey to mask) and a 503
        docker("exec", b.containers["rest"], "sh", "-c",
               "curl -s -o /dev/null 'localhost:3000/todos?apikey=plain-key-b'; curl -s -o /dev/null localhost:3001/ready")
        wait_for_log(b.containers["rest"], "/ready HTTP/1.1")
        wait_for_log(a.containers["db"], "starting the server")  # the entrypoint's init is over
        deadline = time.monotonic() + 60
        while docker("exec", a.containers["db"], "psql", "-U", "supabase_admin", "-d", "postgres", "-c", "select 1",
                     check=False).returncode != 0:
            assert time.monotonic() < deadline, "PostgreSQL did not come up"
            time.sleep(0.3)
        # A login with a wrong password over TCP: PostgreSQL logs FATAL + DETAIL.
        docker("exec", "-e", "PGPASSWORD=definitely-wrong", a.containers["db"], "psql",
               "host=127.0.0.1 user=supabase_admin dbname=postgres", "-c", "select 1", check=False)
        # A failing multi-line statement: ERROR + STATEMENT with continuation lines.
        docker("exec", a.containers["db"], "psql", "-U", "supabase_admin", "-d", "postgres", "-c",
               "select 1 as a,\n  2 as b\n  from no_such_table", check=False)
        wait_for_log(a.containers["db"], "no_such_table")
        yield Stack(a, b, started)
    finally:
        if started:
            docker("rm", "-f", "-v", *started, check=False)


@pytest.fixture
def utc_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TZ"] = "UTC"
    return env
