#!/usr/bin/python
"""Remove a set of files in one module run, reporting which of them were there."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sfp_paths_absent
short_description: Make sure none of a list of files exists, in one module run
description:
  - Every install of an org without a backup block makes sure nothing of an earlier schedule is
    left. One run for all of the paths instead of a file task per path: a module run costs about
    half a second of the controller's and the host's CPU, on every install of every org.
  - Files and symbolic links are removed; a directory at one of the paths is an error (these paths
    name files the role wrote), and nothing is removed then.
options:
  paths: {description: Absolute paths of files to remove, type: list, elements: path, required: true}
attributes:
  check_mode: {support: full}
  diff_mode: {support: none}
"""

RETURN = r"""
removed: {description: The paths that existed (and, outside check mode, were removed), type: list, returned: always}
"""

import contextlib
import os

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={"paths": {"type": "list", "elements": "path", "required": True}},
        supports_check_mode=True,
    )
    paths = module.params["paths"]
    relative = [p for p in paths if not os.path.isabs(p)]
    if relative:
        module.fail_json(msg=f"paths must be absolute, these are not: {relative}")
    dirs = [p for p in paths if os.path.isdir(p) and not os.path.islink(p)]
    if dirs:
        module.fail_json(msg=f"these are directories, not files the role wrote; remove them by hand if they are yours to remove: {dirs}")
    present = [p for p in paths if os.path.lexists(p)]
    if not module.check_mode:
        for p in present:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
    module.exit_json(changed=bool(present), removed=present)


if __name__ == "__main__":
    main()
