# SPDX-License-Identifier: MIT
"""
Synthetic kdump machines, checked against a simple model.

A small generator in this file builds what a crashed kernel leaves in its
memory (reference sections 2-5): the absolute lowcore pointers (0xE00 re-IPL
block, 0xE0C VMCOREINFO note, 0xE18 os_info), an os_info page (magic,
checksum, version 1.1, crashkernel, entry 0 = VMCOREINFO text, entry 1 =
re-IPL block, each with its checksum), every CPU's store-status save area
at its prefix + 0x1200 and the boot CPU's at 0x1200, and a tag at the start
of every page saying whose memory it is, and every CPU's vector registers
in the save area its lowcore's mcesad (0x11B0) points to: what the crashed
kernel stored before kdump, or (stand-alone) stale values that a dump tool
must never take. Then it does what kexec's
purgatory does, swapping ``[0, S)`` with the crashkernel ``[B, B+S)``, lets a
capture kernel occupy ``[0, S)`` (its own lowcore and os_info are decoys),
and writes the capture kernel's parmarea (OLDMEM_BASE/OLDMEM_SIZE at
0x10418). The image is written sparse (holes stay holes).

The model: old address ``A < S`` is read at ``A + B``, ``B <= A < B+S`` at
``A - B``, anything else at ``A``; kdump exports detected memory minus the
crashkernel; VMCOREINFO comes from os_info entry 0 if valid, else from the
0xE0C note; vector registers, where the crashed kernel started kdump, from
that save area for the boot CPU (and any CPU whose SIGP answer the
description does not give), else as the description gives them (SIGP STORE
ADDITIONAL STATUS); /vmcore is what tests/reference.py builds from that. Many
combinations are checked through the view layer without mounting; a few
representative ones through a real FUSE mount, and the stand-alone variant
(the crashed system's memory behind an HSA, a valid kdump setup) too.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import random
import re
import struct
from pathlib import Path

import pytest

from conftest import run_vmcorefs
from reference import cksm, reference_vmcore
from vmcorefs.description import load
from vmcorefs.dump import Dump
from vmcorefs.views.vmcore import build_vmcore

MIB = 1 << 20
PAGE = 4096
HSA_SIZE = 32 * MIB

# old-memory addresses of what the crashed kernel left (all below every S used)
NOTE_AT = 0x21000  # the VMCOREINFO ELF note lowcore 0xE0C points to
ENTRY0_AT = 0x22000  # os_info entry 0: the VMCOREINFO text
IPIB_AT = 0x23000  # the re-IPL block (os_info entry 1, lowcore 0xE00)
PREFIX_BASE = 0x200000  # CPU i's lowcore at PREFIX_BASE + i * 0x2000
MCESA_BASE = 0x180000  # CPU i's machine-check extended save area (its lowcore's mcesad) at MCESA_BASE + i * 0x400
MCESA_LC = 11  # the length code a machine with guarded storage keeps in mcesad's low bits (odd CPUs here)
CAPTURE_OS_INFO = 0x30000  # real address of the capture kernel's own os_info (a decoy)

TEXT_NOTE = b"OSRELEASE=6.1.0-from-lowcore-note\nPAGESIZE=4096\nSYMBOL(_stext)=100000\nCRASHTIME=1700000000\n"
TEXT_ENTRY0 = b"OSRELEASE=6.1.0-from-os_info-entry0\nPAGESIZE=4096\nSYMBOL(_stext)=100000\nCRASHTIME=1700000001\n"
TEXT_CAPTURE = b"OSRELEASE=6.1.0-capture-kernel\nPAGESIZE=4096\n"


@dataclasses.dataclass
class Spec:
    """A synthetic crashed machine and what vmcorefs must make of it."""

    name: str
    memory: list[tuple[int, int]]  # detected ranges (start, end)
    crash: tuple[int, int]  # crashkernel (base, size)
    mode: str  # the expected decision
    ranges: list[tuple[int, int]]  # the expected exported ranges
    cpus: int = 2
    offline: int = 0  # of those, CPUs with prefix 0 (not dumped), the last ones
    vector: bool = False
    os_info: bool = True
    os_info_at: int = 0x20000
    entry0: bool = True  # VMCOREINFO also in os_info entry 0 (a different text)
    environment: str = "kdump"
    parmarea: bool = True  # kdump: OLDMEM_BASE/SIZE in the capture kernel's parmarea, else in [kdump]
    emulate: bool = False  # write the description with 'vmcorefs emulate --save-areas'
    bad: str = ""  # the check that must be BAD
    os_info_crash: tuple[int, int] | None = None  # what os_info says, if not the crashkernel
    capture: bool = False  # stand-alone: taken while the capture kernel ran (the image is swapped)
    bad_checksum: str = ""  # "os_info": the os_info page's stored checksum is off by one; "entry0": entry 0's

    @property
    def swapped(self) -> bool:
        """Whether the image holds the swap (kdump, or a stand-alone dump of a running capture kernel)."""
        return self.environment == "kdump" or self.capture

    @property
    def undone(self) -> bool:
        """Whether vmcorefs must read old memory with the swap undone."""
        return self.environment == "kdump" or (self.capture and self.mode == "kdump")

    @property
    def size(self) -> int:
        return self.memory[-1][1]


M = MIB
SPECS = [
    # crashkernel low (B = S, the two swapped areas adjacent), os_info above it: read as is
    Spec("low", [(0, 64 * M)], (16 * M, 16 * M), "kdump", [(0, 16 * M), (32 * M, 64 * M)], os_info_at=40 * M),
    # in the middle: memory after it, two PT_LOADs; 5 CPUs, one offline; vector registers
    Spec("middle", [(0, 64 * M)], (24 * M, 8 * M), "kdump", [(0, 24 * M), (32 * M, 64 * M)],
         cpus=5, offline=1, vector=True),
    # at the top: one PT_LOAD; a single CPU
    Spec("top", [(0, 64 * M)], (48 * M, 16 * M), "kdump", [(0, 48 * M)], cpus=1),
    Spec("top-64-cpus-hole-below", [(0, 20 * M), (24 * M, 64 * M)], (48 * M, 16 * M), "kdump",
         [(0, 20 * M), (24 * M, 48 * M)], cpus=64, vector=True),
    # a hole inside the swapped low area [0, S)
    Spec("hole-in-low-area", [(0, 4 * M), (8 * M, 64 * M)], (32 * M, 16 * M), "kdump",
         [(0, 4 * M), (8 * M, 32 * M), (48 * M, 64 * M)], cpus=5, vector=True),
    # a hole starting right at S
    Spec("hole-at-S", [(0, 8 * M), (12 * M, 64 * M)], (16 * M, 8 * M), "kdump",
         [(0, 8 * M), (12 * M, 16 * M), (24 * M, 64 * M)]),
    # holes adjacent to the crashkernel, below its base and above its end
    Spec("hole-below-base", [(0, 24 * M), (28 * M, 64 * M)], (28 * M, 8 * M), "kdump",
         [(0, 24 * M), (36 * M, 64 * M)]),
    Spec("hole-above-end", [(0, 32 * M), (40 * M, 64 * M)], (24 * M, 8 * M), "kdump",
         [(0, 24 * M), (40 * M, 64 * M)]),
    # holes crossing the crashkernel's boundaries: no kernel reserves that; no valid setup
    Spec("hole-crossing-base", [(0, 30 * M), (34 * M, 64 * M)], (32 * M, 8 * M), "standalone",
         [(0, 30 * M), (34 * M, 64 * M)], bad="crashkernel"),
    Spec("hole-crossing-end", [(0, 38 * M), (42 * M, 64 * M)], (32 * M, 8 * M), "standalone",
         [(0, 38 * M), (42 * M, 64 * M)], bad="crashkernel"),
    # no os_info (lowcore 0xE18 = 0): stand-alone, VMCOREINFO from the 0xE0C note
    Spec("no-os-info", [(0, 64 * M)], (32 * M, 16 * M), "standalone", [(0, 64 * M)], os_info=False,
         bad="os_info pointer"),
    # os_info names another crashkernel than kexec gave the capture kernel: no valid setup
    Spec("os-info-crashkernel-mismatch", [(0, 64 * M)], (32 * M, 16 * M), "standalone", [(0, 64 * M)],
         os_info_crash=(32 * M, 8 * M), bad="crashkernel"),
    # a checksum that does not verify: the os_info page's, or entry 0's (its
    # VMCOREINFO text): no valid kdump setup, VMCOREINFO from the 0xE0C note
    Spec("os-info-checksum-bad", [(0, 64 * M)], (32 * M, 16 * M), "standalone", [(0, 64 * M)],
         bad="os_info checksum", bad_checksum="os_info"),
    Spec("entry0-checksum-bad", [(0, 64 * M)], (32 * M, 16 * M), "standalone", [(0, 64 * M)],
         bad="os_info entry 0 (vmcoreinfo)", bad_checksum="entry0"),
    # VMCOREINFO only through 0xE0C: os_info entry 0 is empty
    Spec("vmcoreinfo-note-only", [(0, 64 * M)], (32 * M, 16 * M), "kdump", [(0, 32 * M), (48 * M, 64 * M)],
         entry0=False),
    # the crashkernel given in the description, the parmarea empty
    Spec("crashkernel-in-description", [(0, 64 * M)], (32 * M, 16 * M), "kdump",
         [(0, 32 * M), (48 * M, 64 * M)], parmarea=False, cpus=2, vector=True),
    # written by 'vmcorefs emulate --save-areas'; a larger machine with a hole above the crashkernel
    Spec("emulated-128M", [(0, 96 * M), (112 * M, 128 * M)], (64 * M, 32 * M), "kdump",
         [(0, 64 * M), (112 * M, 128 * M)], cpus=5, offline=1, vector=True, emulate=True),
    # the crashed system's memory as is, behind an HSA: a valid kdump setup, no swap
    Spec("standalone-env-kdump-capable", [(0, 64 * M)], (40 * M, 16 * M), "kdump",
         [(0, 40 * M), (56 * M, 64 * M)], environment="standalone", cpus=5, offline=1, vector=True),
    Spec("standalone-env-no-os-info", [(0, 48 * M), (52 * M, 64 * M)], (40 * M, 8 * M), "standalone",
         [(0, 48 * M), (52 * M, 64 * M)], environment="standalone", os_info=False, bad="os_info pointer"),
    # a stand-alone dump taken while the capture kernel ran (it hung): the
    # crashed kernel's memory with the swap undone, old [16M, 32M) and the
    # capture kernel's parmarea read through the HSA (real [0, 32M))
    Spec("standalone-capture-running", [(0, 64 * M)], (40 * M, 16 * M), "kdump",
         [(0, 40 * M), (56 * M, 64 * M)], environment="standalone", capture=True, cpus=3, vector=True),
    Spec("standalone-capture-low", [(0, 8 * M), (12 * M, 64 * M)], (16 * M, 16 * M), "kdump",
         [(0, 8 * M), (12 * M, 16 * M), (32 * M, 64 * M)], environment="standalone", capture=True),
    # the same, but the crashed kernel's os_info is gone: the machine as it is
    # (the capture kernel's memory, its own lowcore note and os_info)
    Spec("standalone-capture-no-os-info", [(0, 64 * M)], (40 * M, 16 * M), "standalone", [(0, 64 * M)],
         environment="standalone", capture=True, os_info=False, bad="crashkernel"),
]
MOUNTED = ("middle", "hole-in-low-area", "standalone-env-kdump-capable", "standalone-capture-running")




def tag_pages(mem: bytearray, ranges, tag: bytes) -> None:
    """Start every page of *ranges* with *tag* and its address."""
    for start, end in ranges:
        for a in range(start, end, PAGE):
            struct.pack_into(">4sQ4s", mem, a, tag, a, b"PAGE")


def os_info_page(crash: tuple[int, int], entries: list[tuple[int, int, int]]) -> bytes:
    """Return an os_info page (reference section 5) with a valid checksum."""
    page = bytearray(PAGE)
    struct.pack_into(">QIHHQQ", page, 0, 0x4F53494E464F535A, 0, 1, 1, *crash)
    for i, (addr, size, csum) in enumerate(entries):
        struct.pack_into(">QQI", page, 0x20 + 20 * i, addr, size, csum)
    struct.pack_into(">I", page, 8, cksm(page[0x0C:]))
    return bytes(page)


def vmcoreinfo_note(text: bytes) -> bytes:
    return struct.pack(">III", 11, len(text), 0) + b"VMCOREINFO\0\0" + text


@dataclasses.dataclass
class Built:
    """A generated machine: its files and what the model expects."""

    spec: Spec
    dir: Path
    desc: Path
    image: mmap.mmap  # real memory at dump time (the image file, mapped)
    save_areas: list[bytes]  # every CPU's, boot CPU first (what SIGP STORE STATUS gives)
    vectors: list[bytes] | None  # every CPU's vector registers the model expects in /vmcore

    def read_old(self, address: int, length: int) -> bytes:
        """Read old memory from the image by the swap rule (kdump), or as is (stand-alone)."""
        if not self.spec.undone:
            return self.image[address:address + length]
        base, size = self.spec.crash
        out = []
        pos, end = address, address + length
        while pos < end:
            if pos < size:
                n, src = min(end, size) - pos, pos + base
            elif base <= pos < base + size:
                n, src = min(end, base + size) - pos, pos - base
            else:
                n, src = (min(end, base) if pos < base else end) - pos, pos
            out.append(self.image[src:src + n])
            pos += n
        return b"".join(out)

    @property
    def vmcoreinfo(self) -> bytes:
        if self.spec.mode == "kdump" and self.spec.os_info and self.spec.entry0 and not self.spec.bad_checksum:
            return TEXT_ENTRY0
        if self.spec.capture and not self.spec.undone:  # the capture kernel's own lowcore note
            return TEXT_CAPTURE
        return TEXT_NOTE

    def reference(self) -> Path:
        """Write and return the /vmcore the model expects."""
        path = self.dir / "reference.elf"
        if not path.exists():
            boot = self.read_old(0x1200, 512)
            # the others: what SIGP STORE STATUS gives (in the crashed kernel's
            # memory also at their prefix + 0x1200, checked in build())
            others = self.save_areas[1:]
            reference_vmcore(str(path), self.read_old, self.spec.ranges, [boot] + others, self.vectors,
                             self.vmcoreinfo)
        return path


def write_sparse(path: Path, data: bytes, chunk: int = 1 << 16) -> None:
    zero = bytes(chunk)
    view = memoryview(data)
    with open(path, "wb") as f:
        for off in range(0, len(data), chunk):
            part = view[off:off + chunk]
            if part == zero[:len(part)]:
                f.seek(len(part), os.SEEK_CUR)
            else:
                f.write(part)
        f.truncate()


def build(spec: Spec, d: Path) -> Built:
    """Generate the machine of *spec* in directory *d*."""
    rng = random.Random(spec.name)
    base, size = spec.crash
    old = bytearray(spec.size)
    tag_pages(old, spec.memory, b"OLD:")

    # what the crashed kernel left for a dump tool
    ipib = struct.pack(">I", 0x98) + rng.randbytes(0x94)
    old[NOTE_AT:NOTE_AT + 24 + len(TEXT_NOTE)] = vmcoreinfo_note(TEXT_NOTE)
    old[ENTRY0_AT:ENTRY0_AT + len(TEXT_ENTRY0)] = TEXT_ENTRY0
    old[IPIB_AT:IPIB_AT + len(ipib)] = ipib
    struct.pack_into(">QI", old, 0xE00, IPIB_AT, cksm(ipib))
    struct.pack_into(">Q", old, 0xE0C, NOTE_AT)
    if spec.os_info:
        entry0 = (ENTRY0_AT, len(TEXT_ENTRY0), cksm(TEXT_ENTRY0)) if spec.entry0 else (0, 0, 0)
        if spec.bad_checksum == "entry0":
            entry0 = (entry0[0], entry0[1], entry0[2] ^ 1)
        page = bytearray(os_info_page(spec.os_info_crash or spec.crash, [entry0, (IPIB_AT, len(ipib), cksm(ipib))]))
        if spec.bad_checksum == "os_info":
            struct.pack_into(">I", page, 8, struct.unpack_from(">I", page, 8)[0] ^ 1)
        old[spec.os_info_at:spec.os_info_at + PAGE] = page
    struct.pack_into(">Q", old, 0xE18, spec.os_info_at if spec.os_info else 0)

    # CPUs: each stored its status at prefix + 0x1200, the boot CPU also at 0x1200,
    # and its vector registers where its lowcore's mcesad points (kdump: the
    # crashed kernel did; stand-alone: what is there is stale)
    save_areas, vectors = [], []
    for i in range(spec.cpus):
        prefix = 0 if i >= spec.cpus - spec.offline else PREFIX_BASE + i * 0x2000
        sa = bytearray(rng.randbytes(512))
        struct.pack_into(">2Q", sa, 0x100, 0x0400C00180000000, 0x100000 + 0x10 * i)
        struct.pack_into(">I", sa, 0x118, prefix)
        vx = rng.randbytes(512)
        if prefix:
            old[prefix + 0x1200:prefix + 0x1400] = sa
            mcesa = MCESA_BASE + i * 0x400
            struct.pack_into(">Q", old, prefix + 0x11B0, mcesa | (MCESA_LC if i % 2 else 0))
            old[mcesa:mcesa + 512] = vx if spec.swapped else rng.randbytes(512)
        save_areas.append(bytes(sa))
        vectors.append(vx)
    assert save_areas[0][0x118:0x11C] != bytes(4), "the boot CPU is online"
    old[0x1200:0x1400] = save_areas[0]

    capture_sa = None
    capture_vx = rng.randbytes(512)  # the capture kernel's live vector registers on the boot CPU
    if spec.swapped:
        # purgatory: swap [0, S) and [B, B+S); the capture kernel then runs at [0, S)
        image = bytearray(old)
        image[base:base + size] = old[0:size]
        image[0:size] = bytes(size)
        tag_pages(image, [(max(s, 0), min(e, size)) for s, e in spec.memory if s < size], b"CAP:")
        capture_sa = rng.randbytes(512)
        image[0x1200:0x1400] = capture_sa  # the capture kernel's own boot CPU status
        image[NOTE_AT:NOTE_AT + 24 + len(TEXT_CAPTURE)] = vmcoreinfo_note(TEXT_CAPTURE)
        image[CAPTURE_OS_INFO:CAPTURE_OS_INFO + PAGE] = os_info_page((0, 0), [])
        struct.pack_into(">Q", image, 0xE0C, NOTE_AT)
        struct.pack_into(">Q", image, 0xE18, CAPTURE_OS_INFO)
        if spec.parmarea:
            struct.pack_into(">QQ", image, 0x10418, base, size)  # OLDMEM_BASE, OLDMEM_SIZE
    else:
        image = old
    write_sparse(d / "mem.raw", image)
    with open(d / "mem.raw", "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    # the description gives what SIGP STORE (ADDITIONAL) STATUS returns: for
    # the boot CPU of a stand-alone dump of a running capture kernel, that
    # kernel's; /vmcore shows it unless the crashed kernel is shown
    given = ([capture_vx] + vectors[1:]) if spec.capture else vectors
    built = Built(spec, d, d / "machine.toml", mapped, save_areas,
                  (vectors if spec.undone else given) if spec.vector else None)

    # the generator's sanity: the model's swap rule gives back the crashed kernel's memory
    # (the crashkernel itself holds the capture kernel: skipped; a dump that
    # shows the swapped memory as it is shows the capture kernel's view)
    for start, end in spec.ranges if spec.undone or not spec.swapped else []:
        for s, e in ((start, min(end, base)), (max(start, base + size), end)):
            if s < e:
                assert built.read_old(s, e - s) == old[s:e], "generator and model disagree"
    for i, sa in enumerate(save_areas):
        prefix = PREFIX_BASE + i * 0x2000
        if sa[0x118:0x11C] != bytes(4) and spec.undone:
            assert built.read_old(prefix + 0x1200, 512) == sa, "generator and model disagree"
    del old, image
    if spec.emulate:
        (d / "cpus.bin").write_bytes(b"".join(save_areas))
        args = ["emulate", d / "mem.raw", "-o", built.desc, "--environment", spec.environment,
                "--save-areas", d / "cpus.bin"]
        for s, e in spec.memory:
            args += ["--memory", f"{s:#x}:{e - s:#x}"]
        if spec.vector:
            args.append("--vector")
        run_vmcorefs(*args)
        # emulate knows no vector registers from --save-areas: kdump reads
        # every CPU's where the crashed kernel stored them
    else:
        # a stand-alone dump IPL stores the running boot CPU's status (the
        # capture kernel's, if it ran) at 0x1200: it is the first save area
        built.desc.write_text(description(spec, save_areas, given if spec.vector else None, capture_sa))
    return built


def description(spec: Spec, save_areas: list[bytes], vectors: list[bytes] | None,
                boot_status: bytes | None = None) -> str:
    """Return the machine description TOML, written by hand."""
    lines = ["format = 1", f'name = "synthetic {spec.name}"', f'environment = "{spec.environment}"',
             f"vector = {'true' if spec.vector else 'false'}", "memory = ["]
    lines += [f"  {{ start = {s:#x}, size = {e - s:#x} }}," for s, e in spec.memory]
    lines += ["]", "", "[store]", 'type = "raw"', 'path = "mem.raw"']
    if spec.environment == "standalone":
        lines += ["", "[hsa]", f"size = {HSA_SIZE:#x}"]
    elif not spec.parmarea:
        lines += ["", "[kdump]", f"crashkernel_base = {spec.crash[0]:#x}", f"crashkernel_size = {spec.crash[1]:#x}"]
    for i, sa in enumerate(save_areas):
        lines += ["", "[[cpu]]", f"address = {i}"]
        if i:  # the boot CPU's status is in old memory at 0x1200
            lines.append(f'save_area = "{sa.hex()}"')
        elif boot_status is not None and spec.environment == "standalone":
            lines.append(f'save_area = "{boot_status.hex()}"')
        if vectors is not None and (i or spec.environment != "kdump"):  # kdump: the boot CPU's are in memory
            lines.append(f'vector = "{vectors[i].hex()}"')
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    """Build each spec once, on first use."""
    cache: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in cache:
            spec = next(s for s in SPECS if s.name == name)
            cache[name] = build(spec, tmp_path_factory.mktemp(name))
        return cache[name]
    return get


async def render(desc: Path, mode: str = "auto") -> tuple[Dump, bytes]:
    """Return the dump of a description and its whole /vmcore, through the view layer."""
    machine = load(str(desc))
    try:
        dump = await Dump.open(machine, mode)
        vmcore = build_vmcore(dump)
        parts, off = [], 0
        while off < vmcore.size:
            data = await vmcore.read(off, 8 * MIB)
            assert data, off
            parts.append(data)
            off += len(data)
        return dump, b"".join(parts)
    finally:
        machine.close()


def headers(vmcore: bytes) -> bytes:
    """Return the ELF headers and notes of a vmcore: everything before the first PT_LOAD's data."""
    return vmcore[:struct.unpack_from(">Q", vmcore, 64 + 56 + 8)[0]]


