"""``focal-planes`` (native NDPI and Leica SCN): every level page OpenSlide does not show is the slide.

An NDPI z-stack stores each level once per focal plane: pages of one size, the Z offset (tag
65424, nanometres) telling them apart. OpenSlide shows the page at Z offset 0 only, so
``pyramid-consistency`` never sees the others; the tile identity proves them the source's, which
says nothing of what they show: a label photo of level 0's size at another Z offset was shared and
verified (red team 12), and a viewer that focuses shows it. Here every level page (source lens,
tag 65421, above 0) other than the first at Z offset 0 of its size must be ``alike`` that page
(``verify.thumbnail``: grey and the two colour differences, ``GRID`` px on the long side, blurred;
its thresholds; focal planes of one slide look alike at that size, as the DICOM route's
``dicom: pyramid`` holds its focal planes to their first). A page of a size no Z-offset-0 page has
fails (nothing to compare it with: fail closed). A Leica SCN does the same in its XML: an
``<image>``'s ``<dimension>`` entries of one resolution differ by their ``z``; OpenSlide shows z 0,
and every other dimension's page must be alike the first at z 0 of its size in that image.

A page up to ``thumbnail.REF_MAX_PIXELS`` is read whole; larger ones are sampled, both at the same ``levels.POINTS`` points on the long side, each point's patch
at most ``thumbnail.READ`` px a side, the same pixels in both. An NDPI page is one JPEG whose
restart intervals tifffile reads as segments (McuStarts, tag 65426): only the segments a patch
meets are read and decoded, each once, by two threads; a page tifffile cannot cut so (one
segment larger than ``thumbnail.REF_MAX_PIXELS``) or that does not decode fails. Details name the
check and the page's index, never a measured value.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from wsianon.verify.decoded import page_fits, tile_fits
from wsianon.verify.formats.leica import _ATTR, _DIM  # the SCN XML read as the Leica checks read it
from wsianon.verify.levels import POINTS
from wsianon.verify.thumbnail import (
    MIN_LEVEL_SIDE,
    READ,
    REF_MAX_PIXELS,
    _channels,
    alike,
    blurred_covered,
    covered_grid,
    grid_shape,
    read_in_threads,
    within,
)

NAME = "focal-planes"
LENS, Z_OFFSET = 65421, 65424


def number(value) -> float | None:
    """A tag's value as one number, as the NDPI redactor reads it (a RATIONAL as its quotient), or
    None."""
    try:
        if isinstance(value, (tuple, list)):
            if len(value) == 2:
                return float(value[0]) / float(value[1])
            value = value[0] if len(value) == 1 else None
        return None if value is None else float(value)
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return None


def level_pages(tif) -> list[tuple[int, float, tuple[int, int]]]:
    """(page index, Z offset, (w, h)) of every level page (source lens above 0) of an NDPI; a Z
    offset that is no number counts as another focal plane (judged: fail closed)."""
    out = []
    for i, page in enumerate(tif.pages):
        tag = page.tags.get(LENS)
        lens = None if tag is None else number(tag.value)
        if lens is not None and lens > 0:
            z_tag = page.tags.get(Z_OFFSET)
            z = 0.0 if z_tag is None else number(z_tag.value)
            out.append((i, float("nan") if z is None else z, (int(page.imagewidth), int(page.imagelength))))
    return out


def _rgb(a: np.ndarray) -> np.ndarray:
    """(h, w, 3) of a decoded page or segment: grey (a fluorescence scan: (h, w) or (h, w, 1))
    repeated in the three channels, colour cut to its first three."""
    if a.ndim == 2:
        a = a[..., None]
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]


def _sample(fd: int, page, boxes: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(mean colour (n, 3), 1 where the box has pixels (n,)) of each box (x0, y0, x1, y1) of
    ``page``: the segments the boxes meet, each read and decoded once."""
    seg_h, seg_w = int(page.chunks[0]), int(page.chunks[1])
    per_row = int(page.chunked[1])
    if seg_h * seg_w > REF_MAX_PIXELS or not tile_fits(page):
        raise ValueError("a segment too large to sample")
    offsets, counts = page.dataoffsets, page.databytecounts
    uses: dict[int, list[tuple[int, int, int, int, int]]] = {}
    for n, (x0, y0, x1, y1) in enumerate(boxes):
        for r in range(y0 // seg_h, (y1 - 1) // seg_h + 1):
            for c in range(x0 // seg_w, (x1 - 1) // seg_w + 1):
                uses.setdefault(r * per_row + c, []).append((n, x0 - c * seg_w, y0 - r * seg_h, x1 - c * seg_w, y1 - r * seg_h))
    decode, header, tables = page.decode, page.jpegheader, page.jpegtables

    def read(k: int) -> list[tuple[int, np.ndarray, int]]:
        data = os.pread(fd, int(counts[k]), int(offsets[k]))
        a = decode(data, k, jpegheader=header, jpegtables=tables)[0]
        a = _rgb(np.asarray(a).reshape(a.shape[-3:]))
        got = []
        for n, xa, ya, xb, yb in uses[k]:
            part = a[max(0, ya) : max(0, yb), max(0, xa) : max(0, xb)]
            if part.size:
                got.append((n, part.reshape(-1, 3).sum(axis=0, dtype=np.float64), part.shape[0] * part.shape[1]))
        return got

    sums = np.zeros((len(boxes), 3), np.float64)
    pixels = np.zeros(len(boxes), np.float64)
    for got in read_in_threads(read, sorted(uses)):
        for n, s, count in got:
            sums[n] += s
            pixels[n] += count
    return sums / np.maximum(pixels, 1)[:, None], (pixels > 0).astype(np.float32)


def _prepared(fd: int, page, size: tuple[int, int], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(``page`` prepared at ``shape`` (box-averaged and blurred counting only cells with pixels),
    the part of each cell with pixels): read whole up to ``REF_MAX_PIXELS``, else sampled at
    ``POINTS`` points on the long side."""
    w, h = size
    if w * h <= REF_MAX_PIXELS:
        if not page_fits(page):
            raise ValueError("a page too large to decode")
        a = _rgb(np.asarray(page.asarray()))
        grid, grid_cover = covered_grid(_channels(a), np.ones(a.shape[:2], np.float32), shape)
        return blurred_covered(grid, grid_cover), grid_cover
    n_x, n_y = (max(1, round(POINTS * s / max(shape))) for s in shape)
    half_x, half_y = max(1, min(READ, w // n_x) // 2), max(1, min(READ, h // n_y) // 2)
    boxes = []
    for j in range(n_y):
        for i in range(n_x):
            cx, cy = int((i + 0.5) * w / n_x), int((j + 0.5) * h / n_y)
            x0, y0 = max(0, cx - half_x), max(0, cy - half_y)
            boxes.append((x0, y0, min(w, max(x0 + 1, cx + half_x)), min(h, max(y0 + 1, cy + half_y))))
    colours, cover = _sample(fd, page, boxes)
    grid, grid_cover = covered_grid(_channels(colours.reshape(n_y, n_x, 3).astype(np.float32)), cover.reshape(n_y, n_x), shape)
    return blurred_covered(grid, grid_cover), grid_cover


_IMAGE = re.compile(r"<image\b.*?</image>", re.S)


def leica_pages(tif) -> list[tuple[int, float, tuple[int, int], int]]:
    """(page index, z, (w, h), image ordinal) of every ``<dimension>`` of a Leica SCN's XML: an
    image's dimensions at one resolution differ by their ``z`` (a focal plane; OpenSlide shows
    z 0 only). A z that is no number counts as another plane (judged: fail closed)."""
    xml = tif.pages.first.description or ""
    out = []
    for k, image in enumerate(_IMAGE.findall(xml)):
        for m in _DIM.finditer(image):
            a = dict(_ATTR.findall(m.group(0)))
            i = int(a["ifd"])
            z = number(a.get("z", "0"))
            page = tif.pages[i]
            out.append((i, float("nan") if z is None else z, (int(page.imagewidth), int(page.imagelength)), k))
    return out


# a focal plane under MIN_LEVEL_SIDE against its Z-offset-0 page, pixel by pixel: planes of one
# level at that size are one picture (focus averages out), so the bound is half the tiny level's
# against a larger level (``levels.TINY_GREY`` / ``TINY_COLOUR``): a record's bytes made bright
# (bit 7 set) are about 20 grey levels from a bright slide
TINY_PLANE_GREY, TINY_PLANE_COLOUR = 12.0, 8.0


def _tiny_alike(page, first) -> bool:
    """Whether a page under ``MIN_LEVEL_SIDE`` (read whole) is its level's page at Z offset 0 within
    ``TINY_PLANE_GREY`` / ``TINY_PLANE_COLOUR`` (mean difference of grey and the two colour
    differences, pixel by pixel)."""
    # (no decode bound needed: under 16 px a side, 65,535 samples of 8 bytes are 128 MiB at most)
    a, b = _rgb(np.asarray(page.asarray())), _rgb(np.asarray(first.asarray()))
    if a.shape != b.shape or a.dtype != np.uint8 or b.dtype != np.uint8:
        return False
    return within(_channels(a), _channels(b), TINY_PLANE_GREY, TINY_PLANE_COLOUR)


def _judge(path: Path, find, verdict) -> None:
    """Every page ``find(tif)`` lists ((index, z, size, group)) other than the first at z 0 of
    its size in its group must be alike that one."""
    import tifffile

    try:
        tif = tifffile.TiffFile(str(path))
    except Exception as exc:
        verdict.add(NAME, False, f"the pages cannot be read to judge them ({type(exc).__name__})")
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            pages = find(tif)
        except Exception as exc:  # a page or a description tifffile cannot parse: nothing proves what it shows
            verdict.add(NAME, False, f"the pages cannot be read to judge them ({type(exc).__name__})")
            return
        first: dict[tuple, int] = {}
        for i, z, size, group in pages:
            if z == 0:
                first.setdefault((group, size), i)
        others = [(i, (group, size)) for i, z, size, group in pages if first.get((group, size)) != i]
        if not others:
            verdict.add(NAME, True, "one focal plane: every level page is one OpenSlide shows")
            return
        bad: list[str] = []
        n = small = 0
        refs: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # each size's first page, sampled once
        for i, key in others:
            size = key[1]
            if key not in first:
                bad.append(f"page {i}: a level page of a size no page at Z offset 0 has")
                continue
            if max(size) < MIN_LEVEL_SIDE:
                # too small for the correlation rule: judged whole against its Z-offset-0 page by
                # the mean difference of grey and colour (red team stop 38, round 2: 6 x 3 planes of
                # a Leica SCN, 54 bytes of a record each, as many planes as one liked, passed)
                small += 1
                try:
                    same = _tiny_alike(tif.pages[i], tif.pages[first[key]])
                except Exception as exc:
                    bad.append(f"page {i}: cannot be read to judge it ({type(exc).__name__})")
                    continue
                if not same:
                    bad.append(f"page {i}: its pixels are not the slide's (the level's page at Z offset 0)")
                continue
            shape = grid_shape(size)
            try:
                mine, _ = _prepared(fd, tif.pages[i], size, shape)
                if key not in refs:
                    refs[key] = _prepared(fd, tif.pages[first[key]], size, shape)
                theirs = refs[key][0]
            except Exception as exc:
                bad.append(f"page {i}: cannot be read to judge it ({type(exc).__name__})")
                continue
            n += 1
            if not alike(mine, theirs):
                bad.append(f"page {i}: its pixels are not the slide's (the level's page at Z offset 0)")
        note = f"; {small} page(s) under {MIN_LEVEL_SIDE} px judged whole" if small else ""
        verdict.add(NAME, not bad, "; ".join(bad[:5]) + note if bad else f"{n} level page(s) at another focal plane are the slide (pixels){note}")
    finally:
        os.close(fd)
        tif.close()


def check_ndpi(path: Path, verdict) -> None:
    """Judge every level page of an NDPI output that OpenSlide does not show."""
    _judge(path, lambda tif: [(i, z, size, 0) for i, z, size in level_pages(tif)], verdict)


def check_leica(path: Path, verdict) -> None:
    """Judge every ``<dimension>`` of a Leica SCN output's images that OpenSlide does not show."""
    _judge(path, leica_pages, verdict)


__all__ = ["NAME", "check_leica", "check_ndpi", "leica_pages", "level_pages"]
