"""Red team, round 3, native route (TIFF family) and the verifier's own blind spots.

1. An ICC profile's header: the closed world kept its 128 bytes whole (date and ID aside), and no
   check read them as text — the CMM, platform, manufacturer, model and creator signatures and the
   28 reserved bytes carried "RTQZ9 Doe^Jane MRN4711" to OUT on both routes, verified.  A tag with
   a signature no ICC specification names, and the reserved bytes 4-7 of every kept tag, likewise.
   Now ``io.icc.closed_header`` keeps what a colour transform reads and zeroes the rest, unknown
   tags are emptied with their signature, and ``partition.icc_problems`` (TIFF and DICOM) refuses a
   header that is not so.
2. JPEG 2000 tiles were judged (header segments, comments, bytes after EOC) only on the sampled
   tiles (``--coded-data sample``): a comment in a tile beside the sample passed.  Nothing of a
   JPEG 2000 tile is decoded there, so every tile is judged now.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from .fixtures.plant import _icc_profile
from .fixtures.plant_rt2 import rewrite_level0_tiles
from .test_redteam2_tiff import NAME, TEXT, TOKEN, _placed, _run

BANNER = "Aperio Image Library v12.0.15"


def _svs(path: Path, *, compression="jpeg", tile=256, size=512, extratags=()) -> Path:
    img = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    codec = "J2K/KDU" if compression == 33005 else "JPEG/RGB"
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            img,
            tile=(tile, tile),
            compression=compression,
            photometric="rgb",
            description=f"{BANNER}\r\n{size}x{size} ({tile}x{tile}) {codec} Q=70|AppMag = 20|MPP = 0.5",
            metadata=None,
            extratags=list(extratags),
        )
        tw.write(
            img[::4, ::4],
            compression="jpeg",
            photometric="rgb",
            description=f"{BANNER}\n{size}x{size} -> 128x128 - |AppMag = 20",
            metadata=None,
            rowsperstrip=128,
        )
    return path


# --- 1. ICC profile header -------------------------------------------------------------------


def _icc_with_text() -> bytes:
    icc = bytearray(_icc_profile("sRGB"))
    icc[4:8] = b"Doe^"  # preferred CMM
    icc[48:56] = NAME.encode()  # device manufacturer and model
    icc[100:128] = TEXT[:28].ljust(28, b" ")  # reserved
    (n,) = struct.unpack(">I", icc[128:132])
    icc[132 : 132 + 4] = b"RTQX"  # a tag signature no specification names
    _sig, off, _size = struct.unpack(">4sII", icc[144:156])  # wtpt (XYZ): reserved bytes 4-7
    icc[off + 4 : off + 8] = b"Jane"
    return bytes(icc)


def test_icc_header_keeps_what_a_transform_reads():
    """The closed header of a real (LittleCMS) profile transforms colours as the original does;
    every naming field, reserved byte, unknown tag signature and a tag's reserved bytes are refused
    by the verifier's rule and zeroed by the converter's (one rule, ``io.icc.closed_header``)."""
    import io as _io

    from PIL import Image, ImageCms

    from wsianon.io import icc
    from wsianon.profiles import load
    from wsianon.verify.partition import icc_problems

    safe = {t.encode("latin-1") for t in load("tiff_closed_world")["icc_safe_types"]}
    real = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    clean, _ = icc.sanitize(real)
    assert icc_problems(clean, safe) == 0 and clean[12:24] == real[12:24]  # the size: the rebuilt profile's
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    srgb = ImageCms.createProfile("sRGB")
    same = [np.asarray(ImageCms.profileToProfile(img, ImageCms.ImageCmsProfile(_io.BytesIO(p)), srgb)) for p in (real, clean)]
    assert np.array_equal(*same)

    planted = _icc_with_text()
    assert icc_problems(planted, safe) > 0
    out, _ = icc.sanitize(planted)
    assert icc_problems(out, safe) == 0
    for t in (b"Doe^", b"Jane", b"RTQ", b"MRN"):
        assert t not in out
    bad_class = bytearray(out)
    bad_class[12:16] = b"Jane"  # not a device class: the profile is zeroed whole, and refused
    assert icc_problems(bytes(bad_class), safe) == -1 and not any(icc.sanitize(bytes(bad_class))[0])


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_text_in_an_icc_header_never_reaches_out(cli, tmp_path, target):
    (tmp_path / "src").mkdir()
    icc = _icc_with_text()
    src = _svs(tmp_path / "src" / "CASE-7501.svs", extratags=[(34675, 7, len(icc), icc, True)])
    code, text, out = _run(cli, tmp_path, src, target)  # asserts no planted text in OUT or on the console
    assert code == 0 and _placed(out), text


# --- 2. JPEG 2000 tiles beside the sample ----------------------------------------------------


def test_a_jpeg2000_tile_beside_the_sample_is_judged(cli, tmp_path):
    """256 tiles at level 0; the comment sits in tile 1, which the 32-tile sample leaves out."""
    from wsianon.verify import ecs

    assert 1 not in set(ecs.sample_indices(256, False).tolist())
    (tmp_path / "src").mkdir()
    src = _svs(tmp_path / "src" / "CASE-7502.svs", compression=33005, tile=32)
    payload = b"\x00\x01" + TEXT
    seen = [0]

    def comment_in_tile_1(data: bytes) -> bytes:
        seen[0] += 1
        if seen[0] != 2:
            return data
        i = data.find(b"\xff\x90")  # the end of the main header
        return data[:i] + b"\xff\x64" + struct.pack(">H", len(payload) + 2) + payload + data[i:]

    rewrite_level0_tiles(src, comment_in_tile_1)
    assert src.read_bytes().count(TOKEN.encode()) == 1
    code, text, out = _run(cli, tmp_path, src)
    assert code != 0 and "failed: tiles-coded-tight" in text and _placed(out) == []


# --- 3. JPEG 2000 packet-length and packed-header segments -----------------------------------


def test_jpeg2000_packet_lengths_add_up_and_packed_headers_are_refused():
    """PLT: an index of packet lengths a decoder may use or not; its lengths must add up to the
    tile-part's data (OpenJPEG's own PLT does, through Pillow).  Text as lengths does not add up.
    PLM, PPM and PPT (packet lengths for the whole codestream, packed packet headers) are not
    followed: their numbers cannot be proven without parsing the packets."""
    import io

    from PIL import Image

    from wsianon.io.codestreams import j2k_segments

    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG2000", no_jp2=True, plt=True, tile_size=(64, 64), tile_offset=(0, 0))
    real = buf.getvalue()
    i = real.find(b"\xff\x58")
    assert i > 0 and j2k_segments(real) is not None
    (ln,) = struct.unpack(">H", real[i + 2 : i + 4])
    entries = TEXT.replace(b" ", b"_")  # every byte < 0x80: one length each
    texty = real[: i + 2] + struct.pack(">H", 3 + len(entries)) + real[i + 4 : i + 5] + entries + real[i + 2 + ln :]
    sot = texty.rfind(b"\xff\x90", 0, i)
    psot = struct.unpack(">I", texty[sot + 6 : sot + 10])[0] + len(entries) - (ln - 3)
    texty = texty[: sot + 6] + struct.pack(">I", psot) + texty[sot + 10 :]
    assert j2k_segments(texty) is None

    def varint(v: int) -> bytes:
        out = [v & 0x7F]
        while v >> 7:
            v >>= 7
            out.append(0x80 | (v & 0x7F))
        return bytes(reversed(out))

    sot = real.rfind(b"\xff\x90", 0, i)  # the same tile-part with one length: all of its data
    body = sot + struct.unpack(">I", real[sot + 6 : sot + 10])[0] - (real.find(b"\xff\x93", i) + 2)
    one = varint(body)
    single = real[: i + 2] + struct.pack(">H", 3 + len(one)) + real[i + 4 : i + 5] + one + real[i + 2 + ln :]
    psot = struct.unpack(">I", real[sot + 6 : sot + 10])[0] + len(one) - (ln - 3)
    assert j2k_segments(single[: sot + 6] + struct.pack(">I", psot) + single[sot + 10 :]) is not None
    sod = real.find(b"\xff\x93", i)  # a PPT (packed headers) in the same tile-part header
    ppt = b"\xff\x61" + struct.pack(">H", 3 + len(TEXT)) + b"\x00" + TEXT
    sot = real.rfind(b"\xff\x90", 0, i)
    psot = struct.unpack(">I", real[sot + 6 : sot + 10])[0] + len(ppt)
    with_ppt = real[: sot + 6] + struct.pack(">I", psot) + real[sot + 10 : sod] + ppt + real[sod:]
    assert j2k_segments(with_ppt) is None


# --- 4. the vocabulary check read what looked like a JPEG stream's tables as binary ------------


def test_text_inside_a_fake_jpeg_table_of_a_kept_value_is_judged(cli, tmp_path):
    """The vocabulary check zeroed the DQT/DHT payloads of ANY bytes that looked like a JPEG stream
    before reading a file as text: an ImageDescription ending in FF D8 FF DB + 64 bytes of "table"
    passed ``wsianon verify``.  Now a JPEG stream is skipped only where the output's structure
    says one stands (tiles, strips, JPEGTables, MRXS blobs), and judged there by its own rules."""
    from .test_redteam2_tiff import _failed_checks

    (tmp_path / "src").mkdir()
    code, text, out = _run(cli, tmp_path, _svs(tmp_path / "src" / "CASE-7504.svs"))
    assert code == 0, text
    (path,) = _placed(out)
    assert "vocabulary" not in _failed_checks(cli, path)
    fake = b"\xff\xd8\xff\xdb\x00\x43\x00" + TEXT.ljust(64, b" ") + b"\xff\xd9"
    with tifffile.TiffFile(path, mode="r+b") as tf:
        tag = tf.pages[0].tags[270]
        tag.overwrite(tag.value.encode() + b" " + fake)
    assert "vocabulary" in _failed_checks(cli, path)


def test_character_references_are_judged_as_the_text_they_spell(tmp_path):
    """ "&#68;&#111;&#101;" is three numbers to a byte scan and "Doe" to every XML reader: a kept XML
    value so written passed the vocabulary check of a TIFF-family file (iSyntax's header scan
    already unescaped).  wsianon's own outputs never hold one (ElementTree writes printable
    characters as they are): this is ``wsianon verify`` of another tool's output."""
    from wsianon.verify.vocabulary import scan_tiff, unknown_tokens, vocabulary

    spelled = "".join(f"&#{ord(c)};" for c in NAME) + " &#x4D;&#x52;&#x4E;4711"
    assert unknown_tokens(spelled, vocabulary("philips")) and not unknown_tokens("a &amp; b&#10;", vocabulary("philips"))
    path = _svs(tmp_path / "WSI-0123456789abcdef.svs")
    clean = len(scan_tiff(path, "aperio"))
    with tifffile.TiffFile(path, mode="r+b") as tf:
        tag = tf.pages[0].tags[270]
        tag.overwrite(tag.value + "|AppMag = " + spelled)
    assert len(scan_tiff(path, "aperio")) > clean


