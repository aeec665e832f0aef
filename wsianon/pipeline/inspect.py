"""Stage 2: inspect a slide into an Inventory (identifying fields, associated images, levels).

Native sources are analyzed once (``NativeConverter.analyze``); the inventory is
a view of those decisions and carries them on to the plan."""

from __future__ import annotations

from wsianon.converters.base import Inventory
from wsianon.pipeline.detect import SlideSource
from wsianon.profiles.policy import Policy


def inspect_source(src: SlideSource, policy: Policy) -> Inventory:
    if src.spec.is_dicom:
        from wsianon.converters import dicom as dicom_mod

        return dicom_mod.inspect_dicom(src.files)
    conv = src.converter
    assert conv is not None, "a detected non-DICOM source has its converter"
    return conv.analyze(src.path, policy).inventory()
