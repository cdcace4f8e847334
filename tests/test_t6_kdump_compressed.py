# SPDX-License-Identifier: MIT
"""
makedumpfile's kdump-compressed dumps as SOURCE, made by the real tool:
Debian's s390x makedumpfile 1.7.2 (under qemu-user) run on the mounted
kdump-1g fixture at dump levels 0, 1 and 31, with -c (zlib), -l (lzo), -F
(flattened) and --split, and -E (its ELF output) to compare with. The dumps
are made once and cached in /var/tmp/vmcorefs-kdump-compressed/KEY, KEY
hashing the makedumpfile binary, the fixture and the runs.

Expectations come from outside vmcorefs: the fixture's proc-vmcore.elf
(what the real capture kernel wrote), makedumpfile's own report and -E
output, vmcore-dmesg, libkdumpfile (python3-libkdumpfile, an independent
reader of the format) and the format parsed here with struct. Snappy and
zstd, which this makedumpfile cannot write, are made here from the zlib
dump by re-encoding its pages (:func:`reencode`) and checked with
libkdumpfile.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from conftest import (REPO, Mount, describe_kdump_fixture, one_line_error, read_at, require_fuse, require_s390x,
                      require_tool, run, run_vmcorefs, sha256_file, unpack_fixture, wait_for_eio)

pytestmark = [pytest.mark.fuse, pytest.mark.fixture]

CACHE = Path(os.environ.get("VMCOREFS_KDUMP_CACHE", "/var/tmp/vmcorefs-kdump-compressed"))
PAGE = 4096
# name: makedumpfile options, output files (None: the flattened stream on standard output)
RUNS = {
    "c31": (["-c", "-d", "31", "--message-level", "31"], ["dump"]),
    "l0": (["-l", "-d", "0"], ["dump"]),
    # split blocks of 64 MiB (the default, 1 GiB, leaves this 832 MiB dump in one file)
    "c1-split": (["-c", "-d", "1", "--split", "--splitblock-size", "65536"], ["dump.1", "dump.2", "dump.3"]),
    "l31-flat": (["-l", "-d", "31", "-F"], None),
    "E31": (["-E", "-d", "31"], ["dump.elf"]),
}


# --- the dumps --------------------------------------------------------------------

def _key(mdf: list[str], elf: Path) -> str:
    h = hashlib.sha256()
    h.update(Path(mdf[-1]).read_bytes())
    h.update((elf.parent / (elf.name + ".verified")).read_bytes())
    h.update(json.dumps(RUNS, sort_keys=True).encode())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def original() -> Path:
    return unpack_fixture("kdump-1g", "proc-vmcore.elf")


@pytest.fixture(scope="module")
def dumps(original, tmp_path_factory) -> Path:
    """The directory of makedumpfile's outputs (made once, through a mount of the fixture)."""
    mdf = require_s390x("makedumpfile")
    d = CACHE / _key(mdf, original)
    if (d / "done").exists():
        return d
    require_fuse()
    work = tmp_path_factory.mktemp("mdf")
    describe_kdump_fixture(work)
    (work / "mnt").mkdir()
    m = Mount(str(work / "kdump.toml"), work / "mnt")
    tmp = CACHE / (d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for name, (opts, outs) in RUNS.items():
            (tmp / name).mkdir(parents=True)
            vmcore = str(m.path("vmcore"))
            if outs is None:
                with open(tmp / name / "dump.flat", "wb") as out:
                    res = subprocess.run(mdf + opts + [vmcore], stdout=out, stderr=subprocess.PIPE,
                                         text=True, timeout=900)
                assert res.returncode == 0, res.stderr
                log = res.stderr
            else:
                res = run(mdf + opts + [vmcore] + [tmp / name / o for o in outs], timeout=900)
                log = res.stdout + res.stderr
            assert "makedumpfile Completed." in log
            (tmp / name / "log").write_text(log)
        m.unmount()
    finally:
        m.cleanup()
    shutil.rmtree(d, ignore_errors=True)
    os.replace(tmp, d)
    (d / "done").write_text("")
    return d


def dump_source(dumps: Path, name: str) -> Path:
    files = sorted(p for p in (dumps / name).iterdir() if p.name.startswith("dump"))
    return files[0]


@pytest.fixture(scope="module")
def mounts(tmp_path_factory):
    """``mount(source) -> Mount``: each source mounted once for the module."""
    require_fuse()
    base = tmp_path_factory.mktemp("kdumpmnt")
    done: dict[str, Mount] = {}

    def mount(source) -> Mount:
        if str(source) not in done:
            mp = base / f"m{len(done)}"
            mp.mkdir()
            done[str(source)] = Mount(str(source), mp)
        return done[str(source)]
    yield mount
    for m in done.values():
        m.unmount()
        m.cleanup()


# --- the format, parsed independently (struct, makedumpfile's diskdump_mod.h) -----------

def parse(path: Path) -> dict:
    data = path.read_bytes()
    block = struct.unpack_from(">i", data, 0x1AC)[0]
    sub_blocks, bitmap_blocks = struct.unpack_from(">iI", data, 0x1B0)
    status = struct.unpack_from(">I", data, 0x1A8)[0]
    max_mapnr = struct.unpack_from(">Q", data, block + 0x60)[0]
    half = bitmap_blocks * block // 2
    bm = (1 + sub_blocks) * block
    bitmap2 = int.from_bytes(data[bm + half:bm + 2 * half], "little")
    dumped = [pfn for pfn in range(max_mapnr) if bitmap2 >> pfn & 1]
    desc = bm + bitmap_blocks * block
    descs = [struct.unpack_from(">qIIQ", data, desc + 24 * i) for i in range(len(dumped))]
    return {"data": data, "status": status, "desc": desc, "dumped": dumped, "descs": descs}


def reencode(src: Path, dst: Path, flag: int, compress) -> None:
    """Write *src* (a kdump-compressed dump) again with every page compressed by *compress* (flag *flag*)."""
    f = parse(src)
    data = f["data"]
    out = bytearray(data[:f["desc"]])
    struct.pack_into(">I", out, 0x1A8, flag)
    pos = f["desc"] + 24 * len(f["descs"])
    descs, pages = [], []
    for off, size, flags, pflags in f["descs"]:
        raw = data[off:off + size]
        page = zlib.decompress(raw) if flags & 1 else raw
        assert len(page) == PAGE
        comp = compress(page)
        if len(comp) < PAGE:
            descs.append(struct.pack(">qIIQ", pos, len(comp), flag, pflags))
            pages.append(comp)
        else:
            descs.append(struct.pack(">qIIQ", pos, PAGE, 0, pflags))
            pages.append(page)
        pos += len(pages[-1])
    dst.write_bytes(bytes(out) + b"".join(descs) + b"".join(pages))


# --- /vmcore, read back ----------------------------------------------------------------

def loads(path) -> list[tuple[int, int, int]]:
    """``(p_offset, p_paddr, p_filesz)`` of each PT_LOAD (pyelftools)."""
    from elftools.elf.elffile import ELFFile
    with open(path, "rb", buffering=0) as f:  # read no more than asked: a damaged page is EIO
        return [(s["p_offset"], s["p_paddr"], s["p_filesz"]) for s in ELFFile(f).iter_segments()
                if s["p_type"] == "PT_LOAD"]


def notes(path) -> bytes:
    from elftools.elf.elffile import ELFFile
    with open(path, "rb", buffering=0) as f:
        return next(s.data() for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_NOTE")


def physical(path, paddr: int, n: int) -> bytes | None:
    """*n* bytes at *paddr* of the ELF core *path*, if its PT_LOADs hold them in the file."""
    for off, start, size in loads(path):
        if start <= paddr and paddr + n <= start + size:
            with open(path, "rb", buffering=0) as f:
                f.seek(off + paddr - start)
                return f.read(n)
    return None




def assert_kept_pages_equal(vmcore, original) -> int:
    """Every PT_LOAD byte of *vmcore* equals *original* at the same physical address; return bytes compared."""
    total = 0
    with open(vmcore, "rb") as got, open(original, "rb") as ref:
        ref_loads = loads(original)
        for off, paddr, size in loads(vmcore):
            ro, rs, rz = next(l for l in ref_loads if l[1] <= paddr and paddr + size <= l[1] + l[2])
            for pos in range(0, size, 1 << 22):
                n = min(1 << 22, size - pos)
                got.seek(off + pos)
                ref.seek(ro + paddr - rs + pos)
                assert got.read(n) == ref.read(n), hex(paddr + pos)
            total += size
    return total


# --- tests --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["l0", "c1-split"])
def test_levels_0_and_1_give_the_kernels_vmcore_back(name, dumps, original, mounts):
    """
    Nothing excluded (zero pages stored once, not dropped): /vmcore is
    proc-vmcore.elf, byte for byte. A split dump is named by any of its
    files: here the middle one.
    """
    src = dump_source(dumps, name)
    if name == "c1-split":
        ranges = [struct.unpack_from(">QQ", p.read_bytes()[:2 * PAGE], PAGE + 0x50) for p in sorted(
            (dumps / name).glob("dump.*"))]
        assert len(ranges) == 3 and all(a < b for a, b in ranges), ranges  # three parts, none empty
        src = dumps / name / "dump.2"
    m = mounts(src)
    assert sha256_file(m.path("vmcore")) == sha256_file(original)


@pytest.mark.parametrize("name", ["c31", "l31-flat"])
def test_level_31_keeps_exactly_the_dumped_pages(name, dumps, original, mounts):
    m = mounts(dump_source(dumps, name))
    vmcore = m.path("vmcore")
    # the register notes (and VMCOREINFO) are the original's
    assert notes(vmcore) == notes(original)
    # every kept page is the original's
    assert assert_kept_pages_equal(vmcore, original) > 0
    # /vmcore holds exactly the pages the 2nd bitmap names (the flattened stream: as -R would rebuild it)
    pages = {paddr // PAGE + i for _, paddr, size in loads(vmcore) for i in range(size // PAGE)}
    if name == "c31":
        assert pages == set(parse(dump_source(dumps, name))["dumped"])
    else:
        assert pages == set(parse(dump_source(dumps, "c31"))["dumped"])  # the same level, the same pages


def test_level_31_excluded_pages_are_counted_as_makedumpfile_reports(dumps, mounts):
    log = (dumps / "c31" / "log").read_text()
    report = {k.strip(): int(v, 16) for k, v in re.findall(r"^\s*([A-Za-z ]+?)\s*: (0x[0-9a-f]+)$", log, re.M)}
    # the kdump-compressed format keeps zero pages (one shared page); the rest of "Excluded" is not in the file
    excluded = report["Excluded pages"] - report["Pages filled with zero"]
    m = mounts(dump_source(dumps, "c31"))
    summary = m.path("meminfo/summary").read_text()
    assert re.search(r"^dump level: 31 \(filters zero, cache, cache private, user, free pages\); "
                     rf"{excluded} of {report['Original pages']} pages excluded", summary, re.M), summary
    assert f"\nexcluded pages: {excluded}\n" in summary
    info = run_vmcorefs("info", dump_source(dumps, "c31")).stdout
    assert re.search(rf"^dump level\s+31 \(.*\); {excluded} of ", info, re.M), info


def test_libkdumpfile_reads_what_vmcore_shows(dumps, mounts):
    """An independent reader of the format: the same bytes for kept pages, 'excluded' for the others."""
    src = dump_source(dumps, "c31")
    m = mounts(src)
    script = r"""
import json, sys, kdumpfile
k = kdumpfile.kdumpfile(sys.argv[1])
out = {}
for a in json.loads(sys.argv[2]):
    try:
        out[a] = k.read(kdumpfile.KDUMP_MACHPHYSADDR, a, 4096).hex()
    except kdumpfile.exceptions.NoDataException as e:
        out[a] = "excluded: " + str(e)
print(json.dumps(out))
"""
    ld = loads(m.path("vmcore"))
    kept = [p + i * PAGE for _, p, s in ld for i in (0, s // PAGE // 2, s // PAGE - 1)]
    gaps = [a[1] + a[2] for a in ld[:-1]]  # the first page after each PT_LOAD: excluded
    res = run(["/usr/bin/python3", "-c", script, src, json.dumps(kept + gaps)], ok=False)
    if res.returncode and "No module named 'kdumpfile'" in res.stderr:
        pytest.skip("python3-libkdumpfile is missing for /usr/bin/python3")
    got = json.loads(res.stdout)
    for a in kept:
        assert bytes.fromhex(got[str(a)]) == physical(m.path("vmcore"), a, PAGE), hex(a)
    for a in gaps:
        assert got[str(a)].startswith("excluded"), hex(a)


def test_vmcore_dmesg_gives_the_same_log(dumps, original, mounts):
    tool = require_tool("vmcore-dmesg", "kexec-tools")
    want = run([tool, original]).stdout
    assert "Kernel panic" in want
    for name in ("c31", "l31-flat"):
        assert run([tool, mounts(dump_source(dumps, name)).path("vmcore")]).stdout == want


def test_makedumpfile_elf_output_of_the_same_level(dumps, original, mounts):
    """
    ``makedumpfile -E -d 31`` and /vmcore of the -c -d 31 dump: the same
    notes; every page both hold in the file is the same; /vmcore also holds
    the zero pages (the compressed format keeps them, as one shared page;
    -E leaves them out of the file), -E also short runs of excluded pages
    with their bytes (it merges runs to save program headers).
    """
    elf = dumps / "E31" / "dump.elf"
    vmcore = mounts(dump_source(dumps, "c31")).path("vmcore")
    assert notes(elf) == notes(vmcore)
    ours = {p // PAGE + i for _, p, s in loads(vmcore) for i in range(s // PAGE)}
    theirs = {p // PAGE + i for _, p, s in loads(elf) for i in range(s // PAGE)}
    both = sorted(ours & theirs)
    assert len(both) > len(ours) // 2
    for pfn in both:
        assert physical(elf, pfn * PAGE, PAGE) == physical(vmcore, pfn * PAGE, PAGE), hex(pfn)
    only_ours = sorted(ours - theirs)
    for pfn in only_ours:
        assert physical(original, pfn * PAGE, PAGE) == bytes(PAGE), hex(pfn)
    only_theirs = sorted(theirs - ours)
    for pfn in only_theirs[:256]:
        assert physical(elf, pfn * PAGE, PAGE) == physical(original, pfn * PAGE, PAGE)
    print(f"-E -d 31: {len(loads(elf))} PT_LOADs, {len(theirs)} pages in the file; /vmcore of -c -d 31: "
          f"{len(loads(vmcore))} PT_LOADs, {len(ours)} pages; {len(only_ours)} zero pages only in /vmcore, "
          f"{len(only_theirs)} excluded pages only in -E")


@pytest.mark.parametrize("codec,flag", [("snappy", 0x4), ("zstd", 0x20)])
def test_snappy_and_zstd_made_here_read_as_libkdumpfile_reads_them(codec, flag, dumps, original, mounts,
                                                                    tmp_path_factory):
    if codec == "snappy":
        import cramjam
        compress = lambda page: bytes(cramjam.snappy.compress_raw(page))  # noqa: E731
    else:
        import zstandard
        compress = zstandard.ZstdCompressor(level=1).compress
    d = tmp_path_factory.mktemp(codec)
    src = d / f"dump.{codec}"
    reencode(dump_source(dumps, "c31"), src, flag, compress)
    assert any(fl == flag for _, _, fl, _ in parse(src)["descs"])
    vmcore = mounts(src).path("vmcore")
    assert notes(vmcore) == notes(original)
    assert assert_kept_pages_equal(vmcore, original) > 0
    script = r"""
import hashlib, sys, kdumpfile
k = kdumpfile.kdumpfile(sys.argv[1])
for a in sys.argv[2:]:
    print(hashlib.sha256(k.read(kdumpfile.KDUMP_MACHPHYSADDR, int(a), 4096)).hexdigest())
"""
    ld = loads(vmcore)
    addrs = [p + i * PAGE for _, p, s in ld for i in range(0, s // PAGE, 7)]
    res = run(["/usr/bin/python3", "-c", script, src] + [str(a) for a in addrs], ok=False)
    if res.returncode and "No module named 'kdumpfile'" in res.stderr:
        pytest.skip("python3-libkdumpfile is missing for /usr/bin/python3")
    assert res.returncode == 0, res.stderr[-2000:]
    want = [hashlib.sha256(physical(vmcore, a, PAGE)).hexdigest() for a in addrs]
    assert res.stdout.split() == want


def test_a_missing_codec_is_one_line_naming_the_extra(dumps, tmp_path):
    (tmp_path / "lzo").mkdir()
    (tmp_path / "lzo" / "__init__.py").write_text("raise ImportError('no lzo here')\n")
    res = subprocess.run([sys.executable, "-m", "vmcorefs", "info", dump_source(dumps, "l0")], capture_output=True,
                         text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=f"{tmp_path}:{REPO}"))
    assert res.returncode != 0
    assert res.stderr.count("\n") == 1, res.stderr
    assert "lzo" in res.stderr and "pip install 'vmcorefs[lzo]'" in res.stderr


def test_split_dump_needs_all_its_files(dumps, tmp_path):
    part = dump_source(dumps, "c1-split")
    shutil.copy(part, tmp_path / "only-part")
    res = run_vmcorefs("info", tmp_path / "only-part", check=False)
    assert res.returncode != 0 and res.stderr.count("\n") == 1
    assert "split dump" in res.stderr and "missing" in res.stderr, res.stderr


def test_a_fifo_is_refused(tmp_path):
    os.mkfifo(tmp_path / "stream")
    res = run_vmcorefs("info", tmp_path / "stream", check=False, timeout=30)
    assert res.returncode != 0 and res.stderr.count("\n") == 1
    assert "pipe or FIFO" in res.stderr


# --- damaged dumps ------------------------------------------------------------------

def vmcore_offset(vmcore, paddr: int) -> int:
    for off, start, size in loads(vmcore):
        if start <= paddr < start + size:
            return off + paddr - start
    raise AssertionError(f"{paddr:#x} is not in {vmcore}")


def check_eio_exactly(vmcore, bad_pfns: set[int], original) -> None:
    """EIO for the pages of *bad_pfns*, the original's bytes for the pages next to them."""
    fd = os.open(vmcore, os.O_RDONLY)
    try:
        for pfn in sorted(bad_pfns)[:8]:
            with pytest.raises(OSError) as exc:
                os.pread(fd, PAGE, vmcore_offset(vmcore, pfn * PAGE))
            assert exc.value.errno == errno.EIO
            for near in (pfn - 1, pfn + 1):
                if near in bad_pfns:
                    continue
                try:
                    off = vmcore_offset(vmcore, near * PAGE)
                except AssertionError:
                    continue  # not dumped
                assert os.pread(fd, PAGE, off) == physical(original, near * PAGE, PAGE), hex(near)
    finally:
        os.close(fd)


def test_damaged_pages_give_eio_exactly_there(dumps, original, mounter, tmp_path):
    f = parse(dump_source(dumps, "c31"))
    data = bytearray(f["data"])
    compressed = [i for i, d in enumerate(f["descs"]) if d[2] == 1]
    # a bad descriptor: its size beyond a page
    bad_desc = compressed[100]
    struct.pack_into(">I", data, f["desc"] + 24 * bad_desc + 8, 0x10000)
    # a page that does not decompress: its data overwritten
    bad_data = compressed[200]
    off, size, _, _ = f["descs"][bad_data]
    data[off:off + size] = b"\xa5" * size
    src = tmp_path / "damaged.kdump"
    src.write_bytes(bytes(data))
    m = mounter(src)
    check_eio_exactly(m.path("vmcore"), {f["dumped"][bad_desc], f["dumped"][bad_data]}, original)
    assert m.path("meminfo/summary").read_text()  # the rest still works


def test_truncated_dump_gives_eio_for_the_pages_beyond_the_end(dumps, original, mounter, tmp_path):
    f = parse(dump_source(dumps, "c31"))
    cut = f["descs"][len(f["descs"]) // 2][0] + 1  # in the middle of a page's data
    src = tmp_path / "truncated.kdump"
    src.write_bytes(f["data"][:cut])
    lost = {pfn for pfn, (off, size, _, _) in zip(f["dumped"], f["descs"]) if off + size > cut}
    kept = [pfn for pfn in f["dumped"] if pfn not in lost]
    assert lost and kept
    m = mounter(src)
    check_eio_exactly(m.path("vmcore"), lost, original)
    fd = os.open(m.path("vmcore"), os.O_RDONLY)
    try:
        for pfn in kept[::97]:
            assert os.pread(fd, PAGE, vmcore_offset(m.path("vmcore"), pfn * PAGE)) == \
                physical(original, pfn * PAGE, PAGE), hex(pfn)
    finally:
        os.close(fd)


@pytest.mark.parametrize("damage", ["header", "block size", "bitmaps", "bitmap names one more page",
                                    "bitmap names one page less"])
def test_an_unusable_header_is_one_line(damage, dumps, tmp_path):
    data = bytearray(dump_source(dumps, "c31").read_bytes())
    f = parse(dump_source(dumps, "c31"))
    bitmap2 = 3 * PAGE + struct.unpack_from(">I", data, 0x1B4)[0] * PAGE // 2
    if damage == "bitmap names one more page":
        pfn = next(p for p in range(f["dumped"][0], f["dumped"][-1]) if p not in set(f["dumped"]))
        data[bitmap2 + pfn // 8] |= 1 << pfn % 8
    elif damage == "bitmap names one page less":
        pfn = f["dumped"][len(f["dumped"]) // 2]
        data[bitmap2 + pfn // 8] &= ~(1 << pfn % 8) & 0xFF
    elif damage == "header":
        data = data[:300]
    elif damage == "block size":
        struct.pack_into(">i", data, 0x1AC, 12345)
    else:
        data = data[:3 * PAGE + 100]  # the bitmaps start at block 3
    src = tmp_path / "bad.kdump"
    src.write_bytes(bytes(data))
    res = run_vmcorefs("info", src, check=False)
    assert res.returncode != 0
    assert res.stderr.startswith("vmcorefs: ") and res.stderr.count("\n") == 1, res.stderr
    assert str(src) in res.stderr


def test_crash_gives_the_same_log_and_backtrace(dumps, original, mounts, tmp_path):
    """
    crash on /vmcore of the -d 31 dump and on proc-vmcore.elf: the same log and
    bt; an excluded page is a read error.
    """
    crash = require_s390x("crash")
    vmlinux = unpack_fixture("kdump-1g", "vmlinux")
    vmcore = mounts(dump_source(dumps, "c31")).path("vmcore")
    gap = loads(vmcore)[0][1] + loads(vmcore)[0][2]  # the first excluded page
    got = {}
    for name, core in (("original", original), ("c31", vmcore)):
        d = tmp_path / name
        d.mkdir()
        (d / "cmds").write_text(f"log > {d}/log\nbt > {d}/bt\nrd -p {gap:#x} 2\nquit\n")
        res = run(crash + ["-s", "-i", d / "cmds", vmlinux, core], timeout=900, cwd=d, env=dict(os.environ, TZ="UTC"))
        got[name] = ((d / "log").read_text(), (d / "bt").read_text(), res.stdout + res.stderr)
    assert "Kernel panic" in got["original"][0]
    assert got["c31"][0] == got["original"][0]
    assert got["c31"][1] == got["original"][1] and " #2 " in got["c31"][1]
    assert f"rd: read error: physical address: {gap:x}" in got["c31"][2]
    assert "read error" not in got["original"][2]


def flatten(src: Path, dst: Path, blocks: list[tuple[int, int]]) -> None:
    """Write *src* as a flattened stream (makedumpfile.h) of the ``(offset, size)`` pieces *blocks*, in that order."""
    data = src.read_bytes()
    out = [b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1)]
    out[0] = out[0].ljust(4096, b"\0")
    for off, size in blocks:
        out.append(struct.pack(">qq", off, size) + data[off:off + size])
    out.append(struct.pack(">qq", -1, -1))
    dst.write_bytes(b"".join(out))


def test_flattened_blocks_in_any_order_and_overlapping(dumps, tmp_path):
    """
    A flattened stream whose blocks come out of order and overwrite each
    other (a later block wins, as makedumpfile -R writes them) gives the same
    /vmcore as the dump file it stands for; a stream cut short is one line.
    """
    src = dump_source(dumps, "c31")
    size = src.stat().st_size
    step = 70001
    pieces = [(o, min(step, size - o)) for o in range(0, size, step)]
    # reversed; then every third piece again, shifted by half a piece (overwriting its neighbours with the same bytes)
    blocks = pieces[::-1] + [(o + step // 2, min(step, size - o - step // 2)) for o, _ in pieces[::3]
                             if o + step // 2 < size]
    flat = tmp_path / "dump.flat"
    flatten(src, flat, blocks)
    # the first block written over with garbage and then with the right bytes: the later one wins
    data = src.read_bytes()
    garbage = struct.pack(">qq", 0, 4096) + b"\xee" * 4096
    right = struct.pack(">qq", 0, 4096) + data[:4096]
    stream = flat.read_bytes()[:-16]
    flat.write_bytes(stream + garbage + right + struct.pack(">qq", -1, -1))
    a, b = tmp_path / "a.elf", tmp_path / "b.elf"
    run_vmcorefs("save", src, a, "-q", "--no-sha256")
    run_vmcorefs("save", flat, b, "-q", "--no-sha256")
    assert sha256_file(a) == sha256_file(b)
    cut = tmp_path / "cut.flat"
    cut.write_bytes(stream[:len(stream) // 2])
    res = run_vmcorefs("info", cut, check=False)
    assert res.returncode != 0 and res.stderr.count("\n") == 1 and "flattened" in res.stderr, res.stderr


def test_check_save_and_info_take_a_compressed_dump(dumps, original, tmp_path):
    src = dump_source(dumps, "l0")
    res = run_vmcorefs("check", src, check=False)
    assert res.returncode == 0, res.stdout + res.stderr  # a kdump vmcore: the crashkernel left out
    run_vmcorefs("save", src, tmp_path / "out.elf", "-q", "--no-sha256")
    assert sha256_file(tmp_path / "out.elf") == sha256_file(original)


# --- the files of a dump: refused as OUT, checked for changes ---------------------------

@pytest.fixture
def split_copy(dumps, tmp_path) -> list[Path]:
    """A copy of the split dump's files (changed by the test, not the cached ones)."""
    parts = sorted(p for p in (dumps / "c1-split").iterdir() if p.name.startswith("dump"))
    assert len(parts) == 3, parts
    for p in parts:
        shutil.copy(p, tmp_path / p.name)
    return [tmp_path / p.name for p in parts]


def test_save_refuses_to_overwrite_a_part_of_the_split_dump(split_copy, mounter, tmp_path):
    """Every file of a split dump is one the dump is read from: save refuses it as OUT, directly or through a mount."""
    before = [sha256_file(p) for p in split_copy]
    m = mounter(split_copy[0])
    for source in (split_copy[0], m.mountpoint):
        for target in split_copy[1:]:
            res = run_vmcorefs("save", source, target, "--force", check=False)
            one_line_error(res, "which the dump is read from")
            assert not Path(str(target) + ".vmcorefs-partial").exists()
    assert [sha256_file(p) for p in split_copy] == before


def test_save_stops_when_a_part_of_the_split_dump_changes(split_copy, monkeypatch, capsys):
    """The last part of the dump touched once the first chunk is written: the save stops, naming it."""
    import vmcorefs.save as save_mod
    real = save_mod.Saver.save_chunk
    done = []

    async def save_chunk(self, index, offset, length, item):
        if done and "touched" not in done:
            st = os.stat(split_copy[2])
            os.utime(split_copy[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
            done.append("touched")
        await real(self, index, offset, length, item)
        done.append(index)
    monkeypatch.setattr(save_mod.Saver, "save_chunk", save_chunk)
    out = split_copy[0].parent / "out.elf"
    with pytest.raises(save_mod.SaveError) as exc:
        save_mod.save(str(split_copy[0]), str(out), chunk=8 << 20, checksum=False)
    assert "changed since it was opened" in str(exc.value) and split_copy[2].name in str(exc.value), exc.value
    assert "\n" not in str(exc.value)
    capsys.readouterr()


def test_a_dump_file_changed_under_the_mount_gives_eio(split_copy, original, mounter):
    """As a raw image: a part of the dump changed under the mount gives EIO, never the cached bytes."""
    m = mounter(split_copy[0])
    vm = m.path("vmcore")
    off, start, size = loads(vm)[0]
    old = physical(original, start, PAGE)
    fd = os.open(vm, os.O_RDONLY)
    try:
        assert os.pread(fd, PAGE, off) == old
        st = os.stat(split_copy[0])
        os.utime(split_copy[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        with pytest.raises(OSError) as exc:
            read_at(vm, off, PAGE)
        assert exc.value.errno == errno.EIO
        wait_for_eio(fd, off, old)  # the file held open: its pages go within half a second
    finally:
        os.close(fd)
