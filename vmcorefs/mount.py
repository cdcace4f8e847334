# SPDX-License-Identifier: MIT
"""
Mounting
--------

The ``vmcorefs.mount`` module opens a source, decides the dump, mounts the
tree through :mod:`vmcorefs.fs` (the only module that knows pyfuse3) and serves
it until unmounted or signalled. In the
background mode (the default, like sshfs) the command forks; the child
mounts and tells the parent over a pipe whether the mount is ready, so
``vmcorefs mount`` returns only once the files can be read, or fails with
the child's one-line error.
"""

from __future__ import annotations

import errno
import gc
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
from typing import Callable

import trio

from .errors import InputError, VmcorefsError
from .machine import Machine
from .sources import absolute_source, after_unmount, open_source

__all__ = ("check_mountpoint", "mount", "unmount")

log = logging.getLogger(__name__)


def inputs_text(source: str, machine: Machine) -> str:
    """
    Return the files a mount of *source* reads, one ``DEV INO RDEV SIZE
    MTIME_NS PATH`` line each: the SOURCE file and every file of the
    machine's stores, as they were opened. The daemon gives it as the
    hidden extended attribute ``user.vmcorefs.inputs`` of every file, so
    that ``vmcorefs save MOUNTPOINT OUT`` refuses an OUT the mount reads
    and a resume can tell that the files changed.
    """
    import stat

    lines = []
    if source != "demo":
        try:
            st = os.stat(source)
            lines.append((st.st_dev, st.st_ino, st.st_rdev if stat.S_ISBLK(st.st_mode) else 0, st.st_size,
                          st.st_mtime_ns, source))
        except OSError:
            pass
    for store in machine.files():
        dev, ino, size, mtime = store.identity
        rdev = os.fstat(store.fd).st_rdev if store.block and store.fd >= 0 else 0
        lines.append((dev, ino, rdev, size, mtime, store.path))
    return "".join(f"{' '.join(map(str, ln[:5]))} {ln[5]}\n" for ln in lines)


def check_mountpoint(mountpoint: str) -> None:
    """Raise InputError unless *mountpoint* is an empty-enough directory we can mount on."""
    try:
        st = os.stat(mountpoint)
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise InputError(f"{mountpoint} is a stale vmcorefs mount (its daemon is gone): "
                             f"run 'vmcorefs umount {mountpoint}' first") from None
        if exc.errno == errno.ENOENT:
            raise InputError(f"mount point {mountpoint} does not exist: create it first "
                             f"(mkdir -p {mountpoint})") from None
        raise InputError(f"mount point {mountpoint}: {exc.strerror}") from None
    import stat as stat_
    if not stat_.S_ISDIR(st.st_mode):
        raise InputError(f"mount point {mountpoint} is not a directory")
    if os.path.ismount(mountpoint):
        raise InputError(f"{mountpoint} is already a mount point: run 'vmcorefs umount {mountpoint}' first")


def _fuse_options(allow_other: bool, extra: list[str], writable: bool = False) -> set[str]:
    """Return the FUSE mount options; an option the user gives replaces vmcorefs' default of that name."""
    # read-only unless a file takes writes (the stand-alone /zcore/hsa): the
    # kernel would refuse those with EROFS; every other file refuses on open
    opts = {"fsname": "fsname=vmcorefs", "subtype": "subtype=vmcorefs",
            "default_permissions": "default_permissions"}
    if not writable:
        opts["ro"] = "ro"
    if allow_other:
        opts["allow_other"] = "allow_other"
    for item in extra:
        opts[item.partition("=")[0]] = item
    return set(opts.values())


async def _serve(source: str, mountpoint: str, mode: str, options: dict,
                 ready: Callable[[str | None], None]) -> int:
    from . import fs
    from .dump import Dump
    from .heap import keep_freed_memory
    from .views.root import build_tree

    machine = None
    keep_freed_memory()  # every read makes and frees blocks of up to 1 MiB: no fresh pages for each
    gc.disable()  # a machine of 100,000 ranges makes as many objects, all kept: no collections meanwhile
    try:
        machine = open_source(source, live=options.get("live", False))
        dump = await Dump.open(machine, mode)
        tree = build_tree(dump)
        gc.freeze()  # and none of them is looked at by a collection later
        allow_other = options.get("allow_other", False)
        guest = machine.guest  # a running guest: reads fail once it resumes or its emulator exits
        ops = fs.Operations(tree, file_mode=0o444 if allow_other else 0o400,
                            dir_mode=0o555 if allow_other else 0o500, generation=machine.generation,
                            xattrs={b"user.vmcorefs.inputs": inputs_text(source, machine).encode()},
                            check=guest.check if guest else None,
                            # else every read comes here: memory that changes, or -o direct_io
                            cache=not (machine.memory_changes or options.get("direct_io", False)))
        fs.start(ops, mountpoint, _fuse_options(allow_other, options.get("fuse", []), ops.writable()))
        if guest is not None:
            guest.record(mountpoint)  # 'vmcorefs umount' resumes the guest should this daemon die
    except VmcorefsError as exc:
        if machine is not None:
            machine.close()
        ready(str(exc))
        return 1
    except Exception as exc:  # a bug: the user still gets one line, the log the traceback
        log.exception("cannot mount %s", source)
        if machine is not None:
            machine.close()
        ready(f"internal error: {type(exc).__name__}: {exc} (see the log; please report it)")
        return 70
    finally:
        gc.enable()
    log.info("mounted %s on %s: %s mode, /vmcore %d bytes", source, mountpoint, dump.mode, tree.find("vmcore").size)
    dump.on_change.append(ops.refresh)
    ready(None)
    try:
        async with trio.open_nursery() as nursery:
            async def stop_on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
                    async for signum in signals:
                        log.info("signal %d: unmounting", signum)
                        fs.terminate()
                        return
            nursery.start_soon(stop_on_signal)
            nursery.start_soon(ops.watch)
            await fs.serve()
            nursery.cancel_scope.cancel()
    finally:
        fs.close()
        machine.close()
        log.info("unmounted %s", mountpoint)
    return 0


