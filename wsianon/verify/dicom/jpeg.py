"""JPEG frames against source tiles: a DICOM frame carries the shared JPEGTables and colour markers
inline, so frames are compared by their tables and entropy-coded data, not byte for byte.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections import Counter
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from wsianon.io import codestreams
from wsianon.io.dicomframes import remembered_walk
from wsianon.io.jpeg import normalized

# ---------------------------------------------------------------------------
# frames


def _jpeg_parts(b: bytes) -> tuple[list[bytes], bytes] | None:
    """(DQT/DHT segments, entropy-coded data after SOS) of a JPEG; None if not a JPEG."""
    if b[:2] != b"\xff\xd8":
        return None
    tables: list[bytes] = []
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            return None
        m = b[i + 1]
        if m == 0xD9:
            break
        if m == 0xFF:
            i += 1
            continue
        (ln,) = struct.unpack(">H", b[i + 2 : i + 4])
        seg = b[i : i + 2 + ln]
        if m in (0xDB, 0xC4):
            tables.append(seg)
        if m == 0xDA:
            return tables, b[i + 2 + ln :]
        i += 2 + ln
    return tables, b""


def _jpeg_header(b) -> tuple[list[bytes], int] | None:
    """(DQT/DHT segments, offset of the entropy-coded data) from a JPEG's first bytes; None if
    not a JPEG or no SOS within ``b``."""
    if bytes(b[:2]) != b"\xff\xd8":
        return None
    tables: list[bytes] = []
    i = 2
    n = len(b)
    while i + 4 <= n:
        if b[i] != 0xFF:
            return None
        m = b[i + 1]
        if m == 0xFF:
            i += 1
            continue
        if m == 0xD9:
            return None
        ln = (b[i + 2] << 8) | b[i + 3]
        if m in (0xDB, 0xC4):
            tables.append(bytes(b[i : i + 2 + ln]))
        if m == 0xDA:
            return tables, i + 2 + ln
        i += 2 + ln
    return None


def _split_tables(segs: list[bytes]) -> Counter:
    """Individual DQT/DHT tables (a segment may hold several)."""
    out: Counter = Counter()
    for seg in segs:
        body = seg[4:]
        if seg[1] == 0xDB:
            j = 0
            while j < len(body):
                size = 65 if body[j] >> 4 == 0 else 129
                out[b"Q" + body[j : j + size]] += 1
                j += size
        else:
            j = 0
            while j + 17 <= len(body):
                n = sum(body[j + 1 : j + 17])
                out[b"H" + body[j : j + 17 + n]] += 1
                j += 17 + n
    return out


def same_bitstream(tile: bytes, tables: bytes | None, frame: bytes, cache: dict | None = None) -> bool:
    """A DICOM frame carries the same compressed image as a TIFF tile (+ shared JPEGTables):
    identical bytes, or (JPEG) identical entropy-coded data and every source table present.
    ``cache`` remembers table checks per distinct header pair (tiles of a level share them)."""
    if frame == tile or (len(tile) % 2 and frame == tile + b"\x00"):  # fragments are padded to even length
        return True
    a, b = _jpeg_parts(tile), _jpeg_parts(frame)
    if a is None or b is None:
        return False
    if not a[1] or not (b[1] == a[1] or (len(b[1]) == len(a[1]) + 1 and b[1] == a[1] + b"\x00")):
        return False
    key = (b"".join(a[0]), b"".join(b[0]))
    if cache is not None and key in cache:
        return cache[key]
    tsegs = list(a[0])
    if tables:
        t = _jpeg_parts(tables + b"\xff\xda\x00\x02")  # tables-only stream: fake SOS to stop
        if t is not None:
            tsegs += t[0]
    need, have = _split_tables(tsegs), _split_tables(b[0])
    ok = all(have[k] >= 1 for k in need)
    if cache is not None:
        cache[key] = ok
    return ok


def _fragments(fd: int, path: Path, ds: Dataset) -> list[tuple[int, int]] | None:
    """(offset, length) of each frame's single fragment in an encapsulated instance (item headers
    read only), or None when the layout is not one fragment per frame (callers fall back to pydicom)."""
    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmread(fh, stop_before_pixels=True)
        off = fh.tell()
    return fragments_at(fd, off, ds)


def fragments_at(fd: int, off: int, ds: Dataset) -> list[tuple[int, int]] | None:
    """``_fragments`` with the Pixel Data element's offset ``off`` known (the header parsed once)."""
    head = os.pread(fd, 12, off)
    if len(head) < 12 or struct.unpack_from("<HH", head) != (0x7FE0, 0x0010) or struct.unpack_from("<I", head, 8)[0] != 0xFFFFFFFF:
        return None
    items = remembered_walk(fd, off + 12, os.fstat(fd).st_size)
    if items.problem is not None or items.end is None:
        return None
    out = items.values[1:]  # the first item is the Basic Offset Table
    n = int(ds.get("NumberOfFrames", 1) or 1)
    return out if len(out) == n else None


