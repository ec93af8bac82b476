"""`sfp-server upgrade` of a real org from PostgreSQL 15 to 17 (test catalog: Debian's real 15 and 17).

The org runs v0.8.1-pg15 (upstream's v0.8.1 with its PostgreSQL 15 override) without a backup
block: for a major upgrade the old cluster itself is the pre-upgrade state. One scenario, each
step on what the one before left:
- a plain `install` after the inventory was edited to name v0.8.1 refuses (it would start an
  empty PostgreSQL 17 database), changing nothing;
- an extension PostgreSQL 17 images no longer ship (the 15 image's `plls` stand-in) stops the plan
  and the upgrade at the pre-check, naming it, with nothing changed;
- an upgrade to a release whose REST never turns healthy (v0.8.1+restfail, PostgreSQL 17) moves
  the data, fails its gate and puts the org back by itself on its untouched PostgreSQL 15 cluster;
- the upgrade to v0.8.1: the logical dump is identical, a Vault-style value (encrypted under the
  server's root key file) still decrypts with the key the new cluster reads, login roles keep
  their password hashes, the API answers with the same keys;
- `--rollback` brings back PostgreSQL 15 with the data it had; upgrading again and `--finish`
  removes the PostgreSQL 15 cluster, after which `--rollback` is refused.

The dumps compared are taken with one pg_dump (17's, from a throwaway container of the 17 image on
the org's network), so that the only difference a major upgrade may make is the noise named in
`without_version_noise`: the server version line of the dump's header.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from installer.actions import deploy, secrets
from installer.inventory import Inventory
from tests.backup_stack.conftest import quiet
from tests.stack.conftest import (
    OPTIONAL_OFF,
    build_inventory,
    org_ports,
    org_settings,
    remove_orgs,
    service_start_times,
)

pytestmark = pytest.mark.stack

ORG = "upgpg"
SEED = """
CREATE TABLE public.notes (id bigserial PRIMARY KEY, body text NOT NULL, created timestamptz DEFAULT now());
INSERT INTO public.notes (body) SELECT 'note ' || g FROM generate_series(1, 5000) g;
CREATE INDEX notes_body ON public.notes (body);
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY notes_read ON public.notes FOR SELECT TO authenticated USING (true);
CREATE ROLE reporter LOGIN PASSWORD 'reporter-pw-1';
GRANT SELECT ON public.notes TO reporter;
-- Vault-style: a secret stored encrypted under the server's root key (the file pgsodium reads).
CREATE TABLE public.vaultish (id int PRIMARY KEY, secret bytea NOT NULL);
"""


def cli(inv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), *args], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "COLUMNS": "200"})


def psql(sql: str, db: str = "postgres") -> str:
    done = subprocess.run(["docker", "exec", "-i", "-e", "PGUSER=supabase_admin", f"sfp-{ORG}-db", "psql", "-X", "-q",
                           "-v", "ON_ERROR_STOP=1", "-d", db, "-At"], input=sql, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def root_key() -> str:
    done = subprocess.run(["docker", "exec", "-u", "0", f"sfp-{ORG}-db", "cat", "/etc/postgresql-custom/pgsodium_root.key"],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def major() -> int:
    return int(psql("show server_version_num")) // 10000


def dump_with_17(password: str) -> str:
    """Every database of the org as the PostgreSQL 17 pg_dump prints it (whatever the server's major)."""
    out = []
    for db in ("postgres", "_supabase"):
        done = subprocess.run(["docker", "run", "--rm", "--network", f"sfp-{ORG}", "-e", "PGPASSWORD", "sfp-test/postgres:17",
                               "pg_dump", "-h", "db", "-U", "supabase_admin", "-d", db, "--no-comments"],
                              capture_output=True, text=True, env={**os.environ, "PGPASSWORD": password}, check=False)
        assert done.returncode == 0, done.stderr
        out.append(done.stdout)
    return without_version_noise("\n".join(out))


def without_version_noise(dump: str) -> str:
    """The noise of a major upgrade in a dump: the header line naming the server's version, and the
    random key pg_dump 17.6+ brackets its output with (`\\restrict`). Nothing else is removed."""
    return "\n".join(line for line in dump.splitlines()
                     if not line.startswith("-- Dumped from database version") and not re.match(r"^\\(un)?restrict ", line))


def password_hashes() -> str:
    return psql("select rolname || ' ' || coalesce(rolpassword, '') from pg_authid where rolname not like 'pg\\_%' order by 1")


def status(inv: Path) -> dict:
    return json.loads(cli(inv, "status", "--org", ORG, "--json").stdout)[0]


def started() -> dict[str, str]:
    return service_start_times(f"sfp-{ORG}")


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[tuple[Path, Path, dict[str, int]]]:
    root = tmp_path_factory.mktemp("pg-major")
    base_dir = root / "hosts" / "sfp"
    ports = org_ports(ORG)[ORG]
    settings = org_settings(ports, release="v0.8.1-pg15", services=OPTIONAL_OFF)
    settings["resources"] = {**settings["resources"], "studio": {"cpus": 2, "memory": "512m"}}
    inv = build_inventory(root, {ORG: settings}, base_dir)
    try:
        outcome = deploy.install(Inventory(inv, inv / ".vault-pass"), [ORG], quiet())
        assert outcome.result.ok, (outcome.result.failures, outcome.result.stdout_tail)
        yield inv, base_dir / "orgs" / ORG, ports
    finally:
        remove_orgs((ORG,), base_dir)


def test_postgres_15_to_17(org: tuple[Path, Path, dict[str, int]]) -> None:
    inv, org_dir, ports = org
    keys = secrets.read(Inventory(inv, inv / ".vault-pass"), ORG)
    assert major() == 15
    psql(SEED)
    key = root_key()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    psql(f"INSERT INTO public.vaultish VALUES (1, extensions.pgp_sym_encrypt('the vault secret', '{key}'))")
    hashes = password_hashes()

    # The release named in the inventory by hand, then a plain install: refused (it would start an
    # empty PostgreSQL 17 database beside the data), nothing changed.
    vars_file = inv / "host_vars" / ORG / "main.yml"
    before_vars = vars_file.read_text()
    vars_file.write_text(before_vars.replace("release: v0.8.1-pg15", "release: v0.8.1"))
    times = started()
    done = cli(inv, "install", "--org", ORG)
    assert done.returncode != 0 and "sfp-server upgrade --org upgpg --to v0.8.1" in done.stdout + done.stderr, \
        (done.stdout[-2000:], done.stderr[-2000:])
    assert started() == times and major() == 15 and not (org_dir / "volumes/db/data").exists()
    vars_file.write_text(before_vars)

    # A blocking extension: the plan says which and where, the upgrade refuses, nothing changes.
    psql("CREATE EXTENSION plls")
    times = started()
    done = cli(inv, "upgrade", "--org", ORG, "--to", "v0.8.1", "--plan", "--json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    plan = json.loads(done.stdout)[0]
    assert any("postgres: plls" in p and "DROP EXTENSION" in p for p in plan["problems"]), plan["problems"]
    done = cli(inv, "upgrade", "--org", ORG, "--to", "v0.8.1")
    assert done.returncode == 1 and "plls" in done.stderr, (done.stdout, done.stderr)
    assert started() == times and major() == 15 and not (org_dir / "volumes/db/data").exists()
    psql("DROP EXTENSION plls")
    dump = dump_with_17(keys["POSTGRES_PASSWORD"])

    # The plan of the major upgrade: the flavour's notes, the major, the downtime.
    done = cli(inv, "upgrade", "--org", ORG, "--to", "v0.8.1", "--plan", "--json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    plan = json.loads(done.stdout)[0]
    assert plan["postgres_major"] == {"before": 15, "after": 17} and plan["can_upgrade"], plan
    assert [c["service"] for c in plan["images"]] == ["db"], plan["images"]
    assert any("PostgreSQL 15 -> 17" in n["text"] for n in plan["notes"]) and "minutes per GiB" in plan["downtime"]
    assert started() == times

    # A target whose REST fails its gate: the data moved, the gate failed, the org is back on 15.
    done = cli(inv, "upgrade", "--org", ORG, "--to", "v0.8.1+restfail")
    assert done.returncode == 1 and "rolled back" in done.stderr and "rest" in done.stderr, (done.stdout, done.stderr)
    now = status(inv)
    assert (now["release"], now["verdict"]) == ("v0.8.1-pg15", "healthy"), now
    assert major() == 15 and dump_with_17(keys["POSTGRES_PASSWORD"]) == dump
    assert not (org_dir / "volumes/db/data").exists(), "the new cluster of the failed attempt is removed"

    # The upgrade.
    done = cli(inv, "upgrade", "--org", ORG, "--to", "v0.8.1")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert major() == 17
    assert dump_with_17(keys["POSTGRES_PASSWORD"]) == dump
    assert psql(f"SELECT extensions.pgp_sym_decrypt(secret, '{root_key()}') FROM public.vaultish") == "the vault secret"
    assert root_key() == key
    assert password_hashes() == hashes
    # Collation versions as the new server's C library has them (no database warns of a mismatch).
    assert psql("SELECT count(*) FROM pg_database WHERE datallowconn AND "
                "datcollversion IS DISTINCT FROM pg_database_collation_actual_version(oid)") == "0"
    assert requests.get(f"http://127.0.0.1:{ports['api']}/rest/v1/", headers={"apikey": keys["SERVICE_ROLE_KEY"]},
                        timeout=10).status_code == 200
    assert secrets.read(Inventory(inv, inv / ".vault-pass"), ORG) == keys
    now = status(inv)
    assert (now["release"], now["verdict"]) == ("v0.8.1", "healthy"), now
    last = now["history"][-1]
    assert (last["action"], last["to"], last["postgres"]["from"], last["postgres"]["to"]) == ("upgrade", "v0.8.1", 15, 17)
    # The PostgreSQL 15 cluster is untouched beside the new one, and no copy of the data is left.
    assert (org_dir / "volumes/db/data-pg15/PG_VERSION").read_text().strip() == "15"
    assert (org_dir / "volumes/db/data/PG_VERSION").read_text().strip() == "17"
    assert not any((org_dir / "upgrade").iterdir())

    # Rollback: PostgreSQL 15 with the data it had before the upgrade; the 17 cluster is gone.
    psql("INSERT INTO public.notes (body) VALUES ('written on 17')")
    done = cli(inv, "upgrade", "--org", ORG, "--rollback")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert major() == 15 and dump_with_17(keys["POSTGRES_PASSWORD"]) == dump
    assert status(inv)["release"] == "v0.8.1-pg15" and not (org_dir / "volumes/db/data").exists()

    # Again, and finish: the PostgreSQL 15 cluster and its config volume are removed.
    done = cli(inv, "upgrade", "--org", ORG, "--to", "v0.8.1")
    assert done.returncode == 0, (done.stdout, done.stderr)
    done = cli(inv, "upgrade", "--org", ORG, "--finish")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert not (org_dir / "volumes/db/data-pg15").exists()
    assert subprocess.run(["docker", "volume", "inspect", f"sfp-{ORG}-db-config-pg15"], capture_output=True).returncode != 0
    assert major() == 17 and dump_with_17(keys["POSTGRES_PASSWORD"]) == dump
    assert status(inv)["verdict"] == "healthy"
    done = cli(inv, "upgrade", "--org", ORG, "--rollback")
    assert done.returncode == 1 and "it was finished" in done.stderr, (done.stdout, done.stderr)
