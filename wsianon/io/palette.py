"""Palette colour lookup tables as few straight segments (the DICOM route and its verifier).

A palette channel is a table of free 16-bit numbers: any monotone run of them can carry bytes in
its increments (``D``, ``o``, ``e`` as steps of 68, 111, 101). The colour maps a slide uses are
ramps: a channel rising to its colour (fluorescence), or the few straight pieces of a jet or
rainbow map. A channel is accepted only as at most ``MAX_SEGMENTS`` straight segments, every entry
the segment's line rounded half up between its end points: what is left free is the end points, a
handful of numbers. The route makes a palette within one of such a form exactly that form (the
colours change by at most 1/65535); any other palette is not a colour map and is refused.
"""

from __future__ import annotations

import numpy as np

MAX_SEGMENTS = 10  # jet: 5 pieces a channel, and a corner between entries makes one more each
CORNER = 2  # a second difference rounding alone never makes (a rounded line's is -1, 0 or 1)
MAX_CANDIDATES = 128  # rounding noise in a float-made map adds some beside its corners


def _line(v0: int, v1: int, n: int) -> np.ndarray:
    """``n + 1`` entries from ``v0`` to ``v1``: the line rounded half up."""
    i = np.arange(n + 1, dtype=np.int64)
    return v0 + (2 * (v1 - v0) * i + n) // (2 * n)


def segments(vals: np.ndarray, tolerance: int) -> list[tuple[int, int]] | None:
    """End points (start, end) of straight segments covering ``vals``, each the farthest
    candidate end from its start whose line is within ``tolerance`` of every entry, or None when
    more than ``MAX_SEGMENTS`` are needed. Candidate ends are where the slope changes by more than
    rounding does (a second difference of ``CORNER`` or more, and the entries beside it): a
    table with more than ``MAX_CANDIDATES`` of them is no colour map (refused without a search)."""
    v = np.asarray(vals).astype(np.int64)
    n = len(v)
    if n < 3:
        return [(0, n - 1)] if n else []
    corners = np.nonzero(np.abs(np.diff(v, 2)) >= CORNER)[0] + 1
    cand = sorted({0, n - 1} | {int(c) + d for c in corners for d in (-1, 0, 1) if 0 <= int(c) + d < n})
    if len(cand) > MAX_CANDIDATES:
        return None
    out: list[tuple[int, int]] = []
    s = 0
    while s < n - 1:
        for e in [c for c in reversed(cand) if c > s + 1] + [s + 1]:  # the next entry always fits
            if e == s + 1 or int(np.abs(v[s : e + 1] - _line(int(v[s]), int(v[e]), e - s)).max()) <= tolerance:
                break
        out.append((s, e))
        if len(out) > MAX_SEGMENTS:
            return None
        s = e
    return out


def canonical(vals: np.ndarray) -> np.ndarray | None:
    """``vals`` made exactly piecewise straight (within 1 of each entry), or None when it is not
    a colour map of at most ``MAX_SEGMENTS`` pieces."""
    segs = segments(vals, 1)
    if segs is None:
        return None
    out = np.asarray(vals, dtype=np.int64).copy()
    for s, e in segs:
        out[s : e + 1] = _line(int(out[s]), int(out[e]), e - s)
    return out


def is_canonical(vals: np.ndarray) -> bool:
    """``vals`` is exactly at most ``MAX_SEGMENTS`` straight segments rounded half up."""
    return segments(vals, 0) is not None
