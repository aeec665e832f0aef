"""The frames' JPEG scrub done while wsidicom writes them, not in a second pass over the files.

``scrub_frames`` (stream.py) zeroes, in place, the COM / APPn payloads (and non-zero bytes after
EOI) of every frame of a written instance: a second read of all pixel data after the conversion.
:class:`FrameScrub` judges the same frames with the same code (``stream._buffer_spans``: one
vectorised known-clean-header test over a buffer of frames, every other frame walked whole) in
memory, at the one place every frame of every instance passes on its way into a file:
``wsidicom``'s ``WsiDicomWriter.write_tiles`` (passed-through tiles, re-tiled or re-encoded ones,
pyramid levels, thumbnails and labels alike), in wsidicom's own writer threads while its readers
fetch the next tiles.  wsidicom hands a writer one or two tiles at a time; the hook holds them
until a batch is full (or the writer's ``finalize``, which is wrapped to write them first), so the
search stays vectorised over megabytes and the file gets the same frames in the same order.

A frame is judged as ``scrub_frames`` sees it in the file: the tile followed by the zero byte that
pads an odd-length item (pydicom's ``itemize_frame``), so a segment that runs into that byte is
judged the same.  The bytes written are the tile with the same payloads zeroed; the number of
segments emptied is the same count.

Closed world, fail closed: the wrappers are installed (class-level, reference counted) only while
a conversion runs, and act only on writers whose file lies in a folder a :class:`FrameScrub`
registered (another conversion in another thread has its own; any other writer is untouched).
After the conversion an instance counts as scrubbed only when the hook judged and wrote, through
an encapsulated pixel-data writer, as many frames as the instance's header declares
(NumberOfFrames); any other instance (a pixel-data writer the hook does not judge, a code path
that wrote frames around ``write_tiles``) is left for ``scrub_frames``.  The verifier (``dicom:
frame segments``) proves the result from the output either way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from wsianon.converters.dicom.stream import _buffer_spans

_install_lock = threading.Lock()
_sessions: dict[str, FrameScrub] = {}  # registered folder (absolute, with a trailing separator) -> its scrub
_originals: dict = {}  # WsiDicomWriter's write_tiles and finalize as wsidicom defines them (kept once seen)

# frames judged together (one joined buffer, one vectorised known-clean-header test)
BATCH_FRAMES = 256
BATCH_BYTES = 4 << 20


class _File:
    """What the hook did to one instance file: frames judged, segments emptied."""

    __slots__ = ("frames", "emptied", "known", "judged", "pending", "pending_bytes")

    def __init__(self, judged: bool):
        self.frames = 0  # frames judged and written
        self.emptied = 0
        self.pending: list[bytes] = []  # tiles handed over, not judged and written yet
        self.pending_bytes = 0
        self.known: list[bytes] = []  # headers of this instance's frames found clean (as scrub_frames keeps)
        self.judged = judged  # False: written by a pixel-data writer the hook does not judge


class FrameScrub:
    """One conversion's frame scrub: judges the frames wsidicom writes into files under ``folder``
    while installed (``with scrub.installed(folder): ...``), then says which instances it scrubbed
    whole (:meth:`outcome`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, _File] = {}
        self._moved: dict[str, str] = {}  # final path -> written path
        self._writers: dict[object, _File] = {}  # the WsiDicomWriters seen -> their file's record

    # -- installation ---------------------------------------------------------------------------

    def installed(self, folder: Path) -> _Installed:
        """A context manager: the hook judges frames written under ``folder`` while it is open."""
        return _Installed(self, folder)

    # -- the hook ---------------------------------------------------------------------------------

    def _file(self, writer) -> _File:
        """The record of ``writer``'s file (made on its first batch)."""
        with self._lock:
            rec = self._writers.get(writer)
            if rec is not None:
                return rec
        from wsidicom.file.io.wsidicom_writer import EncapsulatedPixelDataWriter

        # scrub_frames reads only encapsulated Pixel Data; another writer's frames are left to it
        judged = type(writer._pixel_data_writer) is EncapsulatedPixelDataWriter
        path = os.path.abspath(str(writer.filepath))
        with self._lock:
            rec = self._files.get(path)
            if rec is None:
                rec = self._files[path] = _File(judged)
            elif not judged:
                rec.judged = False
            self._writers[writer] = rec
            return rec

    def _write(self, writer, tiles: Iterable[bytes]) -> int:
        """``write_tiles``: the tiles are held until a batch is full (wsidicom hands them over one
        or two at a time; a batch is judged with one vectorised search), then judged and written."""
        rec = self._file(writer)
        if not rec.judged:
            return _original_write(writer, tiles)
        n = 0
        for t in tiles:
            rec.pending.append(t)
            rec.pending_bytes += len(t)
            n += 1
            if len(rec.pending) >= BATCH_FRAMES or rec.pending_bytes >= BATCH_BYTES:
                self._flush(writer, rec)
        return n

    def _flush(self, writer, rec: _File) -> None:
        """Judge and write the tiles ``writer`` holds (before its ``finalize``, and when a batch is full)."""
        tiles, rec.pending, rec.pending_bytes = rec.pending, [], 0
        if not tiles:
            return
        judged, emptied = _judge(tiles, rec.known)
        _original_write(writer, judged)
        with self._lock:
            rec.frames += len(tiles)
            rec.emptied += emptied

    # -- after the conversion -----------------------------------------------------------------

    def moved(self, written: Path, final: Path) -> None:
        """``written`` (the file wsidicom wrote) is now ``final`` (renamed or copied with its
        Pixel Data byte for byte)."""
        with self._lock:
            self._moved[os.path.abspath(final)] = os.path.abspath(written)

    def outcome(self, files: Iterable[Path]) -> tuple[int, list[Path]]:
        """(segments emptied in the instances the hook scrubbed whole, the other instances of
        ``files``: they need ``scrub_frames``).  An instance is scrubbed whole when every frame its
        header declares passed the hook through an encapsulated pixel-data writer."""
        emptied = 0
        rest: list[Path] = []
        for p in files:
            p = Path(p)
            with self._lock:
                rec = self._files.get(self._moved.get(os.path.abspath(p), os.path.abspath(p)))
            if rec is not None and rec.judged and rec.frames == _declared_frames(p):
                emptied += rec.emptied
            else:
                rest.append(p)
        return emptied, rest


