# SPDX-License-Identifier: MIT
"""
``vmcorefs save``
-----------------

The ``vmcorefs.save`` module writes a dump (the ``/vmcore`` ELF file) to a
file, a block device or a pipe, the job zfcpdump's user space or
``makedumpfile``/``cp`` do in a dump environment:

- the source is a vmcorefs mount point or ``/proc/vmcore`` (copied as they
  are), or anything ``vmcorefs mount`` takes (``demo``, a machine
  description, an s390 dump file, an ELF core, a raw image): then
  ``/vmcore`` is built in this process, without FUSE, and read straight
  from the views;
- large chunks (8 MiB) are read while the previous one is hashed and
  written in a worker thread (``hashlib`` and ``os.pwrite`` release the
  GIL), so reading, hashing and writing overlap;
- a regular output file is sparse: all-zero 4 KiB pages are skipped
  (holes), the file is extended with ``ftruncate``; a block device gets
  every byte; a pipe or character device is written sequentially;
- the SHA-256 of the whole dump is printed at the end (and written to
  ``OUT.sha256`` in ``sha256sum`` format on request);
- an interrupted save resumes: ``OUT.vmcorefs-partial`` records, for each
  chunk that reached the disk (the output is ``fdatasync``'ed every few
  chunks before they are recorded), the SHA-256 of the dump up to that
  chunk's end.
  On resume the written prefix is read back and hashed, and every recorded
  value must match (so the final SHA-256 covers the bytes really in the
  file); the source must still give the same first and last chunk and be
  what the state recorded when the save began (:func:`source_identity`:
  device, inode, size and mtime of its files, sampled pages of a dump
  file). A mismatch stops with an error (:class:`NotResumable`: the
  command's exit status is 4, nothing was written, ``--restart`` starts
  over): a damaged or foreign partial file, or a changed source, is never
  continued;
- a file the dump is read from that changes during the save stops it
  before the chunk then read is recorded (:meth:`Source.check_unchanged`).

With the SHA-256 (the default) the bytes pass through this process: the
hash needs every one of them, and once here one ``pwrite`` is the only copy
left (zero pages need none), so SHA-256 sets the pace (about 1.5-2 GB/s a
core). ``--no-sha256`` trades the checksum for speed: where ``/vmcore``
shows a raw image file's bytes as they are (no HSA, no overlay; the kdump
swap is only an offset: what the extents and stores say backs it,
:meth:`~vmcorefs.stores.Store.pieces`), those regions are copied in the
kernel with ``os.copy_file_range`` (``sendfile`` across file systems) and
the file's holes (``SEEK_DATA``/``SEEK_HOLE``) are skipped; everything else
is written from memory as usual. The resume state then holds no
checksums: a resume compares the written part with the source instead.

The parts: ``source.py`` (what is read: :func:`open_source`), ``plan.py``
(a chunk of ``--no-sha256`` as typed items), ``output.py`` (where it goes:
:class:`Output`, the kernel copy, the zero-page check), ``state.py`` (the
resume state and the source's identity), ``pipeline.py`` (:class:`Saver`:
read, hash, write, record), ``progress.py``, ``base.py`` (errors and exit
statuses); here :class:`SaveOptions` and :func:`save`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import TextIO

import trio

from ..errors import InputError, VmcorefsError
from ..heap import keep_freed_memory
from .base import (BLOCK, DEFAULT_CHUNK, EXIT_NOT_RESUMABLE, EXIT_STOPPED, PAGE, NotResumable, SaveError, Stopped,
                   report)
from .output import Output, copy_region, nonzero_runs, verify
from .pipeline import SaveResult, Saver
from .progress import Progress, human_size
from .source import INPUTS_XATTR, FileSource, Source, ViewSource, open_source, parse_inputs, stat_inputs
from .state import State, check_identity, sample_offsets, source_identity, state_path_for

__all__ = ("DEFAULT_CHUNK", "EXIT_NOT_RESUMABLE", "EXIT_STOPPED", "INPUTS_XATTR", "FileSource", "NotResumable",
           "Output", "Progress", "SaveError", "SaveOptions", "SaveResult", "Saver", "Source", "State", "Stopped",
           "ViewSource", "check_identity", "copy_region", "human_size", "nonzero_runs", "open_source",
           "parse_inputs", "sample_offsets", "save", "source_identity", "state_path_for")

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SaveOptions:
    """How :func:`save` saves (``vmcorefs save``'s options)."""

    mode: str | None = None  # for a machine: auto, kdump or standalone
    progress: bool | None = None  # show progress on *stream*; None: only on a terminal
    sha256_file: str | None = None  # also write the SHA-256 there (sha256sum -c format)
    restart: bool = False  # discard a partial save (even a damaged one) and start over
    force: bool = False  # overwrite an existing output
    state_path: str | None = None  # the resume state (default OUT.vmcorefs-partial for a file, none for a device)
    chunk: int = DEFAULT_CHUNK  # bytes per read
    sparse: bool = True  # leave zero pages of a regular file as holes
    sync: bool = False  # fsync the output at the end
    verify: bool = False  # read the output back and compare its SHA-256
    stop_after: int | None = None  # stop after about that many bytes (tests)
    # compute the SHA-256; without it, file regions /vmcore shows as they are
    # are copied in the kernel (copy_file_range, else sendfile), their holes skipped
    checksum: bool = True
    stream: TextIO | None = None  # where progress goes (default stderr)

    def check(self) -> None:
        """Raise InputError for options that cannot work."""
        if self.chunk < BLOCK or self.chunk % PAGE:
            raise InputError(f"--chunk-size must be a multiple of 4 KiB and at least 64 KiB, not {self.chunk}")


def save(source: str, out_path: str, options: SaveOptions | None = None, **fields) -> int:
    """
    Save the dump *source* names to *out_path*; print its SHA-256 and
    return the exit status: 0 saved; :data:`EXIT_STOPPED` (3) stopped by
    *stop_after*; 128+N stopped by signal N (both resumable). Failures
    raise :class:`~vmcorefs.errors.VmcorefsError` with a one-line message;
    a partial save that cannot be resumed, :class:`NotResumable` (whose
    ``exit_status`` is :data:`EXIT_NOT_RESUMABLE`, 4).

    :param options: a :class:`SaveOptions`, or its fields as keyword arguments

    It sets the process's malloc to keep freed memory
    (:func:`~vmcorefs.heap.keep_freed_memory`), as the mount daemon does.
    """
    opts = dataclasses.replace(options or SaveOptions(), **fields)
    opts.check()
    keep_freed_memory()  # chunks of up to 8 MiB made and freed: no fresh pages for each
    return trio.run(_save, source, out_path, opts)


async def _save(source_name: str, out_path: str, o: SaveOptions) -> int:
    src = await open_source(source_name, o.mode)
    try:
        return await _save_to(src, source_name, out_path, o)
    finally:
        src.close()


async def _save_to(src: Source, source_name: str, out_path: str, o: SaveOptions) -> int:
    out = Output(out_path, src.size, sparse=o.sparse)
    state: State | None = None
    try:
        for path, dev, ino, rdev in stat_inputs([source_name]) + src.inputs():
            if out.same_file(dev, ino, rdev):
                raise InputError(f"{out_path} is {path}, which the dump is read from: save to another file")
        spath = o.state_path
        if spath is not None and not out.resumable:
            raise InputError(f"{out_path} is a pipe or character device, which cannot be resumed: drop --state")
        if spath is None and out.kind == "file":
            spath = state_path_for(out_path)
        try:
            old = State.load(spath) if spath else None
        except NotResumable:
            if not o.restart:
                raise
            old = None  # damaged: --restart discards it as it is
            partial = True
        else:
            partial = old is not None
        if partial and o.restart:
            log.info("--restart: discarding %s", spath)
            old = None
        if old is None and out.existing and not (o.force or partial):
            what = "block device" if out.kind == "block" else "file"
            raise InputError(f"{out_path} exists: add --force to overwrite the {what}, or choose another name")
        if old is not None and old.size != src.size:
            raise NotResumable(f"{spath} belongs to the save of a {old.size}-byte dump, {src.description} has "
                               f"{src.size} bytes: run again with --restart to start over, or save to another file")
        chunk = old.chunk if old is not None else o.chunk
        checksum = old.checksum if old is not None else o.checksum
        if old is not None and checksum != o.checksum:
            report(f"{out_path} was started {'with' if checksum else 'without'} a SHA-256: resuming it so "
                   "(--restart to start over)")
        if not checksum and (o.sha256_file or o.verify):
            raise InputError("--sha256-file and --verify need the SHA-256: drop --no-sha256")
        if old is not None:
            state = old
        elif spath is not None:
            state = State(spath)
        out.create()  # only now: a refused run leaves no empty OUT behind
        saver = Saver(src, out, state, chunk, checksum=checksum)
        if old is not None:
            start = await saver.resume(old)
            state.open_append()
            report(f"resuming {out_path} at {human_size(start)} of {human_size(src.size)} "
                   "(the written part is verified)")
        else:
            start = 0
            out.truncate(0)
            stale = out_path + ".sha256"
            if out.kind == "file" and o.sha256_file != stale and os.path.exists(stale):
                os.unlink(stale)  # the checksum of what OUT held before
            if state is not None:
                state.create(src.size, chunk, os.path.basename(out_path), src.description, checksum,
                             source_identity(src))
        stream = o.stream or sys.stderr
        if o.progress or (o.progress is None and stream.isatty()):
            saver.progress = Progress(src.size, start, stream)
        try:
            await saver.run(start, o.stop_after)
        except Stopped as exc:
            if saver.progress:
                saver.progress.update(saver.done, final=True)
            hint = ("run the same command again to resume" if state is not None
                    else "it cannot be resumed: run again")
            report(f"{exc}; {out_path} is incomplete: {hint}")
            return exc.status
        except SaveError as exc:
            if saver.progress:
                saver.progress.update(saver.done, final=True)
            hint = "run the same command again to resume" if state is not None else "run again"
            raise SaveError(f"{exc} ({out_path} is incomplete, {saver.done} of {src.size} bytes; "
                            f"once fixed, {hint})") from None
        if saver.progress:
            saver.progress.update(src.size, final=True)
        try:
            src.check_consistent()  # a running guest resumed meanwhile: what was copied is no snapshot
        except VmcorefsError as exc:
            raise SaveError(f"{exc}: {out_path} is not a consistent dump; save again") from None
        out.truncate(src.size)
        if o.sync:
            await trio.to_thread.run_sync(out.sync)
        res = saver.result
        res.sha256 = saver.hasher.hexdigest() if checksum else ""
        if o.verify:
            await verify(out, src.size, res.sha256)
        if o.sha256_file:
            name = os.path.basename(out_path)
            with open(o.sha256_file, "w") as f:
                f.write(f"{res.sha256}  {name}\n")
        if state is not None:
            state.remove()
        rate = res.copied / res.seconds if res.seconds > 0 else 0.0
        text = (f"saved {src.description} to {out_path}: {src.size} bytes ({human_size(src.size)}) "
                f"in {res.seconds:.1f} s, {human_size(rate)}/s")
        if res.resumed_from:
            text += f", resumed at {human_size(res.resumed_from)}"
        if out.sparse and res.holes:
            text += f", {human_size(res.holes)} of zero pages left as holes"
        if not checksum:
            text += " (no SHA-256: --no-sha256)"
        report(text)
        if checksum:
            # sha256sum's format, on stdout unless the dump itself went there
            # ("-", /dev/stdout, a file that standard output also writes to)
            print(f"{res.sha256}  {out_path}", file=sys.stderr if out.is_stdout() else sys.stdout, flush=True)
        return 0
    finally:
        if state is not None:
            state.close()
        out.close()
