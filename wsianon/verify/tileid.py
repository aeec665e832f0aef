"""Tile identity: one 128-bit digest per pyramid page, fed from buffers a caller already holds.

The verifier proves that every pyramid tile/strip of a native output equals the source's
tile as a correct redaction leaves it (``wsianon.io.jpeg.normalized``: non-essential JPEG
payloads zeroed, entropy-coded data and decoder tables untouched).  Both sides are located
by tifffile — an independent reader, never the redactors' parsers — and each page is
reduced to ``(width, height, tiles, identity)`` where ``identity`` is

* xxh3_128 over the (normalized) JPEGTables, a separator, and the concatenation of the
  page's (normalized) tiles in tile order, and
* xxh3_128 of the page's TileByteCounts (so that the concatenation is unambiguous: equal
  counts and equal concatenations mean every tile is equal).

Why a fast non-cryptographic hash is sound here: the digest is only ever compared with a
digest of the *same slide's* source, taken from bytes this process read from the source
(during the copy, or before an in-place patch), against bytes read back from the output.
Nobody chooses both sides: the source is the input the user trusts the tool with, and the
output is what our own copy wrote; the check exists to catch our own mistakes (a patch in
the wrong place, a truncated or misplaced tile, a stale byte), which are not adversarial,
so the chance that such an error leaves the digest unchanged is the accidental collision
probability of a 128-bit hash, about 2^-128 per page.  Forging a collision would need
control over the output *after* it was written from the source (then no check of ours
could be trusted); a crafted source can only collide with itself.  SHA-256 of every tile,
twice, cost ~45 % of a run; xxh3_128 runs at 5–8 GB/s (benchmarks/PROFILE.md).

The digests are fed in *file order* (``Feeder.feed(offset, chunk)``), so the copy can take the
source side from its own read buffers and the verifier the output side from its one read-back
pass.  A page whose tiles are not stored in tile order (or tiles that overlap) cannot be
streamed: ``Feeder.streamable`` is False and ``Feeder.finish(path)`` reads those tiles
directly.  Memory: two small numpy arrays per page (16 bytes a tile), independent of the
bytes read.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import xxhash

from wsianon.io.jpeg import (
    clean_by_header_many,
    learn_clean_header,
    marker_positions,
    normalized,
    normalized_checked,
    parity_fill_ok,
    header_restarts,
    restarts_as_asked,
)
from wsianon.io.spans import union_arrays
from wsianon.profiles import tifffile_open

SCRUB_MAX = 64 << 20  # larger streams (NDPI strips): only their first SCRUB_MAX bytes are normalized
_KNOWN_HEADERS = 8  # clean tile headers remembered per page (the fast path's cache)


@dataclass
class Page:
    """A pyramid page as tifffile reads it: tile table in tile order."""

    width: int
    height: int
    offsets: np.ndarray  # uint64
    counts: np.ndarray  # uint64
    jpeg: bool
    tables: bytes | None
    # Compression 7: every tile must be a JPEG stream (SOI first); not where tifffile splits an
    # NDPI strip into its restart intervals (its tiles are the intervals' coded data)
    jpeg_only: bool = False


def level_pages(path: Path, fmt: str, dims: set[tuple[int, int]]) -> list[Page] | None:
    """Pages of ``path`` whose size is one of the pyramid level sizes ``dims``; None when
    tifffile cannot read the file.

    Memory: tifffile gives a page's tile table as tuples of Python ints (~80 bytes a tile);
    each page's table is turned into numpy arrays (16 bytes a tile) as the page is read and
    the page let go, and the cycles tifffile's objects form (page <-> file) are collected on
    the way out, so that no tuple of the slide's tiles outlives this call."""
    try:
        return _level_pages(path, fmt, dims)
    finally:
        release_cycles()


def _level_pages(path: Path, fmt: str, dims: set[tuple[int, int]]) -> list[Page] | None:
    import tifffile

    try:
        with tifffile.TiffFile(str(path), **tifffile_open(fmt)) as tf:
            tf.pages.cache = False  # one page at a time (tifffile keeps the first page regardless)
            out = []
            for p in tf.pages:
                if not isinstance(p, tifffile.TiffPage):
                    continue
                try:
                    if (p.imagewidth, p.imagelength) not in dims or not p.dataoffsets:
                        continue
                except Exception:
                    continue
                compression = getattr(p, "compression", 0)
                jpeg = compression in (6, 7)
                tables = getattr(p, "jpegtables", None) if jpeg else None
                out.append(
                    Page(
                        p.imagewidth,
                        p.imagelength,
                        np.asarray(p.dataoffsets, dtype=np.uint64),
                        np.asarray(p.databytecounts, dtype=np.uint64),
                        jpeg,
                        bytes(tables) if tables else None,
                        compression == 7 and not getattr(p, "jpegheader", None),  # NDPI: restart intervals
                    )
                )
            return out
    except Exception:
        return None


