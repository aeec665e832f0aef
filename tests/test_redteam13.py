"""Red team, round 13: a slide label scanned INTO the pyramid.

The native route removes the label and macro images and searches every kept associated image for
barcodes; the pyramid levels are passed through, proven identical to the source's
(``tiles-identical``) and proven the base downsampled (``pyramid-consistency``). When the scan area
itself covers the slide's label (an operator drew the scan region over the label end; here a label
with a barcode and a printed name pasted into a corner of level 0, every lower level made from that
base), the label is in every level, consistent across them: ``wsianon run --target native``
shared it and ``wsianon verify`` passed it, since nothing searched the pyramid for barcodes. Now
``barcode-pyramid`` (``wsianon/verify/pyramid_barcodes.py``) searches one level of bounded size
with zxing-cpp and quarantines the slide; a clean slide passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import BUNDLED
from .fixtures.helpers import run_keyed

BARCODE = "S24-13579"  # the value the label's barcode codes (and prints)
CHECK = "barcode-pyramid"
SIZE = (2048, 1536)


def _base(labelled: bool, tissue) -> np.ndarray:
    """Level 0: the fixture's tissue, with (``labelled``) a 400 x 300 label — a Code 128 barcode
    and the value printed — pasted into its top right corner."""
    from PIL import Image

    from .fixtures.mrxs_gen import label_image

    img = Image.fromarray(np.asarray(tissue)).convert("RGB")
    if labelled:
        img.paste(label_image(BARCODE), (SIZE[0] - 420, 20))
    return np.asarray(img)


def _svs(tmp_path: Path, labelled: bool) -> Path:
    from .fixtures.svs_gen import _tissue, write_svs

    (tmp_path / "src").mkdir(parents=True, exist_ok=True)
    base = _base(labelled, _tissue(SIZE[1], SIZE[0], 1))
    return write_svs(tmp_path / "src" / "CASE-1301.svs", size=SIZE, levels=3, with_label=False, with_macro=False, level_pixels={0: base}).path


def _ndpi(tmp_path: Path, labelled: bool) -> Path:
    from PIL import Image

    from .fixtures.ndpi_gen import make_ndpi_info, tissue

    (tmp_path / "src").mkdir(parents=True, exist_ok=True)
    base = Image.fromarray(_base(labelled, tissue(*SIZE)))
    pixels = {lv: base.resize((SIZE[0] >> lv, SIZE[1] >> lv), Image.Resampling.BILINEAR) for lv in range(3)}
    return make_ndpi_info(tmp_path / "src" / "CASE-1302.ndpi", levels=3, width=SIZE[0], height=SIZE[1], level_pixels=pixels).path


MAKERS = {"aperio": _svs, "ndpi": _ndpi}


def _checks(cli, path: Path) -> dict[str, tuple[bool, str]]:
    _code, out, _err = cli("verify", "--json", str(path))
    return {c["check"]: (c["ok"], c["detail"]) for c in json.loads(out)[0]["checks"]}


def _placed(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.suffix in (".svs", ".ndpi")]


def _report_checks(out: Path) -> dict[str, tuple[bool, str]]:
    report = json.loads((out / "wsianon-report.json").read_text())
    return {c["check"]: (c["ok"], c["detail"]) for s in report["slides"] for c in s["verification"]["checks"]}


@pytest.mark.parametrize("fmt", sorted(MAKERS))
def test_a_label_scanned_into_the_pyramid_is_quarantined(cli, tmp_path, fmt):
    """Before: exit 0, the slide shared with the label in its pyramid, every check passing."""
    src = MAKERS[fmt](tmp_path, True)
    code, text, out = run_keyed(cli, tmp_path, src, "native")
    assert code != 0 and f"failed: {CHECK}" in text and _placed(out) == [], text[-800:]
    assert BARCODE not in text
    quarantined = [p for p in out.parent.rglob("*") if p.suffix == src.suffix and "quarantine" in str(p)]
    assert quarantined, sorted(str(p) for p in out.parent.rglob("*"))
    checks = _checks(cli, quarantined[0])  # wsianon verify, no source: the output alone
    failing = sorted(k for k, (ok, _d) in checks.items() if not ok)
    assert failing == [CHECK], failing  # the pyramid is the base downsampled: only the barcode fails it
    ok, detail = checks[CHECK]
    assert ok is False and "level 1" in detail and "1 barcode(s)" in detail and BARCODE not in detail, detail  # its 1,024 px level


@pytest.mark.parametrize("fmt", sorted(MAKERS))
def test_an_output_made_without_the_check_fails_verify(cli, tmp_path, fmt, monkeypatch):
    """An output shared by a run without the check (an older wsianon): ``wsianon verify`` fails it."""
    from wsianon.verify import pyramid_barcodes

    src = MAKERS[fmt](tmp_path, True)
    with monkeypatch.context() as m:
        m.setattr(pyramid_barcodes, "check_openslide", lambda slide, verdict: None)
        code, text, out = run_keyed(cli, tmp_path, src, "native")
    assert code == 0 and _placed(out), text[-800:]  # the gap: shared, every check passing
    ok, detail = _checks(cli, _placed(out)[0])[CHECK]
    assert ok is False and BARCODE not in detail, detail


@pytest.mark.parametrize("fmt", sorted(MAKERS))
def test_a_clean_slide_passes(cli, tmp_path, fmt):
    code, text, out = run_keyed(cli, tmp_path, MAKERS[fmt](tmp_path, False))
    assert code == 0 and _placed(out), text[-800:]
    ok, detail = _report_checks(out)[CHECK]
    assert ok is True and "no barcode in pyramid level 1" in detail, detail
    assert _checks(cli, _placed(out)[0])[CHECK][0] is True


def test_bundled_real_tissue_has_no_barcode():
    """CMU-1's real tissue (its one level, 6.6 Mpx, searched reduced 2x) holds no barcode."""
    import openslide

    from wsianon.pipeline.model import Verdict
    from wsianon.verify import pyramid_barcodes

    v = Verdict()
    with openslide.OpenSlide(str(BUNDLED / "CMU-1-Small-Region.svs")) as s:
        pyramid_barcodes.check_openslide(s, v)
    ((name, ok, detail),) = [(c.name, c.ok, c.detail) for c in v.checks]
    assert name == CHECK and ok, detail


