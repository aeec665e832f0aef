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
    n = len(data)
    walked = _header(data, 2, _SOT)  # the main header: marker segments up to the first SOT
    if walked is None:
        return None
    main, pos = walked
    out: list[tuple[str, int, int]] = [(MAIN_COM, p + 6, ln - 4) for m, p, ln in main if m == _COM2K and ln > 4]
    part2 = len(data) >= 8 and bool(data[6] & 0x80)  # Rsiz: a Part 2 codestream
    csiz = struct.unpack_from(">H", data, 40)[0] if n >= 42 else 0
    levels = _levels(data, main, csiz)
    layers = _layers(data, main)
    if levels is None or not _exact(data, main, csiz, levels, part2, layers=layers):
        return None
    # tile-parts: SOT (Psot = the tile-part's length from SOT), its header up to SOD, then data
    parts: list[tuple[int, int]] = []  # (Isot, length) of each tile-part, for TLM
    while True:
        if pos + 2 > n:
            return None
        (m,) = struct.unpack_from(">H", data, pos)
        if m == _EOC:
            if not _tlm_ok(data, main, parts):
                return None
            return out + [(TAIL, o, ln) for o, ln in _tail(data, pos + 2)]
        if m != _SOT or pos + 12 > n:
            return None
        (lsot,) = struct.unpack_from(">H", data, pos + 2)
        (psot,) = struct.unpack_from(">I", data, pos + 6)
        if lsot != 10:
            return None
        start = pos
        walked = _header(data, pos + 12, _SOD)
        if walked is None:
            return None
        tile, hp = walked
        out += [(TILE_COM, p + 6, ln - 4) for m, p, ln in tile if m == _COM2K and ln > 4]
        tile_levels = _levels(data, tile, csiz, levels)
        if tile_levels is None or not _exact(data, tile, csiz, tile_levels, part2, in_tile=True, layers=_layers(data, tile, layers)):
            return None
        (isot,) = struct.unpack_from(">H", data, start + 4)
        if psot == 0:  # the last tile-part runs to EOC
            end = n - 2
            while end > hp and data[end : end + 2] != b"\xff\xd9":
                end -= 1
            if data[end : end + 2] != b"\xff\xd9" or not _tlm_ok(data, main, parts + [(isot, end - start)]) or not _plt_ok(data, tile, end - (hp + 2)):
                return None
            return out + [(TAIL, o, ln) for o, ln in _tail(data, end + 2)]
        if psot < hp + 2 - start or start + psot > n or not _plt_ok(data, tile, start + psot - (hp + 2)):
            return None
        parts.append((isot, psot))
        pos = start + psot


def _header(data: bytes, pos: int, stop: int) -> tuple[list[tuple[int, int, int]], int] | None:
    """The marker segments (marker, offset, length field) from ``pos`` up to the marker ``stop``,
    and where ``stop`` stands; None when a segment is not JPEG 2000's or runs past the data."""
    segs: list[tuple[int, int, int]] = []
    n = len(data)
    while True:
        if pos + 2 > n:
            return None
        (m,) = struct.unpack_from(">H", data, pos)
        if m == stop:
            return segs, pos
        if pos + 4 > n:
            return None
        (ln,) = struct.unpack_from(">H", data, pos + 2)
        if m not in _J2K_SEGMENTS or m == _SOT or ln < 2 or pos + 2 + ln > n:
            return None
        segs.append((m, pos, ln))
        pos += 2 + ln


# the marker segments of JPEG 2000 Part 1 (and HTJ2K's CAP/CPF) by where they may stand; Part 2's
# (FF70-FF7F) only in a codestream whose Rsiz says Part 2
_SIZ, _COD, _COC, _QCD, _QCC, _RGN, _POC, _CRG, _CAP = 0xFF51, 0xFF52, 0xFF53, 0xFF5C, 0xFF5D, 0xFF5E, 0xFF5F, 0xFF63, 0xFF50
# PLM (FF57), PPM (FF60) and PPT (FF61) are not followed: packet lengths for the whole codestream
# and packed packet headers are numbers no rule here can prove (``io.j2k_packets`` reads packet headers
# in the tile-parts only); WSI
# encoders (Kakadu, OpenJPEG, Grok) write neither by default.  PLT is, its lengths adding up to its
# tile-part's data (``_plt_ok``).
_MAIN_ONLY = frozenset({_CAP, _SIZ, 0xFF55, 0xFF59, _CRG})  # CAP SIZ TLM CPF CRG
_PCAP_PART15 = b"\x00\x02\x00\x00"
_TILE_ONLY = frozenset({0xFF58})  # PLT
_EITHER = frozenset({_COD, _COC, _QCD, _QCC, _RGN, _POC, _COM2K})


