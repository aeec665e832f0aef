"""ICC profiles, closed world: keep what a colour transform needs, zero every text.

An ICC profile is a 128-byte header, a tag table (count, then signature /
offset / size per tag) and tag data, each element starting with a 4-byte type
signature.  :func:`sanitize` rebuilds the profile, closed world:

* the tags a colour transform reads (``TAG_TYPES``: LUTs, colorant XYZs and
  curves, white and black point, adaptation matrix), each with a type its
  signature allows, keep their type's fields only (``kept_ranges``: every
  other byte zero); 'desc' and 'cprt' stay as empty texts of their type;
* every other tag (texts, dates, informational, private and unknown tags,
  'mpet', a second tag of a signature, a malformed element, a curve that is no
  ramp, a CLUT that is not smooth) leaves the table;
* the header's naming signatures, creation date and profile ID are zero;
* the table is sorted, each tag's size is exactly its fields, the elements
  are packed on 4-byte boundaries (identical ones shared) and the profile ends
  after the last: no size, offset, order or padding is a free number, and a
  verifier proves a profile clean by rebuilding it (:func:`closed_problems`).

Colour transforms are unchanged (every colorimetric field keeps its value);
only the names a viewer might show become empty.  No vendor semantics here.
"""

from __future__ import annotations

import struct

import numpy as np

SAFE_TYPES = frozenset(
    {
        b"XYZ ",
        b"curv",
        b"para",
        b"mft1",
        b"mft2",
        b"mAB ",
        b"mBA ",
        b"sf32",
        b"sig ",
        b"meas",
        b"view",
        b"chrm",
    }
)
# multiProcessElementsType ('mpet', the optional floating-point D2Bx/B2Dx tags of ICC v4) is not
# parsed here: its elements are emptied with their tag signatures (a CMM then uses the A2Bx/B2Ax
# tags every such profile must also carry) — a structure kept whole would keep whatever its
# padding and unreferenced bytes hold
# the numeric array types (ui08, ui16, ui32, ui64, uf32) are no standard tag's type: an array of
# free numbers, i.e. of any bytes — emptied like text


def structural_size(elem: bytes) -> int | None:
    """How many bytes of a colorimetric tag element (``elem``: from its type signature to its
    stated end) its type's fields take; the bytes after them (up to the element's size) no CMM
    reads and are zeroed.  None: the type is not a run of fields from its start (mAB/mBA: see
    :func:`kept_ranges`); 0: the fields run past the element (malformed: emptied)."""
    typ = elem[:4]

    def u(at: int, n: int) -> int:
        return int.from_bytes(elem[at : at + n], "big")

    if typ == b"XYZ ":
        need = 20  # one XYZNumber: every standard tag of this type holds one
    elif typ == b"curv":
        need = 12 + 2 * u(8, 4)
    elif typ == b"para":
        params = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(u(8, 2))
        if params is None:
            return 0
        need = 12 + 4 * params
    elif typ == b"sf32":
        need = 44  # chad: a 3x3 matrix
    elif typ == b"sig ":
        need = 12
    elif typ in (b"meas", b"view"):
        need = 36
    elif typ == b"chrm":
        need = 12 + 8 * u(8, 2)
    elif typ == b"mft1":
        nin, nout, grid = elem[8:11] if len(elem) >= 11 else (0, 0, 0)
        need = 48 + 256 * nin + grid**nin * nout + 256 * nout
    elif typ == b"mft2":
        nin, nout, grid = elem[8:11] if len(elem) >= 11 else (0, 0, 0)
        need = 52 + 2 * (u(48, 2) * nin + grid**nin * nout + u(50, 2) * nout)
    else:
        return None
    return need if need <= len(elem) else 0


_RAMP_SLACK = 64  # a step against a curve's direction of at most 1/64 of its range: rounding


