"""SHA-256 digests of output files, so that the record (HTML report, certificate) does not read
every output a second time, and the verifier's read-back need not compute SHA-256 either.

A digest is remembered with the file's identity at the moment it was read — device, inode,
size and modification time (a rename into place keeps all four) — and returned only while
the file still has that identity; anything else is computed again by the caller.

Where the applier writes an output as a copy of a source with patches (``wsianon.io.plan``),
:class:`StreamDigest` hashes the bytes it meant to write — the source as the copy reads it,
the patches laid over it, the appended tail — into SHA-256 and xxh3_128, in a thread of its
own, while the kernel copies and flushes.  The pair is registered as *expected* for the
written file (:func:`expect`); the verifier's read-back of that file computes only xxh3_128
(an order of magnitude cheaper than SHA-256) and adopts the SHA-256 when the two xxh3_128
digests agree (:func:`confirm`): the file on disk then holds exactly the bytes that were
hashed, but for an accidental 128-bit collision between a file and its own intended bytes.
When they do not agree (nothing should have touched the file), the read-back computes
SHA-256 from the file itself.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

_known: dict[tuple[int, int, int, int], str] = {}
_expected: dict[tuple[int, int, int, int], tuple[str, str]] = {}


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


def files_of(paths: list[Path]) -> list[Path]:
    """``paths`` with each folder (not a link to one) replaced by the regular files below it, sorted."""
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(q for q in p.rglob("*") if q.is_file() and not q.is_symlink()) if p.is_dir() and not p.is_symlink() else [p])
    return files


def entries(paths: list[Path]) -> list[tuple[int, int, int, int, str]]:
    """The remembered digests of the files of ``paths`` (:func:`files_of`) with their identities,
    for another process (a worker's outcome travels to the coordinator, which writes the record)."""
    out = []
    for p in files_of(paths):
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


def sha256_of(fd: int, start: int = 0, chunk: int = 8 << 20) -> str:
    """SHA-256 of the file open on ``fd`` from byte ``start`` to its end, read in ``chunk`` pieces."""
    import hashlib

    h = hashlib.sha256()
    pos = start
    while buf := os.pread(fd, chunk, pos):
        h.update(buf)
        pos += len(buf)
    return h.hexdigest()


def sha256_path(path: Path) -> str:
    """SHA-256 of ``path``: the remembered one while it is the same file, unchanged, else read whole."""
    known = lookup(path)
    if known is not None:
        return known
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        return sha256_of(fd)
    finally:
        os.close(fd)


def expect_bytes(fd: int, data: bytes) -> None:
    """``expect`` for a file written whole from ``data`` (a new small file)."""
    import hashlib

    import xxhash

    expect(fd, hashlib.sha256(data).hexdigest(), xxhash.xxh3_128(data).hexdigest())


def expect(fd: int, sha256: str, xxh3: str) -> None:
    """The file open on ``fd`` was written as bytes whose SHA-256 and xxh3_128 are these."""
    _expected[_key(os.fstat(fd))] = (sha256, xxh3)


def expected_xxh3(fd: int) -> str | None:
    """The xxh3_128 the file open on ``fd`` was written with, while it is that file unchanged."""
    e = _expected.get(_key(os.fstat(fd)))
    return e[1] if e is not None else None


def confirm(fd: int, xxh3: str) -> str | None:
    """The read-back found ``xxh3``: when it is the one the file was written with, the written
    SHA-256 is the file's — remembered and returned; otherwise None (compute it from the file)."""
    k = _key(os.fstat(fd))
    e = _expected.pop(k, None)
    if e is None or e[1] != xxh3:
        return None
    _known[k] = e[0]
    return e[0]


class StreamDigest:
    """SHA-256 and xxh3_128 of a copy being written: the source's bytes, fed in order by
    :meth:`feed`, with ``patches`` (sorted, disjoint, each with ``offset``/``end``/``bytes_for``)
    laid over them and ``tail`` appended.  SHA-256 runs in a thread of its own, one buffer
    behind the caller, and xxh3_128 (a sixth of SHA-256's time) in the caller's thread meanwhile
    (``hashlib`` and ``xxhash`` release the GIL on large buffers): the SHA-256 thread is what ends
    the copy stage, and the caller (the copy's tap) otherwise waits for it (benchmarks/PROFILE.md,
    "Nineteenth stop": the stage 3.09 -> 2.87 s, median of 3 runs each)."""

    def __init__(self, patches: list, tail: bytes = b"") -> None:
        import hashlib

        import xxhash

        self._sha = hashlib.sha256()
        self._xxh = xxhash.xxh3_128()
        self._patches = list(patches)  # a copy: ``add`` inserts, the copy loop iterates the caller's
        self._i = 0
        self._tail = tail
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._pos = 0

    def _update(self, data) -> None:
        self._sha.update(data)
        self._xxh.update(data)

    def _patched(self, offset: int, buf):
        end = offset + len(buf)
        ps = self._patches
        while self._i < len(ps) and ps[self._i].end <= offset:
            self._i += 1
        j = self._i
        if j >= len(ps) or ps[j].offset >= end:
            return buf
        out = bytearray(buf)
        while j < len(ps) and ps[j].offset < end:
            p = ps[j]
            a, b = max(p.offset, offset), min(p.end, end)
            if a < b:  # a patch added later may lie inside an earlier, longer one (and end before offset)
                out[a - offset : b - offset] = p.bytes_for(a, b)
            j += 1
        return out

    def add(self, patches: list) -> None:
        """More zero fills (the copy's deferred JPEG scrub), none before what was fed already."""
        import bisect

        for p in patches:
            if p.offset < self._pos:
                raise ValueError(f"stream digest: a patch at {p.offset} after {self._pos} was fed")
            bisect.insort(self._patches, p, lo=self._i, key=lambda q: (q.offset, q.length))

    def feed(self, offset: int, buf) -> None:
        """The source's bytes [offset, offset + len(buf)), in order from 0."""
        if offset != self._pos:
            raise ValueError(f"stream digest fed out of order: {offset} after {self._pos}")
        self._pos = offset + len(buf)
        data = self._patched(offset, buf)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1)
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self._sha.update, data)
        self._xxh.update(data)  # in order, beside the SHA-256 of the same buffer

    def finish(self, size: int) -> tuple[str, str] | None:
        """(SHA-256, xxh3_128) of the whole written file — ``size`` source bytes and the tail —
        or None when the source gave fewer bytes than that (the copy fails then anyway)."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._pos != size:
            return None
        self._update(self._tail)
        return self._sha.hexdigest(), self._xxh.hexdigest()

    def close(self) -> None:
        """Stop the hashing thread (an error elsewhere: nothing is expected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
