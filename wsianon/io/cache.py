"""Page-cache hints (``posix_fadvise``), so that anonymizing a large slide does not push the
rest of the machine's working set out of the page cache.

* ``drop(fd)``: pages of a file this run will not read again; clean pages are released at
  once, dirty ones are queued for write-back (``POSIX_FADV_DONTNEED``).  Only called on files
  this run wrote itself (never on a source: its pages may be someone else's working set).
* ``drop_tree_later(path)``: the same in a background thread (``settle()`` waits for it; so
  does the process's exit): releasing 2 GiB of pages costs ~0.12 s of system time, which the
  caller's next step (the record, the next slide) need not wait for.
* ``mark_synced(fd)`` / ``drop_tree(path, only_synced=True)``: outputs this process has
  fsynced (``apply_copy``) are remembered by inode, which survives the rename into place, so
  that ``Staging.commit`` drops only those: dropping a file that is still dirty (the DICOM
  writer's) releases nothing and makes the caller wait for write-back to start (measured up
  to 0.5 s a GiB).

Measured and left out (benchmarks/PROFILE.md): ``POSIX_FADV_SEQUENTIAL`` on the copy's source
and write-back queued during the copy (``sync_file_range``) did not make the copy faster here,
and dropping the output behind the copy would make the verifier read it back from disk.

Hints only: they never change what is read or written, and they are no-ops where the platform
has no ``posix_fadvise``.  ``WSIANON_CACHE_HINTS=off`` in the environment turns them all off
(benchmarks/ compare both).
"""

from __future__ import annotations

import atexit
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

ENABLED = os.environ.get("WSIANON_CACHE_HINTS", "on").lower() not in ("off", "0", "no")
_fadvise = getattr(os, "posix_fadvise", None)


def _advise(fd: int, offset: int, length: int, advice_name: str) -> bool:
    advice = getattr(os, advice_name, None)
    if not ENABLED or _fadvise is None or advice is None:
        return False
    try:
        _fadvise(fd, offset, length, advice)
        return True
    except OSError:  # a pipe, a file system without page cache: nothing to advise
        return False


def drop(fd: int, offset: int = 0, length: int = 0) -> bool:
    return _advise(fd, offset, length, "POSIX_FADV_DONTNEED")


_synced: set[tuple[int, int]] = set()


def mark_synced(fd: int) -> None:
    """Remember that the file open on ``fd`` was fsynced by this process (its pages are clean)."""
    st = os.fstat(fd)
    _synced.add((st.st_dev, st.st_ino))


def is_synced(path: Path) -> bool:
    """True when this process fsynced ``path`` (``mark_synced``): its data is on disk already."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in _synced


def drop_tree(path: Path, only_synced: bool = False) -> int:
    """``drop`` every regular file at or under ``path`` (not following links; with
    ``only_synced``, only files ``mark_synced`` saw); returns how many."""
    path = Path(path)
    paths = [path] if not path.is_dir() or path.is_symlink() else [p for p in path.rglob("*")]
    n = 0
    for p in paths:
        if p.is_symlink() or not p.is_file():
            continue
        try:
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if only_synced:
                st = os.fstat(fd)
                key = (st.st_dev, st.st_ino)
                if key not in _synced:
                    continue  # remembered after the drop: the record reads outputs again and drops them too
            n += drop(fd)
        finally:
            os.close(fd)
    return n


_later_lock = threading.Lock()
_later_pool: ThreadPoolExecutor | None = None
_later: list[Future] = []


def drop_tree_later(path: Path, only_synced: bool = False) -> None:
    """``drop_tree`` in a background thread (one, in order); ``settle`` waits for what is queued."""
    global _later_pool
    if not ENABLED or _fadvise is None:
        return
    with _later_lock:
        if _later_pool is None:
            _later_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsianon-cache-drop")
            atexit.register(settle)
        _later[:] = [f for f in _later if not f.done()]
        _later.append(_later_pool.submit(drop_tree, Path(path), only_synced))


def settle() -> None:
    """Wait until every ``drop_tree_later`` queued so far has run (advice only: errors are ignored)."""
    with _later_lock:
        pending = list(_later)
        _later.clear()
    for f in pending:
        try:
            f.result()
        except Exception:  # noqa: BLE001 - a hint that could not be given changes nothing
            pass
