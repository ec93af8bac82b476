"""The release catalog's order and notes, and the upgrade plan built from what the roles report."""

from __future__ import annotations

from typing import Any

import pytest

from installer import catalog
from installer.errors import SfpError
from installer.upgrade.plan import build, changed_services, with_dependents


def test_releases_sort_as_versions_and_variants_belong_to_their_catalog() -> None:
    # v0.8.1-pg15 is upstream's (a release file): v0.8.1 with its PostgreSQL 15 override.
    assert catalog.release_ids() == ["v0.8.0", "v0.8.1-pg15", "v0.8.1"]
    # A variant sorts just before its base: newer than every earlier release, never above the base.
    assert catalog.release_ids("test") == ["v0.8.0", "v0.8.1-pg15", "v0.8.1-authfail", "v0.8.1-migratefail", "v0.8.1",
                                           "v0.8.1+restfail"]
    assert not catalog.is_variant("v0.8.1-pg15") and catalog.is_variant("v0.8.1-authfail")
    with pytest.raises(SfpError, match=r"unknown release 'v0\.8\.1-authfail'"):
        catalog.load_release("v0.8.1-authfail")
    variant = catalog.load_release("v0.8.1-authfail", "test")
    assert (variant.id, variant.base, variant.images) == ("v0.8.1-authfail", "v0.8.1", catalog.load_release("v0.8.1").images)
    with pytest.raises(SfpError, match=r"vMAJOR\.MINOR\.PATCH"):
        catalog.release_version("latest")


def test_notes_are_those_of_every_release_crossed() -> None:
    assert [r.id for r in catalog.releases_between("v0.8.0", "v0.8.1")] == ["v0.8.1"]
    assert catalog.releases_between("v0.8.1", "v0.8.1") == []
    # A variant carries its base's notes; the other variants and the base are not crossed.
    assert [r.id for r in catalog.releases_between("v0.8.0", "v0.8.1-migratefail", "test")] == ["v0.8.1-migratefail"]
    assert [r.id for r in catalog.releases_between("v0.8.0", "v0.8.1+restfail", "test")] == ["v0.8.1", "v0.8.1+restfail"]
    assert all(n.kind in catalog.NOTE_KINDS for r in catalog.releases_between("v0.8.0", "v0.8.1") for n in r.notes)


def test_a_flavour_lists_what_differs_and_crosses_only_that() -> None:
    pg15, base = catalog.load_release("v0.8.1-pg15"), catalog.load_release("v0.8.1")
    # Everything but the database is v0.8.1's (merged over it), and its cluster has paths of its own.
    assert pg15.postgres_major == 15 and pg15.images["db"].ref == "supabase/postgres:15.8.1.085"
    assert {k: v for k, v in pg15.images.items() if k != "db"} == {k: v for k, v in base.images.items() if k != "db"}
    assert (pg15.db_data_dir, pg15.db_config_volume) == ("data-pg15", "db-config-pg15")
    assert (base.db_data_dir, base.db_config_volume) == ("data", "db-config")
    assert pg15.render["functions_idle_timeout_ms"] == base.render["functions_idle_timeout_ms"]
    # From the flavour to its base, the notes are the flavour's (the major upgrade), not v0.8.1's
    # (about v0.8.0); from v0.8.0, the flavour is not crossed on the way to v0.8.1.
    [crossed] = catalog.releases_between("v0.8.1-pg15", "v0.8.1")
    assert crossed.id == "v0.8.1" and crossed.notes == pg15.notes_to["v0.8.1"]
    assert any("PostgreSQL 15 -> 17" in n.text for n in crossed.notes)
    assert [r.id for r in catalog.releases_between("v0.8.0", "v0.8.1")] == ["v0.8.1"]


COMPOSE_A = "services:\n  db: {image: pg:17}\n  auth: {image: auth:1, environment: {A: '1'}}\n  kong: {image: kong:3}\n"
COMPOSE_B = ("services:\n  db: {image: pg:17}\n  auth: {image: auth:2, environment: {A: '1'}}\n"
             "  kong: {image: kong:3, depends_on: {gw: {condition: service_healthy}}}\n  rest: {image: r:1}\n"
             "  gw: {image: g:1, depends_on: [auth]}\n")


