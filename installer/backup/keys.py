"""The org's two backup keys: the recovery key (confidentiality) and the signing key (authenticity).

Recovery key: an age X25519 identity; sets are encrypted to its recipient. The identity
(AGE-SECRET-KEY-1…) is the one thing needed to open a set on a new machine; keep it offline, away
from the controller and the bucket. The recipient (age1…) is public: anyone may encrypt to it,
so encryption proves nothing about who made a set.

Signing key: Ed25519 (RFC 8032). The org's backup job signs the exact bytes of each manifest
(which holds every object's sha256); verify and restore check the signature against the org's
public key before they read anything else of the set. The private half lives on the org's host
(the job's 0600 config) and in the org's vault, never in the bucket; the public half is kept in
the vault and, for restores on a new machine, in the offline key file beside the recovery
identity:

    # sfp-server backup key of org acme: keep this file OFFLINE …
    # public key: age1…
    # sfp-backup-signing-key: <base64 of the 32-byte Ed25519 public key>
    AGE-SECRET-KEY-1…

That is an age identity file (`#` lines are comments to age and rage); `read_key_file` reads the
identity and every signing key line back.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pyrage import x25519  # type: ignore[import-untyped]

from ..errors import SfpError

SIGNING_KEY_LINE = "# sfp-backup-signing-key:"
SIGNATURE_ALGORITHM = "ed25519"
_RAW = serialization.Encoding.Raw


def generate_recovery_key() -> tuple[str, str]:
    """A new recovery key: (identity, recipient)."""
    identity = x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def parse_recipient(text: str) -> x25519.Recipient:
    try:
        return x25519.Recipient.from_str(text.strip())
    except Exception:
        raise SfpError("the backup recipient is not an age X25519 recipient (age1…)",
                       "set backup.recipient to the recipient printed when the recovery key was made") from None


def parse_identity(text: str) -> x25519.Identity:
    """Accepts the bare key or an age identity file (comments and blank lines are skipped)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    try:
        if len(lines) != 1:
            raise ValueError
        return x25519.Identity.from_str(lines[0])
    except Exception:
        raise SfpError("the recovery key is not an age identity (AGE-SECRET-KEY-1…)",
                       "pass the file that holds the org's recovery key, as printed when it was made") from None


def parse_identities(text: str) -> list[x25519.Identity]:
    """Every key of an age identity file, in order (a key file after a recovery-key rotation holds the
    current key first, then the earlier ones kept for the sets made with them)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    try:
        if not lines:
            raise ValueError
        return [x25519.Identity.from_str(line) for line in lines]
    except Exception:
        raise SfpError("the recovery key is not an age identity (AGE-SECRET-KEY-1…)",
                       "pass the file that holds the org's recovery key, as printed when it was made") from None


def identity_for(text: str, recipient: str, set_id: str) -> x25519.Identity:
    """The key of `text` (one or more) that opens a set encrypted to `recipient`; fails before any download."""
    for identity in parse_identities(text):
        if str(identity.to_public()) == recipient:
            return identity
    raise SfpError(f"the recovery key does not match set {set_id}: the set is encrypted to {recipient}",
                   "use the key file that holds the org's recovery key whose public recipient is the one named here "
                   "(after a rotation: `backup key` prints the current and the kept earlier keys)")


def recipient_of(identity_text: str) -> str:
    """The public recipient (age1…) of a recovery key or key file."""
    return str(parse_identity(identity_text).to_public())


def check_identity(identity: x25519.Identity, recipient: str, set_id: str) -> None:
    """Fail before any download if the key cannot open the set."""
    if str(identity.to_public()) != recipient:
        raise SfpError(f"the recovery key does not match set {set_id}: the set is encrypted to {recipient}",
                       "use the org's recovery key whose public recipient is the one named here")


# -- signing -------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != size:
        raise ValueError(f"{len(raw)} bytes, not {size}")
    return raw


def generate_signing_key() -> tuple[str, str]:
    """A new signing key: (private, public), each the base64 of the raw 32-byte Ed25519 key."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return _b64(private), _b64(key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw))


def parse_signing_key(text: str) -> Ed25519PrivateKey:
    try:
        return Ed25519PrivateKey.from_private_bytes(_unb64(text, 32))
    except ValueError:
        raise SfpError("the backup signing key is not an Ed25519 private key (base64 of 32 bytes)",
                       "run `sfp-server install --org ORG`: it makes the org's signing key and renders the job config") from None


