"""Byte ranges of a file: what lies between the structures that reference it."""

from __future__ import annotations


def gaps(ranges: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """The non-empty (start, end) ranges of [0, size) that no (start, end) range of the sorted
    ``ranges`` covers."""
    out: list[tuple[int, int]] = []
    pos = 0
    for a, b in ranges:
        if a > pos:
            out.append((pos, min(a, size)))
        pos = max(pos, b)
    if pos < size:
        out.append((pos, size))
    return [g for g in out if g[1] > g[0]]
