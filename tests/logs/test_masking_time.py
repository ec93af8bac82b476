"""Masking in terminal and JSON output; --since/--until parsing in UTC and in a non-UTC local zone."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from installer.errors import SfpError
from installer.logs import LogEvent, Masker, parse_time_spec, write_json, write_terminal
from installer.logs.event import ns_from_datetime

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.Zm9vYmFyYmF6"
CASES = [
    (f"token {JWT} used", JWT),
    ("key sb_secret_Abc123-xyz_987 set", "sb_secret_Abc123-xyz_987"),
    ("key sb_publishable_QWERTY12345 set", "sb_publishable_QWERTY12345"),
    ("GET /rest/v1/t?apikey=plainkey123&select=* HTTP/1.1 200", "plainkey123"),
    ("POST /x?password=hunter22 HTTP/1.1", "hunter22"),
    ("callback?token=abc.def.ghi&x=1", "abc.def.ghi"),
    ("Authorization: Bearer opaque-token-value-999", "opaque-token-value-999"),
    ("authorization=Bearer another-opaque-1234", "another-opaque-1234"),
    ("dial postgres://supabase_admin:s3cr3t-pw@db:5432/postgres", "s3cr3t-pw"),
    ("dial postgresql://authenticator:pw%40x@db/postgres?sslmode=disable", "pw%40x"),
    ("the org secret org-secret-value-42 leaked", "org-secret-value-42"),
]


@pytest.mark.parametrize(("text", "secret"), CASES)
def test_masker_hides_secret(text: str, secret: str) -> None:
    masked = Masker({"org-secret-value-42"}).text(text)
    assert secret not in masked
    assert "***" in masked


def test_masker_keeps_context_and_ordinary_text() -> None:
    m = Masker({"org-secret-value-42", "ab"})  # too-short values are ignored
    assert m.text("GET /rest/v1/t?apikey=k1&select=* 200") == "GET /rest/v1/t?apikey=***&select=* 200"
    assert m.text("postgres://u:p@h/db") == "postgres://u:***@h/db"
    assert m.text("nothing to see, ab, a=b") == "nothing to see, ab, a=b"
    assert m.text("Authorization: Bearer abcdefgh12") == "Authorization: Bearer ***"


def test_masker_walks_fields() -> None:
    m = Masker({"org-secret-value-42"})
    ev = LogEvent(1, "info", f"login with {JWT}", {
        "headers": {"authorization": "Bearer zzz", "apikey": "sb_publishable_x1y2z3"},
        "password": "p", "list": [f"x {JWT}", 3, None], "note": "has org-secret-value-42", "n": 5,
    })
    m.event(ev)
    blob = json.dumps(ev.to_dict())
    for s in (JWT, "zzz", "sb_publishable_x1y2z3", "org-secret-value-42", '"password": "p"'):
        assert s not in blob
    assert ev.fields["n"] == 5 and ev.fields["list"][1] == 3


def _events() -> list[LogEvent]:
    m = Masker({"org-secret-value-42"})
    evs = [LogEvent(ns_from_datetime(datetime(2026, 11, 25, 21, 0, i, tzinfo=UTC)), "info", text,
                    {"raw": text}, org="a", host="local", service="kong", container="sfp-a-kong")
           for i, (text, _) in enumerate(CASES)]
    return [m.event(e) for e in evs]


@pytest.mark.parametrize("color", [False, True])
def test_terminal_output_is_masked(color: bool) -> None:
    out = io.StringIO()
    write_terminal(_events(), out, color=color)
    text = out.getvalue()
    assert len([ln for ln in text.splitlines() if ln.strip()]) == len(CASES)
    for _, secret in CASES:
        assert secret not in text
    if color:
        assert "\x1b[" in text  # each service in its colour
    else:
        assert text.splitlines()[0].startswith("2026-11-25T21:00:00.000Z kong      info  token ***")


def test_json_output_is_masked() -> None:
    out = io.StringIO()
    write_json(_events(), out)
    for line in out.getvalue().splitlines():
        obj = json.loads(line)
        assert set(obj) == {"time", "org", "host", "service", "container", "level", "message", "fields"}
    for _, secret in CASES:
        assert secret not in out.getvalue()


# ---------------------------------------------------------------- time specs

NOW = datetime(2026, 11, 25, 21, 30, 0, tzinfo=UTC)


def ns(*a: int, tz: object = UTC) -> int:
    return ns_from_datetime(datetime(*a, tzinfo=tz))  # type: ignore[arg-type]


@pytest.mark.parametrize(("spec", "expected"), [
    ("15m", ns(2026, 11, 25, 21, 15)), ("2h", ns(2026, 11, 25, 19, 30)), ("1d", ns(2026, 11, 24, 21, 30)),
    ("90s", ns(2026, 11, 25, 21, 28, 30)), ("1w", ns(2026, 11, 18, 21, 30)),
    ("2026-11-25T20:00:00Z", ns(2026, 11, 25, 20)), ("2026-11-25T20:00:00+02:00", ns(2026, 11, 25, 18)),
    ("2026-11-25 20:00:00.250Z", ns(2026, 11, 25, 20) + 250_000_000),
])
def test_time_specs_utc(spec: str, expected: int) -> None:
    assert parse_time_spec(spec, now=NOW) == expected


@pytest.fixture
def tz_tokyo() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_naive_times_are_local_zone(tz_tokyo: None) -> None:
    # 06:00 in Tokyo (UTC+9) is 21:00 UTC the day before
    assert parse_time_spec("2026-11-26 06:00") == ns(2026, 11, 25, 21)
    assert parse_time_spec("2026-11-26T06:00:00") == ns(2026, 11, 25, 21)
    # 'Z' and offsets are honoured whatever the local zone
    assert parse_time_spec("2026-11-26T06:00:00Z") == ns(2026, 11, 26, 6)
    assert parse_time_spec("2026-11-26T06:00:00-05:00") == ns(2026, 11, 26, 11)
    # durations do not depend on the zone
    assert parse_time_spec("1h", now=NOW) == ns(2026, 11, 25, 20, 30)


def test_explicit_zone_and_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert parse_time_spec("2026-07-01 12:00", tz=berlin) == ns(2026, 7, 1, 10)  # CEST
    assert parse_time_spec("2026-12-01 12:00", tz=berlin) == ns(2026, 12, 1, 11)  # CET


def test_bad_time_spec_is_an_sfp_error() -> None:
    with pytest.raises(SfpError) as exc:
        parse_time_spec("yesterday-ish")
    assert exc.value.hint and "15m" in exc.value.hint


def test_nanosecond_times_are_exact() -> None:
    assert parse_time_spec("2026-11-25T21:00:00.123456789Z") == ns(2026, 11, 25, 21) + 123_456_789
    assert parse_time_spec("2026-11-25T22:00:00.123456789+01:00") == ns(2026, 11, 25, 21) + 123_456_789
