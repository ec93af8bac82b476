"""The front door's settings (sfp_org.hostname, tls, studio_access) and secrets, inventory side:
what validate refuses (each problem naming the field and the fix), what the role gets, and that
nothing from outside the vault (a certificate, a key, a CA file, IdP metadata) is used unchecked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from installer import frontdoor, settings
from installer.actions import secrets as secrets_action
from installer.errors import ConfigError, SfpError
from installer.inventory import Inventory
from installer.validate import validate
from tests.conftest import org_config, write_yaml

HOST = "acme.sfp.test"


def _pem_key(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def make_cert(names: list[str], *, days: int = 90, key: Any = None) -> tuple[str, str]:
    """(certificate PEM, key PEM) signed by a throw-away CA, for `names`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfp test CA")])
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key)


def problems_of(inv: Path) -> list[str]:
    """validate's problems, plus the front door's with the vault read afresh (as install checks them
    after making the secrets: Ansible's host_vars loader keeps, per process, the files it found)."""
    i = Inventory(inv, inv / ".vault-pass")
    try:
        validate(i)
        found = []
    except ConfigError as exc:
        found = [str(p) for p in exc.problems]
    for org in i.orgs():
        found += [str(p) for p in frontdoor.problems(org.name, org.config, org.hostvars,
                                                       secrets_action.read(i, org.name), inventory_dir=inv)]
    assert found, "no problem found"
    return found


def front(**extra: Any) -> dict[str, Any]:
    cfg = org_config(8000, 5432, 6543, hostname=HOST, **extra)
    del cfg["public_url"]
    return cfg


def test_hostname_makes_the_public_url_and_what_follows_from_it() -> None:
    cfg = settings.org_config(front())
    assert cfg["public_url"] == f"https://{HOST}"
    assert cfg["site_url"] == f"https://{HOST}"
    inputs = settings.role_inputs("acme", {"sfp_org": front()})
    assert inputs["supabase_stack__public_url"] == f"https://{HOST}"


def test_public_url_is_required_without_a_hostname(make_inventory: Callable[..., Path]) -> None:
    cfg = org_config(8000, 5432, 6543)
    del cfg["public_url"]
    found = problems_of(make_inventory({"acme": cfg}))
    assert any("sfp_org.public_url" in p and "is required" in p and "sfp_org.hostname" in p for p in found), found


def test_contradictions_are_named(make_inventory: Callable[..., Path]) -> None:
    found = problems_of(make_inventory({
        "acme": org_config(8000, 5432, 6543, hostname=HOST, tls={"source": "self_signed"}),  # public_url http://...
        "globex": org_config(8100, 5532, 6643, tls={"source": "acme"}, studio_access={"provider": "x"}),
    }))
    assert any("acme: sfp_org.public_url" in p and f"https://{HOST}" in p and "leave public_url out" in p for p in found), found
    assert any("globex: sfp_org.tls" in p and "no hostname" in p for p in found), found
    assert any("globex: sfp_org.studio_access" in p and "no hostname" in p for p in found), found
    assert any("globex: sfp_org.tls.acme_directory_url" in p and "is required" in p for p in found), found


@pytest.mark.parametrize("bad", ["ACME.example.com", "acme", "-a.example.com", "a..example.com", "a.example.com/x",
                                 "a.example.com\nServerAlias evil.test"])
def test_a_hostname_that_is_not_a_dns_name_is_refused(bad: str) -> None:
    cfg = front()
    cfg["hostname"] = bad
    assert any("sfp_org.hostname" in str(p) for p in settings.check("w", "sfp_org", cfg, "org")), bad


