"""Hostile storage archives: restore runs as root, so a crafted tar must not reach outside the org's directory.

Every archive is built here with `tarfile`, one per attack, and extracted with the real
`extract_tar` into a directory next to an `outside` directory holding a sentinel file (root-owned,
0644, a user xattr). Each attack is refused with an SfpError naming the member and the rule, or, for
mode bits and xattr namespaces, neutralised; the outside directory is then compared with its
snapshot (content, mode, owner, xattrs of every entry, and no new entry). The positive test makes
a storage-like tree with other owners, user.* xattrs, internal links and hardlinks and checks it
round-trips exactly.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from installer.backup import api
from installer.backup.storage_tar import extract_tar, list_tar, write_tar
from installer.errors import SfpError

from .conftest import ORG_CONFIG, SECRETS, SIGNING_KEY, TRUST, make_settings
from .support import PgCluster, RcloneS3

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="restore runs as root; ownership needs root")

Member = tuple[tarfile.TarInfo, bytes | None]


def _info(name: str, kind: bytes, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind in (tarfile.DIRTYPE, tarfile.SYMTYPE) else 0o644
    info.mtime = 1_700_000_000
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def reg(name: str, data: bytes = b"payload", **attrs: object) -> Member:
    info = _info(name, tarfile.REGTYPE, **attrs)
    info.size = len(data)
    return info, data


def dir_(name: str, **attrs: object) -> Member:
    return _info(name, tarfile.DIRTYPE, **attrs), None


def sym(name: str, target: str) -> Member:
    return _info(name, tarfile.SYMTYPE, linkname=target), None


def hard(name: str, target: str) -> Member:
    return _info(name, tarfile.LNKTYPE, linkname=target), None


def archive(*members: Member) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under root and root itself: type, mode, owner, mtime, content or link, xattrs."""
    out: dict[str, tuple[object, ...]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            body: object = os.readlink(path)
            xattrs: dict[str, bytes] = {}
        else:
            body = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
            xattrs = {n: os.getxattr(path, n) for n in sorted(os.listxattr(path))}
        mtime = None if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode) else st.st_mtime_ns
        out[str(path.relative_to(root))] = (oct(st.st_mode), st.st_uid, st.st_gid, mtime, body, xattrs)
    return out


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A directory beside the destination with a sentinel file; it must be unchanged after every test."""
    root = tmp_path / "outside"
    root.mkdir(mode=0o755)
    sentinel = root / "sentinel"
    sentinel.write_bytes(b"precious\n")
    os.chown(sentinel, 0, 0)
    os.chmod(sentinel, 0o644)
    os.setxattr(sentinel, "user.keep", b"1")
    before = snapshot(root)
    yield root
    assert snapshot(root) == before, "something outside the destination changed"


@pytest.fixture
def dst(tmp_path: Path) -> Path:
    return tmp_path / "dst"


def refused(buffer: io.BytesIO, dst: Path, member: str, rule: str) -> SfpError:
    with pytest.raises(SfpError) as caught:
        extract_tar(buffer, dst)
    error = caught.value
    assert repr(member) in error.message, error.message
    assert rule in error.message, error.message
    assert error.hint
    return error


def escaping_links(dst: Path) -> list[str]:
    """Symlinks left in dst whose target resolves outside it."""
    real = os.path.realpath(dst)
    return [str(p) for p in dst.rglob("*") if p.is_symlink()
            and os.path.commonpath([os.path.realpath(p), real]) != real]


def test_absolute_name_refused(dst: Path, outside: Path) -> None:
    refused(archive(reg(str(outside / "sentinel"), b"owned")), dst, str(outside / "sentinel"), "absolute name")
    assert not any(dst.rglob("sentinel"))


def test_dotdot_name_refused(dst: Path, outside: Path) -> None:
    refused(archive(reg("../outside/sentinel", b"owned")), dst, "../outside/sentinel", "'..'")


def test_dotdot_inside_name_refused(dst: Path, outside: Path) -> None:
    # Lands inside after normalising, but no archive of ours has such a name: refused, not guessed at.
    refused(archive(dir_("a"), reg("a/../b", b"x")), dst, "a/../b", "'..'")


@pytest.mark.parametrize("target", ["../outside", "ABSOLUTE"])
def test_symlink_out_then_write_through_it(dst: Path, outside: Path, target: str) -> None:
    target = str(outside) if target == "ABSOLUTE" else target
    refused(archive(sym("link", target), reg("link/sentinel", b"owned"), reg("link/new", b"new")),
            dst, "link", "outside the destination" if target.startswith("..") else "absolute path")
    assert escaping_links(dst) == []


def test_symlink_inside_then_write_through_it(dst: Path, outside: Path) -> None:
    # The link itself stays inside, but nothing is ever written through a link: the storage tree
    # never needs it and it is how the escapes of CVE-2025-4138/4330 start.
    refused(archive(dir_("real"), sym("link", "real"), reg("link/file", b"x")), dst, "link/file", "symbolic link")


def test_hardlink_to_outside_refused(dst: Path, outside: Path) -> None:
    refused(archive(hard("hl", "../outside/sentinel"), reg("hl", b"owned")), dst, "hl", "outside the destination")
    assert not (dst / "hl").exists()


def test_hardlink_through_inside_symlink_refused(dst: Path, outside: Path) -> None:
    # "up" -> ".." is refused by the data filter already; this one points inside but the hard link
    # names a path through it, which must be a regular file this archive made.
    refused(archive(dir_("d"), reg("d/f", b"x"), sym("s", "d"), hard("hl", "s/f")), dst, "hl", "hard link")


@pytest.mark.parametrize("kind,label", [(tarfile.CHRTYPE, "character device"), (tarfile.BLKTYPE, "block device"),
                                        (tarfile.FIFOTYPE, "FIFO")])
def test_special_files_refused(dst: Path, outside: Path, kind: bytes, label: str) -> None:
    info = _info("node", kind, devmajor=1, devminor=3, mode=0o666)
    refused(archive((info, None)), dst, "node", label)
    assert not os.path.lexists(dst / "node")


def test_setuid_setgid_sticky_and_group_write_cleared(dst: Path, outside: Path) -> None:
    extract_tar(archive(dir_("d", mode=0o3777), reg("d/suid", b"#!/bin/sh\n", mode=0o6777, uid=0, gid=0),
                        reg("d/plain", b"x", mode=0o4466)), dst)
    assert stat.S_IMODE((dst / "d" / "suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((dst / "d" / "plain").stat().st_mode) == 0o644
    assert stat.S_IMODE((dst / "d").stat().st_mode) == 0o755


def test_only_user_xattrs_restored(dst: Path, outside: Path) -> None:
    info, data = reg("f", b"x")
    info.pax_headers = {"SCHILY.xattr.user.supabase.etag": '"1"', "SCHILY.xattr.trusted.x": "evil",
                        "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\xff\xff\xff\xff\x00\x00\x00\x00",
                        "SCHILY.xattr.security.x": "evil", "SCHILY.xattr.system.posix_acl_access": "evil"}
    extract_tar(archive((info, data)), dst)
    assert {n: os.getxattr(dst / "f", n) for n in os.listxattr(dst / "f")} == {"user.supabase.etag": b'"1"'}


@pytest.mark.parametrize("target", ["../outside", "inner"])
def test_parent_is_a_preexisting_symlink(dst: Path, outside: Path, target: str) -> None:
    dst.mkdir()
    (dst / "inner").mkdir()
    os.symlink(target, dst / "sub")
    refused(archive(reg("sub/sentinel", b"owned")), dst, "sub/sentinel", "parent 'sub' is a symbolic link")
    assert list((dst / "inner").iterdir()) == []


def test_parent_is_a_preexisting_file(dst: Path, outside: Path) -> None:
    dst.mkdir()
    (dst / "f").write_bytes(b"x")
    refused(archive(reg("f/g", b"y")), dst, "f/g", "not a directory")


@pytest.mark.parametrize("target", ["../outside", "e"])
def test_directory_replaced_by_symlink_refused(dst: Path, outside: Path, target: str) -> None:
    refused(archive(dir_("d"), dir_("e"), sym("d", target), reg("d/sentinel", b"owned")), dst, "d", "already exists")
    assert (dst / "d").is_dir() and not (dst / "d").is_symlink()


def test_file_replaced_by_symlink_refused(dst: Path, outside: Path) -> None:
    refused(archive(reg("f", b"x"), sym("f", "g"), reg("f", b"y")), dst, "f", "already exists")
    assert (dst / "f").read_bytes() == b"x"


def test_existing_file_in_destination_not_overwritten(dst: Path, outside: Path) -> None:
    dst.mkdir()
    os.link(outside / "sentinel", dst / "hl")  # a hard link the archive must not write through
    refused(archive(reg("hl", b"owned")), dst, "hl", "already exists")


def test_symlink_made_outside_by_a_later_link_refused(dst: Path, outside: Path) -> None:
    # Each member passes the data filter when it is extracted: "a" resolves to the destination while
    # "x" does not exist yet; once "x" -> "." exists, "a" leads to the destination's parent.
    refused(archive(sym("a", "x/y/../.."), dir_("y"), sym("x", ".")), dst, "a", "leads outside")
    assert escaping_links(dst) == []


def test_nul_in_name_refused(dst: Path, outside: Path) -> None:
    info, data = reg("placeholder", b"x")
    info.pax_headers = {"path": "ok\x00../../outside/sentinel"}
    refused(archive((info, data)), dst, "ok\x00../../outside/sentinel", "NUL")


def test_nul_in_link_target_refused(dst: Path, outside: Path) -> None:
    info, data = sym("l", "x")
    info.pax_headers = {"linkpath": "x\x00/etc"}
    refused(archive((info, data)), dst, "l", "NUL")


@pytest.mark.parametrize("name", ["d" * 256, "/".join(["d" * 200] * 25)])
def test_too_long_names_refused(dst: Path, outside: Path, name: str) -> None:
    refused(archive(reg(name, b"x")), dst, name, "too long")


def test_path_max_symlink_chain_cannot_escape(dst: Path, outside: Path, tmp_path: Path) -> None:
    # CVE-2025-4517: components sized so that the expanded path overflows PATH_MAX, where
    # os.path.realpath (before Python 3.11.13) stops resolving and the data filter's check is fooled.
    steps = "abcdefghijklmnop"
    max_path = os.pathconf(tmp_path, "PC_PATH_MAX")
    component = "d" * ((max_path - len(str(dst)) - 1) // (len(steps) + 1))
    members: list[Member] = []
    path = ""
    for step in steps:
        members += [dir_(os.path.join(path, component), mode=0o777), sym(os.path.join(path, step), component)]
        path = os.path.join(path, component)
    linkpath = os.path.join(*steps, "l" * 254)
    members += [sym(linkpath, os.path.join(*[".."] * len(steps))),
                sym("escape", os.path.join(linkpath, "..")),
                hard("flaglink", "escape/outside/sentinel"), reg("flaglink", b"overwritten"),
                reg("escape/outside/newfile", b"new")]
    error = refused(archive(*members), dst, linkpath, "symbolic link")
    assert "parent" in error.message
    assert escaping_links(dst) == []


def test_refused_archive_writes_nothing_after_the_bad_member(dst: Path, outside: Path) -> None:
    refused(archive(reg("first", b"1"), reg("../outside/x", b"2"), reg("third", b"3")), dst, "../outside/x", "'..'")
    assert sorted(p.name for p in dst.iterdir()) == ["first"]


def _storage_tree(root: Path) -> None:
    """A storage volume as the file backend lays it out, with owners other than root."""
    files = {"stub/stub/avatars/folder/1.png/5f1c-version": os.urandom(5000),
             "stub/stub/docs/report ü.pdf/0001-version": b"%PDF-1.7 " * 100,
             "stub/stub/docs/empty.txt/0002-version": b""}
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.setxattr(path, "user.supabase.content-type", b"application/octet-stream")
        os.setxattr(path, "user.supabase.etag", f'"{len(data):x}"'.encode())
    os.setxattr(root / "stub/stub/docs/empty.txt/0002-version", "user.supabase.raw", b"\xff\x00\xfe not utf-8")
    os.setxattr(root / "stub/stub/docs", "user.dir-note", b"on a directory")
    (root / "stub/stub/empty-bucket").mkdir()
    os.symlink("1.png", root / "stub/stub/avatars/folder/latest")
    os.symlink("../../docs/report ü.pdf/0001-version", root / "stub/stub/avatars/folder/doc")
    os.symlink("missing-yet-inside", root / "stub/stub/dangling")
    os.link(root / "stub/stub/avatars/folder/1.png/5f1c-version", root / "stub/stub/avatars/folder/hard")
    os.chmod(root / "stub/stub/docs/report ü.pdf/0001-version", 0o640)
    os.chmod(root / "stub/stub/docs", 0o750)
    for path in [*root.rglob("*")]:
        os.chown(path, 1000, 1001, follow_symlinks=False)
    os.chown(root / "stub/stub/docs/empty.txt/0002-version", 12345, 54321)
    for path in [*root.rglob("*")]:
        if not path.is_symlink():
            os.utime(path, ns=(1_700_000_000_500_000_000, 1_700_000_000_500_000_000))  # exact in a float


def test_storage_tree_roundtrips_with_owners_links_and_user_xattrs(tmp_path: Path, outside: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _storage_tree(src)
    os.setxattr(src / "stub/stub/docs/empty.txt/0002-version", "trusted.not-backed-up", b"x")
    buffer = io.BytesIO()
    assert write_tar(src, buffer) == 3
    buffer.seek(0)
    dst = tmp_path / "dst"
    assert extract_tar(buffer, dst) == 3
    want = snapshot(src)
    del want["."]  # the destination's own directory is not part of the archive
    want["stub/stub/docs/empty.txt/0002-version"][5].pop("trusted.not-backed-up")  # type: ignore[attr-defined]
    got = snapshot(dst)
    del got["."]
    assert got == want
    hard_src = (dst / "stub/stub/avatars/folder/hard").stat()
    assert hard_src.st_ino == (dst / "stub/stub/avatars/folder/1.png/5f1c-version").stat().st_ino
    assert (dst / "stub/stub/avatars/folder/doc").read_bytes() == b"%PDF-1.7 " * 100


def test_backup_keeps_only_user_xattrs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    os.setxattr(src / "f", "user.supabase.etag", b"e")
    os.setxattr(src / "f", "trusted.x", b"t")
    buffer = io.BytesIO()
    write_tar(src, buffer)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r") as tar:
        headers = tar.getmember("f").pax_headers
    assert {k: v for k, v in headers.items() if k.startswith("SCHILY.xattr.")} == {"SCHILY.xattr.user.supabase.etag": "e"}


@pytest.mark.slow
def test_restore_refuses_a_set_whose_storage_leaves(s3_server: RcloneS3, source_cluster: PgCluster,
                                                     fresh_cluster: PgCluster, recovery_key: tuple[str, str],
                                                     tmp_path: Path, outside: Path) -> None:
    # The volume is written by the storage container; a link in it that leaves the volume is backed
    # up as is, and the restore (as root) refuses it with the rule and the archive's hint.
    identity, recipient = recovery_key
    store = s3_server.store("hostile")
    volume = tmp_path / "volume"
    (volume / "bucket").mkdir(parents=True)
    (volume / "bucket" / "object").write_bytes(b"data")
    os.symlink("../../outside", volume / "bucket" / "evil")
    result = api.run_backup(make_settings(store, recipient), "acme", source_cluster.database(), storage_dir=volume,
                            org_config=ORG_CONFIG, secrets=SECRETS, signing_key=SIGNING_KEY)
    restored = tmp_path / "restored"
    with pytest.raises(SfpError) as caught:
        api.restore_set(store, "acme", result.set_id, identity, fresh_cluster.database(), trust=TRUST, storage_dir=restored,
                        workdir=tmp_path)
    error = caught.value
    assert error.message.startswith(f"cannot unpack the storage files of {result.set_id}: ")
    assert "'bucket/evil'" in error.message and "outside the destination" in error.message
    assert error.hint is not None and "restore an older set" in error.hint and "writable" not in error.hint
    assert not os.path.lexists(restored / "bucket" / "evil")


@pytest.mark.parametrize("members", [
    [reg("/etc/owned", b"x")],
    [reg("../outside/sentinel", b"x")],
    [dir_("a"), sym("a/escape", "/etc")],
    [(_info("node", tarfile.FIFOTYPE), None)],
    [reg("ok", b"x"), (_info("dev", tarfile.CHRTYPE, devmajor=1, devminor=3), None)],
], ids=["absolute", "dotdot", "absolute-symlink", "fifo", "device-after-file"])
def test_verification_reads_refuse_what_restore_refuses(members: list[Member]) -> None:
    # `backup verify` reads the archive with list_tar: a set restore would refuse is not "verified".
    with pytest.raises(SfpError, match="storage archive refused at member"):
        list_tar(archive(*members))


def test_verification_reads_count_a_normal_archive() -> None:
    assert list_tar(archive(dir_("b"), reg("b/one", b"1"), reg("b/two", b"2"), sym("b/link", "one"))) == 2
