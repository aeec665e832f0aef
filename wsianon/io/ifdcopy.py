"""Dropping IFDs from the front of a chain while a new first IFD inherits tags.

Several vendor readers look for their metadata in IFD 0 only (Ventana: the
iScan XMP; Leica: the ``<scn>`` XML), and that IFD is often the one that must
go (the label/macro photo).  ``drop_ifds`` unlinks any set of IFDs; when IFD 0
is among them and ``first_overrides`` are given, the new first IFD is written
as a fresh copy (appended to the file) carrying the extra or replaced entries,
the header points at the copy, and the original directory block is zeroed.

No vendor semantics here: callers say which tags to add and what they hold.
Not supported for NDPI (its IFDs carry high-offset extensions).
"""

from __future__ import annotations

from wsianon.io.plan import Patch
from wsianon.io.tiff import ASCII, BYTE, IFD, TYPES, UNDEFINED, Kind, TiffStructure
from wsianon.io.tiffedit import Appender


def _entry_bytes(ts: TiffStructure, tag: int, typ: int, count: int, value: bytes, appender: Appender) -> bytes:
    """Encode one IFD entry; values that do not fit the field go to ``appender``."""
    big = ts.kind is Kind.BIG
    field_len = 8 if big else 4
    if len(value) <= field_len:
        field = value + bytes(field_len - len(value))
    else:
        off = appender.add(value)
        if not big and off > 0xFFFFFFFF:
            raise ValueError("relocated value beyond 4 GiB in a classic TIFF")
        field = ts.pack("Q" if big else "I", off)
    head = ts.pack("HHQ" if big else "HHI", tag, typ, count)
    return head + field


def build_ifd(
    ts: TiffStructure,
    entries: dict[int, tuple[int, bytes]],
    next_offset: int,
    appender: Appender,
) -> int:
    """Append a brand-new IFD with the given entries (tag -> (type, raw value)); returns its offset."""
    ifd = IFD(index=-1, offset=0)
    return build_ifd_copy(ts, ifd, entries, next_offset, appender)


def build_ifd_copy(
    ts: TiffStructure,
    ifd: IFD,
    overrides: dict[int, tuple[int, bytes]],
    next_offset: int,
    appender: Appender,
    drop_tags: set[int] | frozenset[int] = frozenset(),
) -> int:
    """Append a copy of ``ifd`` with entries replaced/added; returns its offset.

    ``overrides`` maps tag -> (TIFF type, raw value bytes).  ASCII values get a
    NUL terminator when missing.  Entries not overridden keep their original
    raw entry bytes (so out-of-line values stay where they are).
    """
    if ts.kind is Kind.NDPI:
        raise ValueError("IFD copies are not supported for NDPI")
    big = ts.kind is Kind.BIG
    entry_size = 20 if big else 12
    # values first (they are appended before the directory block)
    encoded: dict[int, bytes] = {}
    for tag, e in ifd.entries.items():
        if tag in overrides or tag in drop_tags:
            continue
        encoded[tag] = ts.read(e.entry_offset, entry_size)
    for tag, (typ, value) in overrides.items():
        if typ == ASCII and not value.endswith(b"\0"):
            value += b"\0"
        if typ not in (ASCII, UNDEFINED, BYTE):
            unit = TYPES[typ][1]
            if len(value) % unit:
                raise ValueError(f"tag {tag}: value length not a multiple of the type size")
            count = len(value) // unit
        else:
            count = len(value)
        encoded[tag] = _entry_bytes(ts, tag, typ, count, value, appender)
    block = ts.pack("Q" if big else "H", len(encoded))
    for tag in sorted(encoded):
        block += encoded[tag]
    block += ts.next_pointer_bytes(next_offset)
    # directory blocks must start on a word boundary (8 for BigTIFF to be safe)
    pad = (-(appender.base + len(appender.buf))) % (8 if big else 2)
    appender.buf += b"\0" * pad
    off = appender.add(block)
    if not big and off > 0xFFFFFFFF:
        raise ValueError("relocated IFD beyond 4 GiB in a classic TIFF")
    assert entry_size * len(encoded) + (8 if big else 2) + ts.next_size == len(block)
    return off


