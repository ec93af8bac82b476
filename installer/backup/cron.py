"""The backup schedule's grammar, shared with roles/backup: one implementation, kept in the role.

The role must refuse a bad schedule on its own (plain ansible-playbook, no toolkit on the
controller), so the code lives in its filter plugin, roles/backup/filter_plugins/sfp_backup.py:
pure functions over cronsim that also render the cron line and the systemd timer's OnCalendar.
This module loads that file by its path (the roles travel inside the wheel too, see paths), so
`sfp-server validate` accepts exactly the schedules the role installs, and they fire at the same
times under cron and under systemd.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from types import ModuleType
from typing import Any

from .. import paths

_MODULE = "sfp_backup_schedule"


@cache
def _schedules() -> ModuleType:
    path = paths.roles_dir() / "backup" / "filter_plugins" / "sfp_backup.py"
    spec = importlib.util.spec_from_file_location(_MODULE, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the backup schedule code from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module  # registered before it runs, as an import would
    spec.loader.exec_module(module)
    return module


def cron_problem(expression: Any) -> str | None:
    """None if `expression` is a schedule cron and systemd read alike, else what is wrong with it."""
    return _schedules().schedule_problem(expression) or None


def on_calendar(expression: Any) -> list[str]:
    """The systemd OnCalendar expressions that fire when cron would run `expression`."""
    result: list[str] = _schedules().on_calendar(expression)
    return result


def cron_schedule(expression: Any) -> str:
    """The five normalised fields the cron file gets (macros expanded)."""
    result: str = _schedules().cron_schedule(expression)
    return result
