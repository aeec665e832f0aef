"""``--pseudonyms map.csv``: source -> slide pseudonym (+ optional patient and study pseudonyms).

Columns (a header row is recognised and skipped): source, slide pseudonym, patient pseudonym
(optional), study pseudonym (optional).  ``source`` matches an input by its full path, its file or
folder name, or its name without extension.  Slides that share a patient pseudonym share
PatientID/PatientName; slides that share a study pseudonym share StudyInstanceUID.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from wsianon.errors import WsianonError
from wsianon.io.safetext import os_reason

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class PseudonymEntry:
    slide: str
    patient: str | None = None
    study: str | None = None
    line: int = field(default=0, compare=False)  # the map's line that gives it (errors name the line, never the value)


class PseudonymMap:
    def __init__(self, entries: dict[str, PseudonymEntry]):
        self.entries = entries

    def lookup(self, source: Path) -> PseudonymEntry | None:
        source = Path(source)
        keys = [str(source), str(source.resolve()) if source.exists() else str(source), source.name, source.stem]
        if source.suffix.lower() in (".dcm",) or source.is_dir():
            keys.append(source.parent.name)
        for k in keys:
            e = self.entries.get(k)
            if e is not None:
                return e
        return None

    def __len__(self) -> int:
        return len(self.entries)

    def digest(self) -> str:
        """SHA-256 of what the map says (each source and its names, in order): the job compares it
        between runs, so that a changed map is not ignored on resume (kept in the private manifest)."""
        rows = sorted((k, e.slide, e.patient or "", e.study or "") for k, e in self.entries.items())
        return hashlib.sha256(json.dumps(rows).encode("utf-8", "surrogateescape")).hexdigest()

    def names(self) -> set[str]:
        """Every slide and patient pseudonym the map gives (the values written as text: folder
        and file names, PatientID/PatientName; study pseudonyms only seed keyed UIDs)."""
        return {n for e in self.entries.values() for n in (e.slide, e.patient) if n}


def load_pseudonym_map(path: Path) -> PseudonymMap:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise WsianonError(path, f"cannot read pseudonym map: {os_reason(exc)}") from None
    except UnicodeDecodeError:  # its message would quote the bytes around the bad one
        raise WsianonError(path, "pseudonym map is not UTF-8 text") from None
    try:
        return _parse(path, list(csv.reader(text.splitlines())))
    except csv.Error:
        raise WsianonError(path, "pseudonym map is not a CSV file") from None


def _parse(path: Path, rows: list[list[str]]) -> PseudonymMap:
    entries: dict[str, PseudonymEntry] = {}
    slides: set[str] = set()
    for lineno, row in enumerate(rows, 1):
        row = [c.strip() for c in row]
        if not row or not any(row) or row[0].startswith("#"):
            continue
        if lineno == 1 and row[0].lower() in ("source", "path", "file"):
            continue
        if len(row) < 2 or not row[0] or not row[1]:
            raise WsianonError(path, f"line {lineno}: need at least 'source,slide pseudonym'")
        for value, what in zip(row[1:4], ("slide", "patient", "study")):
            if value and not _SAFE.match(value):
                raise WsianonError(path, f"line {lineno}: {what} pseudonym must be 1-64 of A-Z a-z 0-9 . _ - (no spaces)")
        slide = row[1]
        if slide in slides:
            raise WsianonError(path, f"line {lineno}: slide pseudonym used twice")
        slides.add(slide)
        src = row[0]
        entry = PseudonymEntry(slide, row[2] if len(row) > 2 and row[2] else None, row[3] if len(row) > 3 and row[3] else None, lineno)
        if src in entries:
            raise WsianonError(path, f"line {lineno}: source listed twice")
        entries[src] = entry
        p = Path(src)
        for alias in (p.name, p.stem):
            entries.setdefault(alias, entry)
    if not entries:  # a map given explicitly that names nobody (an export that failed): every slide would fall back unseen
        raise WsianonError(path, "pseudonym map lists no slide (empty, or only a header and comments)")
    return PseudonymMap(entries)
