"""DICOM WSI levels written as concatenations (PS3.3 C.7.6.16.2.2): one level split over several
instances sharing a Concatenation UID, frame k of the part at Concatenation Frame Offset Number o
being frame o + k of the level's TILED_FULL order. Real writers (wsidicom's ConcatenationByFrames,
PACS) store large levels this way; the route refused them ("frames without a place of their own")
and `wsianon verify` failed them (dicom: pyramid, dicom: frame padding, dicom: dciodvfy).

A clean concatenation is now shared and verified; parts that do not make one whole exactly
(overlap, gap, a part missing, parts describing different images), a part whose frames are
another picture, and a concatenation UID that was not remapped are refused (fail closed)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames

from .conftest import shared
from .fixtures import concat_gen

WSI2DCM = "dicom/wsi2dcm-cmu-1-small-region"
L0, L1 = "level-0-frames-0-30.dcm", "level-1-frames-0-9.dcm"


def _run(cli, src: Path, out: Path) -> dict:
    code, stdout, _ = cli("run", src, "--out", out, "--target", "dicom", "--no-review-sheet", "--json")
    slide = json.loads(stdout)["slides"][0]
    return {"code": code, "status": slide["status"], "error": slide.get("error") or "", "slide": slide}


def _verify(cli, out: Path) -> tuple[int, list[dict]]:
    code, stdout, _ = cli("verify", out, "--json")
    return code, [c for v in json.loads(stdout) for c in v["checks"] if not c["ok"]]


def _read(p: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(p)


def _outputs(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.dcm"))


def _parts(out: Path) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for p in _outputs(out):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        if "ConcatenationUID" in ds:
            groups.setdefault(str(ds.ConcatenationUID), []).append(p)
    return groups


def _refused(r: dict) -> None:
    assert r["code"] != 0 and r["status"] == "error", r
    assert "refused, nothing written" in r["error"]


# -- a clean concatenation ---------------------------------------------------------------------


def test_clean_concatenation_is_shared_verified_and_passes_verify(cli, tmp_path):
    src = concat_gen.make(tmp_path / "in", shared(WSI2DCM))
    out = tmp_path / "out"
    r = _run(cli, src, out)
    assert r["code"] == 0 and r["status"] == "ok", r
    checks = {c["check"]: c for c in r["slide"]["verification"]["checks"]}
    assert all(c["ok"] for c in checks.values())
    groups = _parts(out)
    assert sorted(len(v) for v in groups.values()) == [2, 4]  # both levels still concatenations
    src_uids = {str(_read(p).ConcatenationUID) for p in src.glob("*part*.dcm")}
    src_sources = {str(_read(p).SOPInstanceUIDOfConcatenationSource) for p in src.glob("*part*.dcm")}
    for uid, parts in groups.items():
        assert uid not in src_uids  # remapped, like every other UID
        dss = [pydicom.dcmread(p, stop_before_pixels=True) for p in parts]
        assert len({str(d.SOPInstanceUIDOfConcatenationSource) for d in dss}) == 1
        assert str(dss[0].SOPInstanceUIDOfConcatenationSource) not in src_sources
    code, failed = _verify(cli, out)
    assert code == 0, failed


def test_concatenation_written_by_wsidicom_passes(cli, tmp_path):
    """wsidicom's own writer (``ConcatenationByFrames``), as the false-positive hunt found it."""
    from wsidicom import WsiDicom
    from wsidicom.options import ConcatenationByFrames

    src = tmp_path / "in"
    src.mkdir()
    with WsiDicom.open(shared(WSI2DCM)) as w:
        w.save(src, concatenation=ConcatenationByFrames(4))
    assert any("ConcatenationUID" in pydicom.dcmread(p, stop_before_pixels=True) for p in src.glob("*.dcm"))
    out = tmp_path / "out"
    r = _run(cli, src, out)
    assert r["code"] == 0 and r["status"] == "ok", r
    code, failed = _verify(cli, out)
    assert code == 0, failed


