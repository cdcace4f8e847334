# SPDX-License-Identifier: MIT
"""Extent maps, overlay stores and the kdump swap on tiny inputs with exact bytes."""

import os
import random
import struct

import pytest
import trio
from hypothesis import given, settings, strategies as st

from vmcorefs.demo import address_words
from vmcorefs.errors import InputError, MemoryReadError
from vmcorefs.machine import Cpu, Machine, OldMemory, merge_ranges
from vmcorefs.stores import BytesStore, OverlayStore, PatternStore, RawFileStore
from vmcorefs.views.extents import BytesExtent, ExtentFile, MemoryExtent, ZeroExtent


async def _mem(addr, n):
    return bytes((addr + i) % 251 for i in range(n))


async def test_extent_file_exact_bytes():
    f = ExtentFile([BytesExtent(b"HDR"), ZeroExtent(2), BytesExtent(b""), MemoryExtent(10, 4, _mem)])
    assert f.size == 9
    assert await f.read(0, 100) == b"HDR\0\0" + bytes([10, 11, 12, 13])
    assert await f.read(2, 3) == b"R\0\0"
    assert await f.read(4, 2) == b"\0\x0a"
    assert await f.read(8, 5) == b"\x0d"
    assert await f.read(9, 5) == b""
    assert f.locate(5) == (2, 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=20), min_size=1, max_size=6), st.integers(0, 130), st.integers(0, 130))
def test_extent_file_equals_concatenation(parts, off, n):
    f = ExtentFile([BytesExtent(p) for p in parts])
    assert trio.run(f.read, off, n) == b"".join(parts)[off:off + n]


def test_overlay_store():
    base = BytesStore(b"abcdefghij")
    s = OverlayStore(base, [(2, BytesStore(b"XY")), (6, BytesStore(b"Z"))])
    assert s.read(0, 10) == b"abXYefZhij"
    assert s.read(3, 4) == b"YefZ"
    assert s.read(7, 3) == b"hij"
    with pytest.raises(MemoryReadError):
        s.read(8, 3)
    with pytest.raises(ValueError):
        OverlayStore(base, [(2, BytesStore(b"XY")), (3, BytesStore(b"Z"))])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.binary(min_size=1, max_size=8)), max_size=5),
       st.integers(0, 63), st.integers(0, 64))
def test_overlay_store_matches_naive_model(patches, off, n):
    base = bytes(range(64))
    placed, model = [], bytearray(base)
    for a, data in sorted(patches):
        if a + len(data) > 64 or any(a < b + len(d) and b < a + len(data) for b, d in placed):
            continue
        placed.append((a, data))
        model[a:a + len(data)] = data
    s = OverlayStore(BytesStore(base), [(a, BytesStore(d)) for a, d in placed])
    n = min(n, 64 - off)
    assert s.read(off, n) == bytes(model[off:off + n])


def test_address_words_and_pattern():
    assert address_words(0x1000, 16) == bytes.fromhex("0000000000001000 0000000000001008")
    assert address_words(0x1003, 6) == bytes.fromhex("0000000000001000")[3:] + bytes.fromhex("0000000000001008")[:1]
    assert address_words(8, 8, 0x4D454D0000000000) == bytes.fromhex("4d454d0000000008")
    assert PatternStore(64).read(16, 16) == b"ZFCPDUMP" + (16).to_bytes(8, "big")


@pytest.mark.parametrize("tag", [0, 0x4D454D0000000000, 0x4D454D0000000000 ^ (3 << 40), 0x10, 0x80000])
def test_address_words_equal_a_word_by_word_model(tag):
    """Large reads take the block-at-a-time path: every word is its address XOR the tag, as here one by one."""
    rng = random.Random(tag)
    cases = [(0, 1 << 20), (0x27F00000, 1 << 20), (0x3FFFFF00, 3 << 20), (0xFF_FFF0_0003, (1 << 20) + 5),
             (0x123_4560_0000, (1 << 20) + 8), (0x123_4560_0000, 1 << 20)]
    cases += [(rng.randrange(1 << 34), rng.randrange(1, 3 << 20)) for _ in range(6)]
    for address, length in cases:
        start = address & ~7
        words = b"".join(struct.pack(">Q", a ^ tag) for a in range(start, address + length + 8, 8))
        assert address_words(address, length, tag) == words[address - start:address - start + length], \
            (hex(address), length)


