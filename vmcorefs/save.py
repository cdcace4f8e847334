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
  file). A mismatch stops with an error: a damaged or foreign partial file,
  or a changed source, is never continued;
- a file the dump is read from that changes during the save stops it
  before the chunk then read is recorded (:meth:`Source.check_unchanged`).

With the SHA-256 (the default) the bytes pass through this process: the
hash needs every one of them, and once here one ``pwrite`` is the only copy
left (zero pages need none), so SHA-256 sets the pace (about 1.5-2 GB/s a
core). ``--no-sha256`` trades the checksum for speed: where ``/vmcore``
shows a raw image file's bytes as they are (no HSA, no overlay; the kdump
swap is only an offset), those regions are copied in the kernel with
``os.copy_file_range`` (``sendfile`` across file systems) and the file's
holes (``SEEK_DATA``/``SEEK_HOLE``) are skipped; everything else is written from memory as usual. The resume
state then holds no checksums: a resume compares the written part with the
source instead.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import logging
import os
import signal
import stat
import sys
import time

import trio

from .errors import InputError, MemoryReadError, VmcorefsError
from .files import identity, open_input, os_error_text, read_small
from .layouts import ELFMAG
from .stores import files_read

__all__ = ("DEFAULT_CHUNK", "SaveResult", "save")

log = logging.getLogger(__name__)

PAGE = 4096
BLOCK = 64 << 10  # zero check: whole blocks first, pages only inside non-zero blocks
DEFAULT_CHUNK = 8 << 20
# written chunks are fdatasync'ed and recorded in the state file in batches:
# every SYNC_CHUNKS chunks or SYNC_BYTES bytes, whichever comes first
SYNC_CHUNKS = 4
SYNC_BYTES = 64 << 20
STATE_MAGIC = "vmcorefs-partial 2"  # 2: with the source's identity (input and sample lines)
ZERO_PAGE = bytes(PAGE)
ZERO_BLOCK = bytes(BLOCK)


class SaveError(VmcorefsError):
    """The save stopped; the message says what to do next."""


class Stopped(Exception):
    """The save stopped on purpose (signal, --stop-after); the partial file can be resumed."""

    def __init__(self, why: str, status: int) -> None:
        super().__init__(why)
        self.status = status


# --------------------------------------------------------------------------
# sources


class Source:
    """The bytes to save: *size* bytes read with :meth:`read`."""

    description: str
    size: int

    async def read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def check_unchanged(self) -> None:
        """Raise SaveError if what the bytes come from changed since the source was opened."""

    def close(self) -> None:
        pass


INPUTS_XATTR = "user.vmcorefs.inputs"  # a mount's files it reads: "DEV INO RDEV SIZE MTIME_NS PATH" lines


def parse_inputs(text: str) -> list[tuple[int, int, int, int, int, str]]:
    """Return the ``(dev, ino, rdev, size, mtime_ns, path)`` records of a mount's :data:`INPUTS_XATTR`."""
    out = []
    for line in text.splitlines():
        fields = line.split(" ", 5)
        if len(fields) == 6 and all(f.isdigit() for f in fields[:5]):
            out.append((*map(int, fields[:5]), fields[5]))
    return out


class FileSource(Source):
    """An ELF core file: a vmcorefs mount's ``vmcore``, ``/proc/vmcore``, a saved dump."""

    def __init__(self, path: str) -> None:
        try:
            self.fd = open_input(path, "dump")
        except InputError:
            try:
                os.stat(path)
            except OSError as exc:
                raise _source_error(path, exc) from None
            raise
        self.description = path
        self.size = os.fstat(self.fd).st_size
        # a vmcorefs mount says which files it reads (see mount.inputs_text)
        try:
            self.inputs = parse_inputs(os.getxattr(path, INPUTS_XATTR).decode(errors="replace"))
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                self.close()
                raise _source_error(path, exc) from None
            self.inputs = []  # /proc/vmcore, or not a vmcorefs mount

    async def read(self, offset: int, length: int) -> bytes:
        try:
            data = await trio.to_thread.run_sync(os.pread, self.fd, length, offset)
        except OSError as exc:
            if exc.errno in (errno.ENOTCONN, errno.ECONNABORTED):
                raise SaveError(f"cannot read {self.description} at offset {offset:#x}: the vmcorefs daemon "
                                "serving it is gone (a stale mount): run 'vmcorefs umount' on it, mount it "
                                "again") from None
            raise SaveError(f"cannot read {self.description} at offset {offset:#x}: {exc.strerror}") from None
        if len(data) != length:
            try:
                os.stat(self.description)
            except OSError as exc:
                if exc.errno in (errno.ENOTCONN, errno.ECONNABORTED):  # the daemon died during the read
                    raise SaveError(f"cannot read {self.description} at offset {offset + len(data):#x}: the "
                                    "vmcorefs daemon serving it is gone (a stale mount): run 'vmcorefs umount' "
                                    "on it, mount it again") from None
            raise SaveError(f"{self.description} ended at {offset + len(data):#x}, "
                            f"before its size {self.size:#x}")
        return data

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
            except OSError:
                pass  # ENOTCONN: the daemon of the mount died (the read said so)


