"""Rotation without a host: which names a command means, the plan built from the role's report, the
new values, the command's usage errors (exit 2, nothing changed) and an org that is not installed."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from installer import secrets as gen
from installer.actions import secrets as secrets_action
from installer.context import read_secrets
from installer.errors import UsageError
from installer.inventory import Inventory
from installer.rotation import plan as rotation_plan
from installer.rotation.groups import (
    GROUPS,
    finished,
    grace_ends,
    in_grace,
    parse_grace,
    select,
    with_grace,
)
from tests.conftest import org_config
from tests.unit.test_cli import sfp

ORG = "acme"


def test_api_keys_keep_the_replaced_ones_for_the_grace_period_then_drop_them() -> None:
    group = GROUPS["api-keys"]
    before, _ = gen.complete({})
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    rotated = with_grace(group, before, group.make(before), parse_grace("12h"), now)
    for name in ("SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SECRET_KEY"):
        assert rotated[name] != before[name] and gen.opaque_key_checksum_ok(rotated[name])
        assert rotated[f"{name}_PREVIOUS"] == before[name]
    assert rotated["API_KEYS_PREVIOUS_UNTIL"] == "2026-12-04T00:00:00Z"
    assert {k for k in rotated if rotated.get(k) != before.get(k)} == set(group.secrets)
    assert in_grace(group, rotated) and grace_ends(group, rotated) == datetime(2026, 12, 4, tzinfo=UTC)

    # The next rotation replaces what the one before kept: its grace ends then.
    again = with_grace(group, rotated, group.make(rotated), parse_grace("7d"), now)
    assert again["SUPABASE_SECRET_KEY_PREVIOUS"] == rotated["SUPABASE_SECRET_KEY"] != before["SUPABASE_SECRET_KEY"]

    done = finished(group, again)
    assert not in_grace(group, done) and grace_ends(group, done) is None
    assert set(again) - set(done) == {"SUPABASE_PUBLISHABLE_KEY_PREVIOUS", "SUPABASE_SECRET_KEY_PREVIOUS",
                                      "API_KEYS_PREVIOUS_UNTIL"}
    # A stamp edited into something else counts as a grace that ended, never as one without end.
    assert grace_ends(group, {**rotated, "API_KEYS_PREVIOUS_UNTIL": "next week"}) < now
    assert grace_ends(group, {**rotated, "API_KEYS_PREVIOUS_UNTIL": "2030-01-01T00:00:00"}) < now


def test_service_keys_are_new_and_nothing_else_is() -> None:
    before, _ = gen.complete({})
    after = GROUPS["service-keys"].make(before)
    assert {k for k in after if after[k] != before[k]} == set(GROUPS["service-keys"].secrets)
    assert len(after["VAULT_ENC_KEY"]) == 32 and len(after["REALTIME_DB_ENC_KEY"]) == 16


def test_groups_by_name_or_by_the_vault_names_they_cover() -> None:
    assert select(["db-password"]) == [GROUPS["db-password"]]
    assert select(["POSTGRES_PASSWORD", "db-password"]) == [GROUPS["db-password"]]
    assert select(["ANON_KEY", "dashboard"]) == [GROUPS["legacy-jwt-secret"], GROUPS["dashboard"]]


@pytest.mark.parametrize(("names", "message"), [
    (["JWT_EXP"], "unknown secret or group"),
    (["db-password", "nope"], "unknown secret or group 'nope'"),
    ([], "nothing to rotate"),
])
def test_what_cannot_be_rotated_is_a_usage_error(names: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as err:
        select(names)
    assert err.value.exit_code == 2


def test_every_group_the_issue_names_is_rotatable() -> None:
    assert set(GROUPS) == {"db-password", "jwt-signing-key", "legacy-jwt-secret", "api-keys", "dashboard",
                           "service-keys", "recovery-key"}
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
    (("jwt-signing-key", "api-keys"), "is rotated in steps and on its own"),
    (("jwt-signing-key", "--grace", "60m"), "not longer than the org's session lifetime"),
    (("db-password", "--finish"), "db-password has none"),
    (("dashboard", "--grace", "1d"), "dashboard has none"),
    (("api-keys", "--grace", "soon"), "--grace 'soon' is not a duration"),
    (("api-keys", "--grace", "0d"), "is not a duration"),
    (("api-keys", "--grace", "400d"), "at most a year"),
    (("api-keys", "--finish", "--grace", "1d"), "--finish takes neither --grace nor --from-vault"),
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


def test_the_signing_key_is_published_then_signs_then_the_old_one_goes() -> None:
    group = GROUPS["jwt-signing-key"]
    before, _ = gen.complete({})
    old = gen.signing_jwk(before)
    session = jwt.encode({"role": "authenticated", "exp": 2**31}, jwt.PyJWK(old).key, algorithm="ES256",
                         headers={"kid": old["kid"]})

    def signers(values: dict[str, str]) -> list[str]:
        return [k["kid"] for k in json.loads(values["JWT_KEYS"]) if "sign" in k.get("key_ops", [])]

    def verifies(token: str, values: dict[str, str]) -> bool:
        kid = jwt.get_unverified_header(token)["kid"]
        public = [k for k in json.loads(values["JWT_JWKS"])["keys"] if k.get("kid") == kid]
        assert all("d" not in k for k in json.loads(values["JWT_JWKS"])["keys"])  # public halves only
        return bool(public) and bool(jwt.decode(token, jwt.PyJWK(public[0]).key, algorithms=["ES256"]))

    published = gen.with_signing_key_published(before)
    assert signers(published) == [old["kid"]] and len(gen.ec_jwks(published)) == 2
    new_kid = next(k["kid"] for k in gen.ec_jwks(published) if k["kid"] != old["kid"])
    assert [k.get("kid") for k in json.loads(published["JWT_JWKS"])["keys"]] == [old["kid"], new_kid, None]
    assert published["ANON_KEY_ASYMMETRIC"] == before["ANON_KEY_ASYMMETRIC"]  # nothing signs with it yet

    switched = gen.with_signing_key_switched(published)
    assert signers(switched) == [new_kid]
    assert jwt.get_unverified_header(switched["ANON_KEY_ASYMMETRIC"])["kid"] == new_kid
    assert gen.verify_api_key(switched["SERVICE_ROLE_KEY_ASYMMETRIC"], switched)["role"] == "service_role"
    # The grace period: what the old key signed still verifies, and so do the old ES256 keys.
    assert verifies(session, switched) and in_grace(group, switched)
    assert gen.verify_api_key(before["ANON_KEY_ASYMMETRIC"], switched)["role"] == "anon"
    assert {switched[k] for k in ("JWT_SECRET", "ANON_KEY")} == {before[k] for k in ("JWT_SECRET", "ANON_KEY")}

    done = finished(group, {**switched, group.grace_until: "2026-12-04T00:00:00Z"})
    assert [k["kid"] for k in gen.ec_jwks(done)] == [new_kid] and group.grace_until not in done
    assert not verifies(session, done) and not in_grace(group, done)
    with pytest.raises(jwt.InvalidKeyError):
        gen.verify_api_key(before["ANON_KEY_ASYMMETRIC"], done)
    assert gen.verify_api_key(done["ANON_KEY_ASYMMETRIC"], done)["role"] == "anon"
    # The next rotation drops a key kept from the one before when it publishes its own.
    again = gen.with_signing_key_published(switched)
    assert old["kid"] not in [k["kid"] for k in gen.ec_jwks(again)] and signers(again) == [new_kid]
    # Its steps apply what each changes: verifiers first, then Auth and the ES256 keys' readers.
    assert [(s.label, s.names[:1]) for s in group.steps] == [("publish", ("JWT_KEYS",)), ("sign", ("JWT_KEYS",))]
    assert "JWT_JWKS" in group.steps[0].names and "ANON_KEY_ASYMMETRIC" in group.steps[1].names


def test_a_signing_key_rotation_failing_in_its_second_step_puts_the_first_steps_values_back(
        inv: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The steps against a playbook runner that records what the vault held at each run and fails
    the second step: the vault gets the values before the first step back, and one more apply
    brings the services of both steps back to them."""
    from rich.console import Console

    from installer import runner
    from installer.actions import rotate as rotate_action
    from installer.context import resolve

    ctx = resolve(inv, ORG)
    before = dict(ctx.secrets)
    runs: list[tuple[list[str], list[str], str]] = []

    def fake_run(ctx_: object, console: object, verbose: bool, tags: list[str], names: list[str],
                 check: bool = False) -> runner.RunResult:
        signer = gen.signing_jwk(read_secrets(inv, ORG))["kid"]
        runs.append((tags, names, signer))
        if tags == ["plan"]:
            section = {"names": names, "services": ["auth", "rest", "kong"], "org_services": ["db", "auth", "rest", "kong"],
                       "db_roles": [], "db_stale": []}
            return runner.RunResult(0, "successful", reports={ORG: {"rotation_plan": {"msg": section}}})
        failing = len(runs) == 3  # plan, publish, then sign
        return runner.RunResult(2 if failing else 0, "failed" if failing else "successful",
                                failures=[(ORG, "Recreate auth", "auth did not turn healthy")] if failing else [])

    monkeypatch.setattr(rotate_action, "_run", fake_run)
    with pytest.raises(rotate_action.RotationFailed, match="failed and was undone: Recreate auth"):
        rotate_action.rotate(ctx, [GROUPS["jwt-signing-key"]], Console(quiet=True))
    old_kid = gen.signing_jwk(before)["kid"]
    assert [(t, n) for t, n, _ in runs] == [
        (["plan"], list(GROUPS["jwt-signing-key"].secrets)),
        (["apply"], ["JWT_KEYS", "JWT_JWKS"]),
        (["apply"], ["JWT_KEYS", "ANON_KEY_ASYMMETRIC", "SERVICE_ROLE_KEY_ASYMMETRIC", "JWT_SIGNING_KEY_PREVIOUS_UNTIL"]),
        (["apply"], ["JWT_KEYS", "JWT_JWKS", "ANON_KEY_ASYMMETRIC", "SERVICE_ROLE_KEY_ASYMMETRIC",
                     "JWT_SIGNING_KEY_PREVIOUS_UNTIL"]),
    ]
    # The first step published a key but the old one still signed; the second made the new one sign.
    assert runs[1][2] == old_kid and runs[2][2] != old_kid and runs[3][2] == old_kid
    assert read_secrets(inv, ORG) == before
