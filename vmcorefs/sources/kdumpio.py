# SPDX-License-Identifier: MIT
"""
Files and codecs of makedumpfile's format
-----------------------------------------

The ``vmcorefs.sources.kdumpio`` module gives :mod:`.kdumpfile` random
access to a kdump-compressed dump however it is stored, and the page codecs:

:class:`PlainFile`
    a kdump-compressed file (``makedumpfile -c/-l/-p/-z``, QEMU's
    ``dump-guest-memory -z``), read with ``pread``;
:class:`FlatFile`
    the flattened format (``makedumpfile -F``, what is streamed over ssh):
    after a 4096-byte header, blocks of ``(offset, size)`` + data saying
    where each piece goes in the dump file ``makedumpfile -R`` would
    rebuild. The blocks are indexed once at open (only their 16-byte
    headers are read; a later block wins where two overlap, bytes no block
    wrote read as zeros, as in the file ``-R`` writes), and read in place:
    the stream is never rewritten. It must be a seekable file: a pipe or
    FIFO is refused.

Codecs (:func:`decompress`): zlib from the standard library; lzo, snappy and
zstd through the optional extras ``vmcorefs[lzo]`` (python-lzo),
``vmcorefs[snappy]`` (cramjam) and ``vmcorefs[zstd]`` (zstandard). A
missing one is a one-line error naming the extra.
"""

from __future__ import annotations

import bisect
import os
import zlib

from ..errors import InputError
from ..files import open_input
from ..layouts import DUMP_DH, MDF_DATA_HEADER, MDF_HEADER, MDF_HEADER_SIZE, MDF_SIGNATURE
from ..stores import RawFileStore

__all__ = ("CODECS", "FlatFile", "PlainFile", "ShortRead", "codec_available", "decompress", "open_dump_file")


class ShortRead(Exception):
    """Fewer bytes than asked for are in the file there (truncated)."""


class PlainFile:
    """
    A dump file read in place. :attr:`raw` is the file as opened (a
    :class:`~vmcorefs.stores.RawFileStore`): what identifies it, and
    whether it changed since (:meth:`~vmcorefs.stores.RawFileStore.check_unchanged`).
    """

    flattened = False

    def __init__(self, path: str, what: str = "kdump-compressed dump") -> None:
        self.path = path
        self.raw = RawFileStore(path, what=what)
        self.fd = self.raw.fd
        self.size = self.raw.file_size

    def read(self, offset: int, length: int) -> bytes:
        """Return *length* bytes at *offset*; raise :class:`ShortRead` or OSError."""
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise ShortRead(f"{os.path.basename(self.path)} ends at {self.size:#x}, before "
                            f"{offset:#x}+{length:#x}")
        return data

    def close(self) -> None:
        self.raw.close()
        self.fd = -1


