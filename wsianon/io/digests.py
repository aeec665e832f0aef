"""SHA-256 digests of output files computed by this process's verification pass, so that the
record (HTML report, certificate) does not read every output a second time.

A digest is remembered with the file's identity at the moment it was read — device, inode,
size and modification time (a rename into place keeps all four) — and returned only while
the file still has that identity; anything else is computed again by the caller.
"""

from __future__ import annotations

import os
from pathlib import Path

_known: dict[tuple[int, int, int, int], str] = {}


def _key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def remember(fd: int, sha256: str) -> None:
    """Remember the SHA-256 of the file open on ``fd`` (which was read whole to compute it)."""
    _known[_key(os.fstat(fd))] = sha256


def lookup(path: Path) -> str | None:
    """The remembered SHA-256 of ``path`` while it is the same file, unchanged; else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _known.get(_key(st))


def entries(paths: list[Path]) -> list[tuple[int, int, int, int, str]]:
    """The remembered digests of ``paths`` with their identities, for another process
    (a worker's outcome travels to the coordinator, which writes the record)."""
    out = []
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(q for q in p.rglob("*") if q.is_file() and not q.is_symlink()) if p.is_dir() and not p.is_symlink() else [p])
    for p in files:
        try:
            k = _key(os.stat(p))
        except OSError:
            continue
        if k in _known:
            out.append((*k, _known[k]))
    return out


def adopt(items: list) -> None:
    """Remember digests ``entries`` produced in another process (same machine: the identities
    are device and inode numbers, so entries from elsewhere simply never match)."""
    for it in items or []:
        try:
            dev, ino, size, mtime, sha = it
            _known[(int(dev), int(ino), int(size), int(mtime))] = str(sha)
        except (TypeError, ValueError):
            continue
