"""The database webhooks init script (roles/supabase_stack/templates/db/webhooks.sql.j2), run on
real PostgreSQL (the test catalog's sfp-test/postgres:17) as the database image runs it: what it
leaves behind (migration rows, owners, grants, the pg_net event trigger, the retired
supabase_pg_net_admin role) and what its trigger function sends when a row changes, as upstream's
self-hosted docker/volumes/db/webhooks.sql does.

The test image has no pg_net. Before the script runs, a stand-in extension named pg_net is put
into the container: SQL only, with the real extension's request functions, types and grants, but
it sends nothing. Its functions record the arguments they are called with, and the status code
that the collect function reports is set by the test.

The script runs once per database, as upstream's runs once on a fresh cluster; it is not run twice
on the same database.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest

TEMPLATE = Path(__file__).resolve().parents[2] / "roles" / "supabase_stack" / "templates" / "db" / "webhooks.sql.j2"
IMAGE = "sfp-test/postgres:17"
EXTENSION_DIR = "/usr/share/postgresql/17/extension"
API_ROLES = ("postgres", "anon", "authenticated", "service_role")
MIGRATIONS = ["initial", "20210809183423_update_grants", "20240115163000_add_retry_to_http_request"]
HTTP_GET = "net.http_get(text, jsonb, jsonb, integer)"
HTTP_POST = "net.http_post(text, jsonb, jsonb, jsonb, integer)"
JSON_ONLY = {"Content-Type": "application/json"}

# Stand-in for pg_net (not the real extension): the request functions with real pg_net's
# signatures and defaults (0.19: sql/pg_net.sql), its response types and its grants to PUBLIC.
# Instead of queueing a request, each call is recorded in net.standin_calls; a URL starting with
# http://fail.test makes the call raise. net._http_collect_response reports the status code held
# in net.standin_status, or, when that is empty, no response (as real pg_net does for a request
# not yet sent, which is every request within the transaction that made it).
STANDIN_CONTROL = """\
comment = 'stand-in for pg_net (sfp-server tests): records requests, sends nothing'
default_version = '0.19'
relocatable = false
superuser = true
"""
STANDIN_SQL = """\
CREATE SCHEMA net;
CREATE TYPE net.request_status AS ENUM ('PENDING', 'SUCCESS', 'ERROR');
CREATE TYPE net.http_response AS (status_code integer, headers jsonb, body text);
CREATE TYPE net.http_response_result AS (status net.request_status, message text, response net.http_response);

CREATE TABLE net.standin_calls (
  id bigserial PRIMARY KEY,
  method text NOT NULL,
  url text,
  body jsonb,
  params jsonb,
  headers jsonb,
  timeout_milliseconds integer
);
CREATE TABLE net.standin_status (status_code integer NOT NULL);

-- Both request functions record the call the same way (a URL under fail.test raises, as a refused
-- request would).
CREATE FUNCTION net.standin_record(method text, url text, body jsonb, params jsonb, headers jsonb,
                                   timeout_milliseconds integer) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  call_id bigint;
BEGIN
  IF url LIKE 'http://fail.test%' THEN
    RAISE EXCEPTION 'stand-in: % refused', url;
  END IF;
  INSERT INTO net.standin_calls (method, url, body, params, headers, timeout_milliseconds)
    VALUES (method, url, body, params, headers, timeout_milliseconds)
    RETURNING standin_calls.id INTO call_id;
  RETURN call_id;
END
$$;

CREATE FUNCTION net.http_get(
  url text,
  params jsonb DEFAULT '{}'::jsonb,
  headers jsonb DEFAULT '{}'::jsonb,
  timeout_milliseconds integer DEFAULT 5000
) RETURNS bigint LANGUAGE sql AS $$
  SELECT net.standin_record('GET', url, NULL, params, headers, timeout_milliseconds)
$$;

