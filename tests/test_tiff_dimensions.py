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
