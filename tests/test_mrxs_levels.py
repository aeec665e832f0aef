"""``pyramid-consistency`` on MIRAX slides: a lower zoom level holding a label photo.

A zoom-level image is copied unchanged (``mrxs-tiles-identical`` proves it the source's), so a
label photo stored as level-1 images passed every check and was shared as verified: a viewer shows
it when the user zooms out. Every zoom level below the base must now be a larger level downsampled,
as for the other formats OpenSlide reads, over the part of the slide level 0 places images in
(OpenSlide's bounds: a real MIRAX grid spans the glass, the scan a part of it).
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from tests.fixtures.mrxs_gen import TILE, _jpeg, label_image, make_mrxs
from tests.fixtures.mrxs_hidden import _items, replace_tile


def _run(cli, inputs, out: Path, target: str = "native") -> tuple[int, dict]:
    code, _stdout, _stderr = cli("run", "--target", target, *[str(p) for p in inputs], "-o", str(out))
    return code, json.loads((out / "wsianon-report.json").read_text())


def _checks(slide: dict) -> dict[str, bool]:
    return {c["check"]: c["ok"] for c in (slide.get("verification") or {}).get("checks", [])}


class _Verdict:
    def __init__(self) -> None:
        self.got: list[tuple[str, bool, str]] = []

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.got.append((name, ok, detail))


def _spread_grid(info, images: int) -> None:
    """IMAGENUMBER_X/Y of ``images`` turned to 10,000: a grid spanning far more than the images
    (all of them land in row 0, a box OpenSlide's bounds give)."""
    ini = info.folder / "Slidedat.ini"
    text = ini.read_bytes()
    for axis in (b"X", b"Y"):
        text = text.replace(b"IMAGENUMBER_%s = %d\n" % (axis, images), b"IMAGENUMBER_%s = 10000\n" % axis)
    ini.write_bytes(text)


def _judged(mrxs: Path) -> tuple[list[tuple[str, bool, str]], dict[str, str], list[tuple[int, int]]]:
    """``pyramid-consistency`` on the slide: (its verdict lines, OpenSlide's properties, level sizes)."""
    import openslide

    from wsianon.verify import levels

    slide = openslide.OpenSlide(str(mrxs))
    try:
        props, dims = dict(slide.properties), [tuple(d) for d in slide.level_dimensions]
        v = _Verdict()
        levels.check_openslide(slide, v)
    finally:
        slide.close()
    return v.got, props, dims


def _label_as_level(info, level: int, part: int = 1) -> None:
    """The images of ``level`` covering 1/``part`` of it (a corner) replaced by a label photo
    scaled to that part (level 1 of ``make_mrxs``: image indices at even columns and rows)."""
    items = sorted(im for _at, im, _o, _l, _f in _items(info, level)[1])
    w, h = info.level_dims[level]
    side = max(TILE, w // part)
    photo = label_image("RTQX LEVEL LABEL").resize((side, side), Image.BILINEAR)
    images = int(round(info.level_dims[0][0] / TILE))
    step = 1 << level
    for im in items:
        tx, ty = (im % images) // step, (im // images) // step
        if (tx + 1) * TILE > side or (ty + 1) * TILE > side:
            continue
        replace_tile(info, level, im, _jpeg(photo.crop((tx * TILE, ty * TILE, (tx + 1) * TILE, (ty + 1) * TILE)), 80))


def test_a_label_photo_as_a_lower_zoom_level_is_quarantined(cli, tmp_path):
    src = tmp_path / "src"
    clean = make_mrxs(src, "SLIDE-L0", images=4, levels=3)
    whole = make_mrxs(src, "SLIDE-L1", images=4, levels=3)
    _label_as_level(whole, 1)
    quarter = make_mrxs(src, "SLIDE-L2", images=8, levels=3)
    _label_as_level(quarter, 1, part=2)  # one of level 1's four images: a quarter of it
    out = tmp_path / "out"
    code, report = _run(cli, [clean.mrxs, whole.mrxs, quarter.mrxs], out)
    assert code == 1
    slides = report["slides"]
    assert [s["status"] for s in slides] == ["ok", "failed", "failed"]
    assert _checks(slides[0])["pyramid-consistency"] is True
    for s in slides[1:]:
        checks = _checks(s)
        assert [n for n, ok in checks.items() if not ok] == ["pyramid-consistency"], checks
    detail = next(c["detail"] for c in slides[1]["verification"]["checks"] if c["check"] == "pyramid-consistency")
    assert "level 1" in detail and "RTQX" not in detail
    assert len(list(out.glob("*.mrxs"))) == 1


def test_verify_fails_an_output_made_without_the_check(cli, tmp_path, monkeypatch):
    """An output shared before this check (every run until now) fails ``verify``."""
    from wsianon.verify import levels

    info = make_mrxs(tmp_path / "src", "SLIDE-V1", images=4, levels=3)
    _label_as_level(info, 2)
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(levels, "check_openslide", lambda *a, **k: None)
        code, report = _run(cli, [info.mrxs], out)
    assert code == 0, [s["status"] for s in report["slides"]]
    (main,) = out.glob("*.mrxs")
    code, stdout, _ = cli("verify", str(main))
    assert code == 1
    fails = [ln.split(":")[0].strip() for ln in stdout.splitlines() if ln.strip().startswith("FAIL")]
    assert fails == ["FAIL pyramid-consistency"], stdout[-2000:]


def test_the_dicom_route_quarantines_it_too(cli, tmp_path):
    """The DICOM route writes what OpenSlide draws at each level; ``dicom: pyramid`` compares them."""
    info = make_mrxs(tmp_path / "src", "SLIDE-D1", images=4, levels=3)
    _label_as_level(info, 1)
    out = tmp_path / "out"
    code, report = _run(cli, [info.mrxs], out, target="dicom")
    assert code == 1
    assert report["slides"][0]["status"] == "failed"
    assert not list(out.rglob("*.dcm"))


def test_only_the_part_level_0_places_images_in_is_compared(tmp_path):
    """A grid far larger than the scan (IMAGENUMBER 10,000 a side, images in row 0): the levels
    are compared over OpenSlide's bounds. Clean, they pass (compared over the whole grid, almost
    every point lies where no level has pixels: "too little of it has pixels"); a label photo as
    level 1 there fails."""
    results = []
    for name, plant in (("SLIDE-G1", False), ("SLIDE-G2", True)):
        info = make_mrxs(tmp_path / "src", name, images=4, levels=3)
        if plant:
            _label_as_level(info, 1)
        _spread_grid(info, 4)
        got, props, _dims = _judged(info.mrxs)
        assert "openslide.bounds-width" in props
        results.append(got)
    (clean,), (planted,) = results
    assert clean[:2] == ("pyramid-consistency", True), clean
    assert planted[:2] == ("pyramid-consistency", False) and "level 1" in planted[2], planted


def test_real_tissue_with_stitching_offsets_passes(tmp_path, monkeypatch):
    """A clean slide must not be quarantined: real tissue (the bundled CMU-1 region, tiled) as an
    8 x 8 MIRAX grid, its camera positions moved up to 48 px (of 256) from the grid as a stitcher
    moves them. OpenSlide draws a lower-level image at its first camera image's position, so its
    levels are offset from level 0 by up to that much: they pass. The same slide with a label photo
    as level 1 fails."""
    import random
    import struct

    import openslide
    from PIL import Image

    import tests.fixtures.mrxs_gen as gen
    from tests.conftest import BUNDLED
    from tests.fixtures.mrxs_hidden import use_positions

    cmu = openslide.OpenSlide(str(BUNDLED / "CMU-1-Small-Region.svs"))
    try:
        region = cmu.read_region((0, 0), 0, cmu.dimensions).convert("RGB")
    finally:
        cmu.close()

    def real_tissue(w: int, h: int, seed: int = 0) -> Image.Image:
        out = Image.new("RGB", (w, h))
        for y in range(0, h, region.height):
            for x in range(0, w, region.width):
                out.paste(region, (x, y))
        return out

    monkeypatch.setattr(gen, "tissue", real_tissue)

    got = []
    for name, plant in (("SLIDE-R1", False), ("SLIDE-R2", True)):
        info = gen.make_mrxs(tmp_path / "src", name, images=8, levels=4)
        if plant:
            _label_as_level(info, 1)
        use_positions(info, set())
        fname, off, _ln = info.blobs["default"]
        data = bytearray((info.folder / fname).read_bytes())
        rng = random.Random(48)
        for i in range(64):
            flag, x, y = struct.unpack_from("<Bii", data, off + 9 * i)
            struct.pack_into("<Bii", data, off + 9 * i, flag, max(0, x + rng.randint(-48, 48)), max(0, y + rng.randint(-48, 48)))
        (info.folder / fname).write_bytes(bytes(data))
        got.append(_judged(info.mrxs)[0])
    (clean,), (planted,) = got
    assert clean[:2] == ("pyramid-consistency", True), clean
    assert planted[:2] == ("pyramid-consistency", False) and "level 1" in planted[2], planted


def test_a_level_whose_compared_part_is_small_is_not_compared(tmp_path, monkeypatch):
    """The size guard (``MIN_LEVEL_SIDE``: JPEG rounding dominates a level of a few pixels) applies
    to the part compared, not to the level: on a grid spanning the glass, a low level is
    thousands of pixels wide while the scanned part of it is a few. Here the guard is raised above
    level 1's part (512 px) but not its size (1,280,000 px): level 1 is counted as small."""
    from wsianon.verify import levels

    info = make_mrxs(tmp_path / "src", "SLIDE-S1", images=2, levels=2)
    _spread_grid(info, 2)
    monkeypatch.setattr(levels, "MIN_LEVEL_SIDE", 600)
    got, props, dims = _judged(info.mrxs)
    assert dims[1][0] > 600 and int(props["openslide.bounds-width"]) // 2 < 600
    ((name, ok, detail),) = got
    assert (name, ok) == ("pyramid-consistency", True) and "1 level(s) under 600 px not compared" in detail, got
