"""Red-team findings on the DICOM route (rdicom): places an identifier survived into OUT with the
slide verified — the 128-byte preamble, an ICC profile's text, palette lookup table data, COM
segments of JPEG 2000 and JPEG-LS frames — each closed structurally on the output side and
judged by the verifier from the output alone (``wsianon verify`` without the source)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pydicom
import pytest

from wsianon.io import codestreams
from wsianon.verify.dicom_attrs import check_dicom_attributes

from .conftest import shared
from .fixtures import dicom_redteam as rt

HD = "dicom/highdicom_sm_image.dcm"
HD_JLS = "dicom/highdicom_sm_image_jpegls.dcm"
MARKS = (b"RDQX7", b"Doe^Jane", b"MRN4711")
TOKEN_BYTES = rt.TOKEN.encode()[:16]


def _report(out: Path) -> dict:
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    return slide


def _out_bytes(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())


def _run(cli, src: Path, out: Path):
    code, stdout, stderr = cli("run", "--target", "dicom", str(src), "-o", str(out))
    return code, stdout + stderr, _report(out)


def _shared_ok(cli, tmp_path: Path, src: Path) -> Path:
    """Run ``src``; the slide is shared and no planted byte is anywhere in OUT or the console."""
    out = tmp_path / "out"
    code, console, slide = _run(cli, src, out)
    assert code == 0 and slide["status"] == "ok", (console, slide["verification"])
    blob = _out_bytes(out) + console.encode()
    assert not [m for m in MARKS if m in blob]
    (dcm,) = sorted(out.rglob("*.dcm"))
    return dcm


def _verify_fails(cli, dcm: Path, check: str) -> None:
    code, stdout, _ = cli("verify", str(dcm))
    assert code == 1 and check in stdout, stdout
    assert not [m for m in MARKS if m.decode() in stdout]


def _read(p: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(p)


def test_preamble_is_zeroed_and_judged(tmp_path, cli):
    src = rt.with_preamble(shared(HD), tmp_path / "in")
    dcm = _shared_ok(cli, tmp_path, src)
    assert dcm.read_bytes()[:128] == bytes(128)
    # an output whose preamble holds text (another tool's, or ours before the fix) is not clean
    planted = tmp_path / "planted" / dcm.name
    planted.parent.mkdir()
    planted.write_bytes(src.read_bytes()[:128] + dcm.read_bytes()[128:])
    found, _n = check_dicom_attributes([planted])
    assert found == [f"{planted.name}: preamble is not all zeros"]
    _verify_fails(cli, planted, "closed world")


def test_icc_profile_keeps_colorimetry_only_and_is_judged(tmp_path, cli):
    src = rt.with_icc_text(shared(HD), tmp_path / "in")
    dcm = _shared_ok(cli, tmp_path, src)
    icc_in = bytes(_read(src).OpticalPathSequence[0].ICCProfile)
    icc_out = bytes(_read(dcm).OpticalPathSequence[0].ICCProfile)
    from wsianon.io.icc import TAG_TYPES, parse

    # the profile is rebuilt (informational tags such as 'lumi' leave it; table sorted, sizes exact, packed: no padding): the colorimetric
    # tags keep their fields byte for byte, wherever they now lie
    out_tags = {sig: (off, size) for sig, off, size in parse(icc_out)}
    assert len(icc_out) <= len(icc_in)
    for sig, off, size in parse(icc_in):
        if icc_in[off : off + 4] in (b"curv", b"XYZ ") and sig in TAG_TYPES:  # colorimetry byte for byte
            o, n = out_tags[sig]
            assert icc_out[o : o + n] == icc_in[off : off + n] and not icc_in[off + n : off + size].strip(b"\0"), sig
    # the verifier judges an ICC profile from the output: the planted one is refused
    ds = _read(dcm)
    ds.OpticalPathSequence[0].ICCProfile = icc_in
    planted = tmp_path / "planted" / dcm.name
    planted.parent.mkdir()
    ds.save_as(planted)
    found, _n = check_dicom_attributes([planted])
    assert f"{planted.name}: OpticalPathSequence/ICCProfile: ICC profile with text, private or unreferenced bytes" in found
    _verify_fails(cli, planted, "closed world")


def test_palette_lookup_table_holding_text_is_quarantined(tmp_path, cli):
    src = rt.with_palette(shared(HD), tmp_path / "in", rt.text_palette())
    out = tmp_path / "out"
    code, console, slide = _run(cli, src, out)
    # red team 14: the route removes an optical path's palette that is no ramp (Type 3) instead of
    # leaving it for the verifier: the slide is shared without it; the verifier still refuses it
    assert code == 0 and slide["status"] == "ok", console
    assert not [m for m in MARKS if m in _out_bytes(out) + console.encode()]
    (dcm,) = out.rglob("*.dcm")
    assert "PaletteColorLookupTableSequence" not in _read(dcm).OpticalPathSequence[0]
    ds = _read(dcm)
    ds.OpticalPathSequence[0].PaletteColorLookupTableSequence = _read(src).OpticalPathSequence[0].PaletteColorLookupTableSequence
    planted = tmp_path / "planted" / dcm.name
    planted.parent.mkdir()
    ds.save_as(planted)
    found, _n = check_dicom_attributes([planted])
    assert any("PaletteColorLookupTableData: palette data is not a colour ramp" in f for f in found)
    # a real colour ramp is kept and the slide shared
    clean = rt.with_palette(shared(HD), tmp_path / "ramp", rt.ramp_palette())
    out2 = tmp_path / "out2"
    code, console, slide = _run(cli, clean, out2)
    assert code == 0 and slide["status"] == "ok", (console, slide["verification"])
    (dcm,) = out2.rglob("*.dcm")
    assert bytes(_read(dcm).OpticalPathSequence[0].PaletteColorLookupTableSequence[0].RedPaletteColorLookupTableData) == rt.ramp_palette()


@pytest.mark.parametrize("kind", ["j2k", "jpegls"])
def test_codestream_frame_comments_are_zeroed_and_judged(tmp_path, cli, kind):
    if kind == "j2k":
        src = rt.j2k_with_com(shared(HD), tmp_path / "in")
    else:
        src = rt.jpegls_with_com(shared(HD_JLS), tmp_path / "in")
    dcm = _shared_ok(cli, tmp_path, src)
    ds = _read(dcm)
    ts = str(ds.file_meta.TransferSyntaxUID)
    assert ts in codestreams.J2K_TS | codestreams.JPEGLS_TS
    frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    assert frames and all(codestreams.spans(f, ts) for f in frames)  # the segments stay, emptied
    assert all(codestreams.dirty(f, ts) == [] for f in frames)
    # the frames still decode to the source's pixels (lossless codecs)
    src_px, out_px = _read(src).pixel_array, ds.pixel_array
    assert (src_px == out_px).all()
    planted = tmp_path / "planted" / dcm.name
    planted.parent.mkdir()
    shutil.copy(dcm, planted)
    rt.plant_frame_comment(planted)
    _verify_fails(cli, planted, "frame segments")


def test_codestream_walks_fail_closed_on_what_they_cannot_follow():
    ts_j2k, ts_jls = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80"
    assert codestreams.spans(b"\x00\x00\x00\x0cjP  ", ts_j2k) is None  # a JP2 file, not a codestream
    assert codestreams.spans(b"\xff\x4f\xff\x51\x00\x29", ts_j2k) is None  # truncated main header
    assert codestreams.spans(b"\xff\xd8\xff\xf7\x00\x0b\x08", ts_jls) is None  # truncated SOF55
    assert codestreams.spans(b"\xff\xd8\xff\xc0\x00\x02\xff\xd9", ts_jls) is None  # baseline JPEG is not JPEG-LS
    assert codestreams.spans(b"anything", "1.2.840.10008.1.2.1") == []
    # a marker segment outside the codec's own set (a place for text no decoder reads) is not followed
    import struct

    # SIZ (one 8 x 8 component), COD (no decomposition), QCD (no quantization): each exactly its fields
    siz = b"\xff\x51\x00\x29" + bytes(2) + struct.pack(">8IH", 8, 8, 0, 0, 8, 8, 0, 0, 1) + b"\x07\x01\x01"
    siz += b"\xff\x52\x00\x0c" + b"\x00\x00\x00\x01\x00" + b"\x00\x04\x04\x00\x01" + b"\xff\x5c\x00\x04\x40\x48"
    unknown = b"\xff\x4f" + siz + b"\xff\x3a\x00\x06" + b"RDQX" + b"\xff\x90\x00\x0a" + bytes(8) + b"\xff\x93" + b"\xff\xd9"
    assert codestreams.spans(unknown, ts_j2k) is None
    assert codestreams.spans(unknown.replace(b"\xff\x3a", b"\xff\x64"), ts_j2k) is not None  # a COM: followed
    jls_unknown = b"\xff\xd8\xff\xf7\x00\x02\xff\xc4\x00\x06RDQX\xff\xd9"
    assert codestreams.spans(jls_unknown, ts_jls) is None


def test_container_around_the_data_set_is_judged(tmp_path, cli):
    """File Meta elements a de-identifier does not write (Private Information and its creator) and
    Data Set Trailing Padding are content no attribute walk reads: ``wsianon verify`` refuses them."""
    import struct

    src = rt.with_preamble(shared(HD), tmp_path / "in")
    dcm = _shared_ok(cli, tmp_path, src)
    assert check_dicom_attributes([dcm])[0] == []
    ds = _read(dcm)
    ds.file_meta.PrivateInformationCreatorUID = "1.2.3.4"
    ds.file_meta.PrivateInformation = rt.TOKEN.encode()
    meta = tmp_path / "meta" / dcm.name
    meta.parent.mkdir()
    ds.save_as(meta, enforce_file_format=True)
    found, _n = check_dicom_attributes([meta])
    assert f"{meta.name}: file meta (0002,0100) PrivateInformationCreatorUID: not written by a de-identifier" in found
    assert f"{meta.name}: file meta (0002,0102) PrivateInformation: not written by a de-identifier" in found
    _verify_fails(cli, meta, "closed world")
    padded = tmp_path / "padded" / dcm.name
    padded.parent.mkdir()
    value = rt.TOKEN.encode() + b"\0" * (len(rt.TOKEN) % 2)
    padded.write_bytes(dcm.read_bytes() + b"\xfc\xff\xfc\xffOB\0\0" + struct.pack("<I", len(value)) + value)
    found, _n = check_dicom_attributes([padded])
    assert found == [f"{padded.name}: bytes after Pixel Data (trailing padding or other bytes)"]
    _verify_fails(cli, padded, "closed world")


@pytest.mark.parametrize("kind", ["text-frame", "beyond-frames"])
def test_pixel_data_that_is_not_pixels_is_quarantined(tmp_path, cli, kind):
    """A frame of a JPEG instance that is no JPEG stream (the segment walks skip it), and native
    Pixel Data longer than its frames (no frame reader reads the rest): failed, never shared."""
    if kind == "text-frame":
        src = rt.jpeg_instance_with_text_frame(shared("dicom/wsi2dcm-cmu-1-small-region/level-0-frames-0-30.dcm"), tmp_path / "in")
        check, why = "dicom: frame segments", "frame 29: not a JPEG stream in a JPEG transfer syntax"
    else:
        src = rt.native_with_bytes_beyond_frames(shared(HD), tmp_path / "in")
        check, why = "dicom: closed world", "native Pixel Data is not exactly its frames"
    out = tmp_path / "out"
    code, console, slide = _run(cli, src, out)
    assert code == 1 and slide["status"] == "failed", console
    assert not list(out.rglob("*.dcm")) and not [m for m in MARKS if m in _out_bytes(out) + console.encode()]
    chk = next(c for c in slide["verification"]["checks"] if c["check"] == check)
    assert not chk["ok"] and why in chk["detail"], chk


def test_real_world_value_lookup_table_is_removed_and_judged(tmp_path, cli):
    src = rt.with_real_world_lut(shared(HD), tmp_path / "in")
    assert TOKEN_BYTES in src.read_bytes()
    dcm = _shared_ok(cli, tmp_path, src)
    assert "RealWorldValueMappingSequence" not in _read(dcm).SharedFunctionalGroupsSequence[0]
    found, _n = check_dicom_attributes([src])
    assert (
        f"{src.name}: SharedFunctionalGroupsSequence/RealWorldValueMappingSequence/RealWorldValueLUTData: a lookup table of free numbers (not judged)" in found
    )


def test_fifo_beside_a_dicom_input_does_not_hang_the_run(tmp_path):
    """The private review sheet groups a DICOM file's series from its folder: a FIFO there (or
    below it) was opened and blocked the run forever after the slide was verified."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(shared(HD), folder / "v.dcm")
    os.mkfifo(folder / "pipe.dcm")
    os.mkfifo(folder / "sub" / "p")
    for src in (folder / "v.dcm", folder):
        out = tmp_path / f"out-{src.name}"
        p = subprocess.run(
            [sys.executable, "-m", "wsianon.cli", "run", "--target", "dicom", str(src), "-o", str(out)], capture_output=True, text=True, timeout=120
        )
        assert p.returncode == 0, p.stdout + p.stderr
        assert _report(out)["status"] == "ok" and Path(f"{out}.review.html").is_file()