def first_difference(a: bytes, b: bytes) -> int | None:
    if a == b:
        return None
    n = min(len(a), len(b))
    step = 1 << 16
    for off in range(0, n, step):
        if a[off:off + step] != b[off:off + step]:
            return off + next(i for i in range(step) if a[off + i:off + i + 1] != b[off + i:off + i + 1])
    return n


@pytest.mark.parametrize("name", [s.name for s in SPECS])
async def test_view_layer_matches_model(name, machines):
    built = machines(name)
    spec = built.spec
    dump, vmcore = await render(built.desc)
    assert dump.mode == spec.mode, dump.why
    assert dump.ranges == spec.ranges
    assert dump.swap == (spec.crash if spec.undone else None)
    assert dump.capture == (spec.crash if spec.capture else None)
    if spec.bad:
        assert spec.bad in [c.name for c in dump.report.checks if not c.ok], dump.why
    else:
        assert all(c.ok for c in dump.report.checks), dump.why
    assert dump.vmcoreinfo == built.vmcoreinfo, dump.report.vmcoreinfo_source
    dumped = [sa for sa in built.save_areas if sa[0x118:0x11C] != bytes(4)]
    assert [c.save_area for c in dump.cpus][1:] == dumped[1:]
    assert len(dump.cpus) == spec.cpus - spec.offline

    expected = built.reference().read_bytes()
    off = first_difference(vmcore, expected)
    assert off is None, f"/vmcore differs from the model at {off:#x} (sizes {len(vmcore):#x}, {len(expected):#x})"


