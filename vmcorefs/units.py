# SPDX-License-Identifier: MIT
"""
The ``vmcorefs.units`` module formats sizes for people, the same way in
``/meminfo`` and on the command line. It imports nothing heavy, so the
command line can use it before deciding what else it needs.
"""

__all__ = ("size_text",)


def size_text(n: int) -> str:
    """
    Return a size for people: the largest binary unit that shows it exactly
    (to 1/1024 of it, and whole KiB), else bytes.

    >>> size_text(192 << 20), size_text(3 << 29), size_text(4100)
    ('192 MiB', '1.5 GiB', '4100 bytes')
    """
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << max(shift - 10, 10)) == 0:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} bytes"
