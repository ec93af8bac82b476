"""An org's backup settings as the commands and the backup job read them (controller side).

The backup library is imported where it is used, not at the top: importing installer.backup
(boto3, pyrage, zstandard) costs about 220 ms of CPU on every `sfp-server` start, `--help`
included (measured: `import installer.cli` 0.65 s, with installer.backup 0.87 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import backup_inventory as binv
from .. import backup_job
from ..context import OrgContext, read_secret_ages
from ..errors import SfpError


def settings(ctx: OrgContext, identity_file: Path | None = None, *, encrypting: bool = False) -> Any:
    """The org's BackupSettings. Only a backup encrypts (`encrypting`): every other command reads the
    store without the recipient, which a new controller may not have yet (disaster recovery with the
    offline key file: the recipient is derived from `identity_file` when the vault has none)."""
    values = ctx.secrets
    if identity_file is not None and not values.get(binv.RECIPIENT):
        from ..backup.keys import recipient_of  # lazy: see the module docstring

        values[binv.RECIPIENT] = recipient_of(identity_file.read_text())
    parsed = binv.parse(ctx.name, ctx.hostvars, values, placeholder_recipient=not encrypting)
    if parsed is None:
        raise SfpError(f"org {ctx.name!r} has no backup settings",
                       f"add a `backup:` block to sfp_org in host_vars/{ctx.name}/main.yml (see installer/schema/org.yml)")
    return parsed


def metrics_dir(ctx: OrgContext) -> str:
    """Where the org's host keeps the job's Prometheus textfile metric."""
    return binv.metrics_dir(ctx.org_dir, binv.block(ctx.hostvars))


def env_file(ctx: OrgContext) -> str:
    """Where the org's host keeps AWS_* for `credentials.source: env`."""
    return binv.env_file(ctx.name, binv.block(ctx.hostvars))


def plain(value: Any) -> Any:
    """Inventory values as plain Python types (Ansible tags its strings; YAML and JSON need the base types)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def job_keys(raw: dict[str, Any], values: dict[str, str]) -> dict[str, str]:
    """The vault's BACKUP_* values a job needs: the recipient, the signing key, and the S3 keys only with
    `credentials.source: vault`."""
    wanted = [binv.RECIPIENT, binv.SIGNING_KEY] + (
        [binv.ACCESS_KEY, binv.SECRET_KEY] if backup_job.credentials_source(raw) == "vault" else [])
    return {k: values[k] for k in wanted if k in values}


def job_config(ctx: OrgContext) -> dict[str, Any]:
    """What the backup role renders into <org_dir>/backup/backup.json on the host, built on the controller."""
    values = ctx.secrets
    raw = binv.block(ctx.hostvars)
    if raw is None:
        raise SfpError(f"org {ctx.name!r} has no backup settings", "add a `backup:` block to its sfp_org")
    return {
        "org": ctx.name,
        "org_dir": ctx.org_dir,
        "container": f"{ctx.project}-db",
        "storage_dir": f"{ctx.org_dir}/volumes/storage",
        "metrics_dir": metrics_dir(ctx),
        "backup": plain(raw),
        "keys": job_keys(raw, values),
        "org_config": plain(ctx.org.raw),
        "secrets": {k: v for k, v in values.items() if k not in binv.NOT_IN_SETS},
        "secret_ages": read_secret_ages(ctx.inventory, ctx.name),
        "env_file": env_file(ctx),
    }
