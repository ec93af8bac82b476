"""The backup schedule as `sfp-server validate` reads it: cron's grammar over cronsim.

What a field means (names, ranges, steps, lists, and cron's rule that with both day-of-month and
day-of-week restricted a day matches when EITHER does, unless one of them starts with `*`) is
cronsim's, the maintained evaluator healthchecks.io uses to predict when a cron job runs, which
follows Debian cron. This module adds only the grammar cron and systemd share (cronsim's extensions
such as L, W, # and a seconds field are refused) and the conversion to systemd's OnCalendar (one
expression, or two for the day OR rule: a timer fires at the union of its OnCalendar lines).

roles/backup/filter_plugins/sfp_backup.py reads schedules the same way for the role, which must work
from plain ansible-playbook with no toolkit installed, so it cannot import this module: both are
written over cronsim, and tests/unit/test_schedule.py holds them to the same answers (accepted or
refused with the same message, the same cron line and OnCalendar lines, the same fire times).
Schedules carry no time zone: cron and the timer both run them in the host's local time.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

from cronsim import CronSim, CronSimError

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
LIMITS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
NAMES: tuple[dict[str, int], ...] = (
    {}, {}, {},
    {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))},
    {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
)
MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
# systemd's week starts on Monday: index 0 is Monday, so `fri-sun` stays the range Fri..Sun.
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_VALUE = r"(?:[0-9]{1,2}|[a-z]{3})"
# The items every cron reads alike. Not accepted: a step after a single value (`5/10`: cronsim
# reads "5, 15, ... 55", classic vixie cron "5" alone), and cronsim's extensions (L, W, #, ?, a
# sixth field for seconds), which Debian's cron does not read.
_ITEM = re.compile(rf"(?:\*|{_VALUE}-{_VALUE})(?:/[0-9]{{1,2}})?|{_VALUE}")
_ANY_TIME = datetime(2000, 1, 1)
MAX_LENGTH = 200


class ScheduleError(ValueError):
    """The schedule is not one both schedulers read the same way; the message says why."""


class Schedule(NamedTuple):
    fields: tuple[str, ...]
    """The five fields, lower case, macros expanded: exactly what the cron file gets."""
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 = Sunday (cron's 7 folded into 0)."""
    day_or: bool
    """Both day fields restricted and neither starts with `*`: a day matches when either does."""

    @property
    def cron(self) -> str:
        return " ".join(self.fields)


def _fields(expression: Any) -> tuple[str, ...]:
    if not isinstance(expression, str):
        raise ScheduleError(f"must be a string, not {type(expression).__name__}")
    if len(expression) > MAX_LENGTH:
        raise ScheduleError(f"is longer than {MAX_LENGTH} characters")
    if re.search(r"[^\t -~]", expression):
        raise ScheduleError("must be one line of printable ASCII (fields separated by spaces)")
    text = expression.strip().lower()
    if text == "@reboot":
        raise ScheduleError("@reboot runs once at boot, not on a schedule, and a systemd timer has no such time")
    if text.startswith("@"):
        if text not in MACROS:
            raise ScheduleError(f"unknown macro {text!r}; one of {', '.join(MACROS)}")
        text = MACROS[text]
    parts = tuple(text.split())
    if len(parts) != len(FIELDS):
        raise ScheduleError(f"needs {len(FIELDS)} fields (minute hour day-of-month month day-of-week), got {len(parts)}")
    return parts


def _item_problem(index: int, item: str) -> str | None:
    """What is wrong with one item of a field that has the grammar's shape, in the operator's terms."""
    if not _ITEM.fullmatch(item):
        hint = " (a step needs * or a range: write a-b/n)" if re.fullmatch(rf"{_VALUE}/[0-9]+", item) else ""
        return f"cannot read {item!r}{hint}"
    base, _, step = item.partition("/")
    if step and int(step) == 0:
        return f"{item!r} steps by 0"
    if base == "*":
        return None
    low, high = LIMITS[index]
    bounds = []
    for value in base.split("-"):
        number = int(value) if value.isdigit() else NAMES[index].get(value)
        if number is None:
            names = f" or a name ({', '.join(NAMES[index])})" if NAMES[index] else ""
            return f"{value!r} is not a number{names}"
        if not low <= number <= high:
            return f"{number} is outside {low}-{high}"
        bounds.append(number)
    if len(bounds) == 2 and bounds[0] > bounds[1]:
        return f"range {base!r} runs backwards"
    return None


