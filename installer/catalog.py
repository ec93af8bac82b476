"""The release catalog: which upstream self-hosting releases the toolkit can run, and with which images.

One YAML file per release under `roles/supabase_stack/files/releases/`, read by the role (which
renders the stack from it) and by the CLI (which validates inventories and plans upgrades from it).
Image catalogs under `image_catalogs/` replace the images of a release without touching anything
else, which is how a test machine without a registry runs the very same templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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
class Release:
    id: str
    upstream: dict[str, str]
    postgres_major: int
    features: dict[str, bool]
    images: dict[str, Image]
    path: Path

    def image_ref(self, service: str, registry_prefix: str = "") -> str:
        return registry_prefix + self.images[service].ref


def _load_yaml(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise SfpError(f"{path}: not a mapping", "the catalog file is damaged; restore it from the toolkit")
    return data


def release_ids() -> list[str]:
    return sorted(p.stem for p in paths.releases_dir().glob("*.yml"))


def load_release(release_id: str) -> Release:
    path = paths.releases_dir() / f"{release_id}.yml"
    if not path.is_file():
        known = ", ".join(release_ids()) or "none"
        raise SfpError(f"unknown release {release_id!r}", f"use one of: {known}")
    data = _load_yaml(path)
    images = {name: Image(str(s["image"]), str(s["tag"])) for name, s in data["services"].items()}
    missing = set(SERVICES) - set(images)
    if missing:
        raise SfpError(f"{path}: no image for {', '.join(sorted(missing))}", "complete the release file")
    return Release(
        id=str(data["id"]),
        upstream=dict(data["upstream"]),
        postgres_major=int(data["postgres_major"]),
        features={str(k): bool(v) for k, v in data.get("features", {}).items()},
        images=images,
        path=path,
    )


def image_catalog_ids() -> list[str]:
    return ["upstream", *sorted(p.stem for p in paths.image_catalogs_dir().glob("*.yml"))]

