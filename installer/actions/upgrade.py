"""`sfp-server upgrade`: plan, pre-upgrade backup, deploy, gate and automatic rollback, one org at a time.

The order for one org (each step only after the one before succeeded):
1. plan (playbooks/upgrade.yml, tags plan, check mode): what changes, and the pre-checks;
2. pull the target's absent images (nothing is stopped yet);
3. a verified backup set of the org (its `backup:` block): the data a rollback comes back to;
4. the release is written into the org's settings, and the stack role deploys it: Compose recreates
   only the services whose definition changed and waits until each is healthy;
5. the gate: requests through the gateway.
A failure in 4 or 5 rolls back: the old release is written back and deployed again, and when a
service that migrates the database at start was recreated, the data comes back from the set of 3.

The set of 3 is kept for `sfp_org.upgrade.keep_days` (the upgrade entry's `keep_until`: the backup
retention does not prune it, installer/backup/retention.py), and `--rollback` is offered until then
or until `--finish`. A fleet (`--all`) goes in batches of `--serial` orgs and stops after the batch
in which one fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from .. import catalog, hosts_file, runner
from ..context import OrgContext
from ..errors import SfpError
from ..upgrade import plan as upgrade_plan
from . import backup_run
from . import restore as restore_action
from . import status as status_action

PLAYBOOK = "upgrade.yml"
# The stack role refuses a release with another PostgreSQL major than the deployed one unless told
# that the data moves with it (a deploy alone would start an empty database).
MAJOR_MOVE = {"supabase_stack__allow_major_change": True}


class UpgradeRefused(SfpError):
    """A pre-check failed: nothing was changed (exit 1)."""


class UpgradeFailed(SfpError):
    """The upgrade started and was rolled back (exit 1): the org runs its old release."""


@dataclass
class UpgradeOutcome:
    org: str
    before: str | None
    after: str | None
    result: str
    """upgraded, unchanged, rolled_back, failed"""
    backup_set: str | None = None
    restarted: list[str] = field(default_factory=list)
    gate: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class FleetOutcome:
    """Where each org of an `--all`/`--serial` run stands: upgraded (or unchanged), failed, not started."""

    outcomes: list[UpgradeOutcome] = field(default_factory=list)
    failed: list[tuple[str, SfpError]] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> str:
    return _stamp(datetime.now(UTC))


def keep_until(ctx: OrgContext) -> str:
    """Until when the pre-upgrade set of an upgrade started now is kept (sfp_org.upgrade.keep_days)."""
    return _stamp(datetime.now(UTC) + timedelta(days=int(ctx.settings["upgrade"]["keep_days"])))


def _image_catalog(ctx: OrgContext) -> str:
    return str(ctx.machine_settings.get("sfp_image_catalog") or "upstream")


def plan(ctx: OrgContext, target: str, console: Console, *, verbose: bool = False, rollback: bool = False) -> upgrade_plan.OrgPlan:
    """What upgrading the org to `target` changes, changing nothing (the playbook runs in check mode)."""
    # The role's guard against older releases is for runs that change things; a plan shows an older
    # target as a problem of its own (exit 1), so the check-mode render may look at any release.
    result = _run(ctx, console, verbose, ["plan"], _target_vars(target, True), check=True)
    reports = result.reports.get(ctx.name, {})
    render = reports.get("render_plan", {}).get("msg")
    checks = list(reports.get("upgrade_checks", {}).get("msg") or [])
    if render is None:
        runner.require_success(result, f"planning the upgrade of {ctx.name}")
        raise SfpError(f"the plan of {ctx.name} reported nothing", "run it again with -v to see the tasks")
    the_plan = upgrade_plan.build(ctx.name, target, _image_catalog(ctx), render, checks, rollback=rollback)
    if not ctx.transport.local and (the_plan.major_upgrade or not ctx.settings.get("backup")):
        the_plan.problems.append(f"{ctx.name} is on a remote host: this version copies and moves an org's data for an "
                                 "upgrade only on the controller's own host (add a backup block; keep the PostgreSQL major)")
    return the_plan


def _run(ctx: OrgContext, console: Console, verbose: bool, tags: list[str], extravars: dict[str, Any] | None = None,
         check: bool = False) -> runner.RunResult:
    """One phase of playbooks/upgrade.yml for the org."""
    inv = ctx.inventory
    return runner.run_playbook(PLAYBOOK, inv.path, [ctx.name], inv.vault_password_file, console=console, check=check,
                               tags=tags, extravars=extravars, verbose=verbose)


def _target_vars(target: str, rollback: bool, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The release to render (the plan, the pull and the rollbacks name it: the inventory may not yet,
    or no longer); the upgrade's own phases may cross a PostgreSQL major."""
    out: dict[str, Any] = {"supabase_stack__release": target, **MAJOR_MOVE}
    if rollback:
        out["supabase_stack__allow_downgrade"] = True
    if history:
        out["supabase_stack__history_add"] = history
    return out


