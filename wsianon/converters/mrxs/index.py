"""Index.dat: where every tile and every NONHIER record lies in the Data files.

Layout (OpenSlide's mirax reader): a 5-byte version, the SLIDE_ID, then pointers to the
hierarchical table (one record per zoom level and other HIER values) and the
nonhierarchical table (one record per NONHIER value).  A record points to a chain of
data pages; a page holds an item count, the next page, and 16-byte items
``(?, offset, length, file number)``.

:func:`read_index` walks a layout it knows (``index_version`` in the profile) and checks
every pointer against the file; the ``*_patch`` functions describe the rewrite
(new SLIDE_ID, records dropped from the nonhier table, their entries zeroed).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from wsianon.converters.mrxs.rules import rules
from wsianon.errors import CorruptInput
from wsianon.io.plan import Patch
from wsianon.io.safefile import read_whole_regular
from wsianon.io.safetext import os_reason

VERSION_BYTES = 5  # the version string before the SLIDE_ID


@dataclass
class NonHierRecord:
    layer: int
    val: int
    layer_name: str
    name: str
    section: str | None
    table_slot: int  # position in the flattened nonhier table
    pointer: int = 0  # value stored in the table
    entry_offset: int = 0  # Index.dat offset of (offset, size, fileno)
    page: int = 0  # Index.dat offset of its data page (0: none)
    count: int = 0  # the page's item count as the source has it
    offset: int = 0
    size: int = 0
    fileno: int = -1

    @property
    def present(self) -> bool:
        return self.fileno >= 0


@dataclass
class IndexInfo:
    supported: bool
    version: str
    size: int
    nonhier_table: int = 0
    hier_tiles: list[tuple[int, int, int]] = field(default_factory=list)  # (offset, length, fileno)
    # per zoom level, its items inside the grid: (image index, offset, length, fileno)
    zoom_items: list[list[tuple[int, int, int, int]]] = field(default_factory=list)
    # blobs of HIER layers other than the zoom levels (filter, focus ...): OpenSlide reads none of them
    other_hier: list[tuple[int, int, int]] = field(default_factory=list)
    # first data page of every HIER record of a layer other than the zoom levels (written empty)
    other_pages: list[int] = field(default_factory=list)


def _i32(data: bytes, off: int, path: Path, what: str) -> int:
    if off < 0 or off + 4 > len(data):
        raise CorruptInput(path, f"Index.dat truncated or corrupt: {what} is outside the file ({len(data)} bytes)")
    return struct.unpack_from("<i", data, off)[0]


def read_index(path: Path, slide_id: str, hier_counts: list[int], records: list[NonHierRecord], grid: tuple[int, int] | None = None) -> IndexInfo:
    """Check the header against ``slide_id``; in a known layout collect the level tiles and fill
    each record's location in place (``records`` in nonhier-table order).  ``grid``: the camera
    image grid (IMAGENUMBER_X, IMAGENUMBER_Y); a zoom-level item whose image index lies outside it
    is no tile OpenSlide draws and goes to ``other_hier``."""
    try:
        data = read_whole_regular(path)
    except OSError as exc:
        raise CorruptInput(path, f"cannot read Index.dat: {os_reason(exc)}") from None
    version = data[:VERSION_BYTES].decode("latin-1")
    info = IndexInfo(supported=False, version=version, size=len(data))
    if len(data) < VERSION_BYTES + len(slide_id):
        raise CorruptInput(path, "Index.dat truncated: shorter than its header")
    if data[VERSION_BYTES : VERSION_BYTES + len(slide_id)] != slide_id.encode("latin-1"):
        raise CorruptInput(path, "Index.dat does not carry the slide's SLIDE_ID")
    if version != rules()["index_version"]:
        return info  # a layout we cannot walk: handled fail-closed by the planner
    info.supported = True
    root = VERSION_BYTES + len(slide_id)
    hier_table = _i32(data, root, path, "hier table pointer")
    info.nonhier_table = _i32(data, root + 4, path, "nonhier table pointer")
    zoom_pages: set[int] = set()
    for i in range(sum(hier_counts)):
        if i < hier_counts[0]:
            info.zoom_items.append([])
            zoom_pages.update(_walk_hier_record(data, path, hier_table, i, info.hier_tiles, info.other_hier, grid, info.zoom_items[-1]))
        else:
            pages = _walk_hier_record(data, path, hier_table, i, info.other_hier, info.other_hier, None)
            info.other_pages.append(pages[0])
    spans = [(z, z + 8 + 16 * _i32(data, z, path, "page item count")) for z in zoom_pages] if info.other_pages else []
    for page in info.other_pages:
        if any(a < page + 8 and page < b for a, b in spans):
            # its page is written empty (no reader draws the layer): it must not be a zoom level's
            raise CorruptInput(path, "Index.dat corrupt: a HIER record of a layer other than the zoom levels shares its data page with a zoom level")
    for slot, rec in enumerate(records):
        _read_nonhier_record(data, path, info.nonhier_table, slot, rec)
    return info


def _walk_hier_record(
    data: bytes,
    path: Path,
    table: int,
    i: int,
    tiles: list[tuple[int, int, int]],
    outside: list[tuple[int, int, int]],
    grid: tuple[int, int] | None,
    items: list[tuple[int, int, int, int]] | None = None,
) -> list[int]:
    """Follow hier record ``i``'s page chain; its items' blobs are collected into ``tiles`` (those
    whose image index lies outside ``grid`` into ``outside``), the items inside into ``items``;
    the chain's pages, first page first."""
    ptr = _i32(data, table + 4 * i, path, f"hier record {i} pointer")
    if _i32(data, ptr, path, f"hier record {i}") != 0:
        raise CorruptInput(path, f"Index.dat corrupt: hier record {i} does not start with 0")
    page = _i32(data, ptr + 4, path, f"hier record {i} page pointer")
    seen: set[int] = set()
    chain: list[int] = []
    while True:
        if page in seen:
            raise CorruptInput(path, "Index.dat corrupt: data pages loop")
        seen.add(page)
        chain.append(page)
        count = _i32(data, page, path, "page item count")
        nxt = _i32(data, page + 4, path, "next page pointer")
        if count < 0:
            raise CorruptInput(path, "Index.dat corrupt: negative page item count")
        if count:  # the last item lies inside the file
            _i32(data, page + 8 + 16 * count - 4, path, "page items")
        for index, off, ln, fno in _page_tiles(data, path, page, count):
            inside = grid is None or index < grid[0] * grid[1]
            (tiles if inside else outside).append((off, ln, fno))
            if inside and items is not None:
                items.append((index, off, ln, fno))
        if nxt == 0:
            return chain
        if grid is not None and nxt != page + 8 + 16 * count:
            # OpenSlide reads the next page where this one ends (it takes a non-zero pointer as
            # "more follow" and never seeks to it): a page elsewhere makes it draw other bytes as
            # items than the ones the chain names (a level-1 image drawn at level 0's origin)
            raise CorruptInput(
                path, "Index.dat corrupt: a data page's next-page pointer is not where the page ends (readers disagree about the slide's images)"
            )
        page = nxt


