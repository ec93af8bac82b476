from __future__ import annotations

import json
import re

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from installer import secrets


def test_complete_generates_every_secret_once() -> None:
    values, added = secrets.complete({})
    assert set(added) == set(secrets.NAMES)
    assert set(values) == set(secrets.NAMES)
    again, added_again = secrets.complete(values)
    assert added_again == []
    assert again == values


def test_existing_secrets_are_never_replaced() -> None:
    values, _ = secrets.complete({"POSTGRES_PASSWORD": "kept", "JWT_SECRET": "s" * 40})
    assert values["POSTGRES_PASSWORD"] == "kept"
    assert values["JWT_SECRET"] == "s" * 40
    # Keys derive from the kept secret, so they verify with it.
    claims = jwt.decode(values["ANON_KEY"], "s" * 40, algorithms=["HS256"], issuer="supabase")
    assert claims["role"] == "anon"


def test_api_keys_carry_the_claims_upstream_expects() -> None:
    values, _ = secrets.complete({})
    for key, role in (("ANON_KEY", "anon"), ("SERVICE_ROLE_KEY", "service_role")):
        claims = jwt.decode(values[key], values["JWT_SECRET"], algorithms=["HS256"], issuer="supabase")
        assert claims["role"] == role
        assert claims["exp"] - claims["iat"] == secrets.API_KEY_LIFETIME_SECONDS
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(values["ANON_KEY"], "wrong-secret-of-sufficient-length!!", algorithms=["HS256"])


def test_asymmetric_keys_verify_with_the_public_jwks() -> None:
    values, _ = secrets.complete({})
    jwks = json.loads(values["JWT_JWKS"])
    ec_public = next(k for k in jwks["keys"] if k["kty"] == "EC")
    assert "d" not in ec_public
    public_key = jwt.PyJWK(ec_public, algorithm="ES256").key
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    for key, role in (("ANON_KEY_ASYMMETRIC", "anon"), ("SERVICE_ROLE_KEY_ASYMMETRIC", "service_role")):
        header = jwt.get_unverified_header(values[key])
        assert header["alg"] == "ES256" and header["kid"] == ec_public["kid"]
        assert jwt.decode(values[key], public_key, algorithms=["ES256"])["role"] == role
        assert secrets.verify_api_key(values[key], values)["role"] == role
    # The legacy secret is in the key set too, so verifiers reading the set accept old keys.
    oct_key = next(k for k in jwks["keys"] if k["kty"] == "oct")
    assert jwt.decode(values["ANON_KEY"], jwt.PyJWK(oct_key, algorithm="HS256").key, algorithms=["HS256"])["role"] == "anon"


def test_opaque_key_checksum_holds_for_every_generated_key() -> None:
    # base64url's alphabet has "_", the separator: about one key in eight has one in its checksum.
    keys = [secrets.opaque_key(prefix) for prefix in ("sb_secret_", "sb_publishable_") for _ in range(500)]
    assert any("_" in k[-8:] for k in keys)
    assert all(secrets.opaque_key_checksum_ok(k) for k in keys)
    assert not secrets.opaque_key_checksum_ok("sb_secret_")


def test_formats() -> None:
    values, _ = secrets.complete({})
    assert len(values["VAULT_ENC_KEY"]) == 32
    assert len(values["SECRET_KEY_BASE"]) >= 64
    assert len(values["JWT_SECRET"]) >= 32
    assert re.fullmatch(r"sb_publishable_[A-Za-z0-9_-]{22}_[A-Za-z0-9_-]{8}", values["SUPABASE_PUBLISHABLE_KEY"])
    assert re.fullmatch(r"sb_secret_[A-Za-z0-9_-]{22}_[A-Za-z0-9_-]{8}", values["SUPABASE_SECRET_KEY"])
    assert secrets.opaque_key_checksum_ok(values["SUPABASE_SECRET_KEY"])
    key = values["SUPABASE_SECRET_KEY"]
    assert not secrets.opaque_key_checksum_ok(key[:-1] + ("y" if key[-1] == "x" else "x"))
    assert len(values["REALTIME_DB_ENC_KEY"]) == 16
