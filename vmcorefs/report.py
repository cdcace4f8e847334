# SPDX-License-Identifier: MIT
"""
The report of a dump
--------------------

The ``vmcorefs.report`` module says what a :class:`~vmcorefs.dump.Dump`
holds, in words: each fact (what runs on the machine, the kernel and crash
time, the crashkernel, the CPUs and their vector registers, os_info) is
worded once here, and rendered twice: as the table of ``vmcorefs info``
(:func:`info_text`) and as the ``key: value`` lines of /meminfo/summary
(:func:`summary_text`), which is made anew at every read (it tells an HSA
release).
"""

from __future__ import annotations

import bisect
import datetime

from .dump import Dump
from .osinfo import OsInfoReport, parse_vmcoreinfo
from .units import size_text

__all__ = ("ENVIRONMENTS", "SUMMARY_RANGES", "environment_text", "info_text", "summary_text")

# what runs on the machine now (Machine.environment), one wording for all
ENVIRONMENTS = {
    "standalone": "a stand-alone dump tool (zfcpdump) runs; old [0, {hsa:#x}) is in the HSA, read over SCLP",
    "kdump": "the capture kernel runs; old [0, crashkernel size) is swapped with the crashkernel",
    "file": "{kind}: old memory as a dump tool stored it",
}


def environment_text(dump: Dump) -> str:
    """``ENVIRONMENT: what runs``, with the HSA's release and a capture kernel found."""
    m = dump.machine
    if m.is_live:
        return "live: the system runs; its memory is read through /dev/mem as it is now (nothing crashed)"
    guest = getattr(m, "guest", None)
    if guest is not None and m.environment == "file":
        text = f"{m.environment}: {m.kind}: the guest's memory as it is, read in place, with QEMU's CPU states"
    else:
        text = f"{m.environment}: " + ENVIRONMENTS[m.environment].format(hsa=m.hsa_size, kind=m.kind)
    if dump.hsa is not None and dump.hsa.released:
        text += " (the HSA was released)"
    if dump.capture:
        text += "; a kdump capture kernel was running: " + dump.capture_view
    return text


def kernel_text(rep: OsInfoReport) -> str:
    return parse_vmcoreinfo(rep.vmcoreinfo).get("OSRELEASE", "unknown (no VMCOREINFO)")


def crashed_text(rep: OsInfoReport) -> str:
    crashtime = parse_vmcoreinfo(rep.vmcoreinfo).get("CRASHTIME", "")
    if not crashtime.isdigit():
        return "unknown"
    t = datetime.datetime.fromtimestamp(int(crashtime), datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC") + " (VMCOREINFO CRASHTIME)"


def crashkernel_text(rep: OsInfoReport) -> str:
    if not rep.crashkernel:
        return "none"
    b, n = rep.crashkernel
    return f"{b:#x}-{b + n - 1:#x} ({size_text(n)})"


def os_info_text(rep: OsInfoReport) -> str:
    if not rep.header:
        return f"none ({rep.os_info_ptr or 0:#x} at lowcore 0xE18)"
    h = rep.header
    return (f"at {rep.os_info_ptr:#x}, version {h['version_major']}.{h['version_minor']}, "
            f"checksum {h['csum']:#010x} ({'valid' if rep.valid else 'INVALID'})")


def memory_text(dump: Dump) -> str:
    m = dump.machine
    return f"{size_text(m.memory_size)} in {len(m.memory)} range(s), ends at {m.memory_end:#x}"


def cpus_text(dump: Dump) -> str:
    if dump.machine.is_live:
        return ("none dumped: a live system's CPUs run and have stored no status (/vmcore has no CPU notes, "
                "as zgetdump's /dev/mem input)")
    return f"{len(dump.all_cpus)} ({len(dump.cpus)} dumped), vector registers: {dump.vector_text}"


def _table(headers: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in [headers] + rows) for i in range(len(headers))]
    fmt = lambda r: indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [fmt(headers)] + [fmt(r) for r in rows]


def _memory_rows(dump: Dump) -> list[list[str]]:
    """
    Detected memory cut where export, crashkernel and HSA change, each piece
    labelled; O((ranges + cuts) log ranges).
    """
    m, rep = dump.machine, dump.report
    crash = rep.crashkernel
    hsa = m.hsa_size if m.sclp is not None else 0
    cuts = {p for r in dump.ranges for p in r}
    if crash:
        cuts |= {crash[0], crash[0] + crash[1]}
    if dump.swap:
        # where the swap begins and ends, and where the real address it reads crosses the HSA's end
        base, size = dump.swap
        cuts |= {size, base, base + size, hsa - base, base + hsa}
    if hsa:
        cuts.add(hsa)

    cut_list = sorted(cuts)
    exported_starts = [s for s, _e in dump.ranges]

    def exported(a: int) -> bool:
        i = bisect.bisect_right(exported_starts, a) - 1
        return i >= 0 and a < dump.ranges[i][1]

    def label(a: int) -> str:
        if exported(a):
            real = dump.oldmem.translate(a, 1)[0][1]
            if real < hsa:
                return "yes, from the HSA over SCLP" + (f" (at {real:#x}: kdump swap)" if real != a else "")
            if real != a:
                return f"yes, read at {real:#x} (kdump swap)"
            return "yes"
        if crash and crash[0] <= a < crash[0] + crash[1]:
            return "no: crashkernel"
        return "no"

    rows = []
    for start, end in m.memory:
        inside = cut_list[bisect.bisect_right(cut_list, start):bisect.bisect_left(cut_list, end)]
        points = [start] + inside + [end]
        pieces = list(zip(points, points[1:]))
        merged: list[list] = []
        for a, b in pieces:
            lab = label(a)
            if merged and merged[-1][2] == lab and merged[-1][1] == a:
                merged[-1][1] = b
            else:
                merged.append([a, b, lab])
        rows += [[f"{a:#018x}", f"{b - 1:#018x}", size_text(b - a), lab] for a, b, lab in merged]
    return rows