def _check_field(index: int, token: str) -> None:
    name = FIELDS[index]
    for item in token.split(","):
        problem = _item_problem(index, item)
        if problem:
            raise ScheduleError(f"{name}: {problem}")
    # cronsim has the last word on what a field means: the other fields as `*` name the culprit.
    probe = ["*"] * len(FIELDS)
    probe[index] = token
    try:
        CronSim(" ".join(probe), _ANY_TIME)
    except CronSimError as exc:
        raise ScheduleError(f"{name}: cannot read {token!r} ({exc})") from None


def parse_schedule(expression: Any) -> Schedule:
    """The schedule `expression` means, or ScheduleError saying what is wrong with it."""
    parts = _fields(expression)
    for index, token in enumerate(parts):
        _check_field(index, token)
    cron = " ".join(parts)
    try:
        sim = CronSim(cron, _ANY_TIME)
        next(sim)  # cronsim gives up after 50 years without a match
    except (CronSimError, StopIteration):
        raise ScheduleError(f"{cron!r} never fires (no month has that day)") from None
    return Schedule(
        fields=parts,
        minutes=frozenset(sim.minutes), hours=frozenset(sim.hours), days=frozenset(sim.days),
        months=frozenset(sim.months), weekdays=frozenset(d % 7 for d in sim.weekdays if isinstance(d, int)),  # no `#`: refused above
        day_or=not sim.day_and,
    )


def _runs(values: frozenset[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in sorted(values):
        if runs and runs[-1][1] == v - 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _component(values: frozenset[int], low: int, high: int, name: Any = "{:02d}".format) -> str:
    """systemd's form of one field: `*`, or values and `a..b` ranges. Cron's steps are already
    expanded by cronsim, so every step (`*/15`, `0-6/2`) is a plain list here."""
    if values >= frozenset(range(low, high + 1)):
        return "*"
    out = []
    for a, b in _runs(values):
        if b - a >= 2:
            out.append(f"{name(a)}..{name(b)}")
        else:
            out.extend(name(v) for v in range(a, b + 1))
    return ",".join(out)


def calendar_specs(schedule: Schedule) -> list[str]:
    """The OnCalendar expressions (systemd.time(7)) that fire exactly when cron would."""
    time = f"{_component(schedule.hours, 0, 23)}:{_component(schedule.minutes, 0, 59)}:00"
    month = _component(schedule.months, 1, 12)
    days = _component(schedule.days, 1, 31)
    weekdays = _component(frozenset((d - 1) % 7 for d in schedule.weekdays), 0, 6, _DAY_NAMES.__getitem__)
    prefix = "" if weekdays == "*" else weekdays + " "
    if schedule.day_or:
        # systemd requires weekday AND day; cron fires on either: one expression for each.
        return [f"*-{month}-{days} {time}", f"{prefix}*-{month}-* {time}"]
    return [f"{prefix}*-{month}-{days} {time}"]


def cron_problem(expression: Any) -> str | None:
    """None if `expression` is a schedule cron and systemd read alike, else what is wrong with it."""
    try:
        parse_schedule(expression)
    except ScheduleError as exc:
        return str(exc)
    return None


def on_calendar(expression: Any) -> list[str]:
    """The systemd OnCalendar expressions that fire when cron would run `expression`:
    '17 3 * * *' -> ['*-*-* 03:17:00']; '0 0-6/2 * * mon-fri' -> ['Mon..Fri *-*-* 00,02,04,06:00:00']."""
    return calendar_specs(parse_schedule(expression))


def cron_schedule(expression: Any) -> str:
    """The five normalised fields the cron file gets (macros expanded)."""
    return parse_schedule(expression).cron
