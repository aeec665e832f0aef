"""Palette colour lookup tables as few straight segments (the DICOM route and its verifier).

A palette channel is a table of free 16-bit numbers: any monotone run of them can carry bytes in
its increments (``D``, ``o``, ``e`` as steps of 68, 111, 101). The colour maps a slide uses are
ramps: a channel rising to its colour (fluorescence), or the few straight pieces of a jet or
rainbow map. A channel is accepted only as at most ``MAX_SEGMENTS`` straight segments, every entry
the segment's line rounded half up between its end points: what is left free is the end points, a
handful of numbers. The route makes a palette within one of such a form exactly that form (the
colours change by at most 1/65535). The closed world then keeps only a clipped ramp a channel
(``is_ramp``: one line, flat at 0 or full scale before and after it), as fluorescence palettes
are: the end points of several segments are free numbers (11 a channel for 10 segments). The
route removes any other palette from an optical path; the verifier refuses it.
"""

from __future__ import annotations

import numpy as np

MAX_SEGMENTS = 10  # jet: 5 pieces a channel, and a corner between entries makes one more each
CORNER = 2  # a second difference rounding alone never makes (a rounded line's is -1, 0 or 1)
MAX_CANDIDATES = 128  # rounding noise in a float-made map adds some beside its corners


def _line(v0: int, v1: int, n: int) -> np.ndarray:
    """``n + 1`` entries from ``v0`` to ``v1``: the line rounded half up."""
    i = np.arange(n + 1, dtype=np.int64)
    return v0 + (2 * (v1 - v0) * i + n) // (2 * n)


def segments(vals: np.ndarray, tolerance: int) -> list[tuple[int, int]] | None:
    """End points (start, end) of straight segments covering ``vals``, each the farthest
    candidate end from its start whose line is within ``tolerance`` of every entry, or None when
    more than ``MAX_SEGMENTS`` are needed. Candidate ends are where the slope changes by more than
    rounding does (a second difference of ``CORNER`` or more, and the entries beside it): a
    table with more than ``MAX_CANDIDATES`` of them is no colour map (refused without a search)."""
    v = np.asarray(vals).astype(np.int64)
    n = len(v)
    if n < 3:
        return [(0, n - 1)] if n else []
    corners = np.nonzero(np.abs(np.diff(v, 2)) >= CORNER)[0] + 1
    cand = sorted({0, n - 1} | {int(c) + d for c in corners for d in (-1, 0, 1) if 0 <= int(c) + d < n})
    if len(cand) > MAX_CANDIDATES:
        return None
    out: list[tuple[int, int]] = []
    s = 0
    while s < n - 1:
        for e in [c for c in reversed(cand) if c > s + 1] + [s + 1]:  # the next entry always fits
            if e == s + 1 or int(np.abs(v[s : e + 1] - _line(int(v[s]), int(v[e]), e - s)).max()) <= tolerance:
                break
        out.append((s, e))
        if len(out) > MAX_SEGMENTS:
            return None
        s = e
    return out


def canonical(vals: np.ndarray) -> np.ndarray | None:
    """``vals`` made exactly piecewise straight (within 1 of each entry), or None when it is not
    a colour map of at most ``MAX_SEGMENTS`` pieces."""
    segs = segments(vals, 1)
    if segs is None:
        return None
    out = np.asarray(vals, dtype=np.int64).copy()
    for s, e in segs:
        out[s : e + 1] = _line(int(out[s]), int(out[e]), e - s)
    return out


def is_canonical(vals: np.ndarray) -> bool:
    """``vals`` is exactly at most ``MAX_SEGMENTS`` straight segments rounded half up."""
    return segments(vals, 0) is not None


