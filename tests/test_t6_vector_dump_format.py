# SPDX-License-Identifier: MIT
"""
Vector registers in the s390 dump format, an extension the kernel's zcore
never wrote, as s390-tools does it (README "s390 dump format: vector
registers"): each CPU's V0..V31 at the address its lowcore holds at 0x11B0,
if that is not 0 and a multiple of 1 KiB and lies in the dump's memory.

- The demo: /zcore/mem holds them where the demo's lowcores point, and
  mounted again as SOURCE gives the same VXRS notes as the demo's /vmcore
  (read with pyelftools and readelf, and against the rule the demo's
  registers are made by); the demo's /vmcore shows stale memory there.
- zgetdump (Debian's s390x build under qemu-user) converts that
  /zcore/mem to ELF with the same VXRS notes, and its own s390 writer,
  given the demo's /vmcore, puts the registers where /zcore/mem does.
- A dump file whose lowcores' 0x11B0 hold an address zgetdump does not take
  (misaligned, beyond the memory, 0, a kernel's mcesad with a length code):
  those CPUs have zero-filled VXRS notes, no bytes from memory, as zgetdump
  writes them; a file in which no CPU has one has no VXRS notes, in both.

The expectations are packed here with struct from the rules, or come from
zgetdump.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

import pytest

from conftest import require_s390x, run
from reference import NT_S390_VXRS_HIGH, NT_S390_VXRS_LOW, parse_header, regs, small_dump, vxrs_notes

pytestmark = [pytest.mark.fuse]

HDR = 0x1000
MIB = 1 << 20
DEMO_PREFIXES = [0x20000, 0x22000, 0x24000, 0x26000]
DEMO_VX_SA = [0x28000, 0x28400, 0x28800, 0x28C00]  # what the demo's lowcores hold at 0x11B0
DEMO_TAG = 0x4D454D0000000000  # the demo's memory words: "MEM\0" | address


def demo_notes(i: int) -> dict[int, bytes]:
    """Demo CPU *i*'s VXRS notes by the demo's rule: V0..V15's low halves ``i << 8 | n``, V16..V31
    ``(0xF0 + i) << 120 | n``."""
    return {NT_S390_VXRS_LOW: struct.pack(">16Q", *[i << 8 | n for n in range(16)]),
            NT_S390_VXRS_HIGH: b"".join(struct.pack(">QQ", (0xF0 + i) << 56, n) for n in range(16, 32))}


def vx_area(fprs: list[int], notes: dict[int, bytes]) -> bytes:
    """The 512 bytes of a vector save area: V0..V15 (an FPR, then the VXRS_LOW half), then V16..V31."""
    lows = struct.unpack(">16Q", notes[NT_S390_VXRS_LOW])
    return b"".join(struct.pack(">QQ", fprs[n], lows[n]) for n in range(16)) + notes[NT_S390_VXRS_HIGH]


def read_at(path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def readelf_vxrs(path) -> list[str]:
    """The VXRS lines of ``readelf -nW``, descriptor bytes included."""
    out = subprocess.run(["readelf", "-nW", str(path)], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "VXRS" in line]


def with_end_marker(src, dst) -> None:
    """Copy the s390 dump *src* to *dst* and end it as the dump writers do: ``DUMP_END`` and the header's TOD."""
    shutil.copyfile(src, dst)
    tod = parse_header(read_at(dst, 0, HDR))["tod"]
    with open(dst, "ab") as f:
        f.write(b"DUMP_END" + struct.pack(">Q", tod))


@pytest.fixture(scope="module")
def zgetdump():
    return require_s390x("zgetdump")


