"""The inventory side of SSO without Docker: sso.yml, validation hook, the playbooks' env filter."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from ansible.errors import AnsibleFilterError

from installer import sso_inventory, validate
from installer.inventory import Inventory
from installer.sso.sp import generate_saml_private_key
from tests.conftest import REPO, org_config, write_yaml

SAML = {"saml": [{"name": "corp", "metadata_url": "https://idp.corp.example/md", "domains": ["corp.example"]}]}


def filter_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sfp_sso_filter", REPO / "playbooks" / "filter_plugins" / "sfp_sso.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_env_filter_is_empty_without_sso_and_references_secrets() -> None:
    f = filter_module().sfp_sso_auth_env
    assert f({}, {}, "https://a.example") == {}
    assert f(None, {}, "https://a.example") == {}
    key = generate_saml_private_key()
    env = f({**SAML, "oidc": [{"name": "kc", "provider": "keycloak", "issuer": "https://kc.example/realms/a",
                               "url": "https://kc.example/realms/a", "client_id": "sb"}]},
            {"SAML_PRIVATE_KEY": key, "SSO_KC_CLIENT_SECRET": "s3cret"}, "https://a.example")
    assert env["GOTRUE_SAML_ENABLED"] == "true"
    assert env["GOTRUE_SAML_PRIVATE_KEY"] == "${SAML_PRIVATE_KEY}"
    assert env["GOTRUE_EXTERNAL_KEYCLOAK_SECRET"] == "${SSO_KC_CLIENT_SECRET}"
    assert env["GOTRUE_EXTERNAL_KEYCLOAK_REDIRECT_URI"] == "https://a.example/auth/v1/callback"
    assert key not in str(env) and "s3cret" not in str(env)


def test_env_filter_refuses_missing_secrets_unless_removing() -> None:
    f = filter_module().sfp_sso_auth_env
    with pytest.raises(AnsibleFilterError, match="SAML_PRIVATE_KEY"):
        f(SAML, {}, "https://a.example")
    assert f(SAML, {}, "https://a.example", strict=False) == {}
    with pytest.raises(AnsibleFilterError, match="https"):
        f({"saml": [{**SAML["saml"][0], "metadata_url": "http://127.0.0.1:1/md"}]},
          {"SAML_PRIVATE_KEY": generate_saml_private_key()}, "https://a.example")
    loopback = {"allow_insecure_loopback": True, "saml": [{**SAML["saml"][0], "metadata_url": "http://127.0.0.1:1/md"}]}
    assert f(loopback, {"SAML_PRIVATE_KEY": generate_saml_private_key()}, "https://a.example")["GOTRUE_SAML_ENABLED"] == "true"


def test_validate_names_every_bad_sso_field(make_inventory) -> None:  # type: ignore[no-untyped-def]
    inv_path: Path = make_inventory({"acme": org_config(18000, 15432, 16543)})
    write_yaml(inv_path / "host_vars" / "acme" / "sso.yml", {"sfp_org_sso": {"saml": [
        {"name": "Bad Name", "metadata_url": "http://idp.example/md", "domains": ["nope"]},
    ], "oidc": [{"name": "x", "provider": "nosuch", "client_id": "c", "client_secret": "leaked"}]}})
    with pytest.raises(Exception) as exc:
        validate.validate(Inventory(inv_path, inv_path / ".vault-pass"))
    text = str(exc.value)
    for where in ("saml[0].name", "saml[0].metadata_url", "saml[0].domains[0]", "oidc[0].provider", "oidc[0].client_secret"):
        assert f"host_vars/acme/sso.yml: sfp_org_sso.{where}" in text, where
    assert "leaked" not in text
    write_yaml(inv_path / "host_vars" / "acme" / "sso.yml", {"sfp_org_sso": {**SAML, "typo": 1}})
    with pytest.raises(Exception, match="unknown key 'typo'"):
        validate.validate(Inventory(inv_path, inv_path / ".vault-pass"))
    write_yaml(inv_path / "host_vars" / "acme" / "sso.yml", {"sfp_org_sso": SAML})
    validate.validate(Inventory(inv_path, inv_path / ".vault-pass"))


def test_sso_file_is_written_only_when_it_changes(tmp_path: Path) -> None:
    assert sso_inventory.read_raw(tmp_path, "acme") == {}
    assert sso_inventory.write_raw(tmp_path, "acme", SAML) is True
    text = sso_inventory.sso_file(tmp_path, "acme").read_text()
    assert text.startswith("# Single sign-on of org acme")
    assert sso_inventory.write_raw(tmp_path, "acme", SAML) is False
    assert sso_inventory.read_raw(tmp_path, "acme") == SAML
    assert sso_inventory.write_raw(tmp_path, "acme", {}) is True
    assert sso_inventory.read_raw(tmp_path, "acme") == {}
    assert sso_inventory.write_raw(tmp_path, "acme", {}) is False
    assert sso_inventory.write_raw(tmp_path, "other", {}) is False
    assert not sso_inventory.sso_file(tmp_path, "other").exists()
