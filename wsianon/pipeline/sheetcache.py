"""The review sheet's private cache of rendered images: a re-run renders only new or changed sources.

The review sheet shows each source's label and macro (identifying by design).  Rendering them again
on every run of a job was most of the cost of a re-run with nothing to do (about 3.5 ms a slide).
Those renders are kept here, beside the review sheet (``SHEET.images.sqlite``, mode 0600): never in
OUT and never in the record's cache beside OUT (``OUT.wsianon-record.sqlite`` holds nothing
identifying and may be shared with OUT's owner), so nothing here is listed, certified or delivered.

* A render is looked up under its source's path and a signature of the files it was rendered from:
  each file's path, size, ``mtime_ns`` and inode (a DICOM source: every file below its folder, from
  which its series is grouped; MRXS: the slide file and its data folder).  A source that changed in
  any of them is rendered again; a render that failed is never kept.
* What the cache holds is what the sheet shows: entries of sources the sheet no longer shows are
  deleted when the sheet is written.  Deleting the cache costs one render per source, nothing else.
* Best effort and never in the way: a path that is not a regular file, a file that is not this
  cache (the manifest, a slide, the key named by mistake), or an error opening or writing it turns
  the cache off for that sheet (everything is rendered, as without it); it never writes there.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from wsianon import __version__
from wsianon.pipeline.cachedb import BestEffortDB

CACHE_SUFFIX = ".images.sqlite"
TABLE = "sheet_images"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def cache_path(sheet: Path) -> Path:
    """Where the review sheet ``sheet`` keeps its rendered images (beside it, never inside OUT)."""
    sheet = Path(sheet)
    return sheet.with_name(sheet.name + CACHE_SUFFIX)


def source_files(src: Path) -> list[Path]:
    """The files a source's render depends on: the file itself; a DICOM file's whole folder (its
    series is grouped from there); an MRXS-style data folder named after the file."""
    src = Path(src)
    if src.is_dir():
        root, files = src, [src]
    elif src.suffix.lower() == ".dcm":
        root, files = src.parent, []
    else:
        root, files = src.with_suffix(""), [src]
    if root != src or src.is_dir():
        if root.is_dir():
            for r, dirs, names in os.walk(root):
                dirs.sort()
                files.extend(Path(r) / n for n in sorted(names))
    return files


def signature(files: Iterable[Path], salt: str = "") -> str | None:
    """The files' path, size, mtime_ns and inode (None: one cannot be stat'ed, nothing is cached)."""
    parts = [f"wsianon {__version__}", salt]
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            return None
        parts.append(f"{os.fsencode(f)!r}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
    return "\n".join(parts)


class SheetImages(BestEffortDB):
    """The cache of one review sheet (see the module's docstring); use as a context manager."""

    def __init__(self, sheet: Path, out: Path | None = None):
        self.path = cache_path(sheet)
        self.db: sqlite3.Connection | None = None
        self.used: set[bytes] = set()
        self.renders = 0  # renders done (not found in the cache) since opened
        self._folders: dict[Path, str | None] = {}  # a DICOM folder's signature, walked once per sheet
        if out is not None:
            where, folder = self.path.resolve(), Path(out).resolve()
            if where == folder or folder in where.parents:
                return  # cannot happen beside a sheet outside OUT; never written inside it all the same
        try:
            self.db = self._open()
        except (OSError, sqlite3.Error):
            self._drop()

    def _open(self) -> sqlite3.Connection | None:
        p = self.path
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
            os.close(fd)
        else:
            if not stat.S_ISREG(st.st_mode):
                return None  # a symlink, a FIFO, a folder: not followed, not opened
            with open(p, "rb") as fh:
                if fh.read(16) != _SQLITE_MAGIC:
                    return None  # some other file under this name (an empty one too): never written
        os.chmod(p, 0o600)  # also one a user made readable to others (no symlink: checked above)
        db = sqlite3.connect(p)
        try:
            names = {r[0] for r in db.execute("select name from sqlite_master where type in ('table', 'index', 'view', 'trigger')")}
            if names - {TABLE, f"sqlite_autoindex_{TABLE}_1"}:
                db.close()
                return None  # another database (a job manifest, the record's cache): left alone
            db.execute(f"create table if not exists {TABLE} (key blob primary key, sig text not null, data text not null)")
            db.commit()
        except sqlite3.Error:
            db.close()
            raise
        return db

    @property
    def enabled(self) -> bool:
        return self.db is not None

    def source_signature(self, src: Path, salt: str = "") -> str | None:
        """:func:`signature` of :func:`source_files`; the folder of DICOM sources is walked once
        (a folder holding many series would otherwise be walked and stat'ed once per series)."""
        if self.db is None:
            return None
        src = Path(src)
        if src.suffix.lower() != ".dcm" or src.is_dir():
            return signature(source_files(src), salt)
        if src.parent not in self._folders:
            self._folders[src.parent] = signature(source_files(src), salt)
        return self._folders[src.parent]

    def render(self, key: bytes, sig: str | None, fn: Callable[[], dict]) -> dict:
        """``fn()``'s images for ``key``, from the cache when the files it reads still have the
        signature ``sig`` (:func:`signature`; None: rendered, not kept)."""
        self.used.add(key)
        if sig is not None:
            row = self._get(f"select sig, data from {TABLE} where key=?", (key,))
            if row is not None and row[0] == sig:
                try:
                    return json.loads(row[1])
                except ValueError:
                    pass
        self.renders += 1
        data = fn()
        if sig is not None and not data.get("error"):
            self._put(f"insert or replace into {TABLE} values (?,?,?)", (key, sig, json.dumps(data)))
        return data

    def close(self, prune: bool = True) -> None:
        """Commit; with ``prune``, first delete what the sheet no longer shows."""
        if self.db is None:
            return
        try:
            if prune:
                stale = [(k,) for (k,) in self.db.execute(f"select key from {TABLE}") if bytes(k) not in self.used]
                self.db.executemany(f"delete from {TABLE} where key=?", stale)
            self.db.commit()
        except sqlite3.Error:
            pass
        self._drop()

    def __enter__(self) -> "SheetImages":
        return self

    def __exit__(self, et, ev, tb) -> None:
        self.close(prune=et is None)
