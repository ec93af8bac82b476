"""Verification: every object of a set re-downloaded and checked end to end.

The manifest's signature is checked first (s3.read_manifest, by the caller). For each object: size and sha256 of the encrypted bytes against the manifest, then age
decryption and zstd decompression with the sha256 of the plaintext checked too, and a content
check (`pg_restore --list` for dumps, a full tar read for storage, the rules of content.py for
the secrets object and the roles script, so a set restore would refuse does not verify). All
objects are checked and every failing one is named. A passed verification writes verified.json.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import pyrage  # type: ignore[import-untyped]
import yaml
from pyrage import x25519  # type: ignore[import-untyped]

from ..errors import SfpError
from . import db as dbtools
from . import s3
from .config import ObjectStore
from .content import check_config_document, globals_script
from .keys import check_identity
from .manifest import VERIFIED, Manifest, ObjectEntry, set_prefix, utcnow
from .storage_tar import list_tar
from .streams import HashingReader, HashingWriter, decrypt_to

_CHUNK = 1024 * 1024


@dataclass
class ObjectCheck:
    key: str
    ok: bool
    problem: str | None = None


@dataclass
class VerifyReport:
    org: str
    set_id: str
    objects: list[ObjectCheck] = field(default_factory=list)
    verified_at: str | None = None
    authenticity: str = "signed"
    """signed, or unsigned (accepted with allow_unsigned)."""
    signed_by: str | None = None

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.objects)


def _drain(reader: IO[bytes] | Any) -> None:
    while reader.read(_CHUNK):
        pass


def check_object(
    cli: Any,
    store: ObjectStore,
    prefix: str,
    entry: ObjectEntry,
    identity: x25519.Identity,
    sink: IO[bytes] | Any | None = None,
    source: IO[bytes] | Any | None = None,
) -> str | None:
    """Stream one object (from S3, or from `source`) through decryption into `sink`; None if it matches the manifest."""
    body: Any = source
    if body is None:
        with s3.s3_errors(store, f"downloading {entry.key}"):
            body = cli.get_object(Bucket=store.bucket, Key=prefix + entry.key)["Body"]
    cipher = HashingReader(body)
    plain = HashingWriter(sink)
    decrypt_error: str | None = None
    try:
        with s3.s3_errors(store, f"downloading {entry.key}"):
            try:
                decrypt_to(cipher, plain, identity)
            except (pyrage.DecryptError, OSError, ValueError) as exc:  # zstandard raises ZstdError (a ValueError)
                decrypt_error = str(exc) or type(exc).__name__
            _drain(cipher)  # hash the rest, so a damaged object is reported as damaged, not as undecryptable
    finally:
        if hasattr(body, "close"):
            body.close()
    if cipher.size != entry.size:
        return f"size {cipher.size} differs from the manifest's {entry.size} (truncated or replaced)"
    if cipher.sha256.hexdigest() != entry.sha256:
        return "sha256 of the stored bytes differs from the manifest (the object was damaged or modified)"
    if decrypt_error:
        return f"cannot be decrypted or decompressed: {decrypt_error}"
    if plain.size != entry.plaintext_size or plain.sha256.hexdigest() != entry.plaintext_sha256:
        return "sha256 of the decrypted content differs from the manifest"
    return None


class ProcessSink(io.RawIOBase):
    """Feeds a process's stdin; once the process stops reading, the rest is discarded."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.open = True

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.open:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(data)
            except (BrokenPipeError, ValueError):
                self.open = False
        return len(memoryview(data))


class ThreadSink(io.RawIOBase):
    """A pipe into `consume(reader)` running in a thread; the thread drains what it did not read."""

    def __init__(self, consume: Callable[[IO[bytes]], object]) -> None:
        read_fd, write_fd = os.pipe()
        self._writer = open(write_fd, "wb", buffering=_CHUNK)  # noqa: SIM115 (closed by finish())
        self.error: BaseException | None = None
        self.result: object = None

        def run() -> None:
            with open(read_fd, "rb") as reader:
                try:
                    self.result = consume(reader)
                except BaseException as exc:
                    self.error = exc
                finally:
                    _drain(reader)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._writer.write(data)

    def finish(self) -> None:
        self._writer.close()
        self._thread.join()