def _ramp(values: np.ndarray, full: int) -> bool:
    """Whether a curve or LUT table (``values``, 0..``full``) runs one way: non-decreasing or
    non-increasing, no step back larger than ``full / 64`` (rounding of a measured curve).  Tone
    curves, shaper curves and a LUT's input and output tables are such ramps; text stored as their
    values turns at nearly every letter."""
    if len(values) < 3:
        return True
    v = values.astype(np.int64)
    slack = full // _RAMP_SLACK
    return bool((np.maximum.accumulate(v) - v).max() <= slack or (v - np.minimum.accumulate(v)).max() <= slack)


def _tables_are_ramps(elem: bytes) -> bool:
    """The point arrays of a 'curv', or the input and output tables of an 'mft1'/'mft2' (whose
    fields ``structural_size`` found inside ``elem``), are ramps (:func:`_ramp`); the CLUT is not
    judged (a grid of colours)."""
    typ = elem[:4]
    if typ == b"curv":
        return _ramp(np.frombuffer(elem, ">u2", int.from_bytes(elem[8:12], "big"), 12), 0xFFFF)
    if typ not in (b"mft1", b"mft2"):
        return True
    nin, nout, grid = elem[8:11]
    if typ == b"mft1":
        ni = no = 256
        dtype: np.dtype
        word, at, dtype, full = 1, 48, np.dtype(np.uint8), 0xFF
    else:
        ni, no = int.from_bytes(elem[48:50], "big"), int.from_bytes(elem[50:52], "big")
        word, at, dtype, full = 2, 52, np.dtype(">u2"), 0xFFFF
    tables = [(at + word * ni * i, ni) for i in range(nin)]
    out_at = at + word * (ni * nin + grid**nin * nout)
    tables += [(out_at + word * no * i, no) for i in range(nout)]
    return all(_ramp(np.frombuffer(elem, dtype, n, o), full) for o, n in tables)


# A CLUT (a grid of colours, 'mft1'/'mft2'/'mAB '/'mBA ') is a smooth function of its grid position:
# along each axis of 3 or more points no value departs from its neighbours' mean by more than a
# bound, i.e. |second difference| <= a fraction of the full scale. Measured on the 6 real profiles
# with CLUTs on this machine (README, Limitations): device-to-PCS tables (A2Bx) reach 0.125 (a 5-point grid),
# 0.066 (17 points); PCS-to-device tables (B2Ax: gamut mapping, out-of-gamut corners) 0.47 (5
# points), 0.37 (17), 0.21 (33). Text written as values breaks either bound at nearly every place.
# A grid of 2 points on every axis has no second difference: real ones are additive (a matrix, an
# identity: each mixed difference of two axes within a unit), text is not.
_CLUT_STRICT = 4  # A2Bx axes of _CLUT_STRICT_POINTS or more: |second difference| <= full / 4
_CLUT_STRICT_POINTS = 5
_CLUT_LENIENT = (3, 4)  # any other axis of 3 or more points: <= 3/4 of full
_CLUT_ADDITIVE = 64  # a 2-point grid: every mixed difference of two axes <= full / 64


def _clut_is_smooth(values: np.ndarray, grid: tuple[int, ...], nout: int, full: int, a_to_b: bool) -> bool:
    """Whether a CLUT's values (``grid`` points per input, ``nout`` outputs a point, 0..``full``) are
    a smooth function of their grid position (the bounds above); ``a_to_b``: an A2Bx table of an
    input, display, output or colour-space profile (the strict bound)."""
    a = values.astype(np.int64).reshape(tuple(grid) + (nout,))
    for ax, g in enumerate(grid):
        if g < 3:
            continue
        limit = full / _CLUT_STRICT if a_to_b and g >= _CLUT_STRICT_POINTS else full * _CLUT_LENIENT[0] / _CLUT_LENIENT[1]
        if np.abs(np.diff(a, 2, axis=ax)).max() > limit:
            return False
    if all(g == 2 for g in grid):
        for i in range(len(grid)):
            for j in range(i + 1, len(grid)):
                if np.abs(np.diff(np.diff(a, axis=i), axis=j)).max() > full / _CLUT_ADDITIVE:
                    return False
    return True


