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
from wsianon.io import codestreams
from wsianon.io.dicomframes import ITEM_CHUNK, LONG_VRS, TRUNCATED, Items, item_buffers, walk_items
from wsianon.io.safetext import os_reason

PIXEL_DATA = 0x7FE00010
_REFUSED_TS = {
    "1.2.840.10008.1.2.1.99": "deflated transfer syntax cannot be streamed",
    "1.2.840.10008.1.2.2": "big-endian transfer syntax is retired and not supported",
}
COPY_CHUNK = 8 * 1024 * 1024
SCRUB_CHUNK = ITEM_CHUNK  # scrub_frames' reads


@dataclass
class PixelSpan:
    offset: int  # file offset of the (7FE0,0010) tag
    end: int  # one past the element (after the sequence delimiter when encapsulated)
    encapsulated: bool


def read_header(path: Path, walk: bool = True) -> tuple[Dataset, PixelSpan | None]:
    """Parse everything before Pixel Data; locate the Pixel Data element without reading it.
    ``walk`` False: encapsulated Pixel Data's items are not walked (for a caller that walks them
    itself; ``end`` is then the file's size and what follows the element is not checked)."""
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
                raise CorruptInput(path, "an unexpected element where Pixel Data should be")
            if implicit:
                (length,) = struct.unpack("<I", head[4:8])
                hdr = 8
            else:
                vr = head[4:6]
                if vr in LONG_VRS:
                    (length,) = struct.unpack("<I", head[8:12])
                    hdr = 12
                else:
                    (length,) = struct.unpack("<H", head[6:8])
                    hdr = 8
            if length == 0xFFFFFFFF and not walk:
                return ds, PixelSpan(off, size, True)
            if length == 0xFFFFFFFF:
                items = walk_items(fh.fileno(), off + hdr, size)
                if items.problem is not None or items.end is None:
                    raise CorruptInput(path, items.problem or TRUNCATED)
                end = items.end
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
    ds.preamble = bytes(128)  # the source's preamble is free bytes (PS3.10 7.1): never carried
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _encoding_failure(exc: BaseException) -> str | None:
    """The name of the error pydicom's writer met encoding a value, where ``exc`` (or what it was
    raised from or during) is one, else None (then a bug of ours: left an internal error).  Into
    memory, so never I/O: an OSError is pydicom's on text in a binary VR (an SL); a UnicodeError a
    value outside its character set (fuzz seed 129, DICOM #42: bit flips in a header left U+FFFD in
    a DS of the Pixel Measures, and pydicom's own wrapper of that error raised TypeError); an
    OverflowError or struct.error a number its VR cannot hold."""
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 16:
        if isinstance(e, (UnicodeError, OSError, OverflowError, struct.error)):
            return type(e).__name__
        e = e.__cause__ or e.__context__
        seen += 1
    return None


def write_instance(ds: Dataset, src: Path, span: PixelSpan | None, dest: Path) -> int:
    """Write ``ds``'s header then copy ``src``'s Pixel Data element verbatim. Returns bytes written."""
    try:
        head = header_bytes(ds)
    except Exception as exc:
        cause = _encoding_failure(exc)
        if cause is None:
            raise
        raise CorruptInput(src, f"a data element cannot be encoded in its VR or character set ({cause}); refused, nothing written") from None
    try:
        with open(src, "rb") as fin, open(dest, "w+b") as fout:
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
                ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
                words = ts == "1.2.840.10008.1.2.1" and int(ds.get("BitsAllocated", 8) or 8) > 8
                _canonical_pixel_header(fout.fileno(), len(head), span, ts == "1.2.840.10008.1.2", _native_bytes(ds), words)
                if not span.encapsulated:
                    _canonical_samples(fout.fileno(), len(head), span, ts == "1.2.840.10008.1.2", _native_bytes(ds), ds, dest)
        return written
    except OSError as exc:
        raise OutputError(dest, f"cannot write: {os_reason(exc)}") from None


