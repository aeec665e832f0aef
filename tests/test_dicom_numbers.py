"""Binary numbers as a hiding place (red team, this stop): text stored as the bytes of US/UL values
(``Smit`` is the UL 1953066323). Lists of them that the VL WSI IOD allows with any multiplicity
(a Frame Extraction item's SimpleFrameList, a protocol's element numbers, the private-element
numbers of a de-identification record) carried a whole name into an output reported clean, and
``wsianon verify`` passed it. The route now removes the sequences that hold them; the verifier
judges binary numbers from the output alone: the standard's multiplicity, a list only where a
check judges it (DimensionIndexValues), a range where the profile data gives one."""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from wsianon.verify.dicom_attrs import check_dicom_attributes

from .fixtures.dicom_gen import make_dicom

NAME = "Smithereens^Quentin MRN98765432"


def _u32(text: str) -> list[int]:
    b = text.encode() + b" " * (-len(text) % 4)
    return list(struct.unpack(f"<{len(b) // 4}I", b))


def _u16(text: str) -> list[int]:
    b = text.encode() + b" " * (-len(text) % 2)
    return list(struct.unpack(f"<{len(b) // 2}H", b))


def _read(p: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(p)


def _volume(folder: Path) -> Path:
    vols = [(int(_read(f).TotalPixelMatrixColumns), f) for f in sorted(folder.rglob("*.dcm")) if "VOLUME" in _read(f).ImageType]
    return max(vols)[1]


def _with_lists(ds: Dataset, text: str) -> None:
    fe = Dataset()
    fe.MultiFrameSourceSOPInstanceUID = ds.SOPInstanceUID
    fe.SimpleFrameList = _u32(text)
    ds.FrameExtractionSequence = Sequence([fe])
    proto = Dataset()
    proto.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.200.1"
    proto.ReferencedSOPInstanceUID = "1.2.3.4"
    proto.SourceAcquisitionProtocolElementNumber = _u16(text)
    ds.ReferencedDefinedProtocolSequence = Sequence([proto])
    action = Dataset()
    action.IdentifyingPrivateElements = _u16(text)
    group = Dataset()
    group.PrivateGroupReference = 0x0009
    group.PrivateCreatorReference = "ACME"
    group.DeidentificationActionSequence = Sequence([action])
    ds.PrivateDataElementCharacteristicsSequence = Sequence([group])


def test_the_route_removes_the_sequences_of_free_number_lists(cli, tmp_path):
    fx = make_dicom(tmp_path / "in")
    vol = _volume(fx.path)
    ds = _read(vol)
    _with_lists(ds, NAME)
    ds.save_as(vol)
    out = tmp_path / "out"
    code, stdout, err = cli("run", "--target", "dicom", fx.path, "-o", out, "--no-review-sheet")
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert code == 0 and slide["status"] == "ok", (stdout + err, slide["verification"])
    removed = {r["name"] for r in slide["removed"]}
    assert {"FrameExtractionSequence", "ReferencedDefinedProtocolSequence", "PrivateDataElementCharacteristicsSequence"} <= removed
    blob = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert b"Smith" not in blob and b"MRN98" not in blob
    for f in out.rglob("*.dcm"):
        d = _read(f)
        assert not {"FrameExtractionSequence", "ReferencedDefinedProtocolSequence", "PrivateDataElementCharacteristicsSequence"} & set(d.dir())


def _dimension(pointer: int) -> Dataset:
    dim = Dataset()
    dim.DimensionIndexPointer = pointer
    dim.FunctionalGroupPointer = 0x0048021A  # PlanePositionSlideSequence
    return dim


def _sparse(d: Dataset) -> None:
    """Per-frame functional groups for ``d``'s frames in TILED_FULL order: each frame's place and
    its dimension indices (column, row: the rank of its place among the level's columns and rows),
    a duration that is the same in every frame."""
    cols = -(-int(d.TotalPixelMatrixColumns) // int(d.Columns))
    items = []
    for k in range(int(d.NumberOfFrames)):
        pos = Dataset()
        pos.ColumnPositionInTotalImagePixelMatrix = 1 + (k % cols) * int(d.Columns)
        pos.RowPositionInTotalImagePixelMatrix = 1 + (k // cols) * int(d.Rows)
        content = Dataset()
        content.DimensionIndexValues = [1 + k % cols, 1 + k // cols]
        content.FrameAcquisitionDuration = 12.5
        item = Dataset()
        item.PlanePositionSlideSequence = Sequence([pos])
        item.FrameContentSequence = Sequence([content])
        items.append(item)
    d.PerFrameFunctionalGroupsSequence = Sequence(items)
    d.DimensionOrganizationType = "TILED_SPARSE"
    d.DimensionIndexSequence = Sequence([_dimension(0x0048021E), _dimension(0x0048021F)])


def _planted(tmp_path: Path, clean: Path, name: str, edit) -> Path:
    ds = _read(clean)
    edit(ds)
    p = tmp_path / "planted" / name / clean.name
    p.parent.mkdir(parents=True)
    ds.save_as(p)
    return p


def test_the_verifier_judges_binary_numbers_from_the_output(cli, tmp_path):
    fx = make_dicom(tmp_path / "in")
    out = tmp_path / "out"
    code, stdout, err = cli("run", "--target", "dicom", fx.path, "-o", out, "--no-review-sheet")
    assert code == 0, stdout + err
    clean = _volume(out)
    assert check_dicom_attributes([clean])[0] == []

    def lists(d):
        _with_lists(d, NAME)

    def cielab_too_many(d):
        d.RecommendedAbsentPixelCIELabValue = _u16("Smithereens^Q")  # 7 values, the standard allows 3

    def pass_band_text(d):
        d.OpticalPathSequence[0].ImagePathFilterPassBand = _u16("MRN9")

    def wavelength_text(d):
        d.OpticalPathSequence[0].IlluminationWaveLength = struct.unpack("<f", b"ZQX2")[0]

    def wavelength_in_range(d):  # 'ZQXD' as FL is 865.318 nm: in the range, but not in 0.1 nm steps
        d.OpticalPathSequence[0].IlluminationWaveLength = struct.unpack("<f", b"ZQXD")[0]

    def dimension_indices(d):
        item = Dataset()
        item.DimensionIndexValues = _u32("Smit")
        d.SharedFunctionalGroupsSequence[0].FrameContentSequence = Sequence([item])

    def zonal_map_pointer(d):  # (1010,xxxx) takes any element number: two free bytes a pointer
        dim = Dataset()
        dim.add_new(0x00209165, "AT", 0x1010_5A51)
        d.DimensionIndexSequence = Sequence([_dimension(0x0048021E), dim])

    def pointer_list(d):  # DimensionIndexPointer allows one value
        d.DimensionIndexSequence = Sequence([_dimension(0x0048021E)])
        d.DimensionIndexSequence[0].DimensionIndexPointer = [0x0048021E] * 7

    def many_dimensions(d):
        d.DimensionIndexSequence = Sequence([_dimension(0x0048021E) for _ in range(9)])

    def per_frame_duration(d):  # 8 free bytes a frame
        _sparse(d)
        for k, item in enumerate(d.PerFrameFunctionalGroupsSequence):
            item.FrameContentSequence[0].FrameAcquisitionDuration = struct.unpack("<d", NAME.encode()[8 * k % 24 : 8 * k % 24 + 8])[0]

    def per_frame_indices_spelling(d):  # one index a letter, whatever the frame's place
        _sparse(d)
        for k, item in enumerate(d.PerFrameFunctionalGroupsSequence):
            item.FrameContentSequence[0].DimensionIndexValues = [1 + k % 2, 1]

    cases = {
        "lists": (
            lists,
            [
                "FrameExtractionSequence/SimpleFrameList: a list of free numbers",
                "SourceAcquisitionProtocolElementNumber: a list of free numbers",
                "IdentifyingPrivateElements: a list of free numbers",
            ],
        ),
        "cielab": (cielab_too_many, ["RecommendedAbsentPixelCIELabValue: 7 values where the standard allows 3"]),
        "pass_band": (pass_band_text, ["OpticalPathSequence/ImagePathFilterPassBand: a value outside"]),
        "wavelength": (wavelength_text, ["OpticalPathSequence/IlluminationWaveLength: a value outside"]),
        "wavelength_in_range": (wavelength_in_range, ["OpticalPathSequence/IlluminationWaveLength: a value outside"]),
        "dimensions": (
            dimension_indices,
            ["SharedFunctionalGroupsSequence/FrameContentSequence/DimensionIndexValues: dimension indices shared by every frame"],
        ),
        "zonal_map": (
            zonal_map_pointer,
            ["DimensionIndexSequence/DimensionIndexPointer: a tag pointer to no attribute of the DICOM dictionary (or to a repeating group)"],
        ),
        "pointer_list": (pointer_list, ["DimensionIndexSequence/DimensionIndexPointer: 7 values where the standard allows 1"]),
        "many_dimensions": (many_dimensions, ["DimensionIndexSequence: more than 8 dimensions"]),
        "per_frame_duration": (per_frame_duration, ["FrameContentSequence/FrameAcquisitionDuration: a number that differs from frame to frame"]),
        "per_frame_indices": (per_frame_indices_spelling, ["DimensionIndexValues: not one index per value"]),
    }
    for name, (edit, needles) in cases.items():
        planted = _planted(tmp_path, clean, name, edit)
        found, _n = check_dicom_attributes([planted])
        for needle in needles:
            assert any(needle in f for f in found), (name, found)
        assert not any("Smit" in f or "MRN" in f for f in found)
    # the same through the command line: NOT CLEAN, exit 1
    code, stdout, _ = cli("verify", tmp_path / "planted" / "lists", "--json")
    assert code == 1 and "a list of free numbers" in stdout


def test_judged_numbers_that_are_in_bounds_pass(cli, tmp_path):
    """What a real output holds: one value where the standard allows a list, a wavelength in nm,
    the standard's multiplicity, a TILED_SPARSE instance's per-frame places with dimension indices
    that follow them and a number that is the same in every frame."""
    fx = make_dicom(tmp_path / "in")
    out = tmp_path / "out"
    code, stdout, err = cli("run", "--target", "dicom", fx.path, "-o", out, "--no-review-sheet")
    assert code == 0, stdout + err
    clean = _volume(out)

    def plausible(d):
        d.RecommendedAbsentPixelCIELabValue = [65535, 32896, 32896]
        d.OpticalPathSequence[0].ImagePathFilterPassBand = [400, 700]
        d.OpticalPathSequence[0].IlluminationWaveLength = 532.5
        _sparse(d)  # per-frame places and dimension indices as a TILED_SPARSE instance holds them

    planted = _planted(tmp_path, clean, "plausible", plausible)
    found, _n = check_dicom_attributes([planted])
    assert found == [], found
    assert len(_read(planted).PerFrameFunctionalGroupsSequence) > 1


def test_a_numeric_specimen_localization_item_is_shared(cli, tmp_path):
    """False positive found by the red team: the Content Item Macro's value type is NUMERIC
    (PS3.3 Table 10-2; SR's is NUM); a conformant Specimen Localization item of that type was
    quarantined as a word outside the vocabulary."""

    def code(value: str, scheme: str, meaning: str) -> Sequence:
        c = Dataset()
        c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
        return Sequence([c])

    fx = make_dicom(tmp_path / "in")
    vol = _volume(fx.path)
    ds = _read(vol)
    item = Dataset()
    item.ValueType = "NUMERIC"
    item.ConceptNameCodeSequence = code("111718", "DCM", "Location of Specimen X offset")
    item.MeasurementUnitsCodeSequence = code("mm", "UCUM", "millimeter")
    item.NumericValue = "12.5"
    ds.SpecimenDescriptionSequence[0].SpecimenLocalizationContentItemSequence = Sequence([item])
    ds.save_as(vol)
    out = tmp_path / "out"
    code_, stdout, err = cli("run", "--target", "dicom", fx.path, "-o", out, "--no-review-sheet")
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert code_ == 0 and slide["status"] == "ok", (stdout + err, slide["verification"])
    kept = [
        _read(f).SpecimenDescriptionSequence[0].get("SpecimenLocalizationContentItemSequence") for f in out.rglob("*.dcm") if "VOLUME" in _read(f).ImageType
    ]
    assert any(seq and seq[0].ValueType == "NUMERIC" for seq in kept)