def level_feeder(path: Path, fmt: str, dims: set[tuple[int, int]], scrub: bool) -> "Feeder | None":
    """A ``Feeder`` of ``path``'s level pages (``level_pages``), or None where they cannot be read;
    no one else holds the pages' tile tables, so a streaming feeder keeps only its sorted one."""
    pages = level_pages(path, fmt, dims)
    return Feeder(pages, scrub) if pages is not None else None


_frozen = False


def release_cycles() -> None:
    """Collect unreachable reference cycles now: tifffile's pages and their file refer to each
    other, so a closed ``TiffFile`` and the tile tables of the pages it read (tuples of Python
    ints, tens of MiB on a large slide) would otherwise stay until the collector's next full pass.

    The first call, right after its collection, also moves every object alive then (the
    imported modules, mostly, and the first slide's live state) out of the collector's view
    (``gc.freeze``): a full pass then looks only at objects made since, 2–3 ms instead of 19 ms
    a call in the CLI (three calls a slide).  What is frozen was reachable when frozen; a cycle
    among those objects that becomes garbage later is not collected (refcounting still frees
    everything else), which bounds what can stay to what was alive at that one moment."""
    global _frozen
    gc.collect()
    if not _frozen:
        gc.freeze()
        _frozen = True


@dataclass
class _PageState:
    page: Page
    scrub: bool
    h: xxhash.xxh3_128 = field(default_factory=xxhash.xxh3_128)
    headers: list[bytes] = field(default_factory=list)  # tile headers proven clean (to the end of the first SOS)
    short: bool = False
    slow_tiles: int = 0
    malformed: int = 0  # JPEG tiles the walk cannot follow to their end (left as they are; ``normalized_checked``)
    changed: int = 0  # tiles ``normalized`` changed: a non-essential payload that was not all zeros
    unchecked: int = 0  # tiles longer than SCRUB_MAX: only their first SCRUB_MAX bytes were normalized
    tiles: int = 0  # the page's tile count, zero-length tiles included
    counts_id: str = ""  # xxh3_128 of the page's byte counts (a part of the identity)

    def normalize(self, data: bytes) -> tuple[bytes, int]:
        """``wsianon.io.jpeg.normalized``, counting the JPEG streams it cannot follow to their end."""
        out, zeroed, malformed = normalized_checked(data)
        # a tile of a JPEG (7) page that is not a JPEG stream at all: no decoder reads it as one,
        # and no JPEG walk judges what it holds
        self.malformed += malformed or (self.page.jpeg_only and data[:2] != b"\xff\xd8")
        if zeroed and out != data:
            self.changed += 1
        return out, zeroed


_NONE = np.zeros(0, np.uint64)


