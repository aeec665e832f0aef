"""Edge padding carries nothing: the pixels of edge tiles/frames that no viewer shows.

A tiled TIFF page whose ImageWidth/ImageLength is not a multiple of its tile size has right and
bottom edge tiles that decode to more pixels than the image holds; a DICOM TILED_FULL (or sparse)
instance whose TotalPixelMatrixColumns/Rows is not a multiple of Columns/Rows has edge frames
alike.  Readers crop that padding away, so thumbnails, pyramids and tile identity (the tiles are
the source's, copied unchanged) never see it — a writer can put a patient's name there.

This check decodes every edge tile of every tiled page (every edge frame of every instance) and
requires every 8 x 8 cell of its padding (on the tile's own grid, the pixels beyond the image) to
be explained by what the visible image already holds, by one of the models real writers
were measured to use (README, "Verification"):

* ``uniform`` — one colour (the median of the tile's padding): Aperio/GT450 white, black, zeros;
* ``replicated`` — the nearest visible pixel repeated (the edge row/column smeared outwards);
* ``stale`` — the same in-tile pixels of the tile one row up (bottom padding) or one column to
  the left (right padding): an encoder's buffer not cleared between tiles (the TCGA sample's
  level 2, JPEG 2000, holds the rows 256 above in its 9 padding rows).
* ``buffer`` (TIFF) — a state of one tile buffer reused for every tile of every level, built from
  visible pixels only (:func:`buffer_states`: libvips ``tiffsave`` with a lossless codec).

A JPEG tile whose SOF codes chroma subsampled is compared as coded (:func:`_dev_chroma`), and a
cell no pixel of which departs by more than :data:`FLAT_MAX` is explained whatever its mean.

A cell is explained when, for one model, the pixels' mean deviation (the largest over the
channels, 8-bit scale) is at most :data:`MEAN_DEV` and their largest at most :data:`MAX_DEV`;
cells within :data:`EDGE_BAND` pixels of the visible image (a lossy codec's ringing around the
edge: a 16 x 16 MCU with subsampled chroma) at most :data:`EDGE_MEAN_DEV` / :data:`EDGE_MAX_DEV`.
Text written into the padding in any contrast a reader sees departs from every model.

Every tile whose compression tifffile/imagecodecs decode is judged (JPEG, JPEG 2000, LZW,
Deflate, uncompressed, ...); a page in another compression, of several planes in depth, or
frames of an unsupported transfer syntax are named in the detail as not judged.  A judged tile
that does not decode fails the check.  The cost is O(sqrt(tiles)): only edge tiles are decoded
(and a neighbour where the stale model is tried).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain
from functools import partial
from pathlib import Path

import numpy as np

from wsianon.verify.decoded import tile_fits
from wsianon.verify.sof import coded_fits
from wsianon.verify.tileid import release_cycles

CHECK = "tiles-padding"
DICOM_CHECK = "dicom: frame padding"
# a tile larger than this is not decoded here: the check fails it (a TileLength of 558,276 rows
# over a 512-row page made every edge tile a 143-Mpx array, judged for minutes; fuzz seed 1, SCN)
MAX_TILE_PIXELS = 1 << 26
CELL = 8
# thresholds on the 8-bit scale, per 8 x 8 cell: the mean and the largest deviation from the model
# (measured, README "Verification": real uniform/replicated padding departs by a mean of at most
# 1.2 and 2 at most beyond the edge band, 8.0 / 27 in it (JPEG ringing); a stale copy coded apart
# from its original (lossy JPEG 2000) by 18.1 / 51; text drawn into the padding: 100 / 255)
MEAN_DEV = 8.0
MAX_DEV = 32.0
EDGE_BAND = 16
EDGE_MEAN_DEV = 16.0
EDGE_MAX_DEV = 64.0
STALE_MEAN_DEV = 24.0
STALE_MAX_DEV = 80.0
# a cell every pixel of which is within FLAT_MAX of the model is explained whatever its mean: the
# coding noise a JPEG leaves on replicated streaks of tissue (GDAL COG JPEG Q90 overviews: a mean
# of 9.8 at a largest 16, README "Verification"); text hidden within it departs by no more than
# the MAX_DEV every explained cell may reach anyway
FLAT_MAX = 20.0
MODELS = ("uniform", "replicated", "stale", "buffer")
# lines (rows below, columns right of the image) next to the edge that may hold anything: too
# narrow for legible text (README, "Limitations")
SPILL = 2

Decoder = Callable[[int, int], "np.ndarray | None"]


def _dev(a: np.ndarray, ref: np.ndarray, scale: float) -> np.ndarray:
    """Per pixel, the largest absolute difference over the channels, on the 8-bit scale."""
    wide = np.int16 if a.dtype.itemsize == 1 else np.int32 if a.dtype.itemsize == 2 else np.float64
    d = np.abs(a.astype(wide) - np.asarray(ref).astype(wide))
    if d.ndim == 3:  # the channels one by one: a reduction over a last axis of 3 is slow
        m = d[..., 0]
        for c in range(1, d.shape[2]):
            m = np.maximum(m, d[..., c])
        d = m
    return d.astype(np.float32) / np.float32(scale)


def jpeg_chroma(data: bytes) -> tuple[int, int] | None:
    """The chroma subsampling (rows, columns) a 3-component JPEG codes, from its SOF; None when
    the stream has no such SOF or codes chroma at full resolution or unevenly."""
    from wsianon.io import jpeg

    try:
        segs, _complete = jpeg.header_segments(data)
    except jpeg.JpegError:
        return None
    for g in segs:
        if g.marker not in (0xC0, 0xC1, 0xC2):
            continue
        seg = data[g.payload_offset : g.payload_offset + g.payload_length]
        if len(seg) < 6 + 9 or seg[5] != 3:
            return None
        (h0, v0), (h1, v1), (h2, v2) = [(seg[6 + 3 * k + 1] >> 4, seg[6 + 3 * k + 1] & 15) for k in range(3)]
        if (h1, v1) != (h2, v2) or not h1 or not v1 or h0 % h1 or v0 % v1 or (h0 == h1 and v0 == v1):
            return None
        return v0 // v1, h0 // h1
    return None


def _dev_chroma(a: np.ndarray, ref: np.ndarray, scale: float, sub: tuple[int, int]) -> np.ndarray:
    """:func:`_dev` for a JPEG that codes chroma at 1/``sub`` (rows, columns) of the resolution
    (YCbCr 4:2:0 / 4:2:2): luma per pixel, Cb and Cr averaged over the ``sub`` blocks the codec
    stores (it cannot carry finer chroma, so nothing it holds is averaged away)."""
    h, w = a.shape[:2]
    sy, sx = sub
    if a.ndim != 3 or a.shape[2] != 3 or h % sy or w % sx:
        return _dev(a, ref, scale)
    # channel-first, so that every plane below is contiguous (channel-last views are strided by
    # 3: twice the time for the same values, measured)
    r = np.asarray(ref).astype(np.float32)
    d = np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32) - (r.transpose(2, 0, 1) if r.ndim == 3 else r.reshape(-1, 1, 1))
    dr, dg, db = d[0], d[1], d[2]
    # the colour transform channel by channel and each block's mean as a sum of its sy x sx strided
    # views: the same values as a matrix product and a mean over the axes of a 5-d view, in a third
    # of the time (those went through a generic reduction and BLAS: 1.6 of 3.3 ms an edge tile)
    lum = np.abs(np.float32(0.299) * dr + np.float32(0.587) * dg + np.float32(0.114) * db)
    cb = np.float32(-0.168736) * dr + np.float32(-0.331264) * dg + np.float32(0.5) * db
    cr = np.float32(0.5) * dr + np.float32(-0.418688) * dg + np.float32(-0.081312) * db

    def blocks(x: np.ndarray) -> np.ndarray:
        t = x[0::sy, 0::sx].copy()
        for i in range(sy):
            for j in range(sx):
                if i or j:
                    t += x[i::sy, j::sx]
        return np.abs(t / np.float32(sy * sx))

    c = np.maximum(blocks(cb), blocks(cr)).repeat(sy, axis=0).repeat(sx, axis=1)
    return np.maximum(lum, c) / np.float32(scale)


class _Grid:
    """The 8 x 8 cells of a region of ``shape`` (rows, columns) whose padding pixels are those from
    row ``ry`` and column ``rx`` on (a rectangle), counted once for every model."""

    def __init__(self, shape: tuple[int, int], ry: int, rx: int):
        h, w = shape
        self.h, self.w, self.ry, self.rx = h, w, ry, rx
        self.hh, self.ww = -(-h // CELL) * CELL, -(-w // CELL) * CELL
        m = np.zeros((self.hh, self.ww), bool)
        m[ry:h, rx:w] = True
        self.n = m.reshape(self.hh // CELL, CELL, self.ww // CELL, CELL).sum(axis=(1, 3))
        self.has = self.n > 0  # the cells holding padding

    def cells(self, dev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per cell, the mean and max of ``dev`` over the padding pixels; cells without padding
        give (-1, -1).  (The padding is a rectangle: copied by slicing, zeros elsewhere — the
        array a mask selected before, at a fifth of the cost.)"""
        flat = np.zeros((self.hh, self.ww), np.float32)
        flat[self.ry : self.h, self.rx : self.w] = dev[self.ry :, self.rx :]
        ny, nx = self.hh // CELL, self.ww // CELL
        mean = np.where(self.has, flat.reshape(ny, CELL, nx, CELL).sum(axis=(1, 3)) / np.maximum(self.n, 1), -1)
        # the max over rows of cells first, then over each cell's columns: the same values as over
        # both axes at once, a fifth of the time (numpy's reduction over two axes is generic)
        mx = np.where(self.has, flat.reshape(ny, CELL, self.ww).max(axis=1).reshape(ny, nx, CELL).max(axis=2), -1)
        return mean, mx


