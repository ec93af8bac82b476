"""The gateway's start script (roles/supabase_stack/files/kong-entrypoint.sh) and the Lua it hands
Kong: with an api-keys rotation's grace period, the replaced opaque keys are swapped for the ES256
keys too (request-transformer expressions); without one, nothing else is, and an empty apikey never
is. And the grace check of the rendered kong.yml (every post-function's access list): the replaced
keys are refused once the grace period ends, per request, without a restart.

The script runs under /bin/sh as in the container, up to the point where it starts Kong; the Lua is
evaluated by LuaJIT (lupa), with a stub of the few Kong PDK calls it makes. The gateway of the test
catalog is a stand-in that runs no Lua: this is where the Lua itself is checked.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import LuaRuntime  # type: ignore[import-untyped]

from tests.roles.test_roles_standalone import play

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


def start(tmp_path: Path, env: dict[str, str], config: str = CONFIG) -> tuple[dict[str, str], str]:
    """The expressions the script exports, and the declarative config it writes."""
    (tmp_path / "temp.yml").write_text(config)
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


def test_without_the_ec_key_the_opaque_keys_become_the_hs256_ones(tmp_path: Path) -> None:
    # sfp_org.auth.asymmetric_keys off (upstream's default): compose gives the gateway no ES256 keys.
    env = {k: v for k, v in KEYS.items() if not k.endswith("_ASYMMETRIC")}
    exprs, _ = start(tmp_path, {**env, **PREVIOUS})
    for key, swapped in ((KEYS["SUPABASE_SECRET_KEY"], "hs256.service"), (PREVIOUS["SUPABASE_PUBLISHABLE_KEY_PREVIOUS"], "hs256.anon")):
        assert evaluate(exprs["auth"], {"apikey": key}) == f"Bearer {swapped}", key
        assert evaluate(exprs["ws"], query={"apikey": key}) == swapped, key
        assert evaluate(exprs["functions"], {"authorization": f"Bearer {key}"}) == swapped, key
    assert "es256" not in "".join(exprs.values())


@pytest.mark.parametrize("missing", ["SUPABASE_SECRET_KEY", "SUPABASE_PUBLISHABLE_KEY"])
def test_without_opaque_keys_nothing_is_swapped(tmp_path: Path, missing: str) -> None:
    exprs, _ = start(tmp_path, {**{k: v for k, v in KEYS.items() if k != missing}, **PREVIOUS})
    assert evaluate(exprs["auth"], {"apikey": PREVIOUS["SUPABASE_SECRET_KEY_PREVIOUS"]}) == PREVIOUS["SUPABASE_SECRET_KEY_PREVIOUS"]
    assert evaluate(exprs["functions"], {"apikey": KEYS["SUPABASE_PUBLISHABLE_KEY"]}) is None


@pytest.fixture(scope="module")
def rendered_kong(tmp_path_factory: pytest.TempPathFactory) -> str:
    """kong.yml as the supabase_stack role renders it (functions on, so each post-function is in)."""
    from installer import secrets

    tmp = tmp_path_factory.mktemp("kong-render")
    done = play(tmp, "supabase_stack", {
        "supabase_stack__org": "gw", "supabase_stack__release": "v0.8.1", "supabase_stack__base_dir": str(tmp / "sfp"),
        "supabase_stack__public_url": "http://127.0.0.1:18101",
        "supabase_stack__ports": {"api": 18101, "postgres": 18102, "pooler_transaction": 18103, "analytics": 18104},
        "supabase_stack__secrets": secrets.complete({})[0],
    }, "--tags", "render")
    assert done.returncode == 0, done.stdout[-2000:]
    return (tmp / "sfp" / "orgs" / "gw" / "volumes" / "api" / "kong.yml").read_text()


class Pdk:
    """The calls the check makes: request headers and query, the response's exit, the clock."""

    def __init__(self, now: float, clock: str = "ngx") -> None:
        self.lua = LuaRuntime()
        self.now = now
        self.clock = clock

    def run(self, chunk: str, headers: dict[str, str] | None = None, query: dict[str, str] | None = None) -> Any:
        make = self.lua.eval("""function(headers, query, now, clock)
          local env = {type = type, tonumber = tonumber, pairs = pairs}
          if clock == "ngx" then env.ngx = {time = function() return now end} end
          if clock == "os" then env.os = {time = function() return now end} end
          env.kong = {
            request = {get_header = function(n) return headers[n] end, get_query_arg = function(n) return query[n] end},
            response = {exit = function(status, body) return {status = status, message = body.message} end},
            service = {request = {clear_header = function() end}},
          }
          return env
        end""")
        env = make(self.lua.table_from(headers or {}), self.lua.table_from(query or {}), self.now, self.clock)
        fn = self.lua.eval("function(code, env) local f = assert(load(code, 'check', 't', env)); return f() end")
        out = fn(chunk, env)
        return None if out is None else dict(out.items())


