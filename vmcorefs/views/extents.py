# SPDX-License-Identifier: MIT
"""
Extent maps
-----------

The ``vmcorefs.views.extents`` module provides :class:`ExtentFile`: a file
described as consecutive extents, each header bytes built once
(:class:`BytesExtent`), zeros (:class:`ZeroExtent`) or memory read on demand
(:class:`MemoryExtent`). A read finds its first extent by bisection and is
a pure function of the offset: no cursor, safe for concurrent readers. :class:`LazyFile` builds an
extent map at its first read, for files whose size is known at once but
whose map costs time that the mount should not wait for.

Each extent also says what backs its bytes without reading them
(:meth:`Extent.pieces`, the pieces of :mod:`vmcorefs.stores`), for
``vmcorefs save``'s kernel copy.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Awaitable, Callable

from ..stores import Piece, Read, Zeros, zeros

__all__ = ("BytesExtent", "Extent", "ExtentFile", "LazyFile", "LiveText", "MemoryExtent", "ZeroExtent")

ReadFn = Callable[[int, int], Awaitable[bytes]]
PiecesFn = Callable[[int, int], list[Piece]]


class Extent:
    """*length* bytes of a file; subclasses say where they come from."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    async def read(self, offset: int, length: int) -> bytes:
        """Return *length* bytes at *offset* into the extent."""
        raise NotImplementedError

    def pieces(self, offset: int, length: int) -> list[Piece]:
        """Return what backs *length* bytes at *offset* into the extent; the default: :class:`Read` them."""
        return [Read(length)]


class BytesExtent(Extent):
    """Bytes built once (headers, notes, text)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        super().__init__(len(data))
        self.data = data

    async def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]


class ZeroExtent(Extent):
    """Zeros (padding)."""

    __slots__ = ()

    async def read(self, offset: int, length: int) -> bytes:
        return zeros(length)

    def pieces(self, offset: int, length: int) -> list[Piece]:
        return [Zeros(length)]


class MemoryExtent(Extent):
    """
    Memory from *address* on, read with *read_fn* when asked; *pieces_fn*
    (same addresses) says what backs it, if the memory knows (else it is read).
    """

    __slots__ = ("address", "read_fn", "pieces_fn")

    def __init__(self, address: int, length: int, read_fn: ReadFn, pieces_fn: PiecesFn | None = None) -> None:
        super().__init__(length)
        self.address = address
        self.read_fn = read_fn
        self.pieces_fn = pieces_fn

    async def read(self, offset: int, length: int) -> bytes:
        return await self.read_fn(self.address + offset, length)

    def pieces(self, offset: int, length: int) -> list[Piece]:
        if self.pieces_fn is None:
            return [Read(length)]
        return self.pieces_fn(self.address + offset, length)


class ExtentFile:
    """A file made of consecutive extents; empty extents are dropped."""

    def __init__(self, extents: list[Extent]) -> None:
        self.extents = [e for e in extents if e.length > 0]
        self.starts: list[int] = list(itertools.accumulate((e.length for e in self.extents), initial=0))
        self.size = self.starts.pop()

    def locate(self, offset: int) -> tuple[int, int]:
        """Return ``(extent index, offset into it)`` for a file offset."""
        i = bisect.bisect_right(self.starts, offset) - 1
        return i, offset - self.starts[i]

    async def read(self, offset: int, length: int) -> bytes:
        """Return up to *length* bytes at *offset* (fewer only at end of file)."""
        if offset >= self.size or length <= 0:
            return b""
        length = min(length, self.size - offset)
        i, rel = self.locate(offset)
        parts = []
        while length > 0:
            ext = self.extents[i]
            n = min(length, ext.length - rel)
            parts.append(await ext.read(rel, n))
            length -= n
            i += 1
            rel = 0
        return parts[0] if len(parts) == 1 else b"".join(parts)


class LazyFile:
    """
    A file of a known *size* whose extent map *build* returns at the first
    read (then kept): the mount does not wait for maps that only some
    readers need (/zcore/mem of 100,000 ranges). Used as a
    :class:`~vmcorefs.views.tree.File`'s content like an extent map.
    """

    def __init__(self, size: int, build: Callable[[], ExtentFile]) -> None:
        self.size = size
        self._build: Callable[[], ExtentFile] | None = build
        self._file: ExtentFile | None = None

    def extent_file(self) -> ExtentFile:
        """Return the extent map, built now if it was not."""
        if self._file is None:
            assert self._build is not None
            f = self._build()
            if f.size != self.size:
                raise AssertionError(f"a lazy file was announced with {self.size} bytes, built with {f.size}")
            self._file, self._build = f, None
        return self._file

    async def read(self, offset: int, length: int) -> bytes:
        """Return up to *length* bytes at *offset* (fewer only at end of file)."""
        return await self.extent_file().read(offset, length)


class LiveText:
    """
    File contents made by *text* at every read and every size query, for
    the few files that change while mounted (the HSA release). Used as a
    :class:`~vmcorefs.views.tree.File`'s content like an extent map.
    """

    def __init__(self, text: Callable[[], str | bytes]) -> None:
        self.text = text

    def _data(self) -> bytes:
        data = self.text()
        return data.encode() if isinstance(data, str) else data

    @property
    def size(self) -> int:
        return len(self._data())

    async def read(self, offset: int, length: int) -> bytes:
        """Return up to *length* bytes at *offset* of the current text."""
        return self._data()[offset:offset + length]