def judge_tile(
    a: np.ndarray,
    vh: int,
    vw: int,
    above: Callable[[], np.ndarray | None] | None = None,
    left: Callable[[], np.ndarray | None] | None = None,
    buffers: Callable[[], list[np.ndarray]] | None = None,
    chroma: tuple[int, int] | None = None,
) -> tuple[str | None, dict]:
    """Why the padding of the decoded tile ``a`` (rows x cols [x channels]; the first ``vh`` rows
    and ``vw`` columns visible) is not explained by the visible image, or None; with the worst
    cell's deviations under its best model (``stats``: the measurements in the README).
    ``above``/``left``: the decoded neighbour tiles, asked for only when needed (None: none).
    ``buffers``: the tile-buffer states a writer that reuses one buffer for every tile of every
    level leaves behind (:func:`buffer_states`; each made of visible pixels only), tried on the
    bottom band and the corner.  ``chroma``: the JPEG's chroma subsampling (rows, columns), where
    the deviation is luma per pixel and chroma per subsampled block (:func:`_dev_chroma`)."""
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    th, tw = a.shape[:2]
    vh, vw = min(vh, th), min(vw, tw)
    if vh <= 0 or vw <= 0 or (vh == th and vw == tw):
        return None, {}
    scale = 256.0 if a.dtype.itemsize > 1 else 1.0
    dev = partial(_dev_chroma, sub=chroma) if chroma and chroma != (1, 1) else _dev
    yy = np.minimum(np.arange(th), vh - 1)
    xx = np.minimum(np.arange(tw), vw - 1)
    neighbours: dict[str, np.ndarray | None] = {}

    def neighbour(model: str) -> np.ndarray | None:
        if model not in neighbours:
            get = above if model == "above" else left
            nb = get() if get is not None else None
            neighbours[model] = None if nb is None else nb.reshape(a.shape)
        return neighbours[model]

    # the first SPILL lines beyond the edge are the partial pixel a downsampling writer fills from
    # the scan (wsi2dcm's levels: one row of tissue, then black): not judged.  The right band, the
    # bottom band and the corner are judged apart (a writer may fill them differently: the TCGA
    # sample's level 2 has a black right band and a stale bottom band), each on its own rectangle
    # of the tile's 8 x 8 cell grid
    r_in, c_in = min(vh + SPILL, th), min(vw + SPILL, tw)
    regions = [
        ((0, r_in, c_in, tw), ("uniform", "replicated", "left", "buffer")),
        ((r_in, th, 0, c_in), ("uniform", "replicated", "above", "buffer")),
        ((r_in, th, c_in, tw), ("uniform", "replicated", "above", "left", "buffer")),
    ]
    states: list[np.ndarray] | None = None
    unexplained = 0
    worst = {"mean": 0.0, "max": 0.0, "edge_mean": 0.0, "edge_max": 0.0}
    for (y0, y1, x0, x1), models in regions:
        if y0 >= y1 or x0 >= x1:
            continue
        fy, fx = y0 // CELL * CELL, x0 // CELL * CELL  # the crop starts on the cell grid
        sub = a[fy:y1, fx:x1]
        ry, rx = y0 - fy, x0 - fx  # the region's padding: ``sub`` from row ry and column rx on
        cy = np.arange(fy, y1, CELL)
        cx = np.arange(fx, x1, CELL)
        dist = np.maximum(np.maximum(cy - vh, 0)[:, None], np.maximum(cx - vw, 0)[None, :])
        edge = dist < EDGE_BAND
        tmean = np.where(edge, EDGE_MEAN_DEV, MEAN_DEV)
        tmax = np.where(edge, EDGE_MAX_DEV, MAX_DEV)
        grid = _Grid(sub.shape[:2], ry, rx)
        has = grid.has
        todo = has.copy()  # the cells holding this region
        best_mean = np.full(todo.shape, np.inf, np.float32)
        best_max = np.full(todo.shape, np.inf, np.float32)
        for model in models:
            if model == "buffer":  # a reused tile buffer's state: lossless copies, the tight thresholds
                if states is None:
                    states = [s.reshape(a.shape) for s in (buffers() if buffers is not None else []) if s.size == a.size]
                for state in states:
                    mean, mx = grid.cells(dev(sub, state[fy:y1, fx:x1], scale))
                    ok = todo & (((mean <= tmean) & (mx <= tmax)) | (mx <= FLAT_MAX))
                    better = has & (mean < best_mean)
                    best_mean, best_max = np.where(better, mean, best_mean), np.where(better, mx, best_max)
                    todo &= ~ok
                    if not todo.any():
                        break
                if not todo.any():
                    break
                continue
            if model == "uniform":  # the region's own colour
                pad = sub[ry:, rx:].reshape(-1, *sub.shape[2:])  # row-major, as a mask selects it
                ref = np.median(pad.reshape(len(pad), -1), axis=0).astype(a.dtype).reshape(a.shape[2:])
            elif model == "replicated":
                ref = a[yy[fy:y1]][:, xx[fx:x1]]
            else:
                nb = neighbour(model)
                if nb is None:
                    continue
                ref = nb[fy:y1, fx:x1]
            mean, mx = grid.cells(dev(sub, ref, scale))
            if model in ("above", "left"):  # coded apart from its original: its coding noise, near or far
                ok = todo & (mean <= STALE_MEAN_DEV) & (mx <= STALE_MAX_DEV)
            else:
                ok = todo & (((mean <= tmean) & (mx <= tmax)) | (mx <= FLAT_MAX))
            better = has & (mean < best_mean)
            best_mean, best_max = np.where(better, mean, best_mean), np.where(better, mx, best_max)
            todo &= ~ok
            if not todo.any():  # every cell explained: the other models are not tried
                break
        unexplained += int(todo.sum())
        for key, sel in (("", has & ~edge), ("edge_", has & edge)):
            if sel.any():
                worst[key + "mean"] = max(worst[key + "mean"], float(best_mean[sel].max()))
                worst[key + "max"] = max(worst[key + "max"], float(best_max[sel].max()))
    if unexplained:
        return f"{unexplained} cell(s) of its padding not uniform, replicated or a neighbour's copy", worst
    return None, worst