def info_text(dump: Dump, vmcore_size: int, source: str) -> str:
    """Return ``vmcorefs info``: a summary table, the memory ranges, the CPUs."""
    m, rep = dump.machine, dump.report
    bad = [c for c in rep.checks if not c.ok]
    summary = [
        ("machine", f"{m.name} ({source})"),
        ("kernel", kernel_text(rep)),
        ("crashed", crashed_text(rep)),
        ("mode", f"{dump.mode} - {dump.why}"),
        ("environment", environment_text(dump)),
    ] + ([("guest", m.guest.state_text())] if getattr(m, "guest", None) is not None else []) + [
        ("memory", memory_text(dump)),
        ("crashkernel", crashkernel_text(rep)),
        ("cpus", cpus_text(dump)),
        ("/vmcore", f"{vmcore_size} bytes ({size_text(vmcore_size)}), {len(dump.ranges)} PT_LOAD"),
    ] + ([("dump level", m.page_filter.text())] if m.page_filter is not None else []) + [
        ("os_info", os_info_text(rep)),
        ("vmcoreinfo", rep.vmcoreinfo_source),
        ("checks", f"{len(rep.checks) - len(bad)} OK, {len(bad)} BAD" + (" ('vmcorefs check' tells which)"
                                                                       if bad else "")),
    ]
    width = max(len(k) for k, _ in summary)
    out = [f"{k.ljust(width)}  {v}" for k, v in summary]
    out += ["", "Memory"]
    out += _table(["START", "END", "SIZE", "IN /vmcore"], _memory_rows(dump))
    numbers = {id(c): i + 1 for i, c in enumerate(dump.cpus)}
    rows = []
    for i, c in enumerate(dump.all_cpus):
        r = c.regs
        n = numbers.get(id(c))
        rows.append([str(c.address), "boot" if i == 0 else "", f"{r['prefix']:#010x}",
                     f"{r['psw'][0]:016x} {r['psw'][1]:016x}", f"#{n}" if n else "no (prefix 0)"])
    out += ["", "CPUs"]
    out += _table(["ADDRESS", "ROLE", "PREFIX", "PSW (MASK ADDRESS)", "NOTE"], rows)
    return "\n".join(out) + "\n"


SUMMARY_RANGES = 1000  # the summary lists this many ranges of each kind; /meminfo/memory_map has them all


def _ranges(ranges: list[tuple[int, int]]) -> list[str]:
    out = [f"  {s:#018x}-{e - 1:#018x}  {size_text(e - s)}" for s, e in ranges[:SUMMARY_RANGES]]
    if len(ranges) > SUMMARY_RANGES:
        out.append(f"  ... and {len(ranges) - SUMMARY_RANGES} more (all in memory_map)")
    return out


def summary_text(dump: Dump) -> str:
    """Return /meminfo/summary: the same facts as ``info``, one ``key: value`` a line, and more detail."""
    m, rep = dump.machine, dump.report
    out = [f"machine: {m.name}",
           f"environment: {environment_text(dump)}"]
    if getattr(m, "guest", None) is not None:  # made at every read: tells a resume or QEMU's exit
        out.append(f"guest: {m.guest.state_text()}")
        out.append("consistency: " + ("LIVE, every file's content is read from the running guest's memory as it "
                                      "changes" if m.guest.live else "a snapshot: the guest is stopped"))
    out += [f"mode: {dump.mode}",
            f"why: {dump.why}",
            f"memory: {memory_text(dump)}"]
    out += _ranges(m.memory)
    exported = sum(e - s for s, e in dump.ranges)
    out.append(f"exported: {size_text(exported)} in {len(dump.ranges)} range(s)")
    if m.page_filter is not None:
        out.append(f"dump level: {m.page_filter.text()}")
        out.append(f"excluded pages: {m.page_filter.excluded_pages}")
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
    out.append(f"crashkernel: {crashkernel_text(rep)}")
    out.append(f"cpus: {cpus_text(dump)}")
    for i, c in enumerate(dump.all_cpus if not m.is_live else []):
        regs = c.regs
        out.append(f"  cpu {c.address}: prefix {regs['prefix']:#010x} psw {regs['psw'][0]:016x} "
                   f"{regs['psw'][1]:016x}{'  (boot)' if i == 0 else ''}")
    out.append(f"os_info: {os_info_text(rep)}")
    for e in rep.entries if rep.header else []:
        if e.present:
            verdict = "OK" if e.ok else f"BAD: {e.problem}"
            out.append(f"  entry {e.index} {e.name}: addr {e.addr:#x} size {e.size} csum {e.csum:#010x} {verdict}")
        elif e.index < 2:
            out.append(f"  entry {e.index} {e.name}: absent")
    out.append(f"vmcoreinfo: {rep.vmcoreinfo_source}")
    if rep.vmcoreinfo:
        out.append(f"kernel: {kernel_text(rep)}")
        out.append(f"crashed: {crashed_text(rep)}")
    out.append("reipl_block: " + (f"{len(rep.reipl_block)} bytes at {rep.ipib_addr:#x}"
                                   if rep.reipl_block else "none"))
    out.append("checks:")
    out += [f"  {c.line()}" for c in rep.checks]
    return "\n".join(out) + "\n"
