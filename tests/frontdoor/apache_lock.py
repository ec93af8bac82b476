"""The machine's one Apache, held by one pytest process at a time.

A module of its own, not conftest.py: pytest imports a conftest under a name of its own, so a test
that imported the lock from it would get a second copy of the state below and wait for itself.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import IO

LOCK = Path("/run/lock/sfp-frontdoor-tests.lock")
_held: dict[str, IO[str] | int | None] = {"file": None, "depth": 0}


@contextlib.contextmanager
def apache_lock() -> Iterator[None]:
    """Other pytest runs wait. Re-entrant within the process (a second flock on a new descriptor
    would wait for ourselves): tests/frontdoor's session fixture holds it, and the front door stack
    test, in the same worker (tests/conftest.py), takes it again."""
    depth = int(_held["depth"] or 0)
    if depth == 0:
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        handle = LOCK.open("w")
        fcntl.flock(handle, fcntl.LOCK_EX)
        _held["file"] = handle
    _held["depth"] = depth + 1
    try:
        yield
    finally:
        _held["depth"] = int(_held["depth"] or 1) - 1
        if _held["depth"] == 0:
            handle = _held["file"]
            if handle is not None and not isinstance(handle, int):
                handle.close()
            _held["file"] = None
