"""Secret ages: kept in the org's vault file beside the secrets, stamped by the one writer of the
vault (installer/context.py write_secrets), shown by `secrets age` and warned about by `status`.

`status` runs its real playbook against an org that is not installed (nothing to deploy here); the
ages come from the vault on the controller.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from installer import secrets as gen
from installer.actions import secrets as secrets_action
from installer.backup import content
from installer.context import open_vault, read_secret_ages, read_secrets, resolve, write_secrets
from installer.errors import SfpError
from installer.inventory import SECRET_AGES_VAR, SECRETS_VAR, Inventory
from tests.conftest import org_config
from tests.unit.test_cli import sfp

ORG = "aged"


def stamp(days_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def inv(make_inventory: Callable[..., Path]) -> Inventory:
    path = make_inventory(orgs={ORG: org_config(18301, 18302, 18303, secrets={"max_age_days": 30})})
    return Inventory(path, path / ".vault-pass")


def write_raw(inv: Inventory, data: dict[str, object]) -> None:
    """The vault file as an older toolkit or a hand edit left it."""
    open_vault(inv).write(inv.vault_file(ORG), data)


def test_generated_secrets_are_stamped_and_an_unchanged_write_keeps_the_stamps(inv: Inventory) -> None:
    added = secrets_action.ensure(inv, ORG)
    ages = read_secret_ages(inv, ORG)
    assert set(ages) == set(added) == set(gen.NAMES)
    assert all(abs((datetime.now(UTC) - datetime.fromisoformat(s)).total_seconds()) < 120 for s in ages.values())
    # Back-date them, then write the same values and one changed value: only that one is new.
    old = {name: stamp(40) for name in ages}
    values = read_secrets(inv, ORG)
    write_raw(inv, {SECRETS_VAR: values, SECRET_AGES_VAR: old})
    secrets_action.set_value(inv, ORG, "SMTP_PASS", "relay-password")
    after = read_secret_ages(inv, ORG)
    assert {k: v for k, v in after.items() if k != "SMTP_PASS"} == old
    assert after["SMTP_PASS"] > old["POSTGRES_PASSWORD"]
    secrets_action.set_value(inv, ORG, "SMTP_PASS", "relay-password")  # the same value again
    assert read_secret_ages(inv, ORG)["SMTP_PASS"] == after["SMTP_PASS"]


def test_a_vault_from_before_ages_shows_unknown_not_new(inv: Inventory) -> None:
    values, _ = gen.complete({})
    write_raw(inv, {SECRETS_VAR: values})
    assert secrets_action.ensure(inv, ORG) == []  # nothing to add, nothing stamped
    ages = secrets_action.age(resolve(inv, ORG))
    assert {a.name for a in ages} == set(values) - set(gen.RECORDS)  # a record (the signing mode) has no age
    assert all(a.changed_at is None and a.age_days is None and not a.too_old for a in ages)


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00", 17])
def test_a_stamp_that_does_not_parse_counts_as_unknown(bad: object) -> None:
    (age,) = gen.ages({"X": "v"}, {"X": bad}, 30, datetime.now(UTC))  # type: ignore[dict-item]
    assert (age.changed_at, age.age_days, age.too_old) == (None, None, False)


def test_ages_that_are_not_a_mapping_are_named(inv: Inventory) -> None:
    values, _ = gen.complete({})
    write_raw(inv, {SECRETS_VAR: values, SECRET_AGES_VAR: ["POSTGRES_PASSWORD"]})
    with pytest.raises(SfpError, match=SECRET_AGES_VAR):
        read_secrets(inv, ORG)


def test_age_command_and_status_warn_past_the_maximum(inv: Inventory) -> None:
    values, _ = gen.complete({})
    ages = {name: stamp(5) for name in values} | {"POSTGRES_PASSWORD": stamp(45), "JWT_SECRET": stamp(31)}
    write_raw(inv, {SECRETS_VAR: values, SECRET_AGES_VAR: ages})

    done = sfp("-i", str(inv.path), "secrets", "age", "--org", ORG, "--json")
    assert done.returncode == 0, done.stderr
    report = {a["name"]: a for a in json.loads(done.stdout)[ORG]}
    assert {n for n, a in report.items() if a["too_old"]} == {"POSTGRES_PASSWORD", "JWT_SECRET"}
    assert round(report["POSTGRES_PASSWORD"]["age_days"]) == 45 and report["ANON_KEY"]["changed_at"] == ages["ANON_KEY"]
    table = sfp("-i", str(inv.path), "secrets", "age", "--org", ORG)
    assert table.returncode == 0 and "maximum 30 days" in table.stdout and "45 days (too old)" in table.stdout
    for value in values.values():  # ages only: no value of the vault is printed
        assert value not in table.stdout + done.stdout

    status = sfp("-i", str(inv.path), "status", "--org", ORG)
    warning = next((ln for ln in status.stderr.splitlines() if ln.startswith("warning:")), "")
    assert "2 secret(s) older than 30 days" in warning and "POSTGRES_PASSWORD (45 days), JWT_SECRET (31 days)" in warning, status.stderr
    assert "secrets age --org aged" in warning
    as_json = sfp("-i", str(inv.path), "status", "--org", ORG, "--json")
    assert json.loads(as_json.stdout)[0]["secrets_too_old"] == ["POSTGRES_PASSWORD", "JWT_SECRET"]


def test_known_ages_stamp_only_values_that_change(inv: Inventory) -> None:
    """A restore passes the set's ages: they are taken for the values it writes anew, never for one
    the vault already holds unchanged (that keeps its own stamp)."""
    values, _ = gen.complete({})
    write_raw(inv, {SECRETS_VAR: values, SECRET_AGES_VAR: {"JWT_SECRET": "2026-01-01T00:00:00Z"}})
    changed = {**values, "POSTGRES_PASSWORD": "restored-password"}
    known = {"POSTGRES_PASSWORD": "2025-06-01T00:00:00Z", "JWT_SECRET": "2025-06-01T00:00:00Z"}
    write_secrets(inv, ORG, changed, known_ages=known)
    ages = read_secret_ages(inv, ORG)
    assert ages["POSTGRES_PASSWORD"] == "2025-06-01T00:00:00Z"  # new value: the set's stamp
    assert ages["JWT_SECRET"] == "2026-01-01T00:00:00Z"  # unchanged: its own
    assert "ANON_KEY" not in ages  # unchanged and never stamped: still unknown


@pytest.mark.parametrize(("ages", "kept"), [
    ({"JWT_SECRET": "2025-06-01T00:00:00Z"}, {"JWT_SECRET": "2025-06-01T00:00:00Z"}),
    ({"JWT_SECRET": "2025-06-01T02:00:00+02:00"}, {"JWT_SECRET": "2025-06-01T00:00:00Z"}),  # normalised to UTC
    ({"JWT_SECRET": "2999-01-01T00:00:00Z"}, {}),  # the future would make it look new
    ({"JWT_SECRET": "2025-06-01T00:00:00"}, {}),  # no zone
    ({"JWT_SECRET": "last spring"}, {}),
    ({"NOT_IN_THE_SET": "2025-06-01T00:00:00Z"}, {}),
])
def test_a_sets_ages_are_checked_before_a_restore_uses_them(ages: dict[str, str], kept: dict[str, str]) -> None:
    document = content.check_config_document({"org": ORG, "secrets": {"JWT_SECRET": "s"}, "secret_ages": ages}, ORG, "S1")
    assert content.secret_ages(document, datetime.now(UTC)) == kept


@pytest.mark.parametrize("ages", [["JWT_SECRET"], {"JWT_SECRET": 1700000000}, "2025-06-01"])
def test_a_set_whose_ages_are_not_names_to_strings_is_refused(ages: object) -> None:
    with pytest.raises(SfpError, match="secret_ages"):
        content.check_config_document({"org": ORG, "secrets": {"JWT_SECRET": "s"}, "secret_ages": ages}, ORG, "S1")
