# SPDX-License-Identifier: MIT
"""
The foundation, end to end on a real FUSE mount: an emulated stand-alone
(zfcpdump) dump of a synthetic machine with a memory hole, 4 CPUs (one not
dumped because its prefix is 0), a VMCOREINFO note and low memory behind the
SCLP-emulated HSA. /vmcore is read with cp, pread, readelf, pyelftools and
gdb-multiarch and compared with the source image and the independent
reference builder in tests/reference.py.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from conftest import run_vmcorefs, sha256_file
from reference import decode_save_area, reference_vmcore

MIB = 1 << 20
IMAGE_SIZE = 80 * MIB
RANGES = [(0, 40 * MIB), (48 * MIB, 80 * MIB)]  # a hole at 40..48 MiB
HSA_SIZE = 32 * MIB
VMCOREINFO = b"OSRELEASE=6.1.0-synthetic\nPAGESIZE=4096\nSYMBOL(_stext)=100000\nCRASHTIME=1\n"
PREFIXES = [0x30000, 0x32000, 0x34000, 0]  # the last CPU is offline: prefix 0, not dumped


def make_save_area(rng: random.Random, prefix: int, cpu: int) -> bytes:
    sa = bytearray(rng.randbytes(512))
    struct.pack_into(">I", sa, 0x118, prefix)
    struct.pack_into(">2Q", sa, 0x100, 0x0704C00180000000, 0x100000 + 0x100 * cpu)
    return bytes(sa)


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """Build the image, the CPU save areas and the description (with vmcorefs emulate)."""
    d = tmp_path_factory.mktemp("standalone")
    rng = random.Random(3)
    image = bytearray(rng.randbytes(IMAGE_SIZE))
    image[60 * MIB:64 * MIB] = bytes(4 * MIB)  # some zero pages
    note_addr = 0x7000
    desc = VMCOREINFO
    note = struct.pack(">III", 11, len(desc), 0) + b"VMCOREINFO\0\0" + desc
    image[note_addr:note_addr + len(note)] = note
    struct.pack_into(">Q", image, 0xE0C, note_addr)
    struct.pack_into(">Q", image, 0xE18, 0)  # no os_info: a stand-alone dump
    (d / "mem.raw").write_bytes(image)
    save_areas = [make_save_area(rng, p, i) for i, p in enumerate(PREFIXES)]
    (d / "cpus.bin").write_bytes(b"".join(save_areas))
    run_vmcorefs("emulate", d / "mem.raw", "-o", d / "machine.toml", "--memory", "0:40M",
                 "--memory", "48M:32M", "--hsa-size", "32M", "--save-areas", d / "cpus.bin")
    # old memory as the dump must show it: the HSA copy holds the boot CPU's
    # status, stored at 0x1200 by the machine at dump IPL
    old = bytearray(image)
    old[0x1200:0x1400] = save_areas[0]
    ref = d / "reference.elf"
    reference_vmcore(str(ref), lambda a, n: bytes(old[a:a + n]), RANGES, save_areas, None, VMCOREINFO)
    return {"dir": d, "desc": d / "machine.toml", "old": bytes(old), "image": bytes(image),
            "save_areas": save_areas, "reference": ref}


@pytest.fixture(scope="module")
def mounted(machine, tmp_path_factory):
    from conftest import Mount, require_fuse
    require_fuse()
    mp = tmp_path_factory.mktemp("mnt")
    m = Mount(str(machine["desc"]), mp)
    yield m
    m.cleanup()


def test_readelf_parses_vmcore(mounted):
    vmcore = mounted.path("vmcore")
    out = subprocess.run(["readelf", "-hlnW", str(vmcore)], capture_output=True, text=True, check=True)
    assert out.stderr == ""
    assert "CORE (Core file)" in out.stdout and "IBM S/390" in out.stdout
    loads = re.findall(r"^\s+LOAD\s+(0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+) RWE 0x1000",
                       out.stdout, re.M)
    assert [(int(a, 16), int(a, 16) + int(s, 16)) for _o, _v, a, s, _m in loads] == RANGES
    notes = re.findall(r"^\s+(CORE|LINUX|VMCOREINFO)\s+0x[0-9a-f]+\s+(\S+)", out.stdout, re.M)
    per_cpu = ["NT_PRSTATUS", "NT_FPREGSET", "NT_S390_TIMER", "NT_S390_TODCMP", "NT_S390_TODPREG",
               "NT_S390_CTRS", "NT_S390_PREFIX"]
    assert [n for _o, n in notes] == ["NT_PRPSINFO"] + per_cpu * 3 + ["Unknown"]


def _raw(desc) -> bytes:
    """pyelftools gives undecoded note descriptors as latin-1 str or bytes."""
    return desc.encode("latin-1") if isinstance(desc, str) else bytes(desc)


def test_pyelftools_notes_carry_registers(mounted, machine):
    with open(mounted.path("vmcore"), "rb") as f:
        elf = ELFFile(f)
        segs = list(elf.iter_segments())
        assert segs[0]["p_type"] == "PT_NOTE"
        assert [s["p_type"] for s in segs[1:]] == ["PT_LOAD"] * len(RANGES)
        prstatus = [n for n in segs[0].iter_notes() if n["n_type"] == "NT_PRSTATUS"]
        prefixes = [n for n in segs[0].iter_notes() if n["n_type"] == 0x305]
        vmci = [n for n in segs[0].iter_notes() if n["n_name"] == "VMCOREINFO"]
    dumped = [sa for sa in machine["save_areas"] if decode_save_area(sa)["prefix"]]
    assert len(prstatus) == len(dumped) == 3
    for i, (n, sa) in enumerate(zip(prstatus, dumped)):
        raw = _raw(n["n_descdata"])
        regs = decode_save_area(sa)
        assert struct.unpack_from(">i", raw, 32)[0] == i + 1  # pr_pid = CPU number, boot CPU first
        assert struct.unpack_from(">2Q", raw, 112) == regs["psw"]
        assert struct.unpack_from(">16Q", raw, 128) == regs["gprs"]
        assert struct.unpack_from(">16I", raw, 256) == regs["acrs"]
    assert [struct.unpack(">I", _raw(n["n_descdata"]))[0] for n in prefixes] == PREFIXES[:3]
    assert len(vmci) == 1 and _raw(vmci[0]["n_descdata"]) == VMCOREINFO


def test_cp_equals_reference_builder(mounted, machine, tmp_path):
    out = tmp_path / "dump.elf"
    subprocess.run(["cp", str(mounted.path("vmcore")), str(out)], check=True)
    assert os.path.getsize(out) == os.stat(mounted.path("vmcore")).st_size
    assert sha256_file(out) == sha256_file(machine["reference"])


def test_pt_load_bytes_equal_source_memory(mounted, machine):
    """Every PT_LOAD byte is the old memory: HSA part below 32 MiB, real memory above."""
    old = machine["old"]
    with open(mounted.path("vmcore"), "rb") as f:
        elf = ELFFile(f)
        loads = [(s["p_offset"], s["p_paddr"], s["p_filesz"]) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    fd = os.open(mounted.path("vmcore"), os.O_RDONLY)
    try:
        for off, paddr, size in loads:
            pos = 0
            while pos < size:
                n = min(size - pos, 8 * MIB)
                assert os.pread(fd, n, off + pos) == old[paddr + pos:paddr + pos + n], hex(paddr + pos)
                pos += n
        # the HSA part really came through the HSA: real memory there is the dump tool
        hsa_off = loads[0][0] + 0x1000
        assert os.pread(fd, 16, hsa_off) == old[0x1000:0x1010]
        assert old[0x1000:0x1010] != b"ZFCPDUMP" + (0x1000).to_bytes(8, "big")
    finally:
        os.close(fd)


def test_random_reads_across_boundaries(mounted, machine):
    ref = Path(machine["reference"]).read_bytes()
    size = len(ref)
    with open(mounted.path("vmcore"), "rb") as f:
        elf = ELFFile(f)
        loads = [(s["p_offset"], s["p_paddr"], s["p_filesz"]) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        note_seg = next(s for s in elf.iter_segments() if s["p_type"] == "PT_NOTE")
    boundaries = [0, 64, 4096, note_seg["p_offset"] + note_seg["p_filesz"], loads[0][0],
                  loads[0][0] + HSA_SIZE, loads[0][0] + loads[0][2], loads[1][0], size]
    rng = random.Random(7)
    fd = os.open(mounted.path("vmcore"), os.O_RDONLY)
    try:
        cases = [(max(0, b - k), 2 * k) for b in boundaries for k in (1, 100, 4096, 300000)]
        cases += [(rng.randrange(size), rng.choice([1, 7, 4096, 65536, 1 << 20, 3 << 20])) for _ in range(300)]
        for off, n in cases:
            assert os.pread(fd, n, off) == ref[off:off + n], (off, n)
        assert os.pread(fd, 10, size) == b""  # end of file
    finally:
        os.close(fd)


def test_st_size_and_permissions(mounted, machine):
    st = os.stat(mounted.path("vmcore"))
    assert st.st_size == os.path.getsize(machine["reference"])
    assert stat.S_IMODE(st.st_mode) == 0o400 and st.st_uid == os.getuid()
    assert stat.S_IMODE(os.stat(mounted.path("meminfo")).st_mode) == 0o500
    assert stat.S_IMODE(os.stat(mounted.mountpoint).st_mode) == 0o500
    with pytest.raises(OSError) as exc:
        open(mounted.path("vmcore"), "r+b")
    assert exc.value.errno in (13, 30)  # EACCES / EROFS


def test_meminfo_summary(mounted):
    text = mounted.path("meminfo/summary").read_text()
    assert "mode: standalone" in text
    assert "cpus: 4 (3 dumped)" in text
    assert "0x0000000000000000-0x00000000027fffff" in text and "0x0000000003000000-0x0000000004ffffff" in text
    assert mounted.path("meminfo/vmcoreinfo").read_bytes() == VMCOREINFO


@pytest.mark.skipif(shutil.which("gdb-multiarch") is None and not os.environ.get("CI"),
                    reason="gdb-multiarch is not installed (apt-get install gdb-multiarch)")
def test_gdb_sees_one_thread_per_cpu(mounted, machine):
    cmds = ["set architecture s390:64-bit", f"core-file {mounted.path('vmcore')}", "info threads"]
    for i in range(1, 4):
        cmds += [f"thread {i}", "p/x $pc"]
    out = subprocess.run(["gdb-multiarch", "-nx", "-batch"] + [a for c in cmds for a in ("-ex", c)],
                         capture_output=True, text=True, timeout=120)
    threads = re.findall(r"^\*?\s+(\d+)\s+(?:LWP|process|Thread)\s+(\d+)", out.stdout, re.M)
    assert len(threads) == 3, out.stdout + out.stderr
    pcs = [int(v, 16) for v in re.findall(r"^\$\d+ = (0x[0-9a-f]+)", out.stdout, re.M)]
    expected = [decode_save_area(sa)["psw"][1] for sa in machine["save_areas"][:3]]
    assert pcs == expected, out.stdout


def test_unmount_and_remount_same_mountpoint(machine, tmp_path):
    from conftest import Mount, require_fuse
    require_fuse()
    mp = tmp_path / "mnt"
    mp.mkdir()
    for _ in range(2):
        m = Mount(str(machine["desc"]), mp)
        try:
            with open(m.path("vmcore"), "rb") as f:
                assert f.read(4) == b"\x7fELF"
            m.unmount()
        finally:
            m.cleanup()


def test_daemon_mount_returns_when_ready(machine, tmp_path):
    from conftest import require_fuse
    require_fuse()
    mp = tmp_path / "mnt"
    mp.mkdir()
    res = run_vmcorefs("mount", machine["desc"], mp)
    try:
        assert res.stdout == "" and res.stderr == ""
        assert os.path.ismount(mp)  # ready when the command returned
        with open(mp / "vmcore", "rb") as f:
            assert f.read(4) == b"\x7fELF"
        # a second mount on a busy mount point is refused with one line
        again = run_vmcorefs("mount", machine["desc"], mp, check=False)
        assert again.returncode != 0 and "already a mount point" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1
    finally:
        res = run_vmcorefs("umount", mp, check=False)
    assert res.returncode == 0, res.stderr
    assert not os.path.ismount(mp)
