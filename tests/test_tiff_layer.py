"""The low-level TIFF layer: classic/BigTIFF, both byte orders, strips and tiles,
unlinking first/middle/last IFDs, value rewrites without stale bytes, the two appliers."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from wsianon.errors import CorruptInput, UnsupportedFormat
from wsianon.io import tiffedit
from wsianon.io.plan import FilePlan, Patch, apply_copy, apply_in_place, rollback_journal
from wsianon.io.tiff import IMAGE_DESCRIPTION, Kind, TiffStructure

from .conftest import sha256


def _make(path, bigtiff=False, byteorder="<", n=4, tiled=(True, False, True, False)):
    with tifffile.TiffWriter(path, bigtiff=bigtiff, byteorder=byteorder) as tw:
        for i in range(n):
            img = np.full((64, 80), 10 * (i + 1), np.uint8)
            kw = {"tile": (16, 16)} if tiled[i % len(tiled)] else {"rowsperstrip": 16}
            tw.write(img, description=f"page {i} secret-{i}-value", metadata=None, **kw)
    return path


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_parse_all_variants(tmp_path, bigtiff, byteorder):
    p = _make(tmp_path / "a.tif", bigtiff, byteorder)
    with TiffStructure(p) as ts:
        assert ts.kind is (Kind.BIG if bigtiff else Kind.CLASSIC)
        assert ts.byteorder == byteorder
        assert len(ts.ifds) == 4
        for i, ifd in enumerate(ts.ifds):
            assert ts.text(ifd, IMAGE_DESCRIPTION) == f"page {i} secret-{i}-value"
            spans = ts.data_spans(ifd)
            assert len(spans) == (20 if i % 2 == 0 else 4)  # 4x5 tiles or 4 strips
            with tifffile.TiffFile(p) as tf:
                assert [int(o) for o in tf.pages[i].dataoffsets] == [s[0] for s in spans]


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("remove", [{0}, {1}, {3}, {0, 2}, {1, 2, 3}])
def test_unlink_first_middle_last(tmp_path, bigtiff, byteorder, remove):
    src = _make(tmp_path / "a.tif", bigtiff, byteorder)
    with TiffStructure(src) as ts:
        patches = tiffedit.unlink_ifds(ts, remove)
        for i in remove:
            patches += tiffedit.wipe_image_data(ts, ts.ifds[i])
    out = tmp_path / "b.tif"
    apply_copy(FilePlan("b.tif", src, patches), out)
    keep = [i for i in range(4) if i not in remove]
    with tifffile.TiffFile(out) as tf:
        assert [p.description for p in tf.pages] == [f"page {i} secret-{i}-value" for i in keep]
        for page, i in zip(tf.pages, keep):
            assert (page.asarray() == 10 * (i + 1)).all()
    # the removed pixels are destroyed, not just unlinked
    with TiffStructure(src) as ts, open(out, "rb") as fh:
        data = fh.read()
        for i in remove:
            for off, cnt in ts.data_spans(ts.ifds[i]):
                assert data[off : off + cnt] == bytes(cnt)


def test_cannot_unlink_everything(tmp_path):
    src = _make(tmp_path / "a.tif")
    with TiffStructure(src) as ts:
        with pytest.raises(ValueError):
            tiffedit.unlink_ifds(ts, {0, 1, 2, 3})


@pytest.mark.parametrize("bigtiff", [False, True])
def test_shrink_leaves_no_stale_bytes_and_grow_relocates(tmp_path, bigtiff):
    src = _make(tmp_path / "a.tif", bigtiff)
    with TiffStructure(src) as ts:
        app = tiffedit.Appender(ts.size)
        p0 = tiffedit.set_bytes(ts, ts.ifds[0].entries[IMAGE_DESCRIPTION], b"short", "t", app)
        long = b"x" * 300
        p1 = tiffedit.set_bytes(ts, ts.ifds[1].entries[IMAGE_DESCRIPTION], long, "t", app)
        p2 = tiffedit.blank_entry(ts, ts.ifds[2].entries[IMAGE_DESCRIPTION], "t")
    out = tmp_path / "b.tif"
    apply_copy(FilePlan("b.tif", src, p0 + p1 + p2, append=app.data), out)
    data = out.read_bytes()
    assert b"secret-0-value" not in data
    assert b"secret-1-value" not in data
    assert b"secret-2-value" not in data
    assert b"secret-3-value" in data  # untouched control
    with tifffile.TiffFile(out) as tf:
        assert tf.pages[0].description == "short"
        assert tf.pages[1].description == "x" * 300
        assert tf.pages[2].description == ""


def test_in_place_equals_copy_and_rolls_back(tmp_path):
    src = _make(tmp_path / "a.tif")
    with TiffStructure(src) as ts:
        patches = tiffedit.unlink_ifds(ts, {1}) + tiffedit.wipe_image_data(ts, ts.ifds[1])
        app = tiffedit.Appender(ts.size)
        patches += tiffedit.set_bytes(ts, ts.ifds[0].entries[IMAGE_DESCRIPTION], b"y" * 100, "t", app)
    fp = FilePlan("a.tif", src, patches, append=app.data)
    copy = tmp_path / "copy.tif"
    apply_copy(fp, copy)
    original = sha256(src)
    target = tmp_path / "inplace.tif"
    target.write_bytes(src.read_bytes())
    written = apply_in_place(FilePlan("a.tif", target, patches, append=app.data), target, keep_journal=True)
    assert sha256(target) == sha256(copy)
    assert written < target.stat().st_size  # only the patched bytes were written
    assert rollback_journal(target)
    assert sha256(target) == original


def test_zero_fill_patch_streams(tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(b"\xaa" * (20 * 1024 * 1024))
    out = tmp_path / "o.bin"
    apply_copy(FilePlan("o", src, [Patch(5, 17 * 1024 * 1024, None, "zero")]), out)
    d = out.read_bytes()
    assert d[:5] == b"\xaa" * 5 and d[5 : 5 + 17 * 1024 * 1024] == bytes(17 * 1024 * 1024) and d[-10:] == b"\xaa" * 10


def test_overlapping_data_patches_are_refused(tmp_path):
    fp = FilePlan("x", tmp_path / "x", [Patch(0, 4, b"abcd", "a"), Patch(2, 4, b"efgh", "b")])
    with pytest.raises(CorruptInput, match="claim the same bytes"):  # a damaged file, refused in one line
        fp.sorted_patches()


def test_corrupt_structures(tmp_path):
    p = tmp_path / "t.tif"
    p.write_bytes(b"II*\0" + (10**6).to_bytes(4, "little"))
    with pytest.raises(CorruptInput, match="outside the file"):
        TiffStructure(p)
    p.write_bytes(b"hello world, not a tiff")
    with pytest.raises(UnsupportedFormat):
        TiffStructure(p)
    good = _make(tmp_path / "g.tif")
    data = good.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) - 200])
    with pytest.raises(CorruptInput):
        with TiffStructure(cut) as ts:
            for ifd in ts.ifds:
                ts.data_spans(ifd)
    # an IFD chain that loops
    loop = tmp_path / "loop.tif"
    with TiffStructure(good) as ts:
        first = ts.ifds[0]
        patch = Patch(ts.ifds[1].next_field_offset, 4, ts.next_pointer_bytes(first.offset), "loop")
    apply_copy(FilePlan("l", good, [patch]), loop)
    with pytest.raises(CorruptInput, match="loops"):
        TiffStructure(loop)


def test_sparse_source_stays_sparse_and_scan_skips_holes(tmp_path):
    """Holes of a sparse source are neither read nor filled; the scanner still sees data near holes."""
    from wsianon.io.scan import Canary, Scanner

    src = tmp_path / "sparse.bin"
    with open(src, "wb") as fh:
        fh.write(b"head" + b"CANARY-AT-START")
        fh.seek(3 * 1024**3)
        fh.write(b"x" * 100 + b"CANARY-PAST-3GIB" + b"y" * 100)
        fh.seek(6 * 1024**3)
        fh.write(b"tail")
    if src.stat().st_blocks * 512 > 64 * 1024**2:
        pytest.skip("this file system does not store sparse files")
    patch = Patch(3 * 1024**3 + 100, 16, b"Z" * 16, "overwrite")
    out = tmp_path / "out.bin"
    apply_copy(FilePlan("o", src, [patch]), out)
    assert out.stat().st_size == src.stat().st_size
    assert out.stat().st_blocks * 512 < 64 * 1024**2  # holes were not filled
    with open(out, "rb") as fh:
        fh.seek(3 * 1024**3 + 100)
        assert fh.read(16) == b"Z" * 16
        fh.seek(6 * 1024**3)
        assert fh.read() == b"tail"
    s = Scanner([Canary("a", "CANARY-AT-START"), Canary("b", "CANARY-PAST-3GIB")])
    assert {f.canary for f in s.scan_file(src)} == {"a", "b"}
    assert {f.canary for f in s.scan_file(out)} == {"a"}
