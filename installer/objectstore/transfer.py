"""Uploads through s3transfer: a stream of unknown size becomes one object, or nothing.

`upload_stream` hands the caller a writable sink; what is written goes through a pipe to
s3transfer's TransferManager, which reads it in `part_size` chunks (one PutObject below that size,
a multipart upload above it) and uploads up to `in_flight` parts at once. Memory is bounded by the
part size times the parts in flight plus the pipe, whatever the size of the stream, and the writer
blocks while the uploader is behind.

An object appears only when the `with` block ends normally: the uploader sees the end of the stream
only then. If the block raises (a producer failed, a check refused the data), the uploader is made
to fail instead of completing, and s3transfer aborts the multipart upload, so nothing partial
remains. A process killed midway leaves an unfinished multipart upload and never an object;
`maintenance.abort_uploads` removes such uploads later.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
from collections.abc import Iterator
from typing import Any

from s3transfer.manager import TransferConfig, TransferManager  # type: ignore[import-untyped]
from s3transfer.subscribers import BaseSubscriber  # type: ignore[import-untyped]
from s3transfer.utils import ChunksizeAdjuster  # type: ignore[import-untyped]

MiB = 1024 * 1024
PART_SIZE = 16 * MiB
IN_FLIGHT = 4
_PIPE_SIZE = MiB


class UploadAborted(Exception):
    """The writer gave up: the upload must fail, not complete with what it got so far."""


def transfer_config(part_size: int = PART_SIZE, in_flight: int = IN_FLIGHT) -> TransferConfig:
    """One object per stream: a single PUT below `part_size`, `part_size` parts above it, `in_flight` at once."""
    return TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size,
                          max_request_concurrency=in_flight, max_in_memory_upload_chunks=in_flight,
                          max_submission_concurrency=1)


def part_size_for(expected_size: int | None, part_size: int = PART_SIZE) -> int:
    """A part size that fits `expected_size` bytes (with room to spare) in S3's 10,000 parts."""
    if not expected_size:
        return part_size
    return int(ChunksizeAdjuster().adjust_chunksize(part_size, expected_size * 2))


class _PipeSource(io.RawIOBase):
    """The read end s3transfer pulls from: full reads (a short part would be refused), and at the
    end of the stream either EOF (the writer finished) or UploadAborted (it gave up)."""

    def __init__(self, fd: int) -> None:
        self._file = open(fd, "rb", buffering=_PIPE_SIZE)  # noqa: SIM115 - closed in close()
        self.aborted = False
        self.future: Any = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.future is not None and self.future.done():
            raise UploadAborted("the upload already failed")
        data = self._file.read() if size is None or size < 0 else self._file.read(size)
        if (not data or (size is not None and 0 <= len(data) < size)) and self.aborted:
            raise UploadAborted("the writer gave up before the end of the stream")
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        super().close()


class _CloseWhenDone(BaseSubscriber):  # type: ignore[misc]
    """Once the transfer is over, close the read end: a writer still blocked on a full pipe gets EPIPE."""

    def __init__(self, source: _PipeSource) -> None:
        self.source = source

    def on_done(self, future: Any, **_kw: Any) -> None:
        self.source.close()


class UploadSink(io.RawIOBase):
    """What the caller writes; counts and hashes the bytes (the object's size and sha256)."""

    def __init__(self, fd: int) -> None:
        self._file = open(fd, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        self.sha256.update(view)
        self.size += total
        while view:
            view = view[self._file.write(view) or 0:]
        return total

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        super().close()


def _pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):  # a larger pipe means fewer switches between writer and uploader
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    return read_fd, write_fd


@contextlib.contextmanager
def upload_stream(cli: Any, bucket: str, key: str, *, part_size: int = PART_SIZE, in_flight: int = IN_FLIGHT,
                  content_type: str | None = None) -> Iterator[UploadSink]:
    """Write the object `key` as a stream of unknown size. It exists once the block ends without an
    exception; if the block raises, or the upload fails, nothing is left (the multipart upload is
    aborted) and the exception propagates: the block's own, or the upload's when the upload failed
    first. The sink's size and sha256 describe the stored bytes."""
    read_fd, write_fd = _pipe()
    source = _PipeSource(read_fd)
    sink = UploadSink(write_fd)
    manager = TransferManager(cli, transfer_config(part_size, in_flight))
    extra = {"ContentType": content_type} if content_type else {}
    try:
        future = manager.upload(source, bucket, key, extra_args=extra, subscribers=[_CloseWhenDone(source)])
        source.future = future
        try:
            yield sink
            sink.close()  # the end of the stream: only now can the uploader complete the object
            future.result()
        except Exception:
            # Already over: the upload failed on its own, and the writer only saw the pipe close
            # (as a BrokenPipeError, or wrapped by whatever wrote, e.g. age's EncryptError). Then the
            # upload's failure is the news.
            failed_first = future.done()
            failure = _give_up(source, sink, future)
            if failed_first and failure is not None:
                raise failure from None
            raise
        except BaseException:
            _give_up(source, sink, future)
            raise
    finally:
        sink.close()
        manager.shutdown()
        source.close()


def _give_up(source: _PipeSource, sink: UploadSink, future: Any) -> BaseException | None:
    """Make the upload fail rather than complete (the reader raises at the end of the stream) and
    wait until s3transfer has aborted it."""
    source.aborted = True  # before the close, so the reader knows the EOF is not the end
    sink.close()
    return _failure(future)


def _failure(future: Any) -> BaseException | None:
    """Wait for the transfer to end; the exception it failed with, if any (not our own UploadAborted)."""
    try:
        future.result()
    except UploadAborted:
        return None
    except BaseException as exc:  # reported to the caller
        return exc
    return None
