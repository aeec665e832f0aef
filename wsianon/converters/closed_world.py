"""Closed world for TIFF-family native outputs: a post-pass over any converter's Plan.

The converter's plan (patches + appended bytes) is simulated without writing
anything (:class:`PatchedView`); the simulated output's IFD chain is walked and

* every tag that the format's profile does not allow for that IFD's kind
  (``wsianon/profiles/data/tiff_closed_world.json`` + the format's
  ``closed_world.tiff_tags``), every duplicate entry and every entry of an
  unknown type is removed from its IFD: the directory block is rewritten in
  place, within its original extent (entries shifted, count decremented, next
  pointer and NDPI high halves moved along, the freed tail zeroed);
* every byte that no kept structure references (header, kept IFD blocks, kept
  entries' values, strips/tiles of kept IFDs) is zeroed: gaps, orphaned
  descriptions and XML, unlinked IFDs and their data, values of dropped tags
  (EXIF/GPS sub-IFDs included), bytes after the last structure.

Layout and offsets never change, so copy mode stays a streaming copy plus
patches and in-place mode stays possible.  Holes of sparse files are never
filled (they read as zeros anyway).
"""

from __future__ import annotations

import bisect
import os
import re

from wsianon.converters.registry import ClosedWorld, spec_of
from wsianon.io.spans import gaps as unreferenced
from wsianon.io.spans import iter_pairs, union_arrays
from wsianon.io import icc
from wsianon.io.extents import data_extents
from wsianon.io.plan import FilePlan, Patch, Plan
from wsianon.io.tiff import TIFF_MAGIC, TYPES, Kind, TiffStructure, compression_of, value_bytes_only
from wsianon.profiles.closed_world import allowed_tags, known_tag_name, per_sample_count_ok, per_sample_tags, tag_name, value_allowed

ICC_TAG = 34675
_CHECK_LIMIT = 1 << 20  # unreferenced stretches up to this size are read: zero ones need no patch


