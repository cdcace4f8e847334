# SPDX-License-Identifier: MIT
"""
The real kdump fixture (../shared/fixtures/kdump-1g): the memory a real
s390x capture kernel saw, described with one ``vmcorefs emulate`` command,
mounted, and /vmcore compared byte for byte with the /proc/vmcore that
kernel produced.
"""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from conftest import (CPU_STATES, FIXTURES, Mount, describe_kdump_fixture, describe_standalone_fixture, require_fuse,
                      run_vmcorefs, unpack_fixture)

FIXTURE_VMCORE_SHA256 = "36c0292eafc283b893bc23f46725c3cf9024d98d90eefc676a497ef2e3928ca5"


def first_difference(path_a, path_b, chunk: int = 1 << 24) -> int | None:
    with open(path_a, "rb") as a, open(path_b, "rb") as b:
        off = 0
        while True:
            x, y = a.read(chunk), b.read(chunk)
            if x != y:
                n = min(len(x), len(y))
                i = next((i for i in range(n) if x[i] != y[i]), n)
                return off + i
            if not x:
                return None
            off += len(x)


def where(vmcore_path, offset: int) -> str:
    """Say what lives at *offset* of a vmcore (for failure messages)."""
    from elftools.elf.elffile import ELFFile
    with open(vmcore_path, "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if seg["p_offset"] <= offset < seg["p_offset"] + seg["p_filesz"]:
                rel = offset - seg["p_offset"]
                if seg["p_type"] == "PT_LOAD":
                    return f"PT_LOAD memory at physical {seg['p_paddr'] + rel:#x}"
                return f"{seg['p_type']} +{rel:#x}"
    return "ELF/program headers or padding"


@pytest.fixture(scope="module")
def kdump_machine(tmp_path_factory):
    return describe_kdump_fixture(tmp_path_factory.mktemp("kdump"))


@pytest.fixture(scope="module")
def kdump_mount(kdump_machine, tmp_path_factory):
    require_fuse()
    m = Mount(str(kdump_machine), tmp_path_factory.mktemp("mnt"))
    yield m
    m.cleanup()


def assert_is_the_kernels_vmcore(vmcore) -> None:
    """*vmcore* is proc-vmcore.elf byte for byte; else say where it first differs and what lives there."""
    assert os.stat(vmcore).st_size == 872427520
    h = hashlib.sha256()
    with open(vmcore, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    if h.hexdigest() != FIXTURE_VMCORE_SHA256:
        oracle = unpack_fixture("kdump-1g", "proc-vmcore.elf")
        off = first_difference(vmcore, oracle)
        pytest.fail(f"/vmcore differs from proc-vmcore.elf first at {off:#x}: {where(oracle, off)}")


def test_vmcore_is_byte_identical_to_proc_vmcore(kdump_mount):
    assert_is_the_kernels_vmcore(kdump_mount.path("vmcore"))


def test_readelf_matches_fixture_output(kdump_mount):
    for flag, name in (("-h", "readelf-h.txt"), ("-l", "readelf-l.txt"), ("-n", "readelf-n.txt")):
        out = subprocess.run(["readelf", flag + "W", str(kdump_mount.path("vmcore"))],
                             capture_output=True, text=True, check=True).stdout
        expected = (FIXTURES / "kdump-1g" / name).read_text()
        assert out.strip() == expected.strip(), name


def test_meminfo_of_the_fixture(kdump_mount):
    summary = kdump_mount.path("meminfo/summary").read_text()
    assert "mode: kdump" in summary
    assert "crashkernel: 0x34000000-0x3fffffff (192 MiB)" in summary
    assert "kernel: 6.1.192-vmcorefs" in summary
    res = subprocess.run(["grep", "OSRELEASE", str(kdump_mount.path("meminfo/vmcoreinfo"))],
                         capture_output=True, text=True, check=True)
    assert res.stdout == "OSRELEASE=6.1.192-vmcorefs\n"
    cpu1 = kdump_mount.path("meminfo/cpus/cpu1").read_text()
    assert "psw_addr: 0x112a26" in cpu1  # pcpu_delegate+0x11e, fixture README
    # 1 GiB detected, the crashkernel (fixture README) left out of the export
    assert kdump_mount.path("meminfo/memory_map").read_text() == (
        "detected 0x0000000000000000 0x0000000040000000\n"
        "exported 0x0000000000000000 0x0000000034000000\n"
        "crashkernel 0x0000000034000000 0x000000000c000000\n")


def test_check_says_kdump(kdump_machine):
    res = run_vmcorefs("check", kdump_machine, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "decision: kdump" in res.stdout
    assert "OK   os_info checksum: stored 0x40010001, computed 0x40010001" in res.stdout


@pytest.mark.parametrize("cpus", list(CPU_STATES))
def test_standalone_dump_of_the_running_capture_kernel(tmp_path, cpus):
    """
    vmcorefs finds the capture kernel's parmarea through the HSA, undoes
    the swap, verifies the crashed kernel's os_info and gives the /proc/vmcore
    that capture kernel wrote, byte for byte.
    """
    require_fuse()
    desc = describe_standalone_fixture(tmp_path, cpus)
    res = run_vmcorefs("check", desc, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("OK   capture kernel: kdump capture kernel was running (its parmarea names the "
                                 "crashkernel 0x34000000+0xc000000"), res.stdout
    assert "decision: kdump" in res.stdout
    (tmp_path / "mnt").mkdir()
    m = Mount(desc, tmp_path / "mnt")
    try:
        summary = m.path("meminfo/summary").read_text()
        assert "environment: standalone" in summary and "mode: kdump" in summary
        assert "capture kernel: was running when the dump was taken (its parmarea: OLDMEM_BASE 0x34000000, " \
               "OLDMEM_SIZE 0xc000000); the crashed kernel is shown, the swap undone" in summary
        assert_is_the_kernels_vmcore(m.path("vmcore"))
        m.unmount()
    finally:
        m.cleanup()
