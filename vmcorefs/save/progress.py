# SPDX-License-Identifier: MIT
"""
The progress of ``vmcorefs save``: a bar on a terminal, a line every 10 %
elsewhere (a log, the journal).
"""

from __future__ import annotations

import sys
import time

__all__ = ("Progress", "human_size")


def human_size(n: float) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{int(n)} B"


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """
    A progress bar on *stream*: bytes, percentage, throughput, ETA. On a
    terminal one line redrawn at most 10 times a second; elsewhere (a log,
    the journal) a line every 10 % or 10 seconds.
    """

    def __init__(self, total: int, start: int, stream=None, tty: bool | None = None) -> None:
        self.total = total
        self.start = start
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.t0 = time.monotonic()
        self.last = 0.0
        self.last_decile = start * 10 // max(total, 1)
        self.shown = -1
        self.width = 0

    def line(self, done: int, now: float) -> str:
        elapsed = max(now - self.t0, 1e-6)
        rate = (done - self.start) / elapsed
        pct = done * 100 / max(self.total, 1)
        eta = (self.total - done) / rate if rate > 0 else None
        bar_len = 24
        fill = int(bar_len * done / max(self.total, 1))
        bar = "#" * fill + "." * (bar_len - fill)
        return (f"{human_size(done):>10} / {human_size(self.total)}  {pct:5.1f}%  [{bar}]  "
                f"{human_size(rate)}/s  ETA {_duration(eta) if eta is not None else '?'}")

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if not final and now - self.last < 0.1:
                return
            text = self.line(done, now)
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
            if final:
                self.stream.write("\n")
        else:
            decile = done * 10 // max(self.total, 1)
            if not final and decile == self.last_decile and now - self.last < 10:
                return
            if final and done in (self.start, self.shown):
                return
            self.shown = done
            self.last_decile = decile
            self.stream.write("vmcorefs: " + self.line(done, now).strip() + "\n")
        self.last = now
        self.stream.flush()