# -- parts that are not one whole: refused by the route -------------------------------------------


def test_overlapping_parts_are_refused(cli, tmp_path):
    src = concat_gen.make(tmp_path / "in", shared(WSI2DCM), {L0: [8, 8, 8, 6]}, {L0: [0, 8, 14, 24]})
    r = _run(cli, src, tmp_path / "out")
    _refused(r)
    assert "overlapping" in r["error"]
    assert not _outputs(tmp_path / "out")


def test_a_gap_between_parts_is_refused(cli, tmp_path):
    src = concat_gen.make(tmp_path / "in", shared(WSI2DCM), {L0: [8, 8, 6, 6]}, {L0: [0, 8, 18, 24]})
    r = _run(cli, src, tmp_path / "out")
    _refused(r)
    assert "gap" in r["error"]
    assert not _outputs(tmp_path / "out")


def test_a_missing_part_is_refused(cli, tmp_path):
    src = concat_gen.make(tmp_path / "in", shared(WSI2DCM))
    (src / "level-0-frames-0-30-part3.dcm").unlink()
    r = _run(cli, src, tmp_path / "out")
    _refused(r)
    assert "part missing" in r["error"]


def test_a_missing_last_part_without_a_total_is_refused(cli, tmp_path):
    """In-concatenation Total Number is Type 3: without it a missing last part shows only in the
    frame count, which must be the tile grid's."""

    def no_total(_name, parts):
        for p in parts:
            del p.InConcatenationTotalNumber

    src = concat_gen.make(tmp_path / "in", shared(WSI2DCM), tamper=no_total)
    (src / "level-0-frames-0-30-part4.dcm").unlink()
    r = _run(cli, src, tmp_path / "out")
    _refused(r)
    assert "frames are not its tile grid" in r["error"]


def test_a_part_disagreeing_on_the_matrix_size_is_refused(cli, tmp_path):
    def wider(name, parts):
        if name == L0:
            parts[1].TotalPixelMatrixColumns = int(parts[1].TotalPixelMatrixColumns) + 500

    r = _run(cli, concat_gen.make(tmp_path / "in", shared(WSI2DCM), tamper=wider), tmp_path / "out")
    _refused(r)
    assert "disagree on TotalPixelMatrixColumns" in r["error"]


def test_a_part_disagreeing_on_the_focal_planes_is_refused(cli, tmp_path):
    def other_planes(name, parts):
        if name == L1:
            parts[1].TotalPixelMatrixFocalPlanes = 2

    r = _run(cli, concat_gen.make(tmp_path / "in", shared(WSI2DCM), tamper=other_planes), tmp_path / "out")
    _refused(r)
    assert "disagree on TotalPixelMatrixFocalPlanes" in r["error"]


def _label_frames(parts) -> None:
    """The frames of the level's second part replaced by a photo of a label (black text bars on
    white, JPEG like the level's frames)."""
    from turbojpeg import TJSAMP_420, TurboJPEG

    p = parts[1]
    h, w = int(p.Rows), int(p.Columns)
    img = np.full((h, w, 3), 250, np.uint8)
    for y in range(20, h - 20, 60):
        img[y : y + 25, 30 : w - 30] = 10
    frame = TurboJPEG().encode(img, quality=90, jpeg_subsample=TJSAMP_420)
    n = len(list(generate_frames(p.PixelData, number_of_frames=int(p.NumberOfFrames))))
    p.PixelData = encapsulate([frame] * n)


def test_a_part_whose_frames_are_a_label_photo_is_refused(cli, tmp_path):
    """The parts are one picture: a level's part that is another picture fails dicom: pyramid
    (before, a part alone had no grid and was never compared)."""

    def label(name, parts):
        if name == L1:
            _label_frames(parts)

    out = tmp_path / "out"
    r = _run(cli, concat_gen.make(tmp_path / "in", shared(WSI2DCM), {L1: [3, 6]}, tamper=label), out)
    assert r["code"] != 0 and r["status"] == "failed", r
    bad = {c["check"]: c["detail"] for c in r["slide"]["verification"]["checks"] if not c["ok"]}
    assert "dicom: pyramid" in bad and "pixels are not the slide's" in bad["dicom: pyramid"]
    assert not _outputs(out)  # quarantined


