"""False positives: a thumbnail white-balanced or colour-managed apart from the tiles is still the
slide (``thumbnail.alike``); a name written in its colours is still refused."""

from __future__ import annotations

import numpy as np
import pytest

from wsianon.verify import thumbnail

from .conftest import shared

WARM = np.array([1.05, 1.0, 0.92])  # a warm white balance: R up 5 %, B down 8 %


def _cast(rgb: np.ndarray, gains=WARM) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * gains, 0, 255).round().astype(np.uint8)


def _iso_name(thumb: np.ndarray) -> np.ndarray:
    """``thumb`` with "DOE JANE" written across it in colours whose luma is the picture's own (only
    Cb/Cr change; as red team 4 planted it, in letters large against the thumbnail)."""
    from .fixtures.helpers import iso_name

    return iso_name(thumb, (28, 28 * thumb.shape[0] // thumb.shape[1]), (1, 1))


def _little_tissue() -> np.ndarray:
    """A slide of little tissue: white glass, a small textured pink (H&E) patch."""
    rng = np.random.default_rng(7)
    a = np.full((768, 1024, 3), 244, np.float32)
    yy, xx = np.mgrid[:768, :1024]
    blob = ((yy - 300) / 90.0) ** 2 + ((xx - 600) / 140.0) ** 2 < 1
    a[blob] = np.array([222, 150, 196]) + rng.normal(0, 14, (int(blob.sum()), 3))
    return np.clip(a, 0, 255).astype(np.uint8)


def test_a_thumbnail_with_its_own_white_balance_is_the_slide():
    """Before: the colour differences of a slide of little tissue are near-uniform, so they were
    judged by their mean absolute difference alone, and a thumbnail with a warm white balance
    (one shift of the whole picture) was not the slide."""
    slide = _little_tissue()
    thumb = slide[::4, ::4]
    shape = thumbnail.grid_shape((thumb.shape[1], thumb.shape[0]))
    ref = thumbnail.prepare(slide, shape)
    assert thumbnail.alike(thumbnail.prepare(thumb, shape), ref)
    assert thumbnail.alike(thumbnail.prepare(_cast(thumb), shape), ref)
    # the leak stays closed: a name in the thumbnail's colours, its luma the picture's own
    assert not thumbnail.alike(thumbnail.prepare(_iso_name(thumb), shape), ref)
    assert not thumbnail.alike(thumbnail.prepare(_iso_name(_cast(thumb)), shape), ref)


def test_a_real_thumbnail_with_a_warm_white_balance_is_the_slide():
    """The TCGA sample (JPEG 2000, little tissue): its own thumbnail with a warm cast."""
    import openslide

    with openslide.OpenSlide(str(shared("aperio/histolab_tcga-cr-7395-01a-01-ts1.svs"))) as s:
        img = np.asarray(s.associated_images["thumbnail"].convert("RGB"))
        base = tuple(s.level_dimensions[0])
        shape = thumbnail.grid_shape((img.shape[1], img.shape[0]))
        ref = thumbnail.openslide_reference(s, shape)
    size = (img.shape[1], img.shape[0])
    assert thumbnail.judge(_cast(img), size, base, ref)[0]
    assert not thumbnail.judge(_iso_name(img), size, base, ref)[0]


@pytest.mark.parametrize("gains", [(1.0, 1.0, 0.75), (0.8, 0.8, 1.0)])
def test_a_thumbnail_recoloured_past_any_white_balance_is_not(gains):
    """A shift larger than a white balance makes (``MAX_COLOUR_CAST``) is still judged as before."""
    slide = _little_tissue()
    thumb = slide[::4, ::4]
    shape = thumbnail.grid_shape((thumb.shape[1], thumb.shape[0]))
    assert not thumbnail.alike(thumbnail.prepare(_cast(thumb, np.array(gains)), shape), thumbnail.prepare(slide, shape))