def test_folder_with_a_dicomdir_is_de_identified_without_it(tmp_path):
    """A DICOM media folder (PS3.10) holds a DICOMDIR beside the instances: the folder was refused
    whole ("no SeriesInstanceUID"); the index is left out (it names the patient) and the slide
    shared. A DICOMDIR given alone is a one-line error."""
    import subprocess
    import sys

    from pydicom.fileset import FileSet

    fs = FileSet()
    fs.add(_read(shared(HD)))
    fs.write(tmp_path / "media")
    assert (tmp_path / "media" / "DICOMDIR").is_file()
    out = tmp_path / "out"
    p = subprocess.run(
        [sys.executable, "-m", "wsianon.cli", "run", "--target", "dicom", str(tmp_path / "media"), "-o", str(out)], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0 and _report(out)["status"] == "ok", p.stdout + p.stderr
    assert b"Test^Patient" not in _out_bytes(out) and len(list(out.rglob("*.dcm"))) == 1
    p = subprocess.run(
        [sys.executable, "-m", "wsianon.cli", "run", "--target", "dicom", str(tmp_path / "media" / "DICOMDIR"), "-o", str(tmp_path / "o2")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in p.stderr.splitlines() + p.stdout.splitlines() if ln.startswith("error:")]
    assert p.returncode == 1 and len(lines) == 1 and "media index" in lines[0] and "Traceback" not in p.stderr


def test_one_unreadable_dicom_file_does_not_fail_the_other_slides(tmp_path, cli):
    """A DICOM file without SeriesInstanceUID in one input folder failed every DICOM slide of the
    batch, under the name of the first (good) file; now it alone is the error, named."""
    good, bad = tmp_path / "a", tmp_path / "b"
    good.mkdir()
    bad.mkdir()
    shutil.copy(shared(HD), good / "good.dcm")
    ds = _read(shared(HD))
    del ds.SeriesInstanceUID
    ds.save_as(bad / "broken.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "dicom", str(good), str(bad), "-o", str(out))
    slides = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert code == 1 and sorted(s["status"] for s in slides) == ["error", "ok"], stdout + stderr
    errors = [ln for ln in (stdout + stderr).splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "broken.dcm" in errors[0] and "good.dcm" not in errors[0]
    assert len(list(out.rglob("*.dcm"))) == 1


@pytest.mark.parametrize("description", ["sRGB IEC61966-2.1", "Scanner profile for slide glass"])
def test_svs_whose_icc_description_is_longer_than_a_code_string_converts(tmp_path, cli, description):
    """wsidicom names the color space after the ICC description (CS: 16 characters at most) and
    refused such slides ("wsidicomizer failed to read the slide"): a false error."""
    src = rt.svs_with_icc(tmp_path / "in" / "ICCLONG-1.svs", shared(HD), description)
    from wsianon.io.icc import parse

    out = tmp_path / "out"
    code, console, slide = _run(cli, src, out)
    assert code == 0 and slide["status"] == "ok", (console, slide.get("error"))
    for dcm in out.rglob("*.dcm"):
        op = _read(dcm).OpticalPathSequence[0]
        assert op.get("ColorSpace") in (None, "SRGB") and parse(bytes(op.ICCProfile))  # the profile is kept
        assert description.encode() not in bytes(op.ICCProfile)  # its text emptied
