"""Shared fixtures: inventories made from the example, written to a temp dir per test."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.plugins.vars import host_group_vars

from installer import paths
from installer.vault import create_password_file

# tests.stack_shared: the deployment the suites that only need a running org share (fixture
# `shared_orgs`); pytester: tests/unit/test_stack_marker.py runs pytest on a made-up suite.
pytest_plugins = ["tests.stack_shared", "pytester"]

REPO = Path(__file__).resolve().parent.parent

# `-m "not stack"` must leave only tests that need no Docker engine (the fast loop, README
# "Developing"). Marking happens here, in one place, so a new deploying test cannot forget it:
# every test under a deploying suite's directory, every test elsewhere that uses a fixture which
# starts containers on the local engine, and the standalone runs of the roles that query the engine.
STACK_DIRS = frozenset({"stack", "backup_stack", "sso_stack", "logs_stack", "upgrade_stack", "rotate_stack", "frontdoor_stack"})
DOCKER_FIXTURES = frozenset({
    "docker_engine",  # below: every deploying fixture asks for it, so its users are marked however deep
    "two_orgs",      # tests/stack/conftest.py: two orgs deployed with the test image catalog
    "backup_org",    # tests/backup_stack/conftest.py
    "remote_org",    # tests/backup_stack/conftest.py: an org deployed through sshd
    "shared_orgs",   # tests/stack_shared.py: the orgs the logs and SSO suites share
    "log_orgs",      # tests/logs_stack/conftest.py
    "sso_orgs",      # tests/sso_stack/conftest.py
    "stack",         # tests/logs/sfp_logs_stack.py: containers of two fake orgs
    "db_container",  # tests/backup/test_docker_exec.py: a PostgreSQL container
})
# tests/roles/test_roles_standalone.py: the docker_engine and preflight roles ask the local engine
# for its version, its containers and their ports.
ENGINE_ROLE_TESTS = ("test_docker_engine", "test_preflight")


def needs_docker(item: pytest.Item) -> bool:
    path = Path(str(item.path)).resolve()
    parts = path.relative_to(REPO).parts if path.is_relative_to(REPO) else ()
    if len(parts) > 2 and parts[0] == "tests" and parts[1] in STACK_DIRS:
        return True
    if parts[:2] == ("tests", "roles") and item.name.startswith(ENGINE_ROLE_TESTS):
        return True
    return not DOCKER_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


# The deployments that take longest, longest first (CI's --durations list shows them). Only the
# run's length depends on it: a group missing here runs after these, in collection order.
LONGEST_FIRST = (
    "shared_orgs",                               # logs and SSO suites, ~11 min
    "tests/backup_stack/test_remote.py",         # ~10 min
    "tests/backup_stack/test_backup_restore.py",  # ~6 min
    "tests/upgrade_stack/test_upgrade.py",       # ~10 min (plan, two rollbacks, one with a data restore, upgrade)
    "tests/rotate_stack/test_rotate.py",         # ~7 min (db password: plan, rotation, one undone; dashboard; legacy JWT secret; recovery key with a restore)
    "tests/stack/test_two_orgs.py",              # ~5 min
    "tests/upgrade_stack/test_pg_major.py",      # ~3.5 min here (five moves of a PostgreSQL 15 org's data)
    "tests/upgrade_stack/test_fleet.py",         # ~2 min here (three orgs, one upgraded, one rolled back)
    "tests/sso_stack/test_remote_host.py",       # ~5 min
)


def deployment_group(item: pytest.Item) -> str:
    """The xdist group of a stack test: tests that share a deployment run in one worker, one after
    the other (a session fixture is per worker, and two workers would deploy the same org names)."""
    if "shared_orgs" in getattr(item, "fixturenames", ()):
        return "shared_orgs"
    return str(item.nodeid).split("::", 1)[0]  # the module: its module-scoped deployment


# A machine has one Apache httpd, the front door (/etc/apache2, ports 80 and 443): the tests that
# drive it (tests/frontdoor, without Docker, and the front door stack test on the shared
# deployment) run in the shared deployment's worker, one after the other. The role's own tests
# come first; the shared deployment's front door test last, as it changes the orgs' public URL.
APACHE_DIRS = ("frontdoor", "frontdoor_stack")


def uses_host_apache(item: pytest.Item) -> bool:
    path = Path(str(item.path)).resolve()
    parts = path.relative_to(REPO).parts if path.is_relative_to(REPO) else ()
    return len(parts) > 2 and parts[0] == "tests" and parts[1] in APACHE_DIRS


def _shared_order(item: pytest.Item) -> int:
    if not uses_host_apache(item):
        return 1
    return 2 if "shared_orgs" in getattr(item, "fixturenames", ()) else 0


# tryfirst: xdist's own hook turns the xdist_group marks into the groups it schedules by; it must
# find them set.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    groups: dict[str, list[pytest.Item]] = {}
    rest: list[pytest.Item] = []
    for item in items:
        if needs_docker(item) and not uses_host_apache(item):
            if item.get_closest_marker("stack") is None:
                item.add_marker(pytest.mark.stack)
            # scripts/test runs `-n 2 --dist loadgroup`: one deployment's tests stay in one worker.
            group = deployment_group(item)
        elif uses_host_apache(item):
            # Minutes of playbook runs against the machine's Apache: like the Docker tests, kept out
            # of the fast loop (`-m "not stack"`).
            if item.get_closest_marker("stack") is None:
                item.add_marker(pytest.mark.stack)
            group = "shared_orgs"
        else:
            rest.append(item)
            continue
        # First, so that it wins over an xdist_group a module sets itself.
        item.add_marker(pytest.mark.xdist_group(group), append=False)
        groups.setdefault(group, []).append(item)
    if "shared_orgs" in groups:
        groups["shared_orgs"].sort(key=_shared_order)  # stable: collection order otherwise
    # The deploying tests first, each deployment's tests together (so it is torn down as soon as
    # its last test ends, tests/stack_shared.py), the longest deployments first: two workers finish
    # together when the long ones start early (scripts/test keeps this order: --no-loadscope-reorder).
    # They mostly wait on containers and SSH, so the other worker has the CPU; the short CPU-bound
    # tests fill in at the end.
    order = sorted(groups, key=lambda g: LONGEST_FIRST.index(g) if g in LONGEST_FIRST else len(LONGEST_FIRST))
    items[:] = [item for group in order for item in groups[group]] + rest


def pytest_collection_finish(session: pytest.Session) -> None:
    """In an xdist worker with `--dist loadgroup`, every deploying test must carry its group in its
    id: without it, xdist hands tests of one deployment to both workers, which then deploy the same
    org names at once and remove each other's containers."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in session.items
            if (needs_docker(item) or uses_host_apache(item)) and "@" not in item.nodeid]
    if lost:
        raise pytest.UsageError(
            f"pytest-xdist did not apply the xdist_group of {len(lost)} deploying tests (first: {lost[0]}); "
            "this pytest and pytest-xdist do not work together: install the versions pyproject.toml names")


