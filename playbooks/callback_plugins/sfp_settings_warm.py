"""Loads the toolkit's settings schemas in ansible-playbook's main process, before any task runs.

Each task runs in a worker process forked from the main one. The filter sfp_role_inputs
(filter_plugins/sfp_settings.py) needs the schemas compiled; loaded here once, every worker inherits
them, where otherwise each task of each org would import and compile them anew. This callback prints
nothing and changes no result: it only moves work to where it is done once.
"""

from __future__ import annotations

from ansible.plugins.callback import CallbackBase

from installer import settings

DOCUMENTATION = """
    name: sfp_settings_warm
    type: aggregate
    short_description: load the sfp-server settings schemas once, before the workers fork
    description: Compiles installer/schema/*.yml in the controller's main process.
    requirements: [the sfp-server package installed in ansible-playbook's environment]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "sfp_settings_warm"
    CALLBACK_NEEDS_ENABLED = False

    def __init__(self) -> None:
        super().__init__()
        settings.warm()