def _native_bytes(ds: Dataset) -> int | None:
    """The bytes native Pixel Data's frames fill (before the padding to even length)."""
    try:
        bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated) * int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    return (bits + 7) // 8


def _canonical_pixel_header(fd: int, at: int, span: PixelSpan, implicit: bool, native: int | None, words: bool = False) -> None:
    """The bytes of the copied Pixel Data element that hold no value are written as the standard
    fixes them: the explicit VR header's two reserved bytes (PS3.5 7.1.2), the Sequence
    Delimitation Item's length (PS3.5 7.5.2) and native data's padding byte to even length
    (PS3.5 7.1.1: 00H) are zero. Copied verbatim they could carry a few source bytes (initials,
    digits of an identifier) no reader shows. ``words``: native data of more than 8 bits in
    Explicit VR Little Endian, whose VR PS3.5 8.2 requires to be OW — one copied as OB (highdicom's
    16-bit grayscale test instance) gets OW (same header layout and byte order: two bytes change)."""
    head = os.pread(fd, 8, at)
    if words and not span.encapsulated and head[:6] == b"\xe0\x7f\x10\x00OB":
        os.pwrite(fd, b"OW", at + 4)
    long_vr = not implicit and head[4:6] in LONG_VRS
    if long_vr and head[6:8] != b"\0\0":
        os.pwrite(fd, b"\0\0", at + 6)
    end = at + (span.end - span.offset)
    if span.encapsulated:
        if os.pread(fd, 8, end - 8)[:4] == b"\xfe\xff\xdd\xe0":
            os.pwrite(fd, bytes(4), end - 4)
    elif native is not None and native % 2 and end - at - (12 if long_vr else 8) == native + 1:
        os.pwrite(fd, b"\0", end - 1)


