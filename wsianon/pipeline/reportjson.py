"""The run report's bytes (``OUT/wsianon-report.json``) without encoding every slide again.

The report is ``json.dumps(report, indent=2)``: Python's JSON encoder has no C path for indented
output, so a job of 1,000 slides spent about 0.3 s (a third of a re-run with nothing to do) encoding
entries that had not changed since the last run.  Here each slide entry's indented text is kept in
the record's cache beside OUT (``OUT.wsianon-record.sqlite``; the entries are the report's own
content, nothing identifying) under the SHA-256 of its compact encoding (the C encoder's, fast), and
the report is put together from them: the same bytes as ``json.dumps(report, indent=2) + "\\n"``
(:func:`report_bytes` falls back to exactly that when the cache cannot be used).  Entries the report
no longer holds are deleted from the cache as it is written.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from pathlib import Path

from wsianon.pipeline.cachedb import record_cache_path

TABLE = "report_entries"


def _plain(data: dict) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def _indented(entry) -> str:
    """``entry`` as ``json.dumps(report, indent=2)`` writes an item of the top-level "slides" list
    (JSON text holds no raw newline inside a string, so indenting each line is exact)."""
    return "    " + json.dumps(entry, indent=2).replace("\n", "\n    ")


def report_bytes(data: dict, out: Path | None = None) -> bytes:
    """``json.dumps(data, indent=2) + "\\n"``, its "slides" entries from the cache beside ``out``."""
    slides = data.get("slides")
    if out is None or not isinstance(slides, list) or not slides:
        return _plain(data)
    try:
        db = sqlite3.connect(record_cache_path(out))
    except sqlite3.Error:
        return _plain(data)
    try:
        db.execute(f"create table if not exists {TABLE} (h text primary key, text text not null)")
        texts, used = [], set()
        for e in slides:
            h = hashlib.sha256(json.dumps(e).encode()).hexdigest()
            used.add(h)
            row = db.execute(f"select text from {TABLE} where h=?", (h,)).fetchone()
            if row is None:
                row = (_indented(e),)
                db.execute(f"insert or replace into {TABLE} values (?,?)", (h, row[0]))
            texts.append(row[0])
        stale = [(h,) for (h,) in db.execute(f"select h from {TABLE}") if h not in used]
        db.executemany(f"delete from {TABLE} where h=?", stale)
        db.commit()
    except sqlite3.Error:
        return _plain(data)
    finally:
        db.close()
    marker = f"wsianon-slides-{secrets.token_hex(16)}"
    head = json.dumps({**data, "slides": marker}, indent=2)
    quoted = json.dumps(marker)
    assert head.count(quoted) == 1, "the marker is a fresh random string"
    return (head.replace(quoted, "[\n" + ",\n".join(texts) + "\n  ]") + "\n").encode()
