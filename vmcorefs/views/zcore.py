# SPDX-License-Identifier: MIT
"""
/zcore: the s390 dump format of the zcore driver
------------------------------------------------

The ``vmcorefs.views.zcore`` module builds ``/zcore``, what the kernel's
zcore driver (``drivers/s390/char/zcore.c``, debugfs ``zcore/``) gave a
zfcpdump system (reference section 8):

==========  ================================================================
``mem``     the s390 dump format: a 4096-byte header, then all memory, flat
``memmap``  one 34-byte record per detected memory range: ``%016lx %016lx ``
``reipl``   the re-IPL block of the dumped system (empty if there is none)
``hsa``     the HSA size in hex and a newline (``0`` without an HSA or
            after its release); writing ``0`` releases the HSA
==========  ================================================================

``mem``
    The header (``struct df_s390_hdr``) is filled as s390-tools' zgetdump
    (``zdump/dfo_s390.c``) and zipl's dumpers fill it: version 5, dump level
    4, ``mem_size`` = ``mem_end`` = the end of memory (the last detected
    address + 1; all three producers write the *exclusive* end into
    ``mem_end``, not ``mem_size - 1``), ``num_pages`` = ``mem_size / 4096``,
    ``mem_size_real`` = the size of detected memory (what zcore wrote),
    architecture 64-bit, ``cpu_cnt`` and ``lc_vec``: the prefix of every
    dumped CPU (prefix not 0), boot CPU first, ``real_cpu_cnt``: all CPUs.
    ``tod`` is the dump's time (:attr:`Dump.tod <vmcorefs.dump.Dump.tod>`,
    taken once); ``cpu_id`` is 0. When the machine is itself an s390 dump
    file, its header's ``tod``, ``cpu_id``, ``mem_size_real`` and
    ``real_cpu_cnt`` are kept, so that the file round-trips exactly.

    Then memory from address 0 to the end of memory, at file offset
    ``0x1000 + address``: holes between detected ranges read as zeros, and
    every dumped CPU's 512-byte save area is laid over its prefix page at
    ``prefix + 0x1200`` if that lies below the end of memory (as zcore's
    ``zcore_add_lc`` did: dump readers expect the registers in the
    lowcores; so where memory there held something else, ``mem`` and
    ``/vmcore`` differ). No end marker: zcore wrote none.

    Vector registers, an extension (zcore never wrote them; zgetdump does,
    and reads them back): every dumped CPU whose vector registers are known
    (not ``NOT AVAILABLE``) gets them, 512 bytes (V0..V15's high halves the
    floating point registers, as ``dfi_cpu_vx_copy`` builds them), at the
    address its lowcore holds at 0x11B0 in the memory shown, where
    zgetdump's s390 writer puts them (``zdump/dfo_s390.c``
    ``add_cpu_to_dfo``) and zipl's stand-alone dumpers store them: if that
    address is not 0 and a multiple of 1 KiB
    (:func:`~vmcorefs.layouts.dump_vx_save_area`) and the area lies below
    the end of memory. The area is the kernel's (machine-check extended)
    save area for them, not memory anything else uses; in a kdump it holds
    the same registers already (the crashed kernel stored them there), in
    a stand-alone dump what is there is stale and the registers replace it.
    Save areas and vector save areas are laid in CPU order, each CPU's
    vector save area after its save area, and where they overlap the later
    wins, as in zgetdump. So ``mem`` mounted again as a source (or
    converted by ``zgetdump -f elf``) gives the same VXRS notes.

    The memory is the crashed kernel's (*old*) memory in every
    environment, read through :meth:`Dump.read <vmcorefs.dump.Dump.read>`:
    in a stand-alone environment the low part comes from the HSA (after an
    HSA release those reads fail); in a dump file it is the file. In kdump
    the crashkernel range ``[B, B+S)`` is part of it too: zcore showed all
    memory and the format is flat from 0 to ``mem_size``. Through the swap,
    old ``[B, B+S)`` is read from real ``[0, S)``, which holds what the
    crashed system had put into its reservation: the capture kernel it had
    loaded there, now running. That is the truthful content of the range;
    zeros would claim memory that is not empty. ``/vmcore`` still leaves
    the range out, as ``/proc/vmcore`` does.

The view is built once, ``mem`` and ``memmap`` at their first read (their
sizes are known before: the mount of a machine of 100,000 ranges does not
wait for them); reads are synthesized on demand from an extent map
(header, memory, zeros, save areas), made non-overlapping and sorted when
built, in time linear in ranges + CPUs.
"""

