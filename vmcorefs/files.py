# SPDX-License-Identifier: MIT
"""
Opening what the user names
---------------------------

The ``vmcorefs.files`` module is where every path a user gives (a SOURCE,
a description's ``[store] path`` and ``faults_file``, a CPU-state file) is
opened. :func:`open_input` never blocks and refuses what is not a regular
file (or, where a memory image is expected, a block device): a FIFO would
hang ``open()`` until a writer comes, ``/dev/zero`` would be read without
end. :func:`read_small` reads a small file (a description, a fault file) up
to a limit. Problems are one-line :class:`~vmcorefs.errors.InputError`\\ s
that name the path and say what it is.

:func:`identity` is what identifies a file for as long as its bytes stay
the same: device, inode, size and modification time.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from typing import Callable, Generic, TypeVar

from .errors import InputError

__all__ = ("MAX_SMALL_FILE", "WatchedFile", "describe_mode", "identity", "open_input", "read_small", "stat_input")

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_SMALL_FILE = 16 << 20  # a description or a fault file: text, far below this


def describe_mode(mode: int) -> str:
    """Return what a file of *mode* is, for a message (``a FIFO``, ``a character device``...)."""
    for test, text in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return text
    return "not a regular file"


def os_error_text(path: str, exc: OSError) -> str:
    """Return the one-line reason an open or stat of *path* failed."""
    if exc.errno == errno.ENOENT:
        return f"{path}: no such file"
    if exc.errno == errno.ELOOP:
        return f"{path}: too many levels of symbolic links (a symlink loop?)"
    if exc.errno == errno.ENOTCONN:
        return (f"{path} is on a stale vmcorefs mount (its daemon is gone): run 'vmcorefs umount' on it "
                "and mount again")
    return f"{path}: {exc.strerror}"


def stat_input(path: str, what: str = "file") -> os.stat_result:
    """Return ``os.stat(path)``; raise a one-line InputError (no such file, symlink loop, ...)."""
    try:
        return os.stat(path)
    except OSError as exc:
        raise InputError(f"{what} {os_error_text(path, exc)}" if what else os_error_text(path, exc)) from None
    except ValueError as exc:  # an embedded NUL byte
        raise InputError(f"{what} {path!r}: {exc}") from None


def open_input(path: str, what: str = "file", *, block_ok: bool = False) -> int:
    """
    Return a read-only descriptor of *path*, opened without blocking; raise
    InputError unless it is a regular file (or a block device, if
    *block_ok*). The descriptor is blocking again when returned.

    :param what: what the file is for, at the start of every message
        (``memory image``, ``fault file``)
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise InputError(f"cannot open {what} {os_error_text(path, exc)}") from None
    except ValueError as exc:
        raise InputError(f"cannot open {what} {path!r}: {exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or (block_ok and stat.S_ISBLK(mode))):
            expected = "a regular file or a block device" if block_ok else "a regular file"
            raise InputError(f"{what} {path} is {describe_mode(mode)}, not {expected}")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small(path: str, what: str = "file", limit: int = MAX_SMALL_FILE) -> bytes:
    """Return the contents of the regular file *path* (at most *limit* bytes, else InputError)."""
    fd = open_input(path, what)
    try:
        parts = []
        total = 0
        while True:
            data = os.read(fd, min(1 << 20, limit + 1 - total))
            if not data:
                break
            parts.append(data)
            total += len(data)
            if total > limit:
                raise InputError(f"{what} {path} is larger than {limit} bytes: not a {what}")
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return b"".join(parts)


def identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """Return ``(device, inode, size, mtime_ns)``: what tells whether a file is still the same bytes."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class WatchedFile(Generic[T]):
    """
    A small file that may change while mounted (a faults file switched on
    and off), parsed again whenever its modification time changes.

    :param parse: ``parse(path) -> value``; raises InputError for a bad file
    :param empty: the value while there is no file
    """

    def __init__(self, path: str, parse: Callable[[str], T], empty: T) -> None:
        self.path = path
        self.parse = parse
        self.empty = empty
        self.value = empty
        self.version = 0  # counts the changes taken
        self._mtime: int | None | object = _UNSEEN

    def current(self) -> T:
        """
        Return the file's value now. A bad file raises the first time; later
        (it may be half written) the previous value stays, with an error
        logged, until the file changes again.
        """
        try:
            mtime: int | None = os.stat(self.path).st_mtime_ns
        except OSError:
            mtime = None
        if mtime == self._mtime:
            return self.value
        first = self._mtime is _UNSEEN
        self._mtime = mtime
        try:
            value = self.empty if mtime is None else self.parse(self.path)
        except InputError as exc:
            if first:
                raise
            log.error("%s; keeping what it said before", exc)
            return self.value
        self.value = value
        self.version += 1
        return value


_UNSEEN = object()
