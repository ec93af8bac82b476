#!/usr/bin/python
"""Ansible module: talk to an org's Auth admin API (GoTrue) FROM THE ORG'S HOST.

The org's gateway is published on that host's loopback by default, so the controller cannot
reach it; this module runs there and needs nothing but Ansible's own module_utils (no toolkit,
no third-party package). It does no reasoning of its own: `state=read` returns what Auth has,
`state=apply` sends the requests the controller planned (installer/sso/plan.py), filling client
secrets into the bodies from `secrets` at the last moment.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

DOCUMENTATION = r"""
module: sfp_gotrue_admin
short_description: Read SSO providers from, or send planned changes to, GoTrue's admin API on the org's host.
description:
  - C(state=read) lists the SAML providers (C(/admin/sso/providers), each fetched in full because the
    list omits the metadata) and the custom OAuth/OIDC providers (C(/admin/custom-providers)).
    A kind whose API is switched off (HTTP 404) is returned as C(enabled=false).
  - C(state=apply) sends I(requests) in order and stops at the first failure, whose message names the
    provider, the request and Auth's answer (never a header or a secret). In check mode nothing is sent
    and C(changed) says whether something would be.
options:
  api_url: {description: The org's API gateway as this host reaches it (http://ADDRESS:PORT)., type: str, required: true}
  service_role_key: {description: The org's service_role JWT., type: str, required: true}
  state: {description: read or apply., type: str, choices: [read, apply], default: read}
  read: {description: Kinds to read (saml, custom)., type: list, elements: str, default: []}
  requests: {description: "Planned requests: method, path, body, ok, provider, secret_fields.", type: list, elements: dict, default: []}
  results: {description: The plan's per-provider results; ids of created providers are filled in., type: list, elements: dict, default: []}
  secrets: {description: Vault values the requests' secret_fields name., type: dict, default: {}}
  timeout: {description: Seconds per HTTP request., type: float, default: 15}
"""

SECTIONS = {"saml": ("/sso/providers", "items"), "custom": ("/custom-providers", "providers")}
HINTS = {
    401: "the service_role key in the vault does not match the running stack's JWT secret; re-apply the org "
         "(sfp-server install --org ORG)",
    403: "the key used is not a service_role key; SERVICE_ROLE_KEY from the org's vault is",
    404: "Auth's SSO API is switched off (GOTRUE_SAML_ENABLED / GOTRUE_CUSTOM_OAUTH_ENABLED) or the URL is not the "
         "org's gateway; re-apply the org with its stack (sfp-server install --org ORG)",
}


class AdminError(Exception):
    pass


class Admin:
    def __init__(self, api_url: str, key: str, timeout: float) -> None:
        self.base = api_url.rstrip("/") + "/auth/v1/admin"
        self.key = key
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> tuple[int, Any]:
        """(status, JSON or None). Raises AdminError with what happened, and status 0 when unreachable."""
        headers = {"apikey": self.key, "Authorization": "Bearer " + self.key, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        what = f"{method} {self.base}{path}"
        try:
            resp = open_url(self.base + path, method=method, data=data, headers=headers, timeout=self.timeout,
                            follow_redirects="none", use_proxy=False)
            status, raw = resp.getcode(), resp.read()
        except HTTPError as exc:
            status, raw = exc.code, exc.read() if hasattr(exc, "read") else b""
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminError(f"cannot reach the Auth admin API from the org's host ({what}): {type(reason).__name__}; "
                             "check that the org's stack is running (sfp-server status) and its api port") from None
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        if status in ok:
            return status, payload
        raise AdminError(f"{what} answered HTTP {status}{_detail(payload)}", status)

    def read(self, kinds: list[str]) -> dict[str, Any]:
        current: dict[str, Any] = {}
        for kind in kinds:
            path, key = SECTIONS[kind]
            try:
                _, data = self.call("GET", path)
            except AdminError as exc:
                if len(exc.args) > 1 and exc.args[1] == 404:
                    current[kind] = {"enabled": False, "providers": [], "detail": exc.args[0]}
                    continue
                raise
            items = list((data or {}).get(key) or [])
            if kind == "saml":  # the list omits metadata_xml, which drift is judged on
                items = [self.call("GET", f"{path}/{quote(str(p['id']), safe='')}")[1] for p in items]
            current[kind] = {"enabled": True, "providers": items}
        return current


def _detail(payload: Any) -> str:
    if not isinstance(payload, dict):
        return ""
    msg = payload.get("msg") or payload.get("message") or payload.get("error_description") or payload.get("error")
    code = payload.get("error_code")
    return (f": {msg}" + (f" [{code}]" if code else "")) if msg else ""


def _hint(exc: AdminError) -> str:
    status = exc.args[1] if len(exc.args) > 1 else 0
    if status in HINTS:
        return HINTS[status]
    if isinstance(status, int) and status >= 500:
        return "look at the org's auth container log (sfp-server logs --org ORG --service auth) and run again"
    return "fix the SSO setting named in the message and run again"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "api_url": {"type": "str", "required": True},
            "service_role_key": {"type": "str", "required": True, "no_log": True},
            "state": {"type": "str", "choices": ["read", "apply"], "default": "read"},
            "read": {"type": "list", "elements": "str", "default": []},
            "requests": {"type": "list", "elements": "dict", "default": []},
            "results": {"type": "list", "elements": "dict", "default": []},
            "secrets": {"type": "dict", "default": {}, "no_log": True},
            "timeout": {"type": "float", "default": 15.0},
        },
        supports_check_mode=True,
    )
    p = module.params
    admin = Admin(p["api_url"], p["service_role_key"], p["timeout"])
    if p["state"] == "read":
        # Only GETs: check mode reads too, so that it can say what a real run would change.
        unknown = sorted(set(p["read"]) - set(SECTIONS))
        if unknown:
            module.fail_json(msg=f"unknown kinds to read: {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
        try:
            module.exit_json(changed=False, current=admin.read(p["read"]))
        except AdminError as exc:
            module.fail_json(msg=f"reading the org's SSO providers: {exc.args[0]} ({_hint(exc)})")
        return

    planned = p["requests"]
    results = [dict(r) for r in p["results"]]
    if module.check_mode:
        module.exit_json(changed=bool(planned), applied=False, writes=len(planned), results=results)
        return
    secrets = {str(k): str(v) for k, v in (p["secrets"] or {}).items()}
    for index, req in enumerate(planned):
        body = dict(req.get("body") or {}) if req.get("body") is not None else None
        for field, vault_key in (req.get("secret_fields") or {}).items():
            if vault_key not in secrets:
                module.fail_json(msg=f"{req.get('provider')}: {vault_key} was not passed to the apply step "
                                     "(a bug in roles/supabase_sso)", writes=index, results=results)
            body = body or {}
            body[field] = secrets[vault_key]
        try:
            _, answer = admin.call(str(req["method"]), str(req["path"]), body, tuple(req.get("ok") or (200,)))
        except AdminError as exc:
            done = f" ({index} earlier request(s) were sent)" if index else ""
            module.fail_json(msg=f"{req.get('provider')}: {exc.args[0]}{done}; {_hint(exc)}",
                             writes=index, results=results)
            return
        if isinstance(answer, dict) and answer.get("id") is not None:
            for r in results:
                if r.get("request") == index and not r.get("provider_id"):
                    r["provider_id"] = str(answer["id"])
    module.exit_json(changed=bool(planned), applied=True, writes=len(planned), results=results)


if __name__ == "__main__":
    main()
