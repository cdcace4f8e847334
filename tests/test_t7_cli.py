# SPDX-License-Identifier: MIT
"""
The command line as a new user meets it: the commands README.rst shows
(parsed out of its literal blocks and run, outputs compared where they are
shown), ``--help`` with examples, one-line errors that say what to do next,
``vmcorefs info``'s table, ``vmcorefs save`` (identical to ``cp`` of the
mount, sparse, SHA-256, resume after an interruption, a damaged partial
file refused), ``mount -t fuse.vmcorefs`` and fstab for real (in a private
mount namespace), the dump-environment script, shell completion and the
man page.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (FIXTURES, REPO, VMCOREFS, describe_kdump_fixture, require_fuse, run_vmcorefs, sha256_file,
                      unpack_fixture)

MIB = 1 << 20
PAGE = 4096
COMMANDS = ["mount", "demo", "umount", "check", "info", "save", "emulate"]


# --------------------------------------------------------------------------
# helpers


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
            vmcore, _ = build_vmcore(dump)
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


# --------------------------------------------------------------------------
# --help, errors, the helper calling convention


def test_every_help_shows_examples():
    res = run_vmcorefs("--help")
    assert "examples:" in res.stdout
    for cmd in COMMANDS:
        assert re.search(rf"^  vmcorefs {cmd}\b", res.stdout, re.M) or cmd == "umount" and "umount" in res.stdout
        sub = run_vmcorefs(cmd, "--help").stdout
        assert re.search(r"^examples?:", sub, re.M), f"vmcorefs {cmd} --help has no example"
        assert f"vmcorefs {cmd}" in sub.split("example", 1)[1], cmd
    assert run_vmcorefs("--version").stdout.startswith("vmcorefs ")


def test_errors_are_one_line_and_say_what_to_do(tmp_path):
    one_line_error(run_vmcorefs("info", tmp_path / "missing.toml", check=False), "no such file")
    (tmp_path / "out.elf").write_bytes(b"x")
    one_line_error(run_vmcorefs("save", "demo", tmp_path / "out.elf", check=False), "--force")
    one_line_error(run_vmcorefs("save", "demo", tmp_path, check=False), "give the dump's file name")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run_vmcorefs("save", empty, tmp_path / "o.elf", check=False), "mount point")
    one_line_error(run_vmcorefs("mount", "demo", tmp_path / "mnt", "-o", "bogus", check=False),
                   "unknown mount option", "allow_other")
    one_line_error(run_vmcorefs("demo", tmp_path / "nodir", check=False), "does not exist",
                   f"mkdir -p {tmp_path / 'nodir'}")
    res = run_vmcorefs("save", check=False)
    assert res.returncode == 2 and "usage:" in res.stderr


def test_helper_convention_and_mount_words():
    from vmcorefs.cli import _helper_convention, _mount_options
    cmds = set(COMMANDS) | {"unmount"}
    assert _helper_convention(["m.toml", "/mnt", "-o", "rw,dev,suid"], cmds) == \
        ["mount", "m.toml", "/mnt", "-o", "rw,dev,suid"]
    assert _helper_convention(["demo", "/mnt", "-o", "rw"], cmds) == ["demo", "/mnt", "-o", "rw"]
    assert _helper_convention(["info", "demo"], cmds) == ["info", "demo"]
    assert _helper_convention(["--help"], cmds) == ["--help"]
    opts = _mount_options(["rw,dev,suid,nosuid,nodev,noatime,noauto,nofail,_netdev,x-systemd.automount",
                           "allow_other,mode=kdump,log=/tmp/l,max_read=131072"])
    assert opts == {"fuse": ["max_read=131072"], "allow_other": True, "mode": "kdump", "log": "/tmp/l"}


def test_the_mount_helper_form_mounts(tmp_path):
    """What mount.fuse3 runs for 'mount -t fuse.vmcorefs': vmcorefs SOURCE MOUNTPOINT -o OPTIONS."""
    require_fuse()
    desc = small_machine(tmp_path)
    mp = tmp_path / "mnt"
    mp.mkdir()
    run_vmcorefs(desc, mp, "-o", "rw,dev,suid,noatime,allow_other,mode=standalone")
    try:
        assert os.path.ismount(mp)
        assert "mode: standalone" in (mp / "meminfo/summary").read_text()
        assert (mp / "vmcore").stat().st_mode & 0o444 == 0o444  # allow_other
    finally:
        run_vmcorefs("umount", mp)
    assert not os.path.ismount(mp)


# --------------------------------------------------------------------------
# info


def test_info_is_a_table():
    out = run_vmcorefs("info", "demo").stdout
    fields = dict(re.findall(r"^(\S+) +(.*)$", out.split("\n\n")[0], re.M))
    assert fields["kernel"] == "6.1.0-vmcorefs-demo"
    assert fields["mode"].startswith("standalone - no valid kdump setup")
    assert fields["crashkernel"] == "none"
    assert fields["/vmcore"].startswith("536883200 bytes")
    assert fields["cpus"].startswith("4 (4 dumped), vector registers: yes")
    assert "UTC" in fields["crashed"]
    memory = out.split("\nMemory\n")[1].split("\n\n")[0].splitlines()
    assert memory[0].split() == ["START", "END", "SIZE", "IN", "/vmcore"]
    assert memory[1].split()[:4] == ["0x0000000000000000", "0x0000000001ffffff", "32", "MiB"]
    assert "HSA" in memory[1]
    assert memory[3].split()[:2] == ["0x0000000018000000", "0x0000000027ffffff"]
    cpus = out.split("\nCPUs\n")[1].splitlines()
    assert cpus[0].split()[:3] == ["ADDRESS", "ROLE", "PREFIX"]
    assert cpus[1].split() == ["0", "boot", "0x00020000", "0704c00180000000", "0000000000100024", "#1"]
    assert [row.split()[-1] for row in cpus[1:5]] == ["#1", "#2", "#3", "#4"]


def test_info_of_the_kdump_fixture(tmp_path):
    describe_kdump_fixture(tmp_path)
    out = run_vmcorefs("info", tmp_path / "kdump.toml").stdout
    assert re.search(r"^kernel +6\.1\.192-vmcorefs$", out, re.M)
    assert re.search(r"^crashkernel +0x34000000-0x3fffffff \(192 MiB\)$", out, re.M)
    assert re.search(r"^/vmcore +872427520 bytes", out, re.M)
    assert re.search(r"0x0000000000000000  0x000000000bffffff  192 MiB  yes, read at 0x34000000", out)
    assert re.search(r"0x0000000034000000  0x000000003fffffff  192 MiB  no: crashkernel", out)
    assert re.search(r"^  0 +boot +0x00d62000 +0400c00180000000 0000000000110358 +#1$", out, re.M)
    assert re.search(r"^  1 +0x00d64000 +0400c00180000000 0000000000112a26 +#2$", out, re.M)


# --------------------------------------------------------------------------
# save


def test_save_from_a_mount_equals_cp(mounter, tmp_path):
    desc = small_machine(tmp_path)
    m = mounter(desc)
    out = tmp_path / "saved.elf"
    res = run_vmcorefs("save", m.mountpoint, out, "--sha256-file")
    shutil.copyfile(m.path("vmcore"), tmp_path / "cp.elf")
    assert out.read_bytes() == (tmp_path / "cp.elf").read_bytes()
    digest, name = sha_line(res.stdout)
    assert name == str(out) and digest == sha256_file(out)
    assert (tmp_path / "saved.elf.sha256").read_text() == f"{digest}  saved.elf\n"
    subprocess.run(["sha256sum", "--quiet", "-c", "saved.elf.sha256"], cwd=tmp_path, check=True)
    assert oct(out.stat().st_mode & 0o777) == "0o600"  # a dump holds every secret
    assert not Path(str(out) + ".vmcorefs-partial").exists()
    # the same dump without FUSE: from the description itself
    res = run_vmcorefs("save", desc, tmp_path / "direct.elf")
    assert sha_line(res.stdout)[0] == digest
    # the vmcore file of the mount, and /dev/null as a stream
    res = run_vmcorefs("save", m.path("vmcore"), "/dev/null")
    assert sha_line(res.stdout)[0] == digest


def test_save_is_sparse_and_right(tmp_path):
    desc = small_machine(tmp_path, every=5)
    out = tmp_path / "sparse.elf"
    res = run_vmcorefs("save", desc, out, "--verify")
    assert "verified" in res.stderr and "of zero pages left as holes" in res.stderr
    data = out.read_bytes()
    assert data == vmcore_bytes(str(desc))
    dense = tmp_path / "dense.elf"
    run_vmcorefs("save", desc, dense, "--no-sparse")
    assert dense.read_bytes() == data
    nonzero = sum(data[i:i + PAGE].count(0) != len(data[i:i + PAGE]) for i in range(0, len(data), PAGE))
    allocated = out.stat().st_blocks * 512
    assert nonzero * PAGE <= allocated <= nonzero * PAGE + 256 * 1024, (nonzero, allocated)
    assert dense.stat().st_blocks * 512 >= len(data) - PAGE
    # each hole is a zero page, each zero page a hole
    fd = os.open(out, os.O_RDONLY)
    try:
        for off in range(0, len(data), PAGE):
            zero = data[off:off + PAGE].count(0) == len(data[off:off + PAGE])
            try:
                hole = os.lseek(fd, off, os.SEEK_DATA) != off
            except OSError:  # ENXIO: only holes from here on
                hole = True
            assert hole == zero, off
    finally:
        os.close(fd)


def test_save_without_sha256_copies_in_the_kernel(tmp_path):
    """--no-sha256: raw image regions by copy_file_range, holes skipped, the same bytes; resumable."""
    desc = small_machine(tmp_path, size=32 * MIB, every=9)
    want = vmcore_bytes(str(desc))
    out = tmp_path / "fast.elf"
    res = run_vmcorefs("save", desc, out, "--no-sha256")
    assert res.stdout == "" and "no SHA-256" in res.stderr
    assert out.read_bytes() == want
    assert out.stat().st_blocks * 512 < len(want) // 2  # the image's holes stayed holes
    # interrupted and resumed: the state holds no checksums, the source is compared instead
    res = run_vmcorefs("save", desc, out, "--no-sha256", "--force", "--chunk-size", "1M", "--stop-after", "7M",
                       check=False)
    assert res.returncode == 3
    state = Path(str(out) + ".vmcorefs-partial")
    assert "checksum none" in state.read_text() and "\ndone 6 -\n" in state.read_text()
    with open(out, "r+b") as f:  # damage the written part: refused
        f.seek(MIB + 100)
        f.write(b"\xff")
    one_line_error(run_vmcorefs("save", desc, out, "--no-sha256", check=False), "differs", "--restart")
    run_vmcorefs("save", desc, out, "--no-sha256", "--restart", "--chunk-size", "1M", "--stop-after", "7M",
                 check=False)
    run_vmcorefs("save", desc, out, "--no-sha256")
    assert out.read_bytes() == want and not state.exists()
    one_line_error(run_vmcorefs("save", desc, tmp_path / "x.elf", "--no-sha256", "--sha256-file", check=False),
                   "--no-sha256")


@pytest.mark.parametrize("works", ["copy_file_range", "sendfile", "pread/pwrite"])
def test_kernel_copy_falls_back(tmp_path, monkeypatch, works):
    """
    The --no-sha256 data path: copy_file_range, else sendfile (EXDEV: across
    file systems, as to a tmpfs), else pread/pwrite; each gives the same bytes
    at the right places, holes left out, also when written out of order.
    """
    import errno
    from vmcorefs import save as save_mod
    src = tmp_path / "src"
    data = random.Random(5).randbytes(3 * MIB)
    with open(src, "wb") as f:
        f.write(data[:MIB])
        f.seek(2 * MIB)  # a hole at 1..2 MiB
        f.write(data[2 * MIB:])
    calls = {"copy_file_range": 0, "sendfile": 0}
    real = {"copy_file_range": os.copy_file_range, "sendfile": os.sendfile}

    def fake(name):
        def call(*args):
            calls[name] += 1
            order = ["copy_file_range", "sendfile", "pread/pwrite"]
            if order.index(name) < order.index(works):
                raise OSError(errno.EXDEV if name == "copy_file_range" else errno.EINVAL, "not here")
            return real[name](*args)
        return call

    monkeypatch.setattr(save_mod.os, "copy_file_range", fake("copy_file_range"))
    monkeypatch.setattr(save_mod.os, "sendfile", fake("sendfile"))
    out = save_mod.Output(str(tmp_path / "out"), 5 * MIB, sparse=True)
    out.create()
    fd = os.open(src, os.O_RDONLY)
    try:
        # the second half first, then the first: positions must not be assumed
        assert save_mod._copy_region(fd, 1536 * 1024, out, 2 * MIB + 1536 * 1024, 1536 * 1024) == MIB
        assert save_mod._copy_region(fd, 0, out, 2 * MIB, 1536 * 1024) == MIB  # holes are skipped
    finally:
        os.close(fd)
        out.extend(5 * MIB)
        out.close()
    got = (tmp_path / "out").read_bytes()
    assert got == bytes(2 * MIB) + data[:MIB] + bytes(MIB) + data[2 * MIB:]
    # each method was tried once and given up for this output, the working one used
    if works == "copy_file_range":
        assert calls["copy_file_range"] >= 2 and calls["sendfile"] == 0
    elif works == "sendfile":
        assert calls["copy_file_range"] == 1 and calls["sendfile"] >= 2
    else:
        assert calls == {"copy_file_range": 1, "sendfile": 1}


def test_save_to_stdout(tmp_path):
    desc = small_machine(tmp_path)
    with open(tmp_path / "piped.elf", "wb") as f:
        res = subprocess.run(VMCOREFS + ["save", str(desc), "-"], stdout=f, stderr=subprocess.PIPE, text=True,
                             cwd=REPO, check=True)
    data = (tmp_path / "piped.elf").read_bytes()
    assert data == vmcore_bytes(str(desc))
    assert hashlib.sha256(data).hexdigest() in res.stderr  # the checksum goes to stderr then


def test_resume_after_stop_gives_the_same_file(tmp_path):
    desc = small_machine(tmp_path)
    whole = vmcore_bytes(str(desc))
    out = tmp_path / "dump.elf"
    state = Path(str(out) + ".vmcorefs-partial")
    res = run_vmcorefs("save", desc, out, "--chunk-size", "1M", "--stop-after", "5M", check=False)
    assert res.returncode == 3, res.stderr
    assert "run the same command again to resume" in res.stderr
    assert state.exists() and out.stat().st_size == 5 * MIB
    assert len([ln for ln in state.read_text().splitlines() if ln.startswith("done ")]) == 5
    res = run_vmcorefs("save", desc, out, "--sha256-file")
    assert "resuming" in res.stderr and "verified" in res.stderr
    assert out.read_bytes() == whole
    assert sha_line(res.stdout)[0] == hashlib.sha256(whole).hexdigest()
    assert not state.exists()
    subprocess.run(["sha256sum", "--quiet", "-c", "dump.elf.sha256"], cwd=tmp_path, check=True)


def test_resume_after_sigterm(tmp_path):
    """A real interruption: SIGTERM while the HSA is read over slow SCLP."""
    desc = small_machine(tmp_path, size=8 * MIB, latency_us=40000)
    out = tmp_path / "dump.elf"
    state = Path(str(out) + ".vmcorefs-partial")
    proc = subprocess.Popen(VMCOREFS + ["save", str(desc), str(out), "--chunk-size", "64K"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if state.exists() and state.read_text().count("\ndone ") >= 4:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the save finished before SIGTERM arrived")
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and "resume" in err and "Traceback" not in err
    done = state.read_text().count("\ndone ")
    assert 4 <= done < 8 * MIB // (64 << 10)
    assert out.stat().st_size >= done * (64 << 10)
    res = run_vmcorefs("save", desc, out)
    assert out.read_bytes() == vmcore_bytes(str(desc))
    assert sha_line(res.stdout)[0] == sha256_file(out) and not state.exists()


def test_a_damaged_partial_file_is_not_continued(tmp_path):
    desc = small_machine(tmp_path)
    out = tmp_path / "dump.elf"
    state = Path(str(out) + ".vmcorefs-partial")
    run_vmcorefs("save", desc, out, "--chunk-size", "1M", "--stop-after", "6M", check=False)
    size = out.stat().st_size
    # flip one byte in the middle of the written part
    with open(out, "r+b") as f:
        f.seek(3 * MIB + 12345)
        b = f.read(1)
        f.seek(3 * MIB + 12345)
        f.write(bytes([b[0] ^ 0xFF]))
    res = run_vmcorefs("save", desc, out, check=False)
    one_line_error(res, "chunk 3", "--restart")
    assert out.stat().st_size == size and state.exists()  # nothing written, nothing dropped
    # a partial file cut short
    with open(out, "r+b") as f:
        f.truncate(2 * MIB)
    one_line_error(run_vmcorefs("save", desc, out, check=False), "--restart")
    # --restart starts over and makes the right file
    res = run_vmcorefs("save", desc, out, "--restart")
    assert out.read_bytes() == vmcore_bytes(str(desc)) and not state.exists()


def test_a_partial_file_of_another_dump_is_refused(tmp_path):
    a = small_machine(tmp_path, "a", seed=1)
    b = small_machine(tmp_path, "b", seed=2)  # same size, other contents and registers
    out = tmp_path / "dump.elf"
    run_vmcorefs("save", a, out, "--chunk-size", "1M", "--stop-after", "3M", check=False)
    one_line_error(run_vmcorefs("save", b, out, check=False), "another dump", "--restart")
    one_line_error(run_vmcorefs("save", "demo", out, check=False), "--restart")  # another size
    run_vmcorefs("save", b, out, "--restart")
    assert out.read_bytes() == vmcore_bytes(str(b))


def test_save_refuses_to_overwrite_its_source(tmp_path):
    desc = small_machine(tmp_path)
    one_line_error(run_vmcorefs("save", desc, tmp_path / "m.raw", "--force", check=False), "read from")
    assert (tmp_path / "m.raw").stat().st_size == 16 * MIB


def test_save_to_a_block_device(tmp_path):
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("needs root and losetup")
    desc = small_machine(tmp_path)
    backing = tmp_path / "disk.img"
    backing.write_bytes(b"\xAA" * (20 * MIB))  # old contents: zero pages must really be written
    res = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"no loop device: {res.stderr.strip()}")
    dev = res.stdout.strip()
    try:
        one_line_error(run_vmcorefs("save", desc, dev, check=False), "--force")
        res = run_vmcorefs("save", desc, dev, "--force", "--verify")
        want = vmcore_bytes(str(desc))
        with open(dev, "rb") as f:
            assert f.read(len(want)) == want
        assert sha_line(res.stdout)[0] == hashlib.sha256(want).hexdigest()
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_checksum_stays_out_of_a_dump_on_standard_output(tmp_path):
    """/dev/stdout or a file standard output also writes to: the SHA-256 line goes to stderr, not into the dump."""
    desc = small_machine(tmp_path)
    want = vmcore_bytes(str(desc))
    digest = hashlib.sha256(want).hexdigest()
    res = subprocess.run(VMCOREFS + ["save", str(desc), "/dev/stdout"], capture_output=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert len(res.stdout) == len(want) and res.stdout == want
    assert f"{digest}  /dev/stdout".encode() in res.stderr
    out = tmp_path / "same.elf"
    with open(out, "wb") as f:  # vmcorefs save SOURCE same.elf > same.elf
        res = subprocess.run(VMCOREFS + ["save", str(desc), str(out)], stdout=f, stderr=subprocess.PIPE,
                             text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == want and f"{digest}  {out}" in res.stderr


def test_no_sparse_is_honoured_without_sha256(tmp_path):
    """--no-sparse --no-sha256: every byte allocated, not the kernel copy that skips holes."""
    desc = small_machine(tmp_path, every=9)
    want = vmcore_bytes(str(desc))
    out = tmp_path / "dense.elf"
    run_vmcorefs("save", desc, out, "--no-sha256", "--no-sparse")
    assert out.read_bytes() == want
    assert out.stat().st_blocks * 512 >= len(want) - PAGE


def test_state_records_only_chunks_that_reached_the_disk(tmp_path, monkeypatch, capsys):
    """
    The output is fdatasync'ed before the chunks are recorded (so a power
    loss cannot leave a state naming data the disk never got); after a
    failed fdatasync those chunks are never recorded, and the save resumes
    from the last synced chunk to the right file.
    """
    import errno

    import vmcorefs.save as save_mod
    desc = small_machine(tmp_path)
    out = tmp_path / "dump.elf"
    state = Path(str(out) + ".vmcorefs-partial")
    recorded = lambda: state.read_text().count("\ndone ")  # noqa: E731
    real_sync = os.fdatasync
    seen = []

    def sync(fd):
        seen.append(recorded())  # what the state holds when the sync starts
        real_sync(fd)
    monkeypatch.setattr(save_mod, "SYNC_CHUNKS", 3, raising=False)  # batches of 3 chunks
    monkeypatch.setattr(os, "fdatasync", sync)
    assert save_mod.save(str(desc), str(out), chunk=MIB, stop_after=10 * MIB) == 3
    assert seen == [0, 3, 6, 9] and recorded() == 10  # the last one: the stop commits what was written

    calls = []

    def failing_sync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_sync(fd)
    monkeypatch.setattr(os, "fdatasync", failing_sync)
    with pytest.raises(save_mod.SaveError) as exc:
        save_mod.save(str(desc), str(out))  # resumes at chunk 10: synced after 12, fails after 15
    assert "fdatasync failed" in str(exc.value) and "\n" not in str(exc.value)
    assert len(calls) == 2 and recorded() == 13  # chunks 13-15 were written, never recorded
    monkeypatch.setattr(os, "fdatasync", real_sync)
    assert save_mod.save(str(desc), str(out)) == 0
    assert out.read_bytes() == vmcore_bytes(str(desc)) and not state.exists()
    assert "resuming" in capsys.readouterr().err


def test_sparse_save_cuts_the_file_only_where_a_chunk_ends_in_a_hole(tmp_path, monkeypatch, capsys):
    """ftruncate only where a chunk ends in zero pages (and once at the end), not once per chunk."""
    import vmcorefs.save as save_mod
    desc = small_machine(tmp_path, every=1)
    want = vmcore_bytes(str(desc))
    real_ftruncate = os.ftruncate
    calls = []

    def ftruncate(fd, size):
        calls.append(size)
        real_ftruncate(fd, size)
    monkeypatch.setattr(os, "ftruncate", ftruncate)
    out = tmp_path / "dump.elf"
    assert save_mod.save(str(desc), str(out), chunk=MIB) == 0
    assert out.read_bytes() == want
    chunks = range(MIB, len(want), MIB)
    ends_in_zeros = [end for end in chunks if want[end - PAGE:end].count(0) == PAGE]
    assert len(chunks) >= 16 and len(ends_in_zeros) < len(chunks) // 2
    assert sorted(set(calls) - {len(want)}) == sorted(ends_in_zeros), calls
    # the same for the kernel copy of --no-sha256
    calls.clear()
    assert save_mod.save(str(desc), str(out), chunk=MIB, checksum=False, force=True) == 0
    assert out.read_bytes() == want
    assert sorted(set(calls) - {0, len(want)}) == sorted(ends_in_zeros), calls


def test_store_pieces_knows_dump_and_elf_stores_by_class(tmp_path):
    """--no-sha256's kernel copy finds the file regions of s390 dump files and ELF cores, subclasses too."""
    from vmcorefs.save import _store_pieces
    from vmcorefs.sources.elfcore import ElfMemoryStore
    from vmcorefs.sources.s390dump import DumpFileStore

    class Dump(DumpFileStore):
        pass

    class Elf(ElfMemoryStore):
        pass
    img = tmp_path / "mem.img"
    img.write_bytes(bytes(0x1000) + os.urandom(2 * MIB))
    d = Dump(str(img), 2 * MIB)
    e = Elf(str(img), [dict(p_paddr=0, p_memsz=3 * MIB, p_offset=0x1000, p_filesz=2 * MIB)])
    try:
        assert _store_pieces(d, PAGE, 2 * PAGE) == [("copy", d.file.fd, 0x1000 + PAGE, 2 * PAGE)]
        assert _store_pieces(e, 2 * MIB - PAGE, 2 * PAGE) == [("copy", e.file.fd, 0x1000 + 2 * MIB - PAGE, PAGE),
                                                               ("zero", 0, 0, PAGE)]
    finally:
        d.close()
        e.close()


