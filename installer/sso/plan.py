"""What an org's Auth must be sent so that its SAML and custom OIDC providers match the settings.

The admin API is reached FROM THE ORG'S HOST (its gateway is bound to that host's loopback by
default), while metadata validation and the comparisons need this library, which lives on the
controller. So the work is split in three:

1. the org's host reads what Auth has (roles/supabase_sso/library/sfp_gotrue_admin.py, state=read);
2. `plan()` runs on the controller: it fetches and validates every IdP, then lets `GoTrueAdmin`
   reconcile against that snapshot (`SnapshotSession` answers its GETs and records its writes),
   so the idempotence rules stay in one place (gotrue_admin.py);
3. the org's host sends the planned requests (sfp_gotrue_admin.py, state=apply).

A plan carries no secret: a client secret is a reference to its vault key (`secret_fields`), which
the host fills in from the values it is given for the apply step only.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import requests

from installer.errors import SfpError
from installer.sso import gotrue_admin, saml
from installer.sso.config import SsoSettings

_SECRET_PREFIX = "\x00sfp-vault:"
# Sections of the snapshot, as the host reads them: path of the list, and the key of its items.
SECTIONS = {"saml": ("/sso/providers", "items"), "custom": ("/custom-providers", "providers")}


def secret_ref(vault_key: str) -> str:
    """Stands for a vault value inside a request body until the org's host fills it in."""
    return _SECRET_PREFIX + vault_key


@dataclass
class PlannedRequest:
    method: str
    path: str  # below <api_url>/auth/v1/admin
    body: dict[str, Any] | None
    ok: tuple[int, ...]
    provider: str  # "SAML provider corp", for messages
    secret_fields: dict[str, str] = field(default_factory=dict)  # body field -> vault key

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "body": self.body, "ok": list(self.ok),
                "provider": self.provider, "secret_fields": dict(self.secret_fields)}


@dataclass
class Plan:
    requests: list[PlannedRequest] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def secret_keys(self) -> list[str]:
        return sorted({k for r in self.requests for k in r.secret_fields.values()})

    @property
    def changed(self) -> bool:
        return bool(self.requests)


class SnapshotSession:
    """A stand-in for `requests.Session` that GoTrueAdmin talks to while planning.

    GETs are answered from the snapshot the org's host read; POST/PUT/DELETE are recorded and
    answered with an empty success. A section the host found switched off (Auth answered 404) is
    answered with that 404, or, with `disabled_as_empty` (check mode before SSO is switched on),
    as an empty list: a real run would then create every provider.
    """

    def __init__(self, base: str, snapshot: Mapping[str, Any], *, disabled_as_empty: bool = False) -> None:
        self.base = base
        self.snapshot = snapshot
        self.disabled_as_empty = disabled_as_empty
        self.headers: dict[str, str] = {}
        self.recorded: list[PlannedRequest] = []

    @staticmethod
    def _response(status: int, data: Any) -> requests.Response:
        resp = requests.Response()
        resp.status_code = status
        resp._content = json.dumps(data).encode()
        return resp

    def _section(self, name: str) -> tuple[list[dict[str, Any]], requests.Response | None]:
        section = self.snapshot.get(name)
        if not isinstance(section, Mapping):
            raise SfpError(f"the org's {name} providers were not read from Auth",
                           "a bug in roles/supabase_sso: the read step must cover every kind it plans")
        if section.get("enabled", True):
            return [dict(p) for p in section.get("providers") or []], None
        if self.disabled_as_empty:
            return [], None
        return [], self._response(404, {"msg": str(section.get("detail") or "disabled")})

    def request(self, method: str, url: str, json: Any = None, timeout: float | None = None) -> requests.Response:
        path = url[len(self.base):] if url.startswith(self.base) else url
        if method.upper() != "GET":
            body = dict(json) if isinstance(json, Mapping) else None
            self.recorded.append(PlannedRequest(method.upper(), path, body, (), ""))
            return self._response(200, {})
        for name, (list_path, key) in SECTIONS.items():
            if path == list_path:
                items, missing = self._section(name)
                # Not `missing or ...`: a Response is falsy when its status is an error.
                return missing if missing is not None else self._response(200, {key: items})
            if path.startswith(list_path + "/"):
                items, missing = self._section(name)
                if missing is not None:
                    return missing
                ident = unquote(path[len(list_path) + 1:])
                found = next((p for p in items if str(p.get("id")) == ident or p.get("identifier") == ident), None)
                return self._response(200, found) if found else self._response(404, {"msg": "not found"})
        return self._response(404, {"msg": f"not in the snapshot: {path}"})


def _ok_codes(method: str) -> tuple[int, ...]:
    return {"POST": (200, 201), "DELETE": (200, 204)}.get(method, (200,))


def _extract_secrets(req: PlannedRequest) -> None:
    for key, value in list((req.body or {}).items()):
        if isinstance(value, str) and value.startswith(_SECRET_PREFIX):
            req.secret_fields[key] = value[len(_SECRET_PREFIX):]
            del req.body[key]  # type: ignore[union-attr]


