# SPDX-License-Identifier: MIT
"""
A running QEMU guest as a source
--------------------------------

The ``vmcorefs.sources.qemu`` module opens ``qmp:PATH``, the QMP socket of
a running ``qemu-system-s390x``, as a :class:`~vmcorefs.machine.Machine`
whose memory is the guest's RAM itself, read in place from the host file
QEMU keeps it in (``-object memory-backend-file,...,mem-path=FILE,share=on
-machine memory-backend=m0``): nothing is copied, so opening costs the same
for any RAM size.

Over its own QMP connection (:mod:`.qmp`) vmcorefs asks QEMU for:

- the target (``query-target``): s390x only;
- the machine's memory backend (``qom-get /machine memory-backend``), its
  type, ``mem-path`` and ``share``; RAM in anonymous memory, not shared,
  or in a memfd (no path) is refused with the options to use;
- the RAM size (``query-memory-size-summary``): one range from 0;
- the run state (``query-status``) and the CPUs (``query-cpus-fast``);
- the CPUs' registers: the notes of a ``dump-guest-memory`` of the first
  page only, written into a file vmcorefs opened and passed with ``getfd``
  (QEMU's quirks are known to :mod:`.elfnotes`).

The memory and CPUs then make the machine by the rules raw images follow
(:func:`~vmcorefs.sources.raw.machine_from_memory`): a guest whose kdump
capture kernel runs shows the crashed kernel with the swap undone; any
other guest is shown as it is, with QEMU's CPU states.

Consistency: by default the guest is stopped (``stop``) while the source
is open, and resumed when it closes only if it was running before. Live
(``-o live``), it runs on and every file is read from changing memory.
Every read first looks, without waiting, at what QEMU said meanwhile: a
RESUME of a guest vmcorefs holds stopped, a SHUTDOWN or RESET, or the
connection closing (QEMU exited) make every read fail from then on
(:meth:`Guest.check`). Nothing is cached, so nothing stale can be served.

A mount records what its unmount must do in a state file
(``$XDG_RUNTIME_DIR/vmcorefs`` or ``/run/vmcorefs``), so ``vmcorefs
umount`` resumes the guest even when the daemon died
(:func:`finish_unmount`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time

from ..errors import InputError, MemoryReadError
from ..machine import Cpu, Machine
from ..stores import Piece, RawFileStore
from .qmp import Qmp, QmpError

__all__ = ("PREFIX", "Guest", "GuestMemoryStore", "absolute", "finish_unmount", "open_qmp")

log = logging.getLogger(__name__)

PREFIX = "qmp:"
KIND = "QEMU guest (QMP)"
OPTIONS = ("-object memory-backend-file,id=m0,size={size},mem-path=/dev/shm/GUEST.ram,share=on "
           "-machine memory-backend=m0")
INVALIDATING = {"SHUTDOWN": "QEMU reported SHUTDOWN (the guest powered off or QEMU is quitting)",
                "RESET": "the guest was reset (QMP RESET)"}
NOTES_FD = "vmcorefs-notes"


def absolute(source: str) -> str:
    """``qmp:PATH`` with PATH absolute (the daemon works from /)."""
    return PREFIX + os.path.abspath(source[len(PREFIX):])


class Guest:
    """
    The running QEMU of a ``qmp:`` source: its monitor, whether vmcorefs
    stopped the guest, and why reads must fail, once they must.
    """

    def __init__(self, qmp: Qmp, live: bool) -> None:
        self.qmp = qmp
        self.live = live
        self.was_running = False
        self.stopped_by_us = False
        self.status = ""
        self.cpu_states: list[str] = []
        self.gone: str | None = None
        self.state_file: str | None = None

    @property
    def name(self) -> str:
        return self.qmp.name

    def check(self) -> None:
        """
        Raise MemoryReadError if the memory can no longer be trusted: QEMU
        resumed a guest vmcorefs stopped (or that was stopped), reset or shut
        it down, or closed the connection. Never waits.
        """
        if self.gone is None:
            for event in self.qmp.poll_events():
                what = event.get("event")
                if what in INVALIDATING:
                    self.gone = INVALIDATING[what]
                elif what == "RESUME" and not self.live:
                    self.gone = "the guest was resumed (QMP RESUME from another client): its memory changes"
                if self.gone:
                    break
            if self.gone is None and self.qmp.closed:
                self.gone = "QEMU closed the monitor connection (QEMU exited?)"
            if self.gone is not None:
                log.error("%s: %s; every read fails from now on", self.name, self.gone)
        if self.gone is not None:
            raise MemoryReadError(0, f"{self.name}: {self.gone}")

    def gone_now(self) -> str | None:
        """Why reads fail (after a look at what QEMU said meanwhile), or None."""
        try:
            self.check()
        except MemoryReadError:
            pass
        return self.gone

    def state_text(self) -> str:
        """What vmcorefs does to the guest, for info and /meminfo."""
        self.gone_now()  # tells a resume or QEMU's exit that no read saw yet
        cpus = ", ".join(self.cpu_states)
        if self.live:
            text = (f"LIVE: the guest runs on (QEMU status {self.status}); every file is read from its changing "
                    f"memory, nothing cached: not a consistent snapshot")
        elif self.stopped_by_us:
            text = "stopped by vmcorefs while open (it was running); resumed at unmount"
        else:
            text = f"was already stopped (QEMU status {self.status}); left stopped"
        text += f"; CPUs {cpus}" if cpus else ""
        if self.gone:
            text += f"; READS FAIL: {self.gone}"
        return text

    def record(self, mountpoint: str) -> None:
        """Write the state file that lets ``vmcorefs umount`` resume the guest if the daemon dies."""
        path = state_path(mountpoint)
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"mountpoint": mountpoint, "socket": self.qmp.path, "pid": os.getpid(),
                           "resume": self.stopped_by_us}, f)
            os.replace(tmp, path)
            self.state_file = path
        except OSError as exc:
            log.warning("cannot write %s (vmcorefs umount cannot resume the guest if this daemon dies): %s",
                        path, exc.strerror)

    def close(self) -> None:
        """Resume the guest if vmcorefs stopped it; end the connection."""
        try:
            if self.stopped_by_us and not self.qmp.closed:
                resume(self.qmp)
        except InputError as exc:
            log.error("%s: cannot resume the guest: %s", self.name, exc)
        finally:
            self.stopped_by_us = False
            self.qmp.close()
            if self.state_file:
                try:
                    os.unlink(self.state_file)
                except OSError:
                    pass
                self.state_file = None


def resume(qmp: Qmp) -> bool:
    """``cont`` a guest that is paused; return whether it was."""
    if qmp.command("query-status").get("status") != "paused":
        return False  # running (someone resumed it), panicked, shut down: leave it
    qmp.command("cont")
    log.info("%s: guest resumed", qmp.name)
    return True


class GuestMemoryStore(RawFileStore):
    """The guest's RAM file, read in place; every read asks :meth:`Guest.check` (:meth:`check_unchanged`)."""

    blocking = False  # RAM (tmpfs), and Guest.check reads the QMP socket: never from worker threads

    def __init__(self, path: str, size: int, guest: Guest) -> None:
        super().__init__(path, size)
        self.guest = guest
        self.name = f"guest RAM {path}"
        self.sparse = True  # RAM files are sparse where the guest never wrote

    def check_unchanged(self, address: int = 0) -> None:
        """
        Raise MemoryReadError once the RAM file is no snapshot (:meth:`Guest.check`):
        every read asks after it (:meth:`RawFileStore.read`, holes included), a save
        at each chunk it records. Size and modification time are not looked at: the
        RAM file changes with the guest.
        """
        try:
            self.guest.check()
        except MemoryReadError as exc:
            raise MemoryReadError(address, exc.reason) from None

    def pieces(self, address: int, length: int) -> list[Piece]:
        """The RAM file's regions as they are (a save copies them in the kernel), while the guest is stopped."""
        self.check_unchanged(address)
        return super().pieces(address, length)

    def close(self) -> None:
        super().close()
        self.guest.close()


