"""Leica SCN: fixture faithfulness and the native redactor (plan-level, applied with apply_copy)."""

from __future__ import annotations

import json

import openslide
import pytest
import tifffile

from tests.fixtures.native_helpers import (
    file_hash,
    openslide_summary,
    read_all_levels,
    run_native,
    scan_for,
    tiled_page_hashes,
)
from tests.fixtures.scn_gen import make_scn
from wsianon.converters.leica import LeicaConverter
from wsianon.errors import CorruptInput
from wsianon.io.tiff import TiffStructure
from wsianon.profiles.policy import Policy

VARIANTS = {
    "2010-10-barcode-element": dict(),
    "2010-03-barcode-attribute": dict(style="2010/03"),
    "macro-last": dict(macro_first=False),
}


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def scn(request, tmp_path):
    return make_scn(tmp_path / "CASE-SCN-0001.scn", **VARIANTS[request.param])


def test_fixture_is_faithful(scn):
    fx = scn
    assert openslide.OpenSlide.detect_format(str(fx.path)) == "leica"
    s = openslide_summary(fx.path)
    assert s["associated"] == ["macro"]
    assert s["levels"] == tuple(fx.level_dims)
    assert s["properties"]["leica.barcode"] == fx.canaries["barcode_decoded"]
    assert s["properties"]["leica.creation-date"] == fx.canaries["creationDate"]
    assert fx.canaries["device_serial"] in s["properties"]["leica.device-version"]
    assert s["properties"]["openslide.objective-power"] == "20"
    assert read_all_levels(fx.path) == fx.level_dims
    with tifffile.TiffFile(fx.path) as tf:
        assert tf.is_scn
    assert scan_for(fx.path, fx.text_canaries()) == sorted(fx.text_canaries())


def test_redacted_scn(scn, tmp_path):
    fx = scn
    before = file_hash(fx.path)
    conv = LeicaConverter()
    assert conv.sniff(fx.path, fx.path.read_bytes()[:65536])
    inv, plan, out = run_native(conv, fx.path, tmp_path / "out")
    assert file_hash(fx.path) == before
    assert out.suffix == ".scn"

    assert openslide.OpenSlide.detect_format(str(out)) == "leica"
    s = openslide_summary(out)
    assert s["associated"] == []
    assert s["levels"] == tuple(fx.level_dims)
    p = s["properties"]
    assert "leica.barcode" not in p and "leica.creation-date" not in p
    assert p["leica.device-version"] == "1.5.1.10804"
    assert p["leica.objective"] == "20" and p["leica.illumination-source"] == "brightfield"
    assert read_all_levels(out) == fx.level_dims
    with tifffile.TiffFile(out) as tf:
        assert tf.is_scn
        assert len(tf.pages) == len(fx.main_dims)

    assert scan_for(out, fx.text_canaries()) == []
    assert scan_for(out, [c.value for c in inv.canaries()]) == []
    src_h = tiled_page_hashes(fx.path)
    out_h = tiled_page_hashes(out)
    assert out_h == {d: src_h[d] for d in fx.main_dims}
    with TiffStructure(fx.path) as ts:
        spans = [sp for i in fx.macro_ifds for sp in ts.data_spans(ts.ifds[i])]
    data = out.read_bytes()
    assert spans and all(data[o : o + n] == bytes(n) for o, n in spans)

    assert [r.where for r in plan.removals if r.kind == "image"] == [f"IFD {i}" for i in fx.macro_ifds]
    dumped = json.dumps(plan.describe()) + json.dumps(inv.public())
    for v in fx.text_canaries().values():
        assert v not in dumped


def test_dates_year(tmp_path):
    fx = make_scn(tmp_path / "a.scn")
    _, _, out = run_native(LeicaConverter(), fx.path, tmp_path / "o", Policy(dates="year"))
    assert openslide_summary(out)["properties"]["leica.creation-date"] == "2019-01-01T00:00:00Z"
    assert scan_for(out, {"creationDate": fx.canaries["creationDate"]}) == []


def test_macro_keep(tmp_path):
    fx = make_scn(tmp_path / "a.scn")
    _, _, out = run_native(LeicaConverter(), fx.path, tmp_path / "o", Policy(macro="keep"))
    s = openslide_summary(out)
    assert s["associated"] == ["macro"]
    assert "leica.barcode" not in s["properties"]


def test_truncated_is_corrupt(tmp_path):
    fx = make_scn(tmp_path / "a.scn")
    bad = tmp_path / "t.scn"
    bad.write_bytes(fx.path.read_bytes()[:3000])
    with pytest.raises(CorruptInput):
        LeicaConverter().inspect(bad)


