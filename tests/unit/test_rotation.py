"""Rotation without a host: which names a command means, the plan built from the role's report, the
new values, the command's usage errors (exit 2, nothing changed) and an org that is not installed."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from installer import secrets as gen
from installer.actions import secrets as secrets_action
from installer.context import read_secrets
from installer.errors import UsageError
from installer.inventory import Inventory
from installer.rotation import plan as rotation_plan
from installer.rotation.groups import GROUPS, NOT_YET, select
from tests.conftest import org_config
from tests.unit.test_cli import sfp

ORG = "acme"


def test_groups_by_name_or_by_the_vault_names_they_cover() -> None:
    assert select(["db-password"]) == [GROUPS["db-password"]]
    assert select(["POSTGRES_PASSWORD", "db-password"]) == [GROUPS["db-password"]]
    assert select(["ANON_KEY", "dashboard"]) == [GROUPS["legacy-jwt-secret"], GROUPS["dashboard"]]


@pytest.mark.parametrize(("names", "message"), [
    (["jwt-signing-key"], "cannot be rotated by this version yet"),
    (["SECRET_KEY_BASE"], "unknown secret or group"),
    (["db-password", "nope"], "unknown secret or group 'nope'"),
    ([], "nothing to rotate"),
])
def test_what_cannot_be_rotated_is_a_usage_error(names: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as err:
        select(names)
    assert err.value.exit_code == 2


def test_every_group_not_yet_rotatable_is_named_and_none_is_both() -> None:
    assert not set(NOT_YET) & set(GROUPS)
    assert set(NOT_YET) | set(GROUPS) == {"db-password", "jwt-signing-key", "legacy-jwt-secret", "api-keys",
                                          "dashboard", "service-keys", "recovery-key"}
    # Every name a group changes is a secret of the vault the toolkit describes.
    assert {n for g in GROUPS.values() for n in g.secrets} <= set(gen.DESCRIPTIONS)


SECTION = {"names": ["POSTGRES_PASSWORD"], "services": ["db", "auth", "rest", "supavisor"],
           "org_services": ["studio", "kong", "auth", "rest", "db", "supavisor"], "db_roles": ["authenticator", "postgres"],
           "db_stale": []}


def test_plan_from_the_roles_report() -> None:
    p = rotation_plan.build(ORG, [GROUPS["db-password"]], SECTION, backup_first=True,
                            show="sfp-server secrets show --org acme {name}")
    d = p.as_dict()
    assert d["recreates"] == ["db", "auth", "rest", "supavisor"] and d["untouched"] == ["studio", "kong"]
    assert d["db_roles"] == ["authenticator", "postgres"] and d["backup_first"] is True
    assert "sfp-server secrets show --org acme POSTGRES_PASSWORD" in d["clients"][0]
    assert "connections to the database drop" in d["downtime"] and "studio, kong keep running" in d["downtime"]


@pytest.mark.parametrize("broken", [{}, {**SECTION, "services": "db"}, {k: v for k, v in SECTION.items() if k != "db_stale"}])
def test_a_malformed_report_is_refused(broken: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="rotation_plan without"):
        rotation_plan.build(ORG, [GROUPS["db-password"]], broken, backup_first=False, show="")


def test_a_new_legacy_secret_remakes_what_derives_from_it_and_keeps_the_ec_key() -> None:
    values, _ = gen.complete({})
    after = GROUPS["legacy-jwt-secret"].make(values)
    changed = {k for k in values if after[k] != values[k]}
    assert changed == {"JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY", "JWT_KEYS", "JWT_JWKS"} == set(GROUPS["legacy-jwt-secret"].secrets)
    assert gen.verify_api_key(after["ANON_KEY"], after)["role"] == "anon"
    with pytest.raises(jwt.InvalidSignatureError):
        gen.verify_api_key(values["ANON_KEY"], after)
    assert gen.signing_jwk(after) == gen.signing_jwk(values)
    assert gen.verify_api_key(after["SERVICE_ROLE_KEY_ASYMMETRIC"], after)["role"] == "service_role"
    for name, holder in (("JWT_KEYS", lambda d: d), ("JWT_JWKS", lambda d: d["keys"])):
        octs = [k for k in holder(json.loads(after[name])) if k["kty"] == "oct"]
        assert len(octs) == 1 and base64.urlsafe_b64decode(octs[0]["k"] + "==").decode() == after["JWT_SECRET"], name
        assert [k for k in holder(json.loads(after[name])) if k["kty"] == "EC"] == \
            [k for k in holder(json.loads(values[name])) if k["kty"] == "EC"], name


def test_regenerate_makes_new_values_for_the_names_only() -> None:
    values, _ = gen.complete({})
    again = gen.regenerate(values, ["POSTGRES_PASSWORD"])
    assert again["POSTGRES_PASSWORD"] != values["POSTGRES_PASSWORD"] and len(again["POSTGRES_PASSWORD"]) == 32
    assert {k: v for k, v in again.items() if k != "POSTGRES_PASSWORD"} == {k: v for k, v in values.items() if k != "POSTGRES_PASSWORD"}
    with pytest.raises(KeyError):
        gen.regenerate(values, ["SMTP_PASS"])


@pytest.fixture
def inv(make_inventory: Callable[..., Path], tmp_path: Path) -> Inventory:
    path = make_inventory(orgs={ORG: org_config(18311, 18312, 18313)}, settings={"sfp_base_dir": str(tmp_path / "sfp")})
    inventory = Inventory(path, path / ".vault-pass")
    secrets_action.ensure(inventory, ORG)
    return inventory


@pytest.mark.parametrize(("args", "message"), [
    ((), "name what to rotate"),
    (("db-password", "--plan", "--from-vault"), "--plan and --from-vault exclude each other"),
    (("api-keys",), "cannot be rotated by this version yet"),
    (("service-keys",), "cannot be rotated by this version yet"),
    (("legacy-jwt-secret",), "pass --confirm acme to go ahead"),
    (("legacy-jwt-secret", "--confirm", "other"), "stop working at once"),
    (("nope",), "unknown secret or group 'nope'"),
])
def test_bad_arguments_exit_2_and_change_nothing(inv: Inventory, args: tuple[str, ...], message: str) -> None:
    before = inv.vault_file(ORG).read_bytes()
    done = sfp("-i", str(inv.path), "secrets", "rotate", "--org", ORG, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert inv.vault_file(ORG).read_bytes() == before


def test_an_org_that_is_not_installed_is_refused_before_any_new_value(inv: Inventory) -> None:
    before = read_secrets(inv, ORG)
    done = sfp("-i", str(inv.path), "secrets", "rotate", "--org", ORG, "db-password")
    assert done.returncode != 0
    assert "has no compose.yaml" in done.stderr and "install it" in done.stderr, done.stderr
    assert read_secrets(inv, ORG) == before
    assert before["POSTGRES_PASSWORD"] not in done.stdout + done.stderr


def test_a_new_recovery_key_keeps_the_earlier_ones_and_each_set_finds_its_key() -> None:
    import pyrage

    from installer.backup.keys import (
        generate_recovery_key,
        identity_for,
        key_file,
        read_key_file,
        recipient_of,
    )
    from installer.errors import SfpError

    ident, recipient = generate_recovery_key()
    values = {"BACKUP_RECOVERY_IDENTITY": ident, "BACKUP_RECOVERY_RECIPIENT": recipient}
    once = GROUPS["recovery-key"].make(values)
    twice = GROUPS["recovery-key"].make(once)
    assert once["BACKUP_RECOVERY_PREVIOUS_IDENTITIES"] == ident
    assert twice["BACKUP_RECOVERY_PREVIOUS_IDENTITIES"].splitlines() == [once["BACKUP_RECOVERY_IDENTITY"], ident]
    assert recipient_of(twice["BACKUP_RECOVERY_IDENTITY"]) == twice["BACKUP_RECOVERY_RECIPIENT"] != recipient

    # A set encrypted to the first key opens with the vault's keys (current first, then the kept ones).
    sealed = pyrage.encrypt(b"a set made before the rotations", [pyrage.x25519.Recipient.from_str(recipient)])
    keys = "\n".join([twice["BACKUP_RECOVERY_IDENTITY"], twice["BACKUP_RECOVERY_PREVIOUS_IDENTITIES"]])
    assert pyrage.decrypt(sealed, [identity_for(keys, recipient, "s1")]) == b"a set made before the rotations"
    with pytest.raises(SfpError, match=f"the recovery key does not match set s1: the set is encrypted to {recipient}"):
        identity_for(twice["BACKUP_RECOVERY_IDENTITY"], recipient, "s1")

    # The offline key file holds them all, the current one first, and reads back the same.
    text = key_file(ORG, keys, [])
    assert f"# public key: {twice['BACKUP_RECOVERY_RECIPIENT']}" in text and f"kept for the sets made with it: {recipient}" in text
    assert read_key_file(text)[0].splitlines() == keys.splitlines()


def test_a_recovery_key_rotation_needs_the_key_in_the_vault() -> None:
    with pytest.raises(UsageError, match="no recovery key in its vault"):
        GROUPS["recovery-key"].make({"POSTGRES_PASSWORD": "x"})