def _mft_clut_is_smooth(elem: bytes, a_to_b: bool) -> bool:
    """The CLUT of an 'mft1'/'mft2' (whose fields ``structural_size`` found inside ``elem``)."""
    typ = elem[:4]
    if typ not in (b"mft1", b"mft2"):
        return True
    nin, nout, grid = elem[8:11]
    dtype: np.dtype
    if typ == b"mft1":
        at, dtype, full = 48 + 256 * nin, np.dtype(np.uint8), 0xFF
    else:
        at, dtype, full = 52 + 2 * int.from_bytes(elem[48:50], "big") * nin, np.dtype(">u2"), 0xFFFF
    return _clut_is_smooth(np.frombuffer(elem, dtype, grid**nin * nout, at), (grid,) * nin, nout, full, a_to_b)


def _curve_run(elem: bytes, at: int, n: int) -> list[tuple[int, int]] | None:
    """The fields of ``n`` curves (curv/para) stored one after another from ``at``, each starting
    on a 4-byte boundary (ICC.1:2010 10.12.2): their (start, end) within ``elem``; None when one is
    not a curve or runs past the element."""
    out = []
    for _ in range(n):
        curve = elem[at:]
        if curve[:4] not in (b"curv", b"para"):
            return None
        size = structural_size(curve)
        if not size or not _tables_are_ramps(curve[:size]):
            return None
        out.append((at, at + size))
        at += size + (-size % 4)
    return out


def _lut_ab_ranges(elem: bytes, a_to_b: bool = False) -> list[tuple[int, int]] | None:
    """The bytes of a lutAtoBType ('mAB ') or lutBtoAType ('mBA ') element that its fields take
    (ICC.1:2010 10.12, 10.13): the channel counts, the five offsets and, at each non-zero offset,
    its curves (their fields only), the matrix (12 numbers) or the CLUT (the grid points of its
    input channels, the precision and its nout values per grid point).  The padding between them,
    the reserved bytes, a CLUT's unused grid-point bytes and everything no offset reaches are no
    field a CMM reads.  None: malformed (an offset into the header, a part running past the
    element, a channel count out of range), or a curve that is no ramp or a CLUT that is not smooth
    (:func:`_clut_is_smooth`; ``a_to_b``: an A2Bx table)."""
    if len(elem) < 32:
        return None
    nin, nout = elem[8], elem[9]
    if not (1 <= nin <= 15 and 1 <= nout <= 15):
        return None
    b_off, m_off, mc_off, clut_off, a_off = struct.unpack(">5I", elem[12:32])
    a_to_b = elem[:4] == b"mAB "
    # channels of each part: mAB runs A (nin) -> CLUT -> M (nout) -> matrix -> B (nout); mBA the
    # reverse, B (nin) -> matrix -> M (nin) -> CLUT -> A (nout)
    n_b, n_m, n_a = (nout, nout, nin) if a_to_b else (nin, nin, nout)
    out = [(0, 4), (8, 10), (12, 32)]
    for off, n in ((b_off, n_b), (mc_off, n_m), (a_off, n_a)):
        if off:
            if off < 32:
                return None
            run = _curve_run(elem, off, n)
            if run is None:
                return None
            out += run
    if m_off:
        if m_off < 32 or m_off + 48 > len(elem):
            return None
        out.append((m_off, m_off + 48))
    if clut_off:
        if clut_off < 32 or clut_off + 20 > len(elem):
            return None
        grid = elem[clut_off : clut_off + nin]
        precision = elem[clut_off + 16]
        if precision not in (1, 2) or 0 in grid:
            return None
        points = 1
        for g in grid:
            points *= g
        end = clut_off + 20 + points * nout * precision
        if end > len(elem):
            return None
        clut_type: np.dtype = np.dtype(np.uint8) if precision == 1 else np.dtype(">u2")
        full = 0xFF if precision == 1 else 0xFFFF
        if not _clut_is_smooth(np.frombuffer(elem, clut_type, points * nout, clut_off + 20), tuple(grid), nout, full, a_to_b):
            return None
        out += [(clut_off, clut_off + nin), (clut_off + 16, clut_off + 17), (clut_off + 20, end)]
    return out


