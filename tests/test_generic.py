"""Any other TIFF: refused with a message naming the format, or anonymized fail-closed with --allow-generic."""

from __future__ import annotations

import pytest
import tifffile

from tests.fixtures.generic_gen import _img
from tests.fixtures.native_helpers import file_hash, run_native, scan_for, tiled_page_hashes
from wsianon.converters.generic import GenericTiffConverter
from wsianon.errors import UnsupportedFormat

CAN = {
    "desc": "GENDESCCANARY1",
    "artist": "GENARTIST2X",
    "ome_name": "GENOMENAME3Y",
    "qp_slide": "GENSLIDEID4Z",
    "label_text": "GENLABELDESC5",
    "DateTime": "2019:07:14 11:22:33",
}


def make_plain(path):
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            _img(512, 512),
            tile=(256, 256),
            compression="jpeg",
            photometric="rgb",
            description=f"slide {CAN['desc']}",
            metadata=None,
            datetime=CAN["DateTime"],
            extratags=[(315, "s", 0, CAN["artist"], True)],
        )
        tw.write(_img(256, 256, 1), tile=(256, 256), compression="jpeg", photometric="rgb", subfiletype=1, metadata=None)
        tw.write(_img(80, 120, 2), compression="jpeg", photometric="rgb", description=f"label {CAN['label_text']}", metadata=None)
        tw.write(_img(80, 240, 3), compression="jpeg", photometric="rgb", description="macro 240x80", metadata=None)
    return path


def make_ome(path):
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(_img(512, 512), tile=(256, 256), compression="jpeg", photometric="rgb", metadata={"Name": CAN["ome_name"]})
        tw.write(_img(80, 120, 2), compression="jpeg", photometric="rgb", metadata={"Name": "label"})
    return path


def make_qptiff(path):
    def d(t):
        return (
            f'<?xml version="1.0" encoding="utf-8"?><PerkinElmer-QPI-ImageDescription><DescriptionVersion>2</DescriptionVersion>'
            f"<ImageType>{t}</ImageType><SlideID>{CAN['qp_slide']}</SlideID></PerkinElmer-QPI-ImageDescription>"
        )

    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(_img(512, 512), tile=(256, 256), compression="jpeg", photometric="rgb", description=d("FullResolution"), metadata=None)
        tw.write(_img(256, 256, 1), tile=(256, 256), compression="jpeg", photometric="rgb", description=d("ReducedResolution"), subfiletype=1, metadata=None)
        tw.write(_img(100, 100, 4), compression="jpeg", photometric="rgb", description=d("Overview"), metadata=None)
        tw.write(_img(60, 60, 5), compression="jpeg", photometric="rgb", description=d("Label"), metadata=None)
    return path


MAKERS = {"plain": (make_plain, "generic TIFF", 2), "ome": (make_ome, "OME-TIFF", 1), "qptiff": (make_qptiff, "Akoya QPTIFF", 2)}


@pytest.mark.parametrize("kind", list(MAKERS))
def test_describe_names_the_format(kind, tmp_path):
    make, name, _ = MAKERS[kind]
    p = make(tmp_path / "x.tif")
    assert GenericTiffConverter().describe(p) == name


@pytest.mark.parametrize("kind", list(MAKERS))
def test_generic_fail_closed(kind, tmp_path):
    make, name, kept_pages = MAKERS[kind]
    src = make(tmp_path / "CASE-GEN-1.tif")
    before = file_hash(src)
    present = {k: v for k, v in CAN.items() if scan_for(src, {k: v})}
    assert present, "fixture must carry canaries"
    inv, plan, out = run_native(GenericTiffConverter(), src, tmp_path / "out")
    assert file_hash(src) == before
    assert scan_for(out, present) == []
    assert scan_for(out, [c.value for c in inv.canaries()]) == []
    with tifffile.TiffFile(out) as tf:
        assert len(tf.pages) == kept_pages
        for p in tf.pages:
            assert not (p.description or "").strip()
    assert tiled_page_hashes(out) == tiled_page_hashes(src)
    assert any(r.kind == "image" for r in plan.removals)
    assert any(name in n for n in plan.notes)


def test_macro_keep_keeps_macro_but_not_label(tmp_path):
    from wsianon.profiles.policy import Policy

    src = make_plain(tmp_path / "a.tif")
    _, plan, out = run_native(GenericTiffConverter(), src, tmp_path / "out", Policy(macro="keep"))
    with tifffile.TiffFile(out) as tf:
        assert len(tf.pages) == 3
    assert sorted(r.name for r in plan.removals if r.kind == "image") == ["label"]


def test_refused_without_allow_generic(tmp_path):
    from wsianon.pipeline.detect import detect_file

    p = make_ome(tmp_path / "x.ome.tif")
    with pytest.raises(UnsupportedFormat, match="OME-TIFF"):
        detect_file(p, allow_generic=False)
    fmt, conv = detect_file(p, allow_generic=True)
    assert isinstance(conv, GenericTiffConverter)


def test_subifds_refused(tmp_path):
    p = tmp_path / "sub.ome.tif"
    with tifffile.TiffWriter(p, ome=True) as tw:
        tw.write(_img(512, 512), tile=(256, 256), subifds=1, photometric="rgb", metadata={"Name": "x"})
        tw.write(_img(256, 256), tile=(256, 256), subfiletype=1, photometric="rgb")
    with pytest.raises(UnsupportedFormat, match="SubIFDs"):
        GenericTiffConverter().inspect(p)


# -- end to end through the CLI -----------------------------------------------------------


def test_cli_refuses_then_allows_generic(tmp_path, cli):
    import json

    from tests.conftest import run_subprocess

    src = make_ome(tmp_path / "CASE-OME-1.ome.tif")
    before = file_hash(src)
    out = tmp_path / "out"
    res = run_subprocess("run", "--target", "native", str(src), "-o", str(out))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    lines = [l for l in res.stderr.splitlines() if str(src) in l]
    assert len(lines) == 1 and "OME-TIFF" in lines[0] and "--allow-generic" in lines[0]
    from wsianon.pipeline.record import RECORD_FILES

    assert not [p for p in out.rglob("*") if p.is_file() and p.name not in RECORD_FILES] if out.exists() else True

    out2 = tmp_path / "out2"
    code, stdout, stderr = cli("run", "--target", "native", str(src), "-o", str(out2), "--allow-generic")
    report = json.loads((out2 / "wsianon-report.json").read_text())
    (slide,) = report["slides"]
    assert slide["format"] == "generic-tiff"
    assert any("generic" in n for n in slide["notes"]), slide["notes"]
    outs = [p for p in out2.iterdir() if p.suffix == ".tif"]
    assert code == 0 and slide["status"] == "ok", (slide["status"], slide["verification"], slide["error"])
    assert len(outs) == 1 and scan_for(outs[0], {"ome_name": CAN["ome_name"]}) == []
    assert file_hash(src) == before
