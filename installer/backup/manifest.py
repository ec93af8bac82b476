"""The backup set format (version 1): where objects live and what the manifest says about them.

    s3://<bucket>/<prefix>/<org>/<set_id>/
        db/globals.sql.zst.age             pg_dumpall --globals-only (roles, tablespaces)
        db/<database>.pgdump.zst.age       pg_dump -Fc -Z0 of every database, one per database
        storage/objects.tar.zst.age        the storage volume: PAX tar with SCHILY.xattr.* records
        config/secrets.yaml.zst.age        the org's settings and secrets (restorable with the recovery key alone)
        manifest.json                      written last: a set without it does not exist
        verified.json                      written by verify: when the set was last fully checked

Every object is zstd-compressed then age-encrypted to the org's recovery recipient. `kind`
and `format` leave room for later additions (WAL archives for point-in-time recovery under
`wal/`, dumps made for a major-version upgrade) without changing what version 1 means.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ..errors import SfpError

FORMAT = 1
MANIFEST = "manifest.json"
VERIFIED = "verified.json"
GLOBALS_KEY = "db/globals.sql.zst.age"
STORAGE_KEY = "storage/objects.tar.zst.age"
SECRETS_KEY = "config/secrets.yaml.zst.age"
_SET_ID = re.compile(r"^(?P<ts>\d{8}T\d{6}Z)-(?P<rand>[0-9a-f]{6})$")
_TS = "%Y%m%dT%H%M%SZ"


def new_set_id(now: datetime | None = None) -> str:
    """Sortable: UTC timestamp, then 6 random hex digits so two runs in one second differ."""
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC).strftime(_TS)}-{secrets.token_hex(3)}"


def is_set_id(text: str) -> bool:
    return bool(_SET_ID.match(text))


def set_time(set_id: str) -> datetime:
    match = _SET_ID.match(set_id)
    if not match:
        raise ValueError(f"not a set id: {set_id!r}")
    return datetime.strptime(match["ts"], _TS).replace(tzinfo=UTC)


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

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
