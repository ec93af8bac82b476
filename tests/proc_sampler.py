"""Watch every process's command line while an operation runs, to find secrets on argv.

A command line is readable by every local user (`ps`, /proc/PID/cmdline), unlike a process's
environment or a 0600 file. A thread re-reads /proc/*/cmdline every few milliseconds and keeps each
distinct command line it sees; afterwards `leaks()` says which secret appeared in which one. Every
sweep re-reads every process, not only new ones: a forked child shows its parent's argv until it
calls exec, which keeps its pid.

A process that lives for less than one sweep can be missed, so a test proves the sampler with a
positive control (`positive_control`) rather than trusting it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

# The interval the stack suites sample with: wide enough to catch a process that lives a few tens of
# milliseconds (docker exec, ssh, a shell, a module run); tests/unit/test_proc_sampler.py proves it
# with processes of 50 ms. A sweep costs about 1 ms of CPU per hundred processes, and the stack
# tests sample for minutes while both cores are busy: 5 ms took a third of a core from the tests.
INTERVAL = 0.01

# Shorter values would match ordinary text (ports, small words); none of the secrets tested is this short.
MIN_NEEDLE = 8


def _read(path: str) -> bytes:
    # os.open/os.read: half the CPU of open().read() per file, which matters at hundreds a sweep.
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _sweep(ignore: frozenset[int]) -> Iterable[bytes]:
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in ignore:
            continue
        try:
            data = _read(f"/proc/{name}/cmdline")
        except OSError:  # gone since the listing, or not ours to read
            continue
        if data:
            yield data


class ProcSampler:
    """Collects the command lines of all processes while it runs (a context manager).

    `ignore_pids` and `ignore`: processes of test fixtures that stand for other machines (an S3
    server started with its keys on argv), whose command lines are not the toolkit's doing.
    `ignore` is asked about each command line (NULs as spaces).
    """

    def __init__(self, interval: float = 0.002, ignore_pids: Iterable[int] = (),
                 ignore: Callable[[str], bool] | None = None) -> None:
        self.interval = interval
        self.ignore = frozenset(ignore_pids)
        self.ignore_line = ignore
        self.seen: set[bytes] = set()
        self.sweeps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(_sweep(self.ignore))
            self.sweeps += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> ProcSampler:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def command_lines(self) -> list[str]:
        lines = (c.replace(b"\0", b" ").decode("utf-8", "replace").strip() for c in self.seen)
        return sorted(line for line in lines if not (self.ignore_line and self.ignore_line(line)))

    def saw(self, fragment: str) -> bool:
        """Whether some command line contained `fragment` (proof that the sampler watched the operation)."""
        return any(fragment in line for line in self.command_lines())

    def leaks(self, named_secrets: Mapping[str, str]) -> dict[str, list[str]]:
        """Secret name -> the command lines that hold it (the secret itself replaced, so a failing
        assertion does not print it)."""
        lines = self.command_lines()
        found: dict[str, list[str]] = {}
        for name, value in named_secrets.items():
            hits = [line for line in lines if any(n in line for n in needles(value))]
            if hits:
                found[name] = [redact(h, named_secrets.values()) for h in hits]
        return found


def needles(value: str) -> list[str]:
    """The forms a secret takes on a command line: itself, JSON-escaped (inside `-e {json}`), and,
    for a multi-line value (a PEM key), each of its long lines."""
    forms = {value, json.dumps(value)[1:-1]}
    # Not a PEM block's armour lines (`-----BEGIN PRIVATE KEY-----`): the same in every key.
    forms.update(line.strip() for line in value.splitlines() if not line.startswith("-----"))
    return sorted(f for f in forms if len(f) >= MIN_NEEDLE)


# Vault values that are not secret and would match ordinary text: the dashboard user name
# ("supabase", in every container name) and the keys' issue time (a Unix timestamp).
NOT_SECRET = frozenset({"DASHBOARD_USERNAME", "API_KEYS_ISSUED_AT"})


def vault_secrets(values: Mapping[str, str]) -> dict[str, str]:
    """Every value of an org's vault (`installer.actions.secrets.read`) but the NOT_SECRET ones."""
    return {k: v for k, v in values.items() if k not in NOT_SECRET and v}


def redact(line: str, values: Iterable[str]) -> str:
    # Longest first, so a secret that contains another is hidden whole.
    for n in sorted({n for v in values for n in needles(v)}, key=len, reverse=True):
        line = line.replace(n, "<SECRET>")
    return line[:300]


def positive_control(runs: int = 5, lifetime: float = 0.05, interval: float = 0.002) -> tuple[int, int]:
    """Start `runs` short-lived processes (`lifetime` seconds each), each with a fresh canary on its
    argv, under one sampler: (canaries caught, runs)."""
    canaries = [f"sfp-canary-{secrets.token_hex(12)}" for _ in range(runs)]
    with ProcSampler(interval) as sampler:
        for canary in canaries:
            # Not `sh -c 'sleep N'`: the shell would exec sleep and its argv (with the canary) vanish at once.
            subprocess.run(["sh", "-c", 'sleep "$1"; exit 0', canary, str(lifetime)], check=True)
    caught = sampler.leaks({c: c for c in canaries})
    return len(caught), runs


def assert_clean(seen: ProcSampler, done: subprocess.CompletedProcess[str], values: Mapping[str, str],
                 steps: Iterable[str]) -> None:
    """The sampler saw every step of the chain (so it watched the right processes), and no secret
    was on any command line it saw or in the command's output."""
    for step in steps:
        assert seen.saw(step), (step, seen.command_lines())
    leaks = seen.leaks(dict(values))
    assert not leaks, json.dumps(leaks, indent=1)
    for name, value in values.items():
        assert value not in done.stdout + done.stderr, name
