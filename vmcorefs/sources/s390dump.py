# SPDX-License-Identifier: MIT
"""
s390 dump files
---------------

The ``vmcorefs.sources.s390dump`` module opens a dump in the s390 dump
format (s390-tools ``zdump/df_s390.h``, reference section 8), as zipl's
stand-alone dumpers and ``zgetdump`` write it and as ``/zcore/mem`` gives
it, as a :class:`~vmcorefs.machine.Machine` of environment ``file``: the
file *is* the old memory, there is no HSA to go through and no swap.

The file is a 4096-byte header (``DF_S390_HDR``), memory from address 0 to
``mem_size``, flat, and optionally a 16-byte end marker (``DUMP_END`` and a
TOD clock no older than the header's). zgetdump insists on the end marker;
vmcorefs does not, since zcore's ``mem`` (and ``/zcore/mem``) has none, but
if the file goes on after the memory, the marker must be there.

Checked, each with a one-line :class:`~vmcorefs.errors.InputError`: the
magic (the extended, segmented format of newer dumpers is refused), the
version (1 to 5, those s390-tools knows), header and page size, the 64-bit
architecture, ``mem_size`` and the CPU count. A file shorter than header +
``mem_size`` is a truncated dump: it opens with a warning, and its missing
part reads as an I/O error.

CPUs: a version 5 header lists the lowcore (prefix) address of each dumped
CPU in ``lc_vec``, boot CPU first; the registers are the save area at
prefix + 0x1200 in the file, where the dump tool stored them. A CPU whose
lowcore lies beyond the memory is left out with a warning. Versions 1 to 4
have no such list (zgetdump ignores ``lc_vec`` there): the boot CPU's
registers are taken from absolute 0x1200, where store status put them, and
the other CPUs are unknown. CPU addresses are not in the format: CPUs are
numbered from 0 in ``lc_vec`` order.

Vector registers (an extension of the format, zgetdump-compatible): the
format has no field for them, and the kernel's zcore never wrote them. But
zipl's stand-alone dumpers store each CPU's V0..V31 where its lowcore's
u64 at 0x11B0 points (``zipl/boot/stage2dump.c`` ``store_status``), and
zgetdump reads them there (``zdump/dfi.c`` ``lc2cpu_64``) and writes them
there (``zdump/dfo_s390.c`` ``add_cpu_to_dfo``), as ``/zcore/mem`` does.
So for every CPU of ``lc_vec``, as ``lc2cpu_64``: the address at prefix +
0x11B0 counts if it is not 0 and a multiple of 1 KiB
(``dfi_cpu_lc_has_vx_sa``; a kernel's mcesad with a length code in its low
bits names none), and if its 512 bytes lie in the dump's memory; V0..V15's
high halves are the floating point registers of the save area, the rest
comes from there (``VX_SAVE_AREA``). Otherwise the CPU has none, and
its :attr:`~vmcorefs.machine.Cpu.vector_where` says why.

This is not the rule that a stand-alone dump never takes vector registers
from memory (:func:`~vmcorefs.dump.read_cpus`): on a live machine what a
save area holds is stale (the last machine check or kdump), in a dump file
it is what the dump tool stored at dump time, next to the registers in the
lowcores. A file that the kernel's zcore wrote (zgetdump copying
``zcore/mem``) holds there what the crashed kernel's memory held, and
zgetdump takes that too.

The dump has VXRS notes where the kernel would write them, the boot CPU's
control register 0 enabling the vector facility, and where zgetdump would,
a CPU having a vector save area (``dfi_cpu_content_fac_add``). A CPU
without a vector save area then has zeros in its notes, as zgetdump writes
them for such a CPU, and the dump says its registers are not available.
(Where the facility is enabled but no CPU has a vector save area, zgetdump
writes no VXRS notes; vmcorefs writes them zero-filled, as the kernel's
layout has them, and says so.)
For a dump that caught a capture kernel running, shown as the crashed
kernel, the crashed kernel's own are read, where its lowcores' mcesad
points (see :class:`~vmcorefs.dump.Dump`).
"""

from __future__ import annotations

import logging
import os
from typing import Callable

from ..errors import InputError, MemoryReadError
from ..files import open_input
from ..layouts import (DF_S390_ARCH_64, DF_S390_CPU_MAX, DF_S390_EM, DF_S390_END_MARKER, DF_S390_HDR,
                       DF_S390_HDR_SIZE, DF_S390_MAGIC, DF_S390_MAGIC_EXT, LC, PAGE_SIZE, SAVE_AREA,
                       SAVE_AREA_OFFSET, VX_SAVE_AREA_SIZE, dump_vx_save_area, vector_with_fprs)
from ..machine import MAX_MEMORY_END, Cpu, Machine
from ..stores import Piece, RawFileStore, Store
from .raw import vector_enabled

__all__ = ("DumpFileStore", "SUPPORTED_VERSIONS", "open_s390_dump", "read_header")

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = range(1, 6)
MAGIC_BYTES = (DF_S390_MAGIC.to_bytes(8, "big"), DF_S390_MAGIC_EXT.to_bytes(8, "big"))


