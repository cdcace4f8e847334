# SPDX-License-Identifier: MIT
"""
The emulated machine
--------------------

The ``vmcorefs.machine`` module provides :class:`Machine`, the crashed s390x
machine as hardware presents it to a dump tool, and :class:`OldMemory`, the
dump tool's view of the crashed kernel's memory.

A machine has detected memory ranges, the *real* memory at dump time (a
:class:`~vmcorefs.stores.Store`), maybe an HSA behind an SCLP device, and its
CPUs (what SIGP STORE STATUS would report for each). Its *environment* says
what is running on it now:

``standalone``
    a stand-alone dump tool / zfcpdump was IPLed: the machine copied old
    memory ``[0, hsa_size)`` to the HSA, and the real memory there now holds
    the dump tool (if a capture kernel was running then, the memory holds
    its swap: :class:`~vmcorefs.dump.Dump` finds and undoes it);
``kdump``
    the crashed kernel started its capture kernel: ``[0, S)`` and the
    crashkernel region ``[B, B+S)`` were swapped, the capture kernel runs at 0.
``file``
    nothing runs: the machine is a dump file a dump tool already wrote (the
    s390 dump format, :mod:`vmcorefs.sources.s390dump`). Its store *is* the
    old memory, as is: no HSA, no swap. Every CPU's save area is given, the
    boot CPU's too (the dump tool stored each at its prefix + 0x1200, where
    the file's header points), so nothing is read from old absolute 0x1200.

:class:`OldMemory` reads the *old* (crashed kernel's) memory at any address:
through the swap rules in kdump, through the HSA below ``hsa_size`` in a
stand-alone environment, from real memory otherwise.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import logging
import operator

import trio

from .errors import InputError, MemoryReadError
from .layouts import PAGE_SIZE, PARMAREA, PARMAREA_ADDRESS, VX_SAVE_AREA_SIZE
from .sclp import HsaReader, SdiasDevice
from .stores import Piece, RawFileStore, Read, Store, distinct

__all__ = ("Cpu", "ENVIRONMENTS", "KDUMP_VMCORE_KINDS", "KIND_KERNEL_VMCORE", "KIND_LIVE", "KIND_MAKEDUMPFILE",
           "Machine", "OldMemory", "merge_ranges", "oldmem_from_parmarea", "oldmem_plausible", "parmarea_oldmem")

log = logging.getLogger(__name__)

ENVIRONMENTS = ("standalone", "kdump", "file")
KIND_KERNEL_VMCORE = "kernel vmcore (ELF core)"  # Machine.kind of a copy of a capture kernel's /proc/vmcore
# where memory must end: /vmcore and /zcore/mem are files of (a little more
# than) that size, and a file's size and offsets are signed 64-bit numbers
MAX_MEMORY_END = 1 << 62
KIND_MAKEDUMPFILE = "makedumpfile kdump-compressed dump"  # makedumpfile's output of such a /proc/vmcore
KDUMP_VMCORE_KINDS = frozenset({KIND_KERNEL_VMCORE, KIND_MAKEDUMPFILE})  # a capture kernel left the crashkernel out
KIND_LIVE = "live system (/dev/mem)"  # Machine.kind of a running system's memory (sources.devmem)


@dataclasses.dataclass(frozen=True)
class Cpu:
    """
    One CPU of the machine.

    :param address: CPU address
    :param save_area: the 512-byte store-status save area SIGP STORE STATUS
        gives for this CPU; None for the boot CPU, whose registers are in old
        memory at absolute 0x1200 (environment ``file``: always given)
    :param vector: the 512 bytes of vector registers V0..V31 (SIGP STORE
        ADDITIONAL STATUS), or None if the source does not hold them (in
        kdump they are then read where the crashed kernel stored them)
    :param vector_where: where in the source *vector* was found, or why
        the source holds none for this CPU (for reports); empty: the
        source does not say
    """

    address: int
    save_area: bytes | None = None
    vector: bytes | None = None
    vector_where: str = ""

    def __post_init__(self) -> None:
        if self.save_area is not None and len(self.save_area) != 512:
            raise InputError(f"CPU {self.address}: a save area has 512 bytes, not {len(self.save_area)}")
        if self.vector is not None and len(self.vector) != VX_SAVE_AREA_SIZE:
            raise InputError(f"CPU {self.address}: vector registers take 512 bytes, not {len(self.vector)}")


def merge_ranges(ranges: list[tuple[int, int]], what: str = "memory") -> list[tuple[int, int]]:
    """
    Return *ranges* (``(start, end)``, end exclusive) checked and with
    adjacent ranges merged, as the kernel's memblock does.

    :raises InputError: unsorted, overlapping, empty or unaligned ranges
    """
    starts, ends = [r[0] for r in ranges], [r[1] for r in ranges]
    if ranges and not any(map((PAGE_SIZE - 1).__and__, itertools.chain(starts, ends))) \
            and all(map(operator.lt, starts, ends)) and all(map(operator.lt, ends, starts[1:])) \
            and ends[-1] <= MAX_MEMORY_END:
        return list(ranges)  # sorted, aligned, not empty, none touching: as they are (linear, mostly in C)
    out: list[tuple[int, int]] = []
    for start, end in ranges:
        if start % PAGE_SIZE or end % PAGE_SIZE:
            raise InputError(f"{what} range {start:#x}-{end:#x} is not page aligned")
        if end <= start:
            raise InputError(f"{what} range {start:#x}-{end:#x} is empty")
        if end > MAX_MEMORY_END:
            raise InputError(f"{what} range {start:#x}-{end:#x} ends beyond {MAX_MEMORY_END:#x} (4 EiB): "
                             "more than a dump file can hold (file offsets are signed 64-bit)")
        if out and start < out[-1][1]:
            raise InputError(f"{what} ranges are unsorted or overlap at {start:#x}")
        if out and start == out[-1][1]:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def oldmem_from_parmarea(raw: bytes) -> tuple[int, int] | None:
    """
    Return the crashkernel ``(base, size)`` kexec wrote into the parmarea
    bytes *raw* (OLDMEM_BASE/OLDMEM_SIZE at 0x10418), or None if the size
    is 0 (the kernel is not a capture kernel).
    """
    parm = PARMAREA.unpack(raw)
    base, size = parm["oldmem_base"], parm["oldmem_size"]
    return (base, size) if size else None


def parmarea_oldmem(real: Store) -> tuple[int, int] | None:
    """
    :func:`oldmem_from_parmarea` of the kernel at address 0 of *real*.

    :raises MemoryReadError: the parmarea cannot be read
    """
    return oldmem_from_parmarea(real.read(PARMAREA_ADDRESS, PARMAREA.size))


def oldmem_plausible(base: int, size: int, end: int) -> bool:
    """
    Whether OLDMEM_BASE/OLDMEM_SIZE look like what kexec writes: both set,
    page aligned, the crashkernel above ``[0, size)`` and below *end*.
    """
    return bool(base and size) and not base % PAGE_SIZE and not size % PAGE_SIZE and base >= size \
        and base + size <= end


class Machine:
    """
    The crashed machine as the dump tool finds it.

    :param memory: detected memory ranges ``(start, end)``, sorted
    :param real: real memory at dump time
    :param environment: ``standalone``, ``kdump`` or ``file`` (see the module docs)
    :param cpus: boot CPU first
    :param vector: the machine has the vector facility
    :param sclp: the SCLP device with the HSA (stand-alone only)
    :param oldmem: kdump only: the crashkernel ``(base, size)`` the capture
        kernel was given; None: read it from the capture kernel's parmarea
    :param hsa_options: keyword arguments for :class:`HsaReader`
    :param vmcoreinfo: the VMCOREINFO a core file source carries (it wins
        over what old memory points to)
    :param kind: what kind of source the machine comes from (``machine
        description``, ``raw memory image``, ``s390 dump file``, ...), for
        messages and reports
    :param source_header: environment ``file``: the fields of the dump
        file's header (``DF_S390_HDR``), which views that write the same
        format again keep (dump time, CPU id, real memory size, CPU count)
    """

    def __init__(self, *, memory: list[tuple[int, int]], real: Store, environment: str,
                 cpus: list[Cpu], vector: bool = False, sclp: SdiasDevice | None = None,
                 oldmem: tuple[int, int] | None = None, hsa_options: dict | None = None,
                 name: str = "machine", source_header: dict | None = None,
                 vmcoreinfo: bytes | None = None, kind: str = "machine description") -> None:
        if environment not in ENVIRONMENTS:
            raise InputError(f"environment must be one of {', '.join(ENVIRONMENTS)}, not {environment!r}")
        self.memory = merge_ranges(memory)
        self._starts = [start for start, _end in self.memory]  # for bisection
        self._memory_size: int | None = None
        if not self.memory:
            raise InputError("the machine has no memory")
        if self.memory[-1][1] > real.size:
            raise InputError(f"memory ends at {self.memory[-1][1]:#x} but the store ({real.name}) "
                             f"holds only {real.size:#x} bytes")
        if not cpus:
            raise InputError("the machine has no CPU")
        if len(cpus) > 4096:
            raise InputError(f"{len(cpus)} CPUs is more than an s390x machine has (at most 4096)")
        addresses = [c.address for c in cpus]
        if len(set(addresses)) != len(addresses):
            raise InputError("two CPUs have the same CPU address")
        if environment == "standalone" and sclp is None:
            raise InputError("a stand-alone environment needs an HSA (hsa size)")
        if environment == "kdump" and sclp is not None:
            raise InputError("a kdump environment has no HSA: the capture kernel reads memory directly")
        if environment == "kdump" and cpus[0].save_area is not None:
            raise InputError("in a kdump environment the boot CPU's registers are in old memory at 0x1200; "
                             "give no save_area for the first CPU")
        if environment == "kdump" and cpus[0].vector is not None:
            raise InputError("in a kdump environment the boot CPU's vector registers are in old memory (where "
                             "its lowcore's mcesad at 0x11B0 points); give no vector for the first CPU")
        if environment == "file":
            if sclp is not None or oldmem is not None:
                raise InputError("a dump file is old memory as is: it has no HSA and no crashkernel swap")
            missing = [c.address for c in cpus if c.save_area is None]
            if missing:
                raise InputError(f"a dump file gives every CPU's save area; CPU {missing[0]} has none")
        self.real = real
        self.environment = environment
        self.cpus = list(cpus)
        self.vector = vector
        self.sclp = sclp
        self.oldmem = oldmem
        self.hsa_options = dict(hsa_options or {})
        self.name = name
        self.kind = kind
        self.source_header = dict(source_header) if source_header is not None else None
        self.vmcoreinfo = vmcoreinfo
        self.page_filter = None  # a kdump-compressed source: what its dump level excluded (sources.kdumpfile)
        self.guest = None  # a running QEMU guest the memory is read from (sources.qemu.Guest), set by its source

    @property
    def memory_end(self) -> int:
        return self.memory[-1][1]

    @property
    def memory_size(self) -> int:
        if self._memory_size is None:
            self._memory_size = sum(end - start for start, end in self.memory)
        return self._memory_size

    @property
    def hsa_size(self) -> int:
        return self.sclp.pages * PAGE_SIZE if self.sclp else 0

    @property
    def boot_registers_in_old_memory(self) -> bool:
        """Whether the boot CPU's registers are read from old absolute 0x1200 (not given)."""
        return self.environment != "file"

    @property
    def is_kdump_vmcore(self) -> bool:
        """Whether the source is a capture kernel's /proc/vmcore, or made from one (the crashkernel left out of it)."""
        return self.kind in KDUMP_VMCORE_KINDS

    @property
    def is_live(self) -> bool:
        """Whether the source is a running system's memory (/dev/mem): nothing crashed, no CPU status."""
        return self.kind == KIND_LIVE

    @property
    def memory_changes(self) -> bool:
        """Whether the memory changes while it is read (a live system, a guest left running): nothing may be cached."""
        return self.is_live or (self.guest is not None and self.guest.live)

    def outside(self, address: int, length: int) -> bool:
        """Return whether ``[address, address+length)`` overlaps no detected memory."""
        return not any(start < address + length and address < end for start, end in self.memory)

    def contains(self, address: int, length: int) -> bool:
        """Return whether ``[address, address+length)`` lies in detected memory (O(log ranges))."""
        i = bisect.bisect_right(self._starts, address) - 1
        return i >= 0 and address + length <= self.memory[i][1]

    def find_oldmem(self) -> tuple[int, int] | None:
        """
        Return the crashkernel ``(base, size)`` of a kdump environment: as
        given, or else as kexec left it in the capture kernel's parmarea
        (OLDMEM_BASE/OLDMEM_SIZE at 0x10418), which is what the capture
        kernel itself uses. None outside kdump or if there is none.
        """
        if self.environment != "kdump":
            return None
        if self.oldmem is not None:
            return self.oldmem
        try:
            return parmarea_oldmem(self.real)
        except MemoryReadError as exc:
            raise InputError(f"cannot read the capture kernel's parmarea: {exc}") from exc

    def generation(self) -> int:
        """
        Return a number that changes whenever what the machine's memory
        reads as may have changed while mounted: a faults file (the store's
        or the SCLP's) changed, or a file its stores read changed under it
        (its size or modification time): :meth:`Store.generation
        <vmcorefs.stores.Store.generation>`. Re-reads the faults files that changed.
        """
        if self.sclp is None:
            return self.real.generation()
        return self.sclp.reload_faults() + self.real.generation() + self.sclp.hsa.generation()

    def files(self) -> list[RawFileStore]:
        """Return the files (:class:`RawFileStore`) the machine's memory and its HSA are read from, each once."""
        return distinct([*self.real.files(), *(self.sclp.hsa.files() if self.sclp is not None else ())])

    def close(self) -> None:
        self.real.close()
        if self.sclp is not None:
            self.sclp.hsa.close()


