"""Red team stop 40 (DICOM target from non-Aperio sources): the DICOM pyramid must be the levels
OpenSlide shows of the source.

F1: a Leica SCN with a second ``<image>`` lit by fluorescence (OpenSlide does not show it), named
like the main image and wider: opentile built the DICOM pyramid from it (a patient record), verified.
F2: an NDPI whose IFD chain starts with the macro (source lens -1): opentile took it as the pyramid;
``dicom: frames`` proved it against the macro page itself (any page of the same size). F2b: the same
with a focal plane OpenSlide never shows (Z offset 1000 nm) first.
F3: the "pyramid incomplete" note printed the sizes of tifffile's first series of the source (an
SCN's removed macro: sizes the source chose, "1979x1201" a birth date) into OUT's report.

The route now refuses such a conversion before anything is written (``refuse_foreign_pyramid``), and
``dicom: frames`` proves each VOLUME level against the page OpenSlide reads for that level only
(``verify.shown_levels``), so the planted outputs fail verification on their own (tested here with
the route's refusal switched off).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
import pydicom
from PIL import Image, ImageDraw

from wsianon.converters.base import Inventory, SlideContext
from wsianon.converters.dicom import bridge, convert_slide
from wsianon.errors import UnsupportedFormat
from wsianon.pipeline.detect import detect_file
from wsianon.pipeline.model import Verdict
from wsianon.pipeline.verify_dicom import _check_frames_converted
from wsianon.profiles.policy import Policy
from wsianon.verify.shown_levels import ShownLevels, shown_levels

from .fixtures.ndpi_gen import make_ndpi_info
from .fixtures.scn_gen import make_scn
from .fixtures.svs_gen import write_svs

KEY = b"R" * 32
LINES = ["DOE^JANE", "MRN 98765432", "DOB 19790101", "S19-4711"]


def _record(w: int, h: int) -> Image.Image:
    """A picture of a patient record."""
    img = Image.new("RGB", (w, h), (238, 234, 220))
    d = ImageDraw.Draw(img)
    for i, line in enumerate(LINES):
        d.text((8, 6 + 24 * i), line, fill=(0, 0, 0))
    return img


def _native(src: Path) -> Inventory:
    _name, conv = detect_file(src)
    return conv.inspect(src)


def _convert(src: Path, out: Path):
    inv = _native(src)
    ctx = SlideContext(pseudonym="T1", key=KEY, policy=Policy())
    return inv, convert_slide(src, inv, ctx, out)


def _frames(inv, files) -> tuple[bool, str]:
    v = Verdict()
    _check_frames_converted(inv, [(f, pydicom.dcmread(f, stop_before_pixels=True)) for f in files], v)
    (c,) = [c for c in v.checks if c.name == "dicom: frames"]
    return c.ok, c.detail


def _relink_first(path: Path, offsets: list[int], first: int) -> None:
    """Re-link an NDPI's IFD chain (8-byte next pointers) so that IFD ``first`` comes first."""
    order = [first] + [i for i in range(len(offsets)) if i != first]
    offs = [offsets[i] for i in order]
    with open(path, "r+b") as fh:
        fh.seek(4)
        fh.write(struct.pack("<Q", offs[0]))
        for a, b in zip(offs, offs[1:] + [0]):
            fh.seek(a)
            n = struct.unpack("<H", fh.read(2))[0]
            fh.seek(a + 2 + 12 * n)
            fh.write(struct.pack("<Q", b))


def scn_hidden_image(root: Path) -> Path:
    """F1: a fluorescence ``<image>`` named like the main one, wider, holding a record."""
    src = root / "in" / "HIDDEN-SCN-1.scn"
    src.parent.mkdir(parents=True)
    fx = make_scn(src, extra_image=("fluorescence", np.asarray(_record(2048, 512))))
    with tifffile.TiffFile(src, mode="r+b") as tf:
        tag = tf.pages[0].tags[270]
        main = fx.canaries["image_name_main"]
        tag.overwrite(tag.value.replace('<image name="" uuid="">', f'<image name="{main}" uuid="">'))
    return src