# -- the verifier on its own: an output whose parts are not one whole fails -----------------------


@pytest.fixture
def clean_out(cli, tmp_path) -> Path:
    out = tmp_path / "out"
    assert _run(cli, concat_gen.make(tmp_path / "in", shared(WSI2DCM)), out)["code"] == 0
    for p in _outputs(out):
        p.chmod(0o644)
    return out


def _level0_parts(out: Path) -> list[Path]:
    groups = _parts(out)
    parts = next(v for v in groups.values() if len(v) == 4)
    return sorted(parts, key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InConcatenationNumber))


def test_verify_fails_an_output_missing_a_part(cli, clean_out):
    _level0_parts(clean_out)[2].unlink()
    code, failed = _verify(cli, clean_out)
    assert code == 1
    assert any(c["check"] == "dicom: pyramid" and "part missing" in c["detail"] for c in failed)


def test_verify_fails_overlapping_parts(cli, clean_out):
    p = _level0_parts(clean_out)[2]
    ds = _read(p)
    ds.ConcatenationFrameOffsetNumber = 12
    ds.save_as(p)
    code, failed = _verify(cli, clean_out)
    assert code == 1
    assert any(c["check"] == "dicom: pyramid" and "overlapping" in c["detail"] for c in failed)
    # the part's frame count dciodvfy flags is counted only for a concatenation proven whole
    assert any(c["check"] == "dicom: dciodvfy" for c in failed)


def test_verify_fails_a_concatenation_uid_not_remapped(cli, tmp_path, clean_out):
    """The source's Concatenation UID put back into the output: not keyed, refused."""
    src = concat_gen.make(tmp_path / "in2", shared(WSI2DCM))
    original = str(_read(src / "level-0-frames-0-30-part1.dcm").ConcatenationUID)
    for p in _level0_parts(clean_out):
        ds = _read(p)
        ds.ConcatenationUID = original
        ds.save_as(p)
    code, failed = _verify(cli, clean_out)
    assert code == 1
    assert any(c["check"] == "dicom: closed world" and "ConcatenationUID" in c["detail"] for c in failed)


def test_verify_fails_a_part_with_another_concatenation_uid(cli, clean_out):
    """A part whose Concatenation UID differs from its siblings' (another keyed UID): neither
    concatenation is whole."""
    parts = _level0_parts(clean_out)
    other = str(_read(_outputs(clean_out)[0]).SOPInstanceUID)  # a keyed UID of the slide
    ds = _read(parts[1])
    ds.ConcatenationUID = other
    ds.save_as(parts[1])
    code, failed = _verify(cli, clean_out)
    assert code == 1
    assert any(c["check"] == "dicom: pyramid" and "concatenation" in c["detail"] for c in failed)


# -- the thumbnail's reference read over a concatenation ------------------------------------------


@pytest.mark.parametrize("sampled", [False, True])
def test_thumbnail_reference_over_parts_equals_the_unsplit_level(tmp_path, monkeypatch, sampled):
    """``dicom: thumbnail`` renders a VOLUME level as its reference: over a concatenation's parts
    (``decode.wholes``) it is the unsplit level's, assembled whole or sampled frame by frame."""
    from wsianon.verify import thumbnail as th
    from wsianon.verify.dicom.decode import wholes

    if sampled:
        monkeypatch.setattr(th, "REF_MAX_PIXELS", 1000)
    whole_path = shared(WSI2DCM) / L0
    whole = _read(whole_path)
    paths = []
    for i, p in enumerate(concat_gen.split(whole, [7, 9, 8, 6])):
        paths.append(tmp_path / f"part{i}.dcm")
        p.save_as(paths[-1], enforce_file_format=True)
    [(first, ds, parts)] = wholes([(p, _read(p)) for p in reversed(paths)])
    assert first == paths[0] and [n for *_x, n in parts] == [7, 9, 8, 6]
    expected = th.dicom_reference(whole_path, whole, (48, 64))
    assert np.allclose(th.dicom_reference(first, ds, (48, 64), parts), expected)
    with pytest.raises(ValueError):  # a part alone is no image
        th.dicom_reference(first, ds, (48, 64), parts[:1]) if sampled else th.dicom_reference(first, ds, (48, 64))


