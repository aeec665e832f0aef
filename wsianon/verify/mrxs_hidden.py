"""MRXS pixels no viewer shows (red team 7): what OpenSlide never draws of a zoom-level image.

OpenSlide's mirax reader decodes every zoom-level image at the size its level's section declares
(DIGITIZER_WIDTH x DIGITIZER_HEIGHT) and places it by its index in the IMAGENUMBER grid:

* ``tiles-frame-size`` (as for TIFF and DICOM, "Verification" 9): every zoom-level image of the
  grid codes exactly the declared size — a JPEG's frame header, a PNG's IHDR, a BMP's header.
  OpenSlide refuses an image of another size ("dimensional mismatch") when it reaches it; the
  run's decode probe reads one region a level, so a tall image elsewhere (rows under the declared
  ones holding a name) passed every check before.
* ``mrxs-beyond-grid``: an image of a lower level covers 2^k camera images a side; where the grid
  ends inside it (IMAGENUMBER_X/Y not a multiple), OpenSlide skips its sub-tiles past the grid
  (and clips it to the level's size): those columns/rows are never shown.  They must be padding by
  the models of :mod:`wsianon.verify.padding` (uniform, or the last visible column/row repeated).
* ``mrxs-unscanned``: OpenSlide places a level-0 image by its camera position; a position the
  position record leaves at (0, 0) (other than the first) was not scanned, and OpenSlide skips the
  image there, and on lower levels every image none of whose positions holds a placed level-0
  image.  Such an image is never shown: it must be zero (the redactor zeroes it; a blob that is
  also a placed image's is that image).  The record is the output's own, parsed here (found by
  its layer's name, as OpenSlide finds it; positions computed when asked for, never listed).  An
  image at a camera position past the record (IMAGENUMBER_X/Y not a multiple of
  CameraImageDivisionsPerSide: OpenSlide reads past it) fails the check.  An image
  that covers both kinds of position (a lower level) shares its JPEG with shown pixels: not judged
  (README "Limitations").

All judge the output alone.  Overlapped strips of camera images (OVERLAP_X/Y, a position layer)
are tissue that a neighbour covers: not judged here (README "Limitations").
"""

from __future__ import annotations

import configparser
import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from wsianon.verify import sof
from wsianon.verify.padding import judge_tile

FRAME_CHECK = sof.CHECK
GRID_CHECK = "mrxs-beyond-grid"
UNSCANNED_CHECK = "mrxs-unscanned"


Item = tuple[int, int, int, int]  # (image index, offset, length, file number)


def zoom_items(idx: bytes, cp: configparser.RawConfigParser) -> list[list[Item]]:
    """Per zoom level, the Index.dat items inside the grid (IMAGENUMBER_X x IMAGENUMBER_Y), in page
    order: the one walk of the zoom-level pages, for these checks and ``mrxs-tiles-identical``.

    An item outside the grid is none OpenSlide draws (proven zero by mrxs-unread-records-zero).
    Fail closed (ValueError): a negative item count or item field, a page reaching past the end of
    Index.dat, a page chain that loops or a next-page pointer not where its page ends (OpenSlide reads
    the next page there, whatever the pointer says: other bytes would be drawn as items than the
    chain names); a grid not stated (OpenSlide refuses such a slide)."""
    sid = cp.get("GENERAL", "SLIDE_ID")
    (table,) = struct.unpack_from("<i", idx, 5 + len(sid))
    grid = cp.getint("GENERAL", "IMAGENUMBER_X") * cp.getint("GENERAL", "IMAGENUMBER_Y")
    out = []
    for lvl in range(cp.getint("HIERARCHICAL", "HIER_0_COUNT")):
        (rec,) = struct.unpack_from("<i", idx, table + 4 * lvl)
        (page,) = struct.unpack_from("<i", idx, rec + 4)
        items: list[Item] = []
        seen: set[int] = set()
        while page:
            if page in seen:
                raise ValueError("page chain loops")
            seen.add(page)
            count, nxt = struct.unpack_from("<ii", idx, page)
            if count < 0 or page + 8 + 16 * count > len(idx):
                raise ValueError("page")
            for k in range(count):
                item = struct.unpack_from("<iiii", idx, page + 8 + 16 * k)
                if min(item) < 0:
                    raise ValueError("negative item field")  # OpenSlide refuses the slide
                if item[0] < grid:
                    items.append(item)
            if nxt and nxt != page + 8 + 16 * count:
                raise ValueError("a next-page pointer not where its page ends")  # OpenSlide reads on in file order
            page = nxt
        out.append(items)
    return out


