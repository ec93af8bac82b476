"""`sfp-server secrets rotate`: see installer/actions/rotate.py for what each step does."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.markup import escape

from ..actions import rotate as rotate_action
from ..rotation.groups import GROUPS, parse_grace
from ..rotation.groups import select as select_groups
from ..rotation.plan import RotationPlan
from .common import Context

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def _print_plan(p: RotationPlan) -> None:
    verb = "end the grace period of" if p.finish else "rotate"
    out.print(f"[bold]{p.org}[/bold]: {verb} {', '.join(p.names)} ({', '.join(g.name for g in p.groups)})")
    for g in p.groups:
        if not p.finish:
            out.print(f"  does     {escape(g.does)}")
    if p.db_roles:
        out.print(f"  roles    {', '.join(p.db_roles)} get the new password")
    if p.db_stale:
        out.print(f"  [yellow]warning[/yellow]  the vault's password does not open {', '.join(p.db_stale)} now: a rotation "
                  "stopped half-way; `secrets rotate --from-vault` applies the vault's value")
    out.print(f"  backup   {'a verified backup set first' if p.backup_first else 'none (the org has no backup block)'}")
    out.print(f"  recreate {', '.join(p.services) or 'nothing'}")
    out.print(f"  untouched {', '.join(p.untouched) or 'nothing'}")
    out.print(f"  downtime {escape(p.downtime)}")
    for line in p.as_dict()["breaks"]:
        out.print(f"  [red]breaks[/red]   {escape(line)}")
    for line in [] if p.finish else p.clients():
        out.print(f"  clients  {line}")


@click.command("rotate")
@click.option("--org", required=True, metavar="ORG", help="The org whose secrets change.")
@click.argument("names", nargs=-1, metavar="GROUP|NAME...")
@click.option("--plan", "plan_only", is_flag=True, help="Say what would change, restart and who needs new values; change nothing.")
@click.option("--from-vault", is_flag=True,
              help="Make no new values: apply those the vault holds (an interrupted rotation, a value put there by hand).")
@click.option("--confirm", metavar="ORG", help="Go ahead with a rotation that breaks clients at once (legacy-jwt-secret).")
@click.option("--grace", metavar="DURATION",
              help="How long the replaced values keep working (api-keys: default 7d; jwt-signing-key: default 1d, "
                   "longer than the org's session lifetime); such as 12h or 7d.")
@click.option("--finish", is_flag=True, help="End the grace period now: the values the last rotation replaced stop working.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan or the outcome as JSON.")
@click.pass_obj
def rotate(obj: Context, org: str, names: tuple[str, ...], plan_only: bool, from_vault: bool, confirm: str | None,
           grace: str | None, finish: bool, as_json: bool) -> None:
    """Give an org's secrets new values and apply them to the running org.

    Groups: db-password (the database password of postgres and the service roles), dashboard
    (Studio's basic-auth password), api-keys (the publishable and secret keys; the replaced ones
    keep working for --grace, until --finish or the next rotation), service-keys (the keys between
    the org's services, Storage's S3 protocol keys and Analytics' tokens), recovery-key (the backup
    recovery key), jwt-signing-key (the EC key that signs sessions and the ES256 keys, in two
    steps; the old key verifies for --grace), legacy-jwt-secret (the HS256 secret and the keys made from it;
    needs --confirm ORG: the keys in use stop working at once). A verified
    backup comes first when the org has a backup block; when a service fails its health check the
    old values come back. Exit codes: 0 done, 1 failed (the org runs its old values), 2 bad arguments.
    """
    if not names:
        raise click.UsageError(f"name what to rotate: one of {', '.join(GROUPS)}")
    if plan_only and from_vault:
        raise click.UsageError("--plan and --from-vault exclude each other")
    groups = select_groups(names)
    period = parse_grace(grace) if grace is not None else None
    rotate_action.check_grace_options(groups, finish=finish, grace=period, from_vault=from_vault)
    ctx = obj.org(org, check=True)
    if plan_only:
        p = rotate_action.plan(ctx, groups, err, verbose=obj.verbose, finish=finish)
        if as_json:
            out.print(json.dumps(p.as_dict(), indent=2))
        else:
            _print_plan(p)
        return
    say = (lambda m: err.print(escape(m))) if not as_json else (lambda _m: None)
    done = rotate_action.rotate(ctx, groups, err, verbose=obj.verbose, say=say, from_vault=from_vault, confirm=confirm,
                                grace=period, finish=finish)
    if as_json:
        out.print(json.dumps(vars(done)))
        return
    if done.result == "nothing":
        out.print(f"{done.org}: no replaced values are kept for {', '.join(g.name for g in groups)}; nothing to finish")
        return
    out.print(f"{done.org}: {', '.join(done.secrets)} {done.result} in {done.seconds:.0f} s "
              f"(services recreated and checked in {done.apply_seconds:.0f} s: {', '.join(done.recreated) or 'none'})")
    for line in done.clients:
        out.print(f"  give the new value to {line}")
    if done.grace_until:
        out.print(f"  the replaced values keep working until {done.grace_until}; end that sooner with "
                  f"`{ctx.command('secrets', 'rotate', '--org', done.org, '--finish', *[g.name for g in groups])}`")
