"""`upgrade --all` / `--serial N`: batches in order, stop after the batch in which an org fails.

The per-org step is the test's own (the real one is driven on the engine by tests/upgrade_stack);
what is tested here is the fleet's order, concurrency and stopping, through the action's API and the
CLI's summary and exit code.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from installer.actions import upgrade as upgrade_action
from installer.actions.upgrade import UpgradeFailed, UpgradeOutcome, upgrade_fleet
from installer.cli import cli
from installer.errors import SfpError
from tests.stack.conftest import build_inventory


@dataclass
class FakeOrg:
    name: str


class Step:
    """Records which orgs ran, and how many at once; fails the orgs named in `fail`."""

    def __init__(self, fail: set[str] = frozenset(), pause: float = 0.0) -> None:  # type: ignore[assignment]
        self.fail, self.pause = fail, pause
        self.ran: list[str] = []
        self.running = self.most = 0
        self.lock = threading.Lock()

    def __call__(self, ctx: Any, target: str, console: Console, **_kw: Any) -> UpgradeOutcome:
        with self.lock:
            self.ran.append(ctx.name)
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.pause)
        with self.lock:
            self.running -= 1
        if ctx.name in self.fail:
            raise UpgradeFailed(f"the upgrade of {ctx.name} to {target} failed and was rolled back: gate auth", "see logs")
        return UpgradeOutcome(ctx.name, "v0.8.0", target, "upgraded")


ORGS = [FakeOrg(n) for n in ("a", "b", "c", "d", "e")]


def test_one_at_a_time_stops_at_the_first_failure() -> None:
    step = Step(fail={"c"})
    fleet = upgrade_fleet(ORGS, "v0.8.1", Console(file=None), one=step)  # type: ignore[arg-type]
    assert step.ran == ["a", "b", "c"] and step.most == 1
    assert [o.org for o in fleet.outcomes] == ["a", "b"]
    assert [name for name, _ in fleet.failed] == ["c"] and fleet.not_started == ["d", "e"]


def test_a_batch_runs_at_once_and_finishes_when_one_of_it_fails() -> None:
    step = Step(fail={"c"}, pause=0.3)
    fleet = upgrade_fleet(ORGS, "v0.8.1", Console(file=None), serial=2, one=step)  # type: ignore[arg-type]
    # (a, b) together, then (c, d) together: d finishes although c failed; e never starts.
    assert sorted(step.ran) == ["a", "b", "c", "d"] and step.most == 2
    assert sorted(o.org for o in fleet.outcomes) == ["a", "b", "d"]
    assert [name for name, _ in fleet.failed] == ["c"] and fleet.not_started == ["e"]


def test_every_org_upgraded_when_none_fails() -> None:
    step = Step()
    fleet = upgrade_fleet(ORGS, "v0.8.1", Console(file=None), serial=3, one=step)  # type: ignore[arg-type]
    assert sorted(step.ran) == ["a", "b", "c", "d", "e"] and not fleet.failed and not fleet.not_started


def test_serial_must_be_positive() -> None:
    with pytest.raises(SfpError, match="--serial 0"):
        upgrade_fleet(ORGS, "v0.8.1", Console(file=None), serial=0, one=Step())  # type: ignore[arg-type]


def test_cli_summary_names_every_org_and_exits_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    inv = build_inventory(tmp_path, {n: {"release": "v0.8.0", "public_url": f"http://127.0.0.1:{8000 + i}",
                                         "ports": {"api": 8000 + i, "postgres": 9000 + i, "pooler_transaction": 9100 + i}}
                                     for i, n in enumerate(("one", "two", "three"))}, tmp_path / "base")
    step = Step(fail={"three"})
    monkeypatch.setattr(upgrade_action, "upgrade", step)
    done = CliRunner().invoke(cli, ["-i", str(inv), "upgrade", "--all", "--to", "v0.8.1", "--json"])
    assert done.exit_code == 1, done.output
    assert step.ran == ["one", "three"]  # --all: in name order
    assert '"not_started": ["two"]' in done.output and '"org": "three"' in done.output, done.output
    assert "three to v0.8.1 failed and was rolled back" in done.output


def test_cli_refuses_serial_with_rollback(tmp_path: Any) -> None:
    done = CliRunner().invoke(cli, ["-i", str(tmp_path), "upgrade", "--org", "x", "--rollback", "--serial", "2"])
    assert done.exit_code == 2 and "--serial" in done.output, done.output


@pytest.mark.parametrize(("args", "says"), [
    (["upgrade", "--to", "v0.8.1"], "no org given"),
    (["upgrade", "--org", "x"], "no target release"),
    (["upgrade", "--org", "x", "--rollback", "--to", "v0.8.1"], "--rollback takes exactly one --org"),
])
def test_cli_bad_arguments_exit_2_with_one_readable_line(args: list[str], says: str, tmp_path: Any) -> None:
    done = CliRunner().invoke(cli, ["-i", str(tmp_path), *args])
    assert done.exit_code == 2 and says in done.output, done.output
    assert "\n  - -" not in done.output  # not spelt out one character per line
