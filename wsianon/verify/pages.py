"""``image-pages``: every picture a TIFF-family output holds is one a reader shows.

The checks that judge pictures (associated images and their barcodes, thumbnail provenance,
pyramid consistency, the barcode pyramid, focal planes) look at what OpenSlide shows: a level, an
associated image.  A page OpenSlide does not show was judged by nothing (red team stop 37: a
label photo with the MRN's barcode stored as one more stripped page of a BIF, a Philips TIFF, a
Leica SCN, a generic TIFF was shared as verified).  Here every directory in the output's chain
that holds pixel data must have the size of a level or of an associated image OpenSlide shows
(an NDPI's or SCN's other focal planes have their level's size and are judged by
``focal-planes``; a Leica SCN's images are placed in its collection, see :func:`shown_sizes`,
and its pages are the ones its XML's ``<dimension>`` entries name: any other is judged);
any other picture must be the slide downsampled by the thumbnail rule (a reduced-resolution page
OpenSlide's generic reader leaves out), else it fails the slide; so must every page of a size more
pages have than OpenSlide shows (a label photo scaled to a level's size beside that level).  A 1 x 1 page whose one data byte is 0xFF
(the directory the BIF redactor writes to carry the iScan XMP in front of the pyramid) holds no
picture; a page of width or height 0 with data is judged like any other.  A page judged passes
when it is blank (8-bit, uncompressed, all white or all black, each strip exactly its rows: a
coded page's coding choices are free bytes) or the slide in a compression whose coded data
``tiles-coded-tight`` judges.
"""

from __future__ import annotations

from pathlib import Path

from wsianon.io.tiff import IMAGE_DESCRIPTION, TiffStructure

CHECK = "image-pages"


NDPI_SOURCE_LENS = 65421


def unshown(
    path: Path,
    shown: set[tuple[int, int]],
    counts: dict[tuple[int, int], int] | None = None,
    ndpi_levels: set[tuple[int, int]] | None = None,
    leica: bool = False,
) -> list[tuple[int, int, int]]:
    """(IFD index, width, height) of every page of ``path`` that holds pixel data and whose size
    is none of ``shown``; with ``counts`` (how many pictures of each size OpenSlide shows), also
    every page of a size that more pages have than that (which of them is the level is not
    known: all are judged); with ``leica``, also every page no ``<dimension>`` of the SCN XML
    names.  Raises what the TIFF walk raises for a file it cannot follow."""
    out = []
    by_size: dict[tuple[int, int], list[int]] = {}
    with TiffStructure(path) as ts:
        named = leica_named(ts) if leica else None
        for ifd in ts.ifds:
            if not ts.holds_picture(ifd):
                continue
            if named is not None and ifd.index not in named:
                # a Leica SCN's pages are its XML's: OpenSlide, focal-planes and the tile identity
                # read the pages a <dimension> names; a page of a level's size that none names
                # was judged by nothing (red team stop 37, round 3)
                out.append((ifd.index, *ts.dimensions(ifd)))
                continue
            w, h = ts.dimensions(ifd)
            lens = ts.value(ifd, NDPI_SOURCE_LENS, 1) if ndpi_levels and (w, h) in ndpi_levels else 1
            lens = float(lens[0] if isinstance(lens, (tuple, list)) else lens)
            if (w, h) not in shown or lens <= 0:
                # an NDPI's page at a level's size must be a level (a positive lens): a macro
                # (-1) or map (-2) lens there is judged (red team stop 37, round 3: a label photo
                # at level 0's size with lens -1 passed, focal-planes judging lenses above 0 only)
                out.append((ifd.index, w, h))
            else:
                by_size.setdefault((w, h), []).append(ifd.index)
    if counts is not None:
        for size, pages in by_size.items():
            if len(pages) > counts.get(size, 1):
                out.extend((i, *size) for i in pages)
    return sorted(out)


def leica_named(ts: TiffStructure) -> set[int]:
    """The IFD indices the ``<dimension ifd="…">`` entries of a Leica SCN's XML (the first
    page's ImageDescription) name; an entry whose ifd is no number names none."""
    from wsianon.verify.formats.leica import _ATTR, _DIM

    xml = (ts.text(ts.ifds[0], IMAGE_DESCRIPTION) or "") if ts.ifds else ""
    out = set()
    for m in _DIM.finditer(xml):
        value = dict(_ATTR.findall(m.group(0))).get("ifd", "")
        if value.isdigit():
            out.add(int(value))
    return out


def shown_counts(level_dims, associated_dims, vendor: str | None) -> dict[tuple[int, int], int] | None:
    """How many pictures of each size OpenSlide shows (levels and associated images); None for an
    NDPI or a Leica SCN, whose other focal planes are pages of a level's size (``focal-planes``)."""
    if vendor in ("hamamatsu", "leica"):
        return None
    out: dict[tuple[int, int], int] = {}
    for w, h in [*level_dims, *associated_dims]:
        out[(int(w), int(h))] = out.get((int(w), int(h)), 0) + 1
    return out