class DumpFileStore(Store):
    """The memory of an s390 dump file: address ``a`` is at file offset ``0x1000 + a``."""

    def __init__(self, path: str, mem_size: int) -> None:
        self.file = RawFileStore(path, size=DF_S390_HDR_SIZE + mem_size)
        self.size = mem_size
        self.name = self.file.name

    @property
    def file_size(self) -> int:
        return self.file.file_size

    def read(self, address: int, length: int) -> bytes:
        return self._in_file(self.file.read, address, length)  # type: ignore[return-value]

    def read_nowait(self, address: int, length: int) -> bytes | None:
        return self._in_file(self.file.read_nowait, address, length)

    def _in_file(self, read: Callable[[int, int], bytes | None], address: int, length: int) -> bytes | None:
        """*read* of the file at memory *address*; its errors name memory addresses, not file offsets."""
        self._check(address, length)
        try:
            return read(DF_S390_HDR_SIZE + address, length)
        except MemoryReadError as exc:
            raise MemoryReadError(exc.address - DF_S390_HDR_SIZE, exc.reason) from None

    def pieces(self, address: int, length: int) -> list[Piece]:
        return self.file.pieces(DF_S390_HDR_SIZE + address, length)

    def files(self) -> list[RawFileStore]:
        return [self.file]

    def read_file(self, offset: int, length: int) -> bytes:
        """Return up to *length* bytes at file *offset* (fewer at the end of the file)."""
        try:
            return os.pread(self.file.fd, length, offset)
        except OSError as exc:
            raise InputError(f"cannot read {self.file.path}: {exc.strerror}") from exc

    def close(self) -> None:
        self.file.close()


def read_header(path: str, data: bytes) -> dict:
    """
    Return the checked header fields of an s390 dump whose first bytes are *data*.

    :raises InputError: not a supported s390 dump (one line, with the reason)
    """
    if len(data) < DF_S390_HDR_SIZE:
        raise InputError(f"{path}: {len(data)} bytes are too short for an s390 dump "
                         f"(the header alone has {DF_S390_HDR_SIZE})")
    hdr = DF_S390_HDR.unpack(data)
    if hdr["magic"] == DF_S390_MAGIC_EXT:
        raise InputError(f"{path}: the extended s390 dump format (magic {DF_S390_MAGIC_EXT:#018x}) is not "
                         "supported: convert it with 'zgetdump -f s390' first")
    if hdr["magic"] != DF_S390_MAGIC:
        raise InputError(f"{path}: not an s390 dump (magic {hdr['magic']:#018x}, "
                         f"expected {DF_S390_MAGIC:#018x})")
    if hdr["version"] not in SUPPORTED_VERSIONS:
        raise InputError(f"{path}: s390 dump format version {hdr['version']} is not supported "
                         f"(known: {SUPPORTED_VERSIONS.start} to {SUPPORTED_VERSIONS.stop - 1})")
    if hdr["hdr_size"] != DF_S390_HDR_SIZE:
        raise InputError(f"{path}: s390 dump header size {hdr['hdr_size']:#x} is not {DF_S390_HDR_SIZE:#x}")
    if hdr["page_size"] != PAGE_SIZE:
        raise InputError(f"{path}: s390 dump page size {hdr['page_size']} is not {PAGE_SIZE}")
    if hdr["arch"] != DF_S390_ARCH_64:
        what = "a 31-bit (s390) dump" if hdr["arch"] == 1 else f"architecture {hdr['arch']}"
        raise InputError(f"{path}: {what} is not supported, only 64-bit (s390x, architecture 2)")
    size = hdr["mem_size"]
    if size == 0 or size % PAGE_SIZE:
        raise InputError(f"{path}: s390 dump memory size {size:#x} is not a positive multiple of {PAGE_SIZE}")
    if size > MAX_MEMORY_END:
        raise InputError(f"{path}: s390 dump memory size {size:#x} is beyond {MAX_MEMORY_END:#x} (4 EiB), more "
                         "than a dump file can hold")
    if hdr["version"] >= 5 and hdr["cpu_cnt"] > DF_S390_CPU_MAX:
        raise InputError(f"{path}: s390 dump header lists {hdr['cpu_cnt']} CPUs, "
                         f"more than its {DF_S390_CPU_MAX} lowcore slots")
    return hdr


def _check_end(path: str, store: DumpFileStore, hdr: dict) -> None:
    end = DF_S390_HDR_SIZE + hdr["mem_size"]
    size = store.file_size
    if size < end:
        log.warning("%s is truncated: it ends at %#x, the dump needs %#x bytes; memory from %#x on "
                    "reads as an I/O error", path, size, end, size - DF_S390_HDR_SIZE)
        return
    if size == end:
        return  # no end marker, as zcore's mem
    raw = store.read_file(end, DF_S390_EM.size)
    if len(raw) < DF_S390_EM.size or not raw.startswith(DF_S390_END_MARKER):
        raise InputError(f"{path}: {size - end} bytes follow the memory, but no end marker "
                         f"({DF_S390_END_MARKER.decode()} at {end:#x}): not a complete s390 dump")
    em = DF_S390_EM.unpack(raw)
    if hdr["tod"] and em["tod"] < hdr["tod"]:
        raise InputError(f"{path}: the end marker's time is older than the header's: not a complete s390 dump")