class ViewSource(Source):
    """``/vmcore`` built in this process from a machine (no FUSE)."""

    def __init__(self, source: str, vmcore, dump) -> None:
        self.description = source
        self.machine = dump.machine
        self.vmcore = vmcore
        self.dump = dump
        self.size = vmcore.size
        self._files: list | None = None

    async def read(self, offset: int, length: int) -> bytes:
        try:
            return await self.vmcore.read(offset, length)
        except MemoryReadError as exc:
            raise SaveError(f"{exc} ({self.where(exc.address, offset, length)})") from None
        except VmcorefsError as exc:
            raise SaveError(f"{exc} (reading /vmcore at {offset:#x}+{length:#x})") from None

    def where(self, address: int, offset: int, length: int) -> str:
        """Return where in /vmcore old memory *address* is, if in ``[offset, offset+length)``."""
        from .views.extents import MemoryExtent
        f = self.vmcore
        i, _rel = f.locate(offset)
        while i < len(f.extents) and f.starts[i] < offset + length:
            ext = f.extents[i]
            if isinstance(ext, MemoryExtent) and ext.address <= address < ext.address + ext.length:
                return f"/vmcore offset {f.starts[i] + address - ext.address:#x}"
            i += 1
        return f"reading /vmcore at {offset:#x}+{length:#x}"

    def files(self) -> list:
        """Return the files (:class:`~vmcorefs.stores.RawFileStore`) the machine reads."""
        if self._files is None:
            sclp = self.machine.sclp
            self._files = files_read(self.machine.real, sclp.hsa if sclp is not None else None)
        return self._files

    def check_unchanged(self) -> None:
        """Raise SaveError if a file the machine reads changed since it was opened."""
        for store in self.files():
            try:
                store.check_unchanged()
            except MemoryReadError as exc:
                raise SaveError(exc.reason) from None

    async def plan(self, offset: int, length: int) -> list[tuple]:
        """
        Return how to write ``[offset, offset+length)`` of /vmcore without
        reading what a raw image file holds: ``(pos, "data", bytes)`` to
        write, ``(pos, "copy", fd, file_offset, n)`` to copy in the kernel;
        positions relative to *offset*; zeros (padding, holes) are left out.
        """
        from .views.extents import MemoryExtent, ZeroExtent
        f = self.vmcore
        out: list[tuple] = []
        i, rel = f.locate(offset)
        pos = 0
        try:
            while pos < length:
                ext = f.extents[i]
                n = min(length - pos, ext.length - rel)
                if isinstance(ext, ZeroExtent):
                    pass
                elif isinstance(ext, MemoryExtent) and getattr(ext.read_fn, "__self__", None) is self.dump:
                    p = pos
                    for kind, a, b, m in _old_memory_pieces(self.dump, ext.address + rel, n):
                        if kind == "copy":
                            out.append((p, "copy", a, b, m))
                        elif kind == "read":
                            out.append((p, "data", await self.dump.read(a, m)))
                        p += m
                else:  # headers, notes, memory of other views
                    out.append((pos, "data", await ext.read(rel, n)))
                pos += n
                i += 1
                rel = 0
        except MemoryReadError as exc:
            raise SaveError(f"{exc} ({self.where(exc.address, offset, length)})") from None
        except VmcorefsError as exc:
            raise SaveError(f"{exc} (/vmcore offset {offset + pos:#x})") from None
        return out

    def close(self) -> None:
        self.machine.close()