def test_save_of_a_plain_directory_needs_a_dump_in_it(tmp_path):
    """DIR/vmcore is copied as it is only from a mount point, or when it is an ELF dump."""
    desc = small_machine(tmp_path)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "vmcore").write_text("not a dump\n")
    one_line_error(run_vmcorefs("save", plain, tmp_path / "o.elf", check=False), "not a vmcorefs mount point")
    assert not (tmp_path / "o.elf").exists()
    run_vmcorefs("save", desc, plain / "vmcore", "--force")  # an ELF dump there: copied
    res = run_vmcorefs("save", plain, tmp_path / "o.elf")
    assert (tmp_path / "o.elf").read_bytes() == (plain / "vmcore").read_bytes()
    assert sha_line(res.stdout)[0] == sha256_file(plain / "vmcore")


def test_a_refused_save_leaves_no_empty_output(tmp_path):
    desc = small_machine(tmp_path)
    out = tmp_path / "new.elf"
    state = Path(str(out) + ".vmcorefs-partial")
    state.write_text("garbage\n")  # a damaged state
    one_line_error(run_vmcorefs("save", desc, out, check=False), "damaged", "--restart")
    assert not out.exists()
    state.unlink()
    small = small_machine(tmp_path, "small", size=8 * MIB)  # the state of a save of another size
    run_vmcorefs("save", small, out, "--chunk-size", "1M", "--stop-after", "2M", check=False)
    out.unlink()
    one_line_error(run_vmcorefs("save", desc, out, check=False), "--restart")
    assert not out.exists()
    one_line_error(run_vmcorefs("save", desc, tmp_path / "x.elf", "--no-sha256", "--verify", check=False),
                   "--no-sha256")
    assert not (tmp_path / "x.elf").exists()


