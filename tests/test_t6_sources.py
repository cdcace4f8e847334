# SPDX-License-Identifier: MIT
"""
Real inputs used directly as SOURCE, without a description: the fixture's
raw memory image, the kernel's own vmcore (re-export) and a QEMU
``dump-guest-memory`` ELF core built from the fixture's memory and QEMU's
real notes. Each mounted /vmcore must be byte-identical to the /proc/vmcore
the real kernel produced.
"""

from __future__ import annotations

import os
import re
import struct

import pytest

from conftest import FIXTURES, run_vmcorefs, sha256_file, unpack_fixture

ORACLE = "36c0292eafc283b893bc23f46725c3cf9024d98d90eefc676a497ef2e3928ca5"




def sparse_copy(src, dst, offset: int) -> None:
    """Copy *src* to *dst* at *offset*, leaving its holes holes."""
    fin = os.open(src, os.O_RDONLY)
    fout = os.open(dst, os.O_WRONLY)
    try:
        size = os.fstat(fin).st_size
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fin, pos, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fin, data, os.SEEK_HOLE)
            while data < hole:
                n = min(hole - data, 1 << 24)
                os.pwrite(fout, os.pread(fin, n, data), offset + data)
                data += n
            pos = hole
        os.ftruncate(fout, offset + size)
    finally:
        os.close(fin)
        os.close(fout)


def qemu_core(tmp_path, image) -> str:
    """An ELF core as QEMU's dump-guest-memory writes it: PT_NOTE (QEMU's notes), one PT_LOAD."""
    notes = (FIXTURES / "kdump-1g" / "qemu-kdump-dump.notes").read_bytes()
    size = os.path.getsize(image)
    phnum = 2
    notes_off = 64 + 56 * phnum
    data_off = (notes_off + len(notes) + 4095) & ~4095
    ehdr = b"\x7fELF\x02\x02\x01" + bytes(9) + struct.pack(">HHIQQQIHHHHHH", 4, 22, 1, 0, 64, 0, 0, 64, 56,
                                                             phnum, 0, 0, 0)
    phdrs = struct.pack(">IIQQQQQQ", 4, 0, notes_off, 0, 0, len(notes), len(notes), 0)
    phdrs += struct.pack(">IIQQQQQQ", 1, 0, data_off, 0, 0, size, size, 0)
    path = tmp_path / "qemu-dump.elf"
    with open(path, "wb") as f:
        f.write(ehdr + phdrs + notes)
    sparse_copy(image, path, data_off)
    return str(path)


@pytest.mark.parametrize("kind", ["raw-image", "emulate-without-cpu-states", "kernel-vmcore", "qemu-elf"])
def test_real_inputs_as_source_give_the_real_vmcore(kind, mounter, tmp_path):
    image = unpack_fixture("kdump-1g", "kdump-kdump.pmem.raw")
    if kind == "raw-image":
        source = image
    elif kind == "emulate-without-cpu-states":
        # the other CPU is found through VMCOREINFO's lowcore_ptr[], the vector facility through CR0
        res = run_vmcorefs("emulate", image, "--environment", "kdump", "-o", tmp_path / "auto.toml")
        assert "1 more from lowcore_ptr[] at 0x5d8210" in res.stderr
        source = tmp_path / "auto.toml"
    elif kind == "kernel-vmcore":
        source = unpack_fixture("kdump-1g", "proc-vmcore.elf")
    else:
        source = qemu_core(tmp_path, image)
    m = mounter(source)
    assert sha256_file(m.path("vmcore")) == ORACLE
    summary = m.path("meminfo/summary").read_text()
    assert "cpus: 2 (2 dumped)" in summary
    if kind != "kernel-vmcore":  # the capture kernel's memory: kdump with the swap undone
        assert "mode: kdump" in summary
        res = run_vmcorefs("check", source, check=False)
        assert res.returncode == 0 and "decision: kdump" in res.stdout


def test_unknown_binary_input_says_what_was_expected(tmp_path):
    bad = tmp_path / "firmware.bin"
    bad.write_bytes(bytes(range(256)) * 64)
    mp = tmp_path / "mnt"
    mp.mkdir()
    for name, data in (("firmware.bin", bytes(range(256)) * 64),
                       ("truncated.elf", b"\x7fELF\x02\x02\x01" + bytes(20)),
                       ("x86.elf", b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HH", 4, 62) + bytes(44))):
        p = tmp_path / name
        p.write_bytes(data)
        res = run_vmcorefs("mount", p, mp, "-f", check=False, timeout=60)
        assert res.returncode != 0 and "Traceback" not in res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert any(w in lines[0] for w in ("is not a vmcorefs source", "truncated", "not an s390x ELF")), lines[0]
        assert not os.path.ismount(mp)


def test_qemu_core_with_truncated_notes_is_refused(tmp_path):
    image = tmp_path / "small.raw"
    with open(image, "wb") as f:
        f.truncate(1 << 20)
    core = qemu_core(tmp_path, image)
    data = bytearray(open(core, "rb").read(4096))
    struct.pack_into(">Q", data, 64 + 0x20, 1 << 20)  # PT_NOTE p_filesz far beyond the file's notes
    with open(core, "r+b") as f:
        f.write(data)
    os.truncate(core, 8192)
    res = run_vmcorefs("info", core, check=False)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "truncated" in res.stderr


@pytest.mark.parametrize("fixture", ["kdump-1g", "guest-kdump-vx"])
def test_a_kernels_kdump_vmcore_is_called_what_it_is(fixture, mounter):
    """A capture kernel's /proc/vmcore as SOURCE: kdump, its crashkernel left out of it; check exits 0."""
    core = unpack_fixture(fixture, "proc-vmcore.elf")
    res = run_vmcorefs("check", core, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "decision: kdump (the source is a kdump vmcore a capture kernel wrote" in res.stdout, res.stdout
    assert re.search(r"^OK   crashkernel: 0x[0-9a-f]+-0x[0-9a-f]+ \(\d+ MiB\), left out of this kdump vmcore",
                     res.stdout, re.M), res.stdout
    m = mounter(core)
    summary = m.path("meminfo/summary").read_text()
    assert "mode: kdump\n" in summary and "environment: file: kernel vmcore (ELF core)" in summary, summary
    assert sha256_file(m.path("vmcore")) == sha256_file(core)
    m.unmount()
