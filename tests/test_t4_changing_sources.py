# SPDX-License-Identifier: MIT
"""
Nothing silently wrong (issue 12): a source that changes under the mount or
the save is an error (EIO, or a clear stop of the save), never zeros; a
resumed save refuses a source that changed since it began; ``save
MOUNTPOINT OUT`` refuses an OUT the mount reads; what would block (a FIFO)
fails at once; a dead daemon is a one-line error; ``/zcore/hsa`` is only
released by ``0`` written at its start; save errors name the failing
address.

Expectations come from the test's own images (bytes written here) and
``pyelftools`` for where memory lies in ``/vmcore``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (REPO, VMCOREFS, Mount, load_offset, one_line_error, open_vmcore, read_at, require_fuse,
                      run_vmcorefs, sha256_file, small_machine, vmcore_bytes, wait_for_eio)
from reference import HDR, small_dump

MIB = 1 << 20


def sparse_raw_image(path: Path) -> bytes:
    """
    Write a 256 MiB raw s390x image, sparse: 40 MiB of data (a z/Architecture
    lowcore: byte 0xA3 = 1) and 4 MiB at 200 MiB, holes elsewhere, as ``cp
    --sparse=always`` leaves a dump. Return the data at 200 MiB.
    """
    rng = random.Random(12)
    low = bytearray(rng.randbytes(40 * MIB))
    low[0xA3] = 1
    low[0x10400:0x10500] = bytes(0x100)  # no capture kernel's parmarea: a stand-alone dump
    high = rng.randbytes(4 * MIB)
    with open(path, "wb") as f:
        f.write(low)
        f.truncate(256 * MIB)
        f.seek(200 * MIB)
        f.write(high)
    return high


@pytest.fixture
def sparse_image_mount(mounter, tmp_path) -> tuple[Path, bytes, Mount]:
    """A mount of a :func:`sparse_raw_image`: (the image, its data at 200 MiB, the mount)."""
    image = tmp_path / "img.raw"
    high = sparse_raw_image(image)
    return image, high, mounter(image)


# --------------------------------------------------------------------------
# 1. an image truncated (or rewritten) while mounted


def test_image_truncated_while_mounted_gives_eio_not_zeros(sparse_image_mount):
    """The issue's recipe: reads of 64 KiB and more past the new end were zeros (a hole for SEEK_DATA)."""
    image, high, m = sparse_image_mount
    vm, base, fd = open_vmcore(m)
    try:
        assert os.pread(fd, 128 << 10, base + 200 * MIB) == high[:128 << 10]
        assert os.pread(fd, 128 << 10, base + 120 * MIB) == bytes(128 << 10)  # a real hole: zeros
        os.truncate(image, 0x3000000)
        # the kernel's page cache kept what was read before (the dump's bytes);
        # a file opened after the change never sees them (a file held open:
        # within half a second, test_t4_faults.py)
        os.close(fd)
        fd = os.open(vm, os.O_RDONLY)
        for off, n in ((150 * MIB, 64 << 10), (150 * MIB, 128 << 10), (150 * MIB, 4096), (200 * MIB, 128 << 10),
                       (0x9e03000, 128 << 10)):
            with pytest.raises(OSError) as exc:
                os.pread(fd, n, base + off)
            assert exc.value.errno == errno.EIO, (hex(off), n)
        # below the new end the file changed too: no byte of it is the dump's any more
        with pytest.raises(OSError) as exc:
            os.pread(fd, 4096, base + 0x2800000)
        assert exc.value.errno == errno.EIO
        assert b"standalone" in m.path("meminfo/summary").read_bytes()  # the daemon still serves
    finally:
        os.close(fd)


def test_image_cut_and_regrown_while_mounted_gives_eio(sparse_image_mount):
    """Truncated and extended back to its size: the same size, but its data are holes now."""
    image, high, m = sparse_image_mount
    vm, base, fd = open_vmcore(m)
    try:
        assert os.pread(fd, 1 * MIB, base + 200 * MIB) == high[:MIB]
        os.truncate(image, 100 * MIB)
        os.truncate(image, 256 * MIB)
        os.close(fd)  # opened again: what the page cache kept from before the change goes (as above)
        fd = os.open(vm, os.O_RDONLY)
        with pytest.raises(OSError) as exc:
            os.pread(fd, 1 * MIB, base + 200 * MIB)
        assert exc.value.errno == errno.EIO
    finally:
        os.close(fd)