# --------------------------------------------------------------------------
# the README's own commands


def readme_commands(text: str) -> list[tuple[str, list[str]]]:
    """
    Return ``(command, shown output lines)`` for every ``vmcorefs`` command in
    README.rst's literal blocks: in a block with ``$`` prompts the prompted
    lines (and what follows them up to the next prompt), elsewhere every line.
    """
    lines = text.splitlines()
    out: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(lines):
        if lines[i].rstrip().endswith("::"):
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            indent = min((len(ln) - len(ln.lstrip()) for ln in block if ln.strip()), default=0)
            block = [ln[indent:] for ln in block]
            prompted = any(ln.startswith("$ ") for ln in block)
            j = 0
            while j < len(block):
                ln = block[j]
                j += 1
                if prompted and not ln.startswith("$ "):
                    continue
                cmd = ln[2:] if prompted else ln
                while cmd.endswith("\\") and j < len(block):
                    cmd = cmd[:-1] + " " + block[j].strip()
                    j += 1
                shown = []
                if prompted:
                    while j < len(block) and not block[j].startswith("$ "):
                        shown.append(block[j])
                        j += 1
                cmd = cmd.split("  #")[0].strip()
                if cmd.startswith(("vmcorefs ", ".venv/bin/vmcorefs ")):
                    out.append((cmd, shown))
        else:
            i += 1
    return out