class OldMemory:
    """
    The crashed kernel's memory as a dump tool reads it.

    :param machine: the machine
    :param swap: kdump: the crashkernel ``(base, size)`` whose swap to undo
    :param hsa: the HSA reader (stand-alone environment)
    """

    def __init__(self, machine: Machine, swap: tuple[int, int] | None, hsa: HsaReader | None) -> None:
        self.machine = machine
        self.swap = swap
        self.hsa = hsa
        self.hsa_size = machine.hsa_size if hsa is not None else 0
        self._limiter: trio.CapacityLimiter | None = None
        if swap is not None:
            base, size = swap
            if base % PAGE_SIZE or size % PAGE_SIZE or size <= 0:
                raise InputError(f"crashkernel {base:#x}+{size:#x} is not page aligned")
            if base < size:
                raise InputError(f"crashkernel base {base:#x} lies below its size {size:#x}: "
                                 "the kdump swap cannot be undone")
            if base + size > machine.real.size:
                raise InputError(f"crashkernel {base:#x}-{base + size:#x} lies beyond memory")

    def translate(self, address: int, length: int) -> list[tuple[int, int, int]]:
        """Return ``(old_address, real_address, length)`` pieces covering the range."""
        if self.swap is None:
            return [(address, address, length)]
        base, size = self.swap
        out = []
        pos, end = address, address + length
        while pos < end:
            if pos < size:
                n = min(end, size) - pos
                out.append((pos, pos + base, n))
            elif base <= pos < base + size:
                n = min(end, base + size) - pos
                out.append((pos, pos - base, n))
            else:
                nxt = end
                if pos < base:
                    nxt = min(end, base)
                n = nxt - pos
                out.append((pos, pos, n))
            pos += n
        return out

    def pieces(self, address: int, length: int) -> list[Piece]:
        """
        Return what backs old memory ``[address, address+length)`` (see
        :meth:`Store.pieces`): the HSA only over SCLP (:class:`Read`), the
        rest what the real memory's store says of the translated range.
        """
        out: list[Piece] = []
        for _old, real, n in self.translate(address, length):
            if real < self.hsa_size:
                h = min(n, self.hsa_size - real)
                out.append(Read(h))
                real += h
                n -= h
            if n:
                out += self.machine.real.pieces(real, n)
        return out

    THREAD_MIN = 32 << 10  # real memory reads at least this long run in a worker thread
    THREADS = 4  # at most this many at once

    async def read(self, address: int, length: int) -> bytes:
        """
        Return *length* bytes of old memory at *address*. Long reads of real
        memory that must wait for a disk run in worker threads (at most
        :attr:`THREADS`), so that the event loop serves other requests
        meanwhile; generated memory, the holes of a sparse image and what
        the page cache holds of an image
        (:meth:`~vmcorefs.stores.Store.read_nowait`) are read here (threads
        would only share the interpreter's lock, and hand over in tens of
        microseconds: 1 MiB reads of a page-cached image without FUSE ran
        at 2.7-3.1 GB/s through a thread, 7.7-10 GB/s here).
        """
        parts = []
        for _old, real, n in self.translate(address, length):
            if real < self.hsa_size:
                h = min(n, self.hsa_size - real)
                parts.append(await self.hsa.read(real, h))
                real += h
                n -= h
            if n >= self.THREAD_MIN and self.machine.real.blocking:
                data = self.machine.real.read_nowait(real, n)  # a hole, or the page cache has it: no thread
                if data is None:
                    if self._limiter is None:
                        self._limiter = trio.CapacityLimiter(self.THREADS)
                    data = await trio.to_thread.run_sync(self.machine.real.read, real, n, limiter=self._limiter)
                parts.append(data)
            elif n:
                parts.append(self.machine.real.read(real, n))
        return parts[0] if len(parts) == 1 else b"".join(parts)
