"""Hamamatsu NDPI: fixture faithfulness and the native redactor (plan level)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import openslide
import pytest
import tifffile

from tests.fixtures.helpers import data_extents, scan_files, scan_sparse, sparse_copy, tree_digest
from tests.fixtures.ndpi_gen import FOUR_GIB, corrupt_ifd_offset, make_ndpi_info, sparse_supported
from wsianon.converters.base import SlideContext
from wsianon.converters.ndpi import NdpiConverter
from wsianon.errors import CorruptInput
from wsianon.io.plan import apply_copy, apply_in_place
from wsianon.profiles.policy import Policy

KEY = b"k" * 32


def ctx(**policy) -> SlideContext:
    return SlideContext("PSEUDO01", KEY, Policy(**policy))


def strips_by_lens(path: Path) -> dict[str, list[bytes]]:
    """Raw strip bytes per IFD, read with tifffile (independent of wsianon's TIFF layer)."""
    out: dict[str, list[bytes]] = {"level": [], "macro": [], "map": []}
    with tifffile.TiffFile(path, is_ndpi=True) as tf, open(path, "rb") as fh:
        for page in tf.pages:
            lens = page.tags[65421].value
            kind = "level" if lens > 0 else "macro" if lens == -1 else "map" if lens == -2 else "other"
            fh.seek(page.dataoffsets[0])
            out.setdefault(kind, []).append(fh.read(page.databytecounts[0]))
    return out


def redact(src: Path, outdir: Path, **policy) -> tuple[Path, object]:
    conv = NdpiConverter()
    inv = conv.inspect(src)
    plan = conv.plan(inv, ctx(**policy))
    outdir.mkdir(parents=True, exist_ok=True)
    dest = outdir / plan.files[0].dest
    apply_copy(plan.files[0], dest)
    return dest, plan


@pytest.fixture
def ndpi(tmp_path):
    return make_ndpi_info(tmp_path / "in" / "CASE-4711.ndpi")


# -- fixture faithfulness ------------------------------------------------------------


def test_fixture_opens_as_hamamatsu(ndpi):
    p = str(ndpi.path)
    assert openslide.OpenSlide.detect_format(p) == "hamamatsu"
    with openslide.OpenSlide(p) as s:
        assert "macro" in s.associated_images
        assert s.associated_images["macro"].size == (320, 112)
        assert s.properties["hamamatsu.Reference"] == ndpi.canaries["Reference"]
        assert s.properties["hamamatsu.NDP.S/N"] == ndpi.canaries["PropertyMap:NDP.S/N"]
        assert s.properties["hamamatsu.SourceLens"] == "20"
        assert s.level_dimensions[:3] == tuple(ndpi.level_dims)
        for lv in range(s.level_count):
            w, h = s.level_dimensions[lv]
            region = s.read_region((0, 0), lv, (w, h)).convert("RGB")
            lo, hi = region.getextrema()[1]
            assert hi - lo > 20, f"level {lv} decoded flat"
    with tifffile.TiffFile(p) as tf:
        assert tf.is_ndpi
        assert len(tf.pages) == 5
        assert tf.pages[0].tags[65427].value == ndpi.canaries["Reference"]
        assert tf.pages[0].asarray().shape == (384, 512, 3)


def test_every_ifd_carries_reference_and_restart_markers(ndpi):
    with tifffile.TiffFile(ndpi.path) as tf:
        for page in tf.pages:
            assert page.tags[65427].value == ndpi.canaries["Reference"]
            if page.tags[65421].value > 0:
                assert 65426 in page.tags  # MCU starts
                assert page.is_ndpi


# -- redaction -----------------------------------------------------------------------


def test_redact_removes_macro_map_and_text(ndpi, tmp_path):
    before = tree_digest(ndpi.path.parent)
    src_strips = strips_by_lens(ndpi.path)
    dest, plan = redact(ndpi.path, tmp_path / "out")
    assert dest.name == "PSEUDO01.ndpi"
    assert tree_digest(ndpi.path.parent) == before, "input modified"

    assert openslide.OpenSlide.detect_format(str(dest)) == "hamamatsu"
    with openslide.OpenSlide(str(dest)) as s, openslide.OpenSlide(str(ndpi.path)) as s0:
        assert s.level_dimensions == s0.level_dimensions
        assert list(s.associated_images) == []
        assert s.properties.get("hamamatsu.Reference", "") == ""
        assert "hamamatsu.NDP.S/N" not in s.properties
        assert s.properties["hamamatsu.Objective.Lens.Magnificant"] == "20"  # safe key kept
        assert s.properties["hamamatsu.XOffsetFromSlideCentre"] == "0"
        s.read_region((0, 0), 0, (64, 64))

    assert scan_files([dest], ndpi.canaries) == []
    out_strips = strips_by_lens(dest)
    assert out_strips["level"] == src_strips["level"], "pyramid strips changed"
    assert out_strips["macro"] == [] and out_strips["map"] == []
    # the macro's and map's pixel bytes are destroyed, not only unlinked
    raw = dest.read_bytes()
    for off in ndpi.strip_offsets[3:]:
        assert raw[off : off + 64] == b"\0" * 64
    with tifffile.TiffFile(dest) as tf:
        assert tf.is_ndpi  # Make is blanked, not removed
        assert len(tf.pages) == 3

    text = json.dumps(plan.describe())
    for value in ndpi.canaries.values():
        assert value not in text
    names = {r.name for r in plan.removals}
    assert {"tag 65427 Reference", "tag 65442 ScannerSerialNumber", "tag 65468 Barcode", "tag 306 DateTime"} <= names
    assert "tag 65449 PropertyMap:Operator" in names
    assert ("image", "macro") in {(r.kind, r.name) for r in plan.removals}


def test_macro_keep_keeps_only_the_macro(ndpi, tmp_path):
    dest, plan = redact(ndpi.path, tmp_path / "out", macro="keep")
    with openslide.OpenSlide(str(dest)) as s:
        assert list(s.associated_images) == ["macro"]
        assert s.properties.get("hamamatsu.Reference", "") == ""
    strips = strips_by_lens(dest)
    assert len(strips["macro"]) == 1 and strips["map"] == []
    assert strips["macro"][0] == strips_by_lens(ndpi.path)["macro"][0]


def test_dates_year_and_keep(ndpi, tmp_path):
    dest, _ = redact(ndpi.path, tmp_path / "y", dates="year")
    with tifffile.TiffFile(dest) as tf:
        assert tf.pages[0].tags[306].value == "2019:01:01 00:00:00"
    with openslide.OpenSlide(str(dest)) as s:
        assert s.properties["hamamatsu.Created"] == "2019"
    dest, _ = redact(ndpi.path, tmp_path / "k", dates="keep")
    with tifffile.TiffFile(dest) as tf:
        assert tf.pages[0].tags[306].value == ndpi.canaries["DateTime"]


def test_inventory_lists_fields_and_images(ndpi):
    inv = NdpiConverter().inspect(ndpi.path)
    assert inv.levels == 3
    kinds = {(i.kind, i.action) for i in inv.images}
    assert kinds == {("macro", "remove"), ("map", "remove")}
    canary_values = {c.value for c in inv.canaries()}
    assert set(ndpi.canaries.values()) <= canary_values
    public = json.dumps(inv.public())
    for value in ndpi.canaries.values():
        assert value not in public


def test_sniff(ndpi, tmp_path):
    conv = NdpiConverter()
    assert conv.sniff(ndpi.path, ndpi.path.read_bytes()[:65536])
    plain = tmp_path / "plain.tif"
    import numpy as np

    tifffile.imwrite(plain, np.zeros((8, 8), "uint8"))
    assert not conv.sniff(plain, plain.read_bytes()[:65536])


# -- corrupt input ---------------------------------------------------------------------


def test_broken_ifd_offset_is_corrupt_input(ndpi, tmp_path):
    bad = corrupt_ifd_offset(ndpi.path, tmp_path / "bad.ndpi")
    with pytest.raises(CorruptInput) as ei:
        NdpiConverter().inspect(bad)
    assert "IFD" in ei.value.reason


def test_truncated_is_corrupt_input(ndpi, tmp_path):
    data = ndpi.path.read_bytes()
    cut = tmp_path / "cut.ndpi"
    # keep the header and the IFDs region away: cut inside the first strip
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptInput):
        conv = NdpiConverter()
        conv.plan(conv.inspect(cut), ctx())


