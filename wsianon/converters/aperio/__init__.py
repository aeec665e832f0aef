"""Aperio SVS (Leica): ImageDescription key/value pairs, label and macro IFDs.

``redactor.py``: sniff, inspect, plan; this package declares the format's :class:`FormatSpec`.
"""

from wsianon.converters.aperio.redactor import AperioConverter
from wsianon.converters.registry import ClosedWorld, DicomRoute, DicomVia, FormatSpec
from wsianon.verify.formats import aperio as checks

SPEC: FormatSpec = FormatSpec.native(
    AperioConverter(),
    verification=checks,
    dicom=DicomRoute(DicomVia.WSIDICOMIZER),
    closed_world=ClosedWorld.TIFF,
)

__all__ = ["AperioConverter", "SPEC"]
