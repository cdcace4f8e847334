# SPDX-License-Identifier: MIT
"""
Byte layouts: ELF cores and their notes
---------------------------------------

The ``vmcorefs.layouts.elf`` module declares the ELF64 headers of a core
file (including extended numbering), the notes, the descriptors of the
s390 register notes, and the conversion between the vector save area and
the NT_S390_VXRS_LOW / NT_S390_VXRS_HIGH notes.

Sources: ``include/uapi/linux/elf.h``, the kernel's
``arch/s390/kernel/crash_dump.c``, ``fs/binfmt_elf.c``.
"""

from __future__ import annotations

import enum

from .base import Layout
from .lowcore import VX_SAVE_AREA

__all__ = (
    "ELF64_EHDR",
    "ELF64_NHDR",
    "ELF64_PHDR",
    "ELF64_SHDR",
    "ELFMAG",
    "ELF_FPREGSET",
    "ELF_IDENT_S390X",
    "ELF_PRPSINFO",
    "ELF_PRSTATUS",
    "EM",
    "ET_CORE",
    "NT",
    "PF_RWX",
    "PN_XNUM",
    "PT",
    "S390_NOTE_DESC",
    "SHN_UNDEF",
    "SHT_NULL",
    "note",
    "vector_from_notes",
    "vector_notes",
    "vector_with_fprs",
)

class PT(enum.IntEnum):
    NULL = 0
    LOAD = 1
    NOTE = 4


class EM(enum.IntEnum):
    S390 = 22


class NT(enum.IntEnum):
    PRSTATUS = 1
    PRFPREG = 2
    PRPSINFO = 3
    S390_TIMER = 0x301
    S390_TODCMP = 0x302
    S390_TODPREG = 0x303
    S390_CTRS = 0x304
    S390_PREFIX = 0x305
    S390_VXRS_LOW = 0x309
    S390_VXRS_HIGH = 0x30A
    S390_GS_CB = 0x30B


ELF64_EHDR = Layout("Elf64_Ehdr", 64, [
    (0x00, "e_ident", "16s"),
    (0x10, "e_type", "H"),
    (0x12, "e_machine", "H"),
    (0x14, "e_version", "I"),
    (0x18, "e_entry", "Q"),
    (0x20, "e_phoff", "Q"),
    (0x28, "e_shoff", "Q"),
    (0x30, "e_flags", "I"),
    (0x34, "e_ehsize", "H"),
    (0x36, "e_phentsize", "H"),
    (0x38, "e_phnum", "H"),
    (0x3A, "e_shentsize", "H"),
    (0x3C, "e_shnum", "H"),
    (0x3E, "e_shstrndx", "H"),
])
# ELFMAG, ELFCLASS64, ELFDATA2MSB, EV_CURRENT, ELFOSABI_NONE
ELF_IDENT_S390X = b"\x7fELF\x02\x02\x01\x00" + bytes(8)
ET_CORE = 4

ELF64_PHDR = Layout("Elf64_Phdr", 56, [
    (0x00, "p_type", "I"),
    (0x04, "p_flags", "I"),
    (0x08, "p_offset", "Q"),
    (0x10, "p_vaddr", "Q"),
    (0x18, "p_paddr", "Q"),
    (0x20, "p_filesz", "Q"),
    (0x28, "p_memsz", "Q"),
    (0x30, "p_align", "Q"),
])
PF_RWX = 7

ELF64_NHDR = Layout("Elf64_Nhdr", 12, [
    (0x0, "n_namesz", "I"),
    (0x4, "n_descsz", "I"),
    (0x8, "n_type", "I"),
])

# struct elf_prstatus for s390x: elf_prstatus_common, then s390_regs.
ELF_PRSTATUS = Layout("elf_prstatus", 336, [
    (0, "si_signo", "i"),
    (4, "si_code", "i"),
    (8, "si_errno", "i"),
    (12, "pr_cursig", "h"),
    (16, "pr_sigpend", "Q"),
    (24, "pr_sighold", "Q"),
    (32, "pr_pid", "i"),
    (36, "pr_ppid", "i"),
    (40, "pr_pgrp", "i"),
    (44, "pr_sid", "i"),
    # pr_utime, pr_stime, pr_cutime, pr_cstime: 4 x struct timeval at 48
    (112, "psw", "2Q"),  # pr_reg: s390_regs
    (128, "gprs", "16Q"),
    (256, "acrs", "16I"),
    (320, "orig_gpr2", "Q"),
    (328, "pr_fpvalid", "i"),
])

ELF_PRPSINFO = Layout("elf_prpsinfo", 136, [
    (0, "pr_state", "b"),
    (1, "pr_sname", "c"),
    (2, "pr_zomb", "b"),
    (3, "pr_nice", "b"),
    (8, "pr_flag", "Q"),
    (16, "pr_uid", "I"),
    (20, "pr_gid", "I"),
    (24, "pr_pid", "i"),
    (28, "pr_ppid", "i"),
    (32, "pr_pgrp", "i"),
    (36, "pr_sid", "i"),
    (40, "pr_fname", "16s"),
    (56, "pr_psargs", "80s"),
])

