"""One parser per upstream log format, all producing (level, message, fields, own time).

Formats (see tests/logs/samples/ for recorded upstream lines and where each came from):

- logrus JSON (auth/GoTrue), pino JSON (storage, meta; numeric 10..60 or label levels);
- PostgreSQL stderr with the supabase/postgres `log_line_prefix = '%h %m [%p] %q%u@%d '` (and the
  same without `%h `), whose DETAIL/HINT/STATEMENT/CONTEXT/QUERY lines and prefix-less continuation
  lines are joined into the entry they belong to;
- nginx "combined"-style access lines (Kong 3.x `kong_log_format` with `kong_request_id`, PostgREST's
  access log) levelled by HTTP status, and nginx error lines (`2026/11/25 21:00:00 [warn] 1#0: ...`);
- PostgREST stderr (`25/Jan/2025:17:25:09 +0000: message`);
- Elixir Logger (realtime, supavisor, analytics: `07:42:05.747 [info] msg`, `... region=local [warning] msg`);
- Go-style levelled text (imgproxy `INFO    [2024-11-01T01:14:22Z] msg k=v`, vector `...Z  WARN target: msg`).

A line no parser recognises becomes an `info` event whose message is the whole line: nothing is dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .event import LogEvent, json_head, ns_from_datetime, ns_from_rfc3339

# The fourth item is the entry's own time, unconverted (converter, raw value), or None: converting
# costs more than parsing and is needed only when Docker's timestamp is not there.
OwnTime = tuple[Callable[[Any], int | None], Any] | None
Parsed = tuple[str, str, dict[str, Any], OwnTime]
LineParser = Callable[[str], Parsed | None]

# ---------------------------------------------------------------- level mapping

_WORD_LEVELS: dict[str, str] = {
    "trace": "debug", "debug": "debug", "dbg": "debug",
    "info": "info", "information": "info", "notice": "info", "log": "info",
    "warn": "warn", "warning": "warn",
    "error": "error", "err": "error",
    "fatal": "fatal", "panic": "fatal", "crit": "fatal", "critical": "fatal", "alert": "fatal",
    "emerg": "fatal", "emergency": "fatal",
}

_PG_LEVELS: dict[str, str] = {
    "DEBUG1": "debug", "DEBUG2": "debug", "DEBUG3": "debug", "DEBUG4": "debug", "DEBUG5": "debug",
    "LOG": "info", "INFO": "info", "NOTICE": "info", "WARNING": "warn", "ERROR": "error",
    "FATAL": "fatal", "PANIC": "fatal",
}
_PG_ATTACHED = ("DETAIL", "HINT", "STATEMENT", "CONTEXT", "QUERY", "LOCATION")


def level_from_word(word: str) -> str:
    """logrus/Elixir/nginx/Go level names to ours; unknown words are `info`."""
    return _WORD_LEVELS.get(word.strip().lower(), "info")


def level_from_pino(value: Any) -> str:
    """pino numeric levels (10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal) or their labels."""
    if isinstance(value, bool):
        return "info"
    if isinstance(value, int | float):
        n = int(value)
        if n >= 60:
            return "fatal"
        if n >= 50:
            return "error"
        if n >= 40:
            return "warn"
        if n >= 30:
            return "info"
        return "debug"
    if isinstance(value, str):
        return level_from_pino(int(value)) if value.isdigit() else level_from_word(value)
    return "info"


def level_from_pg(severity: str) -> str:
    return _PG_LEVELS.get(severity, "info")


def level_from_status(status: int) -> str:
    """HTTP status of an access log line: 5xx error, 4xx warn, anything else info."""
    if status >= 500:
        return "error"
    if status >= 400:
        return "warn"
    return "info"


# ---------------------------------------------------------------- time helpers

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}


def _ns_from_clf(text: str) -> int | None:
    """`25/Jan/2025:17:25:09 +0000` (nginx $time_local, PostgREST) to epoch ns."""
    try:
        dt = datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z")
    except ValueError:
        return None
    return ns_from_datetime(dt)


def _ns_from_any(value: Any) -> int | None:
    """A JSON log's own time: epoch milliseconds (pino) or an ISO 8601 / RFC 3339 string (logrus)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        v = float(value)
        if v > 1e17:  # already ns
            return int(v)
        if v > 1e14:  # us
            return int(v * 1_000)
        if v > 1e11:  # ms
            return int(v * 1_000_000)
        return int(v * 1_000_000_000)
    if isinstance(value, str):
        ns = ns_from_rfc3339(value)
        if ns is not None:
            return ns
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return ns_from_datetime(dt)
    return None


