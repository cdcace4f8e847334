# SPDX-License-Identifier: MIT
"""
SOURCE ``qmp:PATH``: a running QEMU s390x guest (tests/guest.py
:class:`~guest.RunningGuest`: RAM in a shared file under /dev/shm, one QMP
socket for vmcorefs and one for the test), checked against what the guest
itself produced or what QEMU's own ``dump-guest-memory`` of the same
stopped guest holds:

- a guest whose kdump capture kernel runs: /vmcore is byte for byte the
  capture kernel's /proc/vmcore (copied out over virtio-blk afterwards), by
  mount and by ``vmcorefs save``;
- a running guest (first kernel, before the crash) stopped for the mount:
  memory and registers equal QEMU's dump of the same stopped guest, drgn
  walks its log and tasks; a
  ``cont`` from another client makes reads fail with EIO; a daemon killed
  leaves the guest stopped and ``vmcorefs umount`` resumes it; ``--live``
  leaves it running;
- a guest that panicked without kdump: the same comparison with QEMU's
  dump, drgn shows the panic, and it stays stopped after the unmount;
- QEMU gone while mounted: EIO. Bad input (no guest boot): a socket that is
  not QMP, a busy one, a non-s390x QEMU, RAM anonymous, in a memfd, not
  shared, or its file gone: one line, no daemon, the monitor free again.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import require_fuse, run_vmcorefs, sha256_file
from guest import GUEST, QEMU, GuestError, RunningGuest, qmp_connect, require_guest, tools_missing
from reference import note_desc, phdrs, raw_notes

PT_LOAD, PT_NOTE = 1, 4
NT_PRSTATUS, NT_S390_PREFIX, NT_S390_CTRS, NT_S390_VXRS_LOW, NT_S390_VXRS_HIGH = 1, 0x305, 0x304, 0x309, 0x30a
PR_REG = 112  # offset of pr_reg (PSW, then the 16 general registers) in s390x's struct elf_prstatus


# --- reading ELF cores (struct only) -------------------------------------------



def cpu_registers(path) -> list[dict]:
    """Per CPU (note order): PSW and general registers, prefix, control registers, vector registers."""
    sets: list[dict] = []
    with open(path, "rb") as f:
        for p in phdrs(path):
            if p["type"] != PT_NOTE:
                continue
            f.seek(p["offset"])
            for name, ntype, whole in raw_notes(f.read(p["filesz"])):
                if name == b"CORE" and ntype == NT_PRSTATUS:
                    sets.append({"psw+gprs": note_desc(whole)[PR_REG:PR_REG + 16 + 128]})
                elif sets and ntype in (NT_S390_PREFIX, NT_S390_CTRS, NT_S390_VXRS_LOW, NT_S390_VXRS_HIGH):
                    sets[-1][ntype] = note_desc(whole)
    return sets


def compare_memory(vmcore: Path, qemu_elf: Path, chunk: int = 4 << 20) -> int:
    """Assert every PT_LOAD byte of *vmcore* equals QEMU's dump at the same physical address; return bytes."""
    theirs = [p for p in phdrs(qemu_elf) if p["type"] == PT_LOAD]
    total = 0
    with open(vmcore, "rb") as a, open(qemu_elf, "rb") as b:
        for p in (p for p in phdrs(vmcore) if p["type"] == PT_LOAD):
            q = next(q for q in theirs
                     if q["paddr"] <= p["paddr"] and p["paddr"] + p["filesz"] <= q["paddr"] + q["filesz"])
            for pos in range(0, p["filesz"], chunk):
                n = min(chunk, p["filesz"] - pos)
                a.seek(p["offset"] + pos)
                b.seek(q["offset"] + p["paddr"] - q["paddr"] + pos)
                assert a.read(n) == b.read(n), f"memory differs in [{p['paddr'] + pos:#x}, +{n:#x})"
            total += p["filesz"]
    return total


def compare_registers(vmcore: Path, qemu_elf: Path) -> None:
    ours, theirs = cpu_registers(vmcore), cpu_registers(qemu_elf)
    assert len(ours) == len(theirs) >= 2
    for i, (o, t) in enumerate(zip(ours, theirs)):
        for key in ("psw+gprs", NT_S390_PREFIX, NT_S390_CTRS, NT_S390_VXRS_LOW, NT_S390_VXRS_HIGH):
            assert key in o, f"CPU {i}: no {key} in /vmcore"
            assert o[key] == t[key], f"CPU {i}: {key} differs from QEMU's dump"


