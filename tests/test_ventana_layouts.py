"""Roche/Ventana layouts beyond the usual label / thumbnail / EncodeInfo pyramid.

A BIF with neither a thumbnail nor a level-0 ``EncodeInfo`` XMP is what OpenSlide reads
as a "Ventana TIFF" (its Ventana reader: a level 0 without XMP has no AOIs and no
overlaps).  Removing the label (IFD 0) makes level 0 the first directory; the iScan XMP
must not go there (OpenSlide parses level 0's XMP as the EncodeInfo), so it lives on in
a 1x1 directory in front.  These tests run that layout end to end and prove the
verifier still catches what the redactor did not remove.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import openslide
import pytest
import tifffile

from tests.fixtures.bif_gen import CANARIES, make_bif
from tests.fixtures.native_helpers import cli_run_ok, read_all_levels, scan_for
from wsianon.converters.ventana import VentanaConverter
from wsianon.pipeline.verify import snapshot_source, source_property_canaries

TEXT_CANARIES = {k: v for k, v in CANARIES.items() if k != "LabelText"}
SOFTWARE_CANARY = "BIFSOFTWARE3K8"
LAYOUT = dict(thumbnail=False, encode_info=False)


def _tiff_layout(tmp_path: Path, name: str = "CASE-BIF-0001.bif", **kw):
    (tmp_path / "in").mkdir(exist_ok=True)
    return make_bif(tmp_path / "in" / name, **LAYOUT, **kw)


@pytest.fixture(scope="module")
def redacted(tmp_path_factory):
    """One run of the layout (Software carrying a canary too): (fixture, output, report)."""
    from typer.testing import CliRunner

    from wsianon.cli import app

    tmp = tmp_path_factory.mktemp("ventana-tiff")
    fx = _tiff_layout(tmp, software=f"ScanOutputManager 1.1.0.15854 {SOFTWARE_CANARY}")
    out = tmp / "out"

    def cli(*args):
        res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        return res.exit_code, res.stdout, res.stderr

    report = cli_run_ok(cli, [fx.path], out)
    outs = [p for p in out.iterdir() if p.suffix == ".bif"]
    assert len(outs) == 1
    return fx, outs[0], report


def test_layout_source_is_a_ventana_tiff(tmp_path):
    """The fixture is the layout OpenSlide knows: Ventana, label as macro, no thumbnail, level 0 without XMP."""
    fx = _tiff_layout(tmp_path)
    with openslide.OpenSlide(str(fx.path)) as s:
        assert s.properties["openslide.vendor"] == "ventana"
        assert sorted(s.associated_images) == ["macro"]
        assert s.level_dimensions == tuple(fx.level_dims)
        assert s.properties["ventana.BaseName"] == CANARIES["BaseName"]
    with tifffile.TiffFile(fx.path) as tf:
        assert tf.pages[0].description == "Label_Image" and 700 in tf.pages[0].tags
        assert tf.pages[1].description.startswith("level=0") and 700 not in tf.pages[1].tags


def test_layout_runs_verified_and_opens(redacted):
    fx, out, report = redacted
    (slide,) = report["slides"]
    assert slide["status"] == "ok" and slide["verification"]["ok"]
    assert slide["verification"]["findings"] == []
    assert {c["check"] for c in slide["verification"]["checks"]} >= {
        "levels",
        "pyramid-readable",
        "tiles-identical",
        "canary-scan",
        "ventana-profile",
        "ventana-iscan-first",
    }
    with openslide.OpenSlide(str(out)) as s:
        assert s.properties["openslide.vendor"] == "ventana"
        assert s.level_dimensions == tuple(fx.level_dims)
        assert sorted(s.associated_images) == []
        assert s.properties["ventana.Magnification"] == "40"
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.2325)
        assert not any(k.startswith("ventana.") and k.split(".", 1)[1] in TEXT_CANARIES for k in s.properties)
    assert read_all_levels(out) == fx.level_dims
    with tifffile.TiffFile(out) as tf:
        first, level0 = tf.pages[0], tf.pages[1]
        assert b"<iScan" in bytes(first.tags[700].value), "the iScan XMP lives on in the first directory"
        assert level0.description.startswith("level=0") and 700 not in level0.tags, "level 0 stays without XMP"


def test_layout_identifiers_absent_from_output(redacted):
    fx, out, _ = redacted
    assert scan_for(fx.path, {**TEXT_CANARIES, "Software": SOFTWARE_CANARY}) == sorted([*TEXT_CANARIES, "Software"])
    assert scan_for(out, {**TEXT_CANARIES, "Software": SOFTWARE_CANARY}) == []
    assert scan_for(out, ["CASE-BIF-0001"]) == []


def _plant_label_bytes(path: Path, source: Path) -> None:
    """A source canary written where the label's pixels were (wiped, unlinked: no reader looks there)."""
    with tifffile.TiffFile(source) as tf:
        off = tf.pages[0].dataoffsets[0]
    data = bytearray(path.read_bytes())
    new = CANARIES["UserName"].encode()
    assert not data[off : off + len(new)].strip(b"\0"), "the redactor wiped the label"
    data[off : off + len(new)] = new
    path.write_bytes(bytes(data))