def mount(source: str, mountpoint: str, *, mode: str = "auto", foreground: bool = False,
          options: dict | None = None, log_file: str | None = None, debug: bool = False) -> int:
    """
    Mount *source* on *mountpoint*; return the exit status.

    In the background mode the call returns once the mount is ready.
    """
    options = options or {}
    source = absolute_source(source)
    if log_file:
        log_file = os.path.abspath(log_file)  # the daemon works from /
        try:
            os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        except OSError as exc:
            raise InputError(f"cannot write the log file {log_file}: {exc.strerror}") from None
    mountpoint = os.path.abspath(mountpoint)
    check_mountpoint(mountpoint)
    level = logging.DEBUG if debug else logging.INFO
    if foreground:
        def ready(err: str | None) -> None:
            if err:
                print(f"vmcorefs: {err}", file=sys.stderr)
        if log_file:  # besides standard error
            handler = logging.FileHandler(log_file)
            handler.setFormatter(logging.Formatter("vmcorefs[%(process)d]: %(levelname)s %(message)s"))
            logging.getLogger().addHandler(handler)
        return trio.run(_serve, source, mountpoint, mode, options, ready)

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(wfd)
        with os.fdopen(rfd, "rb") as r:
            msg = r.read().decode(errors="replace")
        if msg.startswith("OK"):
            return 0
        os.waitpid(pid, 0)
        print(f"vmcorefs: {msg or 'the daemon died before the mount was ready'}", file=sys.stderr)
        return 1
    # child: become a daemon
    os.close(rfd)
    code = 1
    try:
        os.setsid()
        os.chdir("/")
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        if log_file:
            fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(fd, 2)
            os.close(fd)
        else:
            os.dup2(devnull, 2)
        os.close(devnull)
        root = logging.getLogger()
        for h in list(root.handlers):
            root.removeHandler(h)
        handler: logging.Handler
        if log_file:
            handler = logging.StreamHandler(sys.stderr)
        elif os.path.exists("/dev/log"):
            handler = logging.handlers.SysLogHandler("/dev/log")
        else:
            handler = logging.NullHandler()
        handler.setFormatter(logging.Formatter("vmcorefs[%(process)d]: %(levelname)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(level)

        def ready(err: str | None) -> None:
            os.write(wfd, f"OK {os.getpid()}".encode() if err is None else err.encode())
            os.close(wfd)

        code = trio.run(_serve, source, mountpoint, mode, options, ready)
    except BaseException:  # noqa: BLE001 - a daemon must not print tracebacks to nowhere
        logging.getLogger(__name__).exception("vmcorefs daemon failed")
    finally:
        os._exit(code)


def unmount(mountpoint: str, lazy: bool = False) -> int:
    """Unmount a vmcorefs mount (also a stale one); return the exit status."""
    mountpoint = os.path.abspath(mountpoint)
    stale = False
    try:
        os.stat(mountpoint)
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            print(f"vmcorefs: {mountpoint}: {exc.strerror}", file=sys.stderr)
            return 1
        stale = True
    if not stale and not os.path.ismount(mountpoint):
        print(f"vmcorefs: {mountpoint} is not mounted", file=sys.stderr)
        return 1
    cmd = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [mountpoint]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        print("vmcorefs: fusermount3 not found: install the fuse3 package", file=sys.stderr)
        return 1
    if res.returncode != 0:
        err = (res.stderr.strip().splitlines() or ["unknown error"])[-1]
        print(f"vmcorefs: cannot unmount {mountpoint}: {err}"
              + ("" if lazy else f" (files still open? try 'vmcorefs umount --lazy {mountpoint}')"),
              file=sys.stderr)
        return 1
    for note in after_unmount(mountpoint, lazy):  # a guest's daemon resumes it; if it died, here
        print(f"vmcorefs: {note}", file=sys.stderr)
    return 0