ELF_FPREGSET = Layout("elf_fpregset", 136, [
    (0, "fpc", "I"),
    (8, "fprs", "16Q"),
])

# Elf64_Shdr: only for ELF extended numbering. With PN_XNUM (0xffff) or more
# program headers, e_phnum = PN_XNUM and the real count is sh_info of the one
# section header, SHT_NULL, as fs/binfmt_elf.c's fill_extnum_info writes it
# (e_shnum = 1, e_shentsize = 64, e_shstrndx = SHN_UNDEF; sh_size = e_shnum,
# sh_link = e_shstrndx).
ELF64_SHDR = Layout("Elf64_Shdr", 64, [
    (0x00, "sh_name", "I"),
    (0x04, "sh_type", "I"),
    (0x08, "sh_flags", "Q"),
    (0x10, "sh_addr", "Q"),
    (0x18, "sh_offset", "Q"),
    (0x20, "sh_size", "Q"),
    (0x28, "sh_link", "I"),
    (0x2C, "sh_info", "I"),
    (0x30, "sh_addralign", "Q"),
    (0x38, "sh_entsize", "Q"),
])
ELFMAG = b"\x7fELF"
PN_XNUM = 0xFFFF
SHT_NULL = 0
SHN_UNDEF = 0

# Descriptors of the s390 register notes (arch/s390/kernel/crash_dump.c;
# QEMU target/s390x/arch_dump.c writes the same, except as noted in
# vmcorefs.sources.elfnotes). NT_S390_TODPREG has 8 bytes on some kernels:
# the register is the first 4.
S390_NOTE_DESC = {
    NT.S390_TIMER: Layout("s390_timer", 8, [(0, "timer", "Q")]),
    NT.S390_TODCMP: Layout("s390_todcmp", 8, [(0, "todcmp", "Q")]),
    NT.S390_TODPREG: Layout("s390_todpreg", 4, [(0, "todpreg", "I")]),
    NT.S390_CTRS: Layout("s390_ctrs", 128, [(0, "ctrs", "16Q")]),
    NT.S390_PREFIX: Layout("s390_prefix", 4, [(0, "prefix", "I")]),
    NT.S390_VXRS_LOW: Layout("s390_vxrs_low", 128, [(0, "vxrs_low", "16Q")]),  # low halves of V0..V15
    NT.S390_VXRS_HIGH: Layout("s390_vxrs_high", 256, [(0, "vxrs_high", "32Q")]),  # V16..V31
}


def vector_notes(vector: bytes) -> tuple[bytes, bytes]:
    """
    Return the NT_S390_VXRS_LOW and NT_S390_VXRS_HIGH descriptors of the
    vector registers *vector* (a :data:`VX_SAVE_AREA`): the low halves of
    V0..V15, and V16..V31 whole.
    """
    vrs = VX_SAVE_AREA.unpack(vector)["vrs"]
    low = S390_NOTE_DESC[NT.S390_VXRS_LOW].pack(vxrs_low=vrs[1:32:2])
    return low, vector[256:512]


def vector_from_notes(fprs, low: bytes, high: bytes) -> bytes:
    """
    Return the :data:`VX_SAVE_AREA` of the floating point registers *fprs*
    (the high halves of V0..V15) and the VXRS_LOW and VXRS_HIGH descriptors.
    """
    lows = S390_NOTE_DESC[NT.S390_VXRS_LOW].unpack(low)["vxrs_low"]
    highs = S390_NOTE_DESC[NT.S390_VXRS_HIGH].unpack(high)["vxrs_high"]
    return VX_SAVE_AREA.pack(vrs=[half for i in range(16) for half in (fprs[i], lows[i])] + list(highs))


def vector_with_fprs(vector: bytes, fprs) -> bytes:
    """
    Return the :data:`VX_SAVE_AREA` *vector* with the high halves of
    V0..V15 set to the floating point registers *fprs*, as the s390 dump
    format's vector save areas are read and written (s390-tools
    ``zdump/dfi.c`` ``dfi_cpu_vx_copy``).
    """
    vrs = list(VX_SAVE_AREA.unpack(vector)["vrs"])
    vrs[0:32:2] = fprs[:16]
    return VX_SAVE_AREA.pack(vrs=vrs)


def note(name: bytes, n_type: int, desc: bytes) -> bytes:
    """Return one ELF note: header, NUL-terminated name and descriptor, each padded to 4."""
    name_z = name + b"\0"
    hdr = ELF64_NHDR.pack(n_namesz=len(name_z), n_descsz=len(desc), n_type=n_type)
    pad_name = -len(name_z) % 4
    pad_desc = -len(desc) % 4
    return hdr + name_z + bytes(pad_name) + desc + bytes(pad_desc)
