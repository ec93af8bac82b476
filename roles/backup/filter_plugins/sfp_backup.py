"""The backup schedule as roles/backup reads it: one cron grammar for the cron file and the systemd timer.

A schedule the role installs fires at the same times whichever scheduler runs it: both go through
`parse_schedule` here. What a field means (names, ranges, steps, lists, and cron's rule that with
both day-of-month and day-of-week restricted a day matches when EITHER does, unless one of them
starts with `*`) is cronsim's: the evaluator healthchecks.io uses to predict when a cron job runs,
which follows Debian cron. This file adds only the grammar both schedulers share and the conversion
of cronsim's expanded fields to systemd's OnCalendar (one expression, or two for the day OR rule:
a timer fires at the union of its OnCalendar lines).

The role works from plain ansible-playbook with no toolkit on the controller (only cronsim), so this
file imports nothing of the toolkit; installer/backup/cron.py reads schedules for `sfp-server
validate` over the same library, and tests/unit/test_schedule.py holds the two to the same answers.
No Ansible import at module level, so tests can import it as a plain module.
"""

from __future__ import annotations

import re
import shlex
from datetime import datetime
from typing import Any, NamedTuple

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


class MissingLibrary(RuntimeError):
    """cronsim is not importable by the Python that runs this code."""


def _cronsim() -> Any:
    # Imported on use: a controller without it gets this message instead of an unknown filter.
    try:
        import cronsim
    except ImportError:
        raise MissingLibrary("the backup schedule is read with the Python package cronsim, which the Python running "
                             "Ansible lacks: install sfp-server there (it depends on cronsim), or `pip install cronsim`") from None
    return cronsim


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
    cronsim = _cronsim()
    try:
        cronsim.CronSim(" ".join(probe), _ANY_TIME)
    except cronsim.CronSimError as exc:
        raise ScheduleError(f"{name}: cannot read {token!r} ({exc})") from None


def parse_schedule(expression: Any) -> Schedule:
    """The schedule `expression` means, or ScheduleError saying what is wrong with it."""
    parts = _fields(expression)
    for index, token in enumerate(parts):
        _check_field(index, token)
    cron = " ".join(parts)
    cronsim = _cronsim()
    try:
        sim = cronsim.CronSim(cron, _ANY_TIME)
        next(sim)  # cronsim gives up after 50 years without a match
    except (cronsim.CronSimError, StopIteration):
        raise ScheduleError(f"{cron!r} never fires (no month has that day)") from None
    return Schedule(
        fields=parts,
        minutes=frozenset(sim.minutes), hours=frozenset(sim.hours), days=frozenset(sim.days),
        months=frozenset(sim.months), weekdays=frozenset(int(d) % 7 for d in sim.weekdays),
        day_or=not sim.day_and,
    )


def schedule_problem(expression: Any) -> str:
    """'' if `expression` is a schedule both schedulers read the same way, else what is wrong."""
    try:
        parse_schedule(expression)
    except ScheduleError as exc:
        return str(exc)
    return ""


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


def on_calendar(expression: Any) -> list[str]:
    """'17 3 * * *' -> ['*-*-* 03:17:00']; '0 0-6/2 * * mon-fri' -> ['Mon..Fri *-*-* 00,02,04,06:00:00']."""
    return calendar_specs(parse_schedule(expression))


def cron_schedule(expression: Any) -> str:
    """The five fields for the cron.d line, normalised: nothing but the validated fields can get there."""
    return parse_schedule(expression).cron


def cron_word(value: Any) -> str:
    """One word of the cron.d command: shell-quoted, `%` escaped (cron turns a bare one into a
    newline), and never a line break (it would start a new crontab line)."""
    text = str(value)
    if re.search(r"[\x00-\x1f\x7f]", text):
        raise ScheduleError(f"{text!r} has a control character and cannot go into a cron line")
    return shlex.quote(text).replace("%", "\\%")


def systemd_word(value: Any) -> str:
    """One word of a unit's ExecStart=: double-quoted (systemd splits on spaces, not a shell),
    backslash and quote escaped, `%` doubled (systemd expands %-specifiers), never a line break."""
    text = str(value)
    if re.search(r"[\x00-\x1f\x7f]", text):
        raise ScheduleError(f"{text!r} has a control character and cannot go into a systemd unit")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def _ansible(function: Any) -> Any:
    """`function` with its errors reported as Ansible reports a filter's error."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (ScheduleError, MissingLibrary) as exc:
            from ansible.errors import AnsibleFilterError

            raise AnsibleFilterError(f"backup schedule {args[0]!r}: {exc}") from None

    return wrapped


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "sfp_backup_schedule_problem": _ansible(schedule_problem),
            "sfp_backup_on_calendar": _ansible(on_calendar),
            "sfp_backup_cron": _ansible(cron_schedule),
            "sfp_backup_cron_word": _ansible(cron_word),
            "sfp_backup_systemd_word": _ansible(systemd_word),
        }
