"""Where an org's backup settings live in the inventory, and how they become the library's settings.

`sfp_org.backup` (host_vars/<org>/main.yml) holds what an operator writes: store, schedule,
retention, webhook, jobs. It lives in `sfp_org` (not a file of its own, unlike SSO) because the
toolkit never writes it: the values the toolkit makes or the operator keeps secret are in the
org's vault instead:

    BACKUP_RECOVERY_IDENTITY    the age identity that opens the org's sets (made on first install)
    BACKUP_RECOVERY_RECIPIENT   its public recipient (the sets are encrypted to it)
    BACKUP_SIGNING_KEY          Ed25519 key the org's backup job signs its sets with (made on first
                                install; copied into the job's 0600 config on the host, never into a set)
    BACKUP_SIGNING_PUBLIC_KEY   its public half: verify and restore accept only sets it signed
    BACKUP_SIGNING_PREVIOUS_PUBLIC_KEYS  earlier public keys (space-separated) whose sets still verify,
                                e.g. the old machine's after a restore with the offline key file
    BACKUP_S3_ACCESS_KEY_ID     S3 keys when `store.credentials.source: vault`
    BACKUP_S3_SECRET_ACCESS_KEY

`settings_data` merges them into the mapping `installer.backup.parse_settings` checks, so one
validation (the library's) names every bad field. A `recipient` written in the block wins over
the vault's (an operator who keeps the identity elsewhere); restore then needs --identity-file.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from .errors import ConfigError, Problem, SfpError
from .inventory import ORG_VAR, SECRETS_VAR

IDENTITY = "BACKUP_RECOVERY_IDENTITY"
RECIPIENT = "BACKUP_RECOVERY_RECIPIENT"
ACCESS_KEY = "BACKUP_S3_ACCESS_KEY_ID"
SECRET_KEY = "BACKUP_S3_SECRET_ACCESS_KEY"
SIGNING_KEY = "BACKUP_SIGNING_KEY"
SIGNING_PUBLIC_KEY = "BACKUP_SIGNING_PUBLIC_KEY"
SIGNING_PREVIOUS = "BACKUP_SIGNING_PREVIOUS_PUBLIC_KEYS"
VAULT_KEYS = (IDENTITY, RECIPIENT, ACCESS_KEY, SECRET_KEY, SIGNING_KEY, SIGNING_PUBLIC_KEY, SIGNING_PREVIOUS)
# Never written into a set: the key that opens the sets, and the key that signs them.
NOT_IN_SETS = (IDENTITY, SIGNING_KEY)
# A syntactically valid recipient for validating an org whose key is made on its first install.
_PLACEHOLDER: str | None = None


def block(hostvars: dict[str, Any]) -> dict[str, Any] | None:
    raw = hostvars.get(ORG_VAR)
    if not isinstance(raw, dict) or raw.get("backup") in (None, {}):
        return None
    value = raw["backup"]
    return value if isinstance(value, dict) else None  # the org schema reports a non-mapping


def configured(hostvars: dict[str, Any]) -> bool:
    return block(hostvars) is not None


def settings_data(raw: dict[str, Any], secrets: dict[str, str], *, placeholder_recipient: bool = False) -> dict[str, Any]:
    """The block with the vault's recipient and S3 keys filled in (the form parse_settings takes)."""
    data = copy.deepcopy(raw)
    if "recipient" not in data:
        if secrets.get(RECIPIENT):
            data["recipient"] = secrets[RECIPIENT]
        elif placeholder_recipient:
            global _PLACEHOLDER
            if _PLACEHOLDER is None:
                from .backup import generate_recovery_key

                _PLACEHOLDER = generate_recovery_key()[1]
            data["recipient"] = _PLACEHOLDER
    store = data.get("store")
    if isinstance(store, dict):
        creds = store.get("credentials")
        if isinstance(creds, dict) and creds.get("source") == "vault":
            for key, name in (("access_key_id", ACCESS_KEY), ("secret_access_key", SECRET_KEY)):
                if name in secrets and key not in creds:
                    creds[key] = secrets[name]
    return data


def _secrets(hostvars: dict[str, Any]) -> dict[str, str]:
    values = hostvars.get(SECRETS_VAR) or {}
    return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}


