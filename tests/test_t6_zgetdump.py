# SPDX-License-Identifier: MIT
"""
s390-tools' zgetdump, the stand-alone dump converter (Debian's s390x build
under qemu-user, from contrib/s390x-sysroot.sh), on a mounted emulated
stand-alone dump: it reads /zcore/mem and /vmcore and converts each into the
other format.

- /zcore/mem, written to a file with the 16-byte end marker the dump
  writers add (zgetdump refuses a file without it; the kernel's zcore/mem
  never had one), is a valid s390 dump to zgetdump: its ``-i`` report and
  its ELF conversion (CPU registers from the save areas the header's prefix
  list points to, memory) match what the test machine is made of.
- /vmcore is a valid ELF dump to zgetdump: its ``-i`` report shows the
  memory ranges and CPUs, and its conversion to the s390 format equals
  /zcore/mem but for the header fields an ELF core does not carry.
- The real fixture as a stand-alone dump taken while its capture kernel
  ran: zgetdump finds the crashed ("production") system in /zcore/mem and
  its ``--select prod`` gives the kernel's own vmcore memory and registers.

Every expectation is built here from the test's own image and registers,
or is the real kernel's proc-vmcore.elf.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shlex
import struct
import subprocess

import pytest

from conftest import REPO, describe_standalone_fixture, require_fuse, require_s390x, run, sha256_file
from reference import note_desc, raw_notes
from reference import lay_save_areas, make_image, pack_save_area, parse_header, regs, write_description

pytestmark = [pytest.mark.fuse]

MIB = 1 << 20
HDR = 0x1000
SIZE = 64 * MIB
RANGES = [(0, 40 * MIB), (48 * MIB, 16 * MIB)]  # a hole at 40..48 MiB
HSA = 16 * MIB
PREFIXES = [0x30000, 20 * MIB + 0x4000, SIZE - 0x2000]  # in the HSA, above it, the last page
TOD_EPOCH = 0x7D91048BCA000000  # TOD = TOD_EPOCH + (unix microseconds << 12)

NT_PRSTATUS, NT_FPREGSET, NT_PRPSINFO = 1, 2, 3
NT_S390_TIMER, NT_S390_TODCMP, NT_S390_TODPREG, NT_S390_CTRS, NT_S390_PREFIX = 0x301, 0x302, 0x303, 0x304, 0x305


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """
    A 64 MiB stand-alone machine with a hole, 3 dumped CPUs and an offline
    one, mounted. The image already holds each CPU's status at its prefix +
    0x1200 (as after SIGP STORE STATUS), so /vmcore's memory there agrees with
    the save areas that /zcore/mem lays over it.
    """
    require_fuse()
    d = tmp_path_factory.mktemp("zgetdump")
    img, _vmcoreinfo, _reipl = make_image(d)
    cpu_regs = [regs(i, p) for i, p in enumerate(PREFIXES)]
    areas = [pack_save_area(r) for r in cpu_regs]
    lay_save_areas(img, 0, list(zip(PREFIXES, areas)))
    (d / "image.raw").write_bytes(img)
    cpus = [{"address": i, "save_area": sa} for i, sa in enumerate(areas)]
    cpus.append({"address": 7, "save_area": pack_save_area(regs(9, 0))})  # prefix 0: offline
    write_description(d / "machine.toml", "image.raw", "standalone", cpus,
                      f"\n[hsa]\nsize = {HSA:#x}\nlatency_us = 0\n", memory=RANGES)
    # the memory a reader of the dump must see: the hole as zeros, the boot
    # CPU's status at 0x1200 (the HSA copy holds it), every CPU's at its prefix
    memory = bytearray(img)
    memory[40 * MIB:48 * MIB] = bytes(8 * MIB)
    lay_save_areas(memory, 0, [(0, areas[0])] + list(zip(PREFIXES, areas)))

    from conftest import Mount
    (d / "mnt").mkdir()
    m = Mount(str(d / "machine.toml"), d / "mnt")
    try:
        yield {"dir": d, "mount": m, "regs": cpu_regs, "memory": bytes(memory)}
        m.unmount()
    finally:
        m.cleanup()


@pytest.fixture(scope="module")
def zgetdump():
    return require_s390x("zgetdump")


def zgetdump_run(zgetdump, *args, stdout_file=None, status: int = 0) -> str:
    """Run zgetdump (its reports go to stderr); return stdout + stderr, or stderr when stdout is a file."""
    env = dict(os.environ, TZ="UTC")
    if stdout_file is None:
        res = run(zgetdump + list(args), env=env, ok=False)
        assert res.returncode == status, res.stdout + res.stderr
        return res.stdout + res.stderr
    with open(stdout_file, "wb") as out:
        res = subprocess.run([str(a) for a in zgetdump + list(args)], stdout=out, stderr=subprocess.PIPE,
                             text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    return res.stderr


def info_fields(text: str) -> dict[str, str]:
    """``zgetdump -i`` as {field: value} ("CPU count (online)": "3")."""
    return {k.strip(): v.strip() for k, v in re.findall(r"^  (\S[^.:]*?)\.*: (.*)$", text, re.M)}


def memory_map(text: str) -> list[tuple[int, int]]:
    """The ``Memory map:`` lines of ``zgetdump -i`` as [(start, size)]."""
    return [(int(a, 16), int(b, 16) + 1 - int(a, 16))
            for a, b in re.findall(r"^  ([0-9a-f]{16}) - ([0-9a-f]{16}) \(", text, re.M)]


def tod_date(tod: int) -> str:
    seconds = ((tod - TOD_EPOCH) >> 12) // 1_000_000
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")


def program_headers(f) -> list[tuple[int, int, int, int, int, int, int, int]]:
    """
    The program headers of the big-endian ELF64 file *f*, each as
    ``(type, flags, offset, vaddr, paddr, filesz, memsz, align)``.
    """
    f.seek(0)
    ehdr = f.read(64)
    assert ehdr[:4] == b"\x7fELF" and ehdr[5] == 2  # big-endian
    phoff, = struct.unpack_from(">Q", ehdr, 0x20)
    phentsize, phnum = struct.unpack_from(">HH", ehdr, 0x36)
    f.seek(phoff)
    return [struct.unpack(">IIQQQQQQ", f.read(phentsize)[:56]) for _ in range(phnum)]


def elf_cpus(path) -> list[dict]:
    """
    The CPUs of an s390x ELF core, from its PT_NOTE notes parsed here with
    struct (a PRSTATUS starts a CPU; its pr_reg at offset 112: PSW, GPRs, ACRs).
    """
    with open(path, "rb") as f:
        note_ph = next(p for p in program_headers(f) if p[0] == 4)
        f.seek(note_ph[2])
        notes = f.read(note_ph[5])
    cpus: list[dict] = []
    for _name, ntype, whole in raw_notes(notes):
        desc = note_desc(whole)
        if ntype == NT_PRSTATUS:
            psw = struct.unpack_from(">2Q", desc, 112)
            cpus.append({"psw": psw, "gprs": list(struct.unpack_from(">16Q", desc, 128)),
                         "acrs": list(struct.unpack_from(">16I", desc, 256))})
        elif not cpus or ntype == NT_PRPSINFO:
            continue
        elif ntype == NT_FPREGSET:
            cpus[-1]["fpc"], = struct.unpack_from(">I", desc, 0)
            cpus[-1]["fprs"] = list(struct.unpack_from(">16Q", desc, 8))
        elif ntype == NT_S390_TIMER:
            cpus[-1]["timer"], = struct.unpack(">Q", desc)
        elif ntype == NT_S390_TODCMP:
            cpus[-1]["todcmp"] = desc
        elif ntype == NT_S390_TODPREG:
            cpus[-1]["todpreg"], = struct.unpack(">I", desc[:4])
        elif ntype == NT_S390_CTRS:
            cpus[-1]["ctrs"] = list(struct.unpack(">16Q", desc))
        elif ntype == NT_S390_PREFIX:
            cpus[-1]["prefix"], = struct.unpack(">I", desc)
    return cpus


def elf_memory(path, size: int) -> bytes:
    """The memory ``[0, size)`` of an ELF core from its PT_LOADs (the rest zeros)."""
    mem = bytearray(size)
    with open(path, "rb") as f:
        for ptype, _flags, offset, _vaddr, paddr, filesz, _memsz, _align in program_headers(f):
            if ptype == 1:
                assert paddr + filesz <= size
                f.seek(offset)
                mem[paddr:paddr + filesz] = f.read(filesz)
    return bytes(mem)


def readme_end_marker_command() -> str:
    """README's shell command that writes /mnt/zcore/mem plus the end marker to dump.s390."""
    text = (REPO / "README.rst").read_text()
    m = re.search(r"^    (\{ cat /mnt/zcore/mem;.*\n.*> dump\.s390)$", text, re.M)
    assert m, "README no longer shows how to add the end marker"
    return m.group(1)


