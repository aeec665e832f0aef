"""Philips iSyntax: the XML header (DPUfsImport, ``converters/dpufs.py``) redacted in place, body untouched;
OpenSlide does not read it, the DICOM route reads it through pyisyntax or refuses it.

``redactor.py``: sniff, inspect, plan; this package declares the format's :class:`FormatSpec`.
"""

from wsianon.converters.isyntax.redactor import ISyntaxConverter, dicom_preflight, find_terminator, parse_header, read_header, wsi_geometry
from wsianon.converters.registry import ClosedWorld, DicomRoute, DicomVia, FormatSpec
from wsianon.verify.formats import isyntax as checks

SPEC: FormatSpec = FormatSpec.native(
    ISyntaxConverter(),
    verification=checks,
    dicom=DicomRoute(DicomVia.PYISYNTAX, preflight=dicom_preflight),
    closed_world=ClosedWorld.NONE,
)

__all__ = ["ISyntaxConverter", "SPEC", "dicom_preflight", "find_terminator", "parse_header", "read_header", "wsi_geometry"]
