# SPDX-License-Identifier: MIT
"""
What ``vmcorefs save`` reads (:func:`open_source`): a finished dump file
(a vmcorefs mount's ``vmcore``, ``/proc/vmcore``: :class:`FileSource`) or
a machine whose ``/vmcore`` is built in this process (:class:`ViewSource`).
Each source says which files it reads (:meth:`Source.inputs`), what
identifies them for a resume (:meth:`Source.identity`) and whether they
changed (:meth:`Source.check_unchanged`); a view also plans a chunk
(:meth:`ViewSource.plan`) by asking its extents what backs them.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

import trio

from ..errors import InputError, MemoryReadError, VmcorefsError
from ..files import identity, open_input, os_error_text
from ..layouts import ELFMAG
from .base import SaveError
from .plan import Item, plan_extents

__all__ = ("INPUTS_XATTR", "FileSource", "Source", "ViewSource", "open_source", "parse_inputs")

log = logging.getLogger(__name__)

INPUTS_XATTR = "user.vmcorefs.inputs"  # a mount's files it reads: "DEV INO RDEV SIZE MTIME_NS PATH" lines

Input = tuple[str, int, int, int]  # (path, dev, ino, rdev): a file the dump is read from
Identity = tuple[int, int, int, int, str]  # (dev, ino, size, mtime_ns, path): what a resume checks


def parse_inputs(text: str) -> list[tuple[int, int, int, int, int, str]]:
    """Return the ``(dev, ino, rdev, size, mtime_ns, path)`` records of a mount's :data:`INPUTS_XATTR`."""
    out = []
    for line in text.splitlines():
        fields = line.split(" ", 5)
        if len(fields) == 6 and all(f.isdigit() for f in fields[:5]):
            out.append((*map(int, fields[:5]), fields[5]))
    return out


def stat_inputs(paths: list[str]) -> list[Input]:
    """Return ``(path, dev, ino, rdev)`` of each of *paths* that exists (rdev: of a block device, else 0)."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue
        out.append((path, st.st_dev, st.st_ino, st.st_rdev if stat.S_ISBLK(st.st_mode) else 0))
    return out


class Source:
    """The bytes to save: *size* bytes read with :meth:`read`."""

    description: str
    size: int
    plans = False  # plan() says which file regions back a range (for --no-sha256's kernel copy)
    sampled = False  # identified for a resume by pages spread over it too (see state.source_identity)

    async def read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    async def plan(self, offset: int, length: int) -> list[Item]:
        """Return how to write ``[offset, offset+length)``: see :func:`~vmcorefs.save.plan.plan_extents`."""
        raise NotImplementedError

    def inputs(self) -> list[Input]:
        """Return the files the bytes come from (that the output must not be), besides SOURCE itself."""
        return []

    def identity(self) -> list[Identity]:
        """Return what identifies the files the bytes come from, checked before a resume continues."""
        return []

    def check_unchanged(self) -> None:
        """Raise SaveError if what the bytes come from changed since the source was opened."""

    def check_consistent(self) -> None:
        """At the end: raise VmcorefsError if what was read, though every read succeeded, is no snapshot."""

    def close(self) -> None:
        pass


class FileSource(Source):
    """An ELF core file: a vmcorefs mount's ``vmcore``, ``/proc/vmcore``, a saved dump."""

    sampled = True  # its origin cannot be named: pages of it identify it

    def __init__(self, path: str) -> None:
        try:
            self.fd = open_input(path, "dump")
        except InputError:
            try:
                os.stat(path)
            except OSError as exc:
                raise _source_error(path, exc) from None
            raise
        self.description = path
        self.size = os.fstat(self.fd).st_size
        # a vmcorefs mount says which files it reads (see mount.inputs_text)
        try:
            self.mount_inputs = parse_inputs(os.getxattr(path, INPUTS_XATTR).decode(errors="replace"))
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                self.close()
                raise _source_error(path, exc) from None
            self.mount_inputs = []  # /proc/vmcore, or not a vmcorefs mount

    async def read(self, offset: int, length: int) -> bytes:
        try:
            data = await trio.to_thread.run_sync(os.pread, self.fd, length, offset)
        except OSError as exc:
            if exc.errno in (errno.ENOTCONN, errno.ECONNABORTED):
                raise SaveError(f"cannot read {self.description} at offset {offset:#x}: the vmcorefs daemon "
                                "serving it is gone (a stale mount): run 'vmcorefs umount' on it, mount it "
                                "again") from None
            raise SaveError(f"cannot read {self.description} at offset {offset:#x}: {exc.strerror}") from None
        if len(data) != length:
            try:
                os.stat(self.description)
            except OSError as exc:
                if exc.errno in (errno.ENOTCONN, errno.ECONNABORTED):  # the daemon died during the read
                    raise SaveError(f"cannot read {self.description} at offset {offset + len(data):#x}: the "
                                    "vmcorefs daemon serving it is gone (a stale mount): run 'vmcorefs umount' "
                                    "on it, mount it again") from None
            raise SaveError(f"{self.description} ended at {offset + len(data):#x}, "
                            f"before its size {self.size:#x}")
        return data

    def inputs(self) -> list[Input]:
        """The dump file, and for a vmcorefs mount the files its daemon reads, as it says (:data:`INPUTS_XATTR`)."""
        return stat_inputs([self.description]) + [(path, dev, ino, rdev)
                                                  for dev, ino, rdev, _size, _mtime, path in self.mount_inputs]

    def identity(self) -> list[Identity]:
        return [(dev, ino, size, mtime, path) for dev, ino, _rdev, size, mtime, path in self.mount_inputs]

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
            except OSError:
                pass  # ENOTCONN: the daemon of the mount died (the read said so)


