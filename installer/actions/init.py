"""`sfp-server init`: a new inventory directory from the example, with its own vault password."""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import paths
from ..errors import SfpError
from ..vault import DEFAULT_PASSWORD_FILE, create_password_file


def init_inventory(dest: Path) -> list[str]:
    """Copy inventory.example to `dest` (which must not hold an inventory yet). Returns what was made."""
    if (dest / "hosts.yml").exists():
        raise SfpError(f"{dest} already holds an inventory", "edit it, or choose an empty directory")
    source = paths.inventory_example()
    if not source.is_dir():
        raise SfpError(f"the example inventory is missing at {source}", "reinstall sfp-server")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, dest, dirs_exist_ok=True)
    made = [str(dest / "hosts.yml")]
    if create_password_file(dest / DEFAULT_PASSWORD_FILE):
        made.append(str(dest / DEFAULT_PASSWORD_FILE))
    gitignore = dest / ".gitignore"
    if not gitignore.exists():
        # The vault files are safe to commit; the password that opens them is not.
        gitignore.write_text(f"{DEFAULT_PASSWORD_FILE}\n")
    return made
