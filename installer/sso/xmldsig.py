"""Is a SAML metadata document signed, and does its signature verify with the pinned certificate?

The cryptography is xmlsec1's (the Debian package pysaml2 uses too); this module decides WHICH
signature counts, so that what is verified is what the validator reads (no signature wrapping):

- the signature must be a direct child of the document's root (md:EntityDescriptor or
  md:EntitiesDescriptor) and hold exactly one Reference, to "#<the root's ID>";
- that ID must occur once in the document (a second element with the same ID is the classic
  wrapping trick: the verifier finds one, the reader another);
- only the enveloped-signature and canonicalization transforms are accepted (an XPath or XSLT
  transform could sign something else than the root);
- xmlsec1 verifies with the pinned certificate's key only (`--enabled-key-data raw-x509-cert`,
  so a key or certificate inside the document is never trusted), resolves same-document
  references only, and is pointed at that very Signature node.

The document has passed the safe parser (no DTD, no entities) before it gets here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
ROOTS = (f"{{{NS_MD}}}EntityDescriptor", f"{{{NS_MD}}}EntitiesDescriptor")
ALLOWED_TRANSFORMS = frozenset({
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
    "http://www.w3.org/2006/12/xml-c14n11",
    "http://www.w3.org/2006/12/xml-c14n11#WithComments",
})
ROOT_SIGNATURE_XPATH = f"/*/*[local-name()='Signature' and namespace-uri()='{NS_DS}']"
XMLSEC_TIMEOUT = 30.0

State = Literal["unsigned", "signed", "verified", "invalid"]


@dataclass(frozen=True)
class SignatureStatus:
    state: State
    detail: str  # one line for `sso show` / `sso check`

    @property
    def signed(self) -> bool:
        return self.state != "unsigned"


def load_certificate(text: str) -> x509.Certificate:
    """The pinned certificate: one PEM certificate, or its base64 DER on one line (as sso.yml keeps it,
    like the metadata's own X509Certificate). ValueError when it is neither."""
    text = text.strip()
    if "-----BEGIN" in text:
        if text.count("-----BEGIN CERTIFICATE-----") != 1:
            raise ValueError("must hold exactly one PEM certificate (-----BEGIN CERTIFICATE-----)")
        return x509.load_pem_x509_certificate(text.encode())
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is neither a PEM certificate nor base64 DER") from None
    return x509.load_der_x509_certificate(der)


def one_line(text: str) -> str:
    """The certificate as base64 DER without line breaks: how sso.yml keeps a pinned certificate
    (the inventory's settings are one line each)."""
    return base64.b64encode(load_certificate(text).public_bytes(Encoding.DER)).decode()


def certificate_sha256(text: str) -> str:
    return hashlib.sha256(load_certificate(text).public_bytes(Encoding.DER)).hexdigest()


def check(data: bytes, root: ET.Element, pinned_pem: str | None) -> SignatureStatus:
    """The signature state of `data` (already parsed as `root`), verified when a certificate is pinned
    (PEM or one-line base64 DER)."""
    signature = _root_signature(root)
    if signature is None:
        inner = root.find(f".//{{{NS_DS}}}Signature") is not None
        detail = ("unsigned (only an inner element carries a signature, which does not cover the document)"
                  if inner else "unsigned")
        return SignatureStatus("unsigned", detail)
    if pinned_pem is None:
        return SignatureStatus("signed", "signed, not verified (no certificate pinned: sso add --metadata-cert)")
    fingerprint = certificate_sha256(pinned_pem)[:16]
    problem = _structure_problem(root, signature) or _xmlsec_verify(data, pinned_pem)
    if problem:
        return SignatureStatus("invalid", f"signature does not verify with the pinned certificate "
                                          f"(sha256 {fingerprint}…): {problem}")
    return SignatureStatus("verified", f"signed, verified with the pinned certificate (sha256 {fingerprint}…)")


def _root_signature(root: ET.Element) -> ET.Element | None:
    found = root.findall(f"{{{NS_DS}}}Signature")
    return found[0] if found else None


def _structure_problem(root: ET.Element, signature: ET.Element) -> str | None:
    if root.tag not in ROOTS:
        return "the document's root is not an md:EntityDescriptor or md:EntitiesDescriptor"
    if len(root.findall(f"{{{NS_DS}}}Signature")) != 1:
        return "the root carries more than one signature"
    root_id = root.get("ID")
    if not root_id:
        return "the signed root element has no ID attribute for the signature to reference"
    same_id = [e for e in root.iter() if root_id in (e.get("ID"), e.get("Id"), e.get("id"))]
    if len(same_id) != 1:
        return f"ID {root_id!r} occurs {len(same_id)} times in the document (signature wrapping); refused"
    refs = signature.findall(f"{{{NS_DS}}}SignedInfo/{{{NS_DS}}}Reference")
    if len(refs) != 1:
        return f"the signature has {len(refs)} references; exactly one, to the root element, is accepted"
    uri = refs[0].get("URI")
    if uri != f"#{root_id}":
        return f"the signature references {uri!r}, not the root element (#{root_id}); refused"
    for t in refs[0].iter(f"{{{NS_DS}}}Transform"):
        if t.get("Algorithm") not in ALLOWED_TRANSFORMS:
            return f"the signature uses the transform {t.get('Algorithm')!r}; only enveloped-signature and " \
                   "canonicalization are accepted"
    return None


def _xmlsec_verify(data: bytes, pinned_pem: str) -> str | None:
    xmlsec = shutil.which("xmlsec1")
    if xmlsec is None:
        return "xmlsec1 is not installed on this machine (Debian package xmlsec1)"
    with tempfile.TemporaryDirectory(prefix="sfp-xmldsig-") as tmp:
        doc, cert = Path(tmp) / "metadata.xml", Path(tmp) / "pinned.pem"
        doc.write_bytes(data)
        cert.write_bytes(load_certificate(pinned_pem).public_bytes(Encoding.PEM))
        cmd = [xmlsec, "--verify", "--enabled-reference-uris", "same-doc", "--enabled-key-data", "raw-x509-cert",
               "--pubkey-cert-pem", str(cert), "--node-xpath", ROOT_SIGNATURE_XPATH]
        for tag in ("EntityDescriptor", "EntitiesDescriptor"):
            cmd += ["--id-attr:ID", f"{NS_MD}:{tag}"]
        cmd.append(str(doc))
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=XMLSEC_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return f"xmlsec1 did not finish within {XMLSEC_TIMEOUT:g} s"
    if done.returncode == 0:
        return None
    return _xmlsec_reason(done.stderr)


def _xmlsec_reason(stderr: str) -> str:
    text = stderr.lower()
    if "data do not match" in text or "signature verification failed" in text:
        return "the signature does not match (altered after signing, or signed with another key)"
    if "digest" in text and ("not match" in text or "failed" in text):
        return "the signed content was altered after signing (digest mismatch)"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return "xmlsec1: " + (lines[-1][:200] if lines else "verification failed")
