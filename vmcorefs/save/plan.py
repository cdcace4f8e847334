# SPDX-License-Identifier: MIT
"""
The plan of a chunk for ``vmcorefs save --no-sha256``: what to write
(:class:`Data`) and which file regions to copy in the kernel as they are
(:class:`Copy`), from what the extents of ``/vmcore`` say backs them
(:meth:`~vmcorefs.views.extents.Extent.pieces`); zeros are left out.
"""

from __future__ import annotations

import dataclasses

from ..errors import MemoryReadError, VmcorefsError
from ..stores import FileRegion, Read, Zeros
from .base import SaveError
from .output import Output, copy_region, nonzero_runs

__all__ = ("Copy", "Data", "Item", "plan_extents", "write_plan")


@dataclasses.dataclass(frozen=True, slots=True)
class Data:
    """Bytes to write at *pos* (relative to the chunk); their zero pages are left as holes."""

    pos: int
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Copy:
    """A file region to copy in the kernel to *pos* (relative to the chunk); its holes are skipped."""

    pos: int
    region: FileRegion


Item = Data | Copy


async def plan_extents(f, offset: int, length: int) -> list[Item]:
    """
    Return how to write ``[offset, offset+length)`` of the extent map *f*
    without reading what a file holds as it is.

    :raises MemoryReadError: reading memory failed (the caller says where)
    :raises SaveError: any other error, with the offset
    """
    out: list[Item] = []
    i, rel = f.locate(offset)
    pos = 0
    try:
        while pos < length:
            ext = f.extents[i]
            n = min(length - pos, ext.length - rel)
            p = pos
            for piece in ext.pieces(rel, n):
                match piece:
                    case FileRegion():
                        out.append(Copy(p, piece))
                    case Read(length=m):
                        out.append(Data(p, await ext.read(rel + p - pos, m)))
                    case Zeros():
                        pass
                p += piece.length
            pos += n
            i += 1
            rel = 0
    except MemoryReadError:
        raise
    except VmcorefsError as exc:
        raise SaveError(f"{exc} (/vmcore offset {offset + pos:#x})") from None
    return out


def write_plan(out: Output, offset: int, plan: list[Item]) -> int:
    """Write the chunk at *offset* as *plan* says; return the bytes written (the rest are holes)."""
    written = 0
    for item in plan:
        match item:
            case Data(pos, data):
                mv = memoryview(data)
                for start, end in nonzero_runs(data):
                    out.write_at(offset + pos + start, mv[start:end])
                    written += end - start
            case Copy(pos, region):
                written += copy_region(region.fd, region.offset, out, offset + pos, region.length)
    return written
