"""Runs one backup in a child process (the fault tests SIGKILL it mid-upload). Arguments: a JSON document."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from installer.backup import api
from installer.backup.config import BackupSettings, ObjectStore
from installer.backup.db import LocalDatabase


def main() -> None:
    spec = json.loads(sys.argv[1])
    settings = BackupSettings(store=ObjectStore(**spec["store"]), recipient=spec["recipient"], jobs=1)
    database = LocalDatabase(**{**spec["database"], "bindir": Path(spec["database"]["bindir"])})
    result = api.run_backup(settings, spec["org"], database, storage_dir=None, org_config={}, secrets={},
                            signing_key=spec["signing_key"], part_size=5 * 1024 * 1024, in_flight=1, zstd_threads=1)
    print(result.set_id)


if __name__ == "__main__":
    main()
