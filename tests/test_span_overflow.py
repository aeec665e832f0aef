"""A strip or tile offset near 2^64 (BigTIFF LONG8): the array check added offset and byte count
in uint64, the sum wrapped around to a small number and passed, and the copy's ``pread`` at that
offset ended the slide as "I/O error: Invalid argument" (found by the fuzz campaign,
``WSIANON_FUZZ_SEED=101``, bif #22).  A damaged file is a one-line refusal naming the reason."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import tifffile

from tests.fixtures.bif_gen import make_bif
from wsianon.errors import CorruptInput
from wsianon.io.tiff import TILE_OFFSETS, TiffStructure


def _wrap_a_tile_offset(path: Path, offset: int) -> int:
    """Set the last IFD's single tile offset (stored inline, LONG8) to ``offset``; its index."""
    with tifffile.TiffFile(path) as tf:
        assert tf.is_bigtiff
        page = [p for p in tf.pages if p.is_tiled and len(p.dataoffsets) == 1][-1]
        tag = page.tags[TILE_OFFSETS]
        at, index = tag.valueoffset, page.index
        assert at == tag.offset + 12, "one LONG8 offset is stored inline in a BigTIFF entry"
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, at, offset)
    path.write_bytes(bytes(data))
    return index


@pytest.mark.parametrize("offset", [2**64 - 16, 2**63 + 5, 2**40])
def test_offset_plus_count_past_the_file_is_refused(tmp_path, offset):
    src = make_bif(tmp_path / "case.bif").path
    index = _wrap_a_tile_offset(src, offset)
    with TiffStructure(src) as ts:
        ifd = ts.ifds[index]
        with pytest.raises(CorruptInput, match="beyond the end of the file"):
            ts.data_span_arrays(ifd)
        with pytest.raises(CorruptInput, match="beyond the end of the file"):
            ts.data_spans(ifd)


def test_the_run_names_the_damage_not_an_io_error(tmp_path, cli):
    (tmp_path / "in").mkdir()
    src = make_bif(tmp_path / "in" / "case.bif").path
    _wrap_a_tile_offset(src, 2**64 - 16)
    out = tmp_path / "out"
    code, _, stderr = cli("run", str(src), "-o", str(out))
    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(src) in errors[0], stderr
    assert "beyond the end of the file" in errors[0] and "I/O error" not in errors[0], errors
    slide = json.loads((out / "wsianon-report.json").read_text())["slides"][0]
    assert slide["status"] == "error" and not list(out.glob("*.bif")), slide