# -- where OpenSlide places the zoom-level images: the position record -----------------------------

POSITION_LAYERS = (("VIMSLIDE_POSITION_BUFFER", False), ("StitchingIntensityLayer", True))


def _position_slot(cp: configparser.RawConfigParser) -> tuple[int, bool] | None:
    """(nonhier table slot, deflated) of the record OpenSlide reads the camera positions from: the
    first value of the VIMSLIDE_POSITION_BUFFER layer, else of the StitchingIntensityLayer layer;
    None when Slidedat.ini names neither.  A layer before it without its name or values fails
    (OpenSlide refuses the slide)."""
    n = cp.getint("HIERARCHICAL", "NONHIER_COUNT")
    for target, deflated in POSITION_LAYERS:
        slot = 0
        for li in range(n):
            name = cp.get("HIERARCHICAL", f"NONHIER_{li}_NAME")
            count = cp.getint("HIERARCHICAL", f"NONHIER_{li}_COUNT")
            if count == 0:
                raise ValueError("a NONHIER layer without values")
            if name == target:
                return slot, deflated
            slot += count
    return None


def _i32(v: int) -> int:
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


class PastRecord(ValueError):
    """A zoom-level image at a camera position past the position record (OpenSlide reads past it)."""


Position = Callable[[int], tuple[int, int]]


