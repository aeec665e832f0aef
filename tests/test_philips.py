"""Philips TIFF: fixture faithfulness and the native redactor (plan-level, applied with apply_copy)."""

from __future__ import annotations

import json

import numpy as np
import openslide
import pytest
import tifffile

from tests.fixtures.native_helpers import (
    file_hash,
    openslide_summary,
    raw_contains,
    read_all_levels,
    run_native,
    scan_for,
    tiled_page_hashes,
)
from tests.fixtures.philips_gen import make_philips
from wsianon.converters.philips import PhilipsConverter
from wsianon.errors import CorruptInput
from wsianon.io.tiff import IMAGE_DESCRIPTION, TiffStructure
from wsianon.profiles.policy import Policy

VARIANTS = {
    "xml-order-a": dict(order="a"),
    "xml-order-b": dict(order="b"),
    "ifd-images-bigtiff": dict(images_in="ifd", bigtiff=True),
    "ifd-images-order-b": dict(images_in="ifd", order="b"),
}


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def philips(request, tmp_path):
    return make_philips(tmp_path / "CASE-PH-0001.tiff", **VARIANTS[request.param])


def test_fixture_is_faithful(philips):
    fx = philips
    assert openslide.OpenSlide.detect_format(str(fx.path)) == "philips"
    s = openslide_summary(fx.path)
    assert s["associated"] == ["label", "macro"]
    assert s["levels"] == tuple(fx.level_dims)
    assert s["properties"]["philips.DICOM_DEVICE_SERIAL_NUMBER"] == fx.canaries["DICOM_DEVICE_SERIAL_NUMBER"]
    assert s["properties"]["openslide.objective-power"] == "40"
    assert float(s["properties"]["openslide.mpp-x"]) == pytest.approx(0.25)
    assert read_all_levels(fx.path) == fx.level_dims
    with tifffile.TiffFile(fx.path) as tf:
        assert tf.is_philips
    assert scan_for(fx.path, fx.text_canaries()) == sorted(fx.text_canaries())


