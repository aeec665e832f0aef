"""Roche/Ventana BIF: fixture faithfulness and the native redactor (plan-level, applied with apply_copy)."""

from __future__ import annotations

import json

import openslide
import pytest
import tifffile

from tests.fixtures.bif_gen import CANARIES, make_bif
from tests.fixtures.native_helpers import (
    file_hash,
    openslide_summary,
    read_all_levels,
    run_native,
    scan_for,
    tiled_page_hashes,
)
from wsianon.converters.ventana import VentanaConverter
from wsianon.errors import CorruptInput
from wsianon.io.tiff import TiffStructure
from wsianon.profiles.policy import Policy

VARIANTS = {
    "default": {},
    "label-space-single-quotes-metadata-root": dict(label_description="Label Image", quote="'", xmp_root="Metadata"),
    "no-thumbnail": dict(thumbnail=False),
    "no-encodeinfo": dict(encode_info=False),
}

TEXT_CANARIES = {k: v for k, v in CANARIES.items() if k != "LabelText"}


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def bif(request, tmp_path):
    return make_bif(tmp_path / "CASE-BIF-0001.bif", **VARIANTS[request.param]), request.param


def test_fixture_is_faithful(bif):
    fx, variant = bif
    assert openslide.OpenSlide.detect_format(str(fx.path)) == "ventana"
    s = openslide_summary(fx.path)
    want = ["macro", "thumbnail"] if variant != "no-thumbnail" else ["macro"]
    assert s["associated"] == want
    assert s["levels"] == tuple(fx.level_dims)
    assert s["properties"]["ventana.BaseName"] == CANARIES["BaseName"]
    assert s["properties"]["ventana.Barcode1D"] == CANARIES["Barcode1D"]
    assert float(s["properties"]["openslide.mpp-x"]) == pytest.approx(0.2325)
    assert read_all_levels(fx.path) == fx.level_dims
    with tifffile.TiffFile(fx.path) as tf:
        assert tf.is_bif
        assert tf.pages[0].description in ("Label_Image", "Label Image")
    # every text canary is really in the source, so the scans below mean something
    assert scan_for(fx.path, TEXT_CANARIES) == sorted(TEXT_CANARIES)


def test_redacted_bif(bif, tmp_path):
    fx, variant = bif
    before = file_hash(fx.path)
    conv = VentanaConverter()
    assert conv.sniff(fx.path, fx.path.read_bytes()[:65536])
    inv, plan, out = run_native(conv, fx.path, tmp_path / "out")
    assert file_hash(fx.path) == before, "input modified"
    assert out.name == "anon0001.bif"

    # OpenSlide still reads it as Ventana, same pyramid, label/macro gone
    assert openslide.OpenSlide.detect_format(str(out)) == "ventana"
    s = openslide_summary(out)
    assert s["levels"] == tuple(fx.level_dims)
    assert "macro" not in s["associated"] and "label" not in s["associated"]
    assert s["associated"] == ([] if variant == "no-thumbnail" else ["thumbnail"])
    assert s["properties"]["ventana.Magnification"] == "40"
    assert float(s["properties"]["openslide.mpp-x"]) == pytest.approx(0.2325)
    for k in ("BaseName", "JP2FileName", "UnitNumber", "UserName", "BuildDate", "Barcode1D", "Barcode2D"):
        assert f"ventana.{k}" not in s["properties"]
    assert read_all_levels(out) == fx.level_dims

    # no canary in any byte (text, UTF-16, base64)
    assert scan_for(out, TEXT_CANARIES) == []
    # pyramid tiles byte-identical
    assert tiled_page_hashes(out) == tiled_page_hashes(fx.path)
    with tifffile.TiffFile(out) as tf:
        assert tf.is_bif
        descs = [p.description for p in tf.pages]
        assert "Label_Image" not in descs and "Label Image" not in descs

    # label pixels destroyed where they were
    with TiffStructure(fx.path) as ts:
        spans = ts.data_spans(ts.ifds[fx.label_ifd])
    data = out.read_bytes()
    assert spans and all(data[o : o + n] == bytes(n) for o, n in spans)

    # the plan/inventory report names, never values
    assert any(r.kind == "image" and r.name == "label" for r in plan.removals)
    names = {f.name for f in inv.fields}
    assert any(n.endswith("iScan:BaseName") for n in names)
    assert any("SlideAnnotation" in n for n in names)
    assert "tag 306 DateTime" in names
    dumped = json.dumps(plan.describe()) + json.dumps(inv.public())
    for v in TEXT_CANARIES.values():
        assert v not in dumped


