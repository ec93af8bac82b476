"""The filter plugins import nothing that the callback sfp_settings_warm has not already imported.

ansible-playbook forks a worker per task, and a worker's first template loads every filter plugin
of the play. Whatever a plugin imports that the main process has not imported is imported again in
every worker, for every task of every org: py-spy showed a third of a no-change install's CPU going
to the SSO library's imports (requests, cryptography) before the callback loaded it. A plugin that
starts importing something new must have the callback import it too; this test says which.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import importlib.util, json, sys
def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
load(sys.argv[1], "sfp_settings_warm").CallbackModule()
before = set(sys.modules)
for i, path in enumerate(sys.argv[2:]):
    load(path, f"sfp_plugin_{i}")
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_filter_plugins_find_every_import_warm() -> None:
    plugins = sorted([*REPO.glob("playbooks/filter_plugins/*.py"), *REPO.glob("roles/*/filter_plugins/*.py")])
    assert len(plugins) >= 3, plugins  # the playbooks' two and the roles' own
    done = subprocess.run([sys.executable, "-c", PROBE, str(REPO / "playbooks/callback_plugins/sfp_settings_warm.py"),
                           *map(str, plugins)], capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    cold = json.loads(done.stdout)
    assert cold == [], (f"filter plugins import {len(cold)} modules the warm callback did not: {cold[:20]}; "
                        "import them in playbooks/callback_plugins/sfp_settings_warm.py")
