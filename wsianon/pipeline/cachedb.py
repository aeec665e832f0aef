"""A cache in SQLite that is never in the way: an error opening, reading or writing it turns it off
(the caller then computes what it would have read); used by the record's cache beside OUT and the
review sheet's private cache."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def record_cache_path(out: Path) -> Path:
    """The record's cache beside OUT (``OUT.wsianon-record.sqlite``: output hashes, rendered
    thumbnails, the report's encoded entries; nothing identifying)."""
    out = Path(out)
    return out.parent / f"{out.name}.wsianon-record.sqlite"


class BestEffortDB:
    """``db`` is the connection, or None once anything failed (or it was never opened)."""

    db: sqlite3.Connection | None = None

    def _drop(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
        self.db = None

    def _get(self, sql: str, args: tuple):
        """The first row of ``sql`` (None: no row, or the cache is off)."""
        if self.db is None:
            return None
        try:
            return self.db.execute(sql, args).fetchone()
        except sqlite3.Error:
            self._drop()
            return None

    def _put(self, sql: str, args: tuple) -> None:
        if self.db is not None:
            try:
                self.db.execute(sql, args)
            except sqlite3.Error:
                self._drop()
