"""The job manifest: one private SQLite database per OUT, kept beside it.

``manifest_path(OUT)`` is ``OUT.parent / "<OUT name>.wsianon-job.sqlite"`` (mode
0600, never inside OUT).  It holds one row per source slide — fingerprint (size,
mtime, a fast hash of head and tail bytes, optionally the full SHA-256), state
(pending, running, ok, quarantined, error, skipped), attempts, outputs, the
verification summary, timings — and the slide's mapping row and report entry,
committed in the same transaction that marks the slide done.  The report
(``OUT/wsianon-report.json``) and the mapping CSV are regenerated from it, so
they are cumulative over every run into OUT.

Tables (other modules may add their own, e.g. ``deliveries``):

* ``meta(k, v)`` — key fingerprint, pseudonym mode, target, policy, schema;
* ``slides`` — one row per source (``source`` is the absolute path as bytes);
* ``files(path, slide_id, size, mtime_ns)`` — every file of a slide (and an
  in-place output), for the resume fast path that does not re-read done slides;
* ``inputs_skipped(path, label, reason)`` — files found that are not slides;
* ``runs`` — one row per run (start, end, pid, slides done, bytes).

A second process running into the same OUT is refused by ``JobLock`` (an
``flock`` on ``<manifest>.lock``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wsianon.io.safetext import os_reason
from wsianon.errors import OutputError, WsianonError
from wsianon.pipeline.model import State

SCHEMA = 1
MANIFEST_SUFFIX = ".wsianon-job.sqlite"
# how much of the head and tail of every file the fast fingerprint reads
FAST_BYTES = 64 * 1024


def manifest_path(out: Path) -> Path:
    """The job database of output folder ``out`` (beside it, never inside)."""
    out = Path(os.path.abspath(out))
    return out.parent / f"{out.name}{MANIFEST_SUFFIX}"


def fast_fingerprint(files: list[Path], root: Path | None = None) -> tuple[int, int, str]:
    """(total size, newest mtime_ns, fast hash) of a slide's files.

    The hash covers, per file in name order, the size and the first and last
    64 KiB (the TIFF/DICOM header and usually the first directory): cheap on any
    slide size, and any re-scan, truncation or header change alters it."""
    h = hashlib.sha256(b"wsianon-fast-v1")
    size = 0
    mtime = 0
    for f in sorted(files, key=lambda p: os.fsencode(p.name)):
        st = os.stat(f)
        size += st.st_size
        mtime = max(mtime, st.st_mtime_ns)
        h.update(str(st.st_size).encode() + b"\0")  # content only: a renamed file keeps its fingerprint
        with open(f, "rb") as fh:
            h.update(fh.read(FAST_BYTES))
            if st.st_size > 2 * FAST_BYTES:
                fh.seek(st.st_size - FAST_BYTES)
                h.update(fh.read(FAST_BYTES))
            elif st.st_size > FAST_BYTES:
                h.update(fh.read())
    return size, mtime, h.hexdigest()[:32]


def full_hash(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: os.fsencode(p.name)):
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class JobLock:
    """An exclusive lock on a job: a second run into the same OUT is refused."""

    def __init__(self, manifest: Path):
        self.path = Path(str(manifest) + ".lock")
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise OutputError(self.path, f"cannot create the job lock: {os_reason(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise WsianonError(None, "another wsianon run is using this output folder (its job is locked); wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def job_alive(manifest: Path) -> bool:
    """Whether a run holds the job's lock now (read only: the lock file is never created here).
    A run that died by SIGKILL or a power cut left its run 'running' in the manifest; its lock
    went with its process."""
    try:
        fd = os.open(str(manifest) + ".lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # (also drops the shared lock just taken)
    return False


@dataclass
class Row:
    id: int
    source: bytes
    relpath: bytes | None
    pseudonym: str | None
    state: str
    attempts: int
    size: int | None
    mtime_ns: int | None
    fast_hash: str | None
    entry: dict | None
    outputs: list[str]
    error: str | None

    @property
    def path(self) -> Path:
        return Path(os.fsdecode(self.source))


_COLS = "id, source, relpath, pseudonym, state, attempts, size, mtime_ns, fast_hash, entry, outputs, error"


def _row(r) -> Row:
    return Row(
        r[0],
        bytes(r[1]),
        None if r[2] is None else bytes(r[2]),
        r[3],
        r[4],
        r[5],
        r[6],
        r[7],
        r[8],
        json.loads(r[9]) if r[9] else None,
        json.loads(r[10]) if r[10] else [],
        r[11],
    )


def open_db(path: Path, timeout: float) -> sqlite3.Connection:
    """The job database file (created mode 0600 when absent), in WAL mode, autocommit; the
    manifest and the delivery log both open it this way."""
    if not path.exists():
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
    os.chmod(path, 0o600)
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    return db


class Manifest:
    """The job database.  Every method commits what it changes."""

    def __init__(self, path: Path, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise WsianonError(self.path, "no job manifest here (was OUT written by wsianon 'run'?)")
        try:
            self.db = open_db(self.path, timeout=30)  # absent only when create (refused above otherwise)
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._schema()
        except sqlite3.Error as exc:
            raise OutputError(self.path, f"cannot use the job manifest ({_sql_reason(exc)})") from None
        except OSError as exc:
            raise OutputError(self.path, f"cannot create the job manifest: {os_reason(exc)}") from None

    def _schema(self) -> None:
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);
            CREATE TABLE IF NOT EXISTS slides (
                id INTEGER PRIMARY KEY,
                source BLOB UNIQUE NOT NULL,
                relpath BLOB,
                pseudonym TEXT,
                format TEXT,
                size INTEGER, mtime_ns INTEGER, fast_hash TEXT, full_hash TEXT,
                state TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0,
                outputs TEXT, verification TEXT, error TEXT,
                entry TEXT,
                mapping_output TEXT, mapping_status TEXT,
                started REAL, finished REAL, seconds REAL,
                bytes_in INTEGER, bytes_written INTEGER, run_id INTEGER
            );
            CREATE INDEX IF NOT EXISTS slides_pseudonym ON slides(pseudonym);
            CREATE INDEX IF NOT EXISTS slides_relpath ON slides(relpath);
            CREATE TABLE IF NOT EXISTS files (path BLOB PRIMARY KEY, slide_id INTEGER, size INTEGER, mtime_ns INTEGER);
            -- a slide's files are replaced by slide id for every slide registered: without this
            -- index each replacement scans the whole table (quadratic over an archive-sized job)
            CREATE INDEX IF NOT EXISTS files_slide ON files(slide_id);
            CREATE TABLE IF NOT EXISTS inputs_skipped (path BLOB PRIMARY KEY, label TEXT, reason TEXT);
            CREATE TABLE IF NOT EXISTS runs (
                id INTEGER PRIMARY KEY, started REAL, finished REAL, pid INTEGER,
                status TEXT, slides_done INTEGER DEFAULT 0, bytes_in INTEGER DEFAULT 0
            );
            """
        )
        if self.get_meta("schema") is None:
            self.set_meta("schema", str(SCHEMA))

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass

    # -- meta ---------------------------------------------------------------
    def get_meta(self, k: str) -> str | None:
        r = self.db.execute("SELECT v FROM meta WHERE k=?", (k,)).fetchone()
        return None if r is None else r[0]

    def set_meta(self, k: str, v: str) -> None:
        self.db.execute("INSERT INTO meta(k, v) VALUES(?, ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v", (k, v))

    # -- runs ---------------------------------------------------------------
    def start_run(self) -> int:
        cur = self.db.execute("INSERT INTO runs(started, pid, status) VALUES(?, ?, 'running')", (time.time(), os.getpid()))
        assert cur.lastrowid is not None, "an INSERT sets lastrowid"
        return int(cur.lastrowid)

    def end_run(self, run_id: int, status: str) -> None:
        self.db.execute(
            "UPDATE runs SET finished=?, status=?, slides_done=(SELECT COUNT(*) FROM slides WHERE run_id=? AND state IN ('ok','quarantined','error')),"
            " bytes_in=(SELECT COALESCE(SUM(bytes_in),0) FROM slides WHERE run_id=?) WHERE id=?",
            (time.time(), status, run_id, run_id, run_id),
        )

    # -- slides -------------------------------------------------------------
    def by_source(self, source: bytes) -> Row | None:
        r = self.db.execute(f"SELECT {_COLS} FROM slides WHERE source=?", (source,)).fetchone()
        return None if r is None else _row(r)

    def by_relpath_hash(self, relpath: bytes, fast_hash: str) -> Row | None:
        r = self.db.execute(f"SELECT {_COLS} FROM slides WHERE relpath=? AND fast_hash=?", (relpath, fast_hash)).fetchone()
        return None if r is None else _row(r)

    def by_pseudonym(self, pseudonym: str) -> list[Row]:
        return [_row(r) for r in self.db.execute(f"SELECT {_COLS} FROM slides WHERE pseudonym=?", (pseudonym,))]

    def get(self, slide_id: int) -> Row:
        return _row(self.db.execute(f"SELECT {_COLS} FROM slides WHERE id=?", (slide_id,)).fetchone())

    def rows(self, states: tuple[str, ...] | None = None) -> list[Row]:
        if states:
            q = ",".join("?" * len(states))
            cur = self.db.execute(f"SELECT {_COLS} FROM slides WHERE state IN ({q}) ORDER BY id", states)
        else:
            cur = self.db.execute(f"SELECT {_COLS} FROM slides ORDER BY id")
        return [_row(r) for r in cur]

    def upsert_source(
        self,
        source: bytes,
        relpath: bytes | None,
        pseudonym: str | None,
        fmt: str | None,
        fp: tuple[int, int, str] | None,
        files: list[bytes],
    ) -> int:
        """Create or refresh the row of a source about to be processed (state pending)."""
        size, mtime, fast = fp if fp else (None, None, None)
        with self.tx():
            r = self.db.execute("SELECT id FROM slides WHERE source=?", (source,)).fetchone()
            if r is None:
                cur = self.db.execute(
                    "INSERT INTO slides(source, relpath, pseudonym, format, size, mtime_ns, fast_hash, state) VALUES(?,?,?,?,?,?,?, 'pending')",
                    (source, relpath, pseudonym, fmt, size, mtime, fast),
                )
                assert cur.lastrowid is not None, "an INSERT sets lastrowid"
                sid = int(cur.lastrowid)
            else:
                sid = int(r[0])
                self.db.execute(
                    "UPDATE slides SET relpath=?, pseudonym=?, format=?, size=?, mtime_ns=?, fast_hash=?, state='pending' WHERE id=?",
                    (relpath, pseudonym, fmt, size, mtime, fast, sid),
                )
            self._set_files(sid, files)
        return sid

    def move_source(self, slide_id: int, source: bytes, files: list[bytes]) -> None:
        """The archive moved: the row now belongs to the source's new path."""
        with self.tx():
            self.db.execute("UPDATE slides SET source=? WHERE id=?", (source, slide_id))
            self._set_files(slide_id, files)

    def _set_files(self, sid: int, files: list[bytes]) -> None:
        self.db.execute("DELETE FROM files WHERE slide_id=?", (sid,))
        for f in files:
            try:
                st = os.stat(f)
            except OSError:
                continue
            self.db.execute(
                "INSERT INTO files(path, slide_id, size, mtime_ns) VALUES(?,?,?,?) ON CONFLICT(path) DO UPDATE SET"
                " slide_id=excluded.slide_id, size=excluded.size, mtime_ns=excluded.mtime_ns",
                (f, sid, st.st_size, st.st_mtime_ns),
            )

    def _set_one(self, sid: int, path: bytes) -> None:
        st = os.stat(path)
        self.db.execute(
            "INSERT INTO files(path, slide_id, size, mtime_ns) VALUES(?,?,?,?) ON CONFLICT(path) DO UPDATE SET"
            " slide_id=excluded.slide_id, size=excluded.size, mtime_ns=excluded.mtime_ns",
            (path, sid, st.st_size, st.st_mtime_ns),
        )

    def file_states(self) -> dict[bytes, tuple[int, int, int, str]]:
        """path -> (size, mtime_ns, slide id, slide state) for the resume fast path."""
        return {
            bytes(p): (s, m, i, st)
            for p, s, m, i, st in self.db.execute("SELECT f.path, f.size, f.mtime_ns, f.slide_id, s.state FROM files f JOIN slides s ON s.id=f.slide_id")
        }

    def mark_running(self, slide_id: int, run_id: int) -> None:
        self.db.execute("UPDATE slides SET state='running', attempts=attempts+1, started=?, run_id=? WHERE id=?", (time.time(), run_id, slide_id))

    def finish(
        self,
        slide_id: int,
        state: str,
        entry: dict,
        *,
        outputs: list[str],
        error: str | None,
        mapping_output: str | None,
        mapping_status: str | None,
        seconds: float,
        bytes_in: int,
        bytes_written: int,
        run_id: int,
        extra_files: Sequence[bytes] = (),
        full: str | None = None,
    ) -> None:
        """Mark a slide done: state, report entry and mapping row in ONE transaction."""
        verification = entry.get("verification")
        summary = None
        if verification:
            checks = verification.get("checks", [])
            summary = {
                "ok": verification.get("ok"),
                "checks": len(checks),
                "passed": sum(1 for c in checks if c.get("ok")),
                "findings": len(verification.get("findings", [])),
            }
        with self.tx():
            self.db.execute(
                "UPDATE slides SET state=?, entry=?, outputs=?, error=?, mapping_output=?, mapping_status=?, verification=?,"
                " finished=?, seconds=?, bytes_in=?, bytes_written=?, run_id=?, full_hash=COALESCE(?, full_hash) WHERE id=?",
                (
                    state,
                    json.dumps(entry),
                    json.dumps(outputs),
                    error,
                    mapping_output,
                    mapping_status,
                    None if summary is None else json.dumps(summary),
                    time.time(),
                    seconds,
                    bytes_in,
                    bytes_written,
                    run_id,
                    full,
                    slide_id,
                ),
            )
            for f in extra_files:
                try:
                    self._set_one(slide_id, f)
                except OSError:
                    pass

    def requeue_running(self) -> list[Row]:
        """Rows a dead run left 'running' go back to pending; returned for recovery with
        the pending rows an interrupted run had started (attempts > 0)."""
        rows = [r for r in self.rows((State.RUNNING, State.PENDING)) if r.state == State.RUNNING or r.attempts > 0]
        self.db.execute("UPDATE slides SET state='pending' WHERE state='running'")
        return rows

    def done_outputs(self) -> list[tuple[int, bytes, list[str], list[tuple[str, int]]]]:
        """(id, source, output names, [(file, size)] its verification placed) of the slides done and
        shared ('ok'): the entry's ``files`` are extracted by SQLite, so a resume of 10^6 slides
        does not decode their report entries (an entry an older wsianon wrote has none)."""
        cur = self.db.execute("SELECT id, source, outputs, json_extract(entry, '$.files') FROM slides WHERE state='ok' ORDER BY id")
        out = []
        for sid, src, names, files in cur:
            placed = [(f["file"], f["size"]) for f in json.loads(files) if isinstance(f, dict) and "file" in f] if files else []
            out.append((sid, bytes(src), json.loads(names) if names else [], placed))
        return out

    def set_pending(self, ids: Sequence[int]) -> None:
        """These slides are to be processed again (their outputs are gone from OUT)."""
        with self.tx():
            self.db.executemany("UPDATE slides SET state='pending' WHERE id=?", [(i,) for i in ids])

    def add_skipped(self, path: bytes, label: str, reason: str) -> None:
        self.db.execute(
            "INSERT INTO inputs_skipped(path, label, reason) VALUES(?,?,?) ON CONFLICT(path) DO UPDATE SET reason=excluded.reason", (path, label, reason)
        )

    def skipped(self) -> list[tuple[bytes, str, str]]:
        return [(bytes(p), l, r) for p, l, r in self.db.execute("SELECT path, label, reason FROM inputs_skipped ORDER BY label")]

    def mapping_rows(self) -> list[tuple[bytes, str, str]]:
        return [
            (bytes(s), o, st)
            for s, o, st in self.db.execute("SELECT source, mapping_output, mapping_status FROM slides WHERE mapping_status IS NOT NULL ORDER BY id")
        ]

    def counts(self) -> dict[str, int]:
        return {s: n for s, n in self.db.execute("SELECT state, COUNT(*) FROM slides GROUP BY state")}

    def runs(self) -> list[dict]:
        cols = ("id", "started", "finished", "pid", "status", "slides_done", "bytes_in")
        return [dict(zip(cols, r)) for r in self.db.execute(f"SELECT {', '.join(cols)} FROM runs ORDER BY id")]

    def failures(self) -> list[tuple[str, bytes | None, str]]:
        return [
            (p, None if rp is None else bytes(rp), e or st)
            for p, rp, e, st in self.db.execute("SELECT pseudonym, relpath, error, state FROM slides WHERE state IN ('error','quarantined') ORDER BY id")
        ]

    def totals(self) -> dict:
        r = self.db.execute("SELECT COUNT(*), COALESCE(SUM(bytes_in),0), COALESCE(SUM(seconds),0) FROM slides WHERE state IN ('ok','quarantined')").fetchone()
        return {"slides": r[0], "bytes_in": r[1], "seconds": r[2]}

    # -- transactions -------------------------------------------------------
    def tx(self):
        return _Tx(self.db)


class _Tx:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, et, ev, tb):
        if et is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
        return False


def _sql_reason(exc: sqlite3.Error) -> str:
    msg = str(exc).lower()
    for needle, reason in (
        ("readonly", "read-only file system"),
        ("disk is full", "disk full"),
        ("disk i/o", "I/O error"),
        ("unable to open", "cannot open the database file"),
        ("locked", "the database is locked"),
        ("not a database", "not a wsianon job database"),
    ):
        if needle in msg:
            return reason
    return type(exc).__name__