def parse(org: str, hostvars: dict[str, Any], secrets: dict[str, str] | None = None, *,
          placeholder_recipient: bool = False) -> Any:
    """BackupSettings of the org (ConfigError naming each field), or None without a backup block."""
    raw = block(hostvars)
    if raw is None:
        return None
    from .backup import parse_settings

    values = _secrets(hostvars) if secrets is None else secrets
    data = settings_data(raw, values, placeholder_recipient=placeholder_recipient)
    try:
        return parse_settings(data, source=f"host_vars/{org}: {ORG_VAR}.backup")
    except ConfigError as exc:
        for p in exc.problems:
            if p.where.endswith(("credentials.access_key_id", "credentials.secret_access_key")) and "required" in p.message:
                name = ACCESS_KEY if p.where.endswith("access_key_id") else SECRET_KEY
                exc.problems[exc.problems.index(p)] = Problem(
                    p.where, f"is required when source is vault (vault key {name} is not set)",
                    f"sfp-server secrets set --org {org} {name} < FILE, or use source: env / instance")
        raise ConfigError(exc.problems, source=f"{org} backup settings") from None


def check(org: str, hostvars: dict[str, Any]) -> list[Problem]:
    """Validation hook for installer.validate: every field through the library's parse_settings.

    The recovery key is made on the first install, so a missing one is not a problem here.
    """
    try:
        parse(org, hostvars, placeholder_recipient=True)
    except ConfigError as exc:
        return exc.problems
    return []


def public_keys(secrets: dict[str, str]) -> list[str]:
    """The org's signing public keys in its vault: the current one first, then earlier ones."""
    keys = [secrets.get(SIGNING_PUBLIC_KEY, ""), *secrets.get(SIGNING_PREVIOUS, "").replace(",", " ").split()]
    return list(dict.fromkeys(k.strip() for k in keys if k.strip()))


# -- restore: which of a set's secrets go back into the vault ------------------------------------
# SSO client secrets are named by the provider (installer/sso/config.py default_secret_key).
_SSO_CLIENT_SECRET = re.compile(r"^SSO_[A-Z0-9_]+_CLIENT_SECRET$")


def restorable_names(hostvars: dict[str, Any]) -> set[str]:
    """Every vault name a restore may write from a set: the toolkit's generated and operator-set
    secrets, the SAML signing key, plus the client-secret names the target's own sso.yml uses.
    The backup keys are not among them: they are the target's own (or come from the key file)."""
    from . import secrets as generated
    from .sso.config import SAML_PRIVATE_KEY_VAULT_KEY
    from .sso_inventory import SSO_VAR

    names = set(generated.NAMES) | set(generated.OPERATOR_SET) | {SAML_PRIVATE_KEY_VAULT_KEY}
    sso = hostvars.get(SSO_VAR)
    for provider in (sso.get("oidc") or []) if isinstance(sso, dict) else []:
        if isinstance(provider, dict) and isinstance(provider.get("client_secret_vault_key"), str):
            names.add(provider["client_secret_vault_key"])
    return (names - set(VAULT_KEYS)) | {ACCESS_KEY, SECRET_KEY}


