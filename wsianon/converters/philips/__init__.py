"""Philips TIFF: the DPUfsImport XML description (shared with iSyntax: ``converters/dpufs.py``), label/macro IFDs.

``redactor.py``: sniff, inspect, plan; this package declares the format's :class:`FormatSpec`.
"""

from wsianon.converters.philips.redactor import PhilipsConverter
from wsianon.converters.registry import ClosedWorld, DicomRoute, DicomVia, FormatSpec
from wsianon.verify.formats import philips as checks

SPEC: FormatSpec = FormatSpec.native(
    PhilipsConverter(),
    verification=checks,
    dicom=DicomRoute(DicomVia.WSIDICOMIZER),
    closed_world=ClosedWorld.TIFF,
)

__all__ = ["PhilipsConverter", "SPEC"]