def _memory_backend(qmp: Qmp, name: str) -> tuple[str, int]:
    """Return the guest RAM's file and size, or say which QEMU options put it in a shared file."""
    size = int(qmp.command("query-memory-size-summary")["base-memory"])
    options = OPTIONS.format(size=size)
    try:
        backend = qmp.command("qom-get", path="/machine", property="memory-backend")
    except QmpError:
        backend = None
    if not backend:
        raise InputError(f"{name}: guest RAM is not in a memory backend vmcorefs can read: start QEMU with "
                         f"{options}")
    obj = backend if backend.startswith("/") else f"/objects/{backend}"
    kind = qmp.command("qom-get", path=obj, property="type")
    if kind == "memory-backend-memfd":
        raise InputError(f"{name}: guest RAM is in a memfd ({obj}), which has no path vmcorefs could open: "
                         f"start QEMU with {options}")
    if kind != "memory-backend-file":
        raise InputError(f"{name}: guest RAM is anonymous memory ({kind} {obj}), not a file: start QEMU with "
                         f"{options}")
    mem_path = qmp.command("qom-get", path=obj, property="mem-path")
    if not qmp.command("qom-get", path=obj, property="share"):
        raise InputError(f"{name}: guest RAM in {mem_path} is not shared (share=off: the guest's writes never "
                         f"reach the file): start QEMU with {options}")
    if os.path.isdir(mem_path):
        raise InputError(f"{name}: mem-path {mem_path} is a directory (QEMU keeps RAM in an unlinked file "
                         f"there): give a file: {options}")
    backend_size = int(qmp.command("qom-get", path=obj, property="size"))
    if backend_size < size:
        raise InputError(f"{name}: the memory backend holds {backend_size:#x} bytes, the guest has {size:#x}")
    return mem_path, size