def test_provided_certificate_must_be_in_the_vault_match_its_key_and_cover_the_hostname(
        make_inventory: Callable[..., Path]) -> None:
    inv = make_inventory({"acme": front(tls={"source": "provided"})})
    secrets_action.ensure(Inventory(inv, inv / ".vault-pass"), "acme")
    found = problems_of(inv)
    assert any("TLS_CERTIFICATE" in p and "is missing" in p and "secrets set --org acme TLS_CERTIFICATE" in p
               for p in found), found

    other_cert, other_key = make_cert(["globex.sfp.test"])
    cert, key = make_cert([HOST])
    i = Inventory(inv, inv / ".vault-pass")
    secrets_action.set_value(i, "acme", "TLS_CERTIFICATE", other_cert)
    secrets_action.set_value(i, "acme", "TLS_PRIVATE_KEY", key)
    found = problems_of(inv)
    assert any("TLS_CERTIFICATE" in p and f"does not cover {HOST}" in p and "globex.sfp.test" in p for p in found), found
    assert any("TLS_PRIVATE_KEY" in p and "is not the key of TLS_CERTIFICATE" in p for p in found), found
    assert not any(key.splitlines()[1] in p for p in found), "the key's text appears in a message"

    secrets_action.set_value(i, "acme", "TLS_CERTIFICATE", cert)
    [org] = validate(Inventory(inv, inv / ".vault-pass"))
    values = secrets_action.read(i, "acme")
    inputs = frontdoor.role_inputs("acme", org.config, org.hostvars, values, inventory_dir=inv)
    assert inputs["frontdoor__state"] == "present"
    assert inputs["frontdoor__hostname"] == HOST
    assert inputs["frontdoor__upstream"] == "http://127.0.0.1:8000"
    assert inputs["frontdoor__certificate"] == {"source": "provided", "cert": cert, "key": key}
    assert inputs["frontdoor__studio"] == {"access": "basic"}
    # The stack's .env on the host never gets the front door's secrets.
    stack = settings.role_inputs("acme", {**org.hostvars, "sfp_org_secrets": values})["supabase_stack__secrets"]
    assert not [k for k in stack if k.startswith(("TLS_", "FRONTDOOR_", "STUDIO_", "BACKUP_"))]
    assert "DASHBOARD_PASSWORD" in stack
    assert other_key  # made for the mismatch only


def test_a_wildcard_covers_one_label_only() -> None:
    cert, _ = make_cert(["*.sfp.test"])
    info = frontdoor.certificate_info(cert)
    assert info.covers("acme.sfp.test")
    assert not info.covers("a.acme.sfp.test")
    assert not info.covers("sfp.test")