def _page_tiles(data: bytes, path: Path, page: int, count: int) -> list[tuple[int, int, int, int]]:
    out = []
    for k in range(count):
        index, off, ln, fno = struct.unpack_from("<iiii", data, page + 8 + 16 * k)
        if index < 0 or off < 0 or ln < 0 or fno < 0:
            raise CorruptInput(path, "Index.dat corrupt: negative image index, tile offset, length or file number")
        out.append((index, off, ln, fno))
    return out


def _read_nonhier_record(data: bytes, path: Path, table: int, slot: int, rec: NonHierRecord) -> None:
    """Fill ``rec``'s table pointer and, when it has data, its entry and blob location."""
    ptr = _i32(data, table + 4 * slot, path, f"nonhier record {slot} pointer")
    rec.pointer = ptr
    if ptr == 0:
        return
    if _i32(data, ptr, path, f"nonhier record {slot}") != 0:
        raise CorruptInput(path, f"Index.dat corrupt: nonhier record {slot} does not start with 0")
    page = _i32(data, ptr + 4, path, f"nonhier record {slot} page pointer")
    count = _i32(data, page, path, "nonhier page item count")
    nxt = _i32(data, page + 4, path, "nonhier page next pointer")
    if nxt and not 0 <= nxt <= len(data) - 8:
        # no reader follows it (OpenSlide skips it; the output's is 0), but a pointer out of the
        # file is a damaged index: refused, as the closed-world walk that followed it did
        raise CorruptInput(path, f"Index.dat corrupt: nonhier record {slot}'s next-page pointer is outside the file")
    rec.page, rec.count = page, count
    if count < 1:
        return
    rec.entry_offset = page + 16
    rec.offset = _i32(data, page + 16, path, "nonhier blob offset")
    rec.size = _i32(data, page + 20, path, "nonhier blob size")
    rec.fileno = _i32(data, page + 24, path, "nonhier blob file number")
    if rec.offset < 0 or rec.size < 0:
        raise CorruptInput(path, f"Index.dat corrupt: nonhier record {slot} has a negative offset or size")


