"""Validate a SAML 2.0 identity provider's metadata before GoTrue is told about it.

The metadata is UNTRUSTED input (it comes from the customer's IdP or a file they sent), so it
is parsed with defusedxml with DTDs forbidden: no external entities (XXE), no entity
expansion (billion laughs), no network or file access while parsing.

GoTrue (supabase/auth v2.196.0, internal/api/ssoadmin.go `parseSAMLMetadata`) itself requires
valid UTF-8, a non-empty entityID and exactly one IDPSSODescriptor; the checks here catch that
and more (bindings, certificate expiry, validUntil, expected entityID) before the admin call.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
import xml.etree.ElementTree as ET
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import defusedxml  # type: ignore[import-untyped]
import defusedxml.ElementTree as DET  # type: ignore[import-untyped]
import requests
from cryptography import x509

from installer.errors import SfpError
from installer.sso import _net, xmldsig
from installer.sso.report import Finding, Findings

if TYPE_CHECKING:
    from installer.sso.config import SamlProviderSettings

NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
SAML2_PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
USABLE_BINDINGS = (BINDING_REDIRECT, BINDING_POST)
EXPIRY_WARNING = timedelta(days=30)


@dataclass(frozen=True)
class SingleSignOnService:
    binding: str
    location: str


@dataclass(frozen=True)
class SigningCertificate:
    subject: str
    not_before: datetime
    not_after: datetime
    sha256: str  # hex fingerprint of the DER certificate


@dataclass
class SamlMetadataReport:
    """What the metadata says, and every problem found in it."""

    source: str
    raw_sha256: str | None = None
    entity_id: str | None = None
    sso_services: list[SingleSignOnService] = field(default_factory=list)
    signing_certificates: list[SigningCertificate] = field(default_factory=list)
    valid_until: datetime | None = None
    signed: bool = False  # the root element carries a ds:Signature (verified only when a certificate is pinned)
    signature: xmldsig.SignatureStatus | None = None  # None: the document could not be parsed
    findings: Findings = field(default_factory=Findings)
    raw: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        return self.findings.ok

    @property
    def problems(self) -> list[Finding]:
        return self.findings.items

    @property
    def fingerprint(self) -> str | None:
        """A digest of what matters to GoTrue (entityID, SSO endpoints, signing certificates).

        Stable across cosmetic changes (whitespace, signature, IDs, ordering), so it is the right
        thing to store as "last applied metadata" and compare for drift.
        """
        if self.entity_id is None:
            return None
        canon = {
            "entity_id": self.entity_id,
            "sso": sorted([s.binding, s.location] for s in self.sso_services),
            "certs": sorted(c.sha256 for c in self.signing_certificates),
        }
        return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()

    def raise_for_errors(self) -> None:
        self.findings.raise_for_errors(f"SAML metadata from {self.source}")


def fetch_saml_metadata(
    url: str,
    *,
    timeout: float = _net.DEFAULT_TIMEOUT,
    allow_insecure_loopback: bool = False,
    session: requests.Session | None = None,
    allow_hosts: Collection[str] = (),
) -> bytes:
    """GET the IdP metadata. https only (GoTrue refuses other metadata_url schemes), every
    redirect checked, no link-local or metadata-service address unless its host is in `allow_hosts`."""
    problem = _net.url_scheme_problem(url, "SAML metadata URL", allow_insecure_loopback=allow_insecure_loopback)
    if problem:
        raise SfpError(problem, "use the https URL of the IdP's metadata, or give the metadata as a file")
    resp = _net.http_get(url, what="SAML metadata", timeout=timeout, session=session,
                         accept="application/samlmetadata+xml, application/xml;q=0.9, */*;q=0.1",
                         allow_insecure_loopback=allow_insecure_loopback, allow_hosts=allow_hosts)
    if resp.status != 200:
        raise SfpError(f"fetching SAML metadata from {url} answered HTTP {resp.status}",
                       "check the metadata URL in the IdP's admin console; it must answer 200 with XML")
    return resp.body


def read_saml_metadata_file(path: str | Path, *, max_bytes: int = _net.MAX_BYTES) -> bytes:
    """The file's bytes; refused when it is not a regular file or is larger than `max_bytes` (as a URL is)."""
    p = Path(path)
    not_regular = SfpError(f"SAML metadata file {p} is not a regular file", "give the path of the IdP's metadata XML file")
    try:
        if not stat.S_ISREG(p.stat().st_mode):  # before open(): opening a FIFO would wait for a writer
            raise not_regular
        with p.open("rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise not_regular
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise SfpError(f"cannot read SAML metadata file {p}: {exc.strerror}",
                       "check the metadata_file path in the inventory (relative paths are resolved by the caller)") from None
    if len(data) > max_bytes:
        raise SfpError(f"SAML metadata file {p} is larger than {max_bytes // (1024 * 1024)} MiB; refusing to read it",
                       "check that the file is the IdP's metadata XML itself, not an archive or a log")
    return data


def validate_saml_metadata(
    *,
    url: str | None = None,
    file: str | Path | None = None,
    expected_entity_id: str | None = None,
    timeout: float = _net.DEFAULT_TIMEOUT,
    allow_insecure_loopback: bool = False,
    now: datetime | None = None,
    session: requests.Session | None = None,
    allow_hosts: Collection[str] = (),
    pinned_cert: str | None = None,
) -> SamlMetadataReport:
    """Fetch (URL) or read (file) and validate metadata; a failure to get it is an error finding.

    With `pinned_cert` (PEM), the metadata must carry a signature that verifies with it."""
    if (url is None) == (file is None):
        raise ValueError("give exactly one of url or file")
    source = url if url is not None else str(file)
    try:
        if url is not None:
            raw = fetch_saml_metadata(url, timeout=timeout, allow_insecure_loopback=allow_insecure_loopback,
                                      session=session, allow_hosts=allow_hosts)
        else:
            assert file is not None
            raw = read_saml_metadata_file(file)
    except SfpError as exc:
        report = SamlMetadataReport(source=source)
        report.findings.error(exc.message, exc.hint)
        return report
    return parse_saml_metadata(raw, source=source, expected_entity_id=expected_entity_id, now=now,
                               pinned_cert=pinned_cert)


def validate_provider_metadata(
    provider: SamlProviderSettings,
    *,
    base_dir: Path | None,
    allow_hosts: Collection[str] = (),
    timeout: float = _net.DEFAULT_TIMEOUT,
    allow_insecure_loopback: bool = False,
    now: datetime | None = None,
    session: requests.Session | None = None,
) -> SamlMetadataReport:
    """The metadata of one SAML provider of sso.yml, from its URL or its file (relative to
    `base_dir`, the inventory), checked against its expected entity id and pinned certificate: what
    Auth's registration, `sso check` and Studio's gate at the front door all trust."""
    if provider.metadata_url:
        return validate_saml_metadata(url=provider.metadata_url, expected_entity_id=provider.expected_entity_id,
                                      timeout=timeout, allow_insecure_loopback=allow_insecure_loopback, now=now,
                                      session=session, allow_hosts=allow_hosts, pinned_cert=provider.metadata_cert)
    path = Path(provider.metadata_file or "")
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return validate_saml_metadata(file=path, expected_entity_id=provider.expected_entity_id, now=now,
                                  pinned_cert=provider.metadata_cert)


def parse_saml_metadata(
    raw: bytes | str,
    *,
    source: str = "metadata",
    expected_entity_id: str | None = None,
    now: datetime | None = None,
    pinned_cert: str | None = None,
) -> SamlMetadataReport:
    """Parse untrusted metadata XML safely and check everything GoTrue and the IdP flow need.

    The signature is verified when `pinned_cert` (PEM) is given: unsigned metadata, or a signature
    that does not verify with that certificate, is an error. Without it the state is only reported."""
    data = raw.encode() if isinstance(raw, str) else raw
    report = SamlMetadataReport(source=source, raw=data, raw_sha256=hashlib.sha256(data).hexdigest())
    f = report.findings
    now = now or datetime.now(UTC)

    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        f.error("metadata is not valid UTF-8 (GoTrue accepts UTF-8 metadata only)",
                "export the metadata again as UTF-8 XML")
        return report

    root = _parse_untrusted_xml(data, f)
    if root is None:
        return report

    entity = _single_entity(root, f)
    if entity is None:
        return report

    _signature(data, root, pinned_cert, report)
    report.entity_id = (entity.get("entityID") or "").strip() or None
    if report.entity_id is None:
        f.error("metadata has no entityID", "export the IdP's metadata again; the EntityDescriptor must carry entityID")
    elif expected_entity_id is not None and report.entity_id != expected_entity_id:
        f.error(f"metadata entityID is {report.entity_id!r}, expected {expected_entity_id!r}",
                "this is metadata of a different IdP (or the IdP was re-created); check the metadata URL/file, "
                "or update expected_entity_id if the change is intended")

    report.valid_until = _valid_until(entity, root, f)
    if report.valid_until is not None:
        if report.valid_until <= now:
            f.error(f"metadata expired: validUntil {report.valid_until.isoformat()} is in the past",
                    "ask the IdP for fresh metadata (or use its metadata URL so it is refreshed)")
        elif report.valid_until - now <= EXPIRY_WARNING:
            f.warning(f"metadata validUntil {report.valid_until.isoformat()} is within "
                      f"{EXPIRY_WARNING.days} days", "plan a metadata refresh before then")

    idps = entity.findall(f"{{{NS_MD}}}IDPSSODescriptor")
    if not idps:
        f.error("metadata has no IDPSSODescriptor (is this the metadata of a service provider?)",
                "use the identity provider's metadata, not a service provider's")
        return report
    if len(idps) > 1:
        f.error("metadata has more than one IDPSSODescriptor; GoTrue accepts exactly one",
                "export metadata for a single IdP role")
        return report
    idp = idps[0]

    if SAML2_PROTOCOL not in (idp.get("protocolSupportEnumeration") or "").split():
        f.error("IDPSSODescriptor does not list the SAML 2.0 protocol in protocolSupportEnumeration",
                "GoTrue speaks SAML 2.0 only; configure the IdP application for SAML 2.0")

    for sso in idp.findall(f"{{{NS_MD}}}SingleSignOnService"):
        report.sso_services.append(SingleSignOnService(sso.get("Binding", ""), sso.get("Location", "")))
    usable = [s for s in report.sso_services if s.binding in USABLE_BINDINGS and s.location]
    if not usable:
        found = ", ".join(sorted({s.binding for s in report.sso_services})) or "none"
        f.error(f"no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding (found: {found})",
                "enable an HTTP-Redirect or HTTP-POST single sign-on endpoint in the IdP")

    _certificates(idp, report, now)
    return report


def _signature(data: bytes, root: ET.Element, pinned_cert: str | None, report: SamlMetadataReport) -> None:
    try:
        status = xmldsig.check(data, root, pinned_cert)
    except ValueError as exc:  # the pinned certificate itself (config validation catches it earlier)
        report.findings.error(f"the pinned metadata signing certificate cannot be read: {exc}",
                              "pin the IdP's metadata signing certificate as one PEM certificate")
        return
    report.signature, report.signed = status, status.signed
    if pinned_cert is None or status.state == "verified":
        return
    if status.state == "unsigned":
        report.findings.error(f"metadata is {status.detail}, but a signing certificate is pinned for it",
                              "ask the IdP for signed metadata, or remove the pinned certificate (metadata_cert) "
                              "if this IdP does not sign its metadata")
    else:
        report.findings.error(f"metadata {status.detail}",
                              "the metadata was altered or signed by someone else: do not use it; if the IdP "
                              "rotated its metadata signing certificate, confirm it with the IdP administrator "
                              "and pin the new one (sfp-server sso add ... --metadata-cert FILE)")


def _parse_untrusted_xml(data: bytes, f: Findings) -> ET.Element | None:
    try:
        root: ET.Element = DET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        return root
    except defusedxml.DTDForbidden:
        f.error("metadata contains a DTD (<!DOCTYPE ...>); refused: DTDs in untrusted XML enable XXE "
                "(external entities reading local files) and entity-expansion (billion laughs) attacks",
                "SAML metadata never needs a DTD; get the metadata from the IdP again and do not edit it by hand")
    except defusedxml.EntitiesForbidden:
        f.error("metadata declares XML entities; refused (entity expansion / billion-laughs protection)",
                "get clean metadata from the IdP again")
    except defusedxml.ExternalReferenceForbidden:
        f.error("metadata references an external resource; refused (XXE protection)",
                "get clean metadata from the IdP again")
    except defusedxml.DefusedXmlException as exc:  # any other defusedxml refusal
        f.error(f"metadata refused by the safe XML parser: {type(exc).__name__}", "get clean metadata from the IdP again")
    except ET.ParseError as exc:
        f.error(f"metadata is not well-formed XML ({exc})",
                "check that the URL/file holds the XML metadata itself, not an HTML login or error page")
    return None


def _single_entity(root: ET.Element, f: Findings) -> ET.Element | None:
    if root.tag == f"{{{NS_MD}}}EntityDescriptor":
        return root
    if root.tag == f"{{{NS_MD}}}EntitiesDescriptor":
        entities = [e for e in root.iter(f"{{{NS_MD}}}EntityDescriptor")
                    if e.find(f"{{{NS_MD}}}IDPSSODescriptor") is not None]
        if len(entities) == 1:
            return entities[0]
        f.error(f"metadata is an EntitiesDescriptor with {len(entities)} identity providers; exactly one is needed",
                "use the metadata of the single IdP this organization signs in with")
        return None
    f.error(f"metadata root element is {root.tag!r}, not a SAML 2.0 md:EntityDescriptor",
            "check that the URL/file holds SAML 2.0 metadata")
    return None


def _parse_xml_datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _valid_until(entity: ET.Element, root: ET.Element, f: Findings) -> datetime | None:
    values = [v for v in (entity.get("validUntil"), root.get("validUntil") if root is not entity else None) if v]
    dates: list[datetime] = []
    for v in values:
        try:
            dates.append(_parse_xml_datetime(v))
        except ValueError:
            f.error(f"metadata validUntil {v!r} is not an xs:dateTime", "export the metadata again")
    return min(dates) if dates else None


def _certificates(idp: ET.Element, report: SamlMetadataReport, now: datetime) -> None:
    f = report.findings
    texts: list[str] = []
    for kd in idp.findall(f"{{{NS_MD}}}KeyDescriptor"):
        if kd.get("use") not in (None, "", "signing"):
            continue
        for el in kd.iter(f"{{{NS_DS}}}X509Certificate"):
            texts.append("".join((el.text or "").split()))
    if not texts:
        f.error("IDPSSODescriptor has no signing certificate (KeyDescriptor use=\"signing\" or without use)",
                "GoTrue needs the IdP's signing certificate to verify assertions; export metadata that includes it")
        return

    parsed: list[SigningCertificate] = []
    for i, text in enumerate(texts, 1):
        try:
            der = base64.b64decode(text, validate=True)
            cert = x509.load_der_x509_certificate(der)
        except (binascii.Error, ValueError) as exc:
            f.error(f"signing certificate #{i} cannot be parsed as an X.509 certificate ({exc.__class__.__name__})",
                    "export the metadata again; the certificate data is corrupt")
            continue
        parsed.append(SigningCertificate(
            subject=cert.subject.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            sha256=hashlib.sha256(der).hexdigest(),
        ))
    report.signing_certificates = parsed

    current = [c for c in parsed if c.not_before <= now < c.not_after]
    for c in parsed:
        label = f"signing certificate {c.subject!r} (sha256 {c.sha256[:16]}…)"
        if c.not_after <= now:
            if current:  # rotation: an old certificate still listed next to a valid one
                f.warning(f"{label} expired on {c.not_after.isoformat()}; another listed certificate is valid",
                          "ask the IdP administrator to remove the expired certificate from the metadata")
            else:
                f.error(f"{label} expired on {c.not_after.isoformat()}",
                        "the IdP must rotate its signing certificate; then refresh the metadata (sfp-server sso apply)")
        elif c.not_before > now:
            if not current:
                f.error(f"{label} is not valid before {c.not_before.isoformat()}",
                        "check this machine's clock, or wait until the certificate becomes valid")
        elif c.not_after - now <= EXPIRY_WARNING:
            f.warning(f"{label} expires on {c.not_after.isoformat()} (within {EXPIRY_WARNING.days} days)",
                      "ask the IdP administrator to rotate the certificate and publish the new one in the metadata")
