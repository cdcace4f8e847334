# SPDX-License-Identifier: MIT
"""
The daemon's heap
-----------------

Every read the daemon answers makes bytes objects of up to 1 MiB (a store
read, generated memory, a join of extents) and frees them at once. glibc
gives the freed top of its heap back to the kernel when more than
``M_TRIM_THRESHOLD`` is free there (128 KiB by default, raised by its own
heuristics to twice the largest ``mmap``-ed block freed) and takes it again
with ``brk`` at the next request: memory the kernel hands out fresh, one
page fault per 4 KiB page. On a virtual machine that reports free pages to
its host (virtio-balloon free page reporting) each such fault is a host
fault of several microseconds: measured here, the demo's /vmcore read
without FUSE ran at 0.6 GB/s with glibc's defaults and at 2.5-4 GB/s with the
heap kept (``brk`` calls: about 3,000 per 512 MiB before, a handful after).

:func:`keep_freed_memory` makes glibc keep up to :data:`TRIM_THRESHOLD` of
freed memory for the next reads, and serve blocks up to
:data:`MMAP_THRESHOLD` from the heap: the daemon's resident size stays at
its peak (a few MiB per request in flight), not more. Elsewhere (musl, no
``mallopt``) it does nothing.
"""

from __future__ import annotations

import ctypes
import logging

__all__ = ("MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory")

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 64 << 20  # freed memory kept at the top of a heap
MMAP_THRESHOLD = 16 << 20  # blocks up to this size come from the heap, larger ones from mmap


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse; return whether it took the settings."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not ok:
        log.debug("mallopt refused the heap settings")
    return ok
