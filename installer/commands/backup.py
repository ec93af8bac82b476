"""`sfp-server backup …` and `sfp-server restore`: scheduled-backup companions and disaster recovery.

Argument parsing and output only; the work is in installer.actions.backup. The recovery key is
printed only by `backup key` (on request, like `secrets show`, in a key file that also holds the
signing public key); the signing key's private half and S3 keys are never printed.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..actions import backup_keys, backup_run
from ..actions import restore as restore_action
from ..actions import status as status_action
from ..backup_job import future_warning, human, raise_on_sigterm
from ..errors import SfpError
from .common import Context

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

org_required = click.option("--org", required=True, metavar="ORG", help="The org whose backups are meant.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
identity_option = click.option("--identity-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                               help="The key file kept offline, as `backup key` wrote it: recovery key and signing "
                                    "public key (default: the org's vault).")
allow_unsigned_option = click.option(
    "--allow-unsigned", is_flag=True,
    help="Also accept a set that has no signature (made before sets were signed). Anyone who can write to the "
         "bucket can make such a set: use only for a set you know is yours. A set whose signature fails is always refused.")


def _unsigned_warning(set_id: str) -> None:
    err.print(f"[bold red]WARNING:[/bold red] set {set_id} has NO signature: nothing proves this org's backup job made it "
              "(accepted only because of --allow-unsigned)")


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else "-"


@click.group("backup")
def backup() -> None:
    """Encrypted backups of an org to S3-compatible storage: run, list, show, verify, prune, key."""


@backup.command("run")
@org_required
@json_option
@click.pass_obj
def run_cmd(obj: Context, org: str, as_json: bool) -> None:
    """Back up the org now (database, storage files, settings and secrets), then apply retention."""
    raise_on_sigterm()
    ctx = obj.org(org, check=True)
    outcome = backup_run.run(ctx, err, verbose=obj.verbose, progress=lambda m: err.print(f"  {m}", markup=False))
    if as_json:
        click.echo(json.dumps(outcome.as_dict(), indent=2))
        return
    for w in outcome.warnings:
        err.print(f"[yellow]warning:[/yellow] {w}")
    out.print(f"[bold]{org}[/bold]: backup [bold]{outcome.set_id}[/bold] complete")
    out.print(f"  size        {human(outcome.size)} ({outcome.size} bytes, {outcome.objects} objects)")
    out.print(f"  duration    {outcome.seconds:.1f}s")
    out.print(f"  throughput  {human(outcome.throughput)}/s")
    out.print(f"  pruned      {', '.join(outcome.pruned) or 'none'}")


@backup.command("list")
@org_required
@json_option
@click.pass_obj
def list_cmd(obj: Context, org: str, as_json: bool) -> None:
    """The org's sets, oldest first (incomplete ones are marked; they cannot be restored)."""
    sets = backup_run.list_sets(obj.org(org))
    if as_json:
        click.echo(json.dumps([{"set_id": s.set_id, "created": _when(s.created), "complete": s.complete,
                                "verified_at": _when(s.verified_at) if s.verified_at else None,
                                "size_bytes": s.size, "objects": s.objects, "future": s.future} for s in sets], indent=2))
        return
    if not sets:
        out.print(f"{org}: no backups yet (`{obj.command('backup', 'run', '--org', org)}`)")
        return
    out.print(sets_table(sets))
    for s in sets:
        if s.future:
            err.print(f"[yellow]warning:[/yellow] set {s.set_id} is dated in the future: it is never taken as latest; "
                      "check the clock of the host that made it, or whether someone else wrote it (`backup verify ID`)")


def sets_table(sets: list[Any]) -> Table:
    """The operator copies the set id into `restore --backup ID`: its column is as wide as the longest
    id shown and never wraps or truncates; in a narrow terminal the other columns wrap instead."""
    table = Table()
    table.add_column("set", no_wrap=True, min_width=max((len(s.set_id) for s in sets), default=0))
    for header in ("created", "state", "verified", "size", "objects"):
        table.add_column(header, overflow="fold")  # wrapped, never cut off
    for s in sets:
        state = "complete" if s.complete else "[red]incomplete[/red]"
        if getattr(s, "future", False):
            state += " [red]future-dated[/red]"
        table.add_row(s.set_id, _when(s.created), state, _when(s.verified_at), human(s.size), str(s.objects))
    return table


