"""`sfp-server sso`: connect an org's Auth to its identity providers (SAML 2.0, OIDC).

Argument parsing and output only; the work is in installer.actions.sso. Secrets are read from
files (or standard input), never taken as arguments, and never printed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..actions import sso as action
from ..errors import SfpError
from ..sso.config import BUILTIN_PROVIDERS
from .common import Context

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

org_required = click.option("--org", required=True, metavar="ORG", help="The org whose Auth is configured.")
loopback_option = click.option(
    "--allow-insecure-loopback", is_flag=True, hidden=True,
    help="TESTS ONLY: accept http:// IdP URLs on this machine's loopback (recorded in sso.yml).",
)


@click.group("sso")
def sso() -> None:
    """Single sign-on: each org's Auth with its SAML 2.0 or OIDC identity provider."""


def _print_outcome(o: action.SsoOutcome) -> None:
    for w in o.warnings:
        err.print(f"[yellow]warning:[/yellow] {w}", markup=True)
    if o.vault_changed:
        out.print(f"{o.org}: stored {', '.join(o.vault_changed)} in the org's vault")
    if o.inventory_changed:
        out.print(f"{o.org}: updated host_vars/{o.org}/sso.yml")
    for r in o.registered:
        pid = f" (id {r.get('provider_id')})" if r.get("provider_id") else ""
        fields = f": {', '.join(r['fields'])}" if r.get("fields") else ""
        out.print(f"{o.org}: {r.get('kind')} provider {r.get('name')} {r.get('action')}{pid}{fields}")
    stats = " ".join(f"{h}:ok={s.ok},changed={s.changed}" for h, s in sorted(o.result.stats.items())) if o.result else ""
    out.print(f"changed={o.changed} writes={o.writes} {stats}".rstrip())


def _print_sp(o: action.SsoOutcome) -> None:
    sp = o.sp
    out.print(f"\n[bold]Give the IdP administrator[/bold] ({o.org}):")
    if o.kind == "saml":
        out.print(f"  SP entity ID       {sp.saml_entity_id}")
        out.print(f"  SP metadata URL    {sp.saml_metadata_url}")
        out.print(f"  ACS URL            {sp.saml_acs_url}")
        out.print(f"  Single logout URL  {sp.saml_slo_url}")
    else:
        out.print(f"  Redirect URI       {sp.oidc_redirect_uri}")


