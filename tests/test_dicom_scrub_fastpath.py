"""scrub_frames' pre-filter (converters/dicom/stream.py): a frame is skipped only when it provably
has nothing to zero; a COM / APPn payload anywhere or text after EOI is still zeroed."""

from __future__ import annotations

import io

import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from wsianon.converters.dicom.stream import _frame_clean, scrub_frames
from wsianon.io.jpeg import dirty_segments


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 60)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    assert data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\0"
    return data


def _seg(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _after_app0(jpeg: bytes, seg: bytes) -> bytes:
    end = 4 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:end] + seg + jpeg[end:]


def _write(path, frames: list[bytes]) -> None:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


def test_clean_frames_untouched_and_dirty_ones_zeroed_everywhere(tmp_path):
    clean = _jpeg()
    assert _frame_clean(clean, 0, len(clean))
    com = _after_app0(clean, _seg(0xFE, b"PATIENT DOE JOHN"))
    app1 = _after_app0(clean, _seg(0xE1, b"Exif\0\0SECRET-SERIAL"))
    trailing = clean + b"ACC-12345"
    no_jfif_app0 = clean[:2] + _seg(0xE0, b"XXXX\0name") + clean[2:]
    for dirty in (com, app1, trailing, no_jfif_app0):
        assert dirty_segments(dirty), "fixture must be dirty"
        assert not _frame_clean(dirty, 0, len(dirty))
    frames = [com, clean, app1, clean, no_jfif_app0, trailing]  # dirty first, middle and last
    path = tmp_path / "x.dcm"
    _write(path, frames)
    n = scrub_frames(path)
    assert n == 4
    ds = pydicom.dcmread(path)
    out = list(generate_frames(ds.PixelData, number_of_frames=len(frames)))
    assert out[1] == clean and out[3] == clean
    raw = path.read_bytes()
    for secret in (b"DOE JOHN", b"SECRET-SERIAL", b"ACC-12345", b"XXXX\0name"):
        assert secret not in raw
    for f, orig in zip(out, frames):
        assert len(f.rstrip(b"\0")) <= len(orig) and not dirty_segments(f)
    assert scrub_frames(path) == 0  # nothing left on a second pass


def test_first_eoi_must_end_the_frame():
    clean = _jpeg()
    # a second EOI-terminated blob after the first EOI: text in between is not padding
    assert not _frame_clean(clean + b"\0" * 3 + clean, 0, 2 * len(clean) + 3)
    assert _frame_clean(clean + b"\0", 0, len(clean) + 1)  # the even-length item pad
    assert not _frame_clean(b"\x00" + clean[1:], 0, len(clean))  # not a JPEG: walked
