"""The org's recovery key: an age X25519 identity; sets are encrypted to its recipient.

The identity (AGE-SECRET-KEY-1…) is the one thing needed to restore a set on a new machine;
keep it offline, away from the controller and the bucket. The recipient (age1…) is public and
lives in the backup settings.
"""

from __future__ import annotations

from pyrage import x25519  # type: ignore[import-untyped]

from ..errors import SfpError


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


def check_identity(identity: x25519.Identity, recipient: str, set_id: str) -> None:
    """Fail before any download if the key cannot open the set."""
    if str(identity.to_public()) != recipient:
        raise SfpError(f"the recovery key does not match set {set_id}: the set is encrypted to {recipient}",
                       "use the org's recovery key whose public recipient is the one named here")
