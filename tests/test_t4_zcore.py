# SPDX-License-Identifier: MIT
"""
/zcore: the s390 dump format view, and s390 dump files as a source.

The header is parsed here field by field from the reference (section 8)
with struct, and save areas are packed here from section 3, independently
of vmcorefs.layouts.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest
import trio

from conftest import mount_options, read_at, run_vmcorefs, sha256_file
from reference import (MAGIC, TOD_EPOCH, RT_HSA, RT_PREFIXES, RT_SIZE, lay_save_areas,
                       make_image, pack_save_area, parse_header, regs, small_dump, write_description)
from vmcorefs.demo import demo_cpu_regs, demo_words
from vmcorefs.errors import InputError, MemoryReadError

MIB = 1 << 20
HDR = 0x1000  # the s390 dump header (reference.HDR)
DEMO_END = 640 * MIB
DEMO_HOLE = (256 * MIB, 384 * MIB)
DEMO_PREFIXES = [0x20000, 0x22000, 0x24000, 0x26000]
DEMO_MCESA = [0x28000, 0x28400, 0x28800, 0x28C00]  # what each demo lowcore holds at 0x11B0
DEMO_HSA = 32 * MIB


# --------------------------------------------------------------------------
# independent helpers


def demo_expected(address: int, length: int) -> bytes:
    """Return the demo's /zcore/mem memory at *address* (not below 0x9000: kernel patches live there)."""
    buf = bytearray()
    pos, end = address, address + length
    while pos < end:
        if DEMO_HOLE[0] <= pos < DEMO_HOLE[1]:
            n = min(end, DEMO_HOLE[1]) - pos
            buf += bytes(n)
        else:
            n = min(end, DEMO_HOLE[0] if pos < DEMO_HOLE[0] else DEMO_END) - pos
            buf += demo_words(pos, n)
        pos += n
    for prefix, mcesa in zip(DEMO_PREFIXES, DEMO_MCESA):
        lay(buf, address, prefix + 0x11B0, struct.pack(">Q", mcesa))
    lay_save_areas(buf, address, [(DEMO_PREFIXES[i], pack_save_area(demo_cpu_regs(i))) for i in range(4)])
    for i, mcesa in enumerate(DEMO_MCESA):
        lay(buf, address, mcesa, demo_vx(i))
    return bytes(buf)


def lay(buf: bytearray, base: int, address: int, data: bytes) -> None:
    """Put *data* at *address* into *buf*, which holds memory from *base* (the part that falls in it)."""
    lo, hi = max(address, base), min(address + len(data), base + len(buf))
    if lo < hi:
        buf[lo - base:hi - base] = data[lo - address:hi - address]


def demo_vx(i: int) -> bytes:
    """
    Demo CPU *i*'s V0..V31 as the s390 dump format stores them (16 bytes
    each): V0..V15 its FPRs with ``i << 8 | n`` to their right, V16..V31
    ``(0xF0 + i) << 120 | n`` (the rule the demo documents).
    """
    fprs = demo_cpu_regs(i)["fprs"]
    return b"".join(struct.pack(">QQ", fprs[n], i << 8 | n) for n in range(16)) + \
        b"".join(struct.pack(">QQ", (0xF0 + i) << 56, n) for n in range(16, 32))


def hash_range(path, offset: int, length: int, chunk: int = 4 * MIB) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = offset
        while pos < offset + length:
            data = os.pread(fd, min(chunk, offset + length - pos), pos)
            assert data, f"short read at {pos:#x}"
            h.update(data)
            pos += len(data)
    finally:
        os.close(fd)
    return h.hexdigest()


# --------------------------------------------------------------------------
# the demo machine


