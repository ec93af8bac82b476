"""Reading and writing ansible-vault encrypted YAML, so secrets at rest use the format Ansible reads."""

from __future__ import annotations

import os
import secrets as _random
from pathlib import Path
from typing import Any

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import AnsibleVaultError, VaultLib, get_file_vault_secret

from .errors import SfpError

DEFAULT_PASSWORD_FILE = ".vault-pass"


def password_file(inventory_dir: Path, explicit: str | os.PathLike[str] | None = None) -> Path:
    """The vault password file: the explicit option, then SFP_VAULT_PASSWORD_FILE, then the inventory's own."""
    chosen = explicit or os.environ.get("SFP_VAULT_PASSWORD_FILE")
    return Path(chosen) if chosen else inventory_dir / DEFAULT_PASSWORD_FILE


def create_password_file(path: Path) -> bool:
    """Create a random vault password file (0600) unless one exists. Returns True if created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(_random.token_urlsafe(48) + "\n")
    return True


class Vault:
    def __init__(self, password_path: Path) -> None:
        if not password_path.exists():
            raise SfpError(
                f"vault password file {password_path} does not exist",
                "run `sfp-server init` to create one, or pass --vault-password-file / set SFP_VAULT_PASSWORD_FILE",
            )
        # get_file_vault_secret also runs executable password files (scripts that ask a secret store).
        secret = get_file_vault_secret(filename=str(password_path), vault_id="default", loader=DataLoader())
        secret.load()
        self._lib = VaultLib([("default", secret)])
        self.password_path = password_path

    def read(self, path: Path) -> dict[str, Any]:
        raw = path.read_bytes()
        try:
            plain = self._lib.decrypt(raw)
        except AnsibleVaultError as exc:
            raise SfpError(
                f"cannot decrypt {path}: {exc}",
                "use the vault password file this inventory was created with (--vault-password-file)",
            ) from None
        data = yaml.safe_load(plain) or {}
        if not isinstance(data, dict):
            raise SfpError(f"{path}: decrypted content is not a mapping", "restore the file from a backup")
        return data

    def write(self, path: Path, data: dict[str, Any]) -> None:
        """Encrypt and write atomically with mode 0600: a crash never leaves a half-written vault."""
        plain = yaml.safe_dump(data, sort_keys=True, default_flow_style=False).encode()
        blob = self._lib.encrypt(plain)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
