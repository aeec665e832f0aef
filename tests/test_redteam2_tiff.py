"""Red team, round 2, TIFF family: identifiers inside structures a decoder or reader parses but
never uses, which the first round's checks kept because their TYPE is one that is kept.

1. A JPEG quantization or Huffman table that no scan uses (in a tile, or in JPEGTables): a decoder
   reads it and never applies it, so its 64 to 256 bytes can be text; the vocabulary check masks
   decoder tables and tile identity holds.  Now ``io.jpeg.walk`` refuses such a stream (as it
   refuses a table defined twice): the slide is quarantined on both routes.
2. The JFIF / Adobe fields a decoder ignores (JFIF minor version, density unit and densities;
   Adobe version and flags): 6 bytes a tile.  Now they are zeroed unless every 16-bit field's
   high byte is a control byte (as encoders write them: no four printable bytes in a row).
3. TIFF entries: the bytes of a value field after a short inline value (6 of a BigTIFF SHORT's
   8), and an NDPI entry's high half that is no part of its value, were copied as they were; a
   numeric value (a BigTIFF DOUBLE or LONG8 held in its entry, a RATIONAL) was never judged as
   text; YCbCrCoefficients / YCbCrSubSampling / ReferenceBlackWhite could have any count;
   JPEGTables was kept on a page that is not JPEG (where its tables are never joined to a scan);
   NDPI McuStarts could hold more values than its strip has restart intervals.  Now the closed
   world zeroes the unused bytes, keeps those three tags only with their TIFF 6.0 counts and
   JPEGTables only on JPEG pages; verification fails on an unused byte, a numeric value that
   spells words, and extra McuStarts.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
from pathlib import Path

import pytest

from wsianon.io.jpeg import JpegError, dirty_segments, nonessential, scrub, walk

from .conftest import BUNDLED
from .fixtures.plant_jpeg import noise_jpeg
from .fixtures.plant_rt2 import after_soi, edit_entries, header_segments, rewrite_level0_tiles, rewrite_streams, seg, set_entry, without
from .fixtures.svs_gen import write_svs

TOKEN = "RTQX7"
NAME = "Doe^Jane"
TEXT = f"{TOKEN} {NAME} MRN4711 ".encode()
KEY = "ab" * 32

UNUSED_DQT = seg(0xDB, bytes([0x03]) + TEXT.ljust(64, b"Z"))  # table 3: no component names it
UNUSED_DHT = seg(0xC4, bytes([0x13]) + bytes(15) + bytes([len(TEXT)]) + TEXT)  # AC table 3: no scan names it


def _hits(folder: Path, *texts: str) -> list[str]:
    out = []
    for p in folder.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            out += [f"{t}@{p.name}" for t in (TOKEN, NAME, "Doe^Ja") if t.encode() in data or t.encode("utf-16-le") in data]
    return out + [f"{t}@console" for t in (TOKEN, NAME) for x in texts if t in x]


def _run(cli, tmp_path: Path, src: Path, target: str = "native", *extra: str) -> tuple[int, str, Path]:
    """``wsianon run`` of ``src`` into a new OUT; nothing planted may reach OUT or the console."""
    key = tmp_path / "key"
    key.write_text(KEY)
    key.chmod(0o600)
    out = tmp_path / f"out-{target}-{src.stem}"
    code, stdout, stderr = cli("run", "--target", target, *extra, str(src), "-o", str(out), "--key-file", str(key))
    assert _hits(out, stdout, stderr) == []
    return code, stdout + stderr, out


def _placed(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.suffix in (".svs", ".ndpi", ".tif", ".dcm")]


def _svs(tmp_path: Path, **kw) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    return write_svs(tmp_path / "src" / "CASE-7411.svs", size=(512, 512), levels=1, with_label=False, with_macro=False, **kw).path


def _failed_checks(cli, path: Path) -> set[str]:
    code, out, _ = cli("verify", "--json", str(path))
    return {c["check"] for c in json.loads(out)[0]["checks"] if not c["ok"]}


# --- 1. tables no scan uses ------------------------------------------------------------------


def test_walk_refuses_a_table_no_scan_uses_and_follows_what_encoders_write():
    from PIL import Image

    from .fixtures.ndpi_gen import _jpeg_with_restarts, tissue

    jpg = noise_jpeg(5, 24)
    for planted in (UNUSED_DQT, UNUSED_DHT):
        with pytest.raises(JpegError, match="used by no scan"):
            walk(jpg[:2] + planted + jpg[2:])
    # table 0 defined again before the scan: the first definition is never used
    dqt0 = next(jpg[o : o + 2 + ln] for m, o, ln in header_segments(jpg) if m == 0xDB)
    with pytest.raises(JpegError):
        walk(jpg[:2] + dqt0 + jpg[2:])
    # a second frame header (its component entries no decoder reads), a component no scan codes
    sof = next(jpg[o : o + 2 + ln] for m, o, ln in header_segments(jpg) if m == 0xC0)
    with pytest.raises(JpegError, match="frame"):
        walk(jpg[:2] + seg(0xC0, bytes([8, 0, 8, 0, 8, 20]) + TEXT.ljust(60, b"Z")[:60]) + jpg[2:])
    extra = seg(0xC0, sof[4:9] + bytes([sof[9] + 1]) + sof[10:] + b"J\x11\x00")  # a 4th component "J"
    with pytest.raises(JpegError, match="component"):
        walk(jpg.replace(sof, extra))
    # JPEGTables + an abbreviated tile, as a verifier joins them; the tables alone are not judged
    segs = header_segments(jpg)
    tables = b"\xff\xd8" + b"".join(jpg[o : o + 2 + ln] for m, o, ln in segs if m in (0xDB, 0xC4)) + b"\xff\xd9"
    tile = b"\xff\xd8" + b"".join(jpg[o : o + 2 + ln] for m, o, ln in segs if m not in (0xDB, 0xC4)) + jpg[segs[-1][1] + 2 + segs[-1][2] :]
    walk(tables[:-2] + tile[2:])
    walk(tables[:-2] + UNUSED_DQT + b"\xff\xd9")
    with pytest.raises(JpegError, match="used by no scan"):
        walk(tables[:-2] + UNUSED_DHT + tile[2:])
    # what encoders write: baseline, progressive (tables between scans), grayscale, optimized,
    # restart intervals (NDPI), a real scanner's JPEGTables with its tiles
    img = Image.open(io.BytesIO(noise_jpeg(6, 40)))
    for kw in ({"progressive": True}, {"optimize": True}, {}):
        for im in (img, img.convert("L")):
            b = io.BytesIO()
            im.save(b, "JPEG", quality=60, **kw)
            walk(b.getvalue())
    walk(_jpeg_with_restarts(tissue(64, 48), 4))
    import tifffile

    with tifffile.TiffFile(BUNDLED / "CMU-1-Small-Region.svs") as tf:
        page = tf.pages[0]
        for off, cnt in list(zip(page.dataoffsets, page.databytecounts))[:20]:
            tf.filehandle.seek(off)
            walk(page.jpegtables[:-2] + tf.filehandle.read(cnt)[2:])


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_a_table_no_scan_uses_in_a_tile_fails_closed(cli, tmp_path, target):
    src = _svs(tmp_path)
    assert rewrite_streams(src, tile=after_soi(UNUSED_DQT)) >= 4
    code, text, out = _run(cli, tmp_path, src, target)
    assert code != 0 and _placed(out) == [], text


def test_a_table_no_scan_uses_in_jpegtables_fails_closed(cli, tmp_path):
    """A real scanner's JPEGTables (CMU-1, abbreviated tiles) with an unused Huffman table."""
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "CASE-7412.svs"
    shutil.copyfile(BUNDLED / "CMU-1-Small-Region.svs", src)
    src.chmod(0o644)
    assert rewrite_streams(src, tables=lambda t: t[:-2] + UNUSED_DHT + t[-2:]) == 3
    code, text, out = _run(cli, tmp_path, src)
    # (round 8: the table's symbols, text out of order, also fail the JPEGTables walk: vocabulary)
    assert code != 0 and re.search(r"failed: [^)]*tiles-coded-tight", text) and _placed(out) == []
    assert "tiles-coded-tight" in _failed_checks(cli, src)  # verify, with no source to compare


