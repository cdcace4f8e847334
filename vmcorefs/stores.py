# SPDX-License-Identifier: MIT
"""
Stores
------

The ``vmcorefs.stores`` module provides the byte stores that hold a
machine's memory contents: a raw image file, generated memory (the demo
machine), zeros, and overlays that lay other stores or bytes over parts of a
store (the dump tool that overwrote low memory, a save area stored at IPL).

A store is addressed by absolute address and read synchronously with
:meth:`Store.read`; it raises :class:`~vmcorefs.errors.MemoryReadError` for
bytes it cannot deliver, never zeros in their place.

Each store also answers what ``vmcorefs save`` needs to know without
reading: :meth:`Store.pieces` says what backs a range (:class:`FileRegion`:
bytes of an open file as they are, which a save may copy in the kernel;
:class:`Zeros`; :class:`Read`: anything else), :meth:`Store.files` which
files (:class:`RawFileStore`) it reads. The defaults (read it; no files)
are always safe. :meth:`Store.generation` is a number that changes when
what the store reads as may have changed (a file it reads, a faults file).
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import os
import stat
import struct
from array import array
from typing import Callable, Iterable

from .errors import InputError, MemoryReadError
from .files import WatchedFile, identity, open_input, read_small

__all__ = (
    "BytesStore",
    "FaultyStore",
    "FileRegion",
    "GeneratedStore",
    "OverlayStore",
    "PatternStore",
    "Piece",
    "RawFileStore",
    "Read",
    "SliceStore",
    "Store",
    "ZeroStore",
    "Zeros",
    "distinct",
    "zeros",
)

_BLOCK = 1 << 20
_ZEROS = bytes(_BLOCK)  # never written: the kernel's copy of a reply reads the shared zero page


def zeros(length: int) -> bytes:
    """Return *length* zero bytes: one shared block for the 1 MiB of readahead requests, no new memory."""
    return _ZEROS if length == _BLOCK else bytes(length)


@dataclasses.dataclass(frozen=True, slots=True)
class FileRegion:
    """*length* bytes at *offset* of the open file *fd*, as they are (a save may copy them in the kernel)."""

    fd: int
    offset: int
    length: int


@dataclasses.dataclass(frozen=True, slots=True)
class Zeros:
    """*length* bytes that are zeros without being read (a hole of a store)."""

    length: int


@dataclasses.dataclass(frozen=True, slots=True)
class Read:
    """*length* bytes only a read gives: generated, patched, decompressed, or where reading raises."""

    length: int


Piece = FileRegion | Zeros | Read


def distinct(stores: Iterable["RawFileStore"]) -> list["RawFileStore"]:
    """Return *stores* in order, each once (several stores may read the same file)."""
    seen: set[int] = set()
    out = []
    for store in stores:
        if id(store) not in seen:
            seen.add(id(store))
            out.append(store)
    return out


class Store:
    """Memory contents addressed from 0 to :attr:`size`."""

    size: int = 0
    name: str = "store"
    blocking: bool = True  # reads may wait for a disk (a mount runs long ones in worker threads)

    def read(self, address: int, length: int) -> bytes:
        """Return *length* bytes at *address*; raise MemoryReadError if impossible."""
        raise NotImplementedError

    def read_nowait(self, address: int, length: int) -> bytes | None:
        """As :meth:`read` where that cannot wait for a disk; None where it might (then :meth:`read` it)."""
        return None if self.blocking else self.read(address, length)

    def pieces(self, address: int, length: int) -> list[Piece]:
        """
        Return what backs ``[address, address+length)``: consecutive pieces
        whose lengths add up to *length*. The default, :class:`Read`, is
        always right; a store says more only where it is sure.
        """
        return [Read(length)]

    def files(self) -> list["RawFileStore"]:
        """Return the files (:class:`RawFileStore`) this store reads, each once; the default: none."""
        return []

    def generation(self) -> int:
        """
        Return a number that changes whenever what the store reads as may
        have changed; the default: the sum of its :meth:`files`' (a store
        with more to watch, a faults file, says so itself).
        """
        return sum(f.generation() for f in self.files())

    def close(self) -> None:
        """Release what the store holds open."""

    def _check(self, address: int, length: int) -> None:
        if address < 0 or length < 0 or address + length > self.size:
            raise MemoryReadError(address, f"beyond the end of {self.name} ({self.size:#x} bytes)")


class ZeroStore(Store):
    """A store of zeros."""

    blocking = False

    def __init__(self, size: int) -> None:
        self.size = size
        self.name = "zeros"

    def read(self, address: int, length: int) -> bytes:
        self._check(address, length)
        return zeros(length)

    def pieces(self, address: int, length: int) -> list[Piece]:
        return [Zeros(length) if 0 <= address and address + length <= self.size else Read(length)]


class BytesStore(Store):
    """A store backed by a bytes object (small synthetic machines, tests)."""

    blocking = False

    def __init__(self, data: bytes, name: str = "bytes") -> None:
        self.data = bytes(data)
        self.size = len(self.data)
        self.name = name

    def read(self, address: int, length: int) -> bytes:
        self._check(address, length)
        return self.data[address:address + length]


class RawFileStore(Store):
    """
    A raw physical memory image: file offset = absolute address.

    The file must stay as it was when opened: every read checks afterwards
    that its size and modification time did not change (one ``fstat``), so
    an image truncated, cut and re-extended or rewritten under the mount
    gives an I/O error, never zeros or other bytes than it had (a hole
    ``SEEK_DATA`` finds beyond a new end is no hole).

    :param path: the image file (a regular file or a block device)
    :param size: the memory size the image should cover; a shorter file is
        a truncated image whose missing part reads as an I/O error.
    :param what: what the file is, for the messages of its open
    """

    def __init__(self, path: str, size: int | None = None, what: str = "memory image") -> None:
        self.fd = open_input(path, what, block_ok=True)
        self.path = path
        self.name = os.path.basename(path)
        st = os.fstat(self.fd)
        self.block = stat.S_ISBLK(st.st_mode)
        self.file_size = os.lseek(self.fd, 0, os.SEEK_END) if self.block else st.st_size
        self.size = self.file_size if size is None else size
        self.hole_bytes = 0  # bytes served from holes (SEEK_HOLE) without reading
        self.identity = (st.st_dev, st.st_ino, self.file_size, st.st_mtime_ns)  # a block device: its size
        # a file with fewer allocated blocks than its size has holes
        self.sparse = not self.block and st.st_blocks * 512 < self.file_size
        self._seen, self._changes = (st.st_size, st.st_mtime_ns), 0  # what generation() saw last

    def check_unchanged(self, address: int = 0) -> None:
        """Raise MemoryReadError if the file is no longer what it was when opened (size, mtime)."""
        if self.block or self.fd < 0:
            return
        try:
            now = identity(os.fstat(self.fd))
        except OSError as exc:
            raise MemoryReadError(address, f"{self.name}: {exc.strerror}") from exc
        if now != self.identity:
            what = (f"now {now[2]:#x} bytes, was {self.identity[2]:#x}" if now[2] != self.identity[2]
                    else "modified")
            raise MemoryReadError(address, f"{self.path} changed since it was opened ({what}): "
                                           "its bytes are no longer the dump's")

    def _next_data(self, address: int) -> int:
        """Return where data starts at or after *address* (file end if only a hole follows)."""
        if address >= self.file_size:
            return address
        try:
            return os.lseek(self.fd, address, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # a hole up to the end of the file, or the file got shorter
                return self.file_size
            return address  # no SEEK_DATA here: take everything as data

    HOLE_CHECK = 1 << 16  # reads at least this long first ask where data is

    def read_nowait(self, address: int, length: int) -> bytes | None:
        """
        The bytes if no disk read is needed: the zeros of a hole (one
        ``lseek``), or data the page cache holds whole (``preadv2`` with
        ``RWF_NOWAIT``); None where the disk would be read.
        """
        self._check(address, length)
        if self.sparse and length >= self.HOLE_CHECK and self._next_data(address) >= address + length:
            self.hole_bytes += length
            self.check_unchanged(address)
            return zeros(length)
        data = self._read_cached(address, length)
        if data is not None:
            self.check_unchanged(address)
        return data

    _nowait = hasattr(os, "RWF_NOWAIT")  # off once refused: every data read then goes to a worker thread

    def _read_cached(self, address: int, length: int) -> bytes | None:
        """*length* bytes at *address* if the page cache holds them all, else None (nothing waits for a disk)."""
        if not self._nowait or self.fd < 0 or address + length > self.file_size:
            return None
        buf = bytearray(length)
        try:
            n = os.preadv(self.fd, [buf], address, os.RWF_NOWAIT)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # refused (qemu-user: EOPNOTSUPP)
                self._nowait = False
            return None
        return bytes(buf) if n == length else None

    def read(self, address: int, length: int) -> bytes:
        self._check(address, length)
        data = self._read(address, length)
        self.check_unchanged(address)  # after the read: what it got is what the file held when opened
        return data

    def _read(self, address: int, length: int) -> bytes:
        if length >= self.HOLE_CHECK and self.sparse:
            data_at = self._next_data(address)
            if data_at >= address + length:
                self.hole_bytes += length
                return zeros(length)  # a hole: zeros without touching the disk
            if data_at > address:
                head = data_at - address
                self.hole_bytes += head
                return bytes(head) + self._read(data_at, length - head)
        try:
            data = os.pread(self.fd, length, address)
        except OSError as exc:
            raise MemoryReadError(address, f"{self.name}: {exc.strerror}") from exc
        if len(data) != length:
            self.check_unchanged(address + len(data))
            raise MemoryReadError(address + len(data), f"{self.name} is truncated at {self.file_size:#x}")
        return data

    def pieces(self, address: int, length: int) -> list[Piece]:
        """The file's bytes as they are, where the file holds them (beyond its end: a read, which fails)."""
        if self.fd >= 0 and 0 <= address and address + length <= self.file_size:
            return [FileRegion(self.fd, address, length)]
        return [Read(length)]

    def files(self) -> list["RawFileStore"]:
        return [self]

    def generation(self) -> int:
        """Return how often the file was found changed (its size or modification time) by these calls."""
        try:
            st = os.fstat(self.fd) if self.fd >= 0 else None
        except OSError:
            st = None
        if st is not None and (st.st_size, st.st_mtime_ns) != self._seen:
            self._seen = (st.st_size, st.st_mtime_ns)
            self._changes += 1
        return self._changes

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class GeneratedStore(Store):
    """Memory computed by a function ``fn(address, length) -> bytes``."""

    blocking = False

    def __init__(self, size: int, fn: Callable[[int, int], bytes], name: str = "generated") -> None:
        self.size = size
        self.fn = fn
        self.name = name

    def read(self, address: int, length: int) -> bytes:
        self._check(address, length)
        return self.fn(address, length)


