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
import queue
from concurrent.futures import Future
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
_later_queue: queue.SimpleQueue | None = None
_later: list[Future] = []


def _later_worker(q: queue.SimpleQueue) -> None:
    while True:
        fn, args, fut = q.get()
        if not fut.set_running_or_notify_cancel():
            continue
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to settle() through the future
            fut.set_exception(exc)


def drop_tree_later(path: Path, only_synced: bool = False) -> None:
    """``drop_tree`` in a background thread (one, in order); ``settle`` waits for what is queued
    (and so does the process's exit, through ``atexit``).  The thread is a daemon: a stop signal
    that lands while it is being started (a ``ThreadPoolExecutor`` then never learns of its
    thread, and the interpreter waited for it at exit for ever: seen with Ctrl-C as the job
    placed its first output) can leave at most an idle thread that does not hold the exit."""
    global _later_queue
    if not ENABLED or _fadvise is None:
        return
    with _later_lock:
        if _later_queue is None:
            q: queue.SimpleQueue = queue.SimpleQueue()
            threading.Thread(target=_later_worker, args=(q,), name="wsianon-cache-drop", daemon=True).start()
            _later_queue = q  # only once its thread runs: an interrupt before this starts another next time
        _later[:] = [f for f in _later if not f.done()]
        fut: Future = Future()
        _later.append(fut)
        _later_queue.put((drop_tree, (Path(path), only_synced), fut))


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


def _after_fork_in_child() -> None:
    """A forked child (a pool worker) has no copy of the parent's thread: it starts its own."""
    global _later_lock, _later_queue
    _later_lock, _later_queue = threading.Lock(), None
    _later.clear()


atexit.register(settle)  # the process's exit waits for the drops queued (nothing queued: returns at once)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
