"""Patch plans and the one applier that executes them.

A redactor never writes files: it returns a :class:`Plan`, a list of
:class:`FilePlan` (one per output file), each a list of same-length byte
overwrites (:class:`Patch`), an optional tail to append, or a whole new
content for small files (an MRXS Slidedat.ini, say).

``apply_copy`` streams the source to the destination once, patches applied in
flight (the cost of one ``cp``; unpatched stretches go through
``os.copy_file_range`` where the kernel offers it).  ``apply_in_place`` patches
the source itself, journaling the old bytes first so that an interrupted run
can be rolled back with ``rollback_journal``.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from wsianon.errors import CorruptInput, OutputError
from wsianon.io import cache, digests
from wsianon.io import journal as _journal
from wsianon.io.extents import data_extents
from wsianon.io.safetext import os_reason

if TYPE_CHECKING:
    import numpy as np

CHUNK = 8 * 1024 * 1024

# indirections (tests simulate a full disk through them)
_os_write = os.write
_copy_file_range = getattr(os, "copy_file_range", None)

# the copy's tap: (offset, buffer, the buffer's JPEG marker positions when the copy searched them,
# else None, and its (fill-byte pairs, restart markers) from the same search, else None)
Tap = Callable[[int, bytes, "np.ndarray | None", "tuple[np.ndarray, np.ndarray] | None"], None]


@dataclass
class Patch:
    """Overwrite ``length`` bytes at ``offset``; ``data`` None means zero fill."""

    offset: int
    length: int
    data: bytes | None
    reason: str

    def __post_init__(self) -> None:
        if self.data is not None and len(self.data) != self.length:
            raise ValueError(f"patch at {self.offset}: data is {len(self.data)} bytes, length {self.length}")
        if self.offset < 0 or self.length < 0:
            raise ValueError("negative patch offset/length")

    @property
    def end(self) -> int:
        return self.offset + self.length

    def bytes_for(self, start: int, stop: int) -> bytes:
        """The patch's bytes that fall in [start, stop)."""
        a, b = max(start, self.offset), min(stop, self.end)
        if a >= b:
            return b""
        if self.data is None:
            return bytes(b - a)
        return self.data[a - self.offset : b - self.offset]

    def describe(self) -> dict:
        return {"offset": self.offset, "length": self.length, "fill": self.data is None, "reason": self.reason}


@dataclass
class Removal:
    """What a plan removes or changes, by field NAME (never the value)."""

    kind: str  # "field" | "image" | "name" | "structure"
    name: str
    action: str  # "blanked" | "removed" | "replaced" | "dummy" | "wiped+unlinked" ...
    where: str = ""

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "action": self.action, "where": self.where}


@dataclass
class FilePlan:
    """How to produce one output file."""

    dest: str  # path relative to the slide's output location
    source: Path | None = None  # copy from here (None: ``content`` is the whole file)
    patches: list[Patch] = field(default_factory=list)
    append: bytes = b""
    content: bytes | None = None
    # (offset, length) of JPEG streams in ``source`` whose COM/APPn payloads are zeroed (non-TIFF sources)
    jpeg_spans: list[tuple[int, int]] = field(default_factory=list)
    # the tile/strip JPEG scrub left to the copy (``wsianon.io.jpeg_plan.DeferredScrub``), or None
    deferred_scrub: Any = None

    def sorted_patches(self) -> list[Patch]:
        ps = sorted(self.patches, key=lambda p: (p.offset, p.length))
        # identical patches (the same bytes planned twice) collapse into one
        dedup: list[Patch] = []
        for p in ps:
            if dedup and (dedup[-1].offset, dedup[-1].length, dedup[-1].data) == (p.offset, p.length, p.data):
                continue
            dedup.append(p)
        ps = dedup
        for a, b in zip(ps, ps[1:]):
            if b.offset < a.end:
                # overlapping patches: the later one in the plan must not silently lose.  Every
                # patch's place comes from the source's own offsets and counts, so two that
                # claim the same bytes with different contents mean structures of the file
                # overlap (a count or offset damaged): the slide is refused, fail-closed
                if a.data is None and b.data is None:
                    continue
                raise CorruptInput(
                    self.source, f"two structures of the file claim the same bytes (at offset {b.offset}: {a.reason}; {b.reason}): its structure is damaged"
                )
        return ps


