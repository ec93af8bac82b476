"""An org's backup keys in its vault: made on the first install, printed for the offline key file,
and the signing keys a set must carry.

The backup library is imported where it is used (about 220 ms of CPU on every `sfp-server` start
otherwise; see installer/actions/backup_config.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import backup_inventory as binv
from ..context import OrgContext
from ..errors import SfpError


def ensure_recovery_key(ctx: OrgContext) -> list[str]:
    """On an org's first install with backups configured: make its backup keys, keep them in the vault.

    The recovery key (unless the block names a `recipient`: its identity is kept elsewhere) and the
    signing key. A signing public key already in the vault without its private half (written by a
    restore from the offline key file) becomes a previous key: the sets it signed still verify.
    """
    raw = binv.block(ctx.hostvars)
    if raw is None:
        return []
    from ..backup.keys import generate_recovery_key, generate_signing_key, public_key_of  # lazy: see above

    values = ctx.secrets
    added: list[str] = []
    if not raw.get("recipient") and not values.get(binv.IDENTITY):
        values[binv.IDENTITY], values[binv.RECIPIENT] = generate_recovery_key()
        added += [binv.IDENTITY, binv.RECIPIENT]
    if not values.get(binv.SIGNING_KEY):
        earlier = binv.public_keys(values)
        values[binv.SIGNING_KEY], values[binv.SIGNING_PUBLIC_KEY] = generate_signing_key()
        if earlier:
            values[binv.SIGNING_PREVIOUS] = " ".join(earlier)
        added += [binv.SIGNING_KEY, binv.SIGNING_PUBLIC_KEY]
    elif values.get(binv.SIGNING_PUBLIC_KEY) != public_key_of(values[binv.SIGNING_KEY]):
        values[binv.SIGNING_PUBLIC_KEY] = public_key_of(values[binv.SIGNING_KEY])
        added.append(binv.SIGNING_PUBLIC_KEY)
    if added:
        ctx.write_secrets(values)
    return added


def key_material(ctx: OrgContext, identity_file: Path | None = None) -> tuple[str, list[str]]:
    """(the recovery identities, current first, one per line; the signing public keys of the key file)
    from --identity-file, else from the vault (with the earlier keys a rotation kept)."""
    if identity_file is not None:
        from ..backup.keys import read_key_file  # lazy: see above

        return read_key_file(identity_file.read_text())
    value = ctx.secrets.get(binv.IDENTITY)
    if not value:
        raise SfpError(f"org {ctx.name!r} has no recovery key in its vault",
                       "pass --identity-file with the key kept offline (`backup key` printed it)")
    return "\n".join([value.strip(), *binv.previous_identities(ctx.secrets)]), []


def trust(ctx: OrgContext, file_keys: list[str], allow_unsigned: bool = False) -> Any:
    """The signing keys a set of the org must be signed with: the vault's (current, previous) and the key file's."""
    from ..backup.keys import Trust  # lazy: see above

    keys = list(dict.fromkeys([*binv.public_keys(ctx.secrets), *file_keys]))
    return Trust(tuple(keys), allow_unsigned)


def key_text(ctx: OrgContext) -> tuple[str, bool]:
    """The key file to keep offline (recovery identity and signing public keys), and whether it has a signing key."""
    from ..backup.keys import key_file  # lazy: see above

    keys = binv.public_keys(ctx.secrets)
    return key_file(ctx.name, key_material(ctx)[0], keys), bool(keys)


def forget_unused_recovery_keys(ctx: OrgContext, store: Any) -> tuple[list[str], dict[str, str]]:
    """Drop the earlier recovery keys (kept by a rotation) that no complete set of the org is encrypted
    to any more: the retention pruned the last set made with each. Returns the public recipients
    dropped, and the sets whose manifest could not be read (set id: why).

    A manifest is read without its signature check: a forged one could only make a key stay longer.
    One that cannot be read at all (damaged, planted, or the store failing) says nothing of the key it
    needs, so then no key is dropped: losing the only key to a set is worse than keeping one too long.
    """
    earlier = binv.previous_identities(ctx.secrets)
    if not earlier:
        return [], {}
    from ..backup import api, s3  # lazy: see above
    from ..backup.keys import recipient_of

    # One client and one listing: api.show_set would list the bucket again for every set.
    cli = s3.client(store)
    in_use: set[str] = set()
    unreadable: dict[str, str] = {}
    for info in api.list_sets(store, ctx.name, client=cli):
        try:
            in_use.add(s3.read_manifest(cli, store, ctx.name, info.set_id, None).recipient)
        except SfpError as exc:
            unreadable[info.set_id] = exc.message
    if unreadable:
        return [], unreadable
    keep = [e for e in earlier if recipient_of(e) in in_use]
    if keep == earlier:
        return [], {}
    values = ctx.secrets
    if keep:
        values[binv.PREVIOUS_IDENTITIES] = "\n".join(keep)
    else:
        values.pop(binv.PREVIOUS_IDENTITIES, None)
    ctx.write_secrets(values)
    return [recipient_of(e) for e in earlier if e not in keep], {}
