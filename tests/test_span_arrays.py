"""Span bookkeeping on numpy arrays (issue 14: peak memory independent of the slide's tile count).

The verifier and the plan's JPEG scrub keep a slide's tiles as numpy arrays, never one Python
object a tile.  Every array helper is checked here against the plain-Python list algorithm it
replaces (random spans with overlaps, zero-length and adjacent spans), and the readers against
``TiffStructure.data_spans`` on real fixture files."""

from __future__ import annotations

import gc
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from .fixtures.ndpi_gen import make_ndpi
from .fixtures.plant_jpeg import plant_tiff_jpeg
from .fixtures.svs_gen import write_svs
from wsianon.errors import CorruptInput
from wsianon.io import jpeg
from wsianon.io.spans import gaps, gaps_arrays, is_sorted, iter_pairs, union_arrays, union_parts
from wsianon.io.tiff import TILE_OFFSETS, TiffStructure
from wsianon.verify import partition, tileid, vocabulary

# -- the list algorithms the array helpers replace (as they were written before) ----------


def merge_lengths(spans):
    """(start, end) union of (offset, length) spans, touching ones joined, empty ones kept."""
    out = []
    for a, n in sorted(spans):
        b = a + n
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def union_ranges(ranges):
    """Union of non-empty (start, end) ranges, touching ones joined."""
    out = []
    for a, b in sorted(s for s in ranges if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def random_spans(rng: random.Random, n: int, hi: int = 400) -> list[tuple[int, int]]:
    spans = []
    for _ in range(n):
        a = rng.randrange(hi)
        kind = rng.random()
        if kind < 0.15:
            spans.append((a, 0))  # zero-length
        elif kind < 0.3 and spans:
            pa, pn = rng.choice(spans)
            spans.append((pa + pn, rng.randrange(1, 20)))  # adjacent to another span
        elif kind < 0.4 and spans:
            spans.append(rng.choice(spans))  # duplicate
        else:
            spans.append((a, rng.randrange(1, 40)))
    return spans


def pairs(a, b):
    return list(zip(a.tolist(), b.tolist()))


@pytest.mark.parametrize("seed", range(60))
def test_union_arrays_equals_list_merge(seed):
    rng = random.Random(seed)
    spans = random_spans(rng, rng.randrange(0, 60))
    off = np.array([a for a, _ in spans], dtype=np.int64)
    ln = np.array([n for _, n in spans], dtype=np.int64)
    assert pairs(*union_arrays(off, off + ln)) == merge_lengths(spans)
    ranges = [(a, a + n) for a, n in spans] + [(a, a - 3) for a, _ in spans[:3]]  # and some inverted ones
    s = np.array([a for a, _ in ranges], dtype=np.int64)
    e = np.array([b for _, b in ranges], dtype=np.int64)
    assert pairs(*union_arrays(s, e, drop_empty=True)) == union_ranges(ranges)


def test_union_arrays_edge_cases():
    z = np.zeros(0, np.int64)
    assert pairs(*union_arrays(z, z)) == []
    # a zero-length span alone stays (it splits a scan there), one inside another vanishes
    assert pairs(*union_arrays(np.array([5, 0]), np.array([5, 10]))) == [(0, 10)]
    assert pairs(*union_arrays(np.array([20, 0]), np.array([20, 10]))) == [(0, 10), (20, 20)]
    assert pairs(*union_arrays(np.array([10, 0]), np.array([15, 10]))) == [(0, 15)]  # touching: one range
    assert pairs(*union_arrays(np.array([20, 0]), np.array([20, 10]), drop_empty=True)) == [(0, 10)]


@pytest.mark.parametrize("seed", range(40))
def test_gaps_arrays_equals_list_gaps(seed):
    rng = random.Random(seed)
    spans = random_spans(rng, rng.randrange(0, 40))
    size = rng.choice([0, 50, 300, 500])
    merged = union_ranges([(a, a + n) for a, n in spans])
    s = np.array([a for a, _ in merged], dtype=np.int64)
    e = np.array([b for _, b in merged], dtype=np.int64)
    assert pairs(*gaps_arrays(s, e, size)) == gaps(merged, size)
    # sorted but not merged (overlaps, ranges past the end): the same as the list version too
    raw = sorted((a, a + n) for a, n in spans)
    s = np.array([a for a, _ in raw], dtype=np.int64)
    e = np.array([b for _, b in raw], dtype=np.int64)
    assert pairs(*gaps_arrays(s, e, size)) == gaps(raw, size)


@pytest.mark.parametrize("seed", range(30))
def test_union_parts_equals_union_of_all(seed):
    """Parts united one by one, then together: the same as one union (sorted parts, as a TIFF's
    tiles usually are, and unsorted ones)."""
    rng = random.Random(seed)
    parts, everything = [], []
    for _ in range(rng.randrange(0, 5)):
        spans = random_spans(rng, rng.randrange(0, 30))
        if rng.random() < 0.5:
            spans.sort()
        everything += spans
        parts.append((np.array([a for a, _ in spans], dtype=np.int64), np.array([a + n for a, n in spans], dtype=np.int64)))
    assert pairs(*union_parts(parts)) == merge_lengths(everything)
    assert pairs(*union_parts(parts, drop_empty=True)) == union_ranges([(a, a + n) for a, n in everything])


def test_is_sorted_across_chunks():
    a = np.arange(10, dtype=np.int64)
    assert is_sorted(a, chunk=3) and is_sorted(a[:1]) and is_sorted(a[:0])
    for k in range(1, 10):  # one step down anywhere, a chunk boundary included
        b = a.copy()
        b[k] = b[k - 1] - 1
        assert not is_sorted(b, chunk=3)
    assert is_sorted(np.array([1, 1, 1, 2]), chunk=2)


def test_iter_pairs_across_chunks():
    a = np.arange(10, dtype=np.uint64) * 7
    b = np.arange(10, dtype=np.int64) + 100
    got = list(iter_pairs(a, b, chunk=3))
    assert got == list(zip(range(0, 70, 7), range(100, 110)))
    assert all(type(x) is int and type(y) is int for x, y in got)


@pytest.mark.parametrize("seed", range(10))
def test_unproven_equals_sorted_set_minus_proven(seed):
    rng = random.Random(seed)
    spans = random_spans(rng, 80, hi=2000)
    spans = [s for s in spans if s[1]]
    proven_set = set(rng.sample(spans, len(spans) // 3)) if spans else set()
    expected_all = sorted(set(spans))
    assert list(vocabulary._unproven(spans, None)) == expected_all
    assert list(vocabulary._unproven(spans, lambda o, n: (o, n) in proven_set)) == [s for s in expected_all if s not in proven_set]
    # the tile identity's vectorised membership test (TileSpans.contains), several tiles at one offset included
    page = tileid.Page(
        1,
        1,
        np.array([o for o, _ in sorted(proven_set)], dtype=np.uint64),
        np.array([n for _, n in sorted(proven_set)], dtype=np.uint64),
        True,
        None,
    )
    ts = tileid.TileSpans([page])
    assert list(vocabulary._unproven(spans, ts)) == [s for s in expected_all if s not in proven_set]
    # small chunks: duplicates across a chunk boundary, input already in order and not
    for chunk in (2, 3, 7):
        for given in (spans, sorted(spans), sorted(spans + spans)):
            assert list(vocabulary._unproven(given, None, chunk=chunk)) == expected_all
            assert list(vocabulary._unproven(given, ts, chunk=chunk)) == [s for s in expected_all if s not in proven_set]
            assert list(vocabulary._unproven(given, lambda o, n: (o, n) in proven_set, chunk=chunk)) == [s for s in expected_all if s not in proven_set]


# -- readers on real files ------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("spanfiles")
    svs = write_svs(d / "a.svs").path
    big = write_svs(d / "b.svs", bigtiff=True, byteorder=">").path
    ndpi, _ = make_ndpi(d / "c.ndpi")
    planted = write_svs(d / "p.svs").path
    n = plant_tiff_jpeg(planted, "PLNTSPANS42")
    assert n > 0
    return {"svs": svs, "big": big, "ndpi": ndpi, "planted": planted}


@pytest.mark.parametrize("name", ["svs", "big", "ndpi", "planted"])
def test_data_span_arrays_equal_data_spans(files, name):
    with TiffStructure(files[name]) as ts:
        for ifd in ts.ifds:
            o, c = ts.data_span_arrays(ifd)
            assert pairs(o, c) == ts.data_spans(ifd)
            assert o.dtype == np.uint64 and c.dtype == np.uint64


def test_data_span_arrays_reject_non_integer_offsets(files, tmp_path):
    """A corrupt field type of TileOffsets is refused like ``data_spans`` refuses it."""
    bad = tmp_path / "bad.svs"
    bad.write_bytes(files["svs"].read_bytes())
    with TiffStructure(bad) as ts:
        e = ts.ifds[0].entries[TILE_OFFSETS]
        at = e.entry_offset + 2
        order = ts.byteorder
    with open(bad, "r+b") as fh:
        fh.seek(at)
        fh.write(struct.pack(order + "H", 11))  # FLOAT
    with TiffStructure(bad) as ts:
        with pytest.raises(CorruptInput, match="not integers"):
            ts.data_spans(ts.ifds[0])
        with pytest.raises(CorruptInput, match="not integers"):
            ts.data_span_arrays(ts.ifds[0])


def _jpeg_spans_from_lists(path: Path) -> list:
    """``tiff_jpeg_spans`` as it was written on ``data_spans`` lists."""
    from wsianon.io.tiff import COMPRESSION

    out = []
    with TiffStructure(path) as ts:
        fd = ts.fh.fileno()
        for ifd in ts.ifds:
            if ts.value(ifd, COMPRESSION, 1) not in jpeg.JPEG_COMPRESSIONS:
                continue
            tables = ifd.get(jpeg.JPEG_TABLES)
            if tables is not None and tables.size >= 4:
                out.extend(jpeg.stream_spans(fd, tables.value_offset, tables.size))
            known: list[bytes] = []
            for off, cnt in sorted(ts.data_spans(ifd)):
                if cnt:
                    out.extend(jpeg.stream_spans(fd, off, cnt, known))
    return out


@pytest.mark.parametrize("name", ["svs", "ndpi", "planted"])
def test_tiff_jpeg_spans_unchanged(files, name):
    got = jpeg.tiff_jpeg_spans(files[name])
    assert got == _jpeg_spans_from_lists(files[name])
    if name == "planted":
        assert {jpeg.marker_name(s.marker) for s in got} >= {"COM", "APP1"}  # the planted segments are found


def test_vocabulary_still_finds_planted_jpeg_segments(files):
    found = vocabulary.scan_tiff(files["planted"], "aperio")
    kinds = {f.kind for f in found}
    assert "JPEG COM payload" in kinds and "JPEG APP1 payload" in kinds
    # the unplanted fixture's identifying descriptions are text outside pixel data: still found
    plain = vocabulary.scan_tiff(files["svs"], "aperio")
    assert plain and {f.kind for f in plain} == {"text"}


def test_partition_gaps_equal_list_computation(files):
    """The closed-world byte check names the unreferenced ranges the list algorithm finds."""
    from wsianon.pipeline.model import Verdict

    path = files["planted"]  # the planted streams were appended; the originals left unreferenced
    spans, _bad, _tags, _kind, size, _icc, _spare = partition._structure(path, "aperio")
    starts, ends = spans.arrays()
    ranges = list(zip(starts.tolist(), ends.tolist()))
    expected = gaps(union_ranges(ranges), size)
    assert pairs(*gaps_arrays(*partition._union(spans), size)) == expected
    assert len(expected) > 1
    data = path.read_bytes()
    dirty = [(a, b) for a, b in expected if any(data[a:b])]
    assert dirty
    count = sum((b - a) - data[a:b].count(0) for a, b in dirty)
    v = Verdict()
    partition.check_tiff_partition(path, "aperio", v)
    detail = next(c for c in v.checks if c.name == "closed-world-bytes").detail
    assert detail.startswith(f"{count} non-zero byte(s) in {len(dirty)} unreferenced range(s)")
    firsts = [a + next(i for i, x in enumerate(data[a:b]) if x) for a, b in dirty]
    assert [f.offset for f in v.findings if f.encoding == "closed-world-byte"] == firsts


def test_level_pages_leave_no_tifffile_objects_behind(files):
    """tifffile's page <-> file cycles (and the tile tables they hold as tuples of ints) are
    collected when ``level_pages`` returns, not left for the collector's next full pass."""
    import tifffile

    gc.disable()  # no collection by chance: only the function's own may free the cycles
    try:
        with tifffile.TiffFile(files["svs"]) as tf:
            want = [(p.imagewidth, p.imagelength, tuple(p.dataoffsets), tuple(p.databytecounts)) for p in tf.pages if p.dataoffsets]
        del tf
        gc.collect()
        pages = tileid.level_pages(files["svs"], "aperio", {(w, h) for w, h, _, _ in want})
        assert pages is not None
        assert [(p.width, p.height, tuple(p.offsets.tolist()), tuple(p.counts.tolist())) for p in pages] == want
        assert not [o for o in gc.get_objects() if isinstance(o, (tifffile.TiffFile, tifffile.TiffPage))]
        assert partition._tifffile_tagsets(files["svs"], False)
        assert not [o for o in gc.get_objects() if isinstance(o, (tifffile.TiffFile, tifffile.TiffPage))]
    finally:
        gc.enable()


@pytest.mark.parametrize("seed", range(20))
def test_closed_world_merge_with_tiles_equals_list_merge(seed):
    """The converter's closed-world pass merges the tiles' arrays like its list ``_merge``."""
    from wsianon.converters import closed_world as cw

    rng = random.Random(seed)
    small = [(a, a + n) for a, n in random_spans(rng, rng.randrange(0, 10))]
    tile_spans = [[(a, a + n) for a, n in random_spans(rng, rng.randrange(0, 30))] for _ in range(rng.randrange(0, 4))]
    tiles = [(np.array([a for a, _ in t], dtype=np.int64), np.array([b for _, b in t], dtype=np.int64)) for t in tile_spans]
    expected = cw._merge(small + [r for t in tile_spans for r in t])
    assert cw._merge_with_tiles(small, tiles) == expected
    assert all(type(a) is int and type(b) is int for a, b in cw._merge_with_tiles(small, tiles))


def test_release_cycles_freezes_once_and_still_frees_new_cycles(files):
    """After its first collection, ``release_cycles`` freezes what is alive (later passes skip
    it); cycles made afterwards — a later slide's tifffile objects — are still freed."""
    import weakref

    import tifffile

    tileid.release_cycles()
    assert tileid._frozen and gc.get_freeze_count() > 0
    frozen = gc.get_freeze_count()

    class Node:
        pass

    n = Node()
    n.me = n  # a cycle made after the freeze
    ref = weakref.ref(n)
    del n
    gc.disable()
    try:
        pages = tileid.level_pages(files["svs"], "aperio", {(w, h) for w, h in _level_dims(files["svs"])})
        assert pages
        assert ref() is None  # collected by the pass of level_pages
        assert not [o for o in gc.get_objects() if isinstance(o, (tifffile.TiffFile, tifffile.TiffPage))]
    finally:
        gc.enable()
    assert gc.get_freeze_count() == frozen  # frozen once, not again


def _level_dims(path):
    import tifffile

    with tifffile.TiffFile(path) as tf:
        return [(p.imagewidth, p.imagelength) for p in tf.pages if p.dataoffsets]
