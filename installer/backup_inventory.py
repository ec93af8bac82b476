"""Where an org's backup settings live in the inventory, and how they become the library's settings.

`sfp_org.backup` (host_vars/<org>/main.yml) holds what an operator writes: store, schedule,
retention, webhook, jobs. It lives in `sfp_org` (not a file of its own, unlike SSO) because the
toolkit never writes it: the two values the toolkit makes or the operator keeps secret are in
the org's vault instead:

    BACKUP_RECOVERY_IDENTITY    the age identity that opens the org's sets (made on first install)
    BACKUP_RECOVERY_RECIPIENT   its public recipient (the sets are encrypted to it)
    BACKUP_S3_ACCESS_KEY_ID     S3 keys when `store.credentials.source: vault`
    BACKUP_S3_SECRET_ACCESS_KEY

`settings_data` merges them into the mapping `installer.backup.parse_settings` checks, so one
validation (the library's) names every bad field. A `recipient` written in the block wins over
the vault's (an operator who keeps the identity elsewhere); restore then needs --identity-file.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ConfigError, Problem
from .inventory import ORG_VAR, SECRETS_VAR

IDENTITY = "BACKUP_RECOVERY_IDENTITY"
RECIPIENT = "BACKUP_RECOVERY_RECIPIENT"
ACCESS_KEY = "BACKUP_S3_ACCESS_KEY_ID"
SECRET_KEY = "BACKUP_S3_SECRET_ACCESS_KEY"
VAULT_KEYS = (IDENTITY, RECIPIENT, ACCESS_KEY, SECRET_KEY)
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
