"""Streaming DICOM instance rewrite: a new header, the Pixel Data element copied byte for byte.

The header (everything before (7FE0,0010)) is parsed by pydicom; the Pixel Data element's extent
is found by walking item headers only (encapsulated) or from its length (native), and is copied
with ``os.copy_file_range`` (or a bounded buffer), so a multi-GB instance is never in memory.
"""

from __future__ import annotations

import io
import os
import warnings
import struct
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from wsianon.errors import CorruptInput, OutputError, UnsupportedFormat
from wsianon.io.safetext import os_reason

PIXEL_DATA = 0x7FE00010
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
_REFUSED_TS = {
    "1.2.840.10008.1.2.1.99": "deflated transfer syntax cannot be streamed",
    "1.2.840.10008.1.2.2": "big-endian transfer syntax is retired and not supported",
}
COPY_CHUNK = 8 * 1024 * 1024


@dataclass
class PixelSpan:
    offset: int  # file offset of the (7FE0,0010) tag
    end: int  # one past the element (after the sequence delimiter when encapsulated)
    encapsulated: bool


def read_header(path: Path) -> tuple[Dataset, PixelSpan | None]:
    """Parse everything before Pixel Data; locate the Pixel Data element without reading it."""
    try:
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            off = fh.tell()
            size = os.fstat(fh.fileno()).st_size
            ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if getattr(ds, "file_meta", None) else ""
            if ts in _REFUSED_TS:
                raise UnsupportedFormat(path, _REFUSED_TS[ts])
            if off >= size:
                return ds, None
            implicit = ts == "1.2.840.10008.1.2"
            fh.seek(off)
            head = fh.read(12)
            if len(head) < 8:
                raise CorruptInput(path, "truncated element after the header")
            group, elem = struct.unpack("<HH", head[:4])
            tag = (group << 16) | elem
            if tag != PIXEL_DATA:
                if tag in (0x7FE00008, 0x7FE00009):
                    raise UnsupportedFormat(path, "float pixel data is not a whole slide image")
                if tag == 0xFFFCFFFC:  # only trailing padding, no pixel data
                    return ds, None
                raise CorruptInput(path, f"unexpected element ({group:04X},{elem:04X}) where Pixel Data should be")
            if implicit:
                (length,) = struct.unpack("<I", head[4:8])
                hdr = 8
            else:
                vr = head[4:6]
                if vr in _LONG_VRS:
                    (length,) = struct.unpack("<I", head[8:12])
                    hdr = 12
                else:
                    (length,) = struct.unpack("<H", head[6:8])
                    hdr = 8
            if length == 0xFFFFFFFF:
                pos = off + hdr
                while True:
                    fh.seek(pos)
                    item = fh.read(8)
                    if len(item) < 8:
                        raise CorruptInput(path, "encapsulated Pixel Data is truncated")
                    ig, ie, ilen = struct.unpack("<HHI", item)
                    if (ig, ie) == (0xFFFE, 0xE0DD):
                        end = pos + 8
                        break
                    if (ig, ie) != (0xFFFE, 0xE000) or ilen == 0xFFFFFFFF:
                        raise CorruptInput(path, "malformed item in encapsulated Pixel Data")
                    pos += 8 + ilen
                encapsulated = True
            else:
                end = off + hdr + length
                encapsulated = False
            if end > size:
                raise CorruptInput(path, "Pixel Data runs past the end of the file")
            if end < size:
                fh.seek(end)
                tail = fh.read(min(size - end, 1 << 20))
                if size - end > len(tail) or not _only_padding(tail):
                    raise UnsupportedFormat(path, "elements after Pixel Data are not supported")
            return ds, PixelSpan(off, end, encapsulated)
    except (UnsupportedFormat, CorruptInput):
        raise
    except OSError as exc:
        raise CorruptInput(path, f"cannot read: {os_reason(exc)}") from None
    except Exception as exc:  # pydicom parse errors
        raise CorruptInput(path, f"not a readable DICOM file ({type(exc).__name__})") from None


def _only_padding(tail: bytes) -> bool:
    """True when ``tail`` is (FFFC,FFFC) Data Set Trailing Padding (any VR form) or empty."""
    if not tail:
        return True
    return tail[:4] == b"\xfc\xff\xfc\xff"


def header_bytes(ds: Dataset) -> bytes:
    """Preamble, file meta and data set (no Pixel Data) in the file's transfer syntax."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_instance(ds: Dataset, src: Path, span: PixelSpan | None, dest: Path) -> int:
    """Write ``ds``'s header then copy ``src``'s Pixel Data element verbatim. Returns bytes written."""
    head = header_bytes(ds)
    try:
        with open(src, "rb") as fin, open(dest, "wb") as fout:
            fout.write(head)
            fout.flush()
            written = len(head)
            if span is not None:
                pos, end = span.offset, span.end
                sfd, dfd = fin.fileno(), fout.fileno()
                use_cfr = hasattr(os, "copy_file_range")
                while pos < end:
                    n = min(COPY_CHUNK * 8, end - pos)
                    done = 0
                    if use_cfr:
                        try:
                            done = os.copy_file_range(sfd, dfd, n, pos)
                        except OSError as exc:
                            if exc.errno in (28, 122):
                                raise
                            use_cfr = False
                    if not done:
                        chunk = os.pread(sfd, min(n, COPY_CHUNK), pos)
                        if not chunk:
                            raise CorruptInput(src, "source shrank while being copied")
                        fout.write(chunk)
                        fout.flush()
                        done = len(chunk)
                    pos += done
                    written += done
        return written
    except OSError as exc:
        raise OutputError(dest, f"cannot write: {os_reason(exc)}") from None


def scrub_frames(path: Path) -> int:
    """Zero, in place, the COM / APPn payloads of every JPEG frame of an encapsulated
    instance (same length: the file stays valid, entropy-coded data untouched).
    Returns the number of segments emptied."""
    from wsianon.io.jpeg import stream_spans

    _, span = read_header(path)
    if span is None or not span.encapsulated:
        return 0
    n = 0
    fd = os.open(path, os.O_RDWR)
    try:
        head = os.pread(fd, 12, span.offset)
        vr = head[4:6]
        pos = span.offset + (12 if vr in _LONG_VRS else 8)
        first = True
        known: list[bytes] = []  # clean frame headers met so far (stream_spans: no parse for their repeats)
        while pos + 8 <= span.end:
            ig, ie, ilen = struct.unpack("<HHI", os.pread(fd, 8, pos))
            if (ig, ie) != (0xFFFE, 0xE000) or ilen == 0xFFFFFFFF:
                break
            if not first and ilen:  # the first item is the Basic Offset Table
                for s in stream_spans(fd, pos + 8, ilen, known):
                    os.pwrite(fd, bytes(s.length), s.offset)
                    n += 1
            first = False
            pos += 8 + ilen
        if n:
            os.fsync(fd)
    finally:
        os.close(fd)
    return n
