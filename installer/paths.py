"""Where the Ansible content lives: the source checkout, or the copy bundled in the wheel."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def ansible_root() -> Path:
    """The directory holding `roles/` and `playbooks/`.

    A source checkout (editable install, CI) uses the top-level directories so that an edit
    to a role is what runs; a wheel carries its own copy under `installer/_ansible`.
    """
    checkout = _PACKAGE.parent
    if (checkout / "roles").is_dir() and (checkout / "playbooks").is_dir():
        return checkout
    return _PACKAGE / "_ansible"


def roles_dir() -> Path:
    return ansible_root() / "roles"


def playbooks_dir() -> Path:
    return ansible_root() / "playbooks"


def releases_dir() -> Path:
    """The release catalog: one YAML file per supported upstream self-hosting release."""
    return roles_dir() / "supabase_stack" / "files" / "releases"


def image_catalogs_dir() -> Path:
    """Image catalogs that replace the upstream images (the test catalog lives here)."""
    return roles_dir() / "supabase_stack" / "files" / "image_catalogs"


def inventory_example() -> Path:
    return ansible_root() / "inventory.example"
