"""One MRXS slide as the redactor sees it: ``NAME.mrxs`` plus the folder ``NAME/`` with
Slidedat.ini, Index.dat and the Data files it names.

:func:`load_slide` opens and checks it: member names never leave the folder (no paths,
no symbolic links), the NONHIER records Slidedat.ini declares are located through
Index.dat, every tile and record lies inside its Data file, and the camera-image positions lie
near the grid Slidedat.ini declares (``positions.py``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from wsianon.converters.mrxs.datafile import read_blob
from wsianon.converters.mrxs.index import VERSION_BYTES, IndexInfo, NonHierRecord, read_index
from wsianon.converters.mrxs.ini import IniDoc
from wsianon.converters.mrxs.positions import check_positions
from wsianon.converters.mrxs.rules import rules
from wsianon.errors import CorruptInput, UnsupportedFormat
from wsianon.io.safefile import read_whole_regular
from wsianon.io.safetext import os_reason

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]*$")
_MAX_FILES = 100000


@dataclass
class Slide:
    mrxs: Path
    folder: Path
    ini: IniDoc
    slide_id: str
    index_path: Path
    datafiles: list[Path]
    records: list[NonHierRecord]
    index: IndexInfo
    zoom_levels: int

    def blob(self, rec: NonHierRecord) -> bytes:
        return read_blob(self.datafiles, rec)


def _plain_name(name: str) -> bool:
    return not (
        "/" in name or "\\" in name or "\0" in name or name in (".", "..") or os.path.isabs(name) or re.match(r"^[A-Za-z]:", name) or not _SAFE_NAME.match(name)
    )


def safe_member(folder: Path, name: str | None, what: str) -> Path:
    """``folder/name`` when ``name`` is a plain file name inside the slide folder; refuse otherwise."""
    if not name:
        raise CorruptInput(folder, f"Slidedat.ini names no {what}")
    if not _plain_name(name):
        raise CorruptInput(folder, f"{what}: the name Slidedat.ini gives leaves the slide folder or is not a plain file name: refused")
    p = folder / name
    if p.is_symlink():
        raise CorruptInput(p, f"{what} is a symbolic link: refused")
    if not p.exists():
        raise CorruptInput(p, f"{what} is missing")
    if not p.is_file():
        raise CorruptInput(p, f"{what} is not a regular file: refused")
    return p


def _slide_folder(path: Path) -> Path:
    if path.suffix.lower() != ".mrxs":
        raise UnsupportedFormat(path, "an MRXS slide is opened through its NAME.mrxs file")
    folder = path.with_suffix("")
    if folder.is_symlink():
        raise CorruptInput(folder, "MRXS slide folder is a symbolic link: refused")
    if not folder.is_dir():
        raise CorruptInput(path, "MRXS slide folder is missing")
    return folder


def _read_ini(folder: Path) -> IniDoc:
    ini_path = safe_member(folder, "Slidedat.ini", "Slidedat.ini")
    try:
        raw = read_whole_regular(ini_path)
    except OSError as exc:
        raise CorruptInput(ini_path, f"cannot read: {os_reason(exc)}") from None
    return IniDoc(raw, ini_path)


def _datafiles(folder: Path, ini: IniDoc) -> list[Path]:
    nfiles = ini.int("DATAFILE", "FILE_COUNT")
    if nfiles < 0 or nfiles > _MAX_FILES:
        raise CorruptInput(ini.path, "implausible FILE_COUNT")
    return [safe_member(folder, ini.get("DATAFILE", f"FILE_{i}"), f"data file FILE_{i}") for i in range(nfiles)]


def _declared(ini: IniDoc, key: str) -> int:
    """A count Slidedat.ini declares for entries that each need a line of their own: more than
    the file has lines is a damaged file (a count of 10^8 would otherwise be walked key by key)."""
    n = ini.int("HIERARCHICAL", key)
    if n < 0 or n > len(ini.lines):
        raise CorruptInput(ini.path, f"Slidedat.ini declares for {key} more entries than the file has lines")
    return n


def _hier_counts(ini: IniDoc) -> list[int]:
    hier_count = _declared(ini, "HIER_COUNT")
    hier_counts = [_declared(ini, f"HIER_{i}_COUNT") for i in range(hier_count)]
    if not hier_counts or ini.get("HIERARCHICAL", "HIER_0_NAME") != "Slide zoom level":
        raise CorruptInput(ini.path, "Slidedat.ini has no 'Slide zoom level' hierarchy")
    return hier_counts


def _nonhier_records(ini: IniDoc) -> list[NonHierRecord]:
    """Every NONHIER value Slidedat.ini declares, in nonhier-table order (not yet located)."""
    records: list[NonHierRecord] = []
    for li in range(_declared(ini, "NONHIER_COUNT")):
        lname = ini.get("HIERARCHICAL", f"NONHIER_{li}_NAME") or ""
        for vi in range(_declared(ini, f"NONHIER_{li}_COUNT")):
            name = ini.get("HIERARCHICAL", f"NONHIER_{li}_VAL_{vi}") or ""
            section = ini.get("HIERARCHICAL", f"NONHIER_{li}_VAL_{vi}_SECTION")
            records.append(NonHierRecord(li, vi, lname, name, section, len(records)))
    return records


def _check_extents(index_path: Path, datafiles: list[Path], index: IndexInfo, records: list[NonHierRecord], header: int) -> None:
    """Every tile and record names a listed Data file and lies inside it, after its ``header``
    bytes (version and SLIDE_ID: written anew in the output, so no blob may share them)."""
    nfiles = len(datafiles)
    sizes = [p.stat().st_size for p in datafiles]
    if not index.supported:
        return
    for off, ln, fno in index.hier_tiles + index.other_hier:
        if fno >= nfiles:
            raise CorruptInput(index_path, f"Index.dat names a data file Slidedat.ini does not list (it lists {nfiles})")
        if off + ln > sizes[fno]:
            raise CorruptInput(datafiles[fno], "tile data beyond the end of the data file (truncated?)")
        if ln and off < header:
            raise CorruptInput(datafiles[fno], "tile data inside the data file's header")
    for r in records:
        if not r.present:
            continue
        if r.fileno >= nfiles:
            raise CorruptInput(index_path, f"Index.dat names a data file Slidedat.ini does not list (it lists {nfiles})")
        if r.offset + r.size > sizes[r.fileno]:
            raise CorruptInput(datafiles[r.fileno], f"NONHIER record {r.table_slot} data beyond the end of the data file (truncated?)")
        if r.size and r.offset < header:
            raise CorruptInput(datafiles[r.fileno], f"NONHIER record {r.table_slot} data inside the data file's header")


def _grid(ini: IniDoc) -> tuple[int, int] | None:
    """(IMAGENUMBER_X, IMAGENUMBER_Y): the camera images OpenSlide places; None when not stated."""
    try:
        return ini.int("GENERAL", "IMAGENUMBER_X"), ini.int("GENERAL", "IMAGENUMBER_Y")
    except CorruptInput:
        return None


def load_slide(path: Path) -> Slide:
    path = Path(path)
    folder = _slide_folder(path)
    ini = _read_ini(folder)
    slide_id = ini.get("GENERAL", rules()["slide_id_key"])
    if not slide_id:
        raise CorruptInput(ini.path, "Slidedat.ini has no SLIDE_ID")
    index_path = safe_member(folder, ini.get("HIERARCHICAL", "INDEXFILE"), "index file")
    datafiles = _datafiles(folder, ini)
    hier_counts = _hier_counts(ini)
    records = _nonhier_records(ini)
    index = read_index(index_path, slide_id, hier_counts, records, _grid(ini))
    _check_extents(index_path, datafiles, index, records, VERSION_BYTES + len(slide_id))
    slide = Slide(path, folder, ini, slide_id, index_path, datafiles, records, index, hier_counts[0])
    check_positions(slide)  # before anything decodes tiles placed by them
    return slide
