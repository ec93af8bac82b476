"""roles/backup reads a schedule as `sfp-server validate` does, with plain ansible-playbook too.

The role's filters run inside real Ansible here (its plugin loader, its templating), so these tests
prove what an operator without the CLI gets: the same accept/refuse answers, a refusal before
anything is written, a cron line that carries only the five fields and quoted words, and a timer
whose OnCalendar lines fire when cron would.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer.backup.cron import cron_problem, on_calendar
from tests.roles.test_roles_standalone import BIN, REPO, play, recap
from tests.unit.test_schedule import CORPUS, REFUSED, cron_times, timer_times

FILTERS = REPO / "roles" / "backup" / "filter_plugins"


def run_tasks(tmp_path: Path, tasks: list[dict[str, Any]], variables: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """A localhost play with the backup role's filters loaded, as Ansible loads them for the role."""
    playbook = tmp_path / "tasks.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "connection": "local", "gather_facts": False,
                                         "vars": {"ansible_python_interpreter": sys.executable, **variables},
                                         "tasks": tasks}]))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FILTER_PLUGINS": str(FILTERS),
           "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook)],
                          capture_output=True, text=True, env=env, timeout=300)


def role_vars(tmp_path: Path, schedule: str, org_dir: Path | None = None) -> dict[str, Any]:
    org_dir = org_dir or tmp_path / "orgs" / "bksc"
    return {
        "backup__org": "bksc", "backup__schedule": schedule, "backup__secrets": {},
        "backup__settings": {"store": {"bucket": "sfp-backups", "credentials": {"source": "instance"}}},
        "backup__org_dir": str(org_dir), "backup__container": "sfp-bksc-db", "backup__storage_dir": str(org_dir / "storage"),
        "backup__config_dir": str(org_dir / "backup"), "backup__config_file": str(org_dir / "backup" / "backup.json"),
        "backup__log_file": str(org_dir / "backup" / "backup.log"), "backup__metrics_dir": str(org_dir / "backup" / "metrics"),
        "backup__scheduler": "cron", "backup__cron_dir": str(tmp_path / "cron.d"), "backup__systemd_dir": str(tmp_path / "units"),
        "backup__python": sys.executable,
    }


def test_role_filter_and_cli_accept_and_refuse_the_same_schedules(tmp_path: Path) -> None:
    corpus = [*CORPUS, *REFUSED]
    out = tmp_path / "answers.json"
    done = run_tasks(tmp_path, [{"ansible.builtin.copy": {
        "dest": str(out),
        "content": "{{ {'problems': corpus | map('sfp_backup_schedule_problem') | list,"
                   " 'calendars': accepted | map('sfp_backup_on_calendar') | list} | to_json }}",
    }}], {"corpus": corpus, "accepted": CORPUS})
    assert done.returncode == 0, done.stdout
    answers = json.loads(out.read_text())
    assert [p or None for p in answers["problems"]] == [cron_problem(e) for e in corpus]
    assert all(answers["problems"][len(CORPUS):])  # every refused one refused by the role too
    assert answers["calendars"] == [on_calendar(e) for e in CORPUS]


# Five words were enough for the role before: "a b c d e" and "0 3 * * 5#2" became cron lines no cron reads.
@pytest.mark.parametrize("schedule", ["0 3 * * * root touch /tmp/x #", "@reboot", "0 3 * * *\n* * * * * root id",
                                      "a b c d e", "0 3 * * 5#2"])
def test_plain_role_refuses_a_hostile_schedule_before_writing_anything(tmp_path: Path, schedule: str) -> None:
    (tmp_path / "cron.d").mkdir()
    done = play(tmp_path, "backup", role_vars(tmp_path, schedule))
    assert done.returncode != 0
    assert "sfp_org.backup.schedule" in done.stdout and "backup__schedule" in done.stdout, done.stdout
    assert cron_problem(schedule) in " ".join(done.stdout.split())
    assert list((tmp_path / "cron.d").iterdir()) == []
    assert not (tmp_path / "orgs").exists()


def test_plain_role_writes_only_the_five_fields_and_quoted_words(tmp_path: Path) -> None:
    (tmp_path / "cron.d").mkdir()
    org_dir = tmp_path / "orgs 100%" / "bksc"  # a space and cron's `%` in every path of the command
    done = play(tmp_path, "backup", role_vars(tmp_path, "0 3 * *  MON-fri", org_dir))
    assert done.returncode == 0, done.stdout
    lines = [ln for ln in (tmp_path / "cron.d" / "sfp-backup-bksc").read_text().splitlines()
             if ln and not ln.startswith("#") and "=" not in ln.split()[0]]
    assert len(lines) == 1 and lines[0].startswith("0 3 * * mon-fri root flock -n "), lines
    # cron turns `\%` into `%` before /bin/sh reads the command; the shell's words are the paths.
    words = shlex.split(lines[0].replace("\\%", "%"))
    backup = org_dir / "backup"
    assert words == ["0", "3", "*", "*", "mon-fri", "root", "flock", "-n", f"{backup}/.lock", sys.executable,
                     "-m", "installer.backup_job", "--config", str(backup / "backup.json"), f">>{backup / 'backup.log'}", "2>&1"]


def test_timer_template_fires_when_cron_would(tmp_path: Path) -> None:
    schedule = "0 0-6/2 1,15 jan-mar mon-fri"  # steps over a range, names, and cron's day OR rule
    unit = tmp_path / "sfp-backup-bksc.timer"
    done = run_tasks(tmp_path, [{"ansible.builtin.template": {
        "src": str(REPO / "roles" / "backup" / "templates" / "sfp-backup.timer.j2"), "dest": str(unit)}}],
        {"backup__schedule": schedule, "backup__org": "bksc"})
    assert done.returncode == 0, done.stdout
    specs = [ln.removeprefix("OnCalendar=") for ln in unit.read_text().splitlines() if ln.startswith("OnCalendar=")]
    assert len(specs) == 2
    expected = cron_times(schedule)
    assert timer_times(specs, len(expected)) == expected


def test_absent_removes_what_a_schedule_left_in_one_pass_then_changes_nothing(tmp_path: Path) -> None:
    """An org whose backup block was taken out: its cron file, units and job config go (the job
    config holds the S3 keys); check mode says so and removes nothing; the next run changes nothing."""
    org_dir = tmp_path / "orgs" / "bksc"
    left = [tmp_path / "cron.d" / "sfp-backup-bksc", tmp_path / "units" / "sfp-backup-bksc.service",
            org_dir / "backup" / "backup.json"]
    keep = [tmp_path / "cron.d" / "sfp-backup-other", org_dir / "backup" / "backup.log"]
    for path in left + keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("left from an earlier install\n")
    variables = {**role_vars(tmp_path, "0 3 * * *", org_dir), "backup__state": "absent"}

    checked = play(tmp_path, "backup", variables, "--check")
    assert checked.returncode == 0, checked.stdout
    assert recap(checked.stdout)["changed"] == 1 and all(p.exists() for p in left)

    done = play(tmp_path, "backup", variables)
    assert done.returncode == 0, done.stdout
    assert recap(done.stdout)["changed"] == 1
    assert [p for p in left if p.exists()] == [] and all(p.exists() for p in keep)

    again = play(tmp_path, "backup", variables)
    assert again.returncode == 0 and recap(again.stdout)["changed"] == 0, again.stdout
