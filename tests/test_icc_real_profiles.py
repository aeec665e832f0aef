"""ICC profiles as real colour software writes them stay usable after cleaning (false positives).

The closed world empties a private tag; what is left must still open in LittleCMS (OpenSlide and
Pillow use it) and transform colours exactly as before."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image, ImageCms

from wsianon.io import icc
from wsianon.profiles import load
from wsianon.verify.partition import icc_problems

SAFE = {t.encode("latin-1") for t in load("tiff_closed_world")["icc_safe_types"]}


def _with_tags(profile: bytes, extra: list[tuple[bytes, bytes]]) -> bytes:
    """``profile`` with ``extra`` (signature, element) tags appended to its table and its data."""
    tags = icc.parse(profile)
    assert tags
    shift = 12 * len(extra)
    entries = b"".join(struct.pack(">4sII", s, o + shift, n) for s, o, n in tags)
    body = profile[128 + 4 + 12 * len(tags) :]
    body += bytes(-len(body) % 4)
    at = 128 + 4 + 12 * (len(tags) + len(extra)) + len(body)
    for sig, elem in extra:
        elem += bytes(-len(elem) % 4)
        entries += struct.pack(">4sII", sig, at, len(elem))
        body += elem
        at += len(elem)
    out = bytearray(profile[:128] + struct.pack(">I", len(tags) + len(extra)) + entries + body)
    out[0:4] = struct.pack(">I", len(out))
    return bytes(out)


def _rgb(data: bytes) -> np.ndarray:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    src = ImageCms.ImageCmsProfile(io.BytesIO(data))
    return np.asarray(ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB"))


def test_a_profile_with_several_private_tags_still_opens_and_transforms_alike():
    """macOS display profiles carry Apple's private 'aarg', 'aagg' and 'aabg' (parametric curves)
    and 'flux' beside the standard tags (found in PNGs on this machine).  Cleaning zeroed each
    unknown tag's signature in place: two tags of signature 0 are a duplicate LittleCMS refuses, so
    the cleaned profile no longer opened (Pillow: 'cannot open profile from string') and OpenSlide
    could not colour-manage the slide.  Now such tags leave the table."""
    real = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    para = b"para" + bytes(4) + struct.pack(">HH", 0, 0) + struct.pack(">i", 0x00026666)
    profile = _with_tags(real, [(b"aarg", para), (b"aagg", para), (b"aabg", para)])
    before = _rgb(profile)
    clean, emptied = icc.sanitize(profile)
    assert emptied >= 3 and icc_problems(clean, SAFE) == 0
    assert not {b"aarg", b"aagg", b"aabg"} & {s for s, _o, _n in icc.parse(clean)}
    assert np.array_equal(_rgb(clean), before)


def test_an_mpet_pair_leaves_the_table_and_the_profile_opens():
    """A v4 profile with floating-point D2B0 and B2D0 ('mpet'): both are emptied (not parsed);
    their two zeroed signatures made the cleaned profile unreadable."""
    real = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    mpet = b"mpet" + bytes(4) + struct.pack(">HHI", 3, 3, 0)
    profile = _with_tags(real, [(b"D2B0", mpet), (b"B2D0", mpet)])
    clean, _ = icc.sanitize(profile)
    assert icc_problems(clean, SAFE) == 0 and b"mpet" not in clean
    assert np.array_equal(_rgb(clean), _rgb(real))


def test_a_tag_running_past_the_profiles_end_leaves_the_table():
    """A tag whose stated size runs past the profile's end (a size miscounted: LittleCMS skips the
    tag and reads the rest) made the whole profile 'not parse': it was zeroed, and the verifier
    refused the zeros, so the slide was quarantined. Now that tag leaves the table."""
    real = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    text = b"text" + bytes(4) + b"Copyright\0"
    profile = bytearray(_with_tags(real, [(b"targ", text)]))
    n = struct.unpack(">I", profile[128:132])[0]
    at = 128 + 4 + 12 * (n - 1)
    sig, off, _size = struct.unpack(">4sII", profile[at : at + 12])
    profile[at : at + 12] = struct.pack(">4sII", sig, off, len(profile) - off + 2)
    profile = bytes(profile)
    before = _rgb(profile)  # LittleCMS opens it, the tag skipped
    clean, emptied = icc.sanitize(profile)
    assert any(clean) and emptied >= 1 and icc_problems(clean, SAFE) == 0
    assert b"Copyright" not in clean and b"targ" not in clean
    assert np.array_equal(_rgb(clean), before)
