"""Single sign-on of an org's Auth service: validate the IdP, record it, apply it, report the SP side.

`sso add` refuses a bad IdP before anything changes; then it writes host_vars/<org>/sso.yml
(never main.yml), keeps the secrets in the org's vault, runs the site playbook limited to the org
(only the Auth container's environment changes, so only it is recreated) and the supabase_sso role
registers the provider through the Auth admin API (idempotent: a second run writes nothing).

Nothing here calls the admin API itself: the org's gateway is usually reachable only from the org's
host, so every call goes through the playbook (roles/supabase_sso), for local and remote orgs alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from .. import frontdoor, runner, sso_inventory
from ..context import OrgContext
from ..errors import SfpError
from ..sso import check as sso_check
from ..sso import config as sso_config
from ..sso import xmldsig
from ..sso.oidc import validate_oidc_provider
from ..sso.report import Findings
from ..sso.saml import SamlMetadataReport, validate_saml_metadata
from ..sso.sp import ServiceProviderInfo, generate_saml_private_key, service_provider_info
from . import secrets


@dataclass
class SsoOutcome:
    org: str
    name: str
    kind: str
    result: runner.RunResult | None
    sp: ServiceProviderInfo
    warnings: list[str] = field(default_factory=list)
    inventory_changed: bool = False
    vault_changed: list[str] = field(default_factory=list)
    registered: list[dict[str, Any]] = field(default_factory=list)
    writes: int = 0

    @property
    def changed(self) -> int:
        return self.result.changed if self.result else 0


# -- reading ---------------------------------------------------------------------------------
def settings(ctx: OrgContext) -> tuple[dict[str, Any], sso_config.SsoSettings]:
    inv, org = ctx.inventory, ctx.name
    # Every sso command moves metadata copies of older versions out of what Ansible parses as inventory.
    sso_inventory.migrate_metadata_copies(inv.path, org)
    raw = sso_inventory.read_raw(inv.path, org)
    return raw, sso_inventory.parse(raw, where=f"host_vars/{org}/sso.yml: sfp_org_sso")


def sp_info(ctx: OrgContext) -> ServiceProviderInfo:
    return service_provider_info(str(ctx.settings.get("public_url") or ""))


def find(raw: dict[str, Any], name: str) -> tuple[str, dict[str, Any]] | None:
    for kind in ("saml", "oidc"):
        for item in raw.get(kind) or []:
            if isinstance(item, dict) and item.get("name") == name:
                return kind, item
    return None


def describe(ctx: OrgContext) -> list[dict[str, Any]]:
    """One row per configured provider (no secret values; the vault key names only)."""
    _, parsed = settings(ctx)
    rows: list[dict[str, Any]] = []
    for s in parsed.saml:
        rows.append({"name": s.name, "kind": "saml", "metadata": s.metadata_url or s.metadata_file,
                     "domains": list(s.domains), "expected_entity_id": s.expected_entity_id,
                     "metadata_cert_sha256": xmldsig.certificate_sha256(s.metadata_cert) if s.metadata_cert else None})
    for o in parsed.oidc:
        rows.append({"name": o.name, "kind": "oidc", "provider": o.provider, "issuer": o.issuer or o.url,
                     "client_id": o.client_id, "client_secret_vault_key": o.client_secret_vault_key})
    return rows


def show(ctx: OrgContext, name: str) -> dict[str, Any]:
    org = ctx.name
    rows = {r["name"]: r for r in describe(ctx)}
    if name not in rows:
        raise SfpError(f"org {org!r} has no SSO provider {name!r}",
                       f"configured: {', '.join(sorted(rows)) or 'none'} (`{ctx.command('sso', 'list', '--org', org)}`)")
    row = dict(rows[name])
    sp = sp_info(ctx)
    if row["kind"] == "saml":
        row["metadata_signature"] = _signature_now(ctx, name)
        row["service_provider"] = {"entity_id": sp.saml_entity_id, "metadata_url": sp.saml_metadata_url,
                                   "acs_url": sp.saml_acs_url, "slo_url": sp.saml_slo_url}
        row["signing_key_vault_key"] = sso_config.SAML_PRIVATE_KEY_VAULT_KEY
    else:
        row["service_provider"] = {"redirect_uri": sp.oidc_redirect_uri}
    present = set(ctx.secrets)
    needed = sso_config.SAML_PRIVATE_KEY_VAULT_KEY if row["kind"] == "saml" else row["client_secret_vault_key"]
    row["secret_in_vault"] = needed in present
    return row


def _signature_now(ctx: OrgContext, name: str) -> str:
    """The metadata's signature as fetched (or read) now, with the same rules as `sso check`."""
    raw, parsed = settings(ctx)
    s = next(x for x in parsed.saml if x.name == name)
    loopback = bool(raw.get(sso_inventory.LOOPBACK_KEY, False))
    if s.metadata_url:
        report = validate_saml_metadata(url=s.metadata_url, allow_insecure_loopback=loopback,
                                        allow_hosts=parsed.allow_hosts, pinned_cert=s.metadata_cert)
    else:
        path = Path(s.metadata_file or "")
        report = validate_saml_metadata(file=path if path.is_absolute() else ctx.inventory.path / path, pinned_cert=s.metadata_cert)
    if report.signature is not None:
        return report.signature.detail
    errors = report.findings.errors
    return f"unknown: {errors[0].message}" if errors else "unknown"


