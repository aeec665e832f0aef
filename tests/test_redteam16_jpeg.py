"""Red team (h6): free bits in a JPEG tile's header that no check judged, on both routes.

A decoder skips fill bytes (0xFF) before any marker and standalone markers (RSTn, TEM) outside a
scan, and takes the last of several restart-interval (DRI) segments; an interval larger than the
scan's MCU count never asks for a restart marker.  Each let a tile (and the DICOM frame made from
it) carry an identifier while the output was called verified: ord(c) fill bytes before a marker,
RST0..RST7 as octal digits, DRI values as two characters each.  The JPEG walk now refuses them
(one form: no fill byte, no standalone marker but SOI/EOI outside a scan, at most one DRI before a
scan, an interval the scan reaches, exactly the restart markers it asks for, numbered in turn), so
the redaction cannot call such a slide verified: it is quarantined, nothing is placed.
"""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from wsianon.io.jpeg import JpegError, clean_by_header_many, clean_by_known_header, header_segments, scan_mcus, walk

from .fixtures.plant_jpeg import noise_jpeg
from .fixtures.plant_rt2 import rewrite_streams
from .fixtures.svs_gen import write_svs

KEY = "ab" * 32
NAME = "Doe^Jane 98765432"


def _seg(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def _sos(data: bytes) -> int:
    return data.index(b"\xff\xda")


def _restart_jpeg(size: int = 64, blocks: int = 2) -> bytes:
    """A 4:4:4 JPEG with a restart interval, as Pillow (libjpeg) writes it: RST0, RST1, ... between
    intervals (``blocks`` MCUs each)."""
    from PIL import Image

    rng = np.random.default_rng(5)
    b = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(b, "JPEG", quality=80, subsampling=0, restart_marker_blocks=blocks)
    return b.getvalue()


def test_restart_interval_larger_than_the_scan_or_defined_twice_is_refused():
    jpg = noise_jpeg(3, 16)  # 16 x 16, 4:2:0: one MCU, no restart marker
    sos = _sos(jpg)
    with pytest.raises(JpegError, match="larger than the scan"):
        walk(jpg[:sos] + _seg(0xDD, b"Do") + jpg[sos:])  # "Do" = 0x446F intervals
    with pytest.raises(JpegError, match="DRI defined twice"):
        walk(jpg[:sos] + _seg(0xDD, b"\x00\x00") + _seg(0xDD, b"\x00\x00") + jpg[sos:])
    with pytest.raises(JpegError, match="without a scan"):  # a tables-only stream (TIFF JPEGTables)
        walk(b"\xff\xd8" + _seg(0xDD, b"Do") + b"\xff\xd9")
    # an interval the scan reaches, with the markers it asks for (none for one MCU): accepted
    assert walk(jpg[:sos] + _seg(0xDD, b"\x00\x01") + jpg[sos:])
    assert walk(jpg[:sos] + _seg(0xDD, b"\x00\x00") + jpg[sos:])


def test_restart_markers_must_be_the_ones_the_interval_asks_for(tmp_path):
    jpg = _restart_jpeg()  # 64 x 64 4:4:4: 64 MCUs, interval 2 -> 31 restart markers
    segs = walk(jpg)
    assert [g.marker for g in segs].count(0xDD) == 1
    rst = [m.start() for m in re.finditer(rb"\xff[\xd0-\xd7]", jpg)]
    assert len(rst) == 31
    renumbered = bytearray(jpg)
    renumbered[rst[3] + 1] = 0xD7  # a digit of an octal message
    with pytest.raises(JpegError, match="restart markers"):
        walk(bytes(renumbered))
    dri = jpg.index(b"\xff\xdd")
    with pytest.raises(JpegError, match="restart markers"):  # an interval the markers do not follow
        walk(jpg[: dri + 4] + b"\x00\x04" + jpg[dri + 6 :])
    with pytest.raises(JpegError, match="fill bytes"):  # fill bytes before a restart marker
        walk(jpg[: rst[5]] + b"\xff" * 7 + jpg[rst[5] :])
    # encoders' restart intervals still walk: Pillow (libjpeg) at several intervals, and the NDPI
    # fixture's strips (restart markers in each strip, as NDPI writes them)
    assert walk(_restart_jpeg(40, 3)) and walk(_restart_jpeg(64, 64))
    _ndpi_strips_walk(tmp_path)


def _ndpi_strips_walk(tmp_path) -> None:
    import tifffile

    from .fixtures.ndpi_gen import make_ndpi

    src, _ = make_ndpi(tmp_path / "s.ndpi")
    n = 0
    with tifffile.TiffFile(src) as tf:
        fh = tf.filehandle
        for page in tf.pages:
            if page.compression != 7:
                continue
            offs, cnts = page.tags[273].value, page.tags[279].value  # the raw strips (tifffile splits NDPI's)
            for off, cnt in zip(*(((v,) if isinstance(v, int) else v) for v in (offs, cnts))):
                fh.seek(off)
                data = fh.read(cnt)
                if data[:2] == b"\xff\xd8":
                    n += [g.marker for g in walk(data)].count(0xDD)
    assert n  # strips with a restart interval among them


def test_scan_mcus():
    frame = bytes([8, 1, 0, 1, 0, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])  # 256 x 256, 4:2:0
    assert scan_mcus(0xC0, frame, bytes([3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0])) == 256
    assert scan_mcus(0xC0, frame, bytes([1, 1, 0, 0, 63, 0])) == 1024  # luma alone: one block an MCU
    assert scan_mcus(0xC0, frame, bytes([1, 2, 0, 0, 63, 0])) == 256
    assert scan_mcus(0xC3, bytes([8, 0, 10, 0, 10, 1, 1, 0x11, 0]), bytes([1, 1, 0, 1, 0, 0])) == 100  # lossless: a sample
    assert scan_mcus(0xC0, bytes([8, 0, 0, 1, 0, 1, 1, 0x11, 0]), bytes([1, 1, 0, 0, 63, 0])) is None  # height by DNL


@pytest.mark.parametrize("where", ["after-soi", "before-sos", "before-eoi"])
def test_fill_bytes_outside_the_entropy_coded_data_are_refused(where):
    jpg = noise_jpeg(3, 16)
    sos = _sos(jpg)
    at = {"after-soi": 2, "before-sos": sos, "before-eoi": len(jpg) - 2}[where]
    data = jpg[:at] + b"\xff" * ord("D") + jpg[at:]
    with pytest.raises(JpegError, match="fill bytes"):
        walk(data)
    if where != "before-eoi":
        with pytest.raises(JpegError, match="fill bytes"):
            header_segments(data)
    else:
        # the shortcut for a tile whose header is one proven clean (to its first SOS) does not
        # take a tile whose EOI follows fill bytes (the marker search skips them): it is walked
        hdr = jpg[: walk(jpg)[[g.marker for g in walk(jpg)].index(0xDA)].end]
        assert clean_by_known_header(jpg, [hdr]) and not clean_by_known_header(data, [hdr])
        # one fill byte before EOI that makes the stream even (DICOM encoders pad an odd frame so,
        # instead of a 0x00 after EOI): its presence follows from the parity, it is accepted
        for stream in (jpg, jpg[:2] + _seg(0xFE, b"\x00") + jpg[2:]):  # both parities (5 bytes more)
            one = stream[:-2] + b"\xff" + stream[-2:]
            if len(one) % 2 == 0:
                assert walk(one)
                assert stream is not jpg or clean_by_known_header(one, [hdr])
            else:
                with pytest.raises(JpegError, match="fill bytes"):
                    walk(one)
                assert not clean_by_known_header(one, [hdr])
        buf = jpg + data
        arr = np.frombuffer(buf, dtype=np.uint8)
        ok = clean_by_header_many(arr, np.array([0, len(jpg)]), np.array([len(jpg), len(buf)]), hdr)
        assert ok.tolist() == [True, False]


@pytest.mark.parametrize("marker", [0xD0, 0xD5, 0x01, 0xD8])
def test_standalone_markers_outside_a_scan_are_refused(marker):
    jpg = noise_jpeg(3, 16)
    sos = _sos(jpg)
    data = jpg[:sos] + (b"\xff" + bytes([marker])) * 5 + jpg[sos:]
    with pytest.raises(JpegError, match="standalone marker"):
        walk(data)
    with pytest.raises(JpegError, match="standalone marker"):
        header_segments(data)
    if marker == 0x01:  # TEM between the scan and EOI
        with pytest.raises(JpegError, match="standalone marker"):
            walk(jpg[:-2] + b"\xff\x01" + jpg[-2:])


def _tile_edit(kind: str):
    it = iter(range(10**6))

    def edit(data: bytes) -> bytes:
        k = next(it)
        sos = _sos(data)
        pair = (NAME * 4)[2 * k : 2 * k + 2].encode()
        if kind == "dri":
            return data[:sos] + _seg(0xDD, pair) + data[sos:]
        if kind == "dri-twice":
            return data[:sos] + _seg(0xDD, b"\x00\x00") + _seg(0xDD, b"\x00\x00") + data[sos:]
        if kind == "fill":
            return data[:2] + b"\xff" * pair[0] + data[2:sos] + b"\xff" * pair[1] + data[sos:-2] + b"\xff" * pair[0] + data[-2:]
        if kind == "rst":
            return data[:sos] + b"".join(b"\xff" + bytes([0xD0 + int(d)]) for d in "%03o" % pair[0]) + data[sos:]
        raise AssertionError(kind)

    return edit


@pytest.mark.parametrize("target", ["native", "dicom"])
@pytest.mark.parametrize("kind", ["dri", "dri-twice", "fill", "rst"])
def test_header_free_bits_are_not_verified(cli, tmp_path, kind, target):
    (tmp_path / "src").mkdir()
    src = write_svs(tmp_path / "src" / "CASE-7711.svs", size=(1024, 768), levels=2).path
    assert rewrite_streams(src, tile=_tile_edit(kind)) > 10
    key = tmp_path / "key"
    key.write_text(KEY)
    key.chmod(0o600)
    out = tmp_path / "out"
    code, stdout, err = cli("run", "--target", target, str(src), "-o", str(out), "--key-file", str(key))
    failed = "tiles-identical" if target == "native" else "dicom: frame segments"
    named = re.search(r"\(failed: ([^)]*)\)", err + stdout)
    assert code != 0 and named is not None and failed in named.group(1).split(", "), err + stdout
    assert not list(out.rglob("*.svs")) and not list(out.rglob("*.dcm"))
    if target == "dicom":  # the frame check names the walk's reason
        why = {"dri": "larger than the scan", "dri-twice": "DRI defined twice", "fill": "fill bytes", "rst": "standalone marker"}[kind]
        assert why in (out / "wsianon-report.json").read_text()
    vcode, _o, _e = cli("verify", str(src))  # the audit without the source finds it too
    assert vcode != 0


def test_tile_identity_feeder_walks_a_known_header_tile_with_fill_bytes_before_eoi(tmp_path):
    """``tileid.Feeder`` (tile identity, and ``dicom: frame segments`` streamed): a tile whose
    header is one it proved clean takes its fast path only when no fill byte stands before EOI."""
    from wsianon.verify import tileid

    a = noise_jpeg(3, 64)
    b = a[:-2] + b"\xff" * ord("D") + a[-2:]
    tiles = [a, a, b, a, b]
    path = tmp_path / "tiles.bin"
    path.write_bytes(b"".join(tiles))
    offs = np.cumsum([0] + [len(t) for t in tiles[:-1]]).astype(np.uint64)
    page = tileid.Page(0, 0, offs, np.array([len(t) for t in tiles], dtype=np.uint64), True, None)
    f = tileid.Feeder([page], scrub=True)
    tileid.feed_file(path, f)
    f.finish(path)
    assert f.states[0].malformed == 2


def test_fill_bytes_inside_the_entropy_coded_data_on_every_path():
    """0xFF 0xFF ... 0xFF 0x00 in a scan's data decodes as one 0xFF (libjpeg skips the fill bytes
    silently), so the count is free in every tile; the walk refuses it, and so do the shortcuts
    for a tile whose header repeats a clean one (which never walk its data)."""
    from wsianon.verify import tileid

    a = noise_jpeg(3, 256)
    hdr = a[: a.index(b"\xff\xda") + 14]  # to the end of SOS (3 components)
    i = a.index(b"\xff\x00", len(hdr))
    c = a[:i] + b"\xff" * ord("D") + a[i:]
    with pytest.raises(JpegError, match="fill bytes"):
        walk(c)
    assert clean_by_known_header(a, [hdr]) and not clean_by_known_header(c, [hdr])
    buf = a + c + a
    s = np.array([0, len(a), len(a) + len(c)])
    ok = clean_by_header_many(np.frombuffer(buf, dtype=np.uint8), s, s + np.array([len(a), len(c), len(a)]), hdr)
    assert ok.tolist() == [True, False, True]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tiles.bin"
        path.write_bytes(buf)
        page = tileid.Page(0, 0, s.astype(np.uint64), np.array([len(a), len(c), len(a)], dtype=np.uint64), True, None)
        f = tileid.Feeder([page], scrub=True)
        tileid.feed_file(path, f)
        f.finish(path)
        assert f.states[0].malformed == 1


def test_restart_markers_on_the_header_repeat_shortcuts(tmp_path):
    """The shortcuts (a tile whose header repeats a proven clean one) never walk its data, and the
    marker search skips restart markers: they check them as the walk does (count and numbering)."""
    from wsianon.verify import tileid

    a = _restart_jpeg()  # interval 2, 31 markers
    hdr = a[: a.index(b"\xff\xda") + 14]
    rst = [m.start() for m in re.finditer(rb"\xff[\xd0-\xd7]", a)]
    c = bytearray(a)
    c[rst[9] + 1] = 0xD0 + (int("4", 8) if c[rst[9] + 1] != 0xD4 else 5)  # an octal digit
    c = bytes(c)
    d = a[: rst[-1]] + a[rst[-1] + 2 :]  # one marker fewer
    plain = noise_jpeg(3, 256)  # no interval: no restart marker may stand in its data
    phdr = plain[: plain.index(b"\xff\xda") + 14]
    i = plain.index(b"\xff\x00", len(phdr))
    p = plain[:i] + b"\xff\xd0" + plain[i:]
    for good, bad, h in ((a, c, hdr), (a, d, hdr), (plain, p, phdr)):
        with pytest.raises(JpegError, match="restart markers"):
            walk(bad)
        assert clean_by_known_header(good, [h]) and not clean_by_known_header(bad, [h])
        buf = good + bad + good
        s = np.array([0, len(good), len(good) + len(bad)])
        lens = np.array([len(good), len(bad), len(good)])
        assert clean_by_header_many(np.frombuffer(buf, dtype=np.uint8), s, s + lens, h).tolist() == [True, False, True]
        path = tmp_path / "tiles.bin"
        path.write_bytes(buf)
        f = tileid.Feeder([tileid.Page(0, 0, s.astype(np.uint64), lens.astype(np.uint64), True, None)], scrub=True)
        tileid.feed_file(path, f)
        f.finish(path)
        assert f.states[0].malformed == 1


def test_fill_bytes_before_eoi_of_tiles_with_a_known_header(cli, tmp_path):
    """The verifier skips the walk of a tile whose header is one it proved clean and whose EOI is
    the first marker after it (the header-repeat shortcut); the marker search skips fill bytes, so
    fill bytes before EOI rode it: each header's first tile is left clean, every later one carries
    a character as its count of fill bytes before EOI (DICOM frames: ``dicom: frame segments``;
    the coded-data check leaves a frame it cannot walk to that check)."""
    (tmp_path / "src").mkdir()
    src = write_svs(tmp_path / "src" / "CASE-7713.svs", size=(1024, 768), levels=2).path
    seen: set[bytes] = set()
    chars = iter((NAME * 20).encode())

    def edit(data: bytes) -> bytes:
        head = data[: data.index(b"\xff\xda") + 2]
        if head not in seen:
            seen.add(head)
            return data
        return data[:-2] + b"\xff" * next(chars) + data[-2:]

    assert rewrite_streams(src, tile=edit) > 10
    key = tmp_path / "key"
    key.write_text(KEY)
    key.chmod(0o600)
    out = tmp_path / "out"
    code, stdout, err = cli("run", "--target", "dicom", str(src), "-o", str(out), "--key-file", str(key))
    named = re.search(r"\(failed: ([^)]*)\)", err + stdout)
    assert code != 0 and named is not None and "dicom: frame segments" in named.group(1).split(", "), err + stdout
    assert not list(out.rglob("*.dcm"))


def test_philips_tables_with_a_restart_interval_are_not_verified(cli, tmp_path):
    """Philips TIFF: DRI segments in the JPEGTables (every tile's, and opentile merges them into
    each DICOM frame) and in the tiles."""
    from .fixtures.philips_gen import make_philips

    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "CASE-7712.tiff"
    make_philips(src)

    def dri(text: str) -> bytes:
        return b"".join(_seg(0xDD, text[i : i + 2].encode()) for i in range(0, len(text), 2))

    n = rewrite_streams(src, tile=lambda d: d[: _sos(d)] + dri("98") + d[_sos(d) :], tables=lambda d: d[:-2] + dri("Do") + d[-2:])
    assert n > 5
    key = tmp_path / "key"
    key.write_text(KEY)
    key.chmod(0o600)
    for target in ("native", "dicom"):
        out = tmp_path / f"out-{target}"
        code, stdout, err = cli("run", "--target", target, str(src), "-o", str(out), "--key-file", str(key))
        assert code != 0, err + stdout
        assert not [p for p in out.rglob("*") if p.suffix in (".tiff", ".dcm")]
