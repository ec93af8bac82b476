"""The secrets of one org: generated once, kept in the org's vault, never regenerated silently.

Every value the upstream stack reads as a secret is made here, in Python (PyJWT and
cryptography), so that nothing secret passes through a shell command line. Derived values
(API keys, key sets) are made from the base secrets so a restore that brings back the base
secrets brings back keys that still verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets as _random
import string
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

# Anon and service_role keys are long-lived API keys that clients embed; upstream makes them
# valid for five years. Rotation is an explicit operator action, never a side effect.
API_KEY_LIFETIME_SECONDS = 5 * 365 * 24 * 3600
JWT_ISSUER = "supabase"

_ALNUM = string.ascii_letters + string.digits


def _alnum(length: int) -> str:
    return "".join(_random.choice(_ALNUM) for _ in range(length))


def _hex(nbytes: int) -> str:
    return _random.token_hex(nbytes)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64url(value: int, length: int) -> str:
    return _b64url(value.to_bytes(length, "big"))


def legacy_api_key(jwt_secret: str, role: str, issued_at: int) -> str:
    """An HS256 API key as upstream's key generator makes it: role, issuer, iat, exp."""
    claims = {"role": role, "iss": JWT_ISSUER, "iat": issued_at, "exp": issued_at + API_KEY_LIFETIME_SECONDS}
    return jwt.encode(claims, jwt_secret, algorithm="HS256")


def _ec_private_jwk() -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.private_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _int_b64url(numbers.public_numbers.x, 32),
        "y": _int_b64url(numbers.public_numbers.y, 32),
        "d": _int_b64url(numbers.private_value, 32),
        "kid": str(uuid.uuid4()),
        "use": "sig",
        "key_ops": ["sign", "verify"],
        "alg": "ES256",
        "ext": True,
    }


def _oct_jwk(jwt_secret: str) -> dict[str, Any]:
    """The legacy symmetric secret as a JWK, so verifiers that read a key set accept both kinds.

    No key_ops: Auth requires exactly one key marked for signing, and that is the EC key.
    """
    return {"kty": "oct", "k": _b64url(jwt_secret.encode()), "alg": "HS256"}


# Opaque API keys as upstream's self-hosting key script makes them: prefix, 22 random base64url
# characters, and an 8-character checksum over a fixed project ref, so a mistyped key is
# recognisable without a lookup.
OPAQUE_KEY_PROJECT_REF = "supabase-self-hosted"


def opaque_key(prefix: str) -> str:
    intermediate = prefix + _b64url(_random.token_bytes(17))[:22]
    digest = hashlib.sha256(f"{OPAQUE_KEY_PROJECT_REF}|{intermediate}".encode()).digest()
    return f"{intermediate}_{_b64url(digest)[:8]}"


def opaque_key_checksum_ok(key: str) -> bool:
    # By position, not by the last "_": base64url has "_" in its alphabet, so the checksum may hold one.
    intermediate, separator, checksum = key[:-9], key[-9:-8], key[-8:]
    digest = hashlib.sha256(f"{OPAQUE_KEY_PROJECT_REF}|{intermediate}".encode()).digest()
    return bool(intermediate) and separator == "_" and _b64url(digest)[:8] == checksum


def ec_jwks(values: Mapping[str, str]) -> list[dict[str, Any]]:
    """The EC keys of the signing key set, in order (after a signing key rotation: more than one)."""
    return [k for k in json.loads(values["JWT_KEYS"]) if k.get("kty") == "EC"]


def signing_jwk(values: Mapping[str, str]) -> dict[str, Any]:
    """The key Auth signs with: the one EC key whose key_ops has "sign" (exactly one may)."""
    return next(k for k in ec_jwks(values) if "sign" in k.get("key_ops", []))


def _public(private: dict[str, Any]) -> dict[str, Any]:
    public = {k: v for k, v in private.items() if k != "d"}
    public["key_ops"] = ["verify"]
    return public


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _jwt_keys(values: dict[str, str]) -> str:
    return _dumps([_ec_private_jwk(), _oct_jwk(values["JWT_SECRET"])])


def _jwt_jwks(values: Mapping[str, str]) -> str:
    """The public key set every verifier reads: each EC key's public half, then the symmetric key."""
    return _dumps({"keys": [*(_public(k) for k in ec_jwks(values)), _oct_jwk(values["JWT_SECRET"])]})


