"""The org's secrets in its vault file: ensure (generate what is missing), show one, set one."""

from __future__ import annotations

from typing import Any

from .. import secrets as gen
from ..errors import SfpError
from ..inventory import SECRETS_VAR, Inventory
from ..vault import Vault


def _vault(inv: Inventory) -> Vault:
    if inv.vault_password_file is None:
        raise SfpError("no vault password file", "pass --vault-password-file or run `sfp-server init`")
    return Vault(inv.vault_password_file)


def read(inv: Inventory, org: str) -> dict[str, str]:
    path = inv.vault_file(org)
    if not path.exists():
        return {}
    data: dict[str, Any] = _vault(inv).read(path)
    values = data.get(SECRETS_VAR, {})
    if not isinstance(values, dict):
        raise SfpError(f"{path}: {SECRETS_VAR} is not a mapping", "restore the file from a backup")
    return {str(k): str(v) for k, v in values.items()}


def ensure(inv: Inventory, org: str) -> list[str]:
    """Generate the org's missing secrets; existing ones are never changed. Returns the added names."""
    current = read(inv, org)
    values, added = gen.complete(current)
    # The org's SAML signing key, when sso.yml (by `sso add` or by hand) has a SAML provider.
    from .. import sso_inventory

    sso = sso_inventory.generated_secrets(inv.host_vars(org).get(sso_inventory.SSO_VAR), values)
    values.update(sso)
    added += list(sso)
    if added:
        _vault(inv).write(inv.vault_file(org), {SECRETS_VAR: values})
    return added


def show(inv: Inventory, org: str, name: str) -> str:
    values = read(inv, org)
    if not values:
        raise SfpError(f"org {org!r} has no secrets yet", f"run `sfp-server install --org {org}` or `sfp-server secrets ensure --org {org}`")
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
    _vault(inv).write(inv.vault_file(org), {SECRETS_VAR: values})


def names(inv: Inventory, org: str) -> list[tuple[str, str]]:
    """Names (never values) with what each is for."""
    return [(n, gen.DESCRIPTIONS.get(n, "")) for n in sorted(read(inv, org))]