def test_a_thumbnail_is_judged_against_a_concatenated_level(cli, tmp_path):
    """A THUMBNAIL whose reference level (the smallest at least 4x its grid) is a concatenation:
    judged over the parts (before, the reference could not be read: 'cannot be judged')."""
    src = concat_gen.make(tmp_path / "in", shared(WSI2DCM), {L0: [8, 8, 8, 6], L1: [5, 4], "level-2-frames-0-4.dcm": [2, 2]})
    for p in src.glob("level-*.dcm"):
        if int(p.name.split("-")[1]) >= 3:
            p.unlink()
    thumb = _read(shared(WSI2DCM) / "level-3-frames-0-1.dcm")
    thumb.ImageType = ["DERIVED", "PRIMARY", "THUMBNAIL", "RESAMPLED"]
    thumb.save_as(src / "thumbnail.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    r = _run(cli, src, out)
    assert r["code"] == 0 and r["status"] == "ok", r
    checks = {c["check"]: c["detail"] for c in r["slide"]["verification"]["checks"]}
    assert "1 THUMBNAIL instance(s): the slide's pyramid downsampled" in checks["dicom: thumbnail"]
    code, failed = _verify(cli, out)
    assert code == 0, failed


def test_concatenation_attributes_without_a_concatenation_uid_are_refused(cli, tmp_path):
    def no_uid(name, parts):
        if name == L1:
            del parts[1].ConcatenationUID

    r = _run(cli, concat_gen.make(tmp_path / "in", shared(WSI2DCM), tamper=no_uid), tmp_path / "out")
    _refused(r)
    assert "without a readable Concatenation UID" in r["error"]


def test_verify_with_the_source_names_a_concatenation_uid_not_remapped(cli, tmp_path):
    """With the source at hand (``verify --source``), the source's own Concatenation UID in the
    output is named by ``dicom: profile`` (a UID not replaced), besides its form."""
    src = concat_gen.make(tmp_path / "in", shared(WSI2DCM))
    out = tmp_path / "out"
    assert _run(cli, src, out)["code"] == 0
    original = str(_read(src / "level-0-frames-0-30-part1.dcm").ConcatenationUID)
    for p in _level0_parts(out):
        p.chmod(0o644)
        ds = _read(p)
        ds.ConcatenationUID = original
        ds.save_as(p)
    code, stdout, _ = cli("verify", out, "--source", src, "--json")
    failed = [c for v in json.loads(stdout) for c in v["checks"] if not c["ok"]]
    assert code == 1
    assert any(c["check"] == "dicom: profile" and "ConcatenationUID UID not replaced" in c["detail"] for c in failed), failed


def test_parts_numbered_out_of_frame_order_are_refused(cli, tmp_path):
    """A reader that orders the parts by In-concatenation Number must draw what the checks compare
    (frames placed by their offset): numbers must rise with the offsets."""

    def swapped(name, parts):
        if name == L0:
            parts[0].InConcatenationNumber, parts[1].InConcatenationNumber = 2, 1

    r = _run(cli, concat_gen.make(tmp_path / "in", shared(WSI2DCM), tamper=swapped), tmp_path / "out")
    _refused(r)
    assert "numbers not in the order of their frames" in r["error"]
