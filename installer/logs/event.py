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
    if len(text) < 20 or text[4] != "-" or text[10] != "T" or text[-1] != "Z":
        return None
    head = text[:19]
    sec = _SECOND_CACHE.get(head)
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


def rfc3339_from_ns(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, e.g. 2026-11-25T21:00:00.123456789Z."""
    sec, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


class LogEvent:
    """One log entry of one container. `time_ns` orders events; `time` is the same as a UTC datetime.

    The time is when the Docker engine received the line (its `--timestamps` value), so every line has
    one, each container's stream is in order, and --since/--until mean the same to us and to Docker;
    a service's own timestamp, where it writes one, stays in `fields` under the service's own key.
    """

    __slots__ = ("container", "fields", "host", "level", "message", "org", "service", "time_ns")

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
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"), default=str)

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
