# SPDX-License-Identifier: MIT
"""
The file tree
-------------

The ``vmcorefs.views.tree`` module provides the tree of files and
directories a mounted dump shows, built from a :class:`~vmcorefs.dump.Dump`
by :func:`build_tree`, and the two node types. The FUSE layer only walks
this tree; every byte comes from a file's :class:`ExtentFile`.
"""

from __future__ import annotations

import dataclasses
from typing import Awaitable, Callable

from .extents import BytesExtent, ExtentFile, LiveText

__all__ = ("Directory", "File", "text_file")

WriteFn = Callable[[bytes], Awaitable[None]]


@dataclasses.dataclass
class File:
    """A regular file; *write* (if any) takes what is written to it whole."""

    name: str
    content: ExtentFile | LiveText
    write: WriteFn | None = None

    @property
    def size(self) -> int:
        return self.content.size


@dataclasses.dataclass
class Directory:
    name: str
    children: list["File | Directory"] = dataclasses.field(default_factory=list)

    def add(self, node: "File | Directory") -> "File | Directory":
        if any(c.name == node.name for c in self.children):
            raise ValueError(f"{self.name}/{node.name} exists twice")
        self.children.append(node)
        return node

    def find(self, path: str) -> "File | Directory | None":
        node: File | Directory | None = self
        for part in filter(None, path.split("/")):
            if not isinstance(node, Directory):
                return None
            node = next((c for c in node.children if c.name == part), None)
        return node


def text_file(name: str, text: str | bytes) -> File:
    """Return a file with fixed contents."""
    data = text.encode() if isinstance(text, str) else text
    return File(name, ExtentFile([BytesExtent(data)]))
