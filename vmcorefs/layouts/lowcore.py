# SPDX-License-Identifier: MIT
"""
Byte layouts: the s390 lowcore, save areas, parmarea and os_info
----------------------------------------------------------------

The ``vmcorefs.layouts.lowcore`` module declares what a crashed s390x
kernel leaves in memory for a dump tool: the absolute lowcore's pointers,
each CPU's store-status and vector save areas, the kernel's parmarea, the
os_info page and its entries, and the s390 checksum (CKSM) over them; also
the default HSA size.

Sources: the kernel's ``arch/s390/include/asm/lowcore.h``, ``nmi.h``,
``setup.h``, ``os_info.h`` (see ``shared/docs/s390-dump-reference.md``).
"""

from __future__ import annotations

import enum
import struct

from .base import Layout

__all__ = (
    "DEFAULT_HSA_SIZE",
    "DUMP_VX_SA_ALIGN",
    "IPL_PARAMETER_BLOCK_CCW",
    "LC",
    "LOWCORE_DUMP_INFO",
    "MCESA_ORIGIN_MASK",
    "OS_INFO",
    "OS_INFO_ENTRIES_OFFSET",
    "OS_INFO_ENTRY",
    "OS_INFO_ENTRY_NAMES",
    "OS_INFO_MAGIC",
    "PARMAREA",
    "PARMAREA_ADDRESS",
    "SAVE_AREA",
    "SAVE_AREA_OFFSET",
    "VX_SAVE_AREA",
    "VX_SAVE_AREA_SIZE",
    "cksm",
    "dump_vx_save_area",
)

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

# A re-IPL block (the kernel's IPIB, arch/s390/include/uapi/asm/ipl.h) of a
# CCW IPL: struct ipl_pl_hdr, then struct ipl_pb0_ccw at 0x08 (its own offsets
# + 8: loadparm at 0x08, ssid in the low 3 bits of the u16 at 0x64, devno at
# 0x66); 0xC8 bytes, QEMU's S390_IPLB_MIN_CCW_LEN (hw/s390x/ipl.h IplBlockCcw).
IPL_PARAMETER_BLOCK_CCW = Layout("ipl_parameter_block_ccw", 0xC8, [
    (0x00, "len", "I"),  # ipl_pl_hdr.len: the whole block
    (0x04, "flags", "B"),
    (0x07, "version", "B"),  # IPL_PARM_BLOCK_VERSION 1
    (0x08, "pb_len", "I"),  # ipl_pb0_ccw.len: the block less the 8-byte header
    (0x0C, "pbt", "B"),  # IPL_PBT_CCW 2
    (0x0D, "pb_flags", "B"),
    (0x10, "loadparm", "8s"),
    (0x6C, "ssid", "H"),  # low 3 bits
    (0x6E, "devno", "H"),
    (0x70, "vm_flags", "B"),
])

DEFAULT_HSA_SIZE = 32 << 20  # the HSA of a zfcpdump machine (what vmcorefs emulates unless told otherwise)

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
# The vector save area

# The vector registers V0..V31 as SIGP STORE ADDITIONAL STATUS stores them:
# 16 bytes each, as 64 doublewords (V0 high, V0 low, V1 high, ...); the high
# halves of V0..V15 are the floating point registers.
VX_SAVE_AREA = Layout("vx_save_area", 512, [(0, "vrs", "64Q")])


# The s390 dump format's vector save areas, an extension of the format
# (zcore never wrote them): each CPU's V0..V31, a VX_SAVE_AREA, at the address
# its lowcore holds at 0x11B0, where zipl's stand-alone dumpers store them
# (zipl/boot/stage2dump.c should_dump_vx, store_status) and where zgetdump
# reads them (zdump/dfi.c lc2cpu_64) and writes them (zdump/dfo_s390.c
# add_cpu_to_dfo). That address counts only if it is not 0 and a multiple
# of 1 KiB (dfi_cpu_lc_has_vx_sa): a kernel's mcesad with a length code in
# its low bits (a machine with guarded storage) names none.
DUMP_VX_SA_ALIGN = 1024


def dump_vx_save_area(value: int) -> int | None:
    """Return the vector save area a lowcore's u64 at 0x11B0 (*value*) names in the s390 dump format, or None."""
    return value if value and value % DUMP_VX_SA_ALIGN == 0 else None


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