def ndpi_macro_first(root: Path) -> Path:
    """F2: the macro page (source lens -1) first in the IFD chain."""
    info = make_ndpi_info(root / "in" / "MACRO-NDPI-1.ndpi")
    _relink_first(info.path, info.ifd_offsets, info.macro_ifd)
    return info.path


def ndpi_plane_first(root: Path) -> Path:
    """F2b: a level page at Z offset 1000 nm (OpenSlide shows Z 0 only), of no level's size, first."""
    info = make_ndpi_info(root / "in" / "PLANE-NDPI-1.ndpi", focal_planes={(640, 256): _record(640, 256)}, focal_z=1000)
    with tifffile.TiffFile(info.path) as tf:
        (planted,) = [k for k, pg in enumerate(tf.pages) if (pg.imagewidth, pg.imagelength) == (640, 256)]
    _relink_first(info.path, info.ifd_offsets, planted)
    return info.path


PLANTED = [scn_hidden_image, ndpi_macro_first, ndpi_plane_first]


@pytest.mark.parametrize("build", PLANTED, ids=lambda f: f.__name__)
def test_route_refuses_a_pyramid_that_is_not_openslides_levels(tmp_path, build):
    src = build(tmp_path)
    out = tmp_path / "o"
    with pytest.raises(UnsupportedFormat) as exc:
        _convert(src, out)
    reason = exc.value.reason
    assert reason == bridge.FOREIGN_PYRAMID
    assert not re.search(r"\d", reason)  # one reason, no numbers
    assert not list(out.rglob("*.dcm"))  # nothing written


@pytest.mark.parametrize("build", PLANTED, ids=lambda f: f.__name__)
def test_verifier_refuses_the_planted_pyramid_on_its_own(tmp_path, build, monkeypatch):
    src = build(tmp_path)
    monkeypatch.setattr(bridge, "refuse_foreign_pyramid", lambda *_a: None, raising=False)  # the route as it was
    inv, res = _convert(src, tmp_path / "o")
    ok, detail = _frames(inv, res.files)
    assert not ok
    assert "not a level OpenSlide shows of the source" in detail, detail
    for w, h in ((2048, 512), (320, 112), (640, 256)):
        assert f"{w}x{h}" not in detail and str(w) not in detail


def test_verifier_needs_openslides_level_0_written(tmp_path):
    info = make_ndpi_info(tmp_path / "in" / "BASE-NDPI-1.ndpi", width=1024, height=768)
    inv, res = _convert(info.path, tmp_path / "o")
    ok, detail = _frames(inv, res.files)
    assert ok, detail
    vols = sorted(res.files, key=lambda f: -int(pydicom.dcmread(f, stop_before_pixels=True).TotalPixelMatrixColumns))
    ok, detail = _frames(inv, vols[1:])  # a pyramid without its level 0: not the slide OpenSlide shows
    assert not ok and "the page OpenSlide shows as level 0 is not written" in detail, detail


def test_clean_scn_and_ndpi_convert_and_verify(tmp_path):
    src = tmp_path / "in" / "CLEAN-SCN-1.scn"
    src.parent.mkdir(parents=True)
    make_scn(src)
    inv, res = _convert(src, tmp_path / "o1")
    ok, detail = _frames(inv, res.files)
    assert ok and "equal the source tile bitstreams" in detail, detail
    assert not any("pyramid incomplete" in n for n in res.notes)
    info = make_ndpi_info(tmp_path / "in" / "CLEAN-NDPI-1.ndpi")
    inv, res = _convert(info.path, tmp_path / "o2")
    ok, detail = _frames(inv, res.files)
    assert ok, detail