from __future__ import annotations

import logging

from ..dump import CpuState, Dump
from ..errors import InputError
from ..layouts import (DF_S390_ARCH_64, DF_S390_CPU_MAX, DF_S390_HDR, DF_S390_HDR_SIZE, DF_S390_MAGIC,
                       DF_S390_VERSION, PAGE_SIZE, SAVE_AREA_OFFSET, VX_SAVE_AREA_SIZE, vector_with_fprs)
from .extents import BytesExtent, Extent, ExtentFile, LazyFile, LiveText, MemoryExtent, ZeroExtent
from .tree import Directory, File, text_file

__all__ = ("build_mem", "build_zcore", "hsa_text", "lay_over", "memmap_text", "save_area_blocks", "vx_save_area_bytes",
           "zcore_header")

log = logging.getLogger(__name__)

DUMP_LEVEL = 4  # "all memory", as zgetdump and zipl's dumpers write it
CHUNK_INFO_SIZE = 34  # one memmap record: two 16-digit hex numbers, each followed by a blank


def zcore_header(dump: Dump) -> bytes:
    """Return the 4096-byte s390 dump header of *dump*."""
    m = dump.machine
    src = m.source_header or {}
    end = m.memory_end
    prefixes = [c.prefix for c in dump.cpus]
    if len(prefixes) > DF_S390_CPU_MAX:
        log.warning("%d CPUs are dumped, the s390 dump header lists only %d", len(prefixes), DF_S390_CPU_MAX)
        prefixes = prefixes[:DF_S390_CPU_MAX]
    return DF_S390_HDR.pack(
        magic=DF_S390_MAGIC, version=DF_S390_VERSION, hdr_size=DF_S390_HDR_SIZE, dump_level=DUMP_LEVEL,
        page_size=PAGE_SIZE, mem_size=end, mem_start=0, mem_end=end,
        num_pages=min(end // PAGE_SIZE, 0xFFFFFFFF), tod=dump.tod, cpu_id=src.get("cpu_id", 0),
        arch=DF_S390_ARCH_64, build_arch=DF_S390_ARCH_64,
        mem_size_real=src.get("mem_size_real") or m.memory_size,
        cpu_cnt=len(prefixes), real_cpu_cnt=src.get("real_cpu_cnt") or len(dump.all_cpus),
        lc_vec=prefixes + [0] * (DF_S390_CPU_MAX - len(prefixes)))


def vx_save_area_bytes(cpu: CpuState) -> bytes:
    """Return the 512 bytes the s390 dump format holds for *cpu*'s vector registers (``dfi_cpu_vx_copy``)."""
    return vector_with_fprs(cpu.vector, cpu.regs["fprs"])


def save_area_blocks(cpus: list[CpuState], end: int) -> list[tuple[int, bytes]]:
    """
    Return the save areas and vector save areas to lay over memory below
    *end* as sorted, non-overlapping ``(address, bytes)`` blocks; where two
    overlap, the later wins (as zcore and zgetdump copied them in order).
    """
    areas = []
    for c in cpus:
        areas.append((c.prefix + SAVE_AREA_OFFSET, c.save_area))
        if c.vx_save_area is None or c.vector is None or c.vector_missing is not None:
            continue
        if c.vx_save_area + VX_SAVE_AREA_SIZE > end:
            log.warning("CPU %d: the vector save area its lowcore names, %#x, lies beyond the memory: "
                        "zcore/mem holds no vector registers for it", c.address, c.vx_save_area)
            continue
        areas.append((c.vx_save_area, vx_save_area_bytes(c)))
    items = sorted((address, i, data) for i, (address, data) in enumerate(areas) if address + len(data) <= end)
    clusters: list[tuple[int, int, list[tuple[int, int, bytes]]]] = []
    for address, order, data in items:
        if clusters and address < clusters[-1][1]:
            start, stop, members = clusters[-1]
            members.append((order, address, data))
            clusters[-1] = (start, max(stop, address + len(data)), members)
        else:
            clusters.append((address, address + len(data), [(order, address, data)]))
    blocks = []
    for start, stop, members in clusters:
        buf = bytearray(stop - start)
        for _order, address, data in sorted(members, key=lambda m: m[0]):
            buf[address - start:address - start + len(data)] = data
        blocks.append((start, bytes(buf)))
    return blocks


def _slice(ext: Extent, offset: int, length: int) -> Extent:
    if offset == 0 and length == ext.length:
        return ext
    if isinstance(ext, MemoryExtent):
        return MemoryExtent(ext.address + offset, length, ext.read_fn, ext.pieces_fn)
    if isinstance(ext, BytesExtent):
        return BytesExtent(ext.data[offset:offset + length])
    if isinstance(ext, ZeroExtent):
        return ZeroExtent(length)
    raise TypeError(f"cannot cut a {type(ext).__name__}")


def lay_over(base: list[tuple[int, Extent]], blocks: list[tuple[int, bytes]]) -> list[Extent]:
    """
    Return the extents of *base* (consecutive ``(address, extent)``) with
    *blocks* (sorted, non-overlapping ``(address, bytes)``) laid over them.
    """
    out: list[Extent] = []
    bi = 0
    for start, ext in base:
        pos, end = start, start + ext.length
        while pos < end:
            while bi < len(blocks) and blocks[bi][0] + len(blocks[bi][1]) <= pos:
                bi += 1
            if bi < len(blocks) and blocks[bi][0] <= pos:
                address, data = blocks[bi]
                n = min(end, address + len(data)) - pos
                out.append(BytesExtent(data[pos - address:pos - address + n]))
            else:
                n = (min(end, blocks[bi][0]) if bi < len(blocks) else end) - pos
                out.append(_slice(ext, pos - start, n))
            pos += n
    return out


def _memory(dump: Dump) -> list[tuple[int, Extent]]:
    out: list[tuple[int, Extent]] = []
    pos = 0
    for start, end in dump.machine.memory:
        if start > pos:
            out.append((pos, ZeroExtent(start - pos)))
        out.append((start, MemoryExtent(start, end - start, dump.read, dump.pieces)))
        pos = end
    return out


def build_mem(dump: Dump) -> ExtentFile:
    """Return zcore's ``mem`` of *dump*: the header, then memory with the save areas laid over it."""
    blocks = save_area_blocks(dump.cpus, dump.machine.memory_end)
    return ExtentFile([BytesExtent(zcore_header(dump))] + lay_over(_memory(dump), blocks))


def memmap_text(memory: list[tuple[int, int]]) -> str:
    """Return zcore's ``memmap``: ``start size `` (16 lowercase hex digits each) per range."""
    return "".join(f"{start:016x} {end - start:016x} " for start, end in memory)


def hsa_text(dump: Dump) -> str:
    """Return what zcore's ``hsa`` reads: the HSA size in hex, 0 if there is none or it was released."""
    if dump.hsa is None or dump.hsa.released:
        return "0\n"
    return f"{dump.machine.hsa_size:x}\n"


def build_zcore(dump: Dump) -> Directory:
    """Return the /zcore directory of *dump*."""
    d = Directory("zcore")
    # both built at the first read: their sizes are known without them
    memory = dump.machine.memory
    d.add(File("mem", LazyFile(DF_S390_HDR_SIZE + dump.machine.memory_end, lambda: build_mem(dump))))
    d.add(File("memmap", LazyFile(CHUNK_INFO_SIZE * len(memory),
                                  lambda: ExtentFile([BytesExtent(memmap_text(memory).encode())]))))
    d.add(text_file("reipl", dump.report.reipl_block or b""))
    async def release(data: bytes) -> None:
        """Release the HSA on "0" (with or without a newline)."""
        if data not in (b"0", b"0\n"):
            raise InputError(f"write 0 to release the HSA, not {data[:16]!r}")
        await dump.release_hsa()
    d.add(File("hsa", LiveText(lambda: hsa_text(dump)), write=release if dump.hsa is not None else None))
    return d
