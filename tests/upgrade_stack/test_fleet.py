"""`sfp-server upgrade --all` of three real orgs (test catalog), one of which fails its upgrade.

The orgs have no backup block: the pre-upgrade state of each is the local copy the upgrade writes
on the org's host (installer/upgrade/dataset.py), with the Storage files and their attributes. Org `flb` has a setting (its mail sender's name)
that the test catalog's v0.8.1 Auth stand-in is told to fail on: its upgrade fails the health wait,
rolls back by itself and, since Auth migrates the database at start, brings the data back from the
local copy. The fleet stops there: `fla` (before it) runs v0.8.1, `flc` (after it) was not touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from installer.actions import deploy
from installer.inventory import Inventory
from tests.backup_stack.conftest import logical_dump, quiet, storage_tree
from tests.stack.conftest import (
    OPTIONAL_OFF,
    build_inventory,
    org_ports,
    org_settings,
    remove_orgs,
    service_start_times,
)

pytestmark = pytest.mark.stack

ORGS = ("fla", "flb", "flc")
FAILS = "flb"


def cli(inv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), *args], capture_output=True, text=True,
                          timeout=1200, env={**os.environ, "COLUMNS": "200"})


def psql(org: str, sql: str) -> str:
    done = subprocess.run(["docker", "exec", "-i", "-e", "PGUSER=supabase_admin", f"sfp-{org}-db", "psql", "-X", "-q",
                           "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-At"], input=sql, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("upgrade-fleet")
    base_dir = root / "hosts" / "sfp"
    ports = org_ports(*ORGS)
    orgs = {}
    for org in ORGS:
        settings = org_settings(ports[org], release="v0.8.0", services=OPTIONAL_OFF)
        if org == FAILS:
            settings["smtp"] = {**settings["smtp"], "sender_name": "upgrade-to-v0.8.1-fails-here"}
        orgs[org] = settings
    inv = build_inventory(root, orgs, base_dir)
    try:
        outcome = deploy.install(Inventory(inv, inv / ".vault-pass"), list(ORGS), quiet())
        assert outcome.result.ok, (outcome.result.failures, outcome.result.stdout_tail)
        yield inv, base_dir
    finally:
        remove_orgs(ORGS, base_dir)


def test_all_stops_at_the_org_that_fails(fleet: tuple[Path, Path]) -> None:
    inv, base_dir = fleet
    for org in ORGS:
        psql(org, f"CREATE TABLE public.t (id int PRIMARY KEY, org text); INSERT INTO public.t VALUES (1, '{org}');")
    # A storage object with its metadata attribute, as the Storage service writes them.
    obj = base_dir / "orgs" / FAILS / "volumes/storage/stub/avatars/me.png"
    obj.parent.mkdir(parents=True)
    obj.write_bytes(b"\x89PNG fleet")
    os.setxattr(obj, "user.supabase.content-type", b"image/png")
    files = storage_tree(base_dir / "orgs" / FAILS / "volumes/storage")
    dumps = {org: logical_dump(org) for org in ORGS}
    untouched = service_start_times("sfp-flc")

    done = cli(inv, "upgrade", "--all", "--to", "v0.8.1", "--json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    summary = json.loads(done.stdout)
    assert [(o["org"], o["result"], o["after"]) for o in summary["outcomes"]] == [("fla", "upgraded", "v0.8.1")], summary
    assert [f["org"] for f in summary["failed"]] == [FAILS] and "rolled back" in summary["failed"][0]["error"], summary
    assert summary["not_started"] == ["flc"], summary

    status = {s["org"]: s for s in json.loads(cli(inv, "status", "--json").stdout)}
    assert {org: (status[org]["release"], status[org]["verdict"]) for org in ORGS} == {
        "fla": ("v0.8.1", "healthy"), "flb": ("v0.8.0", "healthy"), "flc": ("v0.8.0", "healthy")}, status
    # The failing org is back with its data, from the local copy (no backup block).
    last = status[FAILS]["history"][-1]
    assert (last["action"], last["data_restored"]) == ("rollback", True), last
    assert logical_dump(FAILS) == dumps[FAILS] and logical_dump("fla") == dumps["fla"]
    assert storage_tree(base_dir / "orgs" / FAILS / "volumes/storage") == files
    assert not (base_dir / "orgs" / FAILS / "upgrade" / "pre-v0.8.1").exists(), "the loaded copy is removed"
    # Nothing of the org after it ran again, and no local copy is left on the hosts of the others.
    assert service_start_times("sfp-flc") == untouched and logical_dump("flc") == dumps["flc"]
    assert not (base_dir / "orgs" / "flc" / "upgrade").exists()
