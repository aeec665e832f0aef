"""False-positive hunt 6: clean, realistic inputs that `run` quarantined or `wsianon verify`
(without the source) failed, and the leak each fix must keep closed.

1. `run --label blank` writes a uniform stand-in label; `wsianon verify` knows no policy and
   refused it (native: associated-images/residual-images; DICOM: dicom: images / opens).
2. An Aperio region export (ImageScope) whose thumbnail is as large as its one level:
   `--thumbnail remove` quarantined it (tiles-identical counted the thumbnail as a level page).
3. A standard colour palette (PS3.6 Annex B, identified by its well-known UID) in an optical path:
   16-bit spellings were refused as "not a colour ramp", the segmented ones removed (dciodvfy then
   failed the output), and the 8-bit stored PET palette was rewritten as if it were 16-bit words.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from .conftest import shared

CMU = "aperio/CMU-1-Small-Region.svs"
SMALL = "aperio/openslide-python_small.svs"
GREY = "dicom/highdicom_sm_image_grayscale.dcm"


def _run(cli, src: Path, out: Path, *opts: str) -> dict:
    code, stdout, _ = cli("run", src, "--out", out, "--no-review-sheet", "--json", *opts)
    report = json.loads(stdout)
    return {"code": code, "status": [s["status"] for s in report["slides"]], "slides": report["slides"]}


def _verify(cli, out: Path) -> tuple[int, list]:
    code, stdout, _ = cli("verify", out, "--json")
    return code, [c for v in json.loads(stdout) for c in v["checks"] if not c["ok"]]


# -- 1. a blank label passes verify; a real label does not ----------------------------------------


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_blank_label_output_verifies_without_its_source(cli, tmp_path, target):
    """Before: native NOT CLEAN (associated-images: not allowed ['label'], residual-images:
    label); DICOM NOT CLEAN (dicom: images: LABEL instance; dicom: opens with OpenSlide)."""
    out = tmp_path / "out"
    r = _run(cli, shared(CMU), out, "--target", target, "--label", "blank")
    assert r["code"] == 0 and r["status"] == ["ok"]
    code, failed = _verify(cli, out)
    assert failed == [] and code == 0


def test_a_label_that_is_not_blank_still_fails_verify(cli):
    """The source's own handwritten label: refused as before (native)."""
    code, failed = _verify(cli, shared(CMU))
    assert code == 1
    assert any(c["check"] == "associated-images" and "label" in c["detail"] for c in failed)


def test_uniform_means_every_band():
    """A name written in colours of one grey changes only the colour bands: not blank."""
    from wsianon.pipeline.verify import uniform

    grey = Image.new("RGB", (40, 20), (128, 128, 128))
    assert uniform(grey) and uniform(grey.convert("RGBA")) and uniform(grey.convert("L"))
    text = np.full((20, 40, 3), 128, np.uint8)
    text[5:15, 5:35] = (140, 109, 190)  # the same grey as PIL converts it (L = 128)
    painted = Image.fromarray(text)
    assert painted.convert("L").getextrema()[0] == painted.convert("L").getextrema()[1]
    assert not uniform(painted)


def test_a_non_uniform_dicom_label_still_fails_verify(cli, tmp_path):
    """A LABEL instance whose frame is not one colour: refused (dicom: barcodes)."""
    from turbojpeg import TurboJPEG
    from pydicom.encaps import encapsulate

    out = tmp_path / "out"
    assert _run(cli, shared(CMU), out, "--target", "dicom", "--label", "blank")["code"] == 0
    label = next(p for p in out.rglob("*.dcm") if "LABEL" in pydicom.dcmread(p, stop_before_pixels=True).ImageType)
    ds = pydicom.dcmread(label)
    img = np.full((int(ds.Rows), int(ds.Columns), 3), 255, np.uint8)
    img[10:30, 10:60] = 0
    ds.PixelData = encapsulate([TurboJPEG().encode(img, quality=90)] * int(ds.get("NumberOfFrames", 1)))
    ds.save_as(label)
    code, failed = _verify(cli, out)
    assert code == 1 and any(c["check"] == "dicom: barcodes" and "not blank" in c["detail"] for c in failed)