async def test_kdump_path_prefers_os_info_entry0(machines):
    """Entry 0 and the 0xE0C note differ: kdump takes entry 0, a forced stand-alone dump the note."""
    built = machines("middle")
    dump, vmcore = await render(built.desc)
    assert dump.report.vmcoreinfo_source.startswith("os_info entry 0")
    notes = headers(vmcore)
    # the last note, padded to 4 bytes, then the padding of the notes' page
    assert (vmcoreinfo_note(TEXT_ENTRY0) + bytes(-len(TEXT_ENTRY0) % 4)) in notes
    assert TEXT_NOTE not in notes
    dump, vmcore = await render(built.desc, "standalone")
    assert dump.mode == "standalone" and dump.ranges == built.spec.memory
    notes = headers(vmcore)
    assert dump.vmcoreinfo == TEXT_NOTE and vmcoreinfo_note(TEXT_NOTE) in notes and TEXT_ENTRY0 not in notes
    # the capture kernel's own lowcore note and os_info are never taken
    assert TEXT_CAPTURE not in notes


async def test_standalone_environment_reads_low_memory_through_the_hsa(machines):
    built = machines("standalone-env-kdump-capable")
    machine = load(str(built.desc))
    try:
        dump = await Dump.open(machine)
        assert dump.mode == "kdump" and dump.swap is None
        before = machine.sclp.blocks_copied
        low = await dump.read(0, 2 * MIB)
        assert machine.sclp.blocks_copied > before  # through SCLP
        assert low == built.image[:2 * MIB]  # stand-alone: the image is old memory
        assert machine.real.read(0x1000, 8) == b"ZFCPDUMP"  # the dump tool occupies real low memory
        # above the HSA, real memory as is
        assert await dump.read(HSA_SIZE, PAGE) == built.image[HSA_SIZE:HSA_SIZE + PAGE]
    finally:
        machine.close()