def _content_check(cli: Any, store: ObjectStore, prefix: str, entry: ObjectEntry, identity: x25519.Identity,
                   tools: dbtools.Database | None, org: str, set_id: str) -> str | None:
    if entry.kind == "database" and tools is not None:
        argv, env = tools.argv("pg_restore", ["--list"])
        with open(os.devnull, "wb") as devnull:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=devnull, stderr=subprocess.PIPE)
        sink = ProcessSink(proc)
        problem = check_object(cli, store, prefix, entry, identity, sink)
        assert proc.stdin is not None and proc.stderr is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        stderr = proc.stderr.read()
        if proc.wait() != 0 and problem is None:
            problem = f"pg_restore --list rejects the dump: {dbtools.tail(stderr)}"
        return problem
    if entry.kind == "storage":
        tar = ThreadSink(list_tar)
        problem = check_object(cli, store, prefix, entry, identity, tar)
        tar.finish()
        if problem is None and tar.error is not None:
            problem = f"is not a readable tar: {tar.error}"
        return problem
    if entry.kind in ("config", "globals"):
        buffer = io.BytesIO()
        problem = check_object(cli, store, prefix, entry, identity, buffer)
        if problem is None:
            problem = _small_content_problem(entry.kind, buffer.getvalue(), org, set_id)
        return problem
    return check_object(cli, store, prefix, entry, identity)


def _small_content_problem(kind: str, data: bytes, org: str, set_id: str) -> str | None:
    """What restore would refuse in the settings object or the roles script (content.py), as a problem."""
    try:
        if kind == "config":
            document = yaml.safe_load(data)
            if not isinstance(document, dict) or "secrets" not in document:
                return "does not hold the org's settings and secrets"
            check_config_document(document, org, set_id)
        else:
            globals_script(data.decode(), set())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return f"is not readable: {type(exc).__name__}"
    except SfpError as exc:
        return exc.message
    return None


def verify_manifest(cli: Any, store: ObjectStore, manifest: Manifest, identity: x25519.Identity,
                    tools: dbtools.Database | None = None, record: bool = True) -> VerifyReport:
    """Check every object of a manifest read with s3.read_manifest (its signature already checked)."""
    check_identity(identity, manifest.recipient, manifest.set_id)
    prefix = set_prefix(store.prefix, manifest.org, manifest.set_id)
    report = VerifyReport(org=manifest.org, set_id=manifest.set_id, authenticity=manifest.authenticity,
                          signed_by=manifest.signed_by)
    for entry in manifest.objects:
        try:
            problem = _content_check(cli, store, prefix, entry, identity, tools, manifest.org, manifest.set_id)
        except SfpError as exc:
            if "NoSuchKey" in exc.message:
                problem = "is missing from the bucket"
            else:
                raise
        report.objects.append(ObjectCheck(entry.key, problem is None, problem))
    if not report.ok:
        if record:  # a set that fails is no longer "verified", whatever an earlier run found
            with contextlib.suppress(SfpError):
                s3.delete_keys(cli, store, [prefix + VERIFIED], f"clearing the verification mark of {manifest.set_id}")
        bad = [o for o in report.objects if not o.ok]
        lines = "; ".join(f"{o.key}: {o.problem}" for o in bad)
        raise SfpError(f"set {manifest.set_id} of {manifest.org} failed verification ({len(bad)} object(s)): {lines}",
                       "do not restore this set; restore an older verified set and check the bucket's storage")
    report.verified_at = utcnow()
    if record:
        body = json.dumps({"verified_at": report.verified_at, "objects": len(report.objects)}).encode()
        s3.put_small(cli, store, prefix + VERIFIED, body, f"recording the verification of {manifest.set_id}")
    return report