def test_demo_zcore_header_and_memory(mounter):
    t0 = time.time()
    m = mounter("demo")
    t1 = time.time()
    mem = m.path("zcore/mem")
    assert mem.stat().st_size == HDR + DEMO_END
    h = parse_header(read_at(mem, 0, HDR))
    assert h["magic"] == MAGIC and h["version"] == 5 and h["header_size"] == 0x1000
    assert h["dump_level"] == 4 and h["page_size"] == 4096
    assert h["mem_size"] == DEMO_END and h["mem_start"] == 0 and h["mem_end"] == DEMO_END
    assert h["num_pages"] == DEMO_END // 4096
    assert h["arch"] == 2 and h["build_arch"] == 2 and h["volnr"] == 0 and h["mvdump"] == 0
    assert h["mem_size_real"] == 512 * MIB  # detected memory, without the hole
    assert h["cpu_cnt"] == 4 and h["real_cpu_cnt"] == 4
    assert h["lc_vec"][:4] == DEMO_PREFIXES and not any(h["lc_vec"][4:])
    microseconds = (h["tod"] - TOD_EPOCH) >> 12
    assert t0 - 1 <= microseconds / 1e6 <= t1 + 1, h["tod"]

    # low memory: the kernel's lowcore pointers, through the HSA
    page0 = read_at(mem, HDR, 0x2000)
    assert page0[0xA3] == 1
    assert struct.unpack_from(">Q", page0, 0xE00)[0] == 0x8000  # re-IPL block
    assert struct.unpack_from(">Q", page0, 0xE0C)[0] == 0x6000  # VMCOREINFO note
    assert struct.unpack_from(">Q", page0, 0xE18)[0] == 0x4000  # os_info
    # the boot CPU's status at absolute 0x1200 (stored before the HSA copy)
    assert page0[0x1200:0x1400] == pack_save_area(demo_cpu_regs(0))
    for a in range(0x1000, 0x2000, 0x200):
        if a != 0x1200:
            assert page0[a:a + 0x200] == demo_words(a, 0x200), hex(a)
    assert read_at(mem, HDR + 0x4000, 8) == b"OSINFOSZ"
    assert read_at(mem, HDR + 0x6000 + 12, 11) == b"VMCOREINFO\0"
    # the re-IPL block: a CCW IPL of 0.0.5c00 as the kernel's uapi/asm/ipl.h lays it out
    # (ipl_pl_hdr, then ipl_pb0_ccw: devno at 0x66 of it, 0x6e of the whole; QEMU's minimum 200 bytes)
    reipl = read_at(mem, HDR + 0x8000, 200)
    assert reipl == m.path("zcore/reipl").read_bytes()
    assert struct.unpack_from(">IxxxB IB", reipl, 0) == (200, 1, 192, 2)
    assert struct.unpack_from(">H", reipl, 0x6E)[0] == 0x5C00

    # prefix pages with the save areas laid over them, the HSA boundary, beyond: one hash
    start, length = 0x9000, DEMO_HSA + MIB - 0x9000
    assert hash_range(mem, HDR + start, length) == hashlib.sha256(demo_expected(start, length)).hexdigest()
    for i, prefix in enumerate(DEMO_PREFIXES):
        assert read_at(mem, HDR + prefix + 0x1200, 512) == pack_save_area(demo_cpu_regs(i))
        assert read_at(mem, HDR + prefix + 0x11F8, 8) == demo_words(prefix + 0x11F8, 8)
        assert read_at(mem, HDR + prefix + 0x1400, 8) == demo_words(prefix + 0x1400, 8)
        # the vector registers where the lowcore's 0x11B0 points (zgetdump's place), over stale memory
        assert read_at(mem, HDR + prefix + 0x11B0, 8) == struct.pack(">Q", DEMO_MCESA[i])
        assert read_at(mem, HDR + DEMO_MCESA[i], 512) == demo_vx(i)
    # sample pages across memory, both sides of the hole and the end
    rng = random.Random(7)
    samples = [DEMO_HOLE[0] - 4096, DEMO_HOLE[0], DEMO_HOLE[1] - 4096, DEMO_HOLE[1], DEMO_END - 4096]
    samples += [rng.randrange(DEMO_HSA, DEMO_END, 4096) for _ in range(40)]
    for a in samples:
        assert read_at(mem, HDR + a, 4096) == demo_expected(a, 4096), hex(a)
    # the whole hole reads as zeros; nothing after the memory (no end marker)
    fd = os.open(mem, os.O_RDONLY)
    try:
        for pos in range(DEMO_HOLE[0], DEMO_HOLE[1], 8 * MIB):
            assert os.pread(fd, 8 * MIB, HDR + pos) == bytes(8 * MIB), hex(pos)
        assert os.pread(fd, 100, HDR + DEMO_END - 16) == demo_words(DEMO_END - 16, 16)
    finally:
        os.close(fd)

    # memmap: one 34-byte record per detected range; reipl as in /meminfo
    memmap = m.path("zcore/memmap").read_text()
    assert memmap == "0000000000000000 0000000010000000 0000000018000000 0000000010000000 "
    assert len(memmap) == 2 * 34
    assert m.path("zcore/reipl").read_bytes() == m.path("meminfo/reipl_block").read_bytes()
    assert len(m.path("zcore/reipl").read_bytes()) == 200
    assert m.path("zcore/hsa").read_text() == "2000000\n"
    m.unmount()