# --- helpers ----------------------------------------------------------------------

def mount_bg(source: str, mountpoint: Path, *args: str) -> subprocess.CompletedProcess:
    """``vmcorefs mount`` in its default background mode (the daemon forks, as sshfs)."""
    return run_vmcorefs("mount", source, mountpoint, *args, check=False)


def umount(mountpoint: Path) -> subprocess.CompletedProcess:
    res = run_vmcorefs("umount", mountpoint, check=False)
    assert res.returncode == 0, res.stderr
    assert not os.path.ismount(mountpoint)
    return res


def one_line_error(res: subprocess.CompletedProcess, *words: str) -> str:
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmcorefs: "), res.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def read_fails_with_eio(path: Path) -> None:
    with pytest.raises(OSError) as exc, open(path, "rb") as f:
        f.read(4096)
    assert exc.value.errno == errno.EIO


def daemon_pid(mountpoint: Path) -> int:
    from vmcorefs.sources.qemu import state_path
    return json.loads(Path(state_path(str(mountpoint))).read_text())["pid"]


DRGN_SCRIPT = r"""
import json, sys, drgn
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.printk import get_dmesg
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
out = {"dmesg": get_dmesg(prog).decode().splitlines(),
       "tasks": sorted((t.pid.value_(), t.comm.string_().decode()) for t in for_each_task(prog))}
try:
    thread = prog.crashed_thread()
    out["crashed"] = [thread.tid, str(thread.stack_trace()).splitlines()]
except LookupError as e:  # a kernel that did not panic
    out["crashed"] = str(e)
print(json.dumps(out))
"""


def drgn_report(vmcore: Path) -> dict:
    """What drgn (PyPI) finds in *vmcore* with the guest kernel's vmlinux: the log, tasks, the panic."""
    try:
        import drgn  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("drgn is not installed in this Python (PyPI drgn, the test extra)")
        pytest.skip("drgn is not installed in this Python (PyPI drgn, the test extra)")
    vmlinux = Path("/var/tmp/vmcorefs-guest-vmlinux/vmlinux")
    packed = GUEST / "vmlinux.zst"
    if not vmlinux.exists() or vmlinux.stat().st_mtime < packed.stat().st_mtime:
        vmlinux.parent.mkdir(parents=True, exist_ok=True)
        tmp = vmlinux.with_suffix(f".{os.getpid()}")
        subprocess.run(["zstd", "-d", "-q", "-f", str(packed), "-o", str(tmp)], check=True, timeout=300)
        os.replace(tmp, vmlinux)
    res = subprocess.run([sys.executable, "-c", DRGN_SCRIPT, str(vmcore), str(vmlinux)], check=False,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.fixture
def mnt(tmp_path):
    """A mount point, left unmounted whatever the test did (a failed test leaves no daemon)."""
    path = tmp_path / "mnt"
    path.mkdir()
    yield path
    if os.path.ismount(path):
        subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True, check=False)


def guest_or_fail(name: str, **kw) -> RunningGuest:
    require_guest()
    require_fuse()
    try:
        return RunningGuest(name, **kw)
    except GuestError as e:
        pytest.fail(f"the guest could not be started: {e}")


# --- a guest that crashes into kdump --------------------------------------------------

