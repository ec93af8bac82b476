"""Inventory model, Auth env and SP-side values."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from installer.errors import ConfigError, SfpError
from installer.sso.config import BUILTIN_PROVIDERS, gotrue_dotenv, gotrue_env, parse_sso_settings
from installer.sso.sp import check_saml_private_key, generate_saml_private_key, service_provider_info

VALID: dict[str, Any] = {
    "saml": [{"name": "acme-okta", "metadata_url": "https://acme.okta.com/app/x/sso/saml/metadata",
              "domains": ["Acme.com"], "expected_entity_id": "http://www.okta.com/x",
              "attribute_mapping": {"keys": {"email": {"name": "mail"}}}}],
    "oidc": [
        {"name": "kc", "provider": "keycloak", "url": "https://kc.acme.com/realms/acme", "client_id": "supabase"},
        {"name": "corp", "provider": "custom", "issuer": "https://login.corp.example/", "client_id": "c1",
         "scopes": ["email"]},
    ],
}


@pytest.fixture(scope="module")
def saml_key() -> str:
    return generate_saml_private_key()


def test_service_provider_info() -> None:
    sp = service_provider_info("https://acme.example.com/")
    assert sp.saml_entity_id == sp.saml_metadata_url == "https://acme.example.com/auth/v1/sso/saml/metadata"
    assert sp.saml_acs_url == "https://acme.example.com/auth/v1/sso/saml/acs"
    assert sp.oidc_redirect_uri == "https://acme.example.com/auth/v1/callback"
    with pytest.raises(SfpError, match="not an absolute http"):
        service_provider_info("acme.example.com")


def test_generated_saml_key_is_pkcs1_rsa2048(saml_key: str) -> None:
    der = base64.b64decode(saml_key, validate=True)
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert der.startswith(b"\x30\x82") and b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01" not in der[:40]  # no PKCS#8 rsaEncryption OID
    check_saml_private_key(saml_key)


def test_pkcs8_and_small_keys_are_rejected() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs8 = base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption())).decode()
    with pytest.raises(SfpError, match="not in PKCS#1 form"):
        check_saml_private_key(pkcs8)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    small_b64 = base64.b64encode(small.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                                     serialization.NoEncryption())).decode()
    with pytest.raises(SfpError, match="1024 bits"):
        check_saml_private_key(small_b64)
    with pytest.raises(SfpError, match="not standard base64"):
        check_saml_private_key("not base64!")


def test_parse_valid_settings() -> None:
    s = parse_sso_settings(VALID)
    assert s.saml[0].domains == ("acme.com",)
    assert s.oidc[0].client_secret_vault_key == "SSO_KC_CLIENT_SECRET"
    assert s.oidc[0].discovery_issuer == "https://kc.acme.com/realms/acme"
    assert s.vault_keys == ["SAML_PRIVATE_KEY", "SSO_KC_CLIENT_SECRET", "SSO_CORP_CLIENT_SECRET"]


def test_every_bad_field_is_named_at_once() -> None:
    bad = {
        "saml": [
            {"name": "Bad Name", "metadata_url": "http://idp.example.com/md", "domains": ["acme.com"]},
            {"name": "two", "metadata_url": "https://a/md", "metadata_file": "x.xml", "domains": ["acme.com", "not a domain"],
             "name_id_format": "urn:nope"},
        ],
        "oidc": [
            {"name": "kc", "provider": "keycloak", "client_id": "x"},
            {"name": "gh", "provider": "githubb", "client_id": "x", "client_secret": "oops"},
            {"name": "corp", "provider": "custom", "client_id": "x"},
        ],
        "extra": 1,
    }
    with pytest.raises(ConfigError) as exc:
        parse_sso_settings(bad)
    where = {p.where: p.message for p in exc.value.problems}
    assert where["sfp_org.sso.extra"] == "is not a known setting"
    assert "lower-case" in where["sfp_org.sso.saml[0].name"]
    assert "must use https" in where["sfp_org.sso.saml[0].metadata_url"]
    assert where["sfp_org.sso.saml[1]"] == "set exactly one of metadata_url or metadata_file"
    assert "already assigned to SAML provider" in where["sfp_org.sso.saml[1].domains[0]"]
    assert "is not a domain name" in where["sfp_org.sso.saml[1].domains[1]"]
    assert "not supported by GoTrue" in where["sfp_org.sso.saml[1].name_id_format"]
    assert where["sfp_org.sso.oidc[0].url"] == "is required"
    assert "not a GoTrue built-in provider" in where["sfp_org.sso.oidc[1].provider"]
    assert where["sfp_org.sso.oidc[1].client_secret"] == "secrets do not belong in the inventory"
    assert where["sfp_org.sso.oidc[2].issuer"] == "is required"
    assert "oops" not in str(exc.value)


@pytest.mark.parametrize("key", ["SERVICE_ROLE_KEY", "POSTGRES_PASSWORD", "JWT_SECRET", "SSO_", "sso_kc"])
def test_a_client_secret_names_only_an_sso_vault_key(key: str) -> None:
    # Naming another vault key would send one of the org's own secrets to the IdP as a client secret.
    bad = {"oidc": [{"name": "kc", "provider": "keycloak", "url": "https://kc.example.com/realms/a", "client_id": "x",
                     "client_secret_vault_key": key}]}
    with pytest.raises(ConfigError) as exc:
        parse_sso_settings(bad)
    where = {p.where: p.message for p in exc.value.problems}
    assert "is not an SSO secret's name" in where["sfp_org.sso.oidc[0].client_secret_vault_key"]


def test_gotrue_env_uses_references_and_dotenv_holds_values(saml_key: str) -> None:
    s = parse_sso_settings(VALID)
    secrets = {"SAML_PRIVATE_KEY": saml_key, "SSO_KC_CLIENT_SECRET": "kc-secret", "SSO_CORP_CLIENT_SECRET": "corp-secret"}
    env = gotrue_env(s, secrets, public_url="https://acme.example.com")
    assert env == {
        "GOTRUE_SAML_ENABLED": "true",
        "GOTRUE_SAML_PRIVATE_KEY": "${SAML_PRIVATE_KEY}",
        "GOTRUE_SAML_EXTERNAL_URL": "https://acme.example.com/auth/v1",
        "GOTRUE_SAML_ALLOW_ENCRYPTED_ASSERTIONS": "false",
        "GOTRUE_CUSTOM_OAUTH_ENABLED": "true",
        "GOTRUE_EXTERNAL_KEYCLOAK_ENABLED": "true",
        "GOTRUE_EXTERNAL_KEYCLOAK_CLIENT_ID": "supabase",
        "GOTRUE_EXTERNAL_KEYCLOAK_SECRET": "${SSO_KC_CLIENT_SECRET}",
        "GOTRUE_EXTERNAL_KEYCLOAK_REDIRECT_URI": "https://acme.example.com/auth/v1/callback",
        "GOTRUE_EXTERNAL_KEYCLOAK_URL": "https://kc.acme.com/realms/acme",
    }
    assert not any(v in str(env) for v in ("kc-secret", "corp-secret", saml_key))
    # The custom provider's secret goes to the admin API, not to the env.
    assert gotrue_dotenv(s, secrets) == {"SAML_PRIVATE_KEY": saml_key, "SSO_KC_CLIENT_SECRET": "kc-secret"}


def test_gotrue_env_missing_or_bad_secrets(saml_key: str) -> None:
    s = parse_sso_settings(VALID)
    with pytest.raises(SfpError) as exc:
        gotrue_env(s, {"SAML_PRIVATE_KEY": saml_key}, public_url="https://a.example.com")
    assert exc.value.message == "the org's vault lacks SSO secret(s): SSO_KC_CLIENT_SECRET, SSO_CORP_CLIENT_SECRET"
    with pytest.raises(SfpError, match="vault entry SAML_PRIVATE_KEY: SAML private key is not standard base64"):
        gotrue_env(s, {"SAML_PRIVATE_KEY": "x!", "SSO_KC_CLIENT_SECRET": "a", "SSO_CORP_CLIENT_SECRET": "b"},
                   public_url="https://a.example.com")


def test_no_sso_means_saml_disabled() -> None:
    assert gotrue_env(parse_sso_settings(None), {}, public_url="https://a.example.com") == {"GOTRUE_SAML_ENABLED": "false"}


def test_builtin_provider_list_matches_gotrue_v2_196() -> None:
    # internal/conf/configuration.go ProviderConfiguration, OAuth providers only.
    assert {"keycloak", "azure", "google", "github", "gitlab", "workos", "linkedin_oidc", "slack_oidc", "x",
            "vercel_marketplace"} <= set(BUILTIN_PROVIDERS)
    assert BUILTIN_PROVIDERS["linkedin_oidc"] == "LINKEDIN_OIDC"
    assert "email" not in BUILTIN_PROVIDERS and "phone" not in BUILTIN_PROVIDERS
