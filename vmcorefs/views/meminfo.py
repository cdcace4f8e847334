# SPDX-License-Identifier: MIT
"""
/meminfo: what the crashed kernel left for a dump tool
------------------------------------------------------

The ``vmcorefs.views.meminfo`` module builds the read-only ``/meminfo``
directory, made to be browsed with ls, cat and grep:

=================  =========================================================
``summary``        mode and why, memory, CPUs, crashkernel, os_info, entries
                   (recomputed when the HSA is released; at most
                   SUMMARY_RANGES ranges listed per kind)
``checks``         every check of the kdump decision, OK or BAD
``memory_map``     detected, exported and HSA ranges, one per line (built at
                   the first read: its size is known without it)
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
from .extents import BytesExtent, ExtentFile, LazyFile, LiveText
from .tree import Directory, File, text_file

__all__ = ("build_meminfo", "cpu_text", "memory_map_file")

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


def memory_map_file(dump: Dump) -> LazyFile:
    """
    Return ``memory_map``: ``KIND START SIZE`` a line (kinds ``detected``,
    ``exported``, ``hsa``, ``crashkernel``; numbers as ``0x`` and 16 hex
    digits, so every line's length is known and the file's size with it).
    """
    rep = dump.report
    kinds = [("detected", dump.machine.memory), ("exported", dump.ranges)]
    extra = []
    if dump.machine.sclp:
        extra.append(("hsa     ", 0, dump.machine.hsa_size))
    if rep.crashkernel:
        extra.append(("crashkernel", rep.crashkernel[0], rep.crashkernel[1]))
    line = 2 * 19 + 1  # " 0x%016x" twice and the newline
    size = sum((len(kind) + line) * len(ranges) for kind, ranges in kinds)
    size += sum(len(kind) + line for kind, _a, _b in extra)

    def build() -> ExtentFile:
        mm = [f"{kind} {s:#018x} {e - s:#018x}\n" for kind, ranges in kinds for s, e in ranges]
        mm += [f"{kind} {a:#018x} {b:#018x}\n" for kind, a, b in extra]
        return ExtentFile([BytesExtent("".join(mm).encode())])
    return LazyFile(size, build)


def build_meminfo(dump: Dump) -> Directory:
    """Return the /meminfo directory of *dump*."""
    rep = dump.report
    d = Directory("meminfo")
    summary: dict[tuple, str] = {}
    guest = getattr(dump.machine, "guest", None)

    def summary_now() -> str:
        """The summary, made again only when the HSA was released or a running guest's state changed."""
        key = (dump.hsa is not None and dump.hsa.released, guest.gone_now() if guest is not None else None)
        if key not in summary:
            summary.clear()
            summary[key] = summary_text(dump)
        return summary[key]
    d.add(File("summary", LiveText(summary_now)))
    d.add(text_file("checks", "".join(c.line() + "\n" for c in rep.checks)))
    d.add(File("memory_map", memory_map_file(dump)))
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