class PatchedView:
    """Read-only file object showing the output a FilePlan would produce (no I/O but preads)."""

    def __init__(self, fp: FilePlan, fd: int, src_size: int):
        self.fd = fd
        self.src_size = src_size
        self.append = bytes(fp.append)
        self.size = src_size + len(self.append)
        self.pos = 0
        self.closed = False
        segs: list[tuple[int, int, Patch]] = []
        end = 0
        for p in fp.sorted_patches():
            a = max(p.offset, end)
            if a >= p.end:
                continue
            segs.append((a, p.end, p))
            end = p.end
        self._segs = segs
        self._starts = [s[0] for s in segs]

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else (self.pos + offset if whence == 1 else self.size + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.size - self.pos
        data = self.pread(self.pos, n)
        self.pos += len(data)
        return data

    def pread(self, off: int, n: int) -> bytes:
        end = min(off + n, self.size)
        if off >= end:
            return b""
        buf = bytearray()
        if off < self.src_size:
            buf += os.pread(self.fd, min(end, self.src_size) - off, off)
        if end > self.src_size:
            buf += self.append[max(off, self.src_size) - self.src_size : end - self.src_size]
        i = max(bisect.bisect_right(self._starts, off) - 1, 0)
        while i < len(self._segs) and self._segs[i][0] < end:
            a, b, p = self._segs[i]
            lo, hi = max(a, off), min(b, end)
            if lo < hi:
                buf[lo - off : hi - off] = p.bytes_for(lo, hi)
            i += 1
        return bytes(buf)

    def close(self) -> None:
        pass


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _merge_with_tiles(spans: list[tuple[int, int]], tiles: list[tuple]) -> list[tuple[int, int]]:
    """``_merge`` of ``spans`` and the (starts, ends) arrays ``tiles``, on numpy arrays (the
    slide's tiles never become one Python tuple each; only the merged ranges do)."""
    import numpy as np

    small = np.array(spans, dtype=np.int64).reshape(-1, 2)
    starts, ends = union_arrays(np.concatenate([small[:, 0], *(a for a, _ in tiles)]), np.concatenate([small[:, 1], *(b for _, b in tiles)]), drop_empty=True)
    return list(iter_pairs(starts, ends))


def _complement(spans: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    return unreferenced(spans, size)


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _subtract(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """a minus b (both sorted, b merged)."""
    out = []
    j = 0
    for lo, hi in a:
        while j < len(b) and b[j][1] <= lo:
            j += 1
        k, cur = j, lo
        while k < len(b) and b[k][0] < hi:
            if b[k][0] > cur:
                out.append((cur, b[k][0]))
            cur = max(cur, b[k][1])
            k += 1
        if cur < hi:
            out.append((cur, hi))
    return out


ASCII_TYPE = 2
PROPERTY_MAP = 65449  # NDPI: "key=value" items, each ending in CR LF
# a run of blanks holding a space (two spaces, a space and a tab): runs of tabs alone are the
# indentation of an XML description (Philips), left as they are
_BLANK_RUN = re.compile(rb"[ \t]*(?: [ \t]|\t )[ \t]*")


def _one_line(text: bytes) -> bytes:
    """A text in one form: every run of blanks holding a space one space, no whitespace at
    either end, except the one space after a closing ``=`` (an Aperio item without a value,
    ``User = ``)."""
    t = _BLANK_RUN.sub(b" ", text).lstrip()
    s = t.rstrip()
    if s.endswith(b"=") and t[len(s) : len(s) + 1] == b" ":
        s += b" "
    return s


def one_form_ascii(tag: int, raw: bytes) -> bytes:
    """The bytes a kept ASCII value is written as (red team stop 39: the lengths of runs of
    spaces and the count of trailing NULs spelled numbers): the text up to its first NUL in one
    form and exactly one terminating NUL (count = length + 1). The NDPI PropertyMap: its items
    ``key=value`` with key and value in one form, each ending in CR LF, no other lines."""
    text = raw.split(b"\0", 1)[0]
    if tag == PROPERTY_MAP:
        items = []
        for line in re.split(rb"\r\n|\n|\r", text):
            k, eq, v = line.partition(b"=")
            if eq:  # a line that is no item (the NDPI route drops those first): dropped
                items.append(_one_line(k) + eq + _one_line(v))
        return b"".join(i + b"\r\n" for i in items) + b"\0"
    return _one_line(text) + b"\0"


def _one_form_value(view: PatchedView, ifd, tag: int, typ: int, count: int, samples: int | None) -> bytes | None:
    """The value a kept entry must hold instead of its own (None: it is in its one form): a
    kept ASCII value in one form; a per-sample tag (BitsPerSample, SampleFormat, ...) with more
    values than SamplesPerPixel cut to those (no reader reads the rest)."""
    e = ifd.entries.get(tag)
    if e is None or e.type != typ or e.count != count or not count:
        return None
    if typ == ASCII_TYPE:
        raw = view.pread(e.value_offset, e.size)
        new = one_form_ascii(tag, raw)
        return None if new == raw else new
    if tag in per_sample_tags() and samples is not None and count > samples and not per_sample_count_ok(count, samples):
        return view.pread(e.value_offset, e.size)[: samples * TYPES[typ][1]]
    return None


def _with_value(ts: TiffStructure, ifd, tag: int, typ: int, entry: bytes, new: bytes) -> tuple[bytes, Patch | None, tuple[int, int] | None]:
    """(the entry holding ``new``, the patch writing it where the old value was, the span it
    occupies there): in the entry's field when it fits there (not an NDPI text: its readers look
    for text out of line), else over the old value, the rest of that zeroed. ``new`` must be no
    longer than the old value unless it fits the field (the one form only shortens: a text
    without its NUL that no longer fits is written empty)."""
    big = ts.kind is Kind.BIG
    head, field_len = (12, 8) if big else (8, 4)
    e = ifd.entries[tag]
    out_of_line = ts.kind is Kind.NDPI and typ == ASCII_TYPE
    if not (len(new) <= field_len and not out_of_line) and not (not e.inline and len(new) <= e.size):
        new = b"\0"  # an ASCII value without its NUL that no longer fits where it was: written empty
        if out_of_line and (e.inline or not e.size):  # no place for it (no value bytes): the verifier judges it
            return entry, None, None
    count = len(new) // TYPES[typ][1]
    counted = entry[:4] + ts.pack("Q" if big else "I", count)
    if len(new) <= field_len and not out_of_line:
        return counted + new + bytes(field_len - len(new)), None, None
    patch = Patch(e.value_offset, e.size, new + bytes(e.size - len(new)), f"closed world: a value of IFD {ifd.index} in its one form")
    return counted + entry[head:], patch, (e.value_offset, e.value_offset + len(new))


def _rewrite_ifd(
    ts: TiffStructure, view: PatchedView, ifd, fmt: str
) -> tuple[bytes | None, int, list[int], set[int], list[Patch], dict[int, tuple[int, int] | None]]:
    """(new block or None when unchanged, referenced length, dropped tags, kept tags, patches
    writing kept values in their one form, the spans those values now occupy by tag: None
    when the value moved into its entry)."""
    big = ts.kind is Kind.BIG
    cs, es = (8, 20) if big else (2, 12)
    (n,) = ts.unpack("Q" if big else "H", view.pread(ifd.offset, cs))
    raw = view.pread(ifd.offset + cs, n * es)
    allowed = allowed_tags(fmt, set(ifd.entries), compression_of(ts, ifd))
    keep: list[tuple[int, int, int]] = []  # (entry index, type, count)
    dropped, seen = [], set()
    for i in range(n):
        tag, typ, count = ts.unpack("HHQ" if big else "HHI", raw[i * es : i * es + (12 if big else 8)])
        if tag in allowed and tag not in seen and typ in TYPES and value_allowed(tag, typ, count):
            keep.append((i, typ, count))
            seen.add(tag)
        else:
            dropped.append(tag)
    nxt = view.pread(ifd.next_field_offset, ts.next_size)
    highs = view.pread(ifd.next_field_offset + 8, 4 * n).ljust(4 * n, b"\0") if ts.kind is Kind.NDPI else b""
    given = [(raw[i * es : (i + 1) * es], highs[4 * i : 4 * i + 4]) for i, _, _ in keep]
    samples = ts.samples_per_pixel(ifd)
    values: list[Patch] = []
    moved: dict[int, tuple[int, int] | None] = {}
    formed = []
    for (e, h), (_, typ, count) in zip(given, keep):
        tag = ts.unpack("H", e[:2])[0]
        new = _one_form_value(view, ifd, tag, typ, count, samples)
        if new is not None:
            e, patch, span = _with_value(ts, ifd, tag, typ, e, new)
            if patch is not None:
                values.append(patch)
            moved[tag] = span
        formed.append((e, h))
    entries = [value_bytes_only(ts.kind, e, h, typ, _count_of(ts, e)) for (e, h), (_, typ, _) in zip(formed, keep)]
    spare = entries != given
    if not dropped and not spare:
        return None, ifd.end - ifd.offset, [], seen, values, moved
    block = ts.pack("Q" if big else "H", len(keep)) + b"".join(e for e, _ in entries) + nxt
    if ts.kind is Kind.NDPI:
        block += b"".join(h for _, h in entries)
    used = len(block)
    return block + bytes(ifd.end - ifd.offset - used), used, dropped, seen, values, moved


def _count_of(ts: TiffStructure, entry: bytes) -> int:
    return ts.unpack("Q" if ts.kind is Kind.BIG else "I", entry[4 : 12 if ts.kind is Kind.BIG else 8])[0]


def close_plan(plan: Plan, fmt: str) -> None:
    """Add the closed-world patches the format's spec names: to every TIFF file of ``plan``, or to
    the MRXS Slidedat.ini, Index.dat and Data files."""
    cw = spec_of(fmt).closed_world
    if cw is ClosedWorld.MRXS:
        from wsianon.converters.mrxs.closed_world import close_mrxs  # imports this module

        close_mrxs(plan)
        return
    if cw is not ClosedWorld.TIFF:
        return
    total_zeroed = icc_total = 0
    dropped_all: list[dict] = []
    for fp in plan.files:
        if fp.source is None or fp.content is not None:
            continue
        with open(fp.source, "rb") as fh:
            if fh.read(4) not in TIFF_MAGIC:
                continue
        zeroed, dropped, icc_emptied = _close_file(plan, fp, fmt)
        total_zeroed += zeroed
        icc_total += icc_emptied
        dropped_all += dropped
    plan.closed_world = {"unreferenced_bytes_zeroed": total_zeroed, "tags_dropped": dropped_all, "icc_text_tags_emptied": icc_total}


def _close_file(plan: Plan, fp: FilePlan, fmt: str) -> tuple[int, list[dict], int]:
    assert fp.source is not None, "called only for files with a source"
    fd = os.open(fp.source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        src_size = os.fstat(fd).st_size
        view = PatchedView(fp, fd, src_size)
        ts = TiffStructure(fp.source, fh=view, size=view.size)  # type: ignore[arg-type]
        header = 16 if ts.kind is Kind.BIG else (12 if ts.kind is Kind.NDPI else 8)
        spans: list[tuple[int, int]] = [(0, header)]
        tiles: list[tuple] = []  # (starts, ends) arrays of each kept IFD's tiles/strips
        blocks: list[Patch] = []
        dropped_report: list[dict] = []
        icc_emptied = 0
        for ifd in ts.ifds:
            block, used, dropped, kept, values, moved = _rewrite_ifd(ts, view, ifd, fmt)
            spans.append((ifd.offset, min(ifd.offset + used, view.size)))
            if block is not None:
                blocks.append(Patch(ifd.offset, len(block), block, f"closed world: IFD {ifd.index} keeps allowed tags only"))
            blocks += values
            for tag in dropped:
                name = tag_name(tag)
                # an unknown tag's number is the source's choice: the shared report does not show it
                dropped_report.append({"tag": tag if known_tag_name(tag) else None, "name": name, "where": f"IFD {ifd.index}"})
                plan.remove("tag", f"tag {name}", "removed (not allowed by the format profile)", f"IFD {ifd.index}")
            for tag in kept:
                e = ifd.entries[tag]
                if tag in moved:
                    span = moved[tag]
                    if span is not None:
                        spans.append(span)
                elif not e.inline and e.size:
                    spans.append((e.value_offset, e.value_offset + e.size))
                if tag == ICC_TAG and e.size:
                    old = view.pread(e.value_offset, e.size)
                    new, emptied = icc.sanitize(old)
                    if new != old:
                        blocks.append(Patch(e.value_offset, e.size, new, f"closed world: ICC profile of IFD {ifd.index} keeps colorimetric tags only"))
                        icc_emptied += emptied
                        plan.remove("field", "ICC profile text tags", "emptied (colour data kept)", f"IFD {ifd.index}")
            if ({324, 325} <= kept) or ({273, 279} <= kept):
                o, c = ts.data_span_arrays(ifd)  # numpy, 16 bytes a tile: no list of tuples a tile
                tiles.append((o[c > 0], o[c > 0] + c[c > 0]))
                blocks += _empty_chunk_offsets(ts, ifd, o, c)
        zeroed = _zero_unreferenced(fp, fd, src_size, view.size, _merge_with_tiles(spans, tiles), blocks)
        return zeroed, dropped_report, icc_emptied
    finally:
        os.close(fd)


def _empty_chunk_offsets(ts: TiffStructure, ifd, offsets, counts) -> list[Patch]:
    """Zero-fill patches for the offset of every tile/strip whose byte count is 0 (an empty tile:
    no reader reads its offset, which could hold any four or eight bytes), in runs."""
    import numpy as np

    idx = np.flatnonzero((counts == 0) & (offsets != 0))
    if not len(idx):
        return []
    e = ifd.entries[324 if 324 in ifd else 273]
    unit = TYPES[e.type][1]
    if e.inline and ts.kind is Kind.NDPI and e.count == 1:
        return []  # an NDPI single offset with its high half: a strip of count 0 is no image
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    return [
        Patch(e.value_offset + int(run[0]) * unit, len(run) * unit, None, f"closed world: offsets of empty tiles/strips of IFD {ifd.index} zeroed")
        for run in np.split(idx, breaks)
    ]


def _zero_unreferenced(fp: FilePlan, fd: int, src_size: int, view_size: int, refs: list[tuple[int, int]], blocks: list[Patch]) -> int:
    """Make every byte of ``fp``'s output outside ``refs`` zero (patches, appended bytes); returns bytes zeroed.

    ``blocks`` are new patches computed on the simulated output: they supersede the plan's patches they cover."""
    gaps = _complement(refs, view_size)
    # blocks inside the appended bytes (IFDs a converter relocated) are written into them
    in_file: list[Patch] = []
    if blocks and fp.append:
        app = bytearray(fp.append)
        for blk in blocks:
            if blk.end > src_size:
                lo = max(blk.offset, src_size)
                app[lo - src_size : blk.end - src_size] = blk.bytes_for(lo, blk.end)
                if blk.offset < src_size:
                    in_file.append(Patch(blk.offset, src_size - blk.offset, blk.bytes_for(blk.offset, src_size), blk.reason))
            else:
                in_file.append(blk)
        fp.append = bytes(app)
        blocks = in_file
    # existing patches inside rewritten blocks (and ICC profiles) are superseded: those were computed after them
    if blocks:
        bspans = _merge([(b.offset, b.end) for b in blocks])
        kept_patches: list[Patch] = []
        for p in fp.patches:
            for lo, hi in _subtract([(p.offset, p.end)], bspans):
                kept_patches.append(
                    p if (lo, hi) == (p.offset, p.end) else Patch(lo, hi - lo, None if p.data is None else p.data[lo - p.offset : hi - p.offset], p.reason)
                )
        fp.patches = kept_patches + blocks
    zeroed = 0
    # data patches that would write non-zero bytes into unreferenced stretches: zero those bytes
    new_patches = []
    for p in fp.patches:
        if p.data is not None:
            over = _intersect([(p.offset, p.end)], gaps)
            if over and any(p.data[lo - p.offset : hi - p.offset].strip(b"\0") for lo, hi in over):
                data = bytearray(p.data)
                for lo, hi in over:
                    zeroed += sum(1 for x in data[lo - p.offset : hi - p.offset] if x)
                    data[lo - p.offset : hi - p.offset] = bytes(hi - lo)
                p = Patch(p.offset, p.length, bytes(data), p.reason + " (unreferenced part zeroed)")
        new_patches.append(p)
    fp.patches = new_patches
    covered = _merge([(p.offset, p.end) for p in fp.patches])
    todo = _subtract(gaps, covered)
    # the source part: only where the file holds data (holes of sparse files are zeros already)
    src_todo = _intersect([g for g in ((a, min(b, src_size)) for a, b in todo) if g[1] > g[0]], data_extents(fd, 0, src_size))
    for a, b in src_todo:
        if b - a <= _CHECK_LIMIT and not os.pread(fd, b - a, a).strip(b"\0"):
            continue
        fp.patches.append(Patch(a, b - a, None, "closed world: unreferenced bytes zeroed"))
        zeroed += b - a
    # the appended part
    if fp.append:
        app = bytearray(fp.append)
        for a, b in todo:
            lo, hi = max(a, src_size), min(b, view_size)
            if lo < hi and app[lo - src_size : hi - src_size].strip(b"\0"):
                zeroed += hi - lo
                app[lo - src_size : hi - src_size] = bytes(hi - lo)
        fp.append = bytes(app)
    fp.sorted_patches()  # overlapping data patches would be a bug: fail now, before writing
    return zeroed


__all__ = ["PatchedView", "close_plan"]
