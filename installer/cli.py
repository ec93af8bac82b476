"""The `sfp-server` command: argument parsing and output only; the work is in `installer.actions`."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__, catalog, validate
from .actions import deploy
from .actions import init as init_action
from .actions import secrets as secrets_action
from .actions import status as status_action
from .commands.backup import COMMANDS as backup_commands
from .commands.common import Context, program
from .commands.logs import logs as logs_group
from .commands.rotate import rotate as rotate_command
from .commands.sso import sso as sso_group
from .commands.upgrade import upgrade as upgrade_command
from .errors import SfpError
from .inventory import select
from .runner import require_success

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


class SfpGroup(click.Group):
    """Turns SfpError into its message and exit code, for the console script and CliRunner alike."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.Abort:
            err.print("aborted")
            sys.exit(130)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except SfpError as exc:
            err.print("[red]error:[/red] ", end="")
            err.print(exc.message, markup=False, soft_wrap=True)
            if exc.hint:
                err.print(f"  → {exc.hint}", markup=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted")
            sys.exit(130)
        # Without standalone mode click returns the code of an early exit (--help, --version).
        sys.exit(code if isinstance(code, int) else 0)


pass_ctx = click.make_pass_decorator(Context)

org_option = click.option("--org", "orgs", multiple=True, metavar="ORG", help="Org to act on (repeatable).")
all_option = click.option("--all", "all_orgs", is_flag=True, help="Act on every org in the inventory.")


@click.group(cls=SfpGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-i", "--inventory", type=click.Path(path_type=Path), default="inventory", envvar="SFP_INVENTORY",
    show_default=True, help="Inventory directory (env SFP_INVENTORY).",
)
@click.option(
    "--vault-password-file", envvar="SFP_VAULT_PASSWORD_FILE", metavar="FILE",
    help="Vault password file or script (env SFP_VAULT_PASSWORD_FILE; default INVENTORY/.vault-pass).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show every task, not only changes and failures.")
@click.version_option(__version__, prog_name="sfp-server")
@click.pass_context
def cli(ctx: click.Context, inventory: Path, vault_password_file: str | None, verbose: bool) -> None:
    """Install and run self-hosted Supabase, one isolated instance per organization."""
    given = ctx.get_parameter_source
    global_args = ["-i", str(inventory)] if given("inventory") == ParameterSource.COMMANDLINE else []
    if vault_password_file and given("vault_password_file") == ParameterSource.COMMANDLINE:
        global_args += ["--vault-password-file", vault_password_file]
    ctx.obj = Context(inventory, vault_password_file, verbose, global_args)


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path), default="inventory")
def init(directory: Path) -> None:
    """Create an inventory DIRECTORY from the example, with a new vault password."""
    made = init_action.init_inventory(directory)
    for path in made:
        out.print(f"created {path}")
    preflight = escape(shlex.join([*program(), "-i", str(directory), "preflight", "--all"]))
    out.print(f"next: edit {directory}/hosts.yml and {directory}/host_vars/*/main.yml, then `{preflight}`")


@cli.command("validate")
@org_option
@click.pass_obj
def validate_cmd(obj: Context, orgs: tuple[str, ...]) -> None:
    """Check the inventory without touching any host."""
    inv = obj.inventory()
    checked = validate.validate(inv, select(inv, orgs, False) if orgs else None)
    out.print(f"[green]inventory is valid[/green]: {', '.join(o.name for o in checked)}")


@cli.command()
def releases() -> None:
    """List the upstream releases this toolkit can run."""
    table = Table("release", "upstream", "postgres", "image catalogs")
    for rid in catalog.release_ids():
        rel = catalog.load_release(rid)
        table.add_row(rid, rel.upstream.get("ref", rel.upstream.get("commit", "")), str(rel.postgres_major), ", ".join(catalog.image_catalog_ids()))
    out.print(table)


@cli.command()
@org_option
@all_option
@click.pass_obj
def preflight(obj: Context, orgs: tuple[str, ...], all_orgs: bool) -> None:
    """Check every target host before anything changes: one line per check."""
    inv = obj.inventory()
    names = select(inv, orgs, all_orgs or not orgs)
    result = deploy.preflight(inv, names, err, obj.verbose)
    checks = deploy.preflight_checks(result)
    bad = False
    for org in names:
        for c in checks.get(org, []):
            status = str(c.get("status", "?"))
            colour = {"ok": "green", "warn": "yellow"}.get(status, "red")
            bad |= status == "fail"
            out.print(f"[{colour}]{status.upper():>4}[/{colour}] {org:<16} {c.get('check', ''):<18} {c.get('detail', '')}")
        if org not in checks:
            bad = True
            out.print(f"[red]FAIL[/red] {org:<16} {'host':<18} no checks ran (see the failure above)")
    if bad or not result.ok:
        raise SfpError("preflight found problems", "fix the FAIL lines above; nothing was changed")
    out.print("[green]preflight passed[/green]")