def test_readme_commands_work_as_shown(tmp_path):
    """Every vmcorefs command README.rst shows runs, with temporary paths; shown tables match."""
    require_fuse()
    text = (REPO / "README.rst").read_text()
    commands = readme_commands(text)
    names = {shlex.split(c)[1] for c, _ in commands}
    assert {"demo", "info", "save", "umount", "emulate"} <= names, names
    work = tmp_path / "work"
    work.mkdir()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    paths = {"/mnt/dump": str(mnt), "/tmp/dump.elf": str(tmp_path / "dump.elf"),
             "/var/crash/dump.elf": str(tmp_path / "crash.elf")}
    fixture = FIXTURES / "kdump-1g" / "kdump-kdump.pmem.raw.zst"
    if fixture.exists():
        os.symlink(unpack_fixture("kdump-1g", "kdump-kdump.pmem.raw"), work / "kdump-kdump.pmem.raw")
        os.symlink(FIXTURES / "kdump-1g" / "cpu-state-kdump.json", work / "cpu-state-kdump.json")
    # descriptions first: later commands use what they write
    commands.sort(key=lambda c: shlex.split(c[0])[1] != "emulate")
    ran, skipped = [], []
    try:
        for cmd, shown in commands:
            argv = [paths.get(t, t) for t in shlex.split(cmd)[1:]]
            missing = [t for t in argv if re.search(r"/|\.(toml|raw|json|elf|s390)$", t) and t not in paths.values()
                       and not (work / t).exists() and not os.path.exists(t)
                       and not (argv[0] == "emulate" and t == argv[argv.index("-o") + 1] if "-o" in argv else False)]
            if missing or "|" in argv:
                skipped.append((cmd, missing))
                continue
            if argv[0] == "save":
                out = argv[2]
                for p in (out, out + ".sha256", out + ".vmcorefs-partial"):
                    if os.path.exists(p):
                        os.unlink(p)
            res = subprocess.run(VMCOREFS + argv, capture_output=True, text=True, cwd=work, timeout=600)
            ok = (0, 1) if argv[0] == "check" else (0,)
            assert res.returncode in ok, f"README command failed: {cmd}\n{res.stderr}"
            ran.append(cmd)
            if argv[0] == "info" and shown:
                got = [ln.rstrip() for ln in res.stdout.rstrip("\n").splitlines()]
                assert got == [ln.rstrip() for ln in shown], f"README shows other output for: {cmd}"
            if argv[0] == "save":
                digest = sha_line(res.stdout)[0]
                assert digest == sha256_file(argv[2])
                shown_digest = [ln.split()[0] for ln in shown if re.match(r"[0-9a-f]{64}  ", ln)]
                assert shown_digest in ([], [digest]), f"README shows another SHA-256 for: {cmd}"
    finally:
        if os.path.ismount(mnt):
            subprocess.run(VMCOREFS + ["umount", str(mnt)], capture_output=True)
    assert len(ran) >= 5, (ran, skipped)
    assert {shlex.split(c)[1] for c in ran} >= {"demo", "info", "save", "umount"}


