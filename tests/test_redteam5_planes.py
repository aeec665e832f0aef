"""Red team, round 5 (rt5lut): two gaps the README's Limitations admitted.

A. ``dicom: pyramid`` compared a DICOM level with a larger one only for instances of one focal
   plane and one optical path, skipped every instance of the largest level's matrix, and skipped a
   sparse level where a sampled point fell in no frame: a label photo rode as a focal plane, an
   optical path of a brightfield slide, or a sparse level's frames (``run --target dicom`` shared
   it, ``wsianon verify`` passed it). Now every picture (one focal plane of one optical path) is
   compared, a sparse level over the region its frames cover.
B. The values of an ICC LUT's CLUT ('mft1'/'mft2'/'mAB '/'mBA ': a grid of colours) were kept as
   they were and no check read them: a name written into the CLUT reached OUT on both routes and
   passed `wsianon verify`. Now a CLUT must be a smooth function of its grid position
   (``io.icc._clut_is_smooth``), else the tag is emptied by the converters and refused by the
   verifiers, as a curve that is no ramp is."""

from __future__ import annotations

import io
import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from wsianon.io import icc
from wsianon.verify.dicom.pyramid import check_pyramid
from wsianon.verify.partition import icc_problems

from .conftest import shared
from .fixtures import dicom_planes as dp


class _Verdict:
    def __init__(self):
        self.checks: dict[str, tuple[bool, str]] = {}

    def add(self, name: str, ok: bool, detail: str = "", not_run: bool = False):
        self.checks[name] = (ok, detail)


def _pyramid(folder: Path) -> tuple[bool, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = [folder] if folder.is_file() else sorted(folder.rglob("*.dcm"))
        dsets = [(p, pydicom.dcmread(p, stop_before_pixels=True)) for p in files]
    v = _Verdict()
    check_pyramid(dsets, v)
    return v.checks["dicom: pyramid"]


def _slide(tmp_path: Path, name: str) -> Path:
    return dp.copy_slide(shared(dp.SLIDE), tmp_path / "in" / name)


def _size(path: Path) -> tuple[int, int]:
    ds = dp.read(path, pixels=False)
    return int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)


def _run(cli, src: Path, out: Path):
    code, stdout, stderr = cli("run", "--target", "dicom", str(src), "-o", str(out))
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    checks = {c["check"]: c for c in (slide.get("verification") or {}).get("checks", [])}
    return code, stdout + stderr, slide, checks


def _refused(cli, tmp_path: Path, src: Path, name: str, needle: str) -> None:
    """``run --target dicom`` quarantines the slide by ``dicom: pyramid`` finding ``needle`` (the
    output's instances are renamed), and `wsianon verify` of the input fails the file ``name``."""
    out = tmp_path / "out"
    code, console, slide, checks = _run(cli, src, out)
    assert slide["status"] != "ok" and not list(out.rglob("*.dcm")), console
    assert not checks["dicom: pyramid"]["ok"] and needle in checks["dicom: pyramid"]["detail"], checks["dicom: pyramid"]
    code, stdout, _ = cli("verify", str(src))
    assert code == 1 and "FAIL dicom: pyramid" in stdout and f"{name}{needle}" in stdout, stdout


def _shared(cli, tmp_path: Path, src: Path) -> str:
    out = tmp_path / "out"
    code, console, slide, checks = _run(cli, src, out)
    assert code == 0 and slide["status"] == "ok", (console, slide.get("verification"))
    return checks["dicom: pyramid"]["detail"]


# ---------------------------------------------------------------------------
# A1. a focal plane that is another picture


def test_focal_plane_of_the_largest_level_that_is_a_label_is_quarantined(tmp_path, cli):
    """Before: an instance of several focal planes was not compared (and the largest level never
    is): the slide's level 0 with a second focal plane holding a label photo was shared by
    ``run --target dicom`` and passed `verify`. Now each focal plane of the largest level must
    look like its first."""
    src = _slide(tmp_path, "z")
    dp.with_focal_planes(src / dp.L0, [dp.label_photo(*_size(src / dp.L0))])
    _refused(cli, tmp_path, src, dp.L0, " (focal plane 2 of 2): a VOLUME level whose pixels are not the slide's")


