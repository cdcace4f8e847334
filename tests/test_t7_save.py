# SPDX-License-Identifier: MIT
"""
``vmcorefs save`` as a user runs it: identical to ``cp`` of the mount,
sparse, SHA-256, copies in the kernel, standard output and block devices,
resume after an interruption, a damaged or foreign partial file refused, a
refused save leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (REPO, VMCOREFS, one_line_error, run_vmcorefs,
                      sha256_file, sha_line, small_machine, vmcore_bytes)

MIB = 1 << 20
PAGE = 4096


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
        assert save_mod.copy_region(fd, 1536 * 1024, out, 2 * MIB + 1536 * 1024, 1536 * 1024) == MIB
        assert save_mod.copy_region(fd, 0, out, 2 * MIB, 1536 * 1024) == MIB  # holes are skipped
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


def test_a_partial_file_that_cannot_be_resumed_exits_4(tmp_path):
    """
    Every refusal to resume exits with status 4 (what vmcorefs-dump.sh
    starts over on), having written nothing: a damaged state file, a
    partial file of another dump or size, a source that changed. Other
    failures stay 1; --restart starts over even from a damaged state file.
    """
    from vmcorefs.save import EXIT_NOT_RESUMABLE
    assert EXIT_NOT_RESUMABLE == 4
    a = small_machine(tmp_path, "a", seed=1)
    b = small_machine(tmp_path, "b", seed=2)  # same size, other contents
    out = tmp_path / "dump.elf"
    state = Path(str(out) + ".vmcorefs-partial")
    assert run_vmcorefs("save", a, out, "--chunk-size", "1M", "--stop-after", "3M", check=False).returncode == 3
    written, recorded = out.read_bytes(), state.read_bytes()

    def refused(*args: object) -> None:
        res = run_vmcorefs("save", *args, out, check=False)
        one_line_error(res, "--restart")
        assert res.returncode == 4, res.stderr
        assert out.read_bytes() == written and state.read_bytes() == recorded  # nothing written or dropped
    refused(b)  # another dump
    refused("demo")  # another size
    os.utime(tmp_path / "a.raw", ns=(0, 0))  # the source changed since the save began
    refused(a)
    for damaged in (b"garbage\n", recorded.replace(b"\nsize ", b"\nsize x"), b"\xff\xfe\n"):
        state.write_bytes(damaged)
        recorded = damaged
        refused(a)
    res = run_vmcorefs("save", a, tmp_path / "a.raw", "--force", check=False)  # not about a partial file
    one_line_error(res, "read from")
    assert res.returncode == 1
    run_vmcorefs("save", a, out, "--restart")
    assert out.read_bytes() == vmcore_bytes(str(a)) and not state.exists()


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
    monkeypatch.setattr(save_mod.Saver, "SYNC_CHUNKS", 3)  # batches of 3 chunks
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
    from vmcorefs.sources.elfcore import ElfMemoryStore
    from vmcorefs.sources.s390dump import DumpFileStore
    from vmcorefs.stores import FileRegion, Zeros

    class Dump(DumpFileStore):
        pass

    class Elf(ElfMemoryStore):
        pass
    img = tmp_path / "mem.img"
    img.write_bytes(bytes(0x1000) + os.urandom(2 * MIB))
    d = Dump(str(img), 2 * MIB)
    e = Elf(str(img), [dict(p_paddr=0, p_memsz=3 * MIB, p_offset=0x1000, p_filesz=2 * MIB)])
    try:
        assert d.pieces(PAGE, 2 * PAGE) == [FileRegion(d.file.fd, 0x1000 + PAGE, 2 * PAGE)]
        assert e.pieces(2 * MIB - PAGE, 2 * PAGE) == [FileRegion(e.file.fd, 0x1000 + 2 * MIB - PAGE, PAGE),
                                                      Zeros(PAGE)]
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
