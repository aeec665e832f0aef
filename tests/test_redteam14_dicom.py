"""Red team 14, DICOM route: free numbers in palette segment end points and DS/IS lists, and
identity values `verify` passed (the folder's name, an MRN's digits)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from wsianon.io.palette import is_canonical, is_ramp
from wsianon.verify.dicom_attrs import check_dicom_attributes
from wsianon.verify.dicom_text import scan_dicom_text

from .test_redteam4_dicom import HD, _read, _run, _shared_ok, _source

NAME, MRN, DOB = "Quentin Smithereens", "98765432", "19790101"
TEXT = f"{NAME} {MRN} {DOB}".encode()
POS = [0, 25, 50, 75, 100, 125, 150, 175, 200, 225, 255]


def _line(v0: int, v1: int, n: int) -> np.ndarray:
    i = np.arange(n + 1, dtype=np.int64)
    return v0 + (2 * (v1 - v0) * i + n) // (2 * n)


def _text_channel(chunk: bytes) -> np.ndarray:
    """Ten straight segments whose 11 end points are two characters each."""
    chunk = chunk.ljust(22, b" ")
    ends = [struct.unpack(">H", chunk[i : i + 2])[0] for i in range(0, 22, 2)]
    out = np.zeros(256, dtype=np.int64)
    for k in range(10):
        out[POS[k] : POS[k + 1] + 1] = _line(ends[k], ends[k + 1], POS[k + 1] - POS[k])
    return out


def _palette(ds: Dataset, channels) -> None:
    pal = Dataset()
    for c, vals in zip(("Red", "Green", "Blue"), channels):
        setattr(pal, f"{c}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(pal, f"{c}PaletteColorLookupTableData", np.asarray(vals, "<u2").tobytes())
    ds.OpticalPathSequence[0].PaletteColorLookupTableSequence = Sequence([pal])


def _text_palette(ds: Dataset) -> None:
    _palette(ds, [_text_channel(TEXT[22 * i : 22 * (i + 1)]) for i in range(3)])


def _planted(tmp_path: Path, dcm: Path, edit, folder: str | None = None) -> Path:
    ds = _read(dcm)
    edit(ds)
    p = tmp_path / "planted" / (folder or dcm.parent.name) / dcm.name
    p.parent.mkdir(parents=True)
    ds.save_as(p)
    return p


def test_palette_end_points_are_no_free_numbers(tmp_path, cli):
    """Before: ten exact straight segments a channel passed (io.palette.is_canonical), their 11 end
    points free 16-bit numbers (66 bytes: the name, MRN and birth date). Now a channel must be one
    clipped ramp: the route removes such a palette from the optical path (Type 3) and the verifier
    refuses it; a fluorescence ramp and a ramp clipped at full scale stay."""
    chans = [_text_channel(TEXT[22 * i : 22 * (i + 1)]) for i in range(3)]
    assert all(is_canonical(c) for c in chans) and not any(is_ramp(c) for c in chans[:2])
    clipped = np.concatenate([_line(0, 65535, 127), np.full(128, 65535)])  # reaches full scale half way
    assert is_ramp(clipped) and is_ramp(_line(0, 40000, 255)) and is_ramp(np.zeros(256))
    out = tmp_path / "out"
    code, console, slide = _run(cli, _source(tmp_path / "a", HD, _text_palette), out)
    assert code == 0 and slide["status"] == "ok", console
    (dcm,) = sorted(out.rglob("*.dcm"))
    assert "PaletteColorLookupTableSequence" not in _read(dcm).OpticalPathSequence[0]
    assert b"Smithereens" not in dcm.read_bytes()
    planted = _planted(tmp_path, dcm, _text_palette)
    found, _n = check_dicom_attributes([planted])
    assert any("palette data is not a colour ramp" in f for f in found)
    assert not any(NAME in f or MRN in f for f in found)


def _ratio_list(ds: Dataset) -> None:
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.LossyImageCompressionRatio = [str(b) for b in TEXT]


def test_a_ds_list_of_ascii_codes_is_trimmed_and_refused(tmp_path, cli):
    """Before: LossyImageCompressionRatio of 37 values (the ASCII codes of the canary) was kept by
    the route and passed by the verifier (DS/IS lists were only checked to be numbers). Now a list
    of an unbounded multiplicity holds one value, or one ratio a lossy method: the route trims it,
    the verifier refuses a longer one (also IS ReferencedFrameNumber, DS NumericValue)."""
    dcm = _shared_ok(cli, tmp_path, _source(tmp_path / "a", HD, _ratio_list))
    ds = _read(dcm, pixels=False)
    assert ds["LossyImageCompressionRatio"].VM == 1
    planted = _planted(tmp_path, dcm, _ratio_list)
    found, _n = check_dicom_attributes([planted])
    assert any("LossyImageCompressionRatio: a list of free numbers" in f for f in found), found
    # one ratio a method: two methods, two ratios pass; three ratios do not
    two = _planted(
        tmp_path / "two",
        dcm,
        lambda d: (
            _ratio_list(d),
            setattr(d, "LossyImageCompressionMethod", ["ISO_10918_1", "ISO_15444_1"]),
            setattr(d, "LossyImageCompressionRatio", ["10", "12"]),
        ),
    )
    assert not [f for f in check_dicom_attributes([two])[0] if "LossyImageCompressionRatio" in f]
    three = _planted(tmp_path / "three", dcm, lambda d: (_ratio_list(d), setattr(d, "LossyImageCompressionRatio", ["10", "12", "20"])))
    assert any("LossyImageCompressionRatio: a list of free numbers" in f for f in check_dicom_attributes([three])[0])


def _identity(value: str):
    def edit(ds: Dataset) -> None:
        ds.PatientName = ds.PatientID = ds.ContainerIdentifier = value
        ds.SpecimenDescriptionSequence[0].SpecimenIdentifier = value

    return edit


def test_identity_values_must_have_a_pseudonyms_shape(tmp_path, cli):
    """Before: ``verify`` accepted any identity value equal to the name of the folder the file lies
    in (another tool's output filed per patient passed the real name), and digits (an MRN) as
    PatientID/PatientName. Now an identity value is a keyed pseudonym by shape or a name the
    caller's pseudonym map gives."""
    dcm = _shared_ok(cli, tmp_path, _source(tmp_path / "a", HD, lambda ds: None))
    assert scan_dicom_text([dcm])[0] == []  # the route's own pseudonyms pass
    for folder in ("Smithereens^Quentin", "Quentin Smithereens"):
        p = _planted(tmp_path / folder.replace(" ", "_"), dcm, _identity(folder), folder=folder)
        found = scan_dicom_text([p])[0]
        assert {"PatientName", "PatientID", "ContainerIdentifier", "SpecimenIdentifier"} <= {k.rstrip(":") for f in found for k in f.replace("/", " ").split()}
        assert not any("Smithereens" in f or "Quentin" in f for f in found)
        assert scan_dicom_text([p], pseudonyms={folder})[0] == []  # named by a --pseudonyms map: accepted
    digits = _planted(tmp_path / "digits", dcm, lambda ds: (setattr(ds, "PatientID", MRN), setattr(ds, "PatientName", MRN)))
    found = scan_dicom_text([digits])[0]
    assert any("PatientID" in f for f in found) and any("PatientName" in f for f in found)
    assert not any(MRN in f for f in found)