def test_shown_levels_are_the_pages_openslide_reads(tmp_path):
    src = scn_hidden_image(tmp_path)
    shown = shown_levels(src)
    assert isinstance(shown, ShownLevels) and shown.vendor == "leica"
    with tifffile.TiffFile(src) as tf:
        sizes = [(p.imagewidth, p.imagelength) for p in tf.pages]
    (chain,) = shown.chains
    assert [sizes[i] for i in chain if i is not None] == [(1024, 512), (512, 256), (256, 128)]  # the brightfield main image
    ndpi = ndpi_macro_first(tmp_path / "n")
    shown = shown_levels(ndpi)
    assert isinstance(shown, ShownLevels) and shown.vendor == "hamamatsu"
    with tifffile.TiffFile(ndpi) as tf:
        lens = [tf.pages[i].tags.valueof(65421) for i in shown.chains[0] if i is not None]
    assert lens and all(float(v) > 0 for v in lens)
    svs = tmp_path / "s" / "LEVELS-SVS-1.svs"
    svs.parent.mkdir()
    write_svs(svs)
    shown = shown_levels(svs)
    assert isinstance(shown, ShownLevels) and shown.vendor == "aperio"
    with tifffile.TiffFile(svs) as tf:
        tiled = [k for k, p in enumerate(tf.pages) if p.is_tiled]
    assert shown.chains[0] == tiled


def test_incomplete_pyramid_note_names_openslides_levels_by_index_only(tmp_path):
    # F3: an SCN whose macro (removed) has four levels of chosen sizes: no note (the three levels
    # OpenSlide shows are all built), and no size of the source's in any note
    src = tmp_path / "in" / "SIZES-SCN-1.scn"
    src.parent.mkdir(parents=True)
    make_scn(src, macro_sizes=[(1979, 1201), (987, 654), (98, 76), (54, 32)])
    _inv, res = _convert(src, tmp_path / "o1")
    text = " ".join(res.notes)
    assert "pyramid incomplete" not in text
    for size in ("1979x1201", "987x654", "98x76", "54x32", "1979", "1201"):
        assert size not in text
    # an NDPI level whose downsample is not a power of two is not built: named by its index
    sizes = [(2048, 1536), (1024, 768), (640, 480), (320, 240), (160, 120)]
    info = make_ndpi_info(tmp_path / "in" / "LEVELS-NDPI-6.ndpi", width=2048, height=1536, interval=4, level_sizes=sizes)
    _inv, res = _convert(info.path, tmp_path / "o2")
    (note,) = [n for n in res.notes if n.startswith("pyramid incomplete")]
    assert "the source has 5 levels" in note
    named = note.split("not built: ", 1)[1].split(" (", 1)[0].split(", ")
    assert "level 2" in named and "level 0" not in named and "level 1" not in named
    assert not re.search(r"\d+x\d+", note)


def test_route_holds_a_pixel_reading_pyramid_to_openslides_level_sizes(tmp_path):
    """A source wsidicomizer reads by pixels (tiffslide, OpenSlide) has no page to name: its
    levels must have OpenSlide's levels' sizes, level 0 first."""
    from types import SimpleNamespace

    from wsidicom.geometry import Size

    svs = tmp_path / "PIXELS-SVS-1.svs"
    write_svs(svs)
    import openslide

    with openslide.OpenSlide(str(svs)) as s:
        dims = [tuple(map(int, d)) for d in s.level_dimensions]

    def wsi(sizes):
        levels = [SimpleNamespace(instances=[SimpleNamespace(image_data=SimpleNamespace(image_size=Size(*wh)))]) for wh in sizes]
        return SimpleNamespace(pyramids=[levels])

    bridge.refuse_foreign_pyramid(svs, wsi(dims))  # OpenSlide's own levels: accepted
    for sizes in (dims[1:], [(dims[0][0] + 64, dims[0][1])] + dims[1:], [dims[0], (40, 30)]):
        with pytest.raises(UnsupportedFormat) as exc:
            bridge.refuse_foreign_pyramid(svs, wsi(sizes))
        assert exc.value.reason == bridge.FOREIGN_PYRAMID
