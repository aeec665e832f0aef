"""False positive: a fluorescence-style DICOM slide stores one instance a level and optical path
(channel); ``dicom: pyramid`` compared a channel's level with another channel's larger level.
A channel is one of fluorescence illumination (its Type 1 IlluminationTypeCodeSequence says so):
the optical paths of a brightfield image are compared with each other (tests/test_redteam5_planes.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.sequence import Sequence

from wsianon.verify.dicom.pyramid import unlike_levels

from .conftest import shared

LEVELS = "dicom/wsi2dcm-cmu-1-small-region/level-{}-frames-0-1.dcm"  # single-frame levels 3..


def _channel(ds: Dataset, ident: str, picture=None) -> None:
    """``ds`` as the instance of one optical path ``ident``; ``picture`` maps its one frame."""
    from turbojpeg import TurboJPEG

    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "111743", "DCM", "Epifluorescence illumination"
    op = Dataset()
    op.OpticalPathIdentifier = ident
    op.IlluminationTypeCodeSequence = Sequence([code])
    ds.OpticalPathSequence = Sequence([op])
    ds.NumberOfOpticalPaths = 1
    if picture is not None:
        tj = TurboJPEG()
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        ds.PixelData = encapsulate([tj.encode(np.ascontiguousarray(picture(tj.decode(frame))), quality=90)])


def _write(tmp_path: Path, name: str, ds: Dataset):
    p = tmp_path / name
    ds.save_as(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return p, pydicom.dcmread(p, stop_before_pixels=True)


def _read(rel: str) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(shared(rel))


def _other_stain(img: np.ndarray) -> np.ndarray:
    """Another channel's picture of the same slide: its own, consistent across its levels."""
    return 255 - img[::-1, ::-1]


def test_each_channel_is_compared_with_its_own_larger_levels(tmp_path):
    """Before: channel 2's levels were compared with channel 1's larger level (the smallest
    larger one of any channel) and all three were refused as 'not the slide's'."""
    dsets = []
    for lvl in (3, 4, 5, 6):
        for ident, picture in (("1", None), ("2", _other_stain)):
            ds = _read(LEVELS.format(lvl))
            _channel(ds, ident, picture)
            dsets.append(_write(tmp_path, f"ch{ident}-{lvl}.dcm", ds))
    bad, compared, notes = unlike_levels(dsets)
    assert bad == [] and compared == 6
    assert notes == ["2 fluorescence channel(s) compared within their own optical path only"]


def test_a_level_of_a_path_of_its_own_is_still_compared(tmp_path):
    """The leak stays closed: a picture given an optical path no larger level has is compared with
    the other paths' levels, as before, and refused."""
    dsets = []
    for lvl in (3, 4):
        ds = _read(LEVELS.format(lvl))
        _channel(ds, "1")
        dsets.append(_write(tmp_path, f"ch1-{lvl}.dcm", ds))
    rogue = _read(LEVELS.format(4))
    _channel(rogue, "9", _other_stain)
    dsets.append(_write(tmp_path, "rogue.dcm", rogue))
    bad, _n, _notes = unlike_levels(dsets)
    assert [b.split(":")[0] for b in bad] == ["rogue.dcm"]
