"""The org's secrets in its vault file: ensure (generate what is missing), show one, set one."""

from __future__ import annotations

from datetime import UTC, datetime

from .. import secrets as gen
from .. import sso_inventory
from ..context import OrgContext, read_secret_ages, read_secrets, write_secrets
from ..errors import SfpError
from ..inventory import Inventory


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
    sso = sso_inventory.generated_secrets(inv.host_vars(org).get(sso_inventory.SSO_VAR), values)
    values.update(sso)
    added += list(sso)
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
    if name not in gen.OPERATOR_SET:
        raise SfpError(
            f"{name!r} is not a secret an operator sets",
            f"settable: {', '.join(gen.OPERATOR_SET)}; generated secrets change only through a rotation",
        )
    if not value:
        raise SfpError(f"empty value for {name}", "pipe the value on standard input or name a file with --from-file")
    values = read(inv, org)
    values[name] = value
    write_secrets(inv, org, values)


def names(inv: Inventory, org: str) -> list[tuple[str, str]]:
    """Names (never values) with what each is for."""
    return [(n, gen.DESCRIPTIONS.get(n, "")) for n in sorted(read(inv, org))]


def age(ctx: OrgContext, now: datetime | None = None) -> list[gen.SecretAge]:
    """How old each of the org's secrets is, against sfp_org.secrets.max_age_days."""
    limit = int(ctx.settings["secrets"]["max_age_days"])
    return gen.ages(ctx.secrets, read_secret_ages(ctx.inventory, ctx.name), limit, now or datetime.now(UTC))


def too_old(ctx: OrgContext, now: datetime | None = None) -> list[gen.SecretAge]:
    """The org's secrets older than its maximum age, oldest first."""
    return sorted((a for a in age(ctx, now) if a.too_old), key=lambda a: -(a.age_days or 0))
