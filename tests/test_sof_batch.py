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


def test_batch_settling_finds_what_the_one_by_one_walk_finds(tmp_path):
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
    # tiles written in a shuffled order, so offsets are not in tile order
    rng = np.random.default_rng(1)
    order = rng.permutation(len(streams))
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
    cnts[5] = 0  # an empty tile is not judged
    path = tmp_path / "tiles.bin"
    path.write_bytes(bytes(data))
    n1, one_by_one = _judge(path, offs, cnts, batch=False)
    n2, batched = _judge(path, offs, cnts, batch=True)
    assert n1 == n2 == len(offs) - 1
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
