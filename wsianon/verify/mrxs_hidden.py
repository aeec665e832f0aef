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

Both judge the output alone.  Overlapped strips of camera images (OVERLAP_X/Y, a position layer)
are tissue that a neighbour covers: not judged here (README "Limitations").
"""

from __future__ import annotations

import configparser
import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from wsianon.verify import sof
from wsianon.verify.padding import judge_tile

FRAME_CHECK = sof.CHECK
GRID_CHECK = "mrxs-beyond-grid"


Item = tuple[int, int, int, int]  # (image index, offset, length, file number)


def zoom_items(idx: bytes, cp: configparser.RawConfigParser) -> list[list[Item]]:
    """Per zoom level, the Index.dat items inside the grid (IMAGENUMBER_X x IMAGENUMBER_Y), in page
    order: the one walk of the zoom-level pages, for these checks and ``mrxs-tiles-identical``.

    An item outside the grid is none OpenSlide draws (proven zero by mrxs-unread-records-zero).
    Fail closed (ValueError): a negative item count or item field, a page reaching past the end of
    Index.dat, a page chain that loops; a grid not stated (OpenSlide refuses such a slide)."""
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
            page = nxt
        out.append(items)
    return out


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
    """``tiles-frame-size`` and ``mrxs-beyond-grid`` on the output ``folder``."""
    try:
        idx = (folder / cp.get("HIERARCHICAL", "INDEXFILE")).read_bytes()
        levels = zoom_items(idx, cp)
        nx, ny = cp.getint("GENERAL", "IMAGENUMBER_X"), cp.getint("GENERAL", "IMAGENUMBER_Y")
        div = max(1, cp.getint("GENERAL", "CameraImageDivisionsPerSide", fallback=1))
        files = [folder / cp.get("DATAFILE", f"FILE_{i}") for i in range(cp.getint("DATAFILE", "FILE_COUNT"))]
    except (KeyError, ValueError, IndexError, OSError, struct.error, configparser.Error) as exc:
        _unwalkable(verdict, exc)
        return
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
            concat = 1 << concat_total
            sizes: dict[int, sof._Sizes] = {}
            for image, off, ln, fno in items:
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


def _unwalkable(verdict, exc: Exception) -> None:
    verdict.add(FRAME_CHECK, False, f"cannot walk the zoom levels: {type(exc).__name__}")