async def test_standalone_dump_of_a_running_capture_kernel(machines):
    """
    The stand-alone dump caught the capture kernel running: by default the
    crashed kernel (swap undone, its os_info and CPUs), the capture kernel's
    parmarea and old [S, hsa size) read through the HSA; --mode standalone
    gives the machine as it is, the capture kernel's own VMCOREINFO.
    """
    built = machines("standalone-capture-running")
    base, size = built.spec.crash
    machine = load(str(built.desc))
    try:
        dump = await Dump.open(machine)
        assert (dump.mode, dump.capture, dump.swap) == ("kdump", (base, size), (base, size))
        first = dump.report.checks[0]
        assert first.name == "capture kernel" and first.ok and f"{base:#x}+{size:#x}" in first.detail
        before = machine.sclp.blocks_copied
        assert await dump.read(size, MIB) == built.read_old(size, MIB)  # real [S, S+1M): in the HSA
        assert machine.sclp.blocks_copied > before
        assert await dump.read(0, PAGE) == built.image[base:base + PAGE]  # old 0 is at the crashkernel
    finally:
        machine.close()
    # vmcorefs info says where each piece of old memory is read
    rows = re.findall(r"^  (0x[0-9a-f]{16})  (0x[0-9a-f]{16})  \S+ \S+\s+(.+)$",
                      run_vmcorefs("info", built.desc).stdout, re.M)
    assert [(int(a, 16), int(b, 16) + 1, what) for a, b, what in rows] == [
        (0, size, f"yes, read at {base:#x} (kdump swap)"),
        (size, HSA_SIZE, "yes, from the HSA over SCLP"),
        (HSA_SIZE, base, "yes"),
        (base, base + size, "no: crashkernel"),
        (base + size, built.spec.size, "yes")]
    dump, vmcore = await render(built.desc, "standalone")
    assert (dump.mode, dump.capture, dump.swap) == ("standalone", (base, size), None)
    assert dump.ranges == built.spec.memory and "a kdump capture kernel was running" in dump.why
    assert dump.vmcoreinfo == TEXT_CAPTURE and vmcoreinfo_note(TEXT_CAPTURE) in headers(vmcore)


