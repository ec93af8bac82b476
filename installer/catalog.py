"""The release catalog: which upstream self-hosting releases the toolkit can run, and with which images.

One YAML file per release under `roles/supabase_stack/files/releases/`, read by the role (which
renders the stack from it) and by the CLI (which validates inventories and plans upgrades from it).
Image catalogs under `image_catalogs/` replace the images of a release without touching anything
else, which is how a test machine without a registry runs the very same templates.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

from . import paths
from .errors import SfpError

# Services of the upstream stack, in upstream start order. Optional ones can be switched off per org.
SERVICES: tuple[str, ...] = (
    "vector", "db", "analytics", "studio", "kong", "auth", "rest", "realtime",
    "storage", "imgproxy", "meta", "functions", "supavisor",
)
OPTIONAL_SERVICES: dict[str, tuple[str, ...]] = {
    "analytics": ("analytics", "vector"),
    "functions": ("functions",),
    "imgproxy": ("imgproxy",),
}


@dataclass(frozen=True)
class Image:
    name: str
    tag: str

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"


@dataclass(frozen=True)
class Note:
    """A fact an operator must know when moving to a release: what upstream changed since the previous one."""

    kind: str
    """breaking (behaviour changes), manual (a step to take), setting (added, renamed or removed)."""
    text: str


NOTE_KINDS = ("breaking", "manual", "setting")


@dataclass(frozen=True)
class Release:
    id: str
    upstream: dict[str, str]
    postgres_major: int
    features: dict[str, bool]
    images: dict[str, Image]
    path: Path
    previous: str | None = None
    """The release before this one in the catalog; `notes` say what changed since it."""
    notes: tuple[Note, ...] = ()
    migrates: tuple[str, ...] = ()
    """Services that change the database's schema when they start on a new version: an upgrade
    that recreates one of them may have changed data, so its rollback restores the data too."""
    base: str | None = None
    """For a test variant (declared by an image catalog, never upstream): the release it varies."""
    extends: str | None = None
    """For a flavour of an upstream release (its PostgreSQL 15 override): that release."""
    render: dict[str, Any] = field(default_factory=dict)
    notes_to: dict[str, tuple[Note, ...]] = field(default_factory=dict)
    """Notes that replace a later release's own on an upgrade from this one to it (an upstream
    flavour of a release, such as its PostgreSQL 15 override, crosses only what the flavour changes)."""

    @property
    def db_data_dir(self) -> str:
        """The database's data directory under the org's volumes/db: one per PostgreSQL major, so a
        major upgrade builds the new cluster beside the old one."""
        return str(self.render.get("db_data_dir") or "data")

    @property
    def db_config_volume(self) -> str:
        """The database's config volume (pgsodium's root key), after the project name: one per major."""
        return str(self.render.get("db_config_volume") or "db-config")

    def image_ref(self, service: str, registry_prefix: str = "") -> str:
        return registry_prefix + self.images[service].ref


def release_version(release_id: str) -> Version:
    """The release id's order: `v0.8.1` is 0.8.1. Test variants name where they sort: `v0.8.1-authfail`
    just before its base (a pre-release: newer than every release before the base, so an upgrade
    target), `v0.8.1+restfail` just after it (a local version: an upgrade target from the base)."""
    text = release_id.removeprefix("v")
    main, dash, _variant = text.partition("-")
    try:
        return Version(f"{main}.dev0" if dash else text)
    except InvalidVersion as exc:
        raise SfpError(f"release id {release_id!r} is not vMAJOR.MINOR.PATCH", "name releases as upstream tags them") from exc


def is_variant(release_id: str) -> bool:
    """A test-only release of an image catalog, not upstream's (which all have a release file)."""
    return not (paths.releases_dir() / f"{release_id}.yml").is_file()