CREATE FUNCTION net.http_post(
  url text,
  body jsonb DEFAULT '{}'::jsonb,
  params jsonb DEFAULT '{}'::jsonb,
  headers jsonb DEFAULT '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds integer DEFAULT 5000
) RETURNS bigint LANGUAGE sql AS $$
  SELECT net.standin_record('POST', url, body, params, headers, timeout_milliseconds)
$$;

CREATE FUNCTION net._http_collect_response(request_id bigint, async boolean DEFAULT true)
RETURNS net.http_response_result LANGUAGE sql AS $$
  SELECT CASE
    WHEN s.status_code IS NULL
      THEN ('ERROR', 'request matching request_id not found', NULL)::net.http_response_result
    ELSE ('SUCCESS', 'ok', (s.status_code, '{}'::jsonb, '')::net.http_response)::net.http_response_result
  END
  FROM (SELECT max(status_code) AS status_code FROM net.standin_status) AS s
$$;

GRANT USAGE ON SCHEMA net TO PUBLIC;
GRANT ALL ON ALL SEQUENCES IN SCHEMA net TO PUBLIC;
GRANT ALL ON ALL TABLES IN SCHEMA net TO PUBLIC;
"""


def render() -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(TEMPLATE.read_text()).render(ansible_managed="Ansible managed: test render")


def docker(*args: str, input: str | None = None, check: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], input=input, capture_output=True, text=True, check=False, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed ({result.returncode}): {result.stderr[-3000:]}")
    return result


class Db:
    """psql in the container, as supabase_admin (the role the image runs its init scripts as)."""

    def __init__(self, container: str) -> None:
        self.container = container

    def run(self, sql: str, db: str = "postgres", check: bool = True) -> subprocess.CompletedProcess[str]:
        return docker("exec", "-i", "-e", "PGUSER=supabase_admin", self.container,
                      "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, input=sql, check=check)

    def value(self, sql: str, db: str = "postgres") -> str:
        return self.run(sql, db).stdout.strip()

    def json(self, sql: str, db: str = "postgres") -> Any:
        return json.loads(self.value(sql, db))


def start_container() -> str:
    name = f"sfp-webhooks-{secrets.token_hex(4)}"
    # The password reaches docker in its environment, named on the command line only.
    env = {**os.environ, "POSTGRES_PASSWORD": secrets.token_hex(12)}
    docker("run", "-d", "--name", name, "-e", "POSTGRES_PASSWORD", IMAGE, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        # The entrypoint's temporary server answers on the socket during initialisation too.
        if ("initialisation complete" in docker("logs", name, check=False).stderr
                and docker("exec", name, "pg_isready", "-q", check=False).returncode == 0):
            return name
        time.sleep(0.5)
    logs = docker("logs", name, check=False).stderr[-2000:]
    docker("rm", "-f", "-v", name, check=False)
    raise AssertionError(f"{name} did not start: {logs}")


@pytest.fixture(scope="module")
def db(docker_engine: None) -> Iterator[Db]:
    script = render()
    name = start_container()
    try:
        database = Db(name)
        # The script creates supabase_functions_admin when it is missing; the test image's baseline
        # makes the role, so it is dropped first, for the script's own to be the one checked.
        database.run("DROP OWNED BY supabase_functions_admin; DROP ROLE supabase_functions_admin;")
        # A database like the one the image makes, in which the script runs while no pg_net exists.
        database.run("CREATE DATABASE no_pg_net TEMPLATE postgres;")
        database.run(script, db="no_pg_net")

        for file, text in ((f"{EXTENSION_DIR}/pg_net.control", STANDIN_CONTROL),
                           (f"{EXTENSION_DIR}/pg_net--0.19.sql", STANDIN_SQL)):
            docker("exec", "-i", "-u", "0", name, "sh", "-c", f"cat > {file}", input=text)
        # A role left over by an older pg_net setup, owning a table.
        database.run("CREATE ROLE supabase_pg_net_admin NOLOGIN;"
                     " CREATE TABLE public.left_by_pg_net_admin (x int);"
                     " ALTER TABLE public.left_by_pg_net_admin OWNER TO supabase_pg_net_admin;")
        database.run(script)
        yield database
    finally:
        docker("rm", "-f", "-v", name, check=False)


def webhook_table(db: Db, table: str, *trigger_args: str, as_role: str = "postgres") -> None:
    """A table of `as_role` with an AFTER INSERT webhook trigger, made by that role."""
    args = ", ".join("'" + a.replace("'", "''") + "'" for a in trigger_args)
    db.run(f"SET ROLE {as_role};"
           f" CREATE TABLE public.{table} (id int PRIMARY KEY, note text);"
           f" CREATE TRIGGER {table}_hook AFTER INSERT ON public.{table}"
           f" FOR EACH ROW EXECUTE FUNCTION supabase_functions.http_request({args});")


def calls(db: Db, url: str) -> list[dict[str, object]]:
    return db.json("SELECT coalesce(json_agg(c ORDER BY c.id), '[]') FROM net.standin_calls c"
                   f" WHERE url = '{url}';")


def hooks(db: Db, table: str) -> list[dict[str, object]]:
    return db.json("SELECT coalesce(json_agg(json_build_object('hook_name', h.hook_name, 'request_id', h.request_id)"
                   " ORDER BY h.id), '[]') FROM supabase_functions.hooks h"
                   f" WHERE h.hook_table_id = 'public.{table}'::regclass::oid;")


def set_status(db: Db, status: int | None) -> None:
    db.run("DELETE FROM net.standin_status;"
           + (f" INSERT INTO net.standin_status VALUES ({status});" if status is not None else ""))


def test_post_without_headers_sends_json_content_type_and_the_timeout(db: Db) -> None:
    url = "http://example.test/hook"
    webhook_table(db, "orders", url, "POST", "null", "{}", "1000")
    db.run("SET ROLE postgres; INSERT INTO public.orders VALUES (1, 'first');")
    [call] = calls(db, url)
    assert call["method"] == "POST"
    assert call["headers"] == JSON_ONLY
    assert call["params"] == {}
    assert call["timeout_milliseconds"] == 1000
    assert call["body"] == {"type": "INSERT", "table": "orders", "schema": "public",
                            "record": {"id": 1, "note": "first"}, "old_record": None}
    assert hooks(db, "orders") == [{"hook_name": "orders_hook", "request_id": call["id"]}]


def test_post_headers_given_are_passed_on_unchanged(db: Db) -> None:
    # An empty object is given headers too: the trigger adds no Content-Type to it.
    for table, headers in (("with_auth", {"Authorization": "Bearer t", "Content-Type": "application/json"}),
                           ("with_empty", {})):
        url = f"http://example.test/{table}"
        webhook_table(db, table, url, "POST", json.dumps(headers), '{"a": "1"}', "2500")
        db.run(f"SET ROLE postgres; INSERT INTO public.{table} VALUES (7, 'x');")
        [call] = calls(db, url)
        assert (call["headers"], call["params"], call["timeout_milliseconds"]) == (headers, {"a": "1"}, 2500)
        assert hooks(db, table) == [{"hook_name": f"{table}_hook", "request_id": call["id"]}]


def test_get_and_arguments_left_out(db: Db) -> None:
    # Only url and method: JSON headers, no params, and no timeout (NULL is passed on, as upstream).
    url = "http://example.test/get"
    webhook_table(db, "reads", url, "GET")
    db.run("SET ROLE postgres; INSERT INTO public.reads VALUES (1, 'r');")
    [call] = calls(db, url)
    assert (call["method"], call["body"], call["headers"], call["params"], call["timeout_milliseconds"]) == \
        ("GET", None, JSON_ONLY, {}, None)
    assert hooks(db, "reads") == [{"hook_name": "reads_hook", "request_id": call["id"]}]


def test_invalid_arguments_fail_the_insert(db: Db) -> None:
    webhook_table(db, "bad_method", "http://example.test/put", "PUT", "null", "{}", "1000")
    webhook_table(db, "no_url", "null", "POST")
    failed = db.run("SET ROLE postgres; INSERT INTO public.bad_method VALUES (1, 'x');", check=False)
    assert failed.returncode != 0
    assert "HTTP request failed after 0 retries" in failed.stderr and "method argument PUT is invalid" in failed.stderr
    failed = db.run("SET ROLE postgres; INSERT INTO public.no_url VALUES (1, 'x');", check=False)
    assert failed.returncode != 0 and "url argument is missing" in failed.stderr
    assert db.value("SELECT count(*) FROM public.bad_method") == "0"
    assert hooks(db, "bad_method") == []


def test_retries(db: Db) -> None:
    # Sixth argument: retries. A response at or above 500 is retried after a pause, with a warning.
    url = "http://example.test/retry"
    webhook_table(db, "retried", url, "POST", "null", "{}", "1000", "2")
    try:
        set_status(db, 503)
        started = time.monotonic()
        done = db.run("SET ROLE postgres; INSERT INTO public.retried VALUES (1, 'x');")
        assert time.monotonic() - started >= 0.75  # 0.25 s and 0.5 s before the two retries
        assert done.stderr.count("Retrying HTTP request") == 2
        assert 'retry_attempt: 2, url: "http://example.test/retry", timeout_ms: 1000, retry_delay_ms: 500' in done.stderr
        sent = calls(db, url)
        assert len(sent) == 3 and all(c["timeout_milliseconds"] == 1000 for c in sent)
        # The last attempt's request is the one logged.
        assert hooks(db, "retried") == [{"hook_name": "retried_hook", "request_id": sent[-1]["id"]}]

        set_status(db, 200)
        done = db.run("SET ROLE postgres; INSERT INTO public.retried VALUES (2, 'y');")
        assert "Retrying" not in done.stderr
        assert len(calls(db, url)) == 4
    finally:
        set_status(db, None)

    # No response yet counts as not delivered: retried as well.
    url = "http://example.test/pending"
    webhook_table(db, "pending", url, "GET", "null", "null", "300", "1")
    db.run("SET ROLE postgres; INSERT INTO public.pending VALUES (1, 'x');")
    assert len(calls(db, url)) == 2 and len(hooks(db, "pending")) == 1

    # A call that raises every time: once the retries are used up, the insert fails.
    webhook_table(db, "failing", "http://fail.test/x", "POST", "null", "{}", "1000", "1")
    failed = db.run("SET ROLE postgres; INSERT INTO public.failing VALUES (1, 'x');", check=False)
    assert failed.returncode != 0
    assert "HTTP request failed after 1 retries" in failed.stderr and "stand-in: http://fail.test/x refused" in failed.stderr
    assert failed.stderr.count("Retrying HTTP request") == 1
    assert db.value("SELECT count(*) FROM public.failing") == "0"


def test_migration_rows(db: Db) -> None:
    for database in ("postgres", "no_pg_net"):
        rows = db.json("SELECT json_agg(version) FROM supabase_functions.migrations;", db=database)
        assert sorted(rows) == sorted(MIGRATIONS)


def test_owners_and_role(db: Db) -> None:
    owners = db.json("""SELECT json_build_object(
        'schema', (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'supabase_functions'),
        'migrations', (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'supabase_functions.migrations'::regclass),
        'hooks', (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'supabase_functions.hooks'::regclass),
        'hooks_id_seq', (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'supabase_functions.hooks_id_seq'::regclass),
        'http_request', (SELECT proowner::regrole::text FROM pg_proc WHERE oid = 'supabase_functions.http_request()'::regprocedure),
        'grant_pg_net_access', (SELECT proowner::regrole::text FROM pg_proc
                                 WHERE oid = 'extensions.grant_pg_net_access()'::regprocedure));""")
    assert owners == {"schema": "supabase_admin", "migrations": "supabase_functions_admin",
                      "hooks": "supabase_functions_admin", "hooks_id_seq": "supabase_functions_admin",
                      "http_request": "supabase_functions_admin", "grant_pg_net_access": "supabase_admin"}

    role = db.json("""SELECT json_build_object('super', rolsuper, 'inherit', rolinherit, 'createrole', rolcreaterole,
        'login', rolcanlogin, 'replication', rolreplication, 'config', rolconfig,
        'postgres_member', pg_has_role('postgres', oid, 'MEMBER'))
        FROM pg_roles WHERE rolname = 'supabase_functions_admin';""")
    assert role == {"super": False, "inherit": False, "createrole": True, "login": True, "replication": False,
                    "config": ["search_path=supabase_functions"], "postgres_member": True}

    # The older pg_net role is gone; what it owned now belongs to supabase_admin.
    assert db.value("SELECT count(*) FROM pg_roles WHERE rolname = 'supabase_pg_net_admin'") == "0"
    assert db.value("SELECT relowner::regrole FROM pg_class WHERE oid = 'public.left_by_pg_net_admin'::regclass") \
        == "supabase_admin"
    assert db.value("SELECT obj_description('supabase_functions.hooks'::regclass, 'pg_class')") \
        == "Supabase Functions Hooks: Audit trail for triggered hooks."


def test_grants(db: Db) -> None:
    db.run("CREATE ROLE webhooks_outsider NOLOGIN;")
    granted = db.json(f"""SELECT json_object_agg(r, json_build_object(
        'http_request', has_function_privilege(r, 'supabase_functions.http_request()', 'EXECUTE'),
        'http_get', has_function_privilege(r, '{HTTP_GET}', 'EXECUTE'),
        'http_post', has_function_privilege(r, '{HTTP_POST}', 'EXECUTE'),
        'schema', has_schema_privilege(r, 'supabase_functions', 'USAGE'),
        'hooks', has_table_privilege(r, 'supabase_functions.hooks', 'SELECT, INSERT, UPDATE, DELETE'),
        'migrations', has_table_privilege(r, 'supabase_functions.migrations', 'SELECT, INSERT, UPDATE, DELETE'),
        'hooks_seq', has_sequence_privilege(r, 'supabase_functions.hooks_id_seq', 'USAGE')))
        FROM unnest(ARRAY['postgres', 'anon', 'authenticated', 'service_role', 'webhooks_outsider']) AS r;""")
    everything = {"http_request": True, "http_get": True, "http_post": True, "schema": True,
                  "hooks": True, "migrations": True, "hooks_seq": True}
    assert granted == {**{r: everything for r in API_ROLES},
                       "webhooks_outsider": dict.fromkeys(everything, False)}
    fa = db.json(f"""SELECT json_build_object(
        'schema', has_schema_privilege('supabase_functions_admin', 'supabase_functions', 'CREATE, USAGE'),
        'http_get', has_function_privilege('supabase_functions_admin', '{HTTP_GET}', 'EXECUTE'),
        'http_post', has_function_privilege('supabase_functions_admin', '{HTTP_POST}', 'EXECUTE'));""")
    assert fa == {"schema": True, "http_get": True, "http_post": True}

    # USAGE on net: real pg_net grants it to PUBLIC already; the script's own grants are in the ACL.
    net_usage = db.json("""SELECT json_agg(DISTINCT a.grantee::regrole::text ORDER BY a.grantee::regrole::text)
        FROM pg_namespace n, aclexplode(n.nspacl) a
        WHERE n.nspname = 'net' AND a.privilege_type = 'USAGE' AND a.grantee <> 0;""")
    assert set(net_usage) >= {"supabase_functions_admin", *API_ROLES}

    # The trigger function runs as its owner, pg_net's request functions as theirs, each with a fixed search path.
    settings = db.json(f"""SELECT json_object_agg(p.oid::regprocedure::text, json_build_object(
        'definer', p.prosecdef, 'config', p.proconfig))
        FROM pg_proc p WHERE p.oid IN ('supabase_functions.http_request()'::regprocedure,
                                       '{HTTP_GET}'::regprocedure, '{HTTP_POST}'::regprocedure);""")
    assert settings == {
        "supabase_functions.http_request()": {"definer": True, "config": ["search_path=supabase_functions"]},
        "net.http_get(text,jsonb,jsonb,integer)": {"definer": True, "config": ["search_path=net"]},
        "net.http_post(text,jsonb,jsonb,jsonb,integer)": {"definer": True, "config": ["search_path=net"]},
    }

    # A role without EXECUTE cannot attach the trigger function to its own table (given USAGE on
    # the schema here, so that the missing EXECUTE is what refuses it).
    db.run("GRANT CREATE ON SCHEMA public TO webhooks_outsider; GRANT USAGE ON SCHEMA supabase_functions TO webhooks_outsider;")
    refused = db.run("SET ROLE webhooks_outsider; CREATE TABLE public.outsider_t (id int);"
                     " CREATE TRIGGER t AFTER INSERT ON public.outsider_t FOR EACH ROW"
                     " EXECUTE FUNCTION supabase_functions.http_request('http://example.test/o', 'POST');", check=False)
    assert refused.returncode != 0 and "permission denied for function supabase_functions.http_request" in refused.stderr


def test_without_pg_net(db: Db) -> None:
    # Where no pg_net is available, no trigger function; the rest is there.
    state = db.json("""SELECT json_build_object(
        'pg_net', (SELECT count(*) FROM pg_extension WHERE extname = 'pg_net'),
        'http_request', to_regprocedure('supabase_functions.http_request()') IS NOT NULL,
        'hooks_owner', (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'supabase_functions.hooks'::regclass),
        'event_trigger', (SELECT count(*) FROM pg_event_trigger WHERE evtname = 'issue_pg_net_access'));""",
                    db="no_pg_net")
    assert state == {"pg_net": 0, "http_request": False, "hooks_owner": "supabase_functions_admin", "event_trigger": 1}


def test_event_trigger_grants_when_pg_net_is_installed_again(db: Db) -> None:
    # Last in the module: drops the stand-in extension and its recorded calls.
    trigger = db.json("""SELECT json_build_object('event', e.evtevent, 'enabled', e.evtenabled, 'tags', e.evttags,
        'function', n.nspname || '.' || p.proname)
        FROM pg_event_trigger e JOIN pg_proc p ON p.oid = e.evtfoid JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE e.evtname = 'issue_pg_net_access';""")
    assert trigger == {"event": "ddl_command_end", "enabled": "O", "tags": ["CREATE EXTENSION"],
                       "function": "extensions.grant_pg_net_access"}
    db.run("DROP EXTENSION pg_net; CREATE EXTENSION pg_net SCHEMA extensions; CREATE ROLE webhooks_outsider2 NOLOGIN;")
    state = db.json(f"""SELECT json_build_object(
        'definer', (SELECT bool_and(prosecdef) FROM pg_proc WHERE oid IN ('{HTTP_GET}'::regprocedure, '{HTTP_POST}'::regprocedure)),
        'anon', has_function_privilege('anon', '{HTTP_POST}', 'EXECUTE'),
        'functions_admin', has_function_privilege('supabase_functions_admin', '{HTTP_GET}', 'EXECUTE'),
        'others', has_function_privilege('webhooks_outsider2', '{HTTP_POST}', 'EXECUTE'));""")
    assert state == {"definer": True, "anon": True, "functions_admin": True, "others": False}