def judge_grid(
    ny: int,
    nx: int,
    th: int,
    tw: int,
    height: int,
    width: int,
    decode: Decoder,
    index: Callable[[int, int], int | None],
    buffers: Callable[[], list[np.ndarray]] | None = None,
    chroma: Callable[[int], tuple[int, int] | None] | None = None,
    cells: Iterable[tuple[int, int]] | None = None,
) -> tuple[int, list[tuple[int, str]], list[dict]]:
    """Judge the edge tiles of one grid of ``ny`` x ``nx`` tiles of ``th`` x ``tw`` over an image of
    ``height`` x ``width``: (tiles judged, [(tile index, why)], stats).  ``index(ty, tx)``: the tile's
    index (None: absent, e.g. a sparse DICOM grid); ``decode(index)``: its pixels (None: empty).
    ``cells``: the (row, column) of the tiles there are (a DICOM grid's frames): only those on the
    edge are walked — a matrix declared billions of tiles wide walks its frames, not its width
    (the edge of such a grid was listed whole: gigabytes; fuzz seed 9)."""
    judged = 0
    bad: list[tuple[int, str]] = []
    stats: list[dict] = []
    pad_r, pad_b = width < nx * tw, height < ny * th
    if not pad_r and not pad_b:
        return 0, bad, stats
    cache: dict[int, np.ndarray | None] = {}

    def tile(ty: int, tx: int) -> np.ndarray | None:
        i = index(ty, tx) if 0 <= ty < ny and 0 <= tx < nx else None
        if i is None:
            return None
        if i not in cache:
            if len(cache) >= 4:  # the edge is walked in order: its neighbour is the tile just judged
                del cache[next(iter(cache))]
            cache[i] = decode(i, ty * nx + tx)
        return cache[i]

    edge: Iterable[tuple[int, int]]
    if cells is None:  # walked, never listed: ``ny`` and ``nx`` are bounded by the caller's tile table
        right = ((ty, nx - 1) for ty in range(ny)) if pad_r else iter(())
        bottom = ((ny - 1, tx) for tx in range(nx - (1 if pad_r else 0))) if pad_b else iter(())
        edge = chain(right, bottom)
    else:
        there = set(cells)
        edge = sorted(c for c in there if pad_r and c[1] == nx - 1)
        edge += sorted((c for c in there if pad_b and c[0] == ny - 1 and not (pad_r and c[1] == nx - 1)), key=lambda c: c[1])
    for ty, tx in edge:
        i = index(ty, tx)
        if i is None:
            continue
        a = tile(ty, tx)
        if a is None:
            continue
        judged += 1
        why, st = judge_tile(
            a.reshape(th, tw, -1),
            height - ty * th,
            width - tx * tw,
            above=partial(tile, ty - 1, tx) if ty > 0 else None,
            left=partial(tile, ty, tx - 1) if tx > 0 else None,
            buffers=buffers,
            chroma=chroma(i) if chroma is not None else None,
        )
        if st:
            stats.append(st)
        if why is not None:
            bad.append((i, why))
    return judged, bad, stats


