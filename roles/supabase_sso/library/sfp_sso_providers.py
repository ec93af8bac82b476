#!/usr/bin/python
"""Ansible module: register an org's SAML and custom OIDC providers with Auth's admin API.

Runs on the controller (the role delegates it to localhost) and uses the toolkit's SSO library
(installer.sso): metadata is fetched and validated there before any request is written, and
`GoTrueAdmin.apply_*` decide idempotently what to send (entityID/fingerprint comparison,
GoTrue's omitempty rules, the write-only client secret). Re-implementing those comparisons with
`ansible.builtin.uri` and Jinja would duplicate them and drift; a module keeps one copy.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: sfp_sso_providers
short_description: Register SAML and custom OIDC providers with GoTrue's admin API, idempotently.
description:
  - Validates each SAML IdP's metadata and registers or updates it (C(/admin/sso/providers)); registers
    or updates custom OIDC providers (C(/admin/custom-providers)). Nothing is written when everything
    already matches. Providers not in I(settings) are left alone (C(sfp-server sso remove) removes).
options:
  api_url: {description: The org's API gateway URL (http://ADDRESS:PORT)., type: str, required: true}
  service_role_key: {description: The org's service_role JWT., type: str, required: true}
  settings: {description: The org's SSO settings (sfp_org_sso)., type: dict, default: {}}
  secrets: {description: The org's vault (client secrets are read from it)., type: dict, default: {}}
  rotate_secrets: {description: Names of custom OIDC providers whose client secret is to be re-sent., type: list, elements: str, default: []}
  base_dir: {description: Directory relative metadata_file paths are resolved against (the inventory)., type: path}
  toolkit_path: {description: Source checkout holding installer/, when it is not installed., type: path}
  timeout: {description: Seconds per HTTP request., type: float, default: 15}
"""

LOOPBACK_KEY = "allow_insecure_loopback"


class _DryRunSession:
    """Check mode: GETs go out, writes are only counted (answered with an empty success)."""

    def __init__(self, real: Any, check: bool) -> None:
        self.real = real
        self.check = check
        self.headers = real.headers
        self.writes: list[str] = []

    def request(self, method: str, url: str, **kw: Any) -> Any:
        if method.upper() != "GET":
            self.writes.append(f"{method} {url}")
            if self.check:
                import requests

                resp = requests.Response()
                resp.status_code = 200
                resp._content = b"{}"
                return resp
        return self.real.request(method, url, **kw)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "api_url": {"type": "str", "required": True},
            "service_role_key": {"type": "str", "required": True, "no_log": True},
            "settings": {"type": "dict", "default": {}},
            "secrets": {"type": "dict", "default": {}, "no_log": True},
            "rotate_secrets": {"type": "list", "elements": "str", "default": [], "no_log": False},
            "base_dir": {"type": "path"},
            "toolkit_path": {"type": "path"},
            "timeout": {"type": "float", "default": 15.0},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["toolkit_path"]:
        sys.path.insert(0, p["toolkit_path"])
    try:
        import requests

        from installer.errors import SfpError
        from installer.sso import config, gotrue_admin, saml
    except ImportError as exc:
        module.fail_json(msg=f"the sfp-server toolkit (installer.sso) is not importable on the controller: {exc}")
        return

    raw = dict(p["settings"] or {})
    loopback = bool(raw.pop(LOOPBACK_KEY, False))
    try:
        settings = config.parse_sso_settings(raw, where="sfp_org_sso", allow_insecure_loopback=loopback)
    except SfpError as exc:
        module.fail_json(msg=str(exc))
        return

    # Everything is fetched and validated before the first write.
    desired_saml = []
    base = Path(p["base_dir"]) if p["base_dir"] else None
    for s in settings.saml:
        if s.metadata_url:
            report = saml.validate_saml_metadata(url=s.metadata_url, expected_entity_id=s.expected_entity_id,
                                                 timeout=p["timeout"], allow_insecure_loopback=loopback)
        else:
            path = Path(s.metadata_file or "")
            if base is not None and not path.is_absolute():
                path = base / path
            report = saml.validate_saml_metadata(file=path, expected_entity_id=s.expected_entity_id)
        if not report.ok:
            module.fail_json(msg=f"SAML provider {s.name}: " + "; ".join(str(f) for f in report.findings.errors))
            return
        # GoTrue fetches (and refreshes) an https metadata URL itself; anything else is sent inline.
        url = s.metadata_url if s.metadata_url and s.metadata_url.startswith("https://") else None
        desired_saml.append((s.name, gotrue_admin.DesiredSamlProvider(
            metadata_xml=report.raw.decode("utf-8"), domains=list(s.domains),
            attribute_mapping=dict(s.attribute_mapping), metadata_url=url, name_id_format=s.name_id_format,
        )))
    secrets = {str(k): str(v) for k, v in (p["secrets"] or {}).items()}
    desired_oidc = []
    for o in settings.oidc:
        if not o.is_custom:
            continue  # built-ins are configured through the environment (GOTRUE_EXTERNAL_*)
        secret = secrets.get(o.client_secret_vault_key)
        if not secret:
            module.fail_json(msg=f"OIDC provider {o.name}: the vault lacks {o.client_secret_vault_key}")
            return
        desired_oidc.append((o.name, gotrue_admin.DesiredOidcProvider(
            name=o.name, issuer=o.issuer or "", client_id=o.client_id, client_secret=secret,
            scopes=list(o.scopes) or ["openid", "email", "profile"], skip_nonce_check=o.skip_nonce_check,
            email_optional=o.email_optional,
        )))

    session = _DryRunSession(requests.Session(), module.check_mode)
    admin = gotrue_admin.GoTrueAdmin(p["api_url"], p["service_role_key"], timeout=p["timeout"], session=session)  # type: ignore[arg-type]
    results: list[dict[str, Any]] = []
    try:
        for name, want in desired_saml:
            r = admin.apply_saml_provider(want)
            results.append({"name": name, "kind": r.kind, "key": r.key, "action": r.action,
                            "provider_id": r.provider_id, "fields": list(r.fields)})
        for name, want_o in desired_oidc:
            r = admin.apply_custom_oidc_provider(want_o, rotate_secret=name in p["rotate_secrets"])
            results.append({"name": name, "kind": r.kind, "key": r.key, "action": r.action,
                            "provider_id": r.provider_id, "fields": list(r.fields)})
    except SfpError as exc:
        if module.check_mode and "(404)" in exc.message:
            # Check mode before the first apply: Auth does not have SSO switched on yet.
            module.exit_json(changed=True, results=results, writes=len(session.writes),
                             msg="Auth's SSO admin API is not enabled yet; a real run would register every provider")
            return
        module.fail_json(msg=str(exc), results=results)
        return
    changed = any(r["action"] in ("created", "updated", "removed") for r in results)
    module.exit_json(changed=changed, results=results, writes=len(session.writes))


if __name__ == "__main__":
    main()
