"""Parsers against recorded upstream lines (tests/logs/samples/, each file names its source),
malformed and binary input, and the level mapping of every service family."""

from __future__ import annotations

from pathlib import Path

import pytest

from installer.logs import EventBuilder, LogEvent, parse_line
from installer.logs.event import ns_from_rfc3339
from installer.logs.parsers import level_from_pg, level_from_pino, level_from_status, level_from_word

SAMPLES = Path(__file__).resolve().parent / "samples"


def events_of(sample: str, service: str) -> list[LogEvent]:
    b = EventBuilder(service, org="o", host="h", container=f"sfp-o-{service}")
    out = []
    for i, line in enumerate((SAMPLES / sample).read_text().splitlines()):
        if line.startswith("# "):
            continue
        ev = b.feed(1_000 + i, line)
        if ev is not None:
            out.append(ev)
    ev = b.flush()
    if ev is not None:
        out.append(ev)
    return out


def test_every_sample_cites_its_source() -> None:
    files = sorted(SAMPLES.glob("*.log"))
    assert len(files) >= 9
    for f in files:
        head = f.read_text().splitlines()[0]
        assert head.startswith("# "), f
        text = f.read_text()
        assert "issue" in text or "Recorded" in text or ".lua" in text, f"{f.name} does not say where it came from"


def test_auth_logrus_json() -> None:
    evs = events_of("auth.log", "auth")
    assert [e.level for e in evs] == ["info", "info", "info", "info", "warn", "info"]
    assert evs[1].message == "Migrations already up to date, nothing to apply"
    assert evs[1].fields["component"] == "pop"
    assert evs[5].fields["version"] == "v2.171.0"
    assert evs[0].fields["level"] == "info" and evs[0].fields["msg"] == evs[0].message  # the service's own
    assert evs[0].fields["time"] == "2025-05-16T11:17:41Z"


def test_storage_pino_numeric_levels_and_fields() -> None:
    evs = events_of("storage.log", "storage")
    assert [e.level for e in evs] == ["info", "info"]
    assert evs[1].fields["reqId"] == "req-1"
    assert evs[1].fields["res"]["statusCode"] == 200
    assert evs[1].message.startswith("stub | GET | 200")


def test_meta_pino_labels_and_error_object() -> None:
    evs = events_of("meta.log", "meta")
    assert [e.level for e in evs] == ["info", "info", "error"]
    assert evs[2].message == 'relation "nope" does not exist'
    assert evs[2].fields["error"]["code"] == "42P01"


def test_postgrest_stderr_and_access() -> None:
    evs = events_of("rest.log", "rest")
    assert len(evs) == 7
    assert evs[0].message == "Starting PostgREST 12.2.5..."
    assert evs[5].level == "info" and evs[5].fields["status"] == 200 and evs[5].fields["remote_user"] == "user"
    assert evs[6].level == "warn" and evs[6].fields["path"] == "/unexistent"


def test_kong_access_and_error_lines() -> None:
    evs = events_of("kong.log", "kong")
    assert [e.level for e in evs] == ["warn", "warn", "warn", "error", "info", "info", "error"]
    assert evs[5].fields["kong_request_id"] == "5f1c0a3e9b7d4c2a8e6f1b3d5a7c9e01"
    assert evs[5].fields["method"] == "GET" and evs[5].fields["status"] == 200
    assert evs[6].fields["status"] == 502
    assert evs[4].fields["user_agent"] == "kube-probe/1.11"


def test_elixir_services_join_multiline_messages() -> None:
    rt = events_of("realtime.log", "realtime")
    assert [e.level for e in rt] == ["info", "debug", "debug"]
    assert rt[1].message == "QUERY OK db=1.7ms queue=96.8ms idle=0.0ms\nbegin []"
    sv = events_of("supavisor.log", "supavisor")
    assert [e.level for e in sv] == ["info", "info", "info", "warn", "error"]
    assert sv[0].message == "Setting RLIMIT_NOFILE to 100000"  # not Elixir: kept whole
    assert sv[2].fields["region"] == "local"
    an = events_of("analytics.log", "analytics")
    assert [e.level for e in an] == ["info", "info", "error", "info"]
    assert an[2].message.splitlines() == ["GenServer #PID<0.4871.0> terminating", "** (stop) :sock_closed",
                                          "Last message: {:tcp_closed, #Port<0.20>}"]
    assert an[0].message == "Migration finished"


def test_imgproxy_and_vector() -> None:
    assert parse_line("imgproxy", (SAMPLES / "imgproxy-vector.log").read_text().splitlines()[2])[0] == "info"
    evs = events_of("imgproxy-vector.log", "vector")
    assert [e.level for e in evs] == ["info", "info", "warn"]


