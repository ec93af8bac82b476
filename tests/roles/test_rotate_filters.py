"""roles/supabase_rotate's filters: SCRAM verifiers as PostgreSQL makes and checks them, and which
services of a compose file read a secret."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from ansible.errors import AnsibleFilterError

PLUGIN = Path(__file__).resolve().parents[2] / "roles" / "supabase_rotate" / "filter_plugins" / "sfp_rotate.py"

# Made by PostgreSQL 17 (`CREATE ROLE vectest LOGIN PASSWORD 'Correct-Horse_9'`, then pg_authid.rolpassword).
PG_VERIFIER = ("SCRAM-SHA-256$4096:KYVegOgwnIfr8vIxjT+VyQ==$xCnArEJsGoA4JOpggYipj9089BradfsVg86fxkqc/7M="
               ":V15awANUTSG7WCLyPonhUvWBtVxltw3ksZK9PFwJoBw=")


@pytest.fixture(scope="module")
def f() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sfp_rotate", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_verifier_postgresql_made_accepts_its_password_only(f: ModuleType) -> None:
    assert f.scram_matches(PG_VERIFIER, "Correct-Horse_9")
    assert not f.scram_matches(PG_VERIFIER, "Correct-Horse_8")


def test_our_verifier_is_postgresqls_given_the_same_salt(f: ModuleType) -> None:
    assert f.scram_verifier("Correct-Horse_9", salt="KYVegOgwnIfr8vIxjT+VyQ==") == PG_VERIFIER
    made = f.scram_verifier("0123abcd" * 4)
    assert re.fullmatch(r"SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=", made)
    assert made != f.scram_verifier("0123abcd" * 4), "a new salt each time"
    assert f.scram_matches(made, "0123abcd" * 4)


@pytest.mark.parametrize("stored", [None, "", "md5a3556571e93b0d20722ba62be61e8c2d", "SCRAM-SHA-256$x:y$z:w",
                                    "SCRAM-SHA-256$99999999:KYVegOgwnIfr8vIxjT+VyQ==$a:b", PG_VERIFIER + "\n"])
def test_anything_but_a_scram_verifier_does_not_match(f: ModuleType, stored: object) -> None:
    assert not f.scram_matches(stored, "Correct-Horse_9")


@pytest.mark.parametrize("password", ["", "with space", "ünïcode-pass", None, 12345678])
def test_passwords_postgresql_would_prepare_differently_are_refused_without_echo(f: ModuleType, password: object) -> None:
    with pytest.raises(AnsibleFilterError, match="printable ASCII") as err:
        f.scram_verifier(password)
    assert str(password) not in str(err.value) or password in ("", None)


def test_stale_and_password_roles(f: ModuleType) -> None:
    rows = [f"authenticator|{PG_VERIFIER}", "anon|", f"postgres|{f.scram_verifier('other-password')}", "garbage"]
    assert f.stale_roles(rows, "Correct-Horse_9") == ["postgres"]
    assert f.password_roles(rows) == ["authenticator", "postgres"]
    assert f.stale_roles("not a list", "Correct-Horse_9") == []


COMPOSE = """
services:
  studio:
    environment: {POSTGRES_PASSWORD: "${POSTGRES_PASSWORD}", KEY: "${PG_META_CRYPTO_KEY}"}
  kong:
    environment: {DASHBOARD_PASSWORD: "${DASHBOARD_PASSWORD}"}
    depends_on: {analytics: {condition: service_healthy}}
  auth:
    environment: {GOTRUE_DB_DATABASE_URL: "postgres://a:${POSTGRES_PASSWORD}@db:5432/postgres"}
    depends_on: {db: {condition: service_healthy}}
  analytics:
    environment: {DB_PASSWORD: "${POSTGRES_PASSWORD:-}"}
    depends_on: {db: {condition: service_healthy}}
  db:
    environment: {PGPASSWORD: "${POSTGRES_PASSWORD}"}
  vector:
    command: ["--literal", "$${POSTGRES_PASSWORD}", "$$$${POSTGRES_PASSWORD}"]
  imgproxy:
    command: ["$$$${DASHBOARD_PASSWORD}x", "$$${DASHBOARD_PASSWORD}"]
"""


def test_env_users_in_recreate_order(f: ModuleType) -> None:
    assert f.env_users(COMPOSE, ["POSTGRES_PASSWORD"]) == ["db", "studio", "auth", "analytics"]
    # `$$` is a literal `$`: `$${X}` is text, `$$${X}` a `$` then a reference.
    assert f.env_users(COMPOSE, ["DASHBOARD_PASSWORD"]) == ["kong", "imgproxy"]
    assert f.env_users(COMPOSE, ["NOBODY"]) == []


@pytest.mark.parametrize(("compose", "names"), [("", ["POSTGRES_PASSWORD"]), ("services: [a]", ["X"]),
                                                 (COMPOSE, "POSTGRES_PASSWORD"), (COMPOSE, [1])])
def test_env_users_refuses_what_it_cannot_read(f: ModuleType, compose: str, names: object) -> None:
    with pytest.raises(AnsibleFilterError):
        f.env_users(compose, names)
