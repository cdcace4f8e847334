# SPDX-License-Identifier: MIT
"""Extent maps, overlay stores, the kdump swap and what backs a range (pieces) on tiny inputs with exact bytes."""

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


def nowait_supported(path) -> bool:
    """Whether preadv2 takes RWF_NOWAIT here (qemu-user refuses it: EOPNOTSUPP)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.pread(fd, 1, 0)
        os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
        return True
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@pytest.fixture
def disk_dir():
    """A directory on a disk's file system (pytest's may be tmpfs, which never drops a page)."""
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        yield Path(tmp)


def test_raw_store_reads_on_the_loop_only_what_the_page_cache_holds(disk_dir):
    """
    read_nowait serves what needs no disk read (the page cache, RWF_NOWAIT),
    checked afterwards as a read is; a range the disk must give is None
    (a mount reads it in a worker thread), never zeros.
    """
    if not hasattr(os, "RWF_NOWAIT"):
        pytest.skip("no preadv2 RWF_NOWAIT in this Python")
    data = os.urandom(4 << 20)
    p = disk_dir / "dense.raw"
    p.write_bytes(data)
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # clean pages: dropped
    finally:
        os.close(fd)
    supported = nowait_supported(p)  # (reads byte 0 only)
    s = RawFileStore(str(p))
    try:
        assert s.read_nowait(1 << 20, 1 << 20) is None  # on the disk only
        assert s.read(1 << 20, 1 << 20) == data[1 << 20:2 << 20]  # a read brings it into the page cache
        if not supported:  # refused: every data read goes to a worker thread, never zeros
            assert s.read_nowait(1 << 20, 1 << 20) is None
            return
        assert s.read_nowait(1 << 20, 1 << 20) == data[1 << 20:2 << 20]
        assert s.read_nowait((1 << 20) + 5, 100) == data[(1 << 20) + 5:(1 << 20) + 105]
        os.utime(p, ns=(0, 0))  # the image changed under the store: an error, not its bytes
        with pytest.raises(MemoryReadError, match="changed since it was opened"):
            s.read_nowait(1 << 20, 1 << 20)
    finally:
        s.close()


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


# --------------------------------------------------------------------------
# what backs a range (Store.pieces, OldMemory.pieces, Machine.files): save's kernel copy


def _assemble(pieces, address: int, read) -> bytes:
    """Put *pieces* of ``[address, ...)`` together: file regions with pread, zeros, the rest with *read*."""
    from vmcorefs.stores import FileRegion, Read, Zeros
    parts, pos = [], address
    for piece in pieces:
        if isinstance(piece, FileRegion):
            data = os.pread(piece.fd, piece.length, piece.offset)
            assert len(data) == piece.length, piece  # a file region lies in its file
            parts.append(data)
        elif isinstance(piece, Zeros):
            parts.append(bytes(piece.length))
        else:
            assert isinstance(piece, Read), piece
            parts.append(read(pos, piece.length))
        pos += piece.length
    return b"".join(parts)


@pytest.fixture(scope="module")
def piece_stores(tmp_path_factory):
    """Stores over one file (random pages, holes, a 4 KiB header), each composed differently."""
    from vmcorefs.sources.elfcore import ElfMemoryStore
    from vmcorefs.sources.s390dump import DumpFileStore
    from vmcorefs.stores import FaultyStore, SliceStore, ZeroStore
    path = tmp_path_factory.mktemp("pieces") / "mem.img"
    rng = random.Random(3)
    with open(path, "wb") as f:
        for page in range(0, 64, 3):
            f.seek(page * 4096)
            f.write(rng.randbytes(4096))
        f.truncate(64 * 4096)
    raw = RawFileStore(str(path), size=72 * 4096)  # the last 8 pages beyond the file: reads fail
    faults = path.parent / "faults.toml"
    faults.write_text("")
    over = OverlayStore(raw, [(0x1800, BytesStore(b"patch" * 99)), (0x9000, PatternStore(0x3000)),
                              (0x20000, ZeroStore(0x2000)), (0x30000, SliceStore(raw, 0x1000, 0x1000))])
    stores = {
        "raw": raw, "overlay": over, "slice": SliceStore(over, 0x1234, 0x30000),
        "faulty": FaultyStore(raw, str(faults)),
        "s390 dump": DumpFileStore(str(path), 60 * 4096),
        "elf": ElfMemoryStore(str(path), [dict(p_paddr=0, p_memsz=0x8000, p_offset=0x1000, p_filesz=0x5000),
                                          dict(p_paddr=0x10000, p_memsz=0x20000, p_offset=0x9000,
                                               p_filesz=0x20000)]),
    }
    yield stores
    for s in stores.values():
        s.close()


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["raw", "overlay", "slice", "faulty", "s390 dump", "elf"]), st.integers(0, 80 * 4096),
       st.integers(1, 40 * 4096))
def test_store_pieces_put_together_read_as_the_store(piece_stores, name, address, length):
    """Whatever a store says backs a range gives the bytes its read gives; where the read fails, a piece is Read."""
    from vmcorefs.stores import Read
    store = piece_stores[name]
    if address >= store.size:
        return
    length = min(length, store.size - address)
    pieces = store.pieces(address, length)
    assert sum(p.length for p in pieces) == length, pieces
    try:
        want = store.read(address, length)
    except MemoryReadError:
        assert any(isinstance(p, Read) for p in pieces), pieces  # the save reads it, and fails as the read does
        return
    assert _assemble(pieces, address, store.read) == want


def test_store_pieces_say_where_a_file_is_copied(piece_stores):
    """File regions where the bytes are a file's as they are; reads for patches, faults and beyond the file."""
    from vmcorefs.stores import FileRegion, Read, Zeros
    raw, over, faulty = piece_stores["raw"], piece_stores["overlay"], piece_stores["faulty"]
    assert raw.pieces(0x3000, 0x2000) == [FileRegion(raw.fd, 0x3000, 0x2000)]
    assert raw.pieces(63 * 4096, 2 * 4096) == [Read(2 * 4096)]  # runs beyond the file: the read fails
    assert over.pieces(0x1000, 0x1000) == [FileRegion(raw.fd, 0x1000, 0x800), Read(495),  # the patch
                                           FileRegion(raw.fd, 0x1800 + 495, 0x800 - 495)]
    assert over.pieces(0x20000, 0x3000) == [Zeros(0x2000), FileRegion(raw.fd, 0x22000, 0x1000)]
    assert over.pieces(0x30000, 0x1000) == [FileRegion(raw.fd, 0x1000, 0x1000)]
    assert faulty.pieces(0, 0x1000) == [Read(0x1000)]  # injected faults apply only to reads
    for name in ("raw", "overlay", "slice", "faulty"):
        assert piece_stores[name].files() == [raw], name  # the overlay's slice of raw: still one file
    for name in ("s390 dump", "elf"):
        assert [f.path for f in piece_stores[name].files()] == [raw.path], name


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 63 * 4096), st.integers(1, 20 * 4096))
def test_old_memory_pieces_translate_the_kdump_swap(piece_stores, address, length):
    """Through the swap, old memory is still the image's own bytes: file regions at the swapped offsets."""
    from vmcorefs.stores import FileRegion
    raw = piece_stores["raw"]
    machine = Machine(memory=[(0, 64 * 4096)], real=raw, environment="kdump", cpus=[Cpu(0)],
                      oldmem=(0x10000, 0x8000))
    old = OldMemory(machine, (0x10000, 0x8000), None)
    length = min(length, 64 * 4096 - address)
    pieces = old.pieces(address, length)
    assert all(isinstance(p, FileRegion) for p in pieces), pieces
    assert _assemble(pieces, address, None) == trio.run(old.read, address, length)


