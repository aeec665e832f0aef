"""The DICOM route: de-identification of DICOM WSI inputs and conversion of other formats.

Entry points the pipeline calls:

* :func:`is_dicom`, :func:`group_series`, :func:`inspect_dicom` — DICOM inputs;
* :func:`deidentify_series` — de-identify one DICOM slide into a staging folder;
* :func:`convert_slide` — convert a non-DICOM slide (wsidicomizer) and de-identify it.
"""

from wsianon.converters.dicom.series import (
    DicomResult,
    deidentify_series,
    group_series,
    inspect_dicom,
    is_dicom,
)
from wsianon.converters.dicom.bridge import convert_slide, require_turbojpeg
from wsianon.converters.dicom.ingest import FrameScrub
from wsianon.converters.dicom.stream import scrub_frames

__all__ = [
    "DicomResult",
    "FrameScrub",
    "convert_slide",
    "require_turbojpeg",
    "deidentify_series",
    "group_series",
    "inspect_dicom",
    "is_dicom",
    "scrub_frames",
]