class ViewSource(Source):
    """``/vmcore`` built in this process from a machine (no FUSE)."""

    plans = True

    def __init__(self, source: str, vmcore, dump) -> None:
        self.description = source
        self.machine = dump.machine
        self.vmcore = vmcore
        self.dump = dump
        self.size = vmcore.size
        self.files = self.machine.files()  # the RawFileStores it reads
        # a machine on a block device, whose mtime says nothing of its contents, is sampled too
        self.sampled = any(store.block for store in self.files)

    async def read(self, offset: int, length: int) -> bytes:
        try:
            return await self.vmcore.read(offset, length)
        except MemoryReadError as exc:
            raise SaveError(f"{exc} ({self.where(exc.address, offset, length)})") from None
        except VmcorefsError as exc:
            raise SaveError(f"{exc} (reading /vmcore at {offset:#x}+{length:#x})") from None

    def where(self, address: int, offset: int, length: int) -> str:
        """Return where in /vmcore old memory *address* is, if in ``[offset, offset+length)``."""
        from ..views.extents import MemoryExtent
        f = self.vmcore
        i, _rel = f.locate(offset)
        while i < len(f.extents) and f.starts[i] < offset + length:
            ext = f.extents[i]
            if isinstance(ext, MemoryExtent) and ext.address <= address < ext.address + ext.length:
                return f"/vmcore offset {f.starts[i] + address - ext.address:#x}"
            i += 1
        return f"reading /vmcore at {offset:#x}+{length:#x}"

    async def plan(self, offset: int, length: int) -> list[Item]:
        """Plan ``[offset, offset+length)`` of /vmcore from what its extents say backs them."""
        try:
            return await plan_extents(self.vmcore, offset, length)
        except MemoryReadError as exc:
            raise SaveError(f"{exc} ({self.where(exc.address, offset, length)})") from None

    def inputs(self) -> list[Input]:
        return stat_inputs([store.path for store in self.files])

    def identity(self) -> list[Identity]:
        """The description (or dump file) named as SOURCE, and every file the machine reads."""
        out: list[Identity] = []
        if os.path.isfile(self.description):
            out.append((*identity(os.stat(self.description)), os.path.abspath(self.description)))
        return out + [(*store.identity, store.path) for store in self.files]

    def check_unchanged(self) -> None:
        """Raise SaveError if a file the machine reads changed since it was opened."""
        for store in self.files:
            try:
                store.check_unchanged()
            except MemoryReadError as exc:
                raise SaveError(exc.reason) from None

    def check_consistent(self) -> None:
        """A running guest that resumed meanwhile (:meth:`~vmcorefs.sources.qemu.Guest.check`)."""
        if self.machine.guest is not None:
            self.machine.guest.check()

    def close(self) -> None:
        self.machine.close()


def _source_error(path: str, exc: OSError) -> InputError:
    if exc.errno in (errno.ENOTCONN, errno.ENOENT, errno.ELOOP):
        return InputError(os_error_text(path, exc))
    return InputError(f"cannot open {path}: {exc.strerror}")


def _is_dump_file(path: str) -> bool:
    """
    Whether *path* is a finished /vmcore to copy as it is: ``/proc/vmcore``,
    or the ``vmcore`` of a mount (a vmcorefs mount point's). Other files
    (ELF cores, s390 dumps, images, descriptions) are sources: their
    ``/vmcore`` is built here, as ``vmcorefs mount`` would show it.
    """
    real = os.path.realpath(path)
    if real == "/proc/vmcore":
        return True
    if os.path.basename(real) == "vmcore" and os.path.ismount(os.path.dirname(real)):
        return _has_elf_magic(real)
    return False


def _has_elf_magic(path: str) -> bool:
    """Whether the file *path* starts with the ELF magic."""
    fd = open_input(path, "dump")  # a FIFO named vmcore would block open()
    try:
        return os.pread(fd, len(ELFMAG), 0) == ELFMAG
    except OSError as exc:
        raise _source_error(path, exc) from None
    finally:
        os.close(fd)


async def open_source(source: str, mode: str | None) -> Source:
    """
    Return what *source* names: a vmcorefs mount point or /proc/vmcore
    (copied), or a machine (anything ``vmcorefs mount`` takes) whose
    ``/vmcore`` is built here.
    """
    try:
        st = os.stat(source)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _source_error(source, exc) from None
    path = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        path = os.path.join(source, "vmcore")
        try:
            os.stat(path)
        except FileNotFoundError:
            path = None
        except OSError as exc:  # a stale mount: the root's attributes may still be cached, not its files
            raise _source_error(source, exc) from None
        if path is None:
            raise InputError(f"{source} is a directory without a vmcore file: give a vmcorefs mount point, "
                             "a machine description, a dump file or 'demo'")
        if not os.path.ismount(source) and not _has_elf_magic(path):
            raise InputError(f"{source} is not a vmcorefs mount point and its vmcore is no ELF dump: give a "
                             "vmcorefs mount point, a machine description, a dump file or 'demo'")
    elif st is not None and _is_dump_file(source):
        path = source
    if path is not None:
        if mode not in (None, "auto"):
            raise InputError(f"--mode {mode} applies to a machine, not to {path}: that dump is already made "
                             "(mount the machine with --mode instead)")
        return FileSource(path)

    from ..dump import Dump
    from ..sources import open_source as open_machine
    from ..views.vmcore import build_vmcore
    machine = open_machine(source)
    try:
        dump = await Dump.open(machine, mode or "auto")
        vmcore = build_vmcore(dump)
    except BaseException:
        machine.close()
        raise
    log.info("%s: %s mode (%s), /vmcore has %d bytes", source, dump.mode, dump.why, vmcore.size)
    return ViewSource(source, vmcore, dump)
