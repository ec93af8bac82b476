"""Loads the toolkit's libraries that the playbooks' filters use in ansible-playbook's main process,
before any task runs.

Each task runs in a worker process forked from the main one, and the first template a worker
renders loads every filter plugin of the play. The filter sfp_role_inputs
(filter_plugins/sfp_settings.py) needs the schemas compiled; sfp_sso (filter_plugins/sfp_sso.py)
imports the SSO library, which brings requests and cryptography (half a second of CPU). Loaded here
once, every worker inherits them, where otherwise each task of each org would import and compile
them anew: measured with py-spy on a no-change install, a third of ansible-playbook's CPU went to
importing the SSO library in every worker. This callback prints nothing and changes no result: it
only moves work to where it is done once.
"""

from __future__ import annotations

from ansible.plugins.callback import CallbackBase

from installer import frontdoor as _frontdoor  # noqa: F401  (the front door's filter: SAML parsing, x509)
from installer import settings
from installer.sso import config as _sso_config  # noqa: F401  (imported to be inherited, see above)

DOCUMENTATION = """
    name: sfp_settings_warm
    type: aggregate
    short_description: load the sfp-server settings schemas and SSO library once, before the workers fork
    description: Compiles installer/schema/*.yml and imports installer.sso.config in the controller's main process.
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
