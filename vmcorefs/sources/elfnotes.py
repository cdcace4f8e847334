# SPDX-License-Identifier: MIT
"""
CPU states from an ELF core
---------------------------

The ``vmcorefs.sources.elfnotes`` module takes the CPU register notes of an
s390x ELF core file (read by :mod:`.elfread`, with pyelftools) or of a
kdump-compressed file, and turns each CPU into what the machine description
holds: a 512-byte store-status save area and 512 bytes of vector registers
(``vmcorefs emulate --cpus-from-elf``). Two producers are understood
(reference section 7):

kernel
    ``/proc/vmcore`` (or a copy): per CPU NT_PRSTATUS, NT_PRFPREG, TIMER,
    TODCMP, TODPREG, CTRS, PREFIX, VXRS_HIGH, VXRS_LOW; ``pr_pid`` big-endian;
    NT_S390_TODCMP holds the raw save-area bytes (what store status put at
    0x1330), copied as they are.
qemu
    QEMU's ``dump-guest-memory`` of an s390x guest: the same notes in another
    order (PREFIX and CTRS before TIMER), an extra NT_S390_GS_CB, ``pr_pid``
    in the host's byte order (little-endian on x86), and NT_S390_TODCMP the
    full clock comparator, which SIGP STORE STATUS stores shifted right by 8:
    the save area gets ``value >> 8``.

The producer is recognised by the GS_CB note, the note order and the byte
order of ``pr_pid``. Note names may be ``CORE`` or ``LINUX``. Every problem
with the file is an :class:`~vmcorefs.errors.InputError` with a one-line
message.
"""

from __future__ import annotations

import dataclasses

from ..errors import InputError
from ..layouts import ELF_FPREGSET, ELF_PRSTATUS, NT, S390_NOTE_DESC, SAVE_AREA, vector_from_notes
from .elfread import ElfNote, parse_notes, read_elf_notes

__all__ = ("ElfCpu", "ElfNote", "PRODUCERS", "cpus_from_elf", "cpus_from_notes", "detect_producer",
           "parse_notes", "read_elf_notes")

PRODUCERS = ("kernel", "qemu")
NOTE_NAMES = (b"CORE", b"LINUX")  # register notes; other names (VMCOREINFO, ...) are skipped

# the notes that make up one CPU's save area, all required
REQUIRED = (NT.PRFPREG, NT.S390_TIMER, NT.S390_TODCMP, NT.S390_TODPREG, NT.S390_CTRS, NT.S390_PREFIX)
CPU_NOTE_TYPES = frozenset(REQUIRED) | {NT.PRSTATUS, NT.S390_VXRS_LOW, NT.S390_VXRS_HIGH, NT.S390_GS_CB}
DESC_SIZES = {NT.PRSTATUS: (ELF_PRSTATUS.size,), NT.PRFPREG: (ELF_FPREGSET.size,),
              NT.S390_TODPREG: (4, 8), NT.S390_GS_CB: (32,)}
DESC_SIZES.update({t: (layout.size,) for t, layout in S390_NOTE_DESC.items() if t not in DESC_SIZES})


@dataclasses.dataclass(frozen=True)
class ElfCpu:
    """
    One CPU of a core file.

    :param index: position in the core, from 0
    :param pid: ``pr_pid`` as the producer meant it (byte order undone)
    :param address: the CPU address the description gets
    :param save_area: 512-byte store-status save area
    :param vector: 512 bytes of V0..V31, or None (no vector notes)
    """

    index: int
    pid: int
    address: int
    save_area: bytes
    vector: bytes | None

    @property
    def prefix(self) -> int:
        """Return the CPU's prefix register (0: the CPU is not dumped)."""
        return SAVE_AREA.unpack(self.save_area)["prefix"]


def detect_producer(notes: list[ElfNote]) -> tuple[str, str]:
    """Return ``(producer, why)``: ``qemu`` or ``kernel``, judged by the notes."""
    types = [n.type for n in notes if n.name in NOTE_NAMES]
    if NT.S390_GS_CB in types:
        return "qemu", "it has an NT_S390_GS_CB note"
    prstatus = [n for n in notes if n.type == NT.PRSTATUS and n.name in NOTE_NAMES]
    if prstatus and len(prstatus[0].desc) >= ELF_PRSTATUS.size:
        raw = ELF_PRSTATUS.unpack(prstatus[0].desc)["pr_pid"]
        swapped = _swap32(raw)
        if not 0 <= raw < 1 << 16 and 0 <= swapped < 1 << 16:
            return "qemu", f"pr_pid is little-endian ({swapped})"
    # the kernel writes TIMER right after PRFPREG; QEMU PREFIX and CTRS first
    for a, b in zip(types, types[1:]):
        if a == NT.PRFPREG and b in (NT.S390_PREFIX, NT.S390_CTRS):
            return "qemu", "PREFIX/CTRS come before TIMER (QEMU's note order)"
        if a == NT.PRFPREG and b == NT.S390_TIMER:
            break
    return "kernel", "kernel note order, big-endian pr_pid, no GS_CB note"


