# SPDX-License-Identifier: MIT
"""
Byte layouts: the kdump-compressed format
-----------------------------------------

The ``vmcorefs.layouts.kdump`` module declares makedumpfile's
kdump-compressed format (``diskdump_mod.h``) and its flattened stream
(``makedumpfile.h``), as makedumpfile 1.7 and QEMU's dump-guest-memory
write them: in the dumped machine's byte order, big-endian on s390x (the
flattened stream's own headers are big-endian everywhere).
"""

from __future__ import annotations

import enum
import struct

from .base import Layout

__all__ = (
    "DISKDUMP_HEADER",
    "DUMP_DH",
    "KDUMP_SIGNATURE",
    "KDUMP_SUB_HEADER",
    "MDF_DATA_HEADER",
    "MDF_HEADER",
    "MDF_HEADER_SIZE",
    "MDF_SIGNATURE",
    "PAGE_DESC",
    "PAGE_DESC_STRUCT",
)

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
