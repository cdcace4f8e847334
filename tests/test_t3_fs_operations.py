# SPDX-License-Identifier: MIT
"""
The FUSE operations without a mount (as s3ql's t3 tests do): vmcorefs.fs's
Operations called directly on a tree, so every handler's contract is
checked where a mount would hide it: only FUSEError leaves a handler, with
the errno the kernel must see; reads give the extent map's bytes.
"""

from __future__ import annotations

import errno
import os
import stat

import pyfuse3
import pytest

from vmcorefs.errors import InputError, MemoryReadError
from vmcorefs.fs import Operations
from vmcorefs.views.extents import BytesExtent, Extent, ExtentFile, LiveText
from vmcorefs.views.tree import Directory, File

DATA = bytes(range(256)) * 64


class Failing(Extent):
    """An extent whose reads fail with *exc*."""

    def __init__(self, length: int, exc: Exception) -> None:
        super().__init__(length)
        self.exc = exc

    async def read(self, offset: int, length: int) -> bytes:
        raise self.exc


async def refuse(data: bytes) -> None:
    raise InputError(f"cannot take {data!r}")


async def crash(data: bytes) -> None:
    raise RuntimeError("a bug")


def tree() -> Directory:
    root = Directory("")
    root.add(File("data", ExtentFile([BytesExtent(DATA)])))
    root.add(File("bad", ExtentFile([BytesExtent(b"ok" * 2048), Failing(4096, MemoryReadError(0x1000, "gone"))])))
    root.add(File("buggy", ExtentFile([Failing(4096, KeyError("bug"))])))
    sub = root.add(Directory("sub"))
    sub.add(File("refusing", ExtentFile([BytesExtent(b"x")]), write=refuse))
    sub.add(File("crashing", ExtentFile([BytesExtent(b"x")]), write=crash))
    return root


async def fuse_error(coro) -> int:
    with pytest.raises(pyfuse3.FUSEError) as exc:
        await coro
    return exc.value.errno


async def lookup(ops: Operations, path: str) -> int:
    inode = pyfuse3.ROOT_INODE
    for part in path.split("/"):
        inode = (await ops.lookup(inode, part.encode())).st_ino
    return inode


async def test_attributes_and_lookup():
    ops = Operations(tree(), uid=1234, gid=5678)
    attr = await ops.getattr(await lookup(ops, "data"))
    assert stat.S_ISREG(attr.st_mode) and stat.S_IMODE(attr.st_mode) == 0o400
    assert (attr.st_size, attr.st_uid, attr.st_gid) == (len(DATA), 1234, 5678)
    sub = await ops.getattr(await lookup(ops, "sub"))
    assert stat.S_ISDIR(sub.st_mode) and stat.S_IMODE(sub.st_mode) == 0o500
    writable = await ops.getattr(await lookup(ops, "sub/refusing"))
    assert stat.S_IMODE(writable.st_mode) == 0o600
    assert (await ops.lookup(sub.st_ino, b"..")).st_ino == pyfuse3.ROOT_INODE
    assert await fuse_error(ops.lookup(pyfuse3.ROOT_INODE, b"nothing")) == errno.ENOENT
    assert await fuse_error(ops.getattr(10_000)) == errno.ENOENT
    assert ops.writable()
    assert not Operations(Directory("", [File("f", ExtentFile([BytesExtent(b"x")]))])).writable()


async def test_reads_give_the_extent_maps_bytes():
    ops = Operations(tree())
    fi = await ops.open(await lookup(ops, "data"), os.O_RDONLY, None)
    assert not fi.direct_io and fi.keep_cache  # fixed content: the kernel's page cache keeps it
    for off, size in ((0, 100), (255, 4097), (len(DATA) - 10, 100), (len(DATA), 10)):
        assert await ops.read(fi.fh, off, size) == DATA[off:off + size]
    await ops.release(fi.fh)
    assert await fuse_error(ops.read(fi.fh, 0, 1)) == errno.EBADF