# -- 2. a thumbnail as large as the one level ------------------------------------------------------


def test_thumbnail_as_large_as_the_level_can_be_removed(cli, tmp_path):
    """Before: quarantined, 'tiles-identical: pyramid pages: source 2, output 1'."""
    out = tmp_path / "out"
    r = _run(cli, shared(SMALL), out, "--thumbnail", "remove")
    assert r["code"] == 0 and r["status"] == ["ok"]
    checks = {c["check"]: c for c in r["slides"][0]["verification"]["checks"]}
    assert checks["tiles-identical"]["ok"]


def test_output_pages_must_still_be_the_source_pages():
    """The subsequence rule: a page the source lacks, or a level size left without a page, is not
    matched."""
    from wsianon.pipeline.verify import _kept_pages

    lvl, thumb = (16, 16, 1, "a"), (16, 16, 1, "b")
    assert _kept_pages([lvl, thumb], [lvl], [(16, 16)]) == [lvl]
    assert _kept_pages([lvl, thumb], [(16, 16, 1, "c")], [(16, 16)]) == []
    big, small = (64, 64, 4, "x"), (16, 16, 1, "y")
    assert _kept_pages([big, small, thumb], [big], [(64, 64), (16, 16)]) == []


# -- 3. the standard's colour palettes -------------------------------------------------------------


def _palette_files() -> dict[str, Path]:
    import pydicom.data

    d = Path(pydicom.data.__file__).parent / "palettes"
    return {p.stem: p for p in sorted(d.glob("*.dcm"))}


def _slide_with_palette(tmp_path: Path, name: str, sixteen: bool, tamper: bool = False) -> Path:
    """The real highdicom MONOCHROME2 slide with a well-known palette in its optical path: as the
    standard stores it (8-bit, some segmented) or as 256 16-bit entries (values x 257)."""
    from pydicom.pixels import apply_color_lut

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pal = pydicom.dcmread(_palette_files()[name])
        ds = pydicom.dcmread(shared(GREY))
        item = Dataset()
        if sixteen:
            rgb = np.asarray(apply_color_lut(np.arange(256, dtype=np.uint8), pal)).astype(np.uint32) * 257
            for i, c in enumerate(("Red", "Green", "Blue")):
                setattr(item, f"{c}PaletteColorLookupTableDescriptor", [256, 0, 16])
                item.add(pydicom.DataElement(f"{c}PaletteColorLookupTableData", "OW", rgb[:, i].astype("<u2").tobytes()))
        else:
            for e in pal:
                if "PaletteColorLookupTable" in e.keyword and e.keyword != "PaletteColorLookupTableUID":
                    item[e.tag] = copy.deepcopy(e)
        item.PaletteColorLookupTableUID = pal.PaletteColorLookupTableUID
        if tamper:  # two bytes of the green channel changed: no longer the standard's values
            kw = next(e.keyword for e in item if e.keyword.startswith(("Green", "SegmentedGreen")) and e.keyword.endswith("Data"))
            v = bytearray(item[kw].value)
            v[-4:-2] = b"Do"
            item[kw].value = bytes(v)
        ds.OpticalPathSequence[0].PaletteColorLookupTableSequence = Sequence([item])
        d = tmp_path / f"in-{name}-{int(sixteen)}"
        d.mkdir()
        ds.save_as(d / "slide.dcm")
        return d


def _palette_of(out: Path) -> Dataset:
    f = next(out.rglob("*.dcm"))
    return pydicom.dcmread(f, stop_before_pixels=True).OpticalPathSequence[0].PaletteColorLookupTableSequence[0]


