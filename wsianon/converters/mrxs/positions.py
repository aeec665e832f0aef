"""The camera-image positions OpenSlide places MRXS tiles by, checked before anything decodes them.

OpenSlide reads one NONHIER record for the positions, found by the layer's name: the first value
of the ``VIMSLIDE_POSITION_BUFFER`` layer, else the first value of the ``StitchingIntensityLayer``
layer (deflated), whatever the value is named.  It holds one 9-byte entry per position (a flag byte,
then x and y as little-endian int32, multiplied by 2 ** IMAGE_CONCAT_FACTOR of level 0); there are
``(IMAGENUMBER_X / d) * (IMAGENUMBER_Y / d)`` positions, ``d`` = CameraImageDivisionsPerSide.

A slide's extent is where its positions put the camera images.  Positions far outside the grid
Slidedat.ini declares (text written into them reads as x ≈ 10^9) made OpenSlide's decode probe spin
until its 300 s limit: the slide was refused, but only after five minutes of a core.  A scanner
places each camera image near its grid cell (stitching moves it by a fraction of an image), so a
position more than :data:`SLACK_IMAGES` camera images outside the grid's extent is refused at once.
"""

from __future__ import annotations

import math

import struct
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from wsianon.errors import CorruptInput

if TYPE_CHECKING:
    from wsianon.converters.mrxs.slide import Slide

ENTRY = 9
SLACK_IMAGES = 8  # camera images a position may lie outside the declared grid's extent
ZOOM_LAYER = "Slide zoom level"


def _int(slide: Slide, section: str, key: str, default: int | None = None) -> int | None:
    value = slide.ini.get(section, key)
    if value is None:
        return default
    try:
        return int(value.strip())
    except ValueError:
        return None


def _zoom_section(slide: Slide) -> str | None:
    """The section of level 0 of the zoom-level layer (the HIER layer OpenSlide draws)."""
    count = _int(slide, "HIERARCHICAL", "HIER_COUNT", 0) or 0
    for i in range(count):
        if (slide.ini.get("HIERARCHICAL", f"HIER_{i}_NAME") or "").strip() == ZOOM_LAYER:
            return slide.ini.get("HIERARCHICAL", f"HIER_{i}_VAL_0_SECTION")
    return None


POSITION_LAYERS = (("VIMSLIDE_POSITION_BUFFER", False), ("StitchingIntensityLayer", True))


def _record(slide: Slide):
    """The record OpenSlide reads the positions from, and whether it is deflated (None: no such
    record).  OpenSlide finds it by the layer's name (NONHIER_i_NAME) and reads the layer's first
    value whatever that value is named: the VIMSLIDE_POSITION_BUFFER layer, else the
    StitchingIntensityLayer layer."""
    for layer, deflated in POSITION_LAYERS:
        rec = next((r for r in slide.records if r.layer_name == layer), None)
        if rec is not None:
            return rec, deflated
    return None, False


INT32_MAX = (1 << 31) - 1


