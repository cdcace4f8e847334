# SPDX-License-Identifier: MIT
"""
os_info and the kdump decision
------------------------------

The ``vmcorefs.osinfo`` module reads what the crashed kernel left for a dump
tool in its absolute lowcore (reference sections 2, 4, 5): the re-IPL block
pointer and checksum, the VMCOREINFO note pointer, and the os_info page
with its crashkernel range and checksummed entries. :func:`analyse` checks
every field the way the capture kernel does and returns an
:class:`OsInfoReport` whose :attr:`~OsInfoReport.kdump_ok` is the 2011
design's decision: a valid kdump setup exists (every checksum verifies).

Nothing here raises on damaged data: a damaged os_info is a finding, not
an error, and never breaks reads of the dump.
"""

from __future__ import annotations

import dataclasses
from typing import Awaitable, Callable

from .errors import MemoryReadError
from .layouts import (ELF64_NHDR, LC, LOWCORE_DUMP_INFO, OS_INFO, OS_INFO_ENTRIES_OFFSET, OS_INFO_ENTRY,
                      OS_INFO_ENTRY_NAMES, OS_INFO_MAGIC, PAGE_SIZE, cksm)

__all__ = ("Check", "OsInfoEntry", "OsInfoReport", "analyse", "find_vmcoreinfo_note", "parse_vmcoreinfo",
           "vmcoreinfo_number")

OS_INFO_VERSION_MAJOR = 1
VMCOREINFO_NOTE_NAME = b"VMCOREINFO"
MAX_ENTRY_SIZE = 16 << 20  # larger entries are rejected as damaged
MAX_VMCOREINFO_SIZE = 1 << 20

ReadFn = Callable[[int, int], Awaitable[bytes]]


@dataclasses.dataclass
class Check:
    """One verified item: what, OK or BAD, and the detail."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'OK ' if self.ok else 'BAD'}  {self.name}: {self.detail}"


@dataclasses.dataclass
class OsInfoEntry:
    index: int
    name: str
    addr: int
    size: int
    csum: int
    actual_csum: int | None = None
    data: bytes | None = None
    problem: str | None = None

    @property
    def present(self) -> bool:
        return self.addr != 0

    @property
    def ok(self) -> bool:
        return self.present and self.problem is None


@dataclasses.dataclass
class OsInfoReport:
    """What the crashed kernel's lowcore and os_info say, checked."""

    checks: list[Check] = dataclasses.field(default_factory=list)
    ipib_addr: int | None = None
    ipib_csum: int | None = None
    vmcoreinfo_ptr: int | None = None
    os_info_ptr: int | None = None
    page: bytes | None = None  # the raw os_info page
    header: dict | None = None
    entries: list[OsInfoEntry] = dataclasses.field(default_factory=list)
    valid: bool = False  # pointer, magic, checksum and version verified
    crashkernel: tuple[int, int] | None = None
    vmcoreinfo: bytes | None = None
    vmcoreinfo_source: str = "none"
    note_vmcoreinfo: bytes | None = None
    note_source: str = ""
    reipl_block: bytes | None = None

    @property
    def kdump_ok(self) -> bool:
        """Whether a valid kdump setup exists: every check passed and a crashkernel is set."""
        return self.valid and self.crashkernel is not None and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    def with_vmcoreinfo(self, use_os_info: bool) -> "OsInfoReport":
        """Return a copy that takes VMCOREINFO as :meth:`select_vmcoreinfo` says."""
        out = dataclasses.replace(self, checks=list(self.checks), entries=list(self.entries))
        out.select_vmcoreinfo(use_os_info)
        return out

    def select_vmcoreinfo(self, use_os_info: bool) -> None:
        """Take VMCOREINFO from os_info entry 0 if *use_os_info* and valid, else from the 0xE0C note."""
        ent = self.entry("vmcoreinfo")
        if use_os_info and ent is not None and ent.ok:
            self.vmcoreinfo, self.vmcoreinfo_source = ent.data, f"os_info entry 0 at {ent.addr:#x}"
        elif self.note_vmcoreinfo is not None:
            self.vmcoreinfo, self.vmcoreinfo_source = self.note_vmcoreinfo, self.note_source
        else:
            self.vmcoreinfo, self.vmcoreinfo_source = None, "none: " + self.note_source

    def entry(self, name: str) -> OsInfoEntry | None:
        for e in self.entries:
            if e.name == name:
                return e
        return None