def with_end_marker(src, dst) -> dict:
    """
    Write /zcore/mem *src* with the end marker to *dst* by README's own
    command; check the marker (the header's TOD); return the header.
    """
    cmd = readme_end_marker_command().replace("/mnt/zcore/mem", shlex.quote(str(src)))
    cmd = cmd.replace("> dump.s390", "> " + shlex.quote(str(dst)))
    subprocess.run(["bash", "-c", cmd], check=True)
    with open(dst, "rb") as f:
        header = parse_header(f.read(HDR))
        f.seek(HDR + header["mem_size"])
        assert f.read() == b"DUMP_END" + struct.pack(">Q", header["tod"])
    return header


def test_zgetdump_reads_zcore_mem(machine, zgetdump, tmp_path):
    m = machine["mount"]
    dump = tmp_path / "dump.s390"
    header = with_end_marker(m.path("zcore/mem"), dump)

    info = zgetdump_run(zgetdump, "-i", dump)
    f = info_fields(info)
    assert f["Dump format"] == "s390" and f["Version"] == "5", info
    assert f["System arch"] == f["Build arch"] == "s390x (64 bit)"
    assert f["CPU count (online)"] == "3" and f["CPU count (real)"] == "4"
    assert f["Dump memory range"] == f"{SIZE // MIB} MB"
    assert f["Real memory range"] == f"{sum(n for _, n in RANGES) // MIB} MB"
    assert f["Dump created"] == tod_date(header["tod"])
    assert memory_map(info) == [(0, SIZE)]  # the format is flat: the hole reads as zeros

    elf = tmp_path / "dump.elf"
    report = zgetdump_run(zgetdump, dump, "-f", "elf", stdout_file=elf)
    assert "Success: Dump has been copied" in report
    # zgetdump found the registers where the header's prefix list points
    assert elf_cpus(elf) == machine["regs"]
    assert elf_cpus(elf) == elf_cpus(m.path("vmcore"))
    assert elf_memory(elf, SIZE) == machine["memory"]


