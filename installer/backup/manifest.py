"""The backup set format (version 1): where objects live and what the manifest says about them.

    s3://<bucket>/<prefix>/<org>/<set_id>/
        db/globals.sql.zst.age             pg_dumpall --globals-only (roles, tablespaces)
        db/<database>.pgdump.zst.age       pg_dump -Fc -Z0 of every database, one per database
        storage/objects.tar.zst.age        the storage volume: PAX tar with SCHILY.xattr.* records
        config/secrets.yaml.zst.age        the org's settings and secrets (restorable with the recovery key alone)
        manifest.sig                       Ed25519 signature of manifest.json's exact bytes (written before it)
        manifest.json                      written last: a set without it does not exist
        verified.json                      written by verify: when the set was last fully checked

Every object is zstd-compressed then age-encrypted to the org's recovery recipient. The manifest
holds every object's sha256 and is signed with the org's signing key (on the org's host and in
its vault, never in the bucket), so a set proves who made it: encryption to a public recipient
alone proves nothing. `kind` and `format` leave room for later additions (WAL archives for
point-in-time recovery under `wal/`, dumps made for a major-version upgrade) without changing
what version 1 means.

Set ids: `20250102T030405.123456Z-0001-1a2b3c` (UTC time to the microsecond, a counter that
keeps ids made by one process strictly increasing, then random hex so two hosts never collide).
Sets are ordered by (time, counter); the random part only breaks exact ties. Ids of earlier
toolkits (`20250102T030405Z-1a2b3c`, second resolution) are still read and ordered.
"""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from ..errors import SfpError

FORMAT = 1
MANIFEST = "manifest.json"
VERIFIED = "verified.json"
GLOBALS_KEY = "db/globals.sql.zst.age"
STORAGE_KEY = "storage/objects.tar.zst.age"
SECRETS_KEY = "config/secrets.yaml.zst.age"
SIGNATURE = "manifest.sig"
_SET_ID = re.compile(r"^(?P<ts>\d{8}T\d{6})(?:\.(?P<us>\d{6}))?Z(?:-(?P<seq>\d{4,9}))?-(?P<rand>[0-9a-f]{6})$")
_TS = "%Y%m%dT%H%M%S"
# A set dated later than now by more than this is not `latest` (a wrong clock, or a set planted to
# shadow the real ones) and is reported.
CLOCK_TOLERANCE = timedelta(minutes=5)

_CLAMP = timedelta(seconds=1)
_issued_lock = threading.Lock()
_last_issued: tuple[datetime, int] | None = None


def new_set_id(now: datetime | None = None) -> str:
    """Ordered: each id this process makes sorts after the one before, even within one microsecond
    or when the clock steps back a little (less than _CLAMP); across hosts the microsecond time
    orders them. A larger step back is taken as it is (a clock corrected by hours is not followed)."""
    global _last_issued
    at = (now or datetime.now(UTC)).astimezone(UTC)
    with _issued_lock:
        seq = 0
        if _last_issued is not None and timedelta(0) <= _last_issued[0] - at < _CLAMP:
            at, seq = _last_issued[0], _last_issued[1] + 1
        _last_issued = (at, seq)
    return f"{at.strftime(_TS)}.{at.microsecond:06d}Z-{seq:04d}-{secrets.token_hex(3)}"


def is_set_id(text: str) -> bool:
    return bool(_SET_ID.match(text))


def set_time(set_id: str) -> datetime:
    match = _SET_ID.match(set_id)
    if not match:
        raise ValueError(f"not a set id: {set_id!r}")
    return datetime.strptime(match["ts"], _TS).replace(microsecond=int(match["us"] or 0), tzinfo=UTC)


def set_order(set_id: str) -> tuple[datetime, int, str]:
    """Sort key of set ids, old and new formats alike: time, then counter; the id itself only breaks exact ties."""
    match = _SET_ID.match(set_id)
    if not match:
        raise ValueError(f"not a set id: {set_id!r}")
    return set_time(set_id), int(match["seq"] or 0), set_id


def database_key(name: str) -> str:
    # A database name may hold any character; percent-encode (UTF-8) all but [A-Za-z0-9._~-] so the
    # key is plain ASCII, has no '/' and maps back to exactly one name.
    return f"db/{quote(name, safe='')}.pgdump.zst.age"


def org_prefix(prefix: str, org: str) -> str:
    return f"{prefix.strip('/')}/{org}/"


