# SPDX-License-Identifier: MIT
"""
ELF cores as a source
---------------------

The ``vmcorefs.sources.elfcore`` module opens an s390x ELF core file as a
:class:`~vmcorefs.machine.Machine`: a kernel vmcore (a copy of
``/proc/vmcore``, or vmcorefs' own ``/vmcore``), QEMU's
``dump-guest-memory`` output or makedumpfile's ``-E`` output, read with
pyelftools (:mod:`vmcorefs.sources.elfread`). Memory is the PT_LOAD
segments by physical address (``p_memsz`` beyond ``p_filesz`` reads as
zeros, as ELF says); the
CPUs are the register notes (:mod:`vmcorefs.sources.elfnotes` knows both
producers' quirks); a VMCOREINFO note is kept as the dump's VMCOREINFO.

A core taken while a capture kernel ran (QEMU dumping a guest in kdump)
is a kdump machine: its boot CPU runs the capture kernel, so the crashed
state of that CPU comes from old memory. Any other core is old memory as
is (environment ``file``), which makes re-exporting a kernel vmcore give the
same /vmcore back, byte for byte.
"""

from __future__ import annotations

import bisect
import os
from typing import Callable, cast

from ..errors import InputError, MemoryReadError
from ..layouts import PAGE_SIZE, PT
from ..machine import KIND_KERNEL_VMCORE, MAX_MEMORY_END, Cpu, Machine
from ..stores import Piece, RawFileStore, Read, Store, Zeros
from .elfnotes import cpus_from_notes
from .elfread import read_elf_notes, read_program_headers
from .raw import machine_from_memory

__all__ = ("ElfMemoryStore", "open_elf_core")


class ElfMemoryStore(Store):
    """Physical memory of an ELF core's PT_LOAD segments; between them there is none."""

    def __init__(self, path: str, loads: list[dict]) -> None:
        self.name = os.path.basename(path)
        self.loads = sorted(loads, key=lambda ph: ph["p_paddr"])
        self.starts = [ph["p_paddr"] for ph in self.loads]
        self.size = max(ph["p_paddr"] + ph["p_memsz"] for ph in self.loads)
        file_size = os.path.getsize(path)
        for ph in self.loads:
            if ph["p_offset"] + ph["p_filesz"] > file_size:
                raise InputError(f"{path}: truncated: the PT_LOAD of {ph['p_paddr']:#x} ends at file offset "
                                 f"{ph['p_offset'] + ph['p_filesz']:#x}, beyond the {file_size:#x}-byte file")
        self.file = RawFileStore(path)  # opened once everything is checked

    def read(self, address: int, length: int) -> bytes:
        return cast(bytes, self._gather(address, length, self.file.read))  # a read is never None

    def read_nowait(self, address: int, length: int) -> bytes | None:
        """As :meth:`read` where the file's parts need no disk read (holes, the page cache); else None."""
        return self._gather(address, length, self.file.read_nowait)

    def _gather(self, address: int, length: int, read: Callable[[int, int], bytes | None]) -> bytes | None:
        parts = []
        pos, end = address, address + length
        while pos < end:
            i = bisect.bisect_right(self.starts, pos) - 1
            ph = self.loads[i] if i >= 0 else None
            if ph is None or pos >= ph["p_paddr"] + ph["p_memsz"]:
                raise MemoryReadError(pos, f"{self.name} holds no memory there")
            rel = pos - ph["p_paddr"]
            n = min(end, ph["p_paddr"] + ph["p_memsz"]) - pos
            in_file = max(0, min(n, ph["p_filesz"] - rel))
            if in_file:
                data = read(ph["p_offset"] + rel, in_file)
                if data is None:
                    return None
                parts.append(data)
            if n > in_file:
                parts.append(bytes(n - in_file))
            pos += n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def pieces(self, address: int, length: int) -> list[Piece]:
        """The loads' file regions, zeros past their ``p_filesz``; a read where no load is (it fails)."""
        out: list[Piece] = []
        pos, end = address, address + length
        # the loads are sorted by address: from the one that holds *address* (bisection) to the first beyond
        for k in range(max(bisect.bisect_right(self.starts, pos) - 1, 0), len(self.loads)):
            ph = self.loads[k]
            lo, hi = ph["p_paddr"], ph["p_paddr"] + ph["p_memsz"]
            if lo >= end:
                break
            if hi <= pos:
                continue
            if lo > pos:
                return [Read(length)]  # no memory there: let the read say so
            n = min(end, hi) - pos
            rel = pos - lo
            in_file = max(0, min(n, ph["p_filesz"] - rel))
            if in_file:
                out += self.file.pieces(ph["p_offset"] + rel, in_file)
            if n > in_file:
                out.append(Zeros(n - in_file))
            pos += n
        return out if pos == end else [Read(length)]

    def files(self) -> list[RawFileStore]:
        return [self.file]

    def close(self) -> None:
        self.file.close()


def open_elf_core(path: str) -> Machine:
    """Return the machine an s390x ELF core file holds."""
    phdrs = read_program_headers(path)
    loads = [ph for ph in phdrs if ph["p_type"] == PT.LOAD and ph["p_memsz"]]
    if not loads:
        raise InputError(f"{path} has no PT_LOAD segment: no memory")
    memory = []
    for ph in sorted(loads, key=lambda ph: ph["p_paddr"]):
        start, end = ph["p_paddr"], ph["p_paddr"] + ph["p_memsz"]
        if start % PAGE_SIZE or end % PAGE_SIZE:
            raise InputError(f"{path}: the PT_LOAD of {start:#x}-{end:#x} is not page aligned")
        if end > MAX_MEMORY_END:
            beyond = "2^64" if end >> 64 else f"{MAX_MEMORY_END:#x} (4 EiB), more than a dump file can hold"
            raise InputError(f"{path}: the PT_LOAD of {start:#x} ({ph['p_memsz']:#x} bytes) ends beyond {beyond}")
        memory.append((start, end))
    notes = read_elf_notes(path, phdrs)
    elf_cpus, producer = cpus_from_notes(notes, path)
    cpus = [Cpu(c.address, c.save_area, c.vector) for c in elf_cpus]
    vmcoreinfo = next((n.desc for n in notes if n.name == b"VMCOREINFO"), None)
    # the kernel writes vector notes exactly where the machine has the facility;
    # QEMU writes them for every CPU: decide as the kernel does (CR0)
    vector = any(c.vector is not None for c in cpus) if producer.startswith("kernel") else None
    store = ElfMemoryStore(path, loads)
    try:
        kind = KIND_KERNEL_VMCORE if producer.startswith("kernel") else "QEMU ELF core (dump-guest-memory)"
        return machine_from_memory(store, memory, os.path.basename(path), cpus, vmcoreinfo, vector, kind)
    except BaseException:
        store.close()
        raise