def restorable(values: dict[str, str], hostvars: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """(the secrets of a set a restore writes into the vault, the names it leaves out)."""
    allowed = restorable_names(hostvars)
    keep = {k: v for k, v in values.items() if k in allowed or _SSO_CLIENT_SECRET.match(k)}
    return keep, sorted(k for k in values if k not in keep)


# -- machines (restore --to-host) ----------------------------------------------------------------
def machine_groups(inv: Any) -> dict[str, str]:
    """Every name a machine goes by in the inventory -> its group under sfp_orgs.

    A machine is a child group of sfp_orgs (inventory.example): its group name, its `sfp_machine`
    or `ansible_host` written in hosts.yml, and the machine name of each org already in it.
    """
    from .inventory import ORG_GROUP

    top = inv._inv.groups.get(ORG_GROUP)
    names: dict[str, str] = {}
    for group in (top.child_groups if top is not None else []):
        names.setdefault(group.name, group.name)
        gvars = group.get_vars()
        for key in ("sfp_machine", "ansible_host"):
            if gvars.get(key):
                names.setdefault(str(gvars[key]), group.name)
        for host in group.get_hosts():
            names.setdefault(inv.org(host.name).machine, group.name)
    return names


def _org_groups(data: Any) -> dict[str, Any] | None:
    root = data.get("all", {}).get("children", {}) if isinstance(data, dict) and "all" in data else data
    orgs = root.get(ORG_GROUP_NAME) if isinstance(root, dict) else None
    children = orgs.get("children") if isinstance(orgs, dict) else None
    return children if isinstance(children, dict) else None


ORG_GROUP_NAME = "sfp_orgs"


def _hosts_normal(data: Any) -> Any:
    """`hosts:` null and `hosts: {}` mean the same to Ansible."""
    if isinstance(data, dict):
        return {k: ({} if k == "hosts" and v is None else _hosts_normal(v)) for k, v in data.items()}
    return data


def moved_hosts_text(text: str, org: str, to_group: str) -> tuple[str, list[str]]:
    """hosts.yml with the org's entry moved into machine group `to_group`, comments and layout kept.

    Returns (new text, the groups it left). A plain line edit, then proved: the new file must
    parse to exactly the old inventory with the org moved; anything else raises (move it by hand).
    """
    import re

    import yaml

    def by_hand(why: str) -> SfpError:
        return SfpError(f"cannot move {org} to machine group {to_group} in hosts.yml automatically: {why}",
                        f"move the line `{org}:` under `{to_group}: hosts:` in hosts.yml yourself, then run restore again")

    data = yaml.safe_load(text)
    groups = _org_groups(data)
    if groups is None or not isinstance(groups.get(to_group, {}), dict | None):
        raise by_hand("no sfp_orgs children mapping")
    left = [g for g, body in groups.items() if isinstance(body, dict) and org in (body.get("hosts") or {})]
    if any((groups[g]["hosts"] or {}).get(org) is not None for g in left):
        raise by_hand(f"{org} has variables written in hosts.yml")
    expected = copy.deepcopy(data)
    exp_groups = _org_groups(expected)
    assert exp_groups is not None
    for g in left:
        del exp_groups[g]["hosts"][org]
    target = exp_groups.get(to_group) or {}
    exp_groups[to_group] = target
    target["hosts"] = {**(target.get("hosts") or {}), org: None}

    lines = text.splitlines(keepends=True)
    host_line = re.compile(rf"^(\s+){re.escape(org)}:\s*(?:null|~)?\s*(#.*)?$")
    comments = [m[2] for ln in lines if (m := host_line.match(ln.rstrip("\n"))) and m[2]]
    lines = [ln for ln in lines if not host_line.match(ln.rstrip("\n"))]
    group_re = re.compile(rf"^(\s+){re.escape(to_group)}:\s*(#.*)?$")
    starts = [i for i, ln in enumerate(lines) if group_re.match(ln.rstrip("\n"))]
    if len(starts) != 1:
        raise by_hand(f"the group {to_group} is not written once as `{to_group}:` on its own line")
    g_indent = len(group_re.match(lines[starts[0]].rstrip("\n"))[1])  # type: ignore[index]
    hosts_at = None
    for i in range(starts[0] + 1, len(lines)):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        if indent <= g_indent:
            break
        if re.match(r"^hosts:\s*(\{\}|null|~)?\s*(#.*)?$", stripped):
            hosts_at = (i, indent)
            break
    if hosts_at is None:
        lines.insert(starts[0] + 1, " " * (g_indent + 2) + "hosts:\n")
        hosts_at = (starts[0] + 1, g_indent + 2)
    i, indent = hosts_at
    lines[i] = " " * indent + "hosts:\n"
    lines.insert(i + 1, " " * (indent + 2) + f"{org}:" + (f"  {comments[0]}" if comments else "") + "\n")
    new = "".join(lines)
    # Empty host mappings left behind become `{}` (a bare `hosts:` line is null).
    new_lines = new.splitlines(keepends=True)
    for k, ln in enumerate(new_lines):
        if re.match(r"^\s+hosts:\s*(#.*)?$", ln.rstrip("\n")):
            nxt = next((m for m in new_lines[k + 1:] if m.strip() and not m.strip().startswith("#")), "")
            if len(nxt) - len(nxt.lstrip()) <= len(ln) - len(ln.lstrip()):
                new_lines[k] = ln.rstrip("\n").replace("hosts:", "hosts: {}", 1) + "\n"
    new = "".join(new_lines)
    try:
        got = yaml.safe_load(new)
    except yaml.YAMLError:
        got = None
    if _hosts_normal(got) != _hosts_normal(expected):
        raise by_hand("the edited file would not be the same inventory with only the org moved")
    return new, left