def _levels(data: bytes, segs: list[tuple[int, int, int]], csiz: int, inherited: set[int] | None = None) -> set[int] | None:
    """The decomposition level counts the COD and COC segments of ``segs`` set (with those of the
    main header, ``inherited``, for a tile-part); None when a main header has no COD."""
    out = set(inherited or ())
    c = 1 if csiz < 257 else 2
    for m, pos, ln in segs:
        body = data[pos + 4 : pos + 2 + ln]
        if m == _COD and len(body) >= 6:
            out.add(body[5])
        elif m == _COC and len(body) >= c + 2:
            out.add(body[c + 1])
    return out if out else None


def _layers(data: bytes, segs: list[tuple[int, int, int]], inherited: int = 0) -> int:
    """The largest number of quality layers the COD segments of ``segs`` (or ``inherited``) give."""
    counts = [struct.unpack_from(">H", data, pos + 6)[0] for m, pos, ln in segs if m == _COD and ln >= 6]
    return max([inherited, *counts])


def _poc_ok(entry: bytes, c: int, csiz: int, layers: int) -> bool:
    """One progression order change (RSpoc, CSpoc, LYEpoc, REpoc, CEpoc, Ppoc) within the
    codestream's own ranges: resolutions 0..33, components up to Csiz (or CEpoc 0: "all", 256),
    layers up to the COD's count (or 65535: "all"), one of the five progression orders.  Its
    numbers are then small or all-ones: no text."""
    rs, cs = entry[0], int.from_bytes(entry[1 : 1 + c], "big")
    lye = int.from_bytes(entry[1 + c : 3 + c], "big")
    re_, ce, order = entry[3 + c], int.from_bytes(entry[4 + c : 4 + 2 * c], "big"), entry[4 + 2 * c]
    return rs < re_ <= 33 and (ce == 0 or cs < ce <= csiz) and (1 <= lye <= max(layers, 1) or lye == 0xFFFF) and order <= 4


def _exact(data: bytes, segs: list[tuple[int, int, int]], csiz: int, levels: set[int], part2: bool, in_tile: bool = False, layers: int = 0) -> bool:
    """Whether every marker segment of a header (``segs``) may stand there and, where its fields
    give its size, holds exactly those fields: a segment padded past its fields (a QCD with text
    after its step sizes) or one a Part 1 decoder skips (a Part 2 marker in a Part 1 codestream)
    holds bytes no decoder reads.  Pointer segments (TLM, PLT) are judged by the lengths they index
    (``_tlm_ok``, ``_plt_ok``), CPF holds numbers only.  Segments whose fields are numbers a decoder
    reads and may ignore (CRG registration offsets, a POC's ranges, an RGN's shift, CAP's
    capability words) must hold values in their own small ranges: free 16-bit fields held text.
    ``layers``: the quality layers the COD segments give (POC's end layer is judged by them)."""
    c = 1 if csiz < 257 else 2
    for m, pos, ln in segs:
        if 0xFF70 <= m <= 0xFF7F:
            if not part2:
                return False
            continue
        if m not in _EITHER and m not in (_TILE_ONLY if in_tile else _MAIN_ONLY):
            return False
        body = data[pos + 4 : pos + 2 + ln]
        if m == _SIZ:
            ok = len(body) == 36 + 3 * csiz
        elif m == _COD:
            ok = len(body) >= 10 and len(body) == 10 + (body[5] + 1 if body[0] & 1 else 0)
        elif m == _COC:
            ok = len(body) >= c + 6 and len(body) == c + 6 + (body[c + 1] + 1 if body[c] & 1 else 0)
        elif m in (_QCD, _QCC):
            q = body[c:] if m == _QCC else body
            ok = bool(q) and any(len(q) == 1 + {0: 3 * nl + 1, 1: 2, 2: 2 * (3 * nl + 1)}.get(q[0] & 0x1F, -2) for nl in levels)
        elif m == _RGN:  # Crgn, Srgn (0: implicit ROI, the only style Part 1 defines), SPrgn (a shift)
            ok = len(body) == c + 2 and int.from_bytes(body[:c], "big") < csiz and body[c] == 0
        elif m == _POC:
            ok = (
                len(body) > 0
                and len(body) % (5 + 2 * c) == 0
                and all(_poc_ok(body[k : k + 5 + 2 * c], c, csiz, layers) for k in range(0, len(body), 5 + 2 * c))
            )
        elif m == _CRG:  # offsets in 1/65536 of a sample: whole quarters only (0, or a centred chroma)
            ok = len(body) == 4 * csiz and all(v % 0x4000 == 0 for v in struct.unpack(f">{2 * csiz}H", body))
        elif m == _CAP:  # Part 15 (HTJ2K) is the only part that defines a CAP field (Pcap bit 15, one Ccap)
            ok = len(body) == 6 and body[:4] == _PCAP_PART15
        else:
            ok = True
        if not ok:
            return False
    return True


