"""`sfp-server logs`: read an org's container logs; `sfp-server logs export`: archive a window of them.

Argument parsing and output only; the work is in installer.actions.logs (inventory side) and the
installer.logs library (reading, merging, masking, export, retention).

`logs` is a click group with `invoke_without_command=True`: `sfp-server logs --org ORG ...` reads
(the group's own options), `sfp-server logs export --org ORG ...` exports (its own options and
help). Reading is the everyday form and stays short; export is a separate verb with required
options of its own, so each form's --help shows only what applies to it. Reading options given
together with `export` are refused rather than silently ignored.
"""

from __future__ import annotations

import signal
import sys

import click
from rich.console import Console

from ..actions import logs as action
from ..logs import LEVELS, LogQuery
from .common import Context

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def _services(value: str | None) -> list[str] | None:
    if not value:
        return None
    names = [s.strip() for s in value.split(",") if s.strip()]
    return names or None


service_option = click.option("--service", metavar="SVC[,SVC]", help="Only these services, e.g. auth,rest,db.")
level_choice = click.Choice([*LEVELS, "warning", "err"], case_sensitive=False)


@click.group("logs", invoke_without_command=True)
@click.option("--org", metavar="ORG", help="The org whose logs to read (required).")
@service_option
@click.option("--since", metavar="WHEN", help="From: a duration back from now (90s, 15m, 2h, 1d) or an ISO 8601 time.")
@click.option("--until", metavar="WHEN", help="Up to: same forms as --since.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("--level", type=level_choice, help="Only entries at this level or above.")
@click.option("--grep", metavar="REGEX", help="Only entries whose message matches REGEX.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line (installer/logs/event.schema.json).")
@click.option("--tail", type=click.IntRange(min=0), metavar="N", help="Only the last N entries (then follow, with --follow).")
@click.pass_context
def logs(ctx: click.Context, org: str | None, service: str | None, since: str | None, until: str | None,
         follow: bool, level: str | None, grep: str | None, as_json: bool, tail: int | None) -> None:
    """An org's container logs, merged by time, secrets masked.

    \b
    sfp-server logs --org acme --service auth,db --since 2h --level warn
    sfp-server logs --org acme --follow --grep 'status=5..'
    sfp-server logs export --org acme --since 1d --until 0s --to s3://bucket/prefix
    """
    if ctx.invoked_subcommand is not None:
        given = [name for name, v in (("--org", org), ("--service", service), ("--since", since), ("--until", until),
                                      ("--follow", follow), ("--level", level), ("--grep", grep), ("--json", as_json),
                                      ("--tail", tail)) if v not in (None, False)]
        if given:
            raise click.UsageError(f"put {', '.join(given)} after `{ctx.invoked_subcommand}`")
        return
    if not org:
        raise click.UsageError("--org is required")
    if follow:
        # `kill PID` ends a follow like Ctrl-C does: cleanly, exit 0.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    query = LogQuery(org=org, services=_services(service), since=since, until=until, level=level, grep=grep, tail=tail)
    code = action.show(ctx.obj.org(org), query, json_output=as_json, follow=follow)
    sys.exit(code)


@logs.command("export")
@click.option("--org", required=True, metavar="ORG", help="The org whose logs to export.")
@click.option("--since", required=True, metavar="WHEN", help="Window start: a duration back from now (1d) or an ISO 8601 time.")
@click.option("--until", required=True, metavar="WHEN", help="Window end: same forms (0s is now).")
@click.option("--to", "to", metavar="DEST",
              help="s3://bucket/prefix, a directory, or a FILE.jsonl.zst (default: the org's logs.export store).")
@service_option
@click.pass_obj
def export_cmd(obj: Context, org: str, since: str, until: str, to: str | None, service: str | None) -> None:
    """Archive a window of the org's logs (zstd JSON lines + manifest), secrets masked.

    To S3, the store's endpoint, region and path style come from the org's `logs.export`
    settings, the keys from its vault (LOGS_S3_ACCESS_KEY_ID / LOGS_S3_SECRET_ACCESS_KEY) or the
    AWS_* environment; afterwards the org's retention policy (logs.export.retention) is applied.
    """
    query = LogQuery(org=org, services=_services(service), since=since, until=until)
    outcome = action.export(obj.org(org, check=True), query, to)
    m = outcome.result.manifest
    counts = ", ".join(f"{k}={v}" for k, v in m["counts"].items()) or "none"
    out.print(f"{org}: exported {m['total']} events ({counts}), {m['size']} bytes", markup=False)
    out.print(f"  archive   {outcome.result.archive}", markup=False)
    out.print(f"  manifest  {outcome.result.manifest_location}", markup=False)
    if outcome.retention is not None:
        policy = ", ".join(f"{k}={v}" for k, v in outcome.retention.items())
        if outcome.removed:
            out.print(f"retention ({policy}): removed {len(outcome.removed)} older export(s):", markup=False)
            for e in outcome.removed:
                out.print(f"  removed   {e.archive} (created {e.created:%Y-%m-%dT%H:%M:%SZ})", markup=False)
        else:
            out.print(f"retention ({policy}): nothing to remove", markup=False)