def check_grid(slide: Slide) -> None:
    """Refuse a camera grid OpenSlide cannot hold, and a zoom-level image at a camera position past
    the position record.

    OpenSlide keeps ``(IMAGENUMBER_X / d) * (IMAGENUMBER_Y / d)`` positions (``d`` =
    CameraImageDivisionsPerSide) and the record's size, 9 bytes a position, in 32-bit ints: a grid
    past that is no scanner's.  It looks every sub-tile of every zoom-level image up at position
    ``(yy / d) * (IMAGENUMBER_X / d) + xx / d``, at every level; where IMAGENUMBER_X or _Y is not a
    multiple of ``d``, an image in the last columns or rows is looked up past the end of the
    record (an out-of-bounds read in OpenSlide; nothing says where that image belongs)."""
    nx, ny = _int(slide, "GENERAL", "IMAGENUMBER_X"), _int(slide, "GENERAL", "IMAGENUMBER_Y")
    d = _int(slide, "GENERAL", "CameraImageDivisionsPerSide", 1)
    if not nx or not ny or not d or nx < 1 or ny < 1 or d < 1:
        return  # OpenSlide refuses the slide
    cols, npos = nx // d, (nx // d) * (ny // d)
    if ENTRY * npos > INT32_MAX:
        raise CorruptInput(
            slide.mrxs, f"Slidedat.ini declares a grid of {npos} camera positions, past OpenSlide's 32-bit arithmetic (no scanner writes such a grid): refused"
        )
    if not slide.index.supported:
        return
    section = _zoom_section(slide)
    ovx, ovy = (_float(slide, section, "OVERLAP_X"), _float(slide, section, "OVERLAP_Y")) if section else (None, None)
    split = _record(slide)[0] is not None or bool(ovx) or bool(ovy)
    total = 0
    for lvl, items in enumerate(slide.index.zoom_items):
        exponent = _int(slide, slide.ini.get("HIERARCHICAL", f"HIER_0_VAL_{lvl}_SECTION") or "", "IMAGE_CONCAT_FACTOR")
        if exponent is None or not 0 <= exponent <= 30 or total + exponent > 30:
            return  # OpenSlide refuses the slide
        total += exponent
        tiles = max(1, (1 << total) // d) if split else 1  # sub-tiles an image a side
        for image, _off, _ln, _fno in items:
            x, y = image % nx, image // nx
            last_x = x + (min(nx - 1 - x, (tiles - 1) * d) // d) * d  # its last sub-tile's column
            last_y = y + (min(ny - 1 - y, (tiles - 1) * d) // d) * d
            if (last_y // d) * cols + last_x // d >= npos:
                raise CorruptInput(
                    slide.mrxs,
                    f"zoom-level image {image} of level {lvl} lies at a camera position past the position record (IMAGENUMBER_X/Y {nx}x{ny} not a multiple of CameraImageDivisionsPerSide {d}): OpenSlide reads past the record there: refused",
                )


def check_positions(slide: Slide) -> None:
    """Refuse a slide whose position record puts a camera image far outside its declared grid
    (and what :func:`check_grid` refuses).  Records OpenSlide itself refuses at once (wrong size, a
    flag other than 0/1, a stream that does not inflate) and slides without the parameters are
    left to it."""
    check_grid(slide)
    rec, deflated = _record(slide)
    if rec is None or not rec.present or not slide.index.supported:
        return
    section = _zoom_section(slide)
    images_x, images_y = _int(slide, "GENERAL", "IMAGENUMBER_X"), _int(slide, "GENERAL", "IMAGENUMBER_Y")
    divisions = _int(slide, "GENERAL", "CameraImageDivisionsPerSide", 1)
    if section is None or not images_x or not images_y or not divisions or divisions < 1:
        return
    width, height = _int(slide, section, "DIGITIZER_WIDTH"), _int(slide, section, "DIGITIZER_HEIGHT")
    exponent = _int(slide, section, "IMAGE_CONCAT_FACTOR", 0)
    if not width or not height or exponent is None or width < 1 or height < 1 or not 0 <= exponent < 31:
        return
    concat = 1 << exponent
    cols, rows = images_x // divisions, images_y // divisions
    expected = ENTRY * cols * rows
    blob = slide.blob(rec)
    if deflated:
        d = zlib.decompressobj()
        try:
            blob = d.decompress(blob, expected + 1)
        except zlib.error:
            return
    if len(blob) != expected:
        return  # OpenSlide refuses a record of another size
    span_x, span_y = width * divisions, height * divisions
    lo_x, hi_x = -SLACK_IMAGES * span_x, (cols + SLACK_IMAGES) * span_x
    lo_y, hi_y = -SLACK_IMAGES * span_y, (rows + SLACK_IMAGES) * span_y
    for i, (_flag, x, y) in enumerate(struct.iter_unpack("<Bii", blob)):
        if not (lo_x <= x * concat <= hi_x and lo_y <= y * concat <= hi_y):
            raise CorruptInput(
                slide.mrxs,
                f"camera image position {i} lies far outside the slide's declared {images_x}x{images_y} grid (the tile-position record is damaged or holds other data): refused",
            )


# -- images OpenSlide places nowhere (positions not scanned) -------------------------------------


def _float(slide: Slide, section: str, key: str) -> float | None:
    """A finite number, or None (nothing is zeroed then; ``nan``/``inf`` would reach ``int()``)."""
    try:
        v = float((slide.ini.get(section, key) or "").strip())
    except ValueError:
        return None
    return v if math.isfinite(v) else None


Position = Callable[[int], tuple[int, int]]


def _camera_positions(slide: Slide, section: str, cols: int, npos: int) -> tuple[Position, bool] | None:
    """(camera position ``c`` -> where OpenSlide puts it, level-0 pixels; whether it splits images
    into one sub-tile a position); None where OpenSlide refuses the record (it then opens nothing).
    Computed per position asked for: a grid of 10^8 positions is never built as a list."""
    ovx, ovy = _float(slide, section, "OVERLAP_X"), _float(slide, section, "OVERLAP_Y")
    if ovx is None or ovy is None:
        return None
    rec, deflated = _record(slide)
    if rec is None:
        w, h, d = _int(slide, section, "DIGITIZER_WIDTH"), _int(slide, section, "DIGITIZER_HEIGHT"), _int(slide, "GENERAL", "CameraImageDivisionsPerSide", 1)
        if not w or not h or not d or not cols:
            return None
        step_x, step_y = w * d - ovx, h * d - ovy
        return (lambda c: (int((c % cols) * step_x), int((c // cols) * step_y))), bool(ovx or ovy)
    exponent = _int(slide, section, "IMAGE_CONCAT_FACTOR", 0)
    if not rec.present or exponent is None or not 0 <= exponent < 31:
        return None
    blob = slide.blob(rec)
    if deflated:
        inflater = zlib.decompressobj()
        try:
            blob = inflater.decompress(blob, ENTRY * npos + 1)
        except zlib.error:
            return None
        if not inflater.eof:
            return None
    if len(blob) != ENTRY * npos or max(blob[0::ENTRY], default=0) > 1:  # a flag other than 0/1
        return None

    def at(c: int) -> tuple[int, int]:
        _flag, x, y = struct.unpack_from("<Bii", blob, ENTRY * c)
        return _i32(x << exponent), _i32(y << exponent)

    return at, True


def _i32(v: int) -> int:
    """``v`` as OpenSlide's 32-bit arithmetic leaves it."""
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def undrawn_spans(slide: Slide) -> set[tuple[int, int, int]]:
    """(offset, length, file number) of the zoom-level images OpenSlide places no part of (and no
    placed image shares): at level 0 those at a camera position the record leaves at (0, 0) (not
    scanned; the first position excepted), on lower levels those none of whose positions holds a
    placed level-0 image (OpenSlide's mirax reader).  Their pixels are never shown, so they are
    zeroed; an image placed only partly is kept (it shares its JPEG with shown pixels)."""
    section = _zoom_section(slide)
    nx, ny = _int(slide, "GENERAL", "IMAGENUMBER_X"), _int(slide, "GENERAL", "IMAGENUMBER_Y")
    d = _int(slide, "GENERAL", "CameraImageDivisionsPerSide", 1)
    if section is None or not nx or not ny or not d or nx < 1 or ny < 1 or d < 1 or not slide.index.supported:
        return set()
    cols, npos = nx // d, (nx // d) * (ny // d)
    found = _camera_positions(slide, section, cols, npos)
    if found is None:
        return set()
    pos, split = found
    active: set[int] = set()
    gone: set[tuple[int, int, int]] = set()
    shown: set[tuple[int, int, int]] = set()
    total = 0
    for lvl, items in enumerate(slide.index.zoom_items):
        sect = slide.ini.get("HIERARCHICAL", f"HIER_0_VAL_{lvl}_SECTION") or ""
        exponent = _int(slide, sect, "IMAGE_CONCAT_FACTOR")
        if exponent is None or not 0 <= exponent <= 30 or total + exponent > 30:
            return set()  # past OpenSlide's 32-bit arithmetic: nothing zeroed (the verifier fails it)
        total += exponent
        per = max(1, (1 << total) // d)
        tiles, span = (per, 1) if split else (1, per)
        for image, off, ln, fno in items:
            x, y = image % nx, image // nx
            placed = False
            for yy in range(y, min(ny, y + tiles * d), d):
                for xx in range(x, min(nx, x + tiles * d), d):
                    placed |= _placed(lvl, xx // d, yy // d, cols, npos, pos, active, span)
            (shown if placed else gone).add((off, ln, fno))
    return gone - shown


def _placed(lvl: int, xp: int, yp: int, cols: int, npos: int, pos: Position, active: set[int], span: int) -> bool:
    """Whether OpenSlide places the sub-tile at camera position (xp, yp) (level 0: marks it active)."""
    c = yp * cols + xp
    if c >= npos:
        return True  # past the record: refused when the slide is loaded (check_grid); kept here
    if lvl == 0:
        if pos(c) == (0, 0) and (xp, yp) != (0, 0):
            return False
        active.add(c)
        return True
    return _block_active(active, cols, yp * cols + xp, span)


def _block_active(active: set[int], cols: int, base: int, span: int) -> bool:
    """Whether OpenSlide finds an active position in the ``span`` x ``span`` block at position
    ``base``: ``base + j * cols + i`` for 0 <= i, j < span (past a row's end it reads the next
    row).  Counted from the active positions when that is shorter than the block."""
    if span * span <= len(active):
        return any(base + j * cols + i in active for j in range(span) for i in range(span))
    for c in active:
        r = c - base
        if r >= 0 and any(0 <= r - j * cols < span for j in range(min(span, r // cols + 1) if cols else 1)):
            return True
    return False