def test_dimension_pointing_outside_is_corrupt(tmp_path):
    fx = make_scn(tmp_path / "a.scn")
    data = bytearray(fx.path.read_bytes())
    i = data.index(b'ifd="4"')
    data[i : i + 7] = b'ifd="9"'
    bad = tmp_path / "d.scn"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptInput, match="names an IFD the file does not have") as err:
        LeicaConverter().inspect(bad)
    assert "9" not in err.value.reason.replace(str(len(fx.path.read_bytes())), "")  # no number read from the file


# -- end to end through the CLI -----------------------------------------------------------


def test_cli_corrupt_scn(tmp_path):
    from tests.fixtures.native_helpers import TRUNCATED, cli_run_corrupt

    fx = make_scn(tmp_path / "a.scn")
    data = fx.path.read_bytes()
    trunc = tmp_path / "trunc.scn"
    trunc.write_bytes(data[: len(data) // 3])
    cli_run_corrupt([trunc], tmp_path / "o1", TRUNCATED)
    bad = bytearray(data)
    i = bad.index(b"<collection")
    bad[i : i + 11] = b"<collectio!"
    badxml = tmp_path / "badxml.scn"
    badxml.write_bytes(bytes(bad))
    cli_run_corrupt([badxml], tmp_path / "o2", "xml")


def test_cli_dicom_target(tmp_path, cli):
    """DICOM route: wsidicomizer copies the device version (with its serial) into
    SoftwareVersions; the route replaces it, the slide verifies clean and nothing identifying
    reaches OUT."""
    import json

    fx = make_scn(tmp_path / "CASE-SCN-D.scn")
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "dicom", str(fx.path), "-o", str(out))
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert code == 0 and slide["status"] == "ok", stdout + stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert [f for f in files if f.suffix == ".dcm"]
    for f in files:
        assert scan_for(f, fx.text_canaries()) == [], f.name


def test_cli_end_to_end(tmp_path, cli):
    from tests.fixtures.native_helpers import cli_run_ok

    (tmp_path / "in").mkdir()
    fxs = [make_scn(tmp_path / "in" / "CASE-SCN-A.scn"), make_scn(tmp_path / "in" / "CASE-SCN-B.scn", style="2010/03", macro_first=False)]
    before = {fx.path: file_hash(fx.path) for fx in fxs}
    out = tmp_path / "out"
    report = cli_run_ok(cli, [fx.path for fx in fxs], out)
    assert [s["format"] for s in report["slides"]] == ["leica", "leica"]
    outs = sorted(p for p in out.iterdir() if p.suffix == ".scn")
    assert len(outs) == 2
    for o in outs:
        assert openslide.OpenSlide.detect_format(str(o)) == "leica"
        assert openslide_summary(o)["associated"] == []
        assert scan_for(o, fxs[0].text_canaries()) == []
    for path, h in before.items():
        assert file_hash(path) == h


def _unreadable_page(path):
    """A page the XML names whose ImageWidth field type is ASCII (fuzz seed 138, SCN #40): tifffile
    cannot read the page, so its tiles cannot be compared."""
    import struct

    import tifffile

    with tifffile.TiffFile(path) as t:
        entry = t.pages[1].tags["ImageWidth"].offset
    b = bytearray(path.read_bytes())
    struct.pack_into("<H", b, entry + 2, 2)
    path.write_bytes(bytes(b))


def test_in_place_compares_with_the_source_before_it_was_patched(tmp_path, cli):
    """In place the source is the output once patched: the Leica pyramid check compared the patched
    file with itself, so a slide whose pages cannot be read was verified in place while a copy of it
    failed (found by the in-place fuzzer's agreement with ``verify --source``, seed 138). The check
    now takes the source's pages before anything is written: both modes fail it, and in place the
    file is given back as it was."""
    import hashlib

    (tmp_path / "a").mkdir()
    copy_src = make_scn(tmp_path / "a" / "case.scn").path
    _unreadable_page(copy_src)
    code, _out, _err = cli("run", copy_src, "-o", tmp_path / "o")
    (entry,) = json.loads((tmp_path / "o" / "wsianon-report.json").read_text())["slides"]
    assert code == 1 and entry["status"] == "failed", entry
    assert [c["check"] for c in entry["verification"]["checks"] if not c["ok"]] == ["leica-tiles-identical"], entry
    inplace = tmp_path / "b" / "case.scn"
    inplace.parent.mkdir()
    inplace.write_bytes(copy_src.read_bytes())
    before = hashlib.sha256(inplace.read_bytes()).hexdigest()
    (tmp_path / "side").mkdir()
    code, out, _err = cli("run", inplace, "--in-place", "--json", "--mapping", tmp_path / "side" / "m.csv")
    (entry,) = json.loads(out)["slides"]
    assert code == 1 and entry["status"] == "failed", entry
    assert [c["check"] for c in entry["verification"]["checks"] if not c["ok"]] == ["leica-tiles-identical"], entry
    assert hashlib.sha256(inplace.read_bytes()).hexdigest() == before and sorted(p.name for p in inplace.parent.iterdir()) == ["case.scn"]
