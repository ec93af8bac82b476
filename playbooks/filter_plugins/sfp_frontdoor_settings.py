"""Jinja filter for the playbooks: an org's settings -> the front door role's inputs (frontdoor__*).

The work is installer.frontdoor.role_inputs: hostname, certificate and Studio's sign-in checked
(the operator's certificate against its key and the hostname, the SAML IdP metadata as for Auth)
before a single file changes on a host. site.yml calls it once per org in a no_log set_fact: its
result holds the TLS key and the Studio secrets, and IdP metadata may be fetched for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

from installer import frontdoor, settings
from installer.errors import SfpError

_READ = (settings.ORG_VAR, settings.SECRETS_VAR, settings.SSO_VAR, "inventory_dir")


def _org(hostvars: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Path | None]:
    """(the host variables the front door reads, sfp_org with its defaults, the inventory directory)."""
    given = settings.plain({k: hostvars[k] for k in _READ if k in hostvars})
    raw = given.get(settings.ORG_VAR)
    inventory_dir = given.get("inventory_dir")
    return given, settings.org_config(raw if isinstance(raw, dict) else {}), Path(inventory_dir) if inventory_dir else None


def sfp_frontdoor_inputs(hostvars: Mapping[str, Any], org: str, strict: bool = True) -> dict[str, Any]:
    try:
        given, cfg, inventory_dir = _org(hostvars)
        return frontdoor.role_inputs(str(org), cfg, given, given.get(settings.SECRETS_VAR) or {},
                                     inventory_dir=inventory_dir, strict=bool(strict))
    except SfpError as exc:
        raise AnsibleFilterError(str(exc)) from None


def sfp_frontdoor_problems(hostvars: Mapping[str, Any], org: str) -> list[str]:
    """What is wrong with the org's front door settings and the vault values they name (validate_org.yml
    asks before any host changes); each names the field and the fix, never a secret's value."""
    given, cfg, inventory_dir = _org(hostvars)
    found = frontdoor.problems(str(org), cfg, given, given.get(settings.SECRETS_VAR) or {},
                               inventory_dir=inventory_dir, with_secrets=settings.SECRETS_VAR in given)
    return [str(p) for p in found]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sfp_frontdoor_inputs": sfp_frontdoor_inputs, "sfp_frontdoor_problems": sfp_frontdoor_problems}
