# SPDX-License-Identifier: MIT
"""
Where ``vmcorefs save`` writes: :class:`Output` (a sparse regular file, a
block device or a stream), the zero-page check (:func:`nonzero_runs`), the
kernel copy of file regions (:func:`copy_region`) and the read-back check
(:func:`verify`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys

import trio

from ..errors import InputError
from .base import BLOCK, DEFAULT_CHUNK, PAGE, SaveError, report
from .progress import human_size

__all__ = ("Output", "copy_region", "nonzero_runs", "verify")

ZERO_PAGE = bytes(PAGE)
ZERO_BLOCK = bytes(BLOCK)


class Output:
    """
    Where the dump goes: a regular file (sparse, resumable), a block device
    (every byte; resumable with an explicit state file) or a stream (a pipe,
    ``/dev/null``, ``-`` for standard output: sequential, not resumable).
    """

    def __init__(self, path: str, size: int, *, sparse: bool) -> None:
        self.path = path
        self.fd = -1
        self.existing = False
        self.end = 0  # regular file: its size as we made it (or larger)
        # kernel copies (see _kernel_copy): whether each may work here, and
        # the file position sendfile left (-1: unknown)
        self.copy_file_range = True
        self.sendfile = True
        self.position = -1
        if path == "-":
            self.kind = "stream"
            self.fd = os.dup(sys.stdout.fileno())
            if os.isatty(self.fd):
                self.close()
                raise InputError("will not write a dump to a terminal: redirect standard output "
                                 "(vmcorefs save SOURCE - > dump.elf) or give a file name")
        else:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            except OSError as exc:
                raise InputError(f"{path}: {exc.strerror}") from None
            if st is None or stat.S_ISREG(st.st_mode):
                self.kind = "file"
                self.existing = st is not None and st.st_size > 0
            elif stat.S_ISBLK(st.st_mode):
                self.kind = "block"
                self.existing = True
            elif stat.S_ISDIR(st.st_mode):
                raise InputError(f"{path} is a directory: give the dump's file name "
                                 f"(e.g. {os.path.join(path, 'dump.elf')})")
            else:
                self.kind = "stream"
            if st is not None:  # a new file is made by create(), once the save is sure to start
                self._open(0)
        self.sparse = sparse and self.kind == "file"
        self.resumable = self.kind in ("file", "block")
        if self.kind == "block":
            dev_size = os.lseek(self.fd, 0, os.SEEK_END)
            if dev_size < size:
                self.close()
                raise InputError(f"{path} holds {dev_size} bytes ({human_size(dev_size)}), the dump needs "
                                 f"{size} bytes: use a larger device, or a file")

    def _open(self, create: int) -> None:
        flags = os.O_CLOEXEC | create
        if self.kind in ("file", "block"):
            flags |= os.O_RDWR
        else:
            flags |= os.O_WRONLY
        try:
            self.fd = os.open(self.path, flags, 0o600)  # a dump holds every secret the system had
        except OSError as exc:
            raise InputError(f"cannot open {self.path} for writing: {exc.strerror}") from None

    def create(self) -> None:
        """Create the output file if it does not exist yet (after every check passed)."""
        if self.fd < 0:
            self._open(os.O_CREAT)

    def is_stdout(self) -> bool:
        """Whether the output is what file descriptor 1 writes to (``-``, ``/dev/stdout``, the same file)."""
        if self.path == "-":
            return True
        if self.fd < 0:
            return False
        try:
            a, b = os.fstat(self.fd), os.fstat(1)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def same_file(self, dev: int, ino: int, rdev: int = 0) -> bool:
        """Whether the file of device *dev* and inode *ino* (block device *rdev*) is the output itself."""
        if self.kind == "stream" or self.fd < 0:  # a file not created yet is nothing read from
            return False
        try:
            a = os.fstat(self.fd)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (dev, ino) or (stat.S_ISBLK(a.st_mode) and rdev != 0 and a.st_rdev == rdev)

    def truncate(self, size: int) -> None:
        if self.kind == "file":
            # not when nothing changes: ext4 flushes a file cut to 0 on close
            # ("auto_da_alloc"), which would cost a new file a disk write
            if size != 0 or os.fstat(self.fd).st_size != 0:
                os.ftruncate(self.fd, size)
            self.end = size

    def write_at(self, offset: int, data) -> None:
        """Write *data* (bytes or memoryview) at *offset* completely."""
        mv = memoryview(data)
        while len(mv):
            if self.kind == "stream":
                n = os.write(self.fd, mv)
            else:
                n = os.pwrite(self.fd, mv, offset)
            mv = mv[n:]
            offset += n
        self.written_to(offset)

    def written_to(self, end: int) -> None:
        """Note that the file now reaches at least *end* (a write there)."""
        if end > self.end:
            self.end = end

    def extend(self, size: int) -> None:
        """Make a regular file at least *size* bytes long (a hole at its end); only when it is shorter."""
        if self.kind == "file" and self.end < size:
            os.ftruncate(self.fd, size)
            self.end = size

    def sync(self) -> None:
        if self.kind in ("file", "block"):
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_zero_chunks: dict[int, bytes] = {}


def _zeros(n: int) -> bytes:
    """Return *n* zero bytes, allocated once per size (calloc'ed: costs no memory until read)."""
    z = _zero_chunks.get(n)
    if z is None:
        z = _zero_chunks[n] = bytes(n)
    return z


def nonzero_runs(data: bytes) -> list[tuple[int, int]]:
    """
    Return the ``(start, end)`` runs of *data* that are not all-zero 4 KiB
    pages (a short last page counts as a page), merged, in order. All-zero
    data costs one comparison, a zero 64 KiB block one more; only the pages
    of blocks holding data are looked at one by one.
    """
    n = len(data)
    runs: list[tuple[int, int]] = []
    if _zeros(max(n, DEFAULT_CHUNK)).startswith(data):
        return runs
    run_start = -1
    pos = 0
    while pos < n:
        if pos + BLOCK <= n and data.startswith(ZERO_BLOCK, pos):
            if run_start >= 0:
                runs.append((run_start, pos))
                run_start = -1
            pos += BLOCK
            continue
        end = min(pos + BLOCK, n)
        while pos < end:
            stop = min(pos + PAGE, n)
            if data.startswith(ZERO_PAGE if stop - pos == PAGE else ZERO_PAGE[:stop - pos], pos):
                if run_start >= 0:
                    runs.append((run_start, pos))
                    run_start = -1
            elif run_start < 0:
                run_start = pos
            pos = stop
    if run_start >= 0:
        runs.append((run_start, n))
    return runs


_NOT_HERE = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}


