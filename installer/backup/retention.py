"""Grandfather-father-son retention over complete sets, as restic and borg define it.

Sets are walked newest first; for each rule (daily, weekly, monthly, yearly) a set is kept if
its period (UTC day, ISO week, month, year) differs from the period of the last set that rule
kept, until the rule has kept `keep_*` sets. So each rule keeps the newest set of each of its
N most recent periods that have a set. A set is kept if any rule keeps it.

The newest complete set that passed verification (or, if none ever did, the newest complete
set) is never deleted, whatever the policy: a prune cannot leave an org without a backup.
Incomplete sets (no manifest) are not retention's business: `cleanup` removes them. Sets dated
in the future (beyond the clock tolerance) are left out too: counted, one would take a period's
place or the "newest" protection from the real sets; they are kept and reported instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..objectstore import ObjectStore, Stored, delete_units, never_newest
from . import s3
from .config import Retention
from .manifest import MANIFEST, set_prefix

PERIODS: dict[str, Callable[[datetime], tuple[int, ...]]] = {
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


@dataclass
class Selection:
    keep: dict[str, list[str]] = field(default_factory=dict)
    """set_id → the reasons it is kept (daily, weekly, …, newest-verified)."""
    delete: list[str] = field(default_factory=list)
    future: list[str] = field(default_factory=list)
    """Complete sets dated in the future: neither kept by a rule nor deleted; reported."""


def select(sets: list[s3.SetInfo], policy: Retention) -> Selection:
    """Pure: which complete sets `policy` keeps and which it deletes. Incomplete and future-dated sets are ignored."""
    complete = sorted((s for s in sets if s.complete and not s.future), key=lambda s: s.order, reverse=True)
    result = Selection()
    for rule, period in PERIODS.items():
        remaining = int(getattr(policy, f"keep_{rule}"))
        last: tuple[int, ...] | None = None
        for info in complete:
            if remaining <= 0:
                break
            value = period(info.created)
            if value != last:
                last = value
                remaining -= 1
                result.keep.setdefault(info.set_id, []).append(rule)
    verified = [s for s in complete if s.verified_at is not None]
    protected = verified[0] if verified else (complete[0] if complete else None)
    if protected is not None:
        result.keep.setdefault(protected.set_id, []).append("newest-verified" if verified else "newest")
    units = [Stored(s.set_id, s.created, MANIFEST) for s in complete]
    result.delete = never_newest(units, [s.set_id for s in complete if s.set_id not in result.keep],
                                 newest=protected.set_id if protected else None)
    result.future = [s.set_id for s in sets if s.complete and s.future]
    return result


@dataclass
class PruneReport:
    kept: dict[str, list[str]]
    deleted: list[str]
    dry_run: bool
    future: list[str] = field(default_factory=list)
    """Complete sets dated in the future, left alone (see select)."""


def prune(cli: Any, store: ObjectStore, org: str, policy: Retention, dry_run: bool = False) -> PruneReport:
    """Delete the sets `policy` does not keep. Each set loses its manifest first, so a prune
    interrupted half-way leaves a set that no longer lists as complete (cleanup removes the rest)."""
    sets = s3.scan(cli, store, org)
    selection = select(sets, policy)
    by_id = {s.set_id: s for s in sets}
    deleted: list[str] = []
    if not dry_run:
        units = [Stored(set_id, by_id[set_id].created, set_prefix(store.prefix, org, set_id) + MANIFEST,
                        tuple(by_id[set_id].keys)) for set_id in selection.delete]
        deleted = delete_units(cli, store, units, what="set", marker="manifest")
    return PruneReport(kept=selection.keep, deleted=selection.delete if dry_run else deleted, dry_run=dry_run,
                       future=selection.future)
