# SPDX-License-Identifier: MIT
"""
Errors
------

The ``vmcorefs.errors`` module defines the exceptions of the core. Sources,
the machine and the views raise them; the command line prints
:class:`InputError` as one line, and the FUSE layer turns
:class:`MemoryReadError` into ``EIO``.
"""

__all__ = ("InputError", "MemoryReadError", "SclpError", "VmcorefsError")


class VmcorefsError(Exception):
    """Base class of every error vmcorefs raises on purpose."""

    exit_status = 1  # of the command it ends (``check`` has its own)


class InputError(VmcorefsError):
    """A source, description or option is unusable; the message says why and what to do."""


class MemoryReadError(VmcorefsError):
    """Old memory at *address* could not be read (store I/O error, SCLP failure)."""

    def __init__(self, address: int, reason: str) -> None:
        super().__init__(f"cannot read memory at {address:#x}: {reason}")
        self.address = address
        self.reason = reason


class SclpError(MemoryReadError):
    """An SCLP SDIAS request for the HSA failed for good (after retries)."""
