"""Jinja filter for the playbooks: an org's inventory settings -> the roles' inputs.

`hostvars[inventory_hostname] | sfp_role_inputs(inventory_hostname)` returns every `<role>__<name>`
input of the org (installer.settings.role_inputs): the settings validated against the schemas in
installer/schema/ and defaulted from them, the same model the CLI validates. A plain
ansible-playbook run therefore refuses bad settings with the message the CLI gives, naming the field.

The toolkit (the `installer` package) is installed in the environment whose ansible-playbook runs
these playbooks; it is imported like any other library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ansible.errors import AnsibleFilterError

from installer import settings
from installer.errors import SfpError

# Only these host variables feed the model; reading no others keeps the filter cheap (playbook
# variables are templated lazily, so it runs once per variable that reads it, then hits the cache).
_READ = (settings.ORG_VAR, settings.SECRETS_VAR, settings.SECRET_AGES_VAR, settings.SSO_VAR, *settings.machine_names())


@lru_cache(maxsize=64)
def _inputs(org: str, given: str, strict: bool) -> str:
    hostvars = json.loads(given)
    try:
        return json.dumps(settings.role_inputs(org, hostvars))
    except SfpError as exc:
        if strict:
            raise AnsibleFilterError(str(exc)) from None
        # Removal keeps working whatever the settings say: an org must stay removable.
        return json.dumps(settings.role_inputs(org, hostvars, strict=False))


def sfp_role_inputs(hostvars: Mapping[str, Any], org: str, strict: bool = True) -> dict[str, Any]:
    """The org's role inputs; a bad setting fails the play with every problem named (strict)."""
    given = {k: hostvars[k] for k in _READ if k in hostvars}
    try:
        key = json.dumps(given, sort_keys=True, default=str)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"the settings of org {org} are not plain data: {exc}") from None
    found: dict[str, Any] = json.loads(_inputs(str(org), key, bool(strict)))
    return found


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sfp_role_inputs": sfp_role_inputs}