def test_a_machine_names_each_file_it_reads_once(piece_stores):
    """A stand-alone machine reads its image through real memory and the HSA: Machine.files() names it once."""
    from vmcorefs.sclp import SdiasDevice, dump_ipl
    raw = piece_stores["raw"]
    real, hsa = dump_ipl(raw, 0x8000, bytes(512))
    machine = Machine(memory=[(0, 64 * 4096)], real=real, environment="standalone", cpus=[Cpu(0)],
                      sclp=SdiasDevice(hsa))
    assert machine.files() == [raw]


def test_old_memory_below_the_hsa_size_is_read_over_sclp(piece_stores):
    """Old memory in the HSA is read (over SCLP), even where real memory there is the image's own bytes."""
    from vmcorefs.sclp import HsaReader, SdiasDevice
    from vmcorefs.stores import FileRegion, Read, SliceStore
    raw = piece_stores["raw"]
    hsa = OverlayStore(SliceStore(raw, 0, 0x8000), [(0x1000, BytesStore(b"HSA only" * 512))])
    machine = Machine(memory=[(0, 64 * 4096)], real=raw, environment="standalone", cpus=[Cpu(0)],
                      sclp=SdiasDevice(hsa))
    old = OldMemory(machine, None, HsaReader(machine.sclp))
    assert machine.files() == [raw]
    pieces = old.pieces(0x4000, 0x8000)
    assert pieces == [Read(0x4000), FileRegion(raw.fd, 0x8000, 0x4000)]
    assert _assemble(pieces, 0x4000, lambda a, n: trio.run(old.read, a, n)) == trio.run(old.read, 0x4000, 0x8000)
    assert trio.run(old.read, 0x1000, 8) == b"HSA only"  # what a copy of the image would have got wrong


def test_file_backed_stores_read_on_the_loop_what_the_page_cache_holds(tmp_path):
    """
    The stores of dump files (the kernel's ELF vmcore, an s390 dump file)
    give the same bytes from read_nowait as from read: their file's parts
    from the page cache, zeros past a segment's p_filesz.
    """
    from conftest import unpack_fixture

    from vmcorefs.sources import open_source
    from vmcorefs.sources.s390dump import DumpFileStore
    elf = unpack_fixture("kdump-1g", "proc-vmcore.elf")
    supported = nowait_supported(elf)
    machine = open_source(str(elf))
    try:
        store = machine.real
        start, end = machine.memory[0]
        rng = random.Random(5)
        for address, length in [(start, 1 << 20), (end - (1 << 20), 1 << 20)] + [
                (rng.randrange(start, end - (1 << 20)), rng.randrange(1, 1 << 20)) for _ in range(20)]:
            expected = store.read(address, length)
            got = store.read_nowait(address, length)  # None only where RWF_NOWAIT is refused and data is read
            assert got == expected or (got is None and not supported)
    finally:
        machine.close()
    data = os.urandom(1 << 20)
    p = tmp_path / "s390.dump"
    p.write_bytes(bytes(0x1000) + data)
    s = DumpFileStore(str(p), len(data))
    try:
        assert s.read(0x5000, 0x8000) == data[0x5000:0xD000]
        assert s.read_nowait(0x5000, 0x8000) == (data[0x5000:0xD000] if supported else None)
    finally:
        s.close()
