"""What every command shares: the run's context (inventory, vault password file, verbosity) and
the one way an `--org NAME` becomes an OrgContext."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from rich.markup import escape

from ..context import OrgContext, resolve
from ..inventory import Inventory
from ..vault import password_file


def program() -> list[str]:
    """How the operator ran us, so that printed commands work when pasted into the same shell."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name == "sfp-server":
        on_path = shutil.which("sfp-server")
        if on_path and Path(on_path).resolve() == Path(argv0).resolve():
            return ["sfp-server"]
        return [argv0]  # e.g. .venv/bin/sfp-server, as typed
    return [sys.executable, "-m", "installer.cli"]


class Context:
    def __init__(self, inventory: Path, vault_password_file: str | None, verbose: bool,
                 global_args: list[str] | None = None) -> None:
        self.inventory_path = inventory
        self.vault_password_file = vault_password_file
        self.verbose = verbose
        self.global_args = global_args or []
        """-i/--vault-password-file as given on the command line (not from the environment)."""

    def inventory(self) -> Inventory:
        return Inventory(self.inventory_path, password_file(self.inventory_path, self.vault_password_file))

    def org(self, name: str, *, check: bool = False, inventory: Inventory | None = None) -> OrgContext:
        """The org named by --org, resolved once for the whole command (UnknownOrgError, exit 2, when the
        inventory has no such org); with `check` the inventory is validated for it first."""
        return resolve(inventory or self.inventory(), name, check=check, follow_up=self.command_text)

    def command_text(self, *args: str) -> str:
        """A follow-up command, runnable as typed, with this run's program and inventory (plain text)."""
        return shlex.join([*program(), *self.global_args, *args])

    def command(self, *args: str) -> str:
        """command_text escaped for rich markup (what `out.print` shows)."""
        return escape(self.command_text(*args))