def upgrade(ctx: OrgContext, target: str, console: Console, *, verbose: bool = False,
            say: Callable[[str], None] | None = None) -> UpgradeOutcome:
    """Upgrade one org to `target`; on a failed deploy or gate, roll it back and raise UpgradeFailed."""
    say = say or (lambda _m: None)
    started = time.monotonic()
    the_plan = plan(ctx, target, console, verbose=verbose)
    plan_seconds = round(time.monotonic() - started, 3)
    if not the_plan.ok:
        raise UpgradeRefused(f"{ctx.name} cannot be upgraded to {target}: " + "; ".join(the_plan.problems),
                             f"see `{ctx.command('upgrade', '--org', ctx.name, '--to', target, '--plan')}`; nothing was changed")
    current = the_plan.current
    assert current is not None
    inv = ctx.inventory
    if the_plan.no_op:
        # Nothing to change, but an earlier run may have stopped between its deploy and its gate:
        # the gate says whether the org really runs the release.
        gate = _run(ctx, console, verbose, ["gate"])
        if not gate.ok:
            why = "; ".join(msg for _h, _t, msg in gate.failures) or gate.status
            raise UpgradeFailed(f"{ctx.name} runs {target} but fails its gate: {why}",
                                f"`{ctx.command('upgrade', '--org', ctx.name, '--rollback')}` returns to the release before")
        say(f"{ctx.name} already runs {target} and passes its gate: nothing to do")
        return UpgradeOutcome(ctx.name, current, target, "unchanged", seconds=time.monotonic() - started)
    if the_plan.major_upgrade:
        outcome = _upgrade_major(ctx, target, the_plan, console, verbose=verbose, say=say, started=started)
        outcome.timings["plan_seconds"] = plan_seconds
        return outcome
    _pull(ctx, target, the_plan, console, verbose, say)
    set_id, local_copy = _pre_upgrade_state(ctx, target, console, verbose, say)

    outcome = UpgradeOutcome(ctx.name, current, target, "upgraded", backup_set=set_id, restarted=the_plan.restarts)
    # keep_until: the backup job's retention keeps the set until then (or `upgrade --finish`), and
    # `upgrade --rollback` restores it (or the local copy) until then.
    entry = {"at": _now(), "action": "upgrade", "from": current, "to": target, "backup_set": set_id,
             "restarted": the_plan.restarts, "keep_until": keep_until(ctx)}
    if local_copy:
        entry["local_copy"] = local_copy
    path, old_bytes = hosts_file.set_org_release(inv.org_vars_dir(ctx.name), ctx.name, target)
    say(f"{ctx.name}: release {target} written to {path}; deploying (only changed services restart)")
    deployed = _run(ctx, console, verbose, ["deploy", "gate"], {"supabase_stack__history_add": [entry]})
    outcome.gate = list(deployed.reports.get(ctx.name, {}).get("upgrade_gate", {}).get("msg") or [])
    if deployed.ok:
        outcome.seconds = time.monotonic() - started
        say(f"{ctx.name}: upgraded to {target} in {outcome.seconds:.0f} s")
        return outcome

    why = "; ".join(f"{task}: {msg}" for _h, task, msg in deployed.failures) or deployed.status
    say(f"{ctx.name}: the upgrade failed ({why}); rolling back to {current}")
    path.write_bytes(old_bytes)
    source = f"backup {set_id}" if set_id else f"the local copy {ctx.org_dir}/upgrade/{local_copy}"
    try:
        _roll_back(ctx.reload(check=False), current, target, set_id, local_copy, data=bool(the_plan.migrates), reason=why,
                   console=console, verbose=verbose, say=say)
    except SfpError as exc:
        # The worst case: say exactly how to get the org back by hand (its settings already name the old release).
        by_hand = (f"`{ctx.command('restore', '--org', ctx.name, '--backup', set_id, '--force')}` (the pre-upgrade backup)"
                   if set_id else f"`{ctx.command('upgrade', '--org', ctx.name, '--rollback')}` (it loads {source} again)")
        raise UpgradeFailed(
            f"the upgrade of {ctx.name} to {target} failed ({why}) and so did its rollback to {current}: {exc.message}",
            f"{path} names {current} again; bring the org back with {by_hand}") from exc
    raise UpgradeFailed(f"the upgrade of {ctx.name} to {target} failed and was rolled back: {why}",
                        f"{ctx.name} runs {current} again"
                        + (f" with the data of {source}" if the_plan.migrates else "")
                        + f"; see the containers' logs (`{ctx.command('logs', '--org', ctx.name)}`) for the cause")


