# SPDX-License-Identifier: MIT
"""Shared test fixtures: the unpacked real fixtures and real FUSE mounts."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
CACHE = Path(os.environ.get("VMCOREFS_FIXTURE_CACHE", "/var/tmp/vmcorefs-fixtures"))

VMCOREFS = [sys.executable, "-m", "vmcorefs"]


def fuse_available() -> str | None:
    """Return why FUSE mounts cannot work here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (apt-get install fuse3)"
    return None


def require_fuse() -> None:
    why = fuse_available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"FUSE tests must run in CI: {why}")
        pytest.skip(why)


def unpack_fixture(name: str, member: str) -> Path:
    """
    Return the path of an unpacked fixture file (``kdump-1g``, ``proc-vmcore.elf``),
    unpacking the ``.zst`` once into the cache outside the repository and
    checking it against SHA256SUMS.uncompressed.
    """
    src = FIXTURES / name / (member + ".zst")
    if not src.exists():
        pytest.skip(f"fixture {src} is not available (the shared/ folder is missing)")
    dst_dir = CACHE / name
    dst = dst_dir / member
    stamp = dst_dir / (member + ".verified")
    if dst.exists() and stamp.exists() and stamp.stat().st_mtime >= src.stat().st_mtime:
        return dst
    dst_dir.mkdir(parents=True, exist_ok=True)
    tmp = dst_dir / (member + ".tmp")
    import zstandard
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        reader = zstandard.ZstdDecompressor().stream_reader(fin)
        h = hashlib.sha256()
        while True:
            chunk = reader.read(1 << 24)
            if not chunk:
                break
            h.update(chunk)
            if chunk.count(0) == len(chunk):
                fout.seek(len(chunk), os.SEEK_CUR)  # keep the cache sparse
            else:
                fout.write(chunk)
        fout.truncate()
    sums = (FIXTURES / name / "SHA256SUMS.uncompressed").read_text().split()
    expected = dict(zip(sums[1::2], sums[0::2]))
    if member in expected and h.hexdigest() != expected[member]:
        tmp.unlink()
        pytest.fail(f"unpacked {member} does not match SHA256SUMS.uncompressed")
    os.replace(tmp, dst)
    stamp.write_text(h.hexdigest() + "\n")
    return dst


def describe_kdump_fixture(directory: Path, name: str = "kdump.toml") -> Path:
    """
    Describe the real kdump fixture with one ``vmcorefs emulate``: the other
    CPU's state is what SIGP STORE STATUS gives, which the crashed kernel also
    stored at its prefix + 0x1200 (fixture README). Return the description.
    """
    image = unpack_fixture("kdump-1g", "kdump-kdump.pmem.raw")
    out = directory / name
    run_vmcorefs("emulate", image, "--environment", "kdump", "--cpu-prefix", "0xd64000", "--vector", "-o", out)
    return out