async def test_forcing_kdump_behind_a_capture_kernel_needs_the_crashed_kernels_os_info(machines):
    from vmcorefs.errors import InputError
    built = machines("standalone-capture-no-os-info")
    with pytest.raises(InputError) as exc:
        await render(built.desc, "kdump")
    msg = str(exc.value)
    assert msg.startswith("cannot force kdump mode: no valid kdump setup (") and \
        "a kdump capture kernel was running" in msg and "os_info does not verify: os_info pointer" in msg, msg


@pytest.mark.parametrize("name", MOUNTED)
def test_mounted_vmcore_equals_model(name, machines, mounter):
    built = machines(name)
    m = mounter(built.desc)
    expected = built.reference()
    vmcore = m.path("vmcore")
    assert os.stat(vmcore).st_size == expected.stat().st_size
    with open(vmcore, "rb") as a, open(expected, "rb") as b:
        off = 0
        while True:
            x, y = a.read(8 * MIB), b.read(8 * MIB)
            assert x == y, f"/vmcore differs from the model in the 8 MiB at {off:#x}"
            if not x:
                break
            off += len(x)
    summary = m.path("meminfo/summary").read_text()
    assert f"mode: {built.spec.mode}" in summary
    assert m.path("meminfo/vmcoreinfo").read_bytes() == built.vmcoreinfo
    m.unmount()


