"""The storage volume as a PAX tar that keeps every file's user.* extended attributes.

Storage's file backend keeps object metadata (content type, cache control, etag) in
`user.supabase.*` extended attributes. `tarfile` neither reads nor restores xattrs, so they are
read with os.listxattr/os.getxattr and written as `SCHILY.xattr.<name>` PAX records (the form
GNU tar and bsdtar use), and set back with os.setxattr on extraction. Values that are not UTF-8
round-trip through tarfile's surrogateescape/hdrcharset=BINARY handling. Only the user.*
namespace is written and restored: trusted.*, security.* and system.* carry privileges.

Restore runs as root and an archive is input from a bucket, so extraction goes through tarfile's
`data` filter (PEP 706) and stricter rules of its own (`_Guard`), keeping ownership.
"""

from __future__ import annotations

import os
import stat
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..errors import SfpError

XATTR = "SCHILY.xattr."
RESTORED_XATTRS = "user."  # the only namespace backed up and restored
_ENC = ("utf-8", "surrogateescape")


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in sorted(n for n in names if n.startswith(RESTORED_XATTRS)):
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


# The hint of every refusal, whatever the rule.
_HINT = ("nothing was written outside {root}; what was extracted before the refusal stays in it. The archive "
         "holds what the storage service never writes, or was altered: restore an older set (`sfp-server backup "
         "list --org ORG`), keep this one for inspection, and check who can write to the bucket and the volume")
_SPECIAL = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a FIFO"}
_PATH_MAX = 4095  # bytes of a path without its NUL (Linux PATH_MAX is 4096)
_NAME_MAX = 255
_MAX_HOPS = 40  # symbolic links followed in one resolution, the kernel's limit


def _refuse(root: str, name: str, rule: str) -> SfpError:
    return SfpError(f"storage archive refused at member {name!r}: {rule}", _HINT.format(root=root))


def _check_names(root: str, member: tarfile.TarInfo) -> None:
    """Rules on the member alone, stricter than the data filter: our archives never break them."""
    name = member.name
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        kind = _SPECIAL.get(member.type, f"of unknown type {member.type!r}")
        raise _refuse(root, name, f"it is {kind}; only files, directories and links are restored")
    link = member.linkname if member.issym() or member.islnk() else ""
    for label, value in (("name", name), ("link target", link)):
        if "\0" in value:
            raise _refuse(root, name, f"its {label} has a NUL character")
        raw = os.fsencode(value)
        if len(raw) > _PATH_MAX or any(len(part) > _NAME_MAX for part in raw.split(b"/")):
            raise _refuse(root, name, f"its {label} is too long (over {_PATH_MAX} bytes, or a component over "
                                      f"{_NAME_MAX})")
    if not name:
        raise _refuse(root, name, "it has an empty name")
    # The data filter would strip the "/" and extract inside: a name that says otherwise is refused.
    if name.startswith("/"):
        raise _refuse(root, name, "it has an absolute name")
    if ".." in name.split("/"):
        raise _refuse(root, name, "its name has a '..' component")


def _leaves(root: str, where: str, target: str) -> bool:
    """Whether the link target `target`, read in directory `where` (relative to root), resolves outside root.

    Resolved like the kernel does, one component at a time with lstat, rather than with
    os.path.realpath, which before Python 3.11.13 stops resolving once a path overflows PATH_MAX
    (CVE-2025-4517) and so lets the data filter accept links that leave. A component that does not
    exist (yet) is taken as a plain name; one that cannot be looked up counts as leaving.
    """
    if os.path.isabs(target):
        return True
    stack = [part for part in where.split("/") if part not in ("", ".")]
    pending = target.split("/")
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return True
            stack.pop()
            continue
        stack.append(part)
        path = os.path.join(root, *stack)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return True
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            link = os.readlink(path)
            if hops > _MAX_HOPS or os.path.isabs(link):
                return True
            stack.pop()
            pending = link.split("/") + pending
    return False


