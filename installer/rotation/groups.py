"""The groups `sfp-server secrets rotate` takes, and the vault names each one covers.

A group is what an operator rotates in one step: the values that must change together. Each says
what rotating it does on the host and who outside the org must be given the new value, which
`--plan` prints before anything changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

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
    grace: timedelta | None = None
    """Set for a group whose replaced values stay valid for a grace period (this long by default):
    `secrets rotate --finish`, or the next rotation of the group, ends it."""
    previous: Mapping[str, str] = field(default_factory=dict)
    """Current name -> the name that keeps the value it replaces for the grace period."""
    steps: tuple[Step, ...] = ()
    """A rotation applied in steps, each written to the vault and applied before the next (default:
    one step, `make`, applying `secrets`)."""
    keeps: Callable[[Mapping[str, str]], bool] | None = None
    """Whether the values hold something kept for a grace period (default: a `previous` name is set)."""
    drop: Callable[[Mapping[str, str]], dict[str, str]] | None = None
    """The values without what is kept (default: without the `previous` names)."""
    finish_names: tuple[str, ...] = ()
    """The names `--finish` changes (default: the `previous` names)."""
    grace_outlasts_sessions: bool = False
    """The replaced value verifies sessions: its grace period must outlast the org's session lifetime."""

    @property
    def grace_until(self) -> str:
        """The vault name holding when the grace period ends (UTC, ISO 8601)."""
        return f"{self.name.upper().replace('-', '_')}_PREVIOUS_UNTIL" if self.grace else ""


@dataclass(frozen=True)
class Step:
    """One step of a rotation: the values it makes from the vault's, and the names it applies."""

    label: str
    make: Callable[[dict[str, str]], dict[str, str]]
    names: tuple[str, ...]


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


# Keys only the org's own services use between themselves (upstream's .env names them beside the
# passwords): nobody outside holds them but the S3 protocol clients and Analytics' API users.
SERVICE_KEYS: tuple[str, ...] = (
    "SECRET_KEY_BASE", "VAULT_ENC_KEY", "REALTIME_DB_ENC_KEY", "PG_META_CRYPTO_KEY", "LOGFLARE_PUBLIC_ACCESS_TOKEN",
    "LOGFLARE_PRIVATE_ACCESS_TOKEN", "S3_PROTOCOL_ACCESS_KEY_ID", "S3_PROTOCOL_ACCESS_KEY_SECRET",
)