def _ns_from_pg(text: str) -> int | None:
    """`2026-11-25 21:00:00.123 UTC` (PostgreSQL %m with log_timezone UTC)."""
    stamp, _, zone = text.rpartition(" ")
    if zone not in ("UTC", "GMT", "Z", "+00", "+0000"):
        return None
    try:
        dt = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
    except ValueError:
        return None
    return ns_from_datetime(dt)


# ---------------------------------------------------------------- parsers

_loads = json.loads


def parse_json(line: str) -> Parsed | None:
    """logrus (GoTrue) and pino (storage-api, postgres-meta) JSON lines."""
    if not line.startswith("{"):
        return None
    try:
        obj = _loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    # `fields` is the whole object as the service wrote it (its own level and msg included), so
    # the JSON output can reuse the line's text as is when there is nothing to mask.
    raw_level = obj.get("level")
    if raw_level is None:
        raw_level = obj.get("severity", obj.get("lvl"))
    level = level_from_pino(raw_level) if raw_level is not None else "info"
    msg = obj.get("msg")
    if msg is None:
        msg = obj.get("message")
    if msg is None:
        err = obj.get("error")
        if isinstance(err, dict):
            msg = err.get("message") or err.get("formattedError") or ""
        elif isinstance(err, str):
            msg = err
        else:
            msg = ""
    if not isinstance(msg, str):
        msg = json.dumps(msg, ensure_ascii=False)
    own = obj.get("time")
    if own is None:
        own = obj.get("timestamp")
    return level, msg, obj, (_ns_from_any, own) if own is not None else None


# nginx/Kong combined-style access log; Kong 3.x appends `kong_request_id: "<hex>"`. nginx writes a
# `"` inside a quoted field as \x22, so a quoted field never holds a bare quote.
_ACCESS = re.compile(
    r'^(\S+) - (\S+) \[([^\]]+)\] "([^"]*)" (\d{3}) (\S+)(?: "([^"]*)" "([^"]*)")?'
    r'(?: kong_request_id: "([^"]*)")?(.*)$'
)


def parse_access(line: str) -> Parsed | None:
    m = _ACCESS.match(line)
    if m is None:
        return None
    remote_addr, remote_user, time_local, request, status_s, size, referer, agent, kong_id, rest = m.groups()
    status = int(status_s)
    fields: dict[str, Any] = {"remote_addr": remote_addr, "remote_user": remote_user, "time_local": time_local,
                              "request": request, "status": status, "bytes": size}
    parts = request.split(" ")
    if len(parts) == 3:
        fields["method"], fields["path"], fields["protocol"] = parts
    if referer is not None:
        fields["referer"] = referer
        fields["user_agent"] = agent
    if kong_id is not None:
        fields["kong_request_id"] = kong_id
    if rest:
        rest = rest.strip()
        if rest:
            fields["extra"] = rest
    return level_from_status(status), f"{request} {status}", fields, (_ns_from_clf, time_local)


_NGINX_ERROR = re.compile(
    r"^(?:nginx: )?(?:(?P<date>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) )?\[(?P<level>debug|info|notice|warn|error|crit|alert|emerg)\] "
    r"(?:(?P<pid>\d+)#(?P<tid>\d+): )?(?:\*(?P<conn>\d+) )?(?P<msg>.*)$"
)


def parse_nginx_error(line: str) -> Parsed | None:
    m = _NGINX_ERROR.match(line)
    if m is None:
        return None
    fields: dict[str, Any] = {k: m.group(k) for k in ("date", "pid", "tid", "conn") if m.group(k)}
    own = (_ns_from_nginx, m.group("date")) if m.group("date") else None
    return level_from_word(m.group("level")), m.group("msg"), fields, own


def _ns_from_nginx(text: str) -> int | None:
    try:
        return ns_from_datetime(datetime.strptime(text, "%Y/%m/%d %H:%M:%S").replace(tzinfo=UTC))
    except ValueError:
        return None


_POSTGREST = re.compile(r"^(?P<t>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}): (?P<msg>.*)$")
_ERRORISH = re.compile(r"^(?:error|fatal|failed|could not|unable)\b", re.IGNORECASE)


