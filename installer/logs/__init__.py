"""Read, merge, filter, mask, print and export the container logs of an org.

The `sfp-server logs` and `sfp-server logs export` commands are thin wrappers over this API:

    from installer.logs import DockerEndpoint, LogQuery, run_logs, export_logs
    run_logs(LogQuery(org="acme", services=["auth", "db"], since="2h", level="warn"),
             endpoint=DockerEndpoint("ssh://root@db1.example"), secrets=org_secret_values,
             json_output=False, follow=False)
"""

from __future__ import annotations

from pathlib import Path

from .api import (
    LogQuery,
    follow_events,
    format_line,
    read_events,
    run_logs,
    write_json,
    write_terminal,
)
from .event import LEVELS, LogEvent
from .export import (
    ExportResult,
    S3Target,
    StoredExport,
    abort_stale_uploads,
    apply_retention,
    export_events,
    export_logs,
    list_exports,
    plan_retention,
    read_archive,
)
from .masking import Masker
from .parsers import EventBuilder, parse_line
from .source import SERVICES, Container, DockerEndpoint
from .timespec import parse_time_spec

SCHEMA_PATH = Path(__file__).with_name("event.schema.json")

__all__ = [
    "LEVELS",
    "SCHEMA_PATH",
    "SERVICES",
    "Container",
    "DockerEndpoint",
    "EventBuilder",
    "ExportResult",
    "LogEvent",
    "LogQuery",
    "Masker",
    "S3Target",
    "StoredExport",
    "abort_stale_uploads",
    "apply_retention",
    "export_events",
    "export_logs",
    "follow_events",
    "format_line",
    "list_exports",
    "parse_line",
    "parse_time_spec",
    "plan_retention",
    "read_archive",
    "read_events",
    "run_logs",
    "write_json",
    "write_terminal",
]
