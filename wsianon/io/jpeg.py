"""JPEG marker segments: which ones a decoder needs, and where the others' payloads are.

A JPEG stream (a tile, a strip, a TIFF JPEGTables value, a DICOM frame) is a
sequence of marker segments followed, after each SOS, by entropy-coded data.
Only the segments a decoder needs keep their payloads: SOI, DQT, DHT, SOF*,
DRI, SOS, EOI, DNL, RSTn, APP0 "JFIF" and APP14 "Adobe" (colour transform).
The payload of every other segment (COM, APP1..APP13, APP15, APP0/APP14 with
another identifier, DAC/DHP/EXP, JPG*) can carry text (EXIF, XMP, comments)
and is zeroed in place: the marker and its length stay, so the stream keeps
its length and stays a valid JPEG; entropy-coded data is never touched.

Outside entropy-coded data a stream has one form, so its layout carries no free bits: no fill
bytes (0xFF before a marker; decoders skip any number; but one before an EOI that makes the
stream even, as DICOM encoders pad an odd frame: ``parity_fill_ok``), no standalone marker but SOI (first) and
EOI (restart markers and TEM outside a scan are skipped by decoders), at most one DRI before a
scan, with an interval the scan reaches (a larger one asks for no restart marker, so its 16 bits
are free), and in a scan's data exactly the restart markers the interval asks for, numbered in
turn.  A stream in any other form is one the walk refuses (the redaction cannot prove it: the
slide fails verification).

``header_segments`` reads only the segments before the first scan (cheap: a
few hundred bytes per tile); ``walk`` follows the whole stream, entropy-coded
data included, for callers that have the bytes anyway (verification).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from wsianon.io.jpeg_std import standard_counts, standard_table

SOI = 0xD8
EOI = 0xD9
SOS = 0xDA
DQT = 0xDB
DNL = 0xDC
DRI = 0xDD
DHT = 0xC4
COM = 0xFE
APP0 = 0xE0
APP14 = 0xEE
# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC)
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
STANDALONE = frozenset([SOI, EOI, 0x01]) | frozenset(range(0xD0, 0xD8))
ESSENTIAL = frozenset([DQT, DHT, DRI, SOS, DNL]) | SOF_MARKERS

# the first marker after entropy-coded data: 0xFF followed by anything but a
# stuffed zero, a restart marker or another fill byte
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


@dataclass(frozen=True)
class Segment:
    marker: int  # the byte after 0xFF
    offset: int  # offset of the 0xFF of the marker, relative to the stream start
    length: int  # the length field (includes its own 2 bytes); 0 for standalone markers

    @property
    def payload_offset(self) -> int:
        return self.offset + 4

    @property
    def payload_length(self) -> int:
        return max(0, self.length - 2)

    @property
    def end(self) -> int:
        return self.offset + 2 + self.length


class JpegError(ValueError):
    """The bytes are not a JPEG stream this module can follow."""


def is_jpeg(data: bytes) -> bool:
    return len(data) >= 4 and data[0] == 0xFF and data[1] == SOI


def essential(marker: int, payload_head: bytes) -> bool:
    """Whether a segment keeps its payload (``payload_head``: its first bytes, ≥ 6 for APPn);
    of a JFIF or Adobe segment, only its first ``canonical_payload`` bytes."""
    if marker in ESSENTIAL or marker in STANDALONE:
        return True
    if marker == APP0:
        return payload_head[:5] == b"JFIF\0"
    if marker == APP14:
        return payload_head[:5] == b"Adobe"
    return False


# the fields a decoder reads of the two application segments it uses: JFIF ("JFIF\0", version,
# units, densities, thumbnail size) and Adobe ("Adobe", version, two flag words, transform);
# what follows (a JFIF thumbnail's pixels, anything after the Adobe fields) no decoder needs
JFIF_FIELDS = 14
ADOBE_FIELDS = 12


def canonical_payload(marker: int, payload_head: bytes) -> int | None:
    """How many payload bytes an essential JFIF/Adobe segment keeps (None: every byte)."""
    if marker == APP0 and payload_head[:5] == b"JFIF\0":
        return JFIF_FIELDS
    if marker == APP14 and payload_head[:5] == b"Adobe":
        return ADOBE_FIELDS
    return None


def _loose_fields(marker: int, fields: bytes) -> tuple[int, int] | None:
    """The part (payload offsets [start, end)) of a JFIF or Adobe segment's fields that is zeroed
    because its values could spell text, or None when they cannot.  A decoder needs only the
    JFIF major version and the Adobe colour transform; the rest (JFIF minor version, density
    unit, densities, thumbnail size; Adobe version and flags) it reads and ignores, so any bytes
    fit there.  They are kept when each 16-bit field's high byte is a control byte (a density
    below 8192, Adobe version 100, flags 0 or 0x8000) and the one-byte JFIF fields are at most 2:
    then no four printable bytes stand in a row (the vocabulary check's shortest run), as
    every encoder writes them; else the whole part is zeroed (``fields``: the first
    ``canonical_payload`` bytes of the payload)."""
    if marker == APP0:
        ok = len(fields) >= JFIF_FIELDS and fields[6] <= 2 and fields[7] <= 2 and fields[8] < 0x20 and fields[10] < 0x20
        return None if ok else (6, min(len(fields), 12))
    ok = len(fields) >= ADOBE_FIELDS and all(fields[i] < 0x20 or fields[i] == 0x80 for i in (5, 7, 9))
    return None if ok else (5, min(len(fields), 11))


def _segments(data: bytes, pos: int, stop_at_sos: bool) -> tuple[list[Segment], int, bool]:
    """Segments from ``pos``; returns (segments, position reached, complete).

    ``complete`` is False when the bytes ran out before the walk ended (a header
    read that was too short)."""
    out: list[Segment] = []
    n = len(data)
    while True:
        # fill bytes (0xFF) may precede a marker
        if pos + 2 > n:
            return out, pos, False
        if data[pos] != 0xFF:
            raise JpegError(f"expected a marker at byte {pos}")
        if data[pos + 1] == 0xFF:
            # fill bytes (T.81 B.1.1.2): decoders skip any number of them, so their count is
            # free; no encoder writes them between segments
            raise JpegError("fill bytes before a marker")
        m = data[pos + 1]
        if m in STANDALONE:
            if m not in (SOI, EOI) or (m == SOI and pos != 0):
                # a restart marker or TEM outside a scan (or a second SOI): decoders skip it, so a
                # run of them (3 bits each) is free; no encoder writes one there
                raise JpegError("a standalone marker (restart, TEM or a second SOI) outside a scan")
            out.append(Segment(m, pos, 0))
            pos += 2
            if m == EOI:
                return out, pos, True
            continue
        if pos + 4 > n:
            return out, pos, False
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2:
            raise JpegError(f"segment length {length} at byte {pos}")
        seg = Segment(m, pos, length)
        if seg.end > n:
            # a header read cut short: the caller may read more
            out.append(seg)
            return out, pos, False
        out.append(seg)
        pos = seg.end
        if m == SOS:
            if stop_at_sos:
                return out, pos, True
            mk = _NEXT_MARKER.search(data, pos)
            if mk is None:
                return out, n, True  # entropy-coded data to the end (no EOI)
            pos = mk.start()
            if pos - 1 >= seg.end and not parity_fill_ok(data, pos, 0):
                # the search skips fill bytes: an 0xFF before the marker that ends the scan is one
                # (entropy-coded data stuffs every 0xFF of its own with a zero)
                raise JpegError("fill bytes before a marker")


def walk(data: bytes) -> list[Segment]:
    """Every marker segment of a whole JPEG stream (entropy-coded data skipped).

    Raises JpegError when the stream does not start with SOI or a marker is
    malformed."""
    if not is_jpeg(data):
        raise JpegError("no SOI marker")
    segs, pos, complete = _segments(data, 0, stop_at_sos=False)
    if not complete and pos < len(data):
        raise JpegError("truncated marker segment")
    last_scan = max((i for i, g in enumerate(segs) if g.marker == SOS), default=len(segs))
    for g in segs[last_scan + 1 :]:
        if g.marker in ESSENTIAL:
            # a table (or frame) segment after the last scan: no decoder uses it, and its bytes
            # are not a payload that could be zeroed without changing how decoders parse it
            raise JpegError(f"{marker_name(g.marker)} segment after the last scan")
    _decoder_segments_exact(data, segs)
    return segs


def _decoder_segments_exact(data: bytes, segs: list[Segment]) -> None:
    """Raise JpegError when a decoder segment holds more bytes than its fields (a frame, scan,
    restart-interval or table segment padded: a decoder refuses it, and the padding could be
    anything), or when a quantization or Huffman table is defined twice with no scan between (the
    first definition is never used, and a segment may hold any number of them), or when a Huffman
    table's symbols are not listed as encoders list them (:func:`huffman_symbols_problem`)."""
    seen: set[tuple[int, int]] = set()
    huffman: list[bytes] = []
    frame: bytes | None = None  # the SOF payload (its marker: ``frame_marker``)
    frame_marker = 0
    interval: int | None = None  # the DRI interval defined since the last scan
    current = 0  # the restart interval in force (a DRI holds for the scans after it)
    for i, g in enumerate(segs):
        body = data[g.payload_offset : g.payload_offset + g.payload_length]
        if g.marker == SOS:
            if not body or len(body) != 4 + 2 * body[0]:
                raise JpegError("SOS segment length does not match its components")
            mcus = scan_mcus(frame_marker, frame, body) if frame is not None else None
            if interval and mcus is not None and interval > mcus:
                # an interval no scan reaches needs no restart marker: its 16 bits are free
                raise JpegError("restart interval larger than the scan's MCU count")
            if i + 1 < len(segs):  # the scan's entropy-coded data ends at the next marker
                _scan_restarts(data, g.end, segs[i + 1].offset, current if interval is None else interval, mcus)
            seen.clear()
            if interval is not None:
                current = interval
            interval = None
            continue
        if g.marker in SOF_MARKERS:
            if len(body) < 6 or len(body) != 6 + 3 * body[5]:
                raise JpegError(f"{marker_name(g.marker)} segment length does not match its components")
            frame, frame_marker = body, g.marker
            continue
        if g.marker in (DRI, DNL):
            if len(body) != 2:
                raise JpegError(f"{marker_name(g.marker)} segment length is not 4")
            if g.marker == DRI:
                if interval is not None:
                    # a decoder uses the last definition: the others' values are free
                    raise JpegError("DRI defined twice before a scan")
                interval = int.from_bytes(body, "big")
            continue
        if g.marker not in (DQT, DHT):
            continue
        end = 0
        for key, start, stop in table_spans(g.marker, body):
            if key in seen:
                raise JpegError(f"{marker_name(g.marker)} table defined twice before a scan")
            seen.add(key)
            if g.marker == DHT:
                huffman.append(body[start:stop])
            end = stop
        if end != len(body):
            raise JpegError(f"{marker_name(g.marker)} segment length does not match its tables")
    if interval is not None and not any(g.marker == SOS for g in segs):
        # a restart interval in a stream without a scan (a TIFF JPEGTables value): no frame to
        # bound it by, and no encoder writes one there
        raise JpegError("DRI segment in a stream without a scan")
    _used_by_scans(data, segs)
    for table in huffman:
        if why := huffman_symbols_problem(bytes(table)):
            raise JpegError(f"DHT table {why}")


LOSSLESS_SOF = frozenset([0xC3, 0xC7, 0xCB, 0xCF])
_RST = re.compile(rb"\xff[\xd0-\xd7]")


def parity_fill_ok(data, eoi: int, start: int) -> bool:
    """Whether the bytes before the marker at ``eoi`` (of the stream starting at ``start`` of
    ``data``) hold no fill byte, or exactly one before an EOI that then ends at an even length:
    the form DICOM encoders use to make an odd-length frame even (T.81 B.1.1.2, instead of a 0x00
    after EOI).  Its presence follows from the parity of the rest, so it carries nothing of its
    own; any other fill byte is refused (the marker searches skip them)."""
    if data[eoi - 1] != 0xFF:
        return True
    return data[eoi + 1] == EOI and data[eoi - 2] != 0xFF and (eoi - start) % 2 == 0


def _scan_restarts(data: bytes, start: int, stop: int, interval: int, mcus: int | None) -> None:
    """Raise JpegError when the entropy-coded data ``data[start:stop]`` (``stop``: the marker that
    ends the scan) holds a fill byte (0xFF 0xFF: before a restart marker, or before that marker;
    decoders skip any number, so their count is free; coded data stuffs its own 0xFF with a zero),
    or restart markers that are not the ones the interval asks for: ceil(MCUs / interval) - 1 of
    them (none without an interval), numbered RST0, RST1, ... modulo 8 (a decoder resynchronises
    past other numbers, whose 3 bits would be free).  Where the markers stand in the data is the
    decoder's to judge (``verify.ecs``: a restart marker out of place is a decoder warning)."""
    single = data[stop - 1] == 0xFF and parity_fill_ok(data, stop, 0)  # the one fill byte allowed
    if data.find(b"\xff\xff", start, stop if single else stop + 1) >= 0:
        raise JpegError("fill bytes in or after a scan's entropy-coded data")
    if mcus is None:
        return
    found = b"".join(_RST.findall(data, start, stop))[1::2]
    want = -(-mcus // interval) - 1 if interval else 0
    if len(found) != want or found != bytes(0xD0 + (k & 7) for k in range(want)):
        raise JpegError("restart markers not as the restart interval asks")


def header_restarts(hdr: bytes) -> int | None:
    """How many restart markers the scan whose header ``hdr`` ends (a stream's bytes to the end of
    its first SOS) asks for: ceil(MCUs / interval) - 1, 0 without an interval; None when that is
    not known here (no frame header, a height given by DNL, a header that does not parse)."""
    try:
        segs, complete = header_segments(hdr)
    except JpegError:
        return None
    sof = next((g for g in segs if g.marker in SOF_MARKERS), None)
    if not complete or sof is None or not segs or segs[-1].marker != SOS or segs[-1].end > len(hdr):
        return None
    sos = segs[-1]
    mcus = scan_mcus(sof.marker, hdr[sof.payload_offset : sof.end], hdr[sos.payload_offset : sos.end])
    dri = [g for g in segs if g.marker == DRI]
    interval = int.from_bytes(hdr[dri[-1].payload_offset : dri[-1].end], "big") if dri else 0
    if mcus is None:
        return None
    return _ceil(mcus, interval) - 1 if interval else 0


def restarts_as_asked(data, start: int, stop: int, want: int | None) -> bool:
    """Whether ``data[start:stop]`` (a scan's entropy-coded data) holds exactly ``want`` restart
    markers, numbered RST0, RST1, ... modulo 8 (``want`` None: not known, False)."""
    if want is None:
        return False
    found = b"".join(_RST.findall(data, start, stop))[1::2]
    return found == bytes(0xD0 + (k & 7) for k in range(want))


def scan_mcus(sof_marker: int, frame: bytes, scan: bytes) -> int | None:
    """How many MCUs the scan whose SOS payload is ``scan`` codes, in the frame whose SOF payload
    is ``frame`` (ITU T.81 A.2: an interleaved scan's MCU covers the largest sampling factors; a
    one-component scan's MCU is one block of that component; a lossless frame's block is one
    sample).  None for a frame of height 0 (defined later by DNL: not bounded here)."""
    unit = 1 if sof_marker in LOSSLESS_SOF else 8
    y, x, n = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big"), frame[5]
    if not y:
        return None
    comps = {frame[6 + 3 * k]: (frame[7 + 3 * k] >> 4, frame[7 + 3 * k] & 0x0F) for k in range(n)}
    hmax = max((h for h, _ in comps.values()), default=1) or 1
    vmax = max((v for _, v in comps.values()), default=1) or 1
    if scan[0] > 1:
        return _ceil(x, unit * hmax) * _ceil(y, unit * vmax)
    h, v = comps.get(scan[1], (hmax, vmax))
    return _ceil(_ceil(x * h, hmax), unit) * _ceil(_ceil(y * v, vmax), unit)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@lru_cache(maxsize=1024)
def huffman_symbols_problem(table: bytes) -> str | None:
    """Why a Huffman table's symbol list (``table``: its class/id byte, 16 counts, symbols) is not
    one an encoder writes, or None.  Its symbols are bytes a scan may never decode (a code no
    coded unit uses), so a used table could carry text in them; ITU T.81 Annex K.2 lists the
    symbols of one code length in ascending order (libjpeg's optimal tables and the Annex K.3
    typical tables do the same, and so do encoders that list every symbol, up to 255, in a table
    they do not optimize).  In that form a symbol list holds no legible text: each code length's
    symbols are a rising run of distinct bytes (a word is stored only as the set of its letters,
    in order).  Which symbols a table lists is not judged: decoders differ on what they accept
    (libjpeg-turbo refuses a DC symbol past 15/16, DCMTK decodes it).

    Two forms encoders write are followed too (:func:`_encoder_order`): libjpeg's optimal table
    whose codes were limited to 16 bits, and a table of symbols 0..16 only in any order.
    Cached by the table's bytes: a slide's tiles repeat a few tables ~10^5 times."""
    symbols, p = table[17:], 0
    for n in table[1:17]:
        if not _rising(symbols[p : p + n]):  # the encoder forms are judged on the whole table, once
            return None if _encoder_order(table) else "lists a code length's symbols out of order"
        p += n
    return None


def _rising(run: bytes) -> bool:
    return all(a < b for a, b in zip(run, run[1:]))


def _encoder_order(table: bytes) -> bool:
    """Whether a table whose symbols of one code length are not ascending is one encoders write:

    * libjpeg's ``jpeg_gen_optimal_table`` (libjpeg-turbo, IJG 6b-9, so Pillow, GDAL, libvips,
      DCMTK, TurboJPEG, imagecodecs ``optimize``) lists symbols by their Huffman code length
      before it limits codes to 16 bits, then folds the longer codes (T.81 K.2, Adjust_BITS):
      two codes longer than 16 bits become one of 16, and one code of the longest length up to
      15 that has codes is split in two one bit longer.  The symbols of length 16 and of the
      longest length below 16 that has any then hold several rising runs (one a pre-fold
      length); every shorter length keeps its single rising run.  Such a table is complete but
      for the all-ones code (libjpeg reserves it), lists no symbol twice and has not the
      code-length counts of an Annex K table (encoders write those with Annex K's symbols: a
      name written over some of them stays refused).  6,000 tables of libjpeg's builder
      (tests.fixtures.libjpeg_huffman, skewed counts) hold to this; a name of distinct letters
      in those two lengths of such a table is not refused (README, limitations);
    * a table whose every symbol is 0..16 (a DC or lossless table: SSSS categories; liblj92,
      imagecodecs ``ljpeg_encode``, lists them by frequency): distinct bytes below 0x11, no
      printable character, in any order.
    Any other order is refused."""
    counts, symbols = table[1:17], table[17:]
    if len(set(symbols)) != len(symbols):
        return False
    if all(v <= 16 for v in symbols):
        return True
    if sum(n << (16 - length) for length, n in enumerate(counts, 1)) != 0xFFFF or standard_counts(table):
        return False
    folded = max((length for length, n in enumerate(counts[:15], 1) if n), default=0)
    p = 0
    for n in counts[: max(folded - 1, 0)]:  # the lengths the fold leaves as they were
        if not _rising(symbols[p : p + n]):
            return False
        p += n
    return True


def table_spans(marker: int, body: bytes):
    """(key, start, end) of each table of a DQT or DHT payload, in order: the key is (marker,
    table id) for DQT, (marker, class and id byte) for DHT.  Stops before a Huffman table whose
    17-byte header does not fit; an end past ``body`` is given as it is (the caller compares)."""
    j = 0
    while j < len(body):
        if marker == DQT:
            end = j + 1 + (128 if body[j] >> 4 else 64)
        elif j + 17 > len(body):
            return
        else:
            end = j + 17 + sum(body[j + 1 : j + 17])
        yield (marker, body[j] & 0x0F if marker == DQT else body[j]), j, end
        j = end


def _used_by_scans(data: bytes, segs: list[Segment]) -> None:
    """Raise JpegError when the stream has a second frame header or a frame component no scan
    codes, or when a quantization or Huffman table the stream defines is used by no scan after it: no later SOS names its Huffman table (DC or AC selector) or a component whose
    frame entry names its quantization table, before the table is defined again or the stream
    ends.  A decoder reads such a table and never uses it, so its values (64 to 256 bytes) can
    be any bytes, text included, and it is a decoder segment whose payload is kept.  A stream
    without a scan (a TIFF JPEGTables value) is judged where it is joined to a tile."""
    if not any(g.marker == SOS for g in segs):
        return
    frames = [g for g in segs if g.marker in SOF_MARKERS]
    if len(frames) > 1:
        # one frame a stream (hierarchical streams, DHP/EXP, are not followed): a second frame
        # header is one no decoder accepts, and its component entries could be anything
        raise JpegError("more than one frame header")
    quant: dict[int, int] = {}  # component id -> quantization table, from the frame header
    for g in frames:
        body = data[g.payload_offset : g.payload_offset + g.payload_length]
        for k in range(body[5]):
            quant[body[6 + 3 * k]] = body[8 + 3 * k] & 0x0F
    scanned = {data[g.payload_offset + 1 + 2 * k] for g in segs if g.marker == SOS for k in range(data[g.payload_offset])}
    if frames and (len(quant) != data[frames[0].payload_offset + 5] or not set(quant) <= scanned):
        # a component no scan codes (or an id given twice): entries no decoder uses
        raise JpegError("a frame component no scan codes")
    pending: dict[tuple[int, int], bytes] = {}  # tables defined and not used by a scan yet
    for g in segs:
        body = data[g.payload_offset : g.payload_offset + g.payload_length]
        if g.marker == SOS:
            for k in range(body[0]):
                cid, sel = body[1 + 2 * k], body[2 + 2 * k]
                pending.pop((DHT, sel >> 4), None)
                pending.pop((DHT, 0x10 | (sel & 0x0F)), None)
                if cid in quant:
                    pending.pop((DQT, quant[cid]), None)
            continue
        if g.marker not in (DQT, DHT):
            continue
        for key, start, end in table_spans(g.marker, body):
            if key in pending:
                raise JpegError(f"{_TABLE_NAMES[g.marker]} table defined again before any scan used it")
            pending[key] = body[start:end]
    # an unused table is accepted only when it is an ITU T.81 Annex K table (an encoder's
    # default set, e.g. the chrominance tables of a libjpeg tables-only stream for an RGB page)
    free = sorted(k for k, t in pending.items() if not standard_table(k[0] == DQT, t))
    if free:
        raise JpegError(f"{_TABLE_NAMES[free[0][0]]} table used by no scan")


_TABLE_NAMES = {DQT: "DQT", DHT: "DHT"}


def trailing(data: bytes, segs: list[Segment]) -> tuple[int, int]:
    """(offset, length) of the bytes after EOI (0 length when none)."""
    if segs and segs[-1].marker == EOI:
        end = segs[-1].offset + 2
        return end, len(data) - end
    return len(data), 0


def follows_jpeg_rules(data: bytes) -> bool:
    """Whether ``data`` is a JPEG stream whose frame is coded by the rules this module follows
    (a SOF of ITU T.81: DCT or lossless, Huffman or arithmetic) — not, e.g., JPEG-LS (SOF55),
    whose entropy-coded data stuffs 0xFF differently.  A stream for which this is True and
    :func:`walk` fails is malformed; for any other, the walk says nothing."""
    try:
        segs, _ = header_segments(data[:65536])
    except JpegError:
        return True  # not even its header parses
    return any(g.marker in SOF_MARKERS for g in segs) or not any(0xF7 <= g.marker <= 0xF8 for g in segs)


def header_segments(data: bytes) -> tuple[list[Segment], bool]:
    """Segments up to and including the first SOS (or EOI, for JPEGTables).

    Returns (segments, complete); ``complete`` False means ``data`` ended
    before the header did (read more and call again)."""
    if not is_jpeg(data):
        raise JpegError("no SOI marker")
    segs, _, complete = _segments(data, 0, stop_at_sos=True)
    return segs, complete


def nonessential(data: bytes, segs: list[Segment]) -> list[Segment]:
    """The segments of ``segs`` whose payload must be zeroed (``data``: the stream's bytes); for a
    JFIF or Adobe segment longer than its fields, the part after them (``canonical_payload``)."""
    out = []
    for s in segs:
        if s.length <= 2:
            continue
        head = bytes(data[s.payload_offset : s.payload_offset + 6])
        if not essential(s.marker, head):
            out.append(s)
            continue
        keep = canonical_payload(s.marker, head)
        if keep is None:
            continue
        loose = _loose_fields(s.marker, bytes(data[s.payload_offset : s.payload_offset + min(keep, s.payload_length)]))
        if loose is not None and loose[1] > loose[0]:
            # the fields a decoder ignores, as a segment of their own (its payload is those bytes)
            out.append(Segment(s.marker, s.payload_offset + loose[0] - 4, loose[1] - loose[0] + 2))
        if s.payload_length > keep:
            # the bytes after a JFIF/Adobe segment's fields, as a segment of their own (its
            # payload is exactly those bytes; its end is the segment's end)
            out.append(Segment(s.marker, s.payload_offset + keep - 4, s.payload_length - keep + 2))
    return out


def scrub(data: bytes) -> tuple[bytes, int]:
    """``data`` with every non-essential payload (and bytes after EOI) zeroed; (bytes, segments zeroed)."""
    segs = walk(data)
    buf = bytearray(data)
    n = 0
    for s in nonessential(data, segs):
        buf[s.payload_offset : s.payload_offset + s.payload_length] = bytes(s.payload_length)
        n += 1
    t_off, t_len = trailing(data, segs)
    if t_len and any(buf[t_off:]):
        buf[t_off:] = bytes(t_len)
        n += 1
    return bytes(buf), n


def dirty_segments(data: bytes) -> list[Segment]:
    """Non-essential segments of a whole stream whose payload is not all zeros."""
    segs = walk(data)
    out = [s for s in nonessential(data, segs) if any(data[s.payload_offset : s.payload_offset + s.payload_length])]
    t_off, t_len = trailing(data, segs)
    if t_len and any(data[t_off:]):
        out.append(Segment(EOI, t_off - 2, t_len + 2))
    return out


# The numpy search works through a long buffer in pieces of this many bytes: its temporaries
# (a boolean per byte, the 0xFF positions) then stay in the CPU caches.  Measured on 8 MiB of
# tiles: 2.5 GB/s whole, 3.3 GB/s in 1 MiB pieces, 2.9 GB/s in 256 KiB pieces.
MARKER_PIECE = 1 << 20

_c_markers: Any
try:  # the C search (wsianon/io/_markers.c, built by the install): same answer, ~3x the speed
    from wsianon.io import _markers as _c_markers
except ImportError:  # no compiler where this was installed: the numpy search
    _c_markers = None


def marker_positions(buf):
    """Positions p in ``buf`` (but the last byte) where 0xFF is followed by a byte that starts a
    marker after entropy-coded data: not a stuffed zero, a restart marker or another 0xFF (the set
    ``_NEXT_MARKER`` matches), as a sorted int64 numpy array — a search over whole buffers (the C
    extension where it was built, else :func:`_markers_numpy`)."""
    import numpy as np

    if _c_markers is not None:
        return np.frombuffer(_c_markers.positions(buf), dtype=np.int64)
    return _markers_numpy(buf)


def _markers_numpy(buf):
    """:func:`marker_positions` vectorised with numpy (the fallback, and the C search's reference
    in the tests)."""
    import numpy as np

    a = np.frombuffer(buf, dtype=np.uint8)
    n = len(a)
    if n < 2:
        return np.zeros(0, dtype=np.int64)
    if n <= MARKER_PIECE + 1:
        return _markers_in(a)
    parts = []
    for i in range(0, n - 1, MARKER_PIECE):
        p = _markers_in(a[i : i + MARKER_PIECE + 1])  # one byte more: the pair at the piece's end
        if len(p):
            parts.append(p + i)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _markers_in(a):
    """``_markers_numpy`` of a uint8 array of at least two bytes."""
    import numpy as np

    pos = np.flatnonzero(a[:-1] == 0xFF)
    nxt = a[pos + 1]
    keep = (nxt != 0) & ((nxt < 0xD0) | (nxt > 0xD7)) & (nxt != 0xFF)
    return pos[keep].astype(np.int64, copy=False)


class MarkerIndex(NamedTuple):
    """A buffer's 0xFF bytes by what follows them, from one pass: ``at``, :func:`marker_positions`;
    ``pairs`` and ``restarts``, :func:`pairs_and_restarts` (sorted int64 numpy arrays of positions
    in the buffer)."""

    at: Any
    pairs: Any
    restarts: Any


def marker_index(buf) -> MarkerIndex:
    """:func:`marker_positions` and :func:`pairs_and_restarts` of ``buf`` in one pass over it (the C
    extension where it was built): the copy's tap searches each buffer once for its JPEG scrub and
    the source's tile identity, which both count fill bytes and restart markers."""
    import numpy as np

    if _c_markers is not None:
        at, pairs, rst = _c_markers.index(buf)
        return MarkerIndex(np.frombuffer(at, dtype=np.int64), np.frombuffer(pairs, dtype=np.int64), np.frombuffer(rst, dtype=np.int64))
    return MarkerIndex(_markers_numpy(buf), *_pairs_restarts_numpy(buf))


def pairs_and_restarts(buf):
    """Two sorted int64 numpy arrays of positions p in ``buf`` (but the last byte) where byte p is
    0xFF: those where byte p + 1 is 0xFF as well (a fill byte: p and p + 1 are both 0xFF), and those
    where it is a restart marker (0xD0-0xD7) -- the two kinds :func:`marker_positions` skips (the C
    extension where it was built, else :func:`_pairs_restarts_numpy`)."""
    import numpy as np

    if _c_markers is not None:
        pairs, rst = _c_markers.pairs_and_restarts(buf)
        return np.frombuffer(pairs, dtype=np.int64), np.frombuffer(rst, dtype=np.int64)
    return _pairs_restarts_numpy(buf)


def _pairs_restarts_numpy(buf):
    """:func:`pairs_and_restarts` with numpy (the fallback, and the C search's reference)."""
    import numpy as np

    a = np.frombuffer(buf, dtype=np.uint8)
    if len(a) < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    ff = np.flatnonzero(a[:-1] == 0xFF)
    nxt = a[ff + 1]
    return ff[nxt == 0xFF].astype(np.int64, copy=False), ff[(nxt >= 0xD0) & (nxt <= 0xD7)].astype(np.int64, copy=False)


def prefix_mask(buf, starts, prefix: bytes):
    """A boolean numpy array, True where ``buf`` (any buffer) holds ``prefix`` at position
    ``starts[i]`` wholly inside it: many streams' first bytes compared with one known header at
    once (the C extension where it was built, else :func:`_prefix_mask_numpy`)."""
    import numpy as np

    at = np.ascontiguousarray(starts, dtype=np.int64)
    if _c_markers is not None:
        return np.frombuffer(_c_markers.prefix_mask(buf, at, prefix), dtype=np.bool_)
    return _prefix_mask_numpy(buf, at, prefix)


def _prefix_mask_numpy(buf, at, prefix: bytes):
    """:func:`prefix_mask` with numpy (the fallback, and the C comparison's reference): the
    starts in groups, so the gathered bytes stay a few MB."""
    import numpy as np

    a = np.frombuffer(buf, dtype=np.uint8)
    L = len(prefix)
    ok = (at >= 0) & (at <= len(a) - L)
    if not L:
        return ok
    want = np.frombuffer(prefix, dtype=np.uint8)
    idx = np.flatnonzero(ok)
    step = max(1, (4 << 20) // L)
    for i in range(0, len(idx), step):
        part = idx[i : i + step]
        ok[part] = (a[at[part, None] + np.arange(L)] == want).all(axis=1)
    return ok


def clean_by_known_header(data: bytes, known: list[bytes]) -> bool:
    """True when ``data`` provably has no dirty segment without walking it: it starts with one of
    ``known`` (headers, to the end of the first SOS, of streams :func:`dirty_segments` found clean)
    and the first marker after that header is an EOI followed by nothing or by zero bytes only.
    :func:`dirty_segments` would then find the same header segments (its parse of them depends only
    on those bytes), no further segment, and no non-zero trailing byte.  False means "not proven
    here": the caller walks the stream."""
    for hdr in known:
        if data.startswith(hdr):
            hit = marker_positions(memoryview(data)[len(hdr) :])
            if not len(hit):
                return False
            m = len(hdr) + int(hit[0])
            # the marker search skips fill bytes: an 0xFF right before EOI is one (walked: refused)
            return (
                data[m + 1] == EOI
                and parity_fill_ok(data, m, 0)
                and data.find(b"\xff\xff", len(hdr), m) < 0
                and not any(data[m + 2 :])
                and restarts_as_asked(data, len(hdr), m, header_restarts(hdr))
            )
    return False


def _bytes_viewed(arr):
    """The ``bytes`` (or ``bytearray``) object the 1-d uint8 array ``arr`` views whole (made by
    ``np.frombuffer`` of it or of a memoryview of all of it), else None: where there is one,
    ``bytes.startswith(hdr, offset)`` compares a header in place. The numpy comparison it stands
    in for gathered every header's bytes through an index array (the benchmark slide's 623-byte
    tile headers: 0.9 ms an 8 MiB buffer against 0.13 ms, twice a buffer in the copy's tap).
    Only a uint8 array: an int8 one compares its values with the header's, not its bytes."""
    import numpy as np

    base = arr.base
    if isinstance(base, memoryview):
        obj = base.obj
        base = obj if isinstance(obj, (bytes, bytearray)) and base.contiguous and base.nbytes == len(obj) else None
    if isinstance(base, (bytes, bytearray)) and arr.ndim == 1 and arr.dtype == np.uint8 and arr.nbytes == len(base):
        return base
    return None


def clean_by_header_many(arr, s, e, hdr: bytes, markers=None, ff=None):
    """:func:`clean_by_known_header` for many streams of one buffer at once (numpy): a boolean
    array, True where stream ``arr[s[i]:e[i]]`` starts with ``hdr`` (a header found clean), ends
    with EOI (or EOI and one zero byte: a DICOM item's even-length padding) and has that EOI as
    its first marker after the header.  False means "not proven here".  ``markers``: the sorted
    ``marker_positions`` of ``arr`` (over the streams at least), or None to search only the
    streams whose header and EOI match.  ``ff``: (pairs, restarts), :func:`pairs_and_restarts` of
    all of ``arr`` (a :class:`MarkerIndex`'s), or None to search the streams here."""
    import numpy as np

    L = len(hdr)
    padded = (arr[np.maximum(e - 1, 0)] == 0) & (arr[np.maximum(e - 3, 0)] == 0xFF) & (arr[np.maximum(e - 2, 0)] == 0xD9)
    eoi = np.where(padded, e - 3, e - 2)
    ok = (eoi - s) >= L
    ok &= (arr[np.maximum(eoi, 0)] == 0xFF) & (arr[np.maximum(eoi + 1, 0)] == 0xD9)
    # a fill byte before EOI (the marker search skips it): only as ``parity_fill_ok`` allows
    ok &= (arr[np.maximum(eoi - 1, 0)] != 0xFF) | ((arr[np.maximum(eoi - 2, 0)] != 0xFF) & ((eoi - s) % 2 == 0))
    idx = np.flatnonzero(ok)
    if len(idx):
        same = prefix_mask(arr, s[idx], hdr)  # compared in place, no copy of the headers
        ok[idx[~same]] = False
        idx = np.flatnonzero(ok)
    if not len(idx):
        return ok
    if markers is None:
        lo, hi = int(s[idx[0]]), int(e[idx[-1]])
        markers = marker_positions(memoryview(arr)[lo:hi]) + lo
    j = markers.searchsorted(s + L)
    hit = j < len(markers)
    ok &= hit
    ok[hit] &= markers[j[hit]] == eoi[hit]
    idx = np.flatnonzero(ok)
    if len(idx):
        # fill bytes inside the entropy-coded data (0xFF 0xFF ... before a stuffed zero or a
        # restart marker): decoders skip them and the marker search does too, so their count
        # would be free; the walk refuses them, and so does this shortcut (one pass over the
        # streams' 0xFF bytes)
        # (one pass over the streams' 0xFF bytes: the C search where it was built)
        if ff is not None:  # the whole buffer's: positions outside the streams are never looked at
            pairs, rst = ff
        else:
            lo, hi = int(s[idx[0]]), int(eoi[idx[-1]])
            pairs, rst = pairs_and_restarts(memoryview(arr)[lo:hi])
            pairs = pairs + lo  # p: p and p + 1 are both 0xFF
            rst = rst + lo
        k = pairs.searchsorted(s[idx] + L)
        inside = k < len(pairs)
        inside[inside] &= pairs[k[inside]] < eoi[idx][inside] - 1  # the one fill before EOI: parity_fill_ok
        ok[idx[inside]] = False
        # restart markers (the marker search skips them too): exactly the ones the header's
        # interval asks for, numbered in turn (the walk's rule); none without an interval
        want = header_restarts(hdr)
        idx = np.flatnonzero(ok)
        n_rst = rst.searchsorted(eoi[idx]) - rst.searchsorted(s[idx] + L)
        if want is None:
            ok[idx] = False
        elif want == 0:
            ok[idx[n_rst != 0]] = False
        else:  # streams with restart intervals (rare in tiles): their numbering, one by one
            raw = _bytes_viewed(arr)
            for t in idx.tolist():
                a, b = int(s[t]), int(eoi[t])
                ok[t] = restarts_as_asked(
                    raw if raw is not None else arr[a:b].tobytes(), a + L if raw is not None else L, b if raw is not None else b - a, want
                )
    return ok


def learn_clean_header(data: bytes, known: list[bytes], limit: int = 8) -> None:
    """Remember the header (to the end of its first SOS) of a stream found clean, for
    :func:`clean_by_known_header` (at most ``limit`` headers: an image's frames share a few)."""
    if len(known) >= limit:
        return
    try:
        segs, complete = header_segments(data)
    except JpegError:
        return
    if complete and segs and segs[-1].marker == SOS and data[: segs[-1].end] not in known:
        known.append(data[: segs[-1].end])


def restart_intervals(head: bytes) -> int | None:
    """How many restart intervals the frame whose header starts ``head`` codes (its MCU count over
    the DRI interval, the MCU from the frame's largest sampling factors; one component: 8 x 8),
    or None when ``head`` holds no complete header with a frame size and a restart interval."""
    try:
        segs, complete = header_segments(head)
    except JpegError:
        return None
    sof = next((g for g in segs if g.marker in SOF_MARKERS and g.end <= len(head)), None)
    dri = next((g for g in segs if g.marker == DRI and g.end <= len(head)), None)
    if not complete or sof is None or dri is None or sof.payload_length < 6:
        return None
    body = head[sof.payload_offset : sof.payload_offset + sof.payload_length]
    h, w, n = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5]
    if len(body) < 6 + 3 * n or not n or not h or not w:
        return None
    hmax = max(body[7 + 3 * k] >> 4 for k in range(n)) if n > 1 else 1
    vmax = max(body[7 + 3 * k] & 0x0F for k in range(n)) if n > 1 else 1
    ri = int.from_bytes(head[dri.payload_offset : dri.payload_offset + 2], "big")
    if not ri or not hmax or not vmax:
        return None
    mcus = -(-w // (8 * hmax)) * -(-h // (8 * vmax))
    return -(-mcus // ri)


def marker_name(marker: int) -> str:
    if marker == COM:
        return "COM"
    if 0xE0 <= marker <= 0xEF:
        return f"APP{marker - 0xE0}"
    return f"0x{marker:02X}"


# ---------------------------------------------------------------------------
# planning: where the non-essential payloads of a file's JPEG streams are

_HEAD = 4096
# StreamScrub.feed judges a stream of at most this many bytes from all of them (larger: NDPI
# strips, from their head, as the plan does)
WHOLE_MAX = 1 << 20
JPEG_COMPRESSIONS = frozenset([6, 7])  # TIFF Compression: old-style JPEG, JPEG
JPEG_TABLES = 347


@dataclass
class ScrubSpan:
    offset: int  # absolute file offset of the payload
    length: int
    marker: int


def stream_spans(fd: int, offset: int, length: int, known: list[bytes] | None = None, head: bytes | None = None, tail: bytes | None = None) -> list[ScrubSpan]:
    """Non-zero non-essential payloads of the JPEG stream at [offset, offset+length) of ``fd``.

    Reads only the header (segments before the first SOS) and the last two
    bytes: a stream that does not end with EOI there, or whose header does not
    parse, is read whole and walked.  Returns [] for bytes that are not JPEG.

    ``known``: headers (to the end of the first SOS) of streams of the same image found to
    need nothing; a stream whose header is byte-identical to one of them and that ends with
    EOI gets the same answer without parsing (the parse depends only on those bytes).  New
    such headers are added (a few per image: the tiles of a level share one).

    ``head``, ``tail``: the stream's first bytes (any number) and its last two, when the caller
    has read them already (``StreamScrub``: one read a tile, or the copy's buffers); the answer is the same."""
    import os

    if length < 4:
        return []
    n = min(length, _HEAD)
    data = head[:length] if head is not None else os.pread(fd, n, offset)

    def last_two() -> bytes:
        return tail if tail is not None and len(tail) == 2 else os.pread(fd, 2, offset + length - 2)

    if not is_jpeg(data):
        return []
    if known:
        for hdr in known:
            if not data.startswith(hdr):
                continue
            if len(data) < length:
                # the full path reads the header alone when the stream ends with EOI
                if last_two() == b"\xff\xd9":
                    return []
                data = os.pread(fd, length, offset)  # else it reads the stream whole, as here
            # a stream read whole: the full path walks it; the same answer ([]) when the first
            # marker after the (clean) header is an EOI followed by zeros only (a DICOM item's
            # even-length padding) or by nothing
            if clean_by_known_header(data, [hdr]):
                return []
            break
    try:
        while True:
            segs, complete = header_segments(data)
            if complete or len(data) >= length:
                break
            n = min(length, max(2 * n, segs[-1].end + 16 if segs else 2 * n))
            data = os.pread(fd, n, offset)
        whole = len(data) >= length
        if not whole and segs and segs[-1].marker == SOS:
            if last_two() != b"\xff\xd9":
                whole = True
        if whole and len(data) < length:
            data = os.pread(fd, length, offset)
        if whole:
            segs = walk(data)
    except JpegError:
        return []
    out = []
    for s in nonessential(data, segs):
        if s.payload_offset + s.payload_length <= len(data) and any(data[s.payload_offset : s.payload_offset + s.payload_length]):
            out.append(ScrubSpan(offset + s.payload_offset, s.payload_length, s.marker))
    if whole:
        t_off, t_len = trailing(data, segs)
        if t_len and any(data[t_off:]):
            out.append(ScrubSpan(offset + t_off, t_len, EOI))
    if known is not None and not out and len(known) < 8:
        hdr_segs = segs if not whole else [sg for sg in segs[: next((i + 1 for i, sg in enumerate(segs) if sg.marker == SOS), 0)]]
        if hdr_segs and hdr_segs[-1].marker == SOS and hdr_segs[-1].end <= len(data):
            known.append(data[: hdr_segs[-1].end])
    return out


def tiff_jpeg_spans(path) -> list[ScrubSpan]:
    """Non-essential JPEG payloads in every JPEG tile/strip and JPEGTables of every IFD of a TIFF-family file."""
    out, streams = tiff_jpeg_streams(path)
    with open(path, "rb") as fh:
        out.extend(StreamScrub(streams).rest(fh.fileno()))
    return out


def tiff_jpeg_streams(path):
    """The non-essential payloads of every JPEG IFD's JPEGTables (a few small streams: judged
    now), and each such IFD's tiles/strips as (offsets, counts) int64 arrays in file order (ties:
    shorter first, as sorted() of the pairs) — judged by ``StreamScrub``."""
    import numpy as np

    from wsianon.io.tiff import COMPRESSION, TiffStructure

    tables_out: list[ScrubSpan] = []
    streams = []
    with TiffStructure(path) as ts:
        fd = ts.fh.fileno()
        for ifd in ts.ifds:
            comp = ts.value(ifd, COMPRESSION, 1)
            if comp not in JPEG_COMPRESSIONS:
                continue
            tables = ifd.get(JPEG_TABLES)
            if tables is not None and tables.size >= 4:
                tables_out.extend(stream_spans(fd, tables.value_offset, tables.size))
            offs, cnts = ts.data_span_arrays(ifd)  # numpy: 16 bytes a tile, not a list of tuples
            used = cnts > 0
            offs, cnts = offs[used], cnts[used]
            order = np.lexsort((cnts, offs))
            streams.append((offs[order].astype(np.int64), cnts[order].astype(np.int64)))
    return tables_out, streams


class StreamScrub:
    """``stream_spans`` of every stream of a TIFF file's JPEG IFDs (``tiff_jpeg_streams``), each IFD
    with its own clean headers (the shortcut for their repeats), in file order: judged while the
    file is read in order by someone else (the copy's tap: ``feed`` with each buffer, heads and
    tails taken from the buffers), or by reading them here (``rest``: one read a stream).  The
    answers are ``stream_spans``' own for each stream."""

    def __init__(self, streams) -> None:
        import numpy as np

        offs = [o for o, _ in streams]
        cnts = [c for _, c in streams]
        grp = [np.full(len(o), i, dtype=np.int32) for i, o in enumerate(offs)]
        off = np.concatenate(offs) if offs else np.zeros(0, np.int64)
        cnt = np.concatenate(cnts) if cnts else np.zeros(0, np.int64)
        g = np.concatenate(grp) if grp else np.zeros(0, np.int32)
        order = np.argsort(off, kind="stable")  # each IFD's own order kept (stable)
        self._off, self._cnt, self._grp = off[order], cnt[order], g[order]
        self._known: list[list[bytes]] = [[] for _ in streams]
        self._head = [_HEAD] * len(streams)  # bytes to read of a head, per IFD (see _want)
        self._k = 0
        self._buf_markers: Any = None  # marker_positions of the buffer being fed (numpy), once known
        self._buf_ff: Any = None  # its (pairs, restarts) where the caller gave them with its markers

    @property
    def done(self) -> bool:
        return self._k >= len(self._off)

    def _want(self, k: int) -> int:
        """The head to read of stream ``k``: its IFD's longest known clean header and a little (the
        shortcut reads no more), or the whole stream when it is at most ``_HEAD`` bytes, as
        ``stream_spans`` reads it alone."""
        cnt, hl = int(self._cnt[k]), self._head[int(self._grp[k])]
        return cnt if cnt <= _HEAD or cnt < hl else hl

    def _judge(self, fd: int, off: int, cnt: int, g: int, head: bytes, tail: bytes | None) -> list[ScrubSpan]:
        """``stream_spans`` of the stream at ``off`` of IFD ``g``; its clean header is learnt."""
        known = self._known[g]
        n = len(known)
        found = stream_spans(fd, off, cnt, known, head=head, tail=tail)
        if len(known) != n:
            self._head[g] = max(map(len, known)) + 16
        return found

    def feed(self, fd: int, pos: int, buf, markers=None, ff=None) -> list[ScrubSpan]:
        """The spans of every stream not judged yet that starts before ``pos + len(buf)``
        (``buf``: the file's bytes from ``pos``; ``markers``: its ``marker_positions`` when the
        caller has them, else they are searched here where needed; ``ff``: its
        ``pairs_and_restarts`` likewise, from the same :class:`MarkerIndex`).

        Fed the file's bytes, this sees every stream whole: a stream that may carry something
        after its entropy-coded data (``_scan_then_eoi`` cannot show otherwise) is judged from all
        its bytes (a stream of at most ``WHOLE_MAX``), so such a segment is found too —
        ``stream_spans`` given the whole stream.  (``rest``, the plan's search for in-place runs,
        reads the heads only.)"""
        import os

        end = pos + len(buf)
        kk = int(self._off.searchsorted(end, side="left"))
        out: list[ScrubSpan] = []
        mv = memoryview(buf)
        k0 = self._k
        self._buf_markers = markers
        self._buf_ff = ff if markers is not None else None
        todo = self._todo(pos, buf, k0, kk) if kk > k0 else None
        for k in range(k0, kk) if todo is None else (k0 + i for i in todo.nonzero()[0].tolist()):
            off, cnt = int(self._off[k]), int(self._cnt[k])
            want = self._want(k)
            if want < cnt <= WHOLE_MAX and not self._scan_then_eoi(pos, buf, off, cnt):
                want = cnt  # something may follow the entropy-coded data: judged from all its bytes
            head = bytes(mv[off - pos : off - pos + want]) if off >= pos and off + want <= end else os.pread(fd, want, off)
            tail = bytes(mv[off + cnt - 2 - pos : off + cnt - pos]) if off + cnt - 2 >= pos and off + cnt <= end and cnt >= 4 else None
            out.extend(self._judge(fd, off, cnt, int(self._grp[k]), head, tail))
        self._k = max(self._k, kk)
        return out

    def _scan_then_eoi(self, pos: int, buf, off: int, cnt: int) -> bool:
        """True when the stream at ``off`` lies wholly in ``buf``, ends with EOI and its last marker
        before that EOI is a scan header (SOS): nothing between the entropy-coded data and EOI, so
        judging its header (``stream_spans`` from a head) is judging all of it.  False: not shown
        here (a segment after the scan, several scans, a stream crossing the buffer): the caller
        judges it from all its bytes.  A byte pair in the SOS segment's own fields that looks like
        a marker only makes this False."""
        s, e = off - pos, off - pos + cnt
        if s < 0 or e > len(buf) or buf[e - 2 : e] != b"\xff\xd9":
            return False
        m = self._buf_markers
        if m is None:
            m = self._buf_markers = marker_positions(buf)
        i = int(m.searchsorted(e - 2)) - 1
        return i >= 0 and int(m[i]) >= s and buf[int(m[i]) + 1] == SOS

    def _todo(self, pos: int, buf, k0: int, kk: int):
        """Of the streams [k0, kk), those ``stream_spans`` must still judge (a boolean array,
        True: judge it): the answer is [] without a call for a stream wholly in ``buf``, longer
        than its head read, that starts with its IFD's first clean header, ends with EOI and has
        that EOI as its first marker after the header (``clean_by_header_many``: no segment after
        the entropy-coded data) — done for the whole buffer at once (numpy)."""
        import numpy as np

        off, cnt, grp = self._off[k0:kk], self._cnt[k0:kk], self._grp[k0:kk]
        todo = np.ones(kk - k0, dtype=bool)
        inside = (off >= pos) & (off + cnt <= pos + len(buf))
        if not inside.any():
            return todo
        arr = np.frombuffer(buf, dtype=np.uint8)
        for g in np.unique(grp[inside]).tolist():
            known = self._known[g]
            if not known:
                continue
            hdr = known[0]
            sel = np.flatnonzero(inside & (grp == g) & (cnt > max(_HEAD, self._head[g])))
            if not len(sel):
                continue
            s = off[sel] - pos
            e = s + cnt[sel]
            ok = (arr[e - 2] == 0xFF) & (arr[e - 1] == 0xD9)
            sel, s, e = sel[ok], s[ok], e[ok]
            if len(sel):
                if self._buf_markers is None:  # searched once a buffer: _scan_then_eoi uses it too
                    self._buf_markers = marker_positions(buf)
                todo[sel[clean_by_header_many(arr, s, e, hdr, self._buf_markers, self._buf_ff)]] = False
        return todo

    def rest(self, fd: int) -> list[ScrubSpan]:
        """The spans of the streams not judged yet, read here in file order, one read a stream:
        where a stream starts where the previous one ends, one read gets the previous one's last
        two bytes and this one's head, and the previous stream is judged with them (the plan's
        search, and the streams past what a copy's buffers reached)."""
        import os

        out: list[ScrubSpan] = []
        k0 = self._k
        offs, cnts, grps = (a[k0:].tolist() for a in (self._off, self._cnt, self._grp))  # Python ints: a loop of 10^5 streams
        heads = self._head
        prev: tuple[int, int, int, bytes] | None = None  # the stream read but not judged yet: off, cnt, IFD, head
        for off, cnt, g in zip(offs, cnts, grps):
            hl = heads[g]
            want = cnt if cnt <= _HEAD or cnt < hl else hl  # as _want
            tail = None
            if prev is not None and prev[0] + prev[1] == off and prev[1] >= 4:
                buf = os.pread(fd, 2 + want, off - 2)
                tail, head = buf[:2], buf[2:]
            else:
                head = os.pread(fd, want, off)
            if prev is not None:
                out.extend(self._judge(fd, *prev, tail))
            prev = (off, cnt, g, head)
        if prev is not None:
            out.extend(self._judge(fd, *prev, None))
        self._k = len(self._off)
        return out


def normalized_checked(data: bytes) -> tuple[bytes, int, bool]:
    """``normalized(data)``, and whether ``data`` is a JPEG stream of the rules this module
    follows that it cannot follow to its end (:func:`follows_jpeg_rules`): such a stream is left
    as it is, and what it carries cannot be proven (a verifier fails it).  Returns (bytes,
    number of segments zeroed, malformed)."""
    if not is_jpeg(data):
        return data, 0, False
    try:
        out, zeroed = scrub(data)
        return out, zeroed, False
    except JpegError:
        return data, 0, follows_jpeg_rules(data)


def normalized(data: bytes) -> tuple[bytes, int]:
    """What a correct redaction turns ``data`` into: non-essential payloads zeroed
    when ``data`` is a JPEG stream this module can follow, else ``data`` unchanged.
    Returns (bytes, number of segments zeroed)."""
    out, zeroed, _malformed = normalized_checked(data)
    return out, zeroed