def parse_postgrest(line: str) -> Parsed | None:
    m = _POSTGREST.match(line)
    if m is None:
        return None
    msg = m.group("msg")
    level = "error" if _ERRORISH.match(msg) else "info"
    return level, msg, {"time_local": m.group("t")}, (_ns_from_clf, m.group("t"))


_ELIXIR = re.compile(
    r"^(?P<t>\d\d:\d\d:\d\d\.\d{3}) (?P<meta>(?:[\w.]+=\S* )*)\[(?P<level>[a-z]+)\] ?(?P<msg>.*)$"
)


def parse_elixir(line: str) -> Parsed | None:
    m = _ELIXIR.match(line)
    if m is None:
        return None
    fields: dict[str, Any] = {"time_of_day": m.group("t")}
    meta = m.group("meta").strip()
    if meta:
        for pair in meta.split(" "):
            key, _, value = pair.partition("=")
            fields[key] = value
    return level_from_word(m.group("level")), m.group("msg"), fields, None


_PG = re.compile(
    r"^\s*(?:(?P<client>\S+) )?(?P<t>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [A-Za-z+\-0-9]+) \[(?P<pid>\d+)\] "
    r"(?:(?P<user>[^@\s]*)@(?P<db>\S*) )?"
    r"(?P<sev>DEBUG[1-5]|LOG|INFO|NOTICE|WARNING|ERROR|FATAL|PANIC|DETAIL|HINT|STATEMENT|CONTEXT|QUERY|LOCATION):  ?(?P<msg>.*)$"
)


def parse_pg_prefix(line: str) -> tuple[str, dict[str, Any], str, OwnTime] | None:
    """A prefixed PostgreSQL line: (severity, prefix fields, message, own time)."""
    m = _PG.match(line)
    if m is None:
        return None
    fields: dict[str, Any] = {"pid": int(m.group("pid")), "log_time": m.group("t")}
    if m.group("client"):
        fields["client"] = m.group("client")
    if m.group("user"):
        fields["user"] = m.group("user")
    if m.group("db"):
        fields["database"] = m.group("db")
    return m.group("sev"), fields, m.group("msg"), (_ns_from_pg, m.group("t"))


def parse_postgres(line: str) -> Parsed | None:
    """One PostgreSQL line on its own (no joining); `EventBuilder` does the joining."""
    got = parse_pg_prefix(line)
    if got is None:
        return None
    sev, fields, msg, own = got
    fields["severity"] = sev
    return level_from_pg(sev), msg, fields, own


_GO_TEXT = re.compile(
    r"^(?P<level>TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|PANIC)\s+\[(?P<t>[^\]]+)\] (?P<msg>.*)$"
)
_RUST_TEXT = re.compile(
    r"^(?P<t>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)\s+(?P<level>TRACE|DEBUG|INFO|WARN|ERROR)\s+(?P<msg>.*)$"
)


def parse_level_text(line: str) -> Parsed | None:
    """imgproxy (`INFO    [2024-11-01T01:14:22Z] msg k=v`) and vector (`<rfc3339>  WARN target: msg`)."""
    m = _GO_TEXT.match(line) or _RUST_TEXT.match(line)
    if m is None:
        return None
    return level_from_word(m.group("level")), m.group("msg"), {"own_time": m.group("t")}, (_ns_from_any, m.group("t"))


def parse_raw(line: str) -> Parsed:
    return "info", line, {}, None


_GENERIC: tuple[LineParser, ...] = (
    parse_json, parse_postgres, parse_access, parse_elixir, parse_postgrest, parse_nginx_error, parse_level_text,
)

SERVICE_PARSERS: dict[str, tuple[LineParser, ...]] = {
    "auth": (parse_json, parse_level_text),
    "storage": (parse_json,),
    "meta": (parse_json,),
    "functions": (parse_json, parse_level_text),
    "kong": (parse_access, parse_nginx_error, parse_json),
    "rest": (parse_access, parse_postgrest, parse_json),
    "realtime": (parse_elixir, parse_json),
    "supavisor": (parse_elixir, parse_json),
    "analytics": (parse_elixir, parse_json),
    "imgproxy": (parse_level_text, parse_json),
    "vector": (parse_level_text, parse_json),
    "db": (parse_postgres,),
    "studio": (parse_json, parse_level_text),
}

