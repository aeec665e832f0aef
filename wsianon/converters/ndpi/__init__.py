"""Hamamatsu NDPI: ASCII tags, the 65449 property map, macro and map IFDs; NDPI's own TIFF variant
(``is_ndpi`` for tifffile, declared in its profile).

``redactor.py``: sniff, inspect, plan; this package declares the format's :class:`FormatSpec`.
"""

from wsianon.converters.ndpi.dicom import PASSTHROUGH_NOTE
from wsianon.converters.ndpi.redactor import NdpiConverter
from wsianon.converters.registry import SHARED_CHECKS_SUFFICE, ClosedWorld, DicomRoute, DicomVia, FormatSpec

SPEC: FormatSpec = FormatSpec.native(
    NdpiConverter(),
    verification=SHARED_CHECKS_SUFFICE,
    dicom=DicomRoute(DicomVia.WSIDICOMIZER, passthrough_note=PASSTHROUGH_NOTE),
    closed_world=ClosedWorld.TIFF,
)

__all__ = ["NdpiConverter", "SPEC"]