@cli.command()
@org_option
@all_option
@click.option("--check", is_flag=True, help="Dry run (Ansible check mode): show what would change.")
@click.pass_obj
def install(obj: Context, orgs: tuple[str, ...], all_orgs: bool, check: bool) -> None:
    """Install or update org stacks; safe to re-run (an unchanged org reports changed=0)."""
    inv = obj.inventory()
    names = select(inv, orgs, all_orgs)
    outcome = deploy.install(inv, names, err, check=check, verbose=obj.verbose)
    for org, added in outcome.generated.items():
        out.print(f"generated {len(added)} secrets for {org} (kept encrypted in {inv.vault_file(org)})")
    require_success(outcome.result, "install")
    for summary in outcome.orgs:
        info = summary.info
        out.print(f"\n[bold]{summary.org}[/bold] ({info.get('release')}, {len(info.get('services', []))} services)")
        out.print(f"  API gateway   {info.get('api_url')}   (public URL {info.get('public_url')})")
        show = obj.command("secrets", "show", "--org", summary.org)
        out.print(f"  Studio        {info.get('api_url')}/")
        out.print(f"    user        `{show} DASHBOARD_USERNAME`")
        out.print(f"    password    `{show} DASHBOARD_PASSWORD`")
        out.print(f"  Postgres      {info.get('postgres')} (session), {info.get('pooler_transaction')} (transaction)")
        out.print(f"  API keys      `{show} ANON_KEY` (kept in {inv.vault_file(summary.org)})")
        out.print(f"  Files on host {info.get('org_dir')}")
    out.print(f"\nchanged={outcome.result.changed} " + " ".join(f"{h}:ok={s.ok},changed={s.changed}" for h, s in sorted(outcome.result.stats.items())))


@cli.command()
@org_option
@all_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(obj: Context, orgs: tuple[str, ...], all_orgs: bool, as_json: bool) -> None:
    """One row per org: host, release (and its last upgrade or rollback), each service's state and health."""
    inv = obj.inventory()
    names = select(inv, orgs, all_orgs or not orgs)
    rows = status_action.gather(inv, names, err)
    # Secrets past the org's maximum age (sfp_org.secrets.max_age_days): read from the vault here,
    # on the controller; the host knows nothing of them.
    contexts = {r.org: obj.org(r.org) for r in rows}
    stale = {org: secrets_action.too_old(ctx) for org, ctx in contexts.items()}
    overdue = {org: secrets_action.grace_ended(ctx) for org, ctx in contexts.items()}
    if as_json:
        click.echo(json.dumps([{**r.as_dict(), "secrets_too_old": [a.name for a in stale[r.org]],
                                "grace_ended": [g for g, _at in overdue[r.org]]} for r in rows], indent=2))
    else:
        backups = any(r.last_backup_success for r in rows)
        doors = any(r.frontdoor for r in rows)
        table = Table("org", "host", "release", "state", "services", *(["last backup"] if backups else []),
                      *(["front door"] if doors else []))
        for r in rows:
            services = " ".join(
                f"{s.service}:{s.health or s.state}" if s.health or s.state != "running" else f"{s.service}:running"
                for s in r.services
            )
            last = [status_action.backup_summary(r)] if backups else []
            last += [status_action.frontdoor_summary(r)] if doors else []
            release = r.release or "-"
            if r.history:  # the last upgrade or rollback, so an operator sees at once how the org got here
                h = r.history[-1]
                at = str(h.get("at", ""))[:16]
                if h.get("action") == "finish":
                    release += f"\n(upgrade kept, {at})"
                else:
                    release += f"\n({h.get('action')} from {h.get('from')}, {at}"
                    if h.get("action") == "upgrade" and h.get("keep_until"):
                        release += f"; rollback until {str(h['keep_until'])[:10]}"
                    release += ")"
            table.add_row(r.org, r.machine, release, r.verdict, services or (r.error or "-"), *last)
        out.print(table)
        for org, old in stale.items():
            if old:
                limit = contexts[org].settings["secrets"]["max_age_days"]
                listed = ", ".join(f"{a.name} ({a.age_days:.0f} days)" for a in old[:5]) + (", …" if len(old) > 5 else "")
                err.print(f"warning: {org}: {len(old)} secret(s) older than {limit} days (sfp_org.secrets.max_age_days): "
                          f"{listed}; see `{obj.command('secrets', 'age', '--org', org)}`", markup=False)
        for org, ended in overdue.items():
            for group, at in ended:
                err.print(f"warning: {org}: the grace period of the {group} replaced by the last rotation ended "
                          f"{at:%Y-%m-%d %H:%M} UTC and the vault still holds them: remove them with "
                          f"`{obj.command('secrets', 'rotate', '--org', org, '--finish', group)}`", markup=False)
    if any(r.verdict in ("degraded", "unreachable") for r in rows):
        sys.exit(1)