def _source_error(path: str, exc: OSError) -> InputError:
    if exc.errno in (errno.ENOTCONN, errno.ENOENT, errno.ELOOP):
        return InputError(os_error_text(path, exc))
    return InputError(f"cannot open {path}: {exc.strerror}")


def _store_pieces(store, address: int, length: int) -> list[tuple]:
    """
    Return where ``[address, address+length)`` of *store* lies: consecutive
    ``("copy", fd, file_offset, n)`` (bytes of a file, as they are),
    ``("zero", 0, 0, n)`` or ``("read", 0, 0, n)`` (anything else: generated
    memory, patches, what a file does not hold, where reading raises).
    """
    from .sources.elfcore import ElfMemoryStore
    from .sources.s390dump import DumpFileStore
    from .stores import OverlayStore, RawFileStore, SliceStore
    if isinstance(store, RawFileStore):
        if store.fd >= 0 and address + length <= store.file_size:
            return [("copy", store.fd, address, length)]
    elif isinstance(store, SliceStore):
        return _store_pieces(store.base, store.start + address, length)
    elif isinstance(store, OverlayStore):
        out: list[tuple] = []
        pos, end = address, address + length
        for a, sub in store.items:
            if a + sub.size <= pos or a >= end:
                continue
            if a > pos:
                out += _store_pieces(store.base, pos, a - pos)
                pos = a
            n = min(end, a + sub.size) - pos
            out += _store_pieces(sub, pos - a, n)
            pos += n
        if pos < end:
            out += _store_pieces(store.base, pos, end - pos)
        return out
    elif isinstance(store, DumpFileStore) and isinstance(store.file, RawFileStore):
        from .layouts import DF_S390_HDR_SIZE
        return _store_pieces(store.file, DF_S390_HDR_SIZE + address, length)
    elif isinstance(store, ElfMemoryStore) and isinstance(store.file, RawFileStore):
        out = []
        pos, end = address, address + length
        # the loads are sorted by address: from the one that holds *address* (bisection) to the first beyond
        for k in range(max(bisect.bisect_right(store.starts, pos) - 1, 0), len(store.loads)):
            ph = store.loads[k]
            lo, hi = ph["p_paddr"], ph["p_paddr"] + ph["p_memsz"]
            if lo >= end:
                break
            if hi <= pos:
                continue
            if lo > pos:
                return [("read", 0, 0, length)]  # no memory there: let the read say so
            n = min(end, hi) - pos
            rel = pos - lo
            in_file = max(0, min(n, ph["p_filesz"] - rel))
            if in_file:
                out += _store_pieces(store.file, ph["p_offset"] + rel, in_file)
            if n > in_file:
                out.append(("zero", 0, 0, n - in_file))
            pos += n
        if pos < end:
            return [("read", 0, 0, length)]
        return out
    return [("read", 0, 0, length)]


def _old_memory_pieces(dump, address: int, length: int) -> list[tuple]:
    """
    Return old memory ``[address, address+length)`` of *dump* as
    ``("copy", fd, file_offset, n)`` pieces where it is a file region as it
    is (no HSA, no overlay), ``("read", old_address, 0, n)`` elsewhere, and
    ``("zero", 0, 0, n)``.
    """
    oldmem = dump.oldmem
    out: list[tuple] = []
    for old, real, n in oldmem.translate(address, length):
        if real < oldmem.hsa_size:  # the HSA: only over SCLP
            h = min(n, oldmem.hsa_size - real)
            out.append(("read", old, 0, h))
            old, real, n = old + h, real + h, n - h
        if n:
            for kind, a, b, m in _store_pieces(dump.machine.real, real, n):
                out.append(("read", old, 0, m) if kind == "read" else (kind, a, b, m))
                old += m
    return out


def _is_dump_file(path: str) -> bool:
    """
    Whether *path* is a finished /vmcore to copy as it is: ``/proc/vmcore``,
    or the ``vmcore`` of a mount (a vmcorefs mount point's). Other files
    (ELF cores, s390 dumps, images, descriptions) are sources: their
    ``/vmcore`` is built here, as ``vmcorefs mount`` would show it.
    """
    real = os.path.realpath(path)
    if real == "/proc/vmcore":
        return True
    if os.path.basename(real) == "vmcore" and os.path.ismount(os.path.dirname(real)):
        return _has_elf_magic(real)
    return False


