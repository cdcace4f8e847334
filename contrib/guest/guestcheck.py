# SPDX-License-Identifier: MIT
"""
Guest side of contrib/guest/run-scenario.py: measurements a scenario takes
in the s390x guest, each printed as one JSON object (the scenario writes it
to the 9p share). Only the standard library: it must not lean on the
vmcorefs code it checks.

    guestcheck.py hash FILE [--zero-at OFF:LEN] [--limit N]   sha256, bytes, seconds, MiB/s
    guestcheck.py tree DIR                          sha256 of every file below DIR
    guestcheck.py peek VMCORE ADDR:LEN...           hex of memory at physical ADDR (via the PT_LOADs)
    guestcheck.py pinned VMCORE [PAGES]             fill and mlock a buffer, read it back through VMCORE
    guestcheck.py page VMCORE ADDR                  read one page at physical ADDR and its neighbours: ok/errno
    guestcheck.py disks [root|dump|live]            which /dev/vdX is which disk
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import mmap
import os
import struct
import sys
import time

PAGE = 4096
CHUNK = 1 << 20


def hash_file(path: str, zero: tuple[int, int] | None = None, limit: int | None = None) -> dict:
    """SHA-256 of the file (of its first *limit* bytes), with *zero* = (offset, length) zeroed."""
    h = hashlib.sha256()
    n = 0
    t = time.monotonic()
    with open(path, "rb", buffering=0) as f:
        while limit is None or n < limit:
            data = f.read(CHUNK if limit is None else min(CHUNK, limit - n))
            if not data:
                break
            if zero and n <= zero[0] < n + len(data):
                b = bytearray(data)
                b[zero[0] - n:zero[0] - n + zero[1]] = bytes(zero[1])
                data = bytes(b)
            h.update(data)
            n += len(data)
    dt = time.monotonic() - t
    return {"path": path, "sha256": h.hexdigest(), "bytes": n, "seconds": round(dt, 2),
            "mib_s": round(n / (1 << 20) / dt, 1) if dt else None}


def loads(vmcore: str) -> list[tuple[int, int, int]]:
    """(p_offset, p_paddr, p_filesz) of each PT_LOAD of an ELF64 big-endian core."""
    with open(vmcore, "rb") as f:
        head = f.read(PAGE)
        phoff, = struct.unpack(">Q", head[32:40])
        phnum, = struct.unpack(">H", head[56:58])
        f.seek(phoff)
        ph = f.read(56 * phnum)
    out = []
    for i in range(phnum):
        p_type, _fl, off, _va, pa, filesz, _ms, _al = struct.unpack(">IIQQQQQQ", ph[56 * i:56 * i + 56])
        if p_type == 1:
            out.append((off, pa, filesz))
    return out


def offset_of(segs, addr: int) -> int:
    for off, pa, size in segs:
        if pa <= addr < pa + size:
            return off + addr - pa
    raise SystemExit(f"{addr:#x} is in no PT_LOAD")


def peek(vmcore: str, items: list[str]) -> dict:
    segs = loads(vmcore)
    out = {}
    fd = os.open(vmcore, os.O_RDONLY)
    for item in items:
        a, n = (int(x, 0) for x in item.split(":"))
        out[item] = os.pread(fd, n, offset_of(segs, a)).hex()
    os.close(fd)
    return out


def pinned(vmcore: str, pages: int) -> dict:
    """A buffer this process fills and pins (mlock), read back through /vmcore at its physical pages."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = mmap.mmap(-1, pages * PAGE)
    buf[:] = os.urandom(pages * PAGE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    if libc.mlock(ctypes.c_void_p(addr), ctypes.c_size_t(pages * PAGE)) != 0:
        raise SystemExit(f"mlock: {os.strerror(ctypes.get_errno())}")
    segs = loads(vmcore)
    same = 0
    phys = []
    with open("/proc/self/pagemap", "rb") as pm, open(vmcore, "rb", buffering=0) as core:
        for i in range(pages):
            pm.seek((addr // PAGE + i) * 8)
            entry, = struct.unpack("<Q" if sys.byteorder == "little" else ">Q", pm.read(8))
            if not entry >> 63:
                raise SystemExit(f"page {i} of the pinned buffer is not present")
            pa = (entry & ((1 << 55) - 1)) * PAGE
            phys.append(pa)
            core.seek(offset_of(segs, pa))
            same += core.read(PAGE) == buf[i * PAGE:(i + 1) * PAGE]
    return {"pages": pages, "identical": same, "physical": [hex(p) for p in phys],
            "sha256": hashlib.sha256(buf[:]).hexdigest()}


def page(vmcore: str, addr: int) -> dict:
    segs = loads(vmcore)
    fd = os.open(vmcore, os.O_RDONLY)
    out = {}
    for a, n in ((addr - PAGE, PAGE), (addr, PAGE), (addr + PAGE, PAGE), (addr - PAGE, 3 * PAGE)):
        try:
            data = os.pread(fd, n, offset_of(segs, a))
            out[f"{a:#x}+{n:#x}"] = "ok" if len(data) == n else f"short {len(data)}"
        except OSError as exc:
            out[f"{a:#x}+{n:#x}"] = f"errno {exc.errno}"
    os.close(fd)
    return out


def main(argv: list[str]) -> None:
    cmd = argv[0]
    if cmd == "hash":
        opts = dict(zip(argv[2::2], argv[3::2]))
        zero = tuple(int(x, 0) for x in opts["--zero-at"].split(":")) if "--zero-at" in opts else None
        res = hash_file(argv[1], zero, int(opts["--limit"], 0) if "--limit" in opts else None)
    elif cmd == "disks":
        # which /dev/vdX is which: the root (MBR signature "vmcf"), the dump disk (ext4), the live disk (the rest)
        res = {}
        for name in sorted(os.listdir("/sys/block")):
            if not name.startswith("vd"):
                continue
            with open(f"/dev/{name}", "rb") as f:
                head = f.read(2048)
            if head[440:444] == b"fcmv" and head[510:512] == b"\x55\xaa":
                res["root"] = f"/dev/{name}"
            elif head[1080:1082] == b"\x53\xef":
                res["dump"] = f"/dev/{name}"
            else:
                res["live"] = f"/dev/{name}"
        if len(argv) > 1:
            print(res[argv[1]])
            return
    elif cmd == "speed":
        import zlib
        data = bytes(16 << 20)
        res = {}
        for name, fn in (("sha256", lambda d: hashlib.sha256(d).digest()), ("sha1", lambda d: hashlib.sha1(d).digest()),
                         ("md5", lambda d: hashlib.md5(d).digest()), ("blake2b", lambda d: hashlib.blake2b(d).digest()),
                         ("crc32", zlib.crc32)):
            t = time.monotonic()
            fn(data)
            res[name] = round(16 / (time.monotonic() - t), 1)
    elif cmd == "tree":
        res = {}
        for d, _dirs, files in os.walk(argv[1]):
            for f in sorted(files):
                p = os.path.join(d, f)
                res[os.path.relpath(p, argv[1])] = hash_file(p)["sha256"]
    elif cmd == "peek":
        res = peek(argv[1], argv[2:])
    elif cmd == "pinned":
        res = pinned(argv[1], int(argv[2]) if len(argv) > 2 else 16)
    elif cmd == "page":
        res = page(argv[1], int(argv[2], 0))
    else:
        raise SystemExit(__doc__)
    print(json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:])