@pytest.mark.parametrize("name", ["hotmetalblue", "pet20step", "summer", "winter"])
def test_standard_palette_in_16_bits_passes(cli, tmp_path, name):
    """Before: quarantined ('palette data is not a colour ramp'): an 8-bit map spelled in 16 bits
    is a staircase, or PET 20 Step's 20 steps exceed the segment count."""
    src = _slide_with_palette(tmp_path, name, sixteen=True)
    out = tmp_path / "out"
    r = _run(cli, src, out, "--target", "dicom")
    assert r["code"] == 0 and r["status"] == ["ok"]
    code, failed = _verify(cli, out)
    assert failed == [] and code == 0
    assert _palette_of(out) == pydicom.dcmread(src / "slide.dcm", stop_before_pixels=True).OpticalPathSequence[0].PaletteColorLookupTableSequence[0]


@pytest.mark.parametrize("name", ["pet", "fall"])
def test_standard_palette_as_stored_is_kept_exactly(cli, tmp_path, name):
    """Before: PET's 8-bit entries were 'cleaned' as 16-bit words (values changed) and then
    refused; FALL's segmented data was removed as unjudged bytes and dciodvfy refused the rest.
    (`wsianon verify` still fails both on dciodvfy: an 8-bit descriptor is not an enumerated
    value in a WSI optical path — the input's own non-conformance, which run compares.)"""
    src = _slide_with_palette(tmp_path, name, sixteen=False)
    out = tmp_path / "out"
    r = _run(cli, src, out, "--target", "dicom")
    assert r["code"] == 0 and r["status"] == ["ok"]
    assert _palette_of(out) == pydicom.dcmread(src / "slide.dcm", stop_before_pixels=True).OpticalPathSequence[0].PaletteColorLookupTableSequence[0]


@pytest.mark.parametrize("name,sixteen", [("pet20step", True), ("summer", True), ("fall", False)])
def test_a_palette_not_exactly_the_standards_is_still_refused(tmp_path, name, sixteen):
    """The well-known UID is no pass: two bytes off the standard's values and the channel is
    judged as any palette (refused: not a colour ramp / segmented)."""
    from wsianon.io.palette import well_known
    from wsianon.verify.dicom_attrs import _Walker
    from wsianon.profiles.dicom import DicomProfile

    src = _slide_with_palette(tmp_path, name, sixteen=sixteen, tamper=True)
    ds = pydicom.dcmread(src / "slide.dcm", stop_before_pixels=True)
    item = ds.OpticalPathSequence[0].PaletteColorLookupTableSequence[0]
    assert not well_known(item)
    w = _Walker(DicomProfile(), set(), None)
    w.walk(item, ("OpticalPathSequence", "PaletteColorLookupTableSequence"))
    assert any("Green" in f and "palette data is not a colour ramp" in f for f in w.findings)


def test_every_well_known_palette_is_recognised_in_each_spelling(tmp_path):
    from wsianon.io.palette import well_known

    names = sorted(_palette_files())
    assert len(names) == 8
    for name in names:
        for sixteen in (False, True):
            src = _slide_with_palette(tmp_path, name, sixteen)
            item = pydicom.dcmread(src / "slide.dcm", stop_before_pixels=True).OpticalPathSequence[0].PaletteColorLookupTableSequence[0]
            assert well_known(item), (name, sixteen)
            del item.PaletteColorLookupTableUID  # identified by its UID, not by its values alone
            assert not well_known(item)
            os.remove(src / "slide.dcm")
            src.rmdir()


# -- 4. a removed description that is part of a standard code meaning ------------------------------

HD_RGB = "dicom/highdicom_sm_image.dcm"


def _slide_with(tmp_path: Path, name: str, **optical) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(shared(HD_RGB))
        for k, v in optical.items():
            setattr(ds.OpticalPathSequence[0], k, v)
        d = tmp_path / name
        d.mkdir()
        ds.save_as(d / "slide.dcm")
        return d


