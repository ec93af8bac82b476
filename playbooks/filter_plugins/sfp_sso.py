"""Jinja filter for the playbooks: an org's SSO settings -> the Auth (GoTrue) environment.

Lives beside the playbooks (Ansible loads playbook-adjacent filter_plugins for every play in this
directory), so site, status and uninstall all see the same `supabase_stack__auth_extra_env`. The
work is done by the toolkit's SSO library (installer.sso.config.gotrue_env), the single source of
truth for which GOTRUE_* variables a setting produces; secrets appear only as `${VAULT_KEY}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# The toolkit is installed in the environment whose ansible-playbook runs the playbooks.
from installer.sso import config as sso_config

LOOPBACK_KEY = "allow_insecure_loopback"


def _library() -> Any:
    return sso_config


def _missing_secrets_error(parsed: Any, values: Mapping[str, str], org: str) -> str | None:
    """What to run when the vault lacks an SSO secret: plain ansible-playbook users meet this first."""
    config = _library()
    missing = [k for k in parsed.vault_keys if not values.get(k)]
    if not missing:
        return None
    who = org or "ORG"
    steps = []
    if config.SAML_PRIVATE_KEY_VAULT_KEY in missing:
        steps.append(f"`sfp-server secrets ensure --org {who}` generates {config.SAML_PRIVATE_KEY_VAULT_KEY} (the org's "
                     f"SAML signing key, once) into host_vars/{who}/vault.yml")
    for o in parsed.oidc:
        if o.client_secret_vault_key in missing:
            steps.append(f"`sfp-server sso add --org {who} --oidc --provider {o.provider} --name {o.name} "
                         f"--client-id {o.client_id} ... --client-secret-file FILE` stores {o.client_secret_vault_key}")
    return (f"the org's vault lacks SSO secret(s): {', '.join(missing)}. Run "
            + "; ".join(steps) + "; then run the playbook again (`sfp-server install` does this by itself)")


def sfp_sso_auth_env(settings: Any, secrets: Mapping[str, Any] | None, public_url: str, strict: bool = True,
                     org: str = "") -> dict[str, str]:
    """GOTRUE_* variables for `sfp_org_sso`; {} when the org has no SSO block (nothing changes for it).

    With strict=False (removal plays) a broken block yields {} instead of failing: an org must stay
    removable whatever its settings say. `org` names the org in the fix an error suggests.
    """
    if not settings:
        return {}
    config = _library()
    from installer.errors import SfpError

    try:
        if not isinstance(settings, Mapping):
            raise SfpError("sfp_org_sso must be a mapping", "see installer/schema/sso.yml")
        data = {k: v for k, v in settings.items() if k != LOOPBACK_KEY}
        parsed = config.parse_sso_settings(data, where="sfp_org_sso",
                                           allow_insecure_loopback=bool(settings.get(LOOPBACK_KEY, False)))
        if not parsed.saml and not parsed.oidc:
            return {}
        values = {str(k): str(v) for k, v in (secrets or {}).items()}
        missing = _missing_secrets_error(parsed, values, org)
        if missing:
            if not strict:
                return {}
            raise AnsibleFilterError(missing)
        return dict(sorted(config.gotrue_env(parsed, values, public_url=public_url).items()))
    except SfpError as exc:
        if not strict:
            return {}
        raise AnsibleFilterError(f"{exc.message}" + (f" ({exc.hint})" if exc.hint else "")) from None


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sfp_sso_auth_env": sfp_sso_auth_env}
