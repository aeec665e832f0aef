"""Two tags whose values claim the same bytes (a damaged count): the redactor plans a patch for
each, and they disagree.  Found by the fuzz campaign (``WSIANON_FUZZ_SEED=2026``, ndpi #45: bit
flips in an IFD gave Make a count reaching into DateTime's value): it ended as an internal error.
It must be a one-line refusal naming the file, with nothing written."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import tifffile

from tests.conftest import run_subprocess
from tests.fixtures.ndpi_gen import make_ndpi
from wsianon.errors import CorruptInput
from wsianon.io.plan import FilePlan, Patch


def _stretch_make_over_datetime(path: Path) -> None:
    """Give the first IFD's Make a count that reaches into DateTime's value (both out of line)."""
    with tifffile.TiffFile(path) as tf:
        tags = tf.pages.first.tags
        make, dt = tags["Make"], tags["DateTime"]
        assert make.valueoffset < dt.valueoffset, "the fixture writes Make's value before DateTime's"
        count_at = make.offset + 4  # NDPI entries: tag, type (2 bytes each), count (4)
        new_count = dt.valueoffset - make.valueoffset + 4
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, count_at, new_count)
    path.write_bytes(bytes(data))


def test_overlapping_tag_values_are_refused_in_one_line(tmp_path):
    src = tmp_path / "in" / "case.ndpi"
    src.parent.mkdir()
    make_ndpi(src, levels=2, width=256, height=192)
    _stretch_make_over_datetime(src)
    before = src.read_bytes()
    assert run_subprocess("key", "init", tmp_path / "k").returncode == 0
    r = run_subprocess("run", src.parent, "-o", tmp_path / "out", "--key-file", tmp_path / "k")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1, r.stderr
    assert len(errors) == 1 and str(src) in errors[0] and "claim the same bytes" in errors[0], r.stderr
    assert "internal error" not in r.stderr
    assert src.read_bytes() == before
    assert not list((tmp_path / "out").glob("*.ndpi"))


def test_disagreeing_patches_raise_corrupt_input_naming_the_source(tmp_path):
    fp = FilePlan(dest=tmp_path / "o.tif", source=tmp_path / "s.tif")
    fp.patches += [Patch(10, 8, b"A" * 8, "tag a blanked"), Patch(14, 8, b"B" * 8, "tag b blanked")]
    with pytest.raises(CorruptInput) as e:
        fp.sorted_patches()
    assert e.value.path == tmp_path / "s.tif" and "tag a blanked" in e.value.reason
    # the same bytes planned twice, and overlapping zero fills, are no conflict
    fp.patches = [Patch(10, 8, b"A" * 8, "a"), Patch(10, 8, b"A" * 8, "a again"), Patch(30, 8, None, "z"), Patch(34, 8, None, "z2")]
    assert len(fp.sorted_patches()) == 3
