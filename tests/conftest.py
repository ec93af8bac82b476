"""Shared fixtures: inventories made from the example, written to a temp dir per test."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer import paths
from installer.vault import create_password_file

REPO = Path(__file__).resolve().parent.parent


def write_yaml(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def make_inventory(tmp_path: Path) -> Callable[..., Path]:
    """An inventory directory: the example's layout with the given orgs and machine settings."""

    def make(
        orgs: dict[str, dict[str, Any]] | None = None,
        settings: dict[str, Any] | None = None,
        name: str = "inv",
        machine_vars: dict[str, Any] | None = None,
    ) -> Path:
        inv = tmp_path / name
        shutil.copytree(paths.inventory_example(), inv)
        if orgs is not None:
            shutil.rmtree(inv / "host_vars")
            write_yaml(inv / "hosts.yml", {"all": {"children": {"sfp_orgs": {"children": {"machine_local": {
                "vars": {"sfp_machine": "local", "ansible_connection": "local",
                         "ansible_python_interpreter": "{{ ansible_playbook_python }}", **(machine_vars or {})},
                "hosts": {n: None for n in orgs},
            }}}}}})
            for org, cfg in orgs.items():
                write_yaml(inv / "host_vars" / org / "main.yml", {"sfp_org": cfg})
        if settings is not None:
            write_yaml(inv / "group_vars" / "all" / "main.yml", settings)
        create_password_file(inv / ".vault-pass")
        return inv

    return make


def org_config(api: int, pg: int, tx: int, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "release": "v0.8.1",
        "public_url": f"http://127.0.0.1:{api}",
        "ports": {"api": api, "postgres": pg, "pooler_transaction": tx},
    }
    cfg.update(extra)
    return cfg