def _load_yaml(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise SfpError(f"{path}: not a mapping", "the catalog file is damaged; restore it from the toolkit")
    return data


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into `base` key by key, as Ansible's combine(recursive=true) does for the role."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _release_data(path: Path) -> dict[str, Any]:
    """A release file, merged over the one it `extends` (one level: a flavour of an upstream release)."""
    data = _load_yaml(path)
    if "extends" in data:
        base = path.parent / f"{data['extends']}.yml"
        if not base.is_file():
            raise SfpError(f"{path}: extends {data['extends']!r}, which is not in the catalog", "restore the catalog from the toolkit")
        data = _merged(_load_yaml(base), data)
    return data


def release_ids(image_catalog: str | None = None) -> list[str]:
    """Upstream releases in version order; with a test image catalog, its variants among them."""
    ids = [p.stem for p in paths.releases_dir().glob("*.yml")]
    if image_catalog and image_catalog != "upstream":
        ids += list(load_image_catalog(image_catalog).variants)
    return sorted(ids, key=release_version)


def load_release(release_id: str, image_catalog: str | None = None) -> Release:
    variant = None
    if image_catalog and image_catalog != "upstream":
        variant = load_image_catalog(image_catalog).variants.get(release_id)
    file_id = str(variant["base"]) if variant else release_id
    path = paths.releases_dir() / f"{file_id}.yml"
    if not path.is_file():
        known = ", ".join(release_ids(image_catalog)) or "none"
        raise SfpError(f"unknown release {release_id!r}", f"use one of: {known}")
    data = _release_data(path)
    images = {name: Image(str(s["image"]), str(s["tag"])) for name, s in data["services"].items()}
    missing = set(SERVICES) - set(images)
    if missing:
        raise SfpError(f"{path}: no image for {', '.join(sorted(missing))}", "complete the release file")
    # A variant after its base (`+`) crosses nothing upstream changed; one before it stands for it.
    notes = () if "+" in release_id else tuple(Note(str(n["kind"]), str(n["text"])) for n in data.get("notes", []))
    bad = sorted({n.kind for n in notes} - set(NOTE_KINDS))
    if bad:
        raise SfpError(f"{path}: unknown note kind {', '.join(bad)}", f"use one of: {', '.join(NOTE_KINDS)}")
    return Release(
        id=release_id,
        upstream=dict(data["upstream"]),
        postgres_major=int(data["postgres_major"]),
        features={str(k): bool(v) for k, v in data.get("features", {}).items()},
        images=images,
        path=path,
        previous=data.get("previous"),
        notes=notes,
        migrates=tuple(str(s) for s in data.get("migrates", [])),
        base=file_id if variant else None,
        extends=data.get("extends"),
        render=dict(data.get("render") or {}),
        notes_to={str(k): tuple(Note(str(n["kind"]), str(n["text"])) for n in v)
                  for k, v in (data.get("notes_to") or {}).items()},
    )


def releases_between(current: str, target: str, image_catalog: str | None = None) -> list[Release]:
    """The releases after `current` up to and including `target`, oldest first: their notes are
    what an upgrade from `current` to `target` crosses."""
    lo, hi = release_version(current), release_version(target)
    crossed = [rel for rel in (load_release(r, image_catalog) for r in release_ids(image_catalog)
                               if lo < release_version(r) <= hi and (r == target or not is_variant(r)))
               if rel.id == target or rel.extends is None]
    flavour = load_release(current, image_catalog).notes_to if current in release_ids(image_catalog) else {}
    return [replace(r, notes=flavour[r.id]) if r.id in flavour else r for r in crossed]


@dataclass(frozen=True)
class ImageCatalog:
    """Images that replace a release's upstream ones (the test catalog), per release where they differ."""

    id: str
    images: dict[str, dict[str, Any]]
    releases: dict[str, dict[str, dict[str, Any]]]
    """Per release id, per service: what replaces `images[service]` for that release."""
    variants: dict[str, dict[str, Any]]
    """Test-only release ids: `base` (the release file they vary) and `images` (per service, merged)."""


@cache
def load_image_catalog(catalog_id: str) -> ImageCatalog:
    path = paths.image_catalogs_dir() / f"{catalog_id}.yml"
    if not path.is_file():
        raise SfpError(f"unknown image catalog {catalog_id!r}", f"use one of: {', '.join(image_catalog_ids())}")
    data = _load_yaml(path)
    return ImageCatalog(id=catalog_id, images=dict(data.get("images") or {}),
                        releases={str(k): dict(v) for k, v in (data.get("releases") or {}).items()},
                        variants={str(k): dict(v) for k, v in (data.get("variants") or {}).items()})


def image_catalog_ids() -> list[str]:
    return ["upstream", *sorted(p.stem for p in paths.image_catalogs_dir().glob("*.yml"))]
