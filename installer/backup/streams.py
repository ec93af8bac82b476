"""The streaming pipeline: source → sha256 → zstd → age → sha256 → object store (s3transfer).

Memory is bounded by the part size times the parts in flight, whatever the size of the data:
the compressor pulls from the source in 1 MiB reads, age encrypts in 64 KiB chunks into the
object store's upload sink, which blocks the encryption while the uploader is behind (see
installer/objectstore/transfer.py).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import pyrage  # type: ignore[import-untyped]
import zstandard

from ..objectstore import IN_FLIGHT, PART_SIZE, part_size_for, upload_stream
from ..objectstore.transfer import MiB

__all__ = ["IN_FLIGHT", "PART_SIZE", "HashingReader", "HashingWriter", "PipelineStats", "decrypt_to", "upload_encrypted"]


class HashingReader(io.RawIOBase):
    """Reads from `source`, counting bytes and hashing them."""

    def __init__(self, source: IO[bytes] | Any) -> None:
        self.source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.size += n
        return n

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.source.read(size) if size is not None and size >= 0 else self.source.read()
        self.sha256.update(data)
        self.size += len(data)
        return data


class HashingWriter(io.RawIOBase):
    """Counts and hashes what is written, then passes it on to `sink` (if any)."""

    def __init__(self, sink: IO[bytes] | Any | None = None) -> None:
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        self.size += len(view)
        if self.sink is not None:
            self.sink.write(view)
        return len(view)


@dataclass
class PipelineStats:
    key: str
    size: int
    sha256: str
    plaintext_size: int
    plaintext_sha256: str
    seconds: float


def upload_encrypted(
    source: IO[bytes] | Any,
    client: Any,
    bucket: str,
    key: str,
    recipient: pyrage.x25519.Recipient,
    zstd_threads: int = 2,
    zstd_level: int = 3,
    part_size: int = PART_SIZE,
    in_flight: int = IN_FLIGHT,
    check: Callable[[], object] | None = None,
    expected_size: int | None = None,
) -> PipelineStats:
    """Compress, encrypt and upload everything `source` yields, hashing both ends on the fly.

    `check` runs once the source is exhausted and before the upload is completed: it raises if
    the producer failed (pg_dump's exit status), so a truncated stream never becomes an object.
    `expected_size` (e.g. the database's size) raises the part size where `part_size` parts would
    not fit S3's 10,000; without it an object holds at most 10,000 times `part_size` bytes.
    """
    started = time.monotonic()
    plain = HashingReader(source)
    compressor = zstandard.ZstdCompressor(level=zstd_level, threads=zstd_threads, write_checksum=True)
    part_size = part_size_for(expected_size, part_size)
    with upload_stream(client, bucket, key, part_size=part_size, in_flight=in_flight) as sink:
        with compressor.stream_reader(plain, read_size=MiB, closefd=False) as compressed:  # type: ignore[arg-type]
            pyrage.encrypt_io(compressed, sink, [recipient])
        if check is not None:
            check()
    return PipelineStats(
        key=key,
        size=sink.size,
        sha256=sink.sha256.hexdigest(),
        plaintext_size=plain.size,
        plaintext_sha256=plain.sha256.hexdigest(),
        seconds=round(time.monotonic() - started, 3),
    )


def decrypt_to(
    source: IO[bytes] | Any,
    sink: IO[bytes] | Any,
    identity: pyrage.x25519.Identity,
) -> None:
    """age-decrypt then zstd-decompress `source` into `sink`, streaming."""
    decompressor = zstandard.ZstdDecompressor()
    with decompressor.stream_writer(sink, write_size=MiB, closefd=False) as plain:
        pyrage.decrypt_io(source, plain, [identity])
