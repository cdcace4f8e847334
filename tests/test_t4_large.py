# SPDX-License-Identifier: MIT
"""
Machines of many memory ranges, on real FUSE mounts: ELF extended numbering
(PN_XNUM) in /vmcore around 65,535 program headers, checked against the
struct-only reference builder and read with pyelftools (the count through
section header 0); memory_map files (good, bad, and zcore's own memmap);
a PN_XNUM /vmcore saved to a file and mounted as SOURCE; ``emulate``
writing a memory_map file for many ranges. Not timed: bench/run.py times.
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

sys.path.insert(0, str(Path(__file__).parent))
from conftest import run_vmcorefs  # noqa: E402
from reference import reference_header, reference_notes  # noqa: E402

PAGE = 4096
HSA = 0x4000
MARK = bytes(range(256)) * 16  # one page laid over the last range's memory


def save_area(i: int, prefix: int) -> bytes:
    """A 512-byte store-status save area of made-up registers (offsets from 0x1200)."""
    sa = bytearray(512)
    struct.pack_into(">16Q", sa, 0x080, *[0x1111 * i + r for r in range(16)])
    struct.pack_into(">2Q", sa, 0x100, 0x0705000180000000, 0x200000 + i * 0x10)
    struct.pack_into(">I", sa, 0x118, prefix)
    struct.pack_into(">Q", sa, 0x128, 0x7FFF000000000000 | i)
    struct.pack_into(">16Q", sa, 0x180, *[0xC0 << 56 | i << 8 | r for r in range(16)])
    return bytes(sa)


SAVE_AREAS = [save_area(0, 0x10000), save_area(1, 0x12000)]


def spaced_ranges(count: int) -> list[tuple[int, int]]:
    """*count* one-page ranges ``(start, end)`` with a one-page hole after each (none merge)."""
    return [(2 * PAGE * i, 2 * PAGE * i + PAGE) for i in range(count)]


def write_machine(directory: Path, ranges: list[tuple[int, int]], memmap_text: str | None = None,
                  name: str = "big") -> Path:
    """A stand-alone zero-store machine of *ranges* in a memory_map file; MARK over the last range."""
    memmap = directory / f"{name}.memmap"
    memmap.write_text(memmap_text if memmap_text is not None else
                      "".join(f"{s:016x} {e - s:016x}\n" for s, e in ranges))
    lines = ["format = 1", f'name = "{name}"', 'environment = "standalone"', "vector = false",
             f'memory_map = "{memmap.name}"', "", "[store]", 'type = "zero"', "",
             "[[store.patch]]", f"address = {ranges[-1][0]:#x}", f'data = "{MARK.hex()}"', "",
             "[hsa]", f"size = {HSA:#x}"]
    for i, sa in enumerate(SAVE_AREAS):
        lines += ["", "[[cpu]]", f"address = {i}", f'save_area = "{sa.hex()}"']
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def expected_head(ranges: list[tuple[int, int]]) -> bytes:
    """The reference header block and notes block of the machine of :func:`write_machine`."""
    notes = reference_notes(SAVE_AREAS, None, None)
    return reference_header(ranges, len(notes)) + notes + bytes(-len(notes) % PAGE)


@pytest.mark.parametrize("phnum", [65534, 65535, 65536])
def test_extended_numbering_matches_the_reference(mounter, tmp_path, phnum):
    ranges = spaced_ranges(phnum - 1)  # PT_NOTE + one PT_LOAD per range
    m = mounter(write_machine(tmp_path, ranges))
    head = expected_head(ranges)
    with open(m.path("vmcore"), "rb") as f:
        assert f.read(len(head)) == head
        elf = ELFFile(f)
        assert elf.num_segments() == phnum  # through section 0's sh_info with PN_XNUM
        assert elf["e_phnum"] == min(phnum, 0xFFFF)
        if phnum >= 0xFFFF:
            sh0 = elf.get_section(0).header
            assert (sh0["sh_type"], sh0["sh_info"], sh0["sh_size"], sh0["sh_link"]) == ("SHT_NULL", phnum, 1, 0)
            assert (elf["e_shnum"], elf["e_shentsize"], elf["e_shstrndx"]) == (1, 64, 0)
        else:
            assert (elf["e_shoff"], elf["e_shnum"]) == (0, 0)
        last = elf.get_segment(phnum - 1)
        assert (last["p_paddr"], last["p_filesz"]) == (ranges[-1][0], PAGE)
        f.seek(last["p_offset"])
        assert f.read(PAGE) == MARK
        assert f.read(1) == b""  # the last range ends the file
        mid = elf.get_segment(phnum // 2)
        f.seek(mid["p_offset"])
        assert (mid["p_paddr"], f.read(PAGE)) == (ranges[phnum // 2 - 1][0], bytes(PAGE))
    assert m.path("zcore/memmap").read_text() == "".join(f"{s:016x} {e - s:016x} " for s, e in ranges)


def test_meminfo_of_many_ranges(mounter, tmp_path):
    ranges = spaced_ranges(1500)
    m = mounter(write_machine(tmp_path, ranges))
    lines = [f"{kind} {s:#018x} {e - s:#018x}\n" for kind in ("detected", "exported") for s, e in ranges]
    assert m.path("meminfo/memory_map").read_text() == "".join(lines) + f"hsa      {0:#018x} {HSA:#018x}\n"
    summary = m.path("meminfo/summary").read_text()
    assert "in 1500 range(s)" in summary and "exported: " in summary
    assert summary.count("  ... and 500 more (all in memory_map)\n") == 2  # detected and exported
    listed = [line for line in summary.splitlines() if line.startswith("  0x")]
    assert len(listed) == 2 * 1000
    assert listed[999] == f"  {ranges[999][0]:#018x}-{ranges[999][1] - 1:#018x}  4 KiB"


def test_pn_xnum_vmcore_as_source_gives_it_back(mounter, tmp_path):
    ranges = spaced_ranges(65535)  # 65,536 program headers
    desc = write_machine(tmp_path, ranges)
    core = tmp_path / "big.elf"
    sha = run_vmcorefs("save", "-q", str(desc), str(core)).stdout.split()[0]
    with open(core, "rb") as f:
        assert ELFFile(f).num_segments() == 65536
    # saved again from the core as SOURCE (its memory copied from the file, range by range): the same bytes
    again = run_vmcorefs("save", "-q", str(core), str(tmp_path / "again.elf")).stdout.split()[0]
    assert again == sha
    m = mounter(core)
    with open(m.path("vmcore"), "rb") as a, open(core, "rb") as b:
        while True:
            x, y = a.read(1 << 22), b.read(1 << 22)
            assert x == y
            if not x:
                break
    assert m.path("zcore/memmap").read_text() == "".join(f"{s:016x} {e - s:016x} " for s, e in ranges)
    # info lists every range, in /vmcore, in O(ranges log ranges)
    out = run_vmcorefs("info", str(core)).stdout
    assert "65535 range(s)" in out and "65535 PT_LOAD" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("  0x")]
    assert [(int(r[0], 16), int(r[1], 16) + 1) for r in rows] == ranges
    assert all(r[-1] in ("yes", "SCLP") for r in rows)


def test_zcore_memmap_is_a_memory_map_file(mounter, tmp_path):
    ranges = [(0, 0x100000), (0x200000, 0x280000), (0x1000000, 0x1004000)]
    a = mounter(write_machine(tmp_path, ranges, name="a"))
    # zcore's memmap: all records on one line, each followed by a blank; as a memory_map it is the same machine
    b = mounter(write_machine(tmp_path, ranges, memmap_text=a.path("zcore/memmap").read_text(), name="b"))
    assert a.path("vmcore").read_bytes() == b.path("vmcore").read_bytes()
    # comments and blank lines are skipped
    c = mounter(write_machine(tmp_path, ranges, name="c", memmap_text="# start size\n\n" + "".join(
        f"{s:x} {e - s:x}  # range {i}\n" for i, (s, e) in enumerate(ranges))))
    assert c.path("vmcore").read_bytes() == a.path("vmcore").read_bytes()


GOOD = ["0000000000000000 0000000000100000", "0000000000200000 0000000000080000",
        "0000000001000000 0000000000004000"]


@pytest.mark.parametrize("line3, problem", [
    ("zz00000001000000 0000000000004000", "'zz00000001000000' is not a hex number"),
    ("0000000001000000", "a record is START SIZE (two hex numbers)"),
    ("0000000001000800 0000000000004000", "range 0x1000800+0x4000 is not page aligned"),
    ("0000000001000000 0000000000000000", "range at 0x1000000 is empty"),
    ("0000000000270000 0000000000004000", "begins below the end 0x280000 of the one before"),
    ("0000000001000000 00000000000040000000", "is not a hex number of at most 16 digits"),
    ("fffffffffffff000 0000000000004000", "ends beyond 2^64"),
])
def test_a_bad_memory_map_line_is_named(tmp_path, line3, problem):
    desc = write_machine(tmp_path, [(0, PAGE)], memmap_text="\n".join(GOOD[:2] + [line3]) + "\n")
    res = run_vmcorefs("info", str(desc), check=False)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("vmcorefs: big.toml: memory_map big.memmap line 3: "), lines[0]
    assert problem in lines[0], lines[0]


def test_memory_map_and_memory_are_exclusive(tmp_path):
    desc = write_machine(tmp_path, [(0, PAGE)])
    desc.write_text(desc.read_text().replace('vector = false',
                                             'vector = false\nmemory = [{ start = 0, size = 0x1000 }]'))
    res = run_vmcorefs("info", str(desc), check=False)
    assert res.returncode != 0 and "give memory or memory_map, not both" in res.stderr
    (tmp_path / "big.memmap").unlink()
    desc.write_text(desc.read_text().replace("memory = [{ start = 0, size = 0x1000 }]\n", ""))
    res = run_vmcorefs("info", str(desc), check=False)
    assert res.returncode != 0 and "big.toml: memory_map big.memmap: cannot read it" in res.stderr


@pytest.mark.parametrize("count", [1000, 1001])
def test_emulate_writes_a_memory_map_for_many_ranges(tmp_path, count):
    image = tmp_path / "img.raw"
    image.write_bytes(bytes(2 * PAGE * count))
    (tmp_path / "sa.bin").write_bytes(b"".join(SAVE_AREAS))
    ranges = spaced_ranges(count)
    (tmp_path / "in.map").write_text("".join(f"{s:016x} {e - s:016x}\n" for s, e in ranges))
    run_vmcorefs("emulate", str(image), "--memory-map", str(tmp_path / "in.map"), "--save-areas",
                 str(tmp_path / "sa.bin"), "--hsa-size", "16K", "-o", str(tmp_path / "m.toml"))
    text = (tmp_path / "m.toml").read_text()
    memmap = tmp_path / "m.memmap"
    if count > 1000:
        assert 'memory_map = "m.memmap"' in text and "memory = [" not in text
        assert memmap.read_text() == (tmp_path / "in.map").read_text()
    else:
        assert "memory = [" in text and not memmap.exists()
    out = run_vmcorefs("info", str(tmp_path / "m.toml")).stdout
    assert f"in {count} range(s)" in out and f"{count} PT_LOAD" in out


def test_contains_bisects_like_a_scan():
    from vmcorefs.machine import Cpu, Machine
    from vmcorefs.stores import ZeroStore
    rng = random.Random(21)
    ranges, pos = [], 0
    for _ in range(300):
        pos += rng.randrange(1, 4) * PAGE
        size = rng.randrange(1, 4) * PAGE
        ranges.append((pos, pos + size))
        pos += size
    m = Machine(memory=ranges, real=ZeroStore(pos), environment="kdump", cpus=[Cpu(0)], oldmem=(0, 0))
    for _ in range(3000):
        a, n = rng.randrange(0, pos + PAGE), rng.randrange(0, 3 * PAGE)
        assert m.contains(a, n) == any(s <= a and a + n <= e for s, e in m.memory), (a, n)
