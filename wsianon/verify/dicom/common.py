"""Reading output instances and the small facts every DICOM check shares."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

import pydicom
from pydicom.dataset import Dataset

from wsianon.profiles.dicom import PSEUDONYM_KEYWORDS

JPEG_TIFF_CODECS = {7, 6}
J2K_TIFF_CODECS = {33003, 33005, 34712, 34713}
IDENTITY_KWS = set(PSEUDONYM_KEYWORDS)


def read_dataset(path: Path, pixels: bool = False) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=not pixels)


def image_kind(ds: Dataset) -> str:
    it = ds.get("ImageType")
    try:
        return str(list(it)[2]).upper()
    except Exception:
        return ""


class Checks(Protocol):
    """Where a check records its result (``wsianon.pipeline.model.Verdict`` or any look-alike)."""

    def add(self, name: str, ok: bool, detail: str = "", not_run: bool = False) -> object: ...