@dataclass
class Plan:
    """Everything a redactor wants done for one slide."""

    format: str
    files: list[FilePlan] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    closed_world: dict = field(default_factory=dict)  # bytes zeroed as unreferenced, tags dropped (names only)
    jpeg_counts: dict = field(default_factory=dict)  # a deferred JPEG scrub's JPEGTables counts (jpeg_plan)

    def remove(self, kind: str, name: str, action: str, where: str = "") -> None:
        r = Removal(kind, name, action, where)
        if not any(x == r for x in self.removals):
            self.removals.append(r)

    def describe(self) -> dict:
        return {
            "format": self.format,
            "files": [
                {
                    "dest": f.dest,
                    "source": "(new content)" if f.source is None else "(source)",
                    "patches": [p.describe() for p in f.sorted_patches()],
                    "append_bytes": len(f.append),
                    "content_bytes": None if f.content is None else len(f.content),
                }
                for f in self.files
            ],
            "removals": [r.as_dict() for r in self.removals],
            "notes": self.notes,
            "closed_world": self.closed_world,
        }


# ---------------------------------------------------------------------------
# appliers


def _write_all(fd: int, data: bytes | memoryview, dest: Path) -> None:
    view = memoryview(data)
    while view:
        try:
            n = _os_write(fd, view)
        except OSError as exc:
            raise OutputError(dest, f"cannot write: {os_reason(exc)}") from None
        view = view[n:]


def _copy_range(src_fd: int, dst_fd: int, offset: int, length: int, dest: Path, progress: Callable[[int], None] | None) -> None:
    """Copy [offset, offset+length) of src to dst's current position; holes of a
    sparse source stay holes (dst's position just moves past them)."""
    pos = offset
    for a, b in data_extents(src_fd, offset, offset + length):
        if a > pos:
            os.lseek(dst_fd, a - pos, os.SEEK_CUR)
            if progress:
                progress(a - pos)
        _copy_extent(src_fd, dst_fd, a, b - a, dest, progress)
        pos = b
    if pos < offset + length:
        os.lseek(dst_fd, offset + length - pos, os.SEEK_CUR)
        if progress:
            progress(offset + length - pos)


def _copy_extent(src_fd: int, dst_fd: int, offset: int, length: int, dest: Path, progress: Callable[[int], None] | None) -> None:
    pos = offset
    end = offset + length
    use_cfr = _copy_file_range is not None
    while pos < end:
        n = min(CHUNK * 8, end - pos)
        done = 0
        if use_cfr:
            try:
                assert _copy_file_range is not None  # use_cfr says the OS has it
                done = _copy_file_range(src_fd, dst_fd, n, pos)
            except OSError as exc:
                if exc.errno in (28, 122):  # ENOSPC, EDQUOT
                    raise OutputError(dest, f"cannot write: {exc.strerror}") from None
                use_cfr = False
                done = 0
        if not done:
            buf = os.pread(src_fd, min(n, CHUNK), pos)
            if not buf:
                raise CorruptInput(None, "source shrank while being copied")
            _write_all(dst_fd, buf, dest)
            done = len(buf)
        pos += done
        if progress:
            progress(done)


