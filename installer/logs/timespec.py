"""--since/--until values: durations back from now (`90s`, `15m`, `2h`, `1d`, `1w`) or ISO 8601 times.

A time with `Z` or an offset means exactly that instant; a naive one (`2026-11-25 21:00`) means the
operator's local time zone (the `TZ` of the process, or the `tz` passed in).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, tzinfo

from installer.errors import SfpError

from .event import ns_from_datetime

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_FRACTION = re.compile(r"^(.*?[T ]\d\d:\d\d:\d\d)\.(\d+)(.*)$")
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time_spec(value: str | datetime, *, now: datetime | None = None, tz: tzinfo | None = None) -> int:
    """Epoch nanoseconds of a --since/--until value. Raises SfpError for a value that is neither form."""
    if isinstance(value, datetime):
        dt = value
    else:
        m = _DURATION.match(value)
        if m:
            seconds = float(m.group(1)) * _UNITS[m.group(2).lower()]
            base = now or datetime.now(UTC)
            return ns_from_datetime(base - timedelta(seconds=seconds))
        text = value.strip()
        if text.endswith(("z", "Z")):
            text = text[:-1] + "+00:00"
        # datetime keeps microseconds; Docker's times have nanoseconds: keep the rest aside.
        extra_ns = 0
        frac = _FRACTION.match(text)
        if frac and len(frac.group(2)) > 6:
            digits = frac.group(2)
            extra_ns = int(digits[6:9].ljust(3, "0"))
            text = f"{frac.group(1)}.{digits[:6]}{frac.group(3)}"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise SfpError(
                f"cannot read the time {value!r}",
                "give a duration back from now such as 15m, 2h or 1d, or an ISO 8601 time such as "
                "2026-11-25T21:00:00Z (a time without Z or offset is in your local time zone)",
            ) from None
        if dt.tzinfo is None:
            dt = _localize(dt, tz)
        return ns_from_datetime(dt) + extra_ns
    if dt.tzinfo is None:
        dt = _localize(dt, tz)
    return ns_from_datetime(dt)


def _localize(dt: datetime, tz: tzinfo | None) -> datetime:
    if tz is not None:
        return dt.replace(tzinfo=tz)
    time.tzset()
    return dt.astimezone()  # naive -> the process's local zone
