# SPDX-License-Identifier: MIT
"""
Byte layouts
------------

The ``vmcorefs.layouts`` package declares every on-disk and in-memory
structure vmcorefs reads or writes, once, big-endian, with each field's
absolute offset. Nothing else in vmcorefs packs or unpacks these structures
by hand: it calls :meth:`Layout.pack` / :meth:`Layout.unpack`. ELF files
taken as input are the exception: pyelftools reads their ELF structures with
its own (:mod:`vmcorefs.sources.elfread`); the note descriptors in them
(``ELF_PRSTATUS``, the s390 register notes) are declared here.

One module a subject: ``base`` (:class:`Layout`, the page size),
``lowcore`` (the absolute lowcore, save areas, parmarea, os_info, CKSM),
``elf`` (ELF core headers and notes), ``s390dump`` (the s390 dump format),
``kdump`` (makedumpfile's kdump-compressed format), each listing its public
names in its ``__all__``. Every name is imported from the package itself
(``from vmcorefs.layouts import SAVE_AREA``), whose ``__all__`` is theirs
together.

Sources: the kernel's ``arch/s390/include/asm/lowcore.h``, ``os_info.h``,
``arch/s390/kernel/crash_dump.c``, ``include/uapi/linux/elf.h`` and s390-tools
``zdump/df_s390.h`` (see ``shared/docs/s390-dump-reference.md``).
"""

from __future__ import annotations

from . import base, elf, kdump, lowcore, s390dump
from .base import *  # noqa: F403  (each module's __all__: its public names)
from .elf import *  # noqa: F403
from .kdump import *  # noqa: F403
from .lowcore import *  # noqa: F403
from .s390dump import *  # noqa: F403

__all__ = tuple(sorted({*base.__all__, *elf.__all__, *kdump.__all__, *lowcore.__all__, *s390dump.__all__}))