def _swap32(value: int) -> int:
    """Return the signed 32-bit *value* read in the other byte order."""
    return int.from_bytes((value & 0xFFFFFFFF).to_bytes(4, "big"), "little", signed=True)


def cpus_from_notes(notes: list[ElfNote], where: str = "core", producer: str | None = None) -> tuple[list[ElfCpu], str]:
    """
    Return the CPUs of *notes* (in note order) and a line naming the producer.

    :param producer: ``kernel`` or ``qemu``; None: detect it
    :raises InputError: no NT_PRSTATUS, a CPU without one of its notes, a
        note of the wrong size
    """
    if producer is None:
        producer, why = detect_producer(notes)
    else:
        if producer not in PRODUCERS:
            raise InputError(f"producer must be one of {', '.join(PRODUCERS)}, not {producer!r}")
        why = "as given"
    groups: list[dict[int, ElfNote]] = []
    for n in notes:
        if n.name not in NOTE_NAMES or n.type not in CPU_NOTE_TYPES:
            continue
        if n.type == NT.PRSTATUS:
            groups.append({})
        elif not groups:
            raise InputError(f"{where}: note type {n.type:#x} at {n.offset:#x} comes before the first NT_PRSTATUS")
        group = groups[-1]
        if n.type in group:
            raise InputError(f"{where}: CPU {len(groups)} has two notes of type {n.type:#x} (at {n.offset:#x})")
        if len(n.desc) not in DESC_SIZES[n.type]:
            raise InputError(f"{where}: note type {n.type:#x} at {n.offset:#x} has {len(n.desc)} bytes, not "
                             f"{' or '.join(map(str, DESC_SIZES[n.type]))} (not an s390x core?)")
        group[n.type] = n
    if not groups:
        raise InputError(f"{where} has no NT_PRSTATUS note: no CPU registers")
    cpus = []
    for i, g in enumerate(groups):
        missing = [NT(t).name for t in REQUIRED if t not in g]
        if missing:
            raise InputError(f"{where}: CPU {i + 1} (NT_PRSTATUS at {g[NT.PRSTATUS].offset:#x}) has no "
                             f"NT_{missing[0]} note")
        cpus.append(_cpu(i, g, producer, where))
    # QEMU numbers its CPUs cpu_index + 1 = the CPU address + 1; the kernel 1..n over dumped CPUs only
    if producer == "qemu":
        addresses = [c.pid - 1 for c in cpus]
        if all(0 <= a < 1 << 16 for a in addresses) and len(set(addresses)) == len(addresses):
            cpus = [dataclasses.replace(c, address=a) for c, a in zip(cpus, addresses)]
    return cpus, f"{producer} ({why})"


def _cpu(index: int, g: dict[int, ElfNote], producer: str, where: str) -> ElfCpu:
    prs = ELF_PRSTATUS.unpack(g[NT.PRSTATUS].desc)
    fp = ELF_FPREGSET.unpack(g[NT.PRFPREG].desc)
    s390 = {t: S390_NOTE_DESC[t].unpack(g[t].desc) for t in REQUIRED if t in S390_NOTE_DESC}
    if producer == "qemu":
        # QEMU writes the clock comparator itself; store status keeps it >> 8
        todcmp = S390_NOTE_DESC[NT.S390_TODCMP].pack(todcmp=s390[NT.S390_TODCMP]["todcmp"] >> 8)
        pid = _swap32(prs["pr_pid"]) if not 0 <= prs["pr_pid"] < 1 << 16 else prs["pr_pid"]
    else:
        todcmp = g[NT.S390_TODCMP].desc  # the raw save-area bytes, never recomputed
        pid = prs["pr_pid"]
    save_area = SAVE_AREA.pack(
        psw=prs["psw"], gprs=prs["gprs"], acrs=prs["acrs"], fpc=fp["fpc"], fprs=fp["fprs"],
        timer=s390[NT.S390_TIMER]["timer"], todcmp=todcmp, todpreg=s390[NT.S390_TODPREG]["todpreg"],
        ctrs=s390[NT.S390_CTRS]["ctrs"], prefix=s390[NT.S390_PREFIX]["prefix"])
    vector = None
    low, high = g.get(NT.S390_VXRS_LOW), g.get(NT.S390_VXRS_HIGH)
    if (low is None) != (high is None):
        raise InputError(f"{where}: CPU {index + 1} has only one of NT_S390_VXRS_LOW and NT_S390_VXRS_HIGH")
    if low is not None and high is not None:
        vector = vector_from_notes(fp["fprs"], low.desc, high.desc)
    return ElfCpu(index, pid, index, save_area, vector)


def cpus_from_elf(path: str, producer: str | None = None) -> tuple[list[ElfCpu], str]:
    """
    Return the CPUs of the s390x ELF core *path* (kernel vmcore or QEMU
    ``dump-guest-memory``), boot CPU first as the core has it, and a line
    naming the producer.
    """
    return cpus_from_notes(read_elf_notes(path), path, producer)
