"""Stage 2: inspect a slide into an Inventory (identifying fields, associated images, levels)."""

from __future__ import annotations

import inspect as pyinspect

from wsianon.converters.base import Inventory
from wsianon.pipeline.detect import SlideSource


def inspect_source(src: SlideSource, policy) -> Inventory:
    if src.format == "dicom":
        from wsianon.converters import dicom as dicom_mod

        return dicom_mod.inspect_dicom(src.files)
    conv = src.converter
    params = pyinspect.signature(conv.inspect).parameters
    if "policy" in params:
        return conv.inspect(src.path, policy=policy)
    return conv.inspect(src.path)
