# SPDX-License-Identifier: MIT
"""
Raw memory images as a source
-----------------------------

The ``vmcorefs.sources.raw`` module opens a raw physical memory image (file
offset = absolute address, as QEMU's ``pmemsave`` or ``/dev/mem`` give it)
as a :class:`~vmcorefs.machine.Machine` without a description, deriving
what a description would say from the memory itself:

- *environment*: ``kdump`` if the kernel at address 0 is a capture kernel,
  i.e. its parmarea (0x10400) names the crashkernel kexec swapped
  (OLDMEM_BASE/OLDMEM_SIZE), else ``standalone`` (the image is the crashed
  system's memory, dumped through an emulated 32 MiB HSA);
- *memory*: the whole image, one range;
- *CPUs*: the boot CPU from old absolute 0x1200; the others from the
  crashed kernel's ``lowcore_ptr[]`` array, which VMCOREINFO locates
  (``SYMBOL(lowcore_ptr)``, ``LENGTH(lowcore_ptr)``): each online CPU's
  lowcore, whose save area at +0x1200 the crashed kernel filled when it
  stopped the CPUs (what SIGP STORE STATUS gives the capture kernel);
- *vector facility*: the boot CPU's control register 0 bit 46 (vector
  enablement), which a kernel sets exactly when the machine has it (also
  for QEMU's ELF dumps, which hold vector notes even for a CPU without the
  facility); the vector registers themselves are read where the crashed
  kernel stored them (:meth:`~vmcorefs.dump.Dump._with_vector`).

Kernel addresses are taken as physical when the kernel is not relocated
(``KERNELOFFSET=0``, identity mapping at 0, as on Linux before 6.10); else
only the boot CPU is found, with a warning.
"""

from __future__ import annotations

import logging
import os

from ..errors import InputError, MemoryReadError
from ..layouts import DEFAULT_HSA_SIZE, PAGE_SIZE, PARMAREA, PARMAREA_ADDRESS, SAVE_AREA, SAVE_AREA_OFFSET
from ..machine import Cpu, Machine, OldMemory, oldmem_plausible, parmarea_oldmem
from ..osinfo import analyse, parse_vmcoreinfo, vmcoreinfo_number
from ..sclp import SdiasDevice, dump_ipl, reader_defaults
from ..stores import RawFileStore, Store

__all__ = ("discover_cpus", "find_oldmem", "machine_from_memory", "open_raw_image", "run_without_loop",
           "vector_enabled")

log = logging.getLogger(__name__)

CR0_VECTOR = 1 << (63 - 46)  # CR0 bit 46: vector enablement control
MAX_CPUS = 4096


def vector_enabled(save_area: bytes) -> bool:
    """Return whether the CPU's control register 0 enables the vector facility."""
    return bool(SAVE_AREA.unpack(save_area)["ctrs"][0] & CR0_VECTOR)


async def discover_cpus(old: OldMemory, contains) -> tuple[bytes, list[bytes], str]:
    """
    Return the boot CPU's save area, the other CPUs' save areas and a note
    on how they were found.
    """
    boot = await old.read(SAVE_AREA_OFFSET, 512)
    boot_prefix = SAVE_AREA.unpack(boot)["prefix"]
    rep = await analyse(old.read, contains)
    if rep.vmcoreinfo is None:
        return boot, [], "boot CPU only (no VMCOREINFO: the other CPUs cannot be found)"
    info = parse_vmcoreinfo(rep.vmcoreinfo)
    offset = vmcoreinfo_number(info, "KERNELOFFSET")
    array = vmcoreinfo_number(info, "SYMBOL(lowcore_ptr)")
    count = vmcoreinfo_number(info, "LENGTH(lowcore_ptr)")
    if offset not in (0, None) or array is None or not count:
        return boot, [], "boot CPU only (VMCOREINFO gives no usable lowcore_ptr)"
    count = min(count, MAX_CPUS)
    if not contains(array, 8 * count):
        return boot, [], f"boot CPU only (lowcore_ptr at {array:#x} is outside memory)"
    raw = await old.read(array, 8 * count)
    others = []
    for i in range(count):
        lc = int.from_bytes(raw[8 * i:8 * i + 8], "big")
        if not lc or lc == boot_prefix:
            continue
        if lc % (2 * PAGE_SIZE) or not contains(lc + SAVE_AREA_OFFSET, 512):
            log.warning("lowcore_ptr[%d] = %#x is not a lowcore: CPU left out", i, lc)
            continue
        sa = await old.read(lc + SAVE_AREA_OFFSET, 512)
        if SAVE_AREA.unpack(sa)["prefix"] != lc:
            log.warning("CPU %d: the save area at %#x holds prefix %#x, not its own: left out",
                        i, lc + SAVE_AREA_OFFSET, SAVE_AREA.unpack(sa)["prefix"])
            continue
        others.append(sa)
    return boot, others, f"boot CPU from 0x1200, {len(others)} more from lowcore_ptr[] at {array:#x}"


