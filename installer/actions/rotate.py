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

from rich.console import Console

from .. import runner
from ..context import OrgContext, read_secret_ages
from ..errors import SfpError, UsageError
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
    """rotated, applied (--from-vault)"""
    recreated: list[str] = field(default_factory=list)
    db_roles: list[str] = field(default_factory=list)
    backup_set: str | None = None
    apply_seconds: float = 0.0
    """From the first change on the host to the end of the smoke checks: the longest the org may
    have been less than fully healthy."""
    seconds: float = 0.0
    clients: list[str] = field(default_factory=list)


def _run(ctx: OrgContext, console: Console, verbose: bool, tags: list[str], names: list[str],
         check: bool = False) -> runner.RunResult:
    inv = ctx.inventory
    return runner.run_playbook(PLAYBOOK, inv.path, [ctx.name], inv.vault_password_file, console=console, check=check,
                               tags=tags, extravars={"sfp_rotate_names": names}, verbose=verbose)


def _show(ctx: OrgContext) -> str:
    # Kept as a template: the plan fills in each rotated name.
    return ctx.command("secrets", "show", "--org", ctx.name, "NAME").replace("NAME", "{name}")


def plan(ctx: OrgContext, groups: list[Group], console: Console, *, verbose: bool = False) -> rotation_plan.RotationPlan:
    """What rotating `groups` changes on the org, changing nothing (the playbook runs in check mode)."""
    names = secret_names(groups)
    result = _run(ctx, console, verbose, ["plan"], names, check=True)
    runner.require_success(result, f"planning the rotation of {ctx.name}'s {', '.join(names)}")
    section = result.reports.get(ctx.name, {}).get("rotation_plan", {}).get("msg")
    if not isinstance(section, dict):
        raise SfpError(f"the rotation plan of {ctx.name} reported nothing", "run it again with -v to see the tasks")
    return rotation_plan.build(ctx.name, groups, section, backup_first=bool(ctx.settings.get("backup")), show=_show(ctx),
                              key_file=ctx.command("backup", "key", "--org", ctx.name))


def rotate(ctx: OrgContext, groups: list[Group], console: Console, *, verbose: bool = False,
           say: Callable[[str], None] | None = None, chosen: dict[str, str] | None = None,
           from_vault: bool = False, confirm: str | None = None) -> RotationOutcome:
    """Rotate `groups` on the org. `chosen`: values the caller picked instead of generated ones (a
    password a policy hands out; the tests' crafted values). `from_vault`: make no new values, apply
    those the vault holds (after an interrupted rotation, or values put there by hand). A group that
    breaks clients at once (`Group.confirm`) needs `confirm` to be the org's name."""
    say = say or (lambda _m: None)
    started = time.monotonic()
    unconfirmed = [g for g in groups if g.confirm]
    if unconfirmed and confirm != ctx.name and not from_vault:
        raise UsageError(f"rotating {', '.join(g.name for g in unconfirmed)} of {ctx.name}: "
                         + "; ".join(g.breaks for g in unconfirmed),
                         f"pass --confirm {ctx.name} to go ahead (`--plan` shows the rest); nothing was changed")
    the_plan = plan(ctx, groups, console, verbose=verbose)
    names = the_plan.names
    unknown = sorted(set(chosen or {}) - set(names))
    if unknown:
        raise SfpError(f"values given for {', '.join(unknown)}, which this rotation does not change",
                       f"it changes {', '.join(names)}; nothing was changed")
    outcome = RotationOutcome(ctx.name, names, "applied" if from_vault else "rotated", recreated=the_plan.services,
                              db_roles=the_plan.db_roles, clients=the_plan.clients())
    if the_plan.backup_first:
        say(f"{ctx.name}: backup before the rotation")
        outcome.backup_set = backup_run.run_verified(ctx, console, verbose=verbose, say=say)

    old_values, old_ages = dict(ctx.secrets), read_secret_ages(ctx.inventory, ctx.name)
    if not from_vault:
        new_values = dict(old_values)
        for group in groups:
            new_values = group.make(new_values)
        new_values.update(chosen or {})
        ctx.write_secrets(new_values)
        say(f"{ctx.name}: new {', '.join(names)} in {ctx.inventory.vault_file(ctx.name)}")
    say(f"{ctx.name}: applying; recreating {', '.join(the_plan.services) or 'nothing'}; "
        f"{', '.join(the_plan.untouched) or 'nothing else'} keep running")
    applied_at = time.monotonic()
    result = _run(ctx, console, verbose, ["apply"], names)
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
    back = _run(ctx, console, verbose, ["apply"], names)
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