def kept_ranges(elem: bytes, a_to_b: bool = False) -> list[tuple[int, int]]:
    """(start, end) ranges of a colorimetric tag element (``elem``: from its type signature to its
    stated end) that its type's fields take; every other byte is zeroed by :func:`sanitize` and must
    be zero for the verifiers (bytes 4-7, reserved in every type, are zeroed by both on top).  A
    malformed element, a curve or LUT table that is no ramp and a LUT whose CLUT is not smooth keep
    only their type signature (emptied).  ``a_to_b``: the element is an A2Bx tag's of a profile
    that is no device link or abstract profile (:func:`a_to_b_data`): its CLUT is held to the
    strict bound."""
    if elem[:4] in (b"mAB ", b"mBA "):
        ranges = _lut_ab_ranges(elem, a_to_b)
        return [(0, 4)] if ranges is None else ranges
    need = structural_size(elem)
    if need is None:  # a type whose fields are not parsed here (mpet): not kept
        return [(0, 4)]
    if need and not _tables_are_ramps(elem[:need]):  # a curve or LUT table that turns: text, emptied
        return [(0, 4)]
    if need and not _mft_clut_is_smooth(elem[:need], a_to_b):  # a CLUT that is not smooth: emptied
        return [(0, 4)]
    return [(0, max(need, 4))]


def a_to_b_data(data: bytes, tags: list[tuple[bytes, int, int]]) -> set[tuple[int, int]]:
    """(offset, size) of the tag data an A2Bx tag points to (device to PCS, held to the strict CLUT
    bound), unless the profile is a device link or abstract profile (device to device, PCS to PCS:
    gamut mapping as a B2Ax's). One rule for the converter and the verifiers."""
    if data[12:16] in (b"link", b"abst"):
        return set()
    return {(off, size) for sig, off, size in tags if sig[:3] == b"A2B"}


HEADER = 128
MAX_TAGS = 1024

# The header, closed world (ICC.1:2010 7.2): what a colour transform reads keeps its value — size,
# version, device class, colour space, PCS, the flags' and attributes' defined bits, the rendering
# intent, the PCS illuminant (D50 by the specification); the signatures that only name things (CMM,
# platform, device manufacturer and model, creator), the reserved bits and the 28 reserved bytes are
# zero.  The three signatures a transform reads are from the specification's enumerations.
CLASSES = frozenset([b"scnr", b"mntr", b"prtr", b"link", b"spac", b"abst", b"nmcl"])
SPACES = frozenset(
    [b"XYZ ", b"Lab ", b"Luv ", b"YCbr", b"Yxy ", b"RGB ", b"GRAY", b"HSV ", b"HLS ", b"CMYK", b"CMY "] + [b"%XCLR" % c for c in b"23456789ABCDEF"]
)
D50 = (0x0000F6D6, 0x00010000, 0x0000D32D)
_D50_SLACK = 64  # encoders round D50 differently (F6D5/F6D6, D32B/D32D): 1/1000 at most
# tag signatures of ICC.1:2001 (v2) and ICC.1:2010 (v4), and the private ones colour software
# writes (Apple's vcgt/ndin/mmod, Microsoft's MS00): a tag with any other signature is emptied and its
# signature zeroed (a CMM ignores a tag it does not know; four free bytes otherwise)
KNOWN_TAGS = frozenset(
    t.replace("_", " ").encode()
    for t in (
        "A2B0 A2B1 A2B2 A2B3 B2A0 B2A1 B2A2 B2A3 D2B0 D2B1 D2B2 D2B3 B2D0 B2D1 B2D2 B2D3 bXYZ bTRC bkpt bfd_ "
        "calt targ chad chrm cicp clro clrt clot ciis cprt crdi data dtim devs dmnd dmdd gamt kTRC gXYZ gTRC "
        "lumi meas wtpt ncol ncl2 resp rig0 rig2 pre0 pre1 pre2 desc pseq psid psd0 psd1 psd2 psd3 ps2s ps2i "
        "rXYZ rTRC scrd scrn tech ucr_ vued view mmod ndin vcgt MS00 DevD CIED Pmtr arts"
    ).split()
)


