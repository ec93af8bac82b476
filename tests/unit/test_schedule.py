"""A backup schedule means one thing: what the CLI accepts, cron runs and the systemd timer fires alike.

The timer's fire times come from systemd itself (`systemd-analyze calendar`, no running systemd
needed), cron's from cronsim; over a year (June 2027 to June 2028, so 29 February is in it) they
must be the same instants, for every schedule of the corpus. The CLI (installer/backup/cron.py) and
the role's filter plugin each read schedules over cronsim on their own: they must give the same
answers, cron lines, OnCalendar lines and fire times, across a daylight-saving change too.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
from datetime import UTC, datetime
from types import ModuleType
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from installer.backup import generate_recovery_key, parse_settings
from installer.backup.cron import cron_problem, cron_schedule, on_calendar
from installer.errors import ConfigError
from tests.conftest import REPO

START = datetime(2027, 5, 31, 23, 59, 30, tzinfo=UTC)
END = datetime(2028, 6, 1, tzinfo=UTC)

CORPUS = [
    "17 3 * * *", "0 0-6/2 * * *", "0 3 * * mon-fri", "@daily", "@hourly", "@weekly", "@monthly", "@yearly",
    "*/15 * * * *", "30 4 1,15 * *", "0 12 * jan-mar sun", "5 */4 * * 1-5", "0 0 29 2 *", "0 4 * * 7",
    "0 0 * * 5-7", "10-40/15 22-23,0-2 * * sat,sun", "0 0 31 * *", "45 23 28-31 2 *", "0 6 1 jan,jul *",
    "0 0 1-7 * MON-fri/2",
    # Both day fields restricted: cron fires when EITHER matches (the timer gets two OnCalendar lines) ...
    "0 0 13 * fri", "0 0-6/2 1,15 jan-mar mon-fri", "20 5 1 * 0",
    # ... unless one of them starts with `*`: then both must match, as in systemd.
    "0 0 */2 * mon", "0 1 1-31 * *",
]

REFUSED = {
    "0 3 * * * root touch /tmp/x #": "needs 5 fields",       # a second command in the root cron line
    "0 3 * * *\n* * * * * root id": "one line",               # a second cron line
    "@reboot": "@reboot runs once at boot",
    "@sometimes": "unknown macro",
    "0 0 * * * *": "needs 5 fields",                         # cronsim's seconds field: no cron reads it
    "5/10 * * * *": "a step needs * or a range",             # cronie and vixie cron read it differently
    "0 0 L * *": "day-of-month: cannot read",                # cronsim extensions cron does not have
    "0 0 * * 5#2": "day-of-week: cannot read",
    "0 0 ? * *": "day-of-month: cannot read",
    "0 24 * * *": "hour: 24 is outside 0-23",
    "0 0 0 * *": "day-of-month: 0 is outside 1-31",
    "0 0 * 13 *": "month: 13 is outside 1-12",
    "0 0 * foo *": "month: 'foo' is not a number or a name (jan,",
    "0 mon * * *": "hour: 'mon' is not a number",
    "5-1 * * * *": "minute: range '5-1' runs backwards",
    "*/0 * * * *": "minute: '*/0' steps by 0",
    "0 0 * * fri-sun": "day-of-week: range 'fri-sun' runs backwards",
    "0 0 * * funday": "day-of-week: cannot read",
    "0 0 30 2 *": "never fires",
    "": "needs 5 fields",
}

_ELAPSE = re.compile(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$", re.M)


def cron_times(expression: str) -> list[datetime]:
    out = []
    for t in CronSim(cron_schedule(expression), START):
        if t >= END:
            return out
        out.append(t)
    return out


def timer_times(specs: list[str], count: int) -> list[datetime]:
    """Every elapse systemd computes for the OnCalendar lines between START and END (a timer fires at their union)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: install the Debian package systemd (scripts/bootstrap does)")
    done = subprocess.run([tool, "calendar", f"--iterations={count + 1}", f"--base-time={START:%Y-%m-%d %H:%M:%S} UTC", *specs],
                          capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, timeout=120)
    assert done.returncode == 0, done.stderr
    times = {datetime.strptime(m, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) for m in _ELAPSE.findall(done.stdout)}
    return sorted(t for t in times if t < END)


@pytest.mark.parametrize("expression", CORPUS)
def test_timer_fires_when_cron_would_for_a_year(expression: str) -> None:
    assert cron_problem(expression) is None
    expected = cron_times(expression)
    assert expected, f"{expression} should fire within the year"
    specs = on_calendar(expression)
    assert timer_times(specs, len(expected)) == expected, specs


def test_steps_over_a_range_stay_in_the_range() -> None:
    # The converter used to write `0 0-6/2` as every two hours all day; systemd now says 0, 2, 4, 6.
    times = timer_times(on_calendar("0 0-6/2 * * *"), 10)
    assert {t.hour for t in times} == {0, 2, 4, 6}


