"""Sparse files: where a file holds data (SEEK_DATA/SEEK_HOLE), so holes are neither read nor filled."""

from __future__ import annotations

import errno
import os


def data_extents(fd: int, start: int, end: int, merge_gap: int = 0) -> list[tuple[int, int]]:
    """Data extents of [start, end) of a file (SEEK_DATA/SEEK_HOLE); the whole
    range when the file system cannot tell.  Extents closer than ``merge_gap``
    are merged."""
    if start >= end:
        return []
    if not hasattr(os, "SEEK_DATA"):
        return [(start, end)]
    out: list[tuple[int, int]] = []
    pos = start
    try:
        while pos < end:
            try:
                d = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole remains
                    break
                raise
            if d >= end:
                break
            h = min(os.lseek(fd, d, os.SEEK_HOLE), end)
            if out and d - out[-1][1] <= merge_gap:
                out[-1] = (out[-1][0], h)
            else:
                out.append((d, h))
            pos = h
    except OSError:
        return [(start, end)]
    return out
