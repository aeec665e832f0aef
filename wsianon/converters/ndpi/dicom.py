"""Hamamatsu NDPI on the DICOM route: which IFDs are pyramid levels, and how they are carried."""

from __future__ import annotations

from pathlib import Path

LENS_TAG = 65421  # NDPI source lens: positive on pyramid levels, -1 macro, -2 map

PASSTHROUGH_NOTE = "pyramid re-tiled without re-encoding: NDPI strips cut into frames by joining their JPEG restart intervals (entropy-coded data untouched)"


def level_sizes(source: Path) -> list[tuple[int, int]]:
    """(width, height) of the pyramid levels: the sizes of the IFDs whose source lens is positive,
    each once (a z-stack stores a level once per focal plane: one level, not several)."""
    import tifffile

    from wsianon.verify.planes import number

    sizes: list[tuple[int, int]] = []
    with tifffile.TiffFile(source) as tf:
        for p in tf.pages:
            assert isinstance(p, tifffile.TiffPage), "tf.pages yields TiffPage unless useframes is set"
            size = (int(p.imagewidth), int(p.imagelength))
            if (number(p.tags.valueof(LENS_TAG)) or 0) > 0 and size not in sizes:
                sizes.append(size)
    return sizes