def _desired_saml(settings: SsoSettings, *, skip: Collection[str], base_dir: Path | None, timeout: float,
                  allow_insecure_loopback: bool) -> list[tuple[str, gotrue_admin.DesiredSamlProvider]]:
    out = []
    for s in settings.saml:
        if s.name in skip:
            continue
        report = saml.validate_provider_metadata(s, base_dir=base_dir, allow_hosts=settings.allow_hosts,
                                                 timeout=timeout, allow_insecure_loopback=allow_insecure_loopback)
        if not report.ok:
            raise SfpError(f"SAML provider {s.name}: " + "; ".join(str(f) for f in report.findings.errors),
                           "fix the IdP's metadata (or the setting) and run again; nothing was sent to Auth")
        # GoTrue fetches (and refreshes) an https metadata URL itself; anything else is sent inline. So
        # is metadata whose signature was verified here: GoTrue would refresh it without the check.
        pinned = s.metadata_cert is not None
        url = s.metadata_url if s.metadata_url and s.metadata_url.startswith("https://") and not pinned else None
        out.append((s.name, gotrue_admin.DesiredSamlProvider(
            metadata_xml=report.raw.decode("utf-8"), domains=list(s.domains),
            attribute_mapping=dict(s.attribute_mapping), metadata_url=url, name_id_format=s.name_id_format,
        )))
    return out


def _desired_oidc(settings: SsoSettings, *, skip: Collection[str],
                  secret_names: Collection[str]) -> list[tuple[str, gotrue_admin.DesiredOidcProvider]]:
    out = []
    for o in settings.oidc:
        if not o.is_custom or o.name in skip:
            continue  # built-ins are configured through the environment (GOTRUE_EXTERNAL_*)
        if o.client_secret_vault_key not in secret_names:
            raise SfpError(f"OIDC provider {o.name}: the org's vault lacks {o.client_secret_vault_key}",
                           f"store the client secret with `sfp-server sso add --org <org> --oidc --provider custom "
                           f"--name {o.name} ... --client-secret-file FILE`")
        out.append((o.name, gotrue_admin.DesiredOidcProvider(
            name=o.name, issuer=o.issuer or "", client_id=o.client_id, client_secret=secret_ref(o.client_secret_vault_key),
            scopes=list(o.scopes), skip_nonce_check=o.skip_nonce_check,  # defaulted by the schema (sso.yml)
            email_optional=o.email_optional,
        )))
    return out


def plan(settings: SsoSettings, snapshot: Mapping[str, Any], *, api_url: str, secret_names: Collection[str] = (),
         rotate: Collection[str] = (), remove: Collection[str] = (), base_dir: Path | None = None,
         timeout: float = 15.0, allow_insecure_loopback: bool = False, check_mode: bool = False) -> Plan:
    """The requests that make Auth match `settings` (minus `remove`, which are taken out of Auth).

    Every IdP is fetched and validated before anything is planned: a bad one plans nothing.
    Raises SfpError naming the provider (never a secret value).
    """
    known = {s.name for s in settings.saml} | {o.name for o in settings.oidc}
    unknown = sorted(set(remove) - known)
    if unknown:
        raise SfpError(f"cannot remove {', '.join(unknown)}: not an SSO provider of this org",
                       f"known: {', '.join(sorted(known)) or 'none'} (sfp_sso_remove names providers of sfp_org_sso)")
    desired_saml = _desired_saml(settings, skip=remove, base_dir=base_dir, timeout=timeout,
                                 allow_insecure_loopback=allow_insecure_loopback)
    desired_oidc = _desired_oidc(settings, skip=remove, secret_names=secret_names)

    admin_url = api_url.rstrip("/") + "/auth/v1/admin"
    session = SnapshotSession(admin_url, snapshot, disabled_as_empty=check_mode)
    admin = gotrue_admin.GoTrueAdmin(api_url, "", timeout=timeout, session=session)  # type: ignore[arg-type]
    out = Plan()

    def record(name: str, label: str, result: dict[str, Any]) -> None:
        new = session.recorded[len(out.requests):]
        for req in new:
            req.provider, req.ok = label, _ok_codes(req.method)
            _extract_secrets(req)
            out.requests.append(req)
        result.update(name=name, request=len(out.requests) - 1 if new else None)
        out.results.append(result)

    def as_dict(r: gotrue_admin.ApplyResult) -> dict[str, Any]:
        return {"kind": r.kind, "key": r.key, "action": r.action, "provider_id": r.provider_id, "fields": list(r.fields)}

    # Removals first: they free the domains a replacing provider may claim.
    for s in settings.saml:
        if s.name not in remove:
            continue
        label = f"SAML provider {s.name}"
        try:
            wanted = set(s.domains)
            matched = False
            for p in admin.list_saml_providers():
                entity = (p.get("saml") or {}).get("entity_id")
                domains = {str(d.get("domain", "")).lower() for d in p.get("domains") or [] if isinstance(d, dict)}
                if (s.expected_entity_id and entity == s.expected_entity_id) or wanted & domains:
                    admin.delete_saml_provider(str(p["id"]))
                    record(s.name, label, {"kind": "saml", "key": entity, "action": "removed", "provider_id": p["id"],
                                           "fields": []})
                    matched = True
            if not matched:
                record(s.name, label, {"kind": "saml", "key": s.expected_entity_id, "action": "absent",
                                       "provider_id": None, "fields": []})
        except SfpError as exc:
            raise SfpError(f"{label}: {exc.message}", exc.hint) from None
    for o in settings.oidc:
        if o.name in remove and o.is_custom:
            label = f"OIDC provider {o.name}"
            try:
                record(o.name, label, as_dict(admin.remove_custom_provider(o.name)))
            except SfpError as exc:
                raise SfpError(f"{label}: {exc.message}", exc.hint) from None

    for name, want in desired_saml:
        label = f"SAML provider {name}"
        try:
            record(name, label, as_dict(admin.apply_saml_provider(want)))
        except SfpError as exc:
            raise SfpError(f"{label}: {exc.message}", exc.hint) from None
    for name, want_o in desired_oidc:
        label = f"OIDC provider {name}"
        try:
            record(name, label, as_dict(admin.apply_custom_oidc_provider(want_o, rotate_secret=name in rotate)))
        except SfpError as exc:
            raise SfpError(f"{label}: {exc.message}", exc.hint) from None
    return out
