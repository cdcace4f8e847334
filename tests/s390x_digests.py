# SPDX-License-Identifier: MIT
"""
What vmcorefs makes of a source, as SHA-256 digests, without FUSE: every
file of the tree a mount would show (``/vmcore``, ``/zcore/*``,
``/meminfo/*``), the small ones whole, the big ones (memory) in windows
(the first MiB, which holds the headers and notes, one in the middle, the
last), plus the dump mode and why. Computed in-process with whatever Python
runs this module: tests/test_t8_s390x.py compares the digests of this
(little-endian) host's Python with those of Debian's big-endian s390x
Python under qemu-user. Run as a command it prints them as JSON::

    python3 tests/s390x_digests.py SOURCE...
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

WINDOW = 1 << 20
WHOLE = 4 << 20  # files up to this size are hashed whole
TOD = 0xDEADBEEF00000000  # the dump time zcore/mem's header holds, fixed (else: when it was opened)


def windows(size: int) -> list[int]:
    """The offsets of the windows a big file is hashed in."""
    if size <= WHOLE:
        return [0]
    return sorted({0, (size // 2) & ~(WINDOW - 1), size - WINDOW})


async def tree_digests(source: str) -> dict:
    from vmcorefs.dump import Dump
    from vmcorefs.sources import open_source
    from vmcorefs.views.root import build_tree
    from vmcorefs.views.tree import Directory

    machine = open_source(source)
    try:
        dump = await Dump.open(machine, "auto")
        dump.tod = TOD
        tree = build_tree(dump)
        out: dict = {"mode": dump.mode, "why": dump.why, "cpus": len(dump.cpus)}

        async def walk(node, path: str) -> None:
            if isinstance(node, Directory):
                for child in node.children:
                    await walk(child, f"{path}/{child.name}")
                return
            size = node.content.size
            for off in windows(size):
                n = size if size <= WHOLE else WINDOW
                data = await node.content.read(off, n)
                out[f"{path}@{off:#x}" if size > WHOLE else path] = hashlib.sha256(data).hexdigest()
            out[f"{path}#size"] = size
        await walk(tree, "")
        return out
    finally:
        machine.close()


def file_windows(path: str) -> dict:
    """The same windows of a plain file (a kernel's /proc/vmcore), for comparison."""
    size = os.path.getsize(path)
    out = {"#size": size}
    with open(path, "rb") as f:
        for off in windows(size):
            f.seek(off)
            out[f"@{off:#x}"] = hashlib.sha256(f.read(size if size <= WHOLE else WINDOW)).hexdigest()
    return out


def all_digests(sources: list[str]) -> dict:
    import trio
    return {s: trio.run(tree_digests, s) for s in sources}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    json.dump({"byteorder": sys.byteorder, "digests": all_digests(sys.argv[1:])}, sys.stdout, indent=1)
