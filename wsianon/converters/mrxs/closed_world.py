"""Closed world for MRXS outputs: a post-pass over the redactor's Plan.

Called by :func:`wsianon.converters.closed_world.close_plan`, which owns the
simulated output (:class:`~wsianon.converters.closed_world.PatchedView`) and the
zeroing of unreferenced bytes.  Here:

* Slidedat.ini keeps only the sections and keys the profile allows
  (``wsianon/profiles/data/mrxs.json``, ``closed_world``; the HIERARCHICAL
  section names the layer sections a slide has); comments and free text go;
  removals are counted, never named (a name may be text another tool wrote);
* Index.dat keeps only the bytes its header, tables, record pointers and
  the values a reader reads of the record pages take, as the plan leaves them (a non-zoom
  HIER record's page and a NONHIER page's next pointer, reserved values and further items
  are zero);
* each Data file keeps only its header and the regions a kept Index record
  points to.  Every other byte is zeroed.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path, PurePosixPath

from wsianon.converters.closed_world import PatchedView, _merge, _zero_unreferenced
from wsianon.converters.mrxs.ini import IniDoc  # the same line model that rendered the file
from wsianon.errors import CorruptInput
from wsianon.io.plan import FilePlan, Plan
from wsianon.profiles import load
from wsianon.profiles.closed_world import mrxs_base_sections, mrxs_key_allowed


def close_mrxs(plan: Plan) -> None:
    """Add the closed-world edits to the MRXS ``plan``; ``plan.closed_world`` reports them."""
    ini_fp = next((f for f in plan.files if f.content is not None and PurePosixPath(f.dest).name == "Slidedat.ini"), None)
    report: dict = {"unreferenced_bytes_zeroed": 0, "tags_dropped": [], "ini_keys_removed": 0, "ini_sections_removed": 0}
    plan.closed_world = report
    if ini_fp is None:
        return
    ini = _close_ini(plan, ini_fp, report)
    sid = ini.get("GENERAL", "SLIDE_ID") or ""
    idx_name = ini.get("HIERARCHICAL", "INDEXFILE")
    by_name = {PurePosixPath(f.dest).name: f for f in plan.files if f.source is not None}
    idx_fp = by_name.get(idx_name or "")
    if idx_fp is None or not sid:
        return
    try:
        n_zoom = ini.int("HIERARCHICAL", "HIER_0_COUNT")
        n_hier = sum(ini.int("HIERARCHICAL", f"HIER_{i}_COUNT") for i in range(ini.int("HIERARCHICAL", "HIER_COUNT")))
        n_non = sum(ini.int("HIERARCHICAL", f"NONHIER_{i}_COUNT") for i in range(ini.int("HIERARCHICAL", "NONHIER_COUNT")))
        nfiles = ini.int("DATAFILE", "FILE_COUNT")
    except Exception:
        return
    data = _close_index(idx_fp, sid, (n_zoom, n_hier), n_non, report)
    if data is None:
        return
    for i in range(nfiles):
        fp = by_name.get(ini.get("DATAFILE", f"FILE_{i}") or "")
        if fp is not None:
            report["unreferenced_bytes_zeroed"] += _close_data_file(fp, [(0, 5 + len(sid))] + data.get(i, []))


def _close_ini(plan: Plan, ini_fp: FilePlan, report: dict) -> IniDoc:
    """Delete the sections, keys, comments and free text of Slidedat.ini the profile does not
    allow, and write every kept line in its one form (``IniDoc.canonical``); the ini as it now is."""
    assert ini_fp.content is not None, "chosen for its content"
    ini = IniDoc(ini_fp.content, Path(ini_fp.dest))
    sections = set(mrxs_base_sections()) | {(l.value or "").strip() for l in ini.kv() if l.section == "HIERARCHICAL" and (l.key or "").endswith("_SECTION")}
    keys_removed = sections_removed = 0
    dropped_section = False
    for l in ini.lines:
        if l.deleted:
            continue
        if l.kind == "section":
            dropped_section = l.section not in sections
            sections_removed += dropped_section
        if dropped_section or (l.kind in ("comment", "other") and l.text.strip()):
            l.deleted = True
            keys_removed += l.kind == "kv"
        elif l.kind == "kv" and not mrxs_key_allowed(l.section, l.key or ""):
            l.deleted = True
            keys_removed += 1
    ini.canonical()
    ini_fp.content = ini.render()
    if keys_removed or sections_removed:
        # key and section names may themselves be text another tool wrote: counted, never named
        plan.remove("field", "Slidedat.ini: keys/sections not allowed by the profile", f"removed ({keys_removed} key(s), {sections_removed} section(s))")
    report["ini_keys_removed"], report["ini_sections_removed"] = keys_removed, sections_removed
    return ini


def _close_index(idx_fp: FilePlan, sid: str, n_hier: tuple[int, int], n_non: int, report: dict) -> dict[int, list[tuple[int, int]]] | None:
    """Zero the bytes of Index.dat (as the plan leaves it) that no table or record page
    references; the Data-file regions its records point to (file number -> ranges), or
    None for a layout the redactor zeroed after its header."""
    assert idx_fp.source is not None, "by_name holds files with a source only"
    fd = os.open(idx_fp.source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        view = PatchedView(idx_fp, fd, size)
        if view.pread(0, 5) != load_mrxs_version():
            return None  # a layout the redactor zeroed after its header (fail-closed there)
        try:
            refs, data = _index_references(view, sid, n_hier, n_non)
        except _Damaged as exc:  # the analysis read less of Index.dat than this walk: refused here
            raise CorruptInput(idx_fp.source, exc.reason) from None
        report["unreferenced_bytes_zeroed"] += _zero_unreferenced(idx_fp, fd, size, view.size, _merge(refs), [])
    finally:
        os.close(fd)
    return data


def _index_references(view: PatchedView, sid: str, n_hier: tuple[int, int], n_non: int) -> tuple[list[tuple[int, int]], dict[int, list[tuple[int, int]]]]:
    """(byte ranges of Index.dat that the header, tables, record pointers and the values a reader
    reads of the pages take, Data-file regions its records point to).  ``n_hier``: (zoom-level
    records, all HIER records).  A non-zoom HIER record's page takes nothing (the redactor writes
    it empty: zeros), a NONHIER page its count and its one item's offset, size and file number
    (its next-page pointer and reserved values are zero, other items unreferenced)."""
    root = 5 + len(sid)
    refs: list[tuple[int, int]] = [(0, root + 8)]
    data: dict[int, list[tuple[int, int]]] = {}
    ht, nt = _i32(view, root), _i32(view, root + 4)
    n_zoom, n_all = n_hier
    refs.append((ht, ht + 4 * n_all))
    for i in range(n_all):
        ptr = _i32(view, ht + 4 * i)
        refs.append((ptr, ptr + 8))
        if i < n_zoom:
            _walk_pages(view, _i32(view, ptr + 4), 16, refs, data, 4)
    refs.append((nt, nt + 4 * n_non))
    for slot in range(n_non):
        ptr = _i32(view, nt + 4 * slot)
        if ptr:
            refs.append((ptr, ptr + 8))
            page = _i32(view, ptr + 4)
            refs.append((page, page + 4))
            if _i32(view, page) >= 1:
                refs.append((page + 16, page + 28))
                off, ln, fno = struct.unpack("<iii", _exact(view, page + 16, 12))
                if ln > 0:
                    data.setdefault(fno, []).append((off, off + ln))
    return refs, data


def _exact(view: PatchedView, off: int, n: int) -> bytes:
    b = view.pread(off, n) if off >= 0 else b""
    if len(b) != n:
        raise _Damaged(f"Index.dat points to offset {off}, outside the file: its structure is damaged")
    return b


def _close_data_file(fp: FilePlan, spans: list[tuple[int, int]]) -> int:
    """Zero the bytes of a Data file outside ``spans``; bytes zeroed."""
    assert fp.source is not None, "by_name holds files with a source only"
    dfd = os.open(fp.source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(dfd).st_size
        return _zero_unreferenced(fp, dfd, size, size + len(fp.append), _merge(spans), [])
    finally:
        os.close(dfd)


class _Damaged(ValueError):
    """Index.dat's tables or pages do not hold together (a one-line refusal of the slide)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _i32(view: PatchedView, off: int) -> int:
    b = view.pread(off, 4) if off >= 0 else b""
    if len(b) != 4:
        raise _Damaged(f"Index.dat points to offset {off}, outside the file: its structure is damaged")
    return struct.unpack("<i", b)[0]


def _walk_pages(view: PatchedView, page: int, item: int, refs: list, data: dict, value_at: int) -> None:
    seen: set[int] = set()
    while page and page not in seen and len(seen) < 1_000_000:
        seen.add(page)
        count, nxt = _i32(view, page), _i32(view, page + 4)
        if count < 0:
            raise _Damaged("Index.dat has a page with a negative item count: its structure is damaged")
        refs.append((page, page + 8 + item * count))
        raw = view.pread(page + 8, item * count)
        if len(raw) != item * count:
            raise _Damaged(f"Index.dat has a page at offset {page} reaching past the end of the file: its structure is damaged")
        for k in range(count):
            off, ln, fno = struct.unpack_from("<iii", raw, k * item + value_at)
            if ln > 0:
                data.setdefault(fno, []).append((off, off + ln))
        page = nxt


def load_mrxs_version() -> bytes:
    return load("mrxs")["index_version"].encode("latin-1")