def test_description_in_a_standard_code_meaning_is_no_canary(cli, tmp_path):
    """OpticalPathDescription 'Brightfield' (removed) made a canary that the scrub found in the
    dictionary meaning 'Brightfield illumination' (DCM 111744) of the same optical path: the meaning
    became a dummy and 'dicom: text vocabulary' quarantined the slide. (Left as is, the byte scan
    would have found the standard's own word in the output.)"""
    src = _slide_with(tmp_path, "in", OpticalPathDescription="Brightfield")
    out = tmp_path / "out"
    r = _run(cli, src, out, "--target", "dicom")
    assert r["code"] == 0 and r["status"] == ["ok"]
    item = pydicom.dcmread(next(out.rglob("*.dcm")), stop_before_pixels=True).OpticalPathSequence[0]
    assert item.IlluminationTypeCodeSequence[0].CodeMeaning == "Brightfield illumination"
    assert not str(item.get("OpticalPathDescription", "") or "")
    code, failed = _verify(cli, out)
    assert failed == [] and code == 0


def test_such_a_value_copied_into_kept_text_is_still_refused(cli, tmp_path):
    """The canary is gone, the vocabulary check is not: 'Spectrum' (inside SCT 414298005 'Full
    Spectrum') as the removed description and as the kept Optical Path Identifier: quarantined."""
    src = _slide_with(tmp_path, "in", OpticalPathDescription="Spectrum", OpticalPathIdentifier="Spectrum")
    out = tmp_path / "out"
    r = _run(cli, src, out, "--target", "dicom")
    assert r["code"] == 1 and r["status"] == ["failed"]
    bad = {c["check"]: c["detail"] for c in r["slides"][0]["verification"]["checks"] if not c["ok"]}
    assert "OpticalPathIdentifier" in bad.get("dicom: text vocabulary", "")


def test_in_standard_text():
    from wsianon.profiles.dicom import in_standard_text

    texts = {"brightfield illumination", "full spectrum"}
    assert in_standard_text("Brightfield", texts) and in_standard_text(" FULL SPECTRUM ", texts)
    assert not in_standard_text("Brightfield^Jane", texts) and not in_standard_text("", texts)


# -- 5. scanner makers and channel names in the text the DICOM route keeps -------------------------


def _slide_made_by(tmp_path: Path, name: str, maker: str, model: str, ident: str | None = None) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(shared(HD_RGB))
        ds.Manufacturer, ds.ManufacturerModelName = maker, model
        if ident is not None:
            ds.OpticalPathSequence[0].OpticalPathIdentifier = ident
        d = tmp_path / name
        d.mkdir()
        ds.save_as(d / "slide.dcm")
        return d


@pytest.mark.parametrize(
    "maker,model,ident",
    [
        ("Carl Zeiss Microscopy GmbH", "Axioscan 7", None),
        ("Sakura Finetek", "VisionTek", None),
        ("Huron Technologies", "TissueScope LE120", None),
        ("Akoya Biosciences", "Vectra Polaris", None),
        ("Evident", "SLIDEVIEW VS200", None),
        ("PreciPoint GmbH", "M8", None),
        ("Leica Biosystems", "Aperio GT 450", "Brightfield"),
        ("Hamamatsu", "NanoZoomer S360", "DAPI"),
    ],
)
def test_real_scanner_makers_and_channel_names_are_vocabulary(cli, tmp_path, maker, model, ident):
    """Before: quarantined, 'dicom: text vocabulary: Manufacturer / ManufacturerModelName /
    OpticalPathIdentifier: text outside the DICOM vocabulary' (both run and verify)."""
    out = tmp_path / "out"
    r = _run(cli, _slide_made_by(tmp_path, "in", maker, model, ident), out, "--target", "dicom")
    assert r["code"] == 0 and r["status"] == ["ok"]
    ds = pydicom.dcmread(next(out.rglob("*.dcm")), stop_before_pixels=True)
    assert (ds.Manufacturer, ds.ManufacturerModelName) == (maker, model)
    code, failed = _verify(cli, out)
    assert failed == [] and code == 0


