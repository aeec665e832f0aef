"""Red team stop 40 (rA): a false positive and a finding on the DICOM route.

FP: a Philips TIFF that leaves un-scanned tiles out (TileOffsets / TileByteCounts 0, as Philips
scanners write them; OpenSlide draws them transparent, opentile and cuCIM white) was quarantined on
both routes: ``dicom: frames`` compared opentile's white fill with a source tile of 0 bytes, and
``pyramid-consistency`` read the smaller levels' background over those tiles as pixels where the
base has none. A frame standing for such a tile must now be exactly the blank fill (made from the
source with opentile's fill encoder and decoded uniform white), and a smaller level may show blank
background only where the output's own tile table leaves the larger level's tiles out.

F4: ``<device model="Leica SCN400 98765432 S19-4711;Doe^Jane">``: the native route removes it
whole (the canary is the whole value); opentile keeps it up to its first ';', so every DICOM
instance carried ManufacturerModelName "Leica SCN400 98765432 S19-4711", verified. A scanner's
name holding a number of 4 or more digits is now a dummy on the route and refused by
``dicom: text vocabulary`` (a Hamamatsu catalogue number under a Hamamatsu Manufacturer aside).
"""

from __future__ import annotations

import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile

from tests.fixtures.helpers import run_keyed
from tests.fixtures.philips_gen import make_philips
from wsianon.verify import levels
from wsianon.verify.dicom import frames as F
from wsianon.verify.dicom.common import image_kind, read_dataset
from wsianon.verify.dicom_text import scan_dicom_text

DIMS = [(4096, 3072), (2048, 1536), (1024, 768), (512, 384), (256, 192)]
LEFT_OUT = {0: [0, 1]}  # the two top-left level-0 tiles: not scanned
BLANK = 239  # the least grey a blank fill decodes to (opentile's white DC for any quantizer)


class _V:
    def __init__(self):
        self.checks: list[tuple[str, bool, str]] = []

    def add(self, name, ok, detail="", not_run=False):
        self.checks.append((name, ok, detail))

    def get(self, name):
        (found,) = [c for c in self.checks if c[0] == name]
        return found


def _sparse(tmp_path: Path, name: str = "CASE-1701.tiff", **kw) -> Path:
    src = tmp_path / "src" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    make_philips(src, dims=DIMS, absent=LEFT_OUT, **kw)
    return src


def _slide(out: Path) -> dict:
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    return slide


def _failed(slide: dict) -> dict[str, str]:
    return {c["check"]: c["detail"] for c in slide["verification"]["checks"] if not c["ok"]}


# ---------------------------------------------------------------------------------------------
# the fixture: faithful to what Philips scanners write and OpenSlide reads


def test_sparse_philips_fixture_leaves_tiles_out_as_philips_does(tmp_path):
    import openslide

    src = _sparse(tmp_path)
    with tifffile.TiffFile(src) as tf:
        page = tf.pages[0]
        assert list(page.databytecounts[:2]) == [0, 0] and list(page.dataoffsets[:2]) == [0, 0]
        assert page.databytecounts[2] > 0 and all(all(tf.pages[n].databytecounts) for n in range(1, len(DIMS)))
    with openslide.OpenSlide(str(src)) as o:
        assert o.properties["openslide.vendor"] == "philips"
        assert o.level_dimensions[:2] == (DIMS[0], DIMS[1])
        assert o.read_region((10, 10), 0, (1, 1)).getpixel((0, 0)) == (0, 0, 0, 0)  # transparent
        assert o.read_region((10, 10), 1, (1, 1)).getpixel((0, 0))[:3] == (255, 255, 255)  # background below
        assert o.read_region((600, 10), 0, (1, 1)).getpixel((0, 0))[3] == 255  # a stored tile


