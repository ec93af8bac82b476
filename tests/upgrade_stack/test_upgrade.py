"""`sfp-server upgrade` of a real org (test catalog) from v0.8.0 to v0.8.1, through the CLI.

One scenario, one test (each step needs the org as the step before left it):
- `--plan` names the services whose image changes and the release notes, and changes nothing
  (container start times and the org's files are the same after it);
- an upgrade to the test-only release v0.8.1-migratefail (its Storage stand-in migrates the
  database at start, its Auth never turns healthy) fails the gate and rolls back by itself: exit 1,
  the org healthy on v0.8.0, the migrated table gone (data from the pre-upgrade set), the same data;
- the upgrade to v0.8.1: only the changed services restart, the data (full logical dump) and the
  API keys are the same after, `status` shows the release and the history;
- a second upgrade to v0.8.1 changes nothing;
- `--finish` keeps it (nothing restarts) and `--rollback` is refused after.
Stand-ins prove the orchestration (what restarts, gates, rollback, data), not upstream's services.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from installer.actions import secrets
from installer.inventory import Inventory
from tests.backup_stack.conftest import deployed_with_backups, logical_dump
from tests.stack.conftest import service_start_times

pytestmark = pytest.mark.stack

ORG = "upga"
BUCKET = "sfp-upgrade-backups"
SEED = """
CREATE TABLE public.notes (id bigserial PRIMARY KEY, body text NOT NULL);
INSERT INTO public.notes (body) SELECT 'note ' || g FROM generate_series(1, 2000) g;
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY notes_read ON public.notes FOR SELECT TO authenticated USING (true);
"""


def cli(inv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), *args], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "COLUMNS": "200"})


def psql(sql: str) -> str:
    done = subprocess.run(["docker", "exec", "-i", "-e", "PGUSER=supabase_admin", f"sfp-{ORG}-db", "psql", "-X", "-q",
                           "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-At"], input=sql, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def started() -> dict[str, str]:
    return service_start_times(f"sfp-{ORG}")


def files(org_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(org_dir)): p.read_bytes() for p in org_dir.rglob("*")
            if p.is_file() and "volumes/db/data" not in str(p) and "volumes/storage" not in str(p)}


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[tuple[Path, Path, dict[str, int]]]:
    with deployed_with_backups(tmp_path_factory.mktemp("upgrade-stack"), ORG, BUCKET, release="v0.8.0") as d:
        yield d.inventory.path, d.base_dir / "orgs" / ORG, d.ports


def test_plan_rollback_upgrade_and_no_op(org: tuple[Path, Path, dict[str, int]]) -> None:
    inv, org_dir, ports = org
    psql(SEED)
    keys = secrets.read(Inventory(inv, inv / ".vault-pass"), ORG)
    dump = logical_dump(ORG)

    # The plan changes nothing and says what will.
    times, before_files = started(), files(org_dir)
    done = cli(inv, "upgrade", "--org", ORG, "--to", "v0.8.1", "--plan", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)[0]
    assert (plan["current"], plan["target"], plan["can_upgrade"]) == ("v0.8.0", "v0.8.1", True), plan
    changed_images = {c["service"] for c in plan["images"]}
    assert changed_images == {"studio", "auth", "rest", "realtime", "storage", "supavisor"}, plan["images"]
    # db also changes its environment (JWT_SECRET dropped in 0.8.1); meta (on db) and kong (on studio)
    # keep their definitions but restart with what they depend on.
    assert set(plan["restarts"]) == changed_images | {"db", "meta", "kong"}, plan["restarts"]
    assert "compose.yaml" in plan["files"] and "PGRST_APP_SETTINGS_JWT_SECRET" in plan["diffs"]["compose.yaml"]
    assert any(n["release"] == "v0.8.1" for n in plan["notes"]), plan["notes"]
    assert {c["check"]: c["status"] for c in plan["checks"]} == {"health": "ok", "images": "ok", "disk": "ok", "database": "ok",
                                                                "extensions": "ok"}
    assert started() == times and files(org_dir) == before_files

    # A release whose Storage migrates the database and whose Auth never turns healthy: rolled back.
    done = cli(inv, "upgrade", "--org", ORG, "--to", "v0.8.1-migratefail")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "rolled back" in done.stderr and "auth" in done.stderr, done.stderr
    status = json.loads(cli(inv, "status", "--org", ORG, "--json").stdout)[0]
    assert (status["release"], status["verdict"]) == ("v0.8.0", "healthy"), status
    assert psql("select to_regclass('storage.standin_migrations') is null").strip() == "t"
    assert logical_dump(ORG) == dump
    assert yaml.safe_load((inv / "host_vars" / ORG / "main.yml").read_text())["sfp_org"]["release"] == "v0.8.0"
    assert [h["action"] for h in status["history"]][-1] == "rollback", status["history"]

    # The real target: only the changed services restart; data and keys are the same.
    times = started()
    done = cli(inv, "upgrade", "--org", ORG, "--to", "v0.8.1")
    assert done.returncode == 0, (done.stdout, done.stderr)
    after = started()
    restarted = {s for s in after if after[s] != times.get(s)}
    assert restarted == set(plan["restarts"]), (restarted, plan["restarts"])
    assert logical_dump(ORG) == dump
    assert secrets.read(Inventory(inv, inv / ".vault-pass"), ORG) == keys
    api = f"http://127.0.0.1:{ports['api']}"
    assert requests.get(f"{api}/rest/v1/", headers={"apikey": keys["SERVICE_ROLE_KEY"]}, timeout=10).status_code == 200
    status = json.loads(cli(inv, "status", "--org", ORG, "--json").stdout)[0]
    assert (status["release"], status["verdict"]) == ("v0.8.1", "healthy"), status
    assert status["history"][-1]["action"] == "upgrade" and status["history"][-1]["to"] == "v0.8.1"
    assert yaml.safe_load((inv / "host_vars" / ORG / "main.yml").read_text())["sfp_org"]["release"] == "v0.8.1"

    # A release after it where only REST changes and never turns healthy: REST does not migrate the
    # database, so the rollback puts the release back without a restore.
    done = cli(inv, "upgrade", "--org", ORG, "--to", "v0.8.1+restfail")
    assert done.returncode == 1 and "rolled back" in done.stderr and "rest" in done.stderr, (done.stdout, done.stderr)
    status = json.loads(cli(inv, "status", "--org", ORG, "--json").stdout)[0]
    assert (status["release"], status["verdict"]) == ("v0.8.1", "healthy"), status
    assert status["history"][-1]["action"] == "rollback" and status["history"][-1]["data_restored"] is False
    # The whole story, oldest first: kept through the restore of the first rollback.
    assert [(h["action"], h["to"]) for h in status["history"]] == [
        ("upgrade", "v0.8.1-migratefail"), ("rollback", "v0.8.0"), ("upgrade", "v0.8.1"),
        ("upgrade", "v0.8.1+restfail"), ("rollback", "v0.8.1")]
    assert logical_dump(ORG) == dump

    # Again: nothing to do, nothing restarts.
    times = started()
    done = cli(inv, "upgrade", "--org", ORG, "--to", "v0.8.1")
    assert done.returncode == 0 and "unchanged" in done.stdout, (done.stdout, done.stderr)
    assert started() == times

    # The upgrade to v0.8.1 keeps its pre-upgrade set for sfp_org.upgrade.keep_days; --finish ends
    # that (nothing restarts) and with it the rollback.
    upgraded = next(h for h in status["history"] if h["to"] == "v0.8.1" and h["action"] == "upgrade")
    assert upgraded["keep_until"] > upgraded["at"], upgraded
    done = cli(inv, "upgrade", "--org", ORG, "--finish")
    assert done.returncode == 0 and "no rollback" in done.stdout, (done.stdout, done.stderr)
    assert started() == times
    status = json.loads(cli(inv, "status", "--org", ORG, "--json").stdout)[0]
    assert status["history"][-1]["action"] == "finish" and status["verdict"] == "healthy", status
    done = cli(inv, "upgrade", "--org", ORG, "--rollback")
    assert done.returncode == 1 and "it was finished" in done.stderr, (done.stdout, done.stderr)
    done = cli(inv, "upgrade", "--org", ORG, "--finish")
    assert done.returncode == 1 and "nothing to finish" in done.stderr, (done.stdout, done.stderr)