@backup.command("show")
@org_required
@click.argument("set_id", default="latest")
@identity_option
@json_option
@click.pass_obj
def show_cmd(obj: Context, org: str, set_id: str, identity_file: Path | None, as_json: bool) -> None:
    """One set's manifest (its signature checked when the org's signing key is known): release, Postgres major, objects."""
    m = backup_run.show(obj.org(org), set_id, identity_file)
    if as_json:
        click.echo(json.dumps({**m.to_json(), "authenticity": m.authenticity, "signed_by": m.signed_by}, indent=2))
        return
    out.print(f"set {m.set_id} of {m.org}: created {m.created}, finished {m.finished}, toolkit {m.toolkit_version}")
    out.print("signature: " + {"signed": f"[green]verified[/green] (signing key {m.signed_by})",
                                "unchecked": "[yellow]not checked[/yellow] (no signing key of the org is known)"}
              .get(m.authenticity, m.authenticity))
    out.print(f"release {m.release or '-'}, postgres {m.postgres_major or '-'}, recipient {m.recipient}")
    table = Table("object", "kind", "size", "plaintext", "sha256")
    for o in m.objects:
        table.add_row(o.key, o.kind, human(o.size), human(o.plaintext_size), o.sha256[:16] + "…")
    out.print(table)


@backup.command("verify")
@org_required
@click.argument("set_id", default="latest")
@identity_option
@allow_unsigned_option
@json_option
@click.pass_obj
def verify_cmd(obj: Context, org: str, set_id: str, identity_file: Path | None, allow_unsigned: bool, as_json: bool) -> None:
    """Check a set's signature, then download and check every object (default: latest); exit 1 naming what is wrong."""
    report = backup_run.verify(obj.org(org), set_id, identity_file, allow_unsigned)
    if report.authenticity == "unsigned":
        _unsigned_warning(report.set_id)
    if as_json:
        click.echo(json.dumps(asdict(report), indent=2, default=str))
        return
    if report.signed_by:
        out.print(f"  [green]ok[/green] signature (signing key {report.signed_by})")
    for o in report.objects:
        out.print(f"  {'[green]ok[/green]' if o.ok else '[red]BAD[/red]'} {o.key}" + (f": {o.problem}" if o.problem else ""))
    out.print(f"{org}: set {report.set_id} verified ({len(report.objects)} objects)")


@backup.command("prune")
@org_required
@click.option("--dry-run", is_flag=True, help="Show what would be deleted.")
@json_option
@click.pass_obj
def prune_cmd(obj: Context, org: str, dry_run: bool, as_json: bool) -> None:
    """Apply the org's retention (keep_daily/weekly/monthly/yearly); pre-upgrade sets that
    `upgrade --rollback` may still need are kept."""
    ctx = obj.org(org)
    # The host's upgrade history says which sets a rollback may still need: without it, no set is deleted.
    rows = status_action.gather(ctx.inventory, [ctx.name], err)
    if not rows or rows[0].error:
        raise SfpError(f"cannot read {org}'s upgrade history on its host ({rows[0].error if rows else 'no status'}); nothing was pruned",
                       f"check the host with `{obj.command_text('status', '--org', org)}`, then prune again")
    report = backup_run.prune(ctx, rows[0].history, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(asdict(report), indent=2, default=str))
        return
    verb = "would delete" if dry_run else "deleted"
    out.print(f"{org}: {verb} {len(report.deleted)} set(s){': ' + ', '.join(report.deleted) if report.deleted else ''}")
    for set_id in report.future:
        err.print(f"[yellow]warning:[/yellow] {future_warning(org, set_id)}")
    for set_id, why in report.keys_kept_for.items():
        # `why` can quote what the bucket holds: printed as text, never as markup.
        err.print(f"[yellow]warning:[/yellow] {escape(org)}: earlier recovery keys kept, the manifest of set "
                  f"{escape(set_id)} cannot be read: {escape(why)}; look at the set "
                  f"(`{obj.command('backup', 'show', '--org', org, set_id)}`), delete it if it is damaged, then prune again")
    for recipient in report.forgotten_keys:
        out.print(f"{org}: earlier recovery key {recipient} dropped from the vault: no set is encrypted to it any more "
                  f"(print the key file again: `{obj.command('backup', 'key', '--org', org)}`)")