@pytest.mark.parametrize(("name", "value", "says"), [
    ("TLS_CERTIFICATE", "not a certificate", "not a PEM certificate chain"),
    ("TLS_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "not a PEM private key"),
    ("TLS_PRIVATE_KEY", "encrypted", "encrypted with a passphrase"),
])
def test_secrets_set_refuses_what_is_not_a_certificate_or_a_plain_key(
        make_inventory: Callable[..., Path], name: str, value: str, says: str) -> None:
    inv = make_inventory({"acme": front(tls={"source": "provided"})})
    i = Inventory(inv, inv / ".vault-pass")
    secrets_action.ensure(i, "acme")
    before = (inv / "host_vars" / "acme" / "vault.yml").read_bytes()
    if value == "encrypted":
        value = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase")).decode()
    with pytest.raises(SfpError) as info:
        secrets_action.set_value(i, "acme", name, value)
    assert says in info.value.message and name in info.value.message
    assert (inv / "host_vars" / "acme" / "vault.yml").read_bytes() == before


def test_session_and_saml_keys_are_generated_once_when_needed(make_inventory: Callable[..., Path], tmp_path: Path) -> None:
    inv = make_inventory({"acme": front(tls={"source": "self_signed"}), "globex": org_config(8100, 5532, 6643)})
    i = Inventory(inv, inv / ".vault-pass")
    assert "FRONTDOOR_SESSION_SECRET" in secrets_action.ensure(i, "acme")
    assert "FRONTDOOR_SESSION_SECRET" not in secrets_action.ensure(i, "globex")
    first = secrets_action.read(i, "acme")["FRONTDOOR_SESSION_SECRET"]
    write_yaml(inv / "host_vars" / "acme" / "sso.yml", {"sfp_org_sso": {"saml": [
        {"name": "corp", "metadata_file": ".sso-metadata/acme/corp.xml", "domains": ["acme.test"]}]}})
    write_yaml(inv / "host_vars" / "acme" / "main.yml", {"sfp_org": front(
        tls={"source": "self_signed"}, studio_access={"provider": "corp", "allow_groups": ["admins"]})})
    i = Inventory(inv, inv / ".vault-pass")
    added = secrets_action.ensure(i, "acme")
    assert {"STUDIO_SAML_SP_KEY", "STUDIO_SAML_SP_CERT"} <= set(added)
    values = secrets_action.read(i, "acme")
    assert values["FRONTDOOR_SESSION_SECRET"] == first
    assert x509.load_pem_x509_certificate(values["STUDIO_SAML_SP_CERT"].encode())
    assert secrets_action.ensure(Inventory(inv, inv / ".vault-pass"), "acme") == []


def test_studio_access_needs_a_known_provider_an_allow_list_and_for_oidc_a_client(
        make_inventory: Callable[..., Path]) -> None:
    inv = make_inventory({"acme": front(tls={"source": "self_signed"},
                                        studio_access={"provider": "kc", "allow_emails": []})})
    found = problems_of(inv)
    assert any("studio_access.provider" in p and "'kc' is not a provider" in p and "sso add --org acme" in p
               for p in found), found
    assert any("studio_access" in p and "lets nobody in" in p for p in found), found

    write_yaml(inv / "host_vars" / "acme" / "sso.yml", {"sfp_org_sso": {"oidc": [
        {"name": "kc", "provider": "keycloak", "url": "https://kc.acme.test/realms/acme", "client_id": "supabase"}]}})
    i = Inventory(inv, inv / ".vault-pass")
    secrets_action.ensure(i, "acme")
    found = problems_of(inv)
    assert any("studio_access.client_id" in p and "is required for an OIDC provider" in p for p in found), found
    assert any("STUDIO_OIDC_CLIENT_SECRET" in p and "is missing" in p for p in found), found

    write_yaml(inv / "host_vars" / "acme" / "main.yml", {"sfp_org": front(
        tls={"source": "self_signed"},
        studio_access={"provider": "kc", "client_id": "studio", "allow_emails": ["Ops@Acme.test"]})})
    i = Inventory(inv, inv / ".vault-pass")
    secrets_action.set_value(i, "acme", "STUDIO_OIDC_CLIENT_SECRET", "s3cret-of-studio")
    secrets_action.ensure(i, "acme")
    [org] = validate(Inventory(inv, inv / ".vault-pass"))
    values = secrets_action.read(i, "acme")
    gate = frontdoor.role_inputs("acme", org.config, org.hostvars, values, inventory_dir=inv)["frontdoor__studio"]
    assert gate["access"] == "oidc"
    assert gate["issuer"] == "https://kc.acme.test/realms/acme"
    assert gate["client_id"] == "studio" and gate["client_secret"] == "s3cret-of-studio"
    assert gate["allow"] == {"emails": ["ops@acme.test"], "groups": []}
    assert gate["session_secret"] == values["FRONTDOOR_SESSION_SECRET"]
    assert gate["dashboard_password"] == values["DASHBOARD_PASSWORD"]


def test_saml_metadata_for_studio_is_checked_as_for_auth(make_inventory: Callable[..., Path], tmp_path: Path) -> None:
    from tests.sso.idp_fixtures import LoopbackHTTP, build_saml_idp

    http = LoopbackHTTP()
    try:
        idp = build_saml_idp(tmp_path, http)
    finally:
        http.close()
    inv = make_inventory({"acme": front(tls={"source": "self_signed"},
                                        studio_access={"provider": "corp", "allow_groups": ["admins"]})})
    meta = inv / ".sso-metadata" / "acme" / "corp.xml"
    meta.parent.mkdir(parents=True)
    write_yaml(inv / "host_vars" / "acme" / "sso.yml", {"sfp_org_sso": {"saml": [
        {"name": "corp", "metadata_file": ".sso-metadata/acme/corp.xml", "domains": ["acme.test"]}]}})
    meta.write_text(idp.metadata_xml)
    i = Inventory(inv, inv / ".vault-pass")
    secrets_action.ensure(i, "acme")
    [org] = validate(Inventory(inv, inv / ".vault-pass"))
    values = secrets_action.read(i, "acme")
    gate = frontdoor.role_inputs("acme", org.config, org.hostvars, values, inventory_dir=inv)["frontdoor__studio"]
    assert gate["access"] == "saml"
    assert gate["idp_metadata"] == idp.metadata_xml
    assert gate["sp_key"].startswith("-----BEGIN PRIVATE KEY-----")

    # Crafted metadata: an external entity. Refused before the role gets anything.
    meta.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                    '<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&e;"/>')
    with pytest.raises(ConfigError) as info:
        frontdoor.role_inputs("acme", org.config, org.hostvars, values, inventory_dir=inv)
    assert "studio_access.provider" in str(info.value) and "corp" in str(info.value)


def test_the_acme_ca_file_passes_as_certificates_only(tmp_path: Path) -> None:
    cert, _ = make_cert(["acme-ca.test"])
    good = tmp_path / "ca.pem"
    good.write_text("junk before\n" + cert + "\n# trailing words\n")
    assert frontdoor.read_ca_file("ca.pem", tmp_path) == cert
    (tmp_path / "bad.pem").write_text("<?php system($_GET['c']); ?>")
    with pytest.raises(ValueError, match="no PEM certificate"):
        frontdoor.read_ca_file("bad.pem", tmp_path)
    with pytest.raises(ValueError, match="is not a file"):
        frontdoor.read_ca_file("missing.pem", tmp_path)


