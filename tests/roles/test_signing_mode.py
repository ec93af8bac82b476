"""How Auth signs sessions (sfp_org.auth.asymmetric_keys), as the role renders it and `docker compose
config` resolves it: upstream's default for a new org is HS256 with the JWT secret (no key set for
Auth, Realtime, Storage and the functions; REST with the secret), the EC key an opt-in. Unset, the
org keeps the mode its vault records, so an org installed before the setting existed (its vault
holds a JWT secret but no record) goes on signing with the EC key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from installer import secrets
from tests.roles.test_compose_escaping import resolved, text
from tests.roles.test_roles_standalone import play

AUTH_DEFAULTS = yaml.safe_load((Path(__file__).resolve().parents[2] / "roles/supabase_stack/defaults/main.yml")
                               .read_text())["supabase_stack__auth"]


def render(tmp_path: Path, values: dict[str, str], **auth: Any) -> dict[str, dict[str, str]]:
    done = play(tmp_path, "supabase_stack", {
        "supabase_stack__org": "sign", "supabase_stack__release": "v0.8.1", "supabase_stack__base_dir": str(tmp_path / "sfp"),
        "supabase_stack__public_url": "http://127.0.0.1:1",
        "supabase_stack__ports": {"api": 18111, "postgres": 18112, "pooler_transaction": 18113},
        "supabase_stack__services": {"analytics": False, "functions": True, "imgproxy": False},
        "supabase_stack__auth": {**AUTH_DEFAULTS, **auth},
        "supabase_stack__secrets": values,
    }, "--tags", "render")
    assert done.returncode == 0, done.stdout
    config = resolved(tmp_path / "sfp" / "orgs" / "sign")
    return {name: {k: text(str(v)) for k, v in (svc.get("environment") or {}).items()}
            for name, svc in config["services"].items()}


def test_the_vault_records_the_mode_once() -> None:
    fresh, added = secrets.complete({})
    assert fresh["JWT_SIGNING_MODE"] == "symmetric" and added[0] == "JWT_SIGNING_MODE"
    # A vault from before the record: its org signed with the EC key, and keeps doing so.
    old = {k: v for k, v in fresh.items() if k != "JWT_SIGNING_MODE"}
    assert secrets.complete(old)[0]["JWT_SIGNING_MODE"] == "asymmetric"
    # An operator-set value alone (a vault made by `secrets set` before the first install) is no org yet.
    assert secrets.complete({"SMTP_PASS": "x"})[0]["JWT_SIGNING_MODE"] == "symmetric"
    # Never changed once there.
    assert secrets.complete(fresh)[0]["JWT_SIGNING_MODE"] == "symmetric"


@pytest.mark.parametrize(("mode", "setting", "asymmetric"), [
    ("symmetric", None, False),      # a new org: upstream's default
    ("asymmetric", None, True),      # installed before the setting: keeps its EC key
    (None, None, True),              # a vault without the record at all (the role run on its own)
    ("symmetric", True, True),       # the operator opts in
    ("asymmetric", False, False),    # or out
])
def test_what_each_service_gets(tmp_path: Path, mode: str | None, setting: bool | None, asymmetric: bool) -> None:
    values, _ = secrets.complete({})
    values = {k: v for k, v in values.items() if k != "JWT_SIGNING_MODE"} | ({"JWT_SIGNING_MODE": mode} if mode else {})
    env = render(tmp_path, values, **({"asymmetric_keys": setting} if setting is not None else {}))
    if asymmetric:
        assert env["auth"]["GOTRUE_JWT_KEYS"] == values["JWT_KEYS"]
        assert env["rest"]["PGRST_JWT_SECRET"] == values["JWT_JWKS"]
        assert env["realtime"]["API_JWT_JWKS"] == env["storage"]["JWT_JWKS"] == env["functions"]["SUPABASE_JWKS"] == values["JWT_JWKS"]
        assert env["kong"]["ANON_KEY_ASYMMETRIC"] == values["ANON_KEY_ASYMMETRIC"]
    else:
        assert "GOTRUE_JWT_KEYS" not in env["auth"] and env["auth"]["GOTRUE_JWT_SECRET"] == values["JWT_SECRET"]
        assert env["rest"]["PGRST_JWT_SECRET"] == values["JWT_SECRET"]
        assert "API_JWT_JWKS" not in env["realtime"] and "JWT_JWKS" not in env["storage"]
        assert "SUPABASE_JWKS" not in env["functions"]
        # The gateway swaps the opaque keys for the HS256 ones (kong-entrypoint.sh falls back to them).
        assert "ANON_KEY_ASYMMETRIC" not in env["kong"] and env["kong"]["SUPABASE_ANON_KEY"] == values["ANON_KEY"]
