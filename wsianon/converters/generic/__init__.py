"""Any TIFF no vendor redactor claims, fail-closed, only with ``--allow-generic`` (last in detection order).

``redactor.py``: sniff, inspect, plan; this package declares the format's :class:`FormatSpec`.
"""

from wsianon.converters.generic.redactor import GenericTiffConverter
from wsianon.converters.registry import SHARED_CHECKS_SUFFICE, ClosedWorld, DicomRoute, DicomVia, FormatSpec

SPEC: FormatSpec = FormatSpec.native(
    GenericTiffConverter(),
    verification=SHARED_CHECKS_SUFFICE,
    dicom=DicomRoute(DicomVia.WSIDICOMIZER),
    closed_world=ClosedWorld.TIFF,
    generic=True,
)

__all__ = ["GenericTiffConverter", "SPEC"]