def _positions(folder: Path, cp: configparser.RawConfigParser, idx: bytes) -> tuple[Position, bool]:
    """(camera position -> where OpenSlide puts it, level-0 pixels, computed when asked (a grid of
    10^8 positions is never listed); whether OpenSlide splits images into one sub-tile a position:
    a position record or a level-0 overlap).  Without a record OpenSlide spaces them by the level-0
    image size less the overlap.  A record OpenSlide refuses (wrong size, a flag other than 0/1, a
    stream that does not inflate to its size, its Index.dat entry damaged), or a grid past its
    32-bit arithmetic (9 bytes a position), raises ValueError."""
    nx, ny = cp.getint("GENERAL", "IMAGENUMBER_X"), cp.getint("GENERAL", "IMAGENUMBER_Y")
    div = cp.getint("GENERAL", "CameraImageDivisionsPerSide", fallback=1)
    if nx <= 0 or ny <= 0 or div <= 0:
        raise ValueError("grid")
    cols, npos = nx // div, (nx // div) * (ny // div)
    if 9 * npos >= 1 << 31:
        raise ValueError("a grid past OpenSlide's 32-bit arithmetic")
    sect0 = cp.get("HIERARCHICAL", "HIER_0_VAL_0_SECTION")
    ovx, ovy = cp.getfloat(sect0, "OVERLAP_X"), cp.getfloat(sect0, "OVERLAP_Y")
    found = _position_slot(cp)
    if found is None:
        w0, h0 = cp.getint(sect0, "DIGITIZER_WIDTH"), cp.getint(sect0, "DIGITIZER_HEIGHT")
        step_x, step_y = w0 * div - ovx, h0 * div - ovy
        return (lambda c: (_i32(int((c % cols) * step_x)), _i32(int((c // cols) * step_y)))), bool(ovx or ovy)
    slot, deflated = found
    sid = cp.get("GENERAL", "SLIDE_ID")
    (table,) = struct.unpack_from("<i", idx, 5 + len(sid) + 4)
    (ptr,) = struct.unpack_from("<i", idx, table + 4 * slot)
    zero, page = struct.unpack_from("<ii", idx, ptr)
    count, _skip, z1, z2, off, size, fno = struct.unpack_from("<7i", idx, page)
    if zero or count != 1 or z1 or z2 or off < 0 or size < 0 or not 0 <= fno < cp.getint("DATAFILE", "FILE_COUNT"):
        raise ValueError("position record entry")
    with open(folder / cp.get("DATAFILE", f"FILE_{fno}"), "rb") as fh:
        fh.seek(off)
        blob = fh.read(size)
    if len(blob) != size:
        raise ValueError("position record cut")
    want = 9 * npos
    if deflated:
        d = zlib.decompressobj()
        try:
            blob = d.decompress(blob, want + 1)
        except zlib.error:
            raise ValueError("position record does not inflate") from None
        if not d.eof:
            raise ValueError("position record does not inflate to its size")
    if len(blob) != want:
        raise ValueError("position record size")
    concat0 = 1 << _concat_exponent(cp.getint(sect0, "IMAGE_CONCAT_FACTOR"))
    if any(flag & 0xFE for flag in set(blob[0::9])):
        raise ValueError("position flag")

    def at(c: int) -> tuple[int, int]:
        _flag, x, y = struct.unpack_from("<Bii", blob, 9 * c)
        return _i32(x * concat0), _i32(y * concat0)

    return at, True


def _concat_exponent(n: int) -> int:
    """An IMAGE_CONCAT_FACTOR (level 0's, or the levels' running sum) as OpenSlide's 32-bit
    arithmetic takes it: 0 to 30, else ValueError (the placement is not modelled), before any
    ``1 << n`` (fuzz seed 124: 99,999,999,999 made that shift a 12.5 GB integer and the kernel
    killed the run)."""
    if not 0 <= n <= 30:
        raise ValueError("concat factor")
    return n


def placement(folder: Path, cp: configparser.RawConfigParser, idx: bytes, levels: list[list[Item]]) -> tuple[list[set[int]], int]:
    """(per level, the indices in ``levels[level]`` of the images OpenSlide places no part of;
    how many images it places only partly), by OpenSlide's mirax reader: an image is split into
    sub-tiles (one a camera position when it splits at all); at level 0 a sub-tile at a position
    the record leaves at (0, 0) (other than the first) is skipped, the others make their position
    active; on lower levels a sub-tile is placed when a position it covers is active, i.e. holds a
    placed level-0 image.  A position record OpenSlide refuses raises ValueError."""
    pos, split = _positions(folder, cp, idx)
    nx, ny = cp.getint("GENERAL", "IMAGENUMBER_X"), cp.getint("GENERAL", "IMAGENUMBER_Y")
    div = cp.getint("GENERAL", "CameraImageDivisionsPerSide", fallback=1)
    cols, npos = nx // div, (nx // div) * (ny // div)
    active: set[int] = set()
    undrawn: list[set[int]] = []
    mixed, total = 0, 0
    for lvl, items in enumerate(levels):
        total += cp.getint(cp.get("HIERARCHICAL", f"HIER_0_VAL_{lvl}_SECTION"), "IMAGE_CONCAT_FACTOR")
        per = max(1, (1 << _concat_exponent(total)) // div)  # positions an image covers a side
        tiles, span = (per, 1) if split else (1, per)  # sub-tiles an image a side, positions a sub-tile a side
        gone: set[int] = set()
        for k, (image, _off, _ln, _fno) in enumerate(items):
            placed = skipped = 0
            for yy in range(image // nx, min(ny, image // nx + tiles * div), div):
                for xx in range(image % nx, min(nx, image % nx + tiles * div), div):
                    xp, yp = xx // div, yy // div
                    c = yp * cols + xp
                    if c >= npos:  # OpenSlide looks the position up at every level
                        raise PastRecord(f"level {lvl}")
                    if lvl == 0:
                        ok = pos(c) != (0, 0) or (xp, yp) == (0, 0)
                        if ok:
                            active.add(c)
                    else:
                        ok = _block_active(active, cols, xp, yp, span)
                    placed += ok
                    skipped += not ok
            if not placed:
                gone.add(k)
            elif skipped:
                mixed += 1
        undrawn.append(gone)
    return undrawn, mixed


def _block_active(active: set[int], cols: int, xp: int, yp: int, span: int) -> bool:
    """Whether a position of the ``span`` x ``span`` block at (xp, yp) is active, by OpenSlide's
    own arithmetic (position ``(yp + j) * cols + xp + i``: a block past a row's end reads the next
    row); a large block is answered from the active positions instead of its own."""
    if span * span <= len(active):
        return any((yp + j) * cols + xp + i in active for j in range(span) for i in range(span))
    base = yp * cols + xp
    for c in active:
        r = c - base  # = j * cols + i for some 0 <= i, j < span?
        if r >= 0 and max(0, -(-(r - span + 1) // cols)) <= min(span - 1, r // cols):
            return True
    return False


def _coded_size(fmt: str, read, off: int, ln: int, sizes: sof._Sizes) -> tuple[int, int]:
    """(rows, columns) the image at ``off`` codes; raises sof._Unsized when it says none."""
    if fmt == "PNG":
        head = read(off, 24)
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise sof._Unsized("no IHDR")
        w, h = struct.unpack(">II", head[16:24])
        return h, w
    if fmt == "BMP24":
        head = read(off, 26)
        if len(head) < 26 or head[:2] != b"BM":
            raise sof._Unsized("no BMP header")
        w, h = struct.unpack("<ii", head[18:26])
        return abs(h), w
    return sizes.size(off, ln)


def _visible(images: int, x: int, concat: int, div: int, size: int) -> int:
    """Columns (rows) of a level image at camera index ``x`` that OpenSlide draws: its sub-tiles
    inside the grid, or (one tile an image) what the level's extent leaves; the larger of the two."""
    per = max(1, concat // div)  # sub-tiles an image a side, when OpenSlide splits it
    subs = min(per, max(0, -(-(images - x) // div)))
    split = subs * size // per
    clipped = max(0, (images - x) * size // concat)
    return min(size, max(split, clipped))


def check(folder: Path, cp: configparser.RawConfigParser, verdict) -> None:
    """``tiles-frame-size``, ``mrxs-beyond-grid`` and ``mrxs-unscanned`` on the output ``folder``."""
    try:
        idx = (folder / cp.get("HIERARCHICAL", "INDEXFILE")).read_bytes()
        levels = zoom_items(idx, cp)
        nx, ny = cp.getint("GENERAL", "IMAGENUMBER_X"), cp.getint("GENERAL", "IMAGENUMBER_Y")
        div = max(1, cp.getint("GENERAL", "CameraImageDivisionsPerSide", fallback=1))
        files = [folder / cp.get("DATAFILE", f"FILE_{i}") for i in range(cp.getint("DATAFILE", "FILE_COUNT"))]
    except (KeyError, ValueError, IndexError, OSError, struct.error, configparser.Error) as exc:
        _unwalkable(verdict, exc)
        return
    try:
        undrawn, mixed = placement(folder, cp, idx, levels)
        unplaced: str | None = None
    except (KeyError, ValueError, IndexError, OSError, struct.error, configparser.Error) as exc:
        undrawn, mixed, unplaced = [set() for _ in levels], 0, type(exc).__name__
    handles: dict[int, object] = {}

    def reader(fno: int):
        if fno not in handles:
            handles[fno] = open(files[fno], "rb")
        fh = handles[fno]

        def read(o: int, n: int) -> bytes:
            fh.seek(o)  # type: ignore[attr-defined]
            return fh.read(n)  # type: ignore[attr-defined]

        return read

    wrong, unsized, n = 0, 0, 0
    partial: list[tuple[int, int, int, int, int, int]] = []  # (level, index, off, len, file, vh*65536+vw)
    hidden_bad, judged = 0, 0
    try:
        concat_total = 0
        for lvl, items in enumerate(levels):
            sect = cp.get("HIERARCHICAL", f"HIER_0_VAL_{lvl}_SECTION")
            w, h = cp.getint(sect, "DIGITIZER_WIDTH"), cp.getint(sect, "DIGITIZER_HEIGHT")
            fmt = cp.get(sect, "IMAGE_FORMAT", fallback="JPEG").strip()
            concat_total += cp.getint(sect, "IMAGE_CONCAT_FACTOR")
            # past 62 the visible sizes are those of an image wider than any grid (0 columns
            # clipped, no sub-tile): the shift is capped there, never 1 << a header's number
            concat = 1 << min(concat_total, 62)
            sizes: dict[int, sof._Sizes] = {}
            for k, (image, off, ln, fno) in enumerate(items):
                if k in undrawn[lvl]:
                    continue  # placed nowhere: judged by mrxs-unscanned (zero)
                n += 1
                read = reader(fno)
                if fno not in sizes:
                    sizes[fno] = sof._Sizes(read)
                try:
                    got = _coded_size(fmt, read, off, ln, sizes[fno])
                except sof._Unsized:
                    unsized += 1
                    continue
                if got != (h, w):
                    wrong += 1
                    continue
                vw = _visible(nx, image % nx, concat, div, w)
                vh = _visible(ny, image // nx, concat, div, h)
                if vw < w or vh < h:
                    partial.append((lvl, image, off, ln, fno, vh * 65536 + vw))
        for _lvl, _image, off, ln, fno, v in partial:
            judged += 1
            try:
                a = np.asarray(Image.open(io.BytesIO(reader(fno)(off, ln))).convert("RGB"))
            except Exception:
                hidden_bad += 1
                continue
            why, _st = judge_tile(a, v >> 16, v & 0xFFFF)
            if why is not None:
                hidden_bad += 1
        unscanned = _unscanned(levels, undrawn, reader)
    except (KeyError, ValueError, IndexError, OSError, struct.error, configparser.Error) as exc:
        # a level's section or its keys missing or malformed (a damaged Slidedat.ini)
        _unwalkable(verdict, exc)
        return
    finally:
        for fh in handles.values():
            fh.close()  # type: ignore[attr-defined]
    ok = not wrong and not unsized
    verdict.add(
        FRAME_CHECK,
        ok,
        f"{n} zoom-level image(s) code exactly the size their level declares"
        if ok
        else f"{wrong} zoom-level image(s) code another size than their level declares, {unsized} give none",
    )
    verdict.add(
        GRID_CHECK,
        not hidden_bad,
        f"{judged} zoom-level image(s) reach past the grid: what OpenSlide does not draw is padding"
        if not hidden_bad
        else f"{hidden_bad} of {judged} zoom-level image(s) reaching past the grid hold more than padding there",
    )
    if unplaced == PastRecord.__name__:
        verdict.add(
            UNSCANNED_CHECK,
            False,
            f"a zoom-level image lies at a camera position past the position record (IMAGENUMBER_X/Y {nx}x{ny} not a multiple of CameraImageDivisionsPerSide {div}): OpenSlide reads past the record there",
        )
        return
    if unplaced is not None:
        verdict.add(UNSCANNED_CHECK, False, f"cannot follow where OpenSlide places the images (position record, grid, concat factors): {unplaced}")
        return
    count, dirty = unscanned
    verdict.add(
        UNSCANNED_CHECK,
        not dirty,
        f"{count} zoom-level image(s) OpenSlide places nowhere (positions not scanned): all zero; {mixed} image(s) partly at such positions not judged"
        if not dirty
        else f"{dirty} of {count} zoom-level image(s) OpenSlide places nowhere (positions not scanned) hold non-zero bytes",
    )


def _unwalkable(verdict, exc: Exception) -> None:
    verdict.add(FRAME_CHECK, False, f"cannot walk the zoom levels: {type(exc).__name__}")
    verdict.add(UNSCANNED_CHECK, False, f"cannot walk the zoom levels: {type(exc).__name__}")


def _unscanned(levels: list[list[Item]], undrawn: list[set[int]], reader) -> tuple[int, int]:
    """(images placed nowhere, those of them holding a non-zero byte); an image whose bytes are
    exactly a placed image's (the same blob) is that image, shown."""
    shown = {it[1:] for lvl, items in enumerate(levels) for k, it in enumerate(items) if k not in undrawn[lvl]}
    count = dirty = 0
    for lvl, items in enumerate(levels):
        for k in sorted(undrawn[lvl]):
            count += 1
            _image, off, ln, fno = items[k]
            if (off, ln, fno) in shown:
                continue
            data = reader(fno)(off, ln)
            if len(data) != ln or any(data):
                dirty += 1
    return count, dirty