def test_focal_plane_of_a_level_that_is_a_label_is_refused(tmp_path):
    src = _slide(tmp_path, "z3")
    dp.with_focal_planes(src / dp.L3, [dp.label_photo(*_size(src / dp.L3))])
    ok, detail = _pyramid(src)
    assert not ok and "level-3-frames-0-1.dcm (focal plane 2 of 2): a VOLUME level whose pixels are not the slide's" in detail, detail


def test_focal_planes_of_the_slide_defocused_are_shared(tmp_path, cli):
    """Realistic focal planes (the slide 2 and 6 px out of focus; even 64 px correlates 0.99 at
    64 px) pass, at the largest level and a smaller one."""
    src = _slide(tmp_path, "zok")
    for name in (dp.L0, dp.L3):
        img = dp.picture_of(dp.read(src / name))
        dp.with_focal_planes(src / name, [dp.defocus(img, 2), dp.defocus(img, 6)])
    assert "level(s) compared with the others" in _shared(cli, tmp_path, src)


@pytest.mark.parametrize("name", [dp.L0, dp.L1], ids=["sampled", "whole"])
def test_a_thumbnail_reference_of_several_focal_planes_is_its_first(tmp_path, name):
    """A kept thumbnail is compared with a level rendered (``thumbnail.dicom_reference``); an
    instance of two focal planes could not be placed (its frames are the grid twice) and every
    thumbnail judged against it failed. Now its first focal plane is rendered: the same picture
    as the instance before the plane was added, even when the second plane is a label photo."""
    from wsianon.verify.thumbnail import dicom_reference, grid_shape

    src = _slide(tmp_path, "ref")
    size = _size(src / name)
    before = dicom_reference(src / name, dp.read(src / name), grid_shape(size))
    dp.with_focal_planes(src / name, [dp.label_photo(*size)])
    after = dicom_reference(src / name, dp.read(src / name), grid_shape(size))
    assert np.array_equal(before, after)


# ---------------------------------------------------------------------------
# A2. an optical path of a brightfield image that is another picture


def test_optical_path_instance_that_is_a_label_is_quarantined(tmp_path, cli):
    """Before: an instance of the largest level's matrix was never compared, whatever its optical
    path: a label photo as optical path "2" of the (brightfield) slide's level 0 was shared and
    passed `verify`. Now every optical path of a brightfield image must look like the others."""
    src = _slide(tmp_path, "p")
    dp.path_instance(src, dp.L0, "2", dp.label_photo(*_size(src / dp.L0)))
    _refused(cli, tmp_path, src, f"path-2-{dp.L0}", ": a VOLUME level whose pixels are not the slide's")


def test_second_optical_path_in_one_instance_is_refused(tmp_path):
    src = _slide(tmp_path, "p2")
    dp.with_optical_paths(src / dp.L3, [dp.label_photo(*_size(src / dp.L3))])
    ok, detail = _pyramid(src)
    assert not ok and "(optical path 2 of 2): a VOLUME level whose pixels are not the slide's" in detail, detail
    # the same path of the slide's own picture passes
    src = _slide(tmp_path, "p2ok")
    dp.with_optical_paths(src / dp.L3, [dp.picture_of(dp.read(src / dp.L3))])
    ok, detail = _pyramid(src)
    assert ok, detail


def test_fluorescence_channel_is_named_as_not_compared(tmp_path):
    """A fluorescence channel need not look like another: channels of the largest level are not
    compared with each other, and the detail says so (README, Limitations)."""
    src = _slide(tmp_path, "f")
    dp.path_instance(src, dp.L0, "2", 255 - dp.picture_of(dp.read(src / dp.L0)), fluorescence=True)
    ok, detail = _pyramid(src)
    assert ok and "2 fluorescence channel(s) compared within their own optical path only" in detail, detail


# ---------------------------------------------------------------------------
# A3. a sparse level


def _sparse_label(src: Path) -> None:
    dp.larger_base(src)
    lab = dp.label_photo(1000, 1000)
    dp.sparse(src / dp.L0, [(x, y, dp.encode(lab[y : y + 500, x : x + 500])) for y in (0, 500) for x in (0, 500)])


def test_sparse_level_of_a_label_is_quarantined(tmp_path, cli):
    """Before: a sparse level (TILED_SPARSE) over 4 Mpx is sampled, and a sampled point in no
    frame skipped the level: four frames of a label photo as the slide's 6.6 Mpx level (its base
    now a level twice as large) were shared by ``run --target dicom``. Now a sparse level is
    rendered over the region its frames cover and compared there."""
    src = _slide(tmp_path, "s")
    _sparse_label(src)
    _refused(cli, tmp_path, src, dp.L0, ": a VOLUME level whose pixels are not the slide's")


