"""Validation of a five-field cron expression (the schedule a systemd timer or cron job gets).

Written here because it is a few lines and no cron library is a dependency: it checks the
syntax and ranges cron(5) accepts, so a typo is caught at validation time, not at 3 a.m.
"""

from __future__ import annotations

import re

MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, low, high, names mapped to numbers)
FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(_DAYS)}),
)
_ITEM = re.compile(r"^(?P<range>\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?$")


def _value(token: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    if token.isdigit():
        number = int(token)
    elif token in names:
        number = names[token]
    else:
        raise ValueError(f"{name}: {token!r} is not a number" + (f" or a name ({', '.join(names)})" if names else ""))
    if not low <= number <= high:
        raise ValueError(f"{name}: {number} is outside {low}-{high}")
    return number


def cron_problem(expression: str) -> str | None:
    """None if `expression` is a valid cron schedule, else what is wrong with it."""
    text = expression.strip().lower()
    if text.startswith("@"):
        return None if text in MACROS else f"unknown macro {expression!r} (one of: {', '.join(sorted(MACROS))})"
    parts = text.split()
    if len(parts) != 5:
        return f"needs 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
    for part, (name, low, high, names) in zip(parts, FIELDS, strict=True):
        for item in part.split(","):
            match = _ITEM.match(item)
            if not match:
                return f"{name}: cannot read {item!r}"
            try:
                if match["range"] != "*":
                    bounds = [_value(t, name, low, high, names) for t in match["range"].split("-")]
                    if len(bounds) == 2 and bounds[0] > bounds[1]:
                        return f"{name}: range {match['range']!r} runs backwards"
                if match["step"] is not None and int(match["step"]) == 0:
                    return f"{name}: step 0 is not allowed"
            except ValueError as exc:
                return str(exc)
    return None
