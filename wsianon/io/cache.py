"""Page-cache hints (``posix_fadvise``), so that anonymizing a large slide does not push the
rest of the machine's working set out of the page cache.

* ``sequential(fd)``: a file about to be read front to back (larger read-ahead).
* ``start_writeback(fd, offset, length)``: queue freshly written pages for write-back now
  (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, Linux), so that the final ``fsync`` of a large
  output overlaps the copy instead of following it; the pages stay cached for the verifier.
* ``drop(fd)``: pages of a file this run will not read again; clean pages are released at
  once, dirty ones are queued for write-back (``POSIX_FADV_DONTNEED``).  Only called on files
  this run wrote itself (never on a source: its pages may be someone else's working set).

Hints only: they never change what is read or written, and they are no-ops where the platform
has no ``posix_fadvise``.  ``WSIANON_CACHE_HINTS=off`` in the environment turns them all off
(benchmarks/ compare both).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

ENABLED = os.environ.get("WSIANON_CACHE_HINTS", "on").lower() not in ("off", "0", "no")
_fadvise = getattr(os, "posix_fadvise", None)
SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()


def _advise(fd: int, offset: int, length: int, advice_name: str) -> bool:
    advice = getattr(os, advice_name, None)
    if not ENABLED or _fadvise is None or advice is None:
        return False
    try:
        _fadvise(fd, offset, length, advice)
        return True
    except OSError:  # a pipe, a file system without page cache: nothing to advise
        return False


def sequential(fd: int) -> bool:
    return _advise(fd, 0, 0, "POSIX_FADV_SEQUENTIAL")


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Start (not wait for) write-back of [offset, offset+length); False where unsupported.
    Durability still comes from the caller's ``fsync``."""
    if not ENABLED or _sync_file_range is None or length <= 0:
        return False
    return _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE) == 0


def drop(fd: int, offset: int = 0, length: int = 0) -> bool:
    return _advise(fd, offset, length, "POSIX_FADV_DONTNEED")


def drop_tree(path: Path) -> int:
    """``drop`` every regular file at or under ``path`` (not following links); returns how many."""
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
            n += drop(fd)
        finally:
            os.close(fd)
    return n
