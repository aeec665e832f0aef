"""Red team 14, ICC: the tag table carried free numbers.

Extra tag-table entries under known but unused signatures (A2B0, B2A0, chad, ...), each pointing at
the existing 'wtpt' data and each SIZE field holding two ASCII characters (the profile zero-padded
so the sizes fit), passed: the verifier kept the whole tag table and ``io.icc.sanitize`` copied every
known tag's name, offset and size. Now the profile is rebuilt (each kept signature once, with a type
its signature allows, its size exactly its type's fields, the table sorted, the data packed, no
padding) and a profile is clean only when it is its own rebuild."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image, ImageCms

from wsianon.io import icc
from wsianon.profiles import load
from wsianon.verify.partition import icc_problems

SAFE = {t.encode("latin-1") for t in load("tiff_closed_world")["icc_safe_types"]}
TEXT = b"Quentin Smithereens 98765432 19790101 "
SIGS = [
    s.encode() for s in "A2B0 A2B1 A2B2 A2B3 B2A0 B2A1 B2A2 B2A3 D2B0 D2B1 B2D0 B2D1 chad chrm lumi bkpt gamt pre0 pre1 pre2 kTRC ciis tech rig0 rig2".split()
]


def _real() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _plant(profile: bytes, text: bytes = TEXT, pad_to: int = 40000) -> bytes:
    """The red team's profile: one extra entry per two characters, pointing at the wtpt data, its
    size the two characters."""
    n0 = struct.unpack_from(">I", profile, 128)[0]
    tags = [struct.unpack_from(">4sII", profile, 132 + 12 * i) for i in range(n0)]
    free = [s for s in SIGS if s not in {t[0] for t in tags}]
    pairs = [text[i : i + 2] for i in range(0, len(text), 2)]
    shift = 12 * len(pairs)
    wtpt = next(o for s, o, _n in tags if s == b"wtpt") + shift
    entries = [(s, o + shift, n) for s, o, n in tags] + [(free[i], wtpt, struct.unpack(">H", p)[0]) for i, p in enumerate(pairs)]
    size = max(len(profile) + shift, pad_to)
    out = struct.pack(">I", size) + profile[4:128] + struct.pack(">I", len(entries))
    out += b"".join(struct.pack(">4sII", *e) for e in entries) + profile[132 + 12 * n0 :]
    return out + bytes(size - len(out))


def _sizes_text(profile: bytes) -> bytes:
    return b"".join(struct.pack(">H", n & 0xFFFF) for _s, _o, n in icc.parse(profile) or [])


def _rgb(data: bytes) -> np.ndarray:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    src = ImageCms.ImageCmsProfile(io.BytesIO(data))
    return np.asarray(ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB"))


def _canonical() -> bytes:
    return icc.sanitize(_real(), compact=True)[0]


def test_extra_entries_whose_sizes_spell_text_are_refused_and_rebuilt_away():
    planted = _plant(_canonical())
    assert b"Smithereens" in _sizes_text(planted)
    assert icc_problems(planted, SAFE) > 0 and icc_problems(planted, SAFE, exact=True) != 0
    for compact in (True, False):
        out, emptied = icc.sanitize(planted, compact=compact)
        assert emptied >= len(TEXT) // 2
        size = struct.unpack(">I", out[:4])[0]
        tags = icc.parse(out[:size])
        assert tags is not None and b"Smith" not in _sizes_text(out[:size])
        sigs = [s for s, _o, _n in tags]
        assert sigs == sorted(set(sigs)) and set(sigs) <= set(icc.TAG_TYPES)  # each once, sorted, kept ones only
        for sig, off, _n in tags:  # a type its signature allows (its size: the rebuild below)
            assert out[off : off + 4] in icc.TAG_TYPES[sig], sig
        assert icc.sanitize(out[:size], compact=True)[0] == out[:size]
        # no padding: the size is what the table and the kept tags' data need (shared data once)
        data = {(o, n) for _s, o, n in tags}
        assert size == 132 + 12 * len(tags) + sum(n + (-n % 4) for _o, n in data)
        assert icc_problems(out, SAFE, exact=compact) == 0
        assert np.array_equal(_rgb(out[:size]), _rgb(_real()))


def test_each_free_number_of_the_table_is_refused():
    clean = _canonical()
    assert icc_problems(clean, SAFE, exact=True) == 0 and icc_problems(clean, SAFE) == 0
    n = struct.unpack_from(">I", clean, 128)[0]
    tags = icc.parse(clean)
    assert tags is not None
    i_wtpt = next(i for i, t in enumerate(tags) if t[0] == b"wtpt")

    def entry(data: bytes, i: int, sig: bytes, off: int, size: int) -> bytes:
        b = bytearray(data)
        b[132 + 12 * i : 144 + 12 * i] = struct.pack(">4sII", sig, off, size)
        return bytes(b)

    _s, off, size = tags[i_wtpt]
    bigger = entry(clean + bytes(4), i_wtpt, b"wtpt", off, size + 2)  # a size past its fields
    bigger = struct.pack(">I", len(bigger)) + bigger[4:]
    renamed = entry(clean, i_wtpt, b"A2B0", off, size)  # an A2B0 pointing at XYZ data: no LUT
    s0, o0, n0 = tags[0]
    swapped = entry(entry(clean, 0, *tags[1]), 1, s0, o0, n0)  # the table's order
    padded = clean[:0] + struct.pack(">I", len(clean) + 4000) + clean[4:] + bytes(4000)  # zero padding
    for bad in (bigger, renamed, swapped, padded):
        assert icc_problems(bad, SAFE, exact=True) != 0
    # a signature twice: the table grows by one entry pointing at the same data
    twice = bytearray(clean[:128] + struct.pack(">I", n + 1))
    for s, o, m in tags + [tags[i_wtpt]]:
        twice += struct.pack(">4sII", s, o + 12, m)
    twice += clean[132 + 12 * n :]
    twice[0:4] = struct.pack(">I", len(twice))
    assert icc_problems(bytes(twice), SAFE, exact=True) != 0
    # the TIFF routes rewrite a profile in place: zeros may follow the profile, nothing else
    tail = clean + bytes(64)
    assert icc_problems(tail, SAFE) == 0 and icc_problems(tail, SAFE, exact=True) == -1
    assert icc_problems(clean + b"\x01" + bytes(63), SAFE) > 0


def test_real_profiles_rebuild_to_a_fixed_point_and_transform_alike():
    """Every profile on this machine (LittleCMS's sRGB, Ghostscript's RGB, grey, CMYK and Lab ones
    where installed) is rebuilt into a form the verifier passes, and an RGB one transforms colours
    exactly as before."""
    from pathlib import Path

    real = [_real(), ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()]
    real += [p.read_bytes() for p in sorted(Path("/usr/share/color/icc").rglob("*.ic[cm]"))]
    for data in real:
        out, _ = icc.sanitize(data, compact=True)
        assert icc_problems(out, SAFE, exact=True) == 0 and icc.sanitize(out, compact=True)[0] == out
        inplace, _ = icc.sanitize(data)
        assert len(inplace) == len(data) and icc_problems(inplace, SAFE) == 0
        if data[16:20] == b"RGB ":
            assert np.array_equal(_rgb(out), _rgb(data))


def test_the_dicom_rule_refuses_the_planted_profile_and_any_padding():
    from wsianon.verify.dicom_attrs import _icc_problems

    clean = _canonical()
    assert _icc_problems(clean) == 0
    assert _icc_problems(_plant(clean)) != 0
    assert _icc_problems(clean + bytes(4)) != 0  # DICOM: the profile is as long as its header says