@cli.command()
@org_option
@click.option("--purge", is_flag=True, help="Also delete the org's data (database, storage objects, config).")
@click.option("--confirm", metavar="ORG", help="With --purge and no terminal: repeat the org name to confirm.")
@click.pass_obj
def uninstall(obj: Context, orgs: tuple[str, ...], purge: bool, confirm: str | None) -> None:
    """Stop and remove an org's stack; its data stays unless --purge is confirmed."""
    inv = obj.inventory()
    names = select(inv, orgs, False)
    if purge:
        for name in names:
            answer = confirm
            if answer is None:
                if not sys.stdin.isatty():
                    raise SfpError("--purge deletes data and needs confirmation", f"pass --confirm {name} (or run on a terminal)")
                answer = click.prompt(f"This deletes all data of {name!r}. Type the org name to confirm")
            if answer != name:
                raise SfpError(f"confirmation {answer!r} does not match org {name!r}", "nothing was removed")
    result = deploy.uninstall(inv, names, err, purge=purge, verbose=obj.verbose)
    require_success(result, "uninstall")
    for name in names:
        out.print(f"{name}: removed" + (" with its data" if purge else f"; data kept under the org directory (reinstall with `{obj.command('install', '--org', name)}`)"))


@cli.group()
def secrets() -> None:
    """The org's secrets (kept ansible-vault encrypted in the inventory)."""


@secrets.command("ensure")
@org_option
@all_option
@click.pass_obj
def secrets_ensure(obj: Context, orgs: tuple[str, ...], all_orgs: bool) -> None:
    """Generate the secrets an org lacks; existing secrets are never changed."""
    inv = obj.inventory()
    for name in select(inv, orgs, all_orgs):
        added = secrets_action.ensure(inv, name)
        out.print(f"{name}: " + (f"generated {', '.join(added)}" if added else "all secrets present"))


@secrets.command("age")
@org_option
@all_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def secrets_age(obj: Context, orgs: tuple[str, ...], all_orgs: bool, as_json: bool) -> None:
    """When each secret was made or last changed, and which are older than sfp_org.secrets.max_age_days."""
    inv = obj.inventory()
    report = {name: secrets_action.age(obj.org(name)) for name in select(inv, orgs, all_orgs)}
    if as_json:
        click.echo(json.dumps({org: [vars(a) for a in ages] for org, ages in report.items()}, indent=2))
        return
    for org, ages in report.items():
        limit = obj.org(org).settings["secrets"]["max_age_days"]
        table = Table("secret", "made or changed (UTC)", "age", title=f"{org} (maximum {limit} days)", title_justify="left")
        for a in ages:
            age = "unknown" if a.age_days is None else f"{a.age_days:.0f} days" + (" (too old)" if a.too_old else "")
            table.add_row(a.name, a.changed_at or "before ages were kept", age)
        out.print(table)


@secrets.command("list")
@click.option("--org", required=True)
@click.pass_obj
def secrets_list(obj: Context, org: str) -> None:
    """Names of the org's secrets (never their values)."""
    inv = obj.org(org).inventory
    for name, description in secrets_action.names(inv, org):
        out.print(f"{name:<32} {description}")


@secrets.command("show")
@click.option("--org", required=True)
@click.argument("name")
@click.pass_obj
def secrets_show(obj: Context, org: str, name: str) -> None:
    """Print one secret's value (only the value, for piping)."""
    click.echo(secrets_action.show(obj.org(org), name))


@secrets.command("set")
@click.option("--org", required=True)
@click.argument("name")
@click.option("--from-file", type=click.File("r"), default="-", help="Read the value from FILE (default: standard input).")
@click.pass_obj
def secrets_set(obj: Context, org: str, name: str, from_file: Any) -> None:
    """Set an operator-owned secret such as SMTP_PASS; the value is read, never passed as an argument."""
    inv = obj.org(org).inventory
    secrets_action.set_value(inv, org, name, from_file.read().rstrip("\n"))
    out.print(f"{org}: {name} stored in {inv.vault_file(org)}; run `{obj.command('install', '--org', org)}` to apply it")


secrets.add_command(rotate_command)
cli.add_command(sso_group)
cli.add_command(logs_group)
cli.add_command(upgrade_command)
for command in backup_commands:  # `backup …` and `restore`
    cli.add_command(command)


def main() -> None:
    cli.main()


if __name__ == "__main__":
    main()