def _canonical_samples(fd: int, at: int, span: PixelSpan, implicit: bool, native: int | None, ds: Dataset, dest: Path) -> int:
    """Native samples keep only their value's bits: the bits outside Bits Stored / High Bit (PS3.5
    8.1.1), which every reader masks, are zeroed (signed samples: the sign copied above High Bit).
    Copied verbatim they carry anything the source put there (an overlay, bytes of text in the
    high byte of 16-bit samples), unseen. Returns the bytes rewritten."""
    from wsianon.io.dicomframes import NATIVE_CHUNK, sample_bits

    try:
        bits = sample_bits(ds)
    except ValueError:
        raise UnsupportedFormat(dest, "native Pixel Data whose High Bit and Bits Stored do not fit Bits Allocated") from None
    if bits is None or native is None:
        return 0
    head = os.pread(fd, 8, at)
    pos = at + (12 if not implicit and head[4:6] in LONG_VRS else 8)
    end = pos + native - native % (bits.allocated // 8)
    step = NATIVE_CHUNK - NATIVE_CHUNK % 4
    n = 0
    while pos < end:
        data = os.pread(fd, min(step, end - pos), pos)
        clean = bits.canonical(data)
        if clean != data:
            os.pwrite(fd, clean, pos)
            n += len(data)
        pos += len(data)
    return n


def scrub_frames(path: Path) -> int:
    """Zero, in place, the COM / APPn payloads (and non-zero bytes after EOI) of every JPEG frame of
    an encapsulated instance (same length: the file stays valid, entropy-coded data untouched).
    Returns the number of segments emptied.

    One sequential pass: the Pixel Data is read in large buffers (``item_buffers``), the item
    headers and the frames found in them.  A frame whose header (to the end of its first SOS) is
    one already walked and found clean, that ends with EOI (a zero after it: the item's even-length
    padding) and has no marker between that header and the EOI is clean (checked for a whole
    buffer of frames at once); every other frame is walked whole, so a segment placed after the
    entropy-coded data is found as surely as one in the header."""
    ds, span = read_header(path, walk=False)
    if span is None or not span.encapsulated:
        return 0
    n = 0
    fd = os.open(path, os.O_RDWR)
    try:
        head = os.pread(fd, 12, span.offset)
        pos = span.offset + (12 if head[4:6] in LONG_VRS else 8)
        ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if getattr(ds, "file_meta", None) else ""
        if ts in codestreams.J2K_TS or ts in codestreams.JPEGLS_TS:
            return _scrub_codestreams(path, fd, pos, ts)
        known: list[bytes] = []  # headers of frames walked and found clean
        items = Items()
        for base, buf, i0, i1 in item_buffers(fd, pos, os.fstat(fd).st_size, items, SCRUB_CHUNK):
            frames = items.values[max(i0, 1) : i1]  # the first item is the Basic Offset Table
            if not frames:
                continue
            if buf is None:
                ((off, ln),) = frames
                spans = _frame_spans(os.pread(fd, ln, off), off, known)
            else:
                spans = _buffer_spans(buf, base, frames, known)
            for off, ln in spans:
                os.pwrite(fd, bytes(ln), off)
                n += 1
        if items.problem is not None:
            raise CorruptInput(path, items.problem)
        if n:
            os.fsync(fd)
    finally:
        os.close(fd)
    return n


def _scrub_codestreams(path: Path, fd: int, pos: int, ts: str) -> int:
    """``scrub_frames`` for JPEG 2000 and JPEG-LS frames (one fragment each): the COM / APPn
    payloads and the non-zero bytes after the codestream's end zeroed (``io.codestreams``). A
    frame the walk cannot follow, or frames in several fragments, are left as they are: the
    verifier's frame-segment check fails closed on them."""
    items = walk_items(fd, pos, os.fstat(fd).st_size)
    if items.problem is not None:
        raise CorruptInput(path, items.problem)
    n = 0
    for off, ln in items.values[1:]:  # the first item is the Basic Offset Table
        data = os.pread(fd, ln, off)
        for o, k in codestreams.dirty(data, ts) or []:
            os.pwrite(fd, bytes(k), off + o)
            n += 1
    if n:
        os.fsync(fd)
    return n


def _buffer_spans(buf: bytes, base: int, frames: list[tuple[int, int]], known: list[bytes]) -> list[tuple[int, int]]:
    """(file offset, length) of the payloads to zero in ``frames`` (wholly inside ``buf``, the
    file's bytes from ``base``): the known-clean-header check for all frames at once (numpy),
    ``_frame_spans`` for the rest."""
    import numpy as np

    from wsianon.io.jpeg import clean_by_header_many

    s = np.fromiter((o for o, _ in frames), dtype=np.int64, count=len(frames)) - base
    e = s + np.fromiter((ln for _, ln in frames), dtype=np.int64, count=len(frames))
    ok = np.zeros(len(frames), dtype=bool)
    if known:
        ok = clean_by_header_many(np.frombuffer(buf, dtype=np.uint8), s, e, known[0])
    out: list[tuple[int, int]] = []
    mv = memoryview(buf)
    for k in np.flatnonzero(~ok).tolist():
        a, b = int(s[k]), int(e[k])
        out += _frame_spans(bytes(mv[a:b]), base + a, known)
    return out


def _frame_spans(data: bytes, offset: int, known: list[bytes]) -> list[tuple[int, int]]:
    """(file offset, length) of the non-zero non-essential payloads of one whole frame at
    ``offset`` (and of non-zero bytes after its EOI); learns the header of a clean frame."""
    from wsianon.io.jpeg import JpegError, clean_by_known_header, is_jpeg, learn_clean_header, nonessential, trailing, walk

    if not is_jpeg(data) or clean_by_known_header(data, known):
        return []
    try:
        segs = walk(data)
    except JpegError:
        return []  # not a stream this walk can follow: judged by the verifier's frame checks
    out = [(offset + g.payload_offset, g.payload_length) for g in nonessential(data, segs) if any(data[g.payload_offset : g.payload_offset + g.payload_length])]
    t_off, t_len = trailing(data, segs)
    if t_len and any(data[t_off:]):
        out.append((offset + t_off, t_len))
    if not out:
        learn_clean_header(data, known)
    return out