def test_sparse_level_of_the_slides_tissue_is_shared_and_verifies(tmp_path, cli):
    """A real sparse level keeps the frames that hold tissue at their places: it passes, and its
    output passes `wsianon verify` (before: `dicom: dciodvfy` failed it there — dciodvfy counts a
    sparse level's frames against the full tile grid, an error `run` accepts as the source's)."""
    src = _slide(tmp_path, "sok")
    dp.larger_base(src)
    kept = dp.tissue_frames(src / dp.L0)
    assert 0 < len(kept) < 30
    dp.sparse(src / dp.L0, kept)
    _shared(cli, tmp_path, src)
    code, stdout, _ = cli("verify", str(tmp_path / "out"))
    assert code == 0 and "ok   dicom: dciodvfy" in stdout, stdout


def test_sparse_focal_plane_that_is_a_label_is_refused(tmp_path):
    """A sparse level's frames are grouped by their Z offset: a second focal plane of level 1 in
    TILED_SPARSE (its frames at Z 2 µm) holding a label photo is compared, and refused; the
    same plane holding the slide passes."""
    for name, second in (("label", lambda img: dp.label_photo(img.shape[1], img.shape[0])), ("slide", lambda img: dp.defocus(img, 3))):
        src = _slide(tmp_path, f"sz-{name}")
        ds = dp.read(src / dp.L1)
        img = dp.picture_of(ds)
        frames = [((k % 3) * 500, (k // 3) * 500, f) for k, f in enumerate(dp.frames_of(ds))]
        other = dp.tiles(second(img), 500, 500)
        dp.sparse(src / dp.L1, frames + [(x, y, other[k]) for k, (x, y, _f) in enumerate(frames)], z=[0.0] * 9 + [2.0] * 9)
        ok, detail = _pyramid(src)
        if name == "label":
            assert not ok and "level-1-frames-0-9.dcm (focal plane 2 of 2): a VOLUME level whose pixels are not the slide's" in detail, detail
        else:
            assert ok, detail


def test_sparse_frames_where_the_slide_has_none_are_refused(tmp_path):
    """A sparse level's frames where the larger level has no frame cannot be compared: refused
    (a real slide's levels hold the same tissue)."""
    src = _slide(tmp_path, "s2")
    dp.larger_base(src)
    base = src / "level-base.dcm"
    ds = dp.read(base)
    frames = dp.frames_of(ds)
    dp.sparse(base, [((k % 9) * 500, (k // 9) * 500, frames[k]) for k in range(len(frames)) if (k // 9) >= 6])  # its lower half only
    lab = dp.label_photo(1000, 1000)
    dp.sparse(src / dp.L0, [(x, y, dp.encode(lab[y : y + 500, x : x + 500])) for y in (0, 500) for x in (0, 500)])
    ok, detail = _pyramid(src)
    assert not ok and "level-0-frames-0-30.dcm: a VOLUME picture that cannot be compared with the slide" in detail, detail


def test_volume_without_a_matrix_is_quarantined(tmp_path, cli):
    """Before: a VOLUME instance without Total Pixel Matrix Columns/Rows (Type 1; here a label
    photo of level 3's frame size beside the slide's levels) was left out of every comparison:
    ``run --target dicom`` shared it, `dicom: pyramid` passed. Now it fails closed."""
    from pydicom.encaps import encapsulate

    src = _slide(tmp_path, "m")
    ds = dp.read(src / dp.L3)
    ds.PixelData = encapsulate([dp.encode(dp.label_photo(int(ds.Columns), int(ds.Rows)))])
    del ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows
    dp._new_instance(ds)
    ds.save_as(src / "extra.dcm")
    _refused(cli, tmp_path, src, "extra.dcm", ": a VOLUME without a readable Total Pixel Matrix")


@pytest.mark.parametrize("name", ["wsi2dcm-cmu-1-small-region", "highdicom_sm_image.dcm", "highdicom_sm_image_grayscale.dcm", "pathml_small_dicom.dcm"])
def test_real_samples_pass(name):
    ok, detail = _pyramid(shared(f"dicom/{name}"))
    assert ok, detail


# ---------------------------------------------------------------------------
# B. ICC CLUT values


def _icc():
    """The ICC builders of red team 4 (reused): profile, lutAtoB, white point; its text and runner."""
    from . import test_redteam4_tiff as rt4

    return rt4


def _smooth_clut(g: int = 17) -> np.ndarray:
    """An RGB -> XYZ table as a scanner profile holds one: gamma 2.2, a matrix (16-bit values)."""
    x = (np.arange(g) / (g - 1)) ** 2.2
    rgb = np.stack(np.meshgrid(x, x, x, indexing="ij"), axis=-1)
    m = np.array([[0.4361, 0.3851, 0.1431], [0.2225, 0.7169, 0.0606], [0.0139, 0.0971, 0.7141]])
    return np.round(np.clip(rgb @ m.T, 0, 1) * 65535).astype(np.uint16)


def _mft2(clut: np.ndarray) -> bytes:
    """An 'mft2' of 3 inputs and outputs: identity matrix, 2-entry ramp tables, ``clut``."""
    g = clut.shape[0]
    head = b"mft2" + bytes(4) + bytes([3, 3, g, 0]) + struct.pack(">9i", 65536, 0, 0, 0, 65536, 0, 0, 0, 65536) + struct.pack(">HH", 2, 2)
    ramp = struct.pack(">2H", 0, 65535) * 3
    return head + ramp + clut.astype(">u2").tobytes() + ramp


def _with_text(elem: bytes, at: int, text: bytes) -> bytes:
    return elem[:at] + text + elem[at + len(text) :]


TEXT24 = b"RTQX7 Doe^Jane MRN4711 "[:24].ljust(24, b" ")
CLUT_AT = 52 + 2 * 2 * 3  # an mft2's CLUT after its header and input tables


def _planted_profiles() -> list[bytes]:
    rt4 = _icc()
    clut = _mft2(_smooth_clut())
    point = 2 * 3 * (14 * 17 * 17 + 14 * 17 + 8)  # grid point (14, 14, 8): bright, inside the grid
    return [
        rt4._profile([(b"wtpt", rt4.WTPT), (b"A2B0", _with_text(clut, CLUT_AT + 2 * 3 * 2000, TEXT24))]),  # A2B: strict bound
        rt4._profile([(b"wtpt", rt4.WTPT), (b"B2A0", _with_text(clut, CLUT_AT + point, TEXT24))]),  # B2A: lenient bound
        rt4._profile([(b"wtpt", rt4.WTPT), (b"A2B0", rt4._mab().replace(bytes(range(24)), TEXT24))]),  # a 2-point grid
    ]


def test_text_in_an_icc_clut_is_emptied_and_refused():
    """Before: a CLUT's values were kept whole and allowed: the planted profiles passed
    ``icc_problems`` and kept the text through ``icc.sanitize``. Now each is emptied and refused;
    the smooth table, and red team 4's additive 2-point lutAtoB, are kept byte for byte."""
    rt4 = _icc()
    for planted in _planted_profiles():
        assert icc_problems(planted, rt4.SAFE) > 0
        out, emptied = icc.sanitize(planted)
        assert emptied >= 1 and icc_problems(out, rt4.SAFE) == 0 and b"Doe^" not in out and b"RTQX" not in out
    for clean in (
        rt4._profile([(b"wtpt", rt4.WTPT), (b"A2B0", _mft2(_smooth_clut()))]),
        rt4._profile([(b"wtpt", rt4.WTPT), (b"B2A0", _mft2(_smooth_clut()))]),
        rt4._profile([(b"wtpt", rt4.WTPT), (b"A2B0", rt4._mab())]),
    ):
        assert rt4.kept_alike(clean)


def test_real_cluts_are_kept_and_transform_alike():
    """Real CLUTs (ICC's sRGB v4 preference profile: 17-point mAB/mBA, a gamut-mapping B2A0 whose
    second differences reach 0.37 of the range; LittleCMS's Lab profile: a 2-point mft2) are kept
    as they were and transform colours as before."""
    from importlib import resources

    from PIL import Image, ImageCms

    rt4 = _icc()
    v4 = (resources.files("highdicom") / "_icc_profiles" / "sRGB_v4_ICC_preference.icc").read_bytes()
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    for real in (v4, lab):
        kept, _ = icc.sanitize(real)
        assert icc_problems(kept, rt4.SAFE) == 0
        moved = {s: (o, n) for s, o, n in icc.parse(kept[: struct.unpack(">I", kept[:4])[0]]) or []}  # rebuilt: tags move
        for sig, off, size in icc.parse(real):
            if real[off : off + 4] in (b"mft2", b"mAB ", b"mBA "):
                o, n = moved[sig]
                assert kept[o + 8 : o + n] == real[off + 8 : off + n] and not real[off + n : off + size].strip(b"\0"), sig
    srgb = ImageCms.createProfile("sRGB")
    for intent in (0, 1):
        same = [
            np.asarray(ImageCms.profileToProfile(img, ImageCms.ImageCmsProfile(io.BytesIO(p)), srgb, renderingIntent=intent)) for p in (v4, icc.sanitize(v4)[0])
        ]
        assert np.array_equal(*same)


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_text_in_an_icc_clut_never_reaches_out(cli, tmp_path, target):
    """Before: the name in the A2B0's CLUT reached OUT on both routes (the runner asserts that no
    planted text is in OUT or on the console)."""
    rt4 = _icc()
    (tmp_path / "src").mkdir()
    prof = _planted_profiles()[0]
    src = rt4._svs(tmp_path / "src" / "CASE-7611.svs", extratags=[(34675, 7, len(prof), prof, True)])
    code, text, out = rt4._run(cli, tmp_path, src, target)
    assert code == 0 and rt4._placed(out), text


def test_text_in_an_icc_clut_of_a_dicom_input_never_reaches_out(cli, tmp_path):
    """The DICOM input route (the engine's ICC closed world): highdicom's sample with the planted
    profile as its optical path's ICC Profile is shared with the A2B0 emptied; `verify` refuses
    the profile put back into the output."""
    from . import test_redteam4_dicom as rt4d

    prof = _planted_profiles()[0]
    src = rt4d._source(tmp_path, rt4d.HD, lambda ds: setattr(ds.OpticalPathSequence[0], "ICCProfile", prof))
    out = tmp_path / "out"
    code, console, slide = rt4d._run(cli, src, out)
    assert code == 0 and slide["status"] == "ok", (console, slide.get("verification"))
    assert b"RTQX" not in rt4d._out_bytes(out) and b"Doe^" not in rt4d._out_bytes(out)
    (dcm,) = sorted(out.rglob("*.dcm"))
    ds = rt4d._read(dcm)
    ds.OpticalPathSequence[0].ICCProfile = prof
    planted = tmp_path / "planted" / dcm.parent.name / dcm.name
    planted.parent.mkdir(parents=True)
    ds.save_as(planted)
    code, stdout, _ = cli("verify", str(planted))
    assert code == 1 and "ICCProfile" in stdout and "RTQX" not in stdout, stdout


def test_verify_refuses_text_in_an_icc_clut_of_another_tools_output(cli, tmp_path):
    rt4 = _icc()
    (tmp_path / "src").mkdir()
    clut = _mft2(_smooth_clut())
    prof = rt4._profile([(b"wtpt", rt4.WTPT), (b"A2B0", clut)])
    src = rt4._svs(tmp_path / "src" / "CASE-7612.svs", extratags=[(34675, 7, len(prof), prof, True)])
    code, text, out = rt4._run(cli, tmp_path, src)
    (slide,) = rt4._placed(out)
    assert code == 0 and rt4._failed_checks(cli, slide) == set(), text
    data = slide.read_bytes()
    at = data.index(clut)
    other = tmp_path / "other.svs"
    other.write_bytes(_with_text(data, at + CLUT_AT + 2 * 3 * 2000, TEXT24))
    assert "closed-world-icc" in rt4._failed_checks(cli, other)


def test_sparse_frame_count_error_is_accepted_only_for_a_sparse_instance(tmp_path):
    """dciodvfy's full-grid frame count error is accepted (without the source) only where the
    instance is TILED_SPARSE: a TILED_FULL level with a frame too few or too many still fails."""
    from wsianon.verify.dicom.validator import sparse_miscount

    err = "Error - </NumberOfFrames(0028,0008)> - NumberOfFrames does not match expected value for tiled total pixel matrix = <> - expected 30"
    src = _slide(tmp_path, "c")
    assert sparse_miscount([err], src / dp.L0) == []
    dp.sparse(src / dp.L0, dp.tissue_frames(src / dp.L0))
    assert sparse_miscount([err, "Error - </Rows(0028,0010)> - other"], src / dp.L0) == [err]