def zero_ifd_block(ts: TiffStructure, ifd: IFD, reason: str) -> Patch:
    """Zero the whole directory block of an IFD (count, entries, next pointer)."""
    return Patch(ifd.offset, ifd.end - ifd.offset, None, reason)


def drop_ifds(
    ts: TiffStructure,
    remove: set[int],
    appender: Appender,
    first_overrides: dict[int, tuple[int, bytes]] | None = None,
    reason: str = "unlink IFD",
    zero_removed: bool = True,
    new_first_offset: int | None = None,
) -> tuple[list[Patch], int | None]:
    """Unlink ``remove`` from the chain.

    When the first IFD is removed and ``first_overrides`` is given, the new
    first IFD is re-created at the end of the file with those entries and its
    original block is zeroed.  ``zero_removed`` zeroes the directory blocks of
    the removed IFDs (their offsets/values can no longer be walked).
    ``new_first_offset``: the header points there instead (a new IFD the
    caller appended, whose next pointer leads to the first kept IFD).
    Returns (patches, index of the relocated IFD or None).
    """
    keep = [ifd for ifd in ts.ifds if ifd.index not in remove]
    if not keep:
        raise ValueError("cannot unlink every IFD of a TIFF")
    patches: list[Patch] = []
    relocated: int | None = None
    first_removed = ts.ifds[0].index in remove
    zeroed: set[int] = set(remove) if zero_removed else set()
    if first_removed and first_overrides:
        new_first = keep[0]
        nxt = keep[1].offset if len(keep) > 1 else 0
        off = build_ifd_copy(ts, new_first, first_overrides, nxt, appender)
        patches.append(Patch(ts.first_field_offset, ts.first_field_size, ts.first_pointer_bytes(off), f"{reason}: first IFD pointer"))
        patches.append(zero_ifd_block(ts, new_first, f"{reason}: original block of relocated IFD {new_first.index}"))
        zeroed.add(new_first.index)
        relocated = new_first.index
        chain = keep[1:]
    else:
        if first_removed or new_first_offset is not None:
            target = keep[0].offset if new_first_offset is None else new_first_offset
            patches.append(Patch(ts.first_field_offset, ts.first_field_size, ts.first_pointer_bytes(target), f"{reason}: first IFD pointer"))
        chain = keep
    for pos, ifd in enumerate(chain):
        new_next = chain[pos + 1].offset if pos + 1 < len(chain) else 0
        if new_next != ifd.next_offset:
            patches.append(Patch(ifd.next_field_offset, ts.next_size, ts.next_pointer_bytes(new_next), f"{reason}: next pointer of IFD {ifd.index}"))
    for ifd in ts.ifds:
        if ifd.index in zeroed:
            if ifd.index in remove:
                patches.append(zero_ifd_block(ts, ifd, f"{reason}: IFD {ifd.index} block zeroed"))
        elif ifd.index in remove and ifd.next_offset:
            patches.append(Patch(ifd.next_field_offset, ts.next_size, bytes(ts.next_size), f"{reason}: orphan IFD {ifd.index} next pointer cleared"))
    return patches, relocated


def orphan_values(ts: TiffStructure, remove: set[int], types: tuple[int, ...] = (ASCII, UNDEFINED, BYTE)) -> list[Patch]:
    """Zero-fill patches for out-of-line values of removed IFDs that no kept IFD shares."""
    kept_spans = {(e.value_offset, e.size) for ifd in ts.ifds if ifd.index not in remove for e in ifd.entries.values() if not e.inline}
    kept_starts = sorted(kept_spans)
    out: list[Patch] = []
    for ifd in ts.ifds:
        if ifd.index not in remove:
            continue
        for e in ifd.entries.values():
            if e.inline or not e.size or e.type not in types:
                continue
            a, b = e.value_offset, e.value_offset + e.size
            if any(o < b and o + s > a for o, s in kept_starts):
                continue
            out.append(Patch(a, e.size, None, f"orphaned value of tag {e.tag} in IFD {ifd.index} zeroed"))
    return out
