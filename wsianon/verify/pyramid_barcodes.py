"""``barcode-pyramid`` (native): no barcode in the slide's pyramid itself.

The label and macro images are removed and every kept associated image is searched for barcodes,
but the pyramid levels are passed through, proven identical to the source's (``tiles-identical``)
and proven the base downsampled (``pyramid-consistency``). When the scan area itself covers the
slide's label — an operator drew the scan region over the label end, a Leica SCN region does, a
label photo is pasted into a corner of level 0 and the lower levels are made from that base — the
label, its barcode and printed name, is in every level, consistent across them, and nothing else
looks for it.

Here one level of bounded size is searched with zxing-cpp: the smallest level whose long side is
at least ``TARGET`` px (else the largest) among those of at most ``MAX_LEVEL_PIXELS`` (a slide of
one huge level, no pyramid, is not searched: its detail says so), read through OpenSlide in strips of rows and
box-averaged by the least whole factor that brings it under ``MAX_PIXELS``
(``verify.thumbnail.read_level_reduced``: a strip and the reduced picture held at once). zxing
reads the whole picture, then overlapping crops of at most ``CROP`` px a side, enlarged (a label
in a corner is a small part of the picture; a crop searched alone and enlarged, the reader sees
a barcode of 1.2 to 1.8 px a module at a size it reads). Any barcode found fails the check; the detail names the level and the count,
never a decoded value. Not caught: a name written or printed without a barcode, and a barcode too
small at the searched level (README, Limitations).
"""

from __future__ import annotations

import math

import numpy as np

from wsianon.io import barcodes
from wsianon.verify.thumbnail import read_level_reduced

NAME = "barcode-pyramid"
TARGET = 1000  # the searched level's long side, at least (else the largest level)
MAX_PIXELS = 4 << 20  # the reduced picture searched, at most
# the searched level, at most (every pixel of it is decoded: ~1,000 tiles of 256 px); a pyramid
# whose levels step 4x on a side has one between TARGET and 4 x TARGET on its long side
MAX_LEVEL_PIXELS = 64 << 20
CROP = 1024  # the overlapping crops searched after the whole picture: at most this on a side
OVERLAP = 256  # crops overlap by at least this: a barcode up to 256 px wide lies whole in one
UPSCALE = 2  # each crop is searched enlarged: a barcode of 1.2 to 1.8 px a module is read only so