# -- > 4 GiB ---------------------------------------------------------------------------


@pytest.mark.slow  # cheap (sparse, ~1 s) but writes a 4 GiB apparent-size file: keep it in CI
def test_beyond_4gib_sparse(tmp_path):
    if not sparse_supported(tmp_path):
        pytest.skip(f"file system of {tmp_path} does not support sparse files")
    info = make_ndpi_info(tmp_path / "in" / "BIG.ndpi", big=True)
    src = info.path
    assert os.path.getsize(src) > FOUR_GIB
    assert os.stat(src).st_blocks * 512 < 16 << 20
    # the macro, the map, and every IFD (hence every tag) sit beyond 4 GiB
    assert all(o > FOUR_GIB for o in info.ifd_offsets)
    assert all(o > FOUR_GIB for o in info.strip_offsets[1:])
    with open(src, "rb") as fh:
        (hi,) = struct.unpack("<I", fh.read(12)[8:12])
    assert hi == 1  # the header's first-IFD offset needs its high half
    assert openslide.OpenSlide.detect_format(str(src)) == "hamamatsu"
    with openslide.OpenSlide(str(src)) as s:
        assert "macro" in s.associated_images
        assert s.properties["hamamatsu.Reference"] == info.canaries["Reference"]
        src_dims = s.level_dimensions
        for lv in range(s.level_count):
            s.read_region((0, 0), lv, (8, 8))

    conv = NdpiConverter()
    inv = conv.inspect(src)
    assert inv.levels == 3 and {i.kind for i in inv.images} == {"macro", "map"}
    plan = conv.plan(inv, ctx())
    fp = plan.files[0]
    assert any(p.offset > FOUR_GIB for p in fp.patches)
    # apply into a sparse copy in place (what --in-place does), so the test stays cheap
    out = tmp_path / "out" / fp.dest
    out.parent.mkdir()
    sparse_copy(src, out)
    apply_in_place(fp, out)
    assert os.stat(out).st_blocks * 512 < 16 << 20

    assert openslide.OpenSlide.detect_format(str(out)) == "hamamatsu"
    with openslide.OpenSlide(str(out)) as s:
        assert s.level_dimensions == src_dims
        assert list(s.associated_images) == []
        assert s.properties.get("hamamatsu.Reference", "") == ""
        for lv in range(s.level_count):
            s.read_region((0, 0), lv, (8, 8))
    assert scan_sparse(out, info.canaries) == []
    assert strips_by_lens(out)["level"] == strips_by_lens(src)["level"]
    with open(out, "rb") as fh:
        fh.seek(info.strip_offsets[3])
        assert fh.read(256) == b"\0" * 256  # macro pixels beyond 4 GiB destroyed
    assert data_extents(src)  # source untouched and still sparse
    with openslide.OpenSlide(str(src)) as s:
        assert "macro" in s.associated_images


