# SPDX-License-Identifier: MIT
"""
The FUSE layer
--------------

The ``vmcorefs.fs`` module is the only one that imports :mod:`pyfuse3`. Its
:class:`Operations` serves a :class:`~vmcorefs.views.tree.Directory` tree,
read-only: inodes are numbered once at mount, attributes precomputed, reads
delegated to each file's extent map. Domain errors become errno values here
and only here: a :class:`~vmcorefs.errors.MemoryReadError` is logged with
its address and answered with ``EIO``; any unexpected exception is logged
with its traceback and answered with ``EIO`` too, so one bad read never
stops the daemon.

The kernel's page cache keeps what was read of the files whose content is
fixed (extent maps): a re-read never reaches the daemon. That is safe
because a read is answered whole or with ``EIO``, never short: the kernel
marks the pages of a failed request not up to date and reads them again one
at a time, so only the unreadable page fails (``fuse_readahead`` /
``fuse_read_folio`` in ``fs/fuse/file.c``), and a short answer, which the
kernel takes for the end of the file, never comes. Where the content does
change, the cached pages are dropped: after an HSA release
(:meth:`Operations.refresh`) and when the *generation* of the content
changes (a faults file reloaded, the source image changed), noticed at the
next open or read that reaches the daemon, or within half a second
(:meth:`Operations.watch`); an open drops the file's pages before it
returns, so a file opened after a change never shows what was cached
before it. Files made at every read (:class:`LiveText`) are read with
direct I/O. A second short read that reaches the daemon in the same aligned
64 KiB, among its last 256 short reads, brings that block into the cache
(FUSE_NOTIFY_STORE): crash and drgn read scattered words and pages, most of
them near each other and soon after.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from typing import Callable

import pyfuse3
import trio

from .errors import InputError, MemoryReadError, VmcorefsError
from .views.extents import LiveText
from .views.tree import Directory, File

__all__ = ("Operations", "close", "serve", "start", "terminate")

log = logging.getLogger(__name__)

BLKSIZE = 1 << 20  # readers that honour st_blksize ask for 1 MiB
READAHEAD_KB = 1024  # the kernel reads ahead this much (its default for FUSE: 128 KiB)
PREFETCH = 64 << 10  # a smaller read that reaches the daemon brings the aligned block around it into the cache
MISSES = 256  # ... if it is the second in that block among the last this many short reads


class _Node:
    __slots__ = ("inode", "parent", "obj", "attr", "names")

    def __init__(self, inode: int, parent: int, obj: File | Directory) -> None:
        self.inode = inode
        self.parent = parent
        self.obj = obj
        self.names: dict[bytes, int] = {}
        self.attr = pyfuse3.EntryAttributes()


class Operations(pyfuse3.Operations):
    """
    Serve *root* read-only.

    :param root: the tree
    :param uid: owner of every file (the mounting user)
    :param gid: group of every file
    :param file_mode: permission bits of files (0o400: the owner only)
    :param dir_mode: permission bits of directories (0o500)
    :param generation: returns a number that changes when the content
        changed without an HSA release (a faults file reloaded, the source
        changed); None: it never does
    :param xattrs: extended attributes every file and directory has,
        hidden (not listed): what the daemon tells ``vmcorefs save``
    :param cache: let the kernel keep what was read of files of fixed
        content (False: a live source whose memory changes as it is read)
    :param check: called before every read of a file other than a live text
        (/meminfo/summary); raises MemoryReadError once the source's memory
        can no longer be trusted (a running guest resumed, QEMU gone)
    """

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, root: Directory, *, uid: int | None = None, gid: int | None = None,
                 file_mode: int = 0o400, dir_mode: int = 0o500, mtime_ns: int | None = None,
                 generation: Callable[[], int] | None = None, xattrs: dict[bytes, bytes] | None = None,
                 check: Callable[[], None] | None = None, cache: bool = True) -> None:
        super().__init__()
        self.xattrs = dict(xattrs or {})
        self.check = check
        self.cache = cache
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.mtime_ns = time.time_ns() if mtime_ns is None else mtime_ns
        self.nodes: dict[int, _Node] = {}
        self._add(root, pyfuse3.ROOT_INODE)
        self.open_files: dict[int, File] = {}
        self._next_fh = 1
        self.generation = generation
        self._generation = generation() if generation is not None else 0
        self._stale: set[int] = set()  # cached inodes whose pages their next open drops
        self.readahead_file: str | None = None  # the mount's read_ahead_kb in sysfs, set at the first open
        self._inodes: dict[int, int] = {}  # file handle -> inode
        self._epoch = 0  # changes whenever cached pages must go: a prefetch read before then is not stored
        self._store_lock: trio.Lock | None = None  # held while prefetched pages are stored
        self._fetched: dict[tuple[int, int], None] = {}  # (inode, block) prefetched lately
        self._missed: dict[tuple[int, int], None] = {}  # (inode, block) of the last MISSES short reads, oldest first

    def _add(self, obj: File | Directory, parent: int) -> int:
        inode = pyfuse3.ROOT_INODE if not self.nodes else max(self.nodes) + 1
        node = _Node(inode, parent if self.nodes else inode, obj)
        self.nodes[inode] = node
        a = node.attr
        a.st_ino = inode
        a.st_uid, a.st_gid = self.uid, self.gid
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self.mtime_ns
        a.entry_timeout = a.attr_timeout = 3600
        a.st_blksize = BLKSIZE
        if isinstance(obj, Directory):
            a.st_mode = stat.S_IFDIR | self.dir_mode
            a.st_nlink = 2 + sum(isinstance(c, Directory) for c in obj.children)
            for child in obj.children:
                node.names[child.name.encode()] = self._add(child, inode)
        else:
            mode = self.file_mode
            if obj.write is not None:
                mode |= (self.file_mode >> 1) & 0o200  # owner-writable where owner-readable
            a.st_mode = stat.S_IFREG | mode
            a.st_nlink = 1
            a.st_size = obj.size
            a.st_blocks = (obj.size + 511) // 512
        return inode

    def writable(self) -> bool:
        """Whether a file of the tree takes writes (the mount cannot then be ``ro``)."""
        return any(isinstance(n.obj, File) and n.obj.write is not None for n in self.nodes.values())

    async def refresh(self) -> None:
        """
        The content changed (the HSA was released): take the files' new sizes
        and let the kernel forget what it cached, so reads come here again.
        From threads, as the kernel may wait for page locks of reads being
        served; the written file last and not waited for long: its page stays
        locked until its write is answered.
        """
        settled, written = [], []
        for inode, node in self.nodes.items():
            if isinstance(node.obj, File):
                node.attr.st_size = node.obj.size
                node.attr.st_blocks = (node.obj.size + 511) // 512
                (written if node.obj.write is not None else settled).append(inode)

        async with self._storing():
            self._new_epoch()
        with trio.move_on_after(10):
            await trio.to_thread.run_sync(_invalidate, settled, abandon_on_cancel=True)
        with trio.move_on_after(0.1):
            await trio.to_thread.run_sync(_invalidate, written, abandon_on_cancel=True)

    def cached(self, inode: int) -> bool:
        """Whether the kernel may keep the pages of *inode* (a file whose content is fixed)."""
        node = self.nodes[inode]
        return self.cache and isinstance(node.obj, File) and not isinstance(node.obj.content, LiveText)

    def _check_generation(self) -> bool:
        """Take a new content generation: every cached file becomes stale; return whether it changed."""
        if self.generation is None and self.check is None:
            return False
        gen = self.generation() if self.generation is not None else 0
        if self.check is not None:
            try:
                self.check()
            except VmcorefsError:  # the memory can no longer be trusted (a running guest resumed)
                gen = -1 - gen
        if gen == self._generation:
            return False
        self._generation = gen
        self._new_epoch()
        self._stale = {inode for inode in self.nodes if self.cached(inode)}
        log.info("the content changed (content generation %d): dropping the cached pages", gen)
        return True

    async def watch(self, interval: float = 0.5) -> None:
        """
        Look at the content generation every *interval* seconds and drop
        the cached pages when it changed, for files held open long (an
        open or a read that reaches the daemon notices it at once).
        """
        if self.generation is None and self.check is None:
            return
        while True:
            await trio.sleep(interval)
            if self._check_generation():
                await self._drop_stale()

    async def _drop_stale(self) -> None:
        """Drop the pages of the stale files (from a thread: the kernel waits for pages being read)."""
        inodes = sorted(self._stale)  # their next opens drop them again, in case this comes late
        try:
            async with self._storing():  # after any store of pages read before the change
                await trio.to_thread.run_sync(_invalidate, inodes, abandon_on_cancel=True)
        except Exception:  # may run as a background task: it must not stop the daemon
            log.exception("cannot drop the kernel's cached pages of inodes %s", inodes)

    def _new_epoch(self) -> None:
        self._epoch += 1
        self._fetched.clear()
        self._missed.clear()

    def _storing(self) -> trio.Lock:
        if self._store_lock is None:
            self._store_lock = trio.Lock()
        return self._store_lock

    def _want_prefetch(self, inode: int, f: File, off: int, n: int) -> None:
        """
        At the second read shorter than :data:`PREFETCH` that reaches the
        daemon in the same aligned block, within the last :data:`MISSES`
        such reads (crash and drgn read 8 bytes to a page at scattered
        places, most near each other, and soon after), read that block and
        store it in the kernel's cache (FUSE_NOTIFY_STORE): the reader's
        next reads nearby need no round trip, while reads spread wide do not
        pay for blocks nobody reads again (random reads over a large file
        rarely meet an earlier block among the last few hundred). A block
        with a page that cannot be read is not stored (that page fails when
        it is read); nothing read before a change (:meth:`refresh`, a new
        generation) is stored after it.
        """
        block = off - off % PREFETCH
        key = (inode, block)
        if n >= PREFETCH or key in self._fetched or not self.cached(inode):
            return
        if key not in self._missed:
            if len(self._missed) >= MISSES:
                del self._missed[next(iter(self._missed))]
            self._missed[key] = None
            return
        del self._missed[key]
        if len(self._fetched) >= 4096:
            self._fetched.clear()
        self._fetched[key] = None
        end = min(block + PREFETCH, f.size)
        skip = (off - off % 4096, min(end, off + n + (-(off + n)) % 4096))  # the reader's own pages, locked now
        trio.lowlevel.spawn_system_task(self._prefetch, inode, f, block, end, skip, self._epoch)

    async def _prefetch(self, inode: int, f: File, start: int, end: int, skip: tuple[int, int], epoch: int) -> None:
        try:
            data = await f.content.read(start, end - start)
        except Exception:  # noqa: BLE001 - the reader's own read tells
            return
        pieces = [(start, data[:skip[0] - start]), (skip[1], data[skip[1] - start:])]
        try:
            async with self._storing():
                if epoch == self._epoch:
                    await trio.to_thread.run_sync(_store, inode, pieces, abandon_on_cancel=True)
        except Exception:  # a background task: whatever fails here must not stop the daemon
            log.exception("cannot store a prefetched block of inode %d at %#x in the kernel's cache", inode, start)

    def _node(self, inode: int) -> _Node:
        node = self.nodes.get(inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    async def getattr(self, inode, ctx=None):
        return self._node(inode).attr

    async def lookup(self, parent_inode, name, ctx=None):
        node = self._node(parent_inode)
        if name == b".":
            return node.attr
        if name == b"..":
            return self.nodes[node.parent].attr
        child = node.names.get(name)
        if child is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self.nodes[child].attr

    async def opendir(self, inode, ctx):
        node = self._node(inode)
        if not isinstance(node.obj, Directory):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh, start_id, token):
        node = self._node(fh)
        entries = list(node.names.items())
        for i in range(start_id, len(entries)):
            name, inode = entries[i]
            if not pyfuse3.readdir_reply(token, name, self.nodes[inode].attr, i + 1):
                break

    async def releasedir(self, fh):
        pass

    async def open(self, inode, flags, ctx):
        node = self._node(inode)
        if not isinstance(node.obj, File):
            raise pyfuse3.FUSEError(errno.EISDIR)
        accmode = flags & os.O_ACCMODE
        if accmode != os.O_RDONLY and node.obj.write is None:
            raise pyfuse3.FUSEError(errno.EACCES)
        if flags & os.O_TRUNC and node.obj.write is None:
            raise pyfuse3.FUSEError(errno.EACCES)
        fh = self._next_fh
        self._next_fh += 1
        self.open_files[fh] = node.obj
        self._inodes[fh] = inode
        if not self.cached(inode):  # made at every read: each read comes here
            return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)
        if self.readahead_file is not None:
            _set_readahead(self.readahead_file)
            self.readahead_file = None
        # the page cache: answered whole or with EIO (see the module docs); a
        # file whose content changed since the kernel cached it is opened
        # with keep_cache off, and the kernel drops its pages before the
        # open returns
        self._check_generation()
        keep = inode not in self._stale
        if not keep:
            self._stale.discard(inode)
            async with self._storing():  # a store of pages read before the change ends first
                pass
        return pyfuse3.FileInfo(fh=fh, direct_io=False, keep_cache=keep)

    async def read(self, fh, off, size):
        f = self.open_files.get(fh)
        if f is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        try:
            if self.check is not None and not isinstance(f.content, LiveText):
                self.check()
            data = await f.content.read(off, size)
            if self._check_generation():
                # noticed while reading: the open files' pages go now, not
                # waited for (the kernel holds this read's pages locked)
                trio.lowlevel.spawn_system_task(self._drop_stale)
            elif PREFETCH:
                self._want_prefetch(self._inodes[fh], f, off, len(data))
            return data
        except MemoryReadError as exc:
            log.error("read of %s at offset %#x (+%#x) failed: %s", f.name, off, size, exc)
            if self._check_generation():  # the image changed, a running guest resumed
                trio.lowlevel.spawn_system_task(self._drop_stale)
            raise pyfuse3.FUSEError(errno.EIO) from exc
        except VmcorefsError as exc:
            log.error("read of %s at offset %#x failed: %s", f.name, off, exc)
            raise pyfuse3.FUSEError(errno.EIO) from exc
        except Exception as exc:  # never leave a request unanswered
            log.exception("unexpected error reading %s at offset %#x", f.name, off)
            raise pyfuse3.FUSEError(errno.EIO) from exc

    async def write(self, fh, off, buf):
        f = self.open_files.get(fh)
        if f is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        if f.write is None:
            raise pyfuse3.FUSEError(errno.EROFS)
        if off != 0:
            # a file that takes writes takes them whole, at its start: as
            # zcore_hsa_write(), which answers EPIPE for any other position
            log.error("write to %s at offset %#x refused: only a write at offset 0 counts", f.name, off)
            raise pyfuse3.FUSEError(errno.EPIPE)
        try:
            await f.write(bytes(buf))
        except VmcorefsError as exc:
            log.error("write to %s refused: %s", f.name, exc)
            raise pyfuse3.FUSEError(errno.EINVAL) from exc
        except Exception as exc:  # only FUSEError may leave a handler
            log.exception("unexpected error writing %s", f.name)
            raise pyfuse3.FUSEError(errno.EIO) from exc
        return len(buf)

    async def release(self, fh):
        self.open_files.pop(fh, None)
        self._inodes.pop(fh, None)

    async def statfs(self, ctx):
        st = pyfuse3.StatvfsData()
        st.f_bsize = st.f_frsize = 4096
        total = sum(n.attr.st_size for n in self.nodes.values())
        st.f_blocks = (total + 4095) // 4096
        st.f_bfree = st.f_bavail = 0
        st.f_files = len(self.nodes)
        st.f_ffree = st.f_favail = 0
        st.f_namemax = 255
        return st

    async def setattr(self, inode, attr, fields, fh, ctx):
        raise pyfuse3.FUSEError(errno.EROFS)

    # The tree is fixed: nothing is created, removed, renamed or linked, also
    # when the mount is not "ro" (a stand-alone dump's /zcore/hsa takes writes).
    async def create(self, parent_inode, name, mode, flags, ctx):
        raise pyfuse3.FUSEError(errno.EROFS)

    async def mkdir(self, parent_inode, name, mode, ctx):
        raise pyfuse3.FUSEError(errno.EROFS)

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        raise pyfuse3.FUSEError(errno.EROFS)

    async def symlink(self, parent_inode, name, target, ctx):
        raise pyfuse3.FUSEError(errno.EROFS)

    async def link(self, inode, new_parent_inode, new_name, ctx):
        raise pyfuse3.FUSEError(errno.EROFS)

    async def unlink(self, parent_inode, name, ctx):
        raise pyfuse3.FUSEError(errno.EROFS)

    async def rmdir(self, parent_inode, name, ctx):
        raise pyfuse3.FUSEError(errno.EROFS)

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        raise pyfuse3.FUSEError(errno.EROFS)

    async def getxattr(self, inode, name, ctx):
        self._node(inode)
        value = self.xattrs.get(name)
        if value is None:
            raise pyfuse3.FUSEError(errno.ENODATA)
        return value

    async def listxattr(self, inode, ctx):
        self._node(inode)
        return []  # hidden: for vmcorefs save, not for cp -a or tar

    async def setxattr(self, inode, name, value, ctx):
        raise pyfuse3.FUSEError(errno.EROFS)

    async def removexattr(self, inode, name, ctx):
        raise pyfuse3.FUSEError(errno.EROFS)


def _set_readahead(path: str) -> None:
    """
    Let the kernel read ahead :data:`READAHEAD_KB` (in requests of up to
    1 MiB): a sequential reader then finds the next pages read while it
    copies. After the mount's INIT (which sets 128 KiB), so at the first
    open; only root may, others keep the kernel's default.
    """
    try:
        with open(path, "w") as f:
            f.write(str(READAHEAD_KB))
    except OSError as exc:
        log.debug("cannot set %s: %s", path, exc.strerror)


def _bdi_readahead_file(mountpoint: str) -> str | None:
    """Return the sysfs read_ahead_kb file of the mount on *mountpoint* (from /proc/self/mountinfo, not stat)."""
    escaped = os.path.abspath(mountpoint).replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011") \
        .replace("\n", "\\012")
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):  # the newest mount on that point
        fields = line.split()
        if len(fields) > 4 and fields[4] == escaped:
            return f"/sys/class/bdi/{fields[2]}/read_ahead_kb"
    return None


def _store(inode: int, pieces: list[tuple[int, bytes]]) -> None:
    """Put *pieces* (offset, bytes) of *inode* into the kernel's page cache."""
    for offset, data in pieces:
        if data:
            try:
                pyfuse3.notify_store(inode, offset, data)
            except OSError:
                pass  # the kernel dropped the inode meanwhile


def _invalidate(inodes: list[int]) -> None:
    """Let the kernel forget the attributes and every cached page of *inodes*."""
    for inode in inodes:
        try:
            pyfuse3.invalidate_inode(inode)  # offset 0, length 0: all pages
        except OSError:
            pass  # the kernel never looked it up


# --------------------------------------------------------------------------
# the FUSE session


def start(ops: Operations, mountpoint: str, options: set[str]) -> None:
    """
    Mount *ops* on *mountpoint* with the FUSE *options*.

    :raises InputError: the kernel refused the mount
    """
    try:
        pyfuse3.init(ops, mountpoint, options)
    except RuntimeError as exc:
        raise InputError(f"cannot mount on {mountpoint}: {exc} (is fuse3 installed and /dev/fuse usable?)") from exc
    ops.readahead_file = _bdi_readahead_file(mountpoint)


async def serve() -> None:
    """Serve requests until unmounted or :func:`terminate` is called."""
    await pyfuse3.main()


def terminate() -> None:
    """Make :func:`serve` return."""
    pyfuse3.terminate()


def close() -> None:
    """Unmount and release the session."""
    pyfuse3.close(unmount=True)
