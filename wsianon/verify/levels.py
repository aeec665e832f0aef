"""``pyramid-consistency`` (native): every pyramid level below the base shows the slide.

A native output's levels are proven identical to the source's tiles (``tiles-identical``), which
says nothing of what they show: a label photo (a handwritten name) scaled to a level's size and
stored as that level is the source's level, so it passed identity, the barcode search (which looks
at associated images only) and the thumbnail check (whose reference is one level) — and was shared
as verified; a viewer shows it when the user zooms out. Here each level OpenSlide shows below the
base (level 0, the slide's picture by definition: the level the identity and the padding checks
judge at full resolution) must be ``alike`` (``verify.thumbnail``: grey and the two colour
differences, ``GRID`` px on the long side, blurred; its thresholds) the smallest larger level at
least ``MIN_OVERSAMPLE`` times that grid (``pick_level``, the rule the DICOM route's
``dicom: pyramid`` follows for a VOLUME level) — a chain down to the base — over the part of the
slide both cover (a Philips level padded to its tiles covers more than the base).

Both levels are sampled at the same ``POINTS`` points a side of the slide, a point's patch the
same part of the slide in both: at most ``READ`` px of the larger level a side (the grid cell where
that is smaller), moved (at most half a patch) to lie inside one of its tiles. Sampled apart, a
patch of a few hundred pixels standing for a cell of thousands differs from the cell's mean by what
the tissue holds there, and two levels of dense real tissue scored 0.95 with a 16th departing by
17.6 grey levels (of 20); sampled together they score 0.998 and 2.6 at worst. Cost: the patches starting in
one tile are read together, over every pair the level is in (a middle level is the smaller of one
pair and the larger of the next, sampled at the same points: each tile decoded once), at most
``POINTS`` x ``POINTS`` per level compared, and only the patches' pixels are averaged (a patch's mean colour, then its grey and colour
differences: they are linear in the colour). Levels under ``MIN_LEVEL_SIDE`` px on their long side
are too small for that (JPEG rounding dominates them): each of at least ``TINY_MIN_PIXELS`` is
read whole and judged against the slide at its size by the mean difference of the prepared
channels (``TINY_GREY``, ``TINY_COLOUR``); smaller ones and an MRXS slide's are not compared,
named in the detail. A level that cannot be read
fails (fail closed). Details name the check and the level's index, never a measured value. An
MRXS slide is judged as OpenSlide draws it, over the box of its placed level-0 images (``_bounds``, ``_region``);
no real MIRAX pixels were available to calibrate that (README, Limitations).
"""

from __future__ import annotations

import math

import numpy as np

from wsianon.verify.thumbnail import (
    GRID,
    MIN_CELLS,
    MIN_COVERED,
    MIN_LEVEL_SIDE,
    READ,
    _channels,
    alike,
    aspect_ok,
    flat,
    openslide_reference,
    prepare,
    within,
    blurred_covered,
    covered_grid,
    grid_shape,
    pick_level,
    read_in_threads,
    tile_size,
)

NAME = "pyramid-consistency"
# sample points on the long side of the compared part: a label photo as a level scores 0.00 (32
# points: 0.04), one over the middle 16th of a level 0.88 with a 16th departing by 37 (32 points:
# 0.85, 40), one over its middle 64th passes at either (README, Limitations); 16 costs a third of 32
POINTS = 16
# a cell with pixels in the level (this much of it at least) and none in the larger one (this much at
# most): the two levels' edges fall into a cell in parts that differ by rounding (a Leica region's
# edge: 0.50 against 0.48)
ORPHAN = 0.1
DETAIL_PIXELS = "its pixels are not the slide's (a larger level downsampled)"
# a level under MIN_LEVEL_SIDE (too small for the correlation rule: JPEG rounding dominates it) of
# at least TINY_MIN_PIXELS is judged whole against the slide at its size, by the mean |difference|
# of the prepared channels (grey; the two colour differences): raw text bytes as the pixels of a
# 15 x 15 level (red team stop 38: 675 bytes of a patient record read back from a verified output)
# measured 120-175 grey levels from three real slides; the slides' own pixels resampled to 15 to
# 4 px a side 0-6 (area) and 0.4-13.6 (nearest: a writer's pixel picked, not averaged); round 2's
# record bytes with bit 7 set (to look bright) 39 / 31. Under 16 pixels a nearest pick departs as
# far as text (one dark pixel of a 2 x 2 level: 84), so such a level is not compared; it must be
# the pyramid's next smaller level (the slide's aspect, its long side at most TINY_STEP of the next
# larger level's): round 2 stored any number of 15 x 1 levels of 45 bytes each
TINY_GREY, TINY_COLOUR, TINY_MIN_PIXELS, TINY_STEP = 24.0, 16.0, 16, 2 / 3


