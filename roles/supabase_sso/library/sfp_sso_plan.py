#!/usr/bin/python
"""Ansible module: work out what an org's Auth must be sent for its SAML and custom OIDC providers.

Runs on the controller (the role delegates it to localhost, with the Python that runs
ansible-playbook): it needs the toolkit's SSO library (installer.sso), installed into that Python
with sfp-server (a plain import, no search-path edit), which fetches and validates every IdP's
metadata and decides idempotently what to send (entityID/fingerprint comparison, GoTrue's
omitempty rules, the write-only client secret).
It is given what Auth has (read on the org's host by sfp_gotrue_admin) and sends nothing itself;
the org's host sends the plan. It is given the NAMES of the vault's entries, never their values.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: sfp_sso_plan
short_description: Plan the admin API requests that register an org's SAML and custom OIDC providers.
description:
  - Validates each SAML IdP's metadata and compares the desired providers with I(current) (what Auth has).
    Returns the requests to send (C(requests), without secrets: C(secret_fields) name vault keys), the
    vault keys they need (C(secret_keys)) and one result per provider (created, updated, unchanged, removed,
    absent). Providers not in I(settings) are left alone; those named in I(remove) are taken out.
options:
  api_url: {description: The org's API gateway URL (named in messages)., type: str, required: true}
  settings: {description: The org's SSO settings (sfp_org_sso)., type: dict, default: {}}
  current: {description: What Auth has (sfp_gotrue_admin state=read)., type: dict, default: {}}
  secret_names: {description: Names of the entries in the org's vault., type: list, elements: str, default: []}
  rotate_secrets: {description: Custom OIDC providers whose client secret is to be re-sent., type: list, elements: str, default: []}
  remove: {description: Providers (names in settings) to take out of Auth., type: list, elements: str, default: []}
  base_dir: {description: Directory relative metadata_file paths are resolved against (the inventory)., type: path}
  timeout: {description: Seconds per IdP request., type: float, default: 15}
"""

LOOPBACK_KEY = "allow_insecure_loopback"


def _library() -> tuple[Any, Any, Any]:
    # Imported here, not at the top: Ansible loads this file for its documentation on machines that
    # lack the toolkit, and the failure must become the module's message, not a traceback.
    from installer.errors import SfpError
    from installer.sso import config, plan

    return SfpError, config, plan


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "api_url": {"type": "str", "required": True},
            "settings": {"type": "dict", "default": {}},
            "current": {"type": "dict", "default": {}},
            "secret_names": {"type": "list", "elements": "str", "default": [], "no_log": False},
            "rotate_secrets": {"type": "list", "elements": "str", "default": [], "no_log": False},
            "remove": {"type": "list", "elements": "str", "default": []},
            "base_dir": {"type": "path"},
            "timeout": {"type": "float", "default": 15.0},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        library = _library()
    except ImportError as exc:
        module.fail_json(msg=f"the sfp-server toolkit (installer.sso) is not importable on the controller by "
                             f"{sys.executable}: {exc}; install sfp-server into the Python that runs "
                             "ansible-playbook (the .venv's ansible-playbook has it) or set supabase_sso__controller_python")
        return
    sfp_error, config, plan = library

    raw = dict(p["settings"] or {})
    loopback = bool(raw.pop(LOOPBACK_KEY, False))
    try:
        settings = config.parse_sso_settings(raw, where="sfp_org_sso", allow_insecure_loopback=loopback)
        result = plan.plan(settings, p["current"] or {}, api_url=p["api_url"], secret_names=p["secret_names"],
                           rotate=p["rotate_secrets"], remove=p["remove"],
                           base_dir=Path(p["base_dir"]) if p["base_dir"] else None, timeout=p["timeout"],
                           allow_insecure_loopback=loopback, check_mode=module.check_mode)
    except sfp_error as exc:
        module.fail_json(msg=str(exc).replace("\n  → ", " → "))
        return
    # Planning changes nothing; the apply step on the org's host reports the change.
    module.exit_json(changed=False, requests=[r.to_dict() for r in result.requests], results=result.results,
                     secret_keys=result.secret_keys, writes=len(result.requests))


if __name__ == "__main__":
    main()