# ---------------------------------------------------------------------------------------------
# FP: a clean sparse slide verifies on both routes


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_sparse_philips_is_shared_verified(cli, tmp_path, target):
    """Before: quarantined ("pyramid-consistency: level 1: it has pixels where a larger level has
    none"; "dicom: frames: frame 0 differs from source tile 0")."""
    code, text, out = run_keyed(cli, tmp_path, _sparse(tmp_path), target)
    slide = _slide(out)
    assert code == 0 and slide["status"] == "ok" and slide["verification"]["ok"], (text, _failed(slide))


def test_dicom_frame_for_a_left_out_tile_is_the_white_fill(cli, tmp_path):
    code, text, out = run_keyed(cli, tmp_path, _sparse(tmp_path), "dicom")
    assert code == 0, text
    base = max((f for f in out.rglob("*.dcm") if image_kind(read_dataset(f)) == "VOLUME"), key=lambda f: int(read_dataset(f).TotalPixelMatrixColumns))
    ds = pydicom.dcmread(base)
    frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    from PIL import Image

    for k in (0, 1):
        px = np.asarray(Image.open(io.BytesIO(frames[k])).convert("RGB"))
        assert px.min() >= BLANK and (px == px.flat[0]).all()
    slide = _slide(out)
    (check,) = [c for c in slide["verification"]["checks"] if c["check"] == "dicom: frames"]
    assert check["ok"] and "leaves out" in check["detail"]


# ---------------------------------------------------------------------------------------------
# no hole: what stands for a left-out tile must be blank, and only a left-out tile is excused


@pytest.fixture(scope="module")
def sparse_dicom(tmp_path_factory):
    from typer.testing import CliRunner

    from wsianon.cli import app

    tmp = tmp_path_factory.mktemp("sparse-dicom")

    def cli(*args):
        res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        return res.exit_code, res.stdout, res.stderr

    src = _sparse(tmp)
    code, text, out = run_keyed(cli, tmp, src, "dicom")
    assert code == 0, text
    return src, out


