"""``tiles-frame-size`` settles the tiles whose bytes start with an already parsed frame header all
at once (``_Sizes.settle``: the file mapped a window at a time, the C prefix comparison) and the
rest one by one. Its findings must be exactly those of the one-by-one walk (``fd=None``), in tile
order: a taller, a shorter and a damaged tile among many good ones, a tile whose header repeats a
known one but is shorter than it, tiles in any order in the file, and tiles within a header's
length of the file's end (compared one by one)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from wsianon.verify import sof


def _jpeg(h: int, w: int, seed: int, quality: int = 80) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _judge(path, offs, cnts, batch: bool) -> tuple[int, list]:
    fd = os.open(path, os.O_RDONLY)
    try:
        sizes = sof._Sizes(lambda o, n: os.pread(fd, n, o), fd=fd if batch else None)
        bad: list = []
        n = sof._judge_tiles(3, offs, cnts, None, 64, 64, "JPEG frame header", sizes, bad)
        return n, bad
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "shuffled, empty, dtype",
    [(True, True, np.int64), (False, False, np.uint64), (False, True, np.uint64), (True, False, np.uint64)],
    ids=["shuffled-with-empty", "file-order", "file-order-with-empty", "shuffled"],
)
def test_batch_settling_finds_what_the_one_by_one_walk_finds(tmp_path, shuffled, empty, dtype):
    """In file order with every tile holding data (a slide's usual table, as ``data_span_arrays``
    gives it: uint64) the batch compares views of the table, without sorted copies; shuffled or
    with empty tiles it takes the copies. Both must find what the one-by-one walk finds."""
    good = [_jpeg(64, 64, s) for s in range(3)]  # one header (same tables and size), different data
    other_q = _jpeg(64, 64, 9, quality=60)  # a second header of the right size: taught, then settled
    taller, shorter = _jpeg(72, 64, 5), _jpeg(64, 48, 6)
    streams: list[bytes] = []
    plan = []
    for i in range(3000):
        if i in (1200, 2999):
            s = taller
        elif i == 1700:
            s = shorter
        elif i == 2100:
            s = good[0][:40]  # the known header cut short: no frame header in its bytes
        elif i == 2500 or i > 2900 and i % 7 == 0:
            s = other_q
        else:
            s = good[i % 3]
        streams.append(s)
        plan.append(i)
    # tiles written in a shuffled order (offsets not in tile order), or in tile order
    rng = np.random.default_rng(1)
    order = rng.permutation(len(streams)) if shuffled else np.arange(len(streams))
    data = bytearray()
    offs = np.zeros(len(streams), dtype=np.int64)
    for t in order.tolist():
        offs[t] = len(data)
        data += streams[t]
    # the last stream in the file: shorter than a header, within a header's length of the file's end
    # (no window holds a header there: compared one by one)
    offs = np.append(offs, len(data))
    data += good[1][:60]
    cnts = np.array([len(s) for s in streams] + [60], dtype=np.int64)
    if empty:
        cnts[5] = 0  # an empty tile is not judged
    offs, cnts = offs.astype(dtype), cnts.astype(dtype)
    path = tmp_path / "tiles.bin"
    path.write_bytes(bytes(data))
    n1, one_by_one = _judge(path, offs, cnts, batch=False)
    n2, batched = _judge(path, offs, cnts, batch=True)
    assert n1 == n2 == len(offs) - empty
    assert batched == one_by_one
    found = {int(offs.tolist().index(o)) for _i, o, _w in batched}
    assert found == {1200, 1700, 2100, 2999, len(offs) - 1}, found
    assert [o for _i, o, _w in batched] == [int(offs[t]) for t in sorted(found)]  # in tile order


def test_settle_maps_no_more_than_a_window(tmp_path):
    """Each tile settled through the mapping matches the header it was given, and a tile whose
    count is shorter than the header is not settled (it cannot start with it)."""
    hdr_tile = _jpeg(64, 64, 1)
    path = tmp_path / "t.bin"
    path.write_bytes(hdr_tile * 4 + b"\0" * 100)
    fd = os.open(path, os.O_RDONLY)
    try:
        sizes = sof._Sizes(lambda o, n: os.pread(fd, n, o), fd=fd)
        assert sizes.size(0, len(hdr_tile)) == (64, 64)
        L = len(sizes.known[0][0])
        offs = np.array([0, len(hdr_tile), 2 * len(hdr_tile), 3 * len(hdr_tile), 4 * len(hdr_tile), 1], dtype=np.int64)
        cnts = np.array([len(hdr_tile), len(hdr_tile), L - 1, len(hdr_tile), 100, len(hdr_tile)], dtype=np.int64)
        assert sizes.settle(offs, cnts).tolist() == [0, 0, -1, 0, -1, -1]
    finally:
        os.close(fd)


def test_settle_in_file_order_holds_no_copy_of_the_table(tmp_path):
    """A slide's tile table in file order is compared in place: the settle's own allocations are
    a few bytes a tile (its answer, the order test, a window's offsets), not the sorted copies (offsets, counts,
    order, answer: ~40 bytes a tile) that were a part of the verification's peak growing with the
    slide. 100,000 tiles 1 KiB apart in a sparse file, the first a real header."""
    import tracemalloc

    hdr_tile = _jpeg(64, 64, 1)
    n, step = 100_000, 1024
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f:
        f.write(hdr_tile)
        f.truncate(n * step + len(hdr_tile))
    offs = np.arange(n, dtype=np.uint64) * step
    cnts = np.full(n, len(hdr_tile), dtype=np.uint64)
    fd = os.open(path, os.O_RDONLY)
    try:
        sizes = sof._Sizes(lambda o, k: os.pread(fd, k, o), fd=fd)
        assert sizes.size(0, len(hdr_tile)) == (64, 64)
        tracemalloc.start()
        try:
            k = sizes.settle(offs, cnts)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    finally:
        os.close(fd)
    assert k[0] == 0 and bool(np.all(k[1:] == -1))  # the holes hold no header
    assert peak < 6 * n, peak  # measured ~3.2 bytes a tile; the copies were ~40, a uint64 search 8 more