def _declared_frames(path: Path) -> int | None:
    """NumberOfFrames of an encapsulated JPEG instance (None when it has no encapsulated Pixel Data,
    its frames are JPEG 2000 / JPEG-LS, or the header cannot be read: the caller then does not
    count the instance as scrubbed)."""
    from wsianon.converters.dicom.stream import read_header
    from wsianon.errors import WsianonError

    try:
        ds, span = read_header(path, walk=False)
    except WsianonError:
        return None
    if span is None or not span.encapsulated:
        return None
    from wsianon.io import codestreams

    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if getattr(ds, "file_meta", None) else ""
    if ts in codestreams.J2K_TS or ts in codestreams.JPEGLS_TS:
        return None  # the hook judges JPEG; JPEG 2000 / JPEG-LS frames are scrub_frames' (their own marker walks)
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return None


class _Installed:
    """``FrameScrub.installed``: registers the folder; the first registration installs the
    class-level wrappers of ``WsiDicomWriter.write_tiles`` and ``finalize``, the last removal
    takes them away."""

    def __init__(self, scrub: FrameScrub, folder: Path):
        self._scrub = scrub
        self._key = os.path.join(os.path.abspath(folder), "")

    def __enter__(self) -> FrameScrub:
        from wsidicom.file.io.wsidicom_writer import WsiDicomWriter

        with _install_lock:
            if self._key in _sessions:
                raise RuntimeError("a frame scrub is already installed for this folder")
            if not _sessions:
                _originals.setdefault("write_tiles", WsiDicomWriter.write_tiles)
                _originals.setdefault("finalize", WsiDicomWriter.finalize)
                WsiDicomWriter.write_tiles = _write_tiles  # type: ignore[method-assign]
                WsiDicomWriter.finalize = _finalize  # type: ignore[method-assign]
            _sessions[self._key] = self._scrub
        return self._scrub

    def __exit__(self, *exc) -> None:
        from wsidicom.file.io.wsidicom_writer import WsiDicomWriter

        with _install_lock:
            _sessions.pop(self._key, None)
            if not _sessions and _originals:
                WsiDicomWriter.write_tiles = _originals["write_tiles"]  # type: ignore[method-assign]
                WsiDicomWriter.finalize = _originals["finalize"]  # type: ignore[method-assign]


def _session(writer) -> FrameScrub | None:
    path = os.path.abspath(str(writer.filepath))
    with _install_lock:
        for key, scrub in _sessions.items():
            if path.startswith(key):
                return scrub
    return None


def _original_write(writer, tiles: Iterable[bytes]) -> int:
    return _originals["write_tiles"](writer, tiles)


def _write_tiles(self, tiles: Iterable[bytes]) -> int:
    """The installed ``WsiDicomWriter.write_tiles``: a registered conversion's frames go through
    its :class:`FrameScrub`, any other writer's straight to wsidicom's."""
    scrub = _session(self)
    if scrub is None:
        return _original_write(self, tiles)
    return scrub._write(self, tiles)


def _finalize(self, *args, **kwargs):
    """The installed ``WsiDicomWriter.finalize``: the frames a registered conversion's writer
    still holds are judged and written first."""
    scrub = _session(self)
    if scrub is not None:
        rec = scrub._file(self)
        if rec.judged:
            scrub._flush(self, rec)
    return _originals["finalize"](self, *args, **kwargs)


def _judge(tiles: list[bytes], known: list[bytes]) -> tuple[list[bytes], int]:
    """(``tiles`` with the payloads scrub_frames would zero in their items zeroed, segments
    emptied): the items' values (each tile, and the zero byte that pads an odd length, as
    pydicom's ``itemize_frame`` stores it) joined in one buffer and judged by scrub_frames' own
    ``_buffer_spans`` (one vectorised known-clean-header test, every other frame walked)."""
    parts: list[bytes] = []
    frames: list[tuple[int, int]] = []
    pos = 0
    for t in tiles:
        parts.append(t)
        n = len(t)
        if n & 1:
            parts.append(b"\0")
            n += 1
        frames.append((pos, n))
        pos += n
    buf = b"".join(parts)
    spans = _buffer_spans(buf, 0, frames, known)
    if not spans:
        return tiles, 0
    out = bytearray(buf)
    for off, ln in spans:
        out[off : off + ln] = bytes(ln)
    mv = memoryview(out)
    return [bytes(mv[s : s + len(t)]) for (s, _n), t in zip(frames, tiles)], len(spans)


def installed_hooks() -> int:
    """How many conversions have the hook installed now (for tests)."""
    with _install_lock:
        return len(_sessions)
