"""``thumbnail-provenance`` (native) and ``dicom: thumbnail``: a kept thumbnail is the slide.

A thumbnail says it is the slide, downsampled; nothing else judges its pixels but a barcode
search, so a label photo (a handwritten name, no barcode) stored as the thumbnail — the SVS/GT450
thumbnail IFD, a DICOM THUMBNAIL instance — would be shared as verified. Here it must be proven,
from the output alone, to be what it says:

* aspect — its size is the slide's (level 0's / the largest VOLUME's) scaled, to the rounding of
  its size and one pixel more (real thumbnails: CMU-1 2220x2967 -> 574x768, TCGA 4443x3567 ->
  956x768);
* pixels — grey, box-averaged to at most ``GRID`` pixels on its long side and blurred, it
  correlates (Pearson) with the slide's own pyramid — its smallest level at least
  ``MIN_OVERSAMPLE`` times that size — rendered the same way at
  least ``MIN_CORRELATION``; where either is near-uniform (a blank slide: no correlation to
  speak of), their mean absolute difference is at most ``MAX_UNIFORM_MAD`` instead; and no
  part of it departs from the rendering (the worst of ``BLOCKS`` x ``BLOCKS`` blocks of the
  residual after a linear fit, ``MAX_BLOCK_RESIDUAL``). Proven at that size only: text small
  against the thumbnail written onto the slide's own picture is not seen (README, Limitations).

What is decoded is bounded: a reference level of at most ``THUMB_REF_WHOLE_PIXELS`` is read whole,
box-averaged as it is read (a strip of rows, DICOM one frame, and the reduced picture held); a larger
one (a slide without a pyramid) is sampled at ``SAMPLES`` x ``SAMPLES`` points (each the tile holding
the point or a region of at most ``PATCH`` px; DICOM: only the frames holding a point are decoded). The thresholds are calibrated on the real samples and planted label photos
(README, "Verification"). Details name the check, never a measured value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NAME = "thumbnail-provenance"  # the check of the kept thumbnail (check_openslide's default name)
GRID = 64  # long side of the compared grey images
SAMPLES = 32  # points per side where the reference level is too large to read whole
PATCH = 512  # pixels per side of one sample at most (the tile holding the point, else a cell)
READ = 64  # pixels per side read of a tile that stands for its cell (its middle)
REF_MAX_PIXELS = 4 << 20  # a level up to this is read whole
# the thumbnail check's reference level is read whole, reduced as it is read, up to this: sampled at
# 32 points a side, a slide of one 5.2 Mpx level with a pen circle or a printed line on it failed
# an honest thumbnail (correlation 0.44; read whole, 0.98)
THUMB_REF_WHOLE_PIXELS = 64 << 20
MIN_OVERSAMPLE = 4  # the reference level is at least this many times the grid
MIN_LEVEL_SIDE = 16  # a pyramid level smaller than this on its long side is not compared with another (JPEG rounding dominates)
BLUR = 1.0  # Gaussian sigma, in grid cells
MIN_CORRELATION = 0.80
UNIFORM_STD = 4.0  # grey levels: below this (either image) correlation is meaningless
MAX_UNIFORM_MAD = 8.0
BLOCKS = 4  # the residual is judged in BLOCKS x BLOCKS parts
MAX_BLOCK_RESIDUAL = 20.0  # grey levels, mean |residual| of the worst part
# a colour difference (Cb/Cr units) shifted whole by at most this is a white balance or colour
# profile applied to one image and not the other (a warm cast, R x1.05 and B x0.92, moves white glass by 13 in Cb)
MAX_COLOUR_CAST = 16.0

DETAIL_OK = "the thumbnail is the slide's pyramid downsampled (aspect and pixels)"
DETAIL_ASPECT = "the thumbnail's aspect is not the slide's: it cannot be the slide downsampled"
DETAIL_PIXELS = "the thumbnail's pixels are not the slide's pyramid downsampled"


def aspect_ok(thumb: tuple[int, int], base: tuple[int, int]) -> bool:
    """``thumb`` (w, h) is ``base`` (w, h) scaled, to the rounding of the thumbnail's size."""
    tw, th = thumb
    bw, bh = base
    if min(tw, th, bw, bh) < 1:
        return False
    # the thumbnail's long side fixes the scale; the other side is known to one pixel
    if tw >= th:
        return bh * (tw - 1) / bw - 1 <= th <= bh * (tw + 1) / bw + 1
    return bw * (th - 1) / bh - 1 <= tw <= bw * (th + 1) / bh + 1