def test_search_level_and_reduction():
    from wsianon.verify.pyramid_barcodes import MAX_PIXELS, pick_search_level, reduce_factor

    assert pick_search_level([(80000, 60000), (20000, 15000), (5000, 3750), (1250, 937)]) == 3
    assert pick_search_level([(1500, 1000), (750, 500)]) == 0
    assert pick_search_level([(2000, 100), (1000, 50)]) == 1
    assert pick_search_level([(1998, 100), (999, 50)]) == 0  # level 1 under TARGET: the larger
    assert pick_search_level([(2220, 2967)]) == 0  # CMU-1: one level, searched reduced 2x
    assert pick_search_level([(4096, 4096), (2048, 2048)]) == 1  # 4096 reduced 2x is no larger than level 1
    assert pick_search_level([(106752, 106752), (26688, 26688), (6672, 6672), (1668, 1668)]) == 3  # the 4 GiB benchmark slide: level 2 reduced 4x is level 3
    assert pick_search_level([(75520, 75520)]) is None  # one huge level: not searched
    assert pick_search_level([(75520, 75520), (1024, 1024)]) == 1
    # fuzz seed 120: a DICOM TotalPixelMatrixRows of -1 (math domain error in verify); no size: not searched
    assert pick_search_level([(2048, -1), (1024, 768)]) == 1
    assert pick_search_level([(2048, -1)]) is None and pick_search_level([(0, 0)]) is None
    for size in [(5000, 3750), (2048, 2048), (2049, 2048), (100000, 3)]:
        f = reduce_factor(size)
        assert -(-size[0] // f) * -(-size[1] // f) <= MAX_PIXELS
        assert f == 1 or -(-size[0] // (f - 1)) * -(-size[1] // (f - 1)) > MAX_PIXELS


@pytest.mark.parametrize("labelled", [True, False], ids=["labelled", "clean"])
def test_the_dicom_route_searches_a_volume_level(cli, tmp_path, labelled):
    """``dicom: barcode pyramid``: the largest VOLUME level of at most 4 Mpx (here level 0, 2048 x
    1536) is searched; before, VOLUME frames got no barcode search and the labelled slide was
    shared as DICOM."""
    code, text, out = run_keyed(cli, tmp_path, _svs(tmp_path, labelled), "dicom")
    if labelled:
        assert code != 0 and "failed: dicom: barcode pyramid" in text and not list(out.rglob("*.dcm")), text[-800:]
        assert BARCODE not in text
    else:
        assert code == 0 and list(out.rglob("*.dcm")), text[-800:]
        ok, detail = _report_checks(out)["dicom: barcode pyramid"]
        assert ok is True and "no barcode in the VOLUME level" in detail, detail


def _one_level_svs(tmp_path: Path, name: str, size: tuple[int, int], labelled: bool) -> Path:
    from PIL import Image

    from .fixtures.mrxs_gen import label_image
    from .fixtures.svs_gen import _tissue, write_svs

    img = Image.fromarray(np.asarray(_tissue(size[1], size[0], 1))).convert("RGB")
    if labelled:
        img.paste(label_image(BARCODE), (size[0] - 420, 20))
    (tmp_path / "src").mkdir(exist_ok=True)
    return write_svs(tmp_path / "src" / name, size=size, levels=1, with_label=False, with_macro=False, level_pixels={0: np.asarray(img)}).path


def test_the_dicom_route_searches_a_level_larger_than_the_searched_picture(cli, tmp_path):
    """A DICOM output whose every VOLUME level is over 4 Mpx (here one level of 2,600 x 2,000 px;
    CMU-1's smallest is 2,875 x 2,057): ``dicom: barcode pyramid`` searched only levels of at most
    4 Mpx, said "not searched", and the labelled slide was shared. Now the level is assembled
    reduced 2x (each frame box-averaged as it is decoded) and the label is found."""
    src = _one_level_svs(tmp_path, "CASE-1303.svs", (2600, 2000), labelled=True)
    code, text, out = run_keyed(cli, tmp_path, src, "dicom")
    assert code != 0 and not list(out.rglob("*.dcm")), text[-800:]
    ok, detail = _report_checks(out)["dicom: barcode pyramid"]
    assert ok is False and detail.startswith("1 barcode(s) found in the VOLUME level") and "reduced 2x" in detail, detail
    assert BARCODE not in text and BARCODE not in (out / "wsianon-report.json").read_text()


def test_a_reduced_assembly_is_the_box_average_of_the_whole(cli, tmp_path):
    """``images._assemble(..., reduce=f)`` box-averages each frame as it is decoded: the picture
    equals PIL's ``reduce`` of the whole assembled level where the factor divides the frames (2, 4;
    the last frames' partial boxes included), and keeps every third pixel for 3; the clean
    one-level slide over 4 Mpx passes its search."""
    import pydicom
    from PIL import Image

    from wsianon.verify.dicom.images import _assemble

    src = _one_level_svs(tmp_path, "CASE-1304.svs", (2600, 2000), labelled=False)
    code, text, out = run_keyed(cli, tmp_path, src, "dicom")
    assert code == 0, text[-800:]
    ok, detail = _report_checks(out)["dicom: barcode pyramid"]
    assert ok is True and "px searched, reduced 2x" in detail, detail
    (vol,) = [p for p in out.rglob("*.dcm") if "VOLUME" in list(pydicom.dcmread(p, stop_before_pixels=True).ImageType)]
    ds = pydicom.dcmread(vol, stop_before_pixels=True)
    whole = _assemble(vol, ds)
    assert whole.shape[:2] == (2000, 2600) and int(ds.Columns) % 4 == 0
    for f in (2, 4):
        reduced = _assemble(vol, ds, reduce=f)
        expect = np.asarray(Image.fromarray(whole).reduce(f))
        assert reduced.shape == expect.shape == (-(-2000 // f), -(-2600 // f), 3)
        assert np.array_equal(reduced, expect)
    assert np.array_equal(_assemble(vol, ds, reduce=3), whole[::3, ::3])


@pytest.mark.parametrize("n", [1, 700, 1024, 1025, 1110, 1240, 1484, 2048, 2220, 4096, 10000])
def test_crops_cover_the_side_and_overlap(n):
    """``_spans``: the crops start at 0, end at the side, overlap by at least ``OVERLAP`` (a barcode
    up to that wide lies whole in one), are no longer than ``CROP`` (+1, rounding) and as few as
    that allows: a picture of 1,110 or 1,240 px is searched in two crops a side of 684 and 749 px,
    not two of 1,024 px."""
    from wsianon.verify.pyramid_barcodes import CROP, OVERLAP, _spans

    spans = _spans(n)
    assert spans[0][0] == 0 and spans[-1][0] + spans[-1][1] == n
    assert all(a + la - b >= OVERLAP for (a, la), (b, _lb) in zip(spans, spans[1:]))
    assert all(length <= min(n, CROP + 1) for _s, length in spans)
    assert len(spans) == (1 if n <= CROP else -(-(n - OVERLAP) // (CROP - OVERLAP)))
    if n in (1110, 1240):
        assert [length for _s, length in spans] == [{1110: 684, 1240: 749}[n]] * 2


@pytest.mark.parametrize(
    ("name", "factor", "searched"),
    [
        ("highdicom_sm_image.dcm", 5, "no barcode in the VOLUME level"),
        ("pathml_small_dicom.dcm", 4, "no barcode in the image without an image type"),
    ],
)
def test_reduced_assembly_of_real_instances(name, factor, searched):
    """Real instances: highdicom's 10 px frames reduced by 5 (a 50 px matrix: whole boxes), and
    pathml's 500 px JPEG frames by 4 (500 = 4 x 125; its 3,236 x 2,638 matrix leaves partial
    boxes at the edges): the reduced assembly equals PIL's reduce of the whole. ``dicom: barcode
    pyramid`` searches the VOLUME instance, and pathml's, which has no ImageType (before: "not
    searched: no 8-bit VOLUME level", and the check passed)."""
    import pydicom
    from PIL import Image

    from wsianon.pipeline.model import Verdict
    from wsianon.verify import pyramid_barcodes
    from wsianon.verify.dicom.images import _assemble

    from .conftest import shared

    path = shared(f"dicom/{name}")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    whole = _assemble(path, ds)
    reduced = _assemble(path, ds, reduce=factor)
    assert reduced.shape[:2] == (-(-whole.shape[0] // factor), -(-whole.shape[1] // factor))
    assert np.array_equal(reduced, np.asarray(Image.fromarray(whole).reduce(factor)))
    v = Verdict()
    pyramid_barcodes.check_dicom([(path, ds)], v)
    (check,) = v.checks
    assert check.name == "dicom: barcode pyramid" and check.ok and check.detail.startswith(searched), check


@pytest.mark.parametrize("typed", [True, False], ids=["volume", "untyped"])
def test_an_image_without_image_type_is_searched_where_no_volume_is(tmp_path, typed):
    """``wsianon verify`` of DICOM files whose image has no ImageType value 3 (pathml writes
    them so): ``dicom: barcode pyramid`` said "not searched: no 8-bit VOLUME level" and passed,
    whatever the image showed. Such an image is now searched where no instance is a VOLUME; a
    labelled one fails as the VOLUME level it was made from does. (``run`` refuses such inputs.)"""
    import pydicom
    from wsidicomizer import WsiDicomizer

    from wsianon.pipeline.model import Verdict
    from wsianon.verify import pyramid_barcodes

    src = _one_level_svs(tmp_path, "CASE-1313.svs", (1600, 1200), labelled=True)
    out = tmp_path / "dcm"
    WsiDicomizer.convert(src, out, include_label=False, include_overview=False, include_confidential=False)
    (path,) = [p for p in out.rglob("*.dcm") if pydicom.dcmread(p, stop_before_pixels=True).ImageType[2] == "VOLUME"]
    if not typed:
        ds = pydicom.dcmread(path)
        del ds.ImageType
        ds.save_as(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    v = Verdict()
    pyramid_barcodes.check_dicom([(path, ds)], v)
    (check,) = v.checks
    what = "the VOLUME level" if typed else "the image without an image type"
    assert check.ok is False and check.detail.startswith(f"1 barcode(s) found in {what} {path.name}"), check
    assert BARCODE not in check.detail


@pytest.mark.parametrize(("name", "what"), [("highdicom_sm_image.dcm", "the VOLUME level"), ("pathml_small_dicom.dcm", "the image without an image type")])
def test_a_searched_image_that_cannot_be_assembled_fails(monkeypatch, name, what):
    """Fail closed, typed or not: the picked image's frames cannot be assembled, the check fails
    and names the file and what it is."""
    import pydicom

    from wsianon.pipeline.model import Verdict
    from wsianon.verify import pyramid_barcodes
    from wsianon.verify.dicom import images

    from .conftest import shared

    def broken(*a, **k):
        raise ValueError("a frame does not decode")

    monkeypatch.setattr(images, "_assemble", broken)
    path = shared(f"dicom/{name}")
    v = Verdict()
    pyramid_barcodes.check_dicom([(path, pydicom.dcmread(path, stop_before_pixels=True))], v)
    (check,) = v.checks
    assert check.ok is False and check.detail == f"{path.name}: {what} cannot be searched for barcodes (ValueError)", check


def test_a_searched_level_without_columns_fails_closed():
    """Fuzz seed 49 (case 12: Columns deleted from the base VOLUME instance): choosing the reduction
    read Rows and Columns outside the fail-closed block, and ``wsianon verify`` stopped with an
    internal error (AttributeError) instead of judging the slide. The check now fails, named."""
    import pydicom

    from wsianon.pipeline.model import Verdict
    from wsianon.verify import pyramid_barcodes

    from .conftest import shared

    path = shared("dicom/highdicom_sm_image.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    del ds.Columns
    v = Verdict()
    pyramid_barcodes.check_dicom([(path, ds)], v)
    (check,) = v.checks
    assert check.ok is False and check.detail == f"{path.name}: the VOLUME level cannot be searched for barcodes (AttributeError)", check
