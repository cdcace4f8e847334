# SPDX-License-Identifier: MIT
"""
The resume state of ``vmcorefs save``: ``OUT.vmcorefs-partial``
(:class:`State`), and what identifies the source in it
(:func:`source_identity`, checked by :func:`check_identity` before a
resume continues).
"""

from __future__ import annotations

import hashlib
import os

from ..errors import InputError
from ..files import read_small
from .base import PAGE, NotResumable
from .source import Source

__all__ = ("STATE_MAGIC", "State", "check_identity", "sample_offsets", "source_identity", "state_path_for")

STATE_MAGIC = "vmcorefs-partial 2"  # 2: with the source's identity (input and sample lines)


def state_path_for(out: str) -> str:
    """Return the default resume state file of the output *out*."""
    return out + ".vmcorefs-partial"


class State:
    """
    ``OUT.vmcorefs-partial``: a header, then one line per chunk that reached
    the output, ``done INDEX SHA256`` with the SHA-256 of the dump from 0 to
    the end of that chunk. Appended to only; a torn last line is ignored.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.size = 0
        self.chunk = 0
        self.checksum = True  # False: --no-sha256, the lines hold "-"
        self.digests: list[str] = []
        self.identity: list[str] = []  # "input ..." and "sample ..." lines: see source_identity

    @classmethod
    def load(cls, path: str) -> "State | None":
        if not os.path.lexists(path):
            return None
        try:
            text = read_small(path, "resume state file", limit=1 << 30).decode("ascii")
        except InputError as exc:
            raise InputError(f"{exc}: remove it, or give another --state") from None
        except UnicodeDecodeError as exc:
            raise NotResumable(f"cannot read {path}: {exc}: remove it, or run again with --restart") from None
        self = cls(path)
        lines = text.split("\n")
        if not text.endswith("\n"):
            lines = lines[:-1]  # torn last line: the chunk it names is redone
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        try:
            if lines and lines[0].startswith("vmcorefs-partial ") and lines[0] != STATE_MAGIC:
                raise ValueError(f"written by another version of vmcorefs ({lines[0]!r}, this one writes "
                                 f"{STATE_MAGIC!r})")
            if not lines or lines[0] != STATE_MAGIC:
                raise ValueError("not a vmcorefs partial-save state file")
            self.identity = [ln for ln in lines[1:] if ln.startswith(("input ", "sample "))]
            fields = dict(ln.split(" ", 1) for ln in lines[1:] if not ln.startswith(("done ", "input ", "sample ")))
            self.size = int(fields["size"])
            self.chunk = int(fields["chunk"])
            self.checksum = fields.get("checksum", "sha256") == "sha256"
            for ln in lines[1:]:
                if ln.startswith("done "):
                    _, index, digest = ln.split(" ")
                    if int(index) != len(self.digests):
                        raise ValueError(f"bad line {ln!r}")
                    if self.checksum:
                        if len(digest) != 64:
                            raise ValueError(f"bad line {ln!r}")
                        int(digest, 16)
                    elif digest != "-":
                        raise ValueError(f"bad line {ln!r}")
                    self.digests.append(digest)
            if self.chunk <= 0 or self.chunk % PAGE or self.size <= 0:
                raise ValueError("bad size or chunk")
        except (ValueError, KeyError) as exc:
            raise NotResumable(f"{path} is damaged ({exc}): run again with --restart to start over") from None
        return self

    @property
    def done(self) -> int:
        return min(len(self.digests) * self.chunk, self.size)

    def create(self, size: int, chunk: int, out: str, source: str, checksum: bool = True,
               identity: list[str] | None = None) -> None:
        self.size, self.chunk, self.digests, self.checksum = size, chunk, [], checksum
        self.identity = list(identity or [])
        text = (f"# vmcorefs save: {out} is incomplete; run the same 'vmcorefs save' again to resume\n"
                f"{STATE_MAGIC}\nsize {size}\nchunk {chunk}\nchecksum {'sha256' if checksum else 'none'}\n"
                f"source {source}\nout {out}\n" + "".join(f"{ln}\n" for ln in self.identity))
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self.open_append()

    def open_append(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def record(self, index: int, digest: str, samples: list[str] = ()) -> None:
        """Record that chunk *index* is on the disk, with the ``sample`` lines of pages in it."""
        os.write(self.fd, "".join(f"{ln}\n" for ln in [*samples, f"done {index} {digest}"]).encode())
        self.identity += samples
        self.digests.append(digest)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def remove(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


SAMPLES = 16  # pages spread over a dump file whose SHA-256 identify it for a resume


def sample_offsets(size: int) -> list[int]:
    """Return the offsets of the :data:`SAMPLES` pages spread over a dump file of *size* bytes."""
    return sorted({(size * (2 * i + 1) // (2 * SAMPLES)) & ~(PAGE - 1) for i in range(SAMPLES)})


def source_identity(src: Source) -> list[str]:
    """
    Return the lines of the state file that identify the source's files,
    checked before a resume continues: ``input DEV INO SIZE MTIME_NS PATH``
    for the SOURCE file and every file a machine reads, or that a vmcorefs
    mount says its daemon reads. A dump file whose origin cannot be named
    (``/proc/vmcore``, a mount's ``vmcore``) is identified by ``sample
    OFFSET SHA256`` lines too (also a machine on a block device, whose
    modification time says nothing of its contents), recorded as the pages
    at :func:`sample_offsets` are saved (see :meth:`~vmcorefs.save.pipeline.Saver.save_chunk`).
    """
    return [f"input {dev} {ino} {size} {mtime} {path}" for dev, ino, size, mtime, path in src.identity()]


async def check_identity(src: Source, state: "State", out_path: str) -> None:
    """Raise :class:`NotResumable` unless the source is what *state* recorded when the save began."""
    now = source_identity(src)
    for recorded in state.identity:
        kind, _, rest = recorded.partition(" ")
        if recorded in now:
            continue
        if kind == "sample":
            offset, digest = rest.split(" ")
            offset = int(offset)
            data = await src.read(offset, min(PAGE, src.size - offset))
            if hashlib.sha256(data).hexdigest() == digest:
                continue
        if kind == "input":
            dev, ino, size, mtime, path = rest.split(" ", 4)
            current = next((ln for ln in now if ln.startswith("input ") and ln.split(" ", 5)[5] == path), None)
            why = f"{path} is not the file it was" if current is None else f"{path} changed"
            if current is not None:
                _, cdev, cino, csize, cmtime, _ = current.split(" ", 5)
                if (cdev, cino) != (dev, ino):
                    why = f"{path} is another file now (device/inode {cdev}/{cino}, was {dev}/{ino})"
                elif csize != size:
                    why = f"{path} has {csize} bytes now, {size} when the save began"
                else:
                    why = f"{path} was modified since the save began"
        elif kind == "sample":
            offset = int(rest.split(" ")[0])
            why = f"its page at offset {offset:#x} is not what it was"
        else:
            why = f"{recorded!r} no longer holds"
        raise NotResumable(f"{src.description} changed since {out_path} was started ({why}): what was written may "
                           "not be this dump. Nothing was written. Run again with --restart to start over")
