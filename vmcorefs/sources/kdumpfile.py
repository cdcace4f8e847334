# SPDX-License-Identifier: MIT
"""
kdump-compressed dumps as a source
----------------------------------

The ``vmcorefs.sources.kdumpfile`` module opens makedumpfile's
kdump-compressed format ("KDUMP   ", diskdump) as a
:class:`~vmcorefs.machine.Machine`: what ``makedumpfile -c/-l/-p/-z`` (also
``-F``, flattened, and ``--split``) writes from a kernel's /proc/vmcore, and
what QEMU's ``dump-guest-memory`` writes with a kdump format. Layouts are
``DISKDUMP_HEADER``, ``KDUMP_SUB_HEADER`` and ``PAGE_DESC`` in
:mod:`vmcorefs.layouts`; the file access and codecs are :mod:`.kdumpio`.

The file: a header block (utsname, block size, bitmap size), the sub
header (phys_base, dump level, split range, where the VMCOREINFO and the ELF
notes it keeps are), two bitmaps of max_mapnr bits (1st: the page frames
that are memory; 2nd: those dumped), then one page descriptor (offset,
size, flags, page_flags) per dumped page in page frame order, and the page
data, each page compressed (zlib, lzo, snappy, zstd) or stored as it is.

Memory is the dumped pages only: the machine's memory ranges are the runs
of the 2nd bitmap, so pages the dump level excluded are no memory at all
(no PT_LOAD covers them in /vmcore: README, *Sources without a
description*). A page is decompressed once, into a small LRU cache.
CPUs come from the notes the file keeps (:mod:`.elfnotes`, which knows
QEMU's quirks), VMCOREINFO from the file. A makedumpfile dump of a kernel's
/proc/vmcore is a kdump vmcore whose crashkernel was left out
(:data:`~vmcorefs.machine.KIND_MAKEDUMPFILE`); a QEMU dump of a guest whose
capture kernel runs is a kdump machine, as QEMU's ELF dumps are.

Split dumps (``makedumpfile --split DUMP DUMP1 DUMP2 ...``): SOURCE is any
one of the files; the others are found in the same directory by their
headers (the same crash, dump level and bitmaps, split set), and together
they must cover every page frame. Damage: an unusable header (also a
bitmap that names more or fewer pages than there are descriptors) is a
one-line :class:`~vmcorefs.errors.InputError`; a page that cannot be read (its
descriptor beyond a truncated file, a bad descriptor, data that does not
decompress) is a :class:`~vmcorefs.errors.MemoryReadError` (EIO) for that
page only.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import logging
import os
import re

from ..errors import InputError, MemoryReadError
from ..layouts import (DISKDUMP_HEADER, DUMP_DH, KDUMP_SIGNATURE, KDUMP_SUB_HEADER, PAGE_DESC, PAGE_DESC_STRUCT,
                       PAGE_SIZE)
from ..machine import KIND_MAKEDUMPFILE, Cpu, Machine
from ..stores import RawFileStore, Store, distinct
from .elfnotes import cpus_from_notes
from .elfread import parse_notes
from .kdumpio import CODEC_MASK, CODECS, PlainFile, ShortRead, codec_available, decompress, open_dump_file
from .raw import machine_from_memory

__all__ = ("KIND_QEMU_KDUMP", "KdumpPart", "KdumpStore", "PageFilter", "open_kdump", "read_part")

log = logging.getLogger(__name__)

KIND_QEMU_KDUMP = "QEMU kdump-compressed dump"
MAX_NOTES = 64 << 20
DESC_BLOCK = 512  # descriptors read at once
PAGE_CACHE = 1024  # decompressed pages kept (4 MiB)
BATCH = 4 << 20  # the data of neighbouring pages is read with one pread up to this size
DUMP_LEVEL_BITS = ("zero", "cache", "cache private", "user", "free")


@dataclasses.dataclass(frozen=True)
class PageFilter:
    """What the dump level left out, for ``info`` and /meminfo."""

    producer: str
    dump_level: int
    compression: str
    memory_pages: int  # page frames the 1st bitmap says are memory
    dumped_pages: int
    files: int = 1
    flattened: bool = False

    @property
    def excluded_pages(self) -> int:
        return self.memory_pages - self.dumped_pages

    def text(self) -> str:
        """One line: the dump level and what it excluded."""
        kinds = [k for i, k in enumerate(DUMP_LEVEL_BITS) if self.dump_level >> i & 1]
        level = f"{self.dump_level} (filters {', '.join(kinds)} pages)" if kinds else f"{self.dump_level}"
        form = f"{self.producer}, {self.compression}" + (", flattened" if self.flattened else "") + \
            (f", split into {self.files} files" if self.files > 1 else "")
        return (f"{level}; {self.excluded_pages} of {self.memory_pages} pages excluded "
                f"({self.excluded_pages * PAGE_SIZE >> 20} MiB, not in /vmcore), {self.dumped_pages} dumped "
                f"[{form}]")


@dataclasses.dataclass
class KdumpPart:
    """One file of a dump (a split dump has several): its headers and where its parts are."""

    path: str
    file: PlainFile
    header: dict
    sub: dict
    head_bytes: bytes  # the main header, equal in every part of a split dump
    max_mapnr: int
    start_pfn: int
    end_pfn: int
    bitmap_offset: int
    bitmap_size: int  # bytes of each bitmap
    desc_offset: int

    @property
    def split(self) -> bool:
        return bool(self.sub["split"])

    def bitmaps(self) -> tuple[bytes, bytes]:
        try:
            raw = self.file.read(self.bitmap_offset, 2 * self.bitmap_size)
        except (ShortRead, OSError) as exc:
            raise InputError(f"{self.path}: truncated: the page bitmaps cannot be read ({exc})") from exc
        return raw[:self.bitmap_size], raw[self.bitmap_size:]


def read_part(path: str) -> KdumpPart:
    """Return the headers of the kdump-compressed (or flattened) file *path*; InputError if unusable."""
    f = open_dump_file(path)
    try:
        return _part(path, f)
    except BaseException:
        f.close()
        raise


def _part(path: str, f: PlainFile) -> KdumpPart:
    try:
        head = f.read(0, DISKDUMP_HEADER.size)
    except (ShortRead, OSError) as exc:
        raise InputError(f"{path}: truncated: no whole kdump header ({exc})") from exc
    h = DISKDUMP_HEADER.unpack(head)
    if h["signature"] != KDUMP_SIGNATURE:
        raise InputError(f"{path} is not a kdump-compressed dump (signature {h['signature']!r})")
    bs = h["block_size"]
    if int.from_bytes(head[0x1AC:0x1B0], "little") == PAGE_SIZE and bs != PAGE_SIZE:
        raise InputError(f"{path} is a little-endian kdump-compressed dump: not of an s390x machine")
    if bs != PAGE_SIZE:
        raise InputError(f"{path}: block size {bs}, not the s390x page size {PAGE_SIZE}: damaged header")
    machine = h["utsname"][4 * 65:5 * 65].split(b"\0")[0]
    if machine.lower() not in (b"", b"s390x"):  # QEMU writes S390X
        raise InputError(f"{path} is a dump of a {machine.decode(errors='replace')} machine, not s390x")
    version, sub_blocks, bitmap_blocks = h["header_version"], h["sub_hdr_size"], h["bitmap_blocks"]
    if not 1 <= version <= 100 or sub_blocks < 1 or bitmap_blocks < 2 or bitmap_blocks % 2:
        raise InputError(f"{path}: damaged kdump header (version {version}, sub header {sub_blocks} and "
                         f"bitmap {bitmap_blocks} blocks)")
    try:
        sub = KDUMP_SUB_HEADER.unpack(f.read(bs, KDUMP_SUB_HEADER.size))
    except (ShortRead, OSError) as exc:
        raise InputError(f"{path}: truncated: no kdump sub header ({exc})") from exc
    max_mapnr = sub["max_mapnr_64"] if version >= 6 else h["max_mapnr"]
    bitmap_size = bitmap_blocks * bs // 2
    if not 0 < max_mapnr <= bitmap_size * 8:
        raise InputError(f"{path}: max_mapnr {max_mapnr} does not fit the {bitmap_size}-byte bitmaps: damaged header")
    start, end = 0, max_mapnr
    if version >= 2 and sub["split"]:
        start, end = (sub["start_pfn_64"], sub["end_pfn_64"]) if version >= 6 else (sub["start_pfn"], sub["end_pfn"])
        if not start <= end <= max_mapnr:
            raise InputError(f"{path}: split range {start:#x}-{end:#x} lies beyond max_mapnr {max_mapnr:#x}")
    bitmap_offset = (1 + sub_blocks) * bs
    desc_offset = bitmap_offset + bitmap_blocks * bs
    if desc_offset > f.size:
        raise InputError(f"{path}: truncated: the file ends at {f.size:#x}, before the page descriptors "
                         f"at {desc_offset:#x}")
    if h["status"] & DUMP_DH.COMPRESSED_INCOMPLETE:
        log.warning("%s: the dump is incomplete (makedumpfile ran out of space): pages it did not write "
                    "read as I/O errors", path)
    return KdumpPart(path, f, h, sub, head, max_mapnr, start, end, bitmap_offset, bitmap_size, desc_offset)


def _same_dump(a: KdumpPart, b: KdumpPart) -> bool:
    keys = ("dump_level", "split", "offset_vmcoreinfo", "size_vmcoreinfo", "offset_note", "size_note")
    return (a.head_bytes == b.head_bytes and a.max_mapnr == b.max_mapnr
            and all(a.sub[k] == b.sub[k] for k in keys) and a.bitmaps() == b.bitmaps())


def find_split_parts(first: KdumpPart) -> list[KdumpPart]:
    """Return every part of the split dump *first* belongs to, by page frame order (see the module docs)."""
    directory = os.path.dirname(os.path.abspath(first.path))
    parts = [first]
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if os.path.samefile(path, first.path) or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as fh:
                if fh.read(len(KDUMP_SIGNATURE)) != KDUMP_SIGNATURE:
                    continue
            other = read_part(path)
        except (OSError, InputError):
            continue
        if other.split and _same_dump(first, other):
            parts.append(other)
        else:
            other.file.close()
    parts.sort(key=lambda p: (p.start_pfn, p.end_pfn))
    pos = 0
    for p in parts:
        if p.start_pfn != pos:
            for q in parts[1:]:
                q.file.close()
            what = "two of its files overlap" if p.start_pfn < pos else "a file is missing"
            raise InputError(f"{first.path} is part of a split dump (page frames {first.start_pfn:#x}-"
                             f"{first.end_pfn:#x} of {first.max_mapnr:#x}), but {what} at page frame {pos:#x} "
                             f"among the files of the same dump in {directory}: put all its files there")
        pos = p.end_pfn
    if pos != first.max_mapnr:
        for q in parts[1:]:
            q.file.close()
        raise InputError(f"{first.path} is part of a split dump, but a file is missing: no file of the same dump "
                         f"in {directory} holds page frames {pos:#x}-{first.max_mapnr:#x}: put all its files there")
    return parts


_RUNS = [[(m.start(), m.end()) for m in re.finditer("1+", format(b, "08b")[::-1])] for b in range(256)]


def bitmap_runs(bitmap: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """Return the runs ``(first, end)`` of set bits in ``[start, end)`` (bit i is bit i % 8 of byte i // 8)."""
    runs: list[list[int]] = []
    for m in re.finditer(rb"\xff+|[^\x00\xff]", bitmap):
        base = m.start() * 8
        pieces = [(0, (m.end() - m.start()) * 8)] if m.group()[0] == 0xFF else _RUNS[m.group()[0]]
        for a, b in pieces:
            a, b = max(base + a, start), min(base + b, end)
            if a >= b:
                continue
            if runs and runs[-1][1] == a:
                runs[-1][1] = b
            else:
                runs.append([a, b])
    return [(a, b) for a, b in runs]


class KdumpStore(Store):
    """Physical memory of a kdump-compressed dump: its dumped pages; every other address raises."""

    def __init__(self, parts: list[KdumpPart], runs: list[tuple[int, int]], name: str) -> None:
        self.parts = parts
        self.name = name
        self.size = parts[0].max_mapnr * PAGE_SIZE
        # each run within one part, with the index of its first page's descriptor in that part
        self.run_start: list[int] = []
        self.run_end: list[int] = []
        self.run_part: list[int] = []
        self.run_first: list[int] = []
        counts = [0] * len(parts)
        bounds = [p.end_pfn for p in parts]
        for a, b in runs:
            while a < b:
                i = bisect.bisect_right(bounds, a)
                cut = min(b, parts[i].end_pfn)
                self.run_start.append(a), self.run_end.append(cut), self.run_part.append(i)
                self.run_first.append(counts[i])
                counts[i] += cut - a
                a = cut
        self.descriptors = counts
        self.names = [os.path.basename(p.path) for p in parts]
        self.desc_cache: collections.OrderedDict = collections.OrderedDict()
        self.pages: collections.OrderedDict = collections.OrderedDict()
        self.decompressed = 0  # pages decompressed (a cached page is not counted again)

    # pieces(): the Store default. Its pages are read (decompressed, checked),
    # never copied as they are.

    def files(self) -> list[RawFileStore]:
        """Each part's file as opened (:attr:`PlainFile.raw <.kdumpio.PlainFile>`)."""
        return distinct([p.file.raw for p in self.parts])

    def read(self, address: int, length: int) -> bytes:
        self._check(address, length)
        if not length:
            return b""
        first = address // PAGE_SIZE
        pages = self._pages(first, (address + length - 1) // PAGE_SIZE + 1)
        for part in self.parts:  # after the reads: pages read or cached are those of the files as opened
            part.file.raw.check_unchanged(address)
        data = pages[0] if len(pages) == 1 else b"".join(pages)
        off = address - first * PAGE_SIZE
        return data if off == 0 and len(data) == length else data[off:off + length]

    def _pages(self, first: int, end: int) -> list[bytes]:
        """Return the pages *first* .. *end* - 1, reading the data of neighbours in the file at once."""
        out: list[bytes] = [b""] * (end - first)
        missing = []  # (slot, pfn, part, descriptor)
        for k, pfn in enumerate(range(first, end)):
            page = self.pages.get(pfn)
            if page is not None:
                self.pages.move_to_end(pfn)
                out[k] = page
                continue
            i = bisect.bisect_right(self.run_start, pfn) - 1
            if i < 0 or pfn >= self.run_end[i]:
                raise MemoryReadError(pfn * PAGE_SIZE, f"{self.name} does not hold page frame {pfn:#x} "
                                                       "(not memory, or excluded by the dump level)")
            part = self.run_part[i]
            index = self.run_first[i] + pfn - self.run_start[i]
            missing.append((k, pfn, part, self._descriptor(part, index, pfn)))
        i = 0
        while i < len(missing):
            part, (start, size) = missing[i][2], missing[i][3][:2]
            stop, j = start + size, i + 1
            while (j < len(missing) and missing[j][2] == part and missing[j][3][0] == stop
                   and stop - start < BATCH):
                stop += missing[j][3][1]
                j += 1
            try:
                blob = self.parts[part].file.read(start, stop - start)
            except (ShortRead, OSError) as exc:  # checked to lie in the file: it changed, or a disk error
                raise self._bad(part, missing[i][1], str(exc)) from exc
            pos = 0
            for k, pfn, _, (_, size, flags, _) in missing[i:j]:
                page = self._decode(part, pfn, blob[pos:pos + size], flags)
                pos += size
                out[k] = page
                self.pages[pfn] = page
                if len(self.pages) > PAGE_CACHE:
                    self.pages.popitem(last=False)
            i = j
        return out

    def _bad(self, part: int, pfn: int, why: str) -> MemoryReadError:
        return MemoryReadError(pfn * PAGE_SIZE, f"{self.names[part]}: page frame {pfn:#x}: {why}")

    def _descriptor(self, part: int, index: int, pfn: int) -> tuple[int, int, int, int]:
        """Return the checked descriptor ``(offset, size, flags, page_flags)`` of page *index* of *part*."""
        key = (part, index // DESC_BLOCK)
        block = self.desc_cache.get(key)
        p = self.parts[part]
        if block is None:
            first = key[1] * DESC_BLOCK
            at = p.desc_offset + first * PAGE_DESC.size
            want = min(DESC_BLOCK, self.descriptors[part] - first) * PAGE_DESC.size
            have = min(want, max(0, p.file.size - at) // PAGE_DESC.size * PAGE_DESC.size)  # truncated: those there
            try:
                block = list(PAGE_DESC_STRUCT.iter_unpack(p.file.read(at, have))) if have else []
            except (ShortRead, OSError) as exc:
                raise self._bad(part, pfn, f"cannot read its descriptor: {exc}") from exc
            self.desc_cache[key] = block
            if len(self.desc_cache) > 64:
                self.desc_cache.popitem(last=False)
        if index % DESC_BLOCK >= len(block):
            raise self._bad(part, pfn, "the file is truncated: its descriptor is beyond the end")
        d = block[index % DESC_BLOCK]
        offset, size, flags, _ = d
        codec = flags & CODEC_MASK
        where = f"descriptor at {p.desc_offset + index * PAGE_DESC.size:#x}"
        if codec and codec not in CODECS:
            raise self._bad(part, pfn, f"{where}: flags {flags:#x} name more than one codec")
        if offset <= 0 or size <= 0 or size > PAGE_SIZE or (not codec and size != PAGE_SIZE):
            raise self._bad(part, pfn, f"bad {where} (offset {offset:#x}, size {size}, flags {flags:#x})"
                            + (": the dump is incomplete" if offset == 0 else ""))
        if offset < p.desc_offset or offset + size > p.file.size:
            raise self._bad(part, pfn, f"{where}: its data at {offset:#x}+{size:#x} lies outside the file's "
                                       f"page data ({p.desc_offset:#x}-{p.file.size:#x}: truncated?)")
        return d

    def _decode(self, part: int, pfn: int, data: bytes, flags: int) -> bytes:
        codec = flags & CODEC_MASK
        if not codec:
            return data
        try:
            page = decompress(codec, data, PAGE_SIZE)
        except ImportError:
            raise self._bad(part, pfn, codec_available(codec)) from None
        except ValueError as exc:
            raise self._bad(part, pfn, str(exc)) from exc
        self.decompressed += 1
        return page

    def close(self) -> None:
        for p in self.parts:
            p.file.close()


def _compression(parts: list[KdumpPart]) -> str:
    status = parts[0].header["status"]
    names = [CODECS[flag][0] for flag in CODECS if status & flag]
    return "compressed with " + "/".join(names) if names else "not compressed"


def open_kdump(path: str) -> Machine:
    """Return the machine of the kdump-compressed (or flattened, or split) dump *path*."""
    first = read_part(path)
    parts = [first]
    try:
        if first.split:
            parts = find_split_parts(first)
        status = first.header["status"]
        for flag in CODECS:
            if status & flag and codec_available(flag):
                raise InputError(f"{path}: {codec_available(flag)}")
        bitmap1, bitmap2 = first.bitmaps()
        runs = bitmap_runs(bitmap2, 0, first.max_mapnr)
        if not runs:
            raise InputError(f"{path}: the dump holds no page (its 2nd bitmap is empty)")
        store = KdumpStore(parts, runs, os.path.basename(path))
        for part, count in zip(parts, store.descriptors):
            _check_bitmap(part, count)
    except BaseException:
        for p in parts:
            p.file.close()
        raise
    try:
        return _machine(path, first, parts, store, bitmap1, runs)
    except BaseException:
        store.close()
        raise


def _check_bitmap(part: KdumpPart, count: int) -> None:
    """
    Check that the 2nd bitmap names as many pages as *part* has descriptors:
    makedumpfile and QEMU start the page data right after the descriptors
    (first the shared zero page, if zero pages are excluded), so the first
    descriptor points there or one page further. A bitmap that names more
    or fewer pages would give every page after the lie another's bytes.
    """
    end = part.desc_offset + count * PAGE_DESC.size
    try:
        offset, size, _, _ = PAGE_DESC_STRUCT.unpack(part.file.read(part.desc_offset, PAGE_DESC.size))
    except (ShortRead, OSError):
        return  # a truncated file: its pages fail one by one
    if not count or not 0 < size <= PAGE_SIZE:
        return  # a damaged first descriptor: that page fails
    gap = offset - end
    if part.desc_offset < offset and gap not in (0, PAGE_SIZE) and -count * PAGE_DESC.size < gap < \
            count * PAGE_DESC.size + PAGE_SIZE:
        raise InputError(f"{part.path}: its page bitmap names {count} dumped pages, but the page data begins at "
                         f"{offset:#x}, not after {count} descriptors ({end:#x}): the bitmap is damaged")


def _read_block(part: KdumpPart, offset: int, size: int, what: str) -> bytes:
    if not offset or not size:
        return b""
    if size > MAX_NOTES:
        raise InputError(f"{part.path}: {what} of {size:#x} bytes is implausibly large: damaged header")
    try:
        return part.file.read(offset, size)
    except (ShortRead, OSError) as exc:
        raise InputError(f"{part.path}: truncated: {what} at {offset:#x}+{size:#x} cannot be read ({exc})") from exc


def _machine(path: str, first: KdumpPart, parts: list[KdumpPart], store: KdumpStore, bitmap1: bytes,
             runs: list[tuple[int, int]]) -> Machine:
    sub, version = first.sub, first.header["header_version"]
    notes_raw = _read_block(first, sub["offset_note"], sub["size_note"], "the ELF notes") if version >= 4 else b""
    if not notes_raw:
        raise InputError(f"{path}: the dump keeps no ELF notes (header version {version}): no CPU registers")
    notes = parse_notes(notes_raw, sub["offset_note"], path)
    elf_cpus, producer = cpus_from_notes(notes, path)
    cpus = [Cpu(c.address, c.save_area, c.vector) for c in elf_cpus]
    vmcoreinfo = (_read_block(first, sub["offset_vmcoreinfo"], sub["size_vmcoreinfo"], "the VMCOREINFO")
                  if version >= 3 else b"")
    if not vmcoreinfo:
        vmcoreinfo = next((n.desc for n in notes if n.name == b"VMCOREINFO"), None)
    qemu = producer.startswith("qemu")
    # the kernel writes vector notes exactly where the machine has the facility; QEMU for every CPU
    vector = None if qemu else any(c.vector is not None for c in cpus)
    kind = KIND_QEMU_KDUMP if qemu else KIND_MAKEDUMPFILE
    memory = [(a * PAGE_SIZE, b * PAGE_SIZE) for a, b in runs]
    machine = machine_from_memory(store, memory, os.path.basename(path), cpus, vmcoreinfo or None, vector, kind)
    n = first.max_mapnr
    memory_pages = (int.from_bytes(bitmap1, "little") & ((1 << n) - 1)).bit_count()
    machine.page_filter = PageFilter(
        "QEMU dump-guest-memory" if qemu else "makedumpfile", sub["dump_level"] if version >= 1 else 0,
        _compression(parts), max(memory_pages, sum(b - a for a, b in runs)), sum(b - a for a, b in runs),
        len(parts), first.file.flattened)
    log.info("%s: %s", path, machine.page_filter.text())
    return machine