def _has_elf_magic(path: str) -> bool:
    """Whether the file *path* starts with the ELF magic."""
    fd = open_input(path, "dump")  # a FIFO named vmcore would block open()
    try:
        return os.pread(fd, len(ELFMAG), 0) == ELFMAG
    except OSError as exc:
        raise _source_error(path, exc) from None
    finally:
        os.close(fd)


async def open_source(source: str, mode: str | None) -> Source:
    """
    Return what *source* names: a vmcorefs mount point or /proc/vmcore
    (copied), or a machine (anything ``vmcorefs mount`` takes) whose
    ``/vmcore`` is built here.
    """
    try:
        st = os.stat(source)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _source_error(source, exc) from None
    path = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        path = os.path.join(source, "vmcore")
        try:
            os.stat(path)
        except FileNotFoundError:
            path = None
        except OSError as exc:  # a stale mount: the root's attributes may still be cached, not its files
            raise _source_error(source, exc) from None
        if path is None:
            raise InputError(f"{source} is a directory without a vmcore file: give a vmcorefs mount point, "
                             "a machine description, a dump file or 'demo'")
        if not os.path.ismount(source) and not _has_elf_magic(path):
            raise InputError(f"{source} is not a vmcorefs mount point and its vmcore is no ELF dump: give a "
                             "vmcorefs mount point, a machine description, a dump file or 'demo'")
    elif st is not None and _is_dump_file(source):
        path = source
    if path is not None:
        if mode not in (None, "auto"):
            raise InputError(f"--mode {mode} applies to a machine, not to {path}: that dump is already made "
                             "(mount the machine with --mode instead)")
        return FileSource(path)

    from .dump import Dump
    from .sources import open_source as open_machine
    from .views.vmcore import build_vmcore
    machine = open_machine(source)
    try:
        dump = await Dump.open(machine, mode or "auto")
        vmcore, _layout = build_vmcore(dump)
    except BaseException:
        machine.close()
        raise
    log.info("%s: %s mode (%s), /vmcore has %d bytes", source, dump.mode, dump.why, vmcore.size)
    return ViewSource(source, vmcore, dump)


# --------------------------------------------------------------------------
# progress


def human_size(n: float) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{int(n)} B"


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """
    A progress bar on *stream*: bytes, percentage, throughput, ETA. On a
    terminal one line redrawn at most 10 times a second; elsewhere (a log,
    the journal) a line every 10 % or 10 seconds.
    """

    def __init__(self, total: int, start: int, stream=None, tty: bool | None = None) -> None:
        self.total = total
        self.start = start
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.t0 = time.monotonic()
        self.last = 0.0
        self.last_decile = start * 10 // max(total, 1)
        self.shown = -1
        self.width = 0

    def line(self, done: int, now: float) -> str:
        elapsed = max(now - self.t0, 1e-6)
        rate = (done - self.start) / elapsed
        pct = done * 100 / max(self.total, 1)
        eta = (self.total - done) / rate if rate > 0 else None
        bar_len = 24
        fill = int(bar_len * done / max(self.total, 1))
        bar = "#" * fill + "." * (bar_len - fill)
        return (f"{human_size(done):>10} / {human_size(self.total)}  {pct:5.1f}%  [{bar}]  "
                f"{human_size(rate)}/s  ETA {_duration(eta) if eta is not None else '?'}")

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if not final and now - self.last < 0.1:
                return
            text = self.line(done, now)
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
            if final:
                self.stream.write("\n")
        else:
            decile = done * 10 // max(self.total, 1)
            if not final and decile == self.last_decile and now - self.last < 10:
                return
            if final and done in (self.start, self.shown):
                return
            self.shown = done
            self.last_decile = decile
            self.stream.write("vmcorefs: " + self.line(done, now).strip() + "\n")
        self.last = now
        self.stream.flush()


# --------------------------------------------------------------------------
# the output


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


def _copy_region(fd: int, src: int, out: "Output", dst: int, length: int) -> int:
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


# --------------------------------------------------------------------------
# the state file