def dump_file(tmp_path: Path, kind: str, addr: int) -> tuple[Path, int, bytes]:
    """
    A dump file of *kind* (``s390 dump``, ``ELF core``) whose old memory at
    *addr* is random data: the file, where in it that page is, its bytes.
    """
    if kind == "s390 dump":
        data = small_dump(mem_size=16 * MIB)
        page = random.Random(3).randbytes(4096)
        data[HDR + addr:HDR + addr + 4096] = page  # the memory follows the 4 KiB header as is
        src = tmp_path / "dump.s390"
        src.write_bytes(data)
        return src, HDR + addr, page
    desc = small_machine(tmp_path)  # data in every 7th page of m.raw
    assert addr % (7 * 4096) == 0
    src = tmp_path / "core.elf"
    run_vmcorefs("save", desc, src, "-q")
    page = (tmp_path / "m.raw").read_bytes()[addr:addr + 4096]
    assert page != bytes(4096)
    return src, load_offset(src) + addr, page  # one PT_LOAD from 0


@pytest.mark.parametrize("kind", ["s390 dump", "ELF core"])
def test_a_dump_file_changed_under_the_mount_is_never_served_from_the_cache(kind, tmp_path, mounter):
    """
    As a raw image (test_t4_faults.py): an s390 dump file or ELF core
    rewritten under the mount gives EIO, at the next open and within half
    a second in a file held open; never its old bytes from the cache, nor
    its new ones.
    """
    addr = 7 * 4096 * 100
    src, where, old = dump_file(tmp_path, kind, addr)
    m = mounter(src)
    vm, base, fd = open_vmcore(m)
    try:
        assert os.pread(fd, 4096, base + addr) == old
        with open(src, "r+b") as f:
            f.seek(where)
            f.write(bytes(255 - b for b in old))
        st = os.stat(src)
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        with pytest.raises(OSError) as exc:
            read_at(vm, base + addr, 4096)
        assert exc.value.errno == errno.EIO
        wait_for_eio(fd, base + addr, old)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# 2. a save whose source changes


def _truncate_after_first_chunk(monkeypatch, image: Path, size: int) -> None:
    """Make the save's first chunk truncate *image* to *size* once it is written (the issue's race, made sure)."""
    import vmcorefs.save as save_mod
    real = save_mod.Saver.save_chunk
    done = []

    async def save_chunk(self, index, offset, length, item):
        if done and not any(d == "cut" for d in done):
            os.truncate(image, size)
            done.append("cut")
        await real(self, index, offset, length, item)
        done.append(index)
    monkeypatch.setattr(save_mod.Saver, "save_chunk", save_chunk)


@pytest.mark.parametrize("checksum", [False, True], ids=["no-sha256", "sha256"])
def test_save_stops_when_its_image_is_truncated(tmp_path, monkeypatch, capsys, checksum):
    """
    The image is cut to 48 MiB while the save runs: the save stops with an
    error (it wrote a wrong dump and exited 0 with --no-sha256), no chunk
    read after the cut is recorded as done, and after the image is
    restored the resume refuses (the image is another file now).
    """
    import vmcorefs.save as save_mod
    image = tmp_path / "img.raw"
    sparse_raw_image(image)
    original = image.read_bytes()
    ref = vmcore_bytes(str(image))
    out = tmp_path / "dump.elf"
    state = Path(str(out) + ".vmcorefs-partial")
    _truncate_after_first_chunk(monkeypatch, image, 48 * MIB)
    with pytest.raises(save_mod.SaveError) as exc:
        save_mod.save(str(image), str(out), chunk=8 * MIB, checksum=checksum)
    assert "changed since it was opened" in str(exc.value) and "\n" not in str(exc.value)
    done = state.read_text().count("\ndone ")
    assert done <= 2, state.read_text()  # chunk 0, and at most the one read before the cut
    if checksum:  # every recorded digest is of the dump's own bytes, none of bytes read after the cut
        for line in state.read_text().splitlines():
            if line.startswith("done "):
                _, index, digest = line.split(" ")
                assert digest == hashlib.sha256(ref[:(int(index) + 1) * 8 * MIB]).hexdigest(), line
    monkeypatch.undo()
    image.write_bytes(original)  # restored: the same bytes, but not the file the save began with
    with pytest.raises(save_mod.SaveError) as exc:
        save_mod.save(str(image), str(out), checksum=checksum)
    assert "changed since" in str(exc.value) and "--restart" in str(exc.value)
    assert state.exists()
    assert save_mod.save(str(image), str(out), restart=True) == 0
    assert out.read_bytes() == ref
    capsys.readouterr()


