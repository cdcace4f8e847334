# SPDX-License-Identifier: MIT
"""
Sources
-------

The ``vmcorefs.sources`` package is the one registry of what a SOURCE can
be (like ratarmount's backends or zgetdump's dfi list): each
:class:`SourceKind` says how it is recognised and how it opens as a
:class:`~vmcorefs.machine.Machine`. ``mount``, ``save``, ``info`` and
``check`` all open their SOURCE with :func:`open_source`; ``umount``
asks every kind what a mount of it left to finish (:func:`after_unmount`).

Kinds named by a prefix (``demo``, ``qmp:PATH``) or a name (``/dev/mem``,
:mod:`.devmem`: a live system) are matched on the SOURCE text; files by
their first bytes, in registry order, the machine
description (TOML text) last. The modules: :mod:`.s390dump` (the s390 dump
format), :mod:`.elfcore` (kernel vmcores, QEMU ELF dumps) with
:mod:`.elfread` (ELF files read with pyelftools) and :mod:`.elfnotes`
(CPU states from notes), :mod:`.kdumpfile` with
:mod:`.kdumpio` (makedumpfile's kdump-compressed format, flattened and
split, and QEMU's kdump formats), :mod:`.raw` (raw memory images),
:mod:`.qemu` with :mod:`.qmp` (a running QEMU guest's RAM, in place);
descriptions are :mod:`vmcorefs.description`.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import Callable

from ..errors import InputError
from ..layouts import ELFMAG
from ..machine import Machine

__all__ = ("HEAD_SIZE", "KINDS", "SourceKind", "absolute_source", "after_unmount", "find_kind", "open_source")

HEAD_SIZE = 4096  # bytes of a file its kind is recognised by


@dataclasses.dataclass(frozen=True)
class SourceKind:
    """
    One kind of SOURCE.

    :param name: what it is, for messages (``s390 dump``)
    :param expected: how to recognise it, for the message naming what was expected
    :param open: ``open(source) -> Machine``
    :param matches_name: recognised by the SOURCE text itself (``demo``,
        a ``prefix:``), before any file is looked at
    :param matches_head: recognised by a file's first :data:`HEAD_SIZE` bytes
    :param live: it can be opened live (``open(source, live=True)``: a
        running guest, not stopped)
    :param absolute: a name-matched SOURCE with its path made absolute
        (the daemon works from /); None: the text as it is
    :param after_unmount: ``after_unmount(mountpoint, wait) -> line or
        None``, run by ``vmcorefs umount`` once *mountpoint* is unmounted,
        whatever it held: what a mount of this kind leaves to finish (a
        guest its daemon stopped is resumed), a line to tell the user;
        *wait* 0 for a lazy unmount
    """

    name: str
    expected: str
    open: Callable[[str], Machine]
    matches_name: Callable[[str], bool] | None = None
    matches_head: Callable[[bytes], bool] | None = None
    live: bool = False
    absolute: Callable[[str], str] | None = None
    after_unmount: Callable[[str, float], str | None] | None = None


def _demo(source: str) -> Machine:
    from ..demo import demo_machine
    return demo_machine()


def _qmp(source: str, live: bool = False) -> Machine:
    from .qemu import open_qmp
    return open_qmp(source, live)


def _qmp_absolute(source: str) -> str:
    from .qemu import absolute
    return absolute(source)


def _qmp_after_unmount(mountpoint: str, wait: float) -> str | None:
    from .qemu import finish_unmount
    return finish_unmount(mountpoint, wait)


def _devmem(source: str) -> Machine:
    from .devmem import open_devmem
    return open_devmem(source)


def _is_devmem(source: str) -> bool:
    from .devmem import is_devmem
    return is_devmem(source)


def _s390dump(source: str) -> Machine:
    from .s390dump import open_s390_dump
    return open_s390_dump(source)


def _elfcore(source: str) -> Machine:
    from .elfcore import open_elf_core
    return open_elf_core(source)


def _kdump(source: str) -> Machine:
    from .kdumpfile import open_kdump
    return open_kdump(source)


def _raw(source: str) -> Machine:
    from .raw import open_raw_image
    return open_raw_image(source)


def _description(source: str) -> Machine:
    from ..description import load
    return load(source)


def _is_s390dump(head: bytes) -> bool:
    from .s390dump import MAGIC_BYTES
    return head[:8] in MAGIC_BYTES


def _is_raw(head: bytes) -> bool:
    # binary, a whole lowcore page, z/Architecture mode (byte 0xA3 = 1)
    return b"\0" in head and len(head) == HEAD_SIZE and head[0xA3] == 1


def _is_text(head: bytes) -> bool:
    return b"\0" not in head


KINDS: list[SourceKind] = [
    SourceKind("demo machine", "'demo'", _demo, matches_name=lambda s: s == "demo"),
    SourceKind("QEMU guest", "'qmp:PATH' (a running QEMU's QMP socket)", _qmp,
               matches_name=lambda s: s.startswith("qmp:"), live=True, absolute=_qmp_absolute,
               after_unmount=_qmp_after_unmount),
    SourceKind("live system", "/dev/mem of a running s390x system", _devmem, matches_name=_is_devmem),
    SourceKind("s390 dump", "an s390 dump (magic 0xa8190173618f23fd)", _s390dump, matches_head=_is_s390dump),
    SourceKind("ELF core", "an s390x ELF core", _elfcore, matches_head=lambda h: h.startswith(ELFMAG)),
    SourceKind("kdump-compressed dump", "a kdump-compressed dump (makedumpfile, QEMU; 'KDUMP   ')", _kdump,
               matches_head=lambda h: h.startswith(b"KDUMP   ")),
    SourceKind("flattened kdump-compressed dump", "a flattened dump (makedumpfile -F)", _kdump,
               matches_head=lambda h: h.startswith(b"makedumpfile\0")),
    SourceKind("raw memory image", "a raw s390x memory image (z/Architecture lowcore: byte 0xA3 = 1)", _raw,
               matches_head=_is_raw),
    SourceKind("machine description", "a machine description (TOML)", _description, matches_head=_is_text),
]


def _read_head(source: str) -> bytes:
    """The first bytes of the file *source*: never blocking, never of a FIFO or device but a disk."""
    from ..files import describe_mode, open_input, stat_input
    if source == "/proc/vmcore" and not os.path.exists(source):
        raise InputError(f"{source}: no such file (only a kdump capture kernel has it)")
    st = stat_input(source, "")
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{source} is a directory, not a machine description or dump")
    if stat.S_ISFIFO(st.st_mode):
        raise InputError(f"{source} is a FIFO, not a machine description or dump file: a SOURCE must be a "
                         "seekable file (for a stream through a pipe or FIFO, save it to a file first)")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise InputError(f"{source} is {describe_mode(st.st_mode)}, not a machine description or dump file")
    fd = open_input(source, "source", block_ok=True)
    try:
        return os.pread(fd, HEAD_SIZE, 0)
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def find_kind(source: str) -> SourceKind:
    """
    Return the kind of *source*.

    :raises InputError: no such file, or not a kind vmcorefs knows (the
        message names every kind it expected)
    """
    for kind in KINDS:
        if kind.matches_name is not None and kind.matches_name(source):
            return kind
    head = _read_head(source)
    for kind in KINDS:
        if kind.matches_head is not None and kind.matches_head(head):
            return kind
    files = [k for k in KINDS if k.matches_head is not None]
    expected = [k.expected for k in files[-1:] + files[:-1]]  # the fallback, text, first
    raise InputError(f"{source} is not a vmcorefs source: expected {', '.join(expected[:-1])}, or {expected[-1]}")


def open_source(source: str, live: bool = False) -> Machine:
    """
    Return the machine *source* names (see the module docs).

    :param live: open a running guest without stopping it
    :raises InputError: *live* for a kind that is not a running guest
    """
    kind = find_kind(source)
    if not live:
        return kind.open(source)
    if not kind.live:
        raise InputError(f"'live' applies to a running guest (qmp:PATH), not to {source} ({kind.name})")
    return kind.open(source, live=True)


def absolute_source(source: str) -> str:
    """*source* with its path made absolute: a file's, a name-matched kind's as it says."""
    for kind in KINDS:
        if kind.matches_name is not None and kind.matches_name(source):
            return kind.absolute(source) if kind.absolute is not None else source
    return os.path.abspath(source)


def after_unmount(mountpoint: str, lazy: bool = False) -> list[str]:
    """Finish what the mount at *mountpoint*, now unmounted, left to do (:attr:`SourceKind.after_unmount`)."""
    notes = (kind.after_unmount(mountpoint, 0 if lazy else 15) for kind in KINDS if kind.after_unmount is not None)
    return [note for note in notes if note]
