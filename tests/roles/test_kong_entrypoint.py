"""The gateway's start script (roles/supabase_stack/files/kong-entrypoint.sh) and the Lua expressions
it hands Kong's request-transformer: with an api-keys rotation's grace period, the replaced opaque
keys are swapped for the ES256 keys too; without one, nothing else is, and an empty apikey never is.

The script runs under /bin/sh as in the container, up to the point where it starts Kong; the
expressions are evaluated by LuaJIT (lupa), with the request's headers as Kong gives them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from lupa import LuaRuntime  # type: ignore[import-untyped]

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "supabase_stack" / "files" / "kong-entrypoint.sh"
KEYS = {
    "SUPABASE_SECRET_KEY": "sb_secret_new_AAAA", "SUPABASE_PUBLISHABLE_KEY": "sb_publishable_new_BBBB",
    "SERVICE_ROLE_KEY_ASYMMETRIC": "es256.service", "ANON_KEY_ASYMMETRIC": "es256.anon",
    "SUPABASE_ANON_KEY": "hs256.anon", "SUPABASE_SERVICE_KEY": "hs256.service",
    "JWT_ISSUER": "http://localhost:8000/auth/v1",
}
PREVIOUS = {"SUPABASE_SECRET_KEY_PREVIOUS": "sb_secret_old_CCCC", "SUPABASE_PUBLISHABLE_KEY_PREVIOUS": "sb_publishable_old_DDDD"}
CONFIG = """consumers:
  - username: anon
    keyauth_credentials:
      - key: $SUPABASE_PUBLISHABLE_KEY
      - key: $SUPABASE_PUBLISHABLE_KEY_PREVIOUS
  - username: service_role
    keyauth_credentials:
      - key: $SUPABASE_SECRET_KEY
      - key: $SUPABASE_SECRET_KEY_PREVIOUS
"""


def start(tmp_path: Path, env: dict[str, str]) -> tuple[dict[str, str], str]:
    """The expressions the script exports, and the declarative config it writes."""
    (tmp_path / "temp.yml").write_text(CONFIG)
    script = SCRIPT.read_text().replace("TEMPLATE=/home/kong/temp.yml", f"TEMPLATE={tmp_path}/temp.yml")
    assert "exec /entrypoint.sh kong docker-start" in script
    script = script.replace("exec /entrypoint.sh kong docker-start",
                            'printf "%s\\0%s\\0%s" "$LUA_AUTH_EXPR" "$LUA_RT_WS_EXPR" "$LUA_FUNCTIONS_EXPR"')
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "KONG_DECLARATIVE_CONFIG": str(tmp_path / "kong.yml"), **env})
    auth, ws, functions = done.stdout.split("\0")
    return {"auth": auth, "ws": ws, "functions": functions}, (tmp_path / "kong.yml").read_text()


def evaluate(expression: str, headers: dict[str, str] | None = None, query: dict[str, str] | None = None) -> object:
    """The value Kong's request-transformer puts in the header for `$(...)`."""
    assert expression.startswith("$(") and expression.endswith(")"), expression
    lua = LuaRuntime()
    table = lua.eval("function(h, q) return {h, q} end")
    args = table(lua.table_from(headers or {}), lua.table_from(query or {}))
    run = lua.eval(f"function(a) local headers, query_params = a[1], a[2]; return {expression[2:-1]} end")
    return run(args)


def test_without_a_grace_period_only_the_current_keys_are_swapped(tmp_path: Path) -> None:
    exprs, config = start(tmp_path, {**KEYS, "SUPABASE_SECRET_KEY_PREVIOUS": "", "SUPABASE_PUBLISHABLE_KEY_PREVIOUS": ""})
    assert evaluate(exprs["auth"], {"apikey": KEYS["SUPABASE_SECRET_KEY"]}) == "Bearer es256.service"
    assert evaluate(exprs["auth"], {"apikey": KEYS["SUPABASE_PUBLISHABLE_KEY"]}) == "Bearer es256.anon"
    assert evaluate(exprs["auth"], {"apikey": PREVIOUS["SUPABASE_SECRET_KEY_PREVIOUS"]}) == PREVIOUS["SUPABASE_SECRET_KEY_PREVIOUS"]
    # An empty key adds no comparison: an empty apikey is passed on as it came, never swapped.
    assert "== ''" not in "".join(exprs.values())
    assert evaluate(exprs["auth"], {"apikey": ""}) == ""
    assert evaluate(exprs["functions"], {"apikey": ""}) is None
    # No empty credential is registered for the unset previous keys.
    assert config.count("- key:") == 2 and "PREVIOUS" not in config


def test_during_a_grace_period_the_replaced_keys_are_swapped_too(tmp_path: Path) -> None:
    exprs, config = start(tmp_path, {**KEYS, **PREVIOUS})
    old_secret, old_publishable = PREVIOUS["SUPABASE_SECRET_KEY_PREVIOUS"], PREVIOUS["SUPABASE_PUBLISHABLE_KEY_PREVIOUS"]
    for key, swapped in ((KEYS["SUPABASE_SECRET_KEY"], "es256.service"), (old_secret, "es256.service"),
                         (KEYS["SUPABASE_PUBLISHABLE_KEY"], "es256.anon"), (old_publishable, "es256.anon")):
        assert evaluate(exprs["auth"], {"apikey": key}) == f"Bearer {swapped}", key
        assert evaluate(exprs["ws"], query={"apikey": key}) == swapped, key
        assert evaluate(exprs["functions"], {"apikey": key}) == swapped, key
        assert evaluate(exprs["functions"], {"authorization": f"Bearer {key}"}) == swapped, key
    # A user's JWT in Authorization goes through untouched; an unknown key is passed on for key-auth to refuse.
    assert evaluate(exprs["auth"], {"authorization": "Bearer user.jwt", "apikey": old_secret}) == "Bearer user.jwt"
    assert evaluate(exprs["auth"], {"apikey": "sb_secret_other"}) == "sb_secret_other"
    assert evaluate(exprs["functions"], {"apikey": "sb_secret_other"}) is None
    for key in (*KEYS.values(), *PREVIOUS.values()):
        if key.startswith("sb_"):
            assert f"- key: {key}" in config


@pytest.mark.parametrize("missing", ["SUPABASE_SECRET_KEY", "SUPABASE_PUBLISHABLE_KEY"])
def test_without_opaque_keys_nothing_is_swapped(tmp_path: Path, missing: str) -> None:
    exprs, _ = start(tmp_path, {**{k: v for k, v in KEYS.items() if k != missing}, **PREVIOUS})
    assert evaluate(exprs["auth"], {"apikey": PREVIOUS["SUPABASE_SECRET_KEY_PREVIOUS"]}) == PREVIOUS["SUPABASE_SECRET_KEY_PREVIOUS"]
    assert evaluate(exprs["functions"], {"apikey": KEYS["SUPABASE_PUBLISHABLE_KEY"]}) is None
