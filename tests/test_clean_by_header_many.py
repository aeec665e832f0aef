"""``jpeg.clean_by_header_many`` compares each stream's header in place where the array views a
``bytes`` buffer whole (``bytes.startswith``) and through numpy otherwise: both must give the
same answer, and that answer must be ``clean_by_known_header``'s for every stream it proves."""

from __future__ import annotations

import numpy as np
import pytest

from wsianon.io import jpeg

SOI, EOI = b"\xff\xd8", b"\xff\xd9"


def _header(rng) -> bytes:
    dqt = b"\xff\xdb\x00\x43\x00" + bytes(rng.integers(1, 255, 64, dtype=np.uint8))
    sof = b"\xff\xc0\x00\x11\x08\x01\x00\x01\x00\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    sos = b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    return SOI + dqt + sof + sos


def _entropy(rng, n: int) -> bytes:
    data = bytearray(rng.integers(0, 255, n, dtype=np.uint8).tobytes())  # no 0xFF but where stuffed
    for p in rng.choice(n, size=max(1, n // 150), replace=False):
        data[p : p + 1] = b"\xff\x00"
    return bytes(data)


def _streams(seed: int):
    """A buffer of streams, each clean or spoilt in one way, and their (start, end) offsets."""
    rng = np.random.default_rng(seed)
    hdr = _header(rng)
    buf = bytearray(bytes(rng.integers(0, 256, 37, dtype=np.uint8)))  # something before the first
    starts, ends, kinds = [], [], []
    for _i in range(300):
        kind = ["clean", "clean", "clean", "header", "segment", "no-eoi", "padded", "short", "restart"][int(rng.integers(0, 9))]
        h = bytearray(hdr)
        body = _entropy(rng, int(rng.integers(20, 400)))
        tail = EOI
        if kind == "header":  # one byte of the header differs
            k = int(rng.integers(2, len(h)))
            h[k] ^= 1 + int(rng.integers(0, 254))
        elif kind == "segment":  # a segment after the entropy-coded data
            body += b"\xff\xfe\x00\x06name"
        elif kind == "no-eoi":
            tail = b"\x00\x00"
        elif kind == "padded":  # a DICOM item's even-length padding after EOI
            tail = EOI + b"\x00"
        elif kind == "restart":  # a restart marker the header's interval (none) does not ask for
            body = body[: len(body) // 2] + b"\xff\xd3" + body[len(body) // 2 :]
        stream = bytes(h) + body + tail if kind != "short" else bytes(h[: len(h) // 2]) + EOI
        starts.append(len(buf))
        buf += stream
        ends.append(len(buf))
        kinds.append(kind)
        buf += bytes(rng.integers(0, 256, int(rng.integers(0, 4)), dtype=np.uint8))  # gaps
    return bytes(buf), np.array(starts, np.int64), np.array(ends, np.int64), hdr, kinds


@pytest.mark.parametrize("seed", range(6))
def test_in_place_and_numpy_comparisons_agree(seed):
    buf, s, e, hdr, kinds = _streams(seed)
    markers = jpeg.marker_positions(buf)
    in_place = np.frombuffer(buf, dtype=np.uint8)
    assert jpeg._bytes_viewed(in_place) is buf  # the fast path is taken here
    copied = np.array(in_place)  # owns its memory: the numpy comparison
    assert jpeg._bytes_viewed(copied) is None
    for markers_given in (markers, None):
        a = jpeg.clean_by_header_many(in_place, s, e, hdr, markers_given)
        b = jpeg.clean_by_header_many(copied, s, e, hdr, markers_given)
        assert a.dtype == bool and np.array_equal(a, b)
    # a memoryview of the whole buffer is viewed in place too; a part of one is not
    assert np.array_equal(jpeg.clean_by_header_many(np.frombuffer(memoryview(buf), dtype=np.uint8), s, e, hdr, markers), a)
    assert jpeg._bytes_viewed(np.frombuffer(memoryview(buf)[1:], dtype=np.uint8)) is None
    # an int8 view compares values (0xFF is -1 there), so it never takes the byte comparison
    assert jpeg._bytes_viewed(np.frombuffer(buf, dtype=np.int8)) is None
    # what it proves, the one-stream shortcut proves; what it cannot, it leaves to the walk
    for i, kind in enumerate(kinds):
        data = buf[s[i] : e[i]]
        if a[i]:
            assert kind in ("clean", "padded")
            assert jpeg.clean_by_known_header(data, [hdr])
        else:
            # a restart marker the interval does not ask for: the walk refuses it (free bits), so
            # the shortcut leaves it to the walk (tests/test_redteam16_jpeg.py)
            assert kind in ("header", "segment", "no-eoi", "short", "restart")
    assert a.sum() > 100 and (~a).sum() > 50  # both answers occur


def test_offsets_are_the_arrays_own():
    """An array that views a buffer from an offset (or a slice of one) is not compared in place:
    the stream offsets are the array's, not the buffer's."""
    buf, s, e, hdr, _kinds = _streams(9)
    shifted = b"\x00" * 5 + buf
    arr = np.frombuffer(shifted, dtype=np.uint8, offset=5)
    assert jpeg._bytes_viewed(arr) is None
    assert jpeg._bytes_viewed(np.frombuffer(shifted, dtype=np.uint8)[5:]) is None
    want = jpeg.clean_by_header_many(np.frombuffer(buf, dtype=np.uint8), s, e, hdr)
    assert np.array_equal(jpeg.clean_by_header_many(arr, s, e, hdr), want)