def test_readme_keeps_the_two_commands():
    text = (REPO / "README.rst").read_text()
    assert "\n    bash contrib/run-demo.sh\n" in text
    assert "\n    bash contrib/run-tests.sh\n" in text
    assert "python bench/run.py" in text


# --------------------------------------------------------------------------
# mount(8), fstab, the dump environment


def _in_namespace(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    if os.geteuid() != 0 or shutil.which("unshare") is None or not os.path.exists("/sbin/mount.fuse3"):
        pytest.skip("needs root, unshare(1) and fuse3's mount.fuse3")
    (tmp_path / "ns.sh").write_text("set -eu\n" + script)
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", str(tmp_path / "ns.sh")],
                          capture_output=True, text=True, timeout=120)


def test_mount_t_fuse_vmcorefs_through_mount_fuse3(tmp_path):
    """mount(8) -> /sbin/mount.fuse3 -> 'vmcorefs demo MP -o rw,dev,suid' from a clean PATH."""
    require_fuse()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "vmcorefs").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m vmcorefs \"$@\"\n")
    (bindir / "vmcorefs").chmod(0o755)
    mp = tmp_path / "mnt"
    mp.mkdir()
    res = _in_namespace(f"""
export PYTHONPATH={shlex.quote(str(REPO))}
mount --bind {bindir} /usr/local/bin
mount -t fuse.vmcorefs demo {mp} -o allow_other,noatime
grep -q " {mp} fuse.vmcorefs " /proc/mounts
test -r {mp}/vmcore && head -c 4 {mp}/vmcore | od -c | head -1
grep "^mode: standalone" {mp}/meminfo/summary
umount {mp}
for i in $(seq 50); do pgrep -f "vmcorefs.*{mp}" >/dev/null || break; sleep 0.1; done
pgrep -f "vmcorefs.*{mp}" && echo "daemon still running" && exit 1
echo done
""", tmp_path)
    assert res.returncode == 0 and res.stdout.strip().endswith("done"), res.stdout + res.stderr
    assert "E   L   F" in res.stdout


