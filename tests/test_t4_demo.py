# SPDX-License-Identifier: MIT
"""The embedded demo machine, mounted: memory words encode their address."""

import os
import random
import struct
import subprocess

from elftools.elf.elffile import ELFFile

from conftest import run_vmcorefs

TAG = 0x4D454D0000000000  # "MEM" in the top bytes; independent of vmcorefs.demo on purpose
# lowcore pointers, os_info, VMCOREINFO, re-IPL block, the CPUs' lowcores (their 0x11B0) live below this
LOW_PATCHED = 0x28000


def test_demo_mount_serves_a_sane_dump(mounter):
    m = mounter("demo")
    vmcore = m.path("vmcore")
    out = subprocess.run(["readelf", "-hlnW", str(vmcore)], capture_output=True, text=True, check=True).stdout
    assert out.count("NT_PRSTATUS") == 4 and out.count("NT_S390_VXRS_HIGH") == 4
    with open(vmcore, "rb") as f:
        elf = ELFFile(f)
        loads = [(s["p_offset"], s["p_paddr"], s["p_filesz"]) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    assert [(p, n) for _o, p, n in loads] == [(0, 256 << 20), (384 << 20, 256 << 20)]
    rng = random.Random(11)
    fd = os.open(vmcore, os.O_RDONLY)
    try:
        for off, paddr, size in loads:
            for _ in range(200):
                addr = rng.randrange(LOW_PATCHED if paddr == 0 else paddr, paddr + size - 64) & ~7
                # skip the CPUs' save areas laid over memory (only the boot CPU's, at 0x1200)
                data = os.pread(fd, 64, off + addr - paddr)
                words = struct.unpack(">8Q", data)
                assert words == tuple(TAG | (addr + 8 * i) for i in range(8)), hex(addr)
        # low memory came through the HSA, not from the dump tool's pattern
        assert b"ZFCPDUMP" not in os.pread(fd, 1 << 20, loads[0][0])
    finally:
        os.close(fd)
    summary = m.path("meminfo/summary").read_text()
    assert "mode: standalone" in summary and "cpus: 4 (4 dumped)" in summary
    assert "kernel: 6.1.0-vmcorefs-demo" in summary
    assert sorted(os.listdir(m.path("meminfo/cpus"))) == ["cpu0", "cpu1", "cpu2", "cpu3"]


def test_bad_sources_give_one_line_errors(tmp_path):
    mp = tmp_path / "mnt"
    mp.mkdir()
    (tmp_path / "garbage.toml").write_bytes(b"\x00\xffnot toml[[[")
    (tmp_path / "nomem.toml").write_text('format = 1\nmemory = []\n[store]\ntype = "demo"\n')
    (tmp_path / "overlap.toml").write_text(
        'format = 1\nmemory = [{start = 0, size = 0x2000}, {start = 0x1000, size = 0x2000}]\n'
        '[store]\ntype = "demo"\n[[cpu]]\naddress = 0\n')
    cases = [tmp_path / "missing.toml", tmp_path / "garbage.toml", tmp_path / "nomem.toml",
             tmp_path / "overlap.toml", tmp_path]
    for src in cases:
        res = run_vmcorefs("mount", src, mp, "-f", check=False, timeout=60)
        assert res.returncode != 0, src
        assert "Traceback" not in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("vmcorefs: "), res.stderr
        assert not os.path.ismount(mp)
    res = run_vmcorefs("mount", "demo", tmp_path / "nonexistent", check=False)
    assert res.returncode != 0 and "Traceback" not in res.stderr and len(res.stderr.splitlines()) == 1
