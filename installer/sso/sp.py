"""The service-provider (GoTrue) side of an org's SSO: what to hand the IdP administrator.

Paths are GoTrue's (supabase/auth v2.196.0, internal/api/api.go routes `/sso/saml/metadata`,
`/sso/saml/acs`, `/callback`; internal/api/saml.go builds the SP from `<external URL>/sso/`
and its entityID is the metadata URL — asserted in internal/api/saml_test.go), behind the
Kong gateway's `/auth/v1` prefix.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from installer.errors import SfpError

AUTH_PREFIX = "/auth/v1"


@dataclass(frozen=True)
class ServiceProviderInfo:
    public_url: str
    auth_external_url: str  # GOTRUE API_EXTERNAL_URL
    saml_entity_id: str
    saml_metadata_url: str
    saml_acs_url: str
    saml_slo_url: str
    oidc_redirect_uri: str  # "Redirect URI" / "Callback URL" to register at OAuth/OIDC IdPs

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


def service_provider_info(public_url: str) -> ServiceProviderInfo:
    """URLs for an org whose gateway answers at `public_url` (e.g. https://acme.example.com)."""
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise SfpError(f"public_url {public_url!r} is not an absolute http(s) URL without query or fragment",
                       "set sfp_org.public_url to the URL users reach the org at, e.g. https://acme.example.com")
    base = public_url.rstrip("/")
    auth = base + AUTH_PREFIX
    metadata = auth + "/sso/saml/metadata"
    return ServiceProviderInfo(
        public_url=base,
        auth_external_url=auth,
        saml_entity_id=metadata,
        saml_metadata_url=metadata,
        saml_acs_url=auth + "/sso/saml/acs",
        saml_slo_url=auth + "/sso/saml/slo",
        oidc_redirect_uri=auth + "/callback",
    )


def generate_saml_private_key(bits: int = 2048) -> str:
    """A new SP signing key as GoTrue wants GOTRUE_SAML_PRIVATE_KEY: standard base64 of DER PKCS#1.

    Generate it once per org and keep it in the vault: changing it changes the SP certificate
    every IdP has registered.
    """
    if bits < 2048:
        raise ValueError("GoTrue requires an RSA key of at least 2048 bits")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    return base64.b64encode(der).decode("ascii")


def check_saml_private_key(value: str) -> None:
    """Raise SfpError unless `value` passes GoTrue's own checks (internal/conf/saml.go Validate)."""
    hint = "generate a key with installer.sso.sp.generate_saml_private_key() and store it in the org's vault"
    try:
        der = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SfpError("SAML private key is not standard base64", hint) from None
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        raise SfpError("SAML private key is not a DER RSA private key", hint) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SfpError("SAML private key is not an RSA key", hint)
    pkcs1 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption())
    if pkcs1 != der:
        raise SfpError("SAML private key is not in PKCS#1 form (GoTrue rejects PKCS#8)", hint)
    numbers = key.private_numbers().public_numbers
    if numbers.e != 65537:
        raise SfpError("SAML private key must use the public exponent 65537", hint)
    if key.key_size < 2048:
        raise SfpError(f"SAML private key has {key.key_size} bits; GoTrue requires at least 2048", hint)