def test_postgres_supabase_prefix_and_joining() -> None:
    evs = events_of("db-supabase-prefix.log", "db")
    by_msg = {e.message.splitlines()[0]: e for e in evs}
    fatal = by_msg['password authentication failed for user "supabase_admin"']
    assert fatal.level == "fatal"
    assert fatal.fields["severity"] == "FATAL" and fatal.fields["user"] == "supabase_admin"
    assert fatal.fields["client"] == "127.0.0.1" and fatal.fields["database"] == "postgres"
    assert fatal.fields["detail"].startswith('Connection matched file "/etc/postgresql/pg_hba.conf"')
    multi = by_msg['relation "nothere" does not exist at character 33']
    assert multi.level == "error"
    assert multi.fields["statement"] == "select 1 as a,\n\t  2 as b from\n\t   nothere"
    dup = by_msg['duplicate key value violates unique constraint "t_pkey"']
    assert dup.fields["detail"] == "Key (id)=(1) already exists."
    assert dup.fields["statement"].startswith("create table t")
    warn = by_msg["careful: 42"]
    assert warn.level == "warn" and warn.fields["context"].startswith("PL/pgSQL function")
    ready = by_msg["database system is ready to accept connections"]
    assert ready.level == "info" and ready.fields["pid"] == 1 and "client" not in ready.fields
    # lines that are not PostgreSQL's (the entrypoint's) are kept whole, as info
    assert any(e.message.startswith("2026-11-25 21:38:22 UTC sfp-test/postgres:") and e.level == "info" for e in evs)
    # no line lost: every non-comment line is in some event
    text = "\n".join(e.message for e in evs)
    for line in (SAMPLES / "db-supabase-prefix.log").read_text().splitlines():
        if not line.startswith("# ") and "UTC [" not in line:
            assert line.strip() in text


def test_postgres_test_image_prefix_without_host() -> None:
    b = EventBuilder("db")
    assert b.feed(1, "2026-11-25 21:00:00.123 UTC [42] supabase_admin@postgres ERROR:  boom") is None
    assert b.feed(2, "2026-11-25 21:00:00.124 UTC [42] supabase_admin@postgres HINT:  try again") is None
    ev = b.feed(3, "2026-11-25 21:00:01.000 UTC [1] LOG:  checkpoint starting: time")
    assert ev is not None and ev.level == "error" and ev.fields["hint"] == "try again" and ev.time_ns == 1
    last = b.flush()
    assert last is not None and last.level == "info" and last.message == "checkpoint starting: time"


def test_pg_detail_of_another_pid_is_not_joined() -> None:
    b = EventBuilder("db")
    b.feed(1, "2026-11-25 21:00:00.123 UTC [42] a@b ERROR:  one")
    ev = b.feed(2, "2026-11-25 21:00:00.124 UTC [43] a@b DETAIL:  of another backend")
    assert ev is not None and ev.message == "one"


@pytest.mark.parametrize("service", ["auth", "storage", "kong", "rest", "db", "realtime", "studio", "unknown"])
def test_malformed_lines_are_kept_whole_as_info(service: str) -> None:
    for line in ['{"level":"info","msg":', "{not json at all", "[warn half", "", "   ", "2026-13-45 99:99 UTC [x] LOG: no",
                 '1.2.3.4 - - [bad] "GET / HTTP/1.1" abc']:
        b = EventBuilder(service)
        ev = b.feed(5, line) or b.flush()
        assert ev is not None
        assert ev.level == "info"
        assert ev.message == line.rstrip() if service in ("db", "realtime") else ev.message == line


def test_json_that_is_not_an_object_or_has_odd_fields() -> None:
    assert parse_line("auth", "[1,2,3]") == ("info", "[1,2,3]", {}, None)
    level, msg, _fields, _ = parse_line("auth", '{"level":true,"msg":{"a":1},"time":"nonsense"}')
    assert level == "info" and msg == '{"a": 1}'
    assert parse_line("storage", '{"level":"60","msg":"x"}')[0] == "fatal"


def test_binary_and_invalid_utf8_never_crash() -> None:
    raw = b"\xff\xfe binary \x00\x01 line \xc3\x28 end"
    text = raw.decode("utf-8", "replace")
    for service in ("auth", "db", "kong", "realtime", "x"):
        b = EventBuilder(service)
        ev = b.feed(7, text) or b.flush()
        assert ev is not None and ev.level == "info" and "binary" in ev.message
        ev.to_json()  # serialisable


@pytest.mark.parametrize(("word", "level"), [
    ("trace", "debug"), ("debug", "debug"), ("info", "info"), ("notice", "info"), ("warning", "warn"),
    ("warn", "warn"), ("error", "error"), ("fatal", "fatal"), ("panic", "fatal"), ("critical", "fatal"),
    ("emergency", "fatal"), ("alert", "fatal"), ("whatever", "info"),
])
def test_word_levels(word: str, level: str) -> None:
    assert level_from_word(word) == level


def test_numeric_pg_and_status_levels() -> None:
    assert [level_from_pino(n) for n in (10, 20, 30, 40, 50, 60)] == ["debug", "debug", "info", "warn", "error", "fatal"]
    assert [level_from_pg(s) for s in ("DEBUG1", "DEBUG5", "LOG", "INFO", "NOTICE", "WARNING", "ERROR", "FATAL", "PANIC")] \
        == ["debug", "debug", "info", "info", "info", "warn", "error", "fatal", "fatal"]
    assert [level_from_status(s) for s in (101, 200, 304, 400, 404, 499, 500, 503)] \
        == ["info", "info", "info", "warn", "warn", "warn", "error", "error"]


def test_docker_timestamps() -> None:
    assert ns_from_rfc3339("2026-11-25T21:00:00.123456789Z") == 1795640400123456789
    assert ns_from_rfc3339("2026-11-25T21:00:00Z") == 1795640400000000000
    assert ns_from_rfc3339("2026-11-25T21:00:00.5Z") == 1795640400500000000
    assert ns_from_rfc3339("Error: no such container") is None
    assert ns_from_rfc3339("2026-11-25T21:00:00.12x4Z") is None
