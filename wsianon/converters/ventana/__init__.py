"""Roche/Ventana BIF: XMP iScan/EncodeInfo, ASCII tags, label IFD; the DICOM route refuses overlapping tiles.

``redactor.py``: sniff, inspect, plan; this package declares the format's :class:`FormatSpec`.
"""

from wsianon.converters.ventana.dicom import refuse_overlapping_tiles
from wsianon.converters.ventana.redactor import VentanaConverter
from wsianon.converters.registry import ClosedWorld, DicomRoute, DicomVia, FormatSpec
from wsianon.verify.formats import ventana as checks

SPEC: FormatSpec = FormatSpec.native(
    VentanaConverter(),
    verification=checks,
    dicom=DicomRoute(DicomVia.WSIDICOMIZER, refuse=refuse_overlapping_tiles),
    closed_world=ClosedWorld.TIFF,
)

__all__ = ["VentanaConverter", "SPEC"]
