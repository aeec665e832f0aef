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


# ---------------------------------------------------------------------------------------
# the same on numpy arrays: 16 bytes a span where a list of (int, int) tuples costs ~120, so
# that a reader's peak memory does not grow with the slide's tile count


def union_arrays(starts, ends, drop_empty: bool = False):
    """The union of the [start, end) ranges as two sorted int64 arrays (starts, ends): ranges
    that overlap or touch join.  Without ``drop_empty`` a zero-length range is kept (as a
    range of its own where nothing covers it), like merging the sorted list one by one does.
    Any order of the input."""
    import numpy as np

    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    if drop_empty:
        keep = e > s
        s, e = s[keep], e[keep]
    if not len(s):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    reach = np.maximum.accumulate(e)  # the end of the union so far
    first = np.ones(len(s), dtype=bool)
    first[1:] = s[1:] > reach[:-1]  # a range that starts past everything before it opens a new group
    heads = np.flatnonzero(first)
    last = np.append(heads[1:] - 1, len(s) - 1)
    return s[heads], reach[last]


def gaps_arrays(starts, ends, size: int):
    """``gaps`` of the sorted ranges [starts, ends) as two int64 arrays (start, end)."""
    import numpy as np

    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    pos = np.maximum.accumulate(np.concatenate([np.zeros(1, np.int64), e]))  # pos before range i, and at the end
    lo = pos
    hi = np.concatenate([np.minimum(s, size), np.array([size], dtype=np.int64)])
    keep = hi > lo
    return lo[keep], hi[keep]


def iter_pairs(a, b, chunk: int = 1 << 16):
    """(int, int) pairs of two equal-length arrays, converted a chunk at a time (never a whole
    list of Python tuples)."""
    for i in range(0, len(a), chunk):
        yield from zip(a[i : i + chunk].tolist(), b[i : i + chunk].tolist())