def _read_cpus(path: str, store: DumpFileStore, hdr: dict) -> list[Cpu]:
    cpus: list[Cpu] = []
    lc_vec = hdr["lc_vec"][:hdr["cpu_cnt"]] if hdr["version"] >= 5 else ()
    for i, prefix in enumerate(lc_vec):
        address = prefix + SAVE_AREA_OFFSET
        if address + SAVE_AREA.size > store.size:
            log.warning("%s: CPU %d's lowcore at %#x lies beyond the memory; the CPU is left out", path, i, prefix)
            continue
        try:
            sa = store.read(address, SAVE_AREA.size)
        except MemoryReadError as exc:
            log.warning("%s: cannot read CPU %d's registers at %#x (%s); the CPU is left out",
                        path, i, address, exc.reason)
            continue
        if SAVE_AREA.unpack(sa)["prefix"] != prefix:
            log.info("%s: CPU %d's lowcore at %#x holds prefix %#x", path, i, prefix, SAVE_AREA.unpack(sa)["prefix"])
        vector, where = _read_vector(store, prefix, sa)
        cpus.append(Cpu(len(cpus), sa, vector, where))
    if cpus:
        return cpus
    # no lowcore list (versions 1-4) or none usable: the boot CPU's status at absolute 0x1200
    try:
        return [Cpu(0, store.read(SAVE_AREA_OFFSET, SAVE_AREA.size), None,
                    "the dump lists no lowcore for the CPU, so it names no vector save area")]
    except MemoryReadError as exc:
        raise InputError(f"{path}: no CPU registers: cannot read absolute {SAVE_AREA_OFFSET:#x} "
                         f"({exc.reason})") from exc


def _read_vector(store: DumpFileStore, prefix: int, sa: bytes) -> tuple[bytes | None, str]:
    """
    Return the vector registers of the CPU whose lowcore is at *prefix* and
    save area *sa*, as zgetdump's ``lc2cpu_64`` takes them (module docs), and
    where they were found; or None and why there are none.
    """
    where = f"lowcore {prefix:#x} + {LC.MCESAD:#x}"
    try:
        value = int.from_bytes(store.read(prefix + LC.MCESAD, 8), "big")
    except MemoryReadError as exc:
        return None, f"cannot read {where}: {exc.reason}"
    origin = dump_vx_save_area(value)
    if origin is None:
        return None, (f"{where} holds {value:#x}, which names no vector save area "
                      "(zgetdump's rule: not 0 and a multiple of 1 KiB)")
    if origin + VX_SAVE_AREA_SIZE > store.size:
        return None, f"the vector save area at {origin:#x} ({where}) lies beyond the dump's memory"
    try:
        raw = store.read(origin, VX_SAVE_AREA_SIZE)
    except MemoryReadError as exc:
        return None, f"cannot read the vector save area at {origin:#x} ({where}): {exc.reason}"
    return (vector_with_fprs(raw, SAVE_AREA.unpack(sa)["fprs"]),
            f"the vector save areas of the dump file at {origin:#x} ({where})")


def open_s390_dump(path: str) -> Machine:
    """
    Return the machine an s390 dump file holds (environment ``file``).

    :raises InputError: not a usable s390 dump (one line, with the reason)
    """
    fd = open_input(path, "s390 dump", block_ok=True)
    try:
        data = os.pread(fd, DF_S390_HDR_SIZE, 0)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    hdr = read_header(path, data)
    store = DumpFileStore(path, hdr["mem_size"])
    try:
        _check_end(path, store, hdr)
        cpus = _read_cpus(path, store, hdr)
        version = hdr["version"]
        source_header = {
            "version": version,
            "tod": hdr["tod"],
            "cpu_id": hdr["cpu_id"],
            # as zgetdump: real memory size from version 3 on, real CPU count from 5 on
            "mem_size_real": hdr["mem_size_real"] if version >= 3 else 0,
            "real_cpu_cnt": hdr["real_cpu_cnt"] if version >= 5 else 0,
        }
        # the VXRS notes: where the kernel writes them (the facility, by the boot CPU's
        # control register 0) or where zgetdump does (a CPU with a vector save area)
        vector = vector_enabled(cpus[0].save_area) or any(c.vector is not None for c in cpus)
        return Machine(memory=[(0, hdr["mem_size"])], real=store, environment="file", cpus=cpus,
                       vector=vector, name=os.path.basename(path),
                       source_header=source_header, kind="s390 dump file")
    except BaseException:
        store.close()
        raise
