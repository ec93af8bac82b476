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

from . import secrets as generated
from . import settings
from .errors import ConfigError, Problem
from .inventory import ORG_GROUP, ORG_VAR, SECRETS_VAR, Inventory
from .sso.config import SAML_PRIVATE_KEY_VAULT_KEY
from .sso_inventory import SSO_VAR

IDENTITY = "BACKUP_RECOVERY_IDENTITY"
RECIPIENT = "BACKUP_RECOVERY_RECIPIENT"
ACCESS_KEY = "BACKUP_S3_ACCESS_KEY_ID"
SECRET_KEY = "BACKUP_S3_SECRET_ACCESS_KEY"
SIGNING_KEY = "BACKUP_SIGNING_KEY"
SIGNING_PUBLIC_KEY = "BACKUP_SIGNING_PUBLIC_KEY"
SIGNING_PREVIOUS = "BACKUP_SIGNING_PREVIOUS_PUBLIC_KEYS"
# Earlier recovery keys (one per line), kept after a rotation while sets made with them remain.
PREVIOUS_IDENTITIES = "BACKUP_RECOVERY_PREVIOUS_IDENTITIES"
VAULT_KEYS = (IDENTITY, RECIPIENT, ACCESS_KEY, SECRET_KEY, SIGNING_KEY, SIGNING_PUBLIC_KEY, SIGNING_PREVIOUS,
              PREVIOUS_IDENTITIES)
# Never written into a set: the keys that open the sets, and the key that signs them.
NOT_IN_SETS = (IDENTITY, PREVIOUS_IDENTITIES, SIGNING_KEY)
# A syntactically valid recipient for validating an org whose key is made on its first install.
_PLACEHOLDER: str | None = None


def previous_identities(secrets: dict[str, str]) -> list[str]:
    """The earlier recovery keys a rotation kept (PREVIOUS_IDENTITIES, one per line), in order."""
    return [ln.strip() for ln in secrets.get(PREVIOUS_IDENTITIES, "").splitlines() if ln.strip()]


def block(hostvars: dict[str, Any]) -> dict[str, Any] | None:
    raw = hostvars.get(ORG_VAR)
    if not isinstance(raw, dict) or raw.get("backup") in (None, {}):
        return None
    value = raw["backup"]
    return value if isinstance(value, dict) else None  # the org schema reports a non-mapping


def configured(hostvars: dict[str, Any]) -> bool:
    return block(hostvars) is not None


def _path(raw: dict[str, Any] | None, key: str) -> str | None:
    paths = (raw or {}).get("paths")
    value = paths.get(key) if isinstance(paths, dict) else None
    return str(value) if value else None


def metrics_dir(org_dir: str, raw: dict[str, Any] | None) -> str:
    """Where the org's host keeps the job's Prometheus textfile metric (`paths.metrics_dir`)."""
    return _path(raw, "metrics_dir") or settings.org_path_default("backup", "paths.metrics_dir", org="", org_dir=org_dir)


def env_file(org: str, raw: dict[str, Any] | None) -> str:
    """Where the org's host keeps AWS_* for `credentials.source: env` (`paths.env_file`)."""
    return _path(raw, "env_file") or settings.org_path_default("backup", "paths.env_file", org=org, org_dir="")


def settings_data(raw: dict[str, Any], secrets: dict[str, str], *, placeholder_recipient: bool = False) -> dict[str, Any]:
    """The block with the vault's recipient and S3 keys filled in (the form parse_settings takes)."""
    data = copy.deepcopy(raw)
    if "recipient" not in data:
        if secrets.get(RECIPIENT):
            data["recipient"] = secrets[RECIPIENT]
        elif placeholder_recipient:
            global _PLACEHOLDER
            if _PLACEHOLDER is None:
                # lazy: installer.backup adds ~220 ms of CPU to every CLI start (this module is always loaded)
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
    from .backup import parse_settings  # lazy: see settings_data

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

    The recovery key is made on the first install, so a missing one is not a problem here. The
    block's schema problems that the org's own check names already (org.yml refers to backup.yml)
    are left out, so each is reported once.
    """
    try:
        parse(org, hostvars, placeholder_recipient=True)
    except ConfigError as exc:
        named = set(settings.check(f"host_vars/{org}", f"{ORG_VAR}.backup", block(hostvars), "backup"))
        return [p for p in exc.problems if p not in named]
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
    names = set(generated.NAMES) | set(generated.OPERATOR_SET) | set(generated.GRACE) | {SAML_PRIVATE_KEY_VAULT_KEY}
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
def machine_groups(inv: Inventory) -> dict[str, str]:
    """Every name a machine goes by in the inventory -> its group under sfp_orgs.

    A machine is a child group of sfp_orgs (inventory.example): its group name, its `sfp_machine`
    or `ansible_host` written in hosts.yml, and the machine name of each org already in it.
    """
    names: dict[str, str] = {}
    for group, gvars, hosts in inv.child_groups(ORG_GROUP):
        names.setdefault(group, group)
        for key in ("sfp_machine", "ansible_host"):
            if gvars.get(key):
                names.setdefault(str(gvars[key]), group)
        for host in hosts:
            names.setdefault(inv.org(host).machine, group)
    return names

