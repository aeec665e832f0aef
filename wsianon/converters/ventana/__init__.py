"""Roche/Ventana BIF: XMP iScan/EncodeInfo, ASCII tags, label IFD; the DICOM route refuses overlapping tiles.

``redactor.py``: sniff, inspect, plan; this package declares the format's :class:`FormatSpec`.
"""

from wsianon.converters.ventana.dicom import refuse_overlapping_tiles
from wsianon.converters.ventana.redactor import VentanaConverter
from wsianon.converters.registry import ClosedWorld, DicomRoute, DicomVia, FormatSpec
from wsianon.verify.formats import ventana as checks

_R = VentanaConverter()

SPEC: FormatSpec = FormatSpec(
    name=_R.name,
    title=_R.title,
    openslide_vendor=_R.openslide_vendor,
    extension=_R.extension,
    redactor=_R,
    verification=checks,
    dicom=DicomRoute(DicomVia.WSIDICOMIZER, refuse=refuse_overlapping_tiles),
    closed_world=ClosedWorld.TIFF,
)

__all__ = ["VentanaConverter", "SPEC"]
