# SPDX-License-Identifier: MIT
"""
The copy of ``vmcorefs save`` (:class:`Saver`): chunks read here while the
previous one is hashed and written in worker threads, recorded in the
resume state once ``fdatasync`` put them on the disk; the check of a
written prefix before a resume (:meth:`Saver.resume`).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import signal
import time

import trio

from ..errors import VmcorefsError
from .base import EXIT_STOPPED, PAGE, NotResumable, SaveError, Stopped
from .output import Output, nonzero_runs
from .plan import Item, write_plan
from .progress import Progress
from .source import Source
from .state import State, check_identity, sample_offsets

__all__ = ("SaveResult", "Saver")

log = logging.getLogger(__name__)


class SaveResult:
    """What :func:`save` did."""

    def __init__(self) -> None:
        self.sha256 = ""
        self.resumed_from = 0
        self.copied = 0  # bytes saved by this run (holes included)
        self.holes = 0  # zero bytes this run left as holes
        self.seconds = 0.0


class Saver:
    """Copies a source to an output chunk by chunk, hashing, recording progress in a state file."""

    # written chunks are fdatasync'ed and recorded in the state file in batches:
    # every SYNC_CHUNKS chunks or SYNC_BYTES bytes, whichever comes first
    SYNC_CHUNKS = 4
    SYNC_BYTES = 64 << 20

    def __init__(self, source: Source, out: Output, state: State | None, chunk: int,
                 checksum: bool = True) -> None:
        self.source = source
        self.out = out
        self.state = state
        self.chunk = chunk
        self.progress: Progress | None = None  # set when progress is shown
        self.checksum = checksum
        # without a checksum nothing needs the bytes here: a raw image's
        # regions are copied in the kernel, its holes skipped (so only into
        # a sparse file: --no-sparse wants every byte written)
        self.fast = not checksum and out.sparse and source.plans
        self.hasher = hashlib.sha256()
        self.result = SaveResult()
        self.done = 0
        self.signal: int | None = None
        self.error: BaseException | None = None
        self.pending: list[tuple[int, str, list[str]]] = []  # (index, digest, samples) written, not yet synced
        # a dump file, or a machine on a block device (whose mtime says nothing
        # of its contents), is identified by pages spread over it too (see
        # state.source_identity)
        self.samples = sample_offsets(source.size) if source.sampled else []
        self.pending_bytes = 0
        self.sync_failed = False

    def write_data(self, offset: int, data: bytes) -> None:
        """Write one chunk (runs in a worker thread while another one hashes it)."""
        out = self.out
        if out.sparse:
            mv = memoryview(data)
            written = 0
            for start, end in nonzero_runs(data):
                out.write_at(offset + start, mv[start:end])
                written += end - start
            self.result.holes += len(data) - written
            out.extend(offset + len(data))  # only when the chunk ends in a hole
        else:
            out.write_at(offset, data)

    def write_plan(self, offset: int, length: int, plan: list[Item]) -> None:
        """Write one chunk planned by :meth:`Source.plan` (runs in a worker thread)."""
        written = write_plan(self.out, offset, plan)
        self.result.holes += length - written
        self.out.extend(offset + length)  # only when the chunk ends in a hole

    async def save_chunk(self, index: int, offset: int, length: int, item: bytes | list[Item]) -> None:
        """
        Hash and write one chunk, each in its own worker thread (hashlib and
        the writes let go of the GIL, so the two run on two cores while the
        next chunk is read here), then record it (chunks in order).
        """
        failed: list[OSError] = []

        def write() -> None:
            try:
                if isinstance(item, list):
                    self.write_plan(offset, length, item)
                else:
                    self.write_data(offset, item)
            except OSError as exc:
                failed.append(exc)

        if self.checksum:
            async with trio.open_nursery() as both:
                both.start_soon(trio.to_thread.run_sync, self.hasher.update, item)
                both.start_soon(trio.to_thread.run_sync, write)
        else:
            await trio.to_thread.run_sync(write)
        if failed:
            raise failed[0]
        # a file the dump comes from changed while this chunk was read or
        # copied in the kernel (which takes a hole beyond a new end for
        # zeros): the chunk is not the dump's, and is never recorded as done
        self.source.check_unchanged()
        self.result.copied += length
        if self.state is not None:
            # recorded once the bytes are on the disk (see commit); a process
            # killed before redoes the chunk
            samples = [f"sample {at} {hashlib.sha256(item[at - offset:at - offset + PAGE]).hexdigest()}"
                       for at in self.samples if offset <= at < offset + length and isinstance(item, bytes)]
            self.pending.append((index, self.hasher.copy().hexdigest() if self.checksum else "-", samples))
            self.pending_bytes += length

    def commit_due(self) -> bool:
        return len(self.pending) >= self.SYNC_CHUNKS or self.pending_bytes >= self.SYNC_BYTES

    async def commit(self) -> None:
        """
        ``fdatasync`` the output, then record the chunks written since the
        last commit in the state file: a recorded chunk is on the disk, so a
        power loss cannot leave a state that names data the disk never got.
        After a failed ``fdatasync`` those chunks are never recorded (their
        pages may be lost although a later sync succeeds); raise the OSError.
        """
        if not self.pending or self.sync_failed:
            return
        try:
            await trio.to_thread.run_sync(os.fdatasync, self.out.fd)
        except OSError:
            self.sync_failed = True
            self.pending.clear()
            raise
        for index, digest, samples in self.pending:
            self.state.record(index, digest, samples)
        self.pending.clear()
        self.pending_bytes = 0

    async def resume(self, state: State) -> int:
        """Verify the prefix *state* records against the output and the source; return where to continue."""
        out, chunk = self.out, state.chunk
        done = state.done
        if out.kind == "file":
            out_size = os.fstat(out.fd).st_size
            if out_size < done:
                raise NotResumable(f"{out.path} holds {out_size} bytes, but {state.path} says {done} were written: "
                                "the partial file was cut or replaced; run again with --restart to start over")
        log.info("resuming %s at %d of %d bytes: verifying what was written", out.path, done, state.size)
        kept: dict[int, bytes] = {}
        last = len(state.digests) - 1
        for index, expected in enumerate(state.digests):
            offset = index * chunk
            n = min(chunk, state.size - offset)
            data = await trio.to_thread.run_sync(os.pread, out.fd, n, offset)
            if not state.checksum:  # no checksums: the written part must equal the source
                if data != await self.source.read(offset, n):
                    raise NotResumable(
                        f"{out.path} differs from {self.source.description} in chunk {index} (offset "
                        f"{offset:#x}): the partial file was changed or damaged, or it is another dump. Nothing "
                        "was written. Run again with --restart to start over")
                continue
            if len(data) == n:
                await trio.to_thread.run_sync(self.hasher.update, data)
            if len(data) != n or self.hasher.copy().hexdigest() != expected:
                raise NotResumable(
                    f"{out.path} differs from what was written in chunk {index} (offset {offset:#x}): "
                    "the partial file was changed or damaged, or the system went down before the data "
                    "reached the disk. Nothing was written. Run again with --restart to start over")
            if index in (0, last):
                kept[index] = data
        for index, data in kept.items():
            now = await self.source.read(index * chunk, len(data))
            if now != data:
                raise NotResumable(f"{self.source.description} gives other bytes at offset {index * chunk:#x} "
                                f"than when {out.path} was started: it is another dump. Run again with "
                                "--restart to start over, or save to another file")
        # the files the dump comes from are the same (device, inode, size,
        # mtime), or pages spread over a dump file hash as they did
        await check_identity(self.source, state, out.path)
        out.truncate(done)  # what lies beyond the verified prefix goes: skipped zero pages must be holes
        return done

    async def run(self, start: int, stop_after: int | None) -> None:
        """
        Copy from *start* to the end; raise :class:`Stopped` after a signal
        or *stop_after* bytes, :class:`SaveError` when reading or writing fails.
        """
        size = self.source.size
        self.done = start
        self.result.resumed_from = start
        t0 = time.monotonic()
        send, recv = trio.open_memory_channel(1)  # one chunk waits while one is written

        async def writer(cancel: trio.CancelScope) -> None:
            try:
                async with recv:
                    async for index, offset, length, item in recv:
                        try:
                            await self.save_chunk(index, offset, length, item)
                        except OSError as exc:
                            raise SaveError(f"cannot write {self.out.path} at offset {offset:#x}: "
                                            f"{exc.strerror}: {_next_step(exc)}") from None
                        self.done = offset + length
                        if self.commit_due():
                            try:
                                await self.commit()
                            except OSError as exc:
                                raise SaveError(_sync_error(self.out.path, exc)) from None
                        if self.progress:
                            self.progress.update(self.done)
            except (SaveError, VmcorefsError) as exc:
                self.error = exc
                cancel.cancel()

        async def reader(cancel: trio.CancelScope) -> None:
            try:
                async with send:
                    offset = start
                    while offset < size:
                        n = min(self.chunk, size - offset)
                        if self.fast:
                            item = await self.source.plan(offset, n)
                        else:
                            item = await self.source.read(offset, n)
                        await send.send((offset // self.chunk, offset, n, item))
                        offset += n
                        if stop_after is not None and offset - start >= stop_after:
                            break
            except VmcorefsError as exc:
                self.error = exc
                cancel.cancel()

        async def on_signal(cancel: trio.CancelScope) -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    self.signal = signum
                    cancel.cancel()
                    return

        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(on_signal, scope)
                async with trio.open_nursery() as pipeline:
                    pipeline.start_soon(writer, scope)
                    pipeline.start_soon(reader, scope)
                nursery.cancel_scope.cancel()
        if self.done < size or self.signal is not None or self.error is not None:
            # stopped: record what was written, for the resume
            try:
                await self.commit()
            except OSError as exc:
                if self.error is None:
                    self.error = SaveError(_sync_error(self.out.path, exc))
        self.result.seconds = time.monotonic() - t0
        if self.error is not None:
            err = self.error
            if not isinstance(err, SaveError):
                err = SaveError(str(err))
            raise err
        if self.signal is not None:
            name = signal.Signals(self.signal).name
            raise Stopped(f"{name}: stopped after {self.done} of {size} bytes", 128 + self.signal)
        if self.done < size:
            raise Stopped(f"stopped after {self.done} of {size} bytes (--stop-after)", EXIT_STOPPED)


def _sync_error(path: str, exc: OSError) -> str:
    return (f"cannot write {path}: fdatasync failed: {exc.strerror}: what was written last may not be "
            f"on the disk; {_next_step(exc)}")


def _next_step(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "free some space (or use a larger disk), then run the same command again to resume"
    if exc.errno == errno.EFBIG:
        return "the file system cannot hold a file this large: save to another one"
    return "fix the problem, then run the same command again to resume"