def test_zgetdump_reads_vmcore(machine, zgetdump, tmp_path):
    m = machine["mount"]
    info = zgetdump_run(zgetdump, "-i", m.path("vmcore"))
    f = info_fields(info)
    assert f["Dump format"] == "elf" and f["System arch"] == "s390x (64 bit)", info
    assert f["CPU count (online)"] == "3"
    assert memory_map(info) == RANGES

    # /vmcore converted to the s390 format is /zcore/mem (plus its end
    # marker) but for what an ELF core does not carry: the dump's TOD, the
    # build architecture, the real memory size and the real CPU count
    out = tmp_path / "from-vmcore.s390"
    zgetdump_run(zgetdump, m.path("vmcore"), "-f", "s390", stdout_file=out)
    ours = tmp_path / "zcore.s390"
    with_end_marker(m.path("zcore/mem"), ours)
    a, b = parse_header(open(out, "rb").read(HDR)), parse_header(open(ours, "rb").read(HDR))
    for key in ("tod", "build_arch", "mem_size_real", "real_cpu_cnt"):
        a.pop(key), b.pop(key)
    assert a == b
    assert os.path.getsize(out) == os.path.getsize(ours) == HDR + SIZE + 16
    with open(out, "rb") as fa, open(ours, "rb") as fb:
        fa.seek(HDR)
        fb.seek(HDR)
        assert fa.read(SIZE) == fb.read(SIZE) == machine["memory"]
        assert fa.read(8) == fb.read(8) == b"DUMP_END"