def _same_mv(tv: bytes, fv: bytes, tables: bytes | None, cache: dict) -> bool:
    """``same_bitstream`` with the headers parsed in place and table checks cached."""
    lt, lf = len(tv), len(fv)
    if fv == tv or (lf == lt + 1 and lt % 2 and fv[lt] == 0 and fv.startswith(tv)):
        return True
    a = _jpeg_header(tv[: min(lt, 65536)])
    b = _jpeg_header(fv[: min(lf, 65536)])
    if a is None or b is None:
        return same_bitstream(bytes(tv), tables, bytes(fv), cache)
    n = lt - a[1]
    m = lf - b[1]
    if n <= 0 or not (m == n or (m == n + 1 and fv[-1] == 0)):
        return False
    if fv.find(tv[a[1] :], b[1], b[1] + n) != b[1]:  # entropy-coded data identical
        return False
    return _tables_ok(a[0], b[0], tables, cache)


def _tables_ok(tile_tables: list[bytes], frame_tables: list[bytes], tables: bytes | None, cache: dict) -> bool:
    """Every DQT/DHT table of the tile's header (and of the level's shared JPEGTables) is in the
    frame's header; cached per (tile tables, frame tables)."""
    key = (b"".join(tile_tables), b"".join(frame_tables))
    if key not in cache:
        tsegs = list(tile_tables)
        if tables:
            t = _jpeg_parts(tables + b"\xff\xda\x00\x02")
            if t is not None:
                tsegs += t[0]
        need, have = _split_tables(tsegs), _split_tables(frame_tables)
        cache[key] = all(have[k] >= 1 for k in need)
    return cache[key]


class ProvenHeaders:
    """``_same_mv`` for the frames of one level, without parsing the headers it has proven.

    A level's frames nearly always share one JPEG header (to the end of the first SOS) and
    their source tiles share one too.  Once ``_same_mv`` proved a frame equal to its tile, the
    pair (tile header, frame header) is remembered (at most ``limit`` pairs) when

    * each header, parsed on its own, gives what ``_jpeg_header`` gave on the whole stream
      (then the parse reads no byte past the header, so every stream that starts with it parses
      the same: same tables, same end), and
    * the table check of the pair holds (``_tables_ok``; computed here, since ``_same_mv`` may
      have answered from its byte-equality test without it).

    A later tile and frame that start with a remembered pair then get exactly ``_same_mv``'s
    answer from its own steps minus the parse: byte-equal (or equal with the one padding zero),
    else entropy-coded remainders of a fitting length and identical.  Anything else goes to
    ``_same_mv``.

    A frame that differs from its tile is compared once more with the tile as a correct
    redaction leaves it (``wsianon.io.jpeg.normalized``: a comment or application segment after
    the entropy-coded data, or bytes after EOI, zeroed — what the frame scrub zeroes), so a
    scrubbed frame is proven rather than failed; the frame-segment check proves separately that
    no such payload is left in any frame."""

    def __init__(self, tables: bytes | None, cache: dict | None = None, limit: int = 4):
        self.tables = tables
        self.cache: dict = {} if cache is None else cache
        self.limit = limit
        self.pairs: list[tuple[bytes, bytes]] = []

    def same(self, tv: bytes, fv: bytes) -> bool:
        if self._same(tv, fv):
            return True
        if codestreams.is_j2k(tv):  # a JPEG 2000 tile: its comments and trailing bytes zeroed by the converter
            zv = codestreams.zeroed(bytes(tv), next(iter(codestreams.J2K_TS)))
            return zv != tv and (fv == zv or (len(fv) == len(zv) + 1 and len(zv) % 2 == 1 and fv[-1] == 0 and fv.startswith(zv)))
        nv, zeroed = normalized(bytes(tv))
        return zeroed > 0 and nv != tv and self._same(nv, fv)

    def _same(self, tv: bytes, fv: bytes) -> bool:
        lt, lf = len(tv), len(fv)
        if fv == tv or (lf == lt + 1 and lt % 2 and fv[lt] == 0 and fv.startswith(tv)):
            return True
        for th, fh in self.pairs:
            if tv.startswith(th) and fv.startswith(fh):
                ht, hf = len(th), len(fh)
                n, m = lt - ht, lf - hf
                if n <= 0 or not (m == n or (m == n + 1 and fv[-1] == 0)):
                    return False
                return fv.startswith(memoryview(tv)[ht:], hf)  # entropy-coded data identical
        ok = _same_mv(tv, fv, self.tables, self.cache)
        if ok and len(self.pairs) < self.limit:
            self._learn(tv, fv)
        return ok

    def _learn(self, tv: bytes, fv: bytes) -> None:
        a = _jpeg_header(tv[: min(len(tv), 65536)])
        b = _jpeg_header(fv[: min(len(fv), 65536)])
        if a is None or b is None:
            return
        th, fh = bytes(tv[: a[1]]), bytes(fv[: b[1]])
        if _jpeg_header(th) != a or _jpeg_header(fh) != b:
            return  # the parse depends on bytes past the header (a segment length under 2, a short stream)
        if _tables_ok(a[0], b[0], self.tables, self.cache) and (th, fh) not in self.pairs:
            self.pairs.append((th, fh))
