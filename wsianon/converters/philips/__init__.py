"""Philips TIFF: the DPUfsImport XML description (shared with iSyntax: ``converters/dpufs.py``), label/macro IFDs.

``redactor.py``: sniff, inspect, plan; this package declares the format's :class:`FormatSpec`.
"""

from wsianon.converters.philips.redactor import PhilipsConverter
from wsianon.converters.registry import ClosedWorld, DicomRoute, DicomVia, FormatSpec
from wsianon.verify.formats import philips as checks

_R = PhilipsConverter()

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

__all__ = ["PhilipsConverter", "SPEC"]