class Feeder:
    """Per-page identities of the level pages ``pages``, fed with the file's bytes in file order.

    ``scrub``: the source side (each JPEG tile normalized as a correct redaction leaves it).
    Feed every byte of the file once, in order (``feed``), then ``finish``."""

    def __init__(self, pages: list[Page], scrub: bool, direct: bool = False):
        """``direct``: read the tiles one by one in tile order at ``finish`` (what a feeder does
        whose pages are not in file order) even where they could be streamed."""
        self.scrub = scrub
        self.states = [
            _PageState(p, scrub and p.jpeg, tiles=len(p.counts), counts_id=xxhash.xxh3_128_hexdigest(p.counts.astype("<u8").tobytes())) for p in pages
        ]
        for st in self.states:
            t = st.page.tables
            if t:
                st.h.update(normalized(t)[0] if st.scrub else t)
                st.h.update(b"|")
        offs, cnts, pg = [], [], []
        for i, p in enumerate(pages):
            nz = p.counts > 0
            offs.append(p.offsets[nz])
            cnts.append(p.counts[nz])
            pg.append(np.full(int(nz.sum()), i, dtype=np.int32))
        off = np.concatenate(offs) if offs else np.zeros(0, np.uint64)
        cnt = np.concatenate(cnts) if cnts else np.zeros(0, np.uint64)
        page = np.concatenate(pg) if pg else np.zeros(0, np.int32)
        # streamable: within each page, tile order is file order, and no two tiles overlap
        self.streamable = not direct and all(bool(np.all(o[1:] >= o[:-1] + c[:-1])) for o, c in zip(offs, cnts))
        order = np.argsort(off, kind="stable")
        off, cnt, page = off[order], cnt[order], page[order]
        if len(off) > 1 and not bool(np.all(off[1:] >= off[:-1] + cnt[:-1])):
            self.streamable = False
        self._off = off.astype(np.int64)
        self._end = (off + cnt).astype(np.int64)
        self._page = page
        if self.streamable:
            # fed in file order from the sorted table above: the pages' own tables (16 bytes a
            # tile) are not needed again (``_read_direct``, for pages out of order, reads them)
            for st in self.states:
                st.page = replace(st.page, offsets=_NONE, counts=_NONE)
        self._k = 0  # next tile (global, file order)
        self._partial: bytearray | None = None  # the current tile's bytes so far (scrubbed pages, tile across chunks)
        self._raw_left = 0  # bytes of the current big tile still to hash raw (past SCRUB_MAX)
        self._pos = 0  # bytes fed so far

    # -- feeding -----------------------------------------------------------------------

    def feed(self, offset: int, buf, markers=None, ff=None) -> None:
        """The file's bytes [offset, offset + len(buf)); offsets must follow on from the last call.
        ``markers``: ``marker_positions(buf)`` when the caller searched them already (the copy's
        tap, which searches each buffer once for its JPEG scrub), else searched here; ``ff``:
        ``pairs_and_restarts(buf)`` from the same search (``jpeg.marker_index``), or None."""
        if not self.streamable:
            self._pos = offset + len(buf)
            return
        if offset != self._pos:
            raise ValueError(f"tile identity fed out of order: {offset} after {self._pos}")
        mv = memoryview(buf)
        c0, c1 = offset, offset + len(mv)
        self._pos = c1
        if markers is not None and len(markers) and int(markers[-1]) >= len(mv):
            raise ValueError("marker positions that are not this buffer's")
        k, n = self._k, len(self._off)
        while k < n:
            a, b = int(self._off[k]), int(self._end[k])
            if a >= c1:
                break
            st = self.states[int(self._page[k])]
            lo = max(a, c0)
            hi = min(b, c1)
            whole = a >= c0 and b <= c1 and self._partial is None and self._raw_left == 0
            if whole and (not st.scrub or st.headers):
                # the page's tiles wholly inside this buffer, handled together
                kk = self._batch_end(k, c1)
                if not st.scrub:
                    self._raw_batch(st, mv, c0, k, kk)
                else:
                    if markers is None:
                        markers, ff = marker_positions(mv), None
                    self._scrub_batch(st, mv, c0, k, kk, markers, ff)
                k = kk
                continue
            if not st.scrub:
                # raw: the concatenation in tile order, straight from the buffer
                st.h.update(mv[lo - c0 : hi - c0])
                if b > c1:
                    break  # continued in the next chunk
                k += 1
                continue
            if whole:
                # a whole tile, no clean header known yet: ``normalized`` itself (and learn)
                if markers is None:
                    markers = marker_positions(mv)
                self._scrubbed_tile(st, mv, a - c0, b - c0, markers)
                k += 1
                continue
            # a tile across buffers (or a big one): collect it, then normalize
            if self._raw_left:
                take = min(self._raw_left, hi - lo)
                st.h.update(mv[lo - c0 : lo - c0 + take])
                self._raw_left -= take
                if self._raw_left == 0:
                    k += 1
                    continue
                break
            if self._partial is None:
                self._partial = bytearray()
            want = min(b - a, SCRUB_MAX) - len(self._partial)
            take = min(want, hi - lo)
            self._partial += mv[lo - c0 : lo - c0 + take]
            if len(self._partial) < min(b - a, SCRUB_MAX):
                break  # more in the next buffer
            st.h.update(st.normalize(bytes(self._partial))[0])
            st.slow_tiles += 1
            self._partial = None
            rest = (b - a) - SCRUB_MAX
            if rest > 0:
                st.unchecked += 1
                self._raw_left = rest
                done = lo + take
                more = min(rest, c1 - done)
                if more > 0:
                    st.h.update(mv[done - c0 : done - c0 + more])
                    self._raw_left -= more
                if self._raw_left:
                    break
            k += 1
        self._k = k

    def _batch_end(self, k: int, c1: int) -> int:
        """One past the last tile from ``k`` on that ends inside the buffer and is on ``k``'s page."""
        kk = int(self._end.searchsorted(c1, side="right"))  # tiles are sorted and disjoint: ends too
        other = np.flatnonzero(self._page[k:kk] != self._page[k])
        return k + int(other[0]) if len(other) else kk

    def _stretches(self, k: int, kk: int, joinable: np.ndarray) -> list[tuple[int, int]]:
        """[i0, i1) index ranges (relative to ``k``) of tiles that are contiguous in the file and
        all ``joinable``; a tile that is not joinable is a range of its own."""
        s, e = self._off[k:kk], self._end[k:kk]
        brk = np.flatnonzero(~(joinable[:-1] & joinable[1:] & (e[:-1] == s[1:]))) + 1
        edges = [0, *brk.tolist(), kk - k]
        return list(zip(edges[:-1], edges[1:]))

    def _raw_batch(self, st: _PageState, mv: memoryview, c0: int, k: int, kk: int) -> None:
        s, e = self._off[k:kk] - c0, self._end[k:kk] - c0
        for i0, i1 in self._stretches(k, kk, np.ones(kk - k, dtype=bool)):
            st.h.update(mv[int(s[i0]) : int(e[i1 - 1])])

    def _scrub_batch(self, st: _PageState, mv: memoryview, c0: int, k: int, kk: int, markers: np.ndarray, ff=None) -> None:
        """``_scrubbed_tile`` for the tiles [k, kk), its fast path checked for all at once (numpy);
        runs of clean contiguous tiles are hashed in one update (their concatenation)."""
        s, e = self._off[k:kk] - c0, self._end[k:kk] - c0
        # a zero after EOI (a DICOM item's even-length padding) is one ``normalized`` leaves as it is
        ok = clean_by_header_many(np.frombuffer(mv, dtype=np.uint8), s, e, st.headers[0], markers, ff)
        for i0, i1 in self._stretches(k, kk, ok):
            if ok[i0]:
                st.h.update(mv[int(s[i0]) : int(e[i1 - 1])])
            else:
                self._scrubbed_tile(st, mv, int(s[i0]), int(e[i0]), markers)

    def _scrubbed_tile(self, st: _PageState, mv: memoryview, s: int, e: int, markers: np.ndarray) -> None:
        """Hash one whole JPEG tile ``mv[s:e]`` as ``normalized`` leaves it.

        Fast path: the tile's header (to the end of its first SOS) is byte-identical to one
        already proven clean on this page, it ends with EOI, and the first marker after the
        header is that EOI (no further segment, nothing after EOI, no fill byte before it but the
        one ``parity_fill_ok`` allows: the marker search skips fill bytes): then ``normalized`` would
        return the tile unchanged (its parse depends only on those bytes), so it is hashed
        from the buffer as it is.  Anything else takes ``normalized`` itself."""
        eoi = e - 3 if e - s >= 3 and mv[e - 3 : e] == b"\xff\xd9\x00" else e - 2
        for hdr in st.headers:
            L = len(hdr)
            if (
                eoi - s >= L
                and mv[s : s + L] == hdr
                and mv[eoi : eoi + 2] == b"\xff\xd9"
                and parity_fill_ok(mv, eoi, s)
                and bytes(mv[s + L : eoi]).find(b"\xff\xff") < 0
                and restarts_as_asked(mv, s + L, eoi, header_restarts(hdr))
            ):
                i = int(markers.searchsorted(s + L))
                if i < len(markers) and int(markers[i]) == eoi:
                    st.h.update(mv[s:e])
                    return
                break
        data = bytes(mv[s:e])
        out, zeroed = st.normalize(data)
        st.h.update(out)
        st.slow_tiles += 1
        if zeroed == 0:  # remember the header of a tile ``normalized`` left unchanged
            learn_clean_header(data[:4096], st.headers, _KNOWN_HEADERS)

    # -- result --------------------------------------------------------------------------

    @property
    def fed(self) -> int:
        """Bytes fed so far."""
        return self._pos

    @property
    def changed(self) -> int:
        """Tiles (scrubbed side) whose normalization changed a byte: each has a non-essential JPEG
        payload that is not all zeros (what a correct redaction leaves nowhere)."""
        return sum(st.changed for st in self.states)

    @property
    def unchecked(self) -> int:
        """Tiles longer than SCRUB_MAX (only their first SCRUB_MAX bytes were normalized)."""
        return sum(st.unchecked for st in self.states)

    @property
    def malformed(self) -> int:
        """Tiles (scrubbed side) that start like JPEG but do not parse: their identity is raw bytes,
        so their segments are not proven clean by it (the vocabulary scan must look at them)."""
        return sum(st.malformed for st in self.states)

    def spans(self) -> "TileSpans":
        """The pages' tiles with data, from this feeder's own sorted table (no copy: the
        verification holds the output's tile table once, not twice)."""
        return TileSpans.of_sorted(self._off, self._end)

    def finish(self, path: Path | None = None) -> list[tuple[int, int, int, str]]:
        """``(width, height, tiles, identity)`` per page.  A feeder that could not stream reads
        the tiles from ``path`` here (random access, tile order)."""
        if not self.streamable:
            if path is None:
                raise ValueError("tile identity: pages not in file order and no file to read them from")
            self._read_direct(path)
        elif self._k < len(self._off) or self._partial is not None or self._raw_left:
            # the file ended inside a tile: that page's data is short
            for k in range(self._k, len(self._off)):
                self.states[int(self._page[k])].short = True
        out = []
        for st in self.states:
            ident = st.h.hexdigest() + ":" + st.counts_id
            if st.short:
                ident += ":short"
            out.append((st.page.width, st.page.height, st.tiles, ident))
        return out

    def _read_direct(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            for st in self.states:
                for off, cnt in zip(st.page.offsets.tolist(), st.page.counts.tolist()):
                    if not cnt:
                        continue
                    head = os.pread(fd, min(cnt, SCRUB_MAX), off)
                    if cnt > SCRUB_MAX and st.scrub:
                        st.unchecked += 1
                    st.h.update(st.normalize(head)[0] if st.scrub else head)
                    if len(head) < min(cnt, SCRUB_MAX):
                        st.short = True
                    pos, left = off + len(head), cnt - len(head)
                    while left > 0 and not st.short:
                        buf = os.pread(fd, min(left, 8 << 20), pos)
                        if not buf:
                            st.short = True
                            break
                        st.h.update(buf)
                        pos += len(buf)
                        left -= len(buf)
        finally:
            os.close(fd)


def feed_file(path: Path, f: Feeder, chunk: int = 8 << 20) -> None:
    """Feed ``f`` with the whole of ``path``, read once in order (when it can stream at all)."""
    if not f.streamable:
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        pos = 0
        while True:
            buf = os.pread(fd, chunk, pos)
            if not buf:
                break
            f.feed(pos, buf)
            pos += len(buf)
    finally:
        os.close(fd)


def identities_of_file(path: Path, pages: list[Page], scrub: bool, chunk: int = 8 << 20) -> list[tuple[int, int, int, str]]:
    """The identities of ``pages`` of ``path``, reading the file once in order (in-place snapshot, audits)."""
    f = Feeder(pages, scrub)
    feed_file(path, f, chunk)
    return f.finish(path)


class TileSpans:
    """Membership test for ``(offset, length)`` of the pages' tiles (sorted arrays of starts and
    ends, 16 bytes a tile; none of its own where a ``Feeder`` lends its sorted tile table)."""

    def __init__(self, pages: list[Page]):
        off = np.concatenate([p.offsets for p in pages]) if pages else np.zeros(0, np.uint64)
        cnt = np.concatenate([p.counts for p in pages]) if pages else np.zeros(0, np.uint64)
        order = np.lexsort((cnt, off))
        # int64, searched with an int64: a Python int against uint64 makes numpy convert the array
        self._off = off[order].astype(np.int64)
        self._end = self._off + cnt[order].astype(np.int64)

    @classmethod
    def of_sorted(cls, off: np.ndarray, end: np.ndarray) -> "TileSpans":
        """The spans ``[off, end)`` as they are (int64, sorted by ``off``): shared, not copied."""
        ts = cls.__new__(cls)
        ts._off, ts._end = off, end
        return ts

    def runs(self) -> tuple[np.ndarray, np.ndarray]:
        """The tiles' bytes as sorted, disjoint ranges (starts, ends): touching tiles join."""
        return union_arrays(self._off, self._end, drop_empty=True)

    def contains(self, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``self(offset, length)`` for arrays of spans at once (a boolean mask)."""
        offsets = np.asarray(offsets, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        lo = self._off.searchsorted(offsets, side="left")
        hi = self._off.searchsorted(offsets, side="right")
        out = np.zeros(len(offsets), dtype=bool)
        one = (hi - lo) == 1
        out[one] = self._end[lo[one]] - self._off[lo[one]] == lengths[one]
        for k in np.flatnonzero((hi - lo) > 1):  # several tiles at one offset: rare, one by one
            out[k] = self(int(offsets[k]), int(lengths[k]))
        return out

    def __call__(self, offset: int, length: int) -> bool:
        i = int(self._off.searchsorted(np.int64(offset)))
        n = len(self._off)
        while i < n and int(self._off[i]) == offset:
            if int(self._end[i]) - offset == length:
                return True
            i += 1
        return False
