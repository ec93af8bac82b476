"""Observability: a Prometheus textfile per org and an optional webhook, neither carrying secrets."""

from __future__ import annotations

import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

METRICS = {
    "sfp_backup_last_success_timestamp_seconds": "Unix time the last successful backup finished.",
    "sfp_backup_last_size_bytes": "Size in bytes of the last successful backup set (encrypted objects).",
    "sfp_backup_last_duration_seconds": "Duration in seconds of the last successful backup.",
    "sfp_backup_last_failure_timestamp_seconds": "Unix time the last backup failed (0: never).",
}
_LINE = re.compile(r'^(?P<name>[a-z_]+)\{org="(?P<org>[^"]*)"\} (?P<value>\S+)$')


def metrics_path(directory: Path, org: str) -> Path:
    return directory / f"sfp_backup_{org}.prom"


def read_metrics(path: Path) -> dict[str, float]:
    values: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            match = _LINE.match(line)
            if match and match["name"] in METRICS:
                values[match["name"]] = float(match["value"])
    return values


def write_metrics(directory: Path, org: str, **updates: float) -> Path:
    """Merge `updates` into the org's textfile and replace it atomically (node_exporter never sees half a file)."""
    unknown = set(updates) - {n.removeprefix("sfp_backup_") for n in METRICS}
    if unknown:
        raise ValueError(f"unknown metrics: {sorted(unknown)}")
    path = metrics_path(directory, org)
    values = read_metrics(path)
    values.update({f"sfp_backup_{k}": float(v) for k, v in updates.items()})
    lines = []
    for name, help_text in METRICS.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        value = values.get(name, 0.0)
        lines.append(f'{name}{{org="{org}"}} {value:.3f}' if value % 1 else f'{name}{{org="{org}"}} {int(value)}')
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def post_webhook(url: str, body: dict[str, Any], timeout: float = 10.0) -> str | None:
    """POST `body` as JSON. Returns None on success, else why it failed (a webhook never fails a backup)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "sfp-backup"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            if reply.status >= 300:
                return f"webhook answered HTTP {reply.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"webhook failed: {getattr(exc, 'reason', exc)}"
    return None
