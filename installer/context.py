"""An org resolved once: what every action needs to know about it, looked up in one place.

A command maps `--org NAME` to an OrgContext with `resolve` (an unknown name is an invalid
argument: UnknownOrgError, exit 2) and passes it down; actions read the org's settings, secrets,
host and transport from it instead of looking the org up again. After an action changes the
inventory (hosts.yml, sso.yml, the vault) it takes a fresh context with `reload`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from . import validate
from .errors import SfpError
from .inventory import SECRET_AGES_VAR, SECRETS_VAR, Inventory, Org
from .vault import Vault

# Host variables Ansible reads as a boolean, written by hand in many spellings.
_TRUE = ("true", "yes", "1", "on")


@dataclass(frozen=True)
class Transport:
    """How the org's host is reached: Ansible's connection variables of its inventory host."""

    connection: str
    """`local` (this machine, no SSH) or what ansible_connection names (default ssh)."""
    host: str
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    become: bool = False

    @property
    def local(self) -> bool:
        return self.connection == "local"

    @classmethod
    def of(cls, org: Org) -> Transport:
        hv = org.hostvars
        port = hv.get("ansible_port") or hv.get("ansible_ssh_port")
        key = hv.get("ansible_ssh_private_key_file") or hv.get("ansible_private_key_file")
        user = hv.get("ansible_user") or hv.get("ansible_ssh_user")
        return cls(connection=str(hv.get("ansible_connection") or "ssh"), host=str(hv.get("ansible_host") or org.name),
                   user=str(user) if user else None, port=int(port) if port else None,
                   key_file=str(key) if key else None,
                   become=str(hv.get("ansible_become", "")).strip().lower() in _TRUE)


def open_vault(inv: Inventory) -> Vault:
    """The inventory's vault (its password file must exist)."""
    if inv.vault_password_file is None:
        raise SfpError("no vault password file", "pass --vault-password-file or run `sfp-server init`")
    return Vault(inv.vault_password_file)


def _vault_data(inv: Inventory, name: str) -> dict[str, Any]:
    path = inv.vault_file(name)
    if not path.exists():
        return {}
    data: dict[str, Any] = open_vault(inv).read(path)
    for var in (SECRETS_VAR, SECRET_AGES_VAR):
        if not isinstance(data.get(var, {}), dict):
            raise SfpError(f"{path}: {var} is not a mapping", "restore the file from a backup")
    return data


def read_secrets(inv: Inventory, name: str) -> dict[str, str]:
    """The org's vault entries (`sfp_org_secrets`); an org without a vault file has none yet."""
    return {str(k): str(v) for k, v in _vault_data(inv, name).get(SECRETS_VAR, {}).items()}


def read_secret_ages(inv: Inventory, name: str) -> dict[str, str]:
    """When each of the org's secrets was made or last changed (`sfp_org_secret_ages`: name -> UTC
    stamp). A secret written before the toolkit kept these has none until it changes."""
    return {str(k): str(v) for k, v in _vault_data(inv, name).get(SECRET_AGES_VAR, {}).items()}


def write_secrets(inv: Inventory, name: str, values: dict[str, str], known_ages: dict[str, str] | None = None) -> None:
    """Replace the org's vault entries (encrypted, 0600, atomically). Every writer of secrets comes
    through here, so this is where their ages are kept: a new or changed value is stamped now (or
    with its stamp in `known_ages`: a restore brings back values made earlier), an unchanged one
    keeps its stamp, a removed one loses it."""
    before = _vault_data(inv, name)
    old_values, old_ages = before.get(SECRETS_VAR, {}), before.get(SECRET_AGES_VAR, {})
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ages = {}
    for key, value in values.items():
        if key in old_values and str(old_values[key]) == str(value):
            if key in old_ages:
                ages[key] = str(old_ages[key])
        else:
            ages[key] = (known_ages or {}).get(key, now)
    open_vault(inv).write(inv.vault_file(name), {SECRETS_VAR: values, SECRET_AGES_VAR: ages})


@dataclass
class OrgContext:
    """One org of one inventory, resolved once: settings, secrets, host and transport."""

    inventory: Inventory
    name: str
    checked: bool = False
    """The inventory was validated for this org when the context was made."""
    follow_up: Callable[..., str] = field(default=lambda *args: shlex.join(["sfp-server", *args]), repr=False)
    """Formats a follow-up command (the CLI passes one with its own program path and -i INVENTORY)."""
    _secrets: dict[str, str] | None = field(default=None, repr=False)
    _org: Org | None = field(default=None, repr=False)

    @property
    def org(self) -> Org:
        """The org's inventory entry, read on first use: a command that needs only the org's vault
        (`secrets show`) reports a wrong vault password as such, not as unreadable host variables."""
        if self._org is None:
            self._org = self.inventory.org(self.name)
        return self._org

    @property
    def machine(self) -> str:
        return self.org.machine

    @property
    def hostvars(self) -> dict[str, Any]:
        return self.org.hostvars

    @cached_property
    def settings(self) -> dict[str, Any]:
        """`sfp_org` with its defaults (installer.settings), as the playbooks get it."""
        return self.org.config

    @property
    def machine_settings(self) -> dict[str, Any]:
        """The machine settings (`sfp_*`) of the org's host, with their defaults."""
        return self.org.settings

    @property
    def org_dir(self) -> str:
        return self.org.org_dir

    @property
    def project(self) -> str:
        return self.org.project

    @cached_property
    def transport(self) -> Transport:
        return Transport.of(self.org)

    @property
    def secrets(self) -> dict[str, str]:
        """The org's vault entries, read on first use (commands that only read the bucket need no vault)."""
        if self._secrets is None:
            self._secrets = read_secrets(self.inventory, self.name)
        return dict(self._secrets)

    def command(self, *args: str) -> str:
        """A follow-up command for a message or hint, as the operator can type it (plain text)."""
        return self.follow_up(*args)

    def write_secrets(self, values: dict[str, str], known_ages: dict[str, str] | None = None) -> None:
        write_secrets(self.inventory, self.name, values, known_ages)
        self._secrets = dict(values)

    def reload(self, *, check: bool | None = None) -> OrgContext:
        """A fresh context of the same org from the files as they are now (after hosts.yml, sso.yml or
        the vault changed); validated again when this one was (or `check` says so)."""
        inv = Inventory(self.inventory.path, self.inventory.vault_password_file)
        fresh = resolve(inv, self.name, check=self.checked if check is None else check)
        fresh.follow_up = self.follow_up
        return fresh


def resolve(inv: Inventory, name: str, *, check: bool = False,
            follow_up: Callable[..., str] | None = None) -> OrgContext:
    """The org `name` of the inventory (UnknownOrgError, exit 2, when it has none); with `check`,
    the inventory is validated for it first (ConfigError listing every problem)."""
    if name not in inv.org_names():
        raise inv.unknown_org(name)
    ctx = OrgContext(inv, name, checked=check, _org=validate.validate(inv, [name])[0] if check else None)
    if follow_up is not None:
        ctx.follow_up = follow_up
    return ctx


def of_validated(inv: Inventory, orgs: list[Org]) -> list[OrgContext]:
    """Contexts of orgs that validate.validate returned (no second lookup)."""
    return [OrgContext(inv, org.name, checked=True, _org=org) for org in orgs]