class FlatFile(PlainFile):
    """
    A flattened dump (``makedumpfile -F``), indexed once: :attr:`size` and
    :meth:`read` are those of the dump file it stands for.
    """

    flattened = True

    def __init__(self, path: str) -> None:
        super().__init__(path, "flattened dump (makedumpfile -F)")
        try:
            self._index()
        except BaseException:
            self.close()
            raise

    def _index(self) -> None:
        name = self.path
        file_size = os.lseek(self.fd, 0, os.SEEK_END)
        head = os.pread(self.fd, MDF_HEADER.size, 0)
        if len(head) < MDF_HEADER.size or not head.startswith(MDF_SIGNATURE + b"\0"):
            raise InputError(f"{name} is not a flattened dump (no 'makedumpfile' signature)")
        h = MDF_HEADER.unpack(head)
        if h["type"] != 1 or h["version"] != 1:
            raise InputError(f"{name}: flattened format type {h['type']} version {h['version']} "
                             "is not the one makedumpfile writes (1, 1)")
        starts: list[int] = []  # dump-file offsets, sorted, not overlapping
        ends: list[int] = []
        where: list[int] = []  # the stream offset of each piece's first byte
        pos = MDF_HEADER_SIZE
        while True:
            raw = os.pread(self.fd, MDF_DATA_HEADER.size, pos)
            if len(raw) < MDF_DATA_HEADER.size:
                raise InputError(f"{name}: truncated flattened dump: no end marker (the stream ends at "
                                 f"{file_size:#x}); was it cut short?")
            d = MDF_DATA_HEADER.unpack(raw)
            off, size = d["offset"], d["buf_size"]
            if off == -1:
                break
            if off < 0 or size < 0 or pos + MDF_DATA_HEADER.size + size > file_size:
                raise InputError(f"{name}: the flattened block at {pos:#x} (offset {off:#x}, {size:#x} "
                                 f"bytes) is damaged or runs beyond the {file_size:#x}-byte stream")
            src = pos + MDF_DATA_HEADER.size
            pos = src + size
            if not size:
                continue
            end = off + size
            if not starts or off >= ends[-1]:
                starts.append(off)
                ends.append(end)
                where.append(src)
                continue
            # overwrites earlier blocks: cut them back, the later one wins
            i = bisect.bisect_right(ends, off)
            j = bisect.bisect_left(starts, end)
            keep_s, keep_e, keep_w = [], [], []
            for k in range(i, j):
                if starts[k] < off:
                    keep_s.append(starts[k]), keep_e.append(off), keep_w.append(where[k])
            keep_s.append(off), keep_e.append(end), keep_w.append(src)
            for k in range(i, j):
                if ends[k] > end:
                    keep_s.append(end), keep_e.append(ends[k]), keep_w.append(where[k] + end - starts[k])
            starts[i:j], ends[i:j], where[i:j] = keep_s, keep_e, keep_w
        self.starts, self.ends, self.where = starts, ends, where
        self.size = ends[-1] if ends else 0
        self.blocks = len(starts)

    def read(self, offset: int, length: int) -> bytes:
        if offset + length > self.size:
            raise ShortRead(f"the dump in {os.path.basename(self.path)} ends at {self.size:#x}, before "
                            f"{offset:#x}+{length:#x}")
        parts = []
        pos, end = offset, offset + length
        i = bisect.bisect_right(self.starts, pos) - 1
        while pos < end:
            if i >= 0 and pos < self.ends[i]:
                n = min(end, self.ends[i]) - pos
                src = self.where[i] + pos - self.starts[i]
                data = os.pread(self.fd, n, src)
                if len(data) != n:
                    raise ShortRead(f"{os.path.basename(self.path)} changed: {src:#x} is beyond its end")
                parts.append(data)
            else:  # not written by any block: a hole of the rebuilt file
                nxt = self.starts[i + 1] if i + 1 < len(self.starts) else end
                n = min(end, nxt) - pos
                parts.append(bytes(n))
            pos += n
            i += 1
        return b"".join(parts)


def open_dump_file(path: str) -> PlainFile:
    """Return *path* as a kdump-compressed file: flattened or not, by its first bytes."""
    fd = open_input(path, "kdump-compressed dump", block_ok=True)
    try:
        head = os.pread(fd, len(MDF_SIGNATURE) + 1, 0)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return FlatFile(path) if head == MDF_SIGNATURE + b"\0" else PlainFile(path)


# --- codecs -------------------------------------------------------------------

def _zlib(data: bytes, size: int) -> bytes:
    return zlib.decompress(data, bufsize=size)


def _lzo(data: bytes, size: int) -> bytes:
    import lzo
    return lzo.decompress(data, False, size)


def _snappy(data: bytes, size: int) -> bytes:
    import cramjam
    return bytes(cramjam.snappy.decompress_raw(data))


def _zstd(data: bytes, size: int) -> bytes:
    import zstandard
    return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)


# flag -> (name, module, extra, function)
CODECS = {
    DUMP_DH.COMPRESSED_ZLIB: ("zlib", "zlib", None, _zlib),
    DUMP_DH.COMPRESSED_LZO: ("lzo", "lzo", "lzo", _lzo),
    DUMP_DH.COMPRESSED_SNAPPY: ("snappy", "cramjam", "snappy", _snappy),
    DUMP_DH.COMPRESSED_ZSTD: ("zstd", "zstandard", "zstd", _zstd),
}
CODEC_MASK = sum(CODECS)


def codec_available(flag: int) -> str | None:
    """Return None if the codec of *flag* can be used here, else the one-line reason."""
    name, module, extra, _ = CODECS[flag]
    try:
        __import__(module)
    except ImportError:
        return (f"its pages are compressed with {name}, which needs the Python module {module}: "
                f"pip install 'vmcorefs[{extra}]'")
    return None


def decompress(flag: int, data: bytes, size: int) -> bytes:
    """
    Return the page *data* compressed with the codec of *flag* decompressed.

    :raises ValueError: it does not decompress, or not to *size* bytes
    :raises ImportError: the codec's module is missing (:func:`codec_available`)
    """
    func = CODECS[flag][3]
    try:
        out = func(data, size)
    except ImportError:
        raise
    except Exception as exc:  # each binding has its own error class
        raise ValueError(f"{CODECS[flag][0]} cannot decompress it ({exc})") from exc
    if len(out) != size:
        raise ValueError(f"{CODECS[flag][0]} gives {len(out)} bytes, not a {size}-byte page")
    return out
