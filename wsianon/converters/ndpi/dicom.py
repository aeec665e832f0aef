"""Hamamatsu NDPI on the DICOM route: which IFDs are pyramid levels, and how they are carried."""

from __future__ import annotations

from pathlib import Path

LENS_TAG = 65421  # NDPI source lens: positive on pyramid levels, -1 macro, -2 map

PASSTHROUGH_NOTE = "pyramid re-tiled without re-encoding: NDPI strips cut into frames by joining their JPEG restart intervals (entropy-coded data untouched)"


def level_sizes(source: Path) -> list[tuple[int, int]]:
    """(width, height) of every IFD whose source lens is positive (the pyramid levels)."""
    import tifffile

    sizes = []
    with tifffile.TiffFile(source) as tf:
        for p in tf.pages:
            assert isinstance(p, tifffile.TiffPage), "tf.pages yields TiffPage unless useframes is set"
            if p.tags.valueof(LENS_TAG) is not None and float(p.tags.valueof(LENS_TAG)) > 0:
                sizes.append((int(p.imagewidth), int(p.imagelength)))
    return sizes