def shown_sizes(level_dims, downsamples, associated_dims, props: dict, vendor: str | None) -> set[tuple[int, int]]:
    """The picture sizes OpenSlide shows: its levels and associated images; a Leica SCN's levels
    are its collection's, whose images (``openslide.region[k]``) are stored at each level's
    downsample, and its associated images as pyramids of their own (a kept macro's smaller pages)."""
    shown = {(int(w), int(h)) for w, h in level_dims} | {(int(w), int(h)) for w, h in associated_dims}
    if vendor == "leica":
        k = 0
        while f"openslide.region[{k}].width" in props:
            rw, rh = int(props[f"openslide.region[{k}].width"]), int(props[f"openslide.region[{k}].height"])
            for d in downsamples:
                d = int(round(float(d)))
                shown |= {(rw // d, rh // d), (-(-rw // d), -(-rh // d))}
            k += 1
        for w, h in list(associated_dims):
            d = 2
            while w // d or h // d:
                shown |= {(w // d, h // d), (-(-w // d), -(-h // d))}
                d *= 2
    return shown


# a page no reader shows is decoded whole to be judged up to this many pixels (larger: fails)
MAX_JUDGED_PIXELS = 16 << 20


def check(
    path: Path,
    shown: set[tuple[int, int]],
    verdict,
    slide=None,
    counts: dict[tuple[int, int], int] | None = None,
    kept_on_request: bool = False,
    ndpi_levels: set[tuple[int, int]] | None = None,
    leica: bool = False,
) -> None:
    """Add ``image-pages`` for the output ``path`` (``shown``: :func:`shown_sizes`).  A page of
    another size passes only when ``slide`` (the open OpenSlide handle) is given and the page
    *is the slide* by the thumbnail rule (``verify.thumbnail.judge``: a reduced-resolution page
    OpenSlide's generic TIFF reader leaves out, as a QPTIFF's second page); a label photo is not."""
    from wsianon.errors import WsianonError

    try:
        extra = unshown(path, shown, counts, ndpi_levels=ndpi_levels, leica=leica)
    except (WsianonError, OSError, ValueError) as exc:
        verdict.add(CHECK, False, f"the output's directories cannot be walked ({type(exc).__name__})")
        return
    if extra and kept_on_request:
        # a generic TIFF's macro kept with --macro keep: OpenSlide's generic reader shows no
        # associated image, so the picture the user asked to keep is one no reader shows
        verdict.add(CHECK, True, f"{len(extra)} picture(s) no reader shows, kept on request (--macro keep): not judged")
        return
    bad = [(i, w, h) for i, w, h in extra if not _blank_or_the_slide(path, i, (w, h), slide)]
    if bad:
        first = ", ".join(f"IFD {i}" for i, _w, _h in bad[:3])  # no sizes: the source chose them (red team stop 39)
        verdict.add(CHECK, False, f"{len(bad)} picture(s) no reader shows that are not the slide (no level, no associated image): {first}")
    else:
        alike = f"; {len(extra)} other page(s) shown to be the slide downsampled" if extra else ""
        verdict.add(CHECK, True, f"every page with pixel data is a level or an associated image OpenSlide shows{alike}")


def _blank_or_the_slide(path: Path, index: int, size: tuple[int, int], slide) -> bool:
    """Whether page ``index`` of ``path`` (decoded once) is blank (8-bit, uncompressed, every
    sample 255 or every sample 0, each strip exactly its rows) or, with ``slide`` (the open
    OpenSlide handle), the slide downsampled by the thumbnail rule.  A page too large, unreadable,
    not 8-bit, or of a compression whose coded data ``tiles-coded-tight`` does not judge is
    neither (red team stop 38: a white WebP page with a patient record after its stream passed as
    blank; 1 x 1 pages of 64-bit samples, one colour by definition, carried 8 bytes each; a grey
    page 3 bytes; coded white pages their coding choices)."""
    import numpy as np
    import tifffile

    from wsianon.verify import thumbnail
    from wsianon.verify.decoded import page_fits
    from wsianon.verify.ecs import JUDGED_COMPRESSIONS

    if size[0] * size[1] > MAX_JUDGED_PIXELS:
        return False
    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[index]
            if int(page.compression) not in JUDGED_COMPRESSIONS or not page_fits(page):
                return False
            pixels = np.asarray(page.asarray())
            raw = int(page.compression) == 1 and _strips_exact(page)
        if pixels.dtype != np.uint8:
            return False
        if pixels.size and (pixels == pixels.reshape(-1, *pixels.shape[2:])[0]).all():
            colour = pixels.reshape(-1, *pixels.shape[2:])[0]
            if not ((colour == 255).all() or (colour == 0).all()):
                return False
            # uncompressed, every strip exactly its rows: a coded blank page's coding choices are
            # free bytes a uniform picture does not show (rounds 2 and 3: a record in a white
            # JPEG page's quantization tables, its strips' qualities, restart interval and
            # component ids; a Deflate page's stored-block padding, a PackBits page's run lengths)
            return raw
        if slide is None:
            return False
        base = tuple(slide.level_dimensions[0])
        if not thumbnail.aspect_ok(size, base):
            return False
        if pixels.ndim == 3 and pixels.shape[2] > 3:
            pixels = pixels[..., :3]
        if pixels.ndim not in (2, 3):
            return False
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        ref = thumbnail.openslide_reference(slide, thumbnail.grid_shape(size))
        ok, _detail, _m = thumbnail.judge(pixels, size, base, ref)
        return bool(ok)
    except Exception:  # noqa: BLE001 - a page that cannot be read or judged is neither
        return False


def _strips_exact(page) -> bool:
    """Whether every strip of an uncompressed tifffile page holds exactly its rows' bytes (its
    tags only: read while the page's file is open)."""
    import tifffile

    if not isinstance(page, tifffile.TiffPage) or page.is_tiled or page.planarconfig != 1:
        return False
    row = page.imagewidth * page.samplesperpixel * page.bitspersample // 8
    rps = min(page.rowsperstrip or page.imagelength, page.imagelength)
    counts = [int(c) for c in page.databytecounts]
    rows = [min(rps, page.imagelength - k * rps) for k in range(len(counts))]
    return len(counts) * rps >= page.imagelength and all(c == r * row for c, r in zip(counts, rows))
