"""Where an org's single sign-on settings live in the inventory, and their validation.

`sfp_org_sso` is kept in its own file, host_vars/<org>/sso.yml, written by `sfp-server sso`:
the toolkit then never rewrites the operator's main.yml (PyYAML would drop its comments), and the
file is still an ordinary Ansible host_vars file that can be edited by hand.

Metadata files that `sso add --metadata-file` is given are copied to .sso-metadata/<org>/<name>.xml
in the inventory directory. Ansible parses every file of an inventory directory with each enabled
inventory plugin, except hidden entries (and host_vars/, group_vars/): a metadata file is
untrusted data that can hide, say, an INI `[all:vars]` block in an XML comment, which the INI
plugin would turn into connection variables (code on the controller). The leading dot keeps it
out whatever the Ansible configuration. Older versions copied to sso/<org>/<name>.xml: every
`sfp-server sso` command moves such copies (`migrate_metadata_copies`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from ansible.plugins.vars import host_group_vars

from .errors import ConfigError, Problem, SfpError
from .sso import config
from .sso.sp import generate_saml_private_key

SSO_VAR = "sfp_org_sso"
SSO_FILE = "sso.yml"
LOOPBACK_KEY = config.LOOPBACK_KEY
METADATA_DIR = ".sso-metadata"  # hidden: Ansible's inventory loader never reads dot-entries
LEGACY_METADATA_DIR = "sso"
HEADER = """\
# Single sign-on of org {org}: written by `sfp-server sso add|remove` (edits by hand are kept when
# they are valid). Schema: installer/schema/sso.yml. Secrets (SAML_PRIVATE_KEY, SSO_<NAME>_CLIENT_SECRET)
# are in vault.yml, never here. Apply with `sfp-server install --org {org}`.
"""


def sso_file(inventory: Path, org: str) -> Path:
    return inventory / "host_vars" / org / SSO_FILE


def metadata_copy(inventory: Path, org: str, name: str) -> Path:
    return inventory / METADATA_DIR / org / f"{name}.xml"


def legacy_metadata_copy(inventory: Path, org: str, name: str) -> Path:
    """Where versions before .sso-metadata/ copied metadata: parsed as inventory by Ansible."""
    return inventory / LEGACY_METADATA_DIR / org / f"{name}.xml"


def write_metadata_copy(inventory: Path, org: str, name: str, data: bytes) -> Path:
    """Keep the validated bytes (not a second read of the operator's file, which may have changed)."""
    dest = metadata_copy(inventory, org, name)
    if not dest.exists() or dest.read_bytes() != data:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    return dest


def migrate_metadata_copies(inventory: Path, org: str) -> list[str]:
    """Move the org's metadata copies from sso/<org>/ (read as inventory) to .sso-metadata/<org>/
    and point sso.yml at them. Returns the names of the providers moved."""
    raw = read_raw(inventory, org)
    moved: list[str] = []
    for item in raw.get("saml") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        name = item["name"]
        old, new = legacy_metadata_copy(inventory, org, name), metadata_copy(inventory, org, name)
        if item.get("metadata_file") != str(old.relative_to(inventory)):
            continue
        if old.exists():
            new.parent.mkdir(parents=True, exist_ok=True)
            os.replace(old, new)
        elif not new.exists():
            continue  # nothing to move; validation names the missing file
        item["metadata_file"] = str(new.relative_to(inventory))
        moved.append(name)
    if moved:
        write_raw(inventory, org, raw)
    _remove_legacy_leftovers(inventory, org)
    return moved


def _remove_legacy_leftovers(inventory: Path, org: str) -> None:
    """Drop sso/<org>/ (and sso/) once the moves left them empty; anything else in them stays."""
    org_dir = inventory / LEGACY_METADATA_DIR / org
    if org_dir.is_dir() and not any(org_dir.iterdir()):
        org_dir.rmdir()
    top = inventory / LEGACY_METADATA_DIR
    if top.is_dir() and not any(top.iterdir()):
        top.rmdir()


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
    # FOUND is a private cache of Ansible's; absent in another version, there is nothing to clear.
    found = getattr(host_group_vars, "FOUND", None)
    if found is not None:
        found.clear()


def parse(raw: Any, *, where: str = SSO_VAR) -> config.SsoSettings:
    """The org's SSO settings (ConfigError naming every bad field)."""
    if not isinstance(raw, dict):
        raise ConfigError([Problem(where, "must be a mapping with saml: and/or oidc: lists")])
    return config.parse_sso_settings(raw, where=where)


def generated_secrets(raw: Any, current: dict[str, str]) -> dict[str, str]:
    """The SSO secrets the toolkit makes itself and the vault still lacks: the org's SAML signing key,
    once it has a SAML provider (however sso.yml was written). Never replaces an existing value."""
    if not isinstance(raw, dict) or not raw.get("saml") or current.get(config.SAML_PRIVATE_KEY_VAULT_KEY):
        return {}
    return {config.SAML_PRIVATE_KEY_VAULT_KEY: generate_saml_private_key()}


def check(org: str, hostvars: dict[str, Any]) -> list[Problem]:
    """Validation hook for installer.validate: the schema (installer/schema/sso.yml, through
    installer.settings), then what it cannot say, every problem at once, each naming its field."""
    if SSO_VAR not in hostvars or hostvars[SSO_VAR] in (None, {}):
        return []
    where = f"host_vars/{org}/{SSO_FILE}: {SSO_VAR}"
    raw = hostvars[SSO_VAR]
    if not isinstance(raw, dict):
        return [Problem(where, "must be a mapping with saml: and/or oidc: lists", "see installer/schema/sso.yml")]
    return config.sso_problems(raw, where=where, inventory=True)
