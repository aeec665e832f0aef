"""``dicom: frame segments`` judged in one sequential read (verify/dicom/frames.py
``_frame_segments_streamed``, the tile identity's vectorised JPEG check) agrees with the frame-by-frame
walk: a clean instance — odd-length frames padded with a zero after EOI included — is proven clean
without the walk; an instance with a dirty frame (a COM payload, bytes after EOI, a marker inside the
entropy-coded data) is never called clean by it and falls back to the walk, which names the frame."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from tests.test_frame_segment_shortcut import _com, _frame
from wsianon.verify.dicom import frames as F


def _instance(path: Path, frames: list[bytes]) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 32, 32, 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PlanarConfiguration = 0
    ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def _frames(n: int = 40) -> list[bytes]:
    """``n`` frames of a few distinct images, odd and even lengths both (an odd frame is padded
    with a zero after its EOI in the file)."""
    pool = [_frame(i) for i in range(40)]
    odd = [f for f in pool if len(f) % 2][:3]
    even = [f for f in pool if not len(f) % 2][:3]
    assert odd and even
    distinct = odd + even
    return [distinct[i % len(distinct)] for i in range(n)]


def _walk(path: Path) -> tuple[int, list[str]]:
    bad: list[str] = []
    return F._frame_segments(path, bad), bad


def test_clean_instance_is_proven_in_one_read(tmp_path):
    frames = _frames()
    path = _instance(tmp_path / "clean.dcm", frames)
    fd = os.open(path, os.O_RDONLY)
    try:
        frags = F._fragments(fd, path, pydicom.dcmread(path, stop_before_pixels=True))
    finally:
        os.close(fd)
    assert frags is not None and any(n == len(f) + 1 for (_, n), f in zip(frags, frames))  # padded frames
    assert F._frame_segments_streamed(path) == len(frames)
    assert _walk(path) == (len(frames), [])
    verdict = _Verdict()
    F.check_frame_segments([path], verdict)
    assert verdict.checks == [("dicom: frame segments", True)]


@pytest.mark.parametrize(
    "dirt",
    ["com-after-header", "bytes-after-eoi", "marker-in-entropy-data"],
)
def test_dirty_frame_is_never_proven_and_the_walk_names_it(tmp_path, dirt):
    frames = _frames()
    f = frames[17]
    if dirt == "com-after-header":
        sos = f.index(b"\xff\xda")
        f = f[:sos] + _com(b"Patient Jane Roe 1957") + f[sos:]
    elif dirt == "bytes-after-eoi":
        f = f + b"MRN 4711-XYZ"
    else:
        # a COM segment spliced into the entropy-coded data: the header is the clean one
        mid = len(f) // 2
        while f[mid - 1] == 0xFF:
            mid += 1
        f = f[:mid] + _com(b"hidden 0815") + f[mid:]
    frames[17] = f
    path = _instance(tmp_path / f"{dirt}.dcm", frames)
    assert F._frame_segments_streamed(path) is None
    verdict = _Verdict()
    F.check_frame_segments([path], verdict)
    ((name, ok),) = verdict.checks
    n, bad = _walk(path)
    if dirt == "marker-in-entropy-data":
        # the walk may read the spliced segment as the end of the scan: whatever it finds, the
        # check's verdict is the walk's
        assert ok == (bad == [])
    else:
        assert ok is False and bad and "frame 17" in bad[0]


class _Verdict:
    def __init__(self) -> None:
        self.checks: list[tuple[str, bool]] = []

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, ok))
