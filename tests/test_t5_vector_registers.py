# SPDX-License-Identifier: MIT
"""
Live vector registers: the real kdump ../shared/fixtures/guest-kdump-vx,
whose crashed CPUs held recognisable patterns in all 64 halves of V0-V31.

Every kdump source of that capture (the RAM image, QEMU's ELF dump of the
stopped guest, descriptions written by ``vmcorefs emulate``, the same
memory as a stand-alone dump that caught the capture kernel running) must
give the kernel's /proc/vmcore byte for byte: the crashed kernel stored
each CPU's V0..V31 where its lowcore's mcesad (0x11B0) points before it
started kdump, and the capture kernel's notes hold exactly those. The
patterns themselves are checked too, decoded from /vmcore with pyelftools
and readelf, against the rule the guest's init wrote them by (fixture
README), not against the kernel's file alone.
"""

from __future__ import annotations

import struct
import subprocess

import pytest

from conftest import FIXTURES, run_vmcorefs, sha256_file, unpack_fixture
from reference import NT_S390_VXRS_HIGH as NT_VXRS_HIGH, NT_S390_VXRS_LOW as NT_VXRS_LOW, vxrs_notes

NAME = "guest-kdump-vx"
VMCORE_SHA256 = "d13a52120a22923a62516df93b80a6e1f32099ad2be89fc5f2c34474ce555f5e"  # proc-vmcore.elf
VMCORE_SIZE = 369111040
ROLES = {0: 0x53, 1: 0x43}  # CPU 0: the spinner ('S'); CPU 1: the crashing task ('C')


def pattern(cpu: int, reg: int, half: int) -> int:
    """The 64-bit half *half* (0 = leftmost) of V*reg* on *cpu* (fixture README)."""
    return 0x5643000000000000 | cpu << 40 | reg << 32 | ROLES[cpu] << 8 | half


@pytest.fixture(scope="module")
def ram():
    return unpack_fixture(NAME, "ram.raw")


def assert_patterns(path) -> None:
    cpus = vxrs_notes(path)
    assert len(cpus) == 2
    for cpu, notes in enumerate(cpus):
        low = struct.unpack(">16Q", notes[NT_VXRS_LOW])
        high = struct.unpack(">32Q", notes[NT_VXRS_HIGH])
        assert list(low) == [pattern(cpu, r, 1) for r in range(16)], f"CPU {cpu} VXRS_LOW"
        assert list(high) == [pattern(cpu, r, h) for r in range(16, 32) for h in (0, 1)], f"CPU {cpu} VXRS_HIGH"


def assert_kernels_vmcore(path) -> None:
    assert path.stat().st_size == VMCORE_SIZE
    if sha256_file(path) != VMCORE_SHA256:
        oracle = unpack_fixture(NAME, "proc-vmcore.elf")
        diff = subprocess.run(["cmp", "-l", str(path), str(oracle)], capture_output=True, text=True).stdout
        pytest.fail(f"{path} differs from proc-vmcore.elf in {len(diff.splitlines())} bytes, first: "
                    f"{diff.splitlines()[:3]}")


def test_the_fixture_oracle(ram):
    """The kernel's own file holds the patterns: the decoder and the rule are right."""
    assert_patterns(unpack_fixture(NAME, "proc-vmcore.elf"))


@pytest.mark.parametrize("source", ["ram.raw", "qemu-kdump.elf"])
def test_mounted_image_and_qemu_dump_give_the_kernels_vmcore(source, ram, mounter):
    m = mounter(unpack_fixture(NAME, source))
    assert_kernels_vmcore(m.path("vmcore"))
    assert_patterns(m.path("vmcore"))
    summary = m.path("meminfo/summary").read_text()
    assert "mode: kdump" in summary
    assert "vector registers: yes, from " in summary and "NOT AVAILABLE" not in summary, summary
    cpu1 = m.path("meminfo/cpus/cpu1").read_text()
    # the crashing CPU's V5, both halves, where the crashed kernel stored it (fixture README: 0x10ac400)
    assert f"v5: {pattern(1, 5, 0):016x}{pattern(1, 5, 1):016x}\n" in cpu1, cpu1
    cpu0 = m.path("meminfo/cpus/cpu0").read_text()
    assert "vector_registers: from the save areas the crashed kernel stored before kdump at 0x10ac000 " \
           "(mcesad, lowcore 0x1082000 + 0x11b0)" in cpu0, cpu0
    m.unmount()


def test_readelf_shows_the_patterns(ram, mounter):
    m = mounter(ram)
    out = subprocess.run(["readelf", "-nW", str(m.path("vmcore"))], capture_output=True, text=True,
                         check=True).stdout
    assert out == (FIXTURES / NAME / "readelf-n.txt").read_text(), \
        "readelf -n of /vmcore differs from the fixture's readelf-n.txt"
    m.unmount()