@pytest.mark.parametrize("name,code", [("middle", 0), ("no-os-info", 1), ("hole-crossing-base", 1),
                                       ("standalone-env-kdump-capable", 0), ("standalone-capture-running", 0),
                                       ("standalone-capture-no-os-info", 1)])
def test_check_command(name, code, machines):
    built = machines(name)
    res = run_vmcorefs("check", built.desc, check=False)
    assert res.returncode == code, res.stdout + res.stderr
    if built.spec.bad:
        bad = [line for line in res.stdout.splitlines() if line.startswith(f"BAD  {built.spec.bad}:")]
        assert len(bad) == 1, res.stdout
    if name == "no-os-info":
        assert "BAD  os_info pointer: 0x0 at lowcore 0xe18 (none)" in res.stdout
    if name == "hole-crossing-base":
        assert "0x2000000+0x800000 is not in this memory" in res.stdout
    if name == "standalone-capture-running":
        assert res.stdout.startswith("OK   capture kernel: kdump capture kernel was running (its parmarea "
                                     "names the crashkernel 0x2800000+0x1000000"), res.stdout
    if name == "standalone-capture-no-os-info":
        assert "decision: stand-alone dump (" in res.stdout and "but the crashed kernel's os_info does not " \
            "verify: os_info pointer: 0x0 at lowcore 0xe18 (none)" in res.stdout, res.stdout


