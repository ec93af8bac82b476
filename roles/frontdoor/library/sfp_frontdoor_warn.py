#!/usr/bin/python
"""Print a warning in the play's output ([WARNING]: ...), changing nothing.

A debug message scrolls by among the ok lines; a warning is printed apart and repeated in the
recap's neighbourhood, which is what a certificate browsers refuse deserves.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: sfp_frontdoor_warn
short_description: Emit an Ansible warning
options:
  msg:
    description: The warning.
    type: str
    required: true
"""


def main() -> None:
    module = AnsibleModule(argument_spec={"msg": {"type": "str", "required": True}}, supports_check_mode=True)
    module.warn(module.params["msg"])
    module.exit_json(changed=False)


if __name__ == "__main__":
    main()
