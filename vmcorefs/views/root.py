# SPDX-License-Identifier: MIT
"""
The ``vmcorefs.views.root`` module assembles the whole mounted tree of a
dump: ``/vmcore`` and ``/meminfo/`` (``/zcore/`` joins them when built).
"""

from __future__ import annotations

from ..dump import Dump
from .meminfo import build_meminfo
from .tree import Directory, File
from .vmcore import build_vmcore

__all__ = ("build_tree",)


def build_tree(dump: Dump) -> Directory:
    """Return the root directory of *dump*'s file tree."""
    root = Directory("")
    vmcore, _layout = build_vmcore(dump)
    root.add(File("vmcore", vmcore))
    root.add(build_meminfo(dump))
    return root