def _replace_frame(path: Path, k: int, data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
        frames[k] = data
        ds.PixelData = pydicom.encaps.encapsulate(frames, has_bot=True)
        ds.save_as(path)


def _white_jpeg(ds) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (int(ds.Columns), int(ds.Rows)), (255, 255, 255)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _with_comment(ds, frame: bytes) -> bytes:
    body = b"Doe^Jane 98765432"
    return frame[:2] + b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body + frame[2:]


def _other_frame(ds, frames: list[bytes]) -> bytes:
    return frames[5]


@pytest.mark.parametrize("plant", [_other_frame, _white_jpeg, _with_comment], ids=["a scanned tile", "white JPEG of other bytes", "fill with a comment"])
def test_frame_for_a_left_out_tile_that_is_not_the_fill_is_refused(sparse_dicom, tmp_path, plant):
    src, out = sparse_dicom
    files = [Path(shutil.copy(f, tmp_path / f.name)) for f in sorted(out.rglob("*.dcm"))]
    base = max((f for f in files if image_kind(read_dataset(f)) == "VOLUME"), key=lambda f: int(read_dataset(f).TotalPixelMatrixColumns))
    v = _V()
    F.check_frames_converted(src, None, [(f, read_dataset(f)) for f in files], v)
    assert v.get("dicom: frames")[1], v.checks
    ds = pydicom.dcmread(base)
    frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    if plant is _with_comment:
        data = _with_comment(ds, frames[0])
    elif plant is _other_frame:
        data = _other_frame(ds, frames)
    else:
        data = _white_jpeg(ds)
    _replace_frame(base, 0, data)
    v = _V()
    F.check_frames_converted(src, None, [(f, read_dataset(f)) for f in files], v)
    name, ok, detail = v.get("dicom: frames")
    assert not ok and "frame 0 stands for a tile the source leaves out and is not the blank fill" in detail, detail


def test_fill_for_a_stored_tile_is_still_refused(sparse_dicom, tmp_path):
    """The blank fill is accepted only where the source's tile table leaves the tile out."""
    src, out = sparse_dicom
    files = [Path(shutil.copy(f, tmp_path / f.name)) for f in sorted(out.rglob("*.dcm"))]
    base = max((f for f in files if image_kind(read_dataset(f)) == "VOLUME"), key=lambda f: int(read_dataset(f).TotalPixelMatrixColumns))
    ds = pydicom.dcmread(base)
    frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    _replace_frame(base, 5, frames[0])
    v = _V()
    F.check_frames_converted(src, None, [(f, read_dataset(f)) for f in files], v)
    name, ok, detail = v.get("dicom: frames")
    assert not ok and "frame 5 differs from source tile 5" in detail, detail


def _label_over_left_out(n: int, img: np.ndarray) -> np.ndarray:
    """Level 1 with a dark label drawn where level 0 leaves its tiles out (a viewer zoomed out shows it)."""
    if n != 1:
        return img
    from PIL import Image, ImageDraw

    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    d.rectangle((8, 8, 250, 120), fill=(250, 250, 250))
    d.text((16, 40), "Doe^Jane 98765432", fill=(0, 0, 0))
    d.rectangle((16, 80, 240, 110), fill=(20, 20, 20))
    return np.asarray(im)


def _pyramid_check(path: Path, with_path: bool = True) -> tuple[bool, str]:
    import openslide

    v = _V()
    with openslide.OpenSlide(str(path)) as o:
        levels.check_openslide(o, v, path if with_path else None)
    _name, ok, detail = v.get(levels.NAME)
    return ok, detail


def test_pixels_over_left_out_tiles_must_be_blank(cli, tmp_path):
    src = _sparse(tmp_path, level_hook=_label_over_left_out)
    ok, detail = _pyramid_check(src)
    assert not ok and "level 1: it has pixels that are not blank where a larger level leaves its tiles out" in detail, detail
    code, text, out = run_keyed(cli, tmp_path, src, "native")
    assert code == 1 and levels.NAME in _failed(_slide(out)), text
    assert "98765432" not in json.dumps(_slide(out)["verification"])


def test_only_the_tile_table_excuses_a_level(tmp_path):
    """Blank background below is excused by the output's own tile table, never by pixels: without
    the file the check stays as strict as before, and stored white tiles are no absence."""
    src = _sparse(tmp_path)
    assert _pyramid_check(src)[0]
    ok, detail = _pyramid_check(src, with_path=False)
    assert not ok and "it has pixels where a larger level has none" in detail
    assert set(levels.absent_tiles(src, DIMS)) == {0}
    stored = tmp_path / "stored" / "CASE-1702.tiff"
    stored.parent.mkdir()
    make_philips(stored, dims=DIMS)
    assert levels.absent_tiles(stored, DIMS) == {}


# ---------------------------------------------------------------------------------------------
# F4: a scanner's name the converter derives from a source field


def _scn_with_model(tmp_path: Path, model: str) -> Path:
    from tests.fixtures.scn_gen import make_scn

    src = tmp_path / "src" / "CASE-1703.scn"
    src.parent.mkdir(parents=True, exist_ok=True)
    make_scn(src)
    with tifffile.TiffFile(src, mode="r+b") as tf:
        t = tf.pages[0].tags[270]
        assert 'model="Leica SCN400;Leica SCN"' in t.value
        t.overwrite(t.value.replace('model="Leica SCN400;Leica SCN"', f'model="{model}"'))
    return src


def test_scn_model_cut_at_its_semicolon_is_a_dummy(cli, tmp_path):
    """Before: ManufacturerModelName "Leica SCN400 98765432 S19-4711" in every instance, 21/21."""
    src = _scn_with_model(tmp_path, "Leica SCN400 98765432 S19-4711;Doe^Jane")
    code, text, out = run_keyed(cli, tmp_path, src, "dicom")
    assert code == 0, text
    for f in out.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert b"98765432" not in data and b"S19-4711" not in data and b"Doe^Jane" not in data, f.name
    for f in out.rglob("*.dcm"):
        assert str(pydicom.dcmread(f, stop_before_pixels=True).ManufacturerModelName) == "ANONYMIZED"
    assert any("4 or more digits" in r["action"] for r in _slide(out)["removed"] if r["name"] == "ManufacturerModelName")


def test_verifier_refuses_a_model_name_holding_a_long_number(cli, tmp_path):
    """The planted output (the value opentile wrote) is refused by ``wsianon verify`` alone."""
    src = _scn_with_model(tmp_path, "Leica SCN400;Leica SCN")
    code, text, out = run_keyed(cli, tmp_path, src, "dicom")
    assert code == 0, text
    planted = tmp_path / "planted.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(sorted(out.rglob("*.dcm"))[0])
    assert str(ds.ManufacturerModelName) == "Leica SCN400"  # a real model name stays
    ds.ManufacturerModelName = "Leica SCN400 98765432 S19-4711"
    ds.save_as(planted)
    found, _n, _k = scan_dicom_text([planted])
    assert any("ManufacturerModelName: a scanner's maker or model name holding a number of 4 or more digits" in f for f in found), found
    code, stdout, _ = cli("verify", str(planted))
    assert code == 1 and "dicom: text vocabulary" in stdout and "98765432" not in stdout and "4711" not in stdout, stdout


@pytest.mark.parametrize(
    "value, maker",
    [
        ("Leica SCN400", "Leica Biosystems"),
        ("Aperio converted by com.pixelmed.convert.TIFFToDicom", "Leica Biosystems"),
        ("Test Model", "Test Manufacturer"),
        ("UFS Scanner", "PHILIPS"),
        ("Aperio GT 450", "Leica Biosystems"),
        ("NanoZoomer S360 (C13220-01)", "Hamamatsu"),
        ("NanoZoomer 2.0-HT C9600-12", "Hamamatsu Photonics"),
        ("C13210-01", "Hamamatsu"),
        ("Pannoramic 250 Flash III", "3DHISTECH"),
        ("wsianon", "wsianon"),
    ],
)
def test_real_scanner_names_pass(value, maker):
    from wsianon.profiles.dicom import device_text_ok

    assert device_text_ok(value, maker) and device_text_ok(maker, maker)


@pytest.mark.parametrize(
    "value, maker",
    [
        ("Leica SCN400 98765432 S19-4711", "Leica"),
        ("JD 4711", ""),
        ("NanoZoomer S360 (C13220-01)", "Leica"),  # a catalogue number only under Hamamatsu
        ("NanoZoomer 19790101", "Hamamatsu"),
        ("C98765432", "Hamamatsu"),
        ("SCN\u0664\u0667\u0661\u0661", "Leica"),  # digits of another script
    ],
)
def test_long_numbers_in_scanner_names_are_refused(value, maker):
    from wsianon.profiles.dicom import device_text_ok

    assert not device_text_ok(value, maker)


def test_ndpi_model_number_stays_on_the_dicom_route(cli, tmp_path):
    """A Hamamatsu catalogue number (the NDPI Model the native route keeps) is no finding."""
    from tests.fixtures import ndpi_gen

    c = dict(ndpi_gen.CANARIES, Make="Hamamatsu", Model="C13220-01")
    src = tmp_path / "src" / "CASE-1704.ndpi"
    src.parent.mkdir()
    ndpi_gen.make_ndpi(src, canaries=c)
    code, text, out = run_keyed(cli, tmp_path, src, "dicom")
    assert code == 0, text
    ds = pydicom.dcmread(sorted(out.rglob("*.dcm"))[0], stop_before_pixels=True)
    assert "C13220-01" in str(ds.ManufacturerModelName) and str(ds.Manufacturer) == "Hamamatsu"
