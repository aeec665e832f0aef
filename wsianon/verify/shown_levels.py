"""Which page of a TIFF-family source OpenSlide reads for each of its pyramid levels.

A converter's reader picks its own pyramid: opentile takes tifffile's first series of an NDPI
(whatever its source lens: a macro page first in the IFD chain became the DICOM pyramid, red team
stop 40) and the widest non-macro ``<image>`` of a Leica SCN (whatever its illumination: a
fluorescence image OpenSlide does not show, holding a patient record, became the pyramid). A
written level proven against "a source page of the same size" was then proven against the very
page it should never have been: here each level OpenSlide shows is tied to the one page it reads,
derived the way OpenSlide does for the vendor, from the source alone:

- ``hamamatsu`` (NDPI): the page of the level's size whose source lens (tag 65421) is above 0 and
  whose Z offset (tag 65424) is 0 (OpenSlide shows focal plane 0 only; lens -1 is the macro, -2
  the map);
- ``leica`` (SCN): each region OpenSlide shows (``openslide.region[k]``) is the XML ``<image>``
  whose base ``<dimension>`` (z 0, channel 0) has the region's size at the region's place; its
  pages are the image's z-0 dimensions at OpenSlide's level downsamples;
- any other vendor (Aperio, Philips, Ventana, generic TIFF): the tiled page of the level's size.

A level whose page is not exactly one page is ``None`` (not provable by page: fail closed where a
page is needed). ``chains``: one list a region (a Leica SCN can show several; every other vendor
one), each its pages in OpenSlide's level order, the first the region's level 0. Reasons name no
value or number from the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from wsianon.verify.formats.leica import _ATTR, _DIM, _IMAGE
from wsianon.verify.planes import LENS, Z_OFFSET, number

_COLLECTION = re.compile(r"<collection\b[^>]*>")
_VIEW = re.compile(r"<view\b[^>]*>")


@dataclass
class ShownLevels:
    """OpenSlide's reading of the source: its vendor, level sizes and, per region, the page index
    (in the TIFF chain) it reads for each level (None: not exactly one page)."""

    vendor: str
    dims: list[tuple[int, int]]
    chains: list[list[int | None]] = field(default_factory=list)
    page_sizes: dict[int, tuple[int, int]] = field(default_factory=dict)  # (width, height) of every page

    def pages(self) -> dict[int, int]:
        """{page index: region} of every page OpenSlide reads for a level."""
        return {i: r for r, chain in enumerate(self.chains) for i in chain if i is not None}

    def bases(self) -> dict[int, int]:
        """{region: the page OpenSlide reads for the region's level 0}."""
        return {r: chain[0] for r, chain in enumerate(self.chains) if chain and chain[0] is not None}


def _size(page) -> tuple[int, int]:
    return int(page.imagewidth), int(page.imagelength)


def _one(found: list[int]) -> int | None:
    return found[0] if len(found) == 1 else None


def _ndpi(pages: list, dims: list[tuple[int, int]]) -> list[list[int | None]]:
    chain: list[int | None] = []
    for size in dims:
        found = []
        for k, pg in enumerate(pages):
            if _size(pg) != size:
                continue
            lens = number(pg.tags.valueof(LENS))
            z = number(pg.tags.valueof(Z_OFFSET) or 0)
            if lens is not None and lens > 0 and z == 0:
                found.append(k)
        chain.append(_one(found))
    return [chain]


def _tiled(pages: list, dims: list[tuple[int, int]]) -> list[list[int | None]]:
    return [[_one([k for k, pg in enumerate(pages) if pg.is_tiled and _size(pg) == size]) for size in dims]]


def _leica(pages: list, props, downsamples: list[float]) -> list[list[int | None]] | str:
    xml = pages[0].description or "" if pages else ""
    coll = _COLLECTION.search(xml)
    if coll is None:
        return "the SCN XML has no collection"
    c = dict(_ATTR.findall(coll.group(0)))
    images = []  # (base size, place in level-0 pixels, [(size, page) of z 0])
    for image in _IMAGE.findall(xml):
        view = _VIEW.search(image)
        if view is None:
            continue
        v = dict(_ATTR.findall(view.group(0)))
        if v.get("offsetX", "0") == "0" and v.get("offsetY", "0") == "0" and (v.get("sizeX"), v.get("sizeY")) == (c.get("sizeX"), c.get("sizeY")):
            continue  # the macro (OpenSlide's test: the whole collection at offset 0)
        dims = []
        for m in _DIM.finditer(image):
            a = dict(_ATTR.findall(m.group(0)))
            if number(a.get("z", "0")) != 0 or number(a.get("c", "0")) != 0:
                continue
            try:
                k = int(a["ifd"])
                dims.append((_size(pages[k]), k))
            except (KeyError, ValueError, IndexError):
                return "an SCN dimension names no page"
        if not dims:
            continue
        dims.sort(key=lambda t: -t[0][0])
        (bw, bh), _base = dims[0]
        try:
            x = float(v["offsetX"]) * bw / float(v["sizeX"])
            y = float(v["offsetY"]) * bh / float(v["sizeY"])
        except (KeyError, ValueError, ZeroDivisionError):
            continue
        images.append(((bw, bh), (x, y), dims))
    chains: list[list[int | None]] = []
    k = 0
    while f"openslide.region[{k}].width" in props:
        try:
            rx, ry, rw, rh = (int(props[f"openslide.region[{k}].{n}"]) for n in ("x", "y", "width", "height"))
        except (KeyError, ValueError):
            return "OpenSlide's regions cannot be read"
        match = [dims for size, (x, y), dims in images if size == (rw, rh) and abs(x - rx) <= 1 and abs(y - ry) <= 1]
        if len(match) != 1:
            return "an SCN region OpenSlide shows is not exactly one image of the XML"
        chain: list[int | None] = []
        for d in downsamples:
            d = round(float(d))
            want = {(rw // d, rh // d), (-(-rw // d), -(-rh // d))}
            chain.append(_one([i for size, i in match[0] if size in want]))
        chains.append(chain)
        k += 1
    return chains


def shown_levels(source: Path, pages: list | None = None) -> ShownLevels | str:
    """OpenSlide's levels of ``source`` and the page it reads for each (``pages``: the source's
    tifffile pages in chain order, read here when not given); a reason (no numbers) when
    OpenSlide cannot read the source."""
    import openslide

    try:
        with openslide.OpenSlide(str(source)) as s:
            vendor = str(s.properties.get("openslide.vendor", "") or "")
            dims = [(int(w), int(h)) for w, h in s.level_dimensions]
            downsamples = [float(d) for d in s.level_downsamples]
            props = dict(s.properties)
    except Exception as exc:
        return f"OpenSlide cannot read the source ({type(exc).__name__})"
    if pages is None:
        import tifffile

        try:
            with tifffile.TiffFile(source) as tf:
                return _derive(vendor, dims, downsamples, props, list(tf.pages))
        except Exception:
            return ShownLevels(vendor, dims, [])  # not a TIFF: OpenSlide reads it itself
    return _derive(vendor, dims, downsamples, props, pages)


def _derive(vendor: str, dims, downsamples, props, pages: list) -> ShownLevels | str:
    if not pages:
        return ShownLevels(vendor, dims, [])
    sizes = {k: _size(pg) for k, pg in enumerate(pages)}
    if vendor == "hamamatsu":
        return ShownLevels(vendor, dims, _ndpi(pages, dims), sizes)
    if vendor == "leica":
        chains = _leica(pages, props, downsamples)
        return chains if isinstance(chains, str) else ShownLevels(vendor, dims, chains, sizes)
    return ShownLevels(vendor, dims, _tiled(pages, dims), sizes)