def _kernel_copy(fd: int, off: int, out: "Output", dst: int, n: int) -> int:
    """
    Copy up to *n* bytes of *fd* at *off* to *out* at *dst* in the kernel;
    return how many, 0 where the kernel cannot (then the caller reads and
    writes). ``copy_file_range`` first (a reflink or a server-side copy where
    the file systems allow); across file systems, where it fails with EXDEV,
    ``sendfile`` to the output's file position (one copy, no trip through
    Python). What does not work for an output is not tried again.
    """
    if out.copy_file_range:
        try:
            return os.copy_file_range(fd, out.fd, n, off, dst)
        except OSError as exc:
            if exc.errno not in _NOT_HERE:
                raise
            out.copy_file_range = False
    if out.sendfile:
        try:
            if out.position != dst:
                os.lseek(out.fd, dst, os.SEEK_SET)
            k = os.sendfile(out.fd, fd, off, n)
            out.position = dst + k
            return k
        except OSError as exc:
            if exc.errno not in _NOT_HERE:
                raise
            out.sendfile = False
            out.position = -1
    return 0


def copy_region(fd: int, src: int, out: "Output", dst: int, length: int) -> int:
    """
    Copy ``[src, src+length)`` of the file *fd* to *out* at *dst*: its data
    in the kernel (:func:`_kernel_copy`; pread/pwrite where it cannot), its
    holes skipped; return the bytes copied.
    """
    end = src + length
    pos = src
    copied = 0
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # holes up to the end of the file
                break
            data = pos  # no SEEK_DATA here: all data
        if data >= end:
            break
        try:
            hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
        except OSError:
            hole = end
        off, n = data, hole - data
        while n > 0:
            k = _kernel_copy(fd, off, out, dst + (off - src), n)
            if k == 0 and not (out.copy_file_range or out.sendfile):
                chunk = os.pread(fd, min(n, DEFAULT_CHUNK), off)
                if chunk:
                    out.write_at(dst + (off - src), chunk)
                    k = len(chunk)
            if k == 0:
                raise OSError(errno.EIO, f"the source file ends at {off:#x}, before {end:#x}")
            off += k
            n -= k
            copied += k
            out.written_to(dst + (off - src))
        pos = hole
    return copied


async def verify(out: Output, size: int, expected: str) -> None:
    """Read the first *size* bytes of the output back and compare their SHA-256."""
    if out.kind == "stream":
        raise InputError("--verify needs an output that can be read back, not a pipe")

    def hash_output() -> str:
        os.posix_fadvise(out.fd, 0, 0, os.POSIX_FADV_DONTNEED)  # from the disk where the cache lets go
        h = hashlib.sha256()
        offset = 0
        while offset < size:
            data = os.pread(out.fd, min(DEFAULT_CHUNK, size - offset), offset)
            if not data:
                break
            h.update(data)
            offset += len(data)
        return h.hexdigest()
    got = await trio.to_thread.run_sync(hash_output)
    if got != expected:
        raise SaveError(f"{out.path} reads back with SHA-256 {got}, but {expected} was written: "
                        "the disk or file system corrupts data")
    report(f"verified: {out.path} reads back with the same SHA-256")
