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
from ..osinfo import parse_vmcoreinfo
from ..units import size_text
from .extents import BytesExtent, ExtentFile, LazyFile, LiveText
from .tree import Directory, File, text_file

__all__ = ("SUMMARY_RANGES", "build_meminfo", "cpu_text", "memory_map_file", "summary_text")

SUMMARY_RANGES = 1000  # the summary lists this many ranges of each kind; memory_map has them all

ENVIRONMENT_NOTES = {
    "standalone": " (HSA behind SCLP)",
    "kdump": " (capture kernel running)",
    "file": " (a dump file: old memory as stored)",
}


def _ranges(ranges: list[tuple[int, int]]) -> list[str]:
    out = [f"  {s:#018x}-{e - 1:#018x}  {size_text(e - s)}" for s, e in ranges[:SUMMARY_RANGES]]
    if len(ranges) > SUMMARY_RANGES:
        out.append(f"  ... and {len(ranges) - SUMMARY_RANGES} more (all in memory_map)")
    return out


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
    if cpu.vector is not None:
        lines += [f"v{i}: {cpu.vector[i * 16:i * 16 + 16].hex()}" for i in range(32)]
    return "\n".join(lines) + "\n"


def summary_text(dump: Dump) -> str:
    """Return the human-readable summary."""
    m, rep = dump.machine, dump.report
    out = [f"machine: {m.name}",
           f"environment: {m.environment}" + ENVIRONMENT_NOTES.get(m.environment, ""),
           f"mode: {dump.mode}",
           f"why: {dump.why}",
           f"memory: {size_text(m.memory_size)} in {len(m.memory)} range(s), ends at {m.memory_end:#x}"]
    out += _ranges(m.memory)
    exported = sum(e - s for s, e in dump.ranges)
    out.append(f"exported: {size_text(exported)} in {len(dump.ranges)} range(s)")
    out += _ranges(dump.ranges)
    if m.sclp:
        out.append(f"hsa: {size_text(m.hsa_size)} ({m.hsa_size:#x})"
                   + (", released" if dump.hsa and dump.hsa.released else ""))
    if dump.capture:
        b, n = dump.capture
        out.append(f"capture kernel: was running when the dump was taken (its parmarea: OLDMEM_BASE {b:#x}, "
                   f"OLDMEM_SIZE {n:#x}); " + dump.capture_view)
    if dump.swap:
        out.append(f"kdump swap: old [0, {dump.swap[1]:#x}) is at real {dump.swap[0]:#x} and back")
    if rep.crashkernel:
        b, s = rep.crashkernel
        out.append(f"crashkernel: {b:#x}-{b + s - 1:#x} ({size_text(s)})")
    else:
        out.append("crashkernel: none")
    out.append(f"cpus: {len(dump.all_cpus)} ({len(dump.cpus)} dumped), vector registers: "
               f"{'yes' if m.vector else 'no'}")
    for i, c in enumerate(dump.all_cpus):
        regs = c.regs
        out.append(f"  cpu {c.address}: prefix {regs['prefix']:#010x} psw {regs['psw'][0]:016x} "
                   f"{regs['psw'][1]:016x}{'  (boot)' if i == 0 else ''}")
    if rep.header:
        h = rep.header
        out.append(f"os_info: at {rep.os_info_ptr:#x}, version {h['version_major']}.{h['version_minor']}, "
                   f"checksum {h['csum']:#010x} ({'valid' if rep.valid else 'INVALID'})")
        for e in rep.entries:
            if e.present:
                verdict = "OK" if e.ok else f"BAD: {e.problem}"
                out.append(f"  entry {e.index} {e.name}: addr {e.addr:#x} size {e.size} "
                           f"csum {e.csum:#010x} {verdict}")
            elif e.index < 2:
                out.append(f"  entry {e.index} {e.name}: absent")
    else:
        out.append(f"os_info: none ({rep.os_info_ptr or 0:#x} at lowcore 0xE18)")
    out.append(f"vmcoreinfo: {rep.vmcoreinfo_source}")
    if rep.vmcoreinfo:
        release = parse_vmcoreinfo(rep.vmcoreinfo).get("OSRELEASE")
        if release is not None:
            out.append(f"kernel: {release}")
    out.append("reipl_block: " + (f"{len(rep.reipl_block)} bytes at {rep.ipib_addr:#x}"
                                   if rep.reipl_block else "none"))
    out.append("checks:")
    out += [f"  {c.line()}" for c in rep.checks]
    return "\n".join(out) + "\n"


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
    summary: dict[bool, str] = {}

    def summary_now() -> str:
        """The summary, made again only when the HSA was released."""
        released = dump.hsa is not None and dump.hsa.released
        if released not in summary:
            summary.clear()
            summary[released] = summary_text(dump)
        return summary[released]
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
