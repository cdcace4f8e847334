# SPDX-License-Identifier: MIT
"""
The dump
--------

The ``vmcorefs.dump`` module provides :class:`Dump`: what a dump tool
derives from a :class:`~vmcorefs.machine.Machine` before it writes anything,
the neutral model every view is built from (zgetdump's ``dfi`` side):

- the dump mode (``kdump`` or ``standalone``) and why;
- in a stand-alone dump (or a dump file one wrote), whether a kdump
  capture kernel was running (its parmarea names the crashkernel,
  OLDMEM_BASE/SIZE at 0x10418): then the crashed kernel's memory is read
  with the swap undone and its boot CPU's registers from old 0x1200, as
  zgetdump's ``--select prod`` does, when its kdump setup verifies;
- the exported memory ranges (kdump: detected memory minus the crashkernel);
- old memory access (:class:`~vmcorefs.machine.OldMemory`);
- the CPUs' save areas, boot CPU first (its registers from old absolute
  0x1200, the others' from SIGP STORE STATUS; from a dump file each one as
  the file gives it), and vector registers;
- VMCOREINFO, the re-IPL block and the os_info report;
- the time of the dump (a TOD clock value, taken once) and the HSA release
  that zcore's ``hsa`` file offers.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Awaitable, Callable

from .errors import InputError, MemoryReadError
from .layouts import (LC, MCESA_ORIGIN_MASK, PARMAREA, PARMAREA_ADDRESS, SAVE_AREA, SAVE_AREA_OFFSET, VX_SAVE_AREA_SIZE,
                      dump_vx_save_area, tod_from_unix)
from .machine import Cpu, Machine, OldMemory, oldmem_from_parmarea, oldmem_plausible
from .osinfo import Check, OsInfoReport, analyse
from .sclp import HsaReader
from .stores import Piece

__all__ = ("CpuState", "Decision", "Dump", "MODES", "decide", "read_cpus")

log = logging.getLogger(__name__)

MODES = ("auto", "kdump", "standalone")


@dataclasses.dataclass(frozen=True)
class CpuState:
    """
    A dumped CPU: its address, 512-byte save area and vector registers.

    :param vector: V0..V31 (512 bytes), or None without the vector facility
    :param vector_from: where the vector registers were read
    :param vector_missing: why the CPU's vector registers cannot be had (then
        *vector* is zeros, to keep the layout of the notes), or None
    :param vx_save_area: where the s390 dump format puts the CPU's vector
        registers (the address its lowcore holds at 0x11B0 in the memory the
        dump shows, if zgetdump takes it: :func:`_vx_save_area`), or None
    """

    address: int
    save_area: bytes
    vector: bytes | None
    vector_from: str = ""
    vector_missing: str | None = None
    vx_save_area: int | None = None

    @property
    def regs(self) -> dict:
        return SAVE_AREA.unpack(self.save_area)

    @property
    def prefix(self) -> int:
        return self.regs["prefix"]


@dataclasses.dataclass(frozen=True)
class Decision:
    """
    What a dump tool decides from a machine and the mode asked for
    (:func:`decide`): nothing in it changes afterwards.

    :param mode: ``kdump`` or ``standalone``
    :param why: the reason, one line
    :param swap: the crashkernel ``(base, size)`` whose swap old memory is
        read through, or None
    :param capture: stand-alone or dump file: the crashkernel a capture
        kernel that was running names in its parmarea, or None
    :param report: the crashed kernel's os_info, checked, with the
        VMCOREINFO the mode takes
    :param ranges: the exported memory ranges (kdump: detected memory
        minus the crashkernel)
    """

    mode: str
    why: str
    swap: tuple[int, int] | None
    capture: tuple[int, int] | None
    report: OsInfoReport
    ranges: tuple[tuple[int, int], ...]


async def decide(machine: Machine, mode: str = "auto", hsa: HsaReader | None = None) -> Decision:
    """
    Examine *machine* and decide the dump mode.

    :param mode: ``auto`` (kdump if a valid kdump setup exists, else
        stand-alone), or force ``kdump`` / ``standalone``
    :param hsa: the HSA reader of a stand-alone machine
    :raises InputError: a forced kdump without a valid setup, or a machine
        whose old memory cannot be reached
    """
    if mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    swap = machine.find_oldmem()
    if machine.environment == "kdump" and swap is None:
        raise InputError("kdump environment, but the capture kernel's parmarea names no crashkernel "
                         "(OLDMEM_BASE/SIZE at 0x10418 are 0): give crashkernel in the description "
                         "or use environment = \"standalone\"")
    report = await analyse(OldMemory(machine, swap, hsa).read, machine.contains, expect_crashkernel=swap,
                           left_out=machine.outside if machine.is_kdump_vmcore else None)
    capture = (await _running_capture_kernel(machine, hsa)
               if machine.environment in ("standalone", "file") and not machine.is_live else None)
    capture_why = ""
    if capture is not None:
        # a stand-alone dump (or a dump file one wrote) caught a capture kernel
        # running: show the crashed kernel, the swap undone, when its os_info
        # verifies and the mode allows (what that kernel's /proc/vmcore shows)
        base, size = capture
        found = (f"kdump capture kernel was running (its parmarea names the crashkernel "
                 f"{base:#x}+{size:#x}, swapped with [0, {size:#x}))")
        if mode == "standalone":
            capture_why = f"; memory as it is: a {found}"
        else:
            crashed = await analyse(OldMemory(machine, capture, hsa).read, machine.contains,
                                    expect_crashkernel=capture)
            if crashed.kdump_ok:
                check = Check("capture kernel", True,
                              found + ": the crashed kernel's memory is read with the swap undone")
                swap, report = capture, dataclasses.replace(crashed, checks=[check] + crashed.checks)
            else:
                capture_why = (f"; a {found}, but the crashed kernel's os_info does not verify: "
                               + "; ".join(crashed.reasons or ["no crashkernel"]))

    kdump_ok = report.kdump_ok
    reasons = "; ".join(report.reasons or ["no crashkernel"])
    if mode == "auto" and machine.is_live:
        # nothing crashed: all memory as it is now, VMCOREINFO through lowcore 0xE0C (zgetdump's /dev/mem)
        chosen, why = "standalone", "the source is a live system (/dev/mem): all memory as it is now"
    elif mode == "auto":
        chosen = "kdump" if kdump_ok else "standalone"
        if kdump_ok and machine.is_kdump_vmcore:
            why = "the source is a kdump vmcore a capture kernel wrote (every os_info check passed)"
        else:
            why = ("a valid kdump setup exists (every os_info check passed)" if kdump_ok else
                   "no valid kdump setup: " + reasons) + capture_why
    elif mode == "kdump":
        if not kdump_ok:
            raise InputError(f"cannot force kdump mode: no valid kdump setup ({reasons}){capture_why}")
        chosen, why = "kdump", "forced with --mode kdump; the kdump setup is valid"
    else:
        chosen, why = "standalone", "forced with --mode standalone" + capture_why
    if chosen == "kdump":
        base, size = report.crashkernel
        ranges = _subtract(machine.memory, base, base + size)
    else:
        ranges = list(machine.memory)
    # a kdump kernel takes VMCOREINFO from os_info entry 0, a zfcpdump kernel
    # only through lowcore 0xE0C; a core file's own note wins over both
    report = report.with_vmcoreinfo(use_os_info=chosen == "kdump")
    if machine.vmcoreinfo is not None:
        report = dataclasses.replace(report, vmcoreinfo=machine.vmcoreinfo,
                                     vmcoreinfo_source="the source's VMCOREINFO note")
    return Decision(chosen, why, swap, capture, report, tuple(ranges))


async def _running_capture_kernel(machine: Machine, hsa: HsaReader | None) -> tuple[int, int] | None:
    """
    Return the crashkernel ``(base, size)`` that a capture kernel running at
    the time of a stand-alone dump names in its parmarea (OLDMEM_BASE/
    OLDMEM_SIZE at 0x10418, through the HSA), else None. Only what kexec can
    have written counts: both set, page aligned, the crashkernel above
    ``[0, size)`` and inside detected memory.
    """
    if not machine.contains(PARMAREA_ADDRESS, PARMAREA.size):
        return None  # too little memory for a kernel's parmarea
    try:
        raw = await OldMemory(machine, None, hsa).read(PARMAREA_ADDRESS, PARMAREA.size)
    except MemoryReadError as exc:
        log.warning("cannot read the parmarea at %#x, so cannot tell whether a capture kernel was running: %s",
                    PARMAREA_ADDRESS, exc)
        return None
    oldmem = oldmem_from_parmarea(raw)
    if oldmem is None or not oldmem_plausible(*oldmem, machine.real.size) or not machine.contains(*oldmem):
        return None
    return oldmem


async def read_cpus(machine: Machine, oldmem: OldMemory) -> list[CpuState]:
    """
    Return every CPU's state as the dump tool gets it, boot CPU first: its
    registers from old 0x1200 (unless a dump file gives them; behind a
    capture kernel's swap the file's boot CPU ran the capture kernel), the
    others' as SIGP STORE STATUS or the file gives them; and the vector
    registers (:func:`_with_vector`).
    """
    cpus = []
    for i, cpu in enumerate(machine.cpus):
        if i == 0 and (machine.boot_registers_in_old_memory or oldmem.swap is not None):
            try:
                sa = await oldmem.read(SAVE_AREA_OFFSET, SAVE_AREA.size)
            except MemoryReadError as exc:
                raise InputError(f"cannot read the boot CPU's registers at 0x1200: {exc.reason}") from exc
        else:
            sa = cpu.save_area
            if sa is None:
                raise InputError(f"CPU {cpu.address} has no save area (what SIGP STORE STATUS would give)")
        state = CpuState(cpu.address, sa, None)
        if machine.vector and state.prefix:
            state = await _with_vector(machine, oldmem, state, cpu, boot=i == 0)
            if state.vector_missing is None:
                state = await _vx_save_area(oldmem, state)
        elif machine.vector:  # not dumped
            state = dataclasses.replace(state, vector=bytes(VX_SAVE_AREA_SIZE))
        cpus.append(state)
    return cpus


async def _with_vector(machine: Machine, oldmem: OldMemory, state: CpuState, cpu: Cpu, boot: bool) -> CpuState:
    """
    Return *state* with its vector registers:

    - where the crashed kernel started kdump (a swap to undo), it stored
      every CPU's V0..V31 in that CPU's machine-check extended save area
      (``smp_store_status``, ``__machine_kdump``), whose address is at its
      lowcore + 0x11B0 (``mcesad``, low 10 bits masked off): read there for
      the boot CPU, which now runs the capture kernel, and for any other CPU
      whose SIGP STORE ADDITIONAL STATUS the source does not hold (it gives
      the same: a stopped CPU keeps its registers); in a dump file, for
      every CPU (what the file holds was found through its lowcores as they
      are, not behind the swap);
    - else as SIGP STORE ADDITIONAL STATUS, or the dump file, gives them. A
      stand-alone dump tool never reads them from memory: what is there is
      stale (the last kdump or machine check). A dump file's are not stale:
      the dump tool stored them when it wrote the file (an s390 dump file's
      vector save areas, :mod:`vmcorefs.sources.s390dump`).

    Where they cannot be had, zeros keep the notes' layout and
    ``vector_missing`` says why.
    """
    given = cpu.vector
    if oldmem.swap is not None and (boot or given is None or machine.environment == "file"):
        lowcore = state.prefix
        try:
            mcesad = int.from_bytes(await oldmem.read(lowcore + LC.MCESAD, 8), "big")
            origin = mcesad & MCESA_ORIGIN_MASK
            if not origin or not machine.contains(origin, VX_SAVE_AREA_SIZE):
                why = (f"the crashed kernel's lowcore at {lowcore:#x} names no machine-check extended save "
                       f"area (mcesad {mcesad:#x}" + (")" if not origin else ", outside memory)"))
                return dataclasses.replace(state, vector=bytes(VX_SAVE_AREA_SIZE), vector_missing=why)
            vx = await oldmem.read(origin, VX_SAVE_AREA_SIZE)
        except MemoryReadError as exc:
            why = f"cannot read them from the crashed kernel's memory: {exc}"
            return dataclasses.replace(state, vector=bytes(VX_SAVE_AREA_SIZE), vector_missing=why)
        return dataclasses.replace(state, vector=vx, vector_from=(
            f"the save areas the crashed kernel stored before kdump at {origin:#x} "
            f"(mcesad, lowcore {lowcore:#x} + {LC.MCESAD:#x})"))
    if given is not None:
        what = cpu.vector_where or ("the dump file" if machine.environment == "file" else
                                    "SIGP STORE ADDITIONAL STATUS")
        return dataclasses.replace(state, vector=given, vector_from=what)
    why = (f"the dump file holds none{': ' + cpu.vector_where if cpu.vector_where else ''}"
           if machine.environment == "file" else
           "the source does not give what SIGP STORE ADDITIONAL STATUS returns, and a stand-alone dump "
           "never takes them from memory (a save area there is stale)")
    return dataclasses.replace(state, vector=bytes(VX_SAVE_AREA_SIZE), vector_missing=why)


async def _vx_save_area(oldmem: OldMemory, state: CpuState) -> CpuState:
    """
    Return *state* with the address where the s390 dump format puts its
    vector registers, as zgetdump's writer finds it (``zdump/dfo_s390.c``
    ``add_cpu_to_dfo``): the u64 at 0x11B0 of the CPU's lowcore in the
    memory the dump shows, if ``dfi_cpu_lc_has_vx_sa`` takes it (not 0, a
    multiple of 1 KiB). Only the address is read here, never what is there.
    """
    try:
        value = int.from_bytes(await oldmem.read(state.prefix + LC.MCESAD, 8), "big")
    except MemoryReadError as exc:
        log.info("CPU %d: cannot read its lowcore's %#x (%s): /zcore/mem holds no vector save area for it",
                 state.address, LC.MCESAD, exc.reason)
        return state
    return dataclasses.replace(state, vx_save_area=dump_vx_save_area(value))


class Dump:
    """
    The crashed system as a dump tool sees it; build with :meth:`open`.

    Everything is decided when it is built (:class:`Decision`, the CPUs);
    what changes afterwards is only the HSA, when it is released
    (:meth:`release_hsa`, then the *on_change* callbacks are awaited).
    """

    def __init__(self, machine: Machine, decision: Decision, oldmem: OldMemory, cpus: list[CpuState],
                 hsa: HsaReader | None, tod: int) -> None:
        self.machine = machine
        self.decision = decision
        self.oldmem = oldmem
        self.hsa = hsa
        self.tod = tod  # TOD clock of the dump: the dump file's, else when it was opened
        self.all_cpus = list(cpus)
        self.cpus = [c for c in cpus if c.prefix != 0]  # a CPU whose prefix is 0 is not dumped
        self.on_change: list[Callable[[], Awaitable[None]]] = []

    @classmethod
    async def open(cls, machine: Machine, mode: str = "auto") -> "Dump":
        """
        Examine *machine*, decide the dump mode (:func:`decide`) and read the CPUs.

        :raises InputError: see :func:`decide`; an HSA that does not answer
        """
        hsa = None
        if machine.sclp is not None:
            hsa = HsaReader(machine.sclp, **machine.hsa_options)
            try:
                size = await hsa.query_size()
            except MemoryReadError as exc:
                raise InputError(f"cannot query the HSA size over SCLP: {exc.reason}") from exc
            if size != machine.hsa_size:
                raise InputError(f"SCLP reports an HSA of {size:#x} bytes, the machine has {machine.hsa_size:#x}")
        decision = await decide(machine, mode, hsa)
        oldmem = OldMemory(machine, decision.swap, hsa)
        cpus = await read_cpus(machine, oldmem)
        tod = (machine.source_header or {}).get("tod") or tod_from_unix(time.time_ns() // 1000)
        dump = cls(machine, decision, oldmem, cpus, hsa, tod)
        for c in dump.vector_missing:
            log.warning("CPU %d: no vector registers (its VXRS notes hold zeros): %s", c.address, c.vector_missing)
        return dump

    mode = property(lambda self: self.decision.mode, doc="``kdump`` or ``standalone``")
    why = property(lambda self: self.decision.why, doc="why that mode")
    swap = property(lambda self: self.decision.swap, doc="the crashkernel whose swap old memory is read through")
    capture = property(lambda self: self.decision.capture, doc="a running capture kernel's crashkernel")
    report = property(lambda self: self.decision.report, doc="the crashed kernel's os_info, checked")

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """The exported memory ranges."""
        return list(self.decision.ranges)

    @property
    def vector_missing(self) -> list[CpuState]:
        """The dumped CPUs whose vector registers are zeros in place of the unknown."""
        return [c for c in self.cpus if c.vector_missing is not None]

    @property
    def vector_text(self) -> str:
        """One line on the vector registers, for ``info`` and /meminfo/summary."""
        if not self.machine.vector:
            return "no (the machine has no vector facility: no VXRS notes)"
        missing = self.vector_missing
        if not missing:
            kinds = sorted({c.vector_from.partition(" at ")[0] for c in self.cpus})
            return "yes, from " + " and ".join(kinds)
        cpus = ", ".join(str(c.address) for c in missing)
        reasons = sorted({c.vector_missing for c in missing})
        return (f"yes, but NOT AVAILABLE for CPU {cpus} (their VXRS notes hold zeros, not registers): "
                + "; ".join(reasons))

    @property
    def capture_view(self) -> str:
        """With a capture kernel found (``capture``): which system the dump shows."""
        return "the crashed kernel is shown, the swap undone" if self.swap else "the machine is shown as it is"

    @property
    def vmcoreinfo(self) -> bytes | None:
        return self.report.vmcoreinfo

    async def read(self, address: int, length: int) -> bytes:
        """Return old memory (the crashed kernel's) at *address*."""
        return await self.oldmem.read(address, length)

    def pieces(self, address: int, length: int) -> list[Piece]:
        """Return what backs old memory at *address* (:meth:`OldMemory.pieces`)."""
        return self.oldmem.pieces(address, length)

    async def release_hsa(self) -> None:
        """
        Release the HSA, as writing 0 to zcore's ``hsa`` file does: from now
        on every read that needs it fails; then await the *on_change* callbacks.

        :raises InputError: there is no HSA (kdump, dump file)
        """
        if self.hsa is None or self.machine.sclp is None:
            raise InputError("there is no HSA to release")
        self.hsa.release()
        self.machine.sclp.release()
        log.info("HSA released: old memory below %#x can no longer be read", self.machine.hsa_size)
        for callback in list(self.on_change):
            await callback()


def _subtract(ranges: list[tuple[int, int]], cut_start: int, cut_end: int) -> list[tuple[int, int]]:
    out = []
    for start, end in ranges:
        if end <= cut_start or start >= cut_end:
            out.append((start, end))
            continue
        if start < cut_start:
            out.append((start, cut_start))
        if end > cut_end:
            out.append((cut_end, end))
    return out
