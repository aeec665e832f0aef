"""Leica SCN: the <scn> XML, ASCII tags, macro/label images.

``redactor.py``: sniff, inspect, plan; this package declares the format's :class:`FormatSpec`.
"""

from wsianon.converters.leica.redactor import LeicaConverter
from wsianon.converters.registry import ClosedWorld, DicomRoute, DicomVia, FormatSpec
from wsianon.verify.formats import leica as checks

_R = LeicaConverter()

SPEC: FormatSpec = FormatSpec(
    name=_R.name,
    title=_R.title,
    openslide_vendor=_R.openslide_vendor,
    extension=_R.extension,
    redactor=_R,
    verification=checks,
    dicom=DicomRoute(DicomVia.WSIDICOMIZER),
    closed_world=ClosedWorld.TIFF,
)

__all__ = ["LeicaConverter", "SPEC"]
