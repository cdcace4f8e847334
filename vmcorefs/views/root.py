# SPDX-License-Identifier: MIT
"""
The ``vmcorefs.views.root`` module assembles the whole mounted tree of a
dump: ``/vmcore``, ``/meminfo/`` and ``/zcore/``.
"""

from __future__ import annotations

from ..dump import Dump
from .meminfo import build_meminfo
from .tree import Directory, File
from .vmcore import build_vmcore
from .zcore import build_zcore

__all__ = ("build_tree",)


def build_tree(dump: Dump) -> Directory:
    """Return the root directory of *dump*'s file tree."""
    root = Directory("")
    vmcore = build_vmcore(dump)
    root.add(File("vmcore", vmcore))
    root.add(build_meminfo(dump))
    root.add(build_zcore(dump))
    return root