def checks(config: str) -> list[str]:
    """Every Lua chunk of every post-function (global and per service) that holds the grace check."""
    doc = yaml.safe_load(config)
    plugins = [*doc.get("plugins", []), *(p for s in doc["services"] for p in s.get("plugins", []))]
    chunks = [c for p in plugins if p["name"] == "post-function" for c in p["config"]["access"]]
    return [c for c in chunks if "API_KEYS_PREVIOUS_UNTIL_EPOCH" in c or "grace period of this key" in c]


def test_every_post_function_refuses_the_replaced_keys_once_the_grace_ends(tmp_path: Path, rendered_kong: str) -> None:
    doc = yaml.safe_load(rendered_kong)
    services_with_own = [s["name"] for s in doc["services"] if any(p["name"] == "post-function" for p in s.get("plugins", []))]
    assert {"storage-v1", "functions-v1"} <= set(services_with_own), services_with_own
    assert len(checks(rendered_kong)) == 1 + len(services_with_own)  # global, and each service's own

    until = int(time.time()) + 3600
    _, config = start(tmp_path, {**KEYS, **PREVIOUS, "API_KEYS_PREVIOUS_UNTIL": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                             time.gmtime(until))},
                      config=rendered_kong)
    chunks = checks(config)
    assert len(chunks) == 1 + len(services_with_own) and not any(re.search(r"\$[A-Z_]", c) for c in chunks)
    old_secret, old_publishable = PREVIOUS["SUPABASE_SECRET_KEY_PREVIOUS"], PREVIOUS["SUPABASE_PUBLISHABLE_KEY_PREVIOUS"]
    during, after = Pdk(until - 60), Pdk(until + 1)
    for chunk in chunks:
        # Kong's sandbox offers ngx.time; os.time serves where it does not; without either, no 500s.
        assert Pdk(until + 1, clock="os").run(chunk, {"apikey": old_secret})["status"] == 401
        assert Pdk(until + 1, clock="none").run(chunk, {"apikey": old_secret}) is None
        for request in ({"headers": {"apikey": old_secret}}, {"query": {"apikey": old_publishable}},
                        {"headers": {"authorization": f"Bearer {old_secret}"}}):
            assert during.run(chunk, **request) is None, request
            refused = after.run(chunk, **request)
            assert refused and refused["status"] == 401 and "grace period" in refused["message"], request
        for request in ({"headers": {"apikey": KEYS["SUPABASE_SECRET_KEY"]}}, {"headers": {}},
                        {"headers": {"authorization": "Bearer user.jwt"}}, {"headers": {"apikey": ""}}):
            assert after.run(chunk, **request) is None, request


@pytest.mark.parametrize("until", ["", "next week"])
def test_without_a_grace_nothing_is_refused_and_a_bad_deadline_has_passed(tmp_path: Path, rendered_kong: str,
                                                                           until: str) -> None:
    previous = PREVIOUS if until else {k: "" for k in PREVIOUS}
    _, config = start(tmp_path, {**KEYS, **previous, "API_KEYS_PREVIOUS_UNTIL": until}, config=rendered_kong)
    clock = Pdk(time.time())
    for chunk in checks(config):
        assert clock.run(chunk, {"apikey": ""}) is None and clock.run(chunk, {}) is None
        assert clock.run(chunk, {"apikey": KEYS["SUPABASE_SECRET_KEY"]}) is None
        refused = clock.run(chunk, {"apikey": PREVIOUS["SUPABASE_SECRET_KEY_PREVIOUS"]})
        assert (refused or {}).get("status") == (401 if until else None)