def closed_header(data: bytes) -> bytes | None:
    """The profile header (the first 128 bytes of ``data``) as the closed world keeps it, or None
    when its version, device class, colour space or PCS is not one the specification names (the
    profile is then zeroed whole).  One rule for the converter (:func:`sanitize` writes it) and the
    verifiers (a kept header must equal it)."""
    h = data[:HEADER]
    if len(h) < HEADER or h[36:40] != b"acsp" or h[8] not in (2, 4):
        return None
    if h[12:16] not in CLASSES or h[16:20] not in SPACES or h[20:24] not in SPACES:
        return None
    out = bytearray(HEADER)
    out[0:4] = h[0:4]  # size (a verifier checks it against the profile's length)
    out[8:10] = h[8:10]  # version: major, minor.bug-fix nibbles (bytes 10-11 are zero)
    out[12:24] = h[12:24]
    out[36:40] = b"acsp"
    out[47] = h[47] & 0x03  # flags: embedded, independent (bits 2-31 reserved)
    out[63] = h[63] & 0x0F  # attributes: reflective/transparency, glossy/matte, polarity, colour/b&w
    if h[64:66] == b"\0\0" and h[66:68] <= b"\0\x03":
        out[66:68] = h[66:68]  # rendering intent 0-3
    ill = struct.unpack(">3i", h[68:80])
    out[68:80] = h[68:80] if all(abs(v - d) <= _D50_SLACK for v, d in zip(ill, D50)) else struct.pack(">3i", *D50)
    return bytes(out)


def parse(data: bytes, past_end: bool = False) -> list[tuple[bytes, int, int]] | None:
    """(signature, offset, size) per tag, or None when ``data`` is not a plausible ICC profile.
    ``past_end``: a tag whose data runs past the profile's end is left out instead (LittleCMS
    skips such a tag and reads the rest: real profiles have one, a size miscounted)."""
    if len(data) < HEADER + 4 or data[36:40] != b"acsp":
        return None
    (n,) = struct.unpack(">I", data[HEADER : HEADER + 4])
    if n > MAX_TAGS or HEADER + 4 + 12 * n > len(data):
        return None
    tags = []
    for i in range(n):
        sig, off, size = struct.unpack(">4sII", data[HEADER + 4 + 12 * i : HEADER + 16 + 12 * i])
        if off < HEADER + 4 + 12 * n or size < 8:
            return None
        if off + size > len(data):
            if past_end:
                continue
            return None
        tags.append((sig, off, size))
    return tags