def set_prefix(prefix: str, org: str, set_id: str) -> str:
    return f"{org_prefix(prefix, org)}{set_id}/"


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ObjectEntry:
    key: str
    """Relative to the set's prefix, e.g. db/postgres.pgdump.zst.age."""
    kind: str
    """globals | database | storage | config"""
    size: int
    sha256: str
    plaintext_size: int
    plaintext_sha256: str
    seconds: float
    database: str | None = None
    compression: str = "zstd"
    encryption: str = "age"


@dataclass
class Manifest:
    org: str
    set_id: str
    created: str
    finished: str
    toolkit_version: str
    recipient: str
    objects: list[ObjectEntry]
    release: str | None = None
    images: dict[str, str] = field(default_factory=dict)
    postgres_major: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    format: int = FORMAT
    # How this manifest was read (never part of its JSON): "signed" (signed_by is the public key that
    # verified it), "unsigned" (accepted with allow_unsigned), or "unchecked" (shown without a key).
    authenticity: str = field(default="unchecked", init=False, repr=False, compare=False)
    signed_by: str | None = field(default=None, init=False, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["authenticity"], data["signed_by"]
        return data

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)

    def databases(self) -> list[ObjectEntry]:
        return [o for o in self.objects if o.kind == "database"]

    def entry(self, kind: str) -> ObjectEntry | None:
        return next((o for o in self.objects if o.kind == kind), None)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Manifest:
        if not isinstance(data, dict) or "format" not in data:
            raise SfpError(f"{where} is not a backup manifest", "the set is damaged; restore an older set")
        if data["format"] != FORMAT:
            raise SfpError(
                f"{where} has format {data['format']}, this toolkit reads format {FORMAT}",
                "use the toolkit version that wrote the set (see toolkit_version in the manifest)",
            )
        try:
            objects = [ObjectEntry(**o) for o in data["objects"]]
            fields = {k: v for k, v in data.items() if k != "objects"}
            return cls(objects=objects, **fields)
        except (TypeError, KeyError) as exc:
            raise SfpError(f"{where} is not a valid manifest: {exc}", "the set is damaged; restore an older set") from None


_KIND_KEYS = {"globals": GLOBALS_KEY, "storage": STORAGE_KEY, "config": SECRETS_KEY}
_IDENTIFIER_BYTES = 63


def is_plain_identifier(name: str) -> bool:
    """A name PostgreSQL reads as a plain identifier: letters, digits, `_` and `$`, not starting with a
    digit, at most 63 bytes. Such a name can never be read as a connection string (`host=… dbname=…`,
    `postgresql://…`) by the client tools, whatever the argument it is passed as."""
    if not name or len(name.encode()) > _IDENTIFIER_BYTES:
        return False
    if not (name[0].isalpha() or name[0] == "_"):
        return False
    return all(c.isalnum() or c in "_$" for c in name)


def manifest_problems(manifest: Manifest, org: str, set_id: str) -> list[str]:
    """What is wrong with a manifest read from <prefix>/<org>/<set_id>/ (empty: nothing).

    Checked before any object is fetched, even for a signed set (a compromised job signs too): it
    must name the place it was read from, and every object must be one the toolkit writes, under
    the key the toolkit gives it.
    """
    problems = []
    if manifest.org != org:
        problems.append(f"it names org {manifest.org!r} but was read from the prefix of {org!r}")
    if manifest.set_id != set_id:
        problems.append(f"it names set {manifest.set_id!r} but was read from {set_id!r}")
    seen: set[str] = set()
    for entry in manifest.objects:
        if entry.key in seen:
            problems.append(f"object {entry.key!r} is listed twice")
        seen.add(entry.key)
        if entry.kind == "database":
            name = entry.database or ""
            if not is_plain_identifier(name):
                problems.append(f"database {name!r} is not a plain identifier (letters, digits, _ and $, "
                                "not starting with a digit, at most 63 bytes)")
            elif entry.key != database_key(name):
                problems.append(f"database {name!r} is stored under {entry.key!r}, not {database_key(name)!r}")
        elif entry.kind in _KIND_KEYS:
            if entry.key != _KIND_KEYS[entry.kind] or entry.database is not None:
                problems.append(f"{entry.kind} object {entry.key!r} is not {_KIND_KEYS[entry.kind]!r}")
        else:
            problems.append(f"object {entry.key!r} has unknown kind {entry.kind!r}")
    for kind in ("globals", "config"):
        if sum(o.kind == kind for o in manifest.objects) != 1:
            problems.append(f"it must list exactly one {kind} object")
    if sum(o.kind == "storage" for o in manifest.objects) > 1:
        problems.append("it lists more than one storage object")
    return problems
