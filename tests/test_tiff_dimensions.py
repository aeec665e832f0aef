"""A page's ImageWidth / ImageLength that is not one integer is no size (fuzz seed 108,
svs-bigtiff #56: a bit flip gave ImageWidth a count of 122, and ``image-pages`` ended ``verify`` in
"internal error (TypeError)").  ``TiffStructure.dimensions`` reads it as 0: the page still holds
pixel data, so it is judged as a picture of a size no level has (it fails)."""

from __future__ import annotations

import struct

import tifffile

from tests.fixtures.svs_gen import write_svs
from wsianon.io.tiff import TiffStructure


def _with_width_count(tmp_path, page_index: int, count: int):
    p = write_svs(tmp_path / "s.svs", size=(512, 384)).path
    with tifffile.TiffFile(p) as t:
        assert not t.is_bigtiff
        tag = t.pages[page_index].tags["ImageWidth"]
        entry = tag.offset  # classic TIFF entry: tag, type, count, value
    data = bytearray(p.read_bytes())
    tag_no, typ, _n, _v = struct.unpack_from("<HHII", data, entry)
    assert tag_no == 256
    struct.pack_into("<HHII", data, entry, 256, typ, count, 8)  # the values now from byte 8 on: the first IFD's bytes
    p.write_bytes(bytes(data))
    return p


def test_a_width_of_several_values_is_no_size(tmp_path):
    p = _with_width_count(tmp_path, 2, 40)
    with TiffStructure(p) as ts:
        dims = [ts.dimensions(i) for i in ts.ifds]
        assert isinstance(ts.value(ts.ifds[2], 256), tuple)  # the damage: several values
    assert dims[2][0] == 0 and dims[0] == (512, 384)


def test_verify_judges_such_a_page_and_fails_it(tmp_path):
    from wsianon.pipeline.audit import audit_paths

    p = _with_width_count(tmp_path, 2, 40)
    ((_path, verdict, err),) = audit_paths([p])
    assert err is None and verdict is not None  # judged, not an internal error
    (pages,) = [c for c in verdict.checks if c.name == "image-pages"]
    assert not pages.ok and "IFD 2" in pages.detail, pages


def _damaged_label(tmp_path, count: int | None = None, width: int | None = None):
    """An SVS whose label page's ImageWidth has ``count`` values, or is ``width`` (LONG)."""
    p = write_svs(tmp_path / "s.svs", size=(512, 384)).path
    with tifffile.TiffFile(p) as t:
        (idx,) = [i for i, pg in enumerate(t.pages) if "label" in (pg.description or "")]
        entry = t.pages[idx].tags["ImageWidth"].offset
    data = bytearray(p.read_bytes())
    _tag, typ, n, v = struct.unpack_from("<HHII", data, entry)
    if count is not None:
        struct.pack_into("<HHII", data, entry, 256, typ, count, 8)
    else:
        struct.pack_into("<HHII", data, entry, 256, 4, 1, width)
    p.write_bytes(bytes(data))
    return p, idx


def test_a_blank_label_of_a_damaged_size_is_refused_in_one_line(tmp_path, cli):
    """Fuzzing with --label blank (stop 42): a label whose ImageWidth has 40 values ended the run in
    "internal error (TypeError)" (``blank_label_patches`` drew a label of a tuple's width); the
    slide is now refused with the reason, and nothing is written for it."""
    p, idx = _damaged_label(tmp_path, count=40)
    code, _out, err = cli("run", p, "-o", tmp_path / "o", "--label", "blank")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1, err
    assert "internal error" not in lines[0] and f"label IFD {idx}" in lines[0] and str(p.name) in lines[0], lines
    assert not [q for q in (tmp_path / "o").iterdir() if q.suffix == ".svs"]


def test_a_blank_label_is_never_drawn_past_its_bound(tmp_path):
    """A label of 2,000,000 px a row (one number, but no label photo is that wide) is refused before
    numpy is asked for its rows (the decode probe refuses such a slide first in a run)."""
    import pytest

    from wsianon.converters.aperio.redactor import MAX_LABEL_SAMPLES, blank_label_patches
    from wsianon.errors import CorruptInput

    p, idx = _damaged_label(tmp_path, width=2_000_000)
    with TiffStructure(p) as ts:
        assert ts.dimensions(ts.ifds[idx])[0] * ts.dimensions(ts.ifds[idx])[1] * 3 > MAX_LABEL_SAMPLES
        with pytest.raises(CorruptInput, match="larger than"):
            blank_label_patches(ts, ts.ifds[idx])


def test_a_blank_label_whose_strip_byte_counts_have_another_type_is_refused_in_one_line(tmp_path, cli):
    """Fuzz seed 172, svs #40 (``run --in-place --label blank``): a bit flip gave the label's
    StripByteCounts (279) the field type IFD (13), which the TIFF reader reads as numbers, and
    ``blank_label_patches`` ended in "internal error (KeyError)" packing the new counts; the slide
    is now refused with the reason, and the input is left as it was."""
    (tmp_path / "slides").mkdir()
    p = write_svs(tmp_path / "slides" / "s.svs", size=(512, 384)).path
    with tifffile.TiffFile(p) as t:
        (idx,) = [i for i, pg in enumerate(t.pages) if "label" in (pg.description or "")]
        entry = t.pages[idx].tags["StripByteCounts"].offset
    data = bytearray(p.read_bytes())
    tag, typ, n, v = struct.unpack_from("<HHII", data, entry)
    assert tag == 279 and typ in (3, 4)
    struct.pack_into("<HHII", data, entry, 279, 13, n, v)
    p.write_bytes(bytes(data))
    before = p.read_bytes()
    code, _out, err = cli("run", p, "--in-place", "--label", "blank", "--mapping", tmp_path / "map.csv")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1, err
    assert "internal error" not in lines[0] and f"label IFD {idx}" in lines[0] and "field type 13" in lines[0], lines
    assert p.read_bytes() == before
