# SPDX-License-Identifier: MIT
"""
vmcorefs where dumps are taken: on s390x itself.

- Big-endian: the tests of the layers that need no FUSE (layouts, extents,
  stores, the mapping property, SCLP, the fs operations, zcore's pieces) run
  on Debian's s390x Python under qemu-user, and every file of the trees of
  the demo, the real kdump fixture's RAM image and its /proc/vmcore, and a
  live system (the fixture's pre-crash RAM as /dev/mem) has the same
  digests there as here (tests/s390x_digests.py).
- In a real s390x guest (contrib/guest/run-scenario.py ``all``: one boot of
  ../shared/guest's kernel with a Debian 12 userland and this checkout):
  the demo's files hash as here; ``vmcorefs info/check/mount/save
  /dev/mem`` of the running kernel, whose memory reads back as vmlinux has
  it and as a pinned buffer holds it, with an injected refused page giving
  EIO, and crash (Debian's s390x build, under qemu-user here) reading the
  saved live /vmcore; then sysrq-c, and in the capture kernel vmcorefs on
  /proc/vmcore and the dump step of contrib/vmcorefs-dump.sh onto a virtio
  disk, checked here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, REPO, SHARED, sha256_file, unpack_fixture

GUEST = Path(os.environ.get("VMCOREFS_GUEST_DIR", SHARED / "guest"))
SYSROOT = Path(os.environ.get("VMCOREFS_S390X_SYSROOT", "/var/tmp/vmcorefs-s390x-sysroot"))
EFAULT = 0x200000  # the page the guest's /dev/mem mount is told the kernel refuses (kernel text)
ZCORE_LIMIT = 0x4001000  # the part of the demo's zcore/mem the guest hashes (scenario.sh)
BE_TESTS = [
    "tests/test_t1_layouts.py", "tests/test_t2_extents.py", "tests/test_t2_mapping_property.py",
    "tests/test_t3_fs_operations.py", "tests/test_t3_sclp.py",
    "tests/test_t4_zcore.py::test_lay_over_matches_a_plain_overlay",
    "tests/test_t4_zcore.py::test_save_area_blocks_later_cpu_wins",
    "tests/test_t4_zcore.py::test_dump_file_checks",
    "tests/test_t4_zcore.py::test_dump_file_versions_and_truncation",
    "tests/test_t7_save.py::test_store_pieces_knows_dump_and_elf_stores_by_class",
]

pytestmark = pytest.mark.guest


def _runner():
    spec = importlib.util.spec_from_file_location("run_scenario", REPO / "contrib" / "guest" / "run-scenario.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _missing(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the s390x tests must run in CI: {why} (bash contrib/setup.sh test)")
    pytest.skip(why)


def require_tools(*tools: str) -> None:
    if not (GUEST / "bzImage").exists():
        pytest.skip(f"the guest kernel {GUEST / 'bzImage'} is not available (the shared/ folder is missing)")
    for tool in tools:
        if shutil.which(tool) is None:
            _missing(f"{tool} is missing")


@pytest.fixture(scope="module")
def userland():
    """The Debian s390x userland: (squashfs image, unpacked root usable as qemu-user sysroot)."""
    require_tools("mksquashfs", "busybox", "dpkg-deb", "apt-get")
    return _runner().userland()


def pytest_trio_dir(tmp_dir: Path) -> Path:
    """A directory holding pytest-trio (pure Python; not packaged by Debian 12), copied from this venv
    (loaded with -p pytest_trio.plugin: the copy has no entry point)."""
    import pytest_trio
    src = Path(pytest_trio.__file__).parent
    shutil.copytree(src, tmp_dir / "pytest_trio")
    return tmp_dir


def s390x_python(root: Path) -> list[str]:
    require_tools("qemu-s390x")
    return ["qemu-s390x", "-L", str(root), str(root / "usr/bin/python3")]


# --- big-endian, under qemu-user ---------------------------------------------

def test_the_no_fuse_tests_pass_on_big_endian_python(userland, tmp_path):
    _image, root = userland
    site = pytest_trio_dir(tmp_path)
    env = dict(os.environ, PYTHONPATH=f"{site}:{REPO}:{REPO / 'tests'}", VMCOREFS_MAX_EXAMPLES="8",
               PYTHONDONTWRITEBYTECODE="1")
    plugins = ["-p", "no:cacheprovider", "-p", "hypothesis_cap", "-p", "pytest_trio.plugin"]
    res = subprocess.run(s390x_python(root) + ["-m", "pytest", "-q", *plugins, "-o", "addopts=", *BE_TESTS],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    counts = re.search(r"(\d+) passed", res.stdout)
    assert counts and int(counts.group(1)) >= 50 and "skipped" not in res.stdout.splitlines()[-1], res.stdout[-2000:]


def test_every_file_has_the_same_bytes_on_big_endian_python(userland):
    _image, root = userland
    raw = str(unpack_fixture("kdump-1g", "kdump-kdump.pmem.raw"))
    vmcore = str(unpack_fixture("kdump-1g", "proc-vmcore.elf"))
    precrash = str(unpack_fixture("kdump-1g", "precrash.pmem.raw"))
    sources = ["demo", raw, vmcore, precrash]
    env = dict(os.environ, PYTHONPATH=f"{REPO}", PYTHONDONTWRITEBYTECODE="1",
               VMCOREFS_DEVMEM_TEST=f"path={precrash};iomem={FIXTURES / 'kdump-1g' / 'iomem.txt'};machine=s390x")
    script = [str(REPO / "tests" / "s390x_digests.py"), *sources]
    here = json.loads(subprocess.run([sys.executable, *script], env=env, capture_output=True, text=True,
                                     timeout=300, check=True).stdout)
    res = subprocess.run(s390x_python(root) + script, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    there = json.loads(res.stdout)
    assert (here["byteorder"], there["byteorder"]) == ("little", "big")
    assert set(there["digests"]) == set(sources)
    for source in sources:
        diff = {k: (v, there["digests"][source].get(k)) for k, v in here["digests"][source].items()
                if there["digests"][source].get(k) != v}
        assert not diff, f"{source}: {diff}"
    # and what they show is what it should be: the raw image's /vmcore is the kernel's /proc/vmcore
    sys.path.insert(0, str(REPO / "tests"))
    from s390x_digests import file_windows
    oracle = file_windows(vmcore)
    for key in ("#size", *[k for k in oracle if k.startswith("@")]):
        assert there["digests"][raw][f"/vmcore{key}"] == oracle[key]
        assert there["digests"][vmcore][f"/vmcore{key}"] == oracle[key]
    assert there["digests"][precrash]["mode"] == "standalone"
    assert there["digests"][precrash]["cpus"] == 0


def test_save_without_fuse_writes_the_same_file_on_big_endian_python(userland, tmp_path):
    """``vmcorefs save`` of a raw image (its /vmcore built in the process, threads, sparse output, .sha256)."""
    import random
    _image, root = userland
    rng = random.Random(15)
    image = bytearray(rng.randbytes(8 << 20))
    image[0xA3] = 1  # z/Architecture lowcore
    image[0xE0C:0xE20] = bytes(0x14)  # no VMCOREINFO, no os_info
    image[0x10418:0x10428] = bytes(16)  # no capture kernel (OLDMEM_BASE/SIZE)
    image[0x200000:0x300000] = bytes(1 << 20)  # zero pages: holes in OUT
    (tmp_path / "mem.raw").write_bytes(bytes(image))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    outs = {}
    for name, python in (("here", [sys.executable]), ("s390x", s390x_python(root))):
        out = tmp_path / f"{name}.elf"
        res = subprocess.run(python + ["-m", "vmcorefs", "save", str(tmp_path / "mem.raw"), str(out), "-q",
                                       "--sha256-file"], env=env, cwd=REPO, capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, res.stderr
        outs[name] = (res.stdout.split()[0], sha256_file(out), (tmp_path / f"{name}.elf.sha256").read_text())
    assert outs["s390x"][0] == outs["s390x"][1] == outs["here"][1] == outs["here"][0]
    assert outs["s390x"][2].replace("s390x.elf", "here.elf") == outs["here"][2]


# --- in the s390x guest --------------------------------------------------------

@pytest.fixture(scope="module")
def vmlinux():
    require_tools("zstd")
    cache = Path(os.environ.get("VMCOREFS_GUEST_USERLAND", "/var/tmp/vmcorefs-userland-t8"))
    cache.mkdir(parents=True, exist_ok=True)
    src = GUEST / "vmlinux.zst"
    dst = cache / "vmlinux"
    if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["zstd", "-q", "-d", "-f", str(src), "-o", str(dst) + ".tmp"], check=True, timeout=300)
        os.replace(str(dst) + ".tmp", dst)
    return dst


def vmlinux_bytes(vmlinux: Path) -> dict[str, tuple[int, bytes]]:
    """linux_banner and the first page at _stext: their addresses (= physical: no KASLR) and vmlinux's bytes."""
    from elftools.elf.elffile import ELFFile
    out = {}
    with open(vmlinux, "rb") as f:
        elf = ELFFile(f)
        syms = elf.get_section_by_name(".symtab")
        for name, size in (("linux_banner", None), ("_stext", 4096)):
            sym = syms.get_symbol_by_name(name)[0]
            addr, size = sym["st_value"], size or sym["st_size"]
            sec = next(s for s in elf.iter_sections()
                       if s["sh_addr"] <= addr < s["sh_addr"] + s["sh_size"] and s["sh_type"] == "SHT_PROGBITS")
            out[name] = (addr, sec.data()[addr - sec["sh_addr"]:addr - sec["sh_addr"] + size])
    return out