def is_ramp(vals: np.ndarray, full: int = 0xFFFF) -> bool:
    """``vals`` is a clipped ramp: one straight line rounded half up (``_line``) between its end
    points, optionally after a flat run at 0 or ``full`` at its start and before one at its end
    (the clipping of a ramp that reaches its bound early).  A fluorescence palette is such a ramp
    in each channel (black to the colour's component); what is free is the line's two end points
    (its colour) or where it is clipped.  A channel of several segments is no such ramp: the end
    points of 10 segments were 11 free 16-bit numbers a channel (a name, an MRN, a birth date in
    66 bytes), and a map of several pieces (jet) is refused too: the route removes such a palette
    from an optical path (Type 3, the image stays monochrome)."""
    v = np.asarray(vals).astype(np.int64)
    n = len(v)
    if n < 3:
        return True
    start, end = 0, n - 1
    if int(v[0]) in (0, full):
        run = np.flatnonzero(v != v[0])
        start = int(run[0]) - 1 if len(run) else n - 1
    if int(v[-1]) in (0, full) and start < n - 1:
        run = np.flatnonzero(v != v[-1])
        end = int(run[-1]) + 1
    if end <= start:
        return True  # one flat run at a bound
    return bool(np.array_equal(v[start : end + 1], _line(int(v[start]), int(v[end]), end - start)))


# -- the well-known colour palettes (PS3.6 Annex B) ---------------------------------------------

COLOURS = ("Red", "Green", "Blue")


def _well_known_files() -> dict[str, str]:
    """The standard's well-known palette SOP Instances as pydicom ships them (PS3.6 Annex B,
    its values verbatim), by their registry UID (1.2.840.10008.1.5.n)."""
    from pydicom import dcmread
    from pydicom.data import get_palette_files

    out = {}
    for f in get_palette_files("*.dcm"):
        uid = str(dcmread(f, stop_before_pixels=True, specific_tags=["PaletteColorLookupTableUID"]).get("PaletteColorLookupTableUID", ""))
        if uid.startswith("1.2.840.10008.1.5."):
            out[uid] = str(f)
    return out


_FORMS: dict[str, list[dict[str, tuple[tuple[int, ...], str, bytes]]]] = {}


def _forms(uid: str) -> list[dict[str, tuple[tuple[int, ...], str, bytes]]]:
    """Each way a writer spells well-known palette ``uid``, colour -> (descriptor, data keyword,
    data bytes): as the standard stores it (8-bit entries, some segmented) and expanded to 256
    16-bit entries (each value times 257, full scale, or times 256) as a WSI optical path needs
    them; [] for a UID that names no well-known palette."""
    if uid not in _FORMS:
        files = _well_known_files()
        forms: list[dict[str, tuple[tuple[int, ...], str, bytes]]] = []
        if uid in files:
            import warnings

            from pydicom import dcmread
            from pydicom.pixels import apply_color_lut

            pal = dcmread(files[uid])
            stored = {}
            for c in COLOURS:
                kw = next(k for k in (f"{c}PaletteColorLookupTableData", f"Segmented{c}PaletteColorLookupTableData") if k in pal)
                stored[c] = (tuple(int(x) for x in pal[f"{c}PaletteColorLookupTableDescriptor"].value), kw, bytes(pal[kw].value))
            forms.append(stored)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rgb = np.asarray(apply_color_lut(np.arange(256, dtype=np.uint8), pal)).astype(np.uint32)
            if rgb.shape == (256, 3) and int(rgb.max()) <= 255:
                for scale in (257, 256):
                    forms.append(
                        {c: ((256, 0, 16), f"{c}PaletteColorLookupTableData", (rgb[:, i] * scale).astype("<u2").tobytes()) for i, c in enumerate(COLOURS)}
                    )
        _FORMS[uid] = forms
    return _FORMS[uid]


def well_known(item) -> bool:
    """``item`` (a data set holding a palette: a Palette Color Lookup Table Sequence item) is a
    well-known colour palette exactly: its Palette Color Lookup Table UID is one of PS3.6 Annex
    B's and every channel's descriptor and data equal that palette's in one of its spellings
    (``_forms``), no other palette data beside them. Its values are the standard's, the same in
    every file: nothing in them was chosen by the writer."""
    uid = str(item.get("PaletteColorLookupTableUID", "") or "").strip()
    if not uid.startswith("1.2.840.10008.1.5."):
        return False
    present = {e.keyword for e in item if (e.keyword or "").endswith("PaletteColorLookupTableData")}
    for form in _forms(uid):
        if present != {kw for _d, kw, _b in form.values()}:
            continue
        try:
            if all(
                tuple(int(x) for x in item[f"{c}PaletteColorLookupTableDescriptor"].value) == desc and bytes(item[kw].value) == data
                for c, (desc, kw, data) in form.items()
            ):
                return True
        except (KeyError, TypeError, ValueError):
            return False
    return False