def test_redacted_philips(philips, tmp_path):
    fx = philips
    before = file_hash(fx.path)
    conv = PhilipsConverter()
    assert conv.sniff(fx.path, fx.path.read_bytes()[:65536])
    inv, plan, out = run_native(conv, fx.path, tmp_path / "out")
    assert file_hash(fx.path) == before
    assert out.suffix == ".tiff"

    assert openslide.OpenSlide.detect_format(str(out)) == "philips"
    s = openslide_summary(out)
    assert s["associated"] == []
    assert s["levels"] == tuple(fx.level_dims)
    assert s["properties"]["openslide.objective-power"] == "40"
    assert float(s["properties"]["openslide.mpp-x"]) == pytest.approx(0.25)
    assert s["properties"]["philips.DICOM_DEVICE_SERIAL_NUMBER"] == ""
    assert s["properties"]["philips.DICOM_STUDY_INSTANCE_UID"].startswith("2.25.")
    assert read_all_levels(out) == fx.level_dims
    with tifffile.TiffFile(out) as tf:
        assert tf.is_philips
        assert tf.pages[0].software == "Philips DP v1.0"
        assert tf.pages[0].description.rstrip().endswith("</DataObject>")
        assert [p.description for p in tf.pages if p.description in ("Label", "Macro")] == []

    # no canary, no decoded barcode, no base64 of either, anywhere
    assert scan_for(out, fx.text_canaries()) == []
    assert scan_for(out, [c.value for c in inv.canaries()]) == []
    # no stale bytes of the old XML: any stretch of the embedded JPEGs' base64 is gone
    for b64 in (fx.label_b64, fx.macro_b64):
        for start in range(0, len(b64) - 32, max(1, len(b64) // 7)):
            assert not raw_contains(out, b64[start : start + 32].encode())
    with TiffStructure(fx.path) as ts:
        e = ts.ifds[0].entries[IMAGE_DESCRIPTION]
        old_start, old_len = e.value_offset, e.size
        label_spans = [sp for i in fx.label_ifds for sp in ts.data_spans(ts.ifds[i])]
    with TiffStructure(out) as ts2:
        e2 = ts2.ifds[0].entries[IMAGE_DESCRIPTION]
        data = out.read_bytes()
        if e2.value_offset == old_start:
            tail = data[old_start + e2.size : old_start + old_len]
            assert tail == bytes(len(tail)), "stale bytes after the rewritten XML"
        assert len(ts2.ifds) == len(fx.level_dims)
    assert all(data[o : o + n] == bytes(n) for o, n in label_spans)
    assert tiled_page_hashes(out) == tiled_page_hashes(fx.path)

    kinds = sorted(r.name for r in plan.removals if r.kind == "image")
    assert kinds == ["label", "macro"]
    dumped = json.dumps(plan.describe()) + json.dumps(inv.public())
    for v in fx.text_canaries().values():
        assert v not in dumped


def test_uid_dummies_are_keyed_and_consistent(tmp_path):
    fx = make_philips(tmp_path / "a.tiff")
    _, _, out1 = run_native(PhilipsConverter(), fx.path, tmp_path / "o1")
    _, _, out2 = run_native(PhilipsConverter(), fx.path, tmp_path / "o2")
    p1, p2 = openslide_summary(out1)["properties"], openslide_summary(out2)["properties"]
    uid = p1["philips.DICOM_STUDY_INSTANCE_UID"]
    assert uid == p2["philips.DICOM_STUDY_INSTANCE_UID"]
    assert uid != fx.canaries["DICOM_STUDY_INSTANCE_UID"] and len(uid) <= 64


def test_label_blank_and_macro_keep(tmp_path):
    fx = make_philips(tmp_path / "a.tiff")
    _, plan, out = run_native(PhilipsConverter(), fx.path, tmp_path / "o", Policy(label="blank", macro="keep"))
    s = openslide.OpenSlide(str(out))
    try:
        assert sorted(s.associated_images) == ["label", "macro"]
        label = np.asarray(s.associated_images["label"].convert("L"))
        assert label.shape == (120, 160) and label.min() > 240  # blank, same size
    finally:
        s.close()
    # (JPEG headers are shared between images: compare stretches of the entropy-coded middle)
    mid_l, mid_m = len(fx.label_b64) // 2, len(fx.macro_b64) // 2
    assert not raw_contains(out, fx.label_b64[mid_l : mid_l + 40].encode())
    assert raw_contains(out, fx.macro_b64[mid_m : mid_m + 40].encode())  # kept on request
    assert scan_for(out, fx.text_canaries()) == []


def test_dates_year(tmp_path):
    fx = make_philips(tmp_path / "a.tiff")
    _, _, out = run_native(PhilipsConverter(), fx.path, tmp_path / "o", Policy(dates="year"))
    p = openslide_summary(out)["properties"]
    assert p["philips.DICOM_ACQUISITION_DATETIME"] == "20190101000000.000000"
    assert p["philips.DICOM_DATE_OF_LAST_CALIBRATION"] == '"20180101"'
    assert p["philips.DICOM_TIME_OF_LAST_CALIBRATION"] == ""
    assert scan_for(out, {k: fx.canaries[k] for k in ("DICOM_ACQUISITION_DATETIME", "DateTime")}) == []


def test_truncated_is_corrupt(tmp_path):
    fx = make_philips(tmp_path / "a.tiff")
    bad = tmp_path / "t.tiff"
    bad.write_bytes(fx.path.read_bytes()[:5000])
    with pytest.raises(CorruptInput):
        PhilipsConverter().inspect(bad)


def test_level_count_mismatch_is_corrupt(tmp_path):
    fx = make_philips(tmp_path / "a.tiff")
    data = bytearray(fx.path.read_bytes())
    tag = b'ObjectType="PixelDataRepresentation"'
    i = data.index(tag)
    data[i : i + len(tag)] = b'ObjectType="PixelDataRepresentatioX"'
    bad = tmp_path / "m.tiff"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptInput, match="PixelDataRepresentation"):
        PhilipsConverter().inspect(bad)


# -- end to end through the CLI -----------------------------------------------------------


def test_cli_end_to_end(tmp_path, cli):
    from tests.fixtures.native_helpers import cli_run_ok

    (tmp_path / "in").mkdir()
    fxs = [
        make_philips(tmp_path / "in" / "CASE-PH-A.tiff", order="a"),
        make_philips(tmp_path / "in" / "CASE-PH-B.tif", order="b"),
        make_philips(tmp_path / "in" / "CASE-PH-C.tiff", images_in="ifd", bigtiff=True),
    ]
    before = {fx.path: file_hash(fx.path) for fx in fxs}
    out = tmp_path / "out"
    report = cli_run_ok(cli, [fx.path for fx in fxs], out)
    assert [s["format"] for s in report["slides"]] == ["philips"] * 3
    outs = sorted(p for p in out.iterdir() if p.suffix == ".tiff")
    assert len(outs) == 3
    for o in outs:
        assert openslide.OpenSlide.detect_format(str(o)) == "philips"
        assert openslide_summary(o)["associated"] == []
        assert scan_for(o, fxs[0].text_canaries()) == []
        assert scan_for(o, ["CASE-PH-A", "CASE-PH-B", "CASE-PH-C"]) == []
    for path, h in before.items():
        assert file_hash(path) == h


def test_cli_corrupt_philips(tmp_path):
    from tests.fixtures.native_helpers import TRUNCATED, cli_run_corrupt

    fx = make_philips(tmp_path / "a.tiff")
    data = fx.path.read_bytes()
    trunc = tmp_path / "trunc.tiff"
    trunc.write_bytes(data[:5000])
    cli_run_corrupt([trunc], tmp_path / "o1", TRUNCATED)
    bad = bytearray(data)
    i = bad.index(b"</DataObject></Array>")
    bad[i : i + 13] = b"</DataObjecX>"
    badxml = tmp_path / "badxml.tiff"
    badxml.write_bytes(bytes(bad))
    cli_run_corrupt([badxml], tmp_path / "o2", "xml")


def test_cli_dicom_target(tmp_path, cli):
    import pydicom

    from tests.fixtures.native_helpers import cli_run_dicom_ok

    fx = make_philips(tmp_path / "CASE-PH-D.tiff")
    files = cli_run_dicom_ok(cli, [fx.path], tmp_path / "out", fx.text_canaries())
    types = {tuple(pydicom.dcmread(f, stop_before_pixels=True).ImageType)[2] for f in files}
    assert types == {"VOLUME"}  # no LABEL / OVERVIEW instance