def with_signing_key_published(values: Mapping[str, str]) -> dict[str, str]:
    """Step 1 of a signing key rotation: a new EC key joins both sets for verifying only; the
    current key still signs. A key kept from the rotation before (verify-only) is dropped now."""
    out = dict(values)
    current = signing_jwk(values)
    new = _ec_private_jwk()
    new["key_ops"] = ["verify"]
    out["JWT_KEYS"] = _dumps([current, new, _oct_jwk(values["JWT_SECRET"])])
    out["JWT_JWKS"] = _jwt_jwks(out)
    return out


def with_signing_key_switched(values: Mapping[str, str]) -> dict[str, str]:
    """Step 2: the newest EC key signs, the one that signed until now verifies only (for the grace
    period: sessions it signed stay valid); the ES256 API keys are signed anew with the new key."""
    out = dict(values)
    current = signing_jwk(values)
    others = [k for k in ec_jwks(values) if k.get("kid") != current.get("kid")]
    if not others:
        raise ValueError("no published key to switch to: step 1 has not run")
    new = others[-1]
    current = {**current, "key_ops": ["verify"]}
    new = {**new, "key_ops": ["sign", "verify"]}
    out["JWT_KEYS"] = _dumps([new, current, _oct_jwk(values["JWT_SECRET"])])
    out["JWT_JWKS"] = _jwt_jwks(out)
    for role, name in (("anon", "ANON_KEY_ASYMMETRIC"), ("service_role", "SERVICE_ROLE_KEY_ASYMMETRIC")):
        out[name] = _asymmetric_key(role)(out)
    return out


def without_verify_only_keys(values: Mapping[str, str]) -> dict[str, str]:
    """The end of the grace period: only the signing EC key (and the symmetric key) remain."""
    out = dict(values)
    out["JWT_KEYS"] = _dumps([signing_jwk(values), _oct_jwk(values["JWT_SECRET"])])
    out["JWT_JWKS"] = _jwt_jwks(out)
    return out


def _asymmetric_key(role: str) -> Callable[[dict[str, str]], str]:
    def make(values: dict[str, str]) -> str:
        jwk = signing_jwk(values)
        key = jwt.PyJWK(jwk, algorithm="ES256")
        issued_at = int(values["API_KEYS_ISSUED_AT"])
        claims = {"role": role, "iss": JWT_ISSUER, "iat": issued_at, "exp": issued_at + API_KEY_LIFETIME_SECONDS}
        return jwt.encode(claims, key.key, algorithm="ES256", headers={"kid": jwk["kid"]})

    return make


def _legacy_key(role: str) -> Callable[[dict[str, str]], str]:
    def make(values: dict[str, str]) -> str:
        return legacy_api_key(values["JWT_SECRET"], role, int(values["API_KEYS_ISSUED_AT"]))

    return make


@dataclass(frozen=True)
class SecretSpec:
    name: str
    make: Callable[[dict[str, str]], str]
    description: str


def _signing_mode(values: dict[str, str]) -> str:
    """How the org's Auth signs sessions when its settings do not say (sfp_org.auth.asymmetric_keys):
    as upstream's default for a new org, HS256 with JWT_SECRET ("symmetric"); an org whose vault
    already holds a JWT secret was installed by a toolkit that always signed with the EC key, and
    keeps doing so ("asymmetric"). First in SPECS, so `values` holds only what existed before."""
    return "asymmetric" if "JWT_SECRET" in values else "symmetric"


SIGNING_MODES = ("symmetric", "asymmetric")
# Kept in the vault beside the secrets, so they follow the org into every backup and restore, but
# they are records, not secrets: no age, nothing to rotate.
RECORDS = ("JWT_SIGNING_MODE",)

