"""An unused JPEG table is refused unless it is an ITU T.81 Annex K table.

The red team's rule (a table no scan uses may hold any bytes, so the stream is refused) would
also quarantine a clean slide whose writer put an encoder's default table set into JPEGTables —
libjpeg's tables-only stream (``jpeg_write_tables``) defines the chrominance tables for an RGB
page whose scans use table 0 only.  Such a table is one of a few thousand known values
(``io/jpeg_std.py``): it is accepted; any other unused table is still refused."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from wsianon.io.jpeg import DHT, DQT, JpegError, table_spans, walk
from wsianon.io.jpeg_std import standard_table

from .conftest import BUNDLED
from .fixtures.plant_rt2 import header_segments, rewrite_streams, seg


def _tables(data: bytes):
    """(is_dqt, table bytes) of every table of a JPEG stream's DQT and DHT segments."""
    for g in walk(data):
        if g.marker not in (DQT, DHT):
            continue
        body = data[g.payload_offset : g.payload_offset + g.payload_length]
        for _, start, end in table_spans(g.marker, body):
            yield g.marker == DQT, body[start:end]


def _libjpeg(quality: int) -> bytes:
    img = Image.fromarray((np.random.default_rng(quality).random((32, 32, 3)) * 255).astype("uint8"))
    b = io.BytesIO()
    img.save(b, "JPEG", quality=quality)
    return b.getvalue()


def _chroma(data: bytes):
    """The tables of id 1 (libjpeg's chrominance quantization, DC and AC Huffman tables)."""
    return [(q, t) for q, t in _tables(data) if t[0] & 0x0F == 1]


def _with_id(is_dqt: bool, table: bytes, ident: int) -> bytes:
    head = (table[0] & 0xF0) | ident
    return seg(DQT if is_dqt else DHT, bytes([head]) + table[1:])


@pytest.mark.parametrize("quality", [5, 50, 75, 90, 100])
def test_libjpeg_tables_are_the_annex_k_tables(quality):
    """What libjpeg writes (through Pillow) at any quality: the constants and the IJG scaling."""
    tables = list(_tables(_libjpeg(quality)))
    assert len(tables) == 6 and all(standard_table(q, t) for q, t in tables)


def test_a_table_that_is_not_annex_k_is_not_standard():
    q, t = next(_tables(_libjpeg(75)))
    assert q and not standard_table(True, t[:1] + bytes([t[1] + 1]) + t[2:])  # one value off
    assert not standard_table(True, bytes([0]) + b"Doe^Jane MRN4711".ljust(64, b" "))
    dht = [t for q, t in _tables(_libjpeg(75)) if not q]
    assert not standard_table(False, bytes([0x10]) + dht[0][1:])  # a DC table given as AC
    assert not standard_table(False, dht[0][:-1] + b"J")  # a changed symbol


def test_unused_annex_k_tables_in_a_stream_are_accepted_and_others_refused():
    jpg = _libjpeg(80)
    chroma = _chroma(jpg)
    assert len(chroma) == 3
    extra = b"".join(_with_id(q, t, 3) for q, t in chroma)
    walk(jpg[:2] + extra + jpg[2:])  # standard values in tables 3 no scan names: accepted
    text = seg(DQT, bytes([0x03]) + b"RTQX7 Doe^Jane MRN4711 ".ljust(64, b"Z"))
    with pytest.raises(JpegError, match="used by no scan"):
        walk(jpg[:2] + text + jpg[2:])


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_a_real_slide_with_default_chrominance_tables_in_jpegtables_is_verified(cli, tmp_path, target):
    """CMU-1's JPEGTables plus libjpeg's default chrominance tables under ids no scan uses (as a
    tables-only libjpeg stream defines them): verified and shared, on the run and in verify."""
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = src_dir / "CASE-7413.svs"
    shutil.copyfile(BUNDLED / "CMU-1-Small-Region.svs", src)
    src.chmod(0o644)
    chroma = _chroma(_libjpeg(85))
    extra = b"".join(_with_id(q, t, 3) for q, t in chroma)
    assert rewrite_streams(src, tables=lambda t: t[:-2] + extra + t[-2:]) >= 1
    assert any(m == DQT for m, _, _ in header_segments(extra.join([b"\xff\xd8", b"\xff\xd9"])))
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", target, str(src), "-o", str(out))
    assert code == 0, stdout + stderr
    (placed,) = out.glob("*.svs") if target == "native" else [p for p in out.iterdir() if p.is_dir()]
    code, stdout, stderr = cli("verify", str(placed))  # the output alone, its JPEGTables kept
    assert code == 0, stdout + stderr
