"""Red team stop 38, DICOM route: values that passed as verified — an unknown code's CodeValue of
any digits, standard attributes written with another VR than the dictionary's (text as FD), a
frame after the last frame of encapsulated Pixel Data, and an identifier of letters and digits
respelled in a kept attribute."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from wsianon.verify.dicom_attrs import check_dicom_attributes
from wsianon.verify.dicom_text import scan_dicom_text

from .test_redteam4_dicom import HD, _read, _run, _source

NAME, MRN, DOB, ACC = "Doe^Jane", "98765432", "19790101", "S19-4711"


def _planted(tmp_path: Path, dcm: Path, edit, name: str) -> Path:
    ds = _read(dcm)
    edit(ds)
    p = tmp_path / "planted" / name / dcm.parent.name / dcm.name
    p.parent.mkdir(parents=True)
    ds.save_as(p)
    return p


# ---------------------------------------------------------------------------
# 3. an unknown code keeps its CodeValue only in its scheme's form


def _birth_date_code(ds: Dataset) -> None:
    c = ds.OpticalPathSequence[0].IlluminationTypeCodeSequence[0]
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = DOB, "DCM", "ANONYMIZED"


def test_unknown_code_form():
    """The shared rule: every SNOMED CT concept pydicom ships has the SCT form (but one pydicom
    typo, 115347700, whose check digit is wrong), DCM's numeric codes theirs; a birth date, an MRN
    and digits of another scheme do not."""
    from pydicom.sr._concepts_dict import concepts

    from wsianon.profiles.dicom import unknown_code_form

    sct = {c for names in concepts["SCT"].values() for c in names}
    assert {c for c in sct if not unknown_code_form("SCT", c)} == {"115347700"}
    dcm = {c for names in concepts["DCM"].values() for c in names if c.isdigit()}
    assert all(unknown_code_form("DCM", c) for c in dcm)
    assert all(unknown_code_form(s, c) for s in ("NCIt", "UMLS") for names in concepts[s].values() for c in names)
    for scheme, value in (("DCM", DOB), ("SCT", DOB), ("SCT", MRN), ("DCM", "4711"), ("NCIt", "C19790101"), ("LN", "123456"), ("99WSIANON", "111744")):
        assert not unknown_code_form(scheme, value), (scheme, value)


def test_unknown_code_with_a_date_for_value_gets_the_dummy(tmp_path, cli):
    """Before: a code the dictionary does not know kept a CodeValue of any 1-18 digits (only its
    meaning became a dummy): a birth date as a DCM Illumination Type code was shared and verified.
    Now the route writes the dummy, and both verifier checks refuse the value in an output."""
    out = tmp_path / "out"
    code, console, slide = _run(cli, _source(tmp_path / "a", HD, _birth_date_code), out)
    assert code == 0 and slide["status"] == "ok", console
    (dcm,) = sorted(out.rglob("*.dcm"))
    assert DOB.encode() not in dcm.read_bytes()
    assert _read(dcm).OpticalPathSequence[0].IlluminationTypeCodeSequence[0].CodeValue == "ANONYMIZED"
    planted = _planted(tmp_path, dcm, _birth_date_code, "code")
    found, _n = check_dicom_attributes([planted])
    assert any("IlluminationTypeCodeSequence/CodeValue" in f for f in found), found
    text, _n, _k = scan_dicom_text([planted])
    assert any("code not in its scheme's dictionary" in f for f in text), text
    assert not any(DOB in f for f in found + text)
