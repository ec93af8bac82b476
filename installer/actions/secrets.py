"""The org's secrets in its vault file: ensure (generate what is missing), show one, set one."""

from __future__ import annotations

from datetime import UTC, datetime

from .. import frontdoor, settings, sso_inventory
from .. import secrets as gen
from ..context import OrgContext, read_secret_ages, read_secrets, write_secrets
from ..errors import SfpError
from ..inventory import ORG_VAR, Inventory
from ..rotation import groups as rotation_groups


def read(inv: Inventory, org: str) -> dict[str, str]:
    return read_secrets(inv, org)


def write(inv: Inventory, org: str, values: dict[str, str]) -> None:
    """Replace the org's vault entries (encrypted, 0600)."""
    write_secrets(inv, org, values)


def ensure(inv: Inventory, org: str) -> list[str]:
    """Generate the org's missing secrets; existing ones are never changed. Returns the added names."""
    current = read(inv, org)
    values, added = gen.complete(current)
    # The org's SAML signing key, when sso.yml (by `sso add` or by hand) has a SAML provider.
    hostvars = inv.host_vars(org)
    sso = sso_inventory.generated_secrets(hostvars.get(sso_inventory.SSO_VAR), values)
    values.update(sso)
    added += list(sso)
    # The front door's session key, and Studio's SAML service provider key, when the org has them.
    raw = hostvars.get(ORG_VAR)
    door = frontdoor.generated_secrets(settings.org_config(raw) if isinstance(raw, dict) else {},
                                       hostvars.get(sso_inventory.SSO_VAR), values)
    values.update(door)
    added += list(door)
    if added:
        write_secrets(inv, org, values)
    return added


def show(ctx: OrgContext, name: str) -> str:
    org, values = ctx.name, ctx.secrets
    if not values:
        raise SfpError(f"org {org!r} has no secrets yet",
                       f"run `{ctx.command('install', '--org', org)}` or `{ctx.command('secrets', 'ensure', '--org', org)}`")
    if name not in values:
        raise SfpError(f"org {org!r} has no secret {name!r}", f"known: {', '.join(sorted(values))}")
    return values[name]


def set_value(inv: Inventory, org: str, name: str, value: str) -> None:
    """Set a secret the operator owns (e.g. SMTP_PASS). Generated ones cannot be overwritten here."""
    settable = (*gen.OPERATOR_SET, *frontdoor.OPERATOR_SET)
    if name not in settable:
        raise SfpError(
            f"{name!r} is not a secret an operator sets",
            f"settable: {', '.join(settable)}; generated secrets change only through a rotation",
        )
    if not value:
        raise SfpError(f"empty value for {name}", "pipe the value on standard input or name a file with --from-file")
    wrong = frontdoor.check_secret(name, value)
    if wrong:
        raise SfpError(f"{name}: {wrong}", "nothing was stored; give the PEM file with --from-file")
    values = read(inv, org)
    values[name] = value
    write_secrets(inv, org, values)


def names(inv: Inventory, org: str) -> list[tuple[str, str]]:
    """Names (never values) with what each is for."""
    described = gen.DESCRIPTIONS | frontdoor.DESCRIPTIONS
    return [(n, described.get(n, "")) for n in sorted(read(inv, org))]


def age(ctx: OrgContext, now: datetime | None = None) -> list[gen.SecretAge]:
    """How old each of the org's secrets is, against sfp_org.secrets.max_age_days."""
    limit = int(ctx.settings["secrets"]["max_age_days"])
    return gen.ages(ctx.secrets, read_secret_ages(ctx.inventory, ctx.name), limit, now or datetime.now(UTC))


def too_old(ctx: OrgContext, now: datetime | None = None) -> list[gen.SecretAge]:
    """The org's secrets older than its maximum age, oldest first."""
    return sorted((a for a in age(ctx, now) if a.too_old), key=lambda a: -(a.age_days or 0))


def grace_ended(ctx: OrgContext, now: datetime | None = None) -> list[tuple[str, datetime]]:
    """(group, when) for each rotation whose replaced values are past their grace period and still
    accepted: they stop only with `secrets rotate --finish GROUP` (or the next rotation)."""
    at = now or datetime.now(UTC)
    out = []
    for name, group in rotation_groups.GROUPS.items():
        ends = rotation_groups.grace_ends(group, ctx.secrets) if group.grace else None
        if ends is not None and ends <= at:
            out.append((name, ends))
    return out
