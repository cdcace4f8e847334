# SPDX-License-Identifier: MIT
"""
The demo machine
----------------

The ``vmcorefs.demo`` module builds the embedded demo machine in
milliseconds, without writing an image: 512 MiB of memory in two ranges
around a 128 MiB hole, 4 CPUs with distinct registers and the vector
facility, dumped stand-alone (32 MiB HSA). Every aligned 8-byte word of its
memory holds ``DEMO_TAG | address`` ("MEM" and the address), except for
what a kernel would have put there: the lowcore pointers, an os_info page
(no crashkernel, so the decision is a stand-alone dump), a VMCOREINFO note
and a re-IPL block, and in each CPU's lowcore at 0x11B0 the address of its
machine-check extended save area (``DEMO_MCESA`` + 1 KiB per CPU, 1 KiB
aligned, the page after the lowcores), where ``/zcore/mem`` puts its vector
registers as zgetdump does. What memory holds there is stale, as on a real
machine: the demo pattern, which no VXRS note comes from (a stand-alone
dump takes them from SIGP STORE ADDITIONAL STATUS).
"""

from __future__ import annotations

from .layouts import (LC, OS_INFO, OS_INFO_ENTRIES_OFFSET, OS_INFO_ENTRY, OS_INFO_MAGIC, PAGE_SIZE, VX_SAVE_AREA, cksm,
                      note)
from .description import FORMAT, machine_from_doc, save_area_from_regs
from .machine import Machine
from .stores import BytesStore, GeneratedStore, OverlayStore, Store, address_words

__all__ = ("DEMO_MCESA", "DEMO_TAG", "demo_doc", "demo_machine", "demo_store", "demo_words")

DEMO_TAG = 0x4D454D0000000000  # "MEM\0" in the top bytes
MIB = 1 << 20
DEMO_MEMORY = [(0, 256 * MIB), (384 * MIB, 256 * MIB)]  # (start, size)
DEMO_CPUS = 4
DEMO_PREFIXES = [0x20000, 0x22000, 0x24000, 0x26000]
DEMO_MCESA = 0x28000  # CPU i's machine-check extended save area at DEMO_MCESA + i * 0x400 (its lowcore's 0x11B0)
OS_INFO_ADDR = 0x4000
VMCOREINFO_NOTE_ADDR = 0x6000
REIPL_ADDR = 0x8000
DEMO_RELEASE = "6.1.0-vmcorefs-demo"


def demo_words(address: int, length: int) -> bytes:
    """Return the demo memory pattern (independent of any overlay)."""
    return address_words(address, length, DEMO_TAG)


def demo_vmcoreinfo() -> bytes:
    lines = [
        f"OSRELEASE={DEMO_RELEASE}",
        "BUILD-ID=0000000000000000000000000000000000000000",
        "PAGESIZE=4096",
        "SYMBOL(_stext)=100000",
        "NUMBER(MAX_PHYSMEM_BITS)=46",
        "KERNELOFFSET=0",
        "CRASHTIME=1795422295",
    ]
    return ("\n".join(lines) + "\n").encode()


def demo_reipl_block() -> bytes:
    # struct ipl_parameter_block: ipl_pl_hdr {len u32, flags u8, rsvd[2], version u8}
    # then an ipl_pb0_ccw: len u32, pbt u8 (2 = CCW), ..., devno at 0x0e
    body = bytearray(0x40)
    body[0:4] = (0x40).to_bytes(4, "big")
    body[7] = 1  # version
    pb = bytearray(0x38)
    pb[0:4] = (0x38).to_bytes(4, "big")
    pb[4] = 2  # IPL_PBT_CCW
    pb[10:12] = (0x5C00).to_bytes(2, "big")  # device number 0.0.5c00
    body[8:8 + len(pb)] = pb
    return bytes(body)