def test_demo_hsa_release(mounter):
    m = mounter("demo")
    mem, hsa = m.path("zcore/mem"), m.path("zcore/hsa")
    assert "rw" in mount_options(m.mountpoint)  # the HSA file takes writes
    # read what the release changes first, so the kernel has it cached
    assert hsa.read_text() == "2000000\n"
    summary = m.path("meminfo/summary").read_text()
    assert "hsa: 32 MiB (0x2000000)\n" in summary and "released" not in summary
    low = read_at(mem, HDR + 0x1000, 4096)
    assert low[0x200:0x400] == pack_save_area(demo_cpu_regs(0))

    # anything but "0" is refused, and the HSA stays
    for bad in (b"1", b"00", b"release\n"):
        with pytest.raises(OSError) as exc:
            with open(hsa, "wb") as f:
                f.write(bad)
        assert exc.value.errno == errno.EINVAL, bad
    assert read_at(mem, HDR + 0x1000, 4096) == low
    # other files refuse writes
    for name in ("vmcore", "zcore/mem", "meminfo/summary", "zcore/memmap"):
        with pytest.raises(OSError) as exc:
            open(m.path(name), "r+b").close()
        assert exc.value.errno in (errno.EACCES, errno.EROFS), name

    with open(hsa, "w") as f:  # as "echo 0 > hsa" does
        f.write("0\n")
    with pytest.raises(OSError) as exc:
        read_at(mem, HDR + 0x1000, 4096)
    assert exc.value.errno == errno.EIO
    # /vmcore's low memory (first PT_LOAD, from address 0) came from the HSA too
    phdr = read_at(m.path("vmcore"), 64 + 56, 56)
    p_type, p_offset, p_paddr = struct.unpack_from(">I", phdr, 0)[0], *struct.unpack_from(">QQQ", phdr, 8)[::2]
    assert (p_type, p_paddr) == (1, 0)
    with pytest.raises(OSError) as exc:
        read_at(m.path("vmcore"), p_offset + 0x1000, 4096)
    assert exc.value.errno == errno.EIO
    # memory above the HSA still reads
    a = DEMO_HSA + 0x5000
    assert read_at(mem, HDR + a, 4096) == demo_expected(a, 4096)
    assert hsa.read_text() == "0\n"
    assert hsa.stat().st_size == 2
    summary = m.path("meminfo/summary").read_text()
    assert "hsa: 32 MiB (0x2000000), released" in summary
    # writing 0 again is harmless, as in the kernel
    hsa.write_text("0")
    assert hsa.read_text() == "0\n"
    m.unmount()