def _read_pinned_cert(path: Path) -> str:
    """The certificate as sso.yml keeps it: base64 DER on one line."""
    try:
        return xmldsig.one_line(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SfpError(f"--metadata-cert {path}: not a readable PEM X.509 certificate ({exc})",
                       "give the IdP's metadata signing certificate as a PEM file (-----BEGIN CERTIFICATE-----)") from None


def _pinned_now(raw: dict[str, Any], name: str) -> str | None:
    """A re-added provider keeps its pinned certificate: dropping a pin must be deliberate (sso.yml)."""
    found = find(raw, name)
    cert = found[1].get("metadata_cert") if found and found[0] == "saml" else None
    return cert if isinstance(cert, str) and cert else None


def _allowed_hosts(raw: dict[str, Any], extra: Sequence[str]) -> list[str]:
    """sso.yml's allow_hosts plus --allow-host, each checked as a host name or address."""
    given = sso_config.parse_sso_settings({"allow_hosts": list(extra)}, where="--allow-host").allow_hosts
    return sorted(set(raw.get("allow_hosts") or []) | set(given))


# -- writing ---------------------------------------------------------------------------------
def _store_secrets(ctx: OrgContext, updates: dict[str, str], remove: tuple[str, ...] = ()) -> list[str]:
    """Set (or drop) vault entries; the file is rewritten only when something differs."""
    values = ctx.secrets
    changed = [k for k, v in updates.items() if values.get(k) != v] + [k for k in remove if k in values]
    if changed:
        values.update(updates)
        for k in remove:
            values.pop(k, None)
        ctx.write_secrets(values)
    return changed


def _upsert(raw: dict[str, Any], kind: str, item: dict[str, Any]) -> dict[str, Any]:
    new = json.loads(json.dumps(raw))  # deep copy of plain YAML data
    other = "oidc" if kind == "saml" else "saml"
    if any(isinstance(i, dict) and i.get("name") == item["name"] for i in new.get(other) or []):
        raise SfpError(f"an {other.upper()} provider named {item['name']!r} exists already",
                       "SSO provider names are unique per org; pass another --name")
    items = [i for i in new.get(kind) or []]
    for n, existing in enumerate(items):
        if isinstance(existing, dict) and existing.get("name") == item["name"]:
            items[n] = item
            break
    else:
        items.append(item)
    new[kind] = items
    return new


def _findings_text(findings: Findings) -> list[str]:
    return [str(f) for f in findings.warnings]


def _apply(ctx: OrgContext, console: Console, *, verbose: bool,
           rotate: list[str] | None = None) -> runner.RunResult:
    """The site playbook for this one org (`ctx` validated as it is now): stack (re-rendered; only
    Auth's environment differs, so only Auth is recreated) and SSO registration. The host checks
    are skipped (tags): the org runs there already, and its ports are its own."""
    inv, org = ctx.inventory, ctx.name
    secrets.ensure(inv, org)
    return runner.run_playbook(
        "site.yml", inv.path, [org], inv.vault_password_file, console=console, verbose=verbose,
        extravars={"sfp_sso_rotate_secrets": rotate} if rotate else None, tags=["stack", "sso"],
    )


def _registered(result: runner.RunResult, org: str) -> tuple[list[dict[str, Any]], int]:
    msg = (result.reports.get(org, {}).get("sso") or {}).get("msg") or {}
    try:
        writes = int(msg.get("writes") or 0)
    except (TypeError, ValueError):
        writes = 0
    return list(msg.get("results") or []), writes


def _commit_and_apply(ctx: OrgContext, name: str, kind: str, new_raw: dict[str, Any],
                      secret_updates: dict[str, str], console: Console, *, verbose: bool,
                      warnings: list[str], rotate: list[str] | None = None,
                      metadata: bytes | None = None) -> SsoOutcome:
    inv, org = ctx.inventory, ctx.name
    # Everything was validated: the inventory and the vault change only now.
    vault_changed = _store_secrets(ctx, secret_updates) if secret_updates else []
    if metadata is not None:
        sso_inventory.write_metadata_copy(inv.path, org, name, metadata)
    inv_changed = sso_inventory.write_raw(inv.path, org, new_raw)
    # Re-read and check the inventory: the playbook and validation must see the new sso.yml.
    fresh = ctx.reload(check=True)
    result = _apply(fresh, console, verbose=verbose, rotate=rotate)
    runner.require_success(result, f"sso: applying {name} to {org}")
    registered, writes = _registered(result, org)
    return SsoOutcome(org, name, kind, result, sp_info(fresh), warnings, inv_changed, vault_changed,
                      registered, writes)


def _prepare(ctx: OrgContext) -> dict[str, Any]:
    if not ctx.checked:  # the inventory as it is must be valid before it is changed
        ctx = ctx.reload(check=True)
    raw, _ = settings(ctx)
    return raw


def add_saml(ctx: OrgContext, console: Console, *, name: str | None, metadata_url: str | None,
             metadata_file: Path | None, domains: list[str], attribute_mapping_file: Path | None = None,
             expected_entity_id: str | None = None, name_id_format: str | None = None,
             metadata_cert_file: Path | None = None, allow_hosts: Sequence[str] = (),
             allow_insecure_loopback: bool = False, verbose: bool = False) -> SsoOutcome:
    if (metadata_url is None) == (metadata_file is None):
        raise SfpError("give exactly one of --metadata-url or --metadata-file", "nothing was changed")
    if not domains:
        raise SfpError("--domain is required (repeatable)", "users whose email is in these domains sign in with this IdP")
    inv, org = ctx.inventory, ctx.name
    raw = _prepare(ctx)
    name = name or domains[0].lower().replace(".", "-")
    pinned = _read_pinned_cert(metadata_cert_file) if metadata_cert_file is not None else _pinned_now(raw, name)
    hosts = _allowed_hosts(raw, allow_hosts)
    # 1. The IdP: fetched and validated (its signature too, when a certificate is pinned) before anything changes.
    report: SamlMetadataReport = validate_saml_metadata(
        url=metadata_url, file=metadata_file, expected_entity_id=expected_entity_id,
        allow_insecure_loopback=allow_insecure_loopback, allow_hosts=hosts, pinned_cert=pinned)
    report.raise_for_errors()
    # 2. The new setting, checked by the library together with the org's other providers.
    item: dict[str, Any] = {"name": name}
    if metadata_url:
        item["metadata_url"] = metadata_url
    else:
        item["metadata_file"] = str(sso_inventory.metadata_copy(inv.path, org, name).relative_to(inv.path))
    item["domains"] = sorted({d.strip().lower() for d in domains})
    item["expected_entity_id"] = expected_entity_id or report.entity_id
    if attribute_mapping_file is not None:
        item["attribute_mapping"] = _load_mapping(attribute_mapping_file)
    if name_id_format:
        item["name_id_format"] = name_id_format
    if pinned:
        item["metadata_cert"] = pinned
    new_raw = _upsert(raw, "saml", item)
    if allow_insecure_loopback:
        new_raw[sso_inventory.LOOPBACK_KEY] = True
    if hosts:
        new_raw["allow_hosts"] = hosts
    sso_inventory.parse(new_raw, where=f"host_vars/{org}/sso.yml: sfp_org_sso")
    # 3. The org's SP signing key: generated once, kept.
    current = ctx.secrets
    updates = {} if current.get(sso_config.SAML_PRIVATE_KEY_VAULT_KEY) else {
        sso_config.SAML_PRIVATE_KEY_VAULT_KEY: generate_saml_private_key()}
    return _commit_and_apply(ctx, name, "saml", new_raw, updates, console, verbose=verbose,
                             warnings=_findings_text(report.findings),
                             metadata=report.raw if metadata_file is not None else None)


def add_oidc(ctx: OrgContext, console: Console, *, provider: str, issuer: str | None, client_id: str,
             client_secret: str, name: str | None = None, url: str | None = None, scopes: list[str] | None = None,
             allow_hosts: Sequence[str] = (), allow_insecure_loopback: bool = False,
             verbose: bool = False) -> SsoOutcome:
    if not client_secret:
        raise SfpError("the client secret file is empty", "put the client secret from the IdP's application settings in it")
    org = ctx.name
    raw = _prepare(ctx)
    if provider == "custom" and not name:
        raise SfpError("--name is required for a custom provider", "it becomes the provider id custom:<name>")
    name = name or provider
    if provider == "keycloak" and not url:
        url = issuer  # GoTrue's keycloak provider wants the realm URL, which is the issuer
    # 1. The IdP's discovery document, issuer, JWKS: refused before anything changes.
    hosts = _allowed_hosts(raw, allow_hosts)
    warnings: list[str] = []
    if issuer:
        rep = validate_oidc_provider(issuer, allow_insecure_loopback=allow_insecure_loopback, allow_hosts=hosts)
        rep.raise_for_errors()
        warnings = _findings_text(rep.findings)
    item: dict[str, Any] = {"name": name, "provider": provider}
    if issuer:
        item["issuer"] = issuer
    if url and provider != "custom":
        item["url"] = url
    item["client_id"] = client_id
    if scopes:
        item["scopes"] = list(scopes)
    new_raw = _upsert(raw, "oidc", item)
    if allow_insecure_loopback:
        new_raw[sso_inventory.LOOPBACK_KEY] = True
    if hosts:
        new_raw["allow_hosts"] = hosts
    parsed = sso_inventory.parse(new_raw, where=f"host_vars/{org}/sso.yml: sfp_org_sso")
    key = next(o.client_secret_vault_key for o in parsed.oidc if o.name == name)
    current = ctx.secrets
    rotate = [name] if provider == "custom" and current.get(key) not in (None, client_secret) else None
    return _commit_and_apply(ctx, name, "oidc", new_raw, {key: client_secret}, console, verbose=verbose,
                             warnings=warnings, rotate=rotate)


def _load_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SfpError(f"cannot read attribute mapping {path}: {exc}", "give a YAML or JSON file like {keys: {email: {name: mail}}}") from None
    if not isinstance(data, dict):
        raise SfpError(f"attribute mapping {path} is not a mapping", "write it as {keys: {email: {name: mail}}}")
    return data


def remove(ctx: OrgContext, name: str, console: Console, *, verbose: bool = False) -> SsoOutcome:
    inv, org = ctx.inventory, ctx.name
    raw = _prepare(ctx)
    found = find(raw, name)
    if found is None:
        raise SfpError(f"org {org!r} has no SSO provider {name!r}", f"`{ctx.command('sso', 'list', '--org', org)}` shows them")
    kind, item = found
    _, parsed = settings(ctx)
    registered: list[dict[str, Any]] = []
    # 1. Out of Auth first, while its SSO API is still switched on: the supabase_sso role only (the
    #    stack is left as it is), from the org's host, like every other admin API call.
    needs_auth = kind == "saml" or any(o.name == name and o.is_custom for o in parsed.oidc)
    if needs_auth:
        secrets.ensure(inv, org)
        result = runner.run_playbook(
            "site.yml", inv.path, [org], inv.vault_password_file, console=console, verbose=verbose,
            extravars={"sfp_sso_remove": [name]}, tags=["sso"],
        )
        runner.require_success(result, f"sso: removing {name} from {org}'s Auth")
        registered, _ = _registered(result, org)
        registered = [r for r in registered if r.get("name") == name]
    # 2. Out of the inventory (and the client secret out of the vault; the org's SAML key stays).
    new_raw = json.loads(json.dumps(raw))
    new_raw[kind] = [i for i in new_raw.get(kind) or [] if not (isinstance(i, dict) and i.get("name") == name)]
    if not new_raw[kind]:
        del new_raw[kind]
    if not new_raw.get("saml") and not new_raw.get("oidc"):
        new_raw = {}
    inv_changed = sso_inventory.write_raw(inv.path, org, new_raw)
    vault_changed: list[str] = []
    if kind == "oidc":
        o = next(x for x in parsed.oidc if x.name == name)
        vault_changed = _store_secrets(ctx, {}, remove=(o.client_secret_vault_key,))
    elif item.get("metadata_file"):
        copy = sso_inventory.metadata_copy(inv.path, org, name)
        if copy.exists() and str(copy.relative_to(inv.path)) == item["metadata_file"]:
            copy.unlink()
    # 3. The Auth environment follows (SSO off when nothing is left).
    fresh = ctx.reload(check=True)
    result = _apply(fresh, console, verbose=verbose)
    runner.require_success(result, f"sso: removing {name} from {org}")
    return SsoOutcome(org, name, kind, result, sp_info(fresh), [], inv_changed, vault_changed, registered)


def check(ctx: OrgContext) -> sso_check.CheckReport:
    raw, parsed = settings(ctx)
    report = sso_check.check_all(parsed, base_dir=ctx.inventory.path,
                                 allow_insecure_loopback=bool(raw.get(sso_inventory.LOOPBACK_KEY, False)))
    report.items += certificate_checks(ctx)
    return report


def certificate_checks(ctx: OrgContext, now: datetime | None = None) -> list[sso_check.IdpCheck]:
    """The certificates the org's sign-in depends on that the vault holds: the front door's own (tls
    source provided; ACME renews its own, and `status` shows a failed renewal) and Studio's SAML
    service provider's. A warning within 30 days of expiry, an error once expired."""
    hostname = ctx.settings.get("hostname")
    if not hostname:
        return []
    wanted = []
    if (ctx.settings.get("tls") or {}).get("source", "provided") == "provided":
        wanted.append((frontdoor.TLS_CERTIFICATE, f"front door of {hostname}"))
    wanted.append((frontdoor.STUDIO_SAML_SP_CERT, "Studio's SAML service provider"))
    out = []
    for key, what in wanted:
        pem = ctx.secrets.get(key)
        if not pem:
            continue
        item = sso_check.IdpCheck(kind="certificate", name=what, source=f"vault {key}")
        try:
            info = frontdoor.certificate_info(pem)
        except ValueError:
            item.findings.error(f"{key} is not a PEM certificate", f"set it again with `secrets set --org {ctx.name} {key}`")
            out.append(item)
            continue
        days = info.days_left(now)
        if days <= 0:
            item.findings.error(f"expired on {info.not_after:%Y-%m-%d %H:%MZ}",
                                "renew it now; clients refuse the front door until it is replaced")
        elif days <= frontdoor.CERT_WARNING_DAYS:
            item.findings.warning(f"expires on {info.not_after:%Y-%m-%d %H:%MZ}, in {int(days)} days",
                                  f"renew it and `sfp-server secrets set --org {ctx.name} {key} --from-file FILE`, then install")
        out.append(item)
    return out