# fixture README: each CPU's lowcore (prefix), and where its lowcore's 0x11B0 points (old addresses)
LOWCORES = {0: (0x1082000, 0x10AC000), 1: (0x1084000, 0x10AC400)}
OLD_LOW = (0xA000000, 0x16000000)  # old A below 0xa000000 is at ram.raw offset A + 0x16000000 (kdump swap)


def test_zcore_mem_holds_them_where_zgetdump_looks(ram, mounter):
    """
    /zcore/mem puts each CPU's vector registers where its lowcore's 0x11B0
    points, as zgetdump's s390 writer does: here the crashed kernel had
    stored them there already, so the bytes are the memory's own. Mounted
    again as SOURCE, /zcore/mem gives the kernel's /proc/vmcore byte for
    byte, its VXRS notes read back from there (zgetdump's s390 reader).
    """
    m = mounter(ram)
    mem = m.path("zcore/mem")
    with open(mem, "rb") as f, open(ram, "rb") as r:
        for cpu, (lowcore, vx_sa) in LOWCORES.items():
            f.seek(0x1000 + lowcore + 0x11B0)
            assert f.read(8) == struct.pack(">Q", vx_sa)
            f.seek(0x1000 + vx_sa)
            data = f.read(512)
            r.seek(vx_sa + (OLD_LOW[1] if vx_sa < OLD_LOW[0] else 0))
            assert data == r.read(512), f"CPU {cpu}: /zcore/mem at {vx_sa:#x} is not the memory there"
            assert list(struct.unpack(">64Q", data)) == [pattern(cpu, n, h) for n in range(32) for h in (0, 1)]
    b = mounter(mem)
    summary = b.path("meminfo/summary").read_text()
    assert "environment: file" in summary and "mode: kdump" in summary
    assert "vector registers: yes, from the vector save areas of the dump file" in summary, summary
    assert_kernels_vmcore(b.path("vmcore"))
    assert_patterns(b.path("vmcore"))
    assert "vector_registers: from the vector save areas of the dump file at 0x10ac400 (lowcore 0x1084000 + " \
           "0x11b0)" in b.path("meminfo/cpus/cpu1").read_text()
    b.unmount()
    m.unmount()


EMULATED = {
    # found in memory as a raw SOURCE does (boot CPU at 0x1200, the other through lowcore_ptr[])
    "kdump-found": ["--environment", "kdump"],
    # QEMU's view: CPU 0 runs the capture kernel (its vector registers are the
    # capture kernel's and must not be used), CPU 1 is stopped as it crashed
    "kdump-json": ["--environment", "kdump", "--cpus-json", str(FIXTURES / NAME / "cpu-state-kdump.json")],
    # the same from QEMU's notes (VXRS of every CPU; CPU 0's are the capture kernel's)
    "kdump-qemu-notes": ["--environment", "kdump", "--cpus-from-elf", "QEMU"],
    # the same memory as a stand-alone dump that caught the capture kernel running
    "standalone-found": ["--environment", "standalone"],
    "standalone-json": ["--environment", "standalone", "--cpus-json",
                        str(FIXTURES / NAME / "cpu-state-kdump.json")],
}


@pytest.mark.parametrize("how", list(EMULATED))
def test_emulated_descriptions_give_the_kernels_vmcore(how, ram, tmp_path):
    desc = tmp_path / "machine.toml"
    args = [str(unpack_fixture(NAME, "qemu-kdump.elf")) if a == "QEMU" else a for a in EMULATED[how]]
    run_vmcorefs("emulate", ram, *args, "-o", desc)
    if how in ("kdump-json", "kdump-qemu-notes"):
        # the boot CPU runs the capture kernel: its given state is not written
        assert desc.read_text().count("vector = \"") == 1
    out = tmp_path / "vmcore.elf"
    run_vmcorefs("save", desc, out, "--no-sha256")
    assert_kernels_vmcore(out)
    info = run_vmcorefs("info", desc).stdout
    assert "mode         kdump" in info and "vector registers: yes, from " in info, info


def test_a_description_cannot_give_the_kdump_boot_cpus_vector_registers(ram, tmp_path):
    desc = tmp_path / "machine.toml"
    run_vmcorefs("emulate", ram, "--environment", "kdump", "-o", desc)
    text = desc.read_text()
    first = text.index("[[cpu]]")
    bad = text[:first] + text[first:].replace("address = 0\n", "address = 0\nvector = \"" + "00" * 512 + "\"\n", 1)
    desc.write_text(bad)
    res = run_vmcorefs("info", desc, check=False)
    assert res.returncode != 0 and res.stderr.count("\n") == 1 and "give no vector for the first CPU" in res.stderr, \
        res.stderr
