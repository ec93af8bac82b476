"""Running playbooks through ansible-runner, with live progress and a summary.

The CLI adds nothing a plain `ansible-playbook` run would not do: same playbooks, same inventory.
What it adds is reading the event stream: progress per task and host, the changed/ok/failed
counts, the failures with their messages, and the one declared report the roles publish.

The report: roles publish their results with `ansible.builtin.set_stats` (aggregated) as
`sfp_report: {<org>: {<section>: {...}}}`; ansible-runner hands the run's aggregated stats over in
the `playbook_on_stats` event (`artifact_data`). Each org's report is checked against
installer/schema/report.yml. Task names are free text: nothing here reads them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import ansible_runner
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from rich.console import Console
from rich.status import Status

from . import paths
from .errors import PlaybookFailed

# The custom stat the roles publish their report under (see installer/schema/report.yml).
REPORT_STAT = "sfp_report"


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass
class RunResult:
    rc: int
    status: str
    stats: dict[str, HostStats] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per host, per section of installer/schema/report.yml: what the roles published."""
    changed_tasks: list[tuple[str, str]] = field(default_factory=list)
    """(host, task) of every task that reported a change, in order."""
    stdout_tail: list[str] = field(default_factory=list)
    """The last lines ansible-playbook printed: the only clue when it fails before any task runs."""

    @property
    def changed(self) -> int:
        return sum(s.changed for s in self.stats.values())

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not any(s.failed or s.unreachable for s in self.stats.values())