_API_KEYS = ("SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SECRET_KEY")
API_KEYS_PREVIOUS = {name: f"{name}_PREVIOUS" for name in _API_KEYS}
API_KEYS_GRACE = timedelta(days=7)
# At least this, and always an hour longer than the org's session lifetime (actions/rotate.py grace_for).
JWT_SIGNING_KEY_GRACE = timedelta(days=1)

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
            "api-keys",
            (*_API_KEYS, *API_KEYS_PREVIOUS.values(), "API_KEYS_PREVIOUS_UNTIL"),
            "a new publishable and a new secret key; the gateway accepts the new ones and, until the grace period "
            "ends, the ones they replace (it refuses those from then on; `--finish` ends it sooner and removes "
            "them); Studio and the edge functions are handed the new ones; the gateway, Studio and the functions "
            "are recreated",
            "every application with the publishable or the secret key (sb_publishable_…, sb_secret_…): give it the "
            "new one before the grace period ends, {show}",
            lambda v: gen.regenerate(v, _API_KEYS),
            handed_out=_API_KEYS,
            previous=API_KEYS_PREVIOUS,
            grace=API_KEYS_GRACE,
        ),
        Group(
            "jwt-signing-key",
            ("JWT_KEYS", "JWT_JWKS", "ANON_KEY_ASYMMETRIC", "SERVICE_ROLE_KEY_ASYMMETRIC", "JWT_SIGNING_KEY_PREVIOUS_UNTIL"),
            "in two steps, each applied before the next: (1) a new EC key joins the signing and the public key sets "
            "for verifying only, and every service that verifies sessions is recreated with it; (2) the new key "
            "signs, the old one verifies only, for the grace period (sessions it signed stay valid until they "
            "expire), and the ES256 anon and service_role keys are signed anew; Auth and the gateway are recreated",
            "every application with the ES256 anon or service_role key (ANON_KEY_ASYMMETRIC, "
            "SERVICE_ROLE_KEY_ASYMMETRIC): give it the new one before the grace period ends, {show}; sessions "
            "need nothing: they are renewed with the new key",
            lambda v: gen.with_signing_key_switched(gen.with_signing_key_published(v)),
            handed_out=("ANON_KEY_ASYMMETRIC", "SERVICE_ROLE_KEY_ASYMMETRIC"),
            grace=JWT_SIGNING_KEY_GRACE,
            steps=(Step("publish", gen.with_signing_key_published, ("JWT_KEYS", "JWT_JWKS")),
                   Step("sign", gen.with_signing_key_switched,
                        ("JWT_KEYS", "ANON_KEY_ASYMMETRIC", "SERVICE_ROLE_KEY_ASYMMETRIC", "JWT_SIGNING_KEY_PREVIOUS_UNTIL"))),
            keeps=lambda v: len(gen.ec_jwks(v)) > 1,
            drop=gen.without_verify_only_keys,
            finish_names=("JWT_KEYS", "JWT_JWKS"),
            grace_outlasts_sessions=True,
        ),
        Group(
            "service-keys",
            SERVICE_KEYS,
            "new keys between the org's own services: Realtime's and the pooler's session signing base, the "
            "pooler's encryption key (its tenant record, encrypted with it, is registered anew), Realtime's tenant "
            "encryption key (Realtime seeds its tenant anew at every start), the Studio to pg-meta connection key, "
            "Analytics' ingest and management tokens (Analytics revokes the tokens it provisioned from the old "
            "values at start) and Storage's S3 protocol key pair; the services that read them are recreated, each "
            "waited for until healthy; Realtime clients reconnect",
            "clients of Storage's S3 protocol endpoint (the new key pair) and of the Analytics management API: "
            "{show}; the services inside the org take the rest themselves",
            lambda v: gen.regenerate(v, SERVICE_KEYS),
            handed_out=("S3_PROTOCOL_ACCESS_KEY_ID", "S3_PROTOCOL_ACCESS_KEY_SECRET", "LOGFLARE_PRIVATE_ACCESS_TOKEN"),
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

def select(names: Iterable[str]) -> list[Group]:
    """The groups `names` mean: group names, or vault names a group covers. An unknown name is a
    usage error naming what can be given."""
    by_secret = {s: g for g in GROUPS.values() for s in g.secrets}
    chosen: list[Group] = []
    for name in names:
        group = GROUPS.get(name) or by_secret.get(name)
        if group is None:
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


def steps_of(group: Group) -> tuple[Step, ...]:
    return group.steps or (Step("rotate", group.make, group.secrets),)


def with_grace(group: Group, before: Mapping[str, str], after: dict[str, str], grace: timedelta, now: datetime) -> dict[str, str]:
    """`after` (the group's new values) keeping the values `before` held for the grace period: each
    replaced value moves to its `previous` name, replacing one kept by an earlier rotation, whose
    grace ends now; and when the grace period ends."""
    out = dict(after)
    for current, kept in group.previous.items():
        out[kept] = before[current]
    out[group.grace_until] = (now + grace).strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def finished(group: Group, values: Mapping[str, str]) -> dict[str, str]:
    """`values` without what the group keeps for a grace period: the old values stop working."""
    out = group.drop(values) if group.drop else dict(values)
    gone = {*group.previous.values(), group.grace_until}
    return {k: v for k, v in out.items() if k not in gone}


def names_finished(groups: Iterable[Group]) -> list[str]:
    """What `--finish` changes: the values kept for the grace period, nothing the clients use now."""
    return list(dict.fromkeys(n for g in groups
                              for n in (*(g.finish_names or tuple(g.previous.values())), g.grace_until)))


def in_grace(group: Group, values: Mapping[str, str]) -> bool:
    if not group.grace:
        return False
    if group.keeps:
        return group.keeps(values)
    return any(values.get(kept) for kept in group.previous.values())


def grace_ends(group: Group, values: Mapping[str, str]) -> datetime | None:
    """When the grace period of the values the group keeps ends; None: nothing kept. A stamp that
    does not parse (an edited vault) counts as ended long ago: never as a grace without end."""
    if not in_grace(group, values):
        return None
    try:
        at = datetime.fromisoformat(values.get(group.grace_until, ""))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return at if at.tzinfo is not None else datetime.min.replace(tzinfo=UTC)


def parse_grace(text: str) -> timedelta:
    """`--grace`: a number and a unit (m, h, d), such as 90m, 12h or 7d."""
    units = {"m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or not 0 < int(number) * units[unit] <= 366 * 86400:
        raise UsageError(f"--grace {text!r} is not a duration",
                         "write a whole number and a unit, m, h or d (such as 12h or 7d), at most a year")
    return timedelta(seconds=int(number) * units[unit])
