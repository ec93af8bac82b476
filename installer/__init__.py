"""sfp-server: install and run self-hosted Supabase, one isolated instance per organization."""

import os

from .paths import ansible_root

__version__ = "0.1.0"

# Ansible reads its configuration once, when it is first imported. The CLI loads the inventory in
# its own process (validation, vault): pin that load to the toolkit's own ansible.cfg, as the
# playbook runs are, so an ansible.cfg in the operator's working directory or home cannot enable
# the INI or script inventory plugins and turn a stray file of the inventory into code.
os.environ["ANSIBLE_CONFIG"] = str(ansible_root() / "ansible.cfg")
