"""Identifiers hidden inside a JPEG tile's own structure, where a segment's *type* is one a decoder
uses but its bytes are not: a JFIF thumbnail (or bytes after the Adobe fields), a table segment
after the last scan, a segment whose length runs past the stream.  The first is scrubbed (only
the bytes past the fields a decoder reads); the others cannot be zeroed without changing how a
decoder parses the stream, so the slide fails verification and nothing is placed — on both routes.
"""

from __future__ import annotations

import itertools
import re
import struct
from pathlib import Path

import pytest

from wsianon.io.jpeg import ADOBE_FIELDS, JFIF_FIELDS, JpegError, dirty_segments, follows_jpeg_rules, nonessential, scrub, walk

from .fixtures.plant_jpeg import noise_jpeg, plant_tiff_jpeg
from .fixtures.svs_gen import write_svs

SECRET = b"HIDDEN-NAME-QQ7"
KEY = "ab" * 32


def _seg(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def _jfif(thumb: bytes = b"", size: tuple[int, int] = (0, 0)) -> bytes:
    return _seg(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01" + bytes(size) + thumb)


def _adobe(extra: bytes = b"") -> bytes:
    return _seg(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01" + extra)


def _dht_after(data: bytes) -> bytes:
    """A Huffman table (AC, id 3) whose symbols spell the secret, between the scan and EOI."""
    table = bytes([0x13]) + bytes(15) + bytes([len(SECRET)]) + SECRET
    return data[:-2] + _seg(0xC4, table) + data[-2:]


def test_jfif_thumbnail_and_adobe_tail_are_payloads_the_fields_are_not():
    jpg = noise_jpeg(3, 16)
    thumb = (SECRET * 2)[:12]  # a 2 x 2 RGB thumbnail
    for head, fields in ((_jfif(thumb, (2, 2)), JFIF_FIELDS), (_adobe(SECRET), ADOBE_FIELDS)):
        data = jpg[:2] + head + jpg[2:]
        (s,) = nonessential(data, walk(data))
        assert s.payload_offset == 2 + 4 + fields and s.payload_length == len(head) - 4 - fields and s.end == 2 + len(head)
        out, n = scrub(data)
        assert n == 1 and SECRET[:12] not in out and len(out) == len(data)
        assert out[: 2 + 4 + fields] == data[: 2 + 4 + fields]  # the fields a decoder reads are kept
        assert out[2 + len(head) :] == data[2 + len(head) :]
        assert not dirty_segments(out) and scrub(out)[0] == out
    for canonical in (_jfif(), _adobe()):  # as encoders write them: nothing to zero
        data = jpg[:2] + canonical + jpg[2:]
        assert nonessential(data, walk(data)) == [] and scrub(data) == (data, 0)


def test_a_table_after_the_last_scan_is_not_followed_but_one_between_scans_is():
    jpg = noise_jpeg(3, 16)
    with pytest.raises(JpegError, match="after the last scan"):
        walk(_dht_after(jpg))
    dqt = _seg(0xDB, bytes([0]) + (SECRET * 5)[:64])
    with pytest.raises(JpegError, match="after the last scan"):
        walk(jpg[:-2] + dqt + jpg[-2:])
    # a second scan (its own table, then SOS and entropy-coded data): tables between scans are used
    sos = next(i for i in range(2, len(jpg)) if jpg[i] == 0xFF and jpg[i + 1] == 0xDA)
    second = dqt + jpg[sos:-2] + b"\xff\xd9"
    segs = walk(jpg[:-2] + second)
    assert [g.marker for g in segs].count(0xDA) == 2
    with pytest.raises(JpegError, match="truncated"):
        walk(jpg[:-2] + b"\xff\xfe\x00\x40" + SECRET)  # a comment running past the stream


def test_only_streams_of_the_rules_walked_are_judged_malformed():
    """A JPEG-LS stream (SOF55) stuffs 0xFF differently in its entropy-coded data: the walk cannot
    follow it, which says nothing about it (the frame checks judge it); a T.81 stream it cannot
    follow is malformed."""
    jpg = noise_jpeg(3, 16)
    assert follows_jpeg_rules(jpg) and follows_jpeg_rules(jpg[:-2] + b"\xff\xfe\x00\x40")
    sof55 = _seg(0xF7, bytes([8, 0, 16, 0, 16, 1, 1, 0x11, 0]))
    sos = _seg(0xDA, bytes([1, 1, 0, 0, 0, 0]))
    jls = b"\xff\xd8" + sof55 + sos + bytes([0xFF, 0x7F, 0x12, 0xFF, 0x01]) + b"\xff\xd9"
    assert not follows_jpeg_rules(jls)
    with pytest.raises(JpegError):
        walk(jls)


def _padded(data: bytes, marker: int) -> bytes:
    """``data`` with the first ``marker`` segment lengthened by the secret after its fields."""
    i = 2
    while True:
        m, ln = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if m == marker:
            return data[:i] + _seg(m, data[i + 4 : i + 2 + ln] + SECRET) + data[i + 2 + ln :]
        i += 2 + ln


def test_a_decoder_segment_longer_than_its_fields_is_not_followed():
    """A frame header, scan header, restart interval or table segment padded after its fields
    (decoders refuse it; the padding could be anything) makes the stream one the walk refuses."""
    jpg = noise_jpeg(3, 16)
    for marker in (0xDB, 0xC4, 0xC0, 0xDA):
        with pytest.raises(JpegError, match="length does not match"):
            walk(_padded(jpg, marker))
    with pytest.raises(JpegError, match="is not 4"):
        walk(jpg[:2] + _seg(0xDD, b"\x00\x10" + SECRET) + jpg[2:])
    # a restart interval as encoders write it (0: none; the stream has no restart markers, and an
    # interval the scan reaches would ask for some: tests/test_redteam16_jpeg.py)
    assert walk(jpg[:2] + _seg(0xDD, b"\x00\x00") + jpg[2:])


def _planted(tmp_path: Path, kind: str) -> Path:
    (tmp_path / "src").mkdir()
    src = write_svs(tmp_path / "src" / "CASE-4411.svs", size=(1024, 768), levels=2).path
    streams = itertools.count()

    def edit(data: bytes, token: str) -> bytes:
        if data[-2:] != b"\xff\xd9" or len(data) < 200:
            return data  # JPEGTables and tiny streams as they are
        if kind == "jfif-thumbnail":
            return data[:2] + _jfif(SECRET[:12], (2, 2)) + data[2:]
        if kind == "table-after-scan":
            return _dht_after(data)
        if kind == "table-defined-twice":  # a first quantization table 0, overridden by the tile's own
            return data[:2] + _seg(0xDB, bytes([0]) + (SECRET * 5)[:64]) + data[2:]
        if kind in ("padded-table", "padded-frame-header"):
            # the name after the segment's own fields, in one tile (a decoder refuses that tile,
            # so in all of them the slide would be refused before anything is written)
            return _padded(data, 0xDB if kind == "padded-table" else 0xC0) if next(streams) == 7 else data
        return data[:-2] + b"\xff\xfe\x00\x40" + SECRET  # "truncated-segment"

    assert plant_tiff_jpeg(src, "x", edit=edit) > 10
    return src


def _secret_in(folder: Path) -> int:
    return sum(p.read_bytes().count(SECRET[:12]) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("target", ["native", "dicom"])
@pytest.mark.parametrize("kind", ["jfif-thumbnail", "table-after-scan", "table-defined-twice", "padded-table", "padded-frame-header", "truncated-segment"])
def test_hidden_in_tile_structure(cli, tmp_path, kind, target):
    src = _planted(tmp_path, kind)
    assert _secret_in(src.parent) >= (1 if kind.startswith("padded") else 10)
    key = tmp_path / "key"
    key.write_text(KEY)
    key.chmod(0o600)
    out = tmp_path / "out"
    code, stdout, err = cli("run", "--target", target, str(src), "-o", str(out), "--key-file", str(key))
    if kind == "jfif-thumbnail":  # scrubbed: the thumbnail's pixels zeroed, the fields kept
        assert code == 0, err
        assert _secret_in(out) == 0 and list(out.rglob("*.svs" if target == "native" else "*.dcm"))
    else:  # not provable: quarantined, nothing placed
        failed = "tiles-identical" if target == "native" else "dicom: frame segments"
        named = re.search(r"\(failed: ([^)]*)\)", err + stdout)  # the console's list of failed checks
        assert code != 0 and named is not None and failed in named.group(1).split(", "), err + stdout
        assert _secret_in(out) == 0
        assert not list(out.rglob("*.svs")) and not list(out.rglob("*.dcm"))
        # the audit without the source (every JPEG stream followed to its end) finds it too
        vcode, _o, _e = cli("verify", str(src))
        assert vcode != 0


def _table_at_end(data: bytes) -> bytes:
    """The same length, still decodable: the JFIF segment after SOI (18 bytes) gives way to an
    empty comment (12 bytes) and, between the scan and EOI, a restart-interval segment (6 bytes)."""
    assert data[2:4] == b"\xff\xe0" and data[4:6] == b"\x00\x10", "PIL's tiles start with a JFIF segment"
    return data[:2] + _seg(0xFE, bytes(8)) + data[20:-2] + _seg(0xDD, b"\x00\x10") + b"\xff\xd9"


@pytest.mark.parametrize("fmt", ["leica", "mrxs"])
def test_formats_comparing_their_own_tiles_fail_a_tile_they_cannot_follow(cli, tmp_path, fmt):
    """Leica SCN and MRXS prove their pyramid in their own hooks: a tile that cannot be followed
    to its end (a table after its scan; equal to the source's, so no difference shows) fails
    them too."""
    from .fixtures.mrxs_gen import make_mrxs
    from .fixtures.scn_gen import make_scn

    src_dir = tmp_path / "src"
    src_dir.mkdir()
    if fmt == "leica":
        src = make_scn(src_dir / "CASE-5511.scn").path
        assert plant_tiff_jpeg(src, "x", edit=lambda d, _t: _dht_after(d) if len(d) > 200 and d[-2:] == b"\xff\xd9" else d) > 0
        check = "leica-tiles-identical"
    else:
        info = make_mrxs(src_dir, "CASE-5512")
        src = info.mrxs
        name = info.tiles[0][0]
        data_file = info.folder / name
        raw = bytearray(data_file.read_bytes())
        for tile_file, off, size in info.tiles[:4]:
            if tile_file == name:
                raw[off : off + size] = _table_at_end(bytes(raw[off : off + size]))
        data_file.write_bytes(bytes(raw))
        check = "mrxs-tiles-identical"
    key = tmp_path / "key"
    key.write_text(KEY)
    key.chmod(0o600)
    out = tmp_path / "out"
    code, stdout, err = cli("run", "--target", "native", str(src), "-o", str(out), "--key-file", str(key))
    assert code != 0 and f"failed: {check}" in err + stdout
    assert _secret_in(out) == 0


def test_a_kept_thumbnail_strip_is_followed_to_its_end(cli, tmp_path):
    """The thumbnail page is not a pyramid level, so no tile identity proves it: the vocabulary
    check follows its JPEG strip to the end, where a table after the scan carries the text."""
    import tifffile

    (tmp_path / "src").mkdir()
    src = write_svs(tmp_path / "src" / "CASE-6611.svs", size=(1024, 768), levels=2).path
    with tifffile.TiffFile(src, mode="r+b") as tf:
        page = tf.pages[1]
        assert page.shape[:2] == (192, 256) and not page.is_tiled  # the thumbnail: one strip
        fh = tf.filehandle
        fh.seek(page.dataoffsets[0])
        new = _dht_after(fh.read(page.databytecounts[0]))
        fh.seek(0, 2)
        at = fh.tell()
        fh.write(new)
        page.tags["StripOffsets"].overwrite([at])
        page.tags["StripByteCounts"].overwrite([len(new)])
    key = tmp_path / "key"
    key.write_text(KEY)
    key.chmod(0o600)
    out = tmp_path / "out"
    code, stdout, err = cli("run", "--target", "native", str(src), "-o", str(out), "--key-file", str(key))
    assert code != 0 and "failed: vocabulary" in err + stdout
    assert _secret_in(out) == 0 and not list(out.rglob("*.svs"))


def test_a_table_defined_twice_before_a_scan_is_not_followed():
    """A quantization table defined twice before the scan (the first one never used: its 64 values
    could be anything), in one segment or two, and a Huffman table likewise; one definition per
    table, or a redefinition after a scan used it, is as encoders write."""
    jpg = noise_jpeg(3, 16)
    secret_table = bytes([0]) + (SECRET * 5)[:64]
    for extra in (_seg(0xDB, secret_table), _seg(0xDB, secret_table + secret_table)):
        dup = jpg[:2] + extra + jpg[2:]  # the stream's own DQT for table 0 follows
        with pytest.raises(JpegError, match="defined twice"):
            walk(dup)
    huff = bytes([0x00]) + bytes(15) + bytes([len(SECRET)]) + SECRET  # DC table 0
    with pytest.raises(JpegError, match="defined twice"):
        walk(jpg[:2] + _seg(0xC4, huff) + jpg[2:])  # the stream defines DC table 0 itself, later
    assert len(walk(jpg)) > 5  # the stream as the encoder wrote it: each table once
    # redefined after a scan used it (a second scan with its own tables): as encoders write
    sos = next(i for i in range(2, len(jpg)) if jpg[i] == 0xFF and jpg[i + 1] == 0xDA)
    categories = bytes([0x00]) + bytes(15) + bytes([12]) + bytes(range(12))  # a DC table as encoders list it
    second = _seg(0xDB, bytes([0]) + bytes(range(1, 65))) + _seg(0xC4, categories) + jpg[sos:-2] + b"\xff\xd9"
    assert [g.marker for g in walk(jpg[:-2] + second)].count(0xDA) == 2
