# SPDX-License-Identifier: MIT
"""
Byte layouts
------------

The ``vmcorefs.layouts`` module declares every on-disk and in-memory
structure vmcorefs reads or writes, once, big-endian, with each field's
absolute offset. Nothing else in vmcorefs packs or unpacks these structures
by hand: it calls :meth:`Layout.pack` / :meth:`Layout.unpack`. ELF files
taken as input are the exception: pyelftools reads their ELF structures with
its own (:mod:`vmcorefs.sources.elfread`); the note descriptors in them
(``ELF_PRSTATUS``, the s390 register notes) are declared here.

Sources: the kernel's ``arch/s390/include/asm/lowcore.h``, ``os_info.h``,
``arch/s390/kernel/crash_dump.c``, ``include/uapi/linux/elf.h`` and s390-tools
``zdump/df_s390.h`` (see ``shared/docs/s390-dump-reference.md``).
"""

from __future__ import annotations

import enum
import struct
from typing import Any

__all__ = (
    "DEFAULT_HSA_SIZE",
    "DF_S390_ARCH_64",
    "DF_S390_CPU_MAX",
    "DF_S390_EM",
    "DF_S390_END_MARKER",
    "DF_S390_HDR",
    "DF_S390_HDR_SIZE",
    "DF_S390_MAGIC",
    "DF_S390_MAGIC_EXT",
    "DF_S390_VERSION",
    "DISKDUMP_HEADER",
    "DUMP_DH",
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
    "LC",
    "KDUMP_SIGNATURE",
    "KDUMP_SUB_HEADER",
    "LOWCORE_DUMP_INFO",
    "MDF_DATA_HEADER",
    "MDF_HEADER",
    "MDF_HEADER_SIZE",
    "MDF_SIGNATURE",
    "Layout",
    "MCESA_ORIGIN_MASK",
    "NT",
    "OS_INFO",
    "OS_INFO_ENTRIES_OFFSET",
    "OS_INFO_ENTRY",
    "OS_INFO_ENTRY_NAMES",
    "OS_INFO_MAGIC",
    "PAGE_DESC",
    "PAGE_DESC_STRUCT",
    "PAGE_SIZE",
    "PARMAREA",
    "PARMAREA_ADDRESS",
    "PF_RWX",
    "PN_XNUM",
    "PT",
    "S390_NOTE_DESC",
    "SAVE_AREA",
    "SAVE_AREA_OFFSET",
    "SHN_UNDEF",
    "SHT_NULL",
    "TOD_UNIX_EPOCH",
    "VX_SAVE_AREA",
    "VX_SAVE_AREA_SIZE",
    "cksm",
    "note",
    "page_align",
    "tod_from_unix",
    "vector_from_notes",
    "vector_notes",
)

PAGE_SIZE = 4096
DEFAULT_HSA_SIZE = 32 << 20  # the HSA of a zfcpdump machine (what vmcorefs emulates unless told otherwise)