def test_a_phrase_is_vocabulary_only_whole():
    """'Carl Zeiss' is a maker; 'Carl' alone (or beside another word) is a given name."""
    from wsianon.verify.dicom_text import _rules
    from wsianon.verify.vocabulary import unknown_tokens

    v = _rules().vocab
    assert unknown_tokens("Carl Zeiss Microscopy GmbH", v) == [] and unknown_tokens("CARL  ZEISS", v) == []
    assert unknown_tokens("Carl Smith", v) == ["Carl", "Smith"]
    assert unknown_tokens("Zeiss Carl", v) == ["Carl"] and unknown_tokens("Carl Zeissler", v) != []


def test_a_name_as_the_maker_is_still_refused(cli, tmp_path):
    out = tmp_path / "out"
    r = _run(cli, _slide_made_by(tmp_path, "in", "Carl Doe Imaging", "Axioscan 7"), out, "--target", "dicom")
    assert r["code"] == 1 and r["status"] == ["failed"]


# -- 6. a date reduced to its year (run --dates year) in wsianon verify ----------------------------


def _fixture(kind: str, d: Path) -> Path:
    from .fixtures import bif_gen, isyntax_gen, philips_gen, scn_gen

    d.mkdir()
    if kind == "aperio":
        import shutil

        return Path(shutil.copy(shared(CMU), d / "s.svs"))
    make = {"philips": philips_gen.make_philips, "scn": scn_gen.make_scn, "bif": bif_gen.make_bif, "isyntax": isyntax_gen.make_isyntax}[kind]
    path = d / {"philips": "s.tiff", "scn": "s.scn", "bif": "s.bif", "isyntax": "s.isyntax"}[kind]
    make(path)
    return path


@pytest.mark.parametrize("kind", ["aperio", "philips", "scn", "bif", "isyntax"])
def test_year_only_dates_pass_verify(cli, tmp_path, kind):
    """Before, `wsianon verify` of a clean `run --dates year` output: NOT CLEAN (aperio-profile:
    Date; philips-profile / isyntax-profile: DICOM_ACQUISITION_DATETIME ...; leica-profile:
    creation-date; tiff-datetime: DateTime still set)."""
    out = tmp_path / "out"
    r = _run(cli, _fixture(kind, tmp_path / "in"), out, "--dates", "year")
    assert r["code"] == 0 and r["status"] == ["ok"]
    code, failed = _verify(cli, out)
    assert failed == [] and code == 0


def test_kept_dates_still_fail_verify(cli, tmp_path):
    """A whole date (--dates keep) is a finding for `wsianon verify`, which knows no policy."""
    out = tmp_path / "out"
    assert _run(cli, _fixture("aperio", tmp_path / "in"), out, "--dates", "keep")["code"] == 0
    code, failed = _verify(cli, out)
    assert code == 1 and any(c["check"] == "aperio-profile" and "Date" in c["detail"] for c in failed)


def test_year_only():
    from wsianon.verify.dates import year_only

    for v in ("20190101000000.000000", '"20180101"', '"20180101" "20190101"', "2019:01:01 00:00:00", "2019-01-01T00:00:00Z", "01/01/09", "2019"):
        assert year_only(v), v
    for v in ("", "20190102", "2019:01:01 00:00:01", "12/29/09", "2019-01-01T00:00:00+01:00", "20190101123000", "Doe 2019", "2019:01:01 00:00:00 x"):
        assert not year_only(v), v


# -- 7. Aperio: a safe key's free word -------------------------------------------------------------