def _pull(ctx: OrgContext, target: str, the_plan: upgrade_plan.OrgPlan, console: Console, verbose: bool,
          say: Callable[[str], None]) -> None:
    """The target's absent images, before anything stops; no run at all when the plan found every one."""
    if all(c.get("status") == "ok" for c in the_plan.checks if c.get("check") == "images"):
        return
    say(f"{ctx.name}: pulling the images of {target} that are not on the host")
    runner.require_success(_run(ctx, console, verbose, ["pull"], _target_vars(target, False)), f"pulling the images of {target}")


def _pre_upgrade_state(ctx: OrgContext, target: str, console: Console, verbose: bool,
                       say: Callable[[str], None]) -> tuple[str | None, str | None]:
    """What a rollback brings the data back from: (verified backup set, None) for an org with a
    backup block, else (None, the name of a local copy on the org's host)."""
    set_id = _verified_backup(ctx, console, verbose, say)
    if set_id is not None:
        return set_id, None
    name = f"pre-{target}"
    say(f"{ctx.name}: no backup block: copying its data to {ctx.org_dir}/upgrade/{name} on its host")
    _host_job(ctx, {"step": "copy", "copy": name}, say)
    return None, name


def _verified_backup(ctx: OrgContext, console: Console, verbose: bool, say: Callable[[str], None]) -> str | None:
    """A verified backup set of an org with a backup block, before anything changes; None without one."""
    if not ctx.settings.get("backup"):
        return None
    say(f"{ctx.name}: pre-upgrade backup")
    return backup_run.run_verified(ctx, console, verbose=verbose, say=say)


def _refuse_remote(ctx: OrgContext) -> None:
    if not ctx.transport.local:
        raise UpgradeRefused(f"{ctx.name} is on a remote host: this version copies and moves an org's data for an upgrade "
                             "only on the controller's own host",
                             "nothing was changed; add a backup block (sfp_org.backup) and upgrade to a release with the "
                             "same PostgreSQL major")


