"""False-positive hunt 11: pen marks against a sampled thumbnail reference.

The thumbnail check (``thumbnail-provenance``, DICOM ``dicom: thumbnail``) compares a kept
thumbnail with the slide's pyramid. A reference level over 4 Mpx was sampled at 32 points a side,
not read: a clean one-level 2,600 x 2,000 slide with a pen circle and ruler ticks drawn on it, and
an honest thumbnail (the slide box-averaged 4x), was quarantined on both routes (correlation
0.44 against the sampled reference; 0.98 against the level read whole). Now a reference level up
to ``THUMB_REF_WHOLE_PIXELS`` (64 Mpx) is read whole, reduced as it is read, so the slide passes;
a label photo written in the thumbnail's place still fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .fixtures.helpers import run_keyed

SIZE = (2600, 2000)


def _slide(tmp_path: Path, thumbnail: str) -> Path:
    from PIL import Image, ImageDraw

    from .fixtures.mrxs_gen import label_image
    from .fixtures.svs_gen import _tissue, write_svs

    img = Image.fromarray(np.asarray(_tissue(SIZE[1], SIZE[0], 1))).convert("RGB")
    draw = ImageDraw.Draw(img)
    draw.ellipse((600, 400, 1800, 1500), outline=(10, 10, 10), width=14)  # a pathologist's pen circle
    for x in range(100, 2500, 40):  # ruler ticks
        draw.line((x, 1900, x, 1960 if x % 200 else 1990), fill=(0, 0, 0), width=3)
    thumb = img.reduce(4)
    if thumbnail == "label":  # a label photo in the thumbnail's place, of the thumbnail's size
        thumb = label_image("S24-24680").convert("RGB").resize(thumb.size)
    (tmp_path / "src").mkdir(exist_ok=True)
    return write_svs(
        tmp_path / "src" / f"CASE-{thumbnail}.svs",
        size=SIZE,
        levels=1,
        with_label=False,
        with_macro=False,
        level_pixels={0: np.asarray(img)},
        thumbnail=np.asarray(thumb),
    ).path


def _failed(out: Path) -> list[str]:
    report = json.loads((out / "wsianon-report.json").read_text())
    return [c["check"] for s in report["slides"] for c in s["verification"]["checks"] if not c["ok"]]


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_pen_marks_and_an_honest_thumbnail_pass(cli, tmp_path, target):
    code, text, out = run_keyed(cli, tmp_path, _slide(tmp_path, "honest"), target)
    assert code == 0 and _failed(out) == [], text[-800:]


@pytest.mark.parametrize(("target", "check"), [("native", "thumbnail-provenance"), ("dicom", "dicom: thumbnail")])
def test_a_label_photo_as_thumbnail_still_fails(cli, tmp_path, target, check):
    code, text, out = run_keyed(cli, tmp_path, _slide(tmp_path, "label"), target)
    assert code != 0 and check in _failed(out), text[-800:]
