"""Bounded, seeded fuzzing of DICOM WSI inputs (``wsianon run --target dicom``, ``verify``, ``inspect``).

The input is a generated slide folder (tests/fixtures/dicom_gen.py: a two-level TILED_FULL VOLUME
pyramid of JPEG frames, a THUMBNAIL, a LABEL and an OVERVIEW instance).  Each case damages ONE
instance among the several (or the folder's set of instances) the ways broken or hostile DICOM
files are broken:

* truncation in the header or in the Pixel Data, bit flips in the header,
* numeric attributes set to extreme or odd values (0, 1, 2**31-1, 2**32-1, retyped as a negative
  or non-numeric IS string): Rows, Columns, TotalPixelMatrixColumns/Rows, NumberOfFrames,
  BitsAllocated, SamplesPerPixel, TotalPixelMatrixFocalPlanes, NumberOfOpticalPaths,
  ConcatenationFrameOffsetNumber ...,
* the item structure of the encapsulated Pixel Data: fragment lengths, the delimiters, an extra
  or a missing fragment, a Basic Offset Table pointing beyond the data,
* DimensionOrganizationType changed, required attributes deleted, elements duplicated or out of
  order, an instance that does not fit the others (series, study, frame of reference, a copy).

Mutations are written at the byte level by a walker of our own (the fuzzer must not trust the
code under test; pydicom refuses to write much of this); pydicom only for a few attribute edits.
Every case runs ``wsianon run --target dicom`` through the CLI in-process and, for a quarter of
the cases, ``inspect`` and ``verify``; it is judged by test_fuzz's checker: no traceback or hang,
input unchanged, nothing half-written, exit 0 verified or exit 1 with one ``error:`` line naming
the slide (or the slide quarantined), never an internal error, and a bounded growth of the
process's peak memory.

``WSIANON_FUZZ_CASES`` (default 32) cases, seed ``WSIANON_FUZZ_SEED`` (default 12).  A failing
case prints its id (case number, instance, mutation), which reproduces it exactly.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import resource
import shutil
import struct
from pathlib import Path

import pytest

from .fixtures.dicom_gen import CANARIES as DICOM_CANARIES
from .test_fuzz import (
    CASE_TIMEOUT,
    MAX_GROWTH_MIB,
    _check_case,
    _check_read_only,
    _judge_cases,
    _leaks,
    _outcome,
    _tree_bytes,
    _verify_agrees,
    draw_options,
    generators,
)

CASES = int(os.environ.get("WSIANON_FUZZ_CASES", "32"))
READ_ONLY_EVERY = int(os.environ.get("WSIANON_FUZZ_READ_ONLY_EVERY", "4"))  # inspect and verify on every n-th case
SEED = int(os.environ.get("WSIANON_FUZZ_SEED", "12"))
TARGET = ("--target", "dicom")


def make_original(folder: Path) -> Path:
    """The generated slide, made byte-for-byte reproducible: wsidicomizer draws fresh UIDs (of
    varying length) and stamps the clock on every run; they are replaced by fixed ones of one length, and the files
    are named by their role, so that a case id reproduces the very same bytes."""
    import pydicom

    from .fixtures.dicom_gen import make_dicom

    fx = make_dicom(folder)
    uids: dict[str, str] = {}

    def fixed(v: str) -> str:
        return uids.setdefault(v, f"1.2.826.0.1.3680043.8.498.1{len(uids) + 1:029d}")

    def role(ds) -> tuple:
        return (str(ds.ImageType[2]), -int(ds.TotalPixelMatrixColumns))

    dss = sorted((pydicom.dcmread(f) for f in fx.files), key=role)
    for f in fx.files:
        f.unlink()
    for i, ds in enumerate(dss):
        for elem in [*ds.iterall(), *ds.file_meta]:
            if elem.VR == "UI" and str(elem.value).startswith("1.2.826.0.1.3680043.8.498."):
                elem.value = fixed(str(elem.value))
            elif elem.VR in ("DA", "TM", "DT") and elem.value:  # InstanceCreationDate/Time: the clock
                elem.value = {"DA": "20240311", "TM": "142233", "DT": "20240311142233"}[elem.VR]
        ds.save_as(folder / f"{i}-{role(ds)[0].lower()}.dcm")
    return folder


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    return make_original(tmp_path_factory.mktemp("dfuzz-original") / "slide")


# ---------------------------------------------------------------------------
# a minimal explicit-VR little-endian walker (our own)

LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
UNDEFINED = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010


class Elem:
    """A top-level element: where it starts, where its value starts and ends."""

    def __init__(self, tag: int, vr: bytes, start: int, value_at: int, end: int, length: int) -> None:
        self.tag, self.vr, self.start, self.value_at, self.end, self.length = tag, vr, start, value_at, end, length


def _tag(b: bytes, at: int) -> int:
    g, e = struct.unpack_from("<HH", b, at)
    return (g << 16) | e


def _skip_undefined(b: bytes, at: int, items: bool) -> int:
    """The end of an undefined-length value starting at ``at`` (after its sequence delimiter):
    a sequence of items (``items``) holding datasets, or encapsulated fragments."""
    while at + 8 <= len(b):
        tag = _tag(b, at)
        (ln,) = struct.unpack_from("<I", b, at + 4)
        at += 8
        if tag == 0xFFFEE0DD:  # sequence delimitation
            return at
        if tag != 0xFFFEE000:
            raise ValueError(f"unexpected tag {tag:08x} in a sequence")
        if ln != UNDEFINED:
            at += ln
            continue
        if not items:
            raise ValueError("undefined-length fragment")
        at = _walk(b, at, until_item_end=True)[1]
    raise ValueError("no sequence delimiter")


def _walk(b: bytes, at: int, until_item_end: bool = False) -> tuple[list[Elem], int]:
    out: list[Elem] = []
    while at + 8 <= len(b):
        tag = _tag(b, at)
        if until_item_end and tag == 0xFFFEE00D:
            return out, at + 8
        vr = b[at + 4 : at + 6]
        if vr in LONG_VRS:
            (ln,) = struct.unpack_from("<I", b, at + 8)
            value_at = at + 12
        else:
            (ln,) = struct.unpack_from("<H", b, at + 6)
            value_at = at + 8
        if ln == UNDEFINED:
            end = _skip_undefined(b, value_at, items=vr != b"OB" or tag != PIXEL_DATA)
        else:
            end = value_at + ln
        out.append(Elem(tag, vr, at, value_at, end, ln))
        at = end
    if until_item_end:
        raise ValueError("no item delimiter")
    return out, at


def _elements(b: bytes) -> list[Elem]:
    assert b[128:132] == b"DICM"
    return _walk(b, 132)[0]


def _find(elems: list[Elem], tag: int) -> Elem | None:
    return next((e for e in elems if e.tag == tag), None)


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    if vr in LONG_VRS:
        return head + b"\0\0" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def _put(b: bytes, elems: list[Elem], tag: int, raw: bytes) -> bytes:
    """Replace top-level element ``tag`` by ``raw`` (or insert it in tag order)."""
    e = _find(elems, tag)
    if e is not None:
        return b[: e.start] + raw + b[e.end :]
    after = next((x for x in elems if x.tag > tag), None)
    at = after.start if after is not None else len(b)
    return b[:at] + raw + b[at:]


def _fragments(b: bytes, px: Elem) -> list[tuple[int, int]]:
    """(item header offset, value length) of the Pixel Data items, the Basic Offset Table first."""
    out, at = [], px.value_at
    while at + 8 <= px.end and _tag(b, at) == 0xFFFEE000:
        (ln,) = struct.unpack_from("<I", b, at + 4)
        out.append((at, ln))
        at += 8 + ln
    return out


# ---------------------------------------------------------------------------
# the mutations

# (keyword, tag, VR) of numeric attributes, each set to odd values of its own VR or retyped
NUMERIC = [
    ("Rows", 0x00280010, b"US"),
    ("Columns", 0x00280011, b"US"),
    ("BitsAllocated", 0x00280100, b"US"),
    ("BitsStored", 0x00280101, b"US"),
    ("SamplesPerPixel", 0x00280002, b"US"),
    ("PlanarConfiguration", 0x00280006, b"US"),
    ("NumberOfFrames", 0x00280008, b"IS"),
    ("TotalPixelMatrixColumns", 0x00480006, b"UL"),
    ("TotalPixelMatrixRows", 0x00480007, b"UL"),
    ("TotalPixelMatrixFocalPlanes", 0x00480303, b"UL"),
    ("NumberOfOpticalPaths", 0x00480302, b"UL"),
    ("ConcatenationFrameOffsetNumber", 0x00209228, b"UL"),
    ("InConcatenationNumber", 0x00209162, b"US"),
    ("InConcatenationTotalNumber", 0x00209163, b"US"),
    ("ImagedVolumeWidth", 0x00480001, b"FL"),
]
ODD_INTS = [0, 1, 2, 3, 0x7FFF, 0xFFFF, 2**31 - 1, 2**32 - 1, 4_000_000_000]
ODD_STRINGS = [b"-1", b"-2147483648", b"99999999999999", b"x", b"", b"1e9", b"2147483648", b"0"]

# top-level elements a viewer needs (deleted one at a time)
REQUIRED = [
    0x00020010,  # TransferSyntaxUID
    0x00080008,  # ImageType
    0x00080016,  # SOPClassUID
    0x00080018,  # SOPInstanceUID
    0x0020000D,  # StudyInstanceUID
    0x0020000E,  # SeriesInstanceUID
    0x00200052,  # FrameOfReferenceUID
    0x00209311,  # DimensionOrganizationType
    0x00280002,  # SamplesPerPixel
    0x00280004,  # PhotometricInterpretation
    0x00280008,  # NumberOfFrames
    0x00280010,  # Rows
    0x00280011,  # Columns
    0x00280100,  # BitsAllocated
    0x00480006,  # TotalPixelMatrixColumns
    0x00480007,  # TotalPixelMatrixRows
    0x52009229,  # SharedFunctionalGroupsSequence
    0x00480105,  # OpticalPathSequence
    PIXEL_DATA,
]

KINDS = [
    "truncate-header",
    "truncate-pixels",
    "flip-header",
    "numeric",
    "numeric-retyped",
    "pixel-items",
    "dimension-organization",
    "delete",
    "duplicate",
    "reorder",
    "instances",
    "transfer-syntax",
    "photometric",
    "sparse",
    "functional-groups",
    "concatenation",
    "double",
    "extended-offset-table",
]
# byte-level kinds that leave a walkable instance (two of them make a "double" case)
COMBINABLE = ["numeric", "numeric-retyped", "pixel-items", "dimension-organization", "delete", "duplicate", "transfer-syntax", "photometric"]
TRANSFER_SYNTAXES = [
    b"1.2.840.10008.1.2",  # implicit VR little endian (the data set is explicit)
    b"1.2.840.10008.1.2.1",  # explicit VR little endian: native, yet the Pixel Data is encapsulated
    b"1.2.840.10008.1.2.2",  # big endian
    b"1.2.840.10008.1.2.1.99",  # deflated
    b"1.2.840.10008.1.2.5",  # RLE
    b"1.2.840.10008.1.2.4.90",  # JPEG 2000
    b"1.2.840.10008.1.2.4.201",  # HTJ2K
    b"1.2.3",
    b"",
]


def _numeric_value(vr: bytes, rng: random.Random) -> bytes:
    v = rng.choice(ODD_INTS)
    if vr == b"US":
        return struct.pack("<H", v & 0xFFFF)
    if vr == b"UL":
        return struct.pack("<I", v & 0xFFFFFFFF)
    if vr == b"FL":
        return struct.pack("<f", rng.choice([0.0, -1.0, float("inf"), float("nan"), 1e38]))
    return str(v).encode()


def _mutate_pixels(b: bytes, elems: list[Elem], rng: random.Random) -> tuple[bytes, str]:
    px = _find(elems, PIXEL_DATA)
    assert px is not None and px.length == UNDEFINED
    frags = _fragments(b, px)
    ba = bytearray(b)
    kind = rng.choice(["length-huge", "length-odd", "length-short", "delimiter", "extra", "missing", "bot-beyond", "item-tag", "defined-length"])
    if kind.startswith("length"):
        i = rng.randrange(1, len(frags))
        at, ln = frags[i]
        new = {
            "length-huge": rng.choice([0x7FFFFFFF, 0xFFFFFFFE, len(b) * 2]),
            "length-odd": ln | 1 if ln % 2 == 0 else ln + 1,
            "length-short": rng.randrange(0, max(1, ln)),
        }[kind]
        struct.pack_into("<I", ba, at + 4, new)
        return bytes(ba), f"Pixel Data fragment {i} length {ln} -> {new}"
    if kind == "delimiter":
        at = px.end - 8
        if rng.random() < 0.5:
            return bytes(ba[:at]), "Pixel Data sequence delimiter dropped (end of file)"
        struct.pack_into("<HH", ba, at, 0xFFFE, rng.choice([0xE00D, 0xE000, 0x0000]))
        return bytes(ba), "Pixel Data sequence delimiter retagged"
    if kind == "extra":
        i = rng.randrange(1, len(frags) + 1)
        at = frags[i][0] if i < len(frags) else px.end - 8
        junk = rng.choice([b"\xff\xd8\xff\xd9", bytes(rng.randrange(256) for _ in range(64)), b""])
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(junk)) + junk
        return b[:at] + item + b[at:], f"extra Pixel Data fragment before item {i}"
    if kind == "missing":
        i = rng.randrange(1, len(frags))
        at, ln = frags[i]
        return b[:at] + b[at + 8 + ln :], f"Pixel Data fragment {i} removed"
    if kind == "bot-beyond":
        at, ln = frags[0]
        n = len(frags) - 1
        offs = [0] + [rng.choice([len(b) * 4, 0xFFFFFFF0, 0x7FFFFFFF, 1]) for _ in range(n - 1)]
        if rng.random() < 0.3:
            offs = offs[: rng.randrange(0, n + 1)] + [0xFFFFFFFF] * rng.randrange(0, 3)
        table = struct.pack(f"<{len(offs)}I", *offs)
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(table)) + table
        return b[:at] + item + b[at + 8 + ln :], f"Basic Offset Table {offs[:4]}... ({len(offs)} entries)"
    if kind == "item-tag":
        i = rng.randrange(0, len(frags))
        at, _ln = frags[i]
        struct.pack_into("<HH", ba, at, *rng.choice([(0xFFFE, 0xE00D), (0x7FE0, 0x0010), (0x0000, 0x0000)]))
        return bytes(ba), f"Pixel Data item {i} retagged"
    # defined-length: the Pixel Data claims a defined length over its items
    new = rng.choice([px.end - px.value_at, 0, 0xFFFFFFFE, 12])
    struct.pack_into("<I", ba, px.start + 8, new)
    return bytes(ba), f"Pixel Data length undefined -> {new}"


def _mutate_instance(b: bytes, rng: random.Random, kind: str) -> tuple[bytes, str]:
    elems = _elements(b)
    px = _find(elems, PIXEL_DATA)
    assert px is not None
    ba = bytearray(b)
    if kind == "truncate-header":
        cut = rng.choice([rng.randrange(0, 132), rng.randrange(132, px.start + 12)])
        return b[:cut], f"truncated in the header at {cut}"
    if kind == "truncate-pixels":
        cut = rng.randrange(px.value_at, px.end)
        return b[:cut], f"truncated in the Pixel Data at {cut} of {len(b)}"
    if kind == "flip-header":
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(128, px.start)
            ba[i] ^= 1 << rng.randrange(8)
        return bytes(ba), "bit flips in the header"
    if kind in ("numeric", "numeric-retyped"):
        kw, tag, vr = rng.choice(NUMERIC)
        if kind == "numeric":
            value = _numeric_value(vr, rng)
            return _put(b, elems, tag, _element(tag, vr, value)), f"{kw} ({vr.decode()}) = {value!r}"
        value = rng.choice(ODD_STRINGS)
        return _put(b, elems, tag, _element(tag, b"IS", value)), f"{kw} retyped IS {value!r}"
    if kind == "pixel-items":
        return _mutate_pixels(b, elems, rng)
    if kind == "dimension-organization":
        value = rng.choice([b"TILED_SPARSE", b"3D", b"", b"TILED_FULL\\TILED_SPARSE", b"X" * 64])
        return _put(b, elems, 0x00209311, _element(0x00209311, b"CS", value)), f"DimensionOrganizationType = {value[:20]!r}"
    if kind == "delete":
        tag = rng.choice(REQUIRED)
        e = _find(elems, tag)
        if e is None:
            return b, f"({tag:08x}) absent, nothing deleted"
        return b[: e.start] + b[e.end :], f"({tag:08x}) deleted"
    if kind == "transfer-syntax":
        value = rng.choice(TRANSFER_SYNTAXES)
        return _put(b, elems, 0x00020010, _element(0x00020010, b"UI", value)), f"TransferSyntaxUID = {value!r}"
    if kind == "extended-offset-table":  # an EOT (with its lengths) beside the Basic Offset Table
        frags = _fragments(b, px)[1:]
        first = frags[0][0]
        offsets, lengths = [at - first for at, _ln in frags], [ln for _at, ln in frags]
        k = rng.randrange(len(offsets))
        how = rng.choice(["length-huge", "offset-beyond", "fewer", "odd-size", "exact"])
        if how == "length-huge":
            lengths[k] = rng.choice([2**40, 2**33, 2**64 - 1])
        elif how == "offset-beyond":
            offsets[k] = rng.choice([len(b), 2**40, 2**64 - 16])
        elif how == "fewer":
            offsets, lengths = offsets[:k], lengths[:k]
        raw_o, raw_l = struct.pack(f"<{len(offsets)}Q", *offsets), struct.pack(f"<{len(lengths)}Q", *lengths)
        if how == "odd-size":
            raw_o = raw_o[:-4]
        b = _put(b, elems, 0x7FE00001, _element(0x7FE00001, b"OV", raw_o))
        return _put(b, _elements(b), 0x7FE00002, _element(0x7FE00002, b"OV", raw_l)), f"Extended Offset Table ({how}, frame {k})"
    if kind == "photometric":
        value = rng.choice([b"MONOCHROME2", b"PALETTE COLOR", b"RGB", b"YBR_FULL", b"YBR_ICT", b"", b"X"])
        return _put(b, elems, 0x00280004, _element(0x00280004, b"CS", value)), f"PhotometricInterpretation = {value!r}"
    top = [e for e in elems if e.tag >> 16 != 0x0002]
    if kind == "duplicate":
        e = rng.choice(top)
        return b[: e.end] + b[e.start : e.end] + b[e.end :], f"({e.tag:08x}) duplicated"
    # reorder: two neighbours swapped
    i = rng.randrange(0, len(top) - 1)
    x, y = top[i], top[i + 1]
    return b[: x.start] + b[y.start : y.end] + b[x.start : x.end] + b[y.end :], f"({x.tag:08x}) and ({y.tag:08x}) swapped"


def _edit_instance(p: Path, rng: random.Random, kind: str) -> str:
    """Attribute edits inside sequences, with pydicom (it writes these)."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(p)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if kind == "sparse":
        # TILED_SPARSE with a position per frame (the TILED_FULL grid), one of them made odd
        tw, th, cols = int(ds.Columns), int(ds.Rows), int(ds.TotalPixelMatrixColumns)
        across = -(-cols // tw)
        items = []
        for k in range(n):
            pos = Dataset()
            pos.ColumnPositionInTotalImagePixelMatrix = 1 + (k % across) * tw
            pos.RowPositionInTotalImagePixelMatrix = 1 + (k // across) * th
            pos.XOffsetInSlideCoordinateSystem, pos.YOffsetInSlideCoordinateSystem, pos.ZOffsetInSlideCoordinateSystem = "0", "0", "0"
            item = Dataset()
            item.PlanePositionSlideSequence = Sequence([pos])
            items.append(item)
        how = rng.choice(["huge", "negative", "zero", "duplicate", "fewer", "more", "no-position", "none"])
        pos = items[rng.randrange(n)].PlanePositionSlideSequence[0]
        if how == "huge":
            pos.ColumnPositionInTotalImagePixelMatrix = 2**31 - 1
        elif how == "negative":
            pos.RowPositionInTotalImagePixelMatrix = -(2**31)
        elif how == "zero":
            pos.ColumnPositionInTotalImagePixelMatrix = 0
        elif how == "duplicate" and n > 1:
            items[-1] = items[0]
        elif how == "fewer":
            items = items[:-1]
        elif how == "more":
            items = items + items[:1]
        elif how == "no-position":
            del items[0].PlanePositionSlideSequence
        ds.DimensionOrganizationType = "TILED_SPARSE"
        ds.PerFrameFunctionalGroupsSequence = Sequence(items)
        what = f"TILED_SPARSE, {len(items)} positions for {n} frames ({how})"
    elif kind == "functional-groups":
        how = rng.choice(["spacing", "empty-shared", "no-shared-item", "thickness", "optical-path"])
        shared = ds.get("SharedFunctionalGroupsSequence")
        if how == "empty-shared" or not shared:
            ds.SharedFunctionalGroupsSequence = Sequence([])
        elif how == "no-shared-item":
            ds.SharedFunctionalGroupsSequence = Sequence([Dataset(), Dataset()])
        elif how == "optical-path":
            ds.OpticalPathSequence = Sequence(rng.choice([[], [Dataset()], list(ds.get("OpticalPathSequence", [])) * 3]))
        else:
            pm = shared[0].get("PixelMeasuresSequence")
            if pm:
                value = rng.choice([["0", "0"], ["-1", "1e308"], ["nan", "inf"], ["1"], []])
                if how == "spacing":
                    pm[0].PixelSpacing = value
                else:
                    pm[0].SliceThickness = value[0] if value else None
        what = f"functional groups: {how}"
    else:  # concatenation: this instance claims to be a part of one
        ds.ConcatenationUID = pydicom.uid.generate_uid()
        ds.SOPInstanceUIDOfConcatenationSource = pydicom.uid.generate_uid()
        ds.InConcatenationNumber = rng.choice([1, 2, 0])
        ds.InConcatenationTotalNumber = rng.choice([1, 2, 0xFFFF])
        ds.ConcatenationFrameOffsetNumber = rng.choice([0, 1, n, 2**31 - 1, 2**32 - 1])
        what = f"concatenation part {ds.InConcatenationNumber}/{ds.InConcatenationTotalNumber} at frame offset {ds.ConcatenationFrameOffsetNumber}"
    ds.save_as(p)
    return what


def _mutate_folder(folder: Path, rng: random.Random) -> str:
    """Damage one instance of ``folder`` (or its set of instances); returns what was done."""
    files = sorted(folder.glob("*.dcm"))
    target = rng.choice(files)
    import pydicom

    label = "/".join(pydicom.dcmread(target, stop_before_pixels=True).ImageType[2:4])
    kind = rng.choice(KINDS)
    if kind in ("sparse", "functional-groups", "concatenation"):
        return f"{label}: {_edit_instance(target, rng, kind)}"
    if kind == "double":  # two damages in one instance (a geometry that agrees with itself, ...)
        data, what = _mutate_instance(target.read_bytes(), rng, rng.choice(COMBINABLE))
        try:
            data, second = _mutate_instance(data, rng, rng.choice(COMBINABLE))
            what += f"; {second}"
        except (AssertionError, ValueError, struct.error, IndexError):
            pass  # the first damage left nothing the walker can read
        target.write_bytes(data)
        return f"{label}: {what}"
    if kind != "instances":
        data, what = _mutate_instance(target.read_bytes(), rng, kind)
        target.write_bytes(data)
        return f"{label}: {what}"
    how = rng.choice(["series", "study", "frame-of-reference", "copy", "drop", "junk"])
    if how == "copy":  # the same instance twice (same SOP Instance UID)
        shutil.copyfile(target, folder / "copy.dcm")
        return f"{label}: instance copied"
    if how == "drop":
        target.unlink()
        return f"{label}: instance removed"
    if how == "junk":
        (folder / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + bytes(rng.randrange(256) for _ in range(200)))
        return "a junk .dcm beside the instances"
    ds = pydicom.dcmread(target)
    kw = {"series": "SeriesInstanceUID", "study": "StudyInstanceUID", "frame-of-reference": "FrameOfReferenceUID"}[how]
    setattr(ds, kw, pydicom.uid.generate_uid())
    ds.save_as(target)
    return f"{label}: {kw} changed (no longer fits the others)"


# ---------------------------------------------------------------------------
# the run


def _one_case(
    original: Path, case_dir: Path, out: Path, rng: random.Random, case_id: str, read_only: bool, options: tuple[str, ...] = ()
) -> tuple[list[str], str]:
    """``options``: run's options besides the target (``test_fuzz.draw_options``)."""
    src = case_dir / "slide"
    shutil.copytree(original, src)
    what = _mutate_folder(src, rng)
    cid = f"{case_id} ({what}){' ' + ' '.join(options) if options else ''}"
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
    found = _check_case(cid, case_dir, src, out, False, TARGET + options, one_slide=False)
    found += _leaks(cid, _tree_bytes(case_dir), out, DICOM_CANARIES)
    found += _verify_agrees(cid, out, src, TARGET + options, False)
    if read_only:
        found += _check_read_only(cid, case_dir, src, False, "inspect")
        found += _check_read_only(cid, case_dir, src, False, "verify")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10  # MiB (Linux counts KiB)
    if peak - peak_before > MAX_GROWTH_MIB:
        found.append(f"{cid}: the process's peak memory grew by {peak - peak_before} MiB in this case (bound {MAX_GROWTH_MIB} MiB)")
    return found, what


def test_fuzz_dicom(original, tmp_path):
    faulthandler.dump_traceback_later(CASE_TIMEOUT * 4, exit=True)  # a hang in C code still ends the test run
    try:
        rng, options_rng = generators(f"{SEED}:dicom")  # the damage, each case's options (test_fuzz.OPTIONS)
        problems: list[str] = []
        outcomes: dict[str, int] = {}
        for i in range(CASES):
            case_dir, out = tmp_path / f"c{i}", tmp_path / f"o{i}"
            found, what = _one_case(original, case_dir, out, rng, f"dicom #{i}", i % READ_ONLY_EVERY == 0, draw_options(options_rng))
            problems += found
            slides = _outcome(out, outcomes)
            print(f"#{i} {what}: {[s['status'] for s in slides]} {[s['error'] for s in slides if s['error']]}"[:300])  # shown by -s
            shutil.rmtree(case_dir, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(tmp_path / f"o{i}.quarantine", ignore_errors=True)
            faulthandler.dump_traceback_later(CASE_TIMEOUT * 4, exit=True)
        _judge_cases(f"dicom fuzz seed {SEED}", problems, outcomes, CASES)
    finally:
        faulthandler.cancel_dump_traceback_later()


def test_walker_reads_the_fixture(original):
    """The fuzzer's own walker finds every instance's encapsulated Pixel Data and its items."""
    for f in sorted(original.glob("*.dcm")):
        b = f.read_bytes()
        elems = _elements(b)
        px = _find(elems, PIXEL_DATA)
        assert px is not None and px.end == len(b) and px.length == UNDEFINED
        assert len(_fragments(b, px)) >= 2


# ---------------------------------------------------------------------------
# regressions: cases the fuzzer found, pinned


def _damaged(original: Path, tmp_path: Path, instance: str, mutate) -> tuple[Path, Path]:
    """The slide with ``mutate(bytes, elements) -> bytes`` applied to the instance named ``instance``."""
    case_dir = tmp_path / "case"
    src = case_dir / "slide"
    shutil.copytree(original, src)
    p = src / instance
    b = p.read_bytes()
    p.write_bytes(mutate(b, _elements(b)))
    return case_dir, src


def _without(tag: int):
    def mutate(b: bytes, elems: list[Elem]) -> bytes:
        e = _find(elems, tag)
        assert e is not None
        return b[: e.start] + b[e.end :]

    return mutate


def _refused(case_dir: Path, src: Path, out: Path, read_only: bool = True) -> list[dict]:
    problems = _check_case("regression", case_dir, src, out, False, TARGET, one_slide=False)
    if read_only:
        problems += _check_read_only("regression", case_dir, src, False, "inspect")
        problems += _check_read_only("regression", case_dir, src, False, "verify")
    assert not problems, "\n".join(problems)
    return json.loads((out / "wsianon-report.json").read_text())["slides"]


def test_volume_without_sop_instance_uid_is_refused(original, tmp_path):
    """Seed 5 #39: a VOLUME instance without its SOP Instance UID (Type 1) ended in an internal
    error (AttributeError in finalize_meta); it is refused, naming the file."""
    case_dir, src = _damaged(original, tmp_path, "3-volume.dcm", _without(0x00080018))
    slides = _refused(case_dir, src, tmp_path / "out")
    assert [s["status"] for s in slides] == ["error"] and "SOP Instance UID" in slides[0]["error"]


def test_verify_judges_a_volume_without_sop_instance_uid(original, tmp_path, cli):
    """``verify`` of the same folder ended in "internal error (AttributeError) while auditing"
    (``dicom: uids`` read the attribute unguarded); it now fails ``dicom: uids`` naming the file."""
    _case_dir, src = _damaged(original, tmp_path, "3-volume.dcm", _without(0x00080018))
    code, stdout, stderr = cli("verify", str(src))
    assert code == 1
    assert "internal error" not in stdout + stderr
    line = next(ln for ln in stdout.splitlines() if "dicom: uids" in ln)
    assert line.strip().startswith("FAIL") and "3-volume.dcm: SOPInstanceUID missing or empty" in line, line


def test_a_damaged_value_representation_is_refused_naming_the_file(original, tmp_path):
    """Seed 92 #59: bit flips turned SeriesInstanceUID's VR 'UI' into 'Ui' in the label instance;
    pydicom raises NotImplementedError when the value is first read (not in ``dcmread``), and
    ``run``, ``inspect`` and ``verify`` each ended in a traceback.  Now the file is refused, named."""

    def mutate(b: bytes, elems: list[Elem]) -> bytes:
        e = _find(elems, 0x0020000E)
        assert e is not None and b[e.start + 4 : e.start + 6] == b"UI"
        return b[: e.start + 4] + b"Ui" + b[e.start + 6 :]

    case_dir, src = _damaged(original, tmp_path, "0-label.dcm", mutate)
    slides = _refused(case_dir, src, tmp_path / "out")
    # the unreadable file is its own error; the instances that still group are judged as a slide
    errors = [s["error"] for s in slides if s["status"] == "error"]
    assert len(errors) == 1 and "not a readable DICOM file" in errors[0], slides  # (the error line names the file: _refused)


def test_a_damaged_vr_in_the_file_meta_is_refused_by_verify(original, tmp_path, cli):
    """Seed 95 #20: bit flips turned MediaStorageSOPInstanceUID's VR into 'UK' in the overview's
    File Meta Information; ``verify`` read it first in the closed-world check and ended in
    "internal error (NotImplementedError) while auditing".  The DICOM preflight now converts every
    element's value once: the file is refused, named, with its reason."""

    def mutate(b: bytes, elems: list[Elem]) -> bytes:
        e = _find(elems, 0x00020003)
        assert e is not None and b[e.start + 4 : e.start + 6] == b"UI"
        return b[: e.start + 4] + b"UK" + b[e.start + 6 :]

    case_dir, src = _damaged(original, tmp_path, "1-overview.dcm", mutate)
    _refused(case_dir, src, tmp_path / "out")  # run, inspect and verify: no traceback, no internal error
    code, stdout, stderr = cli("verify", str(src))
    assert code == 1
    (line,) = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert "1-overview.dcm" in line and "broken DICOM data set: an element cannot be decoded" in line, line


def test_a_decimal_string_list_that_is_no_number_is_quarantined_not_an_internal_error(original, tmp_path):
    """Seed 195 #65: bit flips grew SliceThickness's length in a VOLUME's shared functional groups
    so that its value swallowed the next element's header ("0.0005(\\x000\\x00DS..."): two values
    where the attribute holds one, the first no number.  pydicom keeps a decimal string that is no
    number as text and raised ValueError only when the engine trimmed the list to the attribute's
    multiplicity: an internal error.  The list is now left as it is for the verifier, which refuses
    it as it refuses a non-number within the multiplicity (not a number, too many values): the
    slide is quarantined, nothing placed."""

    def mutate(b: bytes, elems: list[Elem]) -> bytes:
        i = b.find(b"\x28\x00\x30\x00DS")  # PixelSpacing, inside SharedFunctionalGroupsSequence
        assert i > 0 and b.count(b"\x28\x00\x30\x00DS") == 1
        (n,) = struct.unpack_from("<H", b, i + 6)
        value = ("x" + "\\1" * ((n - 1) // 2)).ljust(n).encode()  # same length: 'x', then more values than its VM of 2
        return b[: i + 8] + value + b[i + 8 + n :]

    case_dir, src = _damaged(original, tmp_path, "3-volume.dcm", mutate)
    slides = _refused(case_dir, src, tmp_path / "out")  # run, inspect and verify: no traceback, no internal error
    assert [s["status"] for s in slides] == ["failed"], slides
    failed = {c["check"]: c["detail"] for c in slides[0]["verification"]["checks"] if not c["ok"]}
    assert "PixelSpacing: DS value is not a number" in failed.get("dicom: text vocabulary", ""), failed
    assert "PixelSpacing: 9 values where the standard allows 2" in failed.get("dicom: closed world", ""), failed
    assert not list((tmp_path / "out").rglob("*.dcm"))  # nothing placed


def _retyped(tag: int, vr: bytes, value: bytes):
    def mutate(b: bytes, elems: list[Elem]) -> bytes:
        return _put(b, elems, tag, _element(tag, vr, value))

    return mutate


@pytest.mark.parametrize("instance", ["2-thumbnail.dcm", "3-volume.dcm"])
def test_unreadable_number_of_frames_is_refused(original, tmp_path, instance):
    """Seed 105 #33: NumberOfFrames "x" (no integer) ended in an internal error (ValueError in
    offset_table_problem, which read it before the frame-geometry check that names it)."""
    case_dir, src = _damaged(original, tmp_path, instance, _retyped(0x00280008, b"IS", b"x"))
    slides = _refused(case_dir, src, tmp_path / "out")
    assert [s["status"] for s in slides] == ["error"], slides


@pytest.mark.parametrize("instance", ["0-label.dcm", "1-overview.dcm"])
def test_unreadable_width_of_a_dropped_instance_is_no_internal_error(original, tmp_path, instance):
    """Seed 90 #10: a LABEL's TotalPixelMatrixColumns retyped IS "x" ended in an internal error
    (ValueError in process_instances, which ordered the instances by int() of it). The LABEL and
    the OVERVIEW are dropped (default options), so their geometry is never checked: the slide is
    shared without them (a shared instance with such a value is refused, ``unplaced_frames``)."""
    case_dir, src = _damaged(original, tmp_path, instance, _retyped(0x00480006, b"IS", b"x"))
    slides = _refused(case_dir, src, tmp_path / "out")
    assert [s["status"] for s in slides] == ["ok"], slides


def _extended_offset_table(offsets: list[int], lengths: list[int]):
    def mutate(b: bytes, elems: list[Elem]) -> bytes:
        b = _put(b, elems, 0x7FE00001, _element(0x7FE00001, b"OV", struct.pack(f"<{len(offsets)}Q", *offsets)))
        return _put(b, _elements(b), 0x7FE00002, _element(0x7FE00002, b"OV", struct.pack(f"<{len(lengths)}Q", *lengths)))

    return mutate


@pytest.mark.parametrize("offsets,lengths", [([i * 100 for i in range(12)], [2**40] * 12), ([2**40 + i for i in range(12)], [100] * 12)])
def test_extended_offset_table_beyond_the_data_is_refused(original, tmp_path, offsets, lengths):
    """An Extended Offset Table whose lengths (or offsets) reach far beyond the file: the
    verifier read the source's frames with pydicom trusting it, which asked for a 1 TiB buffer
    per frame (the slide ended as "out of memory", and an allocation the kernel grants is
    unbounded memory); the table is judged against the file and the slide refused."""
    case_dir, src = _damaged(original, tmp_path, "3-volume.dcm", _extended_offset_table(offsets, lengths))
    slides = _refused(case_dir, src, tmp_path / "out")
    assert [s["status"] for s in slides] == ["error"], slides
    assert "Extended Offset Table" in slides[0]["error"], slides[0]["error"]


def _retyped_code_scheme(b: bytes, _elems: list[Elem]) -> bytes:
    """The third CodingSchemeDesignator (SH) of the instance retyped SL (one bit of its VR)."""
    at = -1
    for _ in range(3):
        at = b.index(b"\x08\x00\x02\x01SH", at + 1)
    return b[: at + 5] + b"L" + b[at + 6 :]


def test_element_of_a_numeric_vr_holding_text_is_rewritten(original, tmp_path):
    """Seed 206 #35 (bit flips in a VOLUME's header): a CodingSchemeDesignator retyped SL got
    the engine's text dummy; pydicom's writer raised OSError on it (it cannot pack text as a
    signed long), which the slide reported as "I/O error: I/O error" (the disk is healthy), and
    was then refused ("cannot be encoded"). Since stop 38 an element written with a VR its
    dictionary entry does not give it is removed and, where the IOD requires it, written back in
    its own VR as a removed value (here the dummy, Type 1): the slide is shared and verifies."""
    case_dir, src = _damaged(original, tmp_path, "3-volume.dcm", _retyped_code_scheme)
    slides = _refused(case_dir, src, tmp_path / "out")
    assert [s["status"] for s in slides] == ["ok"], slides
    assert any("written with a VR" in r["action"] and r["name"].endswith("CodingSchemeDesignator") for r in slides[0]["removed"]), slides[0]["removed"]


def _pixel_spacing_byte(b: bytes, _elems: list[Elem]) -> bytes:
    """One digit of the instance's PixelSpacing (DS, inside the Shared Functional Groups' Pixel
    Measures) made 0xFF, which is no character of the instance's UTF-8."""
    at = b.index(b"\x28\x00\x30\x00DS") + 8 + 3
    return b[:at] + b"\xff" + b[at + 1 :]


def test_a_value_that_cannot_be_written_back_is_refused_naming_the_instance(original, tmp_path):
    """Seed 129 #42 (bit flips in a VOLUME's header): a PixelSpacing byte that is no UTF-8 was read
    as U+FFFD; writing the header back, pydicom's writer failed to encode it, and its own wrapper of
    that error raised TypeError: the slide ended as an internal error naming the slide's first
    file. The instance is refused with the reason, named."""
    from .test_fuzz import _run_case

    case_dir, src = _damaged(original, tmp_path, "3-volume.dcm", _pixel_spacing_byte)
    slides = _refused(case_dir, src, tmp_path / "out", read_only=False)
    assert [s["status"] for s in slides] == ["error"], slides
    assert "cannot be encoded in its VR or character set (UnicodeEncodeError)" in slides[0]["error"], slides
    code, _, stderr, _ = _run_case(case_dir, src, tmp_path / "out2", False, extra=TARGET)
    err = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 1 and len(err) == 1 and err[0].startswith(f"error: {src / '3-volume.dcm'}: "), err


def test_verify_with_the_source_judges_as_run_does(original, tmp_path, cli):
    """Seed 13 #8 (a RESAMPLED level's PhotometricInterpretation YBR_FULL, which dciodvfy reports
    for JPEG Baseline in this IOD): ``run`` verified the output, holding it to no dciodvfy error the
    source instance did not have, and ``verify OUT --source SOURCE`` failed the same output: the
    audit judged it as if it had no source (found by the fuzzers' agreement check, stop 42).  With a
    DICOM source the audit now holds dciodvfy, the viewers and the UIDs to the source as ``run``
    does; without one, an error is still the output's own."""
    import pydicom

    case_dir = tmp_path / "case"
    src = case_dir / "slide"
    shutil.copytree(original, src)
    ds = pydicom.dcmread(src / "4-volume.dcm")
    ds.PhotometricInterpretation = "YBR_FULL"
    ds.save_as(src / "4-volume.dcm")
    out = tmp_path / "out"
    slides = _refused(case_dir, src, out, read_only=False)
    assert [s["status"] for s in slides] == ["ok"], slides
    (name,) = slides[0]["outputs"]
    code, stdout, _err = cli("verify", out / name, "--source", src)
    assert code == 0 and "no errors beyond the source's own" in stdout, stdout
    code, stdout, _err = cli("verify", out / name)
    assert code == 1 and "FAIL dicom: dciodvfy" in stdout, stdout


def _truncated_pixel_data(b: bytes, elems: list[Elem]) -> bytes:
    px = _find(elems, PIXEL_DATA)
    assert px is not None
    return b[: px.value_at + 200]


def test_run_names_the_damaged_instance(original, tmp_path):
    """A damaged instance that is not the slide's first file: ``run``'s one error line named the
    slide's first file (its display path) while ``verify`` named the damaged instance; both name
    the instance now (the source's own file, as the user gave it)."""
    from .test_fuzz import _run_case

    case_dir, src = _damaged(original, tmp_path, "3-volume.dcm", _truncated_pixel_data)
    slides = _refused(case_dir, src, tmp_path / "out", read_only=False)
    assert [s["status"] for s in slides] == ["error"], slides
    assert "3-volume" not in slides[0]["error"]  # the report keeps the reason only
    code, _, stderr, _ = _run_case(case_dir, src, tmp_path / "out2", False, extra=TARGET)
    err = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 1 and err == [f"error: {src / '3-volume.dcm'}: {slides[0]['error']}"], err
    code, _, stderr, _ = _run_case(case_dir, src, case_dir, False, "verify")
    assert [line.split(": ")[1] for line in stderr.splitlines() if line.startswith("error:")] == [str(src / "3-volume.dcm")]


@pytest.mark.parametrize("groups", ["absent", "empty"])
def test_tiled_sparse_without_positions_is_refused_as_such(original, tmp_path, groups):
    """A TILED_SPARSE VOLUME without per-frame positions (no Per-Frame Functional Groups, or
    none in it): its frames have no place; it was taken for the TILED_FULL grid and refused only
    when OpenSlide crashed on it ("the decoder crashed on it"), or, the sequence empty, shared.
    ``run`` and ``verify`` refuse it before decoding, saying why."""
    import pydicom
    from pydicom.sequence import Sequence

    from .test_fuzz import _run_case

    case_dir = tmp_path / "case"
    src = case_dir / "slide"
    shutil.copytree(original, src)
    ds = pydicom.dcmread(src / "3-volume.dcm")
    ds.DimensionOrganizationType = "TILED_SPARSE"
    if groups == "empty":
        ds.PerFrameFunctionalGroupsSequence = Sequence([])
    else:
        assert "PerFrameFunctionalGroupsSequence" not in ds
    ds.save_as(src / "3-volume.dcm")
    slides = _refused(case_dir, src, tmp_path / "out")
    assert [s["status"] for s in slides] == ["error"], slides
    assert "TILED_SPARSE image without per-frame positions" in slides[0]["error"], slides[0]["error"]
    code, _, stderr, _ = _run_case(case_dir, src, case_dir, False, "verify")
    err = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 1 and err == [f"error: {src / '3-volume.dcm'}: TILED_SPARSE image without per-frame positions; refused"], err


@pytest.mark.parametrize("value", [b"", b"YBR_ICT", b"MONOCHROME2"])
def test_photometric_interpretation_the_codec_does_not_carry_fails_verification(original, tmp_path, value):
    """A VOLUME of JPEG baseline frames (three components) whose Photometric Interpretation is
    empty, YBR_ICT (JPEG 2000's) or MONOCHROME2 (one sample): every check passed and the slide
    was shared, though a viewer draws it in other colours than the checks decoded, or not at all.
    ``dicom: photometric`` (PS3.5 8.2) quarantines it, and ``verify`` fails the output."""
    from .test_fuzz import _run_case

    case_dir, src = _damaged(original, tmp_path, "3-volume.dcm", _retyped(0x00280004, b"CS", value))
    out = tmp_path / "out"
    code, _, _, _ = _run_case(case_dir, src, out, False, extra=TARGET)
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    failed = {c["check"]: c["detail"] for c in slide["verification"]["checks"] if not c["ok"]}
    assert code == 1 and slide["status"] == "failed" and list(failed) == ["dicom: photometric"], (code, slide["status"], failed)
    assert (value.decode() or "an empty value") in failed["dicom: photometric"], failed
    quarantined = tmp_path / "out.quarantine" / slide["slide"]
    code, stdout, _, _ = _run_case(case_dir, quarantined, case_dir, False, "verify")
    assert code == 1 and "dicom: photometric" in stdout, stdout[-500:]


def test_photometric_interpretation_rule():
    """The rule by transfer syntax and samples; the values real files and wsidicomizer write pass."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset

    from wsianon.verify.dicom.photometric import photometric_problem

    from .conftest import SHARED

    def ds(ts: str, pi: str, spp: int) -> Dataset:
        d = Dataset()
        d.file_meta = FileMetaDataset()
        d.file_meta.TransferSyntaxUID = ts
        d.PhotometricInterpretation, d.SamplesPerPixel = pi, spp
        return d

    jpeg, j2k, j2k_lossless, native = "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1"
    for ts, pi, spp in [
        (jpeg, "YBR_FULL_422", 3),
        (jpeg, "RGB", 3),
        (jpeg, "YBR_FULL", 3),
        (jpeg, "MONOCHROME2", 1),
        (j2k, "YBR_ICT", 3),
        (j2k, "YBR_FULL_422", 3),
    ]:
        assert photometric_problem(ds(ts, pi, spp)) is None, (ts, pi)
    for ts, pi, spp in [(j2k_lossless, "YBR_RCT", 3), (native, "RGB", 3), (native, "MONOCHROME2", 1), ("1.2.840.10008.1.2.4.80", "RGB", 3)]:
        assert photometric_problem(ds(ts, pi, spp)) is None, (ts, pi)
    for ts, pi, spp in [
        (jpeg, "YBR_ICT", 3),
        (jpeg, "", 3),
        (j2k_lossless, "YBR_ICT", 3),
        (native, "YBR_RCT", 3),
        (jpeg, "RGB", 1),
        (native, "MONOCHROME2", 3),
    ]:
        assert photometric_problem(ds(ts, pi, spp)) is not None, (ts, pi, spp)
    secret = photometric_problem(ds(jpeg, "SMITH", 3))
    assert secret is not None and "SMITH" not in secret  # the instance's own text is never shown
    assert photometric_problem(ds("1.2.3.4", "SMITH", 3)) is None  # a transfer syntax the table does not know: not judged here
    real = sorted((SHARED / "dicom").rglob("*.dcm"))
    for f in real:
        assert photometric_problem(pydicom.dcmread(f, stop_before_pixels=True)) is None, f.name


def test_verify_source_drops_vocabulary_as_run_does(original, tmp_path):
    """Seed 160 #77: a bit flip turned the overview's ManufacturerModelName (0008,1090) "Aperio" into
    a RetrieveURL (0008,1190). ``run`` drops vocabulary from the source's values before its byte
    scan, so it verified the output (which keeps the volumes' model, "Aperio"); ``verify --source``
    scanned the source's values as read and failed it (a scanner model taken for an identifier).
    Both now judge the same list."""

    def edit(ds) -> None:
        ds.RetrieveURL = "Aperio"

    _run_and_verify_agree(original, tmp_path, "1-overview.dcm", edit)


def _run_and_verify_agree(original: Path, tmp_path: Path, name: str, edit) -> None:
    """The fixture with instance ``name`` changed by ``edit(dataset)``: ``run`` verifies it, and
    ``verify --source`` agrees."""
    import pydicom

    case_dir = tmp_path / "case"
    src = case_dir / "slide"
    shutil.copytree(original, src)
    ds = pydicom.dcmread(src / name)
    edit(ds)
    ds.save_as(src / name)
    out = tmp_path / "out"
    problems = _check_case("regression", case_dir, src, out, False, TARGET, one_slide=False)
    problems += _verify_agrees("regression", out, src, TARGET, False)
    assert not problems, "\n".join(problems)
    assert [s["status"] for s in json.loads((out / "wsianon-report.json").read_text())["slides"]] == ["ok"]


def test_verify_source_aligns_the_inventory_with_the_profile_as_run_does(original, tmp_path):
    """Seed 170 #70: a bit flip moved a volume's ContainerTypeCodeSequence (0040,0518) to the
    unnamed (0040,0508), and its CodeValue (a SNOMED code the profile keeps) became a field of the
    source's inventory. ``run``'s conversion aligns the inventory with the profile (the field is
    kept, no value that must vanish) and verified the output; ``verify --source`` read the source
    afresh, counted the code and failed it. The audit now aligns its reading as ``run`` does."""
    from pydicom.dataelem import DataElement

    def edit(ds) -> None:
        seq = ds.ContainerTypeCodeSequence
        assert seq and seq[0].CodeValue
        del ds.ContainerTypeCodeSequence
        ds.add(DataElement(0x00400508, "SQ", seq))

    _run_and_verify_agree(original, tmp_path, next(f.name for f in sorted(original.glob("*volume.dcm"))), edit)