def test_either_day_field_fires_as_cron_does() -> None:
    specs = on_calendar("0 0 13 * fri")
    assert len(specs) == 2
    times = timer_times(specs, 200)
    assert datetime(2027, 6, 13, tzinfo=UTC) in times          # a Sunday the 13th
    assert datetime(2027, 6, 4, tzinfo=UTC) in times           # a Friday the 4th
    assert datetime(2027, 6, 5, tzinfo=UTC) not in times


@pytest.mark.parametrize("expression, why", sorted(REFUSED.items()))
def test_refused_schedules_say_why(expression: str, why: str) -> None:
    problem = cron_problem(expression)
    assert problem is not None and why in problem, problem


def test_cron_line_gets_only_the_normalised_fields() -> None:
    assert cron_schedule("  0   3 * *\tMON-fri ") == "0 3 * * mon-fri"
    assert cron_schedule("@daily") == "0 0 * * *"
    assert cron_problem(17) == "must be a string, not int"


def test_settings_name_the_schedule_field() -> None:
    data = {"store": {"bucket": "sfp-backups", "credentials": {"source": "instance"}},
            "recipient": generate_recovery_key()[1], "schedule": "0 3 * * * root touch /tmp/x #"}
    with pytest.raises(ConfigError) as info:
        parse_settings(data, source="host_vars/acme: sfp_org.backup")
    found = [str(p) for p in info.value.problems]
    assert any("sfp_org.backup.schedule" in p and "needs 5 fields" in p for p in found), found
    assert parse_settings({**data, "schedule": "@weekly"}).schedule == "@weekly"


def role_filters() -> ModuleType:
    """The role's filter plugin as Ansible loads it: a file of its own, importing nothing of installer."""
    path = REPO / "roles" / "backup" / "filter_plugins" / "sfp_backup.py"
    spec = importlib.util.spec_from_file_location("sfp_backup_filters_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Beyond the corpus: shapes the two grammars could read apart (case, spacing, names, 7 as Sunday,
# steps, macros spelled differently, hours a daylight-saving change skips or repeats).
AGREEMENT = [*CORPUS, *REFUSED, "0 0 * * SUN", "  */5  *  *  *  * ", "@ANNUALLY", "@midnight", "0 0 * * 0,7",
             "30 2 * * *", "30 1 * * *", "0 2-3 * * *", "0 0 1 1 mon", "1-59/58 * * * *", "0 0 * * 1-7/3",
             "59 23 31 dec *", "0 0 * * 8", "0 0 1,2,3 * *", "0 0 * * sun-sat", "0 12 * */3 *", "0 0 * *",
             "0 0 * * mon,", "* * * * * *", "\t0 0 * * *", "0 0 * * \u00e9", None, 3.5]

# Europe/Berlin changes its clocks on 31 October 2027 (03:00 → 02:00) and 26 March 2028 (02:00 → 03:00).
ZONES = [UTC, ZoneInfo("Europe/Berlin")]


def fire_times(cron: str, start: datetime, count: int = 60) -> list[datetime]:
    out = []
    for t in CronSim(cron, start):
        out.append(t)
        if len(out) == count:
            break
    return out


@pytest.mark.parametrize("expression", AGREEMENT, ids=repr)
def test_role_filter_and_cli_read_a_schedule_alike(expression: object) -> None:
    role = role_filters()
    problem = cron_problem(expression)
    assert (role.schedule_problem(expression) or None) == problem
    if problem is not None:
        return
    assert role.cron_schedule(expression) == cron_schedule(expression)
    assert role.on_calendar(expression) == on_calendar(expression)
    for zone in ZONES:
        for start in (datetime(2027, 10, 30, 12, tzinfo=zone), datetime(2028, 3, 25, 12, tzinfo=zone)):
            theirs, ours = fire_times(role.cron_schedule(expression), start), fire_times(cron_schedule(expression), start)
            assert theirs == ours and ours, (zone, start)


def test_the_role_filter_stands_alone() -> None:
    """No import of installer and no loading by path: it runs where only cronsim is installed."""
    text = (REPO / "roles" / "backup" / "filter_plugins" / "sfp_backup.py").read_text()
    assert "installer" not in re.sub(r'""".*?"""', "", text, flags=re.S)
    assert "spec_from_file_location" not in text and "sys.path" not in text
    cron_module = (REPO / "installer" / "backup" / "cron.py").read_text()
    assert "filter_plugins" not in re.sub(r'""".*?"""', "", cron_module, flags=re.S)
    assert "spec_from_file_location" not in cron_module


@pytest.mark.parametrize("path", ["/opt/sfp/bin/python3", "/srv/my orgs/acme/backup.json", '/srv/a"b\\c', "/srv/100%/x"])
def test_a_unit_word_is_one_argument_whatever_the_path_holds(path: str) -> None:
    """ExecStart= splits on spaces and reads double quotes and backslashes as a shell's double quotes
    do (shlex stands in for it), and expands %-specifiers: the path comes back as one argument."""
    word = role_filters().systemd_word(path)
    assert shlex.split(word) == [path.replace("%", "%%")]


def test_a_unit_word_refuses_a_line_break() -> None:
    filters = role_filters()
    with pytest.raises(filters.ScheduleError, match="control character"):
        filters.systemd_word("/srv/x\nExecStartPost=/bin/sh")