# Order matters: derived secrets come after what they are derived from; the signing mode first.
SPECS: tuple[SecretSpec, ...] = (
    SecretSpec("JWT_SIGNING_MODE", _signing_mode,
               "how Auth signs sessions unless sfp_org.auth.asymmetric_keys says: symmetric (HS256, upstream's "
               "default) or asymmetric (the EC key); kept so that no install or upgrade changes it by itself"),
    SecretSpec("POSTGRES_PASSWORD", lambda v: _hex(16), "password of postgres and the Supabase service roles"),
    SecretSpec("JWT_SECRET", lambda v: _alnum(48), "HS256 secret that signs and verifies legacy JWTs"),
    SecretSpec("API_KEYS_ISSUED_AT", lambda v: str(int(time.time())), "issue time of the API keys (kept so they re-derive identically)"),
    SecretSpec("ANON_KEY", _legacy_key("anon"), "legacy anon API key (HS256 JWT)"),
    SecretSpec("SERVICE_ROLE_KEY", _legacy_key("service_role"), "legacy service_role API key (HS256 JWT)"),
    SecretSpec("JWT_KEYS", _jwt_keys, "signing key set: EC P-256 private JWK plus the legacy symmetric key"),
    SecretSpec("JWT_JWKS", _jwt_jwks, "public verification key set (EC public key plus the legacy symmetric key)"),
    SecretSpec("ANON_KEY_ASYMMETRIC", _asymmetric_key("anon"), "anon API key signed with the EC key (ES256)"),
    SecretSpec("SERVICE_ROLE_KEY_ASYMMETRIC", _asymmetric_key("service_role"), "service_role API key signed with the EC key (ES256)"),
    SecretSpec("SUPABASE_PUBLISHABLE_KEY", lambda v: opaque_key("sb_publishable_"), "opaque publishable API key (maps to anon)"),
    SecretSpec("SUPABASE_SECRET_KEY", lambda v: opaque_key("sb_secret_"), "opaque secret API key (maps to service_role)"),
    SecretSpec("DASHBOARD_USERNAME", lambda v: "supabase", "Studio dashboard user (basic auth at the gateway)"),
    SecretSpec("DASHBOARD_PASSWORD", lambda v: _hex(16), "Studio dashboard password"),
    SecretSpec("SECRET_KEY_BASE", lambda v: _alnum(64), "Realtime and Supavisor session signing base"),
    SecretSpec("VAULT_ENC_KEY", lambda v: _hex(16), "Supavisor encryption key (exactly 32 characters)"),
    SecretSpec("PG_META_CRYPTO_KEY", lambda v: _alnum(32), "pg-meta/Studio connection string encryption key"),
    SecretSpec("REALTIME_DB_ENC_KEY", lambda v: _hex(8), "Realtime tenant secrets encryption key (AES-128: 16 characters)"),
    SecretSpec("LOGFLARE_PUBLIC_ACCESS_TOKEN", lambda v: _alnum(40), "Analytics ingest token (log collector, Studio)"),
    SecretSpec("LOGFLARE_PRIVATE_ACCESS_TOKEN", lambda v: _alnum(40), "Analytics management token"),
    SecretSpec("S3_PROTOCOL_ACCESS_KEY_ID", lambda v: _hex(16), "Storage S3 protocol access key id"),
    SecretSpec("S3_PROTOCOL_ACCESS_KEY_SECRET", lambda v: _hex(32), "Storage S3 protocol secret"),
)
NAMES: tuple[str, ...] = tuple(s.name for s in SPECS)
# Values an operator may set (never generated): they come from outside, like the SMTP relay's password.
OPERATOR_SET: tuple[str, ...] = ("SMTP_PASS", "OPENAI_API_KEY", "BACKUP_S3_ACCESS_KEY_ID", "BACKUP_S3_SECRET_ACCESS_KEY",
                                 "LOGS_S3_ACCESS_KEY_ID", "LOGS_S3_SECRET_ACCESS_KEY")
# Values a rotation keeps for its grace period (installer/rotation/groups.py): the keys replaced,
# still accepted until the period ends, and when it ends. Absent outside a grace period.
GRACE: tuple[str, ...] = ("SUPABASE_PUBLISHABLE_KEY_PREVIOUS", "SUPABASE_SECRET_KEY_PREVIOUS", "API_KEYS_PREVIOUS_UNTIL",
                          "JWT_SIGNING_KEY_PREVIOUS_UNTIL")
DESCRIPTIONS: dict[str, str] = {s.name: s.description for s in SPECS} | {
    "SUPABASE_PUBLISHABLE_KEY_PREVIOUS": "the publishable key an api-keys rotation replaced, accepted until its grace period ends",
    "SUPABASE_SECRET_KEY_PREVIOUS": "the secret key an api-keys rotation replaced, accepted until its grace period ends",
    "API_KEYS_PREVIOUS_UNTIL": "when the grace period of the replaced API keys ends (`secrets rotate --finish api-keys`)",
    "JWT_SIGNING_KEY_PREVIOUS_UNTIL": "when the replaced EC signing key stops verifying (`secrets rotate --finish jwt-signing-key`)",
    "SMTP_PASS": "password of the SMTP relay",
    "OPENAI_API_KEY": "OpenAI API key of Studio's SQL assistant (optional; unset: the assistant is off)",
    "BACKUP_S3_ACCESS_KEY_ID": "backup store access key id (sfp_org.backup.store.credentials.source: vault)",
    "BACKUP_S3_SECRET_ACCESS_KEY": "backup store secret access key (sfp_org.backup.store.credentials.source: vault)",
    "BACKUP_RECOVERY_IDENTITY": "the org's backup recovery key (age identity; keep a copy offline: `backup key`)",
    "BACKUP_RECOVERY_RECIPIENT": "public recipient of the recovery key; backup sets are encrypted to it",
    "BACKUP_RECOVERY_PREVIOUS_IDENTITIES": "earlier recovery keys (after a rotation), kept while sets made with them remain",
    "BACKUP_SIGNING_KEY": "Ed25519 key the org's backup job signs its sets with (never stored in the bucket)",
    "BACKUP_SIGNING_PUBLIC_KEY": "its public half: verify and restore accept only sets it signed (in `backup key`'s file)",
    "BACKUP_SIGNING_PREVIOUS_PUBLIC_KEYS": "earlier signing public keys whose sets still verify (after a restore onto a new controller)",
    "LOGS_S3_ACCESS_KEY_ID": "log export store access key id (sfp_org.logs.export)",
    "LOGS_S3_SECRET_ACCESS_KEY": "log export store secret access key (sfp_org.logs.export)",
}