@sso.command("add")
@org_required
@click.option("--saml", "kind", flag_value="saml", help="A SAML 2.0 identity provider.")
@click.option("--oidc", "kind", flag_value="oidc", help="An OpenID Connect / OAuth provider.")
@click.option("--name", help="Provider name, unique in the org (default: the first domain / the provider).")
@click.option("--metadata-url", metavar="URL", help="SAML: the IdP's https metadata URL.")
@click.option("--metadata-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="SAML: the IdP's metadata XML.")
@click.option("--domain", "domains", multiple=True, metavar="DOMAIN", help="SAML: email domain routed to this IdP (repeatable).")
@click.option("--attribute-mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="SAML: YAML/JSON file, e.g. {keys: {email: {name: mail}}}.")
@click.option("--expected-entity-id", metavar="ID", help="SAML: refuse metadata with another entityID (default: pin the one found).")
@click.option("--metadata-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="PEM",
              help="SAML: the IdP's metadata signing certificate; the metadata must be signed with it "
                   "(checked on every fetch; kept when the provider is added again).")
@click.option("--name-id-format", metavar="URN", help="SAML: NameID format to request.")
@click.option("--provider", type=click.Choice([*BUILTIN_PROVIDERS, "custom"]), help="OIDC: GoTrue built-in provider, or custom.")
@click.option("--issuer", metavar="URL", help="OIDC: the issuer (discovery is validated).")
@click.option("--url", "provider_url", metavar="URL", help="OIDC built-ins: provider URL (keycloak: the realm URL; default: the issuer).")
@click.option("--client-id", metavar="ID", help="OIDC: the client id registered at the IdP.")
@click.option("--client-secret-file", type=click.File("r"), metavar="FILE", help="OIDC: file holding the client secret ('-': standard input).")
@click.option("--scope", "scopes", multiple=True, help="OIDC custom: scope to request (repeatable).")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="HOST",
              help="Let this IdP host resolve to a link-local or cloud metadata-service address, refused "
                   "otherwise (repeatable; recorded in sso.yml).")
@loopback_option
@click.pass_obj
def add(obj: Context, org: str, kind: str | None, name: str | None, metadata_url: str | None, metadata_file: Path | None,
        domains: tuple[str, ...], attribute_mapping: Path | None, expected_entity_id: str | None,
        metadata_cert: Path | None, name_id_format: str | None, provider: str | None, issuer: str | None,
        provider_url: str | None, client_id: str | None, client_secret_file: Any, scopes: tuple[str, ...],
        allow_hosts: tuple[str, ...], allow_insecure_loopback: bool) -> None:
    """Validate an IdP, record it for the org, apply it and print what the IdP side needs."""
    if kind is None:
        raise click.UsageError("choose --saml or --oidc")
    if kind == "saml":
        if provider or issuer or client_id or client_secret_file:
            raise click.UsageError("--provider/--issuer/--client-id/--client-secret-file are for --oidc")
        outcome = action.add_saml(
            obj.org(org, check=True), err, name=name, metadata_url=metadata_url, metadata_file=metadata_file, domains=list(domains),
            attribute_mapping_file=attribute_mapping, expected_entity_id=expected_entity_id,
            name_id_format=name_id_format, metadata_cert_file=metadata_cert, allow_hosts=allow_hosts,
            allow_insecure_loopback=allow_insecure_loopback, verbose=obj.verbose,
        )
    else:
        if metadata_url or metadata_file or domains or metadata_cert:
            raise click.UsageError("--metadata-url/--metadata-file/--metadata-cert/--domain are for --saml")
        if not provider or not client_id or client_secret_file is None:
            raise click.UsageError("--oidc needs --provider, --client-id and --client-secret-file")
        if provider == "custom" and not issuer:
            raise click.UsageError("--provider custom needs --issuer")
        secret = client_secret_file.read().strip()
        outcome = action.add_oidc(
            obj.org(org, check=True), err, provider=provider, issuer=issuer, client_id=client_id, client_secret=secret, name=name,
            url=provider_url, scopes=list(scopes), allow_hosts=allow_hosts, allow_insecure_loopback=allow_insecure_loopback,
            verbose=obj.verbose,
        )
    _print_outcome(outcome)
    _print_sp(outcome)


@sso.command("list")
@org_required
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_cmd(obj: Context, org: str, as_json: bool) -> None:
    """The org's configured identity providers."""
    rows = action.describe(obj.org(org))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print(f"{org}: no SSO providers (add one with `{obj.command('sso', 'add', '--org', org)} --saml|--oidc ...`)")
        return
    table = Table("name", "kind", "provider", "metadata / issuer", "domains")
    for r in rows:
        table.add_row(r["name"], r["kind"], r.get("provider", "saml"), str(r.get("metadata") or r.get("issuer") or "-"),
                      ", ".join(r.get("domains") or []) or "-")
    out.print(table)


@sso.command("show")
@org_required
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def show_cmd(obj: Context, org: str, name: str, as_json: bool) -> None:
    """One provider's settings, its SAML metadata's signature as fetched now, and the
    service-provider URLs to give the IdP (no secrets)."""
    row = action.show(obj.org(org), name)
    if as_json:
        click.echo(json.dumps(row, indent=2))
        return
    sp = row.pop("service_provider")
    for key, value in row.items():
        if value not in (None, [], ""):
            out.print(f"{key:<24} {', '.join(value) if isinstance(value, list) else value}")
    out.print("[bold]service provider (give these to the IdP):[/bold]")
    for key, value in sp.items():
        out.print(f"  {key:<22} {value}")


@sso.command("remove")
@org_required
@click.argument("name")
@click.pass_obj
def remove_cmd(obj: Context, org: str, name: str) -> None:
    """Remove a provider from Auth and from the inventory; Auth's SSO is switched off when none is left."""
    outcome = action.remove(obj.org(org, check=True), name, err, verbose=obj.verbose)
    _print_outcome(outcome)


@sso.command("check")
@org_required
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def check_cmd(obj: Context, org: str, as_json: bool) -> None:
    """Re-validate the org's IdPs (metadata, certificates, discovery). Cron-safe: exit 0 ok, 1 warnings, 2 errors."""
    try:
        report = action.check(obj.org(org))
    except SfpError as exc:
        if as_json:
            click.echo(json.dumps({"org": org, "status": "error", "error": exc.message}))
        else:
            err.print(f"error: {exc.message}", markup=False)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps({"org": org, "exit_status": report.exit_status, "items": [
            {"kind": i.kind, "name": i.name, "source": i.source, "status": i.status, "drifted": i.drifted,
             "signature": i.signature, "findings": [{"level": f.level, "message": f.message, "hint": f.hint} for f in i.findings.items]}
            for i in report.items]}, indent=2))
    else:
        click.echo(report.text())
    sys.exit(report.exit_status)