def test_an_org_without_a_hostname_gets_no_front_door() -> None:
    cfg = settings.org_config(org_config(8000, 5432, 6543))
    inputs = frontdoor.role_inputs("acme", cfg, {"sfp_org": org_config(8000, 5432, 6543)}, {}, inventory_dir=None)
    assert inputs["frontdoor__state"] == "absent"


def test_sso_check_warns_on_a_front_door_certificate_near_its_expiry(make_inventory: Callable[..., Path]) -> None:
    from installer.actions import sso as sso_action
    from installer.context import resolve

    inv = make_inventory({"acme": front(tls={"source": "provided"})})
    i = Inventory(inv, inv / ".vault-pass")
    secrets_action.ensure(i, "acme")
    cert, key = make_cert([HOST], days=20)
    secrets_action.set_value(i, "acme", "TLS_CERTIFICATE", cert)
    secrets_action.set_value(i, "acme", "TLS_PRIVATE_KEY", key)
    [item] = sso_action.certificate_checks(resolve(Inventory(inv, inv / ".vault-pass"), "acme"))
    assert item.status == "warning" and item.kind == "certificate"
    assert "in 19 days" in str(item.findings.items[0]) or "in 20 days" in str(item.findings.items[0])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=21)
    [item] = sso_action.certificate_checks(resolve(Inventory(inv, inv / ".vault-pass"), "acme"), now=later)
    assert item.status == "error" and "expired" in str(item.findings.items[0])
    cert, key = make_cert([HOST], days=90)
    secrets_action.set_value(i, "acme", "TLS_CERTIFICATE", cert)
    secrets_action.set_value(i, "acme", "TLS_PRIVATE_KEY", key)
    [item] = sso_action.certificate_checks(resolve(Inventory(inv, inv / ".vault-pass"), "acme"))
    assert item.status == "ok"


def test_status_says_the_name_the_expiry_and_a_failed_renewal() -> None:
    from installer.actions.status import OrgStatus, frontdoor_summary

    now = 1_800_000_000.0
    row = OrgStatus(org="acme", machine="m", installed=True, release="v0.8.1", image_catalog=None)
    assert frontdoor_summary(row, now) == "-"
    row.frontdoor = {"hostname": HOST, "studio_access": "oidc",
                     "certificate": {"source": "provided", "not_after": now + 40 * 86400}}
    assert frontdoor_summary(row, now) == f"{HOST}, provided cert until 2027-02-24 (40 d), Studio: oidc"
    row.frontdoor["certificate"] = {"source": "acme", "not_after": now + 10 * 86400, "acme": {"renewal_ok": False}}
    assert frontdoor_summary(row, now).startswith(f"{HOST}, EXPIRES SOON acme cert until")
    assert "ACME RENEWAL FAILED" in frontdoor_summary(row, now)
    row.frontdoor["certificate"]["acme"]["last_error_at"] = int(now) - 3600
    assert ", ACME RENEWAL FAILED at 2027-01-15 07:00Z, " in frontdoor_summary(row, now)
    row.frontdoor["certificate"] = {"source": "self_signed", "not_after": now - 1}
    assert "EXPIRED self_signed cert" in frontdoor_summary(row, now)


@pytest.mark.parametrize(("studio", "field"), [
    ({"provider": "x", "allow_groups": ['db"admins']}, "allow_groups.0"),
    ({"provider": "x", "allow_groups": ["${HOME}"]}, "allow_groups.0"),
    ({"provider": "x", "allow_groups": ["a"], "scopes": ["email"]}, "scopes"),
    ({"provider": "x", "allow_groups": ["a"], "groups_claim": "my groups"}, "groups_claim"),
])
def test_what_would_reach_apache_is_refused_by_validate(studio: dict[str, Any], field: str) -> None:
    found = [str(p) for p in settings.check("w", "sfp_org", front(studio_access=studio), "org")]
    assert any(f"sfp_org.studio_access.{field}" in p for p in found), found


def test_a_studio_client_secret_apache_cannot_quote_is_refused() -> None:
    assert frontdoor.check_secret("STUDIO_OIDC_CLIENT_SECRET", 'abc"def') is not None
    assert frontdoor.check_secret("STUDIO_OIDC_CLIENT_SECRET", "abc${X}") is not None
    assert frontdoor.check_secret("STUDIO_OIDC_CLIENT_SECRET", "Zm9v-bar_baz.9") is None