def test_mount_helper_and_fstab(tmp_path):
    """contrib/mount.vmcorefs as mount(8)'s helper, from an fstab line with vmcorefs options."""
    require_fuse()
    desc = small_machine(tmp_path)
    mp = tmp_path / "mnt"
    mp.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{desc} {mp} fuse.vmcorefs "
                     "noauto,nofail,allow_other,mode=standalone,x-systemd.idle-timeout=1 0 0\n")
    wrapper = tmp_path / "vmcorefs"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} exec {shlex.quote(sys.executable)} "
                       "-m vmcorefs \"$@\"\n")
    wrapper.chmod(0o755)
    helper = REPO / "contrib" / "mount.vmcorefs"
    res = _in_namespace(f"""
# the helper in place of mount.fuse3, as /sbin/mount.fuse.vmcorefs would be
mount --bind {helper} /usr/sbin/mount.fuse3
export VMCOREFS={wrapper}
mount -T {fstab} {mp}
grep -q " {mp} fuse.vmcorefs " /proc/mounts
grep "^mode: standalone" {mp}/meminfo/summary
stat -c %a {mp}/vmcore
umount {mp}
# mount(8)'s fake mode and a direct call in mount(8)'s convention
{helper} {desc} {mp} -f -o ro -t fuse.vmcorefs
! grep -q " {mp} " /proc/mounts
{helper} {desc} {mp} -o ro,allow_other -t vmcorefs
grep -q " {mp} fuse.vmcorefs " /proc/mounts
umount {mp}
echo done
""", tmp_path)
    assert res.returncode == 0 and res.stdout.strip().endswith("done"), res.stdout + res.stderr
    assert "444" in res.stdout  # allow_other came through


def test_dump_environment_script(tmp_path):
    require_fuse()
    desc = small_machine(tmp_path)
    env = dict(os.environ, VMCOREFS=str(tmp_path / "vmcorefs"), VMCOREFS_DUMP_SOURCE=str(desc),
               VMCOREFS_DUMP_DIR=str(tmp_path / "crash"), VMCOREFS_DUMP_ACTION="none",
               VMCOREFS_DUMP_RUN=str(tmp_path / "run"), VMCOREFS_DUMP_CONF="/nonexistent",
               VMCOREFS_DUMP_CMDLINE=str(tmp_path / "cmdline"))
    (tmp_path / "cmdline").write_text("console=ttysclp0 vmcorefs.mode=standalone vmcorefs.action=reboot\n")
    (tmp_path / "vmcorefs").write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} exec "
                                       f"{shlex.quote(sys.executable)} -m vmcorefs \"$@\"\n")
    (tmp_path / "vmcorefs").chmod(0o755)
    res = subprocess.run(["sh", str(REPO / "contrib" / "vmcorefs-dump.sh")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "mode standalone" in res.stderr  # from the kernel command line; the action from the environment
    dumps = sorted((tmp_path / "crash").glob("vmcore-*.elf"))
    assert len(dumps) == 1
    assert dumps[0].read_bytes() == vmcore_bytes(str(desc))
    subprocess.run(["sha256sum", "--quiet", "-c", dumps[0].name + ".sha256"], cwd=tmp_path / "crash", check=True)
    assert "mode: standalone" in Path(str(dumps[0])[:-4] + ".meminfo.txt").read_text()
    assert not os.path.ismount(tmp_path / "run" / "mnt")


def _dump_script_env(tmp_path: Path, source: Path, **extra: str) -> dict:
    """The environment of contrib/vmcorefs-dump.sh in the tests: everything below *tmp_path*."""
    (tmp_path / "vmcorefs").write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} exec "
                                       f"{shlex.quote(sys.executable)} -m vmcorefs \"$@\"\n")
    (tmp_path / "vmcorefs").chmod(0o755)
    return dict(os.environ, VMCOREFS=str(tmp_path / "vmcorefs"), VMCOREFS_DUMP_SOURCE=str(source),
                VMCOREFS_DUMP_DIR=str(tmp_path / "crash"), VMCOREFS_DUMP_ACTION="none",
                VMCOREFS_DUMP_RUN=str(tmp_path / "run"), VMCOREFS_DUMP_CONF="/nonexistent",
                VMCOREFS_DUMP_CMDLINE=str(tmp_path / "cmdline"), **extra)


