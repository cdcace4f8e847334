# SPDX-License-Identifier: MIT
"""
A live system as a source: /dev/mem
-----------------------------------

The ``vmcorefs.sources.devmem`` module opens the memory of the running s390x
Linux system, ``/dev/mem`` (or ``/dev/crash``), as a
:class:`~vmcorefs.machine.Machine`, as zgetdump's ``devmem`` input
(s390-tools ``zdump/dfi_devmem.c``) reads it:

- *memory*: the ``System RAM`` (and ``System ROM``) lines of
  ``/proc/iomem`` (root sees the real addresses; others see zeros);
- *contents*: read from ``/dev/mem`` at the physical address, in page-aligned
  pieces that never leave those ranges (the kernel's ``read_mem`` copies
  page by page and answers ``EFAULT`` for a page it cannot give, e.g. one
  CMM took away). A read that fails is retried page by page, so the error
  names exactly the refused page: :class:`DevMemStore` raises
  :class:`~vmcorefs.errors.MemoryReadError` for it, and a FUSE read of
  ``/vmcore`` that touches it answers ``EIO``. Unlike zgetdump, which
  fills such pages with zeros, vmcorefs never passes them off as memory;
- the *live-dump marker*: the first 8 bytes at absolute 0 read as
  ``LIVEDUMP`` (0x4c49564544554d50), as zgetdump writes them into every
  dump of a live system (crash tells a live dump by them);
- *CPUs*: none are dumped. A running system's CPUs have stored no status:
  the save area at absolute 0x1200 holds whatever the last IPL or dump
  stored, not registers of now. ``/vmcore`` carries PRPSINFO and VMCOREINFO
  notes only, as zgetdump writes for ``/dev/mem`` (``DFI_CPU_CONTENT_NONE``);
- VMCOREINFO (through lowcore 0xE0C), os_info and ``/meminfo`` as for any
  dump; the mode is stand-alone (all memory as it is: nothing crashed, a
  crashkernel that is reserved is dumped like any memory).

The kind is recognised by the SOURCE's name: ``/dev/mem``, ``/dev/crash``
or any character device 1:1 (mem). It works only on s390x
(``os.uname().machine``).

Test seam (not a user interface): ``VMCOREFS_DEVMEM_TEST`` holds
``key=value`` pairs separated by ``;``: ``path=FILE`` (take FILE as
/dev/mem), ``iomem=FILE`` (instead of /proc/iomem), ``machine=NAME``
(instead of ``os.uname().machine``), ``efault=ADDR,ADDR`` (pages whose reads
fail with ``EFAULT``, as the kernel refuses CMM pages).
"""

from __future__ import annotations

import errno
import os
import stat

from ..errors import InputError, MemoryReadError
from ..layouts import PAGE_SIZE
from ..machine import KIND_LIVE, Cpu, Machine
from ..stores import BytesStore, OverlayStore, Store

__all__ = ("DevMemStore", "LIVE_DUMP_MAGIC", "iomem_ranges", "is_devmem", "open_devmem")

LIVE_DUMP_MAGIC = b"LIVEDUMP"  # zgetdump's dfi_live_dump_magic 0x4c49564544554d50 at absolute 0
DEVMEM_NAMES = ("/dev/mem", "/dev/crash")
MEM_RDEV = (1, 1)  # the mem driver's /dev/mem
CHUNK = 1 << 20  # bytes one read() asks for; a failed one is retried page by page
TEST_ENV = "VMCOREFS_DEVMEM_TEST"


def _test_seam() -> dict[str, str]:
    out = {}
    for item in os.environ.get(TEST_ENV, "").split(";"):
        key, sep, value = item.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def is_devmem(source: str) -> bool:
    """Whether *source* names a live system's memory (see the module docs)."""
    if source in DEVMEM_NAMES:
        return True
    seam = _test_seam().get("path")
    if seam and os.path.abspath(source) == os.path.abspath(seam):
        return True
    try:
        st = os.stat(source)
    except (OSError, ValueError):
        return False
    return stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == MEM_RDEV


def iomem_ranges(text: str) -> list[tuple[int, int]]:
    """
    Return the ``(start, end)`` ranges (end exclusive) of the ``System RAM``
    and ``System ROM`` lines of /proc/iomem *text*, sorted, adjacent ones
    merged.
    """
    found = []
    for line in text.splitlines():
        span, sep, name = line.partition(" : ")
        if not sep or name.strip() not in ("System RAM", "System ROM"):
            continue
        first, _, last = span.strip().partition("-")
        try:
            start, end = int(first, 16), int(last, 16) + 1
        except ValueError:
            continue
        found.append((start, end))
    out: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