class PatternStore(GeneratedStore):
    """
    The recognisable pattern of a dump tool that was loaded into low memory:
    every 16 bytes are ``b"ZFCPDUMP"`` followed by the big-endian address.
    Reading old memory from here instead of the HSA gives these bytes.
    """

    MAGIC = b"ZFCPDUMP"

    def __init__(self, size: int) -> None:
        super().__init__(size, self._pattern, "dump tool")

    @classmethod
    def _pattern(cls, address: int, length: int) -> bytes:
        start = address & ~15
        end = (address + length + 15) & ~15
        count = (end - start) // 16
        words = array("Q", range(start, end, 16))
        if struct.pack("=H", 1) != struct.pack(">H", 1):
            words.byteswap()
        addrs = words.tobytes()
        buf = bytearray(count * 16)
        for i in range(8):
            buf[i::16] = cls.MAGIC[i:i + 1] * count
        for i in range(8):
            buf[8 + i::16] = addrs[i::8]
        return bytes(buf[address - start:address - start + length])


def load_store_faults(path: str) -> list[tuple[int, int]]:
    """Return the ``(start, end)`` ranges of a store fault file's ``[[fault]]`` tables (``address``, ``size``)."""
    import tomllib
    try:
        doc = tomllib.loads(read_small(path, "store fault file").decode("utf-8"))
        faults = doc.get("fault", [])
        if not isinstance(faults, list):
            raise ValueError("fault must be a list of [[fault]] tables")
        bad = []
        for i, item in enumerate(faults):
            if not isinstance(item, dict):
                raise ValueError(f"fault[{i}] must be a table of address and size")
            address, size = item.get("address"), item.get("size")
            if not all(type(v) is int for v in (address, size)) or address < 0 or size <= 0:
                raise ValueError(f"fault[{i}]: address and size must be integers (address at least "
                                 f"0, size at least 1), not {address!r} and {size!r}")
            bad.append((address, address + size))
    except (ValueError, RecursionError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot use store fault file {path}: {exc}") from exc
    return bad


class FaultyStore(Store):
    """
    A store with injected I/O errors: reads touching a bad range fail, as a
    failing disk would. The ranges come from a TOML file of ``[[fault]]``
    tables (``address``, ``size``), re-read whenever it changes, so faults
    can come and go while mounted.
    """

    def __init__(self, base: Store, faults_file: str) -> None:
        self.base, self.size, self.name = base, base.size, base.name
        self.faults_file = faults_file
        self._watched = WatchedFile(faults_file, load_store_faults, [])
        self.bad = self._watched.current()  # a bad file is refused now

    @property
    def blocking(self) -> bool:  # type: ignore[override]
        return self.base.blocking

    def reload(self) -> int:
        """Re-read the faults file if it changed; return how often it changed (its version)."""
        self._refresh()
        return self._watched.version

    def _refresh(self) -> None:
        self.bad = self._watched.current()

    def read(self, address: int, length: int) -> bytes:
        self._fail(address, length)
        return self.base.read(address, length)

    def read_nowait(self, address: int, length: int) -> bytes | None:
        self._fail(address, length)
        return self.base.read_nowait(address, length)

    def _fail(self, address: int, length: int) -> None:
        self._refresh()
        for start, end in self.bad:
            if address < end and start < address + length:
                raise MemoryReadError(max(address, start), f"{self.name}: I/O error (injected)")

    # pieces: the default, a read, so that the injected faults apply

    def files(self) -> list["RawFileStore"]:
        return self.base.files()

    def generation(self) -> int:
        return self.reload() + self.base.generation()

    def close(self) -> None:
        self.base.close()


class SliceStore(Store):
    """``[start, start+size)`` of another store, addressed from 0."""

    def __init__(self, base: Store, start: int, size: int, name: str | None = None) -> None:
        self.base, self.start, self.size, self.name = base, start, size, name or base.name

    @property
    def blocking(self) -> bool:  # type: ignore[override]
        return self.base.blocking

    def read(self, address: int, length: int) -> bytes:
        self._check(address, length)
        return self.base.read(self.start + address, length)

    def read_nowait(self, address: int, length: int) -> bytes | None:
        self._check(address, length)
        return self.base.read_nowait(self.start + address, length)

    def pieces(self, address: int, length: int) -> list[Piece]:
        return self.base.pieces(self.start + address, length)

    def files(self) -> list["RawFileStore"]:
        return self.base.files()

    def generation(self) -> int:
        return self.base.generation()


class OverlayStore(Store):
    """
    A base store with other stores laid over parts of it ("last one wins" is
    resolved at construction: overlays may not overlap each other).

    :param overlays: ``(address, store)`` pairs; the overlay covers
        ``[address, address + store.size)`` and is read at ``address - start``.
    """

    def __init__(self, base: Store, overlays: list[tuple[int, Store]], name: str | None = None) -> None:
        self.base = base
        self.size = base.size
        self.name = name or base.name
        items = sorted(((a, s) for a, s in overlays if s.size), key=lambda x: x[0])
        for (a1, s1), (a2, _s2) in zip(items, items[1:]):
            if a1 + s1.size > a2:
                raise ValueError(f"overlays at {a1:#x} and {a2:#x} overlap")
        for a, s in items:
            if a < 0 or a + s.size > self.size:
                raise ValueError(f"overlay at {a:#x} lies outside the store")
        self.starts = [a for a, _ in items]
        self.items = items

    @property
    def blocking(self) -> bool:  # type: ignore[override]
        return self.base.blocking or any(s.blocking for _a, s in self.items)

    def read(self, address: int, length: int) -> bytes:
        return self._read(address, length, False)  # type: ignore[return-value]

    def read_nowait(self, address: int, length: int) -> bytes | None:
        return self._read(address, length, True)

    def _read(self, address: int, length: int, nowait: bool) -> bytes | None:
        self._check(address, length)
        parts = []
        pos, end = address, address + length
        i = bisect.bisect_right(self.starts, pos) - 1  # last overlay starting at or before pos
        while pos < end:
            if i >= 0 and pos < self.starts[i] + self.items[i][1].size:
                a, s = self.items[i]
                n = min(end, a + s.size) - pos
                part = s.read_nowait(pos - a, n) if nowait else s.read(pos - a, n)
            else:
                nxt = self.starts[i + 1] if i + 1 < len(self.starts) else end
                n = min(end, nxt) - pos
                part = self.base.read_nowait(pos, n) if nowait else self.base.read(pos, n)
                i += 1
            if part is None:
                return None
            parts.append(part)
            pos += n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def pieces(self, address: int, length: int) -> list[Piece]:
        out: list[Piece] = []
        pos, end = address, address + length
        for a, sub in self.items:
            if a + sub.size <= pos or a >= end:
                continue
            if a > pos:
                out += self.base.pieces(pos, a - pos)
                pos = a
            n = min(end, a + sub.size) - pos
            out += sub.pieces(pos - a, n)
            pos += n
        if pos < end:
            out += self.base.pieces(pos, end - pos)
        return out

    def files(self) -> list["RawFileStore"]:
        return distinct([*self.base.files(), *(f for _a, sub in self.items for f in sub.files())])

    def generation(self) -> int:
        return self.base.generation() + sum(sub.generation() for _a, sub in self.items)

    def close(self) -> None:
        self.base.close()
