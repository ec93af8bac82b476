"""The streaming pipeline: source → sha256 → zstd → age → sha256 → S3 multipart upload.

Memory is bounded by the part size times the parts in flight, whatever the size of the data:
the compressor pulls from the source in 1 MiB reads, age encrypts in 64 KiB chunks, and the
uploader blocks the writer when `in_flight` parts are already on their way.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

import pyrage  # type: ignore[import-untyped]
import zstandard

MiB = 1024 * 1024
PART_SIZE = 16 * MiB
IN_FLIGHT = 4
# S3 allows 10,000 parts; the part size doubles every 2,000 parts so an object of any size fits.
_PARTS_PER_SIZE = 2000


def content_md5(data: bytes) -> str:
    """Content-MD5 header value. With checksum mode when_required the SDK sends no checksum, but
    buckets with Object Lock refuse writes that carry none: this one every S3 store accepts."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


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
class UploadStats:
    key: str
    size: int
    sha256: str
    parts: int


class MultipartWriter(io.RawIOBase):
    """A writable stream that becomes one S3 object through a multipart upload.

    Parts are uploaded by a small thread pool; `write` blocks while `in_flight` parts are
    pending, which bounds memory. `close()` completes the upload; `abort()` (also called on
    any failure) removes every uploaded part, so an interrupted run leaves no object behind.
    """

    def __init__(self, client: Any, bucket: str, key: str, part_size: int = PART_SIZE, in_flight: int = IN_FLIGHT,
                 content_md5: bool = False) -> None:
        self.client = client
        self.content_md5 = content_md5
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._buffer = bytearray()
        self._parts: dict[int, dict[str, Any]] = {}
        self._pending: list[Future[None]] = []
        self._slots = threading.Semaphore(in_flight)
        self._pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="sfp-upload")
        self._error: BaseException | None = None
        self._done = False
        self.upload_id: str = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def writable(self) -> bool:
        return True

    def _current_part_size(self) -> int:
        return self.part_size * (2 ** (len(self._parts) // _PARTS_PER_SIZE))

    def write(self, data: Any) -> int:
        if self._error is not None:
            raise self._error
        view = memoryview(data)
        self.sha256.update(view)
        self.size += len(view)
        self._buffer += view
        while len(self._buffer) >= self._current_part_size():
            size = self._current_part_size()
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
            self._submit(chunk)
        return len(view)

    def _submit(self, chunk: bytes) -> None:
        number = len(self._parts) + 1
        self._parts[number] = {}
        self._slots.acquire()
        if self._error is not None:
            self._slots.release()
            raise self._error
        self._pending.append(self._pool.submit(self._upload, number, chunk))

    def _upload(self, number: int, chunk: bytes) -> None:
        try:
            extra = {"ContentMD5": content_md5(chunk)} if self.content_md5 else {}
            reply = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number,
                                            Body=chunk, **extra)
            part = {"PartNumber": number, "ETag": reply["ETag"]}
            for name in ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1", "ChecksumSHA256"):
                if reply.get(name):
                    part[name] = reply[name]
            self._parts[number] = part
        except BaseException as exc:
            self._error = self._error or exc
        finally:
            self._slots.release()

    def finish(self) -> UploadStats:
        """Upload the last part and complete the object; on any failure the upload is aborted."""
        try:
            if self._buffer or not self._parts:
                self._submit(bytes(self._buffer))
                self._buffer = bytearray()
            for fut in self._pending:
                fut.result()
            if self._error is not None:
                raise self._error
            parts = [self._parts[n] for n in sorted(self._parts)]
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
            )
            self._done = True
        except BaseException:
            self.abort()
            raise
        finally:
            self._pool.shutdown(wait=True)
        return UploadStats(self.key, self.size, self.sha256.hexdigest(), len(self._parts))

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._error = self._error or RuntimeError("upload aborted")
        for fut in self._pending:
            fut.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        # If this fails, cleanup() finds the upload later; it was never completed, so nothing looks valid.
        with contextlib.suppress(Exception):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


@dataclass
class PipelineStats:
    key: str
    size: int
    sha256: str
    plaintext_size: int
    plaintext_sha256: str
    seconds: float
    parts: int


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
    md5: bool = False,
) -> PipelineStats:
    """Compress, encrypt and upload everything `source` yields, hashing both ends on the fly.

    `check` runs once the source is exhausted and before the upload is completed: it raises if
    the producer failed (pg_dump's exit status), so a truncated stream never becomes an object.
    """
    started = time.monotonic()
    plain = HashingReader(source)
    compressor = zstandard.ZstdCompressor(level=zstd_level, threads=zstd_threads, write_checksum=True)
    writer = MultipartWriter(client, bucket, key, part_size=part_size, in_flight=in_flight, content_md5=md5)
    try:
        with compressor.stream_reader(plain, read_size=MiB, closefd=False) as compressed:  # type: ignore[arg-type]
            pyrage.encrypt_io(compressed, writer, [recipient])
        if check is not None:
            check()
    except BaseException:
        writer.abort()
        raise
    stats = writer.finish()
    return PipelineStats(
        key=key,
        size=stats.size,
        sha256=stats.sha256,
        plaintext_size=plain.size,
        plaintext_sha256=plain.sha256.hexdigest(),
        seconds=round(time.monotonic() - started, 3),
        parts=stats.parts,
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