@pytest.fixture(scope="module")
def guest(userland, vmlinux, tmp_path_factory):
    """One boot of the ``all`` scenario; its directory, result and what the host expects of it."""
    require_tools("qemu-system-s390x", "mke2fs", "debugfs")
    expect = vmlinux_bytes(vmlinux)
    peek = [f"{a:#x}:{len(b)}" for a, b in expect.values()]
    out = tmp_path_factory.mktemp("s390x-guest")
    result = _runner().run("all", out, peek=peek, efault=EFAULT)
    if result["error"]:
        tail = (out / "console.log").read_bytes()[-3000:].decode(errors="replace")
        pytest.fail(f"the guest scenario failed: {result['error']}\n{tail}")
    return out, result, expect


def out_file(guest, name: str) -> str:
    return (guest[0] / "share" / "out" / name).read_text()


def step(guest, name: str) -> dict:
    return guest[1]["steps"][name]


async def _demo_expected() -> dict:
    from vmcorefs.dump import Dump
    from vmcorefs.sources import open_source
    from vmcorefs.views.root import build_tree
    machine = open_source("demo")
    dump = await Dump.open(machine)
    dump.tod = 0  # the guest zeroes zcore/mem's TOD
    tree = build_tree(dump)

    async def digest(path: str, limit: int | None = None) -> str:
        content = tree.find(path).content
        size = content.size if limit is None else min(limit, content.size)
        h = hashlib.sha256()
        for off in range(0, size, 1 << 24):
            h.update(await content.read(off, min(1 << 24, size - off)))
        return h.hexdigest()
    out = {"vmcore": await digest("vmcore"), "zcore/mem": await digest("zcore/mem", ZCORE_LIMIT)}
    for name in ("memmap", "reipl", "hsa"):
        out[f"zcore/{name}"] = await digest(f"zcore/{name}")
    meminfo = {}
    stack = [("", tree.find("meminfo"))]
    while stack:
        prefix, d = stack.pop()
        for c in d.children:
            if hasattr(c, "children"):
                stack.append((prefix + c.name + "/", c))
            else:
                meminfo[prefix + c.name] = await digest("meminfo/" + prefix + c.name)
    out["meminfo"] = meminfo
    return out