def test_hsa_release_drops_what_the_kernel_cached(mounter):
    """
    Low memory read (and so cached by the kernel) before the HSA is released
    is never served after it: through files held open, read() gives EIO and
    a mapping SIGBUS; memory above the HSA still reads.
    """
    m = mounter("demo")
    vm, mem = m.path("vmcore"), m.path("zcore/mem")
    phdr = read_at(vm, 64 + 56, 56)
    p_offset = struct.unpack_from(">Q", phdr, 8)[0]
    low = 0x10000  # old memory in the HSA, plain demo words
    fds = {vm: os.open(vm, os.O_RDONLY), mem: os.open(mem, os.O_RDONLY)}
    where = {vm: p_offset, mem: HDR}
    mapper = subprocess.Popen(
        [sys.executable, "-c",
         "import mmap, os, sys\n"
         f"fd = os.open({str(vm)!r}, os.O_RDONLY)\n"
         f"m = mmap.mmap(fd, 4096, prot=mmap.PROT_READ, offset={p_offset + low})\n"
         "sys.stdout.buffer.write(m[:16]); sys.stdout.flush()\n"
         "sys.stdin.readline()\n"
         "m[0]\nprint('no SIGBUS')\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert mapper.stdout.read(16) == demo_expected(low, 16)
        for path, fd in fds.items():
            assert os.pread(fd, 8 * 4096, where[path] + low) == demo_expected(low, 8 * 4096)
            assert os.pread(fd, 4096, where[path] + low) == demo_expected(low, 4096)  # from the page cache
        m.path("zcore/hsa").write_text("0\n")
        for path, fd in fds.items():
            for off in (low, low + 4096 * 7):
                with pytest.raises(OSError) as exc:
                    os.pread(fd, 4096, where[path] + off)
                assert exc.value.errno == errno.EIO, (path, off)
            a = DEMO_HSA + 0x5000
            assert os.pread(fd, 4096, where[path] + a) == demo_expected(a, 4096)
        out, err = mapper.communicate(b"go\n", timeout=60)
        assert mapper.returncode == -signal.SIGBUS, (mapper.returncode, out, err)
    finally:
        mapper.kill()
        for fd in fds.values():
            os.close(fd)


# --------------------------------------------------------------------------
# a machine whose round trip through the s390 dump format must be exact

def test_round_trip_is_exact(mounter, tmp_path):
    img, vmcoreinfo, reipl = make_image(tmp_path)
    areas = [pack_save_area(regs(i, p)) for i, p in enumerate(RT_PREFIXES)]
    # /zcore/mem lays the registers over the lowcores, /vmcore shows memory as
    # it is: they agree where the lowcores hold the CPUs' status already, as
    # after a store status (otherwise B's memory differs there, legitimately)
    lay_save_areas(img, 0, list(zip(RT_PREFIXES, areas)))
    (tmp_path / "image.raw").write_bytes(img)
    cpus = [{"address": i * 2, "save_area": sa} for i, sa in enumerate(areas)]
    cpus.append({"address": 7, "save_area": pack_save_area(regs(9, 0))})  # prefix 0: not dumped
    write_description(tmp_path / "a.toml", "image.raw", "standalone", cpus,
                      f"\n[hsa]\nsize = {RT_HSA:#x}\nlatency_us = 0\n")
    a = mounter(tmp_path / "a.toml")
    copy = tmp_path / "a.s390"
    shutil.copyfile(a.path("zcore/mem"), copy)

    data = copy.read_bytes()
    h = parse_header(data)
    assert (h["mem_size"], h["mem_end"], h["mem_size_real"]) == (RT_SIZE, RT_SIZE, RT_SIZE)
    assert h["cpu_cnt"] == 3 and h["real_cpu_cnt"] == 4
    assert h["lc_vec"][:4] == RT_PREFIXES + [0]
    expected = bytearray(img)
    lay_save_areas(expected, 0, [(0, areas[0])])  # the boot CPU's status at 0x1200, in the HSA
    lay_save_areas(expected, 0, list(zip(RT_PREFIXES, areas)))
    assert data[HDR:] == expected

    b = mounter(copy)
    assert "ro" in mount_options(b.mountpoint)
    summary = b.path("meminfo/summary").read_text()
    assert "environment: file" in summary and "cpus: 3 (3 dumped), vector registers: no" in summary
    # the same ELF dump, CPU notes and VMCOREINFO included, and the same dump file again
    assert sha256_file(b.path("vmcore")) == sha256_file(a.path("vmcore"))
    assert b.path("meminfo/vmcoreinfo").read_bytes() == vmcoreinfo == a.path("meminfo/vmcoreinfo").read_bytes()
    assert sha256_file(b.path("zcore/mem")) == hashlib.sha256(data).hexdigest()
    assert b.path("zcore/reipl").read_bytes() == reipl == a.path("zcore/reipl").read_bytes()
    assert b.path("zcore/memmap").read_text() == a.path("zcore/memmap").read_text() == \
        f"{0:016x} {RT_SIZE:016x} "
    assert b.path("zcore/hsa").read_text() == "0\n"
    with pytest.raises(OSError) as exc:
        b.path("zcore/hsa").write_text("0")
    assert exc.value.errno in (errno.EROFS, errno.EACCES)

    # with an end marker, as zgetdump writes it, the file mounts the same
    marked = tmp_path / "marked.s390"
    shutil.copyfile(copy, marked)
    with open(marked, "ab") as f:
        f.write(b"DUMP_END" + struct.pack(">Q", h["tod"] + (1 << 12)))
    c = mounter(marked)
    assert sha256_file(c.path("vmcore")) == sha256_file(a.path("vmcore"))
    for m in (c, b, a):
        m.unmount()


def test_kdump_zcore_shows_all_old_memory(mounter, tmp_path):
    base, size = 32 * MIB, 16 * MIB
    old, _vmcoreinfo, _reipl = make_image(tmp_path, seed=2)
    boot = pack_save_area(regs(0, 0x40000))
    other = pack_save_area(regs(1, 0x42000))
    # the crashed kernel stored its CPUs' status in their lowcores, the boot CPU's also at 0x1200
    lay_save_areas(old, 0, [(0, boot), (0x40000, boot), (0x42000, other)])
    real = bytearray(old)  # what the capture kernel's environment holds: [0, S) and [B, B+S) swapped
    real[0:size], real[base:base + size] = old[base:base + size], old[0:size]
    (tmp_path / "kdump.raw").write_bytes(real)
    write_description(tmp_path / "k.toml", "kdump.raw", "kdump",
                      [{"address": 0}, {"address": 1, "save_area": other}],
                      f"\n[kdump]\ncrashkernel_base = {base:#x}\ncrashkernel_size = {size:#x}\n")
    k = mounter(tmp_path / "k.toml")
    assert "ro" in mount_options(k.mountpoint)  # nothing to write without an HSA
    assert k.path("zcore/hsa").read_text() == "0\n"
    data = k.path("zcore/mem").read_bytes()
    h = parse_header(data)
    assert h["lc_vec"][:2] == [0x40000, 0x42000] and h["cpu_cnt"] == 2
    assert h["mem_size"] == RT_SIZE
    assert data[HDR:] == old  # the crashkernel range too, read through the swap
    with pytest.raises(OSError) as exc:
        k.path("zcore/hsa").write_text("0")
    assert exc.value.errno in (errno.EROFS, errno.EACCES)
    k.unmount()


# --------------------------------------------------------------------------
# the extent map of /zcore/mem


def test_lay_over_matches_a_plain_overlay():
    from vmcorefs.views.extents import BytesExtent, ExtentFile, ZeroExtent
    from vmcorefs.views.zcore import lay_over

    rng = random.Random(3)
    for _ in range(200):
        size = rng.randrange(1, 5000)
        base, pos = [], 0
        while pos < size:
            n = min(size - pos, rng.randrange(1, 700))
            base.append((pos, ZeroExtent(n) if rng.random() < 0.3 else BytesExtent(rng.randbytes(n))))
            pos += n
        flat = bytearray(b"".join(e.data if isinstance(e, BytesExtent) else bytes(e.length) for _a, e in base))
        blocks, pos = [], 0
        while True:
            pos += rng.randrange(0, 900)
            n = rng.randrange(1, 600)
            if pos + n > size:
                break
            blocks.append((pos, rng.randbytes(n)))
            flat[pos:pos + n] = blocks[-1][1]
            pos += n
        f = ExtentFile(lay_over(base, blocks))
        assert f.size == size
        assert trio.run(f.read, 0, size) == flat
        off = rng.randrange(size)
        assert trio.run(f.read, off, 333) == flat[off:off + 333]


def test_save_area_blocks_later_cpu_wins():
    from vmcorefs.dump import CpuState
    from vmcorefs.views.zcore import save_area_blocks

    sa = [pack_save_area(regs(i, p)) for i, p in enumerate([0x2000, 0x2000, 0x2100, 0x5000, 0xFF000])]
    cpus = [CpuState(i, s, None) for i, s in enumerate(sa)]
    assert save_area_blocks(cpus, 0x100000) == [(0x3200, sa[1][:0x100] + sa[2]), (0x6200, sa[3])]


# --------------------------------------------------------------------------
# s390 dump files that are not usable


@pytest.mark.parametrize("case", ["version", "magic"])
def test_bad_dump_files_give_one_line_errors(tmp_path, case):
    bad = tmp_path / f"bad-{case}.s390"
    data = small_dump(version=6) if case == "version" else small_dump(magic=0x0123456789ABCDEF)
    bad.write_bytes(data)
    mp = tmp_path / "mnt"
    mp.mkdir()
    res = run_vmcorefs("mount", bad, mp, check=False, timeout=60)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmcorefs: "), res.stderr
    if case == "version":
        assert "s390 dump format version 6 is not supported" in lines[0]
    else:
        assert "is not a vmcorefs source" in lines[0] and "an s390 dump (magic 0xa8190173618f23fd)" in lines[0]
    assert not os.path.ismount(mp)


async def _open(path):
    from vmcorefs.dump import Dump
    from vmcorefs.sources.s390dump import open_s390_dump
    return await Dump.open(open_s390_dump(str(path)))


def test_dump_file_checks(tmp_path):
    from vmcorefs.sources.s390dump import open_s390_dump

    def refused(data, *words):
        p = tmp_path / "x.s390"
        p.write_bytes(data)
        with pytest.raises(InputError) as exc:
            open_s390_dump(str(p)).close()
        msg = str(exc.value)
        assert "\n" not in msg and all(w in msg for w in words), msg

    refused(small_dump(version=0), "version 0 is not supported")
    refused(small_dump(magic=MAGIC + 1), "extended s390 dump format")
    refused(small_dump(header_size=0x2000), "header size")
    refused(small_dump(page_size=8192), "page size")
    refused(small_dump(arch=1), "31-bit")
    refused(small_dump(mem_size=4 * MIB + 100), "multiple of 4096")
    refused(small_dump()[:100], "too short")
    refused(small_dump() + b"DUMP_ENX" + bytes(8), "no end marker")
    refused(small_dump() + b"DUMP_END" + bytes(8), "older than the header")


def test_dump_file_versions_and_truncation(tmp_path):
    # version 5: CPUs from lc_vec; an end marker is accepted
    p = tmp_path / "v5.s390"
    p.write_bytes(small_dump(prefixes=(0x10000, 0x12000)) + b"DUMP_END" + struct.pack(">Q", (1 << 64) - 1))
    dump = trio.run(_open, p)
    assert [c.prefix for c in dump.cpus] == [0x10000, 0x12000]
    assert dump.cpus[1].save_area == pack_save_area(regs(1, 0x12000))
    assert dump.machine.environment == "file" and dump.hsa is None and not dump.machine.vector
    assert dump.tod == TOD_EPOCH + (1_700_000_000_000_000 << 12)
    dump.machine.close()
    # version 2: no lowcore list, the boot CPU's status from absolute 0x1200
    p = tmp_path / "v2.s390"
    p.write_bytes(small_dump(version=2, prefixes=(0x10000, 0x12000)))
    dump = trio.run(_open, p)
    assert [c.prefix for c in dump.cpus] == [0x3000]
    dump.machine.close()
    # truncated: opens, and the missing part cannot be read
    p = tmp_path / "short.s390"
    p.write_bytes(small_dump()[:HDR + 2 * MIB])
    dump = trio.run(_open, p)
    assert trio.run(dump.read, MIB, 16) == bytes(16)
    with pytest.raises(MemoryReadError) as exc:
        trio.run(dump.read, 3 * MIB, 16)
    assert exc.value.address == 3 * MIB
    dump.machine.close()
