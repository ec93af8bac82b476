"""Grandfather-father-son retention over complete sets, as restic and borg define it.

Sets are walked newest first; for each rule (daily, weekly, monthly, yearly) a set is kept if
its period (UTC day, ISO week, month, year) differs from the period of the last set that rule
kept, until the rule has kept `keep_*` sets. So each rule keeps the newest set of each of its
N most recent periods that have a set. A set is kept if any rule keeps it.

The newest complete set that passed verification (or, if none ever did, the newest complete
set) is never deleted, whatever the policy: a prune cannot leave an org without a backup. Sets
pinned by the org's upgrade history (`upgrade_pins`: the pre-upgrade set of an upgrade that can
still be rolled back) are kept too.
Incomplete sets (no manifest) are not retention's business: `cleanup` removes them. Sets dated
in the future (beyond the clock tolerance) are left out too: counted, one would take a period's
place or the "newest" protection from the real sets; they are kept and reported instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


def parse_stamp(value: object) -> datetime | None:
    """A history time stamp (`2026-12-03T03:10:24Z`; hosts written by earlier versions may hold
    `+00:00`) as an aware datetime; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def upgrade_pins(history: object, now: datetime | None = None) -> dict[str, str]:
    """The sets an org's upgrade history (`history` of deployed.json) keeps: set id -> why.

    An upgrade entry names its pre-upgrade set and, until when `upgrade --rollback` may restore it
    (`keep_until`, UTC). The pin ends then, or at a later `finish` entry (`upgrade --finish`).
    The history is the host's file: anything malformed in it pins nothing, it never fails a prune."""
    now = now or datetime.now(UTC)
    entries = [e for e in history if isinstance(e, Mapping)] if isinstance(history, list) else []
    pins: dict[str, str] = {}
    for i, entry in enumerate(entries):
        set_id, until = entry.get("backup_set"), entry.get("keep_until")
        if entry.get("action") != "upgrade" or not isinstance(set_id, str) or not isinstance(until, str):
            continue
        if any(later.get("action") == "finish" for later in entries[i + 1:]):
            continue
        expires = parse_stamp(until)
        if expires is not None and expires > now:
            pins[set_id] = f"pre-upgrade (rollback until {until})"
    return pins


def select(sets: list[s3.SetInfo], policy: Retention, pinned: Mapping[str, str] | None = None) -> Selection:
    """Pure: which complete sets `policy` keeps and which it deletes. Incomplete and future-dated sets
    are ignored; `pinned` sets (id -> reason, see upgrade_pins) are kept whatever the policy."""
    complete = sorted((s for s in sets if s.complete and not s.future), key=lambda s: s.order, reverse=True)
    result = Selection()
    for info in complete:
        if info.set_id in (pinned or {}):
            result.keep.setdefault(info.set_id, []).append((pinned or {})[info.set_id])
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
    forgotten_keys: list[str] = field(default_factory=list)
    """Recipients of earlier recovery keys dropped from the vault: no set left is encrypted to them."""
    keys_kept_for: dict[str, str] = field(default_factory=dict)
    """Sets whose manifest could not be read (set id: why): every earlier recovery key was kept for them."""


def prune(cli: Any, store: ObjectStore, org: str, policy: Retention, dry_run: bool = False,
          pinned: Mapping[str, str] | None = None) -> PruneReport:
    """Delete the sets `policy` does not keep (nor `pinned`). Each set loses its manifest first, so a
    prune interrupted half-way leaves a set that no longer lists as complete (cleanup removes the rest)."""
    sets = s3.scan(cli, store, org)
    selection = select(sets, policy, pinned)
    by_id = {s.set_id: s for s in sets}
    deleted: list[str] = []
    if not dry_run:
        units = [Stored(set_id, by_id[set_id].created, set_prefix(store.prefix, org, set_id) + MANIFEST,
                        tuple(by_id[set_id].keys)) for set_id in selection.delete]
        deleted = delete_units(cli, store, units, what="set", marker="manifest")
    return PruneReport(kept=selection.keep, deleted=selection.delete if dry_run else deleted, dry_run=dry_run,
                       future=selection.future)
