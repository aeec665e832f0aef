"""``dicom: pyramid``: every VOLUME instance is a level of the slide's one image.

A VOLUME instance is shown only as a pyramid level, so an image that is no level of the slide (a
photo of the label given ImageType VOLUME, in the same series and pyramid) was shared unseen: no
barcode search looks at VOLUME frames and its frames equal the source's. Each VOLUME's Total
Pixel Matrix must have the base level's aspect, to the rounding of its size and one pixel more
(``verify.thumbnail.aspect_ok``, the rule a kept thumbnail is held to: ``|rows * base_cols -
cols * base_rows| <= base_cols + base_rows`` whichever side is the longer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from wsianon.verify.dicom.common import Checks, image_kind

# one rule: an image that is the base scaled; and the rules the native levels are compared by (``verify.levels``)
from wsianon.verify.thumbnail import MIN_CELLS, MIN_COVERED, MIN_LEVEL_SIDE, aspect_ok, blurred_covered, covered_grid


def _matrix(ds: Dataset) -> tuple[int, int] | None:
    try:
        return int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
    except (AttributeError, TypeError, ValueError):
        return None


def off_pyramid(dsets: list[tuple[Path, Dataset]]) -> list[str]:
    """The VOLUME instances whose matrix is not a level of the largest one (names only)."""
    volumes = [(p, m) for p, ds in dsets if image_kind(ds) == "VOLUME" and (m := _matrix(ds)) is not None]
    if len(volumes) < 2:
        return []
    base_cols, base_rows = max((m for _p, m in volumes), key=lambda m: (m[0] * m[1], m))
    bad = []
    for p, (cols, rows) in volumes:
        if cols > base_cols or rows > base_rows or not aspect_ok((cols, rows), (base_cols, base_rows)):
            bad.append(p.name)
    return bad


def unmeasured(dsets: list[tuple[Path, Dataset]]) -> list[str]:
    """The VOLUME instances without a readable Total Pixel Matrix (Type 1 in the VL WSI IOD; every
    real slide's levels have one): no rule above places them in the slide's image, so their pixels
    (a label photo) cannot be compared with it — refused (names only)."""
    return [p.name for p, ds in dsets if image_kind(ds) == "VOLUME" and _matrix(ds) is None]


# DCM CID 8123 illumination methods that are fluorescence: a channel is another picture of the slide
FLUORESCENCE = {"111743", "111749"}  # Epifluorescence, Total internal reflection fluorescence


@dataclass
class _Plane:
    """One picture of a VOLUME instance: the frames of one focal plane and optical path."""

    path: Path
    ds: Dataset
    matrix: tuple[int, int]
    family: str  # "" for brightfield (every optical path the same picture), else its fluorescence path's
    z: float
    name: str  # for details: the file, and which plane / path of how many (never an identifier)
    first: int  # TILED_FULL: the index of its first frame (its frames are the tile grid from there)
    sparse: dict[tuple[int, int], int] | None = None  # TILED_SPARSE: frame origin (0-based x, y) -> index
    parts: list | None = None  # a concatenation's instances (``decode.wholes``): indices are the whole's

    def frames_at(self, wanted: list[int]):
        """(index, bytes) of the ``wanted`` frames, over a concatenation's parts where it is one."""
        from wsianon.verify.dicom.decode import _frames_at, whole_frames_at

        return whole_frames_at(self.parts, wanted) if self.parts else _frames_at(self.path, self.ds, wanted)

    @property
    def tile(self) -> tuple[int, int]:
        return int(self.ds.Columns), int(self.ds.Rows)

    def bbox(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) of what its frames cover, clipped to the matrix."""
        if self.sparse is None:
            return (0, 0, *self.matrix)
        fw, fh = self.tile
        x0, y0 = min(x for x, _y in self.sparse), min(y for _x, y in self.sparse)
        x1 = min(self.matrix[0], max(x for x, _y in self.sparse) + fw)
        y1 = min(self.matrix[1], max(y for _x, y in self.sparse) + fh)
        return x0, y0, max(1, x1 - x0), max(1, y1 - y0)

    def frames_in(self, x0: int, y0: int, w: int, h: int) -> dict[int, tuple[int, int]]:
        """index -> origin of the frames meeting the region (a TILED_FULL grid is not listed whole:
        only the region's tiles)."""
        fw, fh = self.tile
        if self.sparse is None:
            nx = -(-self.matrix[0] // fw)
            return {
                self.first + ty * nx + tx: (tx * fw, ty * fh)
                for ty in range(y0 // fh, (y0 + h - 1) // fh + 1)
                for tx in range(x0 // fw, (x0 + w - 1) // fw + 1)
            }
        return {k: (fx, fy) for (fx, fy), k in self.sparse.items() if fx < x0 + w and fx + fw > x0 and fy < y0 + h and fy + fh > y0}


def _fluorescence(op: Dataset) -> bool:
    return any(str(c.get("CodeValue", "")) in FLUORESCENCE for c in op.get("IlluminationTypeCodeSequence") or [])


def _float(v, default: float = 0.0) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def _label(name: str, z: int, planes: int, o: int, paths: int) -> str:
    """A picture named for details: its file, and which focal plane and optical path of how many
    (an index: an OpticalPathIdentifier is the source's text)."""
    return name + (f" (focal plane {z + 1} of {planes})" if planes > 1 else "") + (f" (optical path {o + 1} of {paths})" if paths > 1 else "")


def _planes(p: Path, ds: Dataset, parts: list | None = None) -> list[_Plane]:
    """The pictures of a VOLUME instance: TILED_FULL frames are ordered tile, focal plane, optical
    path (PS3.3 C.8.12.4.1.3); TILED_SPARSE frames are grouped by their Z offset and optical path.
    An instance whose frames have no place of their own is judged by ``unplaced`` instead.
    ``parts``: the instances of a concatenation whose first part ``ds`` is (TILED_FULL: the
    whole's frames in order over its parts, ``decode.wholes``)."""
    cols, rows = int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
    fw, fh = int(ds.Columns), int(ds.Rows)
    whole = parts if parts is not None and len(parts) > 1 else None
    n = sum(part[3] for part in whole) if whole else int(ds.get("NumberOfFrames", 1) or 1)
    ops = list(ds.get("OpticalPathSequence") or [])

    def family(k: int) -> str:
        op = ops[k] if k < len(ops) else Dataset()
        return f"path:{op.get('OpticalPathIdentifier', '')}" if _fluorescence(op) else ""

    n_paths = max(1, int(ds.get("NumberOfOpticalPaths", 1) or 1))
    n_planes = max(1, int(ds.get("TotalPixelMatrixFocalPlanes", 1) or 1))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    out: list[_Plane] = []
    if str(ds.get("DimensionOrganizationType", "") or "").upper() == "TILED_FULL" or not per_frame:
        nx, ny = -(-cols // fw), -(-rows // fh)
        grid = nx * ny
        if n != grid * n_planes * n_paths:
            return []
        try:
            shared = ds.SharedFunctionalGroupsSequence[0]
            z0 = _float(shared.PlanePositionSlideSequence[0].ZOffsetInSlideCoordinateSystem) if "PlanePositionSlideSequence" in shared else 0.0
            step = _float(shared.PixelMeasuresSequence[0].get("SpacingBetweenSlices"), 0.001) * 1000
        except (AttributeError, IndexError, TypeError):
            z0, step = 0.0, 1.0
        for o in range(n_paths):
            for z in range(n_planes):
                first = (o * n_planes + z) * grid
                name = _label(p.name, z, n_planes, o, n_paths)
                out.append(_Plane(p, ds, (cols, rows), family(o), z0 + z * step, name, first, parts=whole))
        return out
    if whole:
        return []  # a concatenation of a TILED_SPARSE level: refused by ``unplaced``
    ids = [str(op.get("OpticalPathIdentifier", "")) for op in ops]
    groups: dict[tuple[float, int], dict[tuple[int, int], int]] = {}
    for k, item in enumerate(per_frame):
        try:
            pos = item.PlanePositionSlideSequence[0]
            xy = (int(pos.ColumnPositionInTotalImagePixelMatrix) - 1, int(pos.RowPositionInTotalImagePixelMatrix) - 1)
            zf = _float(pos.get("ZOffsetInSlideCoordinateSystem"))
            seq = item.get("OpticalPathIdentificationSequence")
            if not seq and "SharedFunctionalGroupsSequence" in ds:
                seq = ds.SharedFunctionalGroupsSequence[0].get("OpticalPathIdentificationSequence")
            ident = str(seq[0].get("OpticalPathIdentifier", "")) if seq else (ids[0] if ids else "")
        except (AttributeError, IndexError, TypeError, ValueError):
            return []
        o = ids.index(ident) if ident in ids else 0
        groups.setdefault((zf, o), {})[xy] = k
    zs = sorted({zf for zf, _o in groups})
    for (zf, o), frames in sorted(groups.items()):
        name = _label(p.name, zs.index(zf), len(zs), o, len(ops))
        out.append(_Plane(p, ds, (cols, rows), family(o), zf, name, 0, frames))
    return out


def _render(plane: _Plane, region: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(grey and colour differences box-averaged to ``shape``, unblurred: (3, h, w); the part of
    each cell that has pixels: (h, w)) of ``region`` (x, y, w, h) of a plane, read whole (only the
    frames meeting the region; a region over ``REF_MAX_PIXELS`` is sampled with the picture it is
    compared with, ``_render_pair``). Where no frame is, nothing is counted (a sparse level)."""
    from wsianon.io.dicomframes import decode_rgb
    from wsianon.verify import thumbnail as th

    ds = plane.ds
    x0, y0, w, h = region
    chans = np.zeros((3, h, w), np.float32)
    cover = np.zeros((h, w), np.float32)
    wanted = plane.frames_in(x0, y0, w, h)
    for k, fv in plane.frames_at(sorted(wanted)):
        fx, fy = wanted[k]
        a = th._channels(decode_rgb(fv, ds))
        ax0, ay0 = max(fx, x0), max(fy, y0)
        ax1, ay1 = min(fx + a.shape[2], x0 + w), min(fy + a.shape[1], y0 + h)
        if ax1 > ax0 and ay1 > ay0:
            chans[:, ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = a[:, ay0 - fy : ay1 - fy, ax0 - fx : ax1 - fx]
            cover[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = 1
    return covered_grid(chans, cover, shape)


_BATCH = 64  # frames of a sampled level decoded by the threads at a time
# points on the long side where a pair of pictures, one of them over ``REF_MAX_PIXELS``, is sampled
# together (``verify.levels.POINTS``, the native rule: each point's patch the same part of the slide
# in both pictures)
POINTS = 16
# the decoded frames ``_Decoded`` keeps for the next pair, at most (bytes of decoded samples)
DECODED_BUDGET = 16 << 20


class _Decoded:
    """Frames ``_patches`` decoded (``thumbnail._decoded_small``: samples and their scale), kept
    within ``DECODED_BUDGET`` bytes for the pictures' next pair: a middle level is the smaller
    picture of one pair and the larger of the next, sampled at the same ``POINTS`` grid points
    over the same part of the slide, so the frames holding them are the same frames (measured on
    a four-level pyramid: 977 decodes, 356 of them a frame decoded once already). A frame is
    decoded the same way each time: a kept one gives what decoding it again would."""

    def __init__(self, budget: int = DECODED_BUDGET):
        import threading

        self.budget = budget
        self.used = 0
        self.frames: dict[tuple[int, int], tuple[np.ndarray, float]] = {}
        self._lock = threading.Lock()

    def get(self, plane: "_Plane", k: int) -> tuple[np.ndarray, float] | None:
        return self.frames.get((id(plane), k))

    def put(self, plane: "_Plane", k: int, a: np.ndarray, f: float) -> None:
        with self._lock:
            if self.used + a.nbytes <= self.budget and (id(plane), k) not in self.frames:
                self.frames[(id(plane), k)] = (a, f)
                self.used += a.nbytes


def _patches(plane: _Plane, boxes: list[tuple[float, float, float, float]], decoded: _Decoded | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean colour differences (3, n): grey and the two colour differences; the part of each box
    that has frames (n,)) of each box (x0, y0, x1, y1 in the plane's pixels): only the frames a
    box meets are decoded, each once (at 1/8 for JPEG: a sample there is an 8 x 8 block's mean),
    by two threads, in batches of ``_BATCH``; a frame ``decoded`` holds is not read again (the
    frames decoded here are offered to it: ``plane`` must outlive it)."""
    from wsianon.verify import thumbnail as th

    uses: dict[int, list[tuple[int, float, float, float, float]]] = {}
    for n, (x0, y0, x1, y1) in enumerate(boxes):
        for k, (fx, fy) in plane.frames_in(int(x0), int(y0), max(1, math.ceil(x1) - int(x0)), max(1, math.ceil(y1) - int(y0))).items():
            uses.setdefault(k, []).append((n, x0 - fx, y0 - fy, x1 - fx, y1 - fy))
    fw, fh = plane.tile
    sums = np.zeros((len(boxes), 3), np.float64)
    area = np.zeros(len(boxes), np.float64)

    def measured(k: int, a: np.ndarray, f: float) -> list[tuple[int, np.ndarray, float]]:
        got = []
        for n, xa, ya, xb, yb in uses[k]:
            xa, ya, xb, yb = max(0.0, xa), max(0.0, ya), min(float(fw), xb), min(float(fh), yb)
            if xb <= xa or yb <= ya:
                continue
            i0, j0 = min(a.shape[2] - 1, int(xa * f)), min(a.shape[1] - 1, int(ya * f))
            part = a[:, j0 : max(j0 + 1, round(yb * f)), i0 : max(i0 + 1, round(xb * f))]
            weight = (xb - xa) * (yb - ya)
            got.append((n, part.mean(axis=(1, 2)) * weight, weight))
        return got

    def sample(item) -> list[tuple[int, np.ndarray, float]]:
        k, fv = item
        a, f = th._decoded_small(fv, plane.ds)
        if decoded is not None:
            decoded.put(plane, k, a, f)
        return measured(k, a, f)

    def add(got: list[tuple[int, np.ndarray, float]]) -> None:
        for n, s, weight in got:
            sums[n] += s
            area[n] += weight

    todo = []
    for k in sorted(uses):
        kept = decoded.get(plane, k) if decoded is not None else None
        if kept is None:
            todo.append(k)
        else:
            add(measured(k, *kept))
    frames = plane.frames_at(todo)
    while batch := list(islice(frames, _BATCH)):
        for got in th.read_in_threads(sample, batch):
            add(got)
    sizes = np.array([(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes], np.float64)
    return (sums / np.maximum(area, 1e-9)[:, None]).T, np.clip(area / np.maximum(sizes, 1e-9), 0.0, 1.0)


def _render_pair(
    q: _Plane,
    region_q: tuple[int, int, int, int],
    ref: _Plane,
    region_r: tuple[int, int, int, int],
    shape: tuple[int, int],
    decoded: _Decoded | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(``_render``'s answer for ``q`` over ``region_q``, the same for ``ref`` over ``region_r``: the
    same part of the slide), both sampled at the same ``POINTS`` points on the long side: each
    point's patch is the frame of ``ref`` holding it (the grid cell where that is smaller) and the
    same part of the slide in ``q``. Sampled apart (a patch standing for a cell of thousands of
    pixels), two levels of dense real tissue differ by what the tissue holds inside each cell;
    sampled together they differ by resampling and compression only (``verify.levels``)."""
    n_x, n_y = (max(1, round(POINTS * s / max(shape))) for s in shape)
    xq, yq, wq, hq = region_q
    xr, yr, wr, hr = region_r
    fw, fh = ref.tile
    pw, ph = min(float(fw), wr / n_x), min(float(fh), hr / n_y)

    def place(c: float, p: float, tile: int, lo: float, hi: float) -> float:
        t0 = math.floor(c / tile) * tile  # inside the frame holding the point, then inside the region
        return min(max(min(max(c - p / 2, t0), t0 + tile - p), lo), max(lo, hi - p))

    boxes_r, boxes_q = [], []
    for j in range(n_y):
        for i in range(n_x):
            x0 = place(xr + (i + 0.5) * wr / n_x, pw, fw, xr, xr + wr)
            y0 = place(yr + (j + 0.5) * hr / n_y, ph, fh, yr, yr + hr)
            boxes_r.append((x0, y0, x0 + pw, y0 + ph))
            u0, v0, u1, v1 = ((x0 - xr) / wr, (y0 - yr) / hr, (x0 + pw - xr) / wr, (y0 + ph - yr) / hr)
            boxes_q.append((xq + u0 * wq, yq + v0 * hq, xq + u1 * wq, yq + v1 * hq))
    out = []
    for plane, boxes in ((q, boxes_q), (ref, boxes_r)):
        chans, cover = _patches(plane, boxes, decoded)
        out.append(covered_grid(chans.reshape(3, n_y, n_x).astype(np.float32), cover.reshape(n_y, n_x).astype(np.float32), shape))
    return out[0], out[1]


def _scaled(region: tuple[int, int, int, int], src: tuple[int, int], dst: tuple[int, int]) -> tuple[int, int, int, int]:
    """``region`` of a ``src``-sized matrix in a ``dst``-sized one (at least one pixel)."""
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    x, y = min(dst[0] - 1, int(region[0] * sx)), min(dst[1] - 1, int(region[1] * sy))
    return x, y, max(1, min(dst[0] - x, round(region[2] * sx))), max(1, min(dst[1] - y, round(region[3] * sy)))


def unlike_levels(dsets: list[tuple[Path, Dataset]]) -> tuple[list[str], int, list[str]]:
    """(``name: why`` for every picture of a VOLUME instance whose pixels are not the slide's,
    number of pictures compared, notes on what was not compared). A picture is one focal plane of
    one optical path of an instance; a level is shown when the viewer zooms out, a focal plane when
    it focuses, an optical path when it is chosen: a label photo scaled to a level's matrix passed
    the matrix rule above. Each is rendered as a kept THUMBNAIL is judged
    (``verify.thumbnail.alike``: grey and colour differences, 64 px on the long side, blurred) and
    must match a picture of its family (every optical path of a brightfield image — RGB, no
    fluorescence illumination; else its own optical path) rendered the same way: a level the
    nearest focal plane of a larger level (the smallest at least 4x the grid; focal planes of one
    slide look alike at that size: CMU-1 blurred by 64 px still correlates 0.99), the largest
    level's other pictures its first. A sparse level (TILED_SPARSE) is rendered over the region its
    frames cover and compared where both have pixels; too little of that (``MIN_CELLS``) fails.
    A family whose largest level is not the slide's is compared with the others (fail closed).
    A pair one of whose pictures is over ``REF_MAX_PIXELS`` is sampled together (``_render_pair``).
    Not compared, and named in the notes: levels under ``MIN_LEVEL_SIDE`` on their long side,
    fluorescence channels with each other (a channel need not look like another), and pictures
    whose frames do not decode (``dicom: frame segments`` and the readers judge those)."""
    from wsianon.verify import thumbnail as th

    from wsianon.verify.dicom.decode import wholes

    planes: list[_Plane] = []
    for p, ds, parts in wholes(dsets):  # a concatenated level once: its parts are one picture
        if image_kind(ds) == "VOLUME" and _matrix(ds) is not None:
            try:
                planes.extend(_planes(p, ds, parts))
            except (AttributeError, TypeError, ValueError):
                continue  # unreadable frame geometry: ``unplaced`` fails it
    if len(planes) < 2:
        return [], 0, []
    area = lambda q: q.matrix[0] * q.matrix[1]  # noqa: E731
    base = max(planes, key=lambda q: (area(q), q.matrix)).matrix
    families = {q.family for q in planes}
    tops = {f: max(area(q) for q in planes if q.family == f) for f in families}
    bad: list[str] = []
    notes: list[str] = []
    cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    decoded = _Decoded()  # a middle level's frames, sampled as the smaller picture, again as the larger
    n = small = undecoded = 0

    def render(q: _Plane, region, shape):
        key = (id(q), region, shape)
        if key not in cache:
            cache[key] = _render(q, region, shape)
        return cache[key]

    for q in planes:
        own = [r for r in planes if r.family == q.family]
        larger = [r for r in own if area(r) > area(q)]
        if not larger and tops[q.family] < base[0] * base[1]:
            larger = [r for r in planes if area(r) > area(q)]  # a family without the slide's largest level
        if larger:
            candidates = larger
        else:  # the largest level of its family: its other pictures are compared with its first
            same = [r for r in own if r.matrix == q.matrix]
            if same[0] is q:
                continue  # the slide's picture by definition (its frames are the source's)
            candidates = [same[0]]
        if max(q.matrix) < MIN_LEVEL_SIDE:
            small += 1
            continue
        region = q.bbox()
        shape = th.grid_shape(region[2:])
        levels = sorted({r.matrix for r in candidates}, key=lambda m: m[0] * m[1])
        level = levels[th.pick_level([_scaled(region, q.matrix, m)[2:] for m in levels], shape)]
        ref = min((r for r in candidates if r.matrix == level), key=lambda r: (abs(r.z - q.z), planes.index(r)))
        ref_region = _scaled(region, q.matrix, ref.matrix)
        try:
            if max(region[2] * region[3], ref_region[2] * ref_region[3]) > th.REF_MAX_PIXELS:
                (mine, mine_cover), (theirs, their_cover) = _render_pair(q, region, ref, ref_region, shape, decoded)
            else:
                mine, mine_cover = render(q, region, shape)
                theirs, their_cover = render(ref, ref_region, shape)
        except Exception:
            undecoded += 1  # a frame that does not decode (`dicom: frame segments`, the readers)
            continue
        n += 1
        valid = (mine_cover >= MIN_COVERED) & (their_cover >= MIN_COVERED)
        if int(valid.sum()) < min(MIN_CELLS, valid.size):
            bad.append(f"{q.name}: a VOLUME picture that cannot be compared with the slide (its frames lie where a larger level has none)")
        elif not th.alike(blurred_covered(mine, mine_cover), blurred_covered(theirs, their_cover), None if valid.all() else valid):
            why = "another level downsampled" if larger else "the level's other focal planes and optical paths"
            bad.append(f"{q.name}: a VOLUME level whose pixels are not the slide's ({why})")
    channels = len([f for f in families if f and tops[f] == base[0] * base[1]])
    if channels > 1 or (channels and "" in families):
        notes.append(f"{channels} fluorescence channel(s) compared within their own optical path only")
    if small:
        notes.append(f"{small} picture(s) under {MIN_LEVEL_SIDE} px not compared")
    if undecoded:
        notes.append(f"{undecoded} picture(s) whose frames do not decode not compared (the frame checks judge them)")
    return bad, n, notes


def unplaced(dsets: list[tuple[Path, Dataset]]) -> list[str]:
    """``name: why`` for every instance with a frame that has no place of its own in its image
    (``io.dicomframes.unplaced_frames``): a frame no viewer draws could be any image."""
    from wsianon.io.dicomframes import unplaced_frames

    return [f"{p.name}: {why}" for p, ds in dsets if (why := unplaced_frames(ds)) is not None]


def not_whole(dsets: list[tuple[Path, Dataset]]) -> list[str]:
    """``name: why`` for every concatenation whose parts do not make one whole image exactly
    (``io.dicomframes.concatenation_problems``: a part missing, overlapping or after a gap, parts
    describing different images, not the tile grid's frames): frames whose place is not proven."""
    from wsianon.io.dicomframes import concatenation_problems

    return concatenation_problems(dsets)


def _concatenations(dsets: list[tuple[Path, Dataset]]) -> int:
    from wsianon.io.dicomframes import concatenation_groups

    return len(concatenation_groups(dsets))


def check_pyramid(dsets: list[tuple[Path, Dataset]], verdict: Checks) -> None:
    bad = off_pyramid(dsets)
    loose = unplaced(dsets)
    broken = not_whole(dsets)
    blind = unmeasured(dsets)
    unlike, compared, notes = unlike_levels(dsets) if not bad and not loose and not broken else ([], 0, [])
    verdict.add(
        "dicom: pyramid",
        not bad and not loose and not broken and not unlike and not blind,
        "; ".join(
            [f"{n}: a VOLUME without a readable Total Pixel Matrix (no place in the slide's image)" for n in blind[:5]]
            + [f"{n}: a VOLUME whose matrix is not a level of the slide's image" for n in bad[:5]]
            + [f"{x} (a frame no viewer shows)" for x in loose[:5]]
            + broken[:5]
            + unlike[:5]
        )
        or "every VOLUME instance is a level of the slide's image"
        + (f" ({compared} level(s) compared with the others, pixels and aspect)" if compared else "")
        + "; every frame has a place of its own in it"
        + (f" ({n_concat} concatenation(s): their parts make one image exactly)" if (n_concat := _concatenations(dsets)) else "")
        + "".join(f"; {x}" for x in notes),
    )


__all__ = ["check_pyramid", "off_pyramid"]
