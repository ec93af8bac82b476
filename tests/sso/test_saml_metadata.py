"""SAML metadata validation against a real pysaml2 IdP served on loopback, and hostile XML."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from installer.sso.saml import BINDING_POST, BINDING_REDIRECT, parse_saml_metadata, validate_saml_metadata
from tests.sso.idp_fixtures import LoopbackHTTP, Route, SamlIdP, free_closed_port

PASSWD_MARKERS = ("root:", "/bin/", "nologin", "daemon:")


def _messages(report: object) -> str:
    return "\n".join(str(f) for f in report.problems)  # type: ignore[attr-defined]


def test_pysaml2_idp_metadata_validates(saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    report = validate_saml_metadata(url=idp.metadata_url, expected_entity_id=idp.entity_id,
                                    allow_insecure_loopback=True)
    assert report.ok, _messages(report)
    assert report.problems == []
    assert report.entity_id == idp.entity_id
    assert report.signed
    bindings = {s.binding for s in report.sso_services}
    assert {BINDING_REDIRECT, BINDING_POST} <= bindings
    assert len(report.signing_certificates) == 1
    assert report.signing_certificates[0].not_after > datetime.now(UTC) + timedelta(days=300)
    assert report.valid_until is not None and report.valid_until > datetime.now(UTC)
    assert report.fingerprint and len(report.fingerprint) == 64


def test_metadata_file_validates(saml_idp: Callable[..., SamlIdP], tmp_path: Path) -> None:
    idp = saml_idp()
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata_xml)
    report = validate_saml_metadata(file=path, expected_entity_id=idp.entity_id)
    assert report.ok, _messages(report)


def test_http_metadata_url_refused_without_loopback_flag(saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    report = validate_saml_metadata(url=idp.metadata_url)
    assert not report.ok
    assert "does not use https" in _messages(report)


def test_expired_certificate_is_an_error(saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp(cert_expired=True)
    report = validate_saml_metadata(url=idp.metadata_url, allow_insecure_loopback=True)
    assert not report.ok
    [err] = report.findings.errors
    assert "signing certificate" in err.message and "expired on" in err.message
    assert "rotate" in (err.hint or "")


def test_certificate_expiring_soon_is_a_warning(saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp(cert_valid_days=10)
    report = validate_saml_metadata(url=idp.metadata_url, allow_insecure_loopback=True)
    assert report.ok
    [warning] = report.findings.warnings
    assert "within 30 days" in warning.message


def test_wrong_entity_id_is_an_error(saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    report = validate_saml_metadata(url=idp.metadata_url, expected_entity_id="https://idp.example.com/other",
                                    allow_insecure_loopback=True)
    assert not report.ok
    [err] = report.findings.errors
    assert f"metadata entityID is {idp.entity_id!r}, expected 'https://idp.example.com/other'" == err.message


def test_all_problems_reported_at_once(saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp(cert_expired=True)
    report = validate_saml_metadata(url=idp.metadata_url, expected_entity_id="urn:wrong",
                                    allow_insecure_loopback=True)
    text = _messages(report)
    assert len(report.findings.errors) == 2
    assert "expected 'urn:wrong'" in text and "expired on" in text


def test_malformed_xml(loopback_http: LoopbackHTTP) -> None:
    loopback_http.routes["/bad"] = Route(200, b"<md:EntityDescriptor xmlns:md='urn:oasis:names:tc:SAML:2.0:metadata'><oops>")
    report = validate_saml_metadata(url=loopback_http.url("/bad"), allow_insecure_loopback=True)
    [err] = report.findings.errors
    assert err.message.startswith("metadata is not well-formed XML")
    assert "HTML login or error page" in (err.hint or "")


def test_html_page_instead_of_metadata(loopback_http: LoopbackHTTP) -> None:
    loopback_http.routes["/html"] = Route(200, b"<html><body>Sign in</body></html>", "text/html")
    report = validate_saml_metadata(url=loopback_http.url("/html"), allow_insecure_loopback=True)
    [err] = report.findings.errors
    assert "not a SAML 2.0 md:EntityDescriptor" in err.message


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE md:EntityDescriptor [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://evil/&xxe;">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://evil/&xxe;"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&lol9;"/>
"""


def test_xxe_payload_is_refused_without_reading_files(loopback_http: LoopbackHTTP) -> None:
    loopback_http.routes["/xxe"] = Route(200, XXE)
    report = validate_saml_metadata(url=loopback_http.url("/xxe"), allow_insecure_loopback=True)
    [err] = report.findings.errors
    assert "contains a DTD" in err.message and "XXE" in err.message
    assert report.entity_id is None and report.sso_services == []
    dump = repr(report) + _messages(report)
    assert not any(marker in dump for marker in PASSWD_MARKERS)


def test_billion_laughs_is_refused_quickly() -> None:
    started = time.monotonic()
    report = parse_saml_metadata(BILLION_LAUGHS, source="lol.xml")
    assert time.monotonic() - started < 1.0
    [err] = report.findings.errors
    assert "contains a DTD" in err.message and "billion laughs" in err.message
    assert report.entity_id is None


def test_unreachable_metadata_url() -> None:
    url = f"http://127.0.0.1:{free_closed_port()}/metadata"
    report = validate_saml_metadata(url=url, allow_insecure_loopback=True, timeout=3)
    [err] = report.findings.errors
    assert err.message == f"cannot reach SAML metadata at {url}: connection refused"


def test_http_error_status(loopback_http: LoopbackHTTP) -> None:
    report = validate_saml_metadata(url=loopback_http.url("/missing"), allow_insecure_loopback=True)
    [err] = report.findings.errors
    assert "answered HTTP 404" in err.message


def test_missing_file() -> None:
    report = validate_saml_metadata(file="/nonexistent/idp.xml")
    [err] = report.findings.errors
    assert "cannot read SAML metadata file /nonexistent/idp.xml" in err.message


def test_no_usable_binding_and_no_certificate() -> None:
    xml = b"""<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="urn:x">
      <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
        <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:SOAP" Location="https://x/soap"/>
      </md:IDPSSODescriptor></md:EntityDescriptor>"""
    report = parse_saml_metadata(xml)
    text = _messages(report)
    assert len(report.findings.errors) == 2
    assert "no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding" in text
    assert "no signing certificate" in text


def test_expired_valid_until(saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    report = parse_saml_metadata(idp.metadata_xml, now=datetime.now(UTC) + timedelta(days=2 * 365))
    text = _messages(report)
    assert "metadata expired: validUntil" in text
    assert "expired on" in text  # the certificate (365 days) has expired by then too


def test_fingerprint_ignores_resigning(saml_idp: Callable[..., SamlIdP], loopback_http: LoopbackHTTP,
                                       tmp_path: Path) -> None:
    a = saml_idp()
    again = parse_saml_metadata(a.metadata_xml.replace("><", ">\n<"))
    assert again.fingerprint == parse_saml_metadata(a.metadata_xml).fingerprint
    assert again.raw_sha256 != parse_saml_metadata(a.metadata_xml).raw_sha256