def wait_for_mount(mountpoint: Path, proc: subprocess.Popen | None, timeout: float = 30,
                   errors=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.ismount(mountpoint):
            return
        if proc is not None and proc.poll() is not None:
            out = proc.stderr.read() if proc.stderr else errors()
            raise AssertionError(f"vmcorefs exited with {proc.returncode} before mounting: {out}")
        time.sleep(0.05)
    raise AssertionError(f"{mountpoint} not mounted after {timeout}s")


class Mount:
    """A foreground ``vmcorefs mount`` running in a subprocess."""

    def __init__(self, source: str, mountpoint: Path, *args: str) -> None:
        self.mountpoint = mountpoint
        # the daemon's output goes to a file, not a pipe nobody drains while
        # it runs: a daemon logging much must never block on a full pipe
        self.log = tempfile.NamedTemporaryFile(prefix="vmcorefs-mount-", suffix=".log")
        self.proc = subprocess.Popen(VMCOREFS + ["mount", str(source), str(mountpoint), "-f", *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)
        wait_for_mount(mountpoint, self.proc, errors=self.output)

    def output(self) -> str:
        """Return what the daemon printed so far (standard output and error)."""
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def path(self, name: str) -> Path:
        return self.mountpoint / name

    def unmount(self) -> str:
        """Unmount with ``vmcorefs umount``; assert a clean daemon exit; return its stderr."""
        if self.proc.poll() is None:
            res = subprocess.run(VMCOREFS + ["umount", str(self.mountpoint)], capture_output=True, text=True)
            assert res.returncode == 0, res.stderr
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("vmcorefs did not exit after unmount")
        err = self.output()
        assert self.proc.returncode == 0, err
        assert not os.path.ismount(self.mountpoint)
        return err

    def cleanup(self) -> None:
        if os.path.ismount(self.mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def mounter(tmp_path):
    """Return ``mount(source, *args) -> Mount``; every mount is cleaned up after the test."""
    require_fuse()
    mounts: list[Mount] = []

    def mount(source, *args, mountpoint: Path | None = None) -> Mount:
        mp = mountpoint or tmp_path / f"mnt{len(mounts)}"
        mp.mkdir(exist_ok=True)
        m = Mount(str(source), mp, *args)
        mounts.append(m)
        return m

    yield mount
    for m in mounts:
        m.cleanup()


def load_offset(path) -> int:
    """The file offset of the first PT_LOAD of the ELF core *path*: where its memory starts."""
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        return next(s["p_offset"] for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD")


def open_vmcore(m: Mount) -> tuple[Path, int, int]:
    """/vmcore of the mount *m*: its path, its :func:`load_offset`, and a descriptor open for reading
    (the caller closes it)."""
    vm = m.path("vmcore")
    return vm, load_offset(vm), os.open(vm, os.O_RDONLY)


def read_at(path, offset: int, length: int) -> bytes:
    """pread on a file opened for this read: an open after a faults file or an image changed drops the
    kernel's cached pages."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def wait_for_eio(fd: int, offset: int, old: bytes, timeout: float = 30) -> None:
    """
    Wait until the file held open as *fd*, whose source changed, gives EIO
    at *offset* (its cached pages go within half a second; a loaded machine
    may take longer); until then it may give the bytes it cached, *old*,
    never anything else.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = os.pread(fd, len(old), offset)
        except OSError as exc:
            assert exc.errno == errno.EIO
            return
        assert got == old, "neither the cached page nor EIO"
        assert time.monotonic() < deadline, "the old page is still served"
        time.sleep(0.1)


def run_vmcorefs(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(VMCOREFS + [str(a) for a in args], capture_output=True, text=True, cwd=REPO, **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"vmcorefs {' '.join(map(str, args))} failed ({res.returncode}): {res.stderr}")
    return res


def sha256_file(path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk)
            if not data:
                break
            h.update(data)
    return h.hexdigest()


# --------------------------------------------------------------------------
# descriptions of the real kdump fixture as a stand-alone dump


CPU_STATES = {
    # what QEMU reported then: CPU 0 runs the capture kernel, CPU 1 is stopped in its crashed state
    "json": ["--cpus-json", str(FIXTURES / "kdump-1g" / "cpu-state-kdump.json")],
    # CPU 1's status where the crashed kernel stored it (emulate reads it behind the swap)
    "prefix": ["--cpu-prefix", "0xd64000", "--vector"],
    # none given: emulate finds the crashed kernel's CPUs behind the swap (lowcore_ptr[])
    "found": [],
}


def describe_standalone_fixture(directory, cpus: str = "json") -> str:
    """
    The fixture as a stand-alone dump taken at the same moment, as if the
    capture kernel had hung: the same memory behind an HSA, the CPU states
    as *cpus* names (see CPU_STATES).
    """
    desc = directory / f"standalone-{cpus}.toml"
    run_vmcorefs("emulate", unpack_fixture("kdump-1g", "kdump-kdump.pmem.raw"), "--environment", "standalone",
                 *CPU_STATES[cpus], "-o", desc)
    return str(desc)


# --------------------------------------------------------------------------
# external tools (the consumers; s390x builds under qemu-user)

SYSROOT = Path(os.environ.get("VMCOREFS_S390X_SYSROOT", "/var/tmp/vmcorefs-s390x-sysroot"))
SETUP_HINT = "bash contrib/setup.sh test"



def missing_tool(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"consumer tests must run in CI: {why} ({SETUP_HINT})")
    pytest.skip(f"{why} ({SETUP_HINT})")


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)
    if path is None:
        missing_tool(f"{name} is missing (Debian package {package})")
    return path


def require_s390x(tool: str) -> list[str]:
    """The command prefix that runs SYSROOT's s390x *tool* under qemu-user."""
    qemu = require_tool("qemu-s390x", "qemu-user")
    binary = next((SYSROOT / d / tool for d in ("usr/bin", "sbin", "usr/sbin")
                   if os.access(SYSROOT / d / tool, os.X_OK)), None)
    if binary is None:
        missing_tool(f"{SYSROOT}/usr/bin/{tool} is missing (bash contrib/s390x-sysroot.sh builds the s390x sysroot)")
    return [qemu, "-L", str(SYSROOT), str(binary)]


def run(cmd, *, timeout: float = 300, ok: bool = True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL, **kw)
    if ok and res.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n"
                             f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


# --------------------------------------------------------------------------
# small machines and what the command line says


PAGE = 4096


MIB = 1 << 20


def small_machine(tmp_path: Path, name: str = "m", *, size: int = 16 * MIB, seed: int = 1,
                  every: int = 7, latency_us: int = 0) -> Path:
    """
    Write a stand-alone machine of *size* bytes whose memory is zero except
    for random data in every *every*-th page; return its description.
    """
    import random
    rng = random.Random(seed)
    raw = tmp_path / f"{name}.raw"
    with open(raw, "wb") as f:  # sparse: the zero pages are holes
        for page in range(0, size // PAGE, every):
            f.seek(page * PAGE)
            f.write(rng.randbytes(PAGE))
        f.truncate(size)
    sa = bytearray(512)
    struct.pack_into(">I", sa, 0x118, 0x20000)  # prefix: the boot CPU is dumped
    struct.pack_into(">QQ", sa, 0x100, 0x0704C00180000000, 0x100000 + seed)  # PSW
    (tmp_path / f"{name}.cpu").write_bytes(bytes(sa))
    desc = tmp_path / f"{name}.toml"
    run_vmcorefs("emulate", raw, "-o", desc, "--save-areas", tmp_path / f"{name}.cpu", "--hsa-size", "1M",
                  "--sclp-latency-us", str(latency_us))
    return desc


def vmcore_bytes(source: str) -> bytes:
    """/vmcore of *source*, built in this process (the reference for saved files)."""
    import trio

    from vmcorefs.dump import Dump
    from vmcorefs.sources import open_source
    from vmcorefs.views.vmcore import build_vmcore

    async def build() -> bytes:
        machine = open_source(source)
        try:
            dump = await Dump.open(machine)
            vmcore = build_vmcore(dump)
            return await vmcore.read(0, vmcore.size)
        finally:
            machine.close()
    return trio.run(build)


def sha_line(stdout: str) -> tuple[str, str]:
    """The ``SHA256  OUT`` line save prints last."""
    digest, name = stdout.strip().splitlines()[-1].split("  ", 1)
    assert re.fullmatch(r"[0-9a-f]{64}", digest), stdout
    return digest, name


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode != 0, res
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vmcorefs: "), res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture
def faulty_machine(tmp_path):
    rng = random.Random(9)
    image = bytearray(rng.randbytes(40 * MIB))
    (tmp_path / "mem.raw").write_bytes(image)
    sa = bytearray(512)
    struct.pack_into(">I", sa, 0x118, 0x20000)
    (tmp_path / "cpu.bin").write_bytes(bytes(sa))
    run_vmcorefs("emulate", tmp_path / "mem.raw", "-o", tmp_path / "m.toml", "--save-areas", tmp_path / "cpu.bin",
                 "--hsa-size", "32M")
    text = (tmp_path / "m.toml").read_text()
    # no HSA page cache here: every read must really go to the (faulty) SCLP
    text = text.replace("[hsa]\n", '[hsa]\nfaults_file = "faults.toml"\nreader_timeout_ms = 100\n'
                                   'reader_busy_delay_us = 0\nreader_cache_pages = 0\n')
    (tmp_path / "m.toml").write_text(text)
    old = bytearray(image)
    old[0x1200:0x1400] = sa
    return tmp_path, bytes(old)


def mount_options(mountpoint) -> list[str]:
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[1] == str(mountpoint):
                return parts[3].split(",")
    raise AssertionError(f"{mountpoint} not in /proc/mounts")