def _plt_ok(data: bytes, tile: list[tuple[int, int, int]], body: int) -> bool:
    """Whether the PLT segments of a tile-part header (``tile``, in their Zplt order) list packet
    lengths that add up to the tile-part's data (``body`` bytes after SOD), each length complete
    (its last byte's high bit clear) and none zero.  An index a decoder may use or not: lengths
    that are not the packets' could be anything.  Which packet each length belongs to is not
    proven (``io.j2k_packets`` parses the packet headers but not against the PLT): a PLT can still
    hold numbers that sum right."""
    plts = sorted((data[pos + 4], pos, ln) for m, pos, ln in tile if m == 0xFF58)
    if not plts:
        return True
    total = 0
    for _z, pos, ln in plts:
        value = 0
        for b in data[pos + 5 : pos + 2 + ln]:
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                if value == 0:
                    return False
                total, value = total + value, 0
        if ln < 4 or data[pos + 1 + ln] & 0x80:
            return False
    return total == body


def _tlm_ok(data: bytes, main: list[tuple[int, int, int]], parts: list[tuple[int, int]]) -> bool:
    """Whether the main header's TLM segments (in their Ztlm order) list exactly the codestream's
    tile-parts: their lengths (and tile indices, where they give them), nothing more.  A TLM is an
    index a decoder may use or not: values that are not the tile-parts' could be anything."""
    tlms = sorted((data[pos + 4], pos, ln) for m, pos, ln in main if m == 0xFF55)
    if not tlms:
        return True
    listed: list[tuple[int | None, int]] = []
    for _z, pos, ln in tlms:
        if ln < 4:
            return False
        stlm = data[pos + 5]
        st, sp = (stlm >> 4) & 3, 4 if stlm & 0x40 else 2
        if st == 3 or (ln - 4) % (st + sp):
            return False
        for e in range(pos + 6, pos + 2 + ln, st + sp):
            listed.append((int.from_bytes(data[e : e + st], "big") if st else None, int.from_bytes(data[e + st : e + st + sp], "big")))
    if len(listed) != len(parts):
        return False
    return all(length == p_len and (t is None or t == p_t) for (t, length), (p_t, p_len) in zip(listed, parts))


def jpegls_spans(data: bytes) -> list[tuple[int, int]] | None:
    """(offset, length) of every COM / APPn payload and of the bytes after EOI in a JPEG-LS stream
    (ISO 14495-1: in scan data a marker is FF followed by a byte with its high bit set; fill bytes,
    FF, may stand before a marker); None when the stream cannot be followed."""
    if not is_jpegls(data):
        return None
    out: list[tuple[int, int]] = []
    pos, n = 2, len(data)
    while True:
        if pos + 2 > n:
            return None
        (m,) = struct.unpack_from(">H", data, pos)
        if m == 0xFFFF:  # FF before a marker: a fill byte (T.81 B.1.1.2) or a scan's last byte
            pos += 1  # (DCMTK's dcmcjpls ends some scans with FF, then EOI); one byte, no text
            continue
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
