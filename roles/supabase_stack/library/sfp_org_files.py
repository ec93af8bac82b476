#!/usr/bin/python
"""Write an org's rendered files in one module run: only those whose content or mode differ."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sfp_org_files
short_description: Write a set of rendered files under one directory, only where they differ
description:
  - One module run for the whole org directory instead of one per file, so an unchanged org
    costs one remote round trip. Files are compared by content and mode and replaced atomically.
  - Files marked create_only belong to the operator once written and are never overwritten.
options:
  root: {description: Directory the paths are relative to, type: path, required: true}
  dirs:
    description: Directories to create, with their modes.
    type: list
    elements: dict
    default: []
  files:
    description: Files to write; each has path, content, mode and optionally create_only.
    type: list
    elements: dict
    default: []
  diff_lines:
    description:
      - Return, per changed file, its unified diff (upgrade plans show them). Never set it for
        files that hold secrets.
    type: bool
    default: false
attributes:
  check_mode: {support: full}
  diff_mode: {support: none}
"""

RETURN = r"""
changed_paths: {description: Paths that were (or in check mode would be) created or changed, type: list, returned: always}
diffs: {description: "With diff_lines, path: unified diff of each changed file (empty before: a new file)", type: dict, returned: always}
"""

import difflib
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule


def _mode(text: str) -> int:
    return int(str(text), 8)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "dirs": {"type": "list", "elements": "dict", "default": []},
            "files": {"type": "list", "elements": "dict", "default": []},
            "diff_lines": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    root = module.params["root"]
    changed: list[str] = []
    diffs: dict[str, str] = {}
    for d in module.params["dirs"]:
        path = os.path.normpath(os.path.join(root, d["path"]))
        mode = _mode(d["mode"])
        if not os.path.isdir(path):
            changed.append(d["path"])
            if not module.check_mode:
                os.makedirs(path, exist_ok=True)
                os.chmod(path, mode)
        elif os.stat(path).st_mode & 0o7777 != mode:
            changed.append(d["path"])
            if not module.check_mode:
                os.chmod(path, mode)
    for f in module.params["files"]:
        path = os.path.join(root, f["path"])
        content = str(f["content"]).encode()
        mode = _mode(f["mode"])
        exists = os.path.isfile(path)
        if exists and f.get("create_only"):
            continue
        old = b""
        if exists:
            with open(path, "rb") as fh:
                old = fh.read()
            if old == content and os.stat(path).st_mode & 0o7777 == mode:
                continue
        changed.append(f["path"])
        if module.params["diff_lines"]:
            diffs[f["path"]] = "".join(difflib.unified_diff(
                old.decode(errors="replace").splitlines(keepends=True),
                content.decode(errors="replace").splitlines(keepends=True),
                fromfile=f"a/{f['path']}", tofile=f"b/{f['path']}"))
        if module.check_mode:
            continue
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        # Write beside the target and rename: a crash never leaves a half-written file, and the
        # mode is right before the file appears under its name (secrets are never world-readable).
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".sfp-")
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    module.exit_json(changed=bool(changed), changed_paths=changed, diffs=diffs)


if __name__ == "__main__":
    main()
