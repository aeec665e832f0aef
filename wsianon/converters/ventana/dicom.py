"""Ventana BIF on the DICOM route: the refusal of slides whose scanner tiles overlap.

wsidicomizer reads BIF through tiffslide, which does not stitch overlapping tiles: such a slide's
DICOM pyramid would be mis-stitched, so it is refused before anything is written (dry-run too).
"""

from __future__ import annotations

import re
from pathlib import Path

from wsianon.errors import CorruptInput, UnsupportedFormat


def refuse_overlapping_tiles(source: Path) -> None:
    """Raise UnsupportedFormat when the BIF's EncodeInfo declares a non-zero tile overlap."""
    import tifffile

    try:
        with tifffile.TiffFile(source) as tf:
            for page in tf.pages:
                assert isinstance(page, tifffile.TiffPage), "tf.pages yields TiffPage unless useframes is set"
                xmp = page.tags.valueof(700)
                if xmp is None:
                    continue
                text = bytes(xmp).decode("utf-8", "replace") if not isinstance(xmp, str) else xmp
                if "<EncodeInfo" not in text:
                    continue
                for m in re.finditer(r"Overlap[XY]\s*=\s*[\"']\s*(-?\d+)", text):
                    if int(m.group(1)) != 0:
                        raise UnsupportedFormat(
                            source,
                            "cannot convert to DICOM: this BIF's scanner tiles overlap, and wsidicomizer reads BIF "
                            "through tiffslide, which does not stitch overlapping tiles (the DICOM pyramid would be "
                            "mis-stitched); use --target native",
                        )
    except UnsupportedFormat:
        raise
    except Exception as exc:
        raise CorruptInput(source, f"cannot read the BIF's tile geometry ({type(exc).__name__})") from None
