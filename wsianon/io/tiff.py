"""TIFF / BigTIFF / NDPI container structure: no vendor semantics here.

Reads the IFD chain of a file (classic TIFF or BigTIFF, either byte order, and
Hamamatsu's NDPI variant with 64-bit IFD offsets and per-entry high halves) and
gives the exact byte location of every header field, entry, value and next-IFD
pointer, so that redactors can express edits as byte patches.

Never reads pixel data and never holds the file in memory.
"""

from __future__ import annotations

import enum
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from wsianon.errors import CorruptInput, UnsupportedFormat
from wsianon.io.safetext import os_reason

# TIFF field types -> (struct code, size in bytes)
TYPES: dict[int, tuple[str, int]] = {
    1: ("B", 1),  # BYTE
    2: ("s", 1),  # ASCII
    3: ("H", 2),  # SHORT
    4: ("I", 4),  # LONG
    5: ("II", 8),  # RATIONAL
    6: ("b", 1),  # SBYTE
    7: ("s", 1),  # UNDEFINED
    8: ("h", 2),  # SSHORT
    9: ("i", 4),  # SLONG
    10: ("ii", 8),  # SRATIONAL
    11: ("f", 4),  # FLOAT
    12: ("d", 8),  # DOUBLE
    13: ("I", 4),  # IFD
    16: ("Q", 8),  # LONG8
    17: ("q", 8),  # SLONG8
    18: ("Q", 8),  # IFD8
}

ASCII = 2
UNDEFINED = 7
BYTE = 1

# Frequently used tag numbers
NEW_SUBFILE_TYPE = 254
IMAGE_WIDTH = 256
IMAGE_LENGTH = 257
COMPRESSION = 259
IMAGE_DESCRIPTION = 270
STRIP_OFFSETS = 273
STRIP_BYTE_COUNTS = 279
SOFTWARE = 305
DATETIME = 306
TILE_WIDTH = 322
TILE_LENGTH = 323
TILE_OFFSETS = 324
TILE_BYTE_COUNTS = 325
XMP = 700

# the first four bytes of classic TIFF and BigTIFF, both byte orders
TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")

MAX_IFDS = 100_000
MAX_ENTRIES = 4096


class Kind(enum.Enum):
    CLASSIC = "tiff"
    BIG = "bigtiff"
    NDPI = "ndpi"


@dataclass
class Entry:
    """One IFD entry and where its bytes live."""

    tag: int
    type: int
    count: int
    entry_offset: int  # file offset of the entry itself
    field_offset: int  # file offset of the value/offset field inside the entry
    value_offset: int  # file offset of the value bytes (== field_offset when inline)
    size: int  # byte size of the value
    inline: bool
    high_offset: int | None = None  # NDPI: file offset of this entry's high 32 bits


@dataclass
class IFD:
    index: int
    offset: int
    entries: dict[int, Entry] = field(default_factory=dict)
    next_offset: int = 0
    next_field_offset: int = 0  # where the next-IFD pointer is stored
    end: int = 0  # first byte after the IFD (including NDPI extension)

    def __contains__(self, tag: int) -> bool:
        return tag in self.entries

    def get(self, tag: int) -> Entry | None:
        return self.entries.get(tag)


_INTEGER_TYPES = (1, 3, 4, 13, 16, 18)  # BYTE SHORT LONG IFD LONG8 IFD8


