"""Backups of an org to S3-compatible object storage: encrypted sets, verification, retention, restore.

The public API is in `installer.backup.api` and re-exported here.
"""

from .api import cleanup, list_sets, prune, resolve_set, restore_set, run_backup, show_set, verify_set
from .backup import BackupResult
from .config import BackupSettings, ObjectStore, Retention, parse_settings
from .db import Database, DockerExecDatabase, LocalDatabase
from .keys import Trust, generate_recovery_key, generate_signing_key
from .manifest import FORMAT, Manifest
from .restore import RestoreResult
from .retention import PruneReport, Selection
from .s3 import CleanupReport, SetInfo
from .verify import VerifyReport

__all__ = [
    "FORMAT", "BackupResult", "BackupSettings", "CleanupReport", "Database", "DockerExecDatabase", "LocalDatabase",
    "Manifest", "ObjectStore", "PruneReport", "RestoreResult", "Retention", "Selection", "SetInfo", "Trust", "VerifyReport",
    "cleanup", "generate_recovery_key", "generate_signing_key", "list_sets", "parse_settings", "prune", "resolve_set", "restore_set",
    "run_backup", "show_set", "verify_set",
]