def _cmu_with_parmset(tmp_path: Path, value: str) -> Path:
    """CMU-1 with its 'Parmset = USM Filter' (the scan settings' name) set to ``value``
    (padded to the same length: offsets unchanged)."""
    data = bytearray(shared(CMU).read_bytes())
    old = b"Parmset = USM Filter"
    new = (b"Parmset = " + value.encode()).ljust(len(old))
    assert len(new) == len(old)
    i = data.find(old)
    data[i : i + len(old)] = new
    d = tmp_path / "in"
    d.mkdir()
    (d / "s.svs").write_bytes(bytes(data))
    return d / "s.svs"


@pytest.mark.parametrize("value", ["COVERSLIP", "IHC Kidney", "Jane Doe"])
def test_parmset_that_is_not_vocabulary_is_blanked(cli, tmp_path, value):
    """Before: the safe key kept any value, and the vocabulary check (and the independent canary
    scan) quarantined the slide. Now the value is blanked (reported) and the slide is shared."""
    out = tmp_path / "out"
    r = _run(cli, _cmu_with_parmset(tmp_path, value), out)
    assert r["code"] == 0 and r["status"] == ["ok"]
    assert ("ImageDescription:Parmset", "blanked") in {(x["name"], x["action"]) for x in r["slides"][0]["removed"]}
    svs = next(out.glob("*.svs"))
    assert value.encode() not in svs.read_bytes() and b"Parmset = |" in svs.read_bytes()
    code, failed = _verify(cli, out)
    assert failed == [] and code == 0


def test_parmset_of_vocabulary_is_kept(cli, tmp_path):
    out = tmp_path / "out"
    r = _run(cli, shared(CMU), out)
    assert r["code"] == 0 and b"Parmset = USM Filter|" in next(out.glob("*.svs")).read_bytes()


@pytest.mark.parametrize("key,value", [("Objective.Lens.Name", "PlanApo 20x"), ("ScanMode", "Normal")])
def test_ndpi_safe_property_that_is_not_vocabulary_goes(cli, tmp_path, monkeypatch, key, value):
    """Before: the safe key kept it (printable ASCII) and the vocabulary check and the canary scan
    quarantined the slide. Now the key leaves the property map (reported)."""
    from .fixtures import ndpi_gen

    monkeypatch.setitem(ndpi_gen.SAFE_PROPERTIES, key, value)
    (tmp_path / "in").mkdir()
    path, _ = ndpi_gen.make_ndpi(tmp_path / "in" / "s.ndpi")
    out = tmp_path / "out"
    r = _run(cli, path, out)
    assert r["code"] == 0 and r["status"] == ["ok"]
    assert (f"tag 65449 PropertyMap:{key}", "removed") in {(x["name"], x["action"]) for x in r["slides"][0]["removed"]}
    assert value.encode() not in next(out.glob("*.ndpi")).read_bytes()
    assert _verify(cli, out) == (0, [])


@pytest.mark.parametrize("key,value", [("OBJECTIVE_NAME", "EC Plan-Neofluar"), ("CAMERA_TYPE", "Pike F-505C")])
def test_mrxs_safe_key_that_is_not_vocabulary_is_blanked(cli, tmp_path, key, value):
    """The same for Slidedat.ini: a Zeiss objective or a camera the vocabulary lacks quarantined
    the slide; now the value is blanked."""
    from .fixtures import mrxs_gen

    info = mrxs_gen.make_mrxs(tmp_path / "in")
    ini = next((tmp_path / "in").rglob("Slidedat.ini"))
    text = ini.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith(f"{key} = "))
    ini.write_text(text.replace(line, f"{key} = {value}"))
    out = tmp_path / "out"
    r = _run(cli, next((tmp_path / "in").glob("*.mrxs")), out)
    assert r["code"] == 0 and r["status"] == ["ok"], info
    assert all(value.encode() not in f.read_bytes() for f in out.rglob("*") if f.is_file())
    assert _verify(cli, out) == (0, [])