class TiffStructure:
    """The IFD chain of one TIFF-like file.

    Use as a context manager or call ``close()``.
    """

    def __init__(self, path: str | Path, fh: BinaryIO | None = None, size: int | None = None):
        self.path = Path(path)
        self._own = fh is None
        try:
            self.fh: BinaryIO = fh if fh is not None else open(self.path, "rb")
        except OSError as exc:
            raise CorruptInput(self.path, f"cannot read: {os_reason(exc)}") from None
        try:
            self.size = size if size is not None else os.fstat(self.fh.fileno()).st_size
            self._parse()
        except BaseException:
            self.close()
            raise

    # -- lifecycle -----------------------------------------------------------
    def close(self) -> None:
        if self._own and not self.fh.closed:
            self.fh.close()

    def __enter__(self) -> "TiffStructure":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- low-level reads -----------------------------------------------------
    def read(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise CorruptInput(self.path, f"truncated or corrupt TIFF: a read beyond the end of the file ({self.size} bytes)")
        self.fh.seek(offset)
        data = self.fh.read(size)
        if len(data) != size:
            raise CorruptInput(self.path, "truncated TIFF: short read")
        return data

    def unpack(self, fmt: str, data: bytes) -> tuple:
        return struct.unpack(self.byteorder + fmt, data)

    def pack(self, fmt: str, *values) -> bytes:
        return struct.pack(self.byteorder + fmt, *values)

    # -- parsing ---------------------------------------------------------------
    def _parse(self) -> None:
        if self.size < 8:
            raise UnsupportedFormat(self.path, "not a TIFF file (too short)")
        head = self.read(0, min(16, self.size))
        if head[:2] == b"II":
            self.byteorder = "<"
        elif head[:2] == b"MM":
            self.byteorder = ">"
        else:
            raise UnsupportedFormat(self.path, "not a TIFF file (no II/MM byte-order mark)")
        (version,) = self.unpack("H", head[2:4])
        if version == 42:
            self.kind = Kind.CLASSIC
            self.first_field_offset = 4
            self.first_field_size = 4
            (first,) = self.unpack("I", head[4:8])
        elif version == 43:
            if len(head) < 16:
                raise CorruptInput(self.path, "truncated BigTIFF header")
            bytesize, zero = self.unpack("HH", head[4:8])
            if bytesize != 8 or zero != 0:
                raise CorruptInput(self.path, "invalid BigTIFF header")
            self.kind = Kind.BIG
            self.first_field_offset = 8
            self.first_field_size = 8
            (first,) = self.unpack("Q", head[8:16])
        else:
            raise UnsupportedFormat(self.path, "not a TIFF file (the version is neither 42, classic TIFF, nor 43, BigTIFF)")

        if self.kind is Kind.CLASSIC and self.byteorder == "<" and self.size >= 12:
            # NDPI: the header's first-IFD offset is 64 bits; with the first IFD
            # beyond 4 GiB its low half points somewhere else entirely
            (first64,) = self.unpack("Q", self.read(4, 8))
            if self._looks_ndpi(first64):
                self.kind = Kind.NDPI
                self.first_field_size = 8
                first = first64
            elif first64 != first and self._looks_ndpi(first):
                self.kind = Kind.NDPI  # odd header: high half not zero-padded; trust the low half
                self.first_field_size = 8

        self.ifds: list[IFD] = []
        seen: set[int] = set()
        offset = first
        while offset:
            if offset in seen:
                raise CorruptInput(self.path, "IFD chain loops back to an earlier IFD")
            if len(self.ifds) >= MAX_IFDS:
                raise CorruptInput(self.path, "too many IFDs")
            seen.add(offset)
            ifd = self._read_ifd(len(self.ifds), offset)
            self.ifds.append(ifd)
            offset = ifd.next_offset
        if not self.ifds:
            raise CorruptInput(self.path, "TIFF has no image directory")

    def _looks_ndpi(self, first: int) -> bool:
        """NDPI files are classic little-endian TIFFs whose first IFD holds tag 65420."""
        try:
            (n,) = self.unpack("H", self.read(first, 2))
            if not 0 < n <= MAX_ENTRIES:
                return False
            raw = self.read(first + 2, 12 * n)
        except CorruptInput:
            return False
        for i in range(n):
            (tag,) = self.unpack("H", raw[12 * i : 12 * i + 2])
            if tag == 65420:
                return True
        return False

    @property
    def next_size(self) -> int:
        return 4 if self.kind is Kind.CLASSIC else 8

    def _read_ifd(self, index: int, offset: int) -> IFD:
        big = self.kind is Kind.BIG
        count_size = 8 if big else 2
        entry_size = 20 if big else 12
        if offset < 8 or offset + count_size > self.size:
            raise CorruptInput(self.path, f"IFD {index}: its offset is outside the file ({self.size} bytes)")
        (n,) = self.unpack("Q" if big else "H", self.read(offset, count_size))
        if n == 0 or n > MAX_ENTRIES:
            raise CorruptInput(self.path, f"IFD {index}: implausible entry count (0, or more than any writer uses)")
        base = offset + count_size
        raw = self.read(base, n * entry_size)
        next_field = base + n * entry_size
        next_raw = self.read(next_field, self.next_size)
        (next_offset,) = self.unpack("I" if self.next_size == 4 else "Q", next_raw)
        end = next_field + self.next_size
        highs: list[int] = [0] * n
        if self.kind is Kind.NDPI:
            ext = self.read(end, 4 * n) if end + 4 * n <= self.size else b"\0" * (4 * n)
            highs = list(struct.unpack("<%dI" % n, ext))
            end += 4 * n
        ifd = IFD(index=index, offset=offset, next_offset=next_offset, next_field_offset=next_field, end=end)
        for i in range(n):
            e = raw[i * entry_size : (i + 1) * entry_size]
            if big:
                tag, typ, count = self.unpack("HHQ", e[:12])
                field_offset = base + i * entry_size + 12
                vfield = e[12:20]
                field_len = 8
            else:
                tag, typ, count = self.unpack("HHI", e[:8])
                field_offset = base + i * entry_size + 8
                vfield = e[8:12]
                field_len = 4
            if typ not in TYPES:
                # unknown type: keep its location, size unknown -> treat as opaque inline
                ent = Entry(tag, typ, count, base + i * entry_size, field_offset, field_offset, 0, True)
                ifd.entries.setdefault(tag, ent)
                continue
            size = TYPES[typ][1] * count
            ndpi_out_of_line_ascii = self.kind is Kind.NDPI and typ == ASCII
            if size <= field_len and not ndpi_out_of_line_ascii:
                inline = True
                value_offset = field_offset
            else:
                inline = False
                (value_offset,) = self.unpack("Q" if big else "I", vfield)
                if self.kind is Kind.NDPI:
                    value_offset |= highs[i] << 32
            high_off = (next_field + 8 + 4 * i) if self.kind is Kind.NDPI else None
            ent = Entry(tag, typ, count, base + i * entry_size, field_offset, value_offset, size, inline, high_off)
            if not inline and value_offset + size > self.size:
                raise CorruptInput(self.path, f"IFD {index}: a tag's value points beyond the end of the file (truncated?)")
            ifd.entries.setdefault(tag, ent)
        return ifd

    # -- values ----------------------------------------------------------------
    def raw(self, entry: Entry) -> bytes:
        return self.read(entry.value_offset, entry.size)

    def values(self, entry: Entry) -> tuple:
        """Numeric values of an entry (for NDPI, LONG values carry their high halves)."""
        if entry.type not in TYPES:
            raise CorruptInput(self.path, "a tag has an unknown field type")
        code, size = TYPES[entry.type]
        data = self.raw(entry)
        if entry.type == ASCII or entry.type == UNDEFINED:
            return (data,)
        vals = self.unpack(f"{entry.count}{code}" if len(code) == 1 else f"{entry.count * 2}{code[0]}", data)
        if self.kind is Kind.NDPI and entry.inline and entry.count == 1 and entry.type in (4, 13):
            hi = self.read(entry.high_offset, 4) if entry.high_offset and entry.high_offset + 4 <= self.size else b"\0\0\0\0"
            vals = (vals[0] | (struct.unpack("<I", hi)[0] << 32),)
        return vals

    def value(self, ifd: IFD, tag: int, default=None):
        e = ifd.get(tag)
        if e is None:
            return default
        v = self.values(e)
        return v[0] if len(v) == 1 else v

    def dimensions(self, ifd: IFD) -> tuple[int, int]:
        """(ImageWidth, ImageLength) of ``ifd``, each 0 where it is absent or not one integer (a
        damaged entry of several values: fuzz seed 108, a bit flip in the count); a page of size 0
        with data is judged as a picture all the same (``holds_picture``)."""

        def one(tag: int) -> int:
            try:
                v = self.value(ifd, tag, 0)
            except Exception:  # noqa: BLE001 - a value that cannot be read is no size
                return 0
            return int(v) if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0

        return one(IMAGE_WIDTH), one(IMAGE_LENGTH)

    def samples_per_pixel(self, ifd: IFD) -> int | None:
        """SamplesPerPixel of ``ifd`` (1 when absent), None when it is not one positive number."""
        e = ifd.get(277)
        if e is None:
            return 1
        try:
            v = self.values(e)
        except Exception:  # a damaged entry: no number
            return None
        # bytes where the field type is ASCII or UNDEFINED (a damaged type): no number either
        return v[0] if len(v) == 1 and isinstance(v[0], int) and v[0] >= 1 else None

    def ascii(self, entry: Entry) -> str:
        data = self.raw(entry)
        return data.split(b"\0", 1)[0].decode("latin-1") if entry.type == ASCII else data.decode("latin-1")

    def text(self, ifd: IFD, tag: int) -> str | None:
        e = ifd.get(tag)
        return None if e is None else self.ascii(e)

    def data_spans(self, ifd: IFD) -> list[tuple[int, int]]:
        """(offset, length) of every strip or tile of an IFD."""
        if TILE_OFFSETS in ifd:
            offs, counts = ifd.entries[TILE_OFFSETS], ifd.get(TILE_BYTE_COUNTS)
        elif STRIP_OFFSETS in ifd:
            offs, counts = ifd.entries[STRIP_OFFSETS], ifd.get(STRIP_BYTE_COUNTS)
        else:
            return []
        if counts is None:
            raise CorruptInput(self.path, f"IFD {ifd.index} has data offsets but no byte counts")
        if offs.type not in _INTEGER_TYPES or counts.type not in _INTEGER_TYPES:
            raise CorruptInput(self.path, f"IFD {ifd.index}: data offsets or byte counts are not integers (field type corrupt)")
        o = self.values(offs)
        c = self.values(counts)
        if len(o) != len(c):
            raise CorruptInput(self.path, f"IFD {ifd.index}: offset and byte-count arrays differ in length")
        spans = []
        for off, cnt in zip(o, c):
            if cnt and off + cnt > self.size:
                raise CorruptInput(self.path, f"IFD {ifd.index}: image data beyond the end of the file (truncated?)")
            spans.append((int(off), int(cnt)))
        return spans

    def holds_picture(self, ifd: IFD) -> bool:
        """Whether a directory holds pixel data that can be a picture: any strip or tile byte,
        except a 1 x 1 page whose one data byte is 0xFF (the directory the BIF redactor writes to
        carry the iScan XMP in front of the pyramid).  A width or height of 0 with data still
        counts (red team stop 37, round 2: a label photo's page with ImageWidth 0), and so does a
        1 x 1 page of any other data (red team stop 38: 1 x 1 pages of 64-bit samples carried 8
        bytes of text each, as many pages as one liked, while any 1 x 1 page of at most 8 bytes
        was taken for none).  The one rule for the BIF redactor's unknown pages and the
        verifier's ``image-pages``."""
        offs, cnts = self.data_span_arrays(ifd)
        if not len(cnts) or not (cnts > 0).any():
            return False
        one = self.dimensions(ifd) == (1, 1)
        if one and int(cnts.sum()) == 1:
            at = int(offs[cnts > 0][0])
            return self.read(at, 1) != b"\xff"
        return True

    def data_span_arrays(self, ifd: IFD):
        """``data_spans`` as two uint64 numpy arrays (offsets, byte counts), validated alike.

        16 bytes a tile where the list of tuples (or tifffile's tuples of ints) costs about 70:
        a 4 GiB slide of 256-px tiles has ~170,000 tiles, i.e. 2.7 MiB here against ~12 MiB.
        For a reader whose peak memory must not grow with the slide."""
        import numpy as np

        if TILE_OFFSETS in ifd:
            offs, counts = ifd.entries[TILE_OFFSETS], ifd.get(TILE_BYTE_COUNTS)
        elif STRIP_OFFSETS in ifd:
            offs, counts = ifd.entries[STRIP_OFFSETS], ifd.get(STRIP_BYTE_COUNTS)
        else:
            return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
        if counts is None:
            raise CorruptInput(self.path, f"IFD {ifd.index} has data offsets but no byte counts")
        if offs.type not in _INTEGER_TYPES or counts.type not in _INTEGER_TYPES:
            raise CorruptInput(self.path, f"IFD {ifd.index}: data offsets or byte counts are not integers (field type corrupt)")

        def arr(e: Entry):
            code = TYPES[e.type][0]
            if e.count > 1 and code in ("H", "I", "Q"):  # bulk: straight from the file's bytes
                return np.frombuffer(self.raw(e), dtype=np.dtype(self.byteorder + code)).astype(np.uint64)
            return np.array(self.values(e), dtype=np.uint64)  # single (NDPI high halves) or odd types

        o, c = arr(offs), arr(counts)
        if len(o) != len(c):
            raise CorruptInput(self.path, f"IFD {ifd.index}: offset and byte-count arrays differ in length")
        used = c > 0
        if used.any():
            # judged without adding: an offset near 2^64 plus its count wraps around in uint64
            ou, cu = o[used], c[used]
            if int(ou.max()) > self.size or bool((cu > np.uint64(self.size) - ou).any()):
                raise CorruptInput(self.path, f"IFD {ifd.index}: image data beyond the end of the file (truncated?)")
        return o, c

    def iter_ascii_entries(self, ifd: IFD) -> Iterator[Entry]:
        for e in ifd.entries.values():
            if e.type == ASCII:
                yield e

    # -- encoding helpers for patches ----------------------------------------------
    def next_pointer_bytes(self, value: int) -> bytes:
        return self.pack("I" if self.next_size == 4 else "Q", value)

    def first_pointer_bytes(self, value: int) -> bytes:
        return self.pack("I" if self.first_field_size == 4 else "Q", value)


def value_bytes_only(kind: Kind, entry: bytes, high: bytes, typ: int, count: int) -> tuple[bytes, bytes]:
    """An IFD entry (and its NDPI high half) with every byte that holds no value zeroed: the unused
    tail of a value stored in the entry's field (a SHORT leaves 2 of 4 bytes, 6 of 8 in a
    BigTIFF), and an NDPI high half that is not part of an offset or a single LONG (an inline
    value's high half).  A reader never looks at those bytes, so they could hold text: the closed
    world zeroes them, the verifier refuses an entry where this differs from the entry."""
    head = 12 if kind is Kind.BIG else 8
    size = TYPES[typ][1] * count
    if size > len(entry) - head or (kind is Kind.NDPI and typ == 2):
        return entry, high  # the field holds an offset
    entry = entry[: head + size] + bytes(len(entry) - head - size)
    if high and not (count == 1 and typ in (4, 13)):
        high = bytes(len(high))
    return entry, high


def compression_of(ts: TiffStructure, ifd: IFD) -> int:
    """The IFD's Compression as one integer: 1 (none) when the tag is absent, or when its value is
    not one number a reader would take (such an entry is no JPEG page's)."""
    try:
        v = ts.value(ifd, COMPRESSION, 1)
    except (CorruptInput, struct.error, ValueError):
        return 1
    return v if isinstance(v, int) else 1


def chunk_count(ts: TiffStructure, ifd: IFD) -> int | None:
    """How many tiles (or strips) the IFD's image has by its dimensions (TIFF 6.0: TilesPerImage,
    StripsPerImage; times SamplesPerPixel when planar), or None when they cannot be told."""
    try:

        def one(tag: int, default: int) -> int:
            v = ts.value(ifd, tag, default)
            if not isinstance(v, int):
                raise ValueError(tag)
            return v

        w, h, spp, planar = one(256, 0), one(257, 0), one(277, 1), one(284, 1)
        if TILE_OFFSETS in ifd:
            tw, tl, depth, td = one(322, 0), one(323, 0), one(32997, 1), one(32998, 1)
            if not (w and h and tw and tl and depth and td):
                return None
            n = -(-w // tw) * -(-h // tl) * -(-depth // td)
        else:
            rows = one(278, 0xFFFFFFFF) or 0xFFFFFFFF
            if not h:
                return None
            n = -(-h // rows)
    except (CorruptInput, struct.error, ValueError):
        return None
    return n * (spp if planar == 2 else 1)