def page_align(value: int) -> int:
    """Return *value* rounded up to a multiple of the page size."""
    return (value + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


class Layout:
    """
    A fixed-size big-endian structure declared as ``(offset, name, format)``.

    *format* is a :mod:`struct` code without byte order (``"Q"``, ``"16Q"``,
    ``"8s"``). Gaps between fields are zero padding. Array fields take and
    give tuples; scalar fields ints; ``s`` fields bytes.
    """

    def __init__(self, name: str, size: int, fields: list[tuple[int, str, str]]) -> None:
        self.name = name
        self.size = size
        self.fields: dict[str, tuple[int, struct.Struct]] = {}
        end = 0
        for offset, fname, fmt in sorted(fields):
            st = struct.Struct(">" + fmt)
            if offset < end or offset + st.size > size:
                raise ValueError(f"{name}.{fname} at {offset:#x} overlaps or overflows")
            end = offset + st.size
            self.fields[fname] = (offset, st)

    def offset(self, field: str) -> int:
        """Return the offset of *field*."""
        return self.fields[field][0]

    def pack(self, **values: Any) -> bytes:
        """Return the structure with the given fields set, the rest zero."""
        buf = bytearray(self.size)
        for fname, value in values.items():
            offset, st = self.fields[fname]
            if isinstance(value, (tuple, list)):
                st.pack_into(buf, offset, *value)
            else:
                st.pack_into(buf, offset, value)
        return bytes(buf)

    def packer(self, *fields: str) -> struct.Struct:
        """
        Return a :class:`struct.Struct` of the whole structure that packs
        (and unpacks) *fields*, given in offset order, positionally; the
        other bytes are zero. For tables of many entries (100,000 program
        headers), where :meth:`pack` per entry costs too much.
        """
        fmt, pos = ">", 0
        for fname in fields:
            offset, st = self.fields[fname]
            if offset < pos:
                raise ValueError(f"{self.name}: {fname} is not in offset order")
            fmt += (f"{offset - pos}x" if offset > pos else "") + st.format.lstrip(">")
            pos = offset + st.size
        return struct.Struct(fmt + (f"{self.size - pos}x" if self.size > pos else ""))

    def unpack(self, data: bytes, offset: int = 0) -> dict[str, Any]:
        """Return a dict of all fields of the structure at *offset* of *data*."""
        if len(data) - offset < self.size:
            raise ValueError(f"{self.name}: need {self.size} bytes, have {len(data) - offset}")
        out: dict[str, Any] = {}
        for fname, (foff, st) in self.fields.items():
            vals = st.unpack_from(data, offset + foff)
            out[fname] = vals[0] if len(vals) == 1 else vals
        return out


# --------------------------------------------------------------------------
# s390 lowcore (absolute addresses of the old kernel)


class LC(enum.IntEnum):
    """Absolute lowcore addresses a dump tool reads (reference section 2)."""

    AR_MODE_ID = 0x0A3  # 1 byte: 1 = z/Architecture (64-bit)
    IPIB = 0xE00  # u64 address of the re-IPL block
    IPIB_CHECKSUM = 0xE08  # u32
    VMCORE_INFO = 0xE0C  # u64, unaligned: address of the VMCOREINFO ELF note
    OS_INFO = 0xE18  # u64: address of the os_info page
    FPREGS_SAVE_AREA = 0x1200  # start of the 512-byte save area
    MCESAD = 0x11B0  # u64 of each CPU's lowcore (at its prefix): machine-check extended save area address


# What a crashed kernel leaves a dump tool in its absolute lowcore,
# 0xE00..0xE1F (offsets relative to 0xE00; the VMCOREINFO pointer is unaligned).
LOWCORE_DUMP_INFO = Layout("lowcore_dump_info", 0x20, [
    (0x00, "ipib", "Q"),  # 0xE00 address of the re-IPL block
    (0x08, "ipib_checksum", "I"),  # 0xE08
    (0x0C, "vmcore_info", "Q"),  # 0xE0C address of the VMCOREINFO ELF note
    (0x18, "os_info", "Q"),  # 0xE18 address of the os_info page
])

# mcesad: the save area's origin, and in the low bits a length code where the
# machine has guarded storage (arch/s390/include/asm/nmi.h MCESA_ORIGIN_MASK)
MCESA_ORIGIN_MASK = ~0x3FF & 0xFFFFFFFFFFFFFFFF


SAVE_AREA_OFFSET = 0x1200
VX_SAVE_AREA_SIZE = 512  # 32 vector registers of 16 bytes

# The store-status save area, 0x1200..0x13FF of a lowcore; offsets relative
# to 0x1200 (absolute offset in the comment).
SAVE_AREA = Layout("save_area", 512, [
    (0x000, "fprs", "16Q"),  # 0x1200 floating point registers 0-15
    (0x080, "gprs", "16Q"),  # 0x1280 general registers 0-15
    (0x100, "psw", "2Q"),  # 0x1300 PSW mask, address
    (0x118, "prefix", "I"),  # 0x1318 prefix register
    (0x11C, "fpc", "I"),  # 0x131C floating point control
    (0x124, "todpreg", "I"),  # 0x1324 TOD programmable register
    (0x128, "timer", "Q"),  # 0x1328 CPU timer
    (0x130, "todcmp", "8s"),  # 0x1330 clock comparator, raw as stored
    (0x140, "acrs", "16I"),  # 0x1340 access registers 0-15
    (0x180, "ctrs", "16Q"),  # 0x1380 control registers 0-15
])

# The kernel's parmarea at 0x10400 of a loaded kernel image (asm/setup.h);
# kexec fills OLDMEM_BASE/SIZE for a capture kernel.
PARMAREA = Layout("parmarea", 0x80, [
    (0x00, "ipl_device", "Q"),  # 0x10400
    (0x08, "initrd_start", "Q"),  # 0x10408
    (0x10, "initrd_size", "Q"),  # 0x10410
    (0x18, "oldmem_base", "Q"),  # 0x10418
    (0x20, "oldmem_size", "Q"),  # 0x10420
    (0x28, "kernel_version", "Q"),  # 0x10428
])
PARMAREA_ADDRESS = 0x10400

# --------------------------------------------------------------------------
# os_info (arch/s390/include/asm/os_info.h)

OS_INFO_MAGIC = 0x4F53494E464F535A  # "OSINFOSZ"
OS_INFO = Layout("os_info", 0x20, [
    (0x00, "magic", "Q"),
    (0x08, "csum", "I"),  # CKSM over 0x0C..0xFFF
    (0x0C, "version_major", "H"),
    (0x0E, "version_minor", "H"),
    (0x10, "crashkernel_addr", "Q"),
    (0x18, "crashkernel_size", "Q"),
])
OS_INFO_ENTRY = Layout("os_info_entry", 20, [
    (0x00, "addr", "Q"),
    (0x08, "size", "Q"),
    (0x10, "csum", "I"),
])
OS_INFO_ENTRIES_OFFSET = 0x20
OS_INFO_ENTRY_NAMES = (
    "vmcoreinfo", "reipl_block", "flags", "reserved", "identity_base",
    "kaslr_offset", "kaslr_offset_phys", "vmemmap", "amode31_start",
    "amode31_size", "image_start", "image_end", "image_phys",
)

# --------------------------------------------------------------------------
# ELF (include/uapi/linux/elf.h)


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

# The vector registers V0..V31 as SIGP STORE ADDITIONAL STATUS stores them:
# 16 bytes each, as 64 doublewords (V0 high, V0 low, V1 high, ...); the high
# halves of V0..V15 are the floating point registers.
VX_SAVE_AREA = Layout("vx_save_area", 512, [(0, "vrs", "64Q")])


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


def note(name: bytes, n_type: int, desc: bytes) -> bytes:
    """Return one ELF note: header, NUL-terminated name and descriptor, each padded to 4."""
    name_z = name + b"\0"
    hdr = ELF64_NHDR.pack(n_namesz=len(name_z), n_descsz=len(desc), n_type=n_type)
    pad_name = -len(name_z) % 4
    pad_desc = -len(desc) % 4
    return hdr + name_z + bytes(pad_name) + desc + bytes(pad_desc)


# --------------------------------------------------------------------------
# s390 dump format (s390-tools zdump/df_s390.h)

DF_S390_MAGIC = 0xA8190173618F23FD
DF_S390_MAGIC_EXT = 0xA8190173618F23FE  # the extended (segmented) format of newer zipl dumpers
DF_S390_HDR_SIZE = 0x1000
DF_S390_CPU_MAX = 512
DF_S390_VERSION = 5  # what the kernel's zcore wrote: the header has lc_vec
DF_S390_HDR = Layout("df_s390_hdr", DF_S390_HDR_SIZE, [
    (0x00, "magic", "Q"),
    (0x08, "version", "I"),
    (0x0C, "hdr_size", "I"),
    (0x10, "dump_level", "I"),
    (0x14, "page_size", "I"),
    (0x18, "mem_size", "Q"),
    (0x20, "mem_start", "Q"),
    (0x28, "mem_end", "Q"),
    (0x30, "num_pages", "I"),
    (0x38, "tod", "Q"),
    (0x40, "cpu_id", "Q"),
    (0x48, "arch", "I"),
    (0x4C, "volnr", "I"),
    (0x50, "build_arch", "I"),
    (0x54, "mem_size_real", "Q"),
    (0x5C, "mvdump", "B"),
    (0x5D, "cpu_cnt", "H"),
    (0x5F, "real_cpu_cnt", "H"),
    (0x800, "lc_vec", f"{DF_S390_CPU_MAX}I"),
])
DF_S390_END_MARKER = b"DUMP_END"
DF_S390_ARCH_64 = 2

# The end marker after the memory of a dump written by zipl's dumpers or
# zgetdump (struct df_s390_em): "DUMP_END" and the TOD clock at the end.
DF_S390_EM = Layout("df_s390_em", 16, [
    (0x0, "str", "8s"),
    (0x8, "tod", "Q"),
])

# TOD clock value of the Unix epoch: TOD = TOD_UNIX_EPOCH + (microseconds << 12)
TOD_UNIX_EPOCH = 0x7D91048BCA000000


def tod_from_unix(microseconds: int) -> int:
    """Return the s390 TOD clock value of a Unix time in microseconds."""
    return (TOD_UNIX_EPOCH + (microseconds << 12)) & ((1 << 64) - 1)


# --------------------------------------------------------------------------
# makedumpfile's kdump-compressed format (diskdump_mod.h) and its flattened
# stream (makedumpfile.h), as makedumpfile 1.7 and QEMU's dump-guest-memory
# write them: in the dumped machine's byte order, big-endian on s390x (the
# flattened stream's own headers are big-endian everywhere).

KDUMP_SIGNATURE = b"KDUMP   "
# struct disk_dump_header: utsname is six 65-byte strings; timestamp a
# struct timeval of two longs, aligned to 8
DISKDUMP_HEADER = Layout("disk_dump_header", 464, [
    (0x00, "signature", "8s"),
    (0x08, "header_version", "i"),
    (0x0C, "utsname", "390s"),
    (0x198, "tv_sec", "q"),
    (0x1A0, "tv_usec", "q"),
    (0x1A8, "status", "I"),
    (0x1AC, "block_size", "i"),
    (0x1B0, "sub_hdr_size", "i"),
    (0x1B4, "bitmap_blocks", "I"),
    (0x1B8, "max_mapnr", "I"),  # 32 bits only; max_mapnr_64 in the sub header (version 6)
    (0x1BC, "total_ram_blocks", "I"),
    (0x1C0, "device_blocks", "I"),
    (0x1C4, "written_blocks", "I"),
    (0x1C8, "current_cpu", "I"),
    (0x1CC, "nr_cpus", "i"),
])
# struct kdump_sub_header, at block 1; fields exist from the header_version noted
KDUMP_SUB_HEADER = Layout("kdump_sub_header", 0x70, [
    (0x00, "phys_base", "Q"),
    (0x08, "dump_level", "i"),          # 1
    (0x0C, "split", "i"),               # 2
    (0x10, "start_pfn", "Q"),           # 2 (32-bit values only)
    (0x18, "end_pfn", "Q"),             # 2
    (0x20, "offset_vmcoreinfo", "Q"),   # 3
    (0x28, "size_vmcoreinfo", "Q"),     # 3
    (0x30, "offset_note", "Q"),         # 4
    (0x38, "size_note", "Q"),           # 4
    (0x40, "offset_eraseinfo", "Q"),    # 5
    (0x48, "size_eraseinfo", "Q"),      # 5
    (0x50, "start_pfn_64", "Q"),        # 6
    (0x58, "end_pfn_64", "Q"),          # 6
    (0x60, "max_mapnr_64", "Q"),        # 6
])
# struct page_desc: one per dumped page, in page frame order
PAGE_DESC = Layout("page_desc", 24, [
    (0x00, "offset", "q"),
    (0x08, "size", "I"),
    (0x0C, "flags", "I"),
    (0x10, "page_flags", "Q"),
])
PAGE_DESC_STRUCT = struct.Struct(">qIIQ")  # the same, as a tuple: for blocks of descriptors (iter_unpack)
assert PAGE_DESC_STRUCT.size == PAGE_DESC.size and list(PAGE_DESC.fields) == ["offset", "size", "flags", "page_flags"]


class DUMP_DH(enum.IntFlag):
    """Page descriptor flags (and header status bits) of the kdump-compressed format."""
    COMPRESSED_ZLIB = 0x1
    COMPRESSED_LZO = 0x2
    COMPRESSED_SNAPPY = 0x4
    COMPRESSED_INCOMPLETE = 0x8  # header status: the dump was cut short (disk full)
    EXCLUDED_VMEMMAP = 0x10
    COMPRESSED_ZSTD = 0x20


MDF_SIGNATURE = b"makedumpfile"
MDF_HEADER_SIZE = 4096  # the flattened stream's header, padded
MDF_HEADER = Layout("makedumpfile_header", 32, [
    (0x00, "signature", "16s"),
    (0x10, "type", "q"),     # 1: flattened format
    (0x18, "version", "q"),  # 1
])
MDF_DATA_HEADER = Layout("makedumpfile_data_header", 16, [
    (0x00, "offset", "q"),   # where the data goes in the dump file; -1: end of the stream
    (0x08, "buf_size", "q"),
])


# --------------------------------------------------------------------------
# The s390 checksum (CKSM)

_WORDS_PER_CHUNK = 1 << 16


def cksm(data: bytes, initial: int = 0) -> int:
    """
    Return the s390 CKSM of *data*: the 32-bit sum of big-endian words with
    end-around carry; a trailing 1..3 bytes count as a left-aligned word.

    >>> hex(cksm(bytes.fromhex("123456789abcdef0")))
    '0xacf13568'
    """
    tail = len(data) % 4
    if tail:
        data = bytes(data) + bytes(4 - tail)
    total = initial
    view = memoryview(data)
    nwords = len(data) // 4
    for start in range(0, nwords, _WORDS_PER_CHUNK):
        count = min(_WORDS_PER_CHUNK, nwords - start)
        total += sum(struct.unpack_from(f">{count}I", view, start * 4))
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total