# -- end to end through the CLI -----------------------------------------------------------------


def test_cli_end_to_end(tmp_path, cli):
    from tests.fixtures.native_helpers import cli_run_ok

    a = make_ndpi_info(tmp_path / "in" / "CASE-NDPI-0001.ndpi")
    b = make_ndpi_info(tmp_path / "in" / "CASE-NDPI-0002.ndpi", with_map=False, levels=2)
    before = tree_digest(tmp_path / "in")
    out = tmp_path / "out"
    report = cli_run_ok(cli, [a.path, b.path], out)
    assert [s["format"] for s in report["slides"]] == ["ndpi", "ndpi"]
    assert tree_digest(tmp_path / "in") == before
    outs = sorted(out.glob("*.ndpi"))
    assert len(outs) == 2
    canaries = dict(a.canaries) | {"stem a": a.path.stem, "stem b": b.path.stem}
    assert scan_files(outs + [out / "wsianon-report.json"], canaries) == []
    src_levels = {len(strips_by_lens(a.path)["level"]), len(strips_by_lens(b.path)["level"])}
    for o in outs:
        assert openslide.OpenSlide.detect_format(str(o)) == "hamamatsu"
        with openslide.OpenSlide(str(o)) as s:
            assert list(s.associated_images) == []
        st = strips_by_lens(o)
        assert st["macro"] == [] and st["map"] == []
        assert len(st["level"]) in src_levels
    checks = {c["check"]: c["ok"] for s in report["slides"] for c in s["verification"]["checks"]}
    assert checks["tiles-identical"] and checks["canary-scan"]