@backup.command("key")
@org_required
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the key file here (mode 0600, not overwritten) instead of printing it.")
@click.pass_obj
def key_cmd(obj: Context, org: str, output: Path | None) -> None:
    """Print the org's key file to keep OFFLINE: the recovery key (an age identity) and the signing public key.

    Without it no set can be restored on a new controller: `restore --identity-file FILE` reads both
    (the recovery key opens the sets, the signing public key proves they are the org's).
    """
    text, signed = backup_keys.key_text(obj.org(org))
    if not signed:
        err.print(f"[yellow]warning:[/yellow] {org} has no signing key yet: run `{obj.command('install', '--org', org)}`, "
                  "then `backup key` again so the key file holds the signing public key")
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SfpError(f"{output} exists; it was not overwritten", "name a new file, or remove the old one first") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    err.print(f"{org}: key file written to {output} (0600); keep it OFFLINE")


@click.command("restore")
@org_required
@click.option("--backup", "set_ref", required=True, metavar="ID|latest", help="The set to restore.")
@click.option("--to-host", metavar="MACHINE",
              help="Restore onto this machine: a machine group under sfp_orgs in hosts.yml (its group name, sfp_machine "
                   "or ansible_host). An org listed under another machine is moved to that group in hosts.yml first "
                   "(comments kept); the old machine is not touched.")
@click.option("--as-org", metavar="NEW", help="Restore into another org of the inventory (its own name and ports; "
                                                  "add it to hosts.yml and host_vars first). Works with --to-host.")
@click.option("--force", is_flag=True, help="Replace an existing org: a safety backup is taken first.")
@identity_option
@allow_unsigned_option
@click.pass_obj
def restore(obj: Context, org: str, set_ref: str, to_host: str | None, as_org: str | None, force: bool,
            identity_file: Path | None, allow_unsigned: bool) -> None:
    """Rebuild an org from a backup: same secrets (API keys stay valid), database, storage files; then check health.

    Works for orgs on this machine and on hosts reached over SSH (the restore runs on the org's host;
    its toolkit interpreter is backup__python). Refuses to replace an org present on its host
    unless --force, which first takes a safety backup. After losing a machine: add the new machine
    to hosts.yml and run `restore --org ORG --backup latest --to-host NEW-MACHINE`. Only a set signed
    with the org's signing key is restored (see --allow-unsigned); its signature is checked first.
    """
    inv = obj.inventory()
    target = obj.org(restore_action.check_arguments(inv, org, as_org), check=True, inventory=inv)
    outcome = restore_action.restore(target, org, set_ref, err, to_host=to_host, force=force,
                                     identity_file=identity_file, allow_unsigned=allow_unsigned, verbose=obj.verbose,
                                     say=lambda m: err.print(f"  {m}", markup=False))
    if outcome.moved_from:
        out.print(f"{outcome.org} now runs on machine {outcome.machine} (moved in hosts.yml from {', '.join(outcome.moved_from)})")
    if outcome.safety_set:
        out.print(f"safety backup of {outcome.org} before the restore: {outcome.safety_set}")
    out.print(f"[bold]{outcome.org}[/bold] restored from {outcome.source_org} set {outcome.set_id} in {outcome.seconds:.0f}s: "
              f"{len(outcome.databases)} database(s) ({', '.join(outcome.databases)}), {outcome.storage_files} storage files, "
              f"{len(outcome.key_files)} database key file(s), {outcome.secrets_written} secrets; healthy")
    sys.stdout.flush()


# What installer/cli.py registers: the `backup` group and the top-level `restore`.
COMMANDS = (backup, restore)
