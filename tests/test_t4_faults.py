# SPDX-License-Identifier: MIT
"""
Faults on a mounted machine: SCLP errors and a truncated store give EIO for
exactly the reads that need the broken pages, never zeros; the daemon keeps
serving the other reads and recovers when the fault goes away. SIGTERM and
SIGINT unmount cleanly.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import Mount, load_offset, open_vmcore, read_at, require_fuse, wait_for_eio

MIB = 1 << 20


def test_sclp_faults_give_eio_for_the_affected_pages_only(faulty_machine, mounter):
    d, old = faulty_machine
    m = mounter(d / "m.toml")
    vm, base, fd = open_vmcore(m)
    try:
        assert os.pread(fd, 3 * 4096, base + 15 * 4096) == old[15 * 4096:18 * 4096]
        for kind in ("error", "timeout", "short", "wrong_count", "busy"):
            (d / "faults.toml").write_text(f'[[fault]]\nkind = "{kind}"\nfirst_page = 16\nlast_page = 16\n')
            time.sleep(0.02)  # a new mtime
            os.close(fd)
            fd = os.open(vm, os.O_RDONLY)  # the faults file changed: this open drops the cached pages
            with pytest.raises(OSError) as exc:
                os.pread(fd, 4096, base + 16 * 4096)
            assert exc.value.errno == errno.EIO, kind
            # a buffered read that needs page 16 gives what lies before it (a
            # short count), the next read at page 16 fails: never zeros
            assert os.pread(fd, 3 * 4096, base + 15 * 4096) == old[15 * 4096:16 * 4096], kind
            with pytest.raises(OSError) as exc:
                os.pread(fd, 3 * 4096, base + 16 * 4096)
            assert exc.value.errno == errno.EIO, kind
            # neighbours, other HSA pages and real memory above the HSA still work
            assert os.pread(fd, 4096, base + 15 * 4096) == old[15 * 4096:16 * 4096], kind
            assert os.pread(fd, 4096, base + 17 * 4096) == old[17 * 4096:18 * 4096], kind
            assert os.pread(fd, 4096, base + 33 * MIB) == old[33 * MIB:33 * MIB + 4096], kind
        (d / "faults.toml").unlink()
        time.sleep(0.02)
        assert read_at(vm, base + 15 * 4096, 3 * 4096) == old[15 * 4096:18 * 4096]  # recovered
        # transient busy is retried and succeeds
        (d / "faults.toml").write_text('[[fault]]\nkind = "busy"\ntimes = 20\n')
        time.sleep(0.02)
        assert read_at(vm, base, 4096) == old[:4096]
    finally:
        os.close(fd)
    err = m.unmount()
    assert err == "" or "Traceback" not in err


def test_store_io_errors_fail_exactly_the_affected_reads(faulty_machine, mounter):
    """A bad range of the store (a failing disk): EIO for reads touching it, logged; others served; recovery."""
    d, old = faulty_machine
    text = (d / "m.toml").read_text().replace("[store]\n", '[store]\nfaults_file = "store-faults.toml"\n')
    (d / "m.toml").write_text(text)
    m = mounter(d / "m.toml", "--log", str(d / "daemon.log"))
    vm = m.path("vmcore")
    base = load_offset(vm)
    bad = 36 * MIB + 8192  # above the HSA: real memory
    (d / "store-faults.toml").write_text(f"[[fault]]\naddress = {bad:#x}\nsize = 4096\n")
    time.sleep(0.02)
    fd = os.open(vm, os.O_RDONLY)
    try:
        for off, n in ((bad, 4096), (bad + 4095, 1), (bad + 100, 3 * 4096)):
            with pytest.raises(OSError) as exc:
                os.pread(fd, n, base + off)
            assert exc.value.errno == errno.EIO, (off, n)
        # a buffered read from a good page into the bad one returns the good
        # bytes before it (a short count); the next read, at the bad page, fails
        for off, n in ((bad - 100, 200), (bad - 4096, 3 * 4096)):
            assert os.pread(fd, n, base + off) == old[off:bad], (off, n)
            with pytest.raises(OSError) as exc:
                os.pread(fd, n - (bad - off), base + bad)
            assert exc.value.errno == errno.EIO, (off, n)
        assert os.pread(fd, 4096, base + bad - 4096) == old[bad - 4096:bad]
        assert os.pread(fd, 4096, base + bad + 4096) == old[bad + 4096:bad + 8192]
        assert os.pread(fd, 4096, base) == old[:4096]
        (d / "store-faults.toml").unlink()
        time.sleep(0.02)
        assert read_at(vm, base + bad - 4096, 3 * 4096) == old[bad - 4096:bad + 8192]
    finally:
        os.close(fd)
    err = m.unmount()
    for log in (err, (d / "daemon.log").read_text()):  # logged with the address, on stderr and in --log
        assert f"cannot read memory at {bad:#x}" in log and "I/O error (injected)" in log


def test_truncated_image_gives_eio_beyond_the_end(faulty_machine, mounter):
    d, old = faulty_machine
    os.truncate(d / "mem.raw", 36 * MIB + 100)
    m = mounter(d / "m.toml")
    vm, base, fd = open_vmcore(m)
    try:
        assert os.pread(fd, 4096, base + 35 * MIB) == old[35 * MIB:35 * MIB + 4096]
        with pytest.raises(OSError) as exc:
            os.pread(fd, 4096, base + 36 * MIB)
        assert exc.value.errno == errno.EIO
        with pytest.raises(OSError):
            os.pread(fd, 8192, base + 38 * MIB)
        assert os.pread(fd, 4096, base + 34 * MIB) == old[34 * MIB:34 * MIB + 4096]  # still serving
    finally:
        os.close(fd)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_unmount_cleanly(sig, tmp_path):
    require_fuse()
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = Mount("demo", mp)
    try:
        fd = os.open(m.path("vmcore"), os.O_RDONLY)
        os.pread(fd, 4096, 0)
        os.close(fd)
        m.proc.send_signal(sig)
        m.proc.wait(timeout=30)
        assert m.proc.returncode == 0, m.output()
        assert not os.path.ismount(mp)
    finally:
        m.cleanup()


# --------------------------------------------------------------------------
# the kernel's page cache cannot serve wrong bytes

FAILED_READ = re.compile(r"read of vmcore at offset (0x[0-9a-f]+) \(\+(0x[0-9a-f]+)\) failed")


def test_a_page_failing_in_readahead_fails_alone(faulty_machine, mounter):
    """
    A bad page inside a readahead request fails that request whole (EIO,
    never a short answer); the kernel then reads the pages of it one at a
    time (fuse_read_folio), so every neighbour reads right and only the bad
    page fails, through read() and through a mapping (SIGBUS).
    """
    d, old = faulty_machine
    bad = 36 * MIB + 64 * 4096
    (d / "store-faults.toml").write_text(f"[[fault]]\naddress = {bad:#x}\nsize = 4096\n")
    text = (d / "m.toml").read_text().replace("[store]\n", '[store]\nfaults_file = "store-faults.toml"\n')
    (d / "m.toml").write_text(text)
    m = mounter(d / "m.toml", "--log", str(d / "daemon.log"))
    vm = m.path("vmcore")
    base = load_offset(vm)
    assert base % 4096 == 0
    fd = os.open(vm, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        start = bad - 48 * 4096
        for addr in range(start, bad + 16 * 4096, 4096):  # page by page, as cat reads
            if addr == bad:
                with pytest.raises(OSError) as exc:
                    os.pread(fd, 4096, base + addr)
                assert exc.value.errno == errno.EIO
            else:
                assert os.pread(fd, 4096, base + addr) == old[addr:addr + 4096], hex(addr)
        # cached now: the neighbours again, at once, and the bad page still fails
        assert os.pread(fd, 64 * 4096, base + bad - 64 * 4096) == old[bad - 64 * 4096:bad]
        assert os.pread(fd, 15 * 4096, base + bad + 4096) == old[bad + 4096:bad + 16 * 4096]
        with pytest.raises(OSError):
            os.pread(fd, 4096, base + bad)
    finally:
        os.close(fd)

    # a program that maps the file reads the neighbours and gets SIGBUS at the bad page
    script = (f"import mmap, os, sys\nfd = os.open({str(vm)!r}, os.O_RDONLY)\n"
              f"m = mmap.mmap(fd, 3 * 4096, prot=mmap.PROT_READ, offset={base + bad - 4096})\n"
              "sys.stdout.buffer.write(m[:4096] + m[8192:]); sys.stdout.flush()\n"
              "m[4096]\nprint('no SIGBUS')\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert res.returncode == -signal.SIGBUS, (res.returncode, res.stderr)
    assert res.stdout == old[bad - 4096:bad] + old[bad + 4096:bad + 8192]

    # the daemon answered a readahead request spanning the bad page with EIO
    # (no short answer), then the bad page alone with EIO
    m.unmount()
    failed = [(int(a, 16) - base, int(n, 16)) for a, n in FAILED_READ.findall((d / "daemon.log").read_text())]
    assert any(off < bad < off + n and n > 4096 for off, n in failed), failed
    assert (bad, 4096) in failed, failed
    assert all(off <= bad < off + n for off, n in failed), failed  # no other range ever failed


def test_a_fault_injected_later_keeps_the_cached_bytes_until_the_file_is_opened_again(faulty_machine, mounter):
    """What was cached was read right and stays; the reload of the faults file drops it at the next open."""
    d, old = faulty_machine
    text = (d / "m.toml").read_text().replace("[store]\n", '[store]\nfaults_file = "store-faults.toml"\n')
    (d / "m.toml").write_text(text)
    m = mounter(d / "m.toml")
    addr = 37 * MIB
    vm, base, fd = open_vmcore(m)
    try:
        assert os.pread(fd, 4096, base + addr) == old[addr:addr + 4096]
        (d / "store-faults.toml").write_text(f"[[fault]]\naddress = {addr:#x}\nsize = 4096\n")
        time.sleep(0.02)
        # the reload happens at the next open or daemon read, or within half a
        # second: until then this file may still give the bytes it cached
        # (read before the fault), never anything else
        try:
            assert os.pread(fd, 4096, base + addr) == old[addr:addr + 4096]
        except OSError as exc:
            assert exc.errno == errno.EIO
        with pytest.raises(OSError) as exc:
            read_at(vm, base + addr, 4096)
        assert exc.value.errno == errno.EIO
        with pytest.raises(OSError) as exc:  # the old file's pages went too
            os.pread(fd, 4096, base + addr)
        assert exc.value.errno == errno.EIO
    finally:
        os.close(fd)


def test_an_image_changed_under_the_mount_is_never_served_from_the_cache(faulty_machine, mounter):
    """The kernel's copy of a page goes when the image changes: at the next open, or within half a second."""
    d, old = faulty_machine
    m = mounter(d / "m.toml")
    addr = 37 * MIB
    vm, base, fd = open_vmcore(m)
    try:
        assert os.pread(fd, 4096, base + addr) == old[addr:addr + 4096]
        new = bytes(255 - i % 256 for i in range(4096))
        img = os.open(d / "mem.raw", os.O_WRONLY)
        os.pwrite(img, new, addr)
        os.close(img)
        st = os.stat(d / "mem.raw")
        os.utime(d / "mem.raw", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        # a new open: the cached page is gone, and the changed image gives EIO
        # (its bytes are no longer the dump's), neither the old bytes nor the new
        with pytest.raises(OSError) as exc:
            read_at(vm, base + addr, 4096)
        assert exc.value.errno == errno.EIO
        # the file held open: its pages go within half a second (a loaded machine may take longer)
        wait_for_eio(fd, base + addr, old[addr:addr + 4096])
    finally:
        os.close(fd)


def test_direct_io_option_sends_every_read_to_the_daemon(faulty_machine, mounter):
    """-o direct_io: no page cache, so a fault injected after a read fails the very next read of the same open file."""
    d, old = faulty_machine
    text = (d / "m.toml").read_text().replace("[store]\n", '[store]\nfaults_file = "store-faults.toml"\n')
    (d / "m.toml").write_text(text)
    m = mounter(d / "m.toml", "-o", "direct_io")
    addr = 37 * MIB
    vm, base, fd = open_vmcore(m)
    try:
        assert os.pread(fd, 4 * MIB, base + 34 * MIB) == old[34 * MIB:38 * MIB]
        (d / "store-faults.toml").write_text(f"[[fault]]\naddress = {addr:#x}\nsize = 4096\n")
        with pytest.raises(OSError) as exc:  # the same open file: nothing cached answers it
            os.pread(fd, 4096, base + addr)
        assert exc.value.errno == errno.EIO
        assert os.pread(fd, 4096, base + addr + 4096) == old[addr + 4096:addr + 8192]
    finally:
        os.close(fd)
