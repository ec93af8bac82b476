"""`sfp-server upgrade`: see installer/actions/upgrade.py for what each step does."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.markup import escape

from .. import catalog
from ..actions import upgrade as upgrade_action
from ..errors import SfpError
from ..inventory import select
from ..upgrade.plan import OrgPlan
from .common import Context

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def _print_plan(p: OrgPlan, show_diffs: bool) -> None:
    verdict = "[green]can upgrade[/green]" if p.ok else "[red]cannot upgrade[/red]"
    out.print(f"[bold]{p.org}[/bold]: {p.current or 'not installed'} -> {p.target}  ({verdict})")
    out.print(f"  PostgreSQL {p.postgres_before} -> {p.postgres_after}")
    for c in p.images:
        out.print(f"  image  {c.service:<10} {c.before or '-'} -> {c.after or '-'}")
    for path in p.files:
        out.print(f"  file   {escape(path)}")
    if p.env_changed:
        out.print("  file   .env (secrets and settings passed as variables; not shown)")
    out.print(f"  restart {', '.join(p.restarts) or 'nothing'}")
    if p.migrates:
        out.print(f"  migrate {', '.join(p.migrates)} change the database at start: a rollback restores the pre-upgrade backup")
    out.print(f"  downtime: {p.downtime}")
    for release, note in p.notes:
        out.print(f"  note   {release} [{note.kind}] {escape(note.text)}")
    for c in p.checks:
        colour = {"ok": "green", "warn": "yellow"}.get(c.get("status", ""), "red")
        out.print(f"  [{colour}]{c.get('status', '?').upper():>4}[/{colour}]   {c.get('check', ''):<10} {escape(c.get('detail', ''))}")
    for problem in p.problems:
        out.print(f"  [red]problem[/red] {escape(problem)}")
    if show_diffs:
        for path, diff in p.diffs.items():
            out.print(f"--- {escape(path)}")
            out.print(escape(diff), end="")


@click.command()
@click.option("--org", "orgs", multiple=True, metavar="ORG", help="Org to upgrade (repeatable).")
@click.option("--all", "all_orgs", is_flag=True, help="Every org of the inventory, one at a time (or --serial N).")
@click.option("--to", "target", metavar="RELEASE", help="Target release (`sfp-server releases` lists them).")
@click.option("--plan", "plan_only", is_flag=True, help="Show what would change and run the pre-checks; change nothing.")
@click.option("--diff", "show_diffs", is_flag=True, help="With --plan: show each rendered file's diff.")
@click.option("--serial", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Upgrade N orgs at once; the orgs after a batch in which one fails are not started.")
@click.option("--rollback", is_flag=True, help="Return the org to the release and data it had before its last upgrade.")
@click.option("--finish", is_flag=True,
              help="Keep the last upgrade: release its pre-upgrade backup to the retention; no rollback after.")
@click.option("--json", "as_json", is_flag=True, help="Print the plans or outcomes as JSON.")
@click.pass_obj
def upgrade(obj: Context, orgs: tuple[str, ...], all_orgs: bool, target: str | None, plan_only: bool,
            show_diffs: bool, serial: int, rollback: bool, finish: bool,
            as_json: bool) -> None:
    """Upgrade orgs to a newer release: plan, pre-upgrade backup, health gates, automatic rollback.

    Exit codes: 0 done (or, with --plan, the upgrade can go ahead), 1 a pre-check failed or the
    upgrade was rolled back, 2 bad arguments.
    """
    if not orgs and not all_orgs:
        raise click.UsageError("no org given: pass --org ORG (repeatable) or --all")
    if rollback and finish:
        raise click.UsageError("--rollback and --finish exclude each other: roll back, or keep the upgrade")
    if rollback or finish:
        flag = "--rollback" if rollback else "--finish"
        if target or plan_only or all_orgs or len(orgs) != 1 or serial != 1:
            raise click.UsageError(f"{flag} takes exactly one --org and no --to, --plan, --all or --serial: "
                                   f"run `sfp-server upgrade --org ORG {flag}`")
    elif not target:
        raise click.UsageError(f"no target release: pass --to RELEASE, one of: {', '.join(catalog.release_ids())}")
    inv = obj.inventory()
    names = select(inv, orgs, all_orgs)
    say = (lambda m: err.print(escape(m))) if not as_json else (lambda _m: None)
    if finish:
        entry = upgrade_action.finish(obj.org(names[0], check=True), err, verbose=obj.verbose)
        out.print(json.dumps(entry) if as_json else
                  f"{names[0]}: stays on {entry['to']}; backup {', '.join(entry['backup_sets'])} left to the retention, "
                  "no rollback")
        return
    if rollback:
        done = upgrade_action.rollback(obj.org(names[0], check=True), err, verbose=obj.verbose, say=say)
        out.print(json.dumps(vars(done)) if as_json else f"{done.org}: back on {done.after} with the data of backup {done.backup_set}")
        return
    assert target is not None
    contexts = [obj.org(name, check=True, inventory=inv) for name in names]
    for ctx in contexts:
        known = catalog.release_ids(str(ctx.machine_settings.get("sfp_image_catalog") or "upstream"))
        if target not in known:
            raise click.UsageError(f"--to: unknown release {target!r} for {ctx.name}: use one of: {', '.join(known)}")
    if plan_only:
        plans = [upgrade_action.plan(ctx, target, err, verbose=obj.verbose) for ctx in contexts]
        if as_json:
            out.print(json.dumps([p.as_dict() for p in plans], indent=2))
        else:
            for p in plans:
                _print_plan(p, show_diffs)
        if not all(p.ok for p in plans):
            raise SfpError("a pre-check failed", "fix the problems listed above; nothing was changed")
        return
    fleet = upgrade_action.upgrade_fleet(contexts, target, err, serial=serial, verbose=obj.verbose, say=say)
    # The summary says where every org stands, also when one failed and the rest were not started.
    if as_json:
        out.print(json.dumps({"outcomes": [vars(o) for o in fleet.outcomes],
                              "failed": [{"org": name, "error": exc.message} for name, exc in fleet.failed],
                              "not_started": fleet.not_started}))
    else:
        for o in fleet.outcomes:
            out.print(f"{o.org}: {o.result} ({o.before} -> {o.after}; restarted {', '.join(o.restarted) or 'nothing'})")
        for name, exc in fleet.failed:
            out.print(f"{name}: failed: {escape(exc.message)}")
        for name in fleet.not_started:
            out.print(f"{name}: not started (an org before it failed)")
    if fleet.failed:
        if len(fleet.failed) == 1:
            raise fleet.failed[0][1]
        first = fleet.failed[0][1]
        raise type(first)(f"{len(fleet.failed)} orgs failed: {', '.join(name for name, _ in fleet.failed)} (each named above)",
                          first.hint)