# The tags a profile keeps (closed world), each with the tag types its signature allows
# (ICC.1:2001, ICC.1:2010): what a colour transform reads — the LUTs (A2Bx device to PCS, B2Ax PCS to
# device; lutAtoBType only for A2Bx, lutBtoAType only for B2Ax), the matrix/TRC model's colorant
# XYZs and curves, the white and black points and the adaptation matrix — and the two texts every
# profile must name ('desc', 'cprt'), kept as empty texts.  Any other tag (informational ones such
# as 'tech', 'meas', 'view', 'lumi', 'chrm', 'dtim', 'vcgt', gamut and preview LUTs, private and
# unknown ones, a second tag of one signature, a tag whose type its signature does not allow such
# as an 'A2B0' pointing at XYZ data) leaves the table: its signature, type, offset and size would
# otherwise be numbers nothing constrains.
_LUTS = (b"mft1", b"mft2")
_TEXTS = frozenset([b"desc", b"mluc", b"text"])
TAG_TYPES: dict[bytes, frozenset[bytes]] = {
    **{b"A2B%d" % i: frozenset(_LUTS + (b"mAB ",)) for i in range(3)},
    **{b"B2A%d" % i: frozenset(_LUTS + (b"mBA ",)) for i in range(3)},
    **{s: frozenset([b"XYZ "]) for s in (b"wtpt", b"bkpt", b"rXYZ", b"gXYZ", b"bXYZ")},
    **{s: frozenset([b"curv", b"para"]) for s in (b"rTRC", b"gTRC", b"bTRC", b"kTRC")},
    b"chad": frozenset([b"sf32"]),
    b"desc": _TEXTS,
    b"cprt": _TEXTS,
}
# a kept text tag is this empty element of its type: the type, the reserved bytes and the counts
# (a textDescriptionType of v2 with no ASCII, Unicode or ScriptCode text; an mluc of no records of
# the standard record size; a textType of one NUL)
EMPTY_TEXT = {
    b"desc": b"desc" + bytes(86),
    b"mluc": b"mluc" + bytes(4) + struct.pack(">II", 0, 12),
    b"text": b"text" + bytes(5),
}


def _kept_element(data: bytes, sig: bytes, off: int, size: int, strict: bool, safe_types: frozenset[bytes] | set[bytes]) -> bytes | None:
    """The element a kept tag holds in the closed world, exactly as long as its type's fields (a
    colorimetric type: its fields only, bytes 4-7 and every byte between fields zero; a text: the
    empty element of its type), or None when the tag leaves the table (a signature not kept, a type
    its signature does not allow, malformed, a curve that is no ramp, a CLUT that is not smooth)."""
    allowed = TAG_TYPES.get(sig)
    typ = data[off : off + 4]
    if allowed is None or typ not in allowed:
        return None
    if typ in _TEXTS:
        return EMPTY_TEXT[typ]
    if typ not in safe_types:
        return None
    elem = data[off : off + size]
    ranges = kept_ranges(elem, strict)
    if ranges == [(0, 4)]:
        return None  # malformed or not judged a colour table: the tag leaves the table
    if not _numbers_in_range(elem):
        return None
    out = bytearray(max(b for _a, b in ranges))
    for a, b in ranges:
        out[a:b] = elem[a:b]
    out[4:8] = bytes(4)  # every tag type's bytes 4-7 are reserved (zero)
    return bytes(out)


# the s15Fixed16 numbers of an XYZ, a chad matrix or a parametric curve lie in a colour space's
# range: XYZ and matrix entries within +-4 (real ones within +-1.5), a curve's parameters within
# +-16 (a gamma of 1 to 3, offsets and scales near 1).  Red team stop 37, round 2: ASCII text
# written as such numbers (20,853 for "Quen") passed, 208 bytes of a patient record in one profile;
# in range, a number's upper two bytes are 0000-0003 or FFFC-FFFF (its lower two remain free:
# README, Limitations)
_NUMBER_RANGE = {b"XYZ ": 4.0, b"sf32": 4.0, b"para": 16.0}


