"""``--thumbnail remove``: nothing but the pyramid is shared.

A kept thumbnail is proven to be the slide downsampled at 64 px (``thumbnail-provenance``), which
does not see small text written onto it (README, Limitations).  A data manager who wants no
image beside the pyramid removes it: on both routes, for every format that has one (SVS/GT450
thumbnail IFD, Ventana ``Thumbnail`` IFD, MRXS SlidePreview, a DICOM THUMBNAIL instance), and the
verifier then refuses any thumbnail that remains.  The default keeps it (as before).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from .test_thumbnail_provenance import NAME, THUMB, _svs, text_label


def _report(out: Path) -> dict:
    return json.loads((out / "wsianon-report.json").read_text())


def _assoc(path: Path) -> set[str]:
    import openslide

    with openslide.OpenSlide(str(path)) as s:
        return set(s.associated_images)


def _kinds(out: Path) -> set[str]:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {str(pydicom.dcmread(p, stop_before_pixels=True).ImageType[2]) for p in out.rglob("*.dcm")}


def _removed(report: dict) -> set[str]:
    return {r.get("name") for r in report["slides"][0].get("removed") or [] if r.get("kind") == "image"}


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_thumbnail_remove_shares_the_slide_without_its_thumbnail(cli, tmp_path, target):
    """An SVS whose thumbnail IFD holds a label photo is quarantined when its thumbnail is kept
    (test_thumbnail_provenance); with --thumbnail remove the slide is shared, verified, with no
    thumbnail at all — the photo's IFD unlinked and its bytes gone."""
    import tifffile

    src = _svs(tmp_path, text_label(THUMB))
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", target, "--thumbnail", "remove", str(src), "-o", str(out))
    assert code == 0, (stdout + stderr)[-1500:]
    assert NAME not in stdout + stderr
    report = _report(out)
    s = report["slides"][0]
    assert report["policy"]["thumbnail"] == "remove" and s["status"] == "ok"
    assert "thumbnail" in _removed(report), s.get("removed")
    if target == "native":
        (placed,) = out.glob("*.svs")
        assert "thumbnail" not in _assoc(placed)
        with tifffile.TiffFile(placed) as tf:
            assert all(p.shape[:2] != THUMB[::-1] for p in tf.pages)  # no page of the thumbnail's size
    else:
        assert _kinds(out) == {"VOLUME"}


def test_the_default_keeps_the_thumbnail(cli, tmp_path):
    """Without the option a real thumbnail stays (proven to be the slide), as before."""
    src = _svs(tmp_path)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "native", str(src), "-o", str(out))
    assert code == 0, (stdout + stderr)[-1500:]
    (placed,) = out.glob("*.svs")
    assert "thumbnail" in _assoc(placed)
    assert _report(out)["policy"]["thumbnail"] == "keep"


def test_ventana_and_mrxs_thumbnails_are_removed(cli, tmp_path):
    """The Ventana ``Thumbnail`` IFD and the MRXS SlidePreview (OpenSlide's ``thumbnail`` of both)
    are kept by default and removed with the option; both slides verified."""
    from .fixtures.bif_gen import make_bif
    from .fixtures.mrxs_gen import make_mrxs

    (tmp_path / "src").mkdir()
    bif = make_bif(tmp_path / "src" / "CASE-BIF-1.bif").path
    mrxs = make_mrxs(tmp_path / "src", "CASE-MRXS-1").mrxs
    for src in (bif, mrxs):
        assert "thumbnail" in _assoc(src), src.name
    for option, kept in (("keep", True), ("remove", False)):
        out = tmp_path / f"out-{option}"
        code, stdout, stderr = cli("run", "--target", "native", "--thumbnail", option, str(bif), str(mrxs), "-o", str(out))
        assert code == 0, (stdout + stderr)[-1500:]
        report = _report(out)
        assert [s["status"] for s in report["slides"]] == ["ok", "ok"]
        placed = sorted([*out.glob("*.bif"), *out.glob("*.mrxs")])
        assert len(placed) == 2
        for p in placed:
            assert ("thumbnail" in _assoc(p)) is kept, (option, p.suffix)


def test_a_dicom_inputs_thumbnail_instance_is_removed(cli, tmp_path):
    """A DICOM input's THUMBNAIL instance is dropped with the option (kept without it)."""
    from .fixtures.dicom_gen import make_dicom

    fx = make_dicom(tmp_path / "in" / "CASE-8803", seed_svs=_svs(tmp_path / "seed"))
    assert "THUMBNAIL" in _kinds(fx.path)
    for option, kinds in (("keep", {"VOLUME", "THUMBNAIL"}), ("remove", {"VOLUME"})):
        out = tmp_path / f"out-{option}"
        code, stdout, stderr = cli("run", "--target", "dicom", "--thumbnail", option, str(fx.path), "-o", str(out))
        assert code == 0, (stdout + stderr)[-1500:]
        assert _kinds(out) == kinds, option


def test_verifiers_refuse_a_thumbnail_the_policy_removes(tmp_path):
    """The checks hold the output to the policy: a thumbnail left under --thumbnail remove fails
    (native: ``associated-images``; DICOM: ``dicom: images``)."""
    import pydicom

    from wsianon.pipeline.model import Verdict
    from wsianon.pipeline.verify import allowed_associated
    from wsianon.profiles.policy import Policy
    from wsianon.verify.dicom.images import check_record_and_images

    assert "thumbnail" in allowed_associated(None, Policy())
    assert "thumbnail" not in allowed_associated(None, Policy(thumbnail="remove"))
    ds = pydicom.Dataset()
    ds.ImageType = ["DERIVED", "PRIMARY", "THUMBNAIL", "RESAMPLED"]
    for policy, ok in ((Policy(), True), (Policy(thumbnail="remove"), False)):
        v = Verdict()
        check_record_and_images([(tmp_path / "t.dcm", ds)], policy, v)
        images = {c.name: c.ok for c in v.checks}["dicom: images"]
        assert images is ok, policy


def test_the_option_is_part_of_the_policy(cli, tmp_path):
    """A word it does not know is refused; the record states the choice (words and flags); a job
    started with one choice is not resumed with the other."""
    from wsianon.pipeline.record import policy_flags, policy_in_words
    from wsianon.profiles.policy import Policy

    with pytest.raises(ValueError, match="--thumbnail"):
        Policy(thumbnail="blank")
    assert any(w.startswith("Thumbnail: removed") for w in policy_in_words({"thumbnail": "remove"}))
    assert "--thumbnail remove" in policy_flags({"thumbnail": "remove"}) and "--thumbnail" not in policy_flags({"thumbnail": "keep"})
    src = _svs(tmp_path)
    out = tmp_path / "out"
    assert cli("run", "--target", "native", str(src), "-o", str(out))[0] == 0
    code, stdout, stderr = cli("run", "--target", "native", "--thumbnail", "remove", str(src), "-o", str(out))
    assert code != 0 and "other options" in stdout + stderr