def test_cli_corrupt_ndpi(tmp_path):
    from tests.fixtures.native_helpers import TRUNCATED, cli_run_corrupt

    info = make_ndpi_info(tmp_path / "in" / "GOOD-1.ndpi")
    bad = corrupt_ifd_offset(info.path, tmp_path / "BROKEN-1.ndpi")
    cli_run_corrupt([bad], tmp_path / "o1", TRUNCATED)
    data = info.path.read_bytes()
    cut = tmp_path / "CUT-1.ndpi"
    cut.write_bytes(data[: len(data) // 3])
    cli_run_corrupt([cut], tmp_path / "o2", TRUNCATED)


def test_cli_dicom_target(tmp_path, cli):
    """NDPI through the DICOM route: verified clean and placed (frames re-tiled losslessly and
    proven by decoded samples), nothing identifying in any output byte, input unchanged."""
    info = make_ndpi_info(tmp_path / "in" / "CASE-NDPI-D1.ndpi")
    before = tree_digest(tmp_path / "in")
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "dicom", str(info.path), "-o", str(out))
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert code == 0 and slide["status"] == "ok", stdout + stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert [f for f in files if f.suffix == ".dcm"]
    canaries = dict(info.canaries) | {"stem": info.path.stem}
    assert scan_files(files, canaries) == []
    assert tree_digest(tmp_path / "in") == before


def test_beyond_4gib_through_the_cli(tmp_path, cli):
    """The whole job (copy mode, verification included) on a > 4 GiB sparse NDPI whose
    IFDs, tags and macro sit beyond 4 GiB: holes stay holes, nothing is left."""
    if not sparse_supported(tmp_path):
        pytest.skip(f"file system of {tmp_path} does not support sparse files")
    info = make_ndpi_info(tmp_path / "in" / "BIG-4711.ndpi", big=True)
    code, out, err = cli("run", info.path, "-o", tmp_path / "out")
    assert code == 0, out + err
    outs = [p for p in (tmp_path / "out").iterdir() if p.suffix == ".ndpi"]
    assert len(outs) == 1
    o = outs[0]
    assert os.path.getsize(o) == os.path.getsize(info.path) > FOUR_GIB
    assert os.stat(o).st_blocks * 512 < 64 << 20  # the copy stayed sparse
    with openslide.OpenSlide(str(o)) as s:
        assert "macro" not in s.associated_images
        assert s.properties.get("hamamatsu.Reference", "") == ""
    from wsianon.io.scan import Canary, Scanner

    hits = Scanner([Canary(k, v) for k, v in info.canaries.items()]).scan_file(o)
    assert hits == []
    report = json.loads((tmp_path / "out" / "wsianon-report.json").read_text())
    checks = {c["check"]: c["ok"] for c in report["slides"][0]["verification"]["checks"]}
    assert checks["tiles-identical"] and checks["canary-scan"]
