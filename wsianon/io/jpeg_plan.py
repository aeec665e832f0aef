"""Add the zeroing of non-essential JPEG segment payloads to any plan.

Called by the pipeline on every native plan, whatever the format: every output
file copied from a TIFF-family source gets a zero-fill patch over the COM /
APPn payloads of every JPEG tile, strip and JPEGTables of every IFD; other
sources (MRXS Data files) name their JPEG streams in ``FilePlan.jpeg_spans``.
Only segment headers are read (see :mod:`wsianon.io.jpeg`).  A region that an
existing patch already rewrites with new bytes is left to that patch.
"""

from __future__ import annotations

import os
from collections import Counter

from wsianon.errors import WsianonError
from wsianon.io.jpeg import ScrubSpan, marker_name, stream_spans, tiff_jpeg_spans
from wsianon.io.plan import FilePlan, Patch, Plan
from wsianon.io.tiff import TIFF_MAGIC

REASON = "JPEG non-essential segment payload zeroed"


def _is_tiff(path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in TIFF_MAGIC
    except OSError:
        return False


def file_spans(fp: FilePlan) -> list[ScrubSpan]:
    if fp.source is None or fp.content is not None:
        return []
    spans = getattr(fp, "jpeg_spans", None)
    if spans:
        fd = os.open(fp.source, os.O_RDONLY)
        try:
            out: list[ScrubSpan] = []
            for off, ln in sorted(spans):
                out.extend(stream_spans(fd, off, ln))
            return out
        finally:
            os.close(fd)
    if not _is_tiff(fp.source):
        return []
    try:
        return tiff_jpeg_spans(fp.source)
    except (WsianonError, OSError, ValueError):
        return []  # the converter already judged the structure; verification judges the output


def scrub_jpeg_segments(plan: Plan) -> int:
    """Add zero-fill patches for every non-essential JPEG payload; returns how many."""
    total: Counter = Counter()
    for fp in plan.files:
        spans = file_spans(fp)
        if not spans:
            continue
        data_patches = sorted((p.offset, p.end) for p in fp.patches if p.data is not None)
        for s in spans:
            if any(a < s.offset + s.length and s.offset < b for a, b in data_patches):
                continue
            fp.patches.append(Patch(s.offset, s.length, None, REASON))
            total[marker_name(s.marker) if s.marker != 0xD9 else "bytes after EOI"] += 1
    for name, n in sorted(total.items()):
        plan.remove("structure", f"JPEG {name}", "payload zeroed", f"{n} segment(s)")
    return sum(total.values())