def _numbers_in_range(elem: bytes) -> bool:
    """Whether the s15Fixed16 numbers of an XYZ, sf32 or para element lie in their range."""
    bound = _NUMBER_RANGE.get(elem[:4])
    if bound is None:
        return True
    start = 12 if elem[:4] == b"para" else 8
    end = structural_size(elem) or 0  # the type's fields only (bytes after them are zeroed anyway)
    body = elem[start:end]
    values = np.frombuffer(body[: len(body) // 4 * 4], ">i4").astype(np.float64) / 65536.0
    return bool(np.all(np.abs(values) <= bound))


def sanitize(data: bytes, compact: bool = False, safe_types: frozenset[bytes] | set[bytes] = SAFE_TYPES) -> tuple[bytes, int]:
    """(sanitized profile, number of tags left out or emptied).

    The profile is rebuilt, closed world: the header as :func:`closed_header` keeps it, the tag
    table sorted by signature with the tags :data:`TAG_TYPES` keeps (each signature once), and each
    kept tag's element exactly as long as its type's fields (:func:`_kept_element`), the elements in
    table order, each on a 4-byte boundary, identical elements stored once; the profile's size is
    where the last element ends, rounded up to 4.  No offset, size, order or padding is left to
    choose: a verifier proves a profile clean by rebuilding it and comparing (:func:`closed_problems`).

    ``compact``: the rebuilt profile as it is (the DICOM route writes it); otherwise it is followed by
    zeros up to ``len(data)`` (a TIFF route rewrites the profile in place: the header's size names
    the profile, the zeros after it are no part of it).  A profile that does not parse, or whose
    rebuilt form is longer than it (in place), is zeroed entirely (its length unchanged)."""
    tags = parse(data, past_end=True)  # a tag past the end leaves the table (a CMM skips it)
    header = closed_header(data)
    if tags is None or header is None:
        return bytes(len(data)), 1
    emptied = struct.unpack_from(">I", data, HEADER)[0] - len(tags)  # tags running past the end
    strict = a_to_b_data(data, [t for t in tags if t[0] in KNOWN_TAGS])
    kept: dict[bytes, bytes] = {}
    for sig, off, size in tags:
        elem = None if sig in kept else _kept_element(data, sig, off, size, (off, size) in strict, safe_types)
        if elem is None:
            emptied += 1
            continue
        if elem[:4] in _TEXTS and data[off + 8 : off + size].strip(b"\0"):
            emptied += 1  # a text emptied
        kept[sig] = elem
    n = len(kept)
    at = HEADER + 4 + 12 * n
    table, body, placed = [], bytearray(), {}
    for sig in sorted(kept):
        elem = kept[sig]
        if elem not in placed:
            placed[elem] = at + len(body)
            body += elem + bytes(-len(elem) % 4)
        table.append(struct.pack(">4sII", sig, placed[elem], len(elem)))
    out = bytearray(header) + struct.pack(">I", n) + b"".join(table) + body
    out[0:4] = struct.pack(">I", len(out))
    if not compact:
        if len(out) > len(data):
            return bytes(len(data)), emptied + 1
        out += bytes(len(data) - len(out))
    return bytes(out), emptied


def closed_problems(data: bytes, exact: bool, safe_types: frozenset[bytes] | set[bytes] = SAFE_TYPES) -> int:
    """Bytes in which ``data`` differs from its own closed-world form (:func:`sanitize`: a profile
    is clean when rebuilding it changes nothing), or -1 when it does not parse.  ``exact``: the
    profile must be exactly as long as its header says (DICOM); otherwise zeros may follow it (a
    TIFF route rewrites a profile in place, the TIFF entry keeps its length)."""
    if len(data) < HEADER + 4 or data[36:40] != b"acsp" or closed_header(data) is None:
        return -1
    size = struct.unpack_from(">I", data, 0)[0]
    if size < HEADER + 4 or size > len(data) or (exact and size != len(data)):
        return -1
    head = data[:size]
    if parse(head) is None:
        return -1
    clean, _ = sanitize(head, compact=True, safe_types=safe_types)
    a = np.frombuffer(head, np.uint8)
    b = np.frombuffer(clean, np.uint8)
    m = min(len(a), len(b))
    differ = int(np.count_nonzero(a[:m] != b[:m])) + abs(len(a) - len(b))
    return differ + int(np.count_nonzero(np.frombuffer(data, np.uint8, offset=size)))
