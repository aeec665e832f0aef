"""The banner of an Aperio ImageDescription (its text before the first ``|``), in the one form the
redactor writes and the verifier accepts.

A banner is lines (``\\r\\n``, ``\\n`` or ``;`` apart) of three kinds:

* the product and its version: ``Aperio Image Library v12.0.15``, ``Aperio Leica Biosystems GT450
  v1.0.1`` (OpenSlide knows an Aperio slide by "Aperio" in front), kept as ``Aperio Image
  Library v12.0``: model words and the version's major and minor number;
* the page's geometry: ``46000x32914 [42673,5576 2220x2967] (240x240) -> 574x768 - JPEG/RGB Q=30``
  (the scan's size, the region cut from it, the tile size, the page's own size, the codec; a GT450
  writes the region ``[0,0,92908x44891]``);
* an associated image's name and size: ``label 387x463`` (OpenSlide names the image by its first
  word).

Every number a line holds is free text to the vocabulary check, so a line is kept only as the
page's own geometry writes it (red team stop 38: digits and a case number after the product, an
MRN and a birth date as the scan's size and region, whitespace and empty lines as bits, passed):
the first size is the slide's (its first page's), the tile size the page's tiles, the size after
``->`` and an associated image's size the page's own; the region is dropped; the product keeps its
model words and its version's major and minor number; the codec is a known one, its quality at
most 100. One line of each kind is kept (the first), stripped, empty ones dropped; the separators
between them stay as written (3 choices at most two junctions a page: documented)."""

from __future__ import annotations

import re

SPLIT = re.compile(r"(\r\n|\n|;)")
_PRODUCT = re.compile(r"Aperio (?:Image Library|Leica Biosystems)(?: (?:GT450|DX|AT2|CS2|AT|CS|GT)){0,2}")
# a version: its major and minor number only (round 3 of stop 38 wrote an MRN and a birth date as
# the versions of several product lines), "vFS90" as the old ScanScope writers spell theirs
_VERSION = re.compile(r"v(?P<major>[0-9]{1,2})(?![0-9])(?:\.(?P<minor>[0-9]{1,2})(?![0-9]))?|vFS(?P<fs>[0-9]{1,2})(?![0-9])")
_CODEC = r"(?:JPEG|J2K|JP2K|LZW|NONE|RAW)/(?:RGB|YCC|YCbCr|KDU|YUV16|YUV|NONE)"
_DIMS = re.compile(
    r"(?P<w>[0-9]{1,9})x(?P<h>[0-9]{1,9})(?P<region> \[[0-9]{1,9},[0-9]{1,9}[ ,][0-9]{1,9}x[0-9]{1,9}\])?"
    r"(?P<tile> \([0-9]{1,9}x[0-9]{1,9}\))?(?P<arrow> -> [0-9]{1,9}x[0-9]{1,9})?(?P<dash> -)?"
    rf"(?: (?P<codec>{_CODEC})(?: Q=(?P<q>[0-9]{{1,3}}))?)?"
)
_ASSOCIATED = re.compile(r"(?P<name>label|macro|thumbnail) [0-9]{1,9}x[0-9]{1,9}")

Size = tuple[int, int]


def canonical_line(line: str, base: Size, size: Size, tile: Size | None) -> str:
    """``line`` (one banner line) as the redactor writes it for a page of ``size`` (tiles of
    ``tile``, None when stripped) of a slide whose first page is ``base``; "" when nothing of it
    has a safe form."""
    text = line.strip()
    if not text:
        return ""
    if m := _ASSOCIATED.fullmatch(text):
        return f"{m['name']} {size[0]}x{size[1]}"
    if m := _DIMS.fullmatch(text):
        out = f"{base[0]}x{base[1]}"
        if m["tile"] and tile is not None:
            out += f" ({tile[0]}x{tile[1]})"
        if m["arrow"]:
            out += f" -> {size[0]}x{size[1]}"
        if m["dash"]:
            out += " -"
        if m["codec"]:
            out += " " + m["codec"]
            if m["q"] is not None and int(m["q"]) <= 100:
                out += f" Q={int(m['q'])}"
        return out
    words = text.split()
    for n in range(len(words), 1, -1):  # the product: its longest prefix of the form
        if _PRODUCT.fullmatch(" ".join(words[:n])):
            out = " ".join(words[:n])
            v = _VERSION.match(words[n]) if n < len(words) else None
            if v and v["fs"]:
                return f"{out} vFS{int(v['fs'])}"
            if v:
                return f"{out} v{int(v['major'])}" + (f".{int(v['minor'])}" if v["minor"] else "")
            return out
    return ""


def _kind(line: str) -> str:
    """Which of the three kinds a canonical line is (one of each a banner keeps)."""
    return "product" if line.startswith("Aperio") else "associated" if _ASSOCIATED.fullmatch(line) else "geometry"


_Q = re.compile(r" Q=[0-9]{1,3}$")


def _as_first(line: str, first: str) -> str:
    """``line`` (canonical) with the product line and the JPEG quality of ``first`` (the first
    page's canonical banner): one version and one quality a file, not one a page (red team stop
    39: four pages' versions and qualities spelled an MRN and a birth date)."""
    lines = [x for x in SPLIT.split(first)[0::2] if x]
    if _kind(line) == "product":
        return next((x for x in lines if _kind(x) == "product"), "")
    if _kind(line) == "geometry" and _Q.search(line):
        q = next((m.group(0) for x in lines if _kind(x) == "geometry" and (m := _Q.search(x))), "")
        return _Q.sub("", line) + q
    return line


def canonical(banner: str, base: Size, size: Size, tile: Size | None, first: str | None = None) -> str:
    """The banner as the redactor writes it: every line :func:`canonical_line`, empty lines (and
    the separator after them) dropped, and of each kind (product, geometry, associated image) the
    first only (a real slide's thumbnail carries its writer's and an earlier writer's, which is
    history, not the page: round 3 of stop 38 wrote an MRN as several lines' versions and
    qualities); the other separators as written. ``first``: the first page's banner as this
    writes it, whose product line and quality every other page repeats (:func:`_as_first`)."""
    parts = SPLIT.split(banner)
    lines = [canonical_line(p, base, size, tile) for p in parts[0::2]]
    if first is not None:
        lines = [_as_first(line, first) if line else line for line in lines]
    seps = parts[1::2]
    out: list[str] = []
    kinds: set[str] = set()
    for i, line in enumerate(lines):
        if not line or _kind(line) in kinds:
            continue
        kinds.add(_kind(line))
        if out:
            out.append(seps[i - 1] if i - 1 < len(seps) else "\n")
        out.append(line)
    return "".join(out)


def is_canonical(banner: str, base: Size, size: Size, tile: Size | None, first: str | None = None) -> bool:
    """Whether ``banner`` is written as :func:`canonical` writes it (the verifier's test)."""
    return canonical(banner, base, size, tile, first) == banner


def geometry(ts, ifd) -> tuple[Size, Size, Size | None]:
    """(the first page's size, ``ifd``'s size, its tile size or None) of a ``TiffStructure``."""

    def one(d, tag: int) -> int:
        v = ts.value(d, tag, 0)
        v = v[0] if isinstance(v, (tuple, list)) and v else v  # a damaged entry of several values
        try:
            return max(0, int(v or 0))
        except (TypeError, ValueError):
            return 0

    def size(d, w: int, h: int) -> Size:
        return one(d, w), one(d, h)

    tiled = ifd.get(322) is not None
    return size(ts.ifds[0], 256, 257), size(ifd, 256, 257), size(ifd, 322, 323) if tiled else None