@pytest.mark.guest
def test_kdump_guest_running_stopped_resumed_and_captured(tmp_path, mnt):
    """One boot: the running guest (stopped for the mount, resumed by another client, a daemon
    killed, live), then its capture kernel after the crash, then QEMU gone."""
    with guest_or_fail("qmp-kdump", smp=2, memory_mib=256, crashkernel_mib=96) as g:
        g.wait_for("VMCOREFS-PRECRASH-READY")
        assert g.status() == "running"

        # the monitor busy: another client holds vmcorefs' socket
        busy = socket.socket(socket.AF_UNIX)
        busy.connect(str(g.vmcorefs_socket))
        try:
            one_line_error(mount_bg(g.source, mnt), "busy", "another client")
            assert not os.path.ismount(mnt) and g.status() == "running"
        finally:
            busy.close()

        # info stops the guest while it reads, says so, and resumes it
        info = run_vmcorefs("info", g.source).stdout
        assert "\nguest        stopped by vmcorefs while open (it was running); resumed at unmount" in info
        assert g.status() == "running"

        # a running guest, stopped for the mount: memory and registers = QEMU's dump of it
        res = mount_bg(g.source, mnt)
        assert res.returncode == 0, res.stderr
        assert g.status() == "paused"
        summary = (mnt / "meminfo" / "summary").read_text()
        assert "guest: stopped by vmcorefs while open (it was running)" in summary
        assert "consistency: a snapshot" in summary
        g.qemu_dump(tmp_path / "qemu.elf")
        assert g.status() == "paused"
        assert compare_memory(mnt / "vmcore", tmp_path / "qemu.elf") >= 128 << 20
        compare_registers(mnt / "vmcore", tmp_path / "qemu.elf")
        (tmp_path / "qemu.elf").unlink()
        # a snapshot drgn walks: the kernel's log up to the static init, init among the tasks
        rep = drgn_report(mnt / "vmcore")
        assert any(line.endswith("] Run /init as init process") for line in rep["dmesg"])
        assert [1, "init"] in rep["tasks"] and [2, "kthreadd"] in rep["tasks"]
        assert rep["crashed"] == "panic_cpu is not set"  # it runs: nothing panicked

        # someone resumes it: every read fails from then on (the summary says why)
        g.qmp.command("cont")
        read_fails_with_eio(mnt / "vmcore")
        read_fails_with_eio(mnt / "meminfo" / "cpus" / "cpu0")
        assert "READS FAIL: the guest was resumed" in (mnt / "meminfo" / "summary").read_text()
        umount(mnt)
        assert g.status() == "running"

        # the daemon dies: the guest stays stopped until 'vmcorefs umount'
        res = mount_bg(g.source, mnt)
        assert res.returncode == 0, res.stderr
        os.kill(daemon_pid(mnt), signal.SIGKILL)
        time.sleep(0.5)
        assert g.status() == "paused"
        res = umount(mnt)
        assert "the daemon had died: resumed the guest" in res.stderr
        assert g.status() == "running"

        # live: the guest runs on
        res = mount_bg(g.source, mnt, "-o", "live")
        assert res.returncode == 0, res.stderr
        assert g.status() == "running"
        assert "consistency: LIVE" in (mnt / "meminfo" / "summary").read_text()
        umount(mnt)
        assert g.status() == "running"

        # the crash: the capture kernel runs
        g.go()
        g.wait_for("VMCOREFS-KDUMP-READY")
        res = mount_bg(g.source, mnt)
        assert res.returncode == 0, res.stderr
        summary = (mnt / "meminfo" / "summary").read_text()
        assert "mode: kdump" in summary and "kdump swap" in summary
        mounted = sha256_file(mnt / "vmcore")
        umount(mnt)
        assert g.status() == "running"
        res = run_vmcorefs("save", g.source, tmp_path / "saved.elf", "-q")
        assert g.status() == "running"
        assert sha256_file(tmp_path / "saved.elf") == mounted
        (tmp_path / "saved.elf").unlink()

        # mounted live while the capture kernel copies /proc/vmcore out and powers off: QEMU goes
        res = mount_bg(g.source, mnt, "--live")
        assert res.returncode == 0, res.stderr
        g.copied_vmcore(tmp_path / "proc-vmcore.elf")
        assert sha256_file(tmp_path / "proc-vmcore.elf") == mounted
        read_fails_with_eio(mnt / "vmcore")
        umount(mnt)
        one_line_error(run_vmcorefs("info", g.source, check=False), g.source)


@pytest.mark.guest
def test_panicked_guest_without_kdump(tmp_path, mnt):
    """No crashkernel: sysrq-c panics the kernel, QEMU pauses it (guest-panicked): the stand-alone
    view with QEMU's CPU states; memory and registers = QEMU's dump; it stays stopped."""
    with guest_or_fail("qmp-panic", smp=2, memory_mib=128, crashkernel_mib=0) as g:
        g.wait_for("VMCOREFS-PRECRASH-READY")
        g.go()
        g.wait_for("VMCOREFS-CRASHING")
        g.wait_status("guest-panicked")
        res = mount_bg(g.source, mnt)
        assert res.returncode == 0, res.stderr
        summary = (mnt / "meminfo" / "summary").read_text()
        assert "mode: standalone" in summary
        assert "guest: was already stopped (QEMU status guest-panicked)" in summary
        g.qemu_dump(tmp_path / "qemu.elf")
        assert compare_memory(mnt / "vmcore", tmp_path / "qemu.elf") == 128 << 20
        compare_registers(mnt / "vmcore", tmp_path / "qemu.elf")
        # the panic as drgn sees it: init (pid 1) wrote c to /proc/sysrq-trigger
        rep = drgn_report(mnt / "vmcore")
        assert any(line.endswith("] Kernel panic - not syncing: sysrq triggered crash") for line in rep["dmesg"])
        tid, stack = rep["crashed"]
        frames = [line.split()[1] for line in stack]
        assert tid == 1 and frames.index("panic") < frames.index("sysrq_handle_crash") < frames.index("ksys_write")
        umount(mnt)
        assert g.status() == "guest-panicked"


