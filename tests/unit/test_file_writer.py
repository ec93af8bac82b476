"""The one-shot file writer (roles/supabase_stack/library/sfp_org_files.py) on its own, in real Ansible.

One ansible-playbook run plays the sequence an operator's installs go through: check on an empty
directory, apply, check again, apply again, a changed input in check mode then applied, a drifted
mode, and an operator's edit of a create-only file. Between the steps a `find` task records every entry under the org directory
(mode, checksum, inode, mtime), so each step's effect on disk is measured, not inferred from
`changed`. One run instead of one per step: the module is the subject, not the playbook start-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

BIN = Path(sys.executable).parent
LIBRARY = REPO / "roles" / "supabase_stack" / "library"

DIRS = [{"path": "volumes/db", "mode": "0700"}, {"path": "config", "mode": "0755"}]
FILES = [
    {"path": "compose.yaml", "mode": "0644", "content": "services: {}\n"},
    {"path": ".env", "mode": "0600", "content": "POSTGRES_PASSWORD=not-a-real-secret-0123\n"},
    {"path": "config/kong.yml", "mode": "0640", "content": "_format_version: '3.0'\n"},
    # Written once, then the operator's (the role's `create_only` files, e.g. custom SQL).
    {"path": "config/operator.sql", "mode": "0644", "content": "-- yours\n", "create_only": True},
]
CHANGED_FILES = [dict(f, content="services: {db: {}}\n") if f["path"] == "compose.yaml" else f for f in FILES]


def write_step(name: str, files: list[dict[str, Any]], check: bool = False) -> dict[str, Any]:
    return {"name": name, "sfp_org_files": {"root": "{{ root }}", "dirs": DIRS, "files": files},
            "check_mode": check, "register": name}


def snapshot(name: str) -> dict[str, Any]:
    return {"name": f"snapshot {name}", "ansible.builtin.find": {
        "paths": "{{ root }}", "recurse": True, "hidden": True, "file_type": "any", "get_checksum": True},
        "register": f"snap_{name}"}


STEPS = ["check_empty", "apply", "check_again", "apply_again", "check_changed", "apply_changed", "apply_drift",
         "apply_after_edit"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every step's registered result and the directory's snapshot after it."""
    tmp = tmp_path_factory.mktemp("file_writer")
    root, out = tmp / "org", tmp / "results.json"
    root.mkdir()
    tasks: list[dict[str, Any]] = [
        write_step("check_empty", FILES, check=True), snapshot("check_empty"),
        write_step("apply", FILES), snapshot("apply"),
        write_step("check_again", FILES, check=True), snapshot("check_again"),
        write_step("apply_again", FILES), snapshot("apply_again"),
        write_step("check_changed", CHANGED_FILES, check=True), snapshot("check_changed"),
        write_step("apply_changed", CHANGED_FILES), snapshot("apply_changed"),
        # Someone loosened the secret file's mode and edited the create-only file by hand.
        {"name": "drift", "ansible.builtin.file": {"path": "{{ root }}/.env", "mode": "0644"}},
        {"name": "edit", "ansible.builtin.copy": {"dest": "{{ root }}/config/operator.sql", "content": "-- edited\n"}},
        write_step("apply_drift", CHANGED_FILES), snapshot("apply_drift"),
        write_step("apply_after_edit", CHANGED_FILES), snapshot("apply_after_edit"),
        {"name": "results", "ansible.builtin.copy": {
            "dest": str(out), "content": "{{ {"
            + ", ".join(f"'{s}': {s}, 'snap_{s}': snap_{s}" for s in STEPS) + "} | to_json }}"}},
    ]
    playbook = tmp / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "connection": "local", "gather_facts": False,
                                         "vars": {"ansible_python_interpreter": sys.executable, "root": str(root)},
                                         "tasks": tasks}]))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LIBRARY": str(LIBRARY),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0"}
    done = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results: dict[str, Any] = json.loads(out.read_text())
    results["root"] = str(root)
    return results


def entries(run: dict[str, Any], step: str) -> dict[str, dict[str, Any]]:
    root = run["root"]
    return {os.path.relpath(f["path"], root): f for f in run[f"snap_{step}"]["files"]}


def file_state(run: dict[str, Any], step: str) -> dict[str, tuple[str, str, int, float]]:
    """Each regular file's mode, checksum, inode and mtime: a rewrite shows as a new inode."""
    return {p: (f["mode"], f["checksum"], f["inode"], f["mtime"]) for p, f in entries(run, step).items() if f["isreg"]}


ALL_PATHS = sorted(["volumes", "volumes/db", "config", *(f["path"] for f in FILES)])


def test_check_mode_reports_every_path_and_writes_nothing(run: dict[str, Any]) -> None:
    result = run["check_empty"]
    assert result["changed"] is True
    assert sorted(result["changed_paths"]) == sorted([d["path"] for d in DIRS] + [f["path"] for f in FILES])
    assert entries(run, "check_empty") == {}


def test_apply_writes_every_file_with_its_mode(run: dict[str, Any]) -> None:
    assert run["apply"]["changed"] is True
    assert sorted(run["apply"]["changed_paths"]) == sorted(run["check_empty"]["changed_paths"])
    written = entries(run, "apply")
    assert sorted(written) == ALL_PATHS, "no temporary file is left beside the targets"
    assert written[".env"]["mode"] == "0600", "the secrets file is never readable by others"
    assert written["config/kong.yml"]["mode"] == "0640"
    assert written["compose.yaml"]["mode"] == "0644"
    assert written["volumes/db"]["mode"] == "0700" and written["volumes/db"]["isdir"]
    # find's checksum is SHA-1 of the content: each file holds exactly what it was given.
    assert {f["path"]: written[f["path"]]["checksum"] for f in FILES} == {
        f["path"]: hashlib.sha1(f["content"].encode()).hexdigest() for f in FILES}


def test_check_after_apply_reports_no_change(run: dict[str, Any]) -> None:
    assert run["check_again"]["changed"] is False
    assert run["check_again"]["changed_paths"] == []
    assert file_state(run, "check_again") == file_state(run, "apply")


def test_apply_again_changes_nothing_on_disk(run: dict[str, Any]) -> None:
    assert run["apply_again"]["changed"] is False
    assert run["apply_again"]["changed_paths"] == []
    # Same inode and mtime: the files were compared, not rewritten.
    assert file_state(run, "apply_again") == file_state(run, "apply")


def test_check_mode_sees_a_changed_input_and_writes_nothing(run: dict[str, Any]) -> None:
    assert run["check_changed"]["changed"] is True
    assert run["check_changed"]["changed_paths"] == ["compose.yaml"]
    assert file_state(run, "check_changed") == file_state(run, "apply_again")


def test_a_changed_input_rewrites_exactly_that_file(run: dict[str, Any]) -> None:
    assert run["apply_changed"]["changed"] is True
    assert run["apply_changed"]["changed_paths"] == ["compose.yaml"]
    before, after = file_state(run, "apply_again"), file_state(run, "apply_changed")
    assert {p for p in after if after[p] != before[p]} == {"compose.yaml"}
    assert after["compose.yaml"][0] == "0644"


def test_a_drifted_mode_is_put_back_and_create_only_files_stay_the_operators(run: dict[str, Any]) -> None:
    assert run["apply_drift"]["changed_paths"] == [".env"]
    after = entries(run, "apply_drift")
    assert after[".env"]["mode"] == "0600"
    assert (Path(run["root"]) / "config" / "operator.sql").read_text() == "-- edited\n"
    assert run["apply_after_edit"]["changed"] is False
    assert file_state(run, "apply_after_edit") == file_state(run, "apply_drift")
