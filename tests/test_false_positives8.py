"""False-positive hunt 8: clean DICOM WSI written by other tools (wsidicomizer's options,
wsidicom's round trip, pydicom edits real scanners make), as inputs of ``run --target native`` /
``--target dicom`` and of ``wsianon verify`` (README "DICOM route", "Verification").

1. JPEG Lossless (process 14, SV1: wsidicomizer ``JpegLosslessSettings``): no frame decoder knew
   it (``io.dicomframes.decode_rgb``), so a clean slide's THUMBNAIL "cannot be judged" and the
   slide was quarantined; and ``dicom: pyramid`` compared none of its levels ("frames do not
   decode") — a label photo given a level's place passed. libjpeg-turbo 3 (imagecodecs) decodes it.
2. HTJ2K (wsidicomizer ``HTJpeg2000Settings``): dicom3tools built before 2023 do not know the
   transfer syntax, take the encapsulated Pixel Data for native and stop reading there: `verify`
   failed every clean HTJ2K output on ``dicom: dciodvfy`` (``run`` compared the errors with the
   source's). The two read errors are now counted, not failed, where Pixel Data is the only
   element of undefined length (so every attribute was read and validated).
3. wsidicomizer / wsidicom ``offset_table="none"`` (and ``"TIFF"``) write no Basic Offset Table
   item: the first frame stands in its place and every reader (pydicom, wsidicom itself) takes its
   bytes for offsets. The route ended in "internal error (ValueError)"; such an input is now
   refused at the start with the reason (nothing written).
Also here: clean variants the hunt found accepted (regression guards).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames

from .conftest import shared

SVS = Path(__file__).parent / "data" / "CMU-1-Small-Region.svs"
WSI2DCM = "dicom/wsi2dcm-cmu-1-small-region"


def _run(cli, src: Path, out: Path, target: str = "dicom") -> dict:
    code, stdout, _ = cli("run", src, "--out", out, "--target", target, "--no-review-sheet", "--json")
    slide = json.loads(stdout)["slides"][0]
    return {"code": code, "status": slide["status"], "error": slide.get("error") or "", "slide": slide}


def _failed(r: dict) -> dict[str, str]:
    return {c["check"]: c["detail"] for c in (r["slide"].get("verification") or {}).get("checks", []) if not c["ok"]}


def _verify(cli, out: Path) -> tuple[int, dict[str, str]]:
    code, stdout, _ = cli("verify", out, "--json")
    return code, {c["check"]: c["detail"] for v in json.loads(stdout) for c in v["checks"] if not c["ok"]}


def _convert(out: Path, **kw) -> Path:
    from wsidicomizer import WsiDicomizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        WsiDicomizer.convert(SVS, out, include_label=False, include_overview=False, **kw)
    return out


def _read(p: Path, pixels: bool = True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(p, stop_before_pixels=not pixels)


# -- 1. JPEG Lossless ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lossless_src(tmp_path_factory) -> Path:
    from wsidicom.codec.settings import Channels, JpegLosslessSettings

    enc = JpegLosslessSettings(channels=Channels.RGB)
    return _convert(tmp_path_factory.mktemp("fp8") / "jpegll", encoding=enc, force_transcoding=True, add_missing_levels=True)


def test_jpeg_lossless_frames_decode(lossless_src):
    from wsianon.io.dicomframes import decode_rgb

    import imagecodecs

    img = np.random.default_rng(3).integers(0, 255, (64, 48, 3), np.uint8)
    frame = imagecodecs.jpeg8_encode(img, lossless=True, colorspace="RGB")
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.70"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 64, 48, 3
    assert np.array_equal(decode_rgb(frame, ds), img)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.57"
    assert np.array_equal(decode_rgb(frame, ds), img)


@pytest.mark.parametrize("target", ["dicom", "native"])
def test_jpeg_lossless_slide_is_shared_and_verifies(cli, tmp_path, lossless_src, target):
    """wsidicomizer's JPEG Lossless conversion of CMU-1 (a thumbnail and 4 levels): before, the
    THUMBNAIL "cannot be judged (ValueError)" and the clean slide was quarantined."""
    out = tmp_path / "out"
    r = _run(cli, lossless_src, out, target)
    assert r["code"] == 0 and r["status"] == "ok", (r["error"], _failed(r))
    checks = {c["check"]: c["detail"] for c in r["slide"]["verification"]["checks"]}
    assert checks["dicom: thumbnail"].startswith("1 THUMBNAIL instance(s): the slide's pyramid downsampled")
    assert "do not decode" not in checks["dicom: pyramid"]  # every level compared
    code, failed = _verify(cli, out)
    assert code == 0, failed


def test_jpeg_lossless_in_ybr_full_is_shared_and_fails_verify_on_dciodvfy_only(cli, tmp_path):
    """wsidicomizer's default JPEG Lossless settings label the frames YBR_FULL, which the WSI IOD
    does not list for Photometric Interpretation: ``run`` shares the slide (the source has the
    same dciodvfy error), ``verify`` (no source) fails it on that error alone."""
    from wsidicom.codec.settings import JpegLosslessSettings

    src = _convert(tmp_path / "in", encoding=JpegLosslessSettings(), force_transcoding=True)
    out = tmp_path / "out"
    r = _run(cli, src, out)
    assert r["code"] == 0 and r["status"] == "ok", (r["error"], _failed(r))
    if shutil.which("dciodvfy") is None:
        return
    code, failed = _verify(cli, out)
    assert code != 0 and set(failed) == {"dicom: dciodvfy"}, failed
    assert "PhotometricInterpretation" in failed["dicom: dciodvfy"]


def test_a_jpeg_lossless_level_that_is_another_picture_is_refused(cli, tmp_path, lossless_src):
    """The leak the missing decoder hid: a level's frames replaced by a label photo (the same
    codec, the same grid). Before, ``dicom: pyramid`` passed it ("frames do not decode, not
    compared") and, without a THUMBNAIL, nothing else looked at it."""
    import imagecodecs

    from .fixtures.svs_gen import _label_image

    src = tmp_path / "in"
    shutil.copytree(lossless_src, src)
    vols = []
    for p in sorted(src.glob("*.dcm")):
        ds = _read(p, pixels=False)
        if ds.ImageType[2] == "THUMBNAIL":
            p.unlink()
        elif ds.ImageType[2] == "VOLUME":
            vols.append((int(ds.TotalPixelMatrixColumns), p))
    vols.sort()
    p = vols[1][1]  # the second smallest level (several frames)
    ds = _read(p)
    rows, cols = int(ds.Rows), int(ds.Columns)
    w, h = int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
    nx, ny = -(-w // cols), -(-h // rows)
    label = np.zeros((ny * rows, nx * cols, 3), np.uint8)
    big = _label_image(h, w)
    label[:h, :w] = big if big.ndim == 3 else big[..., None]
    frames = [
        imagecodecs.jpeg8_encode(label[y : y + rows, x : x + cols], lossless=True, colorspace="RGB")
        for y in range(0, ny * rows, rows)
        for x in range(0, nx * cols, cols)
    ]
    assert len(frames) == int(ds.NumberOfFrames)
    ds.PixelData = encapsulate(frames)
    ds.save_as(p, enforce_file_format=True)
    out = tmp_path / "out"
    r = _run(cli, src, out)
    assert r["code"] != 0 and r["status"] == "failed", r["error"]
    bad = _failed(r)
    assert "dicom: pyramid" in bad and "pixels are not the slide's" in bad["dicom: pyramid"]
    assert not list(out.rglob("*.dcm"))  # quarantined


def test_a_name_in_jpeg_lossless_frame_padding_is_refused(cli, tmp_path, lossless_src):
    """``dicom: frame padding`` did not decode JPEG Lossless ("not judged: transfer syntax"): a
    name drawn into the padding of a level's edge frames was shared. Now judged like the other
    codecs' (wsidicomizer's own lossless padding passes: the tests above)."""
    import imagecodecs

    from .fixtures.svs_gen import PAD_TEXT, render_text

    src = tmp_path / "in"
    shutil.copytree(lossless_src, src)
    for p in sorted(src.glob("*.dcm")):
        ds = _read(p)
        if ds.ImageType[2] != "VOLUME" or int(ds.TotalPixelMatrixColumns) < 2000:
            continue
        rows, cols = int(ds.Rows), int(ds.Columns)
        w, h = int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
        nx, ny = -(-w // cols), -(-h // rows)
        vh = h - (ny - 1) * rows
        assert vh < rows  # the bottom row of frames has padding
        frames = _frames(ds)
        drawn = render_text((rows - vh, cols), PAD_TEXT, 40, 255)
        for tx in range(nx):
            k = (ny - 1) * nx + tx
            a = np.array(imagecodecs.jpeg8_decode(frames[k]))
            a[vh:] = drawn[..., None]
            frames[k] = imagecodecs.jpeg8_encode(a, lossless=True, colorspace="RGB")
        ds.PixelData = encapsulate(frames)
        ds.save_as(p, enforce_file_format=True)
    out = tmp_path / "out"
    r = _run(cli, src, out)
    assert r["code"] != 0 and r["status"] == "failed", r["error"]
    bad = _failed(r)
    assert "dicom: frame padding" in bad and "of its padding not uniform, replicated or a neighbour" in bad["dicom: frame padding"], bad
    assert not list(out.rglob("*.dcm"))


# -- 2. HTJ2K and dicom3tools that predate it ------------------------------------------------------


@pytest.fixture(scope="module")
def htj2k_out(tmp_path_factory) -> Path:
    from wsidicom.codec.settings import HTJpeg2000Settings

    return _convert(tmp_path_factory.mktemp("fp8") / "htj2k", encoding=HTJpeg2000Settings(levels=[80]), force_transcoding=True, include_thumbnail=False)


def test_htj2k_output_passes_verify(cli, tmp_path, htj2k_out):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) cannot be installed here")
    out = tmp_path / "out"
    r = _run(cli, htj2k_out, out)
    assert r["code"] == 0 and r["status"] == "ok", (r["error"], _failed(r))
    code, failed = _verify(cli, out)
    assert code == 0, failed


def test_only_a_stop_at_pixel_data_in_htj2k_is_counted(htj2k_out, tmp_path):
    from wsianon.verify.dicom.validator import _UNREAD, pixel_data_unread

    vol = next(p for p in sorted(htj2k_out.glob("*.dcm")) if _read(p, pixels=False).ImageType[2] == "VOLUME")
    errs = [*_UNREAD, "Error - </PixelData(7fe0,0010)> - Missing attribute for Type 1C Conditional - Module=<ImagePixel>"]
    assert pixel_data_unread(errs, vol) == list(_UNREAD)
    assert pixel_data_unread(errs[1:], vol) == []  # one of the two alone is another read failure
    # the same messages from an instance in a transfer syntax dciodvfy knows: a real read failure
    j2k = tmp_path / "j2k.dcm"
    ds = _read(vol)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.91"
    ds.save_as(j2k, enforce_file_format=True)
    assert pixel_data_unread(errs, j2k) == []
    # another element of undefined length before Pixel Data: the read may have stopped there
    odd = tmp_path / "odd.dcm"
    ds = _read(vol)
    ds.add_new(0x00091010, "OB", encapsulate([b"\x00\x01"]))
    ds[0x00091010].is_undefined_length = True
    ds.save_as(odd, enforce_file_format=True)
    assert _read(odd, pixels=False)[0x00091010].is_undefined_length
    assert pixel_data_unread(errs, odd) == []


# -- 3. no Basic Offset Table item -----------------------------------------------------------------


@pytest.mark.parametrize("table", ["none", "TIFF"])
def test_pixel_data_without_a_basic_offset_table_item_is_refused_with_its_reason(cli, tmp_path, table):
    src = _convert(tmp_path / "in", offset_table=table, include_thumbnail=False)
    first = next(iter(src.glob("*.dcm")))
    ds = _read(first)
    with pytest.raises(ValueError):  # what every reader makes of it
        next(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    for target in ("dicom", "native"):
        out = tmp_path / f"out-{target}"
        r = _run(cli, src, out, target)
        assert r["code"] != 0 and r["status"] == "error", r
        assert "internal error" not in r["error"]
        assert "no Basic Offset Table" in r["error"] and "refused, nothing written" in r["error"]
        assert not list(out.rglob("*.dcm"))


def test_offset_table_problem():
    from wsianon.io.dicomframes import offset_table_problem

    for p in sorted(shared(WSI2DCM).glob("*.dcm")):
        assert offset_table_problem(p) is None


# -- clean variants the hunt found accepted: regression guards -------------------------------------


def _frames(ds) -> list[bytes]:
    return list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))


def _edited(dst: Path, fn) -> Path:
    dst.mkdir()
    for f in sorted(shared(WSI2DCM).glob("*.dcm")):
        ds = _read(f)
        fn(ds)
        ds.save_as(dst / f.name, enforce_file_format=True)
    return dst


def _multi_fragment(ds) -> None:  # PS3.5 A.4: a frame may span fragments (with a Basic Offset Table)
    ds.PixelData = encapsulate(_frames(ds), fragments_per_frame=3, has_bot=True)


def _eot(ds) -> None:
    ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(_frames(ds))


def _fill_byte(ds) -> None:
    """Odd-length frames made even with a JPEG fill byte before EOI (T.81 B.1.1.2) instead of a pad
    byte after it."""
    out = []
    for b in _frames(ds):
        b = bytes(b)
        while b.endswith(b"\x00"):
            b = b[:-1]
        out.append(b[:-2] + b"\xff\xff\xd9" if len(b) % 2 else b)
    ds.PixelData = encapsulate(out)


@pytest.mark.parametrize("edit", [_multi_fragment, _eot, _fill_byte], ids=["multi-fragment", "eot", "fill-byte"])
def test_clean_encapsulation_variants_are_shared(cli, tmp_path, edit):
    src = _edited(tmp_path / "in", edit)
    out = tmp_path / "out"
    r = _run(cli, src, out)
    assert r["code"] == 0 and r["status"] == "ok", (r["error"], _failed(r))
    code, failed = _verify(cli, out)
    assert code == 0, failed
