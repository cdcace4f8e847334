# SPDX-License-Identifier: MIT
"""
Byte layouts: the s390 dump format
----------------------------------

The ``vmcorefs.layouts.s390dump`` module declares the s390 dump format's
header and end marker (what zipl's dumpers, zgetdump and the kernel's zcore
write) and the TOD clock's epoch.

Source: s390-tools ``zdump/df_s390.h``.
"""

from __future__ import annotations

from .base import Layout

__all__ = (
    "DF_S390_ARCH_64",
    "DF_S390_CPU_MAX",
    "DF_S390_EM",
    "DF_S390_END_MARKER",
    "DF_S390_HDR",
    "DF_S390_HDR_SIZE",
    "DF_S390_MAGIC",
    "DF_S390_MAGIC_EXT",
    "DF_S390_VERSION",
    "TOD_UNIX_EPOCH",
    "tod_from_unix",
)

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