class _Guard:
    """The extraction filter: tarfile's `data` filter (PEP 706) with ownership kept, plus the storage tree's rules.

    Beyond the data filter: nothing is ever written through a symbolic link, present or extracted
    (a parent that is a link refuses the member), no member replaces an entry (duplicates, or
    anything already in the destination), a hard link may only name a regular file this archive
    extracted before it, and link targets are resolved without os.path.realpath (see `_leaves`).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.files: set[str] = set()
        self.links: list[tuple[str, str]] = []
        self.approved: tarfile.TarInfo | None = None

    def __call__(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        self.approved = None
        _check_names(self.root, member)
        # Absolute names and ".." are refused above, so the name needs no other normalisation.
        rel = os.path.normpath(member.name)
        self._check_destination(member.name, rel, member.isdir())
        try:
            safe = tarfile.data_filter(member, dest)
        except tarfile.FilterError as exc:
            raise _refuse(self.root, member.name, f"{exc} (tarfile's data filter)") from None
        except OSError as exc:  # newer Pythons' realpath raises on a path that overflows PATH_MAX
            raise _refuse(self.root, member.name, f"its path cannot be resolved: {exc}") from None
        # Ownership is kept, unlike the data filter: the storage service runs as its own user and must
        # own the objects it rewrites and deletes, and restore runs as root, so without it every file
        # would be root's. Owning a file inside the org's directory gives nothing more once the filter
        # has cleared setuid/setgid and refused device nodes. Directories keep their mode with the
        # same mask the filter applies to files (no setuid/setgid/sticky, no group/other write)
        # instead of the filter's umask default, so the tree comes back with the modes it was saved with.
        mode = member.mode & 0o755 if safe.isdir() and member.mode is not None else safe.mode
        safe = safe.replace(uid=member.uid, gid=member.gid, mode=mode, deep=False)
        if safe.islnk() and os.path.normpath(safe.linkname) not in self.files:
            raise _refuse(self.root, member.name, f"it is a hard link to {safe.linkname!r}, which is not a regular "
                                                  "file extracted before it")
        if safe.issym():
            if _leaves(self.root, os.path.dirname(rel), safe.linkname):
                raise _refuse(self.root, member.name, f"it is a symbolic link to {safe.linkname!r}, which leads "
                                                      "outside the destination")
            self.links.append((rel, safe.linkname))
        if safe.isreg():
            self.files.add(rel)
        self.approved = safe
        return safe

    def _check_destination(self, name: str, rel: str, is_dir: bool) -> None:
        parts = [] if rel == "." else rel.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            try:
                st = os.lstat(os.path.join(self.root, parent))
            except FileNotFoundError:
                break
            if stat.S_ISLNK(st.st_mode):
                raise _refuse(self.root, name, f"its parent {parent!r} is a symbolic link; nothing is written "
                                               "through a link")
            if not stat.S_ISDIR(st.st_mode):
                raise _refuse(self.root, name, f"its parent {parent!r} is not a directory")
        try:
            st = os.lstat(os.path.join(self.root, rel))
        except FileNotFoundError:
            return
        if not (is_dir and stat.S_ISDIR(st.st_mode)):
            raise _refuse(self.root, name, "it already exists in the destination; a member may not replace an "
                                           "entry (a duplicate member, or a file present before the restore)")

    def check_links(self) -> None:
        """Resolve every extracted symbolic link again: a later member can change where an earlier one leads."""
        for rel, target in self.links:
            if _leaves(self.root, os.path.dirname(rel), target):
                os.unlink(os.path.join(self.root, rel))
                raise _refuse(self.root, rel, f"it is a symbolic link to {target!r}, which leads outside the "
                                              "destination once the later members are in place (the link was removed)")


def _restore_xattrs(root: str, member: tarfile.TarInfo, path: str) -> None:
    # Only user.*: storage keeps its metadata there, while trusted.*, security.* (capabilities,
    # SELinux labels) and system.* (ACLs) would give an archive a say over privileges.
    for key, value in member.pax_headers.items():
        name = key[len(XATTR):]
        if not key.startswith(XATTR) or not name.startswith(RESTORED_XATTRS):
            continue
        if "\0" in name:
            raise _refuse(root, member.name, "an extended attribute name has a NUL character")
        os.setxattr(path, name, value.encode(*_ENC), follow_symlinks=False)


def _set_attrs(tar: tarfile.TarFile, safe: tarfile.TarInfo, path: str) -> None:
    tar.chown(safe, path, numeric_owner=True)  # only as root; tarfile checks
    if not safe.issym():
        tar.chmod(safe, path)
        tar.utime(safe, path)


def extract_tar(source: IO[bytes] | Any, target: Path) -> int:
    """Extract a stream made by `write_tar` into `target`, restoring user.* xattrs. Returns the file count.

    Each member passes `_Guard` (tarfile's data filter and more) before anything of it is written;
    the first that does not stops the extraction with an SfpError naming it and the rule. What came
    before it stays in `target`, so callers extract into a fresh directory (restore does).
    Attributes are applied after the xattrs (a read-only file refuses new user.* attributes),
    and directories' last of all (writing into a directory changes its mtime).
    """
    if not hasattr(tarfile, "data_filter"):
        raise SfpError("restoring storage needs Python 3.11.4 or later (tarfile extraction filters)",
                       "install a newer Python 3 on the host")
    target.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(target)
    guard = _Guard(root)
    count = 0
    dirs: list[tuple[tarfile.TarInfo, str]] = []
    # errorlevel=2: every extraction error stops the restore, none is only logged.
    with tarfile.open(fileobj=source, mode="r|", errorlevel=2) as tar:
        for member in tar:
            tar.extract(member, root, set_attrs=False, filter=guard)
            safe = guard.approved
            assert safe is not None  # the guard raises rather than skip a member
            path = os.path.join(root, os.path.normpath(safe.name))
            if not safe.issym():
                _restore_xattrs(root, member, path)
            if safe.isdir():
                dirs.append((safe, path))
                continue
            if safe.isfile():
                count += 1
            _set_attrs(tar, safe, path)
        guard.check_links()
        for safe, path in reversed(dirs):
            _set_attrs(tar, safe, path)
    return count


def list_tar(source: IO[bytes] | Any) -> int:
    """Read a tar stream to the end (verification); returns the number of files.

    Applies the rules that need no destination, so `backup verify` reports an archive that restore
    would refuse instead of calling it good.
    """
    count = 0
    with tarfile.open(fileobj=source, mode="r|") as tar:
        for member in tar:
            _check_names("the storage directory", member)
            if member.issym() and member.linkname.startswith("/"):
                raise _refuse("the storage directory", member.name, "it is a link with an absolute target")
            if member.isfile():
                count += 1
    return count