def _row_major(base: int, nx: int, ty: int, tx: int) -> int:
    return base + ty * nx + tx


def _placed(grid: dict[tuple[int, int], int], ty: int, tx: int) -> int | None:
    return grid.get((ty, tx))


class CodedSize(Exception):
    """A JPEG tile whose frame header is not its page's tile size (``tiles-sof`` judges it too):
    its padding is not what the page declares, so it is not judged as such."""


def _page_decoder(fh, page, subs: dict[int, tuple[int, int] | None] | None = None) -> Callable[[int], np.ndarray | None]:
    """Tile ``i`` of a tiled page, decoded at the page's tile size (None: empty).  A JPEG tile coded
    at another size raises :class:`CodedSize`; ``subs`` gets each JPEG tile's chroma subsampling."""
    th, tw = page.tilelength, page.tilewidth
    # the tag values are read lazily: all of them before any seek
    offs, cnts, tables = page.dataoffsets, page.databytecounts, page.jpegtables
    jpeg = int(page.compression) == 7

    def decode(i: int) -> np.ndarray | None:
        if not cnts[i] or not offs[i]:
            return None  # an empty tile: nothing stored
        fh.seek(int(offs[i]))
        data = fh.read(int(cnts[i]))
        if jpeg:
            if not coded_fits(data, th, tw):
                raise CodedSize()
            if subs is not None:
                subs[i] = jpeg_chroma(data)
        arr, _idx, _shape = page.decode(data, i, jpegtables=tables)
        return None if arr is None else np.asarray(arr).reshape(th, tw, -1)

    return decode