Bounds = tuple[float, float, float, float] | None

# A TIFF writer may leave tiles out (byte count 0: a Philips scanner's un-scanned tiles; OpenSlide
# draws them transparent, cuCIM and opentile white). A smaller level then has pixels where the
# larger has none: such a cell is not an orphan only where every tile of the larger level it meets
# is left out in the output's own tile table (a real tile, blank or not, is pixels), and only when
# the smaller level shows nothing there: every pixel of its patch (less ABSENT_MARGIN px at each
# side, where its downsampling reaches into the scanned neighbour) at least ABSENT_LIGHT in each
# channel (white fill with JPEG noise); anything drawn there is pixels no larger level has.
ABSENT_LIGHT = 224
ABSENT_MARGIN = 1
DETAIL_ABSENT = "it has pixels that are not blank where a larger level leaves its tiles out"
Absent = dict[int, tuple[int, int, np.ndarray]]  # level -> (tile width, tile height, left-out mask (rows, columns))


def absent_tiles(path, dims: list[tuple[int, int]]) -> Absent:
    """For each level of ``dims`` whose one tiled page of its size (the output's own TIFF, read by
    tifffile, not the redactor) leaves tiles out (byte count 0): its tile size and which tiles.
    A level with no such page, more than one, or a tile table that is not its grid gets nothing
    (its empty cells stay orphans: fail closed).

    Memory: the pages are read one at a time (tifffile's page cache off) and each keeps only its
    left-out mask (a byte a tile, and only where a tile is left out), so that no tile table of the
    slide (tuples of Python ints, ~70 bytes a tile) outlives its page: the cached tables were 12.4 MiB
    of a 4.5 GB slide's traced peak (3 MiB at 1.1 GB), the part of it that grew with the slide."""
    from wsianon.verify.tileid import release_cycles

    if path is None:
        return {}
    try:
        by_size: dict[tuple[int, int], list[int]] = {}
        for level, (w, h) in enumerate(dims):
            by_size.setdefault((int(w), int(h)), []).append(level)
        return _absent_tiles(path, by_size)
    except Exception:
        return {}
    finally:
        release_cycles()


