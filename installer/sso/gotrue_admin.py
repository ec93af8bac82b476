"""A small client for GoTrue's admin API and idempotent reconciliation of SSO providers.

Endpoints (supabase/auth v2.196.0, internal/api/api.go, ssoadmin.go, custom_oauth_admin.go):

- SAML: GET/POST /admin/sso/providers, GET/PUT/DELETE /admin/sso/providers/{id}. The list
  omits metadata_xml (ssoadmin.go adminSSOProvidersList), so drift is judged on a GET of the one
  provider. A PUT may not change the EntityID; an omitted `name_id_format` CLEARS it, so every
  PUT sends the desired value.
- Custom OAuth/OIDC: GET/POST /admin/custom-providers, GET/PUT/DELETE
  /admin/custom-providers/{custom:name}. The client secret is write-only (never returned), so a
  changed secret is sent only when the caller says so (`rotate_secret=True`).

Every request carries `apikey: <service_role>` and `Authorization: Bearer <service_role>`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import requests

from installer.errors import SfpError
from installer.sso.saml import parse_saml_metadata

Action = Literal["created", "updated", "unchanged", "removed", "absent"]


@dataclass(frozen=True)
class ApplyResult:
    """What one reconciliation did; `changed` is what Ansible's changed= should report."""

    kind: Literal["saml", "custom_oidc"]
    key: str  # entity_id (SAML) or identifier (custom:<name>)
    action: Action
    provider_id: str | None = None
    fields: tuple[str, ...] = ()  # fields that differed (updated) — names only, never values

    @property
    def changed(self) -> bool:
        return self.action in ("created", "updated", "removed")


@dataclass
class DesiredSamlProvider:
    """The SAML provider an org should have. `metadata_xml` is what was fetched and validated;
    with `metadata_url` set GoTrue is given the URL (it must be https) and refreshes it itself."""

    metadata_xml: str
    domains: list[str] = field(default_factory=list)
    attribute_mapping: dict[str, Any] = field(default_factory=dict)  # {"keys": {...}} or {}
    metadata_url: str | None = None
    name_id_format: str = ""
    disabled: bool | None = None
    entity_id: str = field(init=False)
    metadata_fingerprint: str | None = field(init=False)

    def __post_init__(self) -> None:
        report = parse_saml_metadata(self.metadata_xml, source="desired SAML metadata")
        report.raise_for_errors()
        assert report.entity_id is not None
        self.entity_id = report.entity_id
        self.metadata_fingerprint = report.fingerprint
        self.domains = sorted({d.strip().lower() for d in self.domains})


@dataclass
class DesiredOidcProvider:
    """A custom OIDC provider (identifier `custom:<name>`)."""

    name: str  # without the "custom:" prefix
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    display_name: str | None = None
    scopes: list[str] = field(default_factory=lambda: ["openid", "email", "profile"])
    pkce_enabled: bool = True
    enabled: bool = True
    email_optional: bool = False
    skip_nonce_check: bool = False
    discovery_url: str | None = None
    acceptable_client_ids: list[str] = field(default_factory=list)
    attribute_mapping: dict[str, Any] = field(default_factory=dict)
    authorization_params: dict[str, Any] = field(default_factory=dict)
    custom_claims_allowlist: list[str] = field(default_factory=list)

    @property
    def identifier(self) -> str:
        return self.name if self.name.startswith("custom:") else f"custom:{self.name}"

    def comparable(self) -> dict[str, Any]:
        scopes = list(self.scopes)
        if "openid" not in scopes:  # GoTrue prepends it (custom_oauth_admin.go buildProviderFromParams)
            scopes.insert(0, "openid")
        return {
            "provider_type": "oidc",
            "name": self.display_name or self.name.removeprefix("custom:"),
            "client_id": self.client_id,
            "issuer": self.issuer,
            "discovery_url": self.discovery_url or None,
            "scopes": sorted(scopes),
            "pkce_enabled": self.pkce_enabled,
            "enabled": self.enabled,
            "email_optional": self.email_optional,
            "skip_nonce_check": self.skip_nonce_check,
            "acceptable_client_ids": sorted(self.acceptable_client_ids),
            "attribute_mapping": dict(self.attribute_mapping),
            "authorization_params": dict(self.authorization_params),
            "custom_claims_allowlist": sorted(self.custom_claims_allowlist),
        }