class State:
    """
    ``OUT.vmcorefs-partial``: a header, then one line per chunk that reached
    the output, ``done INDEX SHA256`` with the SHA-256 of the dump from 0 to
    the end of that chunk. Appended to only; a torn last line is ignored.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.size = 0
        self.chunk = 0
        self.checksum = True  # False: --no-sha256, the lines hold "-"
        self.digests: list[str] = []
        self.identity: list[str] = []  # "input ..." and "sample ..." lines: see source_identity

    @classmethod
    def load(cls, path: str) -> "State | None":
        if not os.path.lexists(path):
            return None
        try:
            text = read_small(path, "resume state file", limit=1 << 30).decode("ascii")
        except InputError as exc:
            raise InputError(f"{exc}: remove it, or give another --state") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"cannot read {path}: {exc}: remove it, or run again with --restart") from None
        self = cls(path)
        lines = text.split("\n")
        if not text.endswith("\n"):
            lines = lines[:-1]  # torn last line: the chunk it names is redone
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        try:
            if lines and lines[0].startswith("vmcorefs-partial ") and lines[0] != STATE_MAGIC:
                raise ValueError(f"written by another version of vmcorefs ({lines[0]!r}, this one writes "
                                 f"{STATE_MAGIC!r})")
            if not lines or lines[0] != STATE_MAGIC:
                raise ValueError("not a vmcorefs partial-save state file")
            self.identity = [ln for ln in lines[1:] if ln.startswith(("input ", "sample "))]
            fields = dict(ln.split(" ", 1) for ln in lines[1:] if not ln.startswith(("done ", "input ", "sample ")))
            self.size = int(fields["size"])
            self.chunk = int(fields["chunk"])
            self.checksum = fields.get("checksum", "sha256") == "sha256"
            for ln in lines[1:]:
                if ln.startswith("done "):
                    _, index, digest = ln.split(" ")
                    if int(index) != len(self.digests):
                        raise ValueError(f"bad line {ln!r}")
                    if self.checksum:
                        if len(digest) != 64:
                            raise ValueError(f"bad line {ln!r}")
                        int(digest, 16)
                    elif digest != "-":
                        raise ValueError(f"bad line {ln!r}")
                    self.digests.append(digest)
            if self.chunk <= 0 or self.chunk % PAGE or self.size <= 0:
                raise ValueError("bad size or chunk")
        except (ValueError, KeyError) as exc:
            raise InputError(f"{path} is damaged ({exc}): run again with --restart to start over") from None
        return self

    @property
    def done(self) -> int:
        return min(len(self.digests) * self.chunk, self.size)

    def create(self, size: int, chunk: int, out: str, source: str, checksum: bool = True,
               identity: list[str] | None = None) -> None:
        self.size, self.chunk, self.digests, self.checksum = size, chunk, [], checksum
        self.identity = list(identity or [])
        text = (f"# vmcorefs save: {out} is incomplete; run the same 'vmcorefs save' again to resume\n"
                f"{STATE_MAGIC}\nsize {size}\nchunk {chunk}\nchecksum {'sha256' if checksum else 'none'}\n"
                f"source {source}\nout {out}\n" + "".join(f"{ln}\n" for ln in self.identity))
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self.open_append()

    def open_append(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def record(self, index: int, digest: str, samples: list[str] = ()) -> None:
        """Record that chunk *index* is on the disk, with the ``sample`` lines of pages in it."""
        os.write(self.fd, "".join(f"{ln}\n" for ln in [*samples, f"done {index} {digest}"]).encode())
        self.identity += samples
        self.digests.append(digest)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def remove(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------
# saving


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

    def __init__(self, source: Source, out: Output, state: State | None, chunk: int,
                 checksum: bool = True) -> None:
        self.source = source
        self.out = out
        self.state = state
        self.chunk = chunk
        self.progress: Progress | None = None  # set by _save_to when progress is shown
        self.checksum = checksum
        # without a checksum nothing needs the bytes here: a raw image's
        # regions are copied in the kernel, its holes skipped (so only into
        # a sparse file: --no-sparse wants every byte written)
        self.fast = not checksum and out.sparse and isinstance(source, ViewSource)
        self.hasher = hashlib.sha256()
        self.result = SaveResult()
        self.done = 0
        self.signal: int | None = None
        self.error: BaseException | None = None
        self.pending: list[tuple[int, str, list[str]]] = []  # (index, digest, samples) written, not yet synced
        # a dump file, or a machine on a block device (whose mtime says nothing
        # of its contents), is identified by pages spread over it too (see
        # source_identity)
        sampled = isinstance(source, FileSource) or (isinstance(source, ViewSource)
                                                     and any(store.block for store in source.files()))
        self.samples = sample_offsets(source.size) if sampled else []
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

    def write_plan(self, offset: int, length: int, plan: list[tuple]) -> None:
        """Write one chunk planned by :meth:`ViewSource.plan` (runs in a worker thread)."""
        out = self.out
        written = 0
        for item in plan:
            pos = item[0]
            if item[1] == "data":
                data = item[2]
                mv = memoryview(data)
                for start, end in nonzero_runs(data):
                    out.write_at(offset + pos + start, mv[start:end])
                    written += end - start
            else:
                _kind, fd, src, n = item[1:]
                written += _copy_region(fd, src, out, offset + pos, n)
        self.result.holes += length - written
        out.extend(offset + length)  # only when the chunk ends in a hole

    async def save_chunk(self, index: int, offset: int, length: int, item) -> None:
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
        return len(self.pending) >= SYNC_CHUNKS or self.pending_bytes >= SYNC_BYTES

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
                raise SaveError(f"{out.path} holds {out_size} bytes, but {state.path} says {done} were written: "
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
                    raise SaveError(
                        f"{out.path} differs from {self.source.description} in chunk {index} (offset "
                        f"{offset:#x}): the partial file was changed or damaged, or it is another dump. Nothing "
                        "was written. Run again with --restart to start over")
                continue
            if len(data) == n:
                await trio.to_thread.run_sync(self.hasher.update, data)
            if len(data) != n or self.hasher.copy().hexdigest() != expected:
                raise SaveError(
                    f"{out.path} differs from what was written in chunk {index} (offset {offset:#x}): "
                    "the partial file was changed or damaged, or the system went down before the data "
                    "reached the disk. Nothing was written. Run again with --restart to start over")
            if index in (0, last):
                kept[index] = data
        for index, data in kept.items():
            now = await self.source.read(index * chunk, len(data))
            if now != data:
                raise SaveError(f"{self.source.description} gives other bytes at offset {index * chunk:#x} "
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
            raise Stopped(f"stopped after {self.done} of {size} bytes (--stop-after)", 3)


def _sync_error(path: str, exc: OSError) -> str:
    return (f"cannot write {path}: fdatasync failed: {exc.strerror}: what was written last may not be "
            f"on the disk; {_next_step(exc)}")


def _next_step(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "free some space (or use a larger disk), then run the same command again to resume"
    if exc.errno == errno.EFBIG:
        return "the file system cannot hold a file this large: save to another one"
    return "fix the problem, then run the same command again to resume"


def state_path_for(out: str) -> str:
    """Return the default resume state file of the output *out*."""
    return out + ".vmcorefs-partial"


def save(source: str, out_path: str, *, mode: str | None = None, progress: bool | None = None,
         sha256_file: str | None = None, restart: bool = False, force: bool = False,
         state_path: str | None = None, chunk: int = DEFAULT_CHUNK, sparse: bool = True,
         sync: bool = False, verify: bool = False, stop_after: int | None = None,
         checksum: bool = True, stream=None) -> int:
    """
    Save the dump *source* names to *out_path*; print its SHA-256 and
    return the exit status: 0 saved; 3 stopped by *stop_after*; 128+N
    stopped by signal N (both resumable). Failures raise
    :class:`~vmcorefs.errors.VmcorefsError` with a one-line message.

    :param mode: for a machine: ``auto``, ``kdump`` or ``standalone``
    :param progress: show progress on *stream* (stderr); None: only on a terminal
    :param sha256_file: also write the SHA-256 there (``sha256sum -c`` format)
    :param restart: discard a partial save and start over
    :param force: overwrite an existing output
    :param state_path: where the resume state lives (default ``OUT.vmcorefs-partial``
        for a file, none for a block device)
    :param chunk: bytes per read
    :param sparse: leave zero pages of a regular file as holes
    :param sync: fsync the output at the end
    :param verify: read the output back and compare its SHA-256
    :param stop_after: stop after about that many bytes (tests)
    :param checksum: compute the SHA-256; without it, regions of a raw image
        file are copied in the kernel (``copy_file_range``, else ``sendfile``)
        and its holes skipped
    """
    if chunk < BLOCK or chunk % PAGE:
        raise InputError(f"--chunk-size must be a multiple of 4 KiB and at least 64 KiB, not {chunk}")
    opts = dict(mode=mode, progress=progress, sha256_file=sha256_file, restart=restart, force=force,
                state_path=state_path, chunk=chunk, sparse=sparse, sync=sync, verify=verify,
                stop_after=stop_after, checksum=checksum, stream=stream or sys.stderr)
    return trio.run(_save, source, out_path, opts)


def _report(text: str) -> None:
    print(f"vmcorefs: {text}", file=sys.stderr, flush=True)


def _inputs(src: Source, name: str) -> list[tuple[str, int, int, int]]:
    """
    Return ``(path, dev, ino, rdev)`` of every file the source reads (so
    that the output is none of them): the named file, the files a machine
    reads, and for a vmcorefs mount the files its daemon reads, as it says
    (:data:`INPUTS_XATTR`).
    """
    paths = [name]
    if isinstance(src, FileSource):
        paths.append(src.description)
    elif isinstance(src, ViewSource):
        paths += [store.path for store in src.files()]
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue
        out.append((path, st.st_dev, st.st_ino, st.st_rdev if stat.S_ISBLK(st.st_mode) else 0))
    if isinstance(src, FileSource):
        out += [(path, dev, ino, rdev) for dev, ino, rdev, _size, _mtime, path in src.inputs]
    return out


SAMPLES = 16  # pages spread over a dump file whose SHA-256 identify it for a resume


def sample_offsets(size: int) -> list[int]:
    """Return the offsets of the :data:`SAMPLES` pages spread over a dump file of *size* bytes."""
    return sorted({(size * (2 * i + 1) // (2 * SAMPLES)) & ~(PAGE - 1) for i in range(SAMPLES)})


def source_identity(src: Source) -> list[str]:
    """
    Return the lines of the state file that identify the source's files,
    checked before a resume continues: ``input DEV INO SIZE MTIME_NS PATH``
    for the SOURCE file and every file a machine reads, or that a vmcorefs
    mount says its daemon reads. A dump file whose origin cannot be named
    (``/proc/vmcore``, a mount's ``vmcore``) is identified by ``sample
    OFFSET SHA256`` lines too (also a machine on a block device, whose
    modification time says nothing of its contents), recorded as the pages
    at :func:`sample_offsets` are saved (see :meth:`Saver.save_chunk`).
    """
    lines = []
    if isinstance(src, ViewSource):
        if os.path.isfile(src.description):  # the description (or dump file) named as SOURCE
            st = os.stat(src.description)
            lines.append(f"input {' '.join(map(str, identity(st)))} {os.path.abspath(src.description)}")
        lines += [f"input {' '.join(map(str, store.identity))} {store.path}" for store in src.files()]
    elif isinstance(src, FileSource):
        lines += [f"input {dev} {ino} {size} {mtime} {path}" for dev, ino, _rdev, size, mtime, path in src.inputs]
    return lines


async def check_identity(src: Source, state: "State", out_path: str) -> None:
    """Raise SaveError unless the source is what *state* recorded when the save began."""
    now = source_identity(src)
    for recorded in state.identity:
        kind, _, rest = recorded.partition(" ")
        if recorded in now:
            continue
        if kind == "sample":
            offset, digest = rest.split(" ")
            offset = int(offset)
            data = await src.read(offset, min(PAGE, src.size - offset))
            if hashlib.sha256(data).hexdigest() == digest:
                continue
        if kind == "input":
            dev, ino, size, mtime, path = rest.split(" ", 4)
            current = next((ln for ln in now if ln.startswith("input ") and ln.split(" ", 5)[5] == path), None)
            why = f"{path} is not the file it was" if current is None else f"{path} changed"
            if current is not None:
                _, cdev, cino, csize, cmtime, _ = current.split(" ", 5)
                if (cdev, cino) != (dev, ino):
                    why = f"{path} is another file now (device/inode {cdev}/{cino}, was {dev}/{ino})"
                elif csize != size:
                    why = f"{path} has {csize} bytes now, {size} when the save began"
                else:
                    why = f"{path} was modified since the save began"
        elif kind == "sample":
            offset = int(rest.split(" ")[0])
            why = f"its page at offset {offset:#x} is not what it was"
        else:
            why = f"{recorded!r} no longer holds"
        raise SaveError(f"{src.description} changed since {out_path} was started ({why}): what was written may "
                        "not be this dump. Nothing was written. Run again with --restart to start over")


async def _save(source_name: str, out_path: str, o: dict) -> int:
    src = await open_source(source_name, o["mode"])
    try:
        return await _save_to(src, source_name, out_path, o)
    finally:
        src.close()


async def _save_to(src: Source, source_name: str, out_path: str, o: dict) -> int:
    out = Output(out_path, src.size, sparse=o["sparse"])
    state: State | None = None
    try:
        for path, dev, ino, rdev in _inputs(src, source_name):
            if out.same_file(dev, ino, rdev):
                raise InputError(f"{out_path} is {path}, which the dump is read from: save to another file")
        spath = o["state_path"]
        if spath is not None and not out.resumable:
            raise InputError(f"{out_path} is a pipe or character device, which cannot be resumed: drop --state")
        if spath is None and out.kind == "file":
            spath = state_path_for(out_path)
        old = State.load(spath) if spath else None
        partial = old is not None
        if old is not None and o["restart"]:
            log.info("--restart: discarding %s", spath)
            old = None
        if old is None and out.existing and not (o["force"] or partial):
            what = "block device" if out.kind == "block" else "file"
            raise InputError(f"{out_path} exists: add --force to overwrite the {what}, or choose another name")
        if old is not None and old.size != src.size:
            raise InputError(f"{spath} belongs to the save of a {old.size}-byte dump, {src.description} has "
                             f"{src.size} bytes: run again with --restart to start over, or save to another file")
        chunk = old.chunk if old is not None else o["chunk"]
        checksum = old.checksum if old is not None else o["checksum"]
        if old is not None and checksum != o["checksum"]:
            _report(f"{out_path} was started {'with' if checksum else 'without'} a SHA-256: resuming it so "
                    "(--restart to start over)")
        if not checksum and (o["sha256_file"] or o["verify"]):
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
            _report(f"resuming {out_path} at {human_size(start)} of {human_size(src.size)} "
                    "(the written part is verified)")
        else:
            start = 0
            out.truncate(0)
            stale = out_path + ".sha256"
            if out.kind == "file" and o["sha256_file"] != stale and os.path.exists(stale):
                os.unlink(stale)  # the checksum of what OUT held before
            if state is not None:
                state.create(src.size, chunk, os.path.basename(out_path), src.description, checksum,
                             source_identity(src))
        if o["progress"] or (o["progress"] is None and o["stream"].isatty()):
            saver.progress = Progress(src.size, start, o["stream"])
        try:
            await saver.run(start, o["stop_after"])
        except Stopped as exc:
            if saver.progress:
                saver.progress.update(saver.done, final=True)
            hint = ("run the same command again to resume" if state is not None
                    else "it cannot be resumed: run again")
            _report(f"{exc}; {out_path} is incomplete: {hint}")
            return exc.status
        except SaveError as exc:
            if saver.progress:
                saver.progress.update(saver.done, final=True)
            hint = "run the same command again to resume" if state is not None else "run again"
            raise SaveError(f"{exc} ({out_path} is incomplete, {saver.done} of {src.size} bytes; "
                            f"once fixed, {hint})") from None
        if saver.progress:
            saver.progress.update(src.size, final=True)
        guest = getattr(getattr(src, "machine", None), "guest", None)
        if guest is not None:  # a running guest resumed meanwhile: what was copied is no snapshot
            try:
                guest.check()
            except VmcorefsError as exc:
                raise SaveError(f"{exc}: {out_path} is not a consistent dump; save again") from None
        out.truncate(src.size)
        if o["sync"]:
            await trio.to_thread.run_sync(out.sync)
        res = saver.result
        res.sha256 = saver.hasher.hexdigest() if checksum else ""
        if o["verify"]:
            await _verify(out, src.size, res.sha256)
        if o["sha256_file"]:
            name = os.path.basename(out_path)
            with open(o["sha256_file"], "w") as f:
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
        _report(text)
        if checksum:
            # sha256sum's format, on stdout unless the dump itself went there
            # ("-", /dev/stdout, a file that standard output also writes to)
            print(f"{res.sha256}  {out_path}", file=sys.stderr if out.is_stdout() else sys.stdout, flush=True)
        return 0
    finally:
        if state is not None:
            state.close()
        out.close()


async def _verify(out: Output, size: int, expected: str) -> None:
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
    _report(f"verified: {out.path} reads back with the same SHA-256")