def apply_copy(fp: FilePlan, dest: Path, progress: Callable[[int], None] | None = None, tap: Tap | None = None) -> int:
    """Write ``fp`` to ``dest`` (a fresh temp path). Returns bytes written.

    ``tap``: called with every chunk of the source, in order, as the source has it (the
    verifier's source-side tile identity), from a second thread that reads the source
    alongside the in-kernel copy, so both readers are served by the same page-cache pages
    (one read from disk).  Measured against a user-space copy that hands its own read
    buffers to the tap (pread + patch + write): the same CPU in principle (two memory copies
    either way), but slower and noisier here (benchmarks/PROFILE.md)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    try:
        dst_fd = os.open(dest, flags, 0o644)
    except OSError as exc:
        raise OutputError(dest.parent, f"cannot create output file: {os_reason(exc)}") from None
    written = 0
    tapping = None
    stream: digests.StreamDigest | None = None
    try:
        if fp.source is None:
            _write_all(dst_fd, fp.content or b"", dest)
            written = len(fp.content or b"")
        else:
            try:
                src_fd = os.open(fp.source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise CorruptInput(fp.source, f"cannot read: {os_reason(exc)}") from None
            try:
                size = os.fstat(src_fd).st_size
                pos = 0
                patches = effective_patches(fp, size)
                stream = digests.StreamDigest(patches, fp.append)
                stop = threading.Event()
                tap_pool = ThreadPoolExecutor(max_workers=1)
                tapping = tap_pool.submit(_tap_file, fp.source, size, tap, stream, stop, fp.deferred_scrub)
                tap_pool.shutdown(wait=False)
                for p in patches:
                    if p.offset > pos:
                        _copy_range(src_fd, dst_fd, pos, p.offset - pos, dest, progress)
                    # write patch in bounded chunks (zero fills can be large)
                    q = p.offset
                    while q < p.end:
                        n = min(CHUNK, p.end - q)
                        _write_all(dst_fd, p.bytes_for(q, q + n), dest)
                        q += n
                        if progress:
                            progress(n)
                    pos = p.end
                if pos < size:
                    _copy_range(src_fd, dst_fd, pos, size - pos, dest, progress)
                os.ftruncate(dst_fd, size)  # a trailing hole still counts towards the size
                os.lseek(dst_fd, size, os.SEEK_SET)
                written = size
            finally:
                os.close(src_fd)
        if fp.append:
            _write_all(dst_fd, fp.append, dest)
            written += len(fp.append)
        try:
            os.fsync(dst_fd)
        except OSError as exc:
            raise OutputError(dest, f"cannot write: {os_reason(exc)}") from None
        if tapping is not None:  # the tap's reads and hashing overlapped the copy and the fsync
            zeroed = tapping.result()
            if zeroed:  # the deferred JPEG scrub's payloads: zeroed over what the copy wrote
                try:
                    for p in zeroed:
                        os.pwrite(dst_fd, bytes(p.length), p.offset)
                    os.fsync(dst_fd)
                except OSError as exc:
                    raise OutputError(dest, f"cannot write: {os_reason(exc)}") from None
            done = stream.finish(size) if stream is not None else None
            if done is not None:
                digests.expect(dst_fd, *done)
        else:
            digests.expect_bytes(dst_fd, (fp.content or b"") + fp.append)
        cache.mark_synced(dst_fd)  # clean pages: Staging.commit may drop them once verified
    finally:
        if tapping is not None and not tapping.done():  # an error above: stop the tap at its next chunk
            stop.set()
            try:
                tapping.result()
            except Exception:  # noqa: BLE001 - the copy's own error is the one reported
                pass
        if stream is not None:
            stream.close()
        os.close(dst_fd)
    return written


def effective_patches(fp: FilePlan, size: int) -> list[Patch]:
    """``fp``'s patches as the copy lays them over a source of ``size`` bytes: sorted, disjoint
    (a zero fill overlapping an earlier one is clipped to what it adds)."""
    out: list[Patch] = []
    pos = 0
    for p in fp.sorted_patches():
        if p.end > size:
            raise ValueError(f"patch beyond end of {fp.source}: {p.offset}+{p.length} > {size}")
        if p.offset < pos:  # overlapping zero fills already merged
            if p.end <= pos:
                continue
            p = Patch(pos, p.end - pos, None if p.data is None else p.data[pos - p.offset :], p.reason)
        out.append(p)
        pos = p.end
    return out


def _tap_file(path: Path, size: int, tap: Tap | None, stream: digests.StreamDigest, stop, deferred=None) -> list[Patch]:
    """Read ``path``'s first ``size`` bytes in order and hand them to ``stream`` (the digests of
    the file being written) and ``tap`` (its own descriptor: the copy's is moved by
    SEEK_DATA/SEEK_HOLE).  ``deferred``: the file's deferred JPEG scrub (``jpeg_plan.DeferredScrub``):
    the payloads to zero in each buffer are found before the buffer is hashed, so the digests are
    of the zeroed bytes; returns those zero fills, which the caller lays over what the copy wrote."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    zeroed: list[Patch] = []
    scrub = None
    if deferred is not None:
        from wsianon.io.jpeg import StreamScrub, marker_index

        scrub = StreamScrub(deferred.streams)
        deferred.streams = []  # the scrub holds them sorted: the IFDs' tables (16 bytes a tile) go
    try:
        pos = 0
        while pos < size and not stop.is_set():
            buf = os.pread(fd, min(CHUNK, size - pos), pos)
            if not buf:
                break
            markers = ff = None
            if scrub is not None:  # the marker search is done once a buffer, for the scrub and the tap
                index = marker_index(buf)
                markers, ff = index.at, (index.pairs, index.restarts)
                _late_patches(deferred, scrub.feed(fd, pos, buf, markers, ff), stream, zeroed)
            stream.feed(pos, buf)
            if tap is not None:
                tap(pos, buf, markers, ff)
            pos += len(buf)
        if scrub is not None and not stop.is_set():
            _late_patches(deferred, scrub.rest(fd), stream, zeroed)  # streams past what was read
    finally:
        os.close(fd)
    return zeroed


