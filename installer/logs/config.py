"""The log export settings of one org (`sfp_org.logs`): the model `sfp-server logs export` takes.

Their schema, defaults included, is installer/schema/logs.yml (org.yml refers to it, so `validate`
checks the block with the rest of the org). The S3 keys are never settings: they come from the org's
vault (LOGS_S3_ACCESS_KEY_ID, LOGS_S3_SECRET_ACCESS_KEY) or the AWS_* environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import settings
from ..errors import ConfigError

AREA = "logs"  # installer/schema/logs.yml


@dataclass(frozen=True)
class ExportRetention:
    """An export is deleted when it is neither among the newest keep_last nor younger than keep_days."""

    keep_last: int | None = None
    keep_days: float | None = None


@dataclass(frozen=True)
class ExportSettings:
    bucket: str
    prefix: str
    path_style: bool
    endpoint_url: str | None = None
    region: str | None = None
    retention: ExportRetention | None = None

    @property
    def url(self) -> str:
        """Where exports go without --to: s3://bucket[/prefix]."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def export_settings(block: Any, *, where: str = "", var: str = "sfp_org.logs") -> ExportSettings | None:
    """The org's export store (None without `logs.export`); ConfigError naming each bad field.

    `where` names the file in messages (`host_vars/acme`), as `validate` does.
    """
    if block in (None, {}):
        return None
    problems = settings.check(where, var, block, AREA)
    if problems:
        raise ConfigError(problems, source=f"{var} settings")
    export = settings.with_defaults(AREA, block).get("export")
    if not export:
        return None
    retention = export.get("retention")
    return ExportSettings(
        bucket=export["bucket"], prefix=str(export["prefix"]).strip("/"), path_style=bool(export["path_style"]),
        endpoint_url=export.get("endpoint_url"), region=export.get("region"),
        retention=ExportRetention(keep_last=retention.get("keep_last"), keep_days=retention.get("keep_days"))
        if retention else None,
    )
