"""The groups `sfp-server secrets rotate` takes, and the vault names each one covers.

A group is what an operator rotates in one step: the values that must change together. Each says
what rotating it does on the host and who outside the org must be given the new value, which
`--plan` prints before anything changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .. import backup_inventory as binv
from .. import secrets as gen
from ..errors import UsageError


@dataclass(frozen=True)
class Group:
    name: str
    secrets: tuple[str, ...]
    does: str
    """What the rotation changes, in the order it happens."""
    clients: str
    """Who outside the org must be given the new values ({show}: the commands that print them;
    {key_file}: the one that prints the backup key file)."""
    make: Callable[[dict[str, str]], dict[str, str]]
    """The vault's values with new ones for `secrets` (what derives from them remade too)."""
    handed_out: tuple[str, ...] = ()
    """The new values clients need (default: `secrets`)."""
    confirm: bool = False
    """The rotation breaks clients at once (no grace period): the operator names the org to go ahead."""
    breaks: str = ""
    """What stops working the moment it is rotated, said by --plan and by the refusal without --confirm."""


def _new_recovery_key(values: dict[str, str]) -> dict[str, str]:
    """A new recovery key; the current one joins the earlier ones kept for the sets made with them."""
    from ..backup.keys import (
        generate_recovery_key,  # lazy: the backup library costs every start (actions/backup_keys.py)
    )

    current = values.get(binv.IDENTITY, "").strip()
    if not current:
        raise UsageError("the org has no recovery key in its vault: no backup block, or its block names a recipient "
                         "whose key is kept elsewhere",
                         "rotate such a key where it is kept and set the block's new recipient; nothing was changed")
    out = dict(values)
    earlier = binv.previous_identities(values)
    out[binv.IDENTITY], out[binv.RECIPIENT] = generate_recovery_key()
    out[binv.PREVIOUS_IDENTITIES] = "\n".join([current, *[e for e in earlier if e != current]])
    return out


GROUPS: dict[str, Group] = {
    g.name: g
    for g in (
        Group(
            "db-password",
            ("POSTGRES_PASSWORD",),
            "the roles that share the database password get the new one in one transaction (the old one is refused "
            "from then on); the pooler registers its tenant anew; the services that connect with it are recreated, "
            "the database first, each waited for until healthy",
            "applications, tools and jobs that log in to the database, directly or through the pooler, with the "
            "shared password (as postgres or a service role): {show}",
            lambda v: gen.regenerate(v, ["POSTGRES_PASSWORD"]),
        ),
        Group(
            "dashboard",
            ("DASHBOARD_PASSWORD",),
            "Studio's basic-auth password at the gateway changes; the gateway is recreated (every API request "
            "fails for the seconds it restarts); with Studio behind the org's SSO (studio_access), the front door "
            "takes the new password too (a graceful reload)",
            "the people who open Studio with the dashboard user and password: {show}",
            lambda v: gen.regenerate(v, ["DASHBOARD_PASSWORD"]),
        ),
        Group(
            "legacy-jwt-secret",
            ("JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY", "JWT_KEYS", "JWT_JWKS"),
            "a new HS256 secret; the HS256 anon and service_role keys are made anew from it, and the symmetric "
            "entry of the signing and verification key sets is replaced (the EC key and the ES256 keys stay); "
            "every service that signs or verifies with it is recreated, the gateway included",
            "every application that uses the legacy anon or service_role key (HS256): give it the new one, {show}",
            gen.with_legacy_secret,
            handed_out=("ANON_KEY", "SERVICE_ROLE_KEY"),
            confirm=True,
            breaks="the HS256 anon and service_role keys in use stop working at once, and every session signed "
                   "with the legacy secret ends (its users sign in again); the ES256 and opaque keys keep working",
        ),
        Group(
            "recovery-key",
            (binv.IDENTITY, binv.RECIPIENT, binv.PREVIOUS_IDENTITIES),
            "a new recovery key: sets made from now on are encrypted to it; the old key is kept in the vault (and "
            "in the key file) for the sets made with it, which stay restorable; the backup job on the host takes "
            "the new recipient; no service restarts",
            "whoever keeps the org's key file offline: print it again (`{key_file}`); it holds the new key and the kept ones",
            _new_recovery_key,
        ),
    )
}

# Named by the operator's security policy and by the issue that tracks them; this version cannot
# rotate them yet, and says so rather than accepting the name.
NOT_YET: tuple[str, ...] = ("jwt-signing-key", "api-keys", "service-keys")


def select(names: Iterable[str]) -> list[Group]:
    """The groups `names` mean: group names, or vault names a group covers. Unknown or not yet
    rotatable names are a usage error naming what can be given."""
    by_secret = {s: g for g in GROUPS.values() for s in g.secrets}
    chosen: list[Group] = []
    for name in names:
        group = GROUPS.get(name) or by_secret.get(name)
        if group is None:
            if name in NOT_YET:
                raise UsageError(f"{name!r} cannot be rotated by this version yet",
                                 f"rotatable now: {', '.join(GROUPS)}; nothing was changed")
            raise UsageError(f"unknown secret or group {name!r}",
                             f"rotatable: {', '.join([*GROUPS, *by_secret])}; nothing was changed")
        if group not in chosen:
            chosen.append(group)
    if not chosen:
        raise UsageError("nothing to rotate", f"name a group: {', '.join(GROUPS)}")
    return chosen


def handed_out(group: Group) -> tuple[str, ...]:
    return group.handed_out or group.secrets


def secret_names(groups: Iterable[Group]) -> list[str]:
    return [s for g in groups for s in g.secrets]
