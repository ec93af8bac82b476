"""The process sampler (tests/proc_sampler.py) that the stack suites trust to find a secret on a
command line (tests/backup_stack/test_remote.py, tests/sso_stack/test_remote_host.py): proven here,
without Docker, with short-lived processes carrying a canary on argv, at the suites' interval.
"""

from __future__ import annotations

from tests.proc_sampler import INTERVAL, ProcSampler, positive_control


def test_the_sampler_catches_every_short_lived_process_with_a_secret_on_its_command_line() -> None:
    # 50 ms: a shell, ssh or docker exec lives longer; none may slip through.
    caught, runs = positive_control(runs=5, lifetime=0.05, interval=INTERVAL)
    assert caught == runs


def test_the_sampler_reports_nothing_when_no_command_line_holds_the_secret() -> None:
    with ProcSampler(INTERVAL) as seen:
        seen_before = seen.sweeps
        positive_control(runs=1, lifetime=0.05, interval=INTERVAL)
    assert seen.sweeps > seen_before
    assert seen.leaks({"absent": "sfp-never-on-any-command-line-7c1d"}) == {}
