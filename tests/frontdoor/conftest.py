"""The front door's tests run roles/frontdoor with ansible-playbook against this machine's real Apache.

There is one Apache per machine (/etc/apache2), so every test module here runs in one xdist group
(the shared deployment's, tests/conftest.py), and the session holds a lock on it (other pytest runs on the machine wait). The
session starts from Apache as Debian installed it (the tree is saved first) and puts it back at
the end, Apache stopped and every file of the role gone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.frontdoor.apache_lock import LOCK, apache_lock  # noqa: F401  (LOCK: for other suites)
from tests.frontdoor.backend import Backend
from tests.frontdoor.pki import TestCA

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HTTPS_PORT = 18443
HTTP_PORT = 18080


def host_python() -> str:
    """The interpreter the role's modules run with: Debian's, as on an org's host (interpreter
    discovery finds /usr/bin/python3 there), when it has python3-cryptography for community.crypto.
    It also starts each module about a third faster than the venv's interpreter (a pyenv build
    without PGO/LTO), and a run of the role is mostly module start-ups. The venv's otherwise."""
    debian = "/usr/bin/python3"
    if Path(debian).is_file() and subprocess.run([debian, "-c", "import cryptography"], capture_output=True,
                                                 check=False).returncode == 0:
        return debian
    return sys.executable


HOST_PYTHON = host_python()
APACHE_DIR = Path("/etc/apache2")
# Everything the role writes outside /etc/apache2.
ROLE_PATHS = (Path("/etc/sfp-frontdoor"), Path("/var/lib/sfp-frontdoor"), Path("/usr/local/lib/sfp-frontdoor"),
              Path("/etc/cron.d/sfp-frontdoor"))


def apache_pids() -> list[int]:
    """The machine's Apache (the pid file's process and its children); another test's private
    Apache (its own -d root, another pid file) is not ours to count or stop."""
    try:
        main = int(Path("/var/run/apache2/apache2.pid").read_text().strip())
    except (OSError, ValueError):
        return []
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" ", 1)
        except OSError:
            continue
        fields = rest.rsplit(")", 1)[1].split()
        if int(pid) == main or int(fields[1]) == main:
            pids.append(int(pid))
    return pids if main in pids else []


def stop_apache() -> None:
    if apache_pids():
        subprocess.run(["apache2ctl", "stop"], capture_output=True, check=False)
    deadline = time.monotonic() + 15
    while apache_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not apache_pids(), "Apache did not stop"


def reset_host(snapshot: Path) -> None:
    """Apache stopped, /etc/apache2 as saved, nothing of the role left."""
    stop_apache()
    shutil.rmtree(APACHE_DIR)
    with tarfile.open(snapshot) as tar:
        tar.extractall("/etc", filter="tar")
    # A run killed before its cleanup may have left the role's files in the saved tree.
    for pattern in ("sites-*/*sfp-frontdoor*", "conf-*/sfp-frontdoor*"):
        for leftover in APACHE_DIR.glob(pattern):
            leftover.unlink()
    for path in ROLE_PATHS:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for log in Path("/var/log/apache2").glob("sfp-frontdoor-*"):
        log.unlink()


@pytest.fixture(scope="session")
def frontdoor_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], None]]:
    """The machine's Apache, ours for the session; yields a function that makes the host fresh again."""
    if shutil.which("apache2ctl") is None:
        pytest.fail("apache2 is not installed; run `bash scripts/bootstrap` (it installs apache2 and pebble)")
    with apache_lock():
        snapshot = tmp_path_factory.mktemp("apache") / "etc-apache2.tar"
        with tarfile.open(snapshot, "w") as tar:
            tar.add(APACHE_DIR, arcname="apache2")
        reset_host(snapshot)
        try:
            yield lambda: reset_host(snapshot)
        finally:
            reset_host(snapshot)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA()


@pytest.fixture(scope="session")
def ca_file(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return test_ca.write(tmp_path_factory.mktemp("ca") / "ca.pem")


@pytest.fixture
def backend() -> Iterator[Callable[[str], Backend]]:
    started: list[Backend] = []

    def start(org: str) -> Backend:
        started.append(Backend(org))
        return started[-1]

    yield start
    for b in started:
        b.stop()


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str

    def recap(self, host: str) -> dict[str, int]:
        line = next(ln for ln in self.stdout.splitlines() if re.match(rf"^{re.escape(host)}\s+:", ln))
        return {k: int(v) for k, v in (part.split("=") for part in line.split(":", 1)[1].split())}

    def failure(self, host: str) -> str:
        """What the play printed when `host` failed (its `fatal:` result), on one line: the YAML
        callback folds long messages, and where it folds depends on the message around them."""
        lines = self.stdout.splitlines()
        start = next(i for i, ln in enumerate(lines) if ln.startswith(f"fatal: [{host}]"))
        end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines))
        return " ".join(" ".join(lines[start:end]).split())

    def changed(self) -> int:
        return sum(int(m) for m in re.findall(r"\bchanged=(\d+)", self.stdout.split("PLAY RECAP", 1)[-1]))


class Runner:
    """ansible-playbook with roles/frontdoor, one inventory host per org, all local."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.metrics_dir = workdir / "metrics"
        self.count = 0

    def org_vars(self, org: str, **overrides: Any) -> dict[str, Any]:
        return {"frontdoor__https_port": HTTPS_PORT, "frontdoor__http_port": HTTP_PORT,
                "frontdoor__org_dir": str(self.workdir / "orgs" / org), "frontdoor__metrics_dir": str(self.metrics_dir),
                "frontdoor__acme_wait": 60, **overrides}

    def __call__(self, orgs: dict[str, dict[str, Any]], *extra: str, install_packages: bool = False) -> Run:
        self.count += 1
        run_dir = self.workdir / f"run{self.count}"
        run_dir.mkdir(parents=True)
        hosts = {org: {"ansible_connection": "local", "ansible_python_interpreter": HOST_PYTHON,
                       "frontdoor__install_packages": install_packages, **self.org_vars(org), **variables}
                 for org, variables in orgs.items()}
        (run_dir / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
        (run_dir / "play.yml").write_text(yaml.safe_dump([{
            "name": "front door", "hosts": "all", "gather_facts": False, "roles": ["frontdoor"],
        }]))
        env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
               "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", **({"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"} if os.environ.get("FD_PROFILE") else {})}
        done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(run_dir / "hosts.yml"), str(run_dir / "play.yml"), *extra],
                              capture_output=True, text=True, env=env, timeout=600, cwd=run_dir)
        (run_dir / "stdout.txt").write_text(done.stdout)
        return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def run_role(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    return Runner(tmp_path_factory.mktemp("frontdoor"))


def wait_for(check: Callable[[], bool], timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, AssertionError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