# --- 5. MRXS tile positions (StitchingIntensityLayer, deflated) --------------------------------


def _mrxs_with_stitching(tmp_path: Path, after: bytes = b"") -> Path:
    """An MRXS 2.2 slide whose tile positions are the deflated StitchingIntensityLayer record
    OpenSlide reads (9-byte records: flag, x, y), ``after`` appended after the zlib stream; the
    fixture's histogram record is turned into it."""
    import zlib

    from .fixtures.mrxs_gen import make_mrxs

    (tmp_path / "src").mkdir()
    info = make_mrxs(tmp_path / "src", "CASE-7505")
    fname, off, ln = info.blobs["default"]
    positions = b"".join(struct.pack("<Bii", 1, (i % 4) * 256, (i // 4) * 256) for i in range(16))
    blob = zlib.compress(positions, 0) + after  # stored: the record is mostly zeros, not "textual"
    data = bytearray((info.folder / fname).read_bytes())
    data[off : off + ln] = blob + bytes(ln - len(blob))
    (info.folder / fname).write_bytes(bytes(data))
    idx = bytearray((info.folder / "Index.dat").read_bytes())
    k = idx.find(struct.pack("<iii", off, ln, int(fname[-5])))
    struct.pack_into("<i", idx, k + 4, len(blob))
    (info.folder / "Index.dat").write_bytes(bytes(idx))
    ini = (info.folder / "Slidedat.ini").read_bytes()
    for a, b in (
        (b"NONHIER_1_NAME = VIMSLIDE_HISTOGRAM_DATA", b"NONHIER_1_NAME = StitchingIntensityLayer"),
        (b"NONHIER_1_VAL_0 = default", b"NONHIER_1_VAL_0 = StitchingIntensityLevel"),
        (b"CURRENT_SLIDE_VERSION = 2\n", b"CURRENT_SLIDE_VERSION = 2.2\n"),
        (b"VIMSLIDE_HISTOGRAM_DATA_FORMAT_VERSION = 257", b"COMPRESSSED_STITCHING_VERSION = 1"),
    ):
        assert a in ini
        ini = ini.replace(a, b)
    (info.folder / "Slidedat.ini").write_bytes(ini)
    return info.mrxs


def test_an_mrxs_with_deflated_tile_positions_is_shared(cli, tmp_path):
    """False positive before: "StitchingIntensityLevel", the value name OpenSlide's format notes
    give the deflated position record of every MRXS 2.2 slide, was neither vocabulary nor kept out
    of the canaries, so a clean slide was quarantined (vocabulary, canary-scan)."""
    code, text, out = _run(cli, tmp_path, _mrxs_with_stitching(tmp_path))
    assert code == 0 and "verified" in text, text


def test_text_after_the_deflated_tile_positions_fails_closed(cli, tmp_path):
    """OpenSlide stops at the zlib stream's end; a kept record's other bytes were never read as
    text (a blob under 80 % printable was skipped as binary).  Now the record is inflated and read,
    and nothing but zeros may follow the stream."""
    code, text, out = _run(cli, tmp_path, _mrxs_with_stitching(tmp_path, TEXT))
    assert code != 0 and "failed: vocabulary" in text and not list(out.glob("*.mrxs"))


def test_icc_colorimetric_tags_keep_only_their_fields():
    """A colorimetric tag's element was kept whole: an XYZ tag declared longer than its one
    XYZNumber, a curve with bytes after its points, and the numeric array types (ui08 ... : any
    bytes) carried text no CMM reads.  Now the bytes after a type's fields are zeroed and the array
    types emptied (``io.icc.structural_size``), and the verifier refuses them."""
    from wsianon.io import icc
    from wsianon.profiles import load
    from wsianon.verify.partition import icc_problems

    safe = {t.encode("latin-1") for t in load("tiff_closed_world")["icc_safe_types"]}
    wtpt = b"XYZ " + bytes(4) + struct.pack(">iii", 63190, 65536, 54061) + TEXT
    curv = b"curv" + bytes(4) + struct.pack(">IHH", 2, 0, 65535) + TEXT
    arr = b"ui08" + bytes(4) + TEXT
    from .fixtures.helpers import icc_profile

    profile = icc_profile([(b"wtpt", wtpt), (b"rTRC", curv), (b"vcgt", arr)], version=b"\x02\x10")
    assert icc_problems(profile, safe) > 0
    out, _ = icc.sanitize(profile)
    assert icc_problems(out, safe) == 0 and TOKEN.encode() not in out and b"MRN" not in out
    parsed = {sig: (o, n) for sig, o, n in icc.parse(out)}
    o, _n = parsed[b"wtpt"]
    assert out[o : o + 20] == wtpt[:20]  # the white point itself is kept
