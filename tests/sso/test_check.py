"""check_all over real loopback IdPs (pysaml2 SAML IdP and oidc-provider), as cron would run it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from installer.sso.check import check_all
from installer.sso.config import SsoSettings, parse_sso_settings
from tests.sso.idp_fixtures import OidcIdP, SamlIdP, free_closed_port


def _settings(saml_url: str, issuer: str, **saml_extra: object) -> SsoSettings:
    return parse_sso_settings({
        "saml": [{"name": "acme", "metadata_url": saml_url, "domains": ["acme.com"], **saml_extra}],
        "oidc": [{"name": "corp", "provider": "custom", "issuer": issuer, "client_id": "c"},
                 {"name": "gh", "provider": "github", "client_id": "g"}],
    }, allow_insecure_loopback=True)


def test_check_all_ok_then_drift(saml_idp: Callable[..., SamlIdP], oidc_idp: Callable[..., OidcIdP]) -> None:
    idp, op = saml_idp(), oidc_idp()
    settings = _settings(idp.metadata_url, op.issuer, expected_entity_id=idp.entity_id)
    report = check_all(settings, allow_insecure_loopback=True)
    assert report.exit_status == 0, report.text()
    assert [i.status for i in report.items] == ["ok", "ok", "ok"]
    applied = {"acme": report.items[0].fingerprint or ""}

    assert check_all(settings, applied_fingerprints=applied, allow_insecure_loopback=True).exit_status == 0

    saml_idp(stem="rotated")  # the IdP rotates its signing certificate behind our back
    drifted = check_all(settings, applied_fingerprints=applied, allow_insecure_loopback=True)
    assert drifted.exit_status == 1 and drifted.items[0].drifted
    assert "metadata changed since it was last applied" in drifted.text()


def test_check_all_reports_every_failure(saml_idp: Callable[..., SamlIdP], tmp_path: Path) -> None:
    idp = saml_idp(cert_expired=True)
    (tmp_path / "md.xml").write_text(idp.metadata_xml)
    dead = f"http://127.0.0.1:{free_closed_port()}"
    settings = parse_sso_settings({
        "saml": [{"name": "acme", "metadata_file": "md.xml", "domains": ["acme.com"]}],
        "oidc": [{"name": "corp", "provider": "custom", "issuer": dead, "client_id": "c"}],
    }, allow_insecure_loopback=True)
    report = check_all(settings, base_dir=tmp_path, allow_insecure_loopback=True, timeout=3)
    assert report.exit_status == 2 and not report.ok
    text = report.text()
    assert "[ERROR] saml acme" in text and "expired on" in text
    assert "[ERROR] oidc corp" in text and "connection refused" in text