def public_key_of(private: str) -> str:
    return _b64(parse_signing_key(private).public_key().public_bytes(_RAW, serialization.PublicFormat.Raw))


def parse_public_key(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(_unb64(text, 32))
    except ValueError:
        raise SfpError(f"{text.strip()[:60]!r} is not an Ed25519 signing public key (base64 of 32 bytes)",
                       "use the key printed by `sfp-server backup key` (its `# sfp-backup-signing-key:` line)") from None


def sign_manifest(body: bytes, private: str) -> bytes:
    """manifest.sig: the Ed25519 signature of the manifest's exact bytes, with the public key that makes it."""
    key = parse_signing_key(private)
    doc = {"algorithm": SIGNATURE_ALGORITHM,
           "public_key": _b64(key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)),
           "signature": _b64(key.sign(body))}
    return (json.dumps(doc, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class Trust:
    """Which signing keys a set must be signed with to be read.

    `public_keys`: the org's (current and earlier) signing public keys. `allow_unsigned`: accept a
    set that has no signature at all (made before sets were signed); never one whose signature fails.
    """

    public_keys: tuple[str, ...] = ()
    allow_unsigned: bool = False


def forged(org: str, set_id: str, bucket: str) -> SfpError:
    return SfpError(f"set {set_id} of {org} is refused: signature does not verify: the set was not made by this "
                    "org's backup job or was altered after; nothing was downloaded or changed",
                    f"restore an older set (`sfp-server backup list --org {org}`), and check who can write to bucket "
                    f"{bucket!r} (rotate its keys if they may have leaked)")


def check_signature(body: bytes, signature: bytes | None, trust: Trust, *, org: str, set_id: str, bucket: str) -> str | None:
    """Raise unless `signature` (manifest.sig) is a valid signature of `body` by one of the trusted keys.

    Returns the public key that verified, or None for an unsigned set accepted by `allow_unsigned`.
    """
    if signature is None:
        if trust.allow_unsigned:
            return None
        raise SfpError(f"set {set_id} of {org} is refused: it has no signature (manifest.sig), so nothing proves it was "
                       "made by this org's backup job",
                       f"restore a signed set (`sfp-server backup list --org {org}`) and check who can write to bucket "
                       f"{bucket!r}; only for a set made before backups were signed, pass --allow-unsigned")
    keys = [parse_public_key(k) for k in trust.public_keys]
    if not keys:
        raise SfpError(f"no signing public key of {org} is known, so set {set_id} cannot be checked",
                       f"run `sfp-server install --org {org}` (it makes the org's signing key), or pass --identity-file "
                       "with the key file `sfp-server backup key` wrote (it holds the signing public key)")
    try:
        doc = json.loads(signature)
        raw = _unb64(str(doc["signature"]), 64)
        if doc.get("algorithm") != SIGNATURE_ALGORITHM:
            raise ValueError
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested past the parser
        raise forged(org, set_id, bucket) from None
    for index, key in enumerate(keys):
        try:
            key.verify(raw, body)
        except InvalidSignature:
            continue
        return trust.public_keys[index].strip()
    raise forged(org, set_id, bucket)


# -- the offline key file ------------------------------------------------------------------------
def key_file(org: str, identity: str, public_keys: Sequence[str]) -> str:
    """The text `backup key` prints: an age identity file that also carries the signing public keys.
    `identity` may hold earlier recovery keys after the current one: each is written with its public key."""
    keys = parse_identities(identity)
    lines = [f"# sfp-server backup key of org {org}: keep this file OFFLINE (restore on a new controller:",
             "# sfp-server restore --org ORG --backup latest --identity-file THIS-FILE)",
             f"# public key: {keys[0].to_public()}"]
    lines += [f"{SIGNING_KEY_LINE} {k.strip()}" for k in public_keys]
    lines.append(str(keys[0]))
    for earlier in keys[1:]:
        lines += [f"# earlier recovery key, kept for the sets made with it: {earlier.to_public()}", str(earlier)]
    return "\n".join(lines) + "\n"


def read_key_file(text: str) -> tuple[str, list[str]]:
    """(the recovery identities, one per line, current first; the signing public keys) of a key file or a bare identity."""
    keys = []
    for line in text.splitlines():
        if line.strip().startswith(SIGNING_KEY_LINE):
            value = line.strip()[len(SIGNING_KEY_LINE):].strip()
            parse_public_key(value)
            keys.append(value)
    return "\n".join(str(k) for k in parse_identities(text)), keys
