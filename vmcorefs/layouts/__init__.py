# SPDX-License-Identifier: MIT
"""
Byte layouts
------------

The ``vmcorefs.layouts`` package declares every on-disk and in-memory
structure vmcorefs reads or writes, once, big-endian, with each field's
absolute offset. Nothing else in vmcorefs packs or unpacks these structures
by hand: it calls :meth:`Layout.pack` / :meth:`Layout.unpack`.

One module a subject: ``base`` (:class:`Layout`, the page size),
``lowcore`` (the absolute lowcore, save areas, parmarea, os_info, CKSM),
``elf`` (ELF core headers and notes), ``s390dump`` (the s390 dump format),
``kdump`` (makedumpfile's kdump-compressed format). Every name is imported
from the package itself (``from vmcorefs.layouts import SAVE_AREA``), which
lists them all in ``__all__``.

Sources: the kernel's ``arch/s390/include/asm/lowcore.h``, ``os_info.h``,
``arch/s390/kernel/crash_dump.c``, ``include/uapi/linux/elf.h`` and s390-tools
``zdump/df_s390.h`` (see ``shared/docs/s390-dump-reference.md``).
"""

from __future__ import annotations

from .base import PAGE_SIZE, Layout, page_align
from .elf import (EI_CLASS, EI_DATA, ELF64_EHDR, ELF64_NHDR, ELF64_PHDR, ELF64_SHDR, ELFCLASS64, ELFDATA2MSB, ELFMAG,
                  ELF_FPREGSET, ELF_IDENT_S390X, ELF_PRPSINFO, ELF_PRSTATUS, EM, ET_CORE, NT, PF_RWX, PN_XNUM, PT,
                  S390_NOTE_DESC, SHN_UNDEF, SHT_NULL, note, vector_from_notes, vector_notes)
from .kdump import (DISKDUMP_HEADER, DUMP_DH, KDUMP_SIGNATURE, KDUMP_SUB_HEADER, MDF_DATA_HEADER, MDF_HEADER,
                    MDF_HEADER_SIZE, MDF_SIGNATURE, PAGE_DESC, PAGE_DESC_STRUCT)
from .lowcore import (DEFAULT_HSA_SIZE, LC, LOWCORE_DUMP_INFO, MCESA_ORIGIN_MASK, OS_INFO, OS_INFO_ENTRIES_OFFSET,
                      OS_INFO_ENTRY, OS_INFO_ENTRY_NAMES, OS_INFO_MAGIC, PARMAREA, PARMAREA_ADDRESS, SAVE_AREA,
                      SAVE_AREA_OFFSET, VX_SAVE_AREA, VX_SAVE_AREA_SIZE, cksm)
from .s390dump import (DF_S390_ARCH_64, DF_S390_CPU_MAX, DF_S390_EM, DF_S390_END_MARKER, DF_S390_HDR, DF_S390_HDR_SIZE,
                       DF_S390_MAGIC, DF_S390_MAGIC_EXT, DF_S390_VERSION, TOD_UNIX_EPOCH, tod_from_unix)

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
    "EI_CLASS",
    "EI_DATA",
    "ELF64_EHDR",
    "ELF64_NHDR",
    "ELF64_PHDR",
    "ELF64_SHDR",
    "ELFCLASS64",
    "ELFDATA2MSB",
    "ELFMAG",
    "ELF_FPREGSET",
    "ELF_IDENT_S390X",
    "ELF_PRPSINFO",
    "ELF_PRSTATUS",
    "EM",
    "ET_CORE",
    "KDUMP_SIGNATURE",
    "KDUMP_SUB_HEADER",
    "LC",
    "LOWCORE_DUMP_INFO",
    "Layout",
    "MCESA_ORIGIN_MASK",
    "MDF_DATA_HEADER",
    "MDF_HEADER",
    "MDF_HEADER_SIZE",
    "MDF_SIGNATURE",
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
