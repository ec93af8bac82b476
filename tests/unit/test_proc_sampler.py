"""The process sampler (tests/proc_sampler.py) that the stack suites trust to find a secret on a
command line (tests/backup_stack/test_remote.py, tests/sso_stack/test_remote_host.py): proven here,
without Docker, with short-lived processes carrying a canary on argv, at the suites' interval.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.proc_sampler import INTERVAL, ProcSampler, assert_clean, positive_control


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


def test_assert_clean_fails_on_a_secret_on_argv_in_the_output_or_a_step_not_seen() -> None:
    canary = "sfp-canary-" + "5e1f" * 4
    with ProcSampler(INTERVAL) as seen:
        done = subprocess.run([sys.executable, "-c", "import time; time.sleep(0.3)", canary], capture_output=True, text=True)
    with pytest.raises(AssertionError):  # the secret was on a command line
        assert_clean(seen, done, {"canary": canary}, ["time.sleep"])
    clean = subprocess.CompletedProcess([], 0, stdout="", stderr="")
    assert_clean(seen, clean, {"absent": "sfp-never-on-any-command-line-7c1d"}, ["time.sleep"])
    with pytest.raises(AssertionError):  # a step the sampler never saw
        assert_clean(seen, clean, {}, ["no-such-program-ran"])
    with pytest.raises(AssertionError):  # the secret in the command's output
        assert_clean(seen, subprocess.CompletedProcess([], 0, stdout="key sfp-out-1", stderr=""), {"k": "sfp-out-1"}, [])
