"""Leica SCN: the <scn> XML, ASCII tags, macro/label images.

``redactor.py``: sniff, inspect, plan; this package declares the format's :class:`FormatSpec`.
"""

from wsianon.converters.leica.dicom import refuse_focal_planes
from wsianon.converters.leica.redactor import LeicaConverter
from wsianon.converters.registry import ClosedWorld, DicomRoute, DicomVia, FormatSpec
from wsianon.verify.formats import leica as checks

SPEC: FormatSpec = FormatSpec.native(
    LeicaConverter(),
    verification=checks,
    dicom=DicomRoute(DicomVia.WSIDICOMIZER, refuse=refuse_focal_planes),
    closed_world=ClosedWorld.TIFF,
)

__all__ = ["LeicaConverter", "SPEC"]