def parse_vmcoreinfo(text: bytes | None) -> dict[str, str]:
    """
    Return the ``KEY=value`` lines of a VMCOREINFO text (the first of a key
    wins; lines without ``=`` are skipped).

    >>> parse_vmcoreinfo(b"OSRELEASE=6.1.0\\nSYMBOL(_stext)=100000\\n")["SYMBOL(_stext)"]
    '100000'
    """
    out: dict[str, str] = {}
    for line in (text or b"").decode("ascii", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out.setdefault(key, value)
    return out


# keys whose values the kernel prints in hex (crash_core.c: VMCOREINFO_SYMBOL,
# VMCOREINFO_ADDRESS, KERNELOFFSET=%lx; s390: SAMODE31/EAMODE31=%lx); the rest
# (OFFSET, SIZE, LENGTH, NUMBER, PAGESIZE, CRASHTIME) in decimal
_HEX_PREFIXES = ("SYMBOL(", "ADDRESS(")
_HEX_KEYS = frozenset({"KERNELOFFSET", "SAMODE31", "EAMODE31", "PHYS_OFFSET"})


def vmcoreinfo_number(info: dict[str, str], key: str) -> int | None:
    """Return the number VMCOREINFO gives for *key* in the base the kernel wrote it, or None."""
    value = info.get(key)
    if value is None:
        return None
    base = 16 if key.startswith(_HEX_PREFIXES) or key in _HEX_KEYS else 10
    try:
        return int(value, base)
    except ValueError:
        return None


async def _read(read: ReadFn, address: int, length: int) -> bytes | None:
    try:
        return await read(address, length)
    except MemoryReadError:
        return None


async def find_vmcoreinfo_note(read: ReadFn, ptr: int,
                               contains: Callable[[int, int], bool]) -> tuple[bytes | None, str]:
    """
    Return the VMCOREINFO text of the ELF note at *ptr* (what lowcore 0xE0C
    points to) and a note on what was found, like the kernel's
    ``get_vmcoreinfo_old``: header 12 bytes, name ``VMCOREINFO`` padded to
    12, so the text starts at ``ptr + 24`` and is ``n_descsz`` long.
    """
    if not ptr:
        return None, "lowcore 0xE0C is 0"
    if not contains(ptr, 24):
        return None, f"lowcore 0xE0C points outside memory ({ptr:#x})"
    hdr = await _read(read, ptr, 24)
    if hdr is None:
        return None, f"cannot read the note at {ptr:#x}"
    nhdr = ELF64_NHDR.unpack(hdr)
    namesz, descsz = nhdr["n_namesz"], nhdr["n_descsz"]
    name = hdr[ELF64_NHDR.size:ELF64_NHDR.size + len(VMCOREINFO_NOTE_NAME)]
    if name != VMCOREINFO_NOTE_NAME or hdr[22:23] not in (b"\0",) or namesz != len(VMCOREINFO_NOTE_NAME) + 1:
        return None, f"no VMCOREINFO note at {ptr:#x}"
    if descsz == 0 or descsz > MAX_VMCOREINFO_SIZE:
        return None, f"VMCOREINFO note at {ptr:#x} has an implausible size {descsz}"
    if not contains(ptr + 24, descsz):
        return None, f"VMCOREINFO note at {ptr:#x} runs outside memory"
    text = await _read(read, ptr + 24, descsz)
    if text is None:
        return None, f"cannot read the VMCOREINFO text at {ptr + 24:#x}"
    return text, f"note at {ptr:#x} (lowcore 0xE0C), {descsz} bytes"


async def analyse(read: ReadFn, contains: Callable[[int, int], bool], *,
                  expect_crashkernel: tuple[int, int] | None = None,
                  left_out: Callable[[int, int], bool] | None = None) -> OsInfoReport:
    """
    Read and check the crashed kernel's lowcore pointers and os_info.

    :param read: reads old memory (async ``read(address, length)``)
    :param contains: whether a range lies in detected memory
    :param expect_crashkernel: the crashkernel the capture kernel was given
        (kdump environment); os_info must name the same
    :param left_out: the memory is a capture kernel's kdump vmcore, which
        leaves the crashkernel out: ``left_out(address, length)`` says
        whether a range lies wholly outside it, as the crashkernel must
    """
    rep = OsInfoReport()
    low = await _read(read, LC.IPIB, LOWCORE_DUMP_INFO.size)
    if low is None:
        rep.add("lowcore", False, "cannot read the absolute lowcore")
        return rep
    lc = LOWCORE_DUMP_INFO.unpack(low)
    rep.ipib_addr, rep.ipib_csum = lc["ipib"], lc["ipib_checksum"]
    rep.vmcoreinfo_ptr = lc["vmcore_info"]
    rep.os_info_ptr = ptr = lc["os_info"]

    # --- os_info page
    if not rep.add("os_info pointer", ptr != 0 and ptr % PAGE_SIZE == 0 and contains(ptr, PAGE_SIZE),
                   f"{ptr:#x} at lowcore {LC.OS_INFO:#x}" + (
                       "" if ptr and ptr % PAGE_SIZE == 0 and contains(ptr, PAGE_SIZE) else
                       " (none)" if ptr == 0 else
                       " (not page aligned)" if ptr % PAGE_SIZE else " (outside memory)")):
        page = None
    else:
        page = await _read(read, ptr, PAGE_SIZE)
        if page is None:
            rep.add("os_info page", False, f"cannot read {ptr:#x}")
    if page is not None:
        rep.page = page
        rep.header = hdr = OS_INFO.unpack(page)
        magic_ok = rep.add("os_info magic", hdr["magic"] == OS_INFO_MAGIC, f"{hdr['magic']:#018x}")
        actual = cksm(page[0x0C:])
        csum_ok = rep.add("os_info checksum", actual == hdr["csum"],
                          f"stored {hdr['csum']:#010x}, computed {actual:#010x}")
        ver_ok = rep.add("os_info version", 0 < hdr["version_major"] <= OS_INFO_VERSION_MAJOR,
                         f"{hdr['version_major']}.{hdr['version_minor']}")
        rep.valid = magic_ok and csum_ok and ver_ok
        if rep.valid:
            await _check_entries(rep, read, contains, page)
            base, size = hdr["crashkernel_addr"], hdr["crashkernel_size"]
            if size == 0:
                rep.add("crashkernel", False, "none reserved (size 0)")
            elif base % PAGE_SIZE or size % PAGE_SIZE:
                rep.add("crashkernel", False, f"{base:#x}+{size:#x} is not page aligned")
            elif base < size:
                rep.add("crashkernel", False, f"base {base:#x} below size {size:#x}: the swap would overlap")
            elif expect_crashkernel is not None and (base, size) != tuple(expect_crashkernel):
                rep.add("crashkernel", False, f"os_info says {base:#x}+{size:#x}, the capture kernel "
                        f"was given {expect_crashkernel[0]:#x}+{expect_crashkernel[1]:#x}")
            elif left_out is not None and not left_out(base, size):
                rep.add("crashkernel", False, f"{base:#x}+{size:#x} is partly in this kdump vmcore's memory: "
                        "a capture kernel leaves all of it out")
            elif left_out is None and not contains(base, size):
                rep.add("crashkernel", False, f"{base:#x}+{size:#x} is not in this memory (outside it, or "
                        "across a hole)")
            else:
                rep.crashkernel = (base, size)
                rep.add("crashkernel", True, f"{base:#x}-{base + size - 1:#x} ({size >> 20} MiB)"
                        + (", left out of this kdump vmcore as its capture kernel did" if left_out else ""))

    # --- VMCOREINFO: os_info entry 0 first, then the note at 0xE0C
    rep.note_vmcoreinfo, rep.note_source = await find_vmcoreinfo_note(read, rep.vmcoreinfo_ptr, contains)
    rep.select_vmcoreinfo(use_os_info=True)  # what a kdump kernel does; the decision may choose 0xE0C
    ent = rep.entry("reipl_block")
    if ent is not None and ent.ok:
        rep.reipl_block = ent.data
    elif rep.ipib_addr and contains(rep.ipib_addr, 8):
        rep.reipl_block = await _read_ipib(read, contains, rep.ipib_addr, rep.ipib_csum)
    return rep


async def _read_ipib(read: ReadFn, contains, addr: int, csum: int) -> bytes | None:
    # struct ipl_parameter_block starts with its u32 length
    head = await _read(read, addr, 4)
    if head is None:
        return None
    length = int.from_bytes(head, "big")
    if not 8 <= length <= PAGE_SIZE or not contains(addr, length):
        return None
    data = await _read(read, addr, length)
    if data is None or cksm(data) != csum:
        return None
    return data


async def _check_entries(rep: OsInfoReport, read: ReadFn, contains, page: bytes) -> None:
    count = (PAGE_SIZE - OS_INFO_ENTRIES_OFFSET) // OS_INFO_ENTRY.size
    for i in range(min(count, len(OS_INFO_ENTRY_NAMES))):
        raw = OS_INFO_ENTRY.unpack(page, OS_INFO_ENTRIES_OFFSET + i * OS_INFO_ENTRY.size)
        e = OsInfoEntry(i, OS_INFO_ENTRY_NAMES[i], raw["addr"], raw["size"], raw["csum"])
        rep.entries.append(e)
        if not e.present:
            continue
        label = f"os_info entry {i} ({e.name})"
        if e.size > MAX_ENTRY_SIZE or not contains(e.addr, max(e.size, 1)):
            e.problem = f"{e.addr:#x}+{e.size:#x} is outside memory or too large"
        else:
            data = await _read(read, e.addr, e.size)
            if data is None:
                e.problem = f"cannot read {e.addr:#x}+{e.size:#x}"
            else:
                e.data = data
                e.actual_csum = cksm(data)
                if e.actual_csum != e.csum:
                    e.problem = f"checksum stored {e.csum:#010x}, computed {e.actual_csum:#010x}"
        rep.add(label, e.problem is None,
                e.problem or f"{e.addr:#x}, {e.size} bytes, checksum {e.csum:#010x}")