def _patches() -> list[tuple[int, bytes]]:
    vmcoreinfo = demo_vmcoreinfo()
    vinote = note(b"VMCOREINFO", 0, vmcoreinfo)
    reipl = demo_reipl_block()
    entries = [
        (VMCOREINFO_NOTE_ADDR + 24, len(vmcoreinfo), cksm(vmcoreinfo)),
        (REIPL_ADDR, len(reipl), cksm(reipl)),
    ]
    page = bytearray(PAGE_SIZE)
    page[:OS_INFO.size] = OS_INFO.pack(magic=OS_INFO_MAGIC, version_major=1, version_minor=1)
    for i, (addr, size, csum) in enumerate(entries):
        off = OS_INFO_ENTRIES_OFFSET + i * OS_INFO_ENTRY.size
        page[off:off + OS_INFO_ENTRY.size] = OS_INFO_ENTRY.pack(addr=addr, size=size, csum=csum)
    page[8:12] = cksm(bytes(page[0x0C:])).to_bytes(4, "big")
    lowcore = bytearray(0x20)
    lowcore[0x00:0x08] = REIPL_ADDR.to_bytes(8, "big")
    lowcore[0x08:0x0C] = cksm(reipl).to_bytes(4, "big")
    lowcore[0x0C:0x14] = VMCOREINFO_NOTE_ADDR.to_bytes(8, "big")
    lowcore[0x18:0x20] = OS_INFO_ADDR.to_bytes(8, "big")
    return [
        (0xA3, b"\x01"),
        (0xE00, bytes(lowcore)),
        (OS_INFO_ADDR, bytes(page)),
        (VMCOREINFO_NOTE_ADDR, vinote),
        (REIPL_ADDR, reipl),
    ] + [(prefix + LC.MCESAD, (DEMO_MCESA + 0x400 * i).to_bytes(8, "big")) for i, prefix in enumerate(DEMO_PREFIXES)]


def demo_store(size: int, seed: int = 0) -> Store:
    """Return the demo memory contents of *size* bytes (*seed* varies the tag)."""
    tag = DEMO_TAG ^ (seed << 40)
    base = GeneratedStore(size, lambda a, n: address_words(a, n, tag), name="demo memory")
    patches = [(a, BytesStore(d)) for a, d in _patches() if a + len(d) <= size]
    return OverlayStore(base, patches, name="demo memory")


def demo_cpu_regs(i: int) -> dict:
    """Return the registers of demo CPU *i* (distinct for every CPU)."""
    return dict(
        psw=(0x0704C00180000000, 0x100000 + 0x1000 * i + 0x24),
        gprs=[(i << 56) | (r << 48) | 0x1000 * r for r in range(16)],
        acrs=[(i << 24) | r for r in range(16)],
        ctrs=[(i << 32) | (r << 8) for r in range(16)],
        fprs=[0x4000000000000000 | (i << 32) | r for r in range(16)],
        fpc=i,
        prefix=DEMO_PREFIXES[i],
        timer=0x7FFFFFFF00000000 - i,
        todcmp=(0x00E39FD9CD000000 + i).to_bytes(8, "big"),
        todpreg=i,
    )


def demo_vector(i: int) -> bytes:
    """V0..V15: the FPRs and ``i << 8 | n`` to their right; V16..V31: ``(0xF0 + i) << 120 | n``."""
    fprs = demo_cpu_regs(i)["fprs"]
    halves = [h for n in range(16) for h in (fprs[n], (i << 8) | n)]
    halves += [h for n in range(16, 32) for h in ((0xF0 + i) << 56, n)]
    return VX_SAVE_AREA.pack(vrs=halves)


def demo_doc() -> dict:
    """Return the demo machine's description."""
    return {
        "format": FORMAT,
        "name": "vmcorefs demo machine",
        "environment": "standalone",
        "vector": True,
        "memory": [{"start": s, "size": n} for s, n in DEMO_MEMORY],
        "store": {"type": "demo"},
        "hsa": {"size": 32 * MIB, "latency_us": 0},
        "cpu": [{"address": i, "save_area": save_area_from_regs(**demo_cpu_regs(i)).hex(),
                 "vector": demo_vector(i).hex()} for i in range(DEMO_CPUS)],
    }


def demo_machine() -> Machine:
    """Return the demo machine."""
    machine = machine_from_doc(demo_doc(), ".", "demo")
    machine.kind = "demo machine"
    return machine