def zgetdump_convert(zgetdump, src, fmt: str, dst) -> str:
    """``zgetdump SRC -f FMT > DST``; return its report (stderr)."""
    with open(dst, "wb") as out:
        res = subprocess.run([str(a) for a in zgetdump + [src, "-f", fmt]], stdout=out, stderr=subprocess.PIPE,
                             text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    return res.stderr


# --------------------------------------------------------------------------
# the demo


def test_demo_zcore_mem_mounted_again_gives_the_same_vxrs_notes(mounter):
    a = mounter("demo")
    expected = [demo_notes(i) for i in range(4)]
    assert vxrs_notes(a.path("vmcore")) == expected
    mem = a.path("zcore/mem")
    for i, (prefix, vx_sa) in enumerate(zip(DEMO_PREFIXES, DEMO_VX_SA)):
        assert read_at(mem, HDR + prefix + 0x11B0, 8) == struct.pack(">Q", vx_sa)
        fprs = [0x4000000000000000 | i << 32 | r for r in range(16)]  # the demo's FPRs
        assert read_at(mem, HDR + vx_sa, 512) == vx_area(fprs, expected[i]), f"CPU {i}"
    # memory there is stale (the demo pattern): /vmcore's notes never came from it
    loads = [p for p in phdrs_of(a.path("vmcore")) if p[0] == 1]
    offset = next(off for _t, off, paddr, size in loads if paddr <= DEMO_VX_SA[0] < paddr + size)
    words = struct.unpack(">4Q", read_at(a.path("vmcore"), offset + DEMO_VX_SA[0], 32))
    assert words == tuple(DEMO_TAG | (DEMO_VX_SA[0] + 8 * k) for k in range(4))

    b = mounter(mem)
    assert vxrs_notes(b.path("vmcore")) == expected
    assert readelf_vxrs(b.path("vmcore")) == readelf_vxrs(a.path("vmcore"))
    assert len(readelf_vxrs(b.path("vmcore"))) == 8
    summary = b.path("meminfo/summary").read_text()
    assert "environment: file" in summary
    assert "vector registers: yes, from the vector save areas of the dump file" in summary, summary
    b.unmount()
    a.unmount()


def phdrs_of(path) -> list[tuple[int, int, int, int]]:
    """``(p_type, p_offset, p_paddr, p_filesz)`` of each program header of a big-endian ELF64 file."""
    head = read_at(path, 0, 64)
    phoff, = struct.unpack_from(">Q", head, 32)
    phentsize, phnum = struct.unpack_from(">HH", head, 54)
    table = read_at(path, phoff, phentsize * phnum)
    out = []
    for k in range(phnum):
        p_type, _flags, p_offset, _vaddr, p_paddr, p_filesz = struct.unpack_from(">IIQQQQ", table, k * phentsize)
        out.append((p_type, p_offset, p_paddr, p_filesz))
    return out


def test_zgetdump_reads_and_writes_them_where_zcore_mem_does(mounter, zgetdump, tmp_path):
    a = mounter("demo")
    dump = tmp_path / "demo.s390"
    with_end_marker(a.path("zcore/mem"), dump)
    elf = tmp_path / "demo.elf"
    zgetdump_convert(zgetdump, dump, "elf", elf)
    assert vxrs_notes(elf) == vxrs_notes(a.path("vmcore")) == [demo_notes(i) for i in range(4)]
    elf.unlink()
    # zgetdump's own s390 writer, given /vmcore: the registers where the lowcores point, as ours
    theirs = tmp_path / "from-vmcore.s390"
    zgetdump_convert(zgetdump, a.path("vmcore"), "s390", theirs)
    for prefix, vx_sa in zip(DEMO_PREFIXES, DEMO_VX_SA):
        assert read_at(theirs, HDR + prefix + 0x11B0, 8) == read_at(dump, HDR + prefix + 0x11B0, 8)
        assert read_at(theirs, HDR + vx_sa, 512) == read_at(dump, HDR + vx_sa, 512), hex(vx_sa)
    a.unmount()


# --------------------------------------------------------------------------
# dump files whose lowcores name no usable vector save area

PREFIXES = [0x10000, 0x12000, 0x14000, 0x16000, 0x18000]
DUMP_SIZE = 4 * MIB
VX_SA = 0x200000
LC_VX_SA = [VX_SA, VX_SA + 0x10, DUMP_SIZE, 0, VX_SA + 0xC00 | 11]  # what each lowcore holds at 0x11B0
WHY = ["", "holds 0x200010, which names no vector save area", "lies beyond the dump's memory",
       "holds 0x0, which names no vector save area", "holds 0x200c0b, which names no vector save area"]


def cpu0_notes() -> dict[int, bytes]:
    return {NT_S390_VXRS_LOW: struct.pack(">16Q", *[0x10AD << 16 | n for n in range(16)]),
            NT_S390_VXRS_HIGH: struct.pack(">32Q", *[0x41A1 << 48 | n for n in range(32)])}


def vector_dump(path, usable: bool = True) -> None:
    """
    A 4 MiB s390 dump of 5 CPUs (their control register 0 without the
    vector facility) whose lowcores hold LC_VX_SA at 0x11B0: only CPU 0's
    names a vector save area zgetdump takes (with *usable*; else it is off
    by one). Plausible registers lie at every address that it does not take.
    """
    data = small_dump(mem_size=DUMP_SIZE, prefixes=PREFIXES)
    mem = memoryview(data)[HDR:]  # small_dump laid each CPU's save area over its lowcore
    for prefix, value in zip(PREFIXES, LC_VX_SA):
        struct.pack_into(">Q", mem, prefix + 0x11B0, value + (0 if usable or value != VX_SA else 1))
    area = vx_area(regs(0, 0)["fprs"], cpu0_notes())
    for address in (VX_SA + 0x10, VX_SA + 0xC00, VX_SA):  # registers-looking bytes where the others point too
        mem[address:address + 512] = area
    path.write_bytes(data)


def test_unusable_vector_save_areas_give_zero_filled_notes(mounter, tmp_path):
    dump = tmp_path / "vx.s390"
    vector_dump(dump)
    m = mounter(dump)
    zero = {NT_S390_VXRS_LOW: bytes(128), NT_S390_VXRS_HIGH: bytes(256)}
    assert vxrs_notes(m.path("vmcore")) == [cpu0_notes()] + [zero] * 4
    summary = m.path("meminfo/summary").read_text()
    assert "vector registers: yes, but NOT AVAILABLE for CPU 1, 2, 3, 4" in summary, summary
    for i in range(1, 5):
        text = m.path(f"meminfo/cpus/cpu{i}").read_text()
        assert re.search(r"vector_registers: NOT AVAILABLE.*" + re.escape(WHY[i]), text), text
    # written again, the memory is what it was: CPU 0's registers where they were, nothing for the others
    assert m.path("zcore/mem").read_bytes()[HDR:] == dump.read_bytes()[HDR:]
    m.unmount()

    none = tmp_path / "none.s390"
    vector_dump(none, usable=False)
    m = mounter(none)
    assert vxrs_notes(m.path("vmcore")) == [{}] * 5  # no VXRS notes at all
    assert "vector registers: no" in m.path("meminfo/summary").read_text()
    m.unmount()


def test_zgetdump_takes_the_same_vector_save_areas(zgetdump, tmp_path):
    zero = {NT_S390_VXRS_LOW: bytes(128), NT_S390_VXRS_HIGH: bytes(256)}
    dump, marked, elf = tmp_path / "vx.s390", tmp_path / "vx-marked.s390", tmp_path / "vx.elf"
    vector_dump(dump)
    with_end_marker(dump, marked)
    report = zgetdump_convert(zgetdump, marked, "elf", elf)
    assert vxrs_notes(elf) == [cpu0_notes()] + [zero] * 4
    assert "Vector registers save area is beyond dump memory limit for CPU 2" in report, report
    vector_dump(dump, usable=False)
    with_end_marker(dump, marked)
    zgetdump_convert(zgetdump, marked, "elf", elf)
    assert vxrs_notes(elf) == [{}] * 5
    assert run(["readelf", "-nW", elf]).stdout.count("NT_PRSTATUS") == 5
