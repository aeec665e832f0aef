"""Comment and application segments of JPEG 2000 and JPEG-LS frames, closed world.

DICOM frames in JPEG 2000 (PS3.5 A.4.4: a raw codestream, SOC FF4F) and JPEG-LS (ISO 14495-1:
SOI FFD8, SOF55 FFF7) can carry free text a decoder never reads: a JPEG 2000 COM (FF64) marker
segment in the main header or a tile-part header, a JPEG-LS COM (FFFE) or APPn (FFE0-FFEF)
segment before or between scans, bytes after the end of the codestream.  :func:`spans` finds
them structurally (marker segments and their lengths, never by content) so that the converter
can zero their payloads in place (same length: the codestream stays decodable) and the verifier
can prove them zero.  A stream these walks cannot follow gives None: the caller fails closed.
"""

from __future__ import annotations

import struct

J2K_TS = frozenset(
    {
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.92",
        "1.2.840.10008.1.2.4.93",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
    }
)
JPEGLS_TS = frozenset({"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})

_SOC, _SIZ, _SOT, _SOD, _EOC, _COM2K = 0xFF4F, 0xFF51, 0xFF90, 0xFF93, 0xFFD9, 0xFF64
_SOI, _EOI, _SOS, _COM = 0xFFD8, 0xFFD9, 0xFFDA, 0xFFFE
_SOF55 = 0xFFF7
# marker segments a JPEG 2000 header may hold (Part 1 incl. HTJ2K's CAP/CPF, FF50-FF64; Part 2,
# FF70-FF7F): any other marker is not followed (fail closed)
_J2K_SEGMENTS = frozenset(range(0xFF50, 0xFF65)) | frozenset(range(0xFF70, 0xFF80))
# JPEG-LS: SOF55, LSE, SOS, DNL, DRI, COM, APPn (ISO 14495-1 Table C.1)
_JLS_SEGMENTS = frozenset({0xFFF7, 0xFFF8, 0xFFDA, 0xFFDC, 0xFFDD, 0xFFFE}) | frozenset(range(0xFFE0, 0xFFF0))


def is_j2k(data: bytes) -> bool:
    return data[:4] == b"\xff\x4f\xff\x51"


def is_jpegls(data: bytes) -> bool:
    """SOI, then (after any COM/APPn segments) SOF55."""
    if data[:2] != b"\xff\xd8":
        return False
    pos = 2
    while pos + 4 <= len(data):
        (m,) = struct.unpack_from(">H", data, pos)
        if m == _SOF55:
            return True
        if not (m == _COM or 0xFFE0 <= m <= 0xFFEF or m == 0xFFF8):  # COM, APPn, LSE may come first
            return False
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return False


def _tail(data: bytes, end: int) -> list[tuple[int, int]]:
    """The bytes after the codestream's end as one span (an odd frame's single pad byte included)."""
    return [(end, len(data) - end)] if end < len(data) else []


# kinds of :func:`j2k_segments`
MAIN_COM, TILE_COM, TAIL = "main-header comment", "tile-part comment", "after EOC"


def j2k_spans(data: bytes) -> list[tuple[int, int]] | None:
    """(offset, length) of every COM segment's text (after Lcom and Rcom) and of the bytes after
    EOC, in a JPEG 2000 codestream; None when the codestream cannot be followed."""
    segs = j2k_segments(data)
    return None if segs is None else [(o, ln) for _kind, o, ln in segs]


def j2k_segments(data: bytes) -> list[tuple[str, int, int]] | None:
    """:func:`j2k_spans` with the kind of each span: :data:`MAIN_COM` (a main-header comment's
    text; its Rcom is the two bytes before it), :data:`TILE_COM` or :data:`TAIL`."""
    if not is_j2k(data):
        return None
    out: list[tuple[str, int, int]] = []
    pos, n = 2, len(data)
    # main header: marker segments up to the first SOT
    while True:
        if pos + 4 > n:
            return None
        m, ln = struct.unpack_from(">HH", data, pos)
        if m == _SOT:
            break
        if m not in _J2K_SEGMENTS or m == _SOT or ln < 2 or pos + 2 + ln > n:
            return None
        if m == _COM2K and ln > 4:
            out.append((MAIN_COM, pos + 6, ln - 4))
        pos += 2 + ln
    # tile-parts: SOT (Psot = the tile-part's length from SOT), its header up to SOD, then data
    while True:
        if pos + 2 > n:
            return None
        (m,) = struct.unpack_from(">H", data, pos)
        if m == _EOC:
            return out + [(TAIL, o, ln) for o, ln in _tail(data, pos + 2)]
        if m != _SOT or pos + 12 > n:
            return None
        (lsot,) = struct.unpack_from(">H", data, pos + 2)
        (psot,) = struct.unpack_from(">I", data, pos + 6)
        if lsot != 10:
            return None
        start, hp = pos, pos + 12
        while True:
            if hp + 2 > n:
                return None
            (hm,) = struct.unpack_from(">H", data, hp)
            if hm == _SOD:
                break
            if hp + 4 > n:
                return None
            (hl,) = struct.unpack_from(">H", data, hp + 2)
            if hm not in _J2K_SEGMENTS or hl < 2 or hp + 2 + hl > n:
                return None
            if hm == _COM2K and hl > 4:
                out.append((TILE_COM, hp + 6, hl - 4))
            hp += 2 + hl
        if psot == 0:  # the last tile-part runs to EOC
            end = n - 2
            while end > hp and data[end : end + 2] != b"\xff\xd9":
                end -= 1
            if data[end : end + 2] != b"\xff\xd9":
                return None
            return out + [(TAIL, o, ln) for o, ln in _tail(data, end + 2)]
        if psot < hp + 2 - start or start + psot > n:
            return None
        pos = start + psot


def jpegls_spans(data: bytes) -> list[tuple[int, int]] | None:
    """(offset, length) of every COM / APPn payload and of the bytes after EOI in a JPEG-LS stream
    (ISO 14495-1: in scan data a marker is FF followed by a byte with its high bit set); None when
    the stream cannot be followed."""
    if not is_jpegls(data):
        return None
    out: list[tuple[int, int]] = []
    pos, n = 2, len(data)
    while True:
        if pos + 2 > n:
            return None
        (m,) = struct.unpack_from(">H", data, pos)
        if m == _EOI:
            return out + _tail(data, pos + 2)
        if m not in _JLS_SEGMENTS and not 0xFFD0 <= m <= 0xFFD7:
            return None
        if 0xFFD0 <= m <= 0xFFD7:  # RSTn: no length
            pos += 2
            continue
        if pos + 4 > n:
            return None
        (ln,) = struct.unpack_from(">H", data, pos + 2)
        if ln < 2 or pos + 2 + ln > n:
            return None
        if (m == _COM or 0xFFE0 <= m <= 0xFFEF) and ln > 2:
            out.append((pos + 4, ln - 2))
        pos += 2 + ln
        if m == _SOS:  # entropy-coded data up to the next marker (FF, then a byte >= 0x80)
            while True:
                i = data.find(b"\xff", pos)
                if i < 0 or i + 1 >= n:
                    return None
                if data[i + 1] >= 0x80:
                    pos = i
                    break
                pos = i + 1


def spans(data: bytes, ts: str) -> list[tuple[int, int]] | None:
    """The text-capable spans of one frame in transfer syntax ``ts`` (empty list: none; None: a
    frame of that syntax these walks cannot follow).  Other syntaxes: an empty list."""
    if ts in J2K_TS:
        return j2k_spans(data)
    if ts in JPEGLS_TS:
        return jpegls_spans(data)
    return []


def dirty(data: bytes, ts: str) -> list[tuple[int, int]] | None:
    """The spans of ``spans`` that hold a non-zero byte (None: cannot be followed)."""
    found = spans(data, ts)
    if found is None:
        return None
    return [(o, ln) for o, ln in found if any(data[o : o + ln])]


def zeroed(data: bytes, ts: str) -> bytes:
    """``data`` with its :func:`dirty` spans zeroed (as the converter's frame scrub leaves a frame);
    ``data`` itself when there is nothing to zero or it cannot be followed."""
    found = dirty(data, ts)
    if not found:
        return data
    b = bytearray(data)
    for o, ln in found:
        b[o : o + ln] = bytes(ln)
    return bytes(b)