def test_demo_files_hash_in_the_s390x_guest_as_here(guest):
    import trio
    expected = trio.run(_demo_expected)
    got = {"vmcore": json.loads(out_file(guest, "demo-vmcore.out"))["sha256"],
           "zcore/mem": json.loads(out_file(guest, "demo-zcore-mem.out"))["sha256"],
           "meminfo": json.loads(out_file(guest, "demo-meminfo.out"))}
    for name in ("memmap", "reipl", "hsa"):
        got[f"zcore/{name}"] = json.loads(out_file(guest, f"demo-zcore-{name}.out"))["sha256"]
    assert json.loads(out_file(guest, "demo-zcore-mem.out"))["bytes"] == ZCORE_LIMIT
    assert got == expected


def test_live_dev_mem_info_check_and_summary(guest):
    info = out_file(guest, "live-info.out")
    assert step(guest, "live-info")["rc"] == 0
    assert "kernel       6.1.192-vmcorefs-guest" in info
    assert "environment  live: the system runs" in info
    assert "mode         standalone - the source is a live system (/dev/mem)" in info
    assert "vmcoreinfo   note at" in info and "(lowcore 0xE0C)" in info
    # memory = the first kernel's System RAM (its /proc/iomem, saved by the guest)
    ram = [line.split(" : ")[0].strip() for line in out_file(guest, "iomem.txt").splitlines()
           if line.endswith(" : System RAM") and not line.startswith(" ")]
    for span in ram:
        a, b = (int(x, 16) for x in span.split("-"))
        assert f"{a:#018x}  {b:#018x}" in info
    assert step(guest, "live-check")["rc"] == 1
    assert "decision: live system, dumped as it is" in out_file(guest, "live-check.out")
    summary = out_file(guest, "live-summary.out")
    assert "cpus: none dumped" in summary and "os_info: at " in summary


