"""The frame-segment check's shortcut (io/jpeg.clean_by_known_header) never says "clean" where the
full walk (dirty_segments) finds something: a repeated clean header proves only the header."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from wsianon.io import jpeg


def _frame(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _com(text: bytes) -> bytes:
    return b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text


def test_shortcut_agrees_with_the_full_walk():
    clean = _frame(1)
    assert jpeg.dirty_segments(clean) == []
    known: list[bytes] = []
    jpeg.learn_clean_header(clean, known)
    assert len(known) == 1 and clean.startswith(known[0])
    other = _frame(2)  # same encoder settings: same header, other entropy data
    assert other.startswith(known[0])
    cases = {
        "clean": (other, True),
        "clean, item padding": (other + b"\x00", True),
        "COM before EOI": (other[:-2] + _com(b"PATIENT DOE") + b"\xff\xd9", False),
        "text after EOI": (other + b"MRN-12345", False),
        "fill bytes then COM": (other[:-2] + b"\xff" + _com(b"x") + b"\xff\xd9", False),
        "no EOI": (other[:-2], False),
    }
    for name, (data, expect) in cases.items():
        got = jpeg.clean_by_known_header(data, known)
        assert got is expect, name
        if got:
            assert jpeg.dirty_segments(data) == [], name
        elif name == "fill bytes then COM":
            # fill bytes are refused by the walk itself (tests/test_redteam16_jpeg.py)
            with pytest.raises(jpeg.JpegError, match="fill bytes"):
                jpeg.dirty_segments(data)
        elif expect is False and name != "no EOI":
            assert jpeg.dirty_segments(data) != [], name
    # an unknown header is never proven by the shortcut
    assert jpeg.clean_by_known_header(other, []) is False
