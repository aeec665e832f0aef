"""Decoding for the frames a converter re-tiled (libjpeg-turbo planes) or re-encoded (OpenSlide
reference regions, PSNR), and sampling when a slide is beyond the decode budget.
"""

from __future__ import annotations

import math
import os
import re
import struct
from typing import Any
from pathlib import Path

from pydicom.dataset import Dataset

from wsianon.io.dicomframes import iter_frames
from wsianon.verify.dicom.jpeg import _fragments

# ---------------------------------------------------------------------------
# frames of converted (non-DICOM) slides
#
# Each VOLUME instance gets the strongest proof its route allows:
#
# * "bytes"      the source level is tiled like the output (JPEG / JPEG 2000): every frame carries
#                the source tile's bitstream (same entropy-coded data; JPEG tables may move inline);
# * "re-tiled"   the source level is JPEG with another tiling (NDPI strips, whose restart intervals
#                the converter splices into frames without re-encoding): every frame, decoded to raw
#                Y/Cb/Cr planes (libjpeg-turbo, no upsampling, no colour conversion, so each sample
#                depends on its own 8x8 block only), equals the same region of the source decoded
#                the same way, sample for sample;
# * "re-encoded" the instance declares a lossy re-encode (DerivationCodeSequence DCM 113040 "Lossy
#                Compression", which the route writes when wsidicomizer transcodes): the same region
#                read from the source by OpenSlide is re-encoded here as the route encodes it
#                (wsidicomizer's default: libjpeg-turbo through imagecodecs, quality 80, 4:2:2
#                YCbCr), and the decoded frame must be as close to the source as that re-encode is,
#                over the frame (PSNR at most REENCODE_MARGIN_DB below the re-encode's, capped at
#                REENCODE_CAP_DB) and in every 16x16 block (RMSE at most BLOCK_RMSE_FACTOR times the
#                re-encode's there plus BLOCK_RMSE_SLACK grey levels): a picture or a name planted in
#                a frame departs from the source far beyond what the re-encode costs in its blocks,
#                even where it costs the whole frame little PSNR.  A flat PSNR bound cannot do both:
#                dense tissue re-encoded at quality 80 is below 30 dB, a faint name on a flat
#                background costs far less.  Frames that are not JPEG (no known encoder to repeat)
#                keep the flat MIN_PSNR_DB bound.
#
# An instance that declares no re-encode must pass "bytes" or "re-tiled".  Decoded comparisons run
# one frame at a time (memory: a few frames); beyond MAX_DECODED_FRAMES per slide an even sample is
# compared and the detail says so.

MAX_DECODED_FRAMES = 4096
WHOLE_DECODE_BYTES = 64 << 20  # a source strip up to this decoded size is decoded whole, once
MIN_PSNR_DB = 30.0  # re-encoded frames that are not JPEG
REENCODE_QUALITY, REENCODE_SUBSAMPLING = 80, "422"  # wsidicomizer's default JpegSettings()
REENCODE_MARGIN_DB = 1.5  # frame PSNR vs the re-encode's (clean conversions measured: worst -0.37 dB)
REENCODE_CAP_DB = 45.0  # the frame PSNR never required above this (the re-encode may be exact)
BLOCK = 16
# a 16x16 block of a clean frame measured at most 1.9 grey levels RMSE beyond 2x the re-encode's;
# a planted name on white is caught from 30 grey levels below white (2-px strokes; 1-px: 45)
BLOCK_RMSE_FACTOR, BLOCK_RMSE_SLACK = 2.0, 6.0
LOSSY_COMPRESSION_CODE = "113040"  # DCM, CID 7203 Image Derivation: Lossy Compression
JPEG_TS = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}
RST_OR_EOI = {bytes([0xFF, m]) for m in range(0xD0, 0xD8)} | {b"\xff\xd9"}
_CHROMA_DIV = {0: (1, 1), 1: (2, 1), 2: (2, 2), 4: (1, 2), 5: (4, 1)}  # TJSAMP -> (h, v) divisors