def test_live_memory_reads_back_as_vmlinux_and_a_pinned_buffer_have_it(guest):
    _out, _result, expect = guest
    got = json.loads(out_file(guest, "live-peek.out"))
    for name, (addr, data) in expect.items():
        assert bytes.fromhex(got[f"{addr:#x}:{len(data)}"]) == data, name
    assert expect["linux_banner"][1].startswith(b"Linux version 6.1.192-vmcorefs-guest")
    pinned = json.loads(out_file(guest, "live-pinned.out"))
    assert pinned["pages"] == 16 and pinned["identical"] == 16, pinned


def test_a_page_the_kernel_refuses_is_eio_exactly_there(guest):
    assert step(guest, "live-mount")["rc"] == 0
    got = json.loads(out_file(guest, "live-efault.out"))
    assert got == {f"{EFAULT - 4096:#x}+0x1000": "ok", f"{EFAULT:#x}+0x1000": "errno 5",
                   f"{EFAULT + 4096:#x}+0x1000": "ok", f"{EFAULT - 4096:#x}+0x3000": "errno 5"}


def test_crash_reads_the_live_vmcore_saved_in_the_guest(guest, vmlinux, tmp_path):
    require_tools("qemu-s390x")
    crash = SYSROOT / "usr" / "bin" / "crash"
    if not crash.exists():
        _missing(f"{crash} is missing (contrib/s390x-sysroot.sh)")
    saved = re.search(r"saved /dev/mem to /dev/vd\w: (\d+) bytes", out_file(guest, "live-save.err"))
    assert saved, out_file(guest, "live-save.err")
    size = int(saved.group(1))
    live = tmp_path / "live.elf"
    with open(guest[0] / "live.img", "rb") as src, open(live, "wb") as dst:
        pos = 0
        while pos < size:
            data = src.read(min(1 << 22, size - pos))
            if data.count(0) == len(data):
                dst.seek(len(data), os.SEEK_CUR)
            else:
                dst.write(data)
            pos += len(data)
        dst.truncate(size)
    assert live.read_bytes()[:4] == b"\x7fELF"
    script = tmp_path / "cmds"
    cmds = {"sys": "sys", "ps": "ps", "log": "log",
            "tasks": "list task_struct.tasks -s task_struct.pid,comm -h init_task"}
    script.write_text("".join(f"{c} > {tmp_path / name}\n" for name, c in cmds.items()) + "quit\n")
    res = subprocess.run(["qemu-s390x", "-L", str(SYSROOT), str(crash), "-s", "-i", str(script), str(vmlinux),
                          str(live)], capture_output=True, text=True, timeout=900, cwd=tmp_path,
                         stdin=subprocess.DEVNULL)
    assert (tmp_path / "sys").exists(), res.stdout[-3000:] + res.stderr[-3000:]
    sys_out = (tmp_path / "sys").read_text()
    assert re.search(r"RELEASE: 6\.1\.192-vmcorefs-guest", sys_out), sys_out
    assert "[LIVE DUMP]" in sys_out, sys_out
    # ps: the active tasks (crash 8.0.2 lists only those for this kernel, see
    # tests/test_t6_consumers.py): vmcorefs save itself, reading /dev/mem (a
    # live system: running, or waiting for its reader thread, when caught)
    ps = (tmp_path / "ps").read_text()
    assert re.search(r"^>\s+\d+\s+-?\d+\s+\d+\s+\S+\s+(RU|IN|UN)\s.*python3$", ps, re.M), ps
    # every task: init (pid 1) and the save
    tasks = (tmp_path / "tasks").read_text()
    assert re.search(r"pid = 1,\s+comm = \"vmcorefs-init", tasks) and 'comm = "python3' in tasks, tasks
    log = (tmp_path / "log").read_text()
    assert "Linux version 6.1.192-vmcorefs-guest" in log


