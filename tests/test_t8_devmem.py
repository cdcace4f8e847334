# SPDX-License-Identifier: MIT
"""
A live system as SOURCE (``vmcorefs mount /dev/mem``), on this host: the
/dev/mem source's test seam (VMCOREFS_DEVMEM_TEST) takes the real fixture's
``precrash.pmem.raw`` (the guest's absolute memory at a pause of the running
first kernel) as /dev/mem and the same guest's /proc/iomem, and says the
machine is s390x. The expectations are read from the image and iomem.txt
directly. The same source on a real s390x guest: tests/test_t8_s390x.py.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct

import pytest

from conftest import FIXTURES, run_vmcorefs, unpack_fixture

IOMEM = FIXTURES / "kdump-1g" / "iomem.txt"
PAGE = 4096


def seam(image, iomem=IOMEM, machine="s390x", efault=()) -> dict:
    env = dict(os.environ)
    env["VMCOREFS_DEVMEM_TEST"] = f"path={image};iomem={iomem};machine={machine}" + (
        ";efault=" + ",".join(hex(a) for a in efault) if efault else "")
    return env


def ram_ranges() -> list[tuple[int, int]]:
    out = []
    for line in IOMEM.read_text().splitlines():
        if not line.startswith(" ") and line.endswith(": System RAM"):
            a, b = line.split(" ")[0].split("-")
            out.append((int(a, 16), int(b, 16) + 1))
    return out


def elf_phdrs(data: bytes) -> list[tuple]:
    phoff, = struct.unpack(">Q", data[32:40])
    phnum, = struct.unpack(">H", data[56:58])
    return [struct.unpack(">IIQQQQQQ", data[phoff + 56 * i:phoff + 56 * (i + 1)]) for i in range(phnum)]


def notes(data: bytes) -> list[tuple[bytes, int, bytes]]:
    out, pos = [], 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack(">III", data[pos:pos + 12])
        pos += 12
        name = data[pos:pos + namesz].rstrip(b"\0")
        pos += (namesz + 3) & ~3
        out.append((name, ntype, data[pos:pos + descsz]))
        pos += (descsz + 3) & ~3
    return out


@pytest.fixture(scope="module")
def image():
    return str(unpack_fixture("kdump-1g", "precrash.pmem.raw"))


def test_live_devmem_mount_shows_memory_as_it_is_with_the_live_marker_and_no_cpu_notes(image, mounter, monkeypatch):
    monkeypatch.setenv("VMCOREFS_DEVMEM_TEST", seam(image)["VMCOREFS_DEVMEM_TEST"])
    m = mounter(image)
    vmcore = m.path("vmcore")
    with open(vmcore, "rb") as f:
        head = f.read(1 << 16)
        phdrs = elf_phdrs(head)
        assert phdrs[0][0] == 4  # PT_NOTE
        loads = [(p[2], p[4], p[5]) for p in phdrs[1:]]
        assert [(paddr, paddr + size) for _off, paddr, size in loads] == ram_ranges()
        found = notes(head[phdrs[0][2]:phdrs[0][2] + phdrs[0][5]])
        # no CPU is dumped: PRPSINFO and VMCOREINFO only
        assert [(n, t) for n, t, _d in found] == [(b"CORE", 3), (b"VMCOREINFO", 0)]
        with open(image, "rb") as img:
            lc = img.read(PAGE)
            vi_ptr, = struct.unpack(">Q", lc[0xE0C:0xE14])
            img.seek(vi_ptr)
            namesz, descsz, _t = struct.unpack(">III", img.read(12))
            img.seek(vi_ptr + 12 + ((namesz + 3) & ~3))
            assert found[1][2] == img.read(descsz)
            assert b"OSRELEASE=6.1" in found[1][2]
            off, paddr, size = loads[0]
            f.seek(off)
            first = f.read(8)
            assert first == b"LIVEDUMP" and lc[:8] != b"LIVEDUMP"
            # every other byte is the memory as it is
            for addr in (8, 0x1000, 0x100000, 0xd6a000, size - PAGE):
                f.seek(off + addr)
                img.seek(addr)
                assert f.read(PAGE - 8) == img.read(PAGE - 8), hex(addr)
    summary = m.path("meminfo/summary").read_text()
    assert "environment: live: the system runs" in summary
    assert "why: the source is a live system (/dev/mem)" in summary
    assert "cpus: none dumped" in summary
    m.unmount()


def test_pages_the_kernel_refuses_read_as_eio_exactly_there(image, mounter, monkeypatch):
    bad = 0x2345000
    monkeypatch.setenv("VMCOREFS_DEVMEM_TEST", seam(image, efault=[bad])["VMCOREFS_DEVMEM_TEST"])
    m = mounter(image)
    with open(m.path("vmcore"), "rb", buffering=0) as f:
        phdrs = elf_phdrs(f.read(PAGE))
        off = phdrs[1][2]
        with open(image, "rb") as img:
            for addr in (bad - PAGE, bad + PAGE):
                img.seek(addr)
                assert os.pread(f.fileno(), PAGE, off + addr) == img.read(PAGE)
        with pytest.raises(OSError) as exc:
            os.pread(f.fileno(), PAGE, off + bad)
        assert exc.value.errno == errno.EIO
        with pytest.raises(OSError) as exc:
            os.pread(f.fileno(), 3 * PAGE, off + bad - PAGE)
        assert exc.value.errno == errno.EIO
    assert f"{bad:#x}" in m.output() and "refuses the page" in m.output()
    m.unmount()


def test_info_check_save_of_a_live_system(image, tmp_path):
    env = seam(image)
    info = run_vmcorefs("info", image, env=env).stdout
    assert "live: the system runs" in info and "kernel       6.1" in info
    assert "cpus         none dumped" in info
    res = run_vmcorefs("check", image, env=env, check=False)
    assert res.returncode == 1, res.stderr
    assert "decision: live system, dumped as it is" in res.stdout
    out = tmp_path / "live.elf"
    run_vmcorefs("save", image, out, "-q", env=env)
    data = out.read_bytes()
    phdrs = elf_phdrs(data)
    off, size = phdrs[1][2], phdrs[1][5]
    with open(image, "rb") as img:
        img.seek(8)
        assert hashlib.sha256(data[off + 8:off + size]).digest() == hashlib.sha256(img.read(size - 8)).digest()
    assert data[off:off + 8] == b"LIVEDUMP"


@pytest.mark.parametrize("case, expect", [
    ("not-s390x", "a live system can be dumped only on s390x itself, this machine is x86_64"),
    ("no-iomem", "cannot read /nonexistent/iomem (the memory map of the live system)"),
    ("iomem-hidden", "shows no addresses (all 0: run as root)"),
    ("unreadable", "is not readable: page 0x0: the kernel refuses the page"),
])
def test_live_source_errors_are_one_line(case, expect, image, tmp_path):
    iomem, machine, efault = IOMEM, "s390x", ()
    if case == "not-s390x":
        machine = "x86_64"
    elif case == "no-iomem":
        iomem = "/nonexistent/iomem"
    elif case == "iomem-hidden":
        iomem = tmp_path / "iomem"
        iomem.write_text("00000000-00000000 : System RAM\n")
    else:
        efault = (0,)
    res = run_vmcorefs("info", image, env=seam(image, iomem, machine, efault), check=False)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmcorefs: ") and expect in lines[0], res.stderr
    assert "internal error" not in res.stderr


def test_dev_mem_on_this_host_is_a_one_line_error_not_einval():
    if not os.path.exists("/dev/mem"):
        pytest.skip("no /dev/mem here")
    res = run_vmcorefs("info", "/dev/mem", check=False)
    assert res.returncode != 0
    assert res.stderr.startswith("vmcorefs: /dev/mem: ") and len(res.stderr.strip().splitlines()) == 1
    assert "Errno" not in res.stderr and "internal error" not in res.stderr
    if os.uname().machine != "s390x":
        assert "only on s390x" in res.stderr


def test_proc_vmcore_outside_a_capture_kernel_is_a_one_line_error():
    if os.path.exists("/proc/vmcore"):
        pytest.skip("this is a kdump capture kernel")
    res = run_vmcorefs("check", "/proc/vmcore", check=False)
    assert res.returncode == 2
    assert res.stderr.strip() == "vmcorefs: /proc/vmcore: no such file (only a kdump capture kernel has it)"
