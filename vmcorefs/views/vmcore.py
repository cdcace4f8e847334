# SPDX-License-Identifier: MIT
"""
/vmcore: the ELF core file of /proc/vmcore
------------------------------------------

The ``vmcorefs.views.vmcore`` module lays out a dump exactly as the s390
kernel's ``elfcorehdr_alloc`` (arch/s390/kernel/crash_dump.c) builds the ELF
header and ``fs/proc/vmcore.c`` then presents it (reference section 7):

- ELF header and program headers (PT_NOTE, then one PT_LOAD per exported
  memory range in address order), padded to a page;
- with PN_XNUM (65,535) program headers or more, which ``e_phnum`` cannot
  hold, ELF extended numbering as the gABI defines it and Linux writes it
  for large process core dumps (``fill_extnum_info`` in fs/binfmt_elf.c):
  ``e_phnum`` = PN_XNUM, and one SHT_NULL section header, right after the
  program headers, with the real count in ``sh_info`` (``e_shoff`` points
  at it, ``e_shnum`` = 1, ``e_shentsize`` = 64, ``e_shstrndx`` = 0,
  ``sh_size`` = 1). The kernel's /proc/vmcore has no such case (its
  ``e_phnum`` would wrap); below PN_XNUM the layout is the kernel's, byte
  for byte;
- the notes, padded to a page: NT_PRPSINFO; per dumped CPU (boot CPU first,
  numbered from 1) NT_PRSTATUS, NT_PRFPREG, TIMER, TODCMP, TODPREG, CTRS,
  PREFIX, and with the vector facility VXRS_HIGH, VXRS_LOW; VMCOREINFO;
- each range's memory from its page-aligned start, one after another.
"""

from __future__ import annotations

from ..dump import CpuState, Dump
from ..layouts import (ELF64_EHDR, ELF64_PHDR, ELF64_SHDR, ELF_FPREGSET, ELF_IDENT_S390X, ELF_PRPSINFO,
                       ELF_PRSTATUS, EM, ET_CORE, NT, PAGE_SIZE, PF_RWX, PN_XNUM, PT, SAVE_AREA, SHN_UNDEF, SHT_NULL,
                       note, page_align, vector_notes)
from .extents import BytesExtent, Extent, ExtentFile, MemoryExtent, ZeroExtent

__all__ = ("build_notes", "build_vmcore", "cpu_notes", "elf_header")

CORE = b"CORE"
LINUX = b"LINUX"
VMCOREINFO = b"VMCOREINFO"
# one PT_LOAD, packed positionally: 100,000 of them are built at mount time
LOAD_PHDR = ELF64_PHDR.packer("p_type", "p_flags", "p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz",
                              "p_align")


def cpu_notes(cpu: CpuState, number: int) -> bytes:
    """Return the notes of one CPU as ``fill_cpu_elf_notes`` writes them."""
    sa = cpu.save_area
    regs = SAVE_AREA.unpack(sa)
    off = SAVE_AREA.offset
    out = [
        note(CORE, NT.PRSTATUS, ELF_PRSTATUS.pack(pr_pid=number, psw=regs["psw"], gprs=regs["gprs"],
                                                   acrs=regs["acrs"])),
        note(CORE, NT.PRFPREG, ELF_FPREGSET.pack(fpc=regs["fpc"], fprs=regs["fprs"])),
        note(LINUX, NT.S390_TIMER, sa[off("timer"):off("timer") + 8]),
        # the raw save-area bytes, never recomputed (reference section 7)
        note(LINUX, NT.S390_TODCMP, sa[off("todcmp"):off("todcmp") + 8]),
        note(LINUX, NT.S390_TODPREG, sa[off("todpreg"):off("todpreg") + 4]),
        note(LINUX, NT.S390_CTRS, sa[off("ctrs"):off("ctrs") + 128]),
        note(LINUX, NT.S390_PREFIX, sa[off("prefix"):off("prefix") + 4]),
    ]
    if cpu.vector is not None:
        low, high = vector_notes(cpu.vector)
        out.append(note(LINUX, NT.S390_VXRS_HIGH, high))
        out.append(note(LINUX, NT.S390_VXRS_LOW, low))
    return b"".join(out)


def build_notes(cpus: list[CpuState], vmcoreinfo: bytes | None) -> bytes:
    """Return the PT_NOTE contents (without the terminating empty note)."""
    parts = [note(CORE, NT.PRPSINFO, ELF_PRPSINFO.pack(pr_sname=b"R", pr_fname=b"vmlinux"))]
    for number, cpu in enumerate(cpus, start=1):
        parts.append(cpu_notes(cpu, number))
    if vmcoreinfo is not None:
        parts.append(note(VMCOREINFO, 0, vmcoreinfo))
    return b"".join(parts)


def elf_header(phnum: int) -> tuple[bytes, bytes, int]:
    """
    Return ``(ELF header, tail, size)`` of a core with *phnum* program
    headers: *tail* is what follows the program headers (section header 0
    with extended numbering, else nothing), *size* that of all three.
    """
    ph_end = ELF64_EHDR.size + phnum * ELF64_PHDR.size
    common = dict(e_ident=ELF_IDENT_S390X, e_type=ET_CORE, e_machine=EM.S390, e_version=1,
                  e_phoff=ELF64_EHDR.size, e_ehsize=ELF64_EHDR.size, e_phentsize=ELF64_PHDR.size)
    if phnum < PN_XNUM:
        return ELF64_EHDR.pack(**common, e_phnum=phnum), b"", ph_end
    ehdr = ELF64_EHDR.pack(**common, e_phnum=PN_XNUM, e_shoff=ph_end, e_shentsize=ELF64_SHDR.size, e_shnum=1,
                           e_shstrndx=SHN_UNDEF)
    shdr = ELF64_SHDR.pack(sh_type=SHT_NULL, sh_size=1, sh_link=SHN_UNDEF, sh_info=phnum)
    return ehdr, shdr, ph_end + len(shdr)


def build_vmcore(dump: Dump, *, vaddr_base: int = 0) -> ExtentFile:
    """
    Return /vmcore of *dump* as an extent map. Time and memory are linear
    in ranges + CPUs.

    :param vaddr_base: added to p_paddr to give p_vaddr (0 before Linux 6.10,
        the identity-mapping base since)
    """
    ranges = dump.ranges
    phnum = 1 + len(ranges)
    ehdr, tail, head_size = elf_header(phnum)
    header_size = page_align(head_size)
    notes = build_notes(dump.cpus, dump.vmcoreinfo)
    notes_block = page_align(len(notes))
    phdrs = [ELF64_PHDR.pack(p_type=PT.NOTE, p_offset=header_size, p_filesz=len(notes), p_memsz=len(notes))]
    data_extents: list[Extent] = []
    offset = header_size + notes_block
    pack, read, pieces, mask = LOAD_PHDR.pack, dump.read, dump.pieces, PAGE_SIZE - 1
    for start, end in ranges:
        aligned = start & ~mask
        span = ((end + mask) & ~mask) - aligned
        size = end - start
        phdrs.append(pack(PT.LOAD, PF_RWX, offset + (start - aligned), vaddr_base + start, start, size, size,
                          PAGE_SIZE))
        data_extents.append(MemoryExtent(aligned, span, read, pieces))
        offset += span
    head = ehdr + b"".join(phdrs) + tail
    extents: list[Extent] = [
        BytesExtent(head), ZeroExtent(header_size - len(head)),
        BytesExtent(notes), ZeroExtent(notes_block - len(notes)),
    ] + data_extents
    return ExtentFile(extents)
