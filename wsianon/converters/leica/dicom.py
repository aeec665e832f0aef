"""Leica SCN on the DICOM route: the refusal of z-stacks.

An SCN image's ``<dimension>`` entries of one resolution differ by their ``z`` (focal planes);
OpenSlide shows z 0. wsidicomizer reads SCN through opentile, which gives every plane of a level
the same focal position, so one plane replaces the other: the DICOM level 0 it writes is another
focal plane than z 0 (the verifier's ``dicom: frames`` then finds its frames are not the source's
z-0 page, and the slide is quarantined). Such a slide is refused before anything is written
(dry-run too), with the way out: ``--target native`` keeps every plane and judges them
(``focal-planes``).
"""

from __future__ import annotations

import re
from pathlib import Path

from wsianon.errors import CorruptInput, UnsupportedFormat

_Z = re.compile(r"<dimension\b[^>]*\bz\s*=\s*\"\s*([^\"]*)\"")


def refuse_focal_planes(source: Path) -> None:
    """Raise UnsupportedFormat when the SCN's XML names a dimension at a z other than 0."""
    import tifffile

    try:
        with tifffile.TiffFile(source) as tf:
            xml = tf.pages.first.description or ""
    except Exception as exc:
        raise CorruptInput(source, f"tifffile cannot read the SCN's first page ({type(exc).__name__})") from exc
    planes = {z.strip() for z in _Z.findall(xml)} | {"0"}
    if len(planes) > 1:
        raise UnsupportedFormat(
            source,
            f"cannot convert to DICOM: this Leica SCN holds {len(planes)} focal planes, and wsidicomizer's reader "
            "(opentile) builds the DICOM pyramid from another plane than the one OpenSlide shows (z 0); "
            "use --target native (every plane kept and judged)",
        )


__all__ = ["refuse_focal_planes"]