def grid_shape(size: tuple[int, int]) -> tuple[int, int]:
    """(w, h) of the compared images for a thumbnail of ``size`` (w, h)."""
    w, h = size
    scale = min(1.0, GRID / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _grey(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        return a.astype(np.float32)
    rgb = a[..., :3].astype(np.float32)
    if a.shape[-1] == 1:
        return rgb[..., 0]
    return rgb @ _LUMA


_STRIP_ROWS = 256  # rows of a colour image turned into channels at a time (``_channels``)


def _channels(a: np.ndarray) -> np.ndarray:
    """(3, h, w): grey (luma) and the two colour differences (Cb, Cr as JPEG scales them; zero for a
    grey image).  Text written in colours of the picture's own luma changes only the latter.

    A colour image is done ``_STRIP_ROWS`` rows at a time into the one result: the whole image as
    float RGB, its luma and the stacked planes were ~150 MB at once for the 4 Mpx level a DICOM
    thumbnail's reference reads whole (the largest allocation of a 4.5 GB slide's DICOM
    verification); the values are the same, row for row."""
    a = np.asarray(a)
    if a.ndim == 2 or a.shape[-1] < 3:
        y = _grey(a)
        return np.stack([y, np.zeros_like(y), np.zeros_like(y)])
    out = np.empty((3, *a.shape[:2]), np.float32)
    for r in range(0, a.shape[0], _STRIP_ROWS):
        rgb = a[r : r + _STRIP_ROWS, :, :3].astype(np.float32)
        y = rgb @ _LUMA
        out[0, r : r + _STRIP_ROWS] = y
        out[1, r : r + _STRIP_ROWS] = (rgb[..., 2] - y) * 0.564
        out[2, r : r + _STRIP_ROWS] = (rgb[..., 0] - y) * 0.713
    return out


def _box(grey: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Box-average (area) resample of a float image to ``shape`` (w, h)."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(grey, np.float32)).resize(shape, Image.Resampling.BOX), np.float32)


def _blur(a: np.ndarray) -> np.ndarray:
    r = 2
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / BLUR) ** 2)
    k /= k.sum()
    p = np.pad(a, r, mode="edge")
    rows = np.zeros((p.shape[0], a.shape[1]), np.float64)
    for i in range(2 * r + 1):
        rows += k[i] * p[:, i : i + a.shape[1]]
    out = np.zeros(a.shape, np.float64)
    for i in range(2 * r + 1):
        out += k[i] * rows[i : i + a.shape[0], :]
    return out


MIN_COVERED = 0.5  # a grid cell is compared where at least this much of it has pixels in both images
MIN_CELLS = 16  # fewer cells compared than this cannot tell a picture (fail closed)


def covered_grid(chans: np.ndarray, cover: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(channels (3, h, w) box-averaged to ``shape`` counting only pixels that are there, unblurred;
    the part of each cell that has pixels) of ``chans`` whose pixels are there as much as ``cover``
    says (0..1): a sparse level (DICOM TILED_SPARSE, an MRXS or Leica level OpenSlide draws in
    part) pulls no colour in from where it has none."""
    box_cover = _box(cover, shape)
    return np.stack([_box(c * cover, shape) for c in chans]) / np.maximum(box_cover, 1e-6), box_cover


def blurred_covered(grid: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Blurred as ``prepare`` blurs, counting only cells with pixels (normalised: a sparse level's
    empty cells pull no colour in)."""
    if (cover >= 1 - 1e-3).all():
        return np.stack([_blur(c) for c in grid])
    weight = _blur(cover)
    return np.stack([_blur(c * cover) for c in grid]) / np.maximum(weight, 1e-6)


def prepare(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Grey and colour differences (``_channels``), each area-averaged to ``shape`` (w, h) and
    blurred: (3, h, w)."""
    return _prepare_channels(_channels(pixels), shape)


def _prepare_channels(chans: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.stack([_blur(_box(c, shape)) for c in chans])


def measures(thumb: np.ndarray, ref: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """Similarity of two prepared images of the same shape: ``corr`` (Pearson; NaN where either is
    near-uniform, ``UNIFORM_STD``), ``mad`` (mean |difference|), ``block`` (worst part's mean |residual| after
    fitting ``thumb ~ a*ref + b``). With ``valid`` (a boolean mask of the shape) only those cells
    count (a sparse DICOM level: where both images have pixels); a part without one is not judged."""
    a = thumb.astype(np.float64)
    b = ref.astype(np.float64)
    v = np.ones(a.shape, bool) if valid is None else np.asarray(valid, bool)
    av, bv = a[v], b[v]
    sa, sb = float(av.std()), float(bv.std())
    mad = float(np.abs(av - bv).mean())
    corr = float("nan")
    if sa >= UNIFORM_STD and sb >= UNIFORM_STD:
        corr = float(((av - av.mean()) * (bv - bv.mean())).mean() / (sa * sb))
    if sb > 1e-6:
        slope = float(((av - av.mean()) * (bv - bv.mean())).mean() / (sb * sb))
        resid = a - (slope * (b - bv.mean()) + av.mean())
    else:
        resid = a - av.mean()
    h, w = resid.shape
    block = 0.0
    for i in range(BLOCKS):
        for j in range(BLOCKS):
            rows = slice(i * h // BLOCKS, max((i + 1) * h // BLOCKS, i * h // BLOCKS + 1))
            cols = slice(j * w // BLOCKS, max((j + 1) * w // BLOCKS, j * w // BLOCKS + 1))
            part = resid[rows, cols][v[rows, cols]]
            if part.size:
                block = max(block, float(np.abs(part).mean()))
    return {"corr": corr, "mad": mad, "block": block, "std_thumb": sa, "std_ref": sb}


def matches(m: dict[str, float]) -> bool:
    if m["std_thumb"] < UNIFORM_STD or m["std_ref"] < UNIFORM_STD:  # no correlation to speak of
        return m["mad"] <= MAX_UNIFORM_MAD and m["block"] <= MAX_BLOCK_RESIDUAL
    return m["corr"] >= MIN_CORRELATION and m["block"] <= MAX_BLOCK_RESIDUAL


def alike(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> bool:
    """Two prepared images (``prepare``: grey, then the two colour differences) show the same
    picture: each channel ``matches`` (a kept thumbnail and the slide; a pyramid level and a larger
    one).  A colour difference is compared less the median of its difference to the other where
    that is at most ``MAX_COLOUR_CAST``: a thumbnail white-balanced or colour-managed apart from
    the tiles is shifted whole (one number, no text), which on a slide of little tissue (a colour
    difference near-uniform, judged by its mean absolute difference) failed; text written in
    colours changes the lesser part of it, whose difference the median leaves whole. ``valid``:
    only those cells are compared (``measures``)."""
    v = np.ones(a.shape[1:], bool) if valid is None else np.asarray(valid, bool)
    if not len(a) == len(b) == 3 or not v.any() or not matches(measures(a[0], b[0], valid)):
        return False
    for x, y in zip(a[1:], b[1:]):
        shift = float(np.median((x - y)[v]))  # the background's: text in colours is the lesser part
        if abs(shift) <= MAX_COLOUR_CAST:
            x = x - shift
        if not matches(measures(x, y, valid)):
            return False
    return True


def within(a: np.ndarray, b: np.ndarray, grey: float, colour: float) -> bool:
    """Whether two channel images of one shape (``_channels`` or ``prepare``: grey, then the two
    colour differences) differ by at most ``grey`` in the grey's mean |difference| and ``colour``
    in either colour difference's: a picture too small for ``alike`` (a pyramid level or a focal
    plane under ``MIN_LEVEL_SIDE``)."""
    g, cb, cr = (float(x) for x in np.abs(a - b).reshape(3, -1).mean(axis=1))
    return g <= grey and max(cb, cr) <= colour


def judge(thumb_pixels: np.ndarray, thumb_size: tuple[int, int], base_size: tuple[int, int], ref: np.ndarray) -> tuple[bool, str, dict]:
    """(ok, detail, measures) for a thumbnail of ``thumb_size`` whose slide's level 0 is
    ``base_size`` and whose prepared reference is ``ref`` (``prepare``: grey, then the colour
    differences).  Each must match: a thumbnail whose grey is the slide's but whose colours spell
    a name (text in colours of the picture's own luma) is not the slide downsampled."""
    if not aspect_ok(thumb_size, base_size):
        return False, DETAIL_ASPECT, {}
    thumb = prepare(thumb_pixels, grid_shape(thumb_size))
    ok = alike(thumb, ref)
    return ok, DETAIL_OK if ok else DETAIL_PIXELS, measures(thumb[0], ref[0])


def pick_level(dims: list[tuple[int, int]], shape: tuple[int, int]) -> int:
    """Index of the smallest level at least ``MIN_OVERSAMPLE`` times the compared grid on both
    sides (a pyramid may go down to 1x1), else of the largest."""
    fits = [k for k, (w, h) in enumerate(dims) if w >= MIN_OVERSAMPLE * shape[0] and h >= MIN_OVERSAMPLE * shape[1]]
    if fits:
        return min(fits, key=lambda k: (dims[k][0] * dims[k][1], k))
    return max(range(len(dims)), key=lambda k: (dims[k][0] * dims[k][1], -k))


# --- OpenSlide (native outputs) -------------------------------------------------------------


STRIP_PIXELS = 1 << 20  # a level read whole is read in strips of rows of about this many pixels


def _background(slide) -> str:
    return "#" + str((getattr(slide, "properties", None) or {}).get("openslide.background-color") or "ffffff")


def _flat(region, bg: str) -> np.ndarray:
    """An OpenSlide RGBA region as RGB, drawn over the background colour ``bg`` as OpenSlide's
    own thumbnail is."""
    from PIL import Image

    a = np.asarray(region)
    if a.shape[-1] == 4 and a[..., 3].min() == 255:  # opaque: nothing to composite
        return a[..., :3]
    canvas = Image.new("RGB", region.size, bg)
    canvas.paste(region, mask=region)
    return np.asarray(canvas)


def flat(slide, region) -> np.ndarray:
    """An OpenSlide RGBA region as RGB pixels, drawn over the slide's background colour."""
    return _flat(region, _background(slide))


def read_level_reduced(slide, level: int, factor: int) -> np.ndarray:
    """Level ``level`` of an OpenSlide slide, whole, over its background colour, box-averaged by
    ``factor`` on both sides (PIL ``reduce``; ``factor`` 1: as read): RGB uint8.  Read in strips
    of rows (``STRIP_PIXELS``, a multiple of ``factor`` rows each): what it holds at once is a strip
    and the reduced picture, however large the level — reading a level of 2.8 Mpx in one
    ``read_region`` and converting it whole raised a 4 GiB slide's peak RSS by 115 MiB."""
    from PIL import Image

    lw, lh = slide.level_dimensions[level]
    down = slide.level_downsamples[level]
    bg = _background(slide)
    factor = max(1, int(factor))
    rows = max(factor, STRIP_PIXELS // max(lw, 1) // factor * factor)
    parts = []
    for y in range(0, lh, rows):
        h = min(rows, lh - y)
        a = _flat(slide.read_region((0, int(round(y * down))), level, (lw, h)), bg)
        parts.append(np.asarray(Image.fromarray(np.ascontiguousarray(a)).reduce(factor)) if factor > 1 else np.array(a))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _oversampled_factor(size: tuple[int, int], shape: tuple[int, int]) -> int:
    """The largest whole factor that keeps a level of ``size`` at least ``MIN_OVERSAMPLE`` times
    the compared grid ``shape`` on both sides (at least 1)."""
    return max(1, min(size[0] // (MIN_OVERSAMPLE * shape[0]), size[1] // (MIN_OVERSAMPLE * shape[1])))


def openslide_reference(slide, shape: tuple[int, int]) -> np.ndarray:
    """The slide's reference level (``pick_level``), rendered as OpenSlide draws it over its
    background colour, prepared at ``shape``. A level over ``REF_MAX_PIXELS`` is sampled, not read
    whole; a smaller one is read in strips, box-averaged to at least ``MIN_OVERSAMPLE`` times the
    grid as it is read (``read_level_reduced``; ``prepare`` then averages the rest of the way)."""
    level = pick_level(list(slide.level_dimensions), shape)
    lw, lh = slide.level_dimensions[level]

    if lw * lh <= THUMB_REF_WHOLE_PIXELS:
        return prepare(read_level_reduced(slide, level, _oversampled_factor((lw, lh), shape)), shape)
    down = slide.level_downsamples[level]
    n_x, n_y = (max(1, round(SAMPLES * s / max(shape))) for s in shape)
    grid = np.empty((3, n_y, n_x), np.float32)
    tw, th = tile_size(slide, level)
    pw, ph = max(1, min(PATCH, lw // n_x)), max(1, min(PATCH, lh // n_y))
    tiled = 0 < tw <= PATCH and 0 < th <= PATCH
    # each point's patch: the tile holding it when a tile fits in a cell, else a cell-sized region
    # around it (cut to the tile holding it, so that every tile is read once, whole)
    by_tile: dict[tuple[int, int, int, int], list[tuple[int, int, int, int, int, int]]] = {}
    for j in range(n_y):
        for i in range(n_x):
            cx, cy = int((i + 0.5) * lw / n_x), int((j + 0.5) * lh / n_y)
            if tiled:
                x, y = cx - cx % tw, cy - cy % th
                w, h = max(1, min(tw, lw - x)), max(1, min(th, lh - y))
                if tw <= pw and th <= ph:
                    # the tile stands for its cell: its middle READ x READ px are read (OpenSlide
                    # decodes the tile either way; converting 256 x 256 RGBA pixels to Python cost
                    # three times the decoding: 1.4 against 0.45 ms a sample, 1,024 samples)
                    sw, sh = min(READ, w), min(READ, h)
                    x, y, w, h = x + (w - sw) // 2, y + (h - sh) // 2, sw, sh
                    box = (0, 0, w, h)
                else:
                    box = (max(0, cx - x - pw // 2), max(0, cy - y - ph // 2), min(w, cx - x + (pw + 1) // 2), min(h, cy - y + (ph + 1) // 2))
            else:
                x, y = max(0, cx - pw // 2), max(0, cy - ph // 2)
                w, h = max(1, min(pw, lw - x)), max(1, min(ph, lh - y))
                box = (0, 0, w, h)
            by_tile.setdefault((x, y, w, h), []).append((i, j, *box))

    def read(item) -> list[tuple[int, int, np.ndarray]]:
        (x, y, w, h), points = item
        region = _channels(flat(slide, slide.read_region((int(x * down), int(y * down)), level, (w, h))))
        return [(i, j, region[:, y0:y1, x0:x1].mean(axis=(1, 2))) for i, j, x0, y0, x1, y1 in points]

    for got in read_in_threads(read, list(by_tile.items())):
        for i, j, mean in got:
            grid[:, j, i] = mean
    return _prepare_channels(grid, shape)


def tile_size(slide, level: int) -> tuple[int, int]:
    """(w, h) of ``level``'s tiles as OpenSlide gives them (``openslide.level[N].tile-width`` /
    ``-height``); 0 where it gives none or no number."""
    props = getattr(slide, "properties", None) or {}
    try:
        return int(props.get(f"openslide.level[{level}].tile-width") or 0), int(props.get(f"openslide.level[{level}].tile-height") or 0)
    except (TypeError, ValueError):
        return 0, 0


def read_in_threads(read, items: list, workers: int = 2) -> list:
    """``[read(item) for item in items]``, in that order, by ``workers`` threads: the sampled
    checks' reads decode one tile each in OpenSlide, without the GIL, and they run after the
    read-back, when the other core is idle (each item's answer depends on that item alone)."""
    if workers < 2 or len(items) < 2:
        return [read(it) for it in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wsianon-sample") as ex:
        return list(ex.map(read, items))


def check_openslide(slide, verdict, name: str = NAME) -> None:
    """Judge OpenSlide's ``thumbnail`` associated image of an open output slide."""
    try:
        img = slide.associated_images["thumbnail"]
    except Exception as exc:
        verdict.add(name, False, f"the thumbnail cannot be decoded to judge it ({type(exc).__name__})")
        return
    base = tuple(slide.level_dimensions[0])
    if not aspect_ok(img.size, base):
        verdict.add(name, False, DETAIL_ASPECT)
        return
    shape = grid_shape(img.size)
    try:
        ref = openslide_reference(slide, shape)
    except Exception as exc:
        verdict.add(name, False, f"the slide cannot be rendered to judge its thumbnail ({type(exc).__name__})")
        return
    ok, detail, _m = judge(np.asarray(img.convert("RGB")), img.size, base, ref)
    verdict.add(name, ok, detail)


# --- DICOM ---------------------------------------------------------------------------------


def _matrix(ds) -> tuple[int, int]:
    return int(ds.get("TotalPixelMatrixColumns", 0) or ds.Columns), int(ds.get("TotalPixelMatrixRows", 0) or ds.Rows)


def dicom_reference(path: Path, ds, shape: tuple[int, int], parts=None) -> np.ndarray:
    """A VOLUME instance's whole image prepared at ``shape``: assembled from every frame up to
    ``REF_MAX_PIXELS``; up to ``THUMB_REF_WHOLE_PIXELS`` assembled reduced (each frame box-averaged
    as it is decoded); otherwise sampled (only the frames holding a sample are decoded).
    ``parts``: the instances of a concatenation whose first part ``ds`` is (``decode.wholes``)."""
    from wsianon.verify.dicom.decode import _frames_at, first_picture, frame_origins, whole_count, whole_frames_at
    from wsianon.verify.dicom.images import _assemble, frame_divisor

    cols, rows = _matrix(ds)
    if cols * rows <= REF_MAX_PIXELS:
        return prepare(_assemble(path, ds, parts), shape)
    if cols * rows <= THUMB_REF_WHOLE_PIXELS:  # reduced as it is assembled (one frame and the picture held)
        factor = frame_divisor(ds, range(_oversampled_factor((cols, rows), shape), 0, -1), 1)  # box-averaged
        return prepare(_assemble(path, ds, parts, reduce=factor), shape)
    whole = parts is not None and len(parts) > 1
    origins = first_picture(ds, frame_origins(ds, whole_count(parts)) if whole else frame_origins(ds))
    if origins is None:
        raise ValueError("frame positions cannot be determined")
    fw, fh = int(ds.Columns), int(ds.Rows)
    where = {o: k for k, o in enumerate(origins)}
    n_x, n_y = (max(1, round(SAMPLES * s / max(shape))) for s in shape)
    points: dict[int, list[tuple[int, int, int, int]]] = {}
    for j in range(n_y):
        for i in range(n_x):
            x = min(cols - 1, int((i + 0.5) * cols / n_x))
            y = min(rows - 1, int((j + 0.5) * rows / n_y))
            ox, oy = x - x % fw, y - y % fh
            k = where.get((ox, oy))
            if k is None:
                raise ValueError("a sample point lies in no frame")
            points.setdefault(k, []).append((i, j, x - ox, y - oy))
    grid = np.empty((3, n_y, n_x), np.float32)
    half = max(1, min(PATCH, cols // n_x, rows // n_y) // 2)
    for k, fv in whole_frames_at(parts, sorted(points)) if whole else _frames_at(path, ds, sorted(points)):
        a, f = _decoded_small(fv, ds)
        for i, j, px, py in points[k]:
            y0, y1, x0, x1 = (int(v * f) for v in (max(0, py - half), py + half, max(0, px - half), px + half))
            grid[:, j, i] = a[:, y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].mean(axis=(1, 2))
    return _prepare_channels(grid, shape)


def _decoded_small(frame: bytes, ds) -> tuple[np.ndarray, float]:
    """A frame as grey and colour-difference pixels (``_channels``), and their scale: a JPEG frame decoded at 1/8 (libjpeg-turbo's DCT
    scaling: a sample is a mean over the frame, which the reduced decode keeps; 1,024 frames of a
    slide without a pyramid cost 1.4 s decoded whole), any other codec whole."""
    from wsianon.io.dicomframes import JPEG_TS, decode_rgb, turbojpeg

    if str(ds.file_meta.get("TransferSyntaxUID", "")) in JPEG_TS:
        from turbojpeg import TJPF_RGB

        a = turbojpeg().decode(frame, pixel_format=TJPF_RGB, scaling_factor=(1, 8))
        return _channels(a), a.shape[1] / int(ds.Columns)
    return _channels(decode_rgb(frame, ds)), 1.0


def check_dicom(dsets, verdict, name: str = "dicom: thumbnail") -> None:
    """Every THUMBNAIL instance must be the slide's pyramid (a VOLUME level) downsampled."""
    from wsianon.verify.dicom.common import image_kind
    from wsianon.verify.dicom.images import _assemble

    thumbs = [(p, ds) for p, ds in dsets if image_kind(ds) == "THUMBNAIL"]
    if not thumbs:
        verdict.add(name, True, "no THUMBNAIL instance")
        return
    from wsianon.verify.dicom.decode import wholes

    volumes = []
    parts_of = {}
    for p, ds, parts in wholes(dsets):  # a concatenated level once, read over its parts
        if image_kind(ds) == "VOLUME":
            try:
                volumes.append((p, ds, _matrix(ds)))
                parts_of[p] = parts
            except (AttributeError, TypeError, ValueError):
                continue
    if not volumes:
        verdict.add(name, False, "a THUMBNAIL without a VOLUME level: it cannot be proven to be the slide")
        return
    base = max((m for _p, _ds, m in volumes), key=lambda m: (m[0] * m[1], m))
    bad = []
    refs: dict[tuple[int, int], np.ndarray] = {}
    for p, ds in thumbs:
        try:
            size = _matrix(ds)
            if not aspect_ok(size, base):
                bad.append(f"{p.name}: {DETAIL_ASPECT}")
                continue
            shape = grid_shape(size)
            if shape not in refs:
                ref_p, ref_ds, _size = volumes[pick_level([m for _p, _ds, m in volumes], shape)]
                refs[shape] = dicom_reference(ref_p, ref_ds, shape, parts_of[ref_p])
            ok, detail, _measures = judge(_assemble(p, ds), size, base, refs[shape])
        except Exception as exc:
            bad.append(f"{p.name}: the THUMBNAIL cannot be judged ({type(exc).__name__})")
            continue
        if not ok:
            bad.append(f"{p.name}: {detail}")
    verdict.add(name, not bad, "; ".join(bad[:5]) or f"{len(thumbs)} THUMBNAIL instance(s): the slide's pyramid downsampled (aspect and pixels)")


__all__ = ["aspect_ok", "check_dicom", "check_openslide", "judge", "measures", "openslide_reference", "dicom_reference"]