def complete(existing: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Fill in the secrets that are missing; never touch one that exists.

    Returns the full set and the names that were added, so the caller can say what changed.
    """
    values = {k: str(v) for k, v in existing.items()}
    added: list[str] = []
    for spec in SPECS:
        if spec.name not in values:
            values[spec.name] = spec.make(values)
            added.append(spec.name)
    return values, added


def regenerate(values: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """A copy of `values` with new values for `names`, made as at first generation (a rotation).
    Only generated secrets can be made anew; what derives from them is the caller's to remake."""
    specs = {s.name: s for s in SPECS}
    out = dict(values)
    for name in names:
        if name not in specs:
            raise KeyError(f"{name} is not a generated secret")
        out[name] = specs[name].make(out)
    return out


def with_legacy_secret(values: Mapping[str, str], jwt_secret: str | None = None) -> dict[str, str]:
    """A copy of `values` with a new legacy JWT secret and everything made from it: the HS256 anon and
    service_role keys, and the symmetric entry of the signing key set and of the public key set. The
    EC key, and the ES256 keys it signs, stay as they are."""
    out = dict(values)
    out["JWT_SECRET"] = jwt_secret or _alnum(48)
    issued_at = int(out["API_KEYS_ISSUED_AT"])
    out["ANON_KEY"] = legacy_api_key(out["JWT_SECRET"], "anon", issued_at)
    out["SERVICE_ROLE_KEY"] = legacy_api_key(out["JWT_SECRET"], "service_role", issued_at)
    keys = [k for k in json.loads(out["JWT_KEYS"]) if k.get("kty") != "oct"] + [_oct_jwk(out["JWT_SECRET"])]
    out["JWT_KEYS"] = json.dumps(keys, separators=(",", ":"))
    jwks = json.loads(out["JWT_JWKS"])
    jwks["keys"] = [k for k in jwks.get("keys", []) if k.get("kty") != "oct"] + [_oct_jwk(out["JWT_SECRET"])]
    out["JWT_JWKS"] = json.dumps(jwks, separators=(",", ":"))
    return out


def verify_api_key(token: str, values: dict[str, str]) -> dict[str, Any]:
    """Decode an API key with the org's keys (HS256 secret or EC public key); raises on a bad key."""
    header = jwt.get_unverified_header(token)
    if header.get("alg") == "ES256":
        jwk = next((k for k in ec_jwks(values) if k.get("kid") == header.get("kid")), None)
        if jwk is None:
            raise jwt.InvalidKeyError(f"no key of the org's key set has the token's kid {header.get('kid')!r}")
        key = jwt.PyJWK(jwk, algorithm="ES256").key
        return jwt.decode(token, key, algorithms=["ES256"], issuer=JWT_ISSUER)
    return jwt.decode(token, values["JWT_SECRET"], algorithms=["HS256"], issuer=JWT_ISSUER)


@dataclass(frozen=True)
class SecretAge:
    name: str
    changed_at: str | None
    """When the value was made or last changed (UTC stamp); None: before the toolkit kept ages."""
    age_days: float | None
    too_old: bool


def ages(values: Mapping[str, str], stamps: Mapping[str, str], max_age_days: int, now: datetime) -> list[SecretAge]:
    """Each secret's age against the org's maximum, by name. A stamp that does not parse (the vault
    was edited by hand) counts as unknown, like a missing one: never as new."""
    out = []
    for name in sorted(values):
        if name in RECORDS:
            continue
        stamp = stamps.get(name)
        try:
            at = datetime.fromisoformat(stamp) if isinstance(stamp, str) and stamp else None
        except ValueError:
            at = None
        if at is not None and at.tzinfo is None:
            at = None
        days = (now - at).total_seconds() / 86400 if at is not None else None
        out.append(SecretAge(name, stamp if at is not None else None, days, days is not None and days > max_age_days))
    return out
