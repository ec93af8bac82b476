"""Where an org's single sign-on settings live in the inventory, and their validation.

`sfp_org_sso` is kept in its own file, host_vars/<org>/sso.yml, written by `sfp-server sso`:
the toolkit then never rewrites the operator's main.yml (PyYAML would drop its comments), and the
file is still an ordinary Ansible host_vars file that can be edited by hand. Metadata files that
`sso add --metadata-file` is given are copied to sso/<org>/<name>.xml in the inventory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, Problem, SfpError
from .sso import config

SSO_VAR = "sfp_org_sso"
SSO_FILE = "sso.yml"
LOOPBACK_KEY = "allow_insecure_loopback"
HEADER = """\
# Single sign-on of org {org}: written by `sfp-server sso add|remove` (edits by hand are kept when
# they are valid). Schema: installer/schema/sso.yml. Secrets (SAML_PRIVATE_KEY, SSO_<NAME>_CLIENT_SECRET)
# are in vault.yml, never here. Apply with `sfp-server install --org {org}`.
"""


def sso_file(inventory: Path, org: str) -> Path:
    return inventory / "host_vars" / org / SSO_FILE


def metadata_copy(inventory: Path, org: str, name: str) -> Path:
    return inventory / "sso" / org / f"{name}.xml"


def read_raw(inventory: Path, org: str) -> dict[str, Any]:
    path = sso_file(inventory, org)
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SfpError(f"{path} is not valid YAML: {exc}", "fix or remove the file") from None
    if not isinstance(data, dict):
        raise SfpError(f"{path} must be a mapping with {SSO_VAR}:", "fix or remove the file")
    value = data.get(SSO_VAR) or {}
    if not isinstance(value, dict):
        raise SfpError(f"{path}: {SSO_VAR} must be a mapping", "see installer/schema/sso.yml")
    return value


def render(org: str, raw: dict[str, Any]) -> str:
    return HEADER.format(org=org) + yaml.safe_dump({SSO_VAR: raw}, sort_keys=False, default_flow_style=False,
                                                   allow_unicode=True)


def write_raw(inventory: Path, org: str, raw: dict[str, Any]) -> bool:
    """Write sso.yml atomically. True if it changed.

    When no provider is left the file stays, holding `sfp_org_sso: {}`: Ansible's host_vars plugin
    remembers the files it found for the life of the process, and a vanished file is an error then.
    """
    path = sso_file(inventory, org)
    empty = not raw.get("saml") and not raw.get("oidc")
    if empty and not path.exists():
        return False
    text = render(org, {} if empty else raw)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    _forget_found_var_files()
    return True


def _forget_found_var_files() -> None:
    """Let the next Inventory of this process see a new host_vars file (Ansible caches the list)."""
    try:
        from ansible.plugins.vars import host_group_vars

        host_group_vars.FOUND.clear()
    except (ImportError, AttributeError):
        pass


def parse(raw: Any, *, where: str = SSO_VAR) -> config.SsoSettings:
    """The library's parse with the toolkit's own key (allow_insecure_loopback) taken out."""
    if not isinstance(raw, dict):
        raise ConfigError([Problem(where, "must be a mapping with saml: and/or oidc: lists")])
    data = {k: v for k, v in raw.items() if k != LOOPBACK_KEY}
    return config.parse_sso_settings(data, where=where, allow_insecure_loopback=bool(raw.get(LOOPBACK_KEY, False)))


def generated_secrets(raw: Any, current: dict[str, str]) -> dict[str, str]:
    """The SSO secrets the toolkit makes itself and the vault still lacks: the org's SAML signing key,
    once it has a SAML provider (however sso.yml was written). Never replaces an existing value."""
    if not isinstance(raw, dict) or not raw.get("saml") or current.get(config.SAML_PRIVATE_KEY_VAULT_KEY):
        return {}
    from .sso.sp import generate_saml_private_key

    return {config.SAML_PRIVATE_KEY_VAULT_KEY: generate_saml_private_key()}


def check(org: str, hostvars: dict[str, Any]) -> list[Problem]:
    """Validation hook for installer.validate: schema shape first, then every field through the library."""
    if SSO_VAR not in hostvars or hostvars[SSO_VAR] in (None, {}):
        return []
    from .validate import check_schema

    where = f"host_vars/{org}/{SSO_FILE}"
    raw = hostvars[SSO_VAR]
    problems = check_schema(where, SSO_VAR, raw, "sso")
    if problems:
        return problems
    try:
        parse(raw, where=f"{where}: {SSO_VAR}")
    except ConfigError as exc:
        return exc.problems
    return []
