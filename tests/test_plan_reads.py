"""The plan's JPEG scrub search reads one head a tile (issue 14): ``StreamScrub.rest`` judges every
stream exactly as ``stream_spans`` does alone — clean and dirty streams, contiguous and with gaps
between them, short streams, streams ending without EOI, the last stream of a run — while
reading each contiguous stream's head together with the previous stream's last two bytes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from wsianon.io.jpeg import StreamScrub, stream_spans

from .fixtures.plant_jpeg import noise_jpeg


COM = b"\xff\xfe\x00\x0cCOM-CANARY"


def _streams() -> list[tuple[bytes, int]]:
    """(stream, gap before it)."""
    small, big = noise_jpeg(1, 16), noise_jpeg(2, 96)
    mid_com = lambda j: j[:-2] + COM + b"\xff\xd9"  # noqa: E731 - a COM after the scan
    head_com = lambda j: j[:2] + COM + j[2:]  # noqa: E731 - a COM in the header
    return [
        (big, 0),
        (big, 0),
        (small, 0),
        (mid_com(big), 0),
        (big + b"TRAIL", 0),
        (head_com(big), 0),
        (big, 3),
        (mid_com(small), 0),
        (b"\xff\xd8\x00", 0),  # too short to be a stream
        (big, 0),
        (big + b"\0", 0),
        (b"not a jpeg at all", 0),
        (big, 0),
        (small + b"X", 7),
        (big[:-2], 0),  # no EOI: read whole
        (big, 0),
    ]


@pytest.mark.parametrize("order", ["file", "no-contiguous"])
def test_plan_walk_answers_like_stream_spans(tmp_path, order, monkeypatch):
    streams = _streams()
    f = tmp_path / "s.bin"
    spans = []
    with open(f, "wb") as fh:
        for s, gap in streams:
            fh.write(b"\0" * (gap if order == "file" else gap + 1))
            spans.append((fh.tell(), len(s)))
            fh.write(s)
    reads: list[int] = []
    real = os.pread

    def counted(fd, n, off):
        reads.append(n)
        return real(fd, n, off)

    fd = os.open(f, os.O_RDONLY)
    try:
        known: list[bytes] = []  # shared, as tiff_jpeg_spans shares them per IFD
        alone = [stream_spans(fd, o, n, known) for o, n in spans]
        monkeypatch.setattr(os, "pread", counted)
        offs, cnts = (np.array(x, dtype=np.int64) for x in zip(*spans))
        together = StreamScrub([(offs, cnts)]).rest(fd)
    finally:
        monkeypatch.undo()
        os.close(fd)
    key = lambda r: [(s.offset, s.length, s.marker) for s in r]  # noqa: E731
    assert key(together) == [x for r in alone for x in key(r)]
    assert alone[4] and alone[5] and alone[7] and alone[13] and alone[14] == []
    # a COM after the scan of a stream longer than a head read and ending with EOI is not seen by
    # the plan (alone or together); the verifier's tile identity quarantines such a tile
    assert alone[3] == []
    if order == "file":
        # clean streams cost one read each once their header is known, and a short one
        assert reads.count(max(reads)) <= 4 and min(reads) < 200
        assert len(reads) < 2 * len(spans)


def _marker_data(seed: int) -> tuple[bytes, list[int]]:
    rng = np.random.default_rng(seed)
    data = bytearray(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    for k in range(0, len(data) - 1, 5):  # many 0xFF, followed by every kind of byte
        data[k] = 0xFF
    data[-1] = 0xFF  # a 0xFF as the very last byte has no follower: never a marker
    naive = [p for p in range(len(data) - 1) if data[p] == 0xFF and data[p + 1] not in (0x00, 0xFF, *range(0xD0, 0xD8))]
    return bytes(data), naive


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64, 1 << 20])
def test_numpy_marker_search_in_pieces_matches_a_byte_by_byte_search(monkeypatch, piece):
    """The numpy search works through long buffers in pieces; every piece boundary (a 0xFF as a
    piece's last byte, its follower in the next piece) gives what a byte-by-byte search gives."""
    from wsianon.io import jpeg

    data, naive = _marker_data(piece)
    monkeypatch.setattr(jpeg, "MARKER_PIECE", piece)
    got = jpeg._markers_numpy(data)
    assert got.tolist() == naive and len(naive) > 100
    assert jpeg._markers_numpy(memoryview(data)[10:20]).tolist() == [p - 10 for p in naive if 10 <= p < 19]
    assert jpeg._markers_numpy(b"\xff").tolist() == [] and jpeg._markers_numpy(b"\xff\xd9").tolist() == [0]


def test_c_marker_search_is_built_and_matches_numpy():
    """The set-up builds the C search (setup.py, wsianon/io/_markers.c) and ``marker_positions``
    uses it; it gives what a byte-by-byte search and the numpy search give: on random bytes with
    many 0xFF, on views and slices, on every short buffer of marker-like bytes, and on the empty,
    one-byte and two-byte edge cases.  (Where no compiler was available the install falls back to
    numpy; this environment is built by ``make venv``, which has one.)"""
    import itertools

    from wsianon.io import jpeg

    assert jpeg._c_markers is not None, "wsianon.io._markers was not built (make venv compiles it)"
    for seed in range(8):
        data, naive = _marker_data(seed)
        got = jpeg.marker_positions(data)
        assert got.dtype == np.int64 and got.tolist() == naive == jpeg._markers_numpy(data).tolist()
        for a, b in ((0, 1), (3, 4000), (4999, 5000), (17, 17)):
            assert jpeg.marker_positions(memoryview(data)[a:b]).tolist() == jpeg._markers_numpy(data[a:b]).tolist()
        arr = np.frombuffer(data, dtype=np.uint8)
        assert jpeg.marker_positions(memoryview(arr)[100:900]).tolist() == [p - 100 for p in naive if 100 <= p < 899]
    alphabet = (0x00, 0xFF, 0xD0, 0xD7, 0xD8, 0xD9, 0xCF, 0xDA, 0x41)
    for n in range(5):
        for combo in itertools.product(alphabet, repeat=n):
            buf = bytes(combo)
            assert jpeg.marker_positions(buf).tolist() == jpeg._markers_numpy(buf).tolist(), buf
    big = bytes([0xFF, 0xE1]) * 100_000  # more positions than the first allocation holds
    assert jpeg.marker_positions(big).tolist() == list(range(0, 200_000, 2))


def test_c_pairs_and_restarts_search_matches_a_byte_by_byte_search():
    """``pairs_and_restarts`` (the header-repeat shortcut's count of fill bytes and restart
    markers, C where built) and ``marker_index`` (the markers, pairs and restarts from one pass) give what a byte-by-byte search and the numpy search give: random
    bytes with many 0xFF, views and slices, every short buffer of marker-like bytes, and more
    positions than the first allocation holds."""
    import itertools

    from wsianon.io import jpeg

    assert jpeg._c_markers is not None, "wsianon.io._markers was not built (make venv compiles it)"

    def naive(b: bytes) -> tuple[list[int], list[int]]:
        ff = [p for p in range(len(b) - 1) if b[p] == 0xFF]
        return [p for p in ff if b[p + 1] == 0xFF], [p for p in ff if 0xD0 <= b[p + 1] <= 0xD7]

    def both(buf) -> tuple[list[int], list[int]]:
        c, n = jpeg.pairs_and_restarts(buf), jpeg._pairs_restarts_numpy(buf)
        assert c[0].dtype == c[1].dtype == np.int64
        assert (c[0].tolist(), c[1].tolist()) == (n[0].tolist(), n[1].tolist()), bytes(buf)
        # the one-pass index gives the same three lists as the separate searches
        idx = jpeg.marker_index(buf)
        assert [a.dtype for a in idx] == [np.int64] * 3
        assert (idx.at.tolist(), idx.pairs.tolist(), idx.restarts.tolist()) == (jpeg._markers_numpy(buf).tolist(), n[0].tolist(), n[1].tolist())
        return c[0].tolist(), c[1].tolist()

    rng = np.random.default_rng(7)
    for _ in range(8):
        data = bytes(rng.choice([0x00, 0xFF, 0xFF, 0xD0, 0xD3, 0xD7, 0xD8, 0xD9, 0x12], 6000).astype(np.uint8))
        want = naive(data)
        assert both(data) == want and len(want[0]) > 100 and len(want[1]) > 100
        for a, b in ((0, 1), (3, 4000), (4999, 5000), (17, 17)):
            assert both(memoryview(data)[a:b]) == naive(data[a:b])
    alphabet = (0x00, 0xFF, 0xD0, 0xD7, 0xD8, 0xCF, 0x41)
    for n in range(5):
        for combo in itertools.product(alphabet, repeat=n):
            assert both(bytes(combo)) == naive(bytes(combo))
    pairs, rst = jpeg.pairs_and_restarts(b"\xff" * 300_001 + b"\xd0")
    assert pairs.tolist() == list(range(300_000)) and rst.tolist() == [300_000]


def test_c_prefix_mask_matches_a_naive_comparison():
    """``prefix_mask`` (many streams' first bytes against one header, C where built) gives what a
    naive comparison and the numpy fallback give: starts before, inside, at and past the buffer's
    end, empty and longer-than-buffer prefixes, on bytes, memoryviews and numpy arrays."""
    from wsianon.io import jpeg

    assert jpeg._c_markers is not None, "wsianon.io._markers was not built (make venv compiles it)"
    rng = np.random.default_rng(3)
    for _ in range(400):
        n = int(rng.integers(0, 120))
        buf = bytes(rng.choice([0x00, 0x01, 0xFF], n).astype(np.uint8))
        pre = bytes(rng.choice([0x00, 0x01, 0xFF], int(rng.integers(0, 6))).astype(np.uint8))
        starts = rng.integers(-3, n + 4, int(rng.integers(0, 40)))
        naive = [0 <= a <= n - len(pre) and buf[a : a + len(pre)] == pre for a in starts.tolist()]
        for view in (buf, memoryview(buf), np.frombuffer(buf, dtype=np.uint8)):
            assert jpeg.prefix_mask(view, starts, pre).tolist() == naive
        assert jpeg._prefix_mask_numpy(buf, starts.astype(np.int64), pre).tolist() == naive


def test_header_repeat_shortcut_same_answer_with_the_tap_index():
    """``clean_by_header_many`` given the copy's one-pass index of the whole buffer (``ff``) answers
    as it does searching the streams itself: a clean stream is proven, one with a fill byte inside
    its coded data or a restart marker its header does not ask for is not."""
    import io

    from PIL import Image

    from wsianon.io import jpeg

    rng = np.random.default_rng(5)
    b = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(b, "JPEG", quality=90)
    clean = b.getvalue()
    known: list[bytes] = []
    jpeg.learn_clean_header(clean, known)
    hdr = known[0]
    stuffed = clean.index(b"\xff\x00", len(hdr))  # a stuffed 0xFF in the coded data
    fill = clean[:stuffed] + b"\xff" + clean[stuffed:]  # a fill byte before it
    rst = clean[:stuffed] + b"\xff\xd0" + clean[stuffed:]  # a restart marker without a DRI
    streams = [clean, fill, clean, rst, clean]
    buf = b"".join(streams)
    s = np.cumsum([0] + [len(x) for x in streams[:-1]]).astype(np.int64)
    e = s + np.array([len(x) for x in streams], dtype=np.int64)
    arr = np.frombuffer(buf, dtype=np.uint8)
    alone = jpeg.clean_by_header_many(arr, s, e, hdr)
    idx = jpeg.marker_index(buf)
    given = jpeg.clean_by_header_many(arr, s, e, hdr, idx.at, (idx.pairs, idx.restarts))
    assert alone.tolist() == given.tolist() == [True, False, True, False, True]
