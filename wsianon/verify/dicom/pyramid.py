"""``dicom: pyramid``: every VOLUME instance is a level of the slide's one image.

A VOLUME instance is shown only as a pyramid level, so an image that is no level of the slide (a
photo of the label given ImageType VOLUME, in the same series and pyramid) was shared unseen: no
barcode search looks at VOLUME frames and its frames equal the source's. Each VOLUME's Total
Pixel Matrix must have the base level's aspect, to the rounding of its size and one pixel more
(``verify.thumbnail.aspect_ok``, the rule a kept thumbnail is held to: ``|rows * base_cols -
cols * base_rows| <= base_cols + base_rows`` whichever side is the longer).
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from wsianon.verify.dicom.common import Checks, image_kind
from wsianon.verify.thumbnail import aspect_ok  # one rule: an image that is the base scaled


def _matrix(ds: Dataset) -> tuple[int, int] | None:
    try:
        return int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
    except (AttributeError, TypeError, ValueError):
        return None


def off_pyramid(dsets: list[tuple[Path, Dataset]]) -> list[str]:
    """The VOLUME instances whose matrix is not a level of the largest one (names only)."""
    volumes = [(p, m) for p, ds in dsets if image_kind(ds) == "VOLUME" and (m := _matrix(ds)) is not None]
    if len(volumes) < 2:
        return []
    base_cols, base_rows = max((m for _p, m in volumes), key=lambda m: (m[0] * m[1], m))
    bad = []
    for p, (cols, rows) in volumes:
        if cols > base_cols or rows > base_rows or not aspect_ok((cols, rows), (base_cols, base_rows)):
            bad.append(p.name)
    return bad


def check_pyramid(dsets: list[tuple[Path, Dataset]], verdict: Checks) -> None:
    bad = off_pyramid(dsets)
    verdict.add(
        "dicom: pyramid",
        not bad,
        "; ".join(f"{n}: a VOLUME whose matrix is not a level of the slide's image" for n in bad[:5])
        or "every VOLUME instance is a level of the slide's image",
    )


__all__ = ["check_pyramid", "off_pyramid"]
