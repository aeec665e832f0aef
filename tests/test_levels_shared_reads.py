"""``pyramid-consistency`` reads each level once for every pair it is in.

A level between two others is the smaller level of one pair (sampled at 16 px a patch against the
level above it) and the larger of the next (64 px a patch against the level below), at the same
points of the slide, so in the same tiles. Sampled pair by pair, each such tile was decoded twice
(1,305 OpenSlide reads on the 2.25 GB benchmark slide; 793 now). These tests hold the shared reads
to the verdicts and scores the pair-by-pair sampling gives, count the reads, and keep the check
failing closed when a level cannot be read.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from .conftest import BUNDLED

openslide = pytest.importorskip("openslide")


def _three_levels(path: Path, level2=None) -> Path:
    """CMU-1's tissue (2,208 x 2,960 of its 2,220 x 2,967) as an Aperio slide with levels 4x and 16x smaller, each the
    base downsampled (``level2``: a picture written in level 2's place)."""
    import tifffile
    from PIL import Image

    with openslide.OpenSlide(str(BUNDLED / "CMU-1-Small-Region.svs")) as s:
        base = s.read_region((0, 0), 0, s.level_dimensions[0]).convert("RGB")
    # cut to multiples of 16: the levels' downsamples are then exactly 4 and 16 (OpenSlide draws a
    # level read from a level-0 position that is not a whole number of its pixels with a sub-pixel
    # shift, so where a downsample is not whole, reads from other origins differ a little)
    base = base.crop((0, 0, base.width // 16 * 16, base.height // 16 * 16))
    w, h = base.size
    head = "Aperio Image Library v12.0.15\r\n"
    pages = [(base, f"{head}{w}x{h} (256x256) JPEG/RGB Q=90|AppMag = 20|MPP = 0.499")]
    for down in (4, 16):
        size = (w // down, h // down)
        img = base.resize(size, Image.Resampling.BOX) if down == 4 or level2 is None else level2.resize(size)
        pages.append((img, f"{head}{w}x{h} (256x256) -> {size[0]}x{size[1]} JPEG/RGB Q=90"))
    with tifffile.TiffWriter(path) as tw:
        for img, desc in pages:
            tw.write(np.asarray(img), tile=(256, 256), compression="jpeg", compressionargs={"level": 90}, photometric="rgb", description=desc, metadata=None)
    return path


class _Counting:
    """An OpenSlide handle whose ``read_region`` calls are counted by level (``fail``: the level
    whose reads raise, as a tile that does not decode makes OpenSlide raise)."""

    def __init__(self, slide, fail: int | None = None) -> None:
        self._slide = slide
        self.reads: Counter = Counter()
        self.fail = fail

    def __getattr__(self, name):
        return getattr(self._slide, name)

    def read_region(self, location, level, size):
        self.reads[level] += 1
        if level == self.fail:
            raise openslide.OpenSlideError("a tile of this level does not decode")
        return self._slide.read_region(location, level, size)


class _Verdict:
    def __init__(self) -> None:
        self.got: list[tuple[str, bool, str]] = []

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.got.append((name, ok, detail))


def _open(path: Path, fail: int | None = None) -> _Counting:
    s = openslide.OpenSlide(str(path))
    s.set_cache(openslide.OpenSlideCache(0))
    return _Counting(s, fail)


def test_shared_reads_give_the_pair_by_pair_scores_and_verdicts(tmp_path):
    """Level 1, sampled for both pairs it is in at once, equals it sampled for each pair alone,
    array for array; the verdicts equal those of each pair sampled alone (``_pair``), on a clean
    slide and on one whose level 2 is a label photo."""
    from wsianon.verify import levels

    with openslide.OpenSlide(str(BUNDLED / "CMU-1-Small-Region.svs")) as s:
        label = s.associated_images["label"].convert("RGB")
    for path, bad_level in ((_three_levels(tmp_path / "clean.svs"), None), (_three_levels(tmp_path / "label.svs", label), 2)):
        slide = _open(path)
        try:
            pairs = [(1, 0), (2, 1)]
            shared = levels._judge_all(slide, pairs)
            # level 1 sampled for both pairs at once equals it sampled for each pair alone
            sets = [levels._pair_points(slide, k, r)[1] for k, r in pairs]
            for together, points in zip(levels._sampled_many(slide, 1, sets), sets):
                (alone,) = levels._sampled_many(slide, 1, [points])
                assert all(np.array_equal(a, b) for a, b in zip(together, alone))
            for k, r in pairs:
                assert shared[k] == levels._verdict_of(*levels._pair(slide, k, r))
                assert (shared[k] is None) == (k != bad_level), (path.name, k, shared[k])
        finally:
            slide.close()


def test_each_tile_of_a_middle_level_is_read_once(tmp_path):
    """Level 1 is in both pairs: the check reads each of its tiles at most once, where the two
    pairs judged apart read some of them twice."""
    from wsianon.verify import levels

    path = _three_levels(tmp_path / "clean.svs")
    slide = _open(path)
    try:
        v = _Verdict()
        levels.check_openslide(slide, v)
        assert v.got == [(levels.NAME, True, "2 level(s) below the base are a larger level downsampled (pixels)")]
        whole = dict(slide.reads)
        dims = slide.level_dimensions
        slide.reads.clear()
        levels._pair(slide, 2, 1)  # the pair level 1 is the larger of, alone
        as_larger = slide.reads[1]
        slide.reads.clear()
        levels._pair(slide, 1, 0)
        as_smaller = slide.reads[1]
    finally:
        slide.close()
    w, h = dims[1]
    tiles = -(-w // 256) * -(-h // 256)  # level 1's tiles (9)
    assert as_larger + as_smaller > tiles  # pair by pair, some tiles were read twice
    assert 0 < whole[1] <= tiles, (whole, tiles)  # read together: each tile at most once


def test_a_level_that_cannot_be_read_fails_every_pair_it_is_in(tmp_path):
    """Fail closed: level 1's reads raise; both pairs it is in fail, named, and the check fails."""
    from wsianon.verify import levels

    slide = _open(_three_levels(tmp_path / "clean.svs"), fail=1)
    try:
        v = _Verdict()
        levels.check_openslide(slide, v)
    finally:
        slide.close()
    ((name, ok, detail),) = v.got
    assert name == levels.NAME and ok is False
    assert "level 1: cannot be read to judge it (OpenSlideError)" in detail
    assert "level 2: cannot be read to judge it (OpenSlideError)" in detail