def test_dump_script_runs_again_after_a_killed_run(tmp_path):
    """
    What a killed run leaves: a stale vmcorefs mount (daemon gone) and a
    partial dump that cannot be resumed (here: of another dump). The next
    run detaches the mount, starts the dump over instead of failing at
    every boot; the kernel command line's words are not glob patterns.
    """
    require_fuse()
    from conftest import wait_for_mount
    desc = small_machine(tmp_path)
    other = small_machine(tmp_path, "other", seed=2)  # same size, other contents
    crash = tmp_path / "crash"
    crash.mkdir()
    old = crash / "vmcore-20000101-000000.elf"
    run_vmcorefs("save", other, old, "--chunk-size", "1M", "--stop-after", "3M", check=False)
    assert Path(str(old) + ".vmcorefs-partial").exists()
    mnt = tmp_path / "run" / "mnt"
    mnt.mkdir(parents=True)
    # unquoted, "vmcorefs.m*" would match the file vmcorefs.mode=kdump in the working directory
    (tmp_path / "cmdline").write_text("console=ttysclp0 vmcorefs.mode=standalone vmcorefs.m*\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "vmcorefs.mode=kdump").write_text("")
    daemon = subprocess.Popen(VMCOREFS + ["mount", str(desc), str(mnt), "-f"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        wait_for_mount(mnt, daemon)
        daemon.kill()
        daemon.wait()
        with pytest.raises(OSError):
            os.listdir(mnt)  # ENOTCONN: stale
        res = subprocess.run(["sh", str(REPO / "contrib" / "vmcorefs-dump.sh")],
                             env=_dump_script_env(tmp_path, desc), cwd=cwd, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stderr
        assert "mode standalone" in res.stderr
        assert "detached" in res.stderr and "starting it over (--restart)" in res.stderr
        assert old.read_bytes() == vmcore_bytes(str(desc))
        assert not Path(str(old) + ".vmcorefs-partial").exists()
        subprocess.run(["sha256sum", "--quiet", "-c", old.name + ".sha256"], cwd=crash, check=True)
        assert not os.path.ismount(mnt)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)


def test_dump_script_stops_the_save_on_sigterm(tmp_path):
    """
    SIGTERM to the script alone (what systemd's KillMode=mixed sends): the
    save stops at once (not after the whole dump), the script unmounts and
    exits 143; the next run resumes to the right file.
    """
    require_fuse()
    small_machine(tmp_path, size=24 * MIB)
    desc = tmp_path / "slow.toml"  # 1 MiB of HSA per 0.25 s: a few seconds for the first 16 MiB
    run_vmcorefs("emulate", tmp_path / "m.raw", "-o", desc, "--save-areas", tmp_path / "m.cpu",
                 "--hsa-size", "16M", "--sclp-latency-us", "250000")
    (tmp_path / "cmdline").write_text("")
    env = _dump_script_env(tmp_path, desc)
    err = tmp_path / "err.txt"
    with open(err, "w") as f:
        proc = subprocess.Popen(["sh", str(REPO / "contrib" / "vmcorefs-dump.sh")], env=env, stderr=f)
    try:
        # as soon as the script has started the save (which may still be
        # starting up: the script repeats the signal until it has stopped)
        deadline = time.monotonic() + 60
        while "saving" not in err.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.read_text()
    assert "SIGTERM: stopped after" in text, text  # the save's own message: it was stopped
    partials = list((tmp_path / "crash").glob("vmcore-*.elf.vmcorefs-partial"))
    assert len(partials) == 1
    out = Path(str(partials[0])[:-len(".vmcorefs-partial")])
    size = out.stat().st_size
    assert size < 24 * MIB
    assert not os.path.ismount(tmp_path / "run" / "mnt")
    time.sleep(0.5)
    assert out.stat().st_size == size  # nothing writes any more
    res = subprocess.run(["sh", str(REPO / "contrib" / "vmcorefs-dump.sh")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr and "--restart" not in res.stderr
    assert out.read_bytes() == vmcore_bytes(str(desc))


def test_dump_script_mounts_a_dump_disk_left_mounted(tmp_path):
    """A killed run left the dump disk mounted on the target directory: unmounted, mounted again, dump saved."""
    require_fuse()
    if shutil.which("mkfs.ext4") is None or shutil.which("losetup") is None or shutil.which("mountpoint") is None:
        pytest.skip("needs mkfs.ext4, losetup and mountpoint")
    desc = small_machine(tmp_path)
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(64 * MIB)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(disk)], check=True)
    env = _dump_script_env(tmp_path, desc)
    (tmp_path / "cmdline").write_text("")
    target = tmp_path / "run" / "target"
    check = tmp_path / "check"
    (tmp_path / "want.elf").write_bytes(vmcore_bytes(str(desc)))
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if k.startswith("VMCOREFS"))
    res = _in_namespace(exports + f"""
dev=$(losetup -f --show {disk})
trap 'umount {target} 2>/dev/null || true; umount {check} 2>/dev/null || true; losetup -d "$dev"' EXIT
mkdir -p {target} {check}
mount "$dev" {target}
VMCOREFS_DUMP_TARGET=$dev VMCOREFS_DUMP_DIR=/crash sh {REPO / "contrib" / "vmcorefs-dump.sh"}
! mountpoint -q {target}
mount "$dev" {check}
ls {check}/crash
cmp {check}/crash/vmcore-*.elf {tmp_path / "want.elf"}
echo done
""", tmp_path)
    assert res.returncode == 0 and res.stdout.strip().endswith("done"), res.stdout + res.stderr
    assert "left mounted by an earlier run" in res.stderr


def test_systemd_unit_runs_the_script():
    unit = (REPO / "contrib" / "vmcorefs-dump.service").read_text()
    assert re.search(r"^ExecStart=/usr/libexec/vmcorefs/vmcorefs-dump\.sh$", unit, re.M)
    assert re.search(r"^Type=oneshot$", unit, re.M) and "[Install]" in unit
    if shutil.which("systemd-analyze"):
        res = subprocess.run(["systemd-analyze", "verify", str(REPO / "contrib" / "vmcorefs-dump.service")],
                             capture_output=True, text=True)
        problems = [ln for ln in res.stderr.splitlines()
                    if "vmcorefs-dump.sh" not in ln and "man vmcorefs" not in ln and ln.strip()]
        assert not problems, res.stderr


# --------------------------------------------------------------------------
# completion, man page, fixture scripts


def test_bash_completion_knows_every_command_and_option():
    from vmcorefs.cli import build_parser
    script = (REPO / "contrib" / "completion" / "vmcorefs.bash").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sp in sub.choices.items():
        assert re.search(rf"\b{name}\b", script), name
        for action in sp._actions:
            if action.help == "==SUPPRESS==":
                continue
            for opt in action.option_strings:
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", script), f"{name} {opt}"
    if shutil.which("bash"):
        res = subprocess.run(["bash", "-c", f"source {REPO}/contrib/completion/vmcorefs.bash; "
                              "COMP_WORDS=(vmcorefs sa); COMP_CWORD=1; _vmcorefs; echo ${COMPREPLY[@]}; "
                              "COMP_WORDS=(vmcorefs save demo out --re); COMP_CWORD=4; _vmcorefs; "
                              "echo ${COMPREPLY[@]}; COMP_WORDS=(vmcorefs info --mode k); COMP_CWORD=3; "
                              "_vmcorefs; echo ${COMPREPLY[@]}"], capture_output=True, text=True)
        assert res.stdout.splitlines() == ["save", "--restart", "kdump"], res.stdout + res.stderr


def manpage_tool():
    """contrib/manpage.py, the man page's generator (a build tool of the checkout, not in the package)."""
    spec = importlib.util.spec_from_file_location("vmcorefs_contrib_manpage", REPO / "contrib" / "manpage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_man_page_is_current_and_renders(tmp_path):
    manpage = manpage_tool()
    shipped = (REPO / "doc" / "vmcorefs.1").read_text()
    stale = "doc/vmcorefs.1 is stale: run '.venv/bin/python contrib/manpage.py -o doc/vmcorefs.1'"
    # the document the page is written from, whatever docutils writes it...
    recorded = manpage.DIGEST.search(shipped)
    assert recorded and recorded.group(1) == manpage.digest(manpage.rst("2000-01-01")), stale
    # ...and, with the docutils that wrote the shipped page, the page itself (but its date)
    page = manpage.build()
    writer = lambda t: re.search(r"by the Docutils (\S+) manpage writer", t).group(1)  # noqa: E731
    if writer(page) == writer(shipped):
        strip_date = lambda t: re.sub(r'^\.TH .*$', "", t, flags=re.M)  # noqa: E731
        assert strip_date(shipped) == strip_date(page), stale
    # every command and option, README's sections
    from vmcorefs.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(COMMANDS) <= set(sub.choices)
    for name, sp in sub.choices.items():
        assert f"\n.SS vmcorefs {name}\n" in shipped or f"\\fBvmcorefs {name}\\fP" in shipped, name
        for action in sp._actions:
            if action.help == "==SUPPRESS==":
                continue
            for opt in action.option_strings:
                assert "\\fB" + opt.replace("-", "\\-") + "\\fP" in shipped, f"{name} {opt}"
    for title in manpage.README_SECTIONS:
        assert f"\n.SH {title}\n" in shipped, title
    # the command, and the page through man and groff
    res = subprocess.run([sys.executable, str(REPO / "contrib" / "manpage.py"), "-o", str(tmp_path / "v.1")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    if shutil.which("groff"):
        res = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(tmp_path / "v.1")], capture_output=True,
                             text=True)
        assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    if shutil.which("man") is None:
        pytest.skip("man is not installed")
    res = subprocess.run(["man", "--warnings", "-l", str(tmp_path / "v.1")], capture_output=True, text=True,
                         env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    assert "vmcorefs save" in res.stdout and "Exit status" in res.stdout and "Saving a dump" in res.stdout


def test_fixture_scripts_are_well_formed(tmp_path):
    d = REPO / "contrib" / "fixtures"
    for name in ("build-kernel.sh", "build-initrd.sh", "make-fixture.sh"):
        subprocess.run(["bash", "-n", str(d / name)], check=True)
    for name in ("mount.vmcorefs", "vmcorefs-dump.sh"):
        subprocess.run(["sh", "-n", str(REPO / "contrib" / name)], check=True)
    for name in ("run-qemu.py", "postprocess.py"):
        compile((d / name).read_text(), name, "exec")
    assert "RECONSTRUCTED" in (d / "README.md").read_text()
    cc = shutil.which("s390x-linux-gnu-gcc") or shutil.which("gcc")
    if cc:
        subprocess.run([cc, "-fsyntax-only", "-Wall", "-Werror", str(d / "init.c")], check=True)
