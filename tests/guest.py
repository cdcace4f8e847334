# SPDX-License-Identifier: MIT
"""
Real kdumps made in the tests: boot the guest kernel of ../shared/guest under
qemu-system-s390x (TCG) with the static /init of contrib/fixtures/init.c,
crash it with sysrq-c on CPU 1, and while the kdump capture kernel waits save
what vmcorefs reads and what the kernel wrote:

``ram.raw``          all guest RAM (QMP ``pmemsave 0 RAM``) of the stopped VM
                     while the capture kernel runs (crashkernel swapped)
``qemu-kdump.elf``   QMP ``dump-guest-memory`` (ELF, paging off) of the same
                     stopped VM, right after the pmemsave
``qemu-kdump.kdump-zlib``  the same in QEMU's kdump-compressed format (``format
                     kdump-zlib``, the only kdump format QEMU 7.2 has for s390x)
``proc-vmcore.elf``  the capture kernel's /proc/vmcore, copied byte for byte
                     to a virtio-blk disk after the VM continued (the oracle)
``cpus.json``        QMP ``query-cpus-fast`` at that moment, the CPUs taken
                     offline before the crash, the crash CPU, the options
                     (not the ``emulate --cpus-json`` format)
``console.log``      both kernels' console; ``run.json``: command line,
                     inputs, timings, sizes; ``info-registers.txt``

:func:`guest_kdump` returns the directory. It is cached under
/var/tmp/vmcorefs-guest-kdumps/NAME-KEY, KEY hashing every input (the
bzImage, init.c, this file, the options, the QEMU and compiler versions):
a second call costs nothing, and a changed input makes a new one (versions
of the same NAME unused for a week are removed then). Big files are
sparse. Every QEMU step has a timeout, so a hung guest fails in minutes.

Also a command, printing the directory: ``python3 tests/guest.py NAME
[--smp N] [--cpu-options vx=off,vxeh=off] [--offline 2] [--memory-mib 256]
[--crashkernel-mib 96]``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's vmcorefs, also when run as a command

from vmcorefs.errors import InputError
from vmcorefs.sources.qmp import Qmp  # the client of qmp:PATH sources drives the test's guests, too

GUEST = Path(os.environ.get("VMCOREFS_GUEST_DIR", REPO.parent / "shared" / "guest"))
CACHE = Path(os.environ.get("VMCOREFS_GUEST_KDUMP_CACHE", "/var/tmp/vmcorefs-guest-kdumps"))
INIT_C = REPO / "contrib" / "fixtures" / "init.c"
QEMU = "qemu-system-s390x"
CC = "s390x-linux-gnu-gcc"
CRASH_CPU = 1  # init.c pins the crashing task to CPU 1
MARKER_TIMEOUT = 240  # seconds from one console marker to the next (TCG on a busy host)
RUN_TIMEOUT = 600  # the whole boot-crash-capture cycle
SETUP_HINT = "bash contrib/setup.sh test installs qemu-system-misc, gcc-s390x-linux-gnu, libc6-dev-s390x-cross"
FILES = ("ram.raw", "qemu-kdump.elf", "qemu-kdump.kdump-zlib", "proc-vmcore.elf", "cpus.json", "console.log")


class GuestError(RuntimeError):
    """The guest run failed (the message says where; the console's end is attached)."""


def tools_missing() -> str | None:
    """Return why guests cannot be made here, or None."""
    for tool, pkg in ((QEMU, "qemu-system-misc"), (CC, "gcc-s390x-linux-gnu")):
        if shutil.which(tool) is None:
            return f"{tool} is missing ({pkg}; {SETUP_HINT})"
    if not Path("/usr/s390x-linux-gnu/lib/libc.a").exists():
        return f"the static s390x libc is missing (libc6-dev-s390x-cross; {SETUP_HINT})"
    return None


def kernel_missing() -> str | None:
    if not (GUEST / "bzImage").exists():
        return f"the guest kernel {GUEST / 'bzImage'} is not available (the shared/ folder is missing)"
    return None


def require_guest() -> None:
    """Skip (fail in CI, env CI set) when a guest cannot be made here."""
    import pytest
    why = kernel_missing()
    if why:
        pytest.skip(why)  # as conftest.unpack_fixture does without ../shared
    why = tools_missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"guest kdump tests must run in CI: {why}")
        pytest.skip(why)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tool_version(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return res.stdout.splitlines()[0] if res.stdout else ""


# --- the initramfs: newc cpio written here (no kernel tree, no root) --------

def newc(entries: list[tuple]) -> bytes:
    """
    A newc ("070701") cpio archive of *entries*: ``("dir", name, mode)``,
    ``("nod", name, mode, major, minor)`` (a character device),
    ``("file", name, mode, data)``. Owner root, mtime 0, names without the
    leading slash, as the kernel's gen_init_cpio writes them.
    """
    out = bytearray()

    def add(name: str, mode: int, data: bytes = b"", nlink: int = 1, rdev: tuple[int, int] = (0, 0),
            ino: int = 0) -> None:
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, entry in enumerate(entries, start=721):
        kind, name, mode = entry[:3]
        name = name.lstrip("/")
        if kind == "dir":
            add(name, stat.S_IFDIR | mode, nlink=2, ino=ino)
        elif kind == "nod":
            add(name, stat.S_IFCHR | mode, rdev=(entry[3], entry[4]), ino=ino)
        elif kind == "file":
            add(name, stat.S_IFREG | mode, data=entry[3], ino=ino)
        else:
            raise ValueError(kind)
    add("TRAILER!!!", 0)
    return bytes(out)


def build_initrds(work: Path, bzimage: bytes) -> tuple[Path, Path]:
    """Compile init.c (static s390x) and write capture.cpio and initrd.cpio; return (init, initrd)."""
    init = work / "init"
    res = subprocess.run([CC, "-static", "-O2", "-Wall", "-o", str(init), str(INIT_C)],
                         capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise GuestError(f"{CC} failed on {INIT_C}:\n{res.stderr}")
    base = [("dir", "/dev", 0o755), ("nod", "/dev/console", 0o600, 5, 1), ("dir", "/proc", 0o755),
            ("dir", "/sys", 0o755), ("file", "/init", 0o755, init.read_bytes())]
    capture = newc(base)
    (work / "capture.cpio").write_bytes(capture)
    initrd = work / "initrd.cpio"
    initrd.write_bytes(newc(base + [("dir", "/boot", 0o755), ("file", "/boot/bzImage", 0o644, bzimage),
                                    ("file", "/boot/capture.cpio", 0o644, capture)]))
    return init, initrd


# --- QEMU ---------------------------------------------------------------------

def qmp_connect(path: Path, qemu: subprocess.Popen, timeout: float = 30) -> Qmp:
    """
    vmcorefs' QMP client on the socket *path* of the QEMU *qemu* just started
    (or whose monitor another client is letting go of), once it answers
    within *timeout* s; each command then has :data:`MARKER_TIMEOUT` s.
    """
    try:
        return Qmp.when_up(str(path), f"QEMU's QMP socket {path}", timeout, process=qemu, timeout=MARKER_TIMEOUT)
    except InputError as e:
        raise GuestError(str(e)) from None


class Console:
    """QEMU's stdio (the SCLP console): logged to a file, searched for markers."""

    def __init__(self, qemu: subprocess.Popen, log: Path, t0: float) -> None:
        self.qemu, self.t0 = qemu, t0
        self.lines: list[str] = []
        self.tolerated: tuple[str, ...] = ()  # failure markers a scenario expects
        self.cond = threading.Condition()
        self.log = open(log, "wb")
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        for raw in self.qemu.stdout:
            self.log.write(raw.replace(b"\r", b""))
            self.log.flush()
            with self.cond:
                self.lines.append(raw.decode(errors="replace").strip())
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, marker: str, timeout: float = MARKER_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    if marker in line:
                        return line
                failed = [line for line in self.lines[seen:]
                          if line.startswith("VMCOREFS-") and ("ERROR" in line or "FAILED" in line)
                          and not line.startswith(self.tolerated)]
                if failed:
                    raise GuestError(f"guest failed while waiting for {marker!r}: {failed[0]}")
                seen = len(self.lines)
                if self.qemu.poll() is not None:
                    raise GuestError(f"QEMU exited ({self.qemu.returncode}) before {marker!r}")
                if time.monotonic() > deadline:
                    raise GuestError(f"no {marker!r} within {timeout:.0f} s")
                self.cond.wait(0.5)

    def type(self, text: str) -> None:
        self.qemu.stdin.write(text.encode())
        self.qemu.stdin.flush()

    def tail(self, n: int = 40) -> str:
        with self.cond:
            return "\n".join(self.lines[-n:])

    def close(self) -> None:
        self.thread.join(10)
        self.log.close()


def copy_sparse(src, dst: Path, size: int, chunk: int = 1 << 20) -> None:
    """Copy the first *size* bytes of *src* to *dst*, all-zero chunks as holes."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        left = size
        while left:
            data = fin.read(min(chunk, left))
            if not data:
                raise GuestError(f"{src} ended {left} bytes early")
            if data.count(0) == len(data):
                fout.seek(len(data), os.SEEK_CUR)
            else:
                fout.write(data)
            left -= len(data)
        fout.truncate(size)


def dig_holes(path: Path) -> None:
    """Make the zero blocks QEMU wrote into holes (util-linux; disk use only, contents unchanged)."""
    if shutil.which("fallocate"):
        subprocess.run(["fallocate", "--dig-holes", str(path)], capture_output=True, timeout=300)


def die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies (a killed pytest leaves no QEMU behind)."""
    import ctypes
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass


def run_guest(work: Path, out: Path, initrd: Path, *, smp: int, cpu: str, memory_mib: int, append: str) -> dict:
    """Boot, crash, capture; write the files into *out*; return the timings."""
    ram = memory_mib << 20
    disk = work / "vmcore-disk.img"
    with open(disk, "wb") as f:
        f.truncate(ram)  # /proc/vmcore is smaller than RAM (the crashkernel is left out)
    sockdir = tempfile.mkdtemp(prefix="vmcorefs-qmp-")  # short: a socket path has at most 107 bytes
    qmp_path = Path(sockdir) / "qmp.sock"
    cmd = [QEMU, "-machine", "s390-ccw-virtio", "-accel", "tcg", "-cpu", cpu, "-smp", str(smp),
           "-m", str(memory_mib), "-nographic", "-no-reboot", "-kernel", str(GUEST / "bzImage"),
           "-initrd", str(initrd), "-append", append,
           "-drive", f"file={disk},if=none,id=d1,format=raw,cache=writeback", "-device", "virtio-blk-ccw,drive=d1",
           "-qmp", f"unix:{qmp_path},server=on,wait=off"]
    t0 = time.monotonic()
    times: dict[str, float] = {}
    qemu = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=work, start_new_session=True, preexec_fn=die_with_parent)
    console = Console(qemu, out / "console.log", t0)
    qmp = None
    deadline = t0 + RUN_TIMEOUT

    def step(marker: str) -> str:
        line = console.wait_for(marker, min(MARKER_TIMEOUT, max(1.0, deadline - time.monotonic())))
        times[marker] = round(time.monotonic() - t0, 2)
        return line

    try:
        qmp = qmp_connect(qmp_path, qemu)
        step("VMCOREFS-PRECRASH-READY")
        if not any(line.startswith("VMCOREFS-KEXEC-LOADED 1") for line in console.lines):
            raise GuestError("the capture kernel was not loaded (no 'VMCOREFS-KEXEC-LOADED 1')")
        console.type("go\n")
        step("VMCOREFS-KDUMP-READY")
        qmp.command("stop")
        qmp.command("pmemsave", val=0, size=ram, filename=str(out / "ram.raw"))
        cpus = qmp.command("query-cpus-fast")
        registers = qmp.command("human-monitor-command", **{"command-line": "info registers -a"})
        qmp.command("dump-guest-memory", paging=False, protocol=f"file:{out / 'qemu-kdump.elf'}")
        qmp.command("dump-guest-memory", paging=False, format="kdump-zlib",
                protocol=f"file:{out / 'qemu-kdump.kdump-zlib'}")
        times["saved"] = round(time.monotonic() - t0, 2)
        qmp.command("cont")
        console.type("go\n")
        size = int(re.search(r"COPY-DONE (\d+)", step("VMCOREFS-COPY-DONE")).group(1))
        step("VMCOREFS-POWEROFF")
        qemu.wait(timeout=60)
        times["exited"] = round(time.monotonic() - t0, 2)
    except (GuestError, InputError, OSError, ValueError, subprocess.TimeoutExpired) as e:
        raise GuestError(f"guest run failed after {time.monotonic() - t0:.1f} s: {e}\n"
                         f"--- {QEMU}: {' '.join(cmd)}\n--- console (end):\n{console.tail()}") from e
    finally:
        if qmp is not None:
            qmp.close()
        if qemu.poll() is None:
            os.killpg(qemu.pid, 9)
            qemu.wait(30)
        console.close()
        shutil.rmtree(sockdir, ignore_errors=True)
    copy_sparse(disk, out / "proc-vmcore.elf", size)
    disk.unlink()
    (out / "info-registers.txt").write_text(registers)
    vmcore_size = re.search(r"VMCOREFS-VMCORE-SIZE (\d+)", (out / "console.log").read_text())
    if vmcore_size is None or int(vmcore_size.group(1)) != size:
        raise GuestError(f"the capture kernel copied {size} bytes, its /proc/vmcore has "
                         f"{vmcore_size.group(1) if vmcore_size else '?'}")
    return {"qemu_command": cmd, "times": times, "query-cpus-fast": cpus}


# --- a guest that runs while a test talks to it (qmp:PATH sources) -----------

class RunningGuest:
    """
    The guest kernel with the static init, booted for a test that works on
    it while it runs (not cached): RAM in a shared file under /dev/shm
    (``-object memory-backend-file,...,share=on -machine memory-backend=m0``),
    two QMP sockets, ``vmcorefs.sock`` for vmcorefs and ``control.sock``
    for the test (:attr:`qmp`; a QMP socket serves one client at a time),
    a virtio-blk disk the capture kernel copies /proc/vmcore onto.
    ``crashkernel_mib=0``: no kdump (a crash ends in a panic, which QEMU
    pauses: ``-action panic=pause``); ``init_on_free=False`` leaves RAM the
    guest never used unwritten (a sparse RAM file, for the benchmarks). A context manager; :meth:`close`
    kills QEMU and removes everything.
    """

    def __init__(self, name: str, *, smp: int = 2, cpu: str = "max", memory_mib: int = 256,
                 crashkernel_mib: int = 96, workload_pages: int = 256, random_bytes: int = 256 << 10,
                 init_on_free: bool = True) -> None:
        self.work = Path(tempfile.mkdtemp(prefix=f"vmcorefs-{name}-", dir="/var/tmp"))
        self.sockdir = Path(tempfile.mkdtemp(prefix="vmcorefs-qmp-"))  # short: sun_path has 107 bytes
        self.vmcorefs_socket = self.sockdir / "vmcorefs.sock"
        self.ram = Path(tempfile.mkdtemp(prefix="vmcorefs-ram-", dir="/dev/shm")) / "guest.ram"
        self.memory_mib = memory_mib
        self.disk = self.work / "vmcore-disk.img"
        self.qemu = self.console = self.qmp = None
        try:
            with open(self.disk, "wb") as f:
                f.truncate(memory_mib << 20)
            _init, initrd = build_initrds(self.work, (GUEST / "bzImage").read_bytes())
            append = (f"console=ttysclp0 panic=0 vmcorefs.run={name} "
                      f"vmcorefs.wl_pages={workload_pages} vmcorefs.rnd_bytes={random_bytes}")
            if init_on_free:
                append += " init_on_free=1"
            if crashkernel_mib:
                append += f" crashkernel={crashkernel_mib}M"
            self.cmd = [QEMU, "-machine", "s390-ccw-virtio", "-accel", "tcg", "-cpu", cpu, "-smp", str(smp),
                        "-m", str(memory_mib), "-nographic", "-no-reboot", "-action", "panic=pause",
                        "-object", f"memory-backend-file,id=m0,size={memory_mib}M,mem-path={self.ram},share=on",
                        "-machine", "memory-backend=m0",
                        "-kernel", str(GUEST / "bzImage"), "-initrd", str(initrd), "-append", append,
                        "-drive", f"file={self.disk},if=none,id=d1,format=raw,cache=writeback",
                        "-device", "virtio-blk-ccw,drive=d1",
                        "-qmp", f"unix:{self.vmcorefs_socket},server=on,wait=off",
                        "-qmp", f"unix:{self.sockdir / 'control.sock'},server=on,wait=off"]
            self.qemu = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, cwd=self.work, start_new_session=True,
                                         preexec_fn=die_with_parent)
            self.console = Console(self.qemu, self.work / "console.log", time.monotonic())
            if not crashkernel_mib:
                self.console.tolerated = ("VMCOREFS-KEXEC-FAILED",)  # nothing to load the capture kernel into
            self.qmp = qmp_connect(self.sockdir / "control.sock", self.qemu)
        except BaseException:
            self.close()
            raise

    @property
    def source(self) -> str:
        return f"qmp:{self.vmcorefs_socket}"

    def wait_for(self, marker: str, timeout: float = MARKER_TIMEOUT) -> str:
        try:
            return self.console.wait_for(marker, timeout)
        except GuestError as e:
            raise GuestError(f"{e}\n--- console (end):\n{self.console.tail()}") from None

    def go(self) -> None:
        self.console.type("go\n")

    def status(self) -> str:
        return self.qmp.command("query-status")["status"]

    def wait_status(self, status: str, timeout: float = MARKER_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.status() != status:
            if time.monotonic() > deadline:
                raise GuestError(f"QEMU status is {self.status()!r}, not {status!r}, after {timeout:.0f} s")
            time.sleep(0.2)

    def qemu_dump(self, out: Path) -> None:
        """QEMU's own ELF dump of the whole guest (paging off), for comparison."""
        self.qmp.command("dump-guest-memory", paging=False, protocol=f"file:{out}")

    def copied_vmcore(self, out: Path) -> None:
        """Let the capture kernel copy /proc/vmcore to the disk; write it to *out*."""
        self.go()
        size = int(re.search(r"COPY-DONE (\d+)", self.wait_for("VMCOREFS-COPY-DONE")).group(1))
        self.wait_for("VMCOREFS-POWEROFF")
        self.qemu.wait(timeout=60)
        copy_sparse(self.disk, out, size)

    def close(self) -> None:
        if self.qmp is not None:
            self.qmp.close()
        if self.qemu is not None and self.qemu.poll() is None:
            os.killpg(self.qemu.pid, 9)
            self.qemu.wait(30)
        if self.console is not None:
            self.console.close()
        shutil.rmtree(self.sockdir, ignore_errors=True)
        shutil.rmtree(self.ram.parent, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> "RunningGuest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- the cached scenarios -----------------------------------------------------

def guest_kdump(name: str, *, smp: int = 2, cpu_options: str = "", offline_cpus: tuple[int, ...] = (),
                memory_mib: int = 512, crashkernel_mib: int = 160, workload_pages: int = 256,
                random_bytes: int = 256 << 10) -> Path:
    """
    Return the directory of a real kdump of a guest with *smp* CPUs
    (``-cpu max,CPU_OPTIONS``), *memory_mib* MiB of RAM and a crashkernel of
    *crashkernel_mib* MiB, whose CPUs *offline_cpus* were taken offline
    (sysfs) before it crashed on CPU 1; made now unless cached. Raises
    :class:`GuestError` when the run fails.
    """
    if CRASH_CPU in offline_cpus or 0 in offline_cpus or any(c >= smp for c in offline_cpus):
        raise ValueError(f"offline CPUs {offline_cpus}: not 0, not the crash CPU {CRASH_CPU}, below smp={smp}")
    bzimage = (GUEST / "bzImage").read_bytes()
    cpu = "max" + (f",{cpu_options}" if cpu_options else "")
    append = (f"console=ttysclp0 crashkernel={crashkernel_mib}M panic=0 init_on_free=1 vmcorefs.run={name} "
              f"vmcorefs.wl_pages={workload_pages} vmcorefs.rnd_bytes={random_bytes}")
    if offline_cpus:
        append += " vmcorefs.offline=" + ",".join(map(str, offline_cpus))
    inputs = {
        "bzImage_sha256": sha256_bytes(bzimage),
        "init_c_sha256": sha256_bytes(INIT_C.read_bytes()),
        "guest_py_sha256": sha256_bytes(Path(__file__).read_bytes()),  # the procedure's version
        "qemu": tool_version([QEMU, "--version"]),
        "cc": tool_version([CC, "--version"]),
        "cpu": cpu, "smp": smp, "memory_mib": memory_mib, "crashkernel_mib": crashkernel_mib, "append": append,
        "offline_cpus": sorted(offline_cpus),
    }
    key = sha256_bytes(json.dumps(inputs, sort_keys=True).encode())[:16]
    final = CACHE / f"{name}-{key}"
    if complete(final):
        os.utime(final / "run.json")  # used: see prune()
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run making the same guest: wait for it
        if complete(final):
            return final
        for stale in CACHE.glob(f".{name}-{key}-*"):  # a killed run's; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-{key}-", dir=CACHE))
        try:
            work = tmp / "build"
            work.mkdir()
            _init, initrd = build_initrds(work, bzimage)
            run = run_guest(work, tmp, initrd, smp=smp, cpu=cpu, memory_mib=memory_mib, append=append)
            for big in ("ram.raw", "qemu-kdump.elf"):
                dig_holes(tmp / big)
            for dump in ("ram.raw", "qemu-kdump.elf", "qemu-kdump.kdump-zlib"):
                os.chmod(tmp / dump, 0o644)  # QEMU makes its dumps 0600
            (work / "initrd.cpio").unlink()  # the bzImage again; init and capture.cpio stay
            cpus = {"query-cpus-fast": run["query-cpus-fast"], "offline_cpus": sorted(offline_cpus),
                    "online_cpus": [c for c in range(smp) if c not in offline_cpus], "crash_cpu": CRASH_CPU,
                    "ipl_cpu": 0, "smp": smp, "cpu": cpu}
            (tmp / "cpus.json").write_text(json.dumps(cpus, indent=1) + "\n")
            command = [arg.replace(str(tmp), str(final)) for arg in run["qemu_command"]]
            record = {"name": name, "key": key, "inputs": inputs, "qemu_command": command,
                      "times": run["times"], "seconds": round(time.monotonic() - t0, 1),
                      "sizes": {f: (tmp / f).stat().st_size for f in FILES}}
            (tmp / "run.json").write_text(json.dumps(record, indent=1) + "\n")  # written last: complete
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    prune(name, keep=final)
    return final


def prune(name: str, keep: Path, days: float = 7) -> None:
    """Remove this scenario's other cached versions (other inputs) unused for *days*."""
    for old in CACHE.glob(f"{name}-*"):
        if old == keep or not old.is_dir():
            continue
        try:
            unused = time.time() - (old / "run.json").stat().st_mtime
        except OSError:
            continue
        if unused > days * 86400:
            shutil.rmtree(old, ignore_errors=True)
            (CACHE / f"{old.name}.lock").unlink(missing_ok=True)


def complete(directory: Path) -> bool:
    """A cached guest is complete when run.json (written last) names the sizes of all its files."""
    try:
        sizes = json.loads((directory / "run.json").read_text())["sizes"]
        return all((directory / f).stat().st_size == sizes[f] for f in FILES)
    except (OSError, ValueError, KeyError):
        return False


# the guest of tests/test_t5_guest_kdumps.py: no vector facility, and a third
# CPU taken offline before the crash (one boot for both cases). vxeh (vector
# enhancements, facility 135) goes with vx (129), else QEMU warns "'vxeh'
# requires 'vx'" and offers a CPU no machine has; the kernel decides by 129.
# 256 MiB with a 96 MiB crashkernel: a smaller, faster guest than ../shared/
# fixtures/guest-kdump-vx (512/160), and another layout (64 MiB works, too).
NOVX_OFFLINE = dict(smp=3, cpu_options="vx=off,vxeh=off", offline_cpus=(2,), memory_mib=256, crashkernel_mib=96)


def main(argv: list[str] | None = None) -> int:
    import argparse
    p = argparse.ArgumentParser(description="make (or find cached) a real kdump of the s390x guest")
    p.add_argument("name")
    p.add_argument("--smp", type=int, default=2)
    p.add_argument("--cpu-options", default="")
    p.add_argument("--offline", type=int, action="append", default=[])
    p.add_argument("--memory-mib", type=int, default=512)
    p.add_argument("--crashkernel-mib", type=int, default=160)
    a = p.parse_args(argv)
    t0 = time.monotonic()
    d = guest_kdump(a.name, smp=a.smp, cpu_options=a.cpu_options, offline_cpus=tuple(a.offline),
                    memory_mib=a.memory_mib, crashkernel_mib=a.crashkernel_mib)
    print(f"{d}  ({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