def test_the_capture_kernel_names_its_vmcore_and_vmcorefs_shows_it_identically(guest):
    proc = json.loads(out_file(guest, "cap-proc-vmcore.out"))
    marks = [m for _t, m in guest[1]["marks"]]
    assert any(m.startswith(f"VMCOREFS-T8 proc-vmcore {proc['sha256']}") for m in marks)
    assert step(guest, "cap-mount")["rc"] == 0
    mounted = json.loads(out_file(guest, "cap-vmcore.out"))
    assert (mounted["sha256"], mounted["bytes"]) == (proc["sha256"], proc["bytes"])
    assert step(guest, "cap-check")["rc"] == 0
    assert "decision: kdump (the source is a kdump vmcore a capture kernel wrote" in out_file(guest, "cap-check.out")
    info = out_file(guest, "cap-info.out")
    assert "mode         kdump - the source is a kdump vmcore a capture kernel wrote" in info
    assert "kernel vmcore (ELF core)" in info
    assert "why: the source is a kdump vmcore a capture kernel wrote" in out_file(guest, "cap-summary.out")


def test_the_dump_step_in_the_capture_kernel(guest, mounter):
    out = guest[0]
    proc = json.loads(out_file(guest, "cap-proc-vmcore.out"))
    assert step(guest, "cap-dump")["rc"] == 0, out_file(guest, "cap-dump.err")
    dumps = sorted((out / "dumps").glob("vmcore-*.elf"))
    assert len(dumps) == 1, list((out / "dumps").iterdir())
    dump = dumps[0]
    assert sha256_file(dump) == proc["sha256"]
    check = subprocess.run(["sha256sum", "-c", dump.name + ".sha256"], cwd=dump.parent, capture_output=True,
                           text=True, timeout=300)
    assert check.returncode == 0 and check.stdout.strip() == f"{dump.name}: OK", check.stdout + check.stderr
    # the saved file, mounted here, shows the /meminfo the capture kernel's vmcorefs showed
    m = mounter(dump)
    here = m.path("meminfo/summary").read_text().splitlines()
    there = out_file(guest, "cap-summary.out").splitlines()
    assert here[0] == f"machine: {dump.name}" and there[0] == "machine: vmcore"
    assert here[1:] == there[1:]
    m.unmount()