# --- 2. JFIF / Adobe fields a decoder ignores ----------------------------------------------------


def test_jfif_and_adobe_fields_that_could_spell_text_are_zeroed():
    jpg = without(0xE0, noise_jpeg(7, 16))
    canonical = (
        seg(0xE0, b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00"),  # libjpeg / PIL
        seg(0xE0, b"JFIF\0\x01\x02\x01\x00\x48\x00\x48\x00\x00"),  # 72 dpi
        seg(0xE0, b"JFIF\0\x01\x01\x02\x0b\x13\x0b\x13\x00\x00"),  # 2835 dots/cm
        seg(0xEE, b"Adobe\x00\x64\x80\x00\x00\x00\x01"),
    )
    for s in canonical:
        data = jpg[:2] + s + jpg[2:]
        assert nonessential(data, walk(data)) == [] and scrub(data) == (data, 0)
    for s, kept, after in ((seg(0xE0, b"JFIF\0\x01Doe^Ja\x00\x00"), 6, 12), (seg(0xEE, b"Adobe" + b"Doe^Ja" + b"\x01"), 5, 11)):
        data = jpg[:2] + s + jpg[2:]
        out, n = scrub(data)
        assert n == 1 and b"Doe^Ja" not in out and len(out) == len(data)
        assert out[: 2 + 4 + kept] == data[: 2 + 4 + kept]  # "JFIF\0" + major version, "Adobe"
        assert out[2 + 4 + after :] == data[2 + 4 + after :]  # JFIF thumbnail size, Adobe transform and on
        assert not any(out[2 + 4 + kept : 2 + 4 + after])
        assert dirty_segments(data) and not dirty_segments(out)


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_jfif_fields_holding_text_are_zeroed_on_both_routes(cli, tmp_path, target):
    src = _svs(tmp_path)
    rewrite_streams(src, tile=lambda d: after_soi(seg(0xE0, b"JFIF\0\x01" + NAME.encode()[:6] + b"\0\0"))(without(0xE0, d)))
    assert src.read_bytes().count(b"Doe^Ja") >= 4
    code, text, out = _run(cli, tmp_path, src, target)
    assert code == 0 and _placed(out), text


# --- 3. TIFF entries --------------------------------------------------------------------------


def test_bytes_of_an_entry_that_hold_no_value_are_zeroed(cli, tmp_path):
    """BigTIFF: a SHORT fills 2 of its field's 8 bytes, a LONG 4; NDPI: an inline SHORT's high half."""
    from wsianon.pipeline.model import Verdict
    from wsianon.verify.partition import check_tiff_partition

    from .fixtures.ndpi_gen import make_ndpi

    src = _svs(tmp_path, bigtiff=True)

    def fill(ents, alloc):
        for e in ents:
            if e[2] == 1 and e[1] in (3, 4):
                e[3] = e[3][: 2 if e[1] == 3 else 4] + b"MRN4711X"[: 6 if e[1] == 3 else 4]
        return ents

    edit_entries(src, 0, fill)
    ndpi, _ = make_ndpi(tmp_path / "src" / "CASE-7413.ndpi", levels=2)
    high = iter([b"RTQX", b"7 Do", b"e^Ja", b"ne M"])

    def highs(ents, alloc):
        for e in ents:
            if e[1] == 3 and e[2] == 1:
                e[4] = next(high, b"RN47")
        return ents

    edit_entries(ndpi, 0, highs)
    assert b"RTQX" in ndpi.read_bytes() and b"e^Ja" in ndpi.read_bytes() and b"MRN4" in src.read_bytes()
    for path, fmt in ((src, "aperio"), (ndpi, "ndpi")):
        v = Verdict()
        check_tiff_partition(path, fmt, v)  # what the redactor zeroes, the verifier refuses
        assert any("hold no value" in f.canary for f in v.findings), v.findings
        code, text, out = _run(cli, tmp_path, path)
        assert code == 0 and _placed(out), text
        assert not any(t in p.read_bytes() for p in _placed(out) for t in (b"MRN4", b"RTQX", b"7 Do", b"e^Ja"))


def test_numeric_values_are_judged_and_counts_follow_the_specification(cli, tmp_path):
    big = _svs(tmp_path, bigtiff=True)
    # a DOUBLE held in its BigTIFF entry and a ReferenceBlackWhite of six rationals spelling words
    edit_entries(big, 0, lambda e, a: set_entry(set_entry(e, a, 254, 12, 1, NAME.encode(), True), a, 532, 5, 6, TEXT.ljust(48, b"Z"), True))
    code, text, out = _run(cli, tmp_path, big)
    assert code != 0 and "failed: vocabulary" in text and _placed(out) == []
    # YCbCrSubSampling of 16 SHORTs (TIFF 6.0: 2): the entry is removed, the slide placed
    sub = write_svs(tmp_path / "src" / "CASE-7414.svs", size=(512, 512), levels=1, with_label=False, with_macro=False).path
    edit_entries(sub, 0, lambda e, a: set_entry(e, a, 530, 3, 16, TEXT.ljust(32, b"Z"), False))
    code, text, out = _run(cli, tmp_path, sub)
    assert code == 0 and _placed(out), text


def test_jpegtables_only_on_a_jpeg_page(cli, tmp_path):
    import numpy as np
    import tifffile

    from wsianon.pipeline.model import Verdict
    from wsianon.verify.partition import check_tiff_partition

    tables = b"\xff\xd8" + UNUSED_DQT + b"\xff\xd9"
    img = np.zeros((512, 512, 3), np.uint8)
    img[..., 2] = np.arange(512, dtype=np.uint8)[:, None] // 2
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "CASE-7415.tif"
    with tifffile.TiffWriter(src) as tw:
        tw.write(img, tile=(256, 256), compression="zlib", photometric="rgb", extratags=[(347, 7, len(tables), tables, True)])
        tw.write(img[::2, ::2], tile=(256, 256), compression="zlib", photometric="rgb", subfiletype=1)
    v = Verdict()
    check_tiff_partition(src, "generic", v)
    assert any("347 JPEGTables" in f.canary for f in v.findings), v.findings
    code, text, out = _run(cli, tmp_path, src, "native", "--allow-generic")
    assert code == 0 and _placed(out), text


def test_mcu_starts_beyond_the_restart_intervals_fail_closed(cli, tmp_path):
    from wsianon.io.jpeg import restart_intervals

    from .fixtures.ndpi_gen import make_ndpi

    (tmp_path / "src").mkdir()
    ndpi, _ = make_ndpi(tmp_path / "src" / "CASE-7416.ndpi", levels=2)
    data = ndpi.read_bytes()

    def extend(ents, alloc):
        for e in ents:
            if e[0] == 65426:
                off = struct.unpack("<I", e[3])[0] | struct.unpack("<I", e[4])[0] << 32
                new = alloc(data[off : off + 4 * e[2]] + TEXT[:24])
                e[2] += 6
                e[3], e[4] = struct.pack("<I", new & 0xFFFFFFFF), struct.pack("<I", new >> 32)
        return ents

    import tifffile

    with tifffile.TiffFile(ndpi) as tf:
        page = tf.pages[0]
        tf.filehandle.seek(page.tags[273].value if isinstance(page.tags[273].value, int) else page.tags[273].value[0])
        assert restart_intervals(tf.filehandle.read(4096)) == len(page.tags[65426].value)  # the fixture's McuStarts: one a restart interval
    edit_entries(ndpi, 0, extend)
    code, text, out = _run(cli, tmp_path, ndpi)
    assert code != 0 and "failed: closed-world-tags" in text and _placed(out) == []


# --- 4. JPEG 2000 header segments ------------------------------------------------------------


def _j2k_insert(data: bytes, segment: bytes) -> bytes:
    i = data.find(b"\xff\x90")  # the first tile-part: the end of the main header
    return data[:i] + segment + data[i:]


def _j2k_pad_qcd(data: bytes) -> bytes:
    i = data.find(b"\xff\x5c")
    (ln,) = struct.unpack(">H", data[i + 2 : i + 4])
    return data[: i + 2] + struct.pack(">H", ln + len(TEXT)) + data[i + 4 : i + 2 + ln] + TEXT + data[i + 2 + ln :]


def _tile_parts(data: bytes) -> list[tuple[int, int]]:
    out, i = [], data.find(b"\xff\x90")
    while data[i : i + 2] == b"\xff\x90":
        isot, psot = struct.unpack(">HI", data[i + 4 : i + 10])
        out.append((isot, psot))
        i += psot
    return out


def test_jpeg2000_header_segments_hold_their_fields_only():
    """A Part 2 marker in a Part 1 codestream (decoders skip it), a QCD padded past its step sizes,
    a TLM whose entries are not the tile-parts' lengths: not followed (the checks fail closed);
    what encoders write is (OpenJPEG here, Kakadu in the real Aperio sample's test)."""
    import imagecodecs
    import numpy as np

    from wsianon.io.codestreams import j2k_segments

    img = np.random.default_rng(2).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    clean = imagecodecs.jpeg2k_encode(img, codecformat="j2k")
    assert j2k_segments(clean) is not None and j2k_segments(imagecodecs.jpeg2k_encode(img[..., 0], codecformat="j2k", reversible=True)) is not None
    part2_marker = b"\xff\x77" + struct.pack(">H", len(TEXT) + 2) + TEXT
    assert j2k_segments(_j2k_insert(clean, part2_marker)) is None
    declared = bytearray(_j2k_insert(clean, part2_marker))
    declared[6] |= 0x80  # Rsiz: a Part 2 codestream may carry Part 2 markers
    assert j2k_segments(bytes(declared)) is not None
    assert j2k_segments(_j2k_pad_qcd(clean)) is None
    parts = _tile_parts(clean)
    entries = b"".join(struct.pack(">BI", t, ln) for t, ln in parts)
    tlm = lambda body: b"\xff\x55" + struct.pack(">H", len(body) + 4) + b"\x00\x50" + body  # noqa: E731  (ST=1, SP=1)
    assert j2k_segments(_j2k_insert(clean, tlm(entries))) is not None
    assert j2k_segments(_j2k_insert(clean, tlm(entries + struct.pack(">BI", 0, int.from_bytes(b"Jane", "big"))))) is None


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_a_padded_jpeg2000_header_fails_closed(cli, tmp_path, target):
    from .test_redteam_tiff import _j2k_svs

    (tmp_path / "src").mkdir()
    src = _j2k_svs(tmp_path / "src" / "CASE-7417.svs", _j2k_pad_qcd)
    assert src.read_bytes().count(TOKEN.encode()) == 4
    code, text, out = _run(cli, tmp_path, src, target)
    assert code != 0 and f"failed: {'tiles-coded-tight' if target == 'native' else 'dicom: entropy tight'}" in text and _placed(out) == []


# --- 5. MRXS JPEG tiles: the same mechanisms ---------------------------------------------------


def _mrxs_level0(info, edit) -> None:
    """Every level-0 tile of an MRXS fixture replaced by ``edit(tile)`` (appended to Data0000.dat,
    its Index.dat record repointed)."""
    idxp, d0 = info.folder / "Index.dat", info.folder / "Data0000.dat"
    idx, data = bytearray(idxp.read_bytes()), bytearray(d0.read_bytes())
    n0 = (info.level_dims[0][0] // 256) * (info.level_dims[0][1] // 256)
    for _name, off, ln in info.tiles[:n0]:
        pos = idx.find(struct.pack("<iii", off, ln, 0))
        blob = edit(bytes(data[off : off + ln]))
        struct.pack_into("<ii", idx, pos, len(data), len(blob))
        data += blob
    d0.write_bytes(bytes(data))
    idxp.write_bytes(bytes(idx))


@pytest.mark.parametrize("place", ["unused table", "jfif fields"])
def test_mrxs_tiles_with_an_unused_table_or_text_in_jfif_fields(cli, tmp_path, place):
    from .fixtures.mrxs_gen import make_mrxs

    info = make_mrxs(tmp_path / "src", "CASE-7418")
    if place == "unused table":
        _mrxs_level0(info, after_soi(UNUSED_DQT))
    else:
        _mrxs_level0(info, lambda d: after_soi(seg(0xE0, b"JFIF\0\x01" + NAME.encode()[:6] + b"\0\0"))(without(0xE0, d)))
    code, text, out = _run(cli, tmp_path, info.folder.parent / "CASE-7418.mrxs")
    if place == "unused table":  # the tiles are the source's: quarantined
        assert code != 0 and "failed: mrxs-tiles-identical" in text and not list(out.glob("*.mrxs"))
    else:  # the fields are zeroed
        assert code == 0 and list(out.glob("*.mrxs")), text


def test_offsets_of_empty_tiles_and_beyond_the_grid(cli, tmp_path):
    """An empty tile (byte count 0) keeps its offset, which no reader reads: its 4 bytes are
    zeroed.  Offset/count arrays longer than the image's tile grid: refused."""
    import tifffile

    from wsianon.pipeline.model import Verdict
    from wsianon.verify.partition import check_tiff_partition

    from .fixtures.svs_gen import _tissue

    thumb = _tissue(512, 512, 1)[::4, ::4].copy()
    thumb[64:] = 255  # the bottom row of tiles is emptied below: the slide's thumbnail shows background there
    src = _svs(tmp_path, thumbnail=thumb)
    raw = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tf:
        page = tf.pages[0]
        ot, ct, n = page.tags[324].valueoffset, page.tags[325].valueoffset, len(page.dataoffsets)
        assert n == 4  # a 2x2 tile grid: the last two are its bottom row
    for k, chunk in ((n - 2, b"Doe^"), (n - 1, b"Jane")):
        raw[ot + 4 * k : ot + 4 * k + 4] = chunk
        raw[ct + 4 * k : ct + 4 * k + 4] = bytes(4)
    src.write_bytes(bytes(raw))
    v = Verdict()
    check_tiff_partition(src, "aperio", v)
    assert any("empty tile" in f.canary for f in v.findings), v.findings
    code, text, out = _run(cli, tmp_path, src)
    assert code == 0 and _placed(out), text

    longer = write_svs(tmp_path / "src" / "CASE-7419.svs", size=(512, 512), levels=1, with_label=False, with_macro=False).path
    data = longer.read_bytes()

    def extend(ents, alloc):
        for e in ents:
            if e[0] in (324, 325):
                (off,) = struct.unpack("<I", e[3])
                e[3] = struct.pack("<I", alloc(data[off : off + 4 * e[2]] + (TEXT[:16] if e[0] == 324 else bytes(16))))
                e[2] += 4
        return ents

    edit_entries(longer, 0, extend)
    code, text, out = _run(cli, tmp_path, longer)
    assert code != 0 and "failed: closed-world-tags" in text and _placed(out) == []


def test_a_tile_of_a_jpeg_page_that_is_not_jpeg_fails_closed(cli, tmp_path):
    """One level-0 tile replaced by plain text (a decoder fails on it, OpenSlide reads only a region
    of each level, and the coded-data sample leaves it out): not a JPEG stream in a JPEG page."""
    from wsianon.verify.ecs import sample_indices

    (tmp_path / "src").mkdir()
    src = write_svs(tmp_path / "src" / "CASE-7420.svs", size=(2048, 2048), levels=1, with_label=False, with_macro=False).path
    seen: list[int] = []

    def second(data: bytes) -> bytes:
        seen.append(1)
        return TEXT * 4 if len(seen) == 2 else data

    rewrite_streams(src, tile=second)
    assert 1 not in sample_indices(64, False)
    code, text, out = _run(cli, tmp_path, src)
    assert code != 0 and "failed: tiles-identical" in text and _placed(out) == []
    assert "vocabulary" in _failed_checks(cli, src)  # verify, with no source to compare


# --- 6. PackBits and Zstandard tiles ---------------------------------------------------------


def test_packbits_and_zstd_streams_end_at_their_count():
    import imagecodecs
    import numpy as np

    from wsianon.verify.ecs import judge_packbits, judge_zstd

    raw = np.concatenate([np.zeros(300, np.uint8), (np.arange(3000) % 251).astype(np.uint8), np.full(500, 7, np.uint8)]).tobytes()
    pb = imagecodecs.packbits_encode(raw)
    assert judge_packbits(pb, len(raw)) is None and judge_packbits(pb + b"\0\0", len(raw)) is None
    assert judge_packbits(pb + TEXT, len(raw)) is not None and judge_packbits(pb, len(raw) - 1) is not None
    for level in (1, 9, 19):
        zs = imagecodecs.zstd_encode(raw, level=level)
        assert judge_zstd(zs, len(raw)) is None
        assert judge_zstd(zs + TEXT, len(raw)) is not None and judge_zstd(zs, len(raw) - 1) is not None
        skippable = b"\x50\x2a\x4d\x18" + struct.pack("<I", len(TEXT)) + TEXT
        assert judge_zstd(zs + skippable, len(raw)) is not None and judge_zstd(skippable + zs, len(raw)) is not None


@pytest.mark.parametrize("compression", ["packbits", "zstd"])
def test_text_after_packbits_or_zstd_tiles_fails_closed(cli, tmp_path, compression):
    import numpy as np
    import tifffile

    img = np.zeros((512, 512, 3), np.uint8)
    img[..., 1] = np.arange(512, dtype=np.uint8)[None, :] // 2
    (tmp_path / "src").mkdir()
    paths = []
    for name, tail in (("CASE-7421.tif", b""), ("CASE-7422.tif", TEXT)):
        p = tmp_path / "src" / name
        with tifffile.TiffWriter(p) as tw:
            tw.write(img, tile=(256, 256), compression=compression, photometric="rgb")
            tw.write(img[::2, ::2], tile=(256, 256), compression=compression, photometric="rgb", subfiletype=1)
        if tail:
            rewrite_level0_tiles(p, lambda blob: blob + TEXT)
        paths.append(p)
    code, text, out = _run(cli, tmp_path, paths[0], "native", "--allow-generic")
    assert code == 0 and _placed(out), text
    code, text, out = _run(cli, tmp_path, paths[1], "native", "--allow-generic")
    assert code != 0 and "failed: tiles-coded-tight" in text and _placed(out) == []
