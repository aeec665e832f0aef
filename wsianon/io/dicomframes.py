"""Frames of a DICOM instance, read one at a time, and decoded to pixels.

Neutral ground (the io layer): the DICOM route's converter and the verifier both read
frames, and neither may import the other."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

JPEG_TS = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}


def turbojpeg():
    from turbojpeg import TurboJPEG

    return TurboJPEG()


def pixel_value_offset(path: Path) -> tuple[Dataset, int | None, int]:
    """(header, file offset of Pixel Data's value, its length or 0xFFFFFFFF)."""
    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(fh, stop_before_pixels=True)
        off = fh.tell()
        fh.seek(off)
        head = fh.read(12)
    if len(head) < 8 or struct.unpack("<HH", head[:4]) != (0x7FE0, 0x0010):
        return ds, None, 0
    implicit = str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2"
    if implicit:
        return ds, off + 8, struct.unpack("<I", head[4:8])[0]
    return ds, off + 12, struct.unpack("<I", head[8:12])[0]


def iter_frames(path: Path):
    """Yield every frame's bytes of an instance, reading one frame at a time."""
    ds, voff, length = pixel_value_offset(path)
    if voff is None:
        return
    n = int(ds.get("NumberOfFrames", 1) or 1)
    with open(path, "rb") as fh:
        fh.seek(voff)
        if length == 0xFFFFFFFF:
            eot = None
            if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
                eot = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
            yield from pydicom.encaps.generate_frames(fh, number_of_frames=n, extended_offsets=eot)
        else:
            spp = int(ds.get("SamplesPerPixel", 1))
            size = int(ds.Rows) * int(ds.Columns) * spp * int(ds.BitsAllocated) // 8
            for _ in range(n):
                yield fh.read(size)


def decode_rgb(frame: bytes, ds: Dataset):
    """An output frame as an RGB (or grey) uint8 array."""
    import numpy as np

    ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if ts in JPEG_TS:
        from turbojpeg import TJPF_RGB

        return turbojpeg().decode(frame, pixel_format=TJPF_RGB)
    import imagecodecs

    if ts in ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"):
        return imagecodecs.jpeg2k_decode(frame)
    if ts in ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"):
        return imagecodecs.jpegls_decode(frame)
    spp = int(ds.get("SamplesPerPixel", 1))
    a = np.frombuffer(frame, np.uint8).reshape(int(ds.Rows), int(ds.Columns), spp)
    return a[..., 0] if spp == 1 else a
