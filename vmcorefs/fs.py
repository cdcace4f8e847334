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
    :param xattrs: extended attributes every file and directory has,
        hidden (not listed): what the daemon tells ``vmcorefs save``
    :param check: called before every read of a file other than a live text
        (/meminfo/summary); raises MemoryReadError once the source's memory
        can no longer be trusted (a running guest resumed, QEMU gone)
    """

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, root: Directory, *, uid: int | None = None, gid: int | None = None,
                 file_mode: int = 0o400, dir_mode: int = 0o500, mtime_ns: int | None = None,
                 xattrs: dict[bytes, bytes] | None = None, check: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.xattrs = dict(xattrs or {})
        self.check = check
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.mtime_ns = time.time_ns() if mtime_ns is None else mtime_ns
        self.nodes: dict[int, _Node] = {}
        self._add(root, pyfuse3.ROOT_INODE)
        self.open_files: dict[int, File] = {}
        self._next_fh = 1

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

        def invalidate(inodes: list[int]) -> None:
            for inode in inodes:
                try:
                    pyfuse3.invalidate_inode(inode)
                except OSError:
                    pass  # the kernel never looked it up

        with trio.move_on_after(10):
            await trio.to_thread.run_sync(invalidate, settled, abandon_on_cancel=True)
        with trio.move_on_after(0.1):
            await trio.to_thread.run_sync(invalidate, written, abandon_on_cancel=True)

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
        # direct I/O: every read reaches the daemon with the reader's own range,
        # so an unreadable page fails exactly the reads that need it (a kernel
        # readahead request spanning it would fail innocent neighbours, and a
        # short reply would shrink the file), and nothing stale is served from
        # the page cache after the HSA is released.
        return pyfuse3.FileInfo(fh=fh, direct_io=True)

    async def read(self, fh, off, size):
        f = self.open_files.get(fh)
        if f is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        try:
            if self.check is not None and not isinstance(f.content, LiveText):
                self.check()
            return await f.content.read(off, size)
        except MemoryReadError as exc:
            log.error("read of %s at offset %#x (+%#x) failed: %s", f.name, off, size, exc)
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


async def serve() -> None:
    """Serve requests until unmounted or :func:`terminate` is called."""
    await pyfuse3.main()


def terminate() -> None:
    """Make :func:`serve` return."""
    pyfuse3.terminate()


def close() -> None:
    """Unmount and release the session."""
    pyfuse3.close(unmount=True)