# --- bad input -------------------------------------------------------------------------

class FakeServer:
    """A unix socket server answering each client with *answer(line)* (None: nothing)."""

    def __init__(self, path: Path, greeting: bytes, answer) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.greeting, self.answer = greeting, answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.greeting)
                for line in conn.makefile("rb"):
                    reply = self.answer(json.loads(line))
                    conn.sendall(json.dumps(reply).encode() + b"\n")

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        self.sock.close()


def test_bad_sockets(tmp_path, mnt):
    require_fuse()
    sockdir = Path(tempfile.mkdtemp(prefix="vmcorefs-qmp-"))
    try:
        one_line_error(mount_bg(f"qmp:{sockdir}/none.sock", mnt), "no such socket", "-qmp unix:")
        ssh = FakeServer(sockdir / "ssh.sock", b"SSH-2.0-OpenSSH_9.2\r\n", lambda msg: {})
        one_line_error(mount_bg(f"qmp:{sockdir}/ssh.sock", mnt), "is not a QMP socket")
        ssh.close()
        greeting = b'{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}, "capabilities": []}}\n'
        x86 = FakeServer(sockdir / "x86.sock", greeting,
                         lambda msg: {"return": {"arch": "x86_64"} if msg["execute"] == "query-target" else {}})
        one_line_error(mount_bg(f"qmp:{sockdir}/x86.sock", mnt), "the guest is x86_64, not s390x")
        x86.close()
        one_line_error(run_vmcorefs("info", f"qmp:{sockdir}/x86.sock", check=False), "nobody listens")
        assert not os.path.ismount(mnt)
    finally:
        import shutil
        shutil.rmtree(sockdir, ignore_errors=True)


@pytest.mark.parametrize("memory, words", [
    ([], ["anonymous memory", "memory-backend-file", "share=on"]),
    (["-object", "memory-backend-memfd,id=m0,size=64M", "-machine", "memory-backend=m0"], ["memfd", "share=on"]),
    (["-object", "memory-backend-file,id=m0,size=64M,mem-path={ram},share=off", "-machine", "memory-backend=m0"],
     ["not shared", "share=on"]),
    (["-object", "memory-backend-file,id=m0,size=64M,mem-path={ram},share=on", "-machine", "memory-backend=m0"],
     ["RAM file", "no such file"]),
], ids=["anonymous", "memfd", "not-shared", "file-gone"])
def test_guest_ram_vmcorefs_cannot_read(tmp_path, mnt, memory, words):
    """QEMU started, the guest never run (-S): what vmcorefs refuses, the monitor free afterwards."""
    require_fuse()
    if tools_missing() and QEMU in tools_missing():
        pytest.skip(tools_missing())
    sockdir = Path(tempfile.mkdtemp(prefix="vmcorefs-qmp-"))
    ram = Path(tempfile.mkdtemp(prefix="vmcorefs-ram-", dir="/dev/shm")) / "guest.ram"
    cmd = [QEMU, "-machine", "s390-ccw-virtio", "-accel", "tcg", "-S", "-nographic", "-nodefaults", "-m", "64",
           *[a.format(ram=ram) for a in memory], "-qmp", f"unix:{sockdir}/v.sock,server=on,wait=off"]
    qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        qmp = qmp_connect(sockdir / "v.sock", qemu)
        qmp.close()
        if "RAM file" in words:
            ram.unlink()
        one_line_error(mount_bg(f"qmp:{sockdir}/v.sock", mnt), *words)
        assert not os.path.ismount(mnt)
        qmp = qmp_connect(sockdir / "v.sock", qemu, timeout=10)  # vmcorefs let go of the monitor
        assert qmp.command("query-status")["status"] == "prelaunch"
        qmp.close()
    finally:
        qemu.kill()
        qemu.wait(30)
        import shutil
        shutil.rmtree(sockdir, ignore_errors=True)
        shutil.rmtree(ram.parent, ignore_errors=True)