def test_resume_refuses_a_source_whose_files_changed(tmp_path):
    """A resume knows its source by device, inode, size and mtime of every file, not its first and last chunk."""
    desc = small_machine(tmp_path)
    out = tmp_path / "dump.elf"
    run_vmcorefs("save", desc, out, "--chunk-size", "1M", "--stop-after", "4M", check=False)
    state = Path(str(out) + ".vmcorefs-partial")
    assert re.search(r"^input \d+ \d+ \d+ \d+ .*m\.raw$", state.read_text(), re.M), state.read_text()
    raw = tmp_path / "m.raw"
    with open(raw, "r+b") as f:  # one page in the part not yet saved: first and last chunk are the same
        f.seek(10 * MIB)
        f.write(b"\x55" * 4096)
    one_line_error(run_vmcorefs("save", desc, out, check=False), "m.raw was modified", "--restart")
    os.utime(desc)  # the description too
    res = run_vmcorefs("save", desc, out, "--restart")
    assert out.read_bytes() == vmcore_bytes(str(desc)) and not state.exists()
    assert res.returncode == 0


def test_resume_through_a_mount_checks_the_mounted_files(tmp_path):
    """
    ``save MOUNTPOINT``: the daemon names its files (device, inode, size,
    mtime) and pages of /vmcore are sampled; a resume after the image
    changed is refused, one that did not change continues.
    """
    require_fuse()
    desc = small_machine(tmp_path)
    mp = tmp_path / "mnt"
    mp.mkdir()
    out = tmp_path / "dump.elf"
    state = Path(str(out) + ".vmcorefs-partial")
    m = Mount(str(desc), mp)
    try:
        res = run_vmcorefs("save", mp, out, "--chunk-size", "1M", "--stop-after", "10M", check=False)
        assert res.returncode == 3, res.stderr
        text = state.read_text()
        assert re.search(r"^input \d+ \d+ \d+ \d+ .*m\.raw$", text, re.M), text
        assert len(re.findall(r"^sample \d+ [0-9a-f]{64}$", text, re.M)) >= 5, text
    finally:
        m.unmount()
    os.utime(tmp_path / "m.raw", ns=(1, 1))
    m = Mount(str(desc), mp)
    try:
        one_line_error(run_vmcorefs("save", mp, out, check=False), "m.raw", "--restart")
    finally:
        m.unmount()
    # a sample that does not match (the dump behind the mount point is another)
    text = state.read_text()
    sample = re.search(r"^sample (\d+) ([0-9a-f]{64})$", text, re.M)
    state.write_text(text.replace(sample.group(0), f"sample {sample.group(1)} {'0' * 64}"))
    os.utime(tmp_path / "m.raw", ns=(2, 2))
    m = Mount(str(desc), mp)
    try:
        # the input lines say the image changed too: take them out, so that the sample must tell
        state.write_text("".join(ln for ln in state.read_text().splitlines(True) if not ln.startswith("input ")))
        one_line_error(run_vmcorefs("save", mp, out, check=False), f"offset {int(sample.group(1)):#x}",
                       "--restart")
        state.write_text(text.replace("\ninput ", "\n#input "))  # the samples as recorded: it continues
        res = run_vmcorefs("save", mp, out)
        assert "resuming" in res.stderr
    finally:
        m.unmount()
    assert out.read_bytes() == vmcore_bytes(str(desc))


# --------------------------------------------------------------------------
# 3. save MOUNTPOINT OUT where OUT is what the mount reads


def test_save_through_a_mount_refuses_to_overwrite_the_mounted_image(tmp_path):
    require_fuse()
    desc = small_machine(tmp_path)
    raw = tmp_path / "m.raw"
    before = sha256_file(raw)
    os.link(raw, tmp_path / "hardlink.raw")
    os.symlink(raw, tmp_path / "symlink.raw")
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = Mount(str(desc), mp)
    try:
        for target in (raw, tmp_path / "hardlink.raw", tmp_path / "symlink.raw", desc):
            res = run_vmcorefs("save", mp, target, "--force", check=False)
            one_line_error(res, "which the dump is read from")
        assert sha256_file(raw) == before and raw.stat().st_size == 16 * MIB
        assert not Path(str(raw) + ".vmcorefs-partial").exists()
        # the attribute is hidden: copies of the tree do not carry it
        assert os.listxattr(m.path("vmcore")) == []
    finally:
        m.unmount()


# --------------------------------------------------------------------------
# 4. a FIFO where a file is expected: fails at once, leaves no daemon


