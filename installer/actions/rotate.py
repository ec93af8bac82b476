"""`sfp-server secrets rotate`: new values for a group of an org's secrets, applied to the running org.

The order for one org (each step only after the one before succeeded):
1. plan (playbooks/rotate.yml, tag plan, check mode): the services that read the rotated names and,
   for the database password, the roles whose password changes;
2. when the org has a `backup:` block, a verified backup set: the values and data before the rotation;
3. the new values go into the vault (their age restarts: installer/context.py stamps them);
4. apply (playbooks/rotate.yml, tag apply): the database roles take the vault's password in one
   transaction; the stack role renders .env and recreates exactly the services of 1, the database
   first, each waited for until healthy; then the gateway's smoke checks.
A failure in 4 puts the old values (and their ages) back into the vault and runs apply again, which
brings the roles and services back to them; the command exits non-zero either way.

The playbook converges the org to whatever the vault holds, so a run that stopped half-way (the
controller lost between 3 and 4) is finished by `secrets rotate --from-vault`, or by the playbook alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from rich.console import Console

from .. import runner
from ..context import OrgContext, read_secret_ages
from ..errors import SfpError, UsageError
from ..rotation import groups as rotation_groups
from ..rotation import plan as rotation_plan
from ..rotation.groups import Group, secret_names
from . import backup_run

PLAYBOOK = "rotate.yml"


class RotationFailed(SfpError):
    """The rotation started and failed; the org was brought back to its old values (or could not be)."""


@dataclass
class RotationOutcome:
    org: str
    secrets: list[str]
    result: str
    """rotated, applied (--from-vault), finished (--finish: the values kept for a grace period dropped),
    nothing (--finish with nothing kept)"""
    recreated: list[str] = field(default_factory=list)
    db_roles: list[str] = field(default_factory=list)
    backup_set: str | None = None
    apply_seconds: float = 0.0
    """From the first change on the host to the end of the smoke checks: the longest the org may
    have been less than fully healthy."""
    seconds: float = 0.0
    clients: list[str] = field(default_factory=list)
    grace_until: str | None = None
    """When the replaced values stop working (a group with a grace period), unless finished before."""


def _run(ctx: OrgContext, console: Console, verbose: bool, tags: list[str], names: list[str],
         check: bool = False) -> runner.RunResult:
    inv = ctx.inventory
    return runner.run_playbook(PLAYBOOK, inv.path, [ctx.name], inv.vault_password_file, console=console, check=check,
                               tags=tags, extravars={"sfp_rotate_names": names}, verbose=verbose)


def _show(ctx: OrgContext) -> str:
    # Kept as a template: the plan fills in each rotated name.
    return ctx.command("secrets", "show", "--org", ctx.name, "NAME").replace("NAME", "{name}")


def check_grace_options(groups: list[Group], *, finish: bool, grace: timedelta | None, from_vault: bool) -> None:
    stepped = [g.name for g in groups if g.steps]
    if stepped and len(groups) > 1:
        raise UsageError(f"{', '.join(stepped)} is rotated in steps and on its own",
                         "rotate it in a command of its own; nothing was changed")
    without = [g.name for g in groups if not g.grace]
    if (finish or grace is not None) and without:
        raise UsageError(f"{'--finish' if finish else '--grace'} applies to a group whose old values stay valid for a "
                         f"grace period; {', '.join(without)} has none",
                         f"those groups: {', '.join(n for n, g in rotation_groups.GROUPS.items() if g.grace)}; "
                         "nothing was changed")
    if finish and (grace is not None or from_vault):
        raise UsageError("--finish takes neither --grace nor --from-vault", "nothing was changed")


def plan(ctx: OrgContext, groups: list[Group], console: Console, *, verbose: bool = False,
         finish: bool = False) -> rotation_plan.RotationPlan:
    """What rotating `groups` (or, with `finish`, ending their grace period) changes on the org,
    changing nothing (the playbook runs in check mode)."""
    names = rotation_groups.names_finished(groups) if finish else secret_names(groups)
    result = _run(ctx, console, verbose, ["plan"], names, check=True)
    runner.require_success(result, f"planning the rotation of {ctx.name}'s {', '.join(names)}")
    section = result.reports.get(ctx.name, {}).get("rotation_plan", {}).get("msg")
    if not isinstance(section, dict):
        raise SfpError(f"the rotation plan of {ctx.name} reported nothing", "run it again with -v to see the tasks")
    built = rotation_plan.build(ctx.name, groups, section, backup_first=bool(ctx.settings.get("backup")), show=_show(ctx),
                                key_file=ctx.command("backup", "key", "--org", ctx.name))
    built.finish = finish
    built.kept = {g.name: rotation_groups.grace_ends(g, ctx.secrets) for g in groups if g.grace}
    return built


def rotate(ctx: OrgContext, groups: list[Group], console: Console, *, verbose: bool = False,
           say: Callable[[str], None] | None = None, chosen: dict[str, str] | None = None,
           from_vault: bool = False, confirm: str | None = None, grace: timedelta | None = None,
           finish: bool = False) -> RotationOutcome:
    """Rotate `groups` on the org. `chosen`: values the caller picked instead of generated ones (a
    password a policy hands out; the tests' crafted values). `from_vault`: make no new values, apply
    those the vault holds (after an interrupted rotation, or values put there by hand). A group that
    breaks clients at once (`Group.confirm`) needs `confirm` to be the org's name. A group whose old
    values stay valid for a while (`Group.grace`) keeps them for `grace` (default: the group's);
    `finish` ends that grace period now: the old values stop working. A group rotated in steps
    (`Group.steps`: the signing key) writes and applies each step before the next; a failure in any
    puts the values before the first back."""
    say = say or (lambda _m: None)
    started = time.monotonic()
    check_grace_options(groups, finish=finish, grace=grace, from_vault=from_vault)
    grace = grace_for(ctx, groups, grace)
    if finish and not any(rotation_groups.in_grace(g, ctx.secrets) for g in groups):
        return RotationOutcome(ctx.name, [], "nothing", seconds=time.monotonic() - started)
    unconfirmed = [g for g in groups if g.confirm]
    if unconfirmed and confirm != ctx.name and not from_vault:
        raise UsageError(f"rotating {', '.join(g.name for g in unconfirmed)} of {ctx.name}: "
                         + "; ".join(g.breaks for g in unconfirmed),
                         f"pass --confirm {ctx.name} to go ahead (`--plan` shows the rest); nothing was changed")
    the_plan = plan(ctx, groups, console, verbose=verbose, finish=finish)
    names = the_plan.names
    unknown = sorted(set(chosen or {}) - set(names))
    if unknown:
        raise SfpError(f"values given for {', '.join(unknown)}, which this rotation does not change",
                       f"it changes {', '.join(names)}; nothing was changed")
    outcome = RotationOutcome(ctx.name, names, "applied" if from_vault else "finished" if finish else "rotated",
                              recreated=the_plan.services, db_roles=the_plan.db_roles,
                              clients=[] if finish else the_plan.clients())
    if the_plan.backup_first:
        say(f"{ctx.name}: backup before the rotation")
        outcome.backup_set = backup_run.run_verified(ctx, console, verbose=verbose, say=say)

    old_values, old_ages = dict(ctx.secrets), read_secret_ages(ctx.inventory, ctx.name)
    # (label, values to write or None to apply the vault's, names to apply), in order.
    stages: list[tuple[str, dict[str, str] | None, list[str]]]
    if finish:
        new_values = dict(old_values)
        for group in groups:
            new_values = rotation_groups.finished(group, new_values)
        stages = [("finish", new_values, names)]
    elif from_vault:
        stages = [("apply", None, names)]
    else:
        stages = []
        now = datetime.now(UTC)
        new_values = dict(old_values)
        for group in groups:
            steps = rotation_groups.steps_of(group)
            for index, step in enumerate(steps):
                new_values = step.make(new_values)
                if group.grace and index == len(steps) - 1:
                    new_values = rotation_groups.with_grace(group, old_values, new_values, grace or timedelta(0), now)
                    outcome.grace_until = new_values[group.grace_until]
                if group.steps:
                    stages.append((step.label, dict(new_values), list(step.names)))
        new_values.update(chosen or {})
        if not stages:
            stages = [("rotate", new_values, names)]
        else:
            stages[-1] = (stages[-1][0], new_values, stages[-1][2])

    applied: list[str] = []
    applied_at = time.monotonic()
    for label, values, step_names in stages:
        if values is not None:
            ctx.write_secrets(values)
            say(f"{ctx.name}: {label}: new values of {', '.join(step_names)} in {ctx.inventory.vault_file(ctx.name)}")
        say(f"{ctx.name}: {label}: applying {', '.join(step_names)}"
            + (f" (recreating {', '.join(the_plan.services) or 'nothing'}; {', '.join(the_plan.untouched) or 'nothing else'} "
               "keep running)" if len(stages) == 1 else ""))
        applied = list(dict.fromkeys([*applied, *step_names]))
        result = _run(ctx, console, verbose, ["apply"], step_names)
        if not result.ok:
            break
    outcome.apply_seconds = time.monotonic() - applied_at
    if result.ok:
        outcome.seconds = time.monotonic() - started
        return outcome

    why = "; ".join(f"{task}: {msg}" for _h, task, msg in result.failures) or result.status
    if from_vault:
        raise RotationFailed(f"applying the vault's {', '.join(names)} to {ctx.name} failed: {why}",
                             f"see the containers' logs (`{ctx.command('logs', '--org', ctx.name)}`)"
                             + (f"; backup {outcome.backup_set} holds the state before" if outcome.backup_set else ""))
    say(f"{ctx.name}: the rotation failed ({why}); putting the old values back")
    ctx.write_secrets(old_values, known_ages=old_ages)
    back = _run(ctx, console, verbose, ["apply"], applied)
    if not back.ok:
        again = "; ".join(f"{task}: {msg}" for _h, task, msg in back.failures) or back.status
        raise RotationFailed(
            f"the rotation of {ctx.name}'s {', '.join(names)} failed ({why}) and so did putting the old values back ({again})",
            f"the vault holds the old values again; `{ctx.command('secrets', 'rotate', '--org', ctx.name, '--from-vault', *names)}` "
            "applies them once the cause is fixed"
            + (f"; backup {outcome.backup_set} holds the state before" if outcome.backup_set else ""))
    raise RotationFailed(f"the rotation of {ctx.name}'s {', '.join(names)} failed and was undone: {why}",
                         f"{ctx.name} runs with its old values again; see the containers' logs "
                         f"(`{ctx.command('logs', '--org', ctx.name)}`) for the cause")


def grace_for(ctx: OrgContext, groups: list[Group], grace: timedelta | None) -> timedelta | None:
    """The grace period to keep replaced values for: the one asked for, or the groups' default. A
    signing key must verify the sessions it signed until they expire: its grace outlasts the org's
    session lifetime (sfp_org.auth.jwt_expiry)."""
    if not any(g.grace for g in groups):
        return grace
    chosen = grace or max(g.grace for g in groups if g.grace)
    if any(g.grace_outlasts_sessions for g in groups):
        lifetime = timedelta(seconds=int((ctx.settings.get("auth") or {}).get("jwt_expiry", 3600)))
        if grace is not None and grace <= lifetime:
            raise UsageError(f"--grace {grace} is not longer than the org's session lifetime ({lifetime}, "
                             "sfp_org.auth.jwt_expiry): sessions signed with the old key would stop working",
                             "give a longer --grace; nothing was changed")
        chosen = max(chosen, lifetime + timedelta(hours=1))
    return chosen