# The test image catalog (tests/images/build): real PostgreSQL and postgres-meta, stand-ins for the rest.
TEST_IMAGES = ("sfp-test/postgres:17", "sfp-test/postgres:15", "sfp-test/postgres-meta:0.99.0", "sfp-test/standin:1")


def require_test_images() -> None:
    missing = [img for img in TEST_IMAGES
               if subprocess.run(["docker", "image", "inspect", img], capture_output=True, check=False).returncode != 0]
    if missing:
        # Not a skip: a stack test that cannot run is a failure the CI must show.
        pytest.fail(f"test images missing: {', '.join(missing)}; run `bash tests/images/build` (scripts/bootstrap does)")


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """The local engine with the test images: asked for by every fixture that deploys or starts containers.

    Being a fixture (not a call) is what marks its users `stack`, through any chain of fixtures.
    """
    require_test_images()


def write_yaml(path: Path, data: Any) -> None:
    """Write `data`; an Inventory made afterwards in this process sees the file (Ansible keeps, per
    process, the list of host_vars files it found)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    getattr(host_group_vars, "FOUND", {}).clear()


@pytest.fixture
def make_inventory(tmp_path: Path) -> Callable[..., Path]:
    """An inventory directory: the example's layout with the given orgs and machine settings."""

    def make(
        orgs: dict[str, dict[str, Any]] | None = None,
        settings: dict[str, Any] | None = None,
        name: str = "inv",
        machine_vars: dict[str, Any] | None = None,
    ) -> Path:
        inv = tmp_path / name
        shutil.copytree(paths.inventory_example(), inv)
        if orgs is not None:
            shutil.rmtree(inv / "host_vars")
            write_yaml(inv / "hosts.yml", {"all": {"children": {"sfp_orgs": {"children": {"machine_local": {
                "vars": {"sfp_machine": "local", "ansible_connection": "local",
                         "ansible_python_interpreter": "{{ ansible_playbook_python }}", **(machine_vars or {})},
                "hosts": {n: None for n in orgs},
            }}}}}})
            for org, cfg in orgs.items():
                write_yaml(inv / "host_vars" / org / "main.yml", {"sfp_org": cfg})
        if settings is not None:
            write_yaml(inv / "group_vars" / "all" / "main.yml", settings)
        create_password_file(inv / ".vault-pass")
        return inv

    return make


def org_config(api: int, pg: int, tx: int, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "release": "v0.8.1",
        "public_url": f"http://127.0.0.1:{api}",
        "ports": {"api": api, "postgres": pg, "pooler_transaction": tx},
    }
    cfg.update(extra)
    return cfg
