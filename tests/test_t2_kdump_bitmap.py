# SPDX-License-Identifier: MIT
"""The runs of set bits of a kdump page bitmap, against a bit-by-bit model (hypothesis)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from vmcorefs.sources.kdumpfile import bitmap_runs


def model(bitmap: bytes, start: int, end: int) -> list[tuple[int, int]]:
    runs: list[list[int]] = []
    for pfn in range(start, end):
        if bitmap[pfn // 8] >> (pfn % 8) & 1:  # bit i of the bitmap is bit i % 8 of byte i // 8
            if runs and runs[-1][1] == pfn:
                runs[-1][1] += 1
            else:
                runs.append([pfn, pfn + 1])
    return [(a, b) for a, b in runs]


bitmaps = st.lists(st.sampled_from([0, 0xFF, 0x01, 0x80, 0x7E, 0xAA]) | st.integers(0, 255),
                   min_size=0, max_size=64).map(bytes)


@given(bitmaps, st.data())
def test_bitmap_runs_match_the_model(bitmap, data):
    n = len(bitmap) * 8
    start = data.draw(st.integers(0, n))
    end = data.draw(st.integers(start, n))
    assert bitmap_runs(bitmap, start, end) == model(bitmap, start, end)


def test_bitmap_runs_examples():
    assert bitmap_runs(b"\xff\xff\x00\x01", 0, 32) == [(0, 16), (24, 25)]
    assert bitmap_runs(b"\x0f\xf0", 0, 16) == [(0, 4), (12, 16)]
    assert bitmap_runs(b"\xf0\x0f", 0, 16) == [(4, 12)]
    assert bitmap_runs(b"\xff", 3, 5) == [(3, 5)]
