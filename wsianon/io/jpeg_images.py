"""Whole JPEG images as a redactor handles them: the text they carry in COM / APPn
segments, neutral and blank stand-in images, and a barcode count.

Segment-level parsing and scrubbing of JPEG streams lives in :mod:`wsianon.io.jpeg`.
"""

from __future__ import annotations

import io
import re
import struct


def jpeg_text_segments(data: bytes) -> list[tuple[str, str]]:
    """(kind, text) of JPEG COM segments and printable runs inside APPn segments (EXIF, XMP ...)."""
    out: list[tuple[str, str]] = []
    if data[:2] != b"\xff\xd8":
        return out
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        m = data[pos + 1]
        if m in (0xD9, 0xDA):
            break
        (ln,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        out.extend(_segment_texts(m, data[pos + 4 : pos + 2 + ln]))
        pos += 2 + ln
    return out


def _segment_texts(marker: int, payload: bytes) -> list[tuple[str, str]]:
    """The text of one COM segment, or the printable runs of one APPn segment."""
    out: list[tuple[str, str]] = []
    if marker == 0xFE:
        t = payload.split(b"\0", 1)[0].decode("latin-1").strip()
        if t:
            out.append(("JPEG comment", t))
    elif 0xE1 <= marker <= 0xEF:
        for run in re.findall(rb"[\x20-\x7e]{5,}", payload):
            t = run.decode("latin-1").strip()
            if t and t not in ("Exif", "http://ns.adobe.com/xap/1.0/"):
                out.append((f"APP{marker - 0xE0} text", t))
    return out


def neutral_jpeg(size: tuple[int, int]) -> bytes:
    """A light grey JPEG of ``size`` without metadata (a stand-in preview)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (224, 224, 224)).save(buf, "JPEG", quality=75)
    return buf.getvalue()


# a blank label larger than this (64 Mpx: a label photo has a few) is a damaged header's size:
# drawn, 30000 x 30000 took 3.6 GB and 60000 x 60000 would take 11 (stop 45)
MAX_BLANK_PIXELS = 1 << 26


def blank_size_ok(size: tuple[int, int]) -> bool:
    """Whether a blank label can be drawn at ``size`` (at least 1 x 1, at most ``MAX_BLANK_PIXELS``)."""
    w, h = size
    return 0 < w and 0 < h and w * h <= MAX_BLANK_PIXELS


def blank_jpeg(size: tuple[int, int]) -> bytes:
    """A white JPEG of ``size`` without metadata (a blanked label); ValueError for a size
    :func:`blank_size_ok` refuses."""
    from PIL import Image

    if not blank_size_ok(size):
        raise ValueError("no size a blank label can be drawn at")

    buf = io.BytesIO()
    Image.new("RGB", size, (255, 255, 255)).save(buf, "JPEG", quality=50)
    return buf.getvalue()


def count_barcodes(jpeg: bytes) -> int | None:
    """Barcodes zxing-cpp finds in an image; None when it cannot be checked."""
    try:
        from PIL import Image

        from wsianon.io import barcodes

        img = Image.open(io.BytesIO(jpeg)).convert("RGB")
        return len(barcodes.read(img))
    except Exception:
        return None
