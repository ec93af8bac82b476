"""The inventory: an ordinary Ansible inventory directory, read with Ansible's own loader.

Layout (see inventory.example):
    hosts.yml                      the `sfp_orgs` group; each org is an inventory host, grouped by machine
    group_vars/all/main.yml        settings for every machine (`sfp_*`)
    host_vars/<org>/main.yml       `sfp_org`: the org's settings (schema: installer/schema/org.yml)
    host_vars/<org>/vault.yml      `sfp_org_secrets`, ansible-vault encrypted, written by the toolkit
    .vault-pass                    the vault password (0600), unless another file is named

Each org being a host means `--limit acme` works with plain ansible-playbook, and each org has
its own host_vars. Several orgs share one machine through the same connection variables; the
machine's name (`sfp_machine`, else `ansible_host`) groups them for port and capacity checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import get_file_vault_secret
from ansible.vars.manager import VariableManager

from . import settings
from .errors import ConfigError, Problem, SfpError

ORG_GROUP = "sfp_orgs"
ORG_VAR = settings.ORG_VAR
SECRETS_VAR = settings.SECRETS_VAR
SECRET_AGES_VAR = settings.SECRET_AGES_VAR



@dataclass
class Org:
    name: str
    machine: str
    raw: dict[str, Any]
    """`sfp_org` as written in the inventory (validated against the schema)."""
    settings: dict[str, Any]
    """Machine settings (`sfp_*`) with defaults applied."""
    hostvars: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        """`sfp_org` with the defaults applied (installer.settings: the model the playbooks get too)."""
        return settings.org_config(self.raw)

    @property
    def org_dir(self) -> str:
        return settings.org_dir(str(self.settings["sfp_base_dir"]), self.name)

    @property
    def project(self) -> str:
        """The Compose project name: every container, network and volume of the org carries it."""
        return settings.project(self.name)


class UnknownOrgError(SfpError):
    """--org names no org of the inventory: an invalid argument, so nothing was changed (exit 2)."""

    exit_code = 2


class Inventory:
    def __init__(self, path: Path, vault_password_file: Path | None = None) -> None:
        self.path = path.resolve()
        self.vault_password_file = vault_password_file
        if not self.path.is_dir():
            raise SfpError(
                f"inventory directory {path} does not exist",
                "create one with `sfp-server init DIR`, or pass -i/--inventory (or set SFP_INVENTORY)",
            )
        hosts = [p for p in (self.path / "hosts.yml", self.path / "hosts.yaml", self.path / "hosts") if p.is_file()]
        if not hosts:
            raise SfpError(f"{self.path} has no hosts.yml", "copy inventory.example or run `sfp-server init`")
        self.hosts_file = hosts[0]
        self._loader = DataLoader()
        if vault_password_file is not None and vault_password_file.exists():
            secret = get_file_vault_secret(filename=str(vault_password_file), vault_id="default", loader=self._loader)
            secret.load()
            self._loader.set_vault_secrets([("default", secret)])
        try:
            self._inv = InventoryManager(loader=self._loader, sources=[str(self.path)])
        except Exception as exc:  # Ansible raises many kinds for a broken file
            raise SfpError(f"cannot read inventory {self.path}: {exc}", "fix the YAML syntax named above") from None
        self._vars = VariableManager(loader=self._loader, inventory=self._inv)

    # -- reading -----------------------------------------------------------------------------------
    def org_names(self) -> list[str]:
        group = self._inv.groups.get(ORG_GROUP)
        if group is None:
            return []
        return sorted(h.name for h in group.get_hosts())

    def host_vars(self, name: str) -> dict[str, Any]:
        host = self._inv.get_host(name)
        if host is None:
            raise self.unknown_org(name)
        try:
            return dict(self._vars.get_vars(host=host, include_hostvars=False))
        except Exception as exc:
            raise SfpError(f"cannot read the variables of {name}: {exc}", "check the files under host_vars/ and group_vars/") from None

    def unknown_org(self, name: str) -> SfpError:
        # The known orgs go in the message itself: some commands (`sso check`) print only the message.
        known = ", ".join(self.org_names()) or "none"
        return UnknownOrgError(
            f"unknown org {name!r} in {self.path} (orgs in this inventory: {known})",
            f"pass one of them with --org, or add {name} to hosts.yml under {ORG_GROUP} with its host_vars/{name}/main.yml",
        )

    def org(self, name: str) -> Org:
        if name not in self.org_names():
            raise self.unknown_org(name)
        hv = self.host_vars(name)
        machine = str(hv.get("sfp_machine") or hv.get("ansible_host") or "localhost")
        raw = hv.get(ORG_VAR)
        return Org(name=name, machine=machine, raw=raw if isinstance(raw, dict) else {},
                   settings=settings.machine_settings(hv), hostvars=hv)

    def orgs(self, names: list[str] | None = None) -> list[Org]:
        return [self.org(n) for n in (names if names is not None else self.org_names())]

    def groups_of(self, name: str) -> set[str]:
        """The inventory groups host `name` is in (its machine group, sfp_orgs, all)."""
        host = self._inv.get_host(name)
        return {g.name for g in host.get_groups()} if host is not None else set()

    def child_groups(self, parent: str) -> list[tuple[str, dict[str, Any], list[str]]]:
        """(name, the vars written for it, its host names) of each child group of `parent`."""
        top = self._inv.groups.get(parent)
        return [(g.name, dict(g.get_vars()), [h.name for h in g.get_hosts()]) for g in (top.child_groups if top else [])]

    # -- files the toolkit owns ---------------------------------------------------------------------
    def org_vars_dir(self, name: str) -> Path:
        return self.path / "host_vars" / name

    def vault_file(self, name: str) -> Path:
        return self.org_vars_dir(name) / "vault.yml"


def select(inv: Inventory, org: tuple[str, ...] | list[str] | None, all_orgs: bool) -> list[str]:
    """The orgs a command acts on: named ones, or all with --all. Names are checked, never guessed."""
    if all_orgs and org:
        raise SfpError("--org and --all exclude each other", "name orgs with --org, or pass --all alone")
    if all_orgs:
        names = inv.org_names()
        if not names:
            raise ConfigError([Problem("hosts.yml", f"group {ORG_GROUP!r} has no orgs", "add an org under sfp_orgs")])
        return names
    if not org:
        raise SfpError("no org given", "pass --org NAME (repeatable) or --all")
    for name in org:
        if name not in inv.org_names():
            raise inv.unknown_org(name)
    return list(org)