def declares_reencoding(ds: Dataset) -> bool:
    """The instance says its pixels were lossy re-encoded (DCM 113040 in DerivationCodeSequence)."""
    for item in ds.get("DerivationCodeSequence") or []:
        if str(item.get("CodeValue", "")) == LOSSY_COMPRESSION_CODE and str(item.get("CodingSchemeDesignator", "")) == "DCM":
            return True
    return False


def pictures(ds: Dataset) -> int:
    """Pictures a TILED_FULL instance holds: its focal planes times its optical paths (its frames
    repeat the tile grid once for each, focal planes first; PS3.3 C.8.12.4.1.2)."""
    try:
        return max(1, int(ds.get("TotalPixelMatrixFocalPlanes", 1) or 1)) * max(1, int(ds.get("NumberOfOpticalPaths", 1) or 1))
    except (TypeError, ValueError):
        return 1


def frame_origins(ds: Dataset, frames: int | None = None) -> list[tuple[int, int]] | None:
    """0-based (x, y) of every frame in the total pixel matrix; None if they cannot be told.  A
    TILED_FULL instance of several pictures (``pictures``) repeats the grid's origins for each
    (``first_picture`` keeps the first's).  ``frames``: the whole's frame count when ``ds`` is the
    first part of a concatenation (its parts' frames in TILED_FULL order, ``whole_frames_at``)."""
    cols, rows = int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
    tw, th = int(ds.Columns), int(ds.Rows)
    n = int(ds.get("NumberOfFrames", 1) or 1) if frames is None else frames
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if str(ds.get("DimensionOrganizationType", "")).upper() == "TILED_FULL" or not per_frame:
        nx, ny = -(-cols // tw), -(-rows // th)
        if n not in (nx * ny, nx * ny * pictures(ds)):
            return None
        return [((k % nx) * tw, (k // nx % ny) * th) for k in range(n)]
    if frames is not None:
        return None
    out = []
    for item in per_frame:
        try:
            pos = item.PlanePositionSlideSequence[0]
            out.append((int(pos.ColumnPositionInTotalImagePixelMatrix) - 1, int(pos.RowPositionInTotalImagePixelMatrix) - 1))
        except Exception:
            return None
    return out if len(out) == n else None


def first_picture(ds: Dataset, origins: list[tuple[int, int]] | None) -> list[tuple[int, int]] | None:
    """The origins of the first picture's frames (``frame_origins`` of a TILED_FULL instance of
    several pictures holds every picture's): an image of the instance shows one focal plane."""
    if origins is None or str(ds.get("DimensionOrganizationType", "")).upper() != "TILED_FULL":
        return origins
    nx, ny = -(-int(ds.TotalPixelMatrixColumns) // int(ds.Columns)), -(-int(ds.TotalPixelMatrixRows) // int(ds.Rows))
    return origins[: nx * ny]


def _tj():
    from wsianon.io.dicomframes import turbojpeg

    return turbojpeg()  # one binding per process (making one runs ldconfig)


def _decode_planes(tj, jpeg: bytes) -> tuple[list, list[tuple[int, int]]]:
    """Raw component planes of a JPEG and each plane's (h, v) divisor. Fallback for sampling
    layouts TurboJPEG cannot decode raw: RGB with fast (block-local, replicating) upsampling."""
    from turbojpeg import TJFLAG_ACCURATEDCT, TJFLAG_FASTUPSAMPLE, TJPF_RGB

    try:
        _w, _h, sub, _cs = tj.decode_header(jpeg)
        if sub == 3:  # grey
            return tj.decode_to_yuv_planes(jpeg), [(1, 1)]
        if sub in _CHROMA_DIV:
            return tj.decode_to_yuv_planes(jpeg), [(1, 1), _CHROMA_DIV[sub], _CHROMA_DIV[sub]]
    except Exception:
        pass
    rgb = tj.decode(jpeg, pixel_format=TJPF_RGB, flags=TJFLAG_FASTUPSAMPLE | TJFLAG_ACCURATEDCT)
    return [rgb], [(1, 1)]


def _crop_planes(planes, divs, x: int, y: int, w: int, h: int) -> list:
    out = []
    for p, (dh, dv) in zip(planes, divs):
        out.append(p[y // dv : y // dv + -(-h // dv), x // dh : x // dh + -(-w // dh)])
    return out


def _sof_patch(header: bytes, height: int, width: int) -> bytes:
    """``header`` (SOI .. SOS) with the frame size in its SOF segment set to width x height."""
    i = 2
    while i + 4 <= len(header):
        if header[i] != 0xFF:
            break
        m = header[i + 1]
        (ln,) = struct.unpack(">H", header[i + 2 : i + 4])
        if m in (0xC0, 0xC1, 0xC2):
            return header[: i + 5] + struct.pack(">HH", height, width) + header[i + 9 :]
        i += 2 + ln
    raise ValueError("no SOF segment in the JPEG header")


class _JpegLevel:
    """Regions of one JPEG-compressed TIFF level as raw decoded planes, bounded in memory.

    NDPI levels (tifffile shows their restart intervals as tiles): the whole original strip is
    decoded once when small; otherwise the intervals covering a region are joined into one JPEG
    (restart markers renumbered; the entropy-coded data is not touched). Single-strip levels are
    decoded whole when small. Tiled levels (with shared JPEGTables): the covering tiles.
    """

    def __init__(self, fd: int, page, tj, whole_limit: int = WHOLE_DECODE_BYTES):
        self.fd, self.page, self.tj = fd, page, tj
        self.w, self.h = int(page.imagewidth), int(page.imagelength)
        self.whole_limit = whole_limit
        self._strip: tuple[int, int] | None = None
        self._whole: tuple[list, list] | None = None
        self.how = ""
        self.unsupported = ""
        header = getattr(page, "jpegheader", None)
        decoded = self.w * self.h * 3
        if header is not None and page.is_tiled:
            self.mode = "ndpi"
            self.tw, self.th = int(page.tilewidth), int(page.tilelength)
            self.across = -(-self.w // self.tw)
            if self.across * (-(-self.h // self.th)) != len(page.dataoffsets):
                self.unsupported = "restart intervals do not tile the level"
            mcu0 = page.tags.valueof(65426)
            if decoded <= whole_limit and mcu0 is not None:
                start_rel = int(mcu0[0])
                self._strip = (int(page.dataoffsets[0]) - start_rel, start_rel + int(sum(page.databytecounts)))
                self.how = "the whole source strip decoded once"
            else:
                self._strip = None
                self.how = "the source's restart intervals covering each frame joined and decoded"
        elif not page.is_tiled:
            self.mode = "strip"
            if len(page.dataoffsets) != 1:
                self.unsupported = "multi-strip JPEG level"
            elif decoded > whole_limit:
                self.unsupported = "single JPEG strip too large to decode within the memory bound"
            self._strip = (int(page.dataoffsets[0]), int(page.databytecounts[0]))
            self.how = "the whole source strip decoded once"
        else:
            self.mode = "tiles"
            self.tw, self.th = int(page.tilewidth), int(page.tilelength)
            self.across = -(-self.w // self.tw)
            self.tables = getattr(page, "jpegtables", None)
            self.how = "the source tiles covering each frame decoded"

    def _read(self, off: int, n: int) -> bytes:
        b = os.pread(self.fd, n, off)
        if len(b) != n:
            raise ValueError("source truncated")
        return b

    def _whole_planes(self):
        if self._whole is None:
            assert self._strip is not None  # whole-strip mode is chosen only with a strip
            off, n = self._strip
            data = self._read(off, n)
            tables = getattr(self.page, "jpegtables", None)
            if tables and self.mode == "strip":
                data = bytes(tables[:-2]) + data[2:]
            self._whole = _decode_planes(self.tj, data)
        return self._whole

    def region(self, x: int, y: int, w: int, h: int) -> tuple[list, list]:
        if self.mode == "strip" or (self.mode == "ndpi" and self._strip is not None):
            planes, divs = self._whole_planes()
            return _crop_planes(planes, divs, x, y, w, h), divs
        if self.mode == "ndpi":
            return self._ndpi_region(x, y, w, h)
        return self._tiles_region(x, y, w, h)

    def _ndpi_region(self, x, y, w, h):
        page = self.page
        c0, c1 = x // self.tw, -(-(x + w) // self.tw)
        r0, r1 = y // self.th, -(-(y + h) // self.th)
        rw = min(c1 * self.tw, self.w) - c0 * self.tw
        rh = min(r1 * self.th, self.h) - r0 * self.th
        parts = [_sof_patch(bytes(page.jpegheader), rh, rw)]
        k = 0
        offs, cnts = page.dataoffsets, page.databytecounts
        for r in range(r0, r1):
            i0, i1 = r * self.across + c0, r * self.across + c1
            row = self._read(int(offs[i0]), int(offs[i1 - 1]) + int(cnts[i1 - 1]) - int(offs[i0]))
            for i in range(i0, i1):
                a = int(offs[i]) - int(offs[i0])
                seg = row[a : a + int(cnts[i])]
                if seg[-2:] in RST_OR_EOI:
                    seg = seg[:-2]
                if k:
                    parts.append(bytes((0xFF, 0xD0 + (k - 1) % 8)))
                parts.append(seg)
                k += 1
        parts.append(b"\xff\xd9")
        planes, divs = _decode_planes(self.tj, b"".join(parts))
        return _crop_planes(planes, divs, x - c0 * self.tw, y - r0 * self.th, w, h), divs

    def _tiles_region(self, x, y, w, h):
        import numpy as np

        page = self.page
        c0, c1 = x // self.tw, -(-(x + w) // self.tw)
        r0, r1 = y // self.th, -(-(y + h) // self.th)
        out = None
        divs = None
        for r in range(r0, r1):
            for c in range(c0, c1):
                i = r * self.across + c
                tile = self._read(int(page.dataoffsets[i]), int(page.databytecounts[i]))
                if self.tables:
                    tile = bytes(self.tables[:-2]) + tile[2:]
                planes, divs = _decode_planes(self.tj, tile)
                if out is None:
                    out = [np.zeros((-(-(r1 - r0) * self.th // dv), -(-(c1 - c0) * self.tw // dh)) + p.shape[2:], p.dtype) for p, (dh, dv) in zip(planes, divs)]
                for o, p, (dh, dv) in zip(out, planes, divs):
                    ty, tx = (r - r0) * self.th // dv, (c - c0) * self.tw // dh
                    ph, pw = min(p.shape[0], self.th // dv), min(p.shape[1], self.tw // dh)
                    o[ty : ty + ph, tx : tx + pw] = p[:ph, :pw]
        return _crop_planes(out, divs, x - c0 * self.tw, y - r0 * self.th, w, h), divs


class _OpenSlideReference:
    """Regions of the source as OpenSlide renders them, composited over the background colour
    (what a pixel-reading converter encodes)."""

    def __init__(self, source: Path):
        import openslide

        self.s = openslide.OpenSlide(str(source))
        self.path = str(source)
        self._exact: Any = None  # tiffslide, opened on first need (False: not usable)
        p = self.s.properties
        self.bg: tuple[int, ...] = (255, 255, 255)
        m = re.fullmatch(r"([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})", p.get("openslide.background-color", "") or "")
        if m:
            self.bg = tuple(int(g, 16) for g in m.groups())
        self.bounds = None
        try:
            self.bounds = tuple(int(p[f"openslide.bounds-{k}"]) for k in ("x", "y", "width", "height"))
        except (KeyError, ValueError):
            pass

    def close(self):
        self.s.close()
        if self._exact not in (None, False):
            self._exact.close()

    def exact_region(self, level: int, d: float, x: int, y: int, w: int, h: int):
        """The level's own pixels at (x, y) when its downsample is not an integer, or None.
        OpenSlide places such a level at ``X / d`` for a level-0 ``X`` and interpolates the
        fraction (Aperio's 2.0005: a third of a pixel off at x = 1536, 27-30 dB against the level's
        pixels); tiffslide maps ``ceil(x * d)`` back to exactly ``x``. Used only where its levels are
        OpenSlide's (same sizes) and the slide has no bounds offset."""
        import math

        import numpy as np

        if abs(d - round(d)) < 1e-9 or self.bounds is not None or self._exact is False:
            return None
        if self._exact is None:
            try:
                import tiffslide

                self._exact = tiffslide.TiffSlide(self.path)
                if tuple(map(tuple, self._exact.level_dimensions)) != tuple(map(tuple, self.s.level_dimensions)):
                    self._exact.close()
                    self._exact = False
            except Exception:
                self._exact = False
            if self._exact is False:
                return None
        a = np.asarray(self._exact.read_region((math.ceil(x * d), math.ceil(y * d)), level, (w, h), as_array=True))
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        if a.shape[2] == 4:
            alpha = a[..., 3:4].astype(np.int32)
            bg = np.asarray(self.bg, np.int32)
            return ((a[..., :3].astype(np.int32) * alpha + bg * (255 - alpha) + 127) // 255).astype(np.uint8)
        return a[..., :3].astype(np.uint8)

    def level_for(self, cols: int, rows: int) -> tuple[int, float] | None:
        for i, (dims, d) in enumerate(zip(self.s.level_dimensions, self.s.level_downsamples)):
            if self.bounds is not None:
                r = int(round(d))
                size = (self.bounds[2] // r, self.bounds[3] // r)
            else:
                size = dims
            if size == (cols, rows):
                return i, d
        return None

    def region(self, level: int, d: float, x: int, y: int, w: int, h: int):
        import numpy as np

        bx, by = (self.bounds[0], self.bounds[1]) if self.bounds else (0, 0)
        rgba = np.asarray(self.s.read_region((int(x * d + bx), int(y * d + by)), level, (w, h)), dtype=np.int32)
        a = rgba[..., 3:4]
        bg = np.asarray(self.bg, np.int32)
        return ((rgba[..., :3] * a + bg * (255 - a) + 127) // 255).astype(np.uint8)


class ReencodeBound:
    """A decoded re-encoded frame ``got`` (cropped to the ``w`` x ``h`` inside the total pixel
    matrix) judged against the source region ``src`` (the frame's full size, the part outside the
    matrix as the reference renders it) and against ``src`` re-encoded here as the route encodes
    (``jpeg``: the frame is JPEG; otherwise only the flat MIN_PSNR_DB bound applies)."""

    def __init__(self, got, src, w: int, h: int, jpeg: bool):
        import imagecodecs
        import numpy as np

        exp = src[:h, :w]
        self.jpeg = jpeg
        self.frame_psnr = _psnr(got, exp)
        self.own_psnr = float("inf")
        self.excess = -float("inf")  # the worst block's RMSE beyond what the re-encode allows there
        if not jpeg:
            return
        cs = imagecodecs.JPEG8.CS.GRAYSCALE if src.ndim == 2 else imagecodecs.JPEG8.CS.YCbCr
        enc = imagecodecs.jpeg8_encode(np.ascontiguousarray(src), level=REENCODE_QUALITY, subsampling=REENCODE_SUBSAMPLING, outcolorspace=cs)
        own = np.asarray(imagecodecs.jpeg8_decode(enc))[:h, :w]
        if own.shape != exp.shape:
            own = own.reshape(exp.shape) if own.size == exp.size else own[..., 0]
        self.own_psnr = _psnr(own, exp)
        f, o = _block_rmse(got, exp), _block_rmse(own, exp)
        self.excess = float((f - BLOCK_RMSE_FACTOR * o).max()) if f.size else 0.0

    @property
    def required_db(self) -> float:
        if not self.jpeg:
            return MIN_PSNR_DB
        return min(self.own_psnr - REENCODE_MARGIN_DB, REENCODE_CAP_DB)

    def failure(self) -> str:
        """Why the frame is beyond a lossy re-encode, or ""."""
        if self.frame_psnr < self.required_db:
            if not self.jpeg:
                return f"PSNR {self.frame_psnr:.1f} dB < {MIN_PSNR_DB:.0f} dB"
            return f"PSNR {self.frame_psnr:.1f} dB, the route's own re-encode of that region {self.own_psnr:.1f} dB"
        if self.excess > BLOCK_RMSE_SLACK:
            return f"a {BLOCK}x{BLOCK} block {self.excess:.0f} grey levels RMSE beyond the route's own re-encode there"
        return ""


def _block_rmse(a, b):
    """RMSE of each BLOCK x BLOCK block (partial blocks at the right and bottom edges included)."""
    import numpy as np

    d = a.astype(np.float32) - b.astype(np.float32)
    d = d * d
    if d.ndim == 3:
        d = d.mean(axis=2)
    h, w = d.shape
    ph, pw = -h % BLOCK, -w % BLOCK
    ones = np.pad(np.ones_like(d), ((0, ph), (0, pw)))
    d = np.pad(d, ((0, ph), (0, pw)))
    bh, bw = d.shape[0] // BLOCK, d.shape[1] // BLOCK
    s = d.reshape(bh, BLOCK, bw, BLOCK).sum(axis=(1, 3))
    c = ones.reshape(bh, BLOCK, bw, BLOCK).sum(axis=(1, 3))
    return np.sqrt(s / np.maximum(c, 1))


def _psnr(a, b) -> float:
    import numpy as np

    diff = a.astype(np.float32) - b.astype(np.float32)
    mse = float(np.mean(diff * diff)) if diff.size else 0.0
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 * 255.0 / mse)


def _sample(n: int, budget: int) -> list[int]:
    if n <= budget:
        return list(range(n))
    if budget <= 1:
        return [0]
    step = (n - 1) / (budget - 1)
    return sorted({round(i * step) for i in range(budget)})


def _frames_at(path: Path, ds: Dataset, wanted: list[int]):
    """Yield (index, frame bytes) for the wanted frame indices, one frame in memory at a time."""
    want = set(wanted)
    with open(path, "rb") as fh:
        frags = _fragments(fh.fileno(), path, ds)
        if frags is not None:
            for k in wanted:
                o, ln = frags[k]
                yield k, os.pread(fh.fileno(), ln, o)
            return
    for k, fv in enumerate(iter_frames(path)):
        if k in want:
            yield k, fv


Part = tuple[Path, Dataset, int, int]  # an instance of an image: path, dataset, first frame in the whole, frames


def wholes(dsets) -> list[tuple[Path, Dataset, list[Part]]]:
    """Each image of ``dsets`` ((path, dataset) pairs) once: an instance on its own, or a
    concatenation as its first part with all its parts (``io.dicomframes.concatenation_groups``;
    that they make the whole exactly is ``concatenation_problems``', which ``dicom: pyramid``
    and the converter apply)."""
    from wsianon.io.dicomframes import concatenation_groups, concatenation_part

    groups = concatenation_groups(dsets)
    out: list[tuple[Path, Dataset, list[Part]]] = []
    seen: set[str] = set()
    for p, ds in dsets:
        part = concatenation_part(ds)
        if part is None:
            out.append((p, ds, [(p, ds, 0, int(ds.get("NumberOfFrames", 1) or 1))]))
            continue
        if part[0] in seen:
            continue
        seen.add(part[0])
        members = groups[part[0]]
        parts = [(q, d, concatenation_part(d)[2], int(d.get("NumberOfFrames", 1) or 1)) for q, d in members]  # type: ignore[index]
        out.append((members[0][0], members[0][1], parts))
    return out


def whole_frames_at(parts: list[Part], wanted: list[int]):
    """(index in the whole, frame bytes) of the ``wanted`` frames of an image made of ``parts``."""
    for path, ds, first, n in parts:
        local = [k - first for k in wanted if first <= k < first + n]
        if local:
            for k, fv in _frames_at(path, ds, local):
                yield first + k, fv


def whole_count(parts: list[Part]) -> int:
    return sum(n for *_x, n in parts)


class _Tally:
    def __init__(self):
        self.levels = 0
        self.frames = 0
        self.total = 0
        self.hows: set[str] = set()
        self.samples: set[str] = set()
        self.worst = float("inf")
        self.worst_margin = float("inf")  # re-encoded: frame PSNR minus the own re-encode's (capped)
        self.worst_excess = -float("inf")  # re-encoded: worst block RMSE beyond the allowance
        self.flat = False  # re-encoded frames without a known encoder (flat bound)

    def note(self, b: ReencodeBound) -> None:
        self.worst = min(self.worst, b.frame_psnr)
        if not b.jpeg:
            self.flat = True
            return
        self.worst_margin = min(self.worst_margin, b.frame_psnr - min(b.own_psnr, REENCODE_CAP_DB + REENCODE_MARGIN_DB))
        self.worst_excess = max(self.worst_excess, b.excess)
