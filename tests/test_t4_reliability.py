# SPDX-License-Identifier: MIT
"""
Reliability on real mounts: concurrent readers get the reference bytes,
unmounting during reads neither hangs nor crashes, a stale mount point is
detected with a fix, and every file of the bad-input corpus
(tests/bad-inputs/) gives one clear line and a non-zero exit.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, VMCOREFS, Mount, require_fuse, run_vmcorefs

BAD_INPUTS = REPO / "tests" / "bad-inputs"


def test_sixteen_concurrent_readers(mounter, tmp_path):
    """16 readers at random offsets and sizes over /vmcore and /zcore/mem get the bytes cp got."""
    m = mounter("demo")
    refs = {}
    for name in ("vmcore", "zcore/mem"):
        out = tmp_path / name.replace("/", "-")
        subprocess.run(["cp", str(m.path(name)), str(out)], check=True)
        refs[name] = out.read_bytes()
    errors: list[str] = []
    deadline = time.monotonic() + 8

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        name = ("vmcore", "zcore/mem")[seed % 2]
        ref = refs[name]
        fd = os.open(m.path(name), os.O_RDONLY)
        try:
            while time.monotonic() < deadline:
                off = rng.randrange(len(ref))
                n = rng.choice([1, 512, 4096, 65536, 1 << 20, 3 << 20])
                if os.pread(fd, n, off) != ref[off:off + n]:
                    errors.append(f"reader {seed}: {name} mismatch at {off:#x}+{n:#x}")
                    return
        except OSError as exc:
            errors.append(f"reader {seed}: {exc}")
        finally:
            os.close(fd)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a reader hung"
    assert errors == []


def test_unmount_during_reads(tmp_path):
    require_fuse()
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = Mount("demo", mp)
    stop = False
    outcomes: list[str] = []

    def reader() -> None:
        try:
            fd = os.open(m.path("vmcore"), os.O_RDONLY)
        except OSError as exc:
            outcomes.append(f"open: {exc.errno}")
            return
        try:
            off = 0
            while not stop:
                if not os.pread(fd, 1 << 20, off):
                    off = 0
                off += 1 << 20
            outcomes.append("stopped")
        except OSError as exc:
            outcomes.append(f"error {exc.errno}")
        finally:
            os.close(fd)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    try:
        # a lazy unmount detaches at once; busy readers finish or get an error
        res = run_vmcorefs("umount", "--lazy", mp, check=False)
        assert res.returncode == 0, res.stderr
        time.sleep(0.3)
        stop = True
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads), "a reader hung after unmount"
        m.proc.wait(timeout=30)
        assert m.proc.returncode == 0, m.output()
        assert "Traceback" not in m.output()
    finally:
        stop = True
        m.cleanup()


def test_stale_mount_is_detected_and_cleaned(tmp_path):
    require_fuse()
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = Mount("demo", mp)
    try:
        m.proc.send_signal(signal.SIGKILL)  # the daemon dies, the mount stays
        m.proc.wait(timeout=10)
        with pytest.raises(OSError):
            os.stat(mp / "vmcore")
        res = run_vmcorefs("mount", "demo", mp, check=False)
        assert res.returncode != 0
        assert "stale" in res.stderr and f"vmcorefs umount {mp}" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        res = run_vmcorefs("umount", mp, check=False)
        assert res.returncode == 0, res.stderr
        assert not os.path.ismount(mp)
        m2 = Mount("demo", mp)  # usable again
        m2.unmount()
    finally:
        m.cleanup()


def bad_inputs() -> list[Path]:
    return sorted(p for p in BAD_INPUTS.iterdir() if p.suffix != ".expect")


@pytest.mark.parametrize("bad", bad_inputs(), ids=lambda p: p.name)
def test_bad_input_corpus(bad, tmp_path):
    """Each bad input: one line naming the problem, exit != 0, no traceback, no hang, no mount."""
    expect = (BAD_INPUTS / (bad.name + ".expect")).read_text().strip()
    mp = tmp_path / "mnt"
    mp.mkdir()
    for cmd in (["mount", bad, mp, "-f"], ["info", bad], ["check", bad]):
        res = run_vmcorefs(*cmd, check=False, timeout=60)
        assert res.returncode != 0, (cmd, res.stdout)
        assert "Traceback" not in res.stderr, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vmcorefs: "), res.stderr
        assert expect in lines[0], (expect, lines[0])
        if cmd[0] == "check":
            assert res.returncode == 2
    assert not os.path.ismount(mp)


def test_tree_is_fixed_and_only_hsa_takes_writes(mounter):
    import errno
    import stat as stat_
    m = mounter("demo")  # stand-alone: /zcore/hsa is writable, so the mount is not "ro"
    for action in (lambda: (m.mountpoint / "new").mkdir(), lambda: (m.mountpoint / "new").touch(),
                   lambda: os.unlink(m.path("vmcore")), lambda: os.rename(m.path("vmcore"), m.path("x")),
                   lambda: os.rmdir(m.path("meminfo")), lambda: os.symlink("vmcore", m.path("link")),
                   lambda: os.truncate(m.path("vmcore"), 0), lambda: os.chmod(m.path("vmcore"), 0o666)):
        with pytest.raises(OSError) as exc:
            action()
        assert exc.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM), exc.value
    with pytest.raises(OSError) as exc:
        os.open(m.path("vmcore"), os.O_WRONLY)
    assert exc.value.errno in (errno.EACCES, errno.EROFS)
    modes = {p: stat_.S_IMODE(os.stat(m.path(p)).st_mode) for p in ("vmcore", "zcore/mem", "zcore/hsa")}
    assert modes == {"vmcore": 0o400, "zcore/mem": 0o400, "zcore/hsa": 0o600}


def test_daemon_log_file_relative_to_where_mount_was_run(tmp_path):
    require_fuse()
    mp = tmp_path / "mnt"
    mp.mkdir()
    res = subprocess.run([*VMCOREFS, "mount", "demo", str(mp), "--log", "daemon.log", "-v"],
                         capture_output=True, text=True, cwd=tmp_path)
    try:
        assert res.returncode == 0, res.stderr
        assert os.path.ismount(mp)
    finally:
        run_vmcorefs("umount", mp, check=False)
    time.sleep(0.5)
    assert "mounted demo on" in (tmp_path / "daemon.log").read_text()
    res = run_vmcorefs("mount", "demo", mp, "--log", tmp_path / "no-such-dir" / "x.log", check=False)
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1
    assert "cannot write the log file" in res.stderr and not os.path.ismount(mp)