def _plant_iscan(path: Path, source: Path) -> None:
    """A source canary back in the blanked iScan BaseName of the front directory's XMP."""
    data = bytearray(path.read_bytes())
    # the blanked attributes around BaseName (the XMP is Canonical XML: attributes sorted by name)
    m = re.search(rb'(?:\w+="" )*BaseName=""(?: \w+="")*', data)
    assert m
    i, old = m.start(), m.group(0)
    new = f'BaseName="{CANARIES["BaseName"]}"'.encode()
    assert len(new) <= len(old)
    data[i : i + len(old)] = new + b" " * (len(old) - len(new))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["wiped-label-bytes", "front-iscan-xmp"])
def test_identifier_planted_after_redaction_is_caught(redacted, tmp_path, cli, where):
    fx, out, _ = redacted
    # control: the untouched output verifies clean against its source
    code, stdout, _ = cli("verify", out, "--source", fx.path, "--json")
    assert code == 0, stdout
    planted = tmp_path / out.name
    shutil.copyfile(out, planted)
    (_plant_label_bytes if where == "wiped-label-bytes" else _plant_iscan)(planted, fx.path)
    with openslide.OpenSlide(str(planted)):
        pass  # the plant keeps the file readable: only the canary can fail it
    code, stdout, _ = cli("verify", planted, "--source", fx.path, "--json")
    assert code == 1
    (rep,) = json.loads(stdout)
    failed = {c["check"] for c in rep["checks"] if not c["ok"]}
    assert "canary-scan" in failed, rep["checks"]
    assert rep["findings"], "the planted value is reported where it is"
    if where == "front-iscan-xmp":
        assert "ventana-profile" in failed


def test_kept_values_are_not_canaries_but_removed_ones_are(tmp_path):
    """Source properties the profile keeps (safe iScan attributes, a kept Software pattern) are no
    leak even when the output cannot be read back; identifying ones and an odd Software still are."""
    fx = _tiff_layout(tmp_path, software=f"ScanOutputManager 1.1.0.15854 {SOFTWARE_CANARY}")
    snap = snapshot_source(VentanaConverter().inspect(fx.path), tiles=False)
    names = {c.name for c in source_property_canaries(snap, None)}
    for kept in ("ventana.BuildVersion", "ventana.ScanRes", "ventana.Magnification"):
        assert f"property {kept}" not in names
    for leak in ("BaseName", "Barcode1D", "UserName", "SlideCustomerId"):
        assert f"property ventana.{leak}" in names
    assert "property tiff.Software" in names, "a Software value outside the kept patterns stays a canary"

    plain = _tiff_layout(tmp_path, name="CASE-BIF-0002.bif")
    snap = snapshot_source(VentanaConverter().inspect(plain.path), tiles=False)
    assert "property tiff.Software" not in {c.name for c in source_property_canaries(snap, None)}


def test_a_level_whose_description_is_not_ascii_is_no_level(tmp_path, cli):
    """Fuzz seed 142, BIF #91: a level page's ImageDescription with a damaged field type (IFD
    instead of ASCII). The redactor read its bytes as text and kept the page as a level; OpenSlide
    takes no such description and shows no such level, and the closed world dropped the field: the
    output held a page no reader names, which ``run`` verified (its pixels are the slide's) and
    ``verify --source`` refused as an unknown image. It is one of the other pages now: wiped and
    unlinked, and both verifiers pass the slide."""
    import struct

    src = make_bif(tmp_path / "s.bif").path
    with tifffile.TiffFile(src) as t:
        (idx,) = [i for i, p in enumerate(t.pages) if (p.description or "").startswith("level=2")]
        entry = t.pages[idx].tags["ImageDescription"].offset
    b = bytearray(src.read_bytes())
    struct.pack_into("<H", b, entry + 2, 13)  # the field type: IFD (LONG-sized, not text)
    src.write_bytes(bytes(b))
    out = tmp_path / "o"
    report = cli_run_ok(cli, [src], out)
    (entry_,) = report["slides"]
    assert any(r["name"] == "unknown" and r["where"] == f"IFD {idx}" and r["action"] == "wiped+unlinked" for r in entry_["removed"]), entry_["removed"]
    (main,) = [p for p in out.iterdir() if p.suffix == ".bif"]
    with tifffile.TiffFile(main) as t:
        assert all(p.description for p in t.pages)  # no page without a description left
    code, stdout, _e = cli("verify", main, "--source", src)
    assert code == 0, stdout