class Progress:
    """Prints one line per task and per failing host; quiet enough to read at 3 a.m."""

    def __init__(self, console: Console, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.counts = {"ok": 0, "changed": 0, "failed": 0, "skipped": 0}
        self.status: Status | None = None
        self.task = ""

    def _refresh(self) -> None:
        if self.status is not None:
            c = self.counts
            self.status.update(
                f"{self.task}  [green]ok {c['ok']}[/green] [yellow]changed {c['changed']}[/yellow] "
                f"[red]failed {c['failed']}[/red] [dim]skipped {c['skipped']}[/dim]"
            )

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        host = data.get("host", "")
        task = data.get("task", "")
        if kind == "playbook_on_play_start":
            self.console.print(f"[bold]▶ {data.get('play', '')}[/bold]")
        elif kind == "runner_on_ok":
            changed = bool(data.get("res", {}).get("changed"))
            self.counts["changed" if changed else "ok"] += 1
            if changed or self.verbose:
                mark = "[yellow]changed[/yellow]" if changed else "[green]ok[/green]"
                self.console.print(f"  {mark:>24} {host}: {task}")
        elif kind == "runner_on_skipped":
            self.counts["skipped"] += 1
        elif kind in ("runner_on_failed", "runner_on_unreachable"):
            if data.get("ignore_errors"):
                return
            self.counts["failed"] += 1
            msg = _failure_message(data.get("res", {}))
            self.console.print(f"  [red]{'failed':>8}[/red] {host}: {task}\n           {msg}")
        elif kind == "playbook_on_task_start":
            self.task = task
            if self.verbose:
                self.console.print(f"[dim]  … {task}[/dim]")
        self._refresh()


def _failure_message(res: dict[str, Any]) -> str:
    msg = res.get("msg") or res.get("stderr") or res.get("reason") or "failed"
    if isinstance(msg, list):
        msg = "; ".join(map(str, msg))
    stderr = [line.strip() for line in str(res.get("stderr") or "").splitlines() if line.strip()]
    if msg == "non-zero return code" and stderr:
        # A command's generic message says nothing; the end of its stderr (a job's error and its
        # hint, as the toolkit prints them) says what failed.
        msg = f"{msg}: {' '.join(stderr[-2:])}"
    return str(msg).strip().splitlines()[0][:400] if str(msg).strip() else "failed"


class ReportInvalid(PlaybookFailed):
    """A role published a report the CLI cannot read: a bug in that role, not in the inventory."""


_REPORT_HINT = ("a role publishes it with ansible.builtin.set_stats (sfp_report); make that task match "
                "installer/schema/report.yml and run the command again")


@cache
def _report_validator() -> Draft202012Validator:
    text = resources.files("installer.schema").joinpath("report.yml").read_text(encoding="utf-8")
    schema = yaml.safe_load(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def read_report(stats: Any) -> dict[str, dict[str, Any]]:
    """Per host, the sections of `sfp_report` in a run's aggregated stats, checked against the schema.

    Raises ReportInvalid naming the host, the section and the field: a reader must never get a
    section of another shape than the schema declares (it would show nothing, or the wrong thing).
    """
    if not isinstance(stats, dict) or stats.get(REPORT_STAT) is None:
        return {}
    report = stats[REPORT_STAT]
    if not isinstance(report, dict):
        raise ReportInvalid(f"the playbook's {REPORT_STAT} is a {type(report).__name__}, not a mapping of org to sections",
                            _REPORT_HINT)
    validator = _report_validator()
    out: dict[str, dict[str, Any]] = {}
    bad: list[str] = []
    # Every host's report is checked, in name order: hosts finish in any order, and an operator
    # fixing a role wants every org it broke named in one message, the same message each run.
    for host in sorted(report, key=str):
        sections = report[host]
        errors = sorted(validator.iter_errors(sections), key=lambda e: [str(p) for p in e.absolute_path])
        if errors:
            bad.append(f"the playbook's report for {host} is malformed:\n"
                       + "\n".join(f"  {_problem(err)}" for err in errors[:5]))
            continue
        out[str(host)] = dict(sections)
    if bad:
        raise ReportInvalid("\n".join(bad), _REPORT_HINT)
    return out


def _problem(err: ValidationError) -> str:
    """Where (section, field) and what, without the offending value: it may be long, the path says where."""
    path = [str(p) for p in err.absolute_path]
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        declared = set((err.schema.get("properties") or {}).keys())
        extra = ", ".join(sorted(str(k) for k in err.instance if k not in declared))
        if not path:
            return f"section {extra}: not declared in installer/schema/report.yml"
        what = f"undeclared field {extra}"
    elif err.validator == "required":
        what = f"{err.message.split(' is a required property')[0]} is missing"
    elif err.validator == "type":
        what = f"must be of type {err.validator_value} (got {type(err.instance).__name__})"
    else:
        what = f"fails the schema's {err.validator} check"
    if not path:
        return f"the report {what}"
    field_path = ".".join(path[1:])
    return f"section {path[0]}: {field_path + ': ' if field_path else ''}{what}"


def _env() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    env = {
        # ansible-playbook must be the one installed beside this interpreter.
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "ANSIBLE_ROLES_PATH": str(paths.roles_dir()),
        "ANSIBLE_CONFIG": str(paths.ansible_root() / "ansible.cfg"),
        # ansible-runner sets this variable (adding its own event callback), which hides the
        # config's callback_plugins: name ours here too (sfp_settings_warm).
        "ANSIBLE_CALLBACK_PLUGINS": str(paths.playbooks_dir() / "callback_plugins"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }
    return env


class _Data(str):
    """A string of an extra variable: written with YAML's `!unsafe` tag when it could hold a template."""


class _ExtravarsDumper(yaml.SafeDumper):
    pass


def _represent_data(dumper: yaml.SafeDumper, value: _Data) -> yaml.ScalarNode:
    # ansible-core 2.19 builds an `!unsafe` scalar by resolving its text as if it were unquoted, so
    # `!unsafe "2026-12-03T03:10:24Z"` arrives as a datetime, "123" as an int and "yes" as True (an
    # upgrade's history stamps, a digits-only S3 key). A string that YAML would read as another type
    # holds no `{{`, `{%` or `{#`: it goes as a plain quoted string, which every version reads as text.
    if dumper.resolve(yaml.ScalarNode, str(value), (True, False)) != "tag:yaml.org,2002:str":
        return dumper.represent_str(str(value))
    return dumper.represent_scalar("!unsafe", str(value), style='"')


_ExtravarsDumper.add_representer(_Data, _represent_data)


def _as_data(value: Any) -> Any:
    if isinstance(value, str):
        return _Data(value)
    if isinstance(value, dict):
        return {k: _as_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_data(v) for v in value]
    return value


def _write_extravars(private: Path, extravars: dict[str, Any]) -> None:
    """Extra variables go to `<private>/env/extravars` (0600, in 0700 directories), never to argv.

    Given as `extravars=`, ansible-runner (with suppress_env_files, which keeps it from writing its
    other env files) puts them on the ansible-playbook command line as `-e {json}`, where any local
    user reads them with `ps`: a restore's recovery identity and S3 keys, for one. When this file
    exists, its generate_ansible_command passes `-e @<private>/env/extravars` instead.

    Every string value is tagged `!unsafe`: ansible-core templates extra variables (from a file as
    from argv), so a value holding `{{ ... }}` (a secret, a name) would otherwise run as Jinja.
    The CLI passes data, never templates.
    """
    env_dir = private / "env"
    env_dir.mkdir(mode=0o700)
    text = yaml.dump(_as_data(extravars), Dumper=_ExtravarsDumper, sort_keys=False, allow_unicode=True)
    fd = os.open(env_dir / "extravars", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def run_playbook(
    playbook: str,
    inventory: Path,
    limit: list[str] | None,
    vault_password_file: Path | None,
    *,
    console: Console | None = None,
    extravars: dict[str, Any] | None = None,
    check: bool = False,
    tags: list[str] | None = None,
    skip_tags: list[str] | None = None,
    verbose: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    console = console or Console(stderr=True)
    progress = Progress(console, verbose=verbose)
    result = RunResult(rc=-1, status="unstarted")
    # The run's aggregated custom stats, read once the run is over (a bad report must not look like
    # a crash of the event handler, which ansible-runner would swallow).
    stats_data: list[Any] = []

    def handle(event: dict[str, Any]) -> bool:
        data = event.get("event_data", {})
        kind = event.get("event", "")
        task = str(data.get("task", ""))
        if kind == "runner_on_ok" and data.get("res", {}).get("changed"):
            result.changed_tasks.append((str(data.get("host", "")), task))
        if event.get("stdout"):
            result.stdout_tail = (result.stdout_tail + str(event["stdout"]).splitlines())[-40:]
        if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            result.failures.append((data.get("host", ""), task, _failure_message(data.get("res", {}))))
        if kind == "playbook_on_stats":
            for host in set().union(*(data.get(k, {}) or {} for k in ("ok", "changed", "failures", "dark", "skipped"))):
                result.stats[host] = HostStats(
                    ok=data.get("ok", {}).get(host, 0),
                    changed=data.get("changed", {}).get(host, 0),
                    failed=data.get("failures", {}).get(host, 0),
                    unreachable=data.get("dark", {}).get(host, 0),
                    skipped=data.get("skipped", {}).get(host, 0),
                )
            stats_data.append(data.get("artifact_data"))
        progress(event)
        if on_event:
            on_event(event)
        # Returning False tells ansible-runner not to keep the event on disk: events can
        # hold task output, and the artifacts directory is removed at the end anyway.
        return False

    # ansible-runner runs ansible-playbook from its own private data directory: a path relative to
    # the operator's working directory (`-i demo-inventory`) would name nothing there.
    inventory = Path(inventory).resolve()
    if vault_password_file is not None:
        vault_password_file = Path(vault_password_file).resolve()
    cmdline: list[str] = []
    if vault_password_file is not None:
        cmdline += ["--vault-password-file", str(vault_password_file)]
    if check:
        cmdline.append("--check")
    if tags:
        cmdline += ["--tags", ",".join(tags)]
    if skip_tags:
        cmdline += ["--skip-tags", ",".join(skip_tags)]

    private = Path(tempfile.mkdtemp(prefix="sfp-run-"))
    os.chmod(private, 0o700)
    # On a terminal, a live line shows the current task and the running counts.
    if console.is_terminal:
        progress.status = console.status(f"running {playbook}")
        progress.status.start()
    try:
        if extravars:
            _write_extravars(private, extravars)
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(paths.playbooks_dir()),
            playbook=playbook,
            inventory=str(inventory),
            limit=",".join(limit) if limit else None,
            # Never `extravars=` (it lands on argv): they are in env/extravars (above).
            cmdline=shlex.join(cmdline) if cmdline else None,
            envvars=_env(),
            event_handler=handle,
            quiet=True,
            suppress_env_files=True,
        )
        result.rc = int(runner.rc if runner.rc is not None else 1)
        result.status = str(runner.status)
    finally:
        if progress.status is not None:
            progress.status.stop()
        shutil.rmtree(private, ignore_errors=True)
    if stats_data:
        try:
            result.reports = read_report(stats_data[-1])
        except ReportInvalid as exc:
            # What failed in the run matters more than the report it could not finish: show both.
            failed = [f"  {host}: {task}: {msg}" for host, task, msg in result.failures[:20]]
            message = exc.message + ("\nthe run also failed:\n" + "\n".join(failed) if failed else "")
            raise ReportInvalid(message, exc.hint) from None
    return result


def require_success(result: RunResult, what: str) -> None:
    if result.ok:
        return
    lines = [f"{what} failed"]
    lines += [f"  {host}: {task}: {msg}" for host, task, msg in result.failures[:20]]
    if not result.failures:
        # ansible-playbook stopped before any task (inventory or playbook error): show its words.
        lines += [f"  {line}" for line in result.stdout_tail[-15:] if line.strip()]
    raise PlaybookFailed("\n".join(lines), "fix the cause named above and run the same command again; it is safe to re-run")
