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
                      tod_from_unix)
from .machine import Machine, OldMemory, oldmem_from_parmarea, oldmem_plausible
from .osinfo import Check, OsInfoReport, analyse
from .sclp import HsaReader

__all__ = ("CpuState", "Dump", "MODES")

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
    """

    address: int
    save_area: bytes
    vector: bytes | None
    vector_from: str = ""
    vector_missing: str | None = None

    @property
    def regs(self) -> dict:
        return SAVE_AREA.unpack(self.save_area)

    @property
    def prefix(self) -> int:
        return self.regs["prefix"]


class Dump:
    """The crashed system as a dump tool sees it; build with :meth:`open`."""

    machine: Machine
    mode: str
    why: str
    ranges: list[tuple[int, int]]
    oldmem: OldMemory
    cpus: list[CpuState]
    all_cpus: list[CpuState]
    report: OsInfoReport
    swap: tuple[int, int] | None
    capture: tuple[int, int] | None  # stand-alone: the crashkernel of a capture kernel that was running
    hsa: HsaReader | None
    tod: int  # TOD clock of the dump: the dump file's, else when it was opened
    on_change: list[Callable[[], Awaitable[None]]]  # awaited after the HSA was released

    @classmethod
    async def open(cls, machine: Machine, mode: str = "auto") -> "Dump":
        """
        Examine *machine* and decide the dump mode.

        :param mode: ``auto`` (kdump if a valid kdump setup exists, else
            stand-alone), or force ``kdump`` / ``standalone``
        :raises InputError: a forced kdump without a valid setup, or a
            machine whose old memory cannot be reached
        """
        if mode not in MODES:
            raise InputError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
        self = cls()
        self.machine = machine
        self.hsa = None
        self.on_change = []
        header = machine.source_header or {}
        self.tod = header.get("tod") or tod_from_unix(time.time_ns() // 1000)
        if machine.sclp is not None:
            self.hsa = HsaReader(machine.sclp, **machine.hsa_options)
            try:
                size = await self.hsa.query_size()
            except MemoryReadError as exc:
                raise InputError(f"cannot query the HSA size over SCLP: {exc.reason}") from exc
            if size != machine.hsa_size:
                raise InputError(f"SCLP reports an HSA of {size:#x} bytes, the machine has {machine.hsa_size:#x}")
        self.swap = machine.find_oldmem()
        if machine.environment == "kdump" and self.swap is None:
            raise InputError("kdump environment, but the capture kernel's parmarea names no crashkernel "
                             "(OLDMEM_BASE/SIZE at 0x10418 are 0): give crashkernel in the description "
                             "or use environment = \"standalone\"")
        self.oldmem = OldMemory(machine, self.swap, self.hsa)
        self.report = await analyse(self.oldmem.read, machine.contains, expect_crashkernel=self.swap)
        capture_why = await self._behind_a_capture_kernel(mode)

        kdump_ok = self.report.kdump_ok
        if mode == "auto":
            self.mode = "kdump" if kdump_ok else "standalone"
            self.why = ("a valid kdump setup exists (every os_info check passed)" if kdump_ok else
                        "no valid kdump setup: " + "; ".join(self.report.reasons or ["no crashkernel"])) + capture_why
        elif mode == "kdump":
            if not kdump_ok:
                raise InputError("cannot force kdump mode: no valid kdump setup ("
                                 + "; ".join(self.report.reasons or ["no crashkernel"]) + ")" + capture_why)
            self.mode, self.why = "kdump", "forced with --mode kdump; the kdump setup is valid"
        else:
            self.mode, self.why = "standalone", "forced with --mode standalone" + capture_why
        if self.mode == "kdump":
            # the exported memory is all detected memory minus the crashkernel
            base, size = self.report.crashkernel
            self.ranges = _subtract(machine.memory, base, base + size)
        else:
            self.ranges = list(machine.memory)
        # a kdump kernel takes VMCOREINFO from os_info entry 0, a zfcpdump
        # kernel only through lowcore 0xE0C
        self.report.select_vmcoreinfo(use_os_info=self.mode == "kdump")
        if machine.vmcoreinfo is not None:
            self.report.vmcoreinfo, self.report.vmcoreinfo_source = machine.vmcoreinfo, "the source's VMCOREINFO note"
        await self._read_cpus()
        return self

    async def _behind_a_capture_kernel(self, mode: str) -> str:
        """
        Stand-alone dump or dump file: if a capture kernel was running
        (:meth:`_running_capture_kernel`, kept in ``capture``), read the
        crashed kernel's memory with the swap undone when its os_info
        verifies and *mode* allows (what the capture kernel's /proc/vmcore
        would have shown). Return what to add to the reason for the mode.
        """
        machine = self.machine
        self.capture = (await self._running_capture_kernel()
                        if machine.environment in ("standalone", "file") else None)
        if self.capture is None:
            return ""
        base, size = self.capture
        found = (f"kdump capture kernel was running (its parmarea names the crashkernel "
                 f"{base:#x}+{size:#x}, swapped with [0, {size:#x}))")
        if mode == "standalone":
            return f"; memory as it is: a {found}"
        crashed = OldMemory(machine, self.capture, self.hsa)
        report = await analyse(crashed.read, machine.contains, expect_crashkernel=self.capture)
        if not report.kdump_ok:
            return (f"; a {found}, but the crashed kernel's os_info does not verify: "
                    + "; ".join(report.reasons or ["no crashkernel"]))
        report.checks.insert(0, Check("capture kernel", True,
                                      found + ": the crashed kernel's memory is read with the swap undone"))
        self.swap, self.oldmem, self.report = self.capture, crashed, report
        return ""

    async def _running_capture_kernel(self) -> tuple[int, int] | None:
        """
        Return the crashkernel ``(base, size)`` that a capture kernel running
        at the time of a stand-alone dump names in its parmarea (OLDMEM_BASE/
        OLDMEM_SIZE at 0x10418, through the HSA), else None. Only what kexec
        can have written counts: both set, page aligned, the crashkernel
        above ``[0, size)`` and inside detected memory.
        """
        if not self.machine.contains(PARMAREA_ADDRESS, PARMAREA.size):
            return None  # too little memory for a kernel's parmarea
        try:
            raw = await OldMemory(self.machine, None, self.hsa).read(PARMAREA_ADDRESS, PARMAREA.size)
        except MemoryReadError as exc:
            log.warning("cannot read the parmarea at %#x, so cannot tell whether a capture kernel was running: %s",
                        PARMAREA_ADDRESS, exc)
            return None
        oldmem = oldmem_from_parmarea(raw)
        if oldmem is None or not oldmem_plausible(*oldmem, self.machine.real.size) \
                or not self.machine.contains(*oldmem):
            return None
        return oldmem

    async def _read_cpus(self) -> None:
        machine = self.machine
        cpus = []
        for i, cpu in enumerate(machine.cpus):
            # the boot CPU: from old 0x1200, unless a dump file gives it; behind
            # a capture kernel's swap the file's boot CPU ran the capture kernel
            if i == 0 and (machine.boot_registers_in_old_memory or self.swap is not None):
                try:
                    sa = await self.oldmem.read(SAVE_AREA_OFFSET, SAVE_AREA.size)
                except MemoryReadError as exc:
                    raise InputError(f"cannot read the boot CPU's registers at 0x1200: {exc.reason}") from exc
            else:
                sa = cpu.save_area
                if sa is None:
                    raise InputError(f"CPU {cpu.address} has no save area (what SIGP STORE STATUS would give)")
            state = CpuState(cpu.address, sa, None)
            if machine.vector and state.prefix:
                state = await self._with_vector(state, cpu.vector, boot=i == 0)
            elif machine.vector:
                state = dataclasses.replace(state, vector=bytes(VX_SAVE_AREA_SIZE))
            cpus.append(state)
        self.all_cpus = cpus
        # a CPU whose prefix is 0 is not dumped
        self.cpus = [c for c in cpus if c.prefix != 0]
        for c in self.vector_missing:
            log.warning("CPU %d: no vector registers (its VXRS notes hold zeros): %s", c.address, c.vector_missing)

    async def _with_vector(self, state: CpuState, given: bytes | None, boot: bool) -> CpuState:
        """
        Return *state* with its vector registers:

        - where the crashed kernel started kdump (a swap to undo), it stored
          every CPU's V0..V31 in that CPU's machine-check extended save area
          (``smp_store_status``, ``__machine_kdump``), whose address is at
          its lowcore + 0x11B0 (``mcesad``, low 10 bits masked off): read
          there for the boot CPU, which now runs the capture kernel, and for
          any other CPU whose SIGP STORE ADDITIONAL STATUS the source does
          not hold (it gives the same: a stopped CPU keeps its registers);
        - else as SIGP STORE ADDITIONAL STATUS, or the dump file, gives them.
          A stand-alone dump tool never reads them from memory: what is
          there is stale (the last kdump or machine check).
        """
        machine = self.machine
        if self.swap is not None and (boot or given is None):
            lowcore = state.prefix
            try:
                raw = await self.oldmem.read(lowcore + LC.MCESAD, 8)
                origin = int.from_bytes(raw, "big") & MCESA_ORIGIN_MASK
                if not origin or not machine.contains(origin, VX_SAVE_AREA_SIZE):
                    why = (f"the crashed kernel's lowcore at {lowcore:#x} names no machine-check extended save "
                           f"area (mcesad {int.from_bytes(raw, 'big'):#x}"
                           + (")" if not origin else ", outside memory)"))
                    return dataclasses.replace(state, vector=bytes(VX_SAVE_AREA_SIZE), vector_missing=why)
                vx = await self.oldmem.read(origin, VX_SAVE_AREA_SIZE)
            except MemoryReadError as exc:
                why = f"cannot read them from the crashed kernel's memory: {exc}"
                return dataclasses.replace(state, vector=bytes(VX_SAVE_AREA_SIZE), vector_missing=why)
            return dataclasses.replace(state, vector=vx, vector_from=(
                f"the save areas the crashed kernel stored before kdump at {origin:#x} "
                f"(mcesad, lowcore {lowcore:#x} + {LC.MCESAD:#x})"))
        if given is not None:
            return dataclasses.replace(state, vector=given, vector_from=(
                "the dump file" if machine.environment == "file" else "SIGP STORE ADDITIONAL STATUS"))
        why = ("the dump file holds none" if machine.environment == "file" else
               "the source does not give what SIGP STORE ADDITIONAL STATUS returns, and a stand-alone dump "
               "never takes them from memory (a save area there is stale)")
        return dataclasses.replace(state, vector=bytes(VX_SAVE_AREA_SIZE), vector_missing=why)

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
