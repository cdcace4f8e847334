# SPDX-License-Identifier: MIT
"""
/meminfo: what the crashed kernel left for a dump tool
------------------------------------------------------

The ``vmcorefs.views.meminfo`` module builds the read-only ``/meminfo``
directory, made to be browsed with ls, cat and grep:

=================  =========================================================
``summary``        mode and why, memory, CPUs, crashkernel, os_info, entries
                   (recomputed at every read: it tells an HSA release)
``checks``         every check of the kdump decision, OK or BAD
``memory_map``     detected, exported and HSA ranges, one per line
``os_info``        the raw os_info page (4096 bytes), if there is one
``vmcoreinfo``     the crashed kernel's VMCOREINFO text, if found
``reipl_block``    the raw re-IPL block, if found
``cpus/cpuN``      decoded registers of each CPU (N = CPU address)
=================  =========================================================
"""

from __future__ import annotations

from ..dump import CpuState, Dump
from ..layouts import SAVE_AREA
from ..report import summary_text
from .extents import LiveText
from .tree import Directory, File, text_file

__all__ = ("build_meminfo", "cpu_text")

def cpu_text(cpu: CpuState, number: int | None, boot: bool, source: str | None = None) -> str:
    """Return the decoded registers of one CPU (*source*: where they came from, if not the usual)."""
    r = SAVE_AREA.unpack(cpu.save_area)
    if source is None:
        source = "registers from old absolute 0x1200" if boot else "SIGP STORE STATUS"
    lines = [f"cpu_address: {cpu.address}",
             f"role: boot CPU ({source})" if boot else f"role: {source}",
             f"dumped: {'yes, note #' + str(number) if number else 'no (prefix 0)'}",
             f"prefix: {r['prefix']:#010x}",
             f"psw: {r['psw'][0]:016x} {r['psw'][1]:016x}",
             f"psw_addr: {r['psw'][1]:#x}"]
    lines += [f"r{i}: {v:016x}" for i, v in enumerate(r["gprs"])]
    lines += [f"a{i}: {v:08x}" for i, v in enumerate(r["acrs"])]
    lines += [f"c{i}: {v:016x}" for i, v in enumerate(r["ctrs"])]
    lines += [f"fpc: {r['fpc']:08x}"]
    lines += [f"f{i}: {v:016x}" for i, v in enumerate(r["fprs"])]
    lines += [f"cpu_timer: {r['timer']:016x}",
              f"clock_comparator: {r['todcmp'].hex()} (raw save-area bytes)",
              f"tod_programmable: {r['todpreg']:08x}"]
    if cpu.vector is not None and number:
        if cpu.vector_missing is not None:
            lines.append(f"vector_registers: NOT AVAILABLE, the VXRS notes hold zeros: {cpu.vector_missing}")
        else:
            lines.append(f"vector_registers: from {cpu.vector_from}")
            lines += [f"v{i}: {cpu.vector[i * 16:i * 16 + 16].hex()}" for i in range(32)]
    return "\n".join(lines) + "\n"


def build_meminfo(dump: Dump) -> Directory:
    """Return the /meminfo directory of *dump*."""
    rep = dump.report
    d = Directory("meminfo")
    d.add(File("summary", LiveText(lambda: summary_text(dump))))
    d.add(text_file("checks", "".join(c.line() + "\n" for c in rep.checks)))
    mm = [f"detected {s:#018x} {e - s:#018x}" for s, e in dump.machine.memory]
    mm += [f"exported {s:#018x} {e - s:#018x}" for s, e in dump.ranges]
    if dump.machine.sclp:
        mm.append(f"hsa      {0:#018x} {dump.machine.hsa_size:#018x}")
    if rep.crashkernel:
        mm.append(f"crashkernel {rep.crashkernel[0]:#018x} {rep.crashkernel[1]:#018x}")
    d.add(text_file("memory_map", "\n".join(mm) + "\n"))
    if rep.page is not None:
        d.add(text_file("os_info", rep.page))
    if rep.vmcoreinfo is not None:
        d.add(text_file("vmcoreinfo", rep.vmcoreinfo))
    if rep.reipl_block is not None:
        d.add(text_file("reipl_block", rep.reipl_block))
    cpus = Directory("cpus")
    numbers = {id(c): i + 1 for i, c in enumerate(dump.cpus)}
    source = None if dump.machine.boot_registers_in_old_memory else "registers from its lowcore in the dump file"
    for i, c in enumerate(dump.all_cpus):
        cpus.add(text_file(f"cpu{c.address}", cpu_text(c, numbers.get(id(c)), i == 0, source)))
    d.add(cpus)
    return d
