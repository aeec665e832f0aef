"""The one barcode reader every search uses: zxing-cpp over the formats a slide label can carry.

Every readable format is searched except DX Film Edge, the code printed along the edge of 35 mm
film: no slide label carries it, and its reader (zxing-cpp 2.2 and later) reads a 2 px wide strip
of a regular texture as one. The benchmark slide's textured tiles, reduced 2x on the DICOM route,
gave 18 such reads and quarantined a slide that shows no label.
"""

from __future__ import annotations

import functools


def available() -> bool:
    """Whether zxing-cpp can be imported (without it, the searches say they were skipped)."""
    try:
        import zxingcpp  # noqa: F401
    except Exception:
        return False
    return True


@functools.cache
def label_formats():
    """zxing-cpp's readable formats less DX Film Edge (a ``BarcodeFormats``). zxing-cpp 3 lists
    DX Film Edge under "Other barcode" too (asked for, that reads it), so both are left out."""
    import zxingcpp

    fmt = zxingcpp.BarcodeFormat
    left_out = {getattr(fmt, n) for n in ("DXFilmEdge", "OtherBarcode") if hasattr(fmt, n)}
    return zxingcpp.BarcodeFormats([f for f in zxingcpp.barcode_formats_list(fmt.AllReadable) if f not in left_out])


def read(image, **options) -> list:
    """The barcodes zxing-cpp finds in ``image`` (a PIL image or a grey/BGR numpy array) among
    ``label_formats``; ``options``: ``read_barcodes``' own. Raises what zxing-cpp raises."""
    import zxingcpp

    return zxingcpp.read_barcodes(image, formats=label_formats(), **options)


__all__ = ["available", "label_formats", "read"]