def test_changed_services_are_the_definitions_that_differ() -> None:
    assert changed_services(COMPOSE_A, COMPOSE_B) == ["auth", "kong", "rest", "gw"]
    assert changed_services(COMPOSE_B, COMPOSE_A) == ["auth", "kong", "gw", "rest"]
    assert changed_services(COMPOSE_A, COMPOSE_A) == []
    assert changed_services("", COMPOSE_A) == ["db", "auth", "kong"]


def render(before: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"release": "v0.8.1", "before": before, "postgres_major": 17,
            "images": {"db": "pg:17", "auth": "auth:2", "kong": "kong:3", "rest": "r:1"},
            "changed": ["compose.yaml", "deployed.json"], "diffs": {"compose.yaml": "-a\n+b\n", "deployed.json": "x"},
            "env_changed": False, "compose_before": COMPOSE_A, "compose_after": COMPOSE_B, **kw}


DEPLOYED = {"release": "v0.8.0", "postgres_major": 17,
            "images": {"db": {"ref": "pg:17"}, "auth": {"ref": "auth:1"}, "kong": {"ref": "kong:3"}}}
OK = [{"check": "disk", "status": "ok", "detail": "room"}]


def test_a_plan_names_images_files_restarts_and_notes() -> None:
    plan = build("acme", "v0.8.1", None, render(DEPLOYED), OK)
    assert plan.ok and not plan.no_op
    assert [(c.service, c.before, c.after) for c in plan.images] == [("auth", "auth:1", "auth:2"), ("rest", None, "r:1")]
    assert plan.files == ["compose.yaml"] and list(plan.diffs) == ["compose.yaml"]  # deployed.json is bookkeeping
    # kong's definition changed; gw is new; auth changed, so gw (depends on auth) and kong (on gw) restart.
    assert plan.restarts == ["auth", "kong", "rest", "gw"] and plan.migrates == ["auth"]

    assert [r for r, _n in plan.notes] == ["v0.8.1"] * len(catalog.load_release("v0.8.1").notes)
    assert "gateway" in plan.downtime


def test_a_dependent_that_only_restarts_needs_no_data_back() -> None:
    # storage depends on rest; only rest changes. Storage restarts on its old version: no migration.
    after = ("services:\n  rest: {image: r:2}\n  storage: {image: s:1, depends_on: [rest]}\n")
    before = "services:\n  rest: {image: r:1}\n  storage: {image: s:1, depends_on: [rest]}\n"
    plan = build("acme", "v0.8.1", None, render(DEPLOYED, compose_before=before, compose_after=after), OK)
    assert (plan.recreates, plan.restarts, plan.migrates) == (["rest"], ["rest", "storage"], [])


def test_dependents_of_a_recreated_service_restart_too() -> None:
    compose = ("services:\n  db: {image: pg}\n  meta: {image: m, depends_on: {db: {condition: service_healthy}}}\n"
               "  studio: {image: s, depends_on: [meta]}\n  kong: {image: k, depends_on: [studio]}\n  auth: {image: a}\n")
    assert with_dependents(compose, ["db"]) == ["db", "meta", "studio", "kong"]
    assert with_dependents(compose, ["auth"]) == ["auth"]


@pytest.mark.parametrize(("before", "target", "checks", "problem"), [
    ({}, "v0.8.1", OK, "is not installed"),
    ({**DEPLOYED, "release": "v0.8.1"}, "v0.8.0", OK, "an upgrade only goes forward"),
    ({**DEPLOYED, "release": "v0.8.0", "postgres_major": 17}, "v0.8.1-pg15", OK, "a major only goes forward"),
    (DEPLOYED, "v0.8.1", [{"check": "extensions", "status": "fail", "detail": "postgres: plv8"}], "postgres: plv8"),
    ({**DEPLOYED, "release": "v0.0.1"}, "v0.8.1", OK, "which this toolkit's catalog does not know"),
])
def test_a_plan_that_cannot_go_ahead_says_why(before: dict[str, Any], target: str, checks: list[dict[str, str]], problem: str) -> None:
    plan = build("acme", target, None, render(before, postgres_major=catalog.load_release(target).postgres_major), checks)
    assert not plan.ok
    assert any(problem in p for p in plan.problems), plan.problems