def _searched(size: tuple[int, int]) -> tuple[int, int]:
    """The size of the picture searched for a level of ``size``: reduced by ``reduce_factor``."""
    f = reduce_factor(size)
    return -(-size[0] // f), -(-size[1] // f)


def pick_search_level(dims: list[tuple[int, int]]) -> int | None:
    """Among the levels of at most ``MAX_LEVEL_PIXELS``: the smallest whose searched picture (the
    level reduced to at most ``MAX_PIXELS``) has a long side of at least ``TARGET``; else the one
    whose searched picture is largest (of those, the smallest level: a larger level reduced by a
    whole factor to the same size costs its decoding for nothing); None where every level is larger
    (one huge level, no pyramid)."""
    # a level of no positive size is none to search (fuzz seed 120: a DICOM TotalPixelMatrixRows of
    # -1 made the search size the square root of a negative number); the other checks judge it
    fit = [i for i, d in enumerate(dims) if d[0] > 0 and d[1] > 0 and d[0] * d[1] <= MAX_LEVEL_PIXELS]
    big = [i for i in fit if max(_searched(dims[i])) >= TARGET]
    if big:
        return min(big, key=lambda i: (dims[i][0] * dims[i][1], i))
    return min(fit, key=lambda i: (-math.prod(_searched(dims[i])), dims[i][0] * dims[i][1], i)) if fit else None


def reduce_factor(size: tuple[int, int]) -> int:
    """The least whole factor that brings ``size`` (w, h) to at most ``MAX_PIXELS`` pixels."""
    w, h = size
    f = max(1, math.ceil(math.sqrt(w * h / MAX_PIXELS)))
    while math.ceil(w / f) * math.ceil(h / f) > MAX_PIXELS:
        f += 1
    return f


def _spans(n: int) -> list[tuple[int, int]]:
    """(start, length) of the crops along a side of ``n`` px: the fewest crops of at most
    ``CROP`` px that overlap by at least ``OVERLAP``, all of one length (as short as that allows:
    a 1,240 px side is two crops of 749 px, not two of 1,024 that overlap by 808 and are searched,
    enlarged, at twice the cost)."""
    if n <= CROP:
        return [(0, n)]
    k = -(-(n - OVERLAP) // (CROP - OVERLAP))
    length = min(n, -(-(n + (k - 1) * OVERLAP) // k) + 1)  # +1: the starts' rounding
    starts = [(n - length) * i // (k - 1) for i in range(k)]
    return [(s, length) for s in starts]


def count_barcodes(pixels: np.ndarray) -> int:
    """Distinct barcodes (format and content) zxing-cpp finds in ``pixels`` (RGB uint8, searched as
    grey): the whole picture, then each overlapping crop (``_spans``: at most ``CROP`` px a side)
    enlarged ``UPSCALE`` times (a picture no larger than one crop: itself enlarged)."""
    from PIL import Image

    h, w = pixels.shape[:2]
    if pixels.ndim == 3 and pixels.shape[2] >= 3:
        grey = np.ascontiguousarray(pixels[..., :3].astype(np.uint16).sum(axis=2, dtype=np.uint16) // 3, dtype=np.uint8)
    else:
        grey = np.ascontiguousarray(pixels.reshape(pixels.shape[:2]), dtype=np.uint8)
    seen: set[tuple[str, bytes]] = set()

    def search(a: np.ndarray, **options) -> None:
        for r in barcodes.read(np.ascontiguousarray(a), **options):
            seen.add((str(r.format), bytes(r.bytes)))

    search(grey)
    for y, ch in _spans(h):
        for x, cw in _spans(w):
            crop = Image.fromarray(np.ascontiguousarray(grey[y : y + ch, x : x + cw]))
            search(np.asarray(crop.resize((crop.width * UPSCALE, crop.height * UPSCALE), Image.Resampling.BILINEAR)), try_downscale=False, try_invert=False)
    return len(seen)


def check_openslide(slide, verdict) -> None:
    """Search one bounded level of an open output slide for barcodes."""
    if not barcodes.available():
        verdict.add(NAME, True, "skipped: zxing-cpp is not installed")
        return
    try:
        dims = [tuple(d) for d in slide.level_dimensions]
        level = pick_search_level(dims)
        if level is None:
            verdict.add(NAME, True, f"not searched: no level of at most {MAX_LEVEL_PIXELS >> 20} Mpx (no pyramid to read the slide small)")
            return
        factor = reduce_factor(dims[level])
        pixels = read_level_reduced(slide, level, factor)
    except Exception as exc:  # fail closed: what cannot be read cannot be shown free of a label
        verdict.add(NAME, False, f"the pyramid cannot be read to search it for barcodes ({type(exc).__name__})")
        return
    try:
        found = count_barcodes(pixels)
    except Exception as exc:  # fail closed, as above
        verdict.add(NAME, False, f"the barcode search of pyramid level {level} failed ({type(exc).__name__})")
        return
    h, w = pixels.shape[:2]
    where = f"level {level} ({w}x{h} px searched{f', reduced {factor}x' if factor > 1 else ''})"
    verdict.add(NAME, found == 0, f"{found} barcode(s) found in pyramid {where}" if found else f"no barcode in pyramid {where}")


def check_dicom(dsets, verdict, name: str = "dicom: barcode pyramid") -> None:
    """The DICOM route's search: of the 8-bit VOLUME levels (where there is none, the 8-bit images
    without ImageType value 3, as pathml writes them: ``wsianon verify`` of such files), the one ``pick_search_level`` picks
    (as ``check_openslide`` picks a native level), assembled from its frames reduced by
    ``reduce_factor`` (each frame box-averaged as it is decoded, ``images._assemble``; a
    concatenated level read over its parts) and searched as a native level is."""
    if not barcodes.available():
        verdict.add(name, True, "skipped: zxing-cpp is not installed")
        return
    from wsianon.verify.dicom.common import image_kind
    from wsianon.verify.dicom.decode import wholes
    from wsianon.verify.dicom.images import _assemble, frame_divisor
    from wsianon.verify.thumbnail import _matrix

    volumes: list[tuple] = []
    untyped: list[tuple] = []  # images without ImageType value 3 (pathml's): searched where no VOLUME is
    try:
        for p, ds, parts in wholes(dsets):  # a concatenated level once, read over its parts
            if int(ds.get("BitsAllocated", 8) or 8) != 8:  # (a 16-bit level: not searched)
                continue
            kind = image_kind(ds)
            if kind == "VOLUME":
                volumes.append((_matrix(ds), p, ds, parts))
            elif not kind and "Rows" in ds and "Columns" in ds:
                untyped.append((_matrix(ds), p, ds, parts))
    except Exception as exc:
        verdict.add(name, False, f"the VOLUME levels cannot be read to search them for barcodes ({type(exc).__name__})")
        return
    # only where no image says it is a VOLUME: an untyped image picked among typed levels could
    # stand in for the level that holds the label
    what = "the VOLUME level" if volumes or not untyped else "the image without an image type"
    volumes = volumes or untyped
    pick = pick_search_level([v[0] for v in volumes])
    if pick is None:
        verdict.add(
            name, True, f"not searched: no 8-bit VOLUME level of at most {MAX_LEVEL_PIXELS >> 20} Mpx" if volumes else "not searched: no 8-bit VOLUME level"
        )
        return
    size, p, ds, parts = volumes[pick]
    factor = reduce_factor(size)
    try:
        # frames of 256 or 512 px and a factor of 3: 4 reduces every frame to whole boxes, averaged
        # (a factor that divides no frame keeps every n-th pixel: ``_assemble``); inside the fail-closed
        # block: it reads Rows and Columns, which a damaged file may lack (fuzz seed 49)
        factor = frame_divisor(ds, range(factor, factor + factor // 3 + 1), factor)
        pixels = _assemble(p, ds, parts, reduce=factor)
        found = count_barcodes(pixels)
    except Exception as exc:  # fail closed
        verdict.add(name, False, f"{p.name}: {what} cannot be searched for barcodes ({type(exc).__name__})")
        return
    h, w = pixels.shape[:2]
    where = f"{what} {p.name} ({w}x{h} px searched{f', reduced {factor}x' if factor > 1 else ''})"
    verdict.add(name, found == 0, f"{found} barcode(s) found in {where}" if found else f"no barcode in {where}")


__all__ = ["NAME", "check_dicom", "check_openslide", "count_barcodes", "pick_search_level"]
