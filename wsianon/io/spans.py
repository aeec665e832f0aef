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
    Any order of the input; input already in order (a TIFF's tiles, usually) is not sorted again."""
    import numpy as np

    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    if drop_empty:
        keep = e > s
        if not keep.all():
            s, e = s[keep], e[keep]
        del keep
    if not len(s):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not is_sorted(s):
        order = np.argsort(s, kind="stable")
        s, e = s[order], e[order]
        del order
    reach = np.maximum.accumulate(e)  # the end of the union so far
    first = np.ones(len(s), dtype=bool)
    np.greater(s[1:], reach[:-1], out=first[1:])  # a range that starts past everything before it opens a new group
    heads = np.flatnonzero(first)
    del first
    last = np.append(heads[1:] - 1, len(s) - 1)
    return s[heads], reach[last]


def union_parts(parts, drop_empty: bool = False):
    """``union_arrays`` of several (starts, ends) parts: each part's union first (a part is one
    IFD's tiles, in order: no sort, and usually a handful of ranges left), then theirs."""
    import numpy as np

    done = [union_arrays(a, b, drop_empty) for a, b in parts]
    if not done:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return union_arrays(np.concatenate([a for a, _ in done]), np.concatenate([b for _, b in done]), drop_empty)


def is_sorted(a, chunk: int = 1 << 16) -> bool:
    """``a`` in non-decreasing order (checked a chunk at a time: no temporary the size of ``a``)."""
    import numpy as np

    for i in range(0, max(len(a) - 1, 0), chunk):
        w = a[i : i + chunk + 1]
        if not bool(np.all(w[1:] >= w[:-1])):
            return False
    return True


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


def as_int64(a):
    """``a`` as int64; uint64 offsets and lengths of a file (all below 2**63) as a view, not a copy."""
    import numpy as np

    a = np.asarray(a)
    return a.view(np.int64) if a.dtype == np.uint64 else a.astype(np.int64, copy=False)


def iter_pairs(a, b, chunk: int = 1 << 16):
    """(int, int) pairs of two equal-length arrays, converted a chunk at a time (never a whole
    list of Python tuples)."""
    for i in range(0, len(a), chunk):
        yield from zip(a[i : i + chunk].tolist(), b[i : i + chunk].tolist())