def _late_patches(deferred, spans, stream: digests.StreamDigest, zeroed: list[Patch]) -> None:
    new = deferred.patches(spans)
    if new:
        stream.add(new)
        zeroed.extend(new)


def journal_path(target: Path) -> Path:
    return _journal.journal_path(target)


def apply_in_place(fp: FilePlan, target: Path, keep_journal: bool = False) -> int:
    """Patch ``target`` in place; returns the number of bytes written.

    A journal (``wsianon.io.journal``: the file's identity, the original bytes
    and the hashes of original and new bytes of every patched region; mode
    0600, fsynced) is written before the first patch lands; it is removed once
    all patches are on disk, unless ``keep_journal`` (the caller verifies first
    and then drops it, or rolls back with ``rollback_journal``).
    """
    if fp.source is None:
        raise ValueError("in-place application needs a source file")
    jpath = journal_path(target)
    if jpath.exists() or jpath.is_symlink():
        raise OutputError(target, "an unfinished in-place run left its journal (.wsianon-journal) beside the file; run 'wsianon rollback' first")
    try:
        fd = os.open(target, os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise OutputError(target, f"cannot open for in-place editing: {os_reason(exc)}") from None
    written = 0
    try:
        size = os.fstat(fd).st_size
        patches = fp.sorted_patches()
        for p in patches:
            if p.end > size:
                raise ValueError(f"patch beyond end of {target}")
        try:
            journal = _journal.build(fd, target, [(p.offset, p.bytes_for(p.offset, p.end)) for p in patches], fp.append)
            _journal.write(jpath, journal)
        except OSError as exc:
            raise OutputError(target, f"cannot write the in-place journal: {os_reason(exc)}; nothing was changed") from None
        for p in patches:
            q = p.offset
            while q < p.end:
                n = min(CHUNK, p.end - q)
                os.pwrite(fd, p.bytes_for(q, q + n), q)
                q += n
            written += p.length
        if fp.append:
            os.pwrite(fd, fp.append, size)
            written += len(fp.append)
        os.fsync(fd)
    except OSError as exc:
        raise OutputError(target, f"in-place write failed: {os_reason(exc)}; its journal (.wsianon-journal) is kept beside the file") from None
    finally:
        os.close(fd)
    if not keep_journal:
        jpath.unlink()
    return written


def rollback_journal(target: Path) -> bool:
    """Restore ``target`` from its journal, after verifying that the journal is
    intact and belongs to this file in this state; returns False when there is
    none; raises ``JournalError`` (nothing written) when it cannot be trusted."""
    return _journal.rollback(target)