def _crashed_boot_cpu(probe: Machine, oldmem: tuple[int, int], name: str) -> bytes:
    """Return the crashed kernel's boot CPU save area (old 0x1200, behind the capture kernel's swap)."""
    try:
        return run_without_loop(OldMemory(probe, oldmem, None).read(SAVE_AREA_OFFSET, SAVE_AREA.size))
    except MemoryReadError as exc:
        raise InputError(f"{name}: cannot read the crashed kernel's boot CPU at 0x1200: {exc.reason}") from exc


def run_without_loop(coro):
    """
    Run a coroutine that never waits (old memory without an HSA is read
    synchronously) to its end, without an event loop: sources are opened
    both from plain code and from inside the mount's trio loop.
    """
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("reading memory without an HSA unexpectedly waited")


def find_oldmem(store: Store, size: int) -> tuple[int, int] | None:
    """Return the crashkernel a capture kernel at address 0 was given (its parmarea), or None."""
    if size <= PARMAREA_ADDRESS + PARMAREA.size:
        return None
    try:
        oldmem = parmarea_oldmem(store)
    except MemoryReadError:
        return None
    if oldmem is None:
        return None
    if not oldmem_plausible(*oldmem, size):
        return None  # not what kexec writes: take the image as it is
    return oldmem


def machine_from_memory(store: Store, memory: list[tuple[int, int]], name: str,
                        cpus: list[Cpu] | None = None, vmcoreinfo: bytes | None = None,
                        vector: bool | None = None, kind: str = "raw memory image") -> Machine:
    """
    Return the machine whose memory *store* holds (see the module docs).

    :param cpus: the CPUs as a core file's notes give them (boot CPU first);
        None: find them in memory
    :param vmcoreinfo: the VMCOREINFO a core file carries
    :param kind: what the source is (see :class:`~vmcorefs.machine.Machine`)
    :param vector: whether the machine has the vector facility, if the
        source says so with authority (a kernel's own notes); None: as the
        kernel decides it, by the crashed boot CPU's control register 0
    """
    end = memory[-1][1]
    oldmem = find_oldmem(store, end)
    probe = Machine(memory=memory, real=store, environment="kdump", cpus=[Cpu(0)], oldmem=oldmem)

    async def find() -> tuple[bytes, list[bytes], str]:
        return await discover_cpus(OldMemory(probe, oldmem, None), probe.contains)
    if cpus is not None:
        if oldmem:  # a capture kernel runs on the boot CPU: its crashed state is in old memory
            if vector is None:
                vector = vector_enabled(_crashed_boot_cpu(probe, oldmem, name))
            # its registers and vector registers: the crashed kernel's, from old memory
            return Machine(memory=memory, real=store, environment="kdump", cpus=[Cpu(cpus[0].address)] + cpus[1:],
                           vector=vector, oldmem=oldmem, name=name, vmcoreinfo=vmcoreinfo, kind=kind)
        if vector is None:
            online = [c for c in cpus if c.save_area is not None and SAVE_AREA.unpack(c.save_area)["prefix"]]
            vector = bool(online) and vector_enabled(online[0].save_area)
        cpus = cpus if vector else [Cpu(c.address, c.save_area) for c in cpus]
        return Machine(memory=memory, real=store, environment="file", cpus=cpus, vector=vector, name=name,
                       kind=kind, vmcoreinfo=vmcoreinfo)
    try:
        boot, others, how = run_without_loop(find())
    except MemoryReadError as exc:
        raise InputError(f"{name}: cannot read the crashed kernel's lowcore: {exc.reason}") from exc
    log.info("%s: %s; CPUs: %s", name, "capture kernel running (kdump)" if oldmem else "stand-alone", how)
    found = [Cpu(0)] + [Cpu(i + 1, sa) for i, sa in enumerate(others)]
    if oldmem:
        return Machine(memory=memory, real=store, environment="kdump", cpus=found,
                       vector=vector_enabled(boot), oldmem=oldmem, name=name, kind=kind)
    hsa_size = min(DEFAULT_HSA_SIZE, end)
    real, hsa = dump_ipl(store, hsa_size)
    return Machine(memory=memory, real=real, environment="standalone", cpus=found,
                   vector=vector_enabled(boot), sclp=SdiasDevice(hsa), hsa_options=reader_defaults(hsa_size),
                   name=name, kind=kind)


def open_raw_image(path: str) -> Machine:
    """Return the machine a raw memory image shows (see the module docs)."""
    store = RawFileStore(path)
    size = store.size - store.size % PAGE_SIZE
    if size < 2 * PAGE_SIZE:
        store.close()
        raise InputError(f"{path} is too small ({store.size} bytes) for a memory image")
    try:
        return machine_from_memory(store, [(0, size)], os.path.basename(path))
    except BaseException:
        store.close()
        raise