def _host_job(ctx: OrgContext, cfg: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    """One step of installer/upgrade/host_job on the org's host."""
    from ..upgrade import host_job  # lazy: it imports the backup library

    _refuse_remote(ctx)
    return host_job.run({"project": ctx.project, "org_dir": ctx.org_dir, **cfg}, say)


def _upgrade_major(ctx: OrgContext, target: str, the_plan: upgrade_plan.OrgPlan, console: Console, *, verbose: bool,
                   say: Callable[[str], None], started: float) -> UpgradeOutcome:
    """A release with another PostgreSQL major: the data moves into a new cluster beside the old one.

    The old cluster (its data directory and config volume, named per major by the release) is only
    read: every service is stopped, the old cluster runs on as a container of its own, the target's
    image initialises the new cluster (its init scripts run) and the databases stream from the one
    into the other. Until `--finish` the old cluster
    stays, so a failure anywhere, or `--rollback` later, starts the old release on it again: no
    restore is needed, and nothing written to the old cluster is lost. A backup block adds a verified
    set before anything stops, as for any upgrade."""
    current = the_plan.current
    assert current is not None
    image_catalog = _image_catalog(ctx)
    before, after = catalog.load_release(current, image_catalog), catalog.load_release(target, image_catalog)
    _refuse_remote(ctx)
    inv = ctx.inventory
    _pull(ctx, target, the_plan, console, verbose, say)
    set_id = _verified_backup(ctx, console, verbose, say)
    old_cluster = {"data_dir": before.db_data_dir, "config_volume": before.db_config_volume}
    new_cluster = {"data_dir": after.db_data_dir, "config_volume": after.db_config_volume}
    entry = {"at": _now(), "action": "upgrade", "from": current, "to": target, "backup_set": set_id,
             "restarted": the_plan.restarts, "keep_until": keep_until(ctx),
             "postgres": {"from": the_plan.postgres_before, "to": the_plan.postgres_after, **old_cluster}}
    outcome = UpgradeOutcome(ctx.name, current, target, "upgraded", backup_set=set_id, restarted=the_plan.restarts)
    path, old_bytes = inv.org_vars_dir(ctx.name), b""
    release_written = False
    try:
        say(f"{ctx.name}: stopping its services; PostgreSQL {the_plan.postgres_before} runs on beside the new cluster "
            f"(every API is down from here until the gate)")
        down_from = time.monotonic()
        _host_job(ctx, {"step": "detach", "old_data_dir": before.db_data_dir, "old_config_volume": before.db_config_volume,
                        **new_cluster}, say)
        path, old_bytes = hosts_file.set_org_release(inv.org_vars_dir(ctx.name), ctx.name, target)
        release_written = True
        say(f"{ctx.name}: release {target} written to {path}; PostgreSQL {the_plan.postgres_after} initialises a new cluster")
        t = time.monotonic()
        runner.require_success(_run(ctx.reload(check=False), console, verbose, ["deploy"],
                                    {"supabase_stack__start_services": ["db"], **MAJOR_MOVE}),
                               f"starting the PostgreSQL {the_plan.postgres_after} database of {ctx.name}")
        outcome.timings["new_cluster_seconds"] = round(time.monotonic() - t, 3)
        moved = _host_job(ctx, {"step": "move"}, say)
        outcome.timings.update(moved.get("timings") or {})
        say(f"{ctx.name}: data loaded; starting every service of {target}")
        t = time.monotonic()
        deployed = _run(ctx.reload(check=False), console, verbose, ["deploy", "gate"], {"supabase_stack__history_add": [entry]})
        outcome.timings["start_and_gate_seconds"] = round(time.monotonic() - t, 3)
        outcome.gate = list(deployed.reports.get(ctx.name, {}).get("upgrade_gate", {}).get("msg") or [])
        if not deployed.ok:
            raise SfpError("; ".join(f"{task}: {msg}" for _h, task, msg in deployed.failures) or deployed.status, "")
        outcome.timings["downtime_seconds"] = round(time.monotonic() - down_from, 3)
    except SfpError as exc:
        why = exc.message
        say(f"{ctx.name}: the upgrade failed ({why}); starting {current} again on its untouched PostgreSQL "
            f"{the_plan.postgres_before} cluster")
        if release_written:
            path.write_bytes(old_bytes)
        # Before the old release's database starts on the old directory: the server of the move must be gone.
        _host_job(ctx, {"step": "release_old"}, say)
        rollback_entry = {"at": _now(), "action": "rollback", "from": target, "to": current, "backup_set": set_id,
                          "data_restored": False, "reason": why[:500]}
        back = _run(ctx.reload(check=False), console, verbose, ["deploy", "gate"],
                    _target_vars(current, True, [rollback_entry]))
        if not back.ok:
            raise UpgradeFailed(
                f"the upgrade of {ctx.name} to {target} failed ({why}) and so did starting {current} again: "
                + ("; ".join(msg for _h, _t, msg in back.failures) or back.status),
                f"its PostgreSQL {the_plan.postgres_before} data is untouched in {ctx.org_dir}/volumes/db/{before.db_data_dir}; "
                f"run `{ctx.command('install', '--org', ctx.name)}` to start {current} on it") from exc
        _host_job(ctx, {"step": "drop", **new_cluster}, say)
        raise UpgradeFailed(f"the upgrade of {ctx.name} to {target} failed and was rolled back: {why}",
                            f"{ctx.name} runs {current} again on its PostgreSQL {the_plan.postgres_before} data, as before; "
                            f"see the containers' logs (`{ctx.command('logs', '--org', ctx.name)}`) for the cause") from exc
    outcome.seconds = time.monotonic() - started
    say(f"{ctx.name}: upgraded to {target} (PostgreSQL {the_plan.postgres_after}) in {outcome.seconds:.0f} s; "
        f"the PostgreSQL {the_plan.postgres_before} cluster stays until `upgrade --finish`")
    return outcome


def _roll_back(ctx: OrgContext, release: str, failed: str, set_id: str | None, local_copy: str | None, *, data: bool,
               reason: str, console: Console, verbose: bool, say: Callable[[str], None]) -> None:
    """Put `release` back on the org; with `data`, the database and storage of set `set_id` (or of
    the local copy) too."""
    entry = {"at": _now(), "action": "rollback", "from": failed, "to": release, "backup_set": set_id,
             "data_restored": data, "reason": reason[:500]}
    if data and set_id:
        # Services of the failed release may have migrated the database: restore the set (it
        # replaces the org's data after a safety backup), then record the history again, which the
        # restore's fresh install started anew.
        history = _history(ctx, console)
        say(f"{ctx.name}: restoring the data of backup {set_id}")
        restore_action.restore(ctx, ctx.name, set_id, console, force=True, verbose=verbose, say=say)
        ctx = ctx.reload(check=False)
        result = _run(ctx, console, verbose, ["deploy", "gate"], {"supabase_stack__history_add": [*history, entry]})
    elif data and local_copy:
        # The same from the copy on the host: nothing may write while it loads, and the database runs
        # the old release's image (recreated first when the failed release changed it).
        say(f"{ctx.name}: loading the data of {ctx.org_dir}/upgrade/{local_copy} back")
        _host_job(ctx, {"step": "stop"}, say)
        runner.require_success(_run(ctx, console, verbose, ["deploy"], {**_target_vars(release, True),
                                                                         "supabase_stack__start_services": ["db"]}),
                               f"starting the database of {release}")
        _host_job(ctx, {"step": "load", "copy": local_copy, "storage": True}, say)
        result = _run(ctx, console, verbose, ["deploy", "gate"], _target_vars(release, True, [entry]))
    elif data:
        raise SfpError(f"{ctx.name}'s upgrade kept no pre-upgrade state to bring data back from", "restore a backup set by hand")
    else:
        result = _run(ctx, console, verbose, ["deploy", "gate"], _target_vars(release, True, [entry]))
    runner.require_success(result, f"rolling {ctx.name} back to {release}")


def _history(ctx: OrgContext, console: Console) -> list[dict[str, Any]]:
    rows = status_action.gather(ctx.inventory, [ctx.name], console)
    return list(rows[0].history) if rows else []


def rollback(ctx: OrgContext, console: Console, *, verbose: bool = False,
             say: Callable[[str], None] | None = None) -> UpgradeOutcome:
    """`upgrade --rollback`: the release and data the org had before its last upgrade."""
    say = say or (lambda _m: None)
    started = time.monotonic()
    last = _last_upgrade(ctx, _history(ctx, console))
    before, failed = str(last["from"]), str(last["to"])
    set_id, local_copy = last.get("backup_set"), last.get("local_copy")
    if isinstance(last.get("postgres"), dict):
        return _rollback_major(ctx, last, console, verbose=verbose, say=say, started=started)
    path, _old = hosts_file.set_org_release(ctx.inventory.org_vars_dir(ctx.name), ctx.name, before)
    say(f"{ctx.name}: release {before} written to {path}; bringing back the data of "
        + (f"backup {set_id}" if set_id else f"the local copy {local_copy}"))
    _roll_back(ctx.reload(check=False), before, failed, set_id if isinstance(set_id, str) else None,
               local_copy if isinstance(local_copy, str) else None, data=True, reason="operator asked (--rollback)",
               console=console, verbose=verbose, say=say)
    return UpgradeOutcome(ctx.name, failed, before, "rolled_back", backup_set=set_id if isinstance(set_id, str) else None,
                          seconds=time.monotonic() - started)


def _rollback_major(ctx: OrgContext, last: dict[str, Any], console: Console, *, verbose: bool,
                    say: Callable[[str], None], started: float) -> UpgradeOutcome:
    """`--rollback` of a major upgrade: the old release starts on the old cluster, which the upgrade
    never wrote to; the new cluster is removed once the old release passes its gate."""
    _refuse_remote(ctx)
    before, failed = str(last["from"]), str(last["to"])
    new = catalog.load_release(failed, _image_catalog(ctx))
    path, old_bytes = hosts_file.set_org_release(ctx.inventory.org_vars_dir(ctx.name), ctx.name, before)
    say(f"{ctx.name}: release {before} written to {path}; starting it on its PostgreSQL {last['postgres'].get('from')} cluster")
    entry = {"at": _now(), "action": "rollback", "from": failed, "to": before, "backup_set": last.get("backup_set"),
             "data_restored": False, "reason": "operator asked (--rollback)"}
    result = _run(ctx.reload(check=False), console, verbose, ["deploy", "gate"], _target_vars(before, True, [entry]))
    if not result.ok:
        path.write_bytes(old_bytes)
        runner.require_success(result, f"rolling {ctx.name} back to {before}")
    _host_job(ctx, {"step": "drop", "data_dir": new.db_data_dir, "config_volume": new.db_config_volume}, say)
    return UpgradeOutcome(ctx.name, failed, before, "rolled_back", backup_set=last.get("backup_set"),
                          seconds=time.monotonic() - started)


def upgrade_fleet(contexts: Sequence[OrgContext], target: str, console: Console, *, serial: int = 1, verbose: bool = False,
                  say: Callable[[str], None] | None = None,
                  one: Callable[..., UpgradeOutcome] | None = None) -> FleetOutcome:
    """Upgrade `contexts` in order, `serial` at a time; after a batch in which an org failed, start no more.

    An org's failure is its own (its upgrade was refused or rolled back, see upgrade): the others of
    its batch finish. `one` replaces the per-org step (tests)."""
    if serial < 1:
        raise SfpError(f"--serial {serial}: upgrade at least one org at a time", "pass --serial 1 or more")
    step = one or upgrade
    fleet = FleetOutcome()
    pending = list(contexts)
    while pending and not fleet.failed:
        batch, pending = pending[:serial], pending[serial:]
        if len(batch) == 1:
            results = [_attempt(step, batch[0], target, console, verbose, say)]
        else:
            # Orgs of a batch run side by side: a live status line per thread would garble the
            # terminal, so they print plain lines to a console that is not live.
            plain = Console(file=console.file, force_terminal=False, no_color=console.no_color, width=console.width)
            with ThreadPoolExecutor(max_workers=len(batch)) as pool:
                results = list(pool.map(_attempt, [step] * len(batch), batch, [target] * len(batch),
                                        [plain] * len(batch), [verbose] * len(batch), [say] * len(batch)))
        for ctx, result in zip(batch, results, strict=True):
            if isinstance(result, SfpError):
                fleet.failed.append((ctx.name, result))
            else:
                fleet.outcomes.append(result)
    fleet.not_started = [c.name for c in pending]
    return fleet


def _attempt(step: Callable[..., UpgradeOutcome], ctx: OrgContext, target: str, console: Console, verbose: bool,
             say: Callable[[str], None] | None) -> UpgradeOutcome | SfpError:
    try:
        return step(ctx, target, console, verbose=verbose, say=say)
    except SfpError as exc:
        return exc


def _last_upgrade(ctx: OrgContext, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The org's last upgrade, while it can still be rolled back (not finished, its set still kept)."""
    from ..backup.retention import parse_stamp  # lazy: see installer/actions/backup_config.py

    last = next((h for h in reversed(history) if h.get("action") in ("upgrade", "rollback", "finish")), None)
    if last is None or last.get("action") != "upgrade":
        why = {"finish": " (it was finished)", "rollback": " (it was rolled back already)"}.get(
            str((last or {}).get("action")), "")
        raise SfpError(f"{ctx.name} has no upgrade to roll back{why}",
                       f"`{ctx.command('status', '--org', ctx.name)}` shows its history")
    until = parse_stamp(last.get("keep_until"))
    if until is not None and until <= datetime.now(UTC):
        raise SfpError(f"the pre-upgrade state of {ctx.name} was kept until {last['keep_until']} and may be pruned: no rollback",
                       f"restore a set by hand if one is left (`{ctx.command('backup', 'list', '--org', ctx.name)}`)")
    return last


def _unfinished(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last upgrade entry, unless it was finished or rolled back since."""
    last = next((h for h in reversed(history) if isinstance(h, dict) and h.get("action") in ("upgrade", "rollback", "finish")), None)
    return last if last is not None and last.get("action") == "upgrade" else None


def finish(ctx: OrgContext, console: Console, *, verbose: bool = False) -> dict[str, Any]:
    """`upgrade --finish`: the org keeps the release it runs; the pre-upgrade sets its upgrades kept are
    left to the backup retention, the local copy or the old major's cluster is removed from the host,
    and `--rollback` is no longer offered. Changes no service."""
    from ..backup.retention import upgrade_pins  # lazy: see installer/actions/backup_config.py

    rows = status_action.gather(ctx.inventory, [ctx.name], console)
    if not rows or rows[0].error or not rows[0].release:
        raise SfpError(f"cannot read what {ctx.name} runs on its host ({rows[0].verdict if rows else 'no status'})",
                       f"see `{ctx.command('status', '--org', ctx.name)}`")
    kept = upgrade_pins(rows[0].history)
    last = _unfinished(rows[0].history) or {}
    major = last.get("postgres") if isinstance(last.get("postgres"), dict) else None
    local_copy = last.get("local_copy") if isinstance(last.get("local_copy"), str) else None
    if not kept and major is None and local_copy is None:
        raise SfpError(f"{ctx.name} keeps no pre-upgrade state: nothing to finish",
                       f"`{ctx.command('status', '--org', ctx.name)}` shows its history")
    release = rows[0].release
    entry: dict[str, Any] = {"at": _now(), "action": "finish", "from": release, "to": release, "backup_sets": sorted(kept)}
    removed: list[str] = []
    if major is not None:
        # The old major's cluster: what `--rollback` would have started the old release on.
        removed += _host_job(ctx, {"step": "drop", "data_dir": major.get("data_dir"),
                                   "config_volume": major.get("config_volume")}, lambda _m: None)["removed"]
    if local_copy is not None:
        removed += _host_job(ctx, {"step": "drop_copy", "copy": local_copy}, lambda _m: None)["removed"]
    if removed:
        entry["removed"] = removed
    # The stack role records the entry in deployed.json; nothing it deploys changed, so nothing restarts.
    result = _run(ctx, console, verbose, ["deploy"], {"supabase_stack__history_add": [entry]})
    runner.require_success(result, f"recording the end of {ctx.name}'s upgrade")
    return entry
