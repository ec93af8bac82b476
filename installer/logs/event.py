"""The one event every service's log line becomes, and the level scale shared by all services."""

from __future__ import annotations

import calendar
import json
from datetime import UTC, datetime, timedelta
from typing import Any

LEVELS: tuple[str, ...] = ("debug", "info", "warn", "error", "fatal")
LEVEL_RANK: dict[str, int] = {name: i for i, name in enumerate(LEVELS)}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND_CACHE: dict[str, int] = {}


def ns_from_rfc3339(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 UTC time such as Docker's
    `2026-11-25T21:00:00.123456789Z` (fixed or trimmed fraction); None if it is not one."""
    head = text[:19]
    sec = _SECOND_CACHE.get(head)
    if sec is not None and len(text) == 30 and text[19] == "." and text[29] == "Z":
        frac9 = text[20:29]
        if frac9.isdigit():  # Docker's fixed nine digits: the fast path
            return sec * 1_000_000_000 + int(frac9)
    if len(text) < 20 or text[4] != "-" or text[10] != "T" or text[-1] != "Z":
        return None
    if sec is None:
        try:
            dt = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            return None
        sec = calendar.timegm(dt.timetuple())
        if len(_SECOND_CACHE) > 100_000:
            _SECOND_CACHE.clear()
        _SECOND_CACHE[head] = sec
    frac = text[20:-1] if text[19] == "." else ""
    if frac and not frac.isdigit():
        return None
    return sec * 1_000_000_000 + (int(frac.ljust(9, "0")[:9]) if frac else 0)


def ns_from_datetime(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: attach a time zone first")
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def datetime_from_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1_000)


_PREFIX_CACHE: dict[int, str] = {}


def rfc3339_from_ns(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, e.g. 2026-11-25T21:00:00.123456789Z."""
    sec, frac = divmod(ns, 1_000_000_000)
    head = _PREFIX_CACHE.get(sec)
    if head is None:
        head = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        if len(_PREFIX_CACHE) > 100_000:
            _PREFIX_CACHE.clear()
        _PREFIX_CACHE[sec] = head
    return f"{head}.{frac:09d}Z"


_enc = json.encoder.encode_basestring  # type: ignore[attr-defined]  # the C encoder: "…" with escapes
_fields_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def json_head(org: str, host: str, service: str, container: str) -> str:
    return f',"org":{_enc(org)},"host":{_enc(host)},"service":{_enc(service)},"container":{_enc(container)}'


def dumps_fields(fields: dict[str, Any]) -> str:
    return _fields_encoder.encode(fields) if fields else "{}"


class LogEvent:
    """One log entry of one container. `time_ns` orders events; `time` is the same as a UTC datetime.

    The time is when the Docker engine received the line (its `--timestamps` value), so every line has
    one, each container's stream is in order, and --since/--until mean the same to us and to Docker;
    a service's own timestamp, where it writes one, stays in `fields` under the service's own key.
    """

    __slots__ = ("container", "fields", "fields_json", "host", "json_head", "level", "message", "org", "service",
                 "time_ns")

    def __init__(
        self,
        time_ns: int,
        level: str,
        message: str,
        fields: dict[str, Any] | None = None,
        *,
        org: str = "",
        host: str = "",
        service: str = "",
        container: str = "",
    ) -> None:
        self.time_ns = time_ns
        self.level = level
        self.message = message
        self.fields: dict[str, Any] = fields if fields is not None else {}
        self.fields_json: str | None = None  # `fields` as JSON, once serialised (and masked)
        self.json_head: str | None = None  # org..container as JSON, shared by a container's events
        self.org = org
        self.host = host
        self.service = service
        self.container = container

    @property
    def time(self) -> datetime:
        return datetime_from_ns(self.time_ns)

    @property
    def time_str(self) -> str:
        return rfc3339_from_ns(self.time_ns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time_str,
            "org": self.org,
            "host": self.host,
            "service": self.service,
            "container": self.container,
            "level": self.level,
            "message": self.message,
            "fields": self.fields,
        }

    def to_json(self) -> str:
        """One line of `--json` (keys in schema order, compact)."""
        fj = self.fields_json
        if fj is None:
            fj = self.fields_json = dumps_fields(self.fields)
        head = self.json_head
        if head is None:
            head = json_head(self.org, self.host, self.service, self.container)
        return f'{{"time":"{self.time_str}"{head},"level":"{self.level}","message":{_enc(self.message)},"fields":{fj}}}'

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogEvent:
        ns = ns_from_rfc3339(data["time"])
        if ns is None:
            raise ValueError(f"not an RFC 3339 UTC time: {data['time']!r}")
        return cls(ns, data["level"], data["message"], dict(data.get("fields") or {}), org=data["org"],
                   host=data["host"], service=data["service"], container=data["container"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LogEvent) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.time_ns, self.container, self.message))

    def __repr__(self) -> str:
        return f"LogEvent({self.time_str} {self.service} {self.level} {self.message[:60]!r})"
