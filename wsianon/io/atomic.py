"""Atomic outputs: everything is written into a hidden staging folder beside
the final location and moved into place only once complete and verified.

A crash or error leaves at most a ``.wsianon-tmp-*`` folder, never a
half-written file under its final name.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from wsianon.errors import OutputError
from wsianon.io import cache
from wsianon.io.safetext import os_reason

STAGING_PREFIX = ".wsianon-tmp-"

# stop signals (Ctrl-C, SIGTERM) and the sections they must not cut: the CLI's handler raises
# KeyboardInterrupt wherever the main thread is, which in the middle of placing a slide's outputs
# and recording them left a whole output in OUT that the record did not list, or a thread started
# but not yet registered with its executor (the interpreter then waited for it at exit for ever)
_sections = 0  # uninterrupted() sections the main thread is in
_stop_pending = False


@contextmanager
def uninterrupted():
    """A section of the main thread a stop signal does not cut: a signal that comes meanwhile
    (``defer_stop``) raises KeyboardInterrupt when the outermost section ends (unless the section
    ends by an exception of its own: the job's stop flag, set by the handler, stops it at the next
    slide).  Other threads: no effect (signal handlers run in the main thread only)."""
    global _sections, _stop_pending
    main = threading.current_thread() is threading.main_thread()
    if main:
        _sections += 1
    try:
        yield
    finally:
        if main:
            _sections -= 1
    if main and _sections == 0 and _stop_pending:
        _stop_pending = False
        raise KeyboardInterrupt


def defer_stop() -> bool:
    """For a stop-signal handler (it runs in the main thread): True when the main thread is in an
    ``uninterrupted`` section, which then raises KeyboardInterrupt as it ends; False: stop now."""
    global _stop_pending
    if _sections:
        _stop_pending = True
        return True
    return False


def _fsync_path(path: Path) -> None:
    """fsync a file or a directory (its entries) by path."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Staging:
    """A private folder inside ``out_dir`` where one slide's outputs are built."""

    def __init__(self, out_dir: Path, label: str):
        self.out_dir = Path(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.root = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{label}-", dir=self.out_dir))
        except OSError as exc:
            raise OutputError(self.out_dir, f"cannot write output folder: {os_reason(exc)}") from None
        self.committed = False

    @classmethod
    def reopen(cls, out_dir: Path, name: str) -> "Staging":
        """The staging folder ``name`` a worker left in ``out_dir`` (verified, not placed): the
        coordinator places it (:meth:`commit`) when it records the slide."""
        out_dir = Path(out_dir)
        root = out_dir / name
        if not name.startswith(STAGING_PREFIX) or "/" in name or os.sep in name or root.is_symlink() or not root.is_dir():
            raise OutputError(out_dir, "the verified output's staging folder is gone (removed while the job ran?)")
        s = cls.__new__(cls)
        s.out_dir, s.root, s.committed = out_dir, root, False
        return s

    def path(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        if not str(p).startswith(str(self.root.resolve()) + os.sep):
            raise OutputError(self.out_dir, f"refusing output path outside the output folder: {rel!r}")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def entries(self) -> list[Path]:
        return sorted(self.root.iterdir())

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def order(self, last: list[str] | None = None) -> list[str]:
        """The staged top-level entries in the order :meth:`commit` moves them (``last`` ones last)."""
        last = last or []
        names = [p.name for p in self.entries()]
        return [n for n in names if n not in last] + [n for n in last if n in names]

    def sync(self) -> list[str]:
        """Durable before visible: every staged file (those the copy did not fsync itself: the
        DICOM writer's) and folder reaches the disk before a final name points to it, so a crash
        never leaves a named, empty or partial output.  Returns the files (relative to the staging
        folder) this process had fsynced already (the copy's): their pages leave the page cache
        once placed (:meth:`commit`)."""
        synced = []
        try:
            for p in self.files():
                if cache.is_synced(p):
                    synced.append(p.relative_to(self.root).as_posix())
                else:
                    _fsync_path(p)
            for d in {p.parent for p in self.files()} | {self.root}:
                _fsync_path(d)
        except OSError as exc:
            raise OutputError(self.out_dir, f"cannot write output: {os_reason(exc)}") from None
        return synced

    def keep(self) -> None:
        """Leave the staging folder in place when this object is done with (its verified output
        is placed later, by the coordinator: :meth:`reopen`)."""
        self.committed = True

    def commit(self, last: list[str] | None = None, overwrite: bool = False, dest_dir: Path | None = None, synced: list[str] | None = None) -> list[Path]:
        """Move the staged top-level entries into place (``last`` ones moved last).  ``synced``:
        what :meth:`sync` returned where it already ran (a worker: the files have not changed
        since); None: it runs here."""
        dest_dir = Path(dest_dir or self.out_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        order = self.order(last)
        for n in order:
            target = dest_dir / n
            if target.exists() or target.is_symlink():
                if not overwrite:
                    raise OutputError(target, "output already exists (use --overwrite to replace it)")
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
        if synced is None:
            synced = self.sync()
        moved = []
        try:
            for n in order:
                os.replace(self.root / n, dest_dir / n)
                moved.append(dest_dir / n)
            _fsync_path(dest_dir)  # the renames themselves
        except OSError as exc:
            raise OutputError(dest_dir, f"cannot move output into place: {os_reason(exc)}") from None
        # verified and placed: this run reads them no more, so the pages of those the copy fsynced
        # leave the page cache (a batch of large slides must not push the working set out);
        # in the background: the record and the next slide need not wait for it
        for rel in synced:
            cache.drop_tree_later(dest_dir / rel)
        self.discard()
        self.committed = True
        return moved

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, *exc) -> None:
        if not self.committed:
            self.discard()


def write_private(path: Path, data: bytes) -> None:
    """Write a small private file (mode 0600) atomically."""
    write_atomic(path, data, 0o600)


def holds(path: Path, data: bytes, mode: int) -> bool:
    """``path`` is a regular file (not a link) of this mode holding exactly ``data`` (compared a
    megabyte at a time): writing it again would change nothing but its time stamps."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != mode or st.st_size != len(data):
            return False
        view, step = memoryview(data), 1 << 20
        with open(path, "rb", buffering=0) as fh:
            for i in range(0, len(data), step):
                if fh.read(step) != view[i : i + step]:
                    return False
            return fh.read(1) == b""
    except OSError:
        return False


def write_private_if_changed(path: Path, data: bytes) -> bool:
    """:func:`write_private`, unless the file already holds ``data`` with mode 0600; True: written."""
    if holds(path, data, 0o600):
        return False
    write_private(path, data)
    return True


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a small file atomically (temp file in the same folder, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
