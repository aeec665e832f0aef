"""``tiles-padding`` decodes only tiles that are what their page declares (fuzz seed 1, SCN: a
TileLength of 558,276 rows over a 512-row page made every edge tile a 143-Mpx array, and the
check judged it for minutes).  A tile larger than ``MAX_TILE_PIXELS`` fails the check without
being decoded, and a JPEG tile whose frame header is not the page's tile size fails it with its
own reason (``tiles-sof`` judges such a tile as well)."""

from __future__ import annotations

import struct
from pathlib import Path

import tifffile

from tests.fixtures.svs_gen import write_svs
from wsianon.verify import padding, sof


def _with_tile_length(tmp_path: Path, rows: int) -> Path:
    p = write_svs(tmp_path / "s.svs", size=(600, 300)).path
    with tifffile.TiffFile(p) as t:
        tag = t.pages[0].tags["TileLength"]
        assert tag.dtype == 4 and not t.is_bigtiff  # a LONG held in the entry
        at = tag.valueoffset
    data = bytearray(p.read_bytes())
    data[at : at + 4] = struct.pack("<I", rows)
    p.write_bytes(bytes(data))
    return p


def _padding_check(path: Path):
    """The check on the file itself (``wsianon verify`` refuses such a file before: OpenSlide
    cannot read its tiles; ``run`` quarantines it, with this check among the failed ones)."""
    from wsianon.pipeline.model import Verdict

    v = Verdict()
    padding.check_tiff(path, v)
    (c,) = [c for c in v.checks if c.name == padding.CHECK]
    return c


def test_a_tile_larger_than_the_check_decodes_fails_it_undecoded(tmp_path, monkeypatch):
    p = _with_tile_length(tmp_path, 1 << 20)  # 256 x 1,048,576 px: 268 Mpx a tile

    orig = padding._judge_page

    def judge_page(fh, page, *a):
        assert page.tilelength * page.tilewidth <= padding.MAX_TILE_PIXELS, "a tile over MAX_TILE_PIXELS was decoded"
        return orig(fh, page, *a)

    monkeypatch.setattr(padding, "_judge_page", judge_page)
    c = _padding_check(p)
    assert not c.ok and "more than this check decodes" in c.detail, c


def test_a_jpeg_tile_coded_at_another_size_fails_with_its_reason(tmp_path):
    p = _with_tile_length(tmp_path, 512)  # the tiles' frame headers say 256 rows
    c = _padding_check(p)
    assert not c.ok and "JPEG frame header is not the page's 256 x 512 tile" in c.detail, c


def test_coded_fits_reads_the_frame_header():
    from io import BytesIO

    import numpy as np
    from PIL import Image

    buf = BytesIO()
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    assert sof.coded_fits(data, 32, 48)
    assert not sof.coded_fits(data, 48, 32)
    assert not sof.coded_fits(data, 64, 48)


def test_a_dicom_frame_larger_than_the_check_decodes_fails_it_undecoded(tmp_path, monkeypatch):
    """The same bound for DICOM frames (Rows and Columns up to 65,535 each)."""
    from pydicom.dataset import Dataset

    from wsianon.pipeline.model import Verdict

    ds = Dataset()
    ds.Rows, ds.Columns = 65520, 65520
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = 70000, 70000
    ds.NumberOfFrames = 4

    def judge_instance(*a, **k):
        raise AssertionError("a frame over MAX_TILE_PIXELS was decoded")

    monkeypatch.setattr(padding, "_judge_instance", judge_instance)
    v = Verdict()
    padding.check_dicom([(tmp_path / "big.dcm", ds)], v)
    (c,) = v.checks
    assert not c.ok and "frames of 65520 x 65520 px, more than this check decodes" in c.detail, c