def elf_memory_digest(path) -> tuple[list[tuple[int, int]], str]:
    """The PT_LOAD ranges ``(start, end)`` of an ELF core and the SHA-256 of their bytes in address order."""
    with open(path, "rb") as f:
        loads = sorted((p[4], p[5], p[2]) for p in program_headers(f) if p[0] == 1)
        h = hashlib.sha256()
        for _paddr, size, offset in loads:
            f.seek(offset)
            left = size
            while left:
                chunk = f.read(min(left, 1 << 24))
                assert chunk, "short ELF file"
                h.update(chunk)
                left -= len(chunk)
    ranges: list[tuple[int, int]] = []
    for paddr, size, _ in loads:  # adjacent PT_LOADs are one range
        if ranges and ranges[-1][1] == paddr:
            ranges[-1] = (ranges[-1][0], paddr + size)
        else:
            ranges.append((paddr, paddr + size))
    return ranges, h.hexdigest()


def test_zgetdump_finds_the_crashed_system_in_zcore_mem(zgetdump, tmp_path):
    """
    The real fixture as a stand-alone dump taken while its capture kernel ran,
    mounted with --mode standalone (the machine as it is): zgetdump reads
    /zcore/mem, sees the kdump and the production system in it, and with
    ``--select prod`` undoes the swap itself and takes the CPUs from the
    crashed kernel's lowcores: the same memory and registers as the kernel's
    own /proc/vmcore. vmcorefs, given that dump file, does the same.
    """
    from conftest import Mount, unpack_fixture
    require_fuse()
    desc = describe_standalone_fixture(tmp_path)
    (tmp_path / "mnt").mkdir()
    m = Mount(desc, tmp_path / "mnt", "--mode", "standalone")
    try:
        assert "mode: standalone" in m.path("meminfo/summary").read_text()
        dump = tmp_path / "dump.s390"
        with_end_marker(m.path("zcore/mem"), dump)
        m.unmount()
    finally:
        m.cleanup()
    # without --select zgetdump names the two systems it found and exits 1
    info = zgetdump_run(zgetdump, "-i", dump, status=1)
    assert 'The dump contains "kdump" and "production system"' in info, info
    info = zgetdump_run(zgetdump, "-i", "-s", "prod", dump)
    assert "UTS kernel release.: 6.1.192-vmcorefs" in info and "CPU count (online).: 2" in info, info
    prod = tmp_path / "prod.elf"
    zgetdump_run(zgetdump, "-s", "prod", dump, "-f", "elf", stdout_file=prod)
    kernel = unpack_fixture("kdump-1g", "proc-vmcore.elf")
    want = elf_memory_digest(kernel), elf_cpus(kernel)
    assert (elf_memory_digest(prod), elf_cpus(prod)) == want
    prod.unlink()

    # vmcorefs finds it in the dump file as well: mounted as SOURCE, its
    # /vmcore is the kernel's, byte for byte (the s390 dump format holds no
    # vector registers, but the crashed kernel stored them before kdump
    # where its lowcores' mcesad points)
    (tmp_path / "mnt2").mkdir()
    m = Mount(str(dump), tmp_path / "mnt2")
    try:
        summary = m.path("meminfo/summary").read_text()
        assert "environment: file" in summary and "mode: kdump" in summary
        assert "capture kernel: was running when the dump was taken" in summary
        assert (elf_memory_digest(m.path("vmcore")), elf_cpus(m.path("vmcore"))) == want
        assert sha256_file(m.path("vmcore")) == sha256_file(kernel)
        m.unmount()
    finally:
        m.cleanup()
