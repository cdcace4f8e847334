# SPDX-License-Identifier: MIT
"""
What the parts of ``vmcorefs save`` share: sizes, errors, exit statuses.
"""

from __future__ import annotations

import sys

from ..errors import VmcorefsError

__all__ = ("BLOCK", "DEFAULT_CHUNK", "EXIT_NOT_RESUMABLE", "EXIT_STOPPED", "NotResumable", "PAGE", "SaveError",
           "Stopped", "report")

PAGE = 4096
BLOCK = 64 << 10  # zero check: whole blocks first, pages only inside non-zero blocks
DEFAULT_CHUNK = 8 << 20

# exit statuses besides 0 (saved) and 1 (an error); 128+N: stopped by signal N (resumable)
EXIT_STOPPED = 3  # stopped by --stop-after (resumable)
EXIT_NOT_RESUMABLE = 4  # the partial OUT cannot be resumed; nothing was written: --restart starts over


class SaveError(VmcorefsError):
    """The save stopped; the message says what to do next."""


class NotResumable(SaveError):
    """
    The partial save of OUT cannot be continued (its state file is damaged,
    it is of another dump, or the source changed since it began); nothing
    was written. ``vmcorefs save`` exits with :data:`EXIT_NOT_RESUMABLE`.
    """

    exit_status = EXIT_NOT_RESUMABLE


class Stopped(Exception):
    """The save stopped on purpose (signal, --stop-after); the partial file can be resumed."""

    def __init__(self, why: str, status: int) -> None:
        super().__init__(why)
        self.status = status


def report(text: str) -> None:
    """Say *text* on stderr, as the command's messages begin."""
    print(f"vmcorefs: {text}", file=sys.stderr, flush=True)