def _row_state(decode: Callable[[int], np.ndarray | None], ty: int, nx: int, vh: int, vw: int) -> np.ndarray | None:
    """The tile buffer after a row-major writer wrote tile row ``ty`` (its first ``vh`` rows and
    ``vw`` columns of the last tile visible): the last tile's visible pixels, the columns beyond
    them from the tile before it (visible there); None where that is not all visible pixels."""
    last = decode(ty * nx + nx - 1)
    if last is None:
        return None
    th, tw = last.shape[:2]
    state = last.copy()
    if vw < tw:
        if nx < 2:
            return None
        prev = decode(ty * nx + nx - 2)
        if prev is None:
            return None
        state[:, vw:] = prev[:, vw:]
    return state[:vh] if vh < th else state


def buffer_states(fh, pages) -> dict[tuple, list[np.ndarray]]:
    """The states of one tile buffer reused for every tile of every level (libvips ``tiffsave``
    with a lossless or WebP codec: it clears the buffer of an edge tile for JPEG only, so the
    padding of an edge tile is what the tiles written before it left there; it writes each
    level's full tile rows as the pyramid fills, then the bottom rows level by level).  Per tile
    shape and channels, every composite of visible pixels that a level's last full tile row and
    then the bottom rows (above their ``vh``) of the levels in the file's order leave.  A cell the model explains is a copy, at the same
    place in the tile, of pixels the slide shows elsewhere."""
    full: dict[tuple, list[np.ndarray]] = {}
    bottoms: dict[tuple, list[np.ndarray]] = {}  # in the file's order of the levels
    for page in pages:
        h, w, th, tw = page.imagelength, page.imagewidth, page.tilelength, page.tilewidth
        if page.imagedepth > 1 or page.tiledepth > 1 or th * tw > MAX_TILE_PIXELS or not tile_fits(page) or len(page.dataoffsets) != -(-h // th) * -(-w // tw):
            continue
        ny, nx = -(-h // th), -(-w // tw)
        vh, vw = h - (ny - 1) * th, w - (nx - 1) * tw
        decode = _page_decoder(fh, page)
        try:
            a = _row_state(decode, ny - 2, nx, th, vw) if ny >= 2 else None
            b = _row_state(decode, ny - 1, nx, vh, vw) if vh < th else None
        except Exception:
            continue
        for got, into in ((a, full), (b, bottoms)):
            if got is not None:
                into.setdefault((th, tw, got.shape[2], got.dtype.str), []).append(got)
    # from each level's last full row, the bottom rows written over it level after level
    states: dict[tuple, list[np.ndarray]] = {}
    for key, rows in full.items():
        out = states.setdefault(key, [])
        for r in rows:
            c = r.copy()
            out.append(c.copy())
            for b in bottoms.get(key, []):
                c[: b.shape[0]] = b
                out.append(c.copy())
    return states


def _judge_page(fh, page, states: dict[tuple, list[np.ndarray]] | None = None) -> tuple[int, list[tuple[int, str]]]:
    """Judge the edge tiles of one tiled TIFF page (every plane of a planar page): (tiles judged,
    [(tile offset, why)]).  Raises LookupError for a page this check cannot decode."""
    import tifffile

    h, w, th, tw = page.imagelength, page.imagewidth, page.tilelength, page.tilewidth
    if page.imagedepth > 1 or page.tiledepth > 1:
        raise LookupError("tiled depth")
    if page.compression not in tifffile.TIFF.DECOMPRESSORS:
        raise LookupError(f"compression {int(page.compression)}")
    ny, nx = -(-h // th), -(-w // tw)
    if ny * nx > len(page.dataoffsets):  # a tile table shorter than the image's grid: the edge is not stored
        return 0, [(0, f"its tile table holds {len(page.dataoffsets)} tile(s), its {w} x {h} image needs {ny * nx}")]
    # a JPEG that codes chroma subsampled (GDAL's PHOTOMETRIC=YCBCR, Aperio) is judged as it is
    # coded: each tile's own SOF says how (``jpeg_chroma``)
    subs: dict[int, tuple[int, int] | None] = {}
    tile = _page_decoder(fh, page, subs)
    offs = page.dataoffsets
    planes = max(len(offs) // (ny * nx), 1)

    def decode(i: int, _pos: int) -> np.ndarray | None:
        return tile(i)

    judged = 0
    bad: list[tuple[int, str]] = []

    def buffers() -> list[np.ndarray]:
        spp = int(page.samplesperpixel) if planes == 1 else 1
        return [s for key, got in (states or {}).items() if key[:3] == (th, tw, spp) for s in got]

    for p in range(planes):
        base = p * ny * nx
        try:
            n, why, _st = judge_grid(ny, nx, th, tw, h, w, decode, partial(_row_major, base, nx), buffers if planes == 1 else None, subs.get)
        except CodedSize:
            bad.append((0, f"an edge tile's JPEG frame header is not the page's {tw} x {th} tile"))
            continue
        except Exception as exc:
            bad.append((0, f"an edge tile does not decode ({type(exc).__name__})"))
            continue
        judged += n
        bad.extend((int(offs[i]), reason) for i, reason in why)
    return judged, bad


def _pages_and_subifds(pages):
    import tifffile

    for top in pages:
        todo = [top]
        while todo:
            page = todo.pop(0)
            if isinstance(page, tifffile.TiffPage):
                todo.extend(page.pages or ())  # SubIFDs
                yield page


def _judge_tiff(path: Path) -> tuple[int, int, list[tuple[int, int, str]], set[str]]:
    import tifffile

    pages = judged = 0
    bad: list[tuple[int, int, str]] = []
    unjudged: set[str] = set()
    with tifffile.TiffFile(path) as tf:
        # one page at a time (tifffile gives each page's tile table as Python tuples, ~80 bytes a
        # tile): a page and its SubIFDs are judged and let go before the next is read
        tf.pages.cache = False
        # first the tile-buffer states (a few tiles of each page), then the pages one by one
        states = buffer_states(tf.filehandle, (p for p in _pages_and_subifds(tf.pages) if p.is_tiled))
        for page in _pages_and_subifds(tf.pages):
            if not page.is_tiled or (page.imagewidth % page.tilewidth == 0 and page.imagelength % page.tilelength == 0):
                continue
            pages += 1
            if page.tilelength * page.tilewidth > MAX_TILE_PIXELS or not tile_fits(page):
                ifd = page.index if isinstance(page.index, int) else 0
                bad.append((ifd, 0, f"tiles of {page.tilewidth} x {page.tilelength} px, more than this check decodes"))
                continue
            try:
                n, why = _judge_page(tf.filehandle, page, states)
            except LookupError as exc:
                unjudged.add(str(exc))
                continue
            judged += n
            ifd = page.index if isinstance(page.index, int) else 0
            bad.extend((ifd, off, reason) for off, reason in why)
    return pages, judged, bad, unjudged


def check_tiff(path: Path, verdict, name: str | None = None) -> None:
    """``tiles-padding`` for every tiled page (IFD, SubIFDs included) of the TIFF-family file ``path``."""
    from wsianon.io.scan import Finding

    label = name or path.name
    try:
        pages, judged, bad, unjudged = _judge_tiff(path)
    except Exception as exc:
        verdict.add(CHECK, False, f"tifffile cannot read the output's tiled pages ({type(exc).__name__})")
        return
    finally:
        # the pages' tile tables, held by the cycles tifffile's objects form (collected here, once
        # _judge_tiff's frame is gone, not during the checks that follow)
        release_cycles()
    for ifd, off, reason in bad[:20]:
        verdict.findings.append(Finding(label, off, f"edge tile of IFD {ifd}: {reason}", CHECK))
    note = f"; not judged: {', '.join(sorted(unjudged))}" if unjudged else ""
    verdict.add(
        CHECK,
        not bad,
        (f"{judged} edge tile(s) of {pages} tiled page(s) with padding: padding uniform, replicated or a neighbour's copy" + note)
        if not bad
        else f"{len(bad)} edge tile(s) carry pixels beyond the image that the visible edge does not explain (first: IFD {bad[0][0]}, {bad[0][2]}){note}",
    )


# transfer syntaxes whose frames are decoded here
_TS_JPEG = frozenset(["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"])
_TS_J2K = frozenset(["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"])
_TS_JLS = frozenset(["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"])
_TS_NATIVE = frozenset(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"])
_TS_JPEG_LOSSLESS = frozenset(["1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"])  # process 14: libjpeg-turbo 3 decodes it


def _decode_frame(ts_uid: str, data: bytes, rows: int, cols: int, spp: int, bits: int, planar: int) -> np.ndarray:
    import imagecodecs

    if ts_uid in _TS_JPEG or ts_uid in _TS_JPEG_LOSSLESS:
        return np.asarray(imagecodecs.jpeg8_decode(data))
    if ts_uid in _TS_J2K:
        return np.asarray(imagecodecs.jpeg2k_decode(data))
    if ts_uid in _TS_JLS:
        return np.asarray(imagecodecs.jpegls_decode(data))
    dt = np.dtype(f"<u{max(bits, 8) // 8}")
    n = rows * cols * spp
    arr = np.frombuffer(data[: n * dt.itemsize], dt)
    if arr.size < n:
        raise ValueError("frame shorter than its pixels")
    return arr.reshape(spp, rows, cols).transpose(1, 2, 0) if planar == 1 and spp > 1 else arr.reshape(rows, cols, spp)


def _positions(ds, count: int) -> list[tuple[int, int]] | None:
    """(column, row) 0-based of each frame in the total pixel matrix: TILED_FULL order unless the
    per-frame groups give positions (TILED_SPARSE)."""
    if str(ds.get("DimensionOrganizationType", "")) != "TILED_SPARSE":
        return None
    out = []
    for item in ds.get("PerFrameFunctionalGroupsSequence", [])[:count]:
        pos = item.get("PlanePositionSlideSequence")
        if not pos:
            return None
        out.append((int(pos[0].ColumnPositionInTotalImagePixelMatrix) - 1, int(pos[0].RowPositionInTotalImagePixelMatrix) - 1))
    return out if len(out) == count else None


def _grids(ds, count: int, nx: int, ny: int, cols: int, rows: int) -> list[dict[tuple[int, int], int]]:
    """Per focal plane / optical path, {(tile row, tile column): frame index}: TILED_FULL order
    (columns, then rows, then planes) unless the per-frame groups place the frames (TILED_SPARSE;
    one grid then, frames off the tile grid left out)."""
    positions = _positions(ds, count)
    if positions is None:  # only the last two tile rows and columns: the edge and its neighbours
        per = nx * ny
        grids = []
        for p in range(max(count // per, 1)):
            base, n = p * per, min(per, count - p * per)
            g: dict[tuple[int, int], int] = {}
            for ty in range(ny):  # the last two columns, top down, while the plane has those frames
                if ty * nx >= n:
                    break
                for tx in (nx - 2, nx - 1):
                    if tx >= 0 and ty * nx + tx < n:
                        g[(ty, tx)] = base + ty * nx + tx
            for ty in (ny - 2, ny - 1):  # the last two rows, left to right, likewise
                for tx in range(nx) if ty >= 0 else ():
                    if ty * nx + tx >= n:
                        break
                    g[(ty, tx)] = base + ty * nx + tx
            grids.append(g)
        return grids
    grid: dict[tuple[int, int], int] = {}
    for i, (c, r) in enumerate(positions):
        if c % cols == 0 and r % rows == 0:
            grid.setdefault((r // rows, c // cols), i)
    return [grid]


def _frames_there(path: Path, ds, located, part_paths: list[Path] | None) -> int:
    """At most how many frames the instance's file(s) hold: one a fragment the read-back or an
    item walk found, else what its bytes could hold (an 8-byte item header a frame, or a native
    frame's size)."""
    import os

    if part_paths is None:
        if located is False:
            from wsianon.verify.ecs import _located

            located = _located(path)
        if located:
            return len(located)
    size = sum(os.path.getsize(p) for p in (part_paths or [path]))
    if str(ds.file_meta.get("TransferSyntaxUID", "")) in _TS_NATIVE:
        frame = (
            int(ds.get("Rows", 1) or 1)
            * int(ds.get("Columns", 1) or 1)
            * int(ds.get("SamplesPerPixel", 1) or 1)
            * max(1, int(ds.get("BitsAllocated", 8) or 8) // 8)
        )
        return size // max(1, frame)
    return size // 8


def _judge_instance(path: Path, ds, located, parts=None, fragments=None) -> tuple[int, list[str]]:
    """Judge the edge frames of one tiled instance: (frames judged, reasons).  Raises LookupError
    for a transfer syntax this check does not decode.  ``parts``: the instances of a concatenation
    whose first part ``ds`` is (``verify.dicom.decode.wholes``): its frames are judged as the one
    grid they make (frame k of a part is frame offset + k of the whole's TILED_FULL order)."""
    from wsianon.verify.ecs import _frames

    total_c, total_r = int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
    cols, rows = int(ds.Columns), int(ds.Rows)
    nx, ny = -(-total_c // cols), -(-total_r // rows)
    ts_uid = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if ts_uid not in _TS_JPEG | _TS_JPEG_LOSSLESS | _TS_J2K | _TS_JLS | _TS_NATIVE:
        raise LookupError(f"transfer syntax {ts_uid}")
    whole = parts is not None and len(parts) > 1
    count = sum(n for *_x, n in parts) if whole else int(ds.get("NumberOfFrames", 1) or 1)
    # frames there are, not frames declared: a NumberOfFrames of 2**31 over one frame was walked
    count = min(count, _frames_there(path, ds, located, [Path(p[0]) for p in parts] if whole else None))
    grids = _grids(ds, count, nx, ny, cols, rows)
    need: set[int] = set()  # the edge frames and their neighbours up and left
    for grid in grids:
        for (ty, tx), i in grid.items():
            if ty >= ny - 2 or tx >= nx - 2:
                need.add(i)
    if whole:
        raw: dict[int, bytes] = {}
        for ppath, _pds, first, n in parts:
            pick = {i - first for i in need if first <= i < first + n}
            raw.update((first + i, f) for i, f in _frames(Path(ppath), n, pick, (fragments or {}).get(ppath, False)))
    else:
        raw = dict(_frames(path, count, need, located))
    spp, bits, planar = int(ds.get("SamplesPerPixel", 1)), int(ds.get("BitsAllocated", 8)), int(ds.get("PlanarConfiguration", 0) or 0)

    def decode(i: int, _pos: int) -> np.ndarray | None:
        data = raw.get(i)
        return None if data is None else _decode_frame(ts_uid, bytes(data), rows, cols, spp, bits, planar)

    judged = 0
    bad: list[str] = []
    for grid in grids:
        try:
            n, why, _st = judge_grid(ny, nx, rows, cols, total_r, total_c, decode, partial(_placed, grid), cells=grid)
        except Exception as exc:
            bad.append(f"{path.name}: an edge frame does not decode ({type(exc).__name__})")
            continue
        judged += n
        bad.extend(f"{path.name} frame {i + 1}: {reason}" for i, reason in why)
    return judged, bad


def check_dicom(dsets, verdict, fragments=None) -> None:
    """``dicom: frame padding``: the same judgement for the edge frames of every tiled instance
    (``dsets``: (path, dataset) pairs; ``fragments``: {path: frames' (offset, length)} as the
    verifier's read-back found them)."""
    from wsianon.verify.dicom.decode import wholes

    judged = instances = 0
    bad: list[str] = []
    unjudged: set[str] = set()
    for path, ds, parts in wholes(list(dsets)):  # a concatenation once, as the grid its parts make
        try:
            total_c, total_r = int(ds.get("TotalPixelMatrixColumns", 0) or 0), int(ds.get("TotalPixelMatrixRows", 0) or 0)
            cols, rows = int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0)
        except (TypeError, ValueError):
            bad.append(f"{Path(path).name}: matrix size unreadable")
            continue
        if not total_c or not total_r or not cols or not rows or (total_c % cols == 0 and total_r % rows == 0):
            continue
        instances += 1
        if rows * cols > MAX_TILE_PIXELS:
            bad.append(f"{Path(path).name}: frames of {cols} x {rows} px, more than this check decodes")
            continue
        try:
            n, why = _judge_instance(Path(path), ds, (fragments or {}).get(path, False), parts, fragments)
        except LookupError as exc:
            unjudged.add(str(exc))
            continue
        except Exception as exc:
            bad.append(f"{Path(path).name}: frames unreadable ({type(exc).__name__})")
            continue
        judged += n
        bad.extend(why)
    note = f"; not judged: {', '.join(sorted(unjudged))}" if unjudged else ""
    verdict.add(
        DICOM_CHECK,
        not bad,
        "; ".join(bad[:5]) + note
        if bad
        else f"{judged} edge frame(s) of {instances} instance(s) with padding: padding uniform, replicated or a neighbour's copy{note}",
    )


__all__ = ["CHECK", "DICOM_CHECK", "check_dicom", "check_tiff", "judge_grid", "judge_tile"]