def _comparable_existing_oidc(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "provider_type": p.get("provider_type"),
        "name": p.get("name"),
        "client_id": p.get("client_id"),
        "issuer": p.get("issuer"),
        "discovery_url": p.get("discovery_url") or None,
        "scopes": sorted(p.get("scopes") or []),
        "pkce_enabled": bool(p.get("pkce_enabled")),
        "enabled": bool(p.get("enabled")),
        "email_optional": bool(p.get("email_optional")),
        "skip_nonce_check": bool(p.get("skip_nonce_check")),
        "acceptable_client_ids": sorted(p.get("acceptable_client_ids") or []),
        "attribute_mapping": dict(p.get("attribute_mapping") or {}),
        "authorization_params": dict(p.get("authorization_params") or {}),
        "custom_claims_allowlist": sorted(p.get("custom_claims_allowlist") or []),
    }


def normalize_attribute_mapping(mapping: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """GoTrue's SAMLAttributeMapping with Go's omitempty applied, for equality checks."""
    keys = (mapping or {}).get("keys") or {}
    out: dict[str, dict[str, Any]] = {}
    for k, v in keys.items():
        v = v or {}
        item: dict[str, Any] = {}
        if v.get("name"):
            item["name"] = v["name"]
        if v.get("names"):
            item["names"] = list(v["names"])
        if v.get("default") is not None:
            item["default"] = v["default"]
        if v.get("array"):
            item["array"] = True
        out[k] = item
    return out


def _domains(provider: dict[str, Any]) -> list[str]:
    items = provider.get("domains") or provider.get("sso_domains") or []
    return sorted({str(d.get("domain", "")).lower() for d in items if isinstance(d, dict)})


class GoTrueAdmin:
    """Admin API client for one org. `api_url` is the gateway URL (…/auth/v1 is appended)."""

    def __init__(self, api_url: str, service_role_key: str, *, timeout: float = 15.0,
                 session: requests.Session | None = None) -> None:
        self.base = api_url.rstrip("/") + "/auth/v1/admin"
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers.update({
            "apikey": service_role_key,
            "Authorization": f"Bearer {service_role_key}",
            "Accept": "application/json",
        })

    def __repr__(self) -> str:  # never show the key
        return f"GoTrueAdmin({self.base!r})"

    # -- transport ------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 ok: tuple[int, ...] = (200,)) -> Any:
        url = self.base + path
        what = f"{method} {url}"
        try:
            r = self.session.request(method, url, json=body, timeout=self.timeout)
        except requests.Timeout:
            raise SfpError(f"GoTrue admin API did not answer within {self.timeout:g} s ({what})",
                           "check that the org's stack is running (sfp-server status) and the gateway is reachable") from None
        except requests.RequestException as exc:
            raise SfpError(f"cannot reach the GoTrue admin API ({what}): {type(exc).__name__}",
                           "check that the org's stack is running and api_url is right") from None
        if r.status_code in ok:
            if r.status_code == 204 or not r.content:
                return None
            try:
                return r.json()
            except ValueError:
                raise SfpError(f"GoTrue admin API answered {what} with non-JSON content",
                               "check that api_url points at the org's Kong gateway") from None
        detail = _error_detail(r)
        if r.status_code == 401:
            raise SfpError(f"GoTrue admin API refused the service_role key (401) for {what}{detail}",
                           "the key in the vault does not match the running stack's JWT secret; re-render the stack "
                           "(sfp-server apply) or check which org you targeted")
        if r.status_code == 403:
            raise SfpError(f"GoTrue admin API forbade {what} (403){detail}",
                           "the key used is not a service_role key; use SERVICE_ROLE_KEY from the org's vault")
        if r.status_code == 404:
            raise SfpError(f"GoTrue admin API: not found (404) for {what}{detail}",
                           "for /sso: GOTRUE_SAML_ENABLED must be true; for /custom-providers: "
                           "GOTRUE_CUSTOM_OAUTH_ENABLED must be true — re-apply the org, then retry")
        if r.status_code >= 500:
            raise SfpError(f"GoTrue admin API failed with HTTP {r.status_code} for {what}{detail}",
                           "look at the auth container's log (docker logs <org>-auth) and retry")
        raise SfpError(f"GoTrue admin API rejected {what} with HTTP {r.status_code}{detail}",
                       "fix the SSO settings named in the message and run again")

    # -- SAML -----------------------------------------------------------------------------
    def list_saml_providers(self) -> list[dict[str, Any]]:
        data = self._request("GET", "/sso/providers")
        return list((data or {}).get("items") or [])

    def get_saml_provider(self, provider_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/sso/providers/{quote(provider_id, safe='')}"))

    def create_saml_provider(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("POST", "/sso/providers", {"type": "saml", **body}, ok=(200, 201)))

    def update_saml_provider(self, provider_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("PUT", f"/sso/providers/{quote(provider_id, safe='')}", body))

    def delete_saml_provider(self, provider_id: str) -> None:
        self._request("DELETE", f"/sso/providers/{quote(provider_id, safe='')}", ok=(200, 204))

    def find_saml_provider(self, entity_id: str, domains: Sequence[str] = ()) -> dict[str, Any] | None:
        """The provider with this entity_id; else one holding any of `domains`; else None."""
        items = self.list_saml_providers()
        for p in items:
            if (p.get("saml") or {}).get("entity_id") == entity_id:
                return p
        wanted = {d.lower() for d in domains}
        for p in items:
            if wanted & set(_domains(p)):
                return p
        return None

    def apply_saml_provider(self, desired: DesiredSamlProvider) -> ApplyResult:
        existing = self.find_saml_provider(desired.entity_id, desired.domains)
        if existing is None:
            body: dict[str, Any] = {"domains": desired.domains,
                                    "attribute_mapping": {"keys": normalize_attribute_mapping(desired.attribute_mapping)}}
            body.update(self._metadata_param(desired))
            if desired.name_id_format:
                body["name_id_format"] = desired.name_id_format
            if desired.disabled is not None:
                body["disabled"] = desired.disabled
            created = self.create_saml_provider(body)
            return ApplyResult("saml", desired.entity_id, "created", _id(created))

        pid = str(existing["id"])
        existing_entity = (existing.get("saml") or {}).get("entity_id")
        if existing_entity != desired.entity_id:
            raise SfpError(
                f"SSO domain(s) {', '.join(sorted(set(desired.domains) & set(_domains(existing))))} already belong to "
                f"SAML provider {pid} with entityID {existing_entity!r}, not {desired.entity_id!r}",
                "GoTrue cannot change a provider's entityID; if the IdP was replaced, remove the old provider "
                "(remove_saml_provider) and apply again")
        full = self.get_saml_provider(pid)
        saml = full.get("saml") or {}
        changes: list[str] = []
        body = {}
        if _domains(full) != desired.domains:
            changes.append("domains")
            body["domains"] = desired.domains
        if not self._same_metadata(saml, desired):
            changes.append("metadata")
            body.update(self._metadata_param(desired))
        want_map = normalize_attribute_mapping(desired.attribute_mapping)
        if normalize_attribute_mapping(saml.get("attribute_mapping")) != want_map:
            changes.append("attribute_mapping")
            body["attribute_mapping"] = {"keys": want_map}
        if (saml.get("name_id_format") or "") != desired.name_id_format:
            changes.append("name_id_format")
        if desired.disabled is not None and bool(full.get("disabled")) != desired.disabled:
            changes.append("disabled")
            body["disabled"] = desired.disabled
        if not changes:
            return ApplyResult("saml", desired.entity_id, "unchanged", pid)
        body["name_id_format"] = desired.name_id_format  # omitted would clear it (ssoadmin.go)
        self.update_saml_provider(pid, body)
        return ApplyResult("saml", desired.entity_id, "updated", pid, tuple(changes))

    @staticmethod
    def _metadata_param(desired: DesiredSamlProvider) -> dict[str, str]:
        if desired.metadata_url:
            return {"metadata_url": desired.metadata_url}
        return {"metadata_xml": desired.metadata_xml}

    @staticmethod
    def _same_metadata(saml: dict[str, Any], desired: DesiredSamlProvider) -> bool:
        if (saml.get("metadata_url") or None) != (desired.metadata_url or None):
            return False
        xml = saml.get("metadata_xml") or ""
        if not xml:
            return False
        if hashlib.sha256(xml.encode()).hexdigest() == hashlib.sha256(desired.metadata_xml.encode()).hexdigest():
            return True
        # Byte-different but the same IdP (re-signed, reformatted): compare what matters.
        return parse_saml_metadata(xml, source="GoTrue's stored metadata").fingerprint == desired.metadata_fingerprint

    def remove_saml_provider(self, entity_id: str) -> ApplyResult:
        existing = self.find_saml_provider(entity_id)
        if existing is None:
            return ApplyResult("saml", entity_id, "absent")
        self.delete_saml_provider(str(existing["id"]))
        return ApplyResult("saml", entity_id, "removed", str(existing["id"]))

    # -- custom OAuth/OIDC ----------------------------------------------------------------
    def list_custom_providers(self) -> list[dict[str, Any]]:
        data = self._request("GET", "/custom-providers")
        return list((data or {}).get("providers") or [])

    def create_custom_provider(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("POST", "/custom-providers", body, ok=(200, 201)))

    def update_custom_provider(self, identifier: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("PUT", f"/custom-providers/{quote(identifier, safe=':')}", body))

    def delete_custom_provider(self, identifier: str) -> None:
        self._request("DELETE", f"/custom-providers/{quote(identifier, safe=':')}", ok=(200, 204))

    def find_custom_provider(self, identifier: str) -> dict[str, Any] | None:
        return next((p for p in self.list_custom_providers() if p.get("identifier") == identifier), None)

    def apply_custom_oidc_provider(self, desired: DesiredOidcProvider, *, rotate_secret: bool = False) -> ApplyResult:
        """Create or update `custom:<name>`. The secret cannot be read back: pass
        rotate_secret=True when the vault's secret changed since the last apply."""
        want = desired.comparable()
        existing = self.find_custom_provider(desired.identifier)
        if existing is None:
            body = {k: v for k, v in want.items() if v is not None}
            body.update(identifier=desired.identifier, client_secret=desired.client_secret, scopes=_ordered_scopes(desired))
            created = self.create_custom_provider(body)
            return ApplyResult("custom_oidc", desired.identifier, "created", _id(created))
        if existing.get("provider_type") != "oidc":
            raise SfpError(f"custom provider {desired.identifier} exists as type {existing.get('provider_type')!r}, not 'oidc'",
                           "remove it (remove_custom_provider) and apply again")
        have = _comparable_existing_oidc(existing)
        if want["discovery_url"] is None:  # GoTrue's PUT cannot clear it; only compare when set
            have["discovery_url"] = None
        changes = [k for k in want if want[k] != have[k]]
        if rotate_secret:
            changes.append("client_secret")
        if not changes:
            return ApplyResult("custom_oidc", desired.identifier, "unchanged", str(existing.get("id")))
        body = {k: want[k] for k in changes if k not in ("client_secret", "provider_type")}
        if "scopes" in body:
            body["scopes"] = _ordered_scopes(desired)
        if rotate_secret:
            body["client_secret"] = desired.client_secret
        self.update_custom_provider(desired.identifier, body)
        return ApplyResult("custom_oidc", desired.identifier, "updated", str(existing.get("id")), tuple(changes))

    def remove_custom_provider(self, identifier: str) -> ApplyResult:
        ident = identifier if identifier.startswith("custom:") else f"custom:{identifier}"
        existing = self.find_custom_provider(ident)
        if existing is None:
            return ApplyResult("custom_oidc", ident, "absent")
        self.delete_custom_provider(ident)
        return ApplyResult("custom_oidc", ident, "removed", str(existing.get("id")))


def _id(created: dict[str, Any]) -> str | None:
    """The new provider's id; a planned (not yet sent) create has none."""
    value = created.get("id")
    return None if value is None else str(value)


def _ordered_scopes(desired: DesiredOidcProvider) -> list[str]:
    scopes = list(dict.fromkeys(desired.scopes))
    return scopes if "openid" in scopes else ["openid", *scopes]


def _error_detail(r: requests.Response) -> str:
    try:
        data = r.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        msg = data.get("msg") or data.get("message") or data.get("error_description") or data.get("error")
        code = data.get("error_code")
        if msg:
            return f": {msg}" + (f" [{code}]" if code else "")
    return ""