def _processes_naming(text: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(int(pid))
    return found


@pytest.mark.parametrize("where", ["source", "store", "store-faults", "hsa-faults"])
def test_a_fifo_fails_a_background_mount_at_once(tmp_path, where):
    require_fuse()
    os.mkfifo(tmp_path / "fifo")
    desc = small_machine(tmp_path)
    text = desc.read_text()
    if where == "store":
        text = re.sub(r'path = ".*"', 'path = "fifo"', text)
    elif where == "store-faults":
        text = text.replace("[store]\n", '[store]\nfaults_file = "fifo"\n')
    elif where == "hsa-faults":
        text = text.replace("[hsa]\n", '[hsa]\nfaults_file = "fifo"\n')
    desc.write_text(text)
    source = tmp_path / "fifo" if where == "source" else desc
    mp = tmp_path / "mnt"
    mp.mkdir()
    t0 = time.monotonic()
    res = run_vmcorefs("mount", source, mp, check=False, timeout=20)  # the daemon forks: the pipe tells
    one_line_error(res, "is a FIFO")
    assert time.monotonic() - t0 < 15
    assert not os.path.ismount(mp)
    time.sleep(0.3)
    assert _processes_naming(str(mp)) == []  # no daemon left blocked behind the command
    res = run_vmcorefs("save", source, tmp_path / "out.elf", check=False, timeout=20)
    one_line_error(res, "is a FIFO")
    assert not (tmp_path / "out.elf").exists()


# --------------------------------------------------------------------------
# 5. save MOUNTPOINT when the daemon is killed


def test_save_of_a_mount_whose_daemon_died(tmp_path):
    require_fuse()
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = Mount("demo", mp)
    out = tmp_path / "dump.elf"
    try:
        proc = subprocess.Popen(VMCOREFS + ["save", str(mp), str(out), "-q"], cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not (out.exists() and out.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        m.proc.send_signal(signal.SIGKILL)  # while the save reads
        _stdout, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            pytest.skip("the save finished before the daemon was killed")
        assert proc.returncode == 1, err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and "internal error" not in err and "Errno" not in err, err
        assert "daemon" in lines[0] and "stale" in lines[0], err
        # and a new save of the stale mount point
        for _ in range(3):
            res = run_vmcorefs("save", mp, tmp_path / "other.elf", check=False, timeout=20)
            one_line_error(res, "stale vmcorefs mount", "vmcorefs umount")
    finally:
        m.cleanup()


# --------------------------------------------------------------------------
# 6. the smaller points


def test_hsa_is_released_only_by_0_at_offset_0(mounter):
    m = mounter("demo")
    hsa = m.path("zcore/hsa")
    assert hsa.read_text() == "2000000\n"
    fd = os.open(hsa, os.O_WRONLY)
    try:
        for off in (1, 4096):
            with pytest.raises(OSError) as exc:
                os.pwrite(fd, b"0", off)
            assert exc.value.errno == errno.EPIPE, off
            assert hsa.read_text() == "2000000\n", off  # not released
        with pytest.raises(OSError):
            os.pwrite(fd, b"1", 0)
        assert hsa.read_text() == "2000000\n"
        assert os.pwrite(fd, b"0", 0) == 1
    finally:
        os.close(fd)
    assert hsa.read_text() == "0\n"


def test_info_of_an_elf_core_says_what_it_is(tmp_path):
    desc = small_machine(tmp_path)
    core = tmp_path / "core.elf"
    run_vmcorefs("save", desc, core, "-q")
    env = next(ln for ln in run_vmcorefs("info", core).stdout.splitlines() if ln.startswith("environment"))
    assert "ELF core" in env and "s390 dump" not in env, env


def test_save_error_names_the_failing_address(faulty_machine, tmp_path):
    """A store fault at 36 MiB + 0x3000: the error names that address and its /vmcore offset, not the chunk's."""
    d, _old = faulty_machine
    bad = 36 * MIB + 0x3000
    text = (d / "m.toml").read_text().replace("[store]\n", '[store]\nfaults_file = "store-faults.toml"\n')
    (d / "m.toml").write_text(text)
    (d / "store-faults.toml").write_text(f"[[fault]]\naddress = {bad:#x}\nsize = 4096\n")
    core = tmp_path / "ref.elf"
    (d / "store-faults.toml").rename(d / "off.toml")
    run_vmcorefs("save", d / "m.toml", core, "-q")
    (d / "off.toml").rename(d / "store-faults.toml")
    base = load_offset(core)
    for extra in ([], ["--no-sha256"]):
        res = run_vmcorefs("save", d / "m.toml", tmp_path / "out.elf", "--restart", "--force", *extra, check=False)
        one_line_error(res, f"cannot read memory at {bad:#x}", f"/vmcore offset {base + bad:#x}")
    # a busy SCLP on HSA page 100: SCLP fails the whole request that covers it; the error names the page
    (d / "store-faults.toml").unlink()
    (d / "faults.toml").write_text('[[fault]]\nkind = "busy"\nfirst_page = 100\nlast_page = 100\n')
    t0 = time.monotonic()
    res = run_vmcorefs("save", d / "m.toml", tmp_path / "out.elf", "--restart", "--force", check=False)
    one_line_error(res, "SCLP busy", f"cannot read memory at {100 * 4096:#x}", f"/vmcore offset {base + 100 * 4096:#x}")
    assert time.monotonic() - t0 < 60
    # a timeout is not narrowed down (each try costs the whole timeout): the error names the request's range
    (d / "faults.toml").write_text('[[fault]]\nkind = "timeout"\nfirst_page = 100\nlast_page = 100\n')
    res = run_vmcorefs("save", d / "m.toml", tmp_path / "out.elf", "--restart", "--force", check=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]  # after the warnings of each timed-out try
    assert last.startswith("vmcorefs: cannot read memory") and "timed out" in last, res.stderr
    m = re.search(r"memory at (0x[0-9a-f]+).*request for (0x[0-9a-f]+)-(0x[0-9a-f]+)", last)
    if m is None:  # one page a request: the address is the page's
        assert f"memory at {100 * 4096:#x}" in res.stderr, res.stderr
    else:
        assert int(m.group(2), 16) <= 100 * 4096 <= int(m.group(3), 16), res.stderr


@pytest.mark.parametrize("option", ["--cpus-json", "--save-areas", "--cpus-from-elf", "image"])
def test_emulate_refuses_a_fifo_at_once(tmp_path, option):
    os.mkfifo(tmp_path / "fifo")
    image = tmp_path / "mem.raw"
    image.write_bytes(bytes(1 << 20))
    args = [tmp_path / "fifo"] if option == "image" else [image, option, tmp_path / "fifo"]
    res = run_vmcorefs("emulate", *args, "-o", tmp_path / "m.toml", check=False, timeout=20)
    one_line_error(res, "fifo is a FIFO, not a regular file")


def test_resume_of_a_machine_on_a_block_device_checks_sampled_pages(tmp_path):
    """
    A raw image on a block device: its mtime says nothing of its contents,
    so pages of the dump are sampled as it is saved; a resume after a
    sampled page changed on the device is refused.
    """
    import shutil
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("needs root and losetup")
    image = tmp_path / "img.raw"
    sparse_raw_image(image)
    res = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"no loop device: {res.stderr.strip()}")
    dev = res.stdout.strip()
    try:
        out = tmp_path / "dump.elf"
        state = Path(str(out) + ".vmcorefs-partial")
        res = run_vmcorefs("save", dev, out, "--chunk-size", "4M", "--stop-after", "64M", check=False)
        assert res.returncode == 3, res.stderr
        samples = [(int(o), d) for o, d in re.findall(r"^sample (\d+) ([0-9a-f]{64})$", state.read_text(), re.M)]
        assert len(samples) >= 3, state.read_text()
        base = load_offset(out)
        # a sampled page inside the image's data, not in the first chunk (the first/last chunk check)
        offset = next(o for o, _ in samples if 4 * MIB <= o - base < 40 * MIB)
        before = os.stat(dev)
        with open(dev, "r+b") as f:
            f.seek(offset - base)
            f.write(b"\xAA" * 4096)
            f.flush()
            os.fsync(f.fileno())
        # a write through the device node may touch its mtime: put it back, as
        # a write by the device's other users (a VM, a SAN) would not touch it
        os.utime(dev, ns=(before.st_atime_ns, before.st_mtime_ns))
        one_line_error(run_vmcorefs("save", dev, out, check=False), f"page at offset {offset:#x}", "--restart")
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)

def test_readme_says_why_a_standalone_mount_is_rw(mounter):
    """/proc/mounts shows a stand-alone dump's mount rw: README's Security section says so, and why."""
    from conftest import mount_options
    m = mounter("demo")
    assert "rw" in mount_options(m.mountpoint)
    readme = (REPO / "README.rst").read_text()
    security = readme[readme.index("\nSecurity\n"):readme.index("\nLimits\n")]
    assert "``rw``" in security and "/zcore/hsa" in security and "EROFS" in security, security
    assert "mounted ``ro``" in security  # and what is ro