def _cpus(qmp: Qmp, name: str) -> list[Cpu]:
    """The CPUs' registers, from the notes of QEMU's dump of the first page."""
    from .elfnotes import cpus_from_notes
    from .elfread import read_elf_notes
    with tempfile.TemporaryFile(prefix="vmcorefs-notes-") as f:
        qmp.send_fd(f.fileno(), NOTES_FD)
        qmp.command("dump-guest-memory", paging=False, protocol=f"fd:{NOTES_FD}", begin=0, length=4096)
        elf_cpus, _producer = cpus_from_notes(read_elf_notes(f"/proc/self/fd/{f.fileno()}"),
                                              f"{name} (dump-guest-memory notes)", "qemu")
    return [Cpu(c.address, c.save_area, c.vector) for c in elf_cpus]


def open_qmp(source: str, live: bool = False) -> Machine:
    """Return the machine of the running QEMU guest ``qmp:PATH`` names (see the module docs)."""
    from .raw import machine_from_memory
    path = source[len(PREFIX):]
    if not path:
        raise InputError("qmp: needs the path of a QMP socket (qmp:/run/guest.qmp)")
    qmp = Qmp(path, source)
    guest = Guest(qmp, live)
    store = None
    try:
        arch = qmp.command("query-target").get("arch")
        if arch != "s390x":
            raise InputError(f"{source}: the guest is {arch}, not s390x")
        mem_path, size = _memory_backend(qmp, source)
        try:
            store = GuestMemoryStore(mem_path, size, guest)
        except InputError as exc:
            raise InputError(f"{source}: the guest's RAM file: {exc}") from None
        if store.file_size < size:
            raise InputError(f"{source}: the RAM file {mem_path} has {store.file_size:#x} bytes, "
                             f"the guest {size:#x}")
        status = qmp.command("query-status")
        guest.status, guest.was_running = status.get("status", "?"), bool(status.get("running"))
        if guest.was_running and not live:
            qmp.command("stop")
            guest.stopped_by_us = True
            guest.status = "paused"
            log.info("%s: guest stopped for as long as the source is open", source)
        cpus = _cpus(qmp, source)
        guest.cpu_states = [f"{c['props'].get('core-id', c['cpu-index'])} {c.get('cpu-state', '?')}"
                            for c in qmp.command("query-cpus-fast")]
        if not live and qmp.command("query-status").get("running"):
            raise InputError(f"{source}: the guest was resumed (by another client?) while vmcorefs opened it")
        qmp.poll_events()  # our own stop, and the dump's stop and resume: not a user's
        machine = machine_from_memory(store, [(0, size)], os.path.basename(path), cpus, None, None, KIND)
    except BaseException:
        if store is not None:
            store.close()  # also resumes the guest if we stopped it
        else:
            guest.close()
        raise
    machine.guest = guest
    return machine


# --- after an unmount ----------------------------------------------------------

def state_path(mountpoint: str) -> str:
    base = os.environ.get("XDG_RUNTIME_DIR") or ("/run" if os.geteuid() == 0 else tempfile.gettempdir())
    key = hashlib.sha256(os.path.abspath(mountpoint).encode()).hexdigest()[:16]
    return os.path.join(base, "vmcorefs", f"guest-{key}.json")


def finish_unmount(mountpoint: str, wait: float = 15.0) -> str | None:
    """
    After *mountpoint* was unmounted: let its daemon resume the guest it
    stopped (wait for it to exit), or resume it here if the daemon is gone.
    Return a line to tell the user, or None. *wait* 0 (a lazy unmount):
    a daemon still serving open files is left to do it.
    """
    path = state_path(mountpoint)
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    deadline = time.monotonic() + wait
    while _alive(state.get("pid")) and time.monotonic() < deadline:
        time.sleep(0.05)
        if not os.path.exists(path):
            return None  # the daemon resumed the guest and cleaned up
    if not os.path.exists(path):
        return None
    if _alive(state.get("pid")):
        if not wait:  # a lazy unmount: the daemon resumes the guest once the last file is closed
            return None
        return f"the daemon (pid {state['pid']}) did not finish within {wait:.0f} s; the guest may stay stopped"
    try:
        os.unlink(path)
    except OSError:
        pass
    if not state.get("resume"):
        return None
    source = PREFIX + state["socket"]
    try:
        qmp = Qmp(state["socket"], source)
    except InputError as exc:
        return f"the daemon had died and the guest it stopped cannot be resumed: {exc}"
    try:
        resumed = resume(qmp)
    except InputError as exc:
        return f"the daemon had died and the guest it stopped cannot be resumed: {exc}"
    finally:
        qmp.close()
    return f"the daemon had died: resumed the guest it had stopped ({source})" if resumed else None


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (a foreground parent's child) is gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True