async def test_page_cache_for_fixed_content_only_and_dropped_when_the_content_changes():
    generation = [0]
    root = tree()
    root.add(File("live", LiveText(lambda: "changes")))
    ops = Operations(root, generation=lambda: generation[0])
    data, bad, live = [await lookup(ops, name) for name in ("data", "bad", "live")]
    fi = await ops.open(live, os.O_RDONLY, None)
    assert fi.direct_io and not fi.keep_cache  # made at every read: every read comes to the daemon
    assert [(await ops.open(i, os.O_RDONLY, None)).keep_cache for i in (data, bad)] == [True, True]
    generation[0] += 1  # a faults file reloaded: each cached file's next open drops its pages, once
    assert [(await ops.open(i, os.O_RDONLY, None)).keep_cache for i in (data, data, bad, bad)] == \
        [False, True, False, True]
    fi = await ops.open(data, os.O_RDONLY, None)
    generation[0] += 1  # noticed by a read: the next opens drop the pages too
    assert await ops.read(fi.fh, 0, 10) == DATA[:10]
    assert [(await ops.open(i, os.O_RDONLY, None)).keep_cache for i in (bad, data, data)] == [False, False, True]


async def test_failed_reads_are_eio_and_the_rest_is_served():
    ops = Operations(tree())
    fi = await ops.open(await lookup(ops, "bad"), os.O_RDONLY, None)
    assert await ops.read(fi.fh, 0, 4096) == b"ok" * 2048
    # a read that needs a bad byte fails whole, never a short count: the
    # kernel would take a short answer to a readahead for the end of the file
    assert await fuse_error(ops.read(fi.fh, 4000, 200)) == errno.EIO
    assert await fuse_error(ops.read(fi.fh, 0, 8192)) == errno.EIO
    buggy = await ops.open(await lookup(ops, "buggy"), os.O_RDONLY, None)
    assert await fuse_error(ops.read(buggy.fh, 0, 10)) == errno.EIO  # a bug is EIO, not a dead handler
    assert await ops.read(fi.fh, 10, 2) == b"ok"


async def test_writes_and_changes_are_refused_with_the_right_errno():
    ops = Operations(tree())
    data = await lookup(ops, "data")
    assert await fuse_error(ops.open(data, os.O_WRONLY, None)) == errno.EACCES
    assert await fuse_error(ops.open(data, os.O_RDONLY | os.O_TRUNC, None)) == errno.EACCES
    assert await fuse_error(ops.open(await lookup(ops, "sub"), os.O_RDONLY, None)) == errno.EISDIR
    assert await fuse_error(ops.opendir(data, None)) == errno.ENOTDIR
    ro = await ops.open(data, os.O_RDONLY, None)
    assert await fuse_error(ops.write(ro.fh, 0, b"x")) == errno.EROFS
    refusing = await ops.open(await lookup(ops, "sub/refusing"), os.O_WRONLY, None)
    assert await fuse_error(ops.write(refusing.fh, 0, b"1")) == errno.EINVAL
    crashing = await ops.open(await lookup(ops, "sub/crashing"), os.O_WRONLY, None)
    assert await fuse_error(ops.write(crashing.fh, 0, b"1")) == errno.EIO
    for call in (ops.setattr(data, None, None, None, None), ops.unlink(pyfuse3.ROOT_INODE, b"data", None),
                 ops.mkdir(pyfuse3.ROOT_INODE, b"d", 0o755, None),
                 ops.create(pyfuse3.ROOT_INODE, b"f", 0o644, os.O_WRONLY, None),
                 ops.rename(pyfuse3.ROOT_INODE, b"data", pyfuse3.ROOT_INODE, b"x", 0, None),
                 ops.setxattr(data, b"user.x", b"1", None)):
        assert await fuse_error(call) == errno.EROFS


async def test_statfs_counts_the_tree():
    ops = Operations(tree())
    st = await ops.statfs(None)
    assert st.f_files == len(ops.nodes) == 7  # the root, 5 files, sub
    assert st.f_blocks == -(-sum(n.attr.st_size for n in ops.nodes.values()) // 4096)
    assert st.f_bfree == st.f_bavail == 0
