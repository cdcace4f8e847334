# SPDX-License-Identifier: MIT
"""
vmcorefs.heap: the daemon keeps the memory it frees (glibc's heap is not
trimmed after each 1 MiB reply), measured with sbrk(0) in a fresh Python.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, sys
libc = ctypes.CDLL(None)
libc.sbrk.restype = ctypes.c_void_p
libc.sbrk.argtypes = (ctypes.c_long,)
if sys.argv[1] == "keep":
    from vmcorefs.heap import keep_freed_memory
    assert keep_freed_memory()
returned = 0
for _ in range(20):  # as a daemon answering reads: blocks of 1 MiB made and freed
    blocks = [bytearray(1 << 20) for _ in range(16)]
    top = libc.sbrk(0)
    del blocks
    returned += top - libc.sbrk(0)
print(returned)
"""


def returned_bytes(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True)
    return int(out.stdout)


def test_freed_memory_is_kept_for_the_next_reads():
    if returned_bytes("default") == 0:
        pytest.skip("this C library does not give its heap back to the kernel (not glibc): nothing to keep")
    assert returned_bytes("keep") == 0
