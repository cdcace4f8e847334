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
dump takes them from SIGP STORE ADDITIONAL STATUS). That memory is made as
it is read (:func:`address_words`, a 1 MiB block at a time), never stored.
"""

from __future__ import annotations

import functools
import struct
from array import array

from .layouts import (IPL_PARAMETER_BLOCK_CCW, LC, LOWCORE_DUMP_INFO, OS_INFO, OS_INFO_ENTRIES_OFFSET, OS_INFO_ENTRY,
                      OS_INFO_MAGIC, PAGE_SIZE, VX_SAVE_AREA, cksm, note)
from .description import FORMAT, machine_from_doc, save_area_from_regs
from .machine import Machine
from .stores import BytesStore, GeneratedStore, OverlayStore, Store

__all__ = ("DEMO_MCESA", "DEMO_TAG", "address_words", "demo_doc", "demo_machine", "demo_store", "demo_words")

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


_BLOCK = 1 << 20
_offsets_block: bytes | None = None  # the big-endian words 0, 8, 16, ... of a 1 MiB block


def _block_offsets() -> bytes:
    global _offsets_block
    if _offsets_block is None:
        words = array("Q", range(0, _BLOCK, 8))
        if struct.pack("=H", 1) != struct.pack(">H", 1):
            words.byteswap()
        _offsets_block = words.tobytes()
    return _offsets_block


@functools.lru_cache(maxsize=4)
def _tag_template(top: int) -> bytes:
    """The 1 MiB block of words ``(top << 40) | 8k``: the offsets with bytes 0-2 of each word set."""
    data = bytearray(_block_offsets())
    tb = (top << 40).to_bytes(8, "big")
    n = _BLOCK // 8
    for k in range(3):
        if tb[k]:
            data[k::8] = tb[k:k + 1] * n
    return bytes(data)


@functools.lru_cache(maxsize=16)
def _nibble_template(top: int, nibble: int) -> bytes:
    """:func:`_tag_template` with the high half of byte 5 of every word set to *nibble* (address bits 20-23)."""
    data = bytearray(_tag_template(top))
    if nibble:
        table = bytes(x | nibble << 4 for x in range(256))
        data[5::8] = _block_offsets()[5::8].translate(table)
    return bytes(data)


@functools.lru_cache(maxsize=4)
def _tagged_block(high: int) -> bytes:
    """
    Return the 1 MiB block whose word *k* is ``high | 8k`` (*high* has its
    low 20 bits clear): the offsets fill bytes 5-7 of each big-endian word
    (bits 0-19), *high* bytes 0-5. Bytes 0-2 and the high half of byte 5
    come with a template made once (per tag and 1 MiB block modulo 16 MiB),
    bytes 3-4 are set with one strided slice assignment each (none in the
    first 16 MiB of a 4 GiB range).
    """
    hb = high.to_bytes(8, "big")
    template = _nibble_template(high >> 40, hb[5] >> 4)
    if not hb[3] and not hb[4]:
        return template
    data = bytearray(template)
    n = _BLOCK // 8
    for k in (3, 4):
        if hb[k]:
            data[k::8] = hb[k:k + 1] * n
    return bytes(data)


def _tagged_range(tag: int, start: int, end: int) -> bytes:
    """
    Return the words ``tag | a`` of the aligned range [*start*, *end*) as
    :func:`_tagged_block` makes them, each block's part copied once from its
    template into one buffer (a read that is not block aligned, as the 1 MiB
    requests for /vmcore are, costs no more than an aligned one).
    """
    out = bytearray(end - start)
    pos = start
    while pos < end:
        block = pos - pos % _BLOCK
        stop = min(end, block + _BLOCK)
        hb = (tag | block).to_bytes(8, "big")
        at, n = pos - start, stop - pos
        out[at:at + n] = memoryview(_nibble_template((tag | block) >> 40, hb[5] >> 4))[pos - block:stop - block]
        for k in (3, 4):
            if hb[k]:
                out[at + k:at + n:8] = hb[k:k + 1] * (n // 8)
        pos = stop
    return bytes(out)


def address_words(address: int, length: int, tag: int = 0) -> bytes:
    """
    Return memory whose every aligned 8-byte word holds its own address XOR *tag*.

    *address* and *length* need not be aligned: the words are generated for
    the enclosing aligned range and cut.
    """
    start = address & ~7
    end = (address + length + 7) & ~7
    low = tag & -tag if tag else 1 << 64  # lowest set bit of the tag
    if end <= low and low >= _BLOCK and end - start >= _BLOCK // 32:
        # the tag's bits lie above every address and every offset in a 1 MiB
        # block: a word is (tag | block) | offset, a whole block at a time
        data = _tagged_block(tag | start) if start % _BLOCK == 0 and end - start == _BLOCK else \
            _tagged_range(tag, start, end)
    elif end <= low:  # XOR is addition
        words = array("Q", range(start + tag, end + tag, 8))
        if struct.pack("=H", 1) != struct.pack(">H", 1):
            words.byteswap()
        data = words.tobytes()
    else:
        words = array("Q", [a ^ tag for a in range(start, end, 8)])
        if struct.pack("=H", 1) != struct.pack(">H", 1):
            words.byteswap()
        data = words.tobytes()
    if address == start and length == len(data):
        return data
    return data[address - start:address - start + length]


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
    """
    The re-IPL block of a CCW IPL from device 0.0.5c00, as the kernel's
    ``arch/s390/include/uapi/asm/ipl.h`` lays it out (QEMU's ``IplBlockCcw``
    the same): ``struct ipl_pl_hdr`` (len, flags, version 1), then ``struct
    ipl_pb0_ccw`` (:data:`~vmcorefs.layouts.IPL_PARAMETER_BLOCK_CCW`).
    """
    size = IPL_PARAMETER_BLOCK_CCW.size
    return IPL_PARAMETER_BLOCK_CCW.pack(len=size, version=1, pb_len=size - 8, pbt=2, devno=0x5C00)


def _patches() -> list[tuple[int, bytes]]:
    vmcoreinfo = demo_vmcoreinfo()
    vinote = note(b"VMCOREINFO", 0, vmcoreinfo)
    reipl = demo_reipl_block()
    entries = [
        (VMCOREINFO_NOTE_ADDR + 24, len(vmcoreinfo), cksm(vmcoreinfo)),
        (REIPL_ADDR, len(reipl), cksm(reipl)),
    ]
    page = bytearray(PAGE_SIZE)
    header = dict(magic=OS_INFO_MAGIC, version_major=1, version_minor=1)
    page[:OS_INFO.size] = OS_INFO.pack(**header)
    for i, (addr, size, csum) in enumerate(entries):
        off = OS_INFO_ENTRIES_OFFSET + i * OS_INFO_ENTRY.size
        page[off:off + OS_INFO_ENTRY.size] = OS_INFO_ENTRY.pack(addr=addr, size=size, csum=csum)
    csum_end = OS_INFO.offset("csum") + 4  # the checksum covers the page after itself
    page[:OS_INFO.size] = OS_INFO.pack(**header, csum=cksm(bytes(page[csum_end:])))
    lowcore = LOWCORE_DUMP_INFO.pack(ipib=REIPL_ADDR, ipib_checksum=cksm(reipl), vmcore_info=VMCOREINFO_NOTE_ADDR,
                                     os_info=OS_INFO_ADDR)
    return [
        (LC.AR_MODE_ID, b"\x01"),
        (LC.IPIB, lowcore),
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
