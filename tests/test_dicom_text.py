"""Vocabulary scan of DICOM header text (issue 8, 4(b) on the DICOM route; wsianon.verify.dicom_text).

* Our own DICOM outputs pass it (and are placed): the bundled CMU SVS and, with ../shared, a real
  VL WSI instance (highdicom) — the scan runs inside the pipeline's verification.
* Text planted after de-identification in an attribute the closed world allows is caught by
  ``wsianon verify FILE`` with no source: a name in SeriesDescription, free text in a kept sequence,
  a private-looking meaning of a dictionary code, a code of a private scheme, a clinic in
  Manufacturer and an extra ImageType term (the last two pass the closed-world check: only the
  vocabulary scan sees them).  Findings give tag number and keyword path, never the value.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from wsianon.verify.dicom_text import scan_dicom_text

from .conftest import BUNDLED, SHARED

PLANT = "Jane Roe"


def _read(p: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(p)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """{name: (output folder, report slide)} of ``run --target dicom`` on the CMU SVS (and highdicom)."""
    from typer.testing import CliRunner

    from wsianon.cli import app

    root = tmp_path_factory.mktemp("dcmtext")
    src = root / "in"
    src.mkdir()
    shutil.copy(BUNDLED / "CMU-1-Small-Region.svs", src / "CMU-1-Small-Region.svs")
    hd = SHARED / "dicom" / "highdicom_sm_image.dcm"
    if hd.exists():
        shutil.copy(hd, src / "highdicom_sm_image.dcm")
    out = root / "out"
    res = CliRunner().invoke(app, ["run", "--target", "dicom", str(src), "-o", str(out)], catch_exceptions=False)
    slides = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert res.exit_code == 0, [(s["format"], s["status"], s["error"]) for s in slides]
    return {s["format"]: (out / s["outputs"][0], s) for s in slides}


def test_own_outputs_pass_the_text_vocabulary(outputs):
    assert "aperio" in outputs
    for fmt, (folder, slide) in outputs.items():
        checks = {c["check"]: c for c in slide["verification"]["checks"]}
        assert checks["dicom: text vocabulary"]["ok"], (fmt, checks["dicom: text vocabulary"])
        found, n, _kept = scan_dicom_text(sorted(folder.glob("*.dcm")))
        assert found == [] and n > 50


def _volume(outputs) -> Path:
    folder, _ = outputs["aperio"]
    return next(p for p in sorted(folder.glob("*.dcm")) if "VOLUME" in list(_read(p).ImageType))


def _plant_series_description(ds):
    ds.SeriesDescription = PLANT


def _plant_optical_path_text(ds):
    ds.OpticalPathSequence[0].OpticalPathDescription = f"slide of {PLANT}"


def _plant_code_meaning(ds):
    ds.SpecimenDescriptionSequence[0].SpecimenTypeCodeSequence[0].CodeMeaning = f"{PLANT} specimen"


def _plant_private_code(ds):
    c = ds.OpticalPathSequence[0].IlluminationTypeCodeSequence[0]
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = "JR-0042", "99ROE", "Roe lab"


def _plant_manufacturer(ds):
    ds.Manufacturer = f"{PLANT} Pathology Clinic"


def _plant_image_type(ds):
    ds.ImageType = list(ds.ImageType) + ["ROE"]


PLANTS = {
    "SeriesDescription": (_plant_series_description, "(0008,103E) SeriesDescription", False),
    "OpticalPathDescription": (_plant_optical_path_text, "(0048,0107) OpticalPathSequence/OpticalPathDescription", False),
    "CodeMeaning": (_plant_code_meaning, "(0008,0104) SpecimenDescriptionSequence/SpecimenTypeCodeSequence/CodeMeaning", False),
    "private code": (_plant_private_code, "(0008,0102) OpticalPathSequence/IlluminationTypeCodeSequence/CodingSchemeDesignator", False),
    "Manufacturer": (_plant_manufacturer, "(0008,0070) Manufacturer", True),
    "ImageType": (_plant_image_type, "(0008,0008) ImageType", True),
}


@pytest.mark.parametrize("place", list(PLANTS))
def test_planted_text_caught_by_verify_without_source(outputs, tmp_path, cli, place):
    plant, where, only_vocab = PLANTS[place]
    ds = _read(_volume(outputs))
    plant(ds)
    dst = tmp_path / "WSI-planted" / "0001-volume.dcm"
    dst.parent.mkdir()
    ds.save_as(dst)
    code, stdout, _ = cli("verify", "--json", str(dst))
    assert code == 1
    checks = {c["check"]: c for c in json.loads(stdout)[0]["checks"]}
    voc = checks["dicom: text vocabulary"]
    assert not voc["ok"] and where in voc["detail"], voc
    if only_vocab:  # the closed world allows the attribute and its form: only the vocabulary sees the text
        assert checks["dicom: closed world"]["ok"], checks["dicom: closed world"]
    for word in ("Jane", "Roe", "ROE", "JR-0042"):
        assert word not in stdout


def test_identity_values_need_a_keyed_pseudonym_or_the_given_one(outputs, tmp_path):
    ds = _read(_volume(outputs))
    ds.PatientID = ds.PatientName = "Roe^Jane"
    dst = tmp_path / "out" / "0001-volume.dcm"
    dst.parent.mkdir()
    ds.save_as(dst)
    found, _n, _k = scan_dicom_text([dst])
    assert any("(0010,0020) PatientID" in f for f in found) and not any("Roe" in f for f in found)
    # a pseudonym the pipeline knows (a pseudonym map's value) is accepted
    found, _n, _k = scan_dicom_text([dst], pseudonyms={"Roe^Jane"})
    assert not any("PatientID" in f or "PatientName" in f for f in found)