def test_dates_year_keeps_only_year(tmp_path):
    fx = make_bif(tmp_path / "s.bif")
    _, _, out = run_native(VentanaConverter(), fx.path, tmp_path / "out", Policy(dates="year"))
    with tifffile.TiffFile(out) as tf:
        dts = {p.tags[306].value for p in tf.pages if 306 in p.tags}
    assert dts == {"2019:01:01 00:00:00"}
    assert scan_for(out, {"DateTime": CANARIES["DateTime"]}) == []


def test_label_blank_policy_still_removes_label(tmp_path):
    fx = make_bif(tmp_path / "s.bif")
    _, plan, out = run_native(VentanaConverter(), fx.path, tmp_path / "out", Policy(label="blank"))
    assert "macro" not in openslide_summary(out)["associated"]
    assert any("label" in n.lower() for n in plan.notes)


def test_truncated_bif_is_corrupt(tmp_path):
    fx = make_bif(tmp_path / "s.bif")
    data = fx.path.read_bytes()
    bad = tmp_path / "trunc.bif"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptInput):
        VentanaConverter().inspect(bad)


def test_malformed_xmp_is_corrupt(tmp_path):
    fx = make_bif(tmp_path / "s.bif")
    data = bytearray(fx.path.read_bytes())
    i = data.index(b"<iScan")
    data[i + 1 : i + 6] = b"!!!!!"  # breaks the element
    bad = tmp_path / "badxml.bif"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptInput):
        VentanaConverter().inspect(bad)


def test_sniff_rejects_other_tiffs(tmp_path):
    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, b"\0" * 64 * 64 and __import__("numpy").zeros((64, 64), "uint8"))
    assert not VentanaConverter().sniff(p, p.read_bytes()[:65536])


# -- end to end through the CLI (detection by content, pipeline verification) ---------------


def test_cli_end_to_end(tmp_path, cli):
    from tests.fixtures.native_helpers import cli_run_ok

    (tmp_path / "in").mkdir()
    a = make_bif(tmp_path / "in" / "CASE-BIF-A.bif")
    b = make_bif(tmp_path / "in" / "CASE-BIF-B.tif", thumbnail=False, label_description="Label Image", quote="'")
    before = {fx.path: file_hash(fx.path) for fx in (a, b)}
    out = tmp_path / "out"
    report = cli_run_ok(cli, [a.path, b.path], out)
    assert sorted(s["format"] for s in report["slides"]) == ["ventana", "ventana"]
    outs = sorted(p for p in out.iterdir() if p.suffix == ".bif")
    assert len(outs) == 2 and not any("CASE" in p.name for p in outs)
    for o in outs:
        assert openslide.OpenSlide.detect_format(str(o)) == "ventana"
        assert scan_for(o, TEXT_CANARIES) == []
        assert scan_for(o, ["CASE-BIF-A", "CASE-BIF-B"]) == []
    for path, h in before.items():
        assert file_hash(path) == h


def test_cli_corrupt_bif(tmp_path):
    from tests.fixtures.native_helpers import TRUNCATED, cli_run_corrupt

    fx = make_bif(tmp_path / "s.bif")
    data = fx.path.read_bytes()
    trunc = tmp_path / "trunc.bif"
    trunc.write_bytes(data[: len(data) // 2])
    bad = bytearray(data)
    i = bad.index(b"<iScan")
    bad[i + 1 : i + 6] = b"!!!!!"
    badxml = tmp_path / "badxml.bif"
    badxml.write_bytes(bytes(bad))
    cli_run_corrupt([trunc], tmp_path / "o1", TRUNCATED)
    cli_run_corrupt([badxml], tmp_path / "o2", "xml")
