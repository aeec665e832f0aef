"""Stage 2: inspect a slide into an Inventory (identifying fields, associated images, levels)."""

from __future__ import annotations

import inspect as pyinspect
from typing import Callable

from wsianon.converters.base import Inventory
from wsianon.pipeline.detect import SlideSource


def inspect_source(src: SlideSource, policy) -> Inventory:
    if src.spec.is_dicom:
        from wsianon.converters import dicom as dicom_mod

        return dicom_mod.inspect_dicom(src.files)
    conv = src.converter
    assert conv is not None, "a detected non-DICOM source has its converter"
    inspect_fn: Callable[..., Inventory] = conv.inspect  # some converters take the policy too
    params = pyinspect.signature(inspect_fn).parameters
    if "policy" in params:
        return inspect_fn(src.path, policy=policy)
    return inspect_fn(src.path)