async def test_vector_registers_that_cannot_be_had_are_named_not_passed_off(machines, tmp_path, mounter):
    """
    A stand-alone description without SIGP's vector registers (memory holds
    only stale ones), and a kdump whose boot CPU lowcore names no save area:
    the notes keep their layout with zeros, and info, /meminfo and the mount
    log say which CPUs and why.
    """
    built = machines("standalone-env-kdump-capable")
    desc = tmp_path / "no-vector.toml"
    desc.write_text(re.sub(r'(?m)^vector = ".*"\n', "", built.desc.read_text())
                    .replace('path = "mem.raw"', f'path = "{built.dir / "mem.raw"}"'))
    dump, vmcore = await render(desc)
    assert [c.address for c in dump.vector_missing] == [0, 1, 2, 3]
    assert all(c.vector == bytes(512) for c in dump.cpus)
    assert "the source does not give what SIGP STORE ADDITIONAL STATUS returns" in dump.vector_text
    info = run_vmcorefs("info", desc).stdout
    assert "vector registers: yes, but NOT AVAILABLE for CPU 0, 1, 2, 3 (their VXRS notes hold zeros" in info, info
    m = mounter(desc)
    assert "vector_registers: NOT AVAILABLE" in m.path("meminfo/cpus/cpu2").read_text()
    assert "v0: " not in m.path("meminfo/cpus/cpu2").read_text()
    assert "NOT AVAILABLE for CPU 0, 1, 2, 3" in m.path("meminfo/summary").read_text()
    m.unmount()
    assert "CPU 3: no vector registers (its VXRS notes hold zeros)" in m.output()

    # kdump: the boot CPU's lowcore (prefix PREFIX_BASE, old memory below S,
    # so real PREFIX_BASE + B) has mcesad 0
    built = machines("middle")
    base = built.spec.crash[0]
    desc = tmp_path / "no-mcesad.toml"
    desc.write_text(built.desc.read_text().replace('path = "mem.raw"', f'path = "{built.dir / "mem.raw"}"')
                    + f'\n[[store.patch]]\naddress = {base + PREFIX_BASE + 0x11B0:#x}\ndata = "{"00" * 8}"\n')
    dump, _vmcore = await render(desc)
    assert [c.address for c in dump.vector_missing] == [0]
    assert dump.cpus[0].vector == bytes(512) and dump.cpus[1].vector == built.vectors[1]
    assert f"lowcore at {PREFIX_BASE:#x} names no machine-check extended save area (mcesad 0x0)" \
        in dump.vector_text, dump.vector_text
