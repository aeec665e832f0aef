"""Aperio SVS (Leica): ImageDescription key/value pairs, label and macro IFDs.

``redactor.py``: sniff, inspect, plan; this package declares the format's :class:`FormatSpec`.
"""

from wsianon.converters.aperio.redactor import AperioConverter
from wsianon.converters.registry import ClosedWorld, DicomRoute, DicomVia, FormatSpec
from wsianon.verify.formats import aperio as checks

_R = AperioConverter()

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

__all__ = ["AperioConverter", "SPEC"]
