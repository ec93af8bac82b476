"""Signed SAML metadata: verified with the pinned certificate (real xmlsec1), wrapping refused.

The metadata is the pysaml2 IdP's (tests/sso/idp_fixtures.py), signed by xmlsec1 with the IdP's key.
Hostile variants are made from it as text, so the signed bytes stay exactly as signed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from installer.errors import ConfigError
from installer.sso import xmldsig
from installer.sso.check import check_all
from installer.sso.config import parse_sso_settings
from installer.sso.saml import parse_saml_metadata, validate_saml_metadata
from tests.sso.idp_fixtures import SamlIdP, make_key_and_cert

_SIGNATURE = re.compile(r"<(?P<p>\w+:)?Signature\b.*?</(?P=p)Signature>", re.S)
_ROOT_START = re.compile(r"<(?P<p>\w+:)EntityDescriptor\b[^>]*>")
_IDP = re.compile(r"<(?P<p>\w+:)IDPSSODescriptor\b.*?</(?P=p)IDPSSODescriptor>", re.S)


def _messages(report: object) -> str:
    return "\n".join(str(f) for f in report.findings.items)  # type: ignore[attr-defined]


def _pem(idp: SamlIdP) -> str:
    return idp.cert_path.read_text()


def _other_cert(tmp_path: Path) -> str:
    now = datetime.now(UTC)
    _, cert = make_key_and_cert(tmp_path, not_before=now - timedelta(days=1), not_after=now + timedelta(days=30),
                                cn="someone else", stem="other")
    return cert.read_text()


def _unsigned(xml: str) -> str:
    out, n = _SIGNATURE.subn("", xml, count=1)
    assert n == 1
    return out


def _wrapped(xml: str, *, root_id: str) -> str:
    """The classic wrapping: the genuine signed element hidden in Extensions, its signature moved up
    to a forged root whose own IDPSSODescriptor sends users to the attacker."""
    signature = _SIGNATURE.search(xml)
    start = _ROOT_START.search(xml)
    idp = _IDP.search(xml)
    assert signature and start and idp
    p = start.group("p")
    genuine = _unsigned(xml[start.start():])
    forged_idp = idp.group(0).replace('Location="http://', 'Location="https://evil.example/?from=http://')
    head = re.sub(r'\bID="[^"]*"', f'ID="{root_id}"', start.group(0))
    head = re.sub(r'\bentityID="[^"]*"', 'entityID="https://evil.example/idp"', head)
    return (f'<?xml version="1.0"?>\n{head}{signature.group(0)}<{p}Extensions>{genuine}</{p}Extensions>'
            f"{forged_idp}</{p}EntityDescriptor>")


def test_signed_metadata_verifies_with_the_pinned_certificate(saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    report = validate_saml_metadata(url=idp.metadata_url, allow_insecure_loopback=True, pinned_cert=_pem(idp))
    assert report.ok, _messages(report)
    assert report.signature is not None and report.signature.state == "verified"
    fingerprint = xmldsig.certificate_sha256(_pem(idp))
    assert report.signature.detail == f"signed, verified with the pinned certificate (sha256 {fingerprint[:16]}…)"


def test_wrong_pinned_certificate_is_refused(saml_idp: Callable[..., SamlIdP], tmp_path: Path) -> None:
    idp = saml_idp()
    report = validate_saml_metadata(url=idp.metadata_url, allow_insecure_loopback=True,
                                    pinned_cert=_other_cert(tmp_path))
    assert not report.ok
    assert report.signature is not None and report.signature.state == "invalid"
    assert "metadata signature does not verify with the pinned certificate" in _messages(report)
    assert "signed with another key" in _messages(report)


def test_metadata_signed_by_another_key_is_refused(saml_idp: Callable[..., SamlIdP]) -> None:
    genuine = saml_idp()
    # Another IdP's metadata, signed by its own key with its own certificate inside the signature:
    # the certificate in the document must never be what verifies it.
    impostor = saml_idp(stem="impostor", path="/impostor/metadata")
    report = parse_saml_metadata(impostor.metadata_xml, pinned_cert=_pem(genuine))
    assert not report.ok
    assert report.signature is not None and report.signature.state == "invalid"


def test_metadata_altered_after_signing_is_refused(saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    altered = idp.metadata_xml.replace("/idp/sso/post", "/idp/sso/steal")
    assert altered != idp.metadata_xml
    report = parse_saml_metadata(altered, pinned_cert=_pem(idp))
    assert not report.ok
    assert "metadata signature does not verify with the pinned certificate" in _messages(report)
    # Unpinned, the same document is only "signed": nothing vouches for it.
    loose = parse_saml_metadata(altered)
    assert loose.ok and loose.signature is not None and loose.signature.state == "signed"


@pytest.mark.parametrize("root_id", ["forged-root", None])
def test_signature_wrapping_is_refused(saml_idp: Callable[..., SamlIdP], root_id: str | None) -> None:
    idp = saml_idp()
    genuine_id = re.search(r'\bID="([^"]+)"', idp.metadata_xml)
    assert genuine_id
    # None: the forged root even copies the genuine element's ID, so the reference points at "it".
    wrapped = _wrapped(idp.metadata_xml, root_id=root_id or genuine_id.group(1))
    # xmlsec1 alone accepts it: the signature is cryptographically valid for the hidden genuine element.
    assert root_id is None or xmldsig._xmlsec_verify(wrapped.encode(), _pem(idp)) is None
    report = parse_saml_metadata(wrapped, pinned_cert=_pem(idp))
    assert report.entity_id == "https://evil.example/idp"  # what the validator would have used
    assert not report.ok
    text = _messages(report)
    expected = "not the root element" if root_id else "occurs 2 times in the document (signature wrapping)"
    assert expected in text


def test_only_an_inner_signature_does_not_count(saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    body = idp.metadata_xml.split("?>", 1)[1]
    entities = (f'<?xml version="1.0"?>\n<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
                f'ID="outer">{body}</md:EntitiesDescriptor>')
    loose = parse_saml_metadata(entities)
    assert loose.ok and loose.signature is not None and loose.signature.state == "unsigned"
    assert "only an inner element carries a signature" in loose.signature.detail
    pinned = parse_saml_metadata(entities, pinned_cert=_pem(idp))
    assert not pinned.ok and "a signing certificate is pinned" in _messages(pinned)


def test_unsigned_metadata_with_a_pinned_certificate_is_refused(saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    report = parse_saml_metadata(_unsigned(idp.metadata_xml), pinned_cert=_pem(idp))
    assert not report.ok
    [err] = report.findings.errors
    assert err.message == "metadata is unsigned, but a signing certificate is pinned for it"


def test_unsigned_metadata_without_a_pin_is_accepted_and_shown_unsigned(saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    report = parse_saml_metadata(_unsigned(idp.metadata_xml))
    assert report.ok, _messages(report)
    assert report.signature is not None and report.signature.detail == "unsigned"
    assert not report.signed


def test_check_reports_the_signature_and_refuses_a_mismatch(saml_idp: Callable[..., SamlIdP], tmp_path: Path) -> None:
    idp = saml_idp()

    def settings(cert: str | None) -> object:
        item = {"name": "acme", "metadata_url": idp.metadata_url, "domains": ["acme.com"]}
        return parse_sso_settings({"saml": [{**item, "metadata_cert": cert} if cert else item]},
                                  allow_insecure_loopback=True)

    good = check_all(settings(_pem(idp)), allow_insecure_loopback=True)  # type: ignore[arg-type]
    assert good.exit_status == 0, good.text()
    assert "metadata signature: signed, verified with the pinned certificate" in good.text()
    bad = check_all(settings(_other_cert(tmp_path)), allow_insecure_loopback=True)  # type: ignore[arg-type]
    assert bad.exit_status == 2 and "does not verify with the pinned certificate" in bad.text()
    loose = check_all(settings(None), allow_insecure_loopback=True)  # type: ignore[arg-type]
    assert loose.exit_status == 0 and "metadata signature: signed, not verified (no certificate pinned" in loose.text()


def test_pinned_certificate_and_allow_hosts_are_validated() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_sso_settings({
            "saml": [{"name": "a", "metadata_url": "https://idp.example/md", "domains": ["a.example"],
                      "metadata_cert": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"}],
            "allow_hosts": ["https://idp.example/path"],
        })
    where = [p.where for p in caught.value.problems]
    assert where == ["sfp_org.sso.saml[0].metadata_cert", "sfp_org.sso.allow_hosts[0]"]


def test_a_pinned_certificate_is_kept_on_one_line(saml_idp: Callable[..., SamlIdP]) -> None:
    # Every inventory setting is one line of text (validate refuses control characters): the PEM
    # an operator pins is kept as its base64 DER, which verifies the same.
    idp = saml_idp()
    pem = _pem(idp)
    settings = parse_sso_settings({"saml": [{"name": "a", "metadata_url": idp.metadata_url, "domains": ["a.example"],
                                             "metadata_cert": pem}]}, allow_insecure_loopback=True)
    kept = settings.saml[0].metadata_cert
    assert kept is not None and "\n" not in kept and kept == xmldsig.one_line(pem)
    assert xmldsig.certificate_sha256(kept) == xmldsig.certificate_sha256(pem)
    report = parse_saml_metadata(idp.metadata_xml, pinned_cert=kept)
    assert report.ok and report.signature is not None and report.signature.state == "verified"