# Services whose entries span several lines: PostgreSQL (statements, DETAIL/HINT/...), Elixir (stack traces).
MULTILINE_SERVICES = frozenset({"db", "realtime", "supavisor", "analytics"})
MAX_JOINED_LINES = 500
MAX_JOINED_CHARS = 256 * 1024


def parsers_for(service: str) -> tuple[LineParser, ...]:
    return SERVICE_PARSERS.get(service, _GENERIC)


def parse_line(service: str, line: str) -> Parsed:
    """Parse one line of `service` on its own; never fails (unparsed lines are `info`, whole)."""
    for parser in parsers_for(service):
        got = parser(line)
        if got is not None:
            return got
    return parse_raw(line)


class EventBuilder:
    """Turns one container's lines, in order, into events; joins multi-line entries.

    `feed` returns the event that is complete (if any) and keeps at most one entry pending; `flush`
    returns the pending one (call it at the end of the stream, or when the stream has been idle).
    """

    def __init__(self, service: str, *, org: str = "", host: str = "", container: str = "") -> None:
        self.service = service
        self.org = org
        self.host = host
        self.container = container
        self.parsers = parsers_for(service)
        self._json_head = json_head(org, host, service, container)
        self.multiline = service in MULTILINE_SERVICES
        self.is_pg = service == "db"
        self.pending: LogEvent | None = None
        self._last_attached: str | None = None
        self._joined = 0

    def _make(self, ts: int | None, level: str, msg: str, fields: dict[str, Any], own: OwnTime) -> LogEvent:
        t = ts if ts is not None else ((own[0](own[1]) if own is not None else None) or 0)
        ev = LogEvent(t, level, msg, fields, org=self.org, host=self.host, service=self.service,
                      container=self.container)
        ev.json_head = self._json_head
        return ev

    def feed(self, ts: int | None, line: str) -> LogEvent | None:
        if not self.multiline:
            for parser in self.parsers:
                got = parser(line)
                if got is not None:
                    ev = self._make(ts, *got)
                    if parser is parse_json:
                        ev.fields_json = line  # already the JSON of `fields`
                    return ev
            return self._make(ts, "info", line, {}, None)
        if self.is_pg:
            return self._feed_pg(ts, line)
        return self._feed_elixir(ts, line)

    def flush(self) -> LogEvent | None:
        ev, self.pending = self.pending, None
        self._last_attached = None
        self._joined = 0
        if ev is not None and ev.message.endswith(("\n", " ", "\t")):
            ev.message = ev.message.rstrip()
        return ev

    def _join(self, line: str) -> bool:
        """Append a continuation line to the pending entry, unless that entry is already huge (then
        the line starts an entry of its own, so memory stays bounded)."""
        pending = self.pending
        if pending is None or self._joined >= MAX_JOINED_LINES or len(pending.message) > MAX_JOINED_CHARS:
            return False
        pending.message += "\n" + line
        self._joined += 1
        return True

    def _feed_elixir(self, ts: int | None, line: str) -> LogEvent | None:
        # Elixir's Logger prints multi-line messages (queries, crash reports) without a prefix:
        # any line that does not start an entry belongs to the one before it.
        for parser in self.parsers:
            got = parser(line)
            if got is not None:
                break
        else:
            if self._join(line):
                return None
            got = ("info", line, {}, None)
        out = self.flush()
        self.pending = self._make(ts, *got)
        return out

    def _feed_pg(self, ts: int | None, line: str) -> LogEvent | None:
        got = parse_pg_prefix(line)
        pending = self.pending
        if got is None:
            if pending is not None and (line[:1] in ("\t", " ") or line == "") and self._join(line):
                # a continuation line of a multi-line statement or message
                if self._last_attached is not None:
                    key = self._last_attached
                    pending.fields[key] = f"{pending.fields[key]}\n{line}"
                return None
            out = self.flush()
            self.pending = self._make(ts, "info", line, {}, None)
            return out
        sev, fields, msg, own = got
        if sev in _PG_ATTACHED and pending is not None and pending.fields.get("pid") == fields["pid"] \
                and self._join(f"{sev}:  {msg}"):
            key = sev.lower()
            prev = pending.fields.get(key)
            pending.fields[key] = msg if prev is None else f"{prev}\n{msg}"
            self._last_attached = key
            return None
        out = self.flush()
        fields["severity"] = sev
        self.pending = self._make(ts, level_from_pg(sev), msg, fields, own)
        return out