# -- the rewrite ---------------------------------------------------------------------------


def slide_id_patch(old: str, new: str) -> Patch:
    """The new SLIDE_ID in the header (same length: every pointer stays valid)."""
    return Patch(VERSION_BYTES, len(old), new.encode("latin-1"), "SLIDE_ID replaced")


def nonhier_table_patch(index: IndexInfo, records: list[NonHierRecord], removed: set[int]) -> Patch:
    """The nonhier pointer table without the removed slots (kept pointers move up, zeros fill the end)."""
    table = [r.pointer for r in records if r.table_slot not in removed]
    table += [0] * (len(records) - len(table))
    return Patch(index.nonhier_table, 4 * len(table), struct.pack(f"<{len(table)}i", *table), "associated records removed")


def nonhier_page_patch(rec: NonHierRecord) -> Patch:
    """A NONHIER record's data page in its one form: one item (count 1, next page 0, the two
    reserved values 0, then offset, size, file number), or none (count 0, next page 0).  OpenSlide
    reads the count (at least 1), skips the next-page pointer, requires the two reserved values to
    be 0 and reads the first item only; the items after it and the pages the pointer names are no
    longer referenced (closed world: zeroed)."""
    if rec.count >= 1:
        return Patch(rec.page, 16, struct.pack("<iiii", 1, 0, 0, 0), "NONHIER data page: one item, reserved values zero")
    return Patch(rec.page, 8, None, "NONHIER data page: no item")


def empty_page_patch(page: int) -> Patch:
    """The first data page of a HIER record of a layer other than the zoom levels, emptied (count 0,
    next page 0): no reader draws those layers (OpenSlide reads the zoom levels only), so their
    items' image index, offset and file number hold nothing a reader uses."""
    return Patch(page, 8, None, "HIER record of a non-zoom layer: data page emptied")


def entry_zero_patch(rec: NonHierRecord) -> Patch:
    """Zero a removed record's (offset, size, file number) entry."""
    return Patch(rec.entry_offset, 12, None, f"{rec.name} record zeroed")


def entry_size_patch(rec: NonHierRecord, size: int) -> Patch:
    """A record's blob size (a blank label shorter than the image it replaces)."""
    return Patch(rec.entry_offset + 4, 4, struct.pack("<i", size), "label size")


def zero_after_header_patch(index: IndexInfo, slide_id: str) -> Patch | None:
    """Fail-closed for a layout we cannot walk: everything after the header zeroed."""
    end = VERSION_BYTES + len(slide_id)
    if index.size > end:
        return Patch(end, index.size - end, None, "unreadable index zeroed (fail-closed)")
    return None
