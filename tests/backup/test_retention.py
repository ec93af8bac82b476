"""Retention: the policy's selection over a simulated year, checked against a calendar walk."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from installer.backup import api, s3
from installer.backup.config import Retention
from installer.backup.manifest import MANIFEST, VERIFIED
from installer.backup.retention import select, upgrade_pins
from installer.backup.s3 import SetInfo

from .support import RcloneS3


def simulated_year(seed: int = 7) -> list[SetInfo]:
    """Daily sets over 2025 at random times: some days have two, some none, ~10% are incomplete,
    and the newest three complete sets were never verified."""
    rnd = random.Random(seed)
    sets: list[SetInfo] = []
    day = date(2025, 1, 1)
    while day <= date(2025, 12, 31):
        for _ in range(rnd.choice([0, 1, 1, 1, 1, 1, 2])):
            at = datetime(day.year, day.month, day.day, rnd.randrange(24), rnd.randrange(60), rnd.randrange(60), tzinfo=UTC)
            set_id = at.strftime("%Y%m%dT%H%M%SZ") + f"-{rnd.randrange(16**6):06x}"
            complete = rnd.random() > 0.1
            sets.append(SetInfo(set_id, at, complete, at + timedelta(hours=1) if complete else None, 100, 5))
        day += timedelta(days=1)
    sets.sort(key=lambda s: s.set_id)
    for info in [s for s in sets if s.complete][-3:]:
        info.verified_at = None
    return sets


def expected(sets: list[SetInfo], policy: Retention) -> set[str]:
    """The same policy by walking the calendar back from the newest set, period by period."""
    complete = [s for s in sets if s.complete]
    newest, oldest = max(s.created for s in complete), min(s.created for s in complete)

    def newest_in(start: datetime, end: datetime) -> SetInfo | None:
        inside = [s for s in complete if start <= s.created < end]
        return max(inside, key=lambda s: s.created) if inside else None

    keep: set[str] = set()

    def walk(count: int, first_start: datetime, step: object) -> None:
        start = first_start
        while count > 0 and start >= oldest.replace(hour=0, minute=0, second=0) - timedelta(days=400):
            end = step(start, +1)  # type: ignore[operator]
            found = newest_in(start, end)
            if found:
                keep.add(found.set_id)
                count -= 1
            start = step(start, -1)  # type: ignore[operator]

    midnight = newest.replace(hour=0, minute=0, second=0, microsecond=0)
    walk(policy.keep_daily, midnight, lambda t, n: t + timedelta(days=n))
    walk(policy.keep_weekly, midnight - timedelta(days=midnight.weekday()), lambda t, n: t + timedelta(weeks=n))

    def add_months(t: datetime, n: int) -> datetime:
        index = t.year * 12 + t.month - 1 + n
        return t.replace(year=index // 12, month=index % 12 + 1)

    walk(policy.keep_monthly, midnight.replace(day=1), add_months)
    walk(policy.keep_yearly, midnight.replace(month=1, day=1), lambda t, n: t.replace(year=t.year + n))
    verified = [s for s in complete if s.verified_at is not None]
    keep.add(max(verified or complete, key=lambda s: s.created).set_id)
    return keep


POLICIES = [
    Retention(keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=2),
    Retention(keep_daily=14, keep_weekly=0, keep_monthly=3, keep_yearly=0),
    Retention(keep_daily=0, keep_weekly=8, keep_monthly=0, keep_yearly=1),
    Retention(keep_daily=1, keep_weekly=1, keep_monthly=1, keep_yearly=1),
    Retention(keep_daily=400, keep_weekly=0, keep_monthly=0, keep_yearly=0),
    Retention(keep_daily=0, keep_weekly=0, keep_monthly=0, keep_yearly=0),
]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"d{p.keep_daily}w{p.keep_weekly}m{p.keep_monthly}y{p.keep_yearly}")
def test_selection_matches_calendar_walk(policy: Retention) -> None:
    sets = simulated_year()
    selection = select(sets, policy)
    want = expected(sets, policy)
    assert set(selection.keep) == want
    complete = {s.set_id for s in sets if s.complete}
    assert set(selection.delete) == complete - want
    incomplete = {s.set_id for s in sets if not s.complete}
    assert not incomplete & (set(selection.keep) | set(selection.delete))


def test_newest_verified_set_survives_keep_nothing() -> None:
    sets = simulated_year()
    selection = select(sets, Retention(0, 0, 0, 0))
    newest_verified = [s for s in sets if s.complete and s.verified_at][-1]
    assert selection.keep == {newest_verified.set_id: ["newest-verified"]}
    # Without any verified set, the newest complete one is kept.
    for s in sets:
        s.verified_at = None
    selection = select(sets, Retention(0, 0, 0, 0))
    assert list(selection.keep) == [[s for s in sets if s.complete][-1].set_id]


def test_daily_keeps_newest_of_each_day() -> None:
    day = datetime(2025, 3, 3, tzinfo=UTC)
    sets = [SetInfo(f"20250303T0{h}0000Z-00000{h}", day.replace(hour=h), True, day, 1, 1) for h in (1, 5, 9)]
    assert list(select(sets, Retention(keep_daily=1, keep_weekly=0, keep_monthly=0, keep_yearly=0)).keep) == [sets[-1].set_id]


@pytest.mark.slow
def test_prune_on_the_store(s3_server: RcloneS3) -> None:
    """prune() against a real S3 server: only the sets the policy drops go, whole; incomplete ones stay for cleanup."""
    store = s3_server.store("retention")
    cli = s3.client(store)
    sets = simulated_year(seed=11)
    for info in sets:
        base = f"sfp/acme/{info.set_id}/"
        cli.put_object(Bucket=store.bucket, Key=base + "db/postgres.pgdump.zst.age", Body=b"x")
        if info.complete:
            cli.put_object(Bucket=store.bucket, Key=base + MANIFEST, Body=b"{}")
            if info.verified_at:
                cli.put_object(Bucket=store.bucket, Key=base + VERIFIED, Body=b"{}")
    policy = Retention(keep_daily=7, keep_weekly=4, keep_monthly=6, keep_yearly=1)
    scanned = s3.scan(cli, store, "acme")
    want = expected(scanned, policy)

    dry = api.prune(store, "acme", policy, dry_run=True)
    assert len(api.list_sets(store, "acme")) == sum(s.complete for s in sets)
    report = api.prune(store, "acme", policy)
    assert set(report.deleted) == set(dry.deleted) == {s.set_id for s in scanned if s.complete} - want
    after = s3.scan(cli, store, "acme")
    assert {s.set_id for s in after if s.complete} == want
    assert {s.set_id for s in after if not s.complete} == {s.set_id for s in sets if not s.complete}
    for info in after:  # kept sets are whole
        if info.complete:
            assert any(k.endswith("db/postgres.pgdump.zst.age") for k in info.keys)

    report = api.prune(store, "acme", Retention(0, 0, 0, 0))
    assert [s.set_id for s in api.list_sets(store, "acme")] == list(report.kept)


NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def history(*entries: dict[str, object]) -> list[dict[str, object]]:
    return [dict(e) for e in entries]


def test_upgrade_pins_the_set_a_rollback_may_still_need() -> None:
    up = {"action": "upgrade", "backup_set": "S1", "keep_until": "2026-12-10T00:00:00Z"}
    assert upgrade_pins(history(up), NOW) == {"S1": "pre-upgrade (rollback until 2026-12-10T00:00:00Z)"}
    # Expired, finished, or a set before keep_until existed (older toolkit): not pinned.
    assert upgrade_pins(history({**up, "keep_until": "2026-12-01T00:00:00Z"}), NOW) == {}
    assert upgrade_pins(history(up, {"action": "finish", "backup_set": "S1"}), NOW) == {}
    assert upgrade_pins(history({k: v for k, v in up.items() if k != "keep_until"}), NOW) == {}
    # A finish ends only the upgrades before it.
    later = {**up, "backup_set": "S2"}
    assert list(upgrade_pins(history(up, {"action": "finish"}, later), NOW)) == ["S2"]
    # Hosts written through ansible-core 2.19 before the runner's fix hold `+00:00` stamps; a stamp
    # without a zone is no stamp.
    assert list(upgrade_pins(history({**up, "keep_until": "2026-12-10T00:00:00+00:00"}), NOW)) == ["S1"]
    assert upgrade_pins(history({**up, "keep_until": "2026-12-10T00:00:00"}), NOW) == {}


@pytest.mark.parametrize("hostile", [
    None, "history", {"action": "upgrade"}, [None, 3, "x"],
    [{"action": "upgrade", "backup_set": ["S1"], "keep_until": "2099-01-01T00:00:00Z"}],
    [{"action": "upgrade", "backup_set": "S1", "keep_until": "tomorrow"}],
    [{"action": "upgrade", "backup_set": "S1", "keep_until": 4102444800}],
])
def test_a_malformed_history_pins_nothing_and_never_fails(hostile: object) -> None:
    assert upgrade_pins(hostile, NOW) == {}


def test_a_pinned_set_is_kept_whatever_the_policy() -> None:
    sets = simulated_year()
    oldest = next(s for s in sets if s.complete)
    selection = select(sets, Retention(0, 0, 0, 0), {oldest.set_id: "pre-upgrade"})
    assert selection.keep[oldest.set_id] == ["pre-upgrade"] and oldest.set_id not in selection.delete
    assert len(selection.keep) == 2  # and the newest verified one