def _absent_tiles(path, levels: dict[tuple[int, int], list[int]]) -> Absent:
    import tifffile

    seen: dict[tuple[int, int], int] = {}  # size -> tiled pages of that size
    masks: dict[tuple[int, int], tuple[int, int, np.ndarray]] = {}
    with tifffile.TiffFile(path) as tf:
        tf.pages.cache = False  # one page at a time (tifffile keeps the first page regardless)
        for pg in tf.pages:
            if not (isinstance(pg, tifffile.TiffPage) and pg.is_tiled):
                continue
            size = (int(pg.imagewidth), int(pg.imagelength))
            if size not in levels:
                continue
            seen[size] = seen.get(size, 0) + 1
            if seen[size] > 1:
                masks.pop(size, None)
                continue
            tw, th = int(pg.tilewidth), int(pg.tilelength)
            if tw <= 0 or th <= 0:
                continue
            cols, rows = -(-size[0] // tw), -(-size[1] // th)
            counts = np.asarray(pg.databytecounts, np.int64)
            if int(pg.planarconfig) == 2 or int(pg.imagedepth or 1) != 1 or counts.size != cols * rows:
                continue
            mask = (counts == 0).reshape(rows, cols)
            if mask.any():
                masks[size] = (tw, th, mask)
    return {level: masks[size] for size, lv in levels.items() if size in masks for level in lv}


def _bounds(slide) -> Bounds:
    """An MRXS slide's OpenSlide bounds (x, y, width, height in level-0 pixels: the box of the
    level-0 images it places, computed from the index, not read from the file; absent when they
    are the whole level), else None."""
    props = slide.properties
    if props.get("openslide.vendor") != "mirax":
        return None
    try:
        bx, by, bw, bh = (float(props[f"openslide.bounds-{n}"]) for n in ("x", "y", "width", "height"))
    except (KeyError, ValueError):
        return None
    return bx, by, bw, bh


def _region(dims, downs, k: int, r: int, bounds: Bounds = None) -> tuple[float, float, float, float]:
    """(x, y, width, height): the part of the slide (level-0 pixels) levels ``k`` and ``r`` both
    cover, cut to ``bounds`` (``_bounds``): a real MIRAX grid spans the whole glass and holds
    tissue in a part of it, and its levels have no pixels elsewhere. A lower-level image drawn
    outside that box covers no placed level-0 image, which the redactor zeroes and
    ``mrxs-unscanned`` proves zero."""
    ew = min(dims[k][0] * downs[k], dims[r][0] * downs[r])
    eh = min(dims[k][1] * downs[k], dims[r][1] * downs[r])
    if bounds is None:
        return 0.0, 0.0, ew, eh
    bx, by, bw, bh = bounds
    x0, y0 = min(max(bx, 0.0), ew), min(max(by, 0.0), eh)
    return x0, y0, max(0.0, min(bx + bw, ew) - x0), max(0.0, min(by + bh, eh) - y0)


def _points(slide, r: int, region: tuple[float, float, float, float], shape: tuple[int, int]) -> list[tuple[int, int, float, float, float, float]]:
    """(i, j, x, y, w, h): each grid point's patch, in level-0 pixels (``POINTS`` points on the
    long side of ``region``, as many as ``shape`` allows on the other)."""
    ox, oy, ew, eh = region
    down = slide.level_downsamples[r]
    n_x, n_y = (max(1, round(POINTS * s / max(shape))) for s in shape)
    pw, ph = min(ew / n_x, READ * down), min(eh / n_y, READ * down)
    tw, th = (t * down for t in tile_size(slide, r))

    def place(c: float, p: float, tile: float, lo: float, size: float) -> float:
        x = c - p / 2
        if 0 < p <= tile:  # inside the tile of r holding the point
            t0 = math.floor(c / tile) * tile
            x = min(max(x, t0), t0 + tile - p)
        return min(max(x, lo), max(lo, lo + size - p))

    return [
        (i, j, place(ox + (i + 0.5) * ew / n_x, pw, tw, ox, ew), place(oy + (j + 0.5) * eh / n_y, ph, th, oy, eh), pw, ph)
        for j in range(n_y)
        for i in range(n_x)
    ]


def _patch_box(lw: int, lh: int, down: float, x: float, y: float, w: float, h: float) -> tuple[int, int, int, int]:
    """A point's patch (level-0 ``x, y, w, h``) in a level of ``lw`` x ``lh`` px and downsample
    ``down``: (xa, ya, xb, yb), at least one pixel, inside the level."""
    xa, ya = min(lw - 1, int(x / down)), min(lh - 1, int(y / down))
    xb, yb = min(lw, max(xa + 1, round((x + w) / down))), min(lh, max(ya + 1, round((y + h) / down)))
    return xa, ya, xb, yb


def _sampled_many(slide, level: int, point_sets: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each of ``point_sets`` (the points of every pair the level is in: the smaller level of
    one, the larger of the next): (grey and colour differences (3, n_y, n_x), the part of the patch
    that has pixels (n_y, n_x)) of ``level`` at each point's patch: its mean colour over the pixels
    OpenSlide draws there (an MRXS or Leica level may be drawn in part). The patches starting in one
    tile are read together over all the sets, so a tile both pairs sample is decoded once (a
    pyramid's level 1 is sampled at 16 px a patch against level 0 and at 64 px against level 2, in
    the same tiles). Where the level's downsample is whole, a patch's pixels are the same whatever
    else its read holds; where it is not (a level of 741 px under one of 2,967), OpenSlide draws a
    read from a level-0 position with a sub-pixel shift, so a patch read with others differs from
    it read alone by that shift (as patches of one pair in one tile always were)."""
    lw, lh = slide.level_dimensions[level]
    down = slide.level_downsamples[level]
    out = []
    tw, th = (t or 256 for t in tile_size(slide, level))
    by_tile: dict[tuple[int, int], list[tuple[int, int, int, int, int, int, int]]] = {}
    for s, points in enumerate(point_sets):
        n_x = max(p[0] for p in points) + 1
        n_y = max(p[1] for p in points) + 1
        out.append((np.zeros((n_y, n_x, 3), np.float64), np.zeros((n_y, n_x), np.float32)))
        for i, j, x, y, w, h in points:
            xa, ya, xb, yb = _patch_box(lw, lh, down, x, y, w, h)
            by_tile.setdefault((xa // tw, ya // th), []).append((s, i, j, xa, ya, xb, yb))

    def read(group) -> list[tuple[int, int, int, np.ndarray, float]]:
        x0, y0 = min(b[3] for b in group), min(b[4] for b in group)
        x1, y1 = max(b[5] for b in group), max(b[6] for b in group)
        a = np.asarray(slide.read_region((int(x0 * down), int(y0 * down)), level, (x1 - x0, y1 - y0)))
        got = []
        for s, i, j, xa, ya, xb, yb in group:
            patch = a[ya - y0 : yb - y0, xa - x0 : xb - x0].reshape(-1, 4).astype(np.float64)
            alpha = patch[:, 3] / 255.0
            if alpha.sum() > 0:
                got.append((s, i, j, (patch[:, :3] * alpha[:, None]).sum(axis=0) / alpha.sum(), float(alpha.mean())))
        return got

    for got in read_in_threads(read, list(by_tile.values())):
        for s, i, j, colour, part in got:
            out[s][0][j, i] = colour
            out[s][1][j, i] = part
    return [(_channels(rgb.astype(np.float32)), cover) for rgb, cover in out]


def _pair_points(slide, k: int, r: int, bounds: Bounds = None) -> tuple[tuple[int, int], list]:
    """(the compared grid's shape, the points both levels of the pair ``k``, ``r`` are sampled at)."""
    dims = [tuple(d) for d in slide.level_dimensions]
    region = _region(dims, list(slide.level_downsamples), k, r, bounds)
    # one grid for every level of a pyramid (its levels' sizes differ by rounding only); a level
    # smaller than the grid at its own size
    shape = grid_shape((max(1, round(region[2])), max(1, round(region[3]))))
    if max(dims[k]) < GRID:
        shape = grid_shape(dims[k])
    return shape, _points(slide, r, region, shape)


def _prepared(
    shape: tuple[int, int], mine_s: tuple[np.ndarray, np.ndarray], theirs_s: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The two levels' samples at the compared grid (``verify.thumbnail``: box-averaged and blurred
    counting only cells with pixels), and the part of each cell with pixels, for each."""
    (mine, mine_cover), (theirs, their_cover) = (covered_grid(x[0], x[1], shape) for x in (mine_s, theirs_s))
    return blurred_covered(mine, mine_cover), blurred_covered(theirs, their_cover), mine_cover, their_cover


def _pair(slide, k: int, r: int, bounds: Bounds = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(level ``k``, level ``r``: prepared at the compared grid (``verify.thumbnail``: box-averaged
    and blurred counting only cells with pixels); the part of each cell with pixels, for each),
    sampled at the same points of the part of the slide both cover."""
    shape, points = _pair_points(slide, k, r, bounds)
    return _prepared(shape, _sampled_many(slide, k, [points])[0], _sampled_many(slide, r, [points])[0])


def _verdict_of(mine, theirs, mine_cover, their_cover) -> str | None:
    """Why the smaller level of a prepared pair (``_prepared``) is not the larger downsampled, or
    None. Compared where both have pixels (``MIN_COVERED``); a level with pixels in a cell where the
    larger has none (``ORPHAN``; the larger is made from the same scan: it has pixels wherever a
    smaller level does) fails, and so does one with too little to compare (``MIN_CELLS``)."""
    valid = (mine_cover >= MIN_COVERED) & (their_cover >= MIN_COVERED)
    if ((mine_cover >= 1 - ORPHAN) & (their_cover <= ORPHAN)).any():
        return "it has pixels where a larger level has none"
    if int(valid.sum()) < min(MIN_CELLS, valid.size):
        return "too little of it has pixels to compare it with a larger level"
    return None if alike(mine, theirs, None if valid.all() else valid) else DETAIL_PIXELS


def _patch_pixels(slide, level: int, x: float, y: float, w: float, h: float, margin: int = 0) -> np.ndarray:
    """The RGBA pixels of ``level`` over a point's patch (level-0 ``x, y, w, h``), as
    ``_sampled_many`` bounds it, less ``margin`` px at each side where the patch is larger."""
    lw, lh = slide.level_dimensions[level]
    down = slide.level_downsamples[level]
    xa, ya, xb, yb = _patch_box(lw, lh, down, x, y, w, h)
    if xb - xa > 2 * margin:
        xa, xb = xa + margin, xb - margin
    if yb - ya > 2 * margin:
        ya, yb = ya + margin, yb - margin
    return np.asarray(slide.read_region((int(xa * down), int(ya * down)), level, (xb - xa, yb - ya)))


def _in_absent(slide, level: int, absent: tuple[int, int, np.ndarray], x: float, y: float, w: float, h: float) -> bool:
    """Whether every tile of ``level`` a point's patch meets is left out (``absent_tiles``)."""
    tw, th, mask = absent
    lw, lh = slide.level_dimensions[level]
    xa, ya, xb, yb = _patch_box(lw, lh, slide.level_downsamples[level], x, y, w, h)
    return bool(mask[ya // th : (yb - 1) // th + 1, xa // tw : (xb - 1) // tw + 1].all())


def _excuse_absent(slide, k: int, r: int, points: list, mine: tuple[np.ndarray, np.ndarray], absent: Absent) -> bool:
    """Level ``k``'s samples (``mine``) with the points where level ``r`` leaves its tiles out
    taken as having no pixels (so neither an orphan nor compared) — when ``k`` is blank there
    (``ABSENT_LIGHT``); False when it is not (``DETAIL_ABSENT``)."""
    if r not in absent:
        return True
    cover = mine[1]
    for i, j, x, y, w, h in points:
        if cover[j, i] <= 0 or not _in_absent(slide, r, absent[r], x, y, w, h):
            continue
        px = _patch_pixels(slide, k, x, y, w, h, ABSENT_MARGIN)
        drawn = px[..., 3] > 0
        if (px[..., :3][drawn] < ABSENT_LIGHT).any():
            return False
        cover[j, i] = 0.0
    return True


def _judge_all(slide, pairs: list[tuple[int, int]], bounds: Bounds = None, absent: Absent | None = None) -> dict[int, str | None]:
    """Why level k is not level r downsampled (``_verdict_of``), or None, for every pair (k, r),
    each level sampled once for all the pairs it is in (``_sampled_many``); raises what reading a
    level raised.  ``absent``: the levels that leave tiles out (``absent_tiles``), where a smaller
    level may show blank background (``_excuse_absent``)."""
    points = {k: _pair_points(slide, k, r, bounds) for k, r in pairs}
    wanted: dict[int, list[tuple[int, int]]] = {}  # level -> (pair's k, role: 0 the smaller, 1 the larger)
    for k, r in pairs:
        wanted.setdefault(k, []).append((k, 0))
        wanted.setdefault(r, []).append((k, 1))
    samples: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for level in sorted(wanted):
        got = _sampled_many(slide, level, [points[k][1] for k, _role in wanted[level]])
        samples.update(zip(wanted[level], got))
    verdicts: dict[int, str | None] = {}
    for k, r in pairs:
        mine = samples[(k, 0)]
        if absent:
            mine = (mine[0], mine[1].copy())
            if not _excuse_absent(slide, k, r, points[k][1], mine, absent):
                verdicts[k] = DETAIL_ABSENT
                continue
        verdicts[k] = _verdict_of(*_prepared(points[k][0], mine, samples[(k, 1)]))
    return verdicts


def _tiny_verdict(slide, dims: list[tuple[int, int]], k: int) -> str | None:
    """Why level ``k`` (under ``MIN_LEVEL_SIDE``, read whole) is not the slide at its size, or None."""
    w, h = dims[k]
    if not aspect_ok((w, h), dims[0]):
        return "its aspect is not the slide's"
    mine = prepare(flat(slide, slide.read_region((0, 0), k, (w, h))), (w, h))
    return None if within(mine, openslide_reference(slide, (w, h)), TINY_GREY, TINY_COLOUR) else DETAIL_PIXELS


def check_openslide(slide, verdict, path=None) -> None:
    """Judge every level of an open output slide below its base (``path``: the output's file, whose
    tile tables say which tiles a level leaves out: ``absent_tiles``; without it none is)."""
    try:
        dims = [tuple(d) for d in slide.level_dimensions]
        downs = list(slide.level_downsamples)
        bounds = _bounds(slide)
    except Exception as exc:  # a handle a failed read left in error (the thumbnail check's)
        verdict.add(NAME, False, f"the levels cannot be read to judge them ({type(exc).__name__})")
        return
    if len(dims) < 2:
        verdict.add(NAME, True, "one level: the slide's picture by definition (its tiles are the source's)")
        return
    bad: list[str] = []
    small = 0
    pairs: list[tuple[int, int]] = []
    tiny: list[int] = []
    for k in range(1, len(dims)):
        # the part compared, at the level's own size: an MRXS slide's bounds can be far smaller
        # than its level (a grid spanning the glass)
        part = _region(dims, downs, k, 0, bounds)
        if max(dims[k]) < MIN_LEVEL_SIDE and bounds is None:
            if dims[k][0] * dims[k][1] >= TINY_MIN_PIXELS:
                tiny.append(k)  # judged whole below
            elif not aspect_ok(dims[k], dims[0]) or max(dims[k]) > TINY_STEP * max(dims[k - 1]):
                bad.append(f"level {k}: a level under {TINY_MIN_PIXELS} pixels that is not the pyramid's next smaller level (aspect or size)")
            else:
                small += 1
            continue
        if max(dims[k]) < MIN_LEVEL_SIDE or max(part[2], part[3]) / downs[k] < MIN_LEVEL_SIDE:
            small += 1
            continue
        area = dims[k][0] * dims[k][1]
        larger = [i for i in range(len(dims)) if dims[i][0] * dims[i][1] > area] or list(range(k))
        pairs.append((k, larger[pick_level([dims[i] for i in larger], grid_shape(dims[k]))]))
    try:
        absent = absent_tiles(path, dims) if bounds is None and pairs else {}
        verdicts = _judge_all(slide, pairs, bounds, absent)
    except Exception as exc:  # fail closed: a level that cannot be read fails every pair (the handle is in error)
        verdicts = {k: f"cannot be read to judge it ({type(exc).__name__})" for k, _r in pairs}
    for k in tiny:
        try:
            verdicts[k] = _tiny_verdict(slide, dims, k)
        except Exception as exc:  # fail closed
            verdicts[k] = f"cannot be read to judge it ({type(exc).__name__})"
    n = len(pairs)
    for k in sorted(verdicts):
        if verdicts[k] is not None:
            bad.append(f"level {k}: {verdicts[k]}")
    note = f"; {small} level(s) under {MIN_LEVEL_SIDE} px not compared" if small else ""
    note += f"; {len(tiny)} level(s) under {MIN_LEVEL_SIDE} px judged whole" if tiny else ""
    verdict.add(NAME, not bad, "; ".join(bad[:5]) + note if bad else f"{n} level(s) below the base are a larger level downsampled (pixels){note}")


__all__ = ["NAME", "check_openslide"]
