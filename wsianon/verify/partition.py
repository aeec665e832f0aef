"""Closed-world proof for TIFF-family outputs, from the output alone.

Parses the output (``wsianon.io.tiff`` for byte locations, tifffile as a
second reader of the same directories) and proves the partition of every
byte: the header, each IFD of the chain with only the tags the format profile
allows for that IFD's kind, the values of those tags, and the strips/tiles the
kept IFDs reference.  Any other byte must be zero.  Violations are reported by
tag number and name and by offset, never by value.

Knows nothing about how the output was made (no converter code): the rules
are the profile data (``wsianon/profiles/data/tiff_closed_world.json`` and
each format's ``closed_world`` key).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from wsianon.errors import WsianonError
from wsianon.io.extents import data_extents
from wsianon.io.scan import Finding
from wsianon.io.tiff import TYPES, Kind, TiffStructure
from wsianon.profiles import load
from wsianon.profiles.closed_world import TIFF_FORMATS, allowed_tags, tag_name

MAX_FINDINGS = 50
_CHUNK = 4 << 20


def applies(fmt: str | None) -> bool:
    return fmt in TIFF_FORMATS


def _union(spans):
    out = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _structure(path: Path, fmt: str):
    """(referenced spans, tag violations [(ifd, tag, offset)], per-IFD kept tag sets, kind)."""
    spans: list[tuple[int, int]] = []
    bad: list[tuple[int, int, int]] = []
    tagsets: list[set[int]] = []
    icc: list[tuple[int, int, int]] = []  # (IFD, offset, problems)
    rules = load("tiff_closed_world")
    safe = {t.encode("latin-1") for t in rules["icc_safe_types"]}
    with TiffStructure(path) as ts:
        big = ts.kind is Kind.BIG
        spans.append((0, 16 if big else (12 if ts.kind is Kind.NDPI else 8)))
        cs, es = (8, 20) if big else (2, 12)
        for ifd in ts.ifds:
            (n,) = ts.unpack("Q" if big else "H", ts.read(ifd.offset, cs))
            raw = ts.read(ifd.offset + cs, n * es)
            allowed = allowed_tags(fmt, set(ifd.entries))
            seen: set[int] = set()
            for i in range(n):
                tag, typ = ts.unpack("HH", raw[i * es : i * es + 4])
                if tag in seen or tag not in allowed or typ not in TYPES:
                    bad.append((ifd.index, tag, ifd.offset + cs + i * es))
                seen.add(tag)
            tagsets.append(seen)
            spans.append((ifd.offset, min(ifd.end, ts.size)))
            for tag, e in ifd.entries.items():
                if tag in allowed and not e.inline and e.size:
                    spans.append((e.value_offset, e.value_offset + e.size))
                if tag == rules["icc_tag"] and tag in allowed and e.size:
                    icc.append((ifd.index, e.value_offset, icc_problems(ts.raw(e), safe)))
            if (324 in ifd and 325 in ifd) or (273 in ifd and 279 in ifd):
                spans += [(o, o + c) for o, c in ts.data_spans(ifd) if c]
        return spans, bad, tagsets, ts.kind, ts.size, icc


def icc_problems(data: bytes, safe_types: set[bytes]) -> int:
    """Non-zero bytes of an ICC profile outside its header, tag table and colorimetric tags
    (text, dates, names, private tags and unreferenced bytes must be zero); -1: does not parse."""
    if len(data) < 132 or data[36:40] != b"acsp":
        return -1
    (n,) = struct.unpack(">I", data[128:132])
    if n > 1024 or 132 + 12 * n > len(data):
        return -1
    keep = bytearray(len(data))  # 1 where a byte may be non-zero
    keep[:128] = b"\1" * 128
    keep[24:36] = bytes(12)  # creation date
    keep[84:100] = bytes(16)  # profile ID
    keep[128 : 132 + 12 * n] = b"\1" * (4 + 12 * n)
    for i in range(n):
        _sig, off, size = struct.unpack(">4sII", data[132 + 12 * i : 144 + 12 * i])
        if off + size > len(data) or size < 8:
            return -1
        typ = data[off : off + 4]
        if typ in safe_types:
            keep[off : off + size] = b"\1" * size
        else:
            keep[off : off + 4] = b"\1" * 4
            if typ == b"mluc" and size >= 16:
                keep[off + 12 : off + 16] = b"\1" * 4  # the record size of an empty list
    return sum(1 for b, k in zip(data, keep) if b and not k)


def _tifffile_tagsets(path: Path, ndpi: bool) -> list[set[int]] | None:
    try:
        import tifffile

        with tifffile.TiffFile(str(path), is_ndpi=ndpi) if ndpi else tifffile.TiffFile(str(path)) as tf:
            out = []
            for page in tf.pages:
                out.append({t.code for t in page.tags.values()})
            return out
    except Exception:
        return None


def check_tiff_partition(path: Path, fmt: str, verdict, name: str | None = None) -> None:
    """Add the closed-world checks of one TIFF-family output to ``verdict``."""
    label = name or path.name
    try:
        spans, bad, tagsets, kind, size, icc = _structure(path, fmt)
    except WsianonError as exc:
        verdict.add("closed-world-structure", False, f"the output's TIFF structure cannot be walked: {exc.reason}")
        return
    # a second, independent reader must see the same directories
    other = _tifffile_tagsets(path, kind is Kind.NDPI)
    if other is None:
        verdict.add("closed-world-structure", False, "tifffile cannot read the output's directories")
    else:
        same = [sorted(s) for s in other] == [sorted(s) for s in tagsets]
        verdict.add(
            "closed-world-structure",
            same,
            f"{len(tagsets)} IFDs, tag sets {'agree' if same else 'DIFFER'} between two readers (tifffile sees {len(other)} pages)",
        )
    for ifd_index, tag, off in bad[:MAX_FINDINGS]:
        verdict.findings.append(Finding(label, off, f"tag {tag_name(tag)} in IFD {ifd_index} (not allowed by the {fmt} profile)", "closed-world-tag"))
    names = sorted({tag_name(t) for _, t, _ in bad})
    verdict.add(
        "closed-world-tags",
        not bad,
        f"every tag of every IFD allowed by the {fmt} profile" if not bad else f"{len(bad)} entries not allowed: {names}",
    )
    for ifd_index, off, problems in icc:
        if problems:
            verdict.findings.append(Finding(label, off, f"ICC profile in IFD {ifd_index}: " + ("does not parse" if problems < 0 else f"{problems} non-zero byte(s) outside colorimetric tags"), "closed-world-icc"))
    if icc:
        bad_icc = [i for i, _, p in icc if p]
        verdict.add("closed-world-icc", not bad_icc, f"{len(icc)} ICC profile(s): " + ("colorimetric tags only, every text empty" if not bad_icc else f"text or unreferenced bytes in IFD(s) {bad_icc}"))
    refs = _union(spans)
    gaps, pos = [], 0
    for a, b in refs:
        if a > pos:
            gaps.append((pos, min(a, size)))
        pos = max(pos, b)
    if pos < size:
        gaps.append((pos, size))
    nonzero = 0
    ranges = 0
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        extents = data_extents(fd, 0, size)
        j = 0
        for ga, gb in gaps:
            while j < len(extents) and extents[j][1] <= ga:
                j += 1
            k = j
            first = None
            count = 0
            while k < len(extents) and extents[k][0] < gb:
                lo, hi = max(ga, extents[k][0]), min(gb, extents[k][1])
                q = lo
                while q < hi:
                    buf = os.pread(fd, min(_CHUNK, hi - q), q)
                    if not buf:
                        break
                    z = buf.count(0)
                    if z != len(buf):
                        count += len(buf) - z
                        if first is None:
                            first = q + next(i for i, x in enumerate(buf) if x)
                    q += len(buf)
                k += 1
            if count:
                nonzero += count
                ranges += 1
                if ranges <= MAX_FINDINGS:
                    verdict.findings.append(Finding(label, first, f"{count} non-zero byte(s) in unreferenced range {ga}-{gb}", "closed-world-byte"))
    finally:
        os.close(fd)
    unref = sum(b - a for a, b in gaps)
    verdict.add(
        "closed-world-bytes",
        nonzero == 0,
        f"{unref} unreferenced byte(s) in {len(gaps)} range(s), all zero"
        if nonzero == 0
        else f"{nonzero} non-zero byte(s) in {ranges} unreferenced range(s) (header, kept IFDs, allowed values and image data account for the rest)",
    )