class DevMemStore(Store):
    """
    A live system's memory through /dev/mem, read in page-aligned pieces
    inside *ranges* only; a page the kernel refuses raises
    :class:`MemoryReadError` naming that page.

    :param refused: pages whose reads fail as if the kernel refused them (test seam)
    """

    def __init__(self, path: str, ranges: list[tuple[int, int]], refused: frozenset[int] = frozenset()) -> None:
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            how = " (run as root)" if exc.errno in (errno.EACCES, errno.EPERM) else ""
            raise InputError(f"{path} is not readable: {exc.strerror}{how}") from exc
        self.path = path
        self.name = path
        self.ranges = list(ranges)
        self.size = self.ranges[-1][1]
        self.refused = refused

    # pieces(), files(): the Store defaults. /dev/mem is read (page by page
    # where the kernel refuses a page), never copied in the kernel.

    def _range_end(self, address: int) -> int:
        for start, end in self.ranges:
            if start <= address < end:
                return end
        raise MemoryReadError(address, f"{self.name}: {address:#x} is not System RAM in /proc/iomem")

    def _pread(self, address: int, length: int) -> bytes:
        if self.refused and any(p in self.refused for p in range(address - address % PAGE_SIZE,
                                                                   address + length, PAGE_SIZE)):
            raise OSError(errno.EFAULT, os.strerror(errno.EFAULT) + " (injected)")
        data = os.pread(self.fd, length, address)
        if len(data) != length:
            raise OSError(errno.EIO, f"short read: {len(data)} of {length} bytes")
        return data

    def _pages(self, address: int, length: int) -> bytes:
        """Read page by page; the first page that fails raises MemoryReadError for that page."""
        parts = []
        pos, end = address, address + length
        while pos < end:
            n = min(end, pos - pos % PAGE_SIZE + PAGE_SIZE) - pos
            try:
                parts.append(self._pread(pos, n))
            except OSError as exc:
                page = pos - pos % PAGE_SIZE
                what = ("the kernel refuses the page (EFAULT: not backed, e.g. given up to CMM)"
                        if exc.errno == errno.EFAULT else exc.strerror)
                raise MemoryReadError(page, f"{self.name}: page {page:#x}: {what}") from exc
            pos += n
        return b"".join(parts)

    def read(self, address: int, length: int) -> bytes:
        self._check(address, length)
        parts = []
        pos, end = address, address + length
        while pos < end:
            stop = min(end, self._range_end(pos), pos - pos % PAGE_SIZE + CHUNK)
            try:
                parts.append(self._pread(pos, stop - pos))
            except OSError:
                parts.append(self._pages(pos, stop - pos))
            pos = stop
        return b"".join(parts)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_devmem(source: str) -> Machine:
    """Return the live system *source* (/dev/mem) shows (see the module docs)."""
    seam = _test_seam()
    machine = seam.get("machine") or os.uname().machine
    if machine != "s390x":
        raise InputError(f"{source}: a live system can be dumped only on s390x itself, this machine is {machine}")
    path = seam.get("path") or source
    iomem = seam.get("iomem") or "/proc/iomem"
    try:
        with open(iomem, encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        raise InputError(f"{source}: cannot read {iomem} (the memory map of the live system): "
                         f"{exc.strerror}") from exc
    ranges = iomem_ranges(text)
    if not ranges:
        raise InputError(f"{source}: {iomem} lists no System RAM")
    if ranges[-1][1] <= PAGE_SIZE:
        raise InputError(f"{source}: {iomem} shows no addresses (all 0: run as root)")
    if any(s % PAGE_SIZE or e % PAGE_SIZE for s, e in ranges):
        raise InputError(f"{source}: {iomem} lists System RAM that is not page aligned")
    refused = frozenset(int(a, 0) & ~(PAGE_SIZE - 1) for a in seam.get("efault", "").split(",") if a.strip())
    store = DevMemStore(path, ranges, refused)
    try:
        store.read(0, PAGE_SIZE)
    except MemoryReadError as exc:
        store.close()
        raise InputError(f"{source} is not readable: {exc.reason.removeprefix(store.name + ': ')}") from exc
    real = OverlayStore(store, [(0, BytesStore(LIVE_DUMP_MAGIC, name="live-dump marker"))], name=store.name)
    # no CPU is dumped: a CPU whose prefix is 0 is not (Dump.cpus)
    return Machine(memory=ranges, real=real, environment="file", cpus=[Cpu(0, bytes(512))], vector=False,
                   name=f"live system ({source})", kind=KIND_LIVE)
