"""The storage volume as a PAX tar that keeps every file's extended attributes.

Storage's file backend keeps object metadata (content type, cache control, etag) in
`user.supabase.*` extended attributes. `tarfile` neither reads nor restores xattrs, so they are
read with os.listxattr/os.getxattr and written as `SCHILY.xattr.<name>` PAX records (the form
GNU tar and bsdtar use), and set back with os.setxattr on extraction. Values that are not UTF-8
round-trip through tarfile's surrogateescape/hdrcharset=BINARY handling.
"""

from __future__ import annotations

import os
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..errors import SfpError

XATTR = "SCHILY.xattr."
_ENC = ("utf-8", "surrogateescape")


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in sorted(names):
        try:
            out[XATTR + name] = os.getxattr(path, name, follow_symlinks=False).decode(*_ENC)
        except OSError:
            continue
    return out


def write_tar(root: Path, out: IO[bytes] | Any) -> int:
    """Stream `root` (recursively, relative names) into `out` as a PAX tar. Returns the file count."""
    count = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in [*dirnames, *sorted(filenames)]:
                full = os.path.join(dirpath, name)
                info = tar.gettarinfo(full, arcname=os.path.relpath(full, root))
                info.pax_headers = {**info.pax_headers, **_xattrs(full)}
                if info.isfile():
                    with open(full, "rb") as fh:
                        tar.addfile(info, fh)
                    count += 1
                else:
                    tar.addfile(info)
    return count


def tar_source(root: Path) -> tuple[IO[bytes], Callable[[], int]]:
    """A readable pipe that yields the tar of `root`, made by a thread; `wait()` returns the file count."""
    read_fd, write_fd = os.pipe()
    result: dict[str, Any] = {}

    def produce() -> None:
        try:
            with open(write_fd, "wb", buffering=1024 * 1024) as sink:
                result["count"] = write_tar(root, sink)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=produce, name="sfp-tar", daemon=True)
    thread.start()

    def wait() -> int:
        thread.join()
        if "error" in result:
            exc = result["error"]
            raise SfpError(f"cannot read the storage volume {root}: {exc}", "check the directory and its permissions") from exc
        return int(result["count"])

    return open(read_fd, "rb", buffering=0), wait


def extract_tar(source: IO[bytes] | Any, target: Path) -> int:
    """Extract a stream made by `write_tar` into `target`, restoring extended attributes. Returns the file count.

    tarfile's "tar" extraction filter refuses absolute names, `..` and links leaving `target`.
    Attributes are applied after the xattrs (a read-only file refuses new user.* attributes),
    and directories' last of all (writing into a directory changes its mtime).
    """
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    dirs: list[tuple[tarfile.TarInfo, str]] = []
    owner = os.geteuid() == 0
    with tarfile.open(fileobj=source, mode="r|", format=tarfile.PAX_FORMAT) as tar:
        for member in tar:
            safe = tarfile.tar_filter(member, str(target))
            tar.extract(member, target, filter="tar", set_attrs=False)
            path = os.path.join(target, safe.name)
            for key, value in member.pax_headers.items():
                if key.startswith(XATTR) and not safe.issym():
                    os.setxattr(path, key[len(XATTR):], value.encode(*_ENC), follow_symlinks=False)
            if safe.isdir():
                dirs.append((safe, path))
                continue
            if safe.isfile():
                count += 1
            if owner:
                tar.chown(safe, path, numeric_owner=True)
            if not safe.issym():
                tar.chmod(safe, path)
                tar.utime(safe, path)
        for safe, path in reversed(dirs):
            if owner:
                tar.chown(safe, path, numeric_owner=True)
            tar.chmod(safe, path)
            tar.utime(safe, path)
    return count


def list_tar(source: IO[bytes] | Any) -> int:
    """Read a tar stream to the end (verification); returns the number of files."""
    count = 0
    with tarfile.open(fileobj=source, mode="r|") as tar:
        for member in tar:
            if member.isfile():
                count += 1
    return count
