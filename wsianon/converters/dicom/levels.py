"""Pyramid levels wsidicomizer reads through tiffslide, placed where the source has them.

wsidicomizer asks tiffslide for a level's region at ``int(x * downsample)`` in level-0
coordinates, and tiffslide maps that back with ``int(... / downsample)``. At a downsample that is
not an integer (Aperio's second level of the TCGA JPEG 2000 sample: 2.0005) every frame after the
first column or row is read one pixel early: the DICOM level repeats a column and row at every
frame seam, so its pixels are not the source level's, and ``dicom: frames`` rightly quarantined
the clean slide (PSNR 26.8 dB against the source region). Reading at ``ceil(x * downsample)``
maps back to exactly ``x`` for every downsample >= 1.
"""

from __future__ import annotations

import math
import types


def _exact_region(self, region):
    """``TiffSlideLevelImageData._get_region`` (wsidicomizer) with the level-0 location rounded up."""
    if region.size.width < 0 or region.size.height < 0:
        raise ValueError("Negative size not allowed")
    d = float(self._downsample)
    x0 = math.ceil(region.start.x * d) + int(self._offset.x)
    y0 = math.ceil(region.start.y * d) + int(self._offset.y)
    data = self._slide.read_region((x0, y0), self._level_index, region.size.to_tuple(), as_array=True)
    if self._detect_blank_tile(data):
        return None
    if self.samples_per_pixel == 1:
        data = data.squeeze(2)
    return data


def align_levels(image_datas) -> int:
    """Read each tiffslide level of a non-integer downsample (and no level-0 offset) at its exact
    pixels. Returns how many were changed."""
    try:
        from wsidicomizer.sources.tiffslide.tiffslide_image_data import TiffSlideLevelImageData
    except ImportError:
        return 0
    n = 0
    for data in image_datas:
        if not isinstance(data, TiffSlideLevelImageData):
            continue
        d = float(getattr(data, "_downsample", 1) or 1)
        offset = getattr(data, "_offset", None)
        if d == int(d) or offset is None or (int(offset.x), int(offset.y)) != (0, 0):
            continue
        data._get_region = types.MethodType(_exact_region, data)
        n += 1
    return n


__all__ = ["align_levels"]
