"""Container-level TIFF edits expressed as byte patches (no vendor semantics).

Every function returns :class:`~wsianon.io.plan.Patch` objects computed from a
:class:`~wsianon.io.tiff.TiffStructure`; nothing is written here.
"""

from __future__ import annotations

from wsianon.io.plan import Patch
from wsianon.io.tiff import ASCII, IFD, Entry, Kind, TiffStructure


class Appender:
    """Bytes to append to a file, handing out their future offsets."""

    def __init__(self, base_size: int, align: int = 2):
        self.base = base_size
        self.buf = bytearray()
        self.align = align

    def add(self, data: bytes) -> int:
        pad = (-(self.base + len(self.buf))) % self.align
        self.buf += b"\0" * pad
        off = self.base + len(self.buf)
        self.buf += data
        return off

    @property
    def data(self) -> bytes:
        return bytes(self.buf)


def unlink_ifds(ts: TiffStructure, remove: set[int], reason: str = "unlink IFD") -> list[Patch]:
    """Patches that drop the IFDs with the given indices from the chain.

    Works for the first, a middle or the last IFD, and for several at once.
    """
    keep = [ifd for ifd in ts.ifds if ifd.index not in remove]
    if not keep:
        raise ValueError("cannot unlink every IFD of a TIFF")
    patches: list[Patch] = []
    # header pointer
    if ts.ifds[0].index in remove:
        patches.append(Patch(ts.first_field_offset, ts.first_field_size, ts.first_pointer_bytes(keep[0].offset), f"{reason}: first IFD pointer"))
    for pos, ifd in enumerate(keep):
        new_next = keep[pos + 1].offset if pos + 1 < len(keep) else 0
        if new_next != ifd.next_offset:
            patches.append(Patch(ifd.next_field_offset, ts.next_size, ts.next_pointer_bytes(new_next), f"{reason}: next pointer of IFD {ifd.index}"))
    # orphaned IFDs no longer point anywhere (a forensic walker cannot follow them)
    for ifd in ts.ifds:
        if ifd.index in remove and ifd.next_offset:
            patches.append(Patch(ifd.next_field_offset, ts.next_size, bytes(ts.next_size), f"{reason}: orphan IFD {ifd.index} next pointer cleared"))
    return patches


def wipe_image_data(ts: TiffStructure, ifd: IFD, reason: str = "wipe image data") -> list[Patch]:
    """Zero every strip/tile of an IFD (the pixels are destroyed, not just unlinked)."""
    return [Patch(off, cnt, None, reason) for off, cnt in ts.data_spans(ifd) if cnt]


def _count_bytes(ts: TiffStructure, count: int) -> bytes:
    return ts.pack("Q" if ts.kind is Kind.BIG else "I", count)


def _count_field(ts: TiffStructure, entry: Entry) -> tuple[int, int]:
    return entry.entry_offset + 4, (8 if ts.kind is Kind.BIG else 4)


def _offset_patches(ts: TiffStructure, entry: Entry, new_offset: int, reason: str) -> list[Patch]:
    field_len = 8 if ts.kind is Kind.BIG else 4
    if ts.kind is Kind.BIG:
        return [Patch(entry.field_offset, 8, ts.pack("Q", new_offset), reason)]
    patches = [Patch(entry.field_offset, field_len, ts.pack("I", new_offset & 0xFFFFFFFF), reason)]
    if ts.kind is Kind.NDPI and entry.high_offset is not None:
        patches.append(Patch(entry.high_offset, 4, ts.pack("I", new_offset >> 32), reason + " (high bits)"))
    elif new_offset > 0xFFFFFFFF:
        raise ValueError("relocated value beyond 4 GiB in a classic TIFF")
    return patches


def set_bytes(
    ts: TiffStructure,
    entry: Entry,
    data: bytes,
    reason: str,
    appender: Appender | None = None,
) -> list[Patch]:
    """Make an ASCII/UNDEFINED/BYTE entry hold ``data``.

    ASCII data gets a NUL terminator.  When it fits in the old location the
    rest of the old value is zero-filled (no stale bytes behind the
    terminator) and the count is updated.  When it does not fit, the value is
    appended via ``appender``, the entry re-pointed, and the old bytes zeroed.
    """
    if entry.type == ASCII and (not data.endswith(b"\0")):
        data = data + b"\0"
    new_count = len(data)
    patches: list[Patch] = []
    field_len = 8 if ts.kind is Kind.BIG else 4
    ndpi_ascii = ts.kind is Kind.NDPI and entry.type == ASCII  # NDPI readers never look inline for text
    cnt_off, cnt_len = _count_field(ts, entry)
    if new_count <= field_len and not ndpi_ascii:
        # the new value lives inside the entry
        if not entry.inline and entry.size:
            patches.append(Patch(entry.value_offset, entry.size, None, reason + " (old value zeroed)"))
        patches.append(Patch(entry.field_offset, field_len, data + bytes(field_len - new_count), reason))
        if new_count != entry.count:
            patches.append(Patch(cnt_off, cnt_len, _count_bytes(ts, new_count), reason + " (count)"))
        return patches
    if not entry.inline and new_count <= entry.size:
        # fits where the old value was: overwrite, zero the rest
        patches.append(Patch(entry.value_offset, entry.size, data + bytes(entry.size - new_count), reason))
        if new_count != entry.count:
            patches.append(Patch(cnt_off, cnt_len, _count_bytes(ts, new_count), reason + " (count)"))
        return patches
    if appender is None:
        raise ValueError(f"tag {entry.tag}: new value larger than the old one and no appender given")
    if not entry.inline and entry.size:
        patches.append(Patch(entry.value_offset, entry.size, None, reason + " (old value zeroed)"))
    new_off = appender.add(data)
    patches.extend(_offset_patches(ts, entry, new_off, reason + " (relocated)"))
    patches.append(Patch(cnt_off, cnt_len, _count_bytes(ts, new_count), reason + " (count)"))
    return patches


def blank_entry(ts: TiffStructure, entry: Entry, reason: str) -> list[Patch]:
    """Zero a value in place, keeping its count and type (``""`` for ASCII)."""
    if entry.size == 0:
        return []
    if entry.type == ASCII:
        return set_bytes(ts, entry, b"", reason)
    return [Patch(entry.value_offset, entry.size, None, reason)]


def blank_all_ascii(ts: TiffStructure, ifd: IFD, reason: str) -> list[Patch]:
    patches: list[Patch] = []
    for e in ts.iter_ascii_entries(ifd):
        patches.extend(blank_entry(ts, e, reason))
    return patches
