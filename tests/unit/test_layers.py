"""The layer contract (pyproject.toml [tool.importlinter]) holds, and it does catch an upward import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path, *args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {})}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300, check=False)


def test_the_toolkit_keeps_its_layer_contract() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    for contract in ("cli -> commands -> actions -> context -> domain -> foundation KEPT",
                     "no import cycles between the modules of any package of installer KEPT"):
        assert contract in done.stdout, done.stdout
    assert "0 broken" in done.stdout


CONTRACT = """\
[importlinter]
root_package = toy

[importlinter:contract:layers]
name = toy layers
type = layers
layers =
    toy.cli
    toy.actions
    toy.inventory

[importlinter:contract:acyclic]
name = toy cycles
type = acyclic_siblings
ancestors =
    toy
"""


def toy(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "toy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, text in files.items():
        (pkg / f"{name}.py").write_text(text)
    (tmp_path / ".importlinter").write_text(CONTRACT)
    return tmp_path


def test_an_import_that_points_down_passes(tmp_path: Path) -> None:
    root = toy(tmp_path, {"cli": "from . import actions\n", "actions": "from . import inventory\n", "inventory": ""})
    done = lint_imports(root, pythonpath=root)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    # The foundation reaching up into an action, inside a function as the old cycles were written.
    root = toy(tmp_path, {"cli": "from . import actions\n", "actions": "from . import inventory\n",
                          "inventory": "def org():\n    from .actions import run\n    return run\n"})
    done = lint_imports(root, pythonpath=root)
    assert done.returncode != 0
    assert "toy layers BROKEN" in done.stdout and "toy.inventory -> toy.actions" in done.stdout, done.stdout


def test_a_cycle_between_siblings_breaks_the_contract(tmp_path: Path) -> None:
    root = toy(tmp_path, {"cli": "", "actions": "", "inventory": "", "a": "from . import b\n", "b": "from . import a\n"})
    done = lint_imports(root, pythonpath=root)
    assert done.returncode != 0
    assert "toy cycles BROKEN" in done.stdout, done.stdout