def test_raw_store_truncated_image_is_an_error_not_zeros(tmp_path):
    p = tmp_path / "img"
    p.write_bytes(b"x" * 5000)
    s = RawFileStore(str(p), size=8192)
    assert s.read(0, 10) == b"x" * 10
    with pytest.raises(MemoryReadError) as exc:
        s.read(4096, 4096)
    assert exc.value.address == 5000
    with pytest.raises(InputError):
        RawFileStore(str(tmp_path / "missing"))


def test_merge_ranges():
    assert merge_ranges([(0, 4096), (4096, 8192), (12288, 16384)]) == [(0, 8192), (12288, 16384)]
    for bad in ([(0, 100)], [(4096, 4096)], [(8192, 12288), (0, 4096)], [(0, 8192), (4096, 12288)]):
        with pytest.raises(InputError):
            merge_ranges(bad)


def swap_model(addr, base, size):
    if addr < size:
        return addr + base
    if base <= addr < base + size:
        return addr - base
    return addr


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.integers(0, 6), st.integers(0, 63), st.integers(1, 20))
def test_kdump_swap_matches_naive_model(size_pages, extra_pages, start_page, npages):
    page = 4096
    size = size_pages * page
    base = size + extra_pages * page
    total = 64 * page
    if base + size > total:
        return
    real = bytes(address_words(0, total))
    machine = Machine(memory=[(0, total)], real=BytesStore(real), environment="kdump", cpus=[Cpu(0)],
                      oldmem=(base, size))
    old = OldMemory(machine, (base, size), None)
    start = start_page * page + 5
    n = min(npages * page, total - start)
    expected = b"".join(real[swap_model(a, base, size):swap_model(a, base, size) + 1] for a in range(start, start + n))
    assert trio.run(old.read, start, n) == expected


def test_raw_store_reads_holes_without_reading(tmp_path):
    p = tmp_path / "sparse.raw"
    with open(p, "wb") as f:
        f.truncate(64 << 20)
        f.seek(20 << 20)
        f.write(b"D" * 8192)
    s = RawFileStore(str(p))
    assert s.sparse
    assert s.read(0, 1 << 20) == bytes(1 << 20)
    assert s.read((20 << 20) - 4096, 1 << 20) == bytes(4096) + b"D" * 8192 + bytes((1 << 20) - 12288)
    assert s.read(40 << 20, 24 << 20) == bytes(24 << 20)
    assert s.hole_bytes >= (1 << 20) + 4096 + (24 << 20)
    # beyond a truncated image's end it is still an error, not zeros
    s2 = RawFileStore(str(p), size=128 << 20)
    with pytest.raises(MemoryReadError):
        s2.read(64 << 20, 1 << 20)


def test_refused_sources_leave_no_file_open(tmp_path):
    """A source refused after its image was opened closes it again."""
    import struct

    from vmcorefs.sources import open_source
    core = tmp_path / "truncated.elf"
    ehdr = b"\x7fELF\x02\x02\x01" + bytes(9) + struct.pack(">HHIQQQIHHHHHH", 4, 22, 1, 0, 64, 0, 0, 64, 56,
                                                             1, 0, 0, 0)
    core.write_bytes(ehdr + struct.pack(">IIQQQQQQ", 1, 7, 4096, 0, 0, 1 << 20, 1 << 20, 4096))
    (tmp_path / "mem.raw").write_bytes(bytes(1 << 20))
    desc = tmp_path / "nocpu.toml"
    desc.write_text('format = 1\nmemory = [{start = 0, size = 0x100000}]\n[store]\ntype = "raw"\npath = "mem.raw"\n')
    before = len(os.listdir("/proc/self/fd"))
    for src in (core, desc) * 5:
        with pytest.raises(InputError):
            open_source(str(src))
    assert len(os.listdir("/proc/self/fd")) == before
