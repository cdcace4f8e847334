# SPDX-License-Identifier: MIT
"""
Byte layouts: the declaration
-----------------------------

The ``vmcorefs.layouts.base`` module holds :class:`Layout`, a fixed-size
big-endian structure declared as ``(offset, name, format)``, which every
other module of the package uses to declare its structures, and the page
size.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = (
    "PAGE_SIZE",
    "Layout",
    "page_align",
)

PAGE_SIZE = 4096


def page_align(value: int) -> int:
    """Return *value* rounded up to a multiple of the page size."""
    return (value + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


class Layout:
    """
    A fixed-size big-endian structure declared as ``(offset, name, format)``.

    *format* is a :mod:`struct` code without byte order (``"Q"``, ``"16Q"``,
    ``"8s"``). Gaps between fields are zero padding. Array fields take and
    give tuples; scalar fields ints; ``s`` fields bytes.
    """

    def __init__(self, name: str, size: int, fields: list[tuple[int, str, str]]) -> None:
        self.name = name
        self.size = size
        self.fields: dict[str, tuple[int, struct.Struct]] = {}
        end = 0
        for offset, fname, fmt in sorted(fields):
            st = struct.Struct(">" + fmt)
            if offset < end or offset + st.size > size:
                raise ValueError(f"{name}.{fname} at {offset:#x} overlaps or overflows")
            end = offset + st.size
            self.fields[fname] = (offset, st)

    def offset(self, field: str) -> int:
        """Return the offset of *field*."""
        return self.fields[field][0]

    def pack(self, **values: Any) -> bytes:
        """Return the structure with the given fields set, the rest zero."""
        buf = bytearray(self.size)
        for fname, value in values.items():
            offset, st = self.fields[fname]
            if isinstance(value, (tuple, list)):
                st.pack_into(buf, offset, *value)
            else:
                st.pack_into(buf, offset, value)
        return bytes(buf)

    def packer(self, *fields: str) -> struct.Struct:
        """
        Return a :class:`struct.Struct` of the whole structure that packs
        (and unpacks) *fields*, given in offset order, positionally; the
        other bytes are zero. For tables of many entries (100,000 program
        headers), where :meth:`pack` per entry costs too much.
        """
        fmt, pos = ">", 0
        for fname in fields:
            offset, st = self.fields[fname]
            if offset < pos:
                raise ValueError(f"{self.name}: {fname} is not in offset order")
            fmt += (f"{offset - pos}x" if offset > pos else "") + st.format.lstrip(">")
            pos = offset + st.size
        return struct.Struct(fmt + (f"{self.size - pos}x" if self.size > pos else ""))

    def unpack(self, data: bytes, offset: int = 0) -> dict[str, Any]:
        """Return a dict of all fields of the structure at *offset* of *data*."""
        if len(data) - offset < self.size:
            raise ValueError(f"{self.name}: need {self.size} bytes, have {len(data) - offset}")
        out: dict[str, Any] = {}
        for fname, (foff, st) in self.fields.items():
            vals = st.unpack_from(data, offset + foff)
            out[fname] = vals[0] if len(vals) == 1 else vals
        return out
