"""The frames' JPEG scrub done while wsidicom writes them, not in a second pass over the files.

``scrub_frames`` (stream.py) zeroes, in place, the COM / APPn payloads (and non-zero bytes after
EOI) of every frame of a written instance: a second read of all pixel data after the conversion.
:class:`FrameScrub` judges the same frames, with the same code (``stream._buffer_spans``), in
memory, at the one place every frame of every instance passes on its way into a file:
``wsidicom``'s ``WsiDicomWriter.write_tiles`` (passed-through tiles, re-tiled or re-encoded ones,
pyramid levels, thumbnails and labels alike).  That runs in wsidicom's own writer threads, while
its readers fetch the next tiles.

The judgement sees a frame as ``scrub_frames`` sees it in the file: the tile followed by the zero
byte that pads an odd-length item (pydicom's ``itemize_frame``), so a segment that runs into that
byte is judged the same.  The bytes written are the tile with the same payloads zeroed; the
number of segments emptied is the same count.

Closed world, fail closed: the hook is installed (a class-level wrapper, reference counted) only
while a conversion runs, and judges only writers whose file lies in a folder a :class:`FrameScrub`
registered (another conversion in another thread has its own).  After the conversion an instance
counts as scrubbed only when the hook judged, through an encapsulated pixel-data writer, as many
frames as the instance's header declares (NumberOfFrames); any other instance (a pixel-data writer
the hook does not judge, a code path that wrote frames around ``write_tiles``) is left for
``scrub_frames``.  The verifier (``dicom: frame segments``) proves the result from the output
either way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from wsianon.converters.dicom.stream import _buffer_spans

# frames judged together (one joined buffer, one vectorised known-header test)
BATCH_FRAMES = 256
BATCH_BYTES = 8 << 20

_install_lock = threading.Lock()
_sessions: dict[str, FrameScrub] = {}  # registered folder (absolute, with a trailing separator) -> its scrub
_original = None  # WsiDicomWriter.write_tiles as wsidicom defines it (kept once seen)


class _File:
    """What the hook did to one instance file: frames judged, segments emptied."""

    __slots__ = ("frames", "emptied", "known", "judged")

    def __init__(self, judged: bool):
        self.frames = 0
        self.emptied = 0
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

    # -- installation ---------------------------------------------------------------------------

    def installed(self, folder: Path) -> _Installed:
        """A context manager: the hook judges frames written under ``folder`` while it is open."""
        return _Installed(self, folder)

    # -- the hook ---------------------------------------------------------------------------------

    def _record(self, path: str, judged: bool) -> _File:
        with self._lock:
            f = self._files.get(path)
            if f is None:
                f = self._files[path] = _File(judged)
            elif not judged:
                f.judged = False
            return f

    def _judge(self, writer, tiles: Iterable[bytes]) -> Iterable[bytes]:
        from wsidicom.file.io.wsidicom_writer import EncapsulatedPixelDataWriter

        path = os.path.abspath(str(writer.filepath))
        # scrub_frames reads only encapsulated Pixel Data; another writer's frames are left to it
        if type(writer._pixel_data_writer) is not EncapsulatedPixelDataWriter:
            self._record(path, judged=False)
            return tiles
        return self._scrubbed(self._record(path, judged=True), tiles)

    def _scrubbed(self, rec: _File, tiles: Iterable[bytes]) -> Iterator[bytes]:
        batch: list[bytes] = []
        size = 0
        for t in tiles:
            batch.append(t)
            size += len(t)
            if len(batch) >= BATCH_FRAMES or size >= BATCH_BYTES:
                yield from self._batch(rec, batch)
                batch, size = [], 0
        if batch:
            yield from self._batch(rec, batch)

    def _batch(self, rec: _File, tiles: list[bytes]) -> list[bytes]:
        """``tiles`` as written: each judged as scrub_frames judges its item (the tile and the zero
        byte that pads an odd length), the payloads it would zero zeroed."""
        parts: list[bytes] = []
        frames: list[tuple[int, int]] = []
        pos = 0
        for t in tiles:
            n = len(t) + (len(t) & 1)
            parts.append(bytes(t))
            if len(t) & 1:
                parts.append(b"\0")
            frames.append((pos, n))
            pos += n
        buf = b"".join(parts)
        spans = _buffer_spans(buf, 0, frames, rec.known)
        with self._lock:
            rec.frames += len(tiles)
            rec.emptied += len(spans)
        if not spans:
            return tiles
        out = bytearray(buf)
        for off, ln in spans:
            out[off : off + ln] = bytes(ln)
        mv = memoryview(out)
        return [bytes(mv[s : s + len(t)]) for (s, _n), t in zip(frames, tiles)]

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
    """NumberOfFrames of an encapsulated instance (None when it has no encapsulated Pixel Data or
    the header cannot be read: the caller then does not count the instance as scrubbed)."""
    from wsianon.converters.dicom.stream import read_header
    from wsianon.errors import WsianonError

    try:
        ds, span = read_header(path, walk=False)
    except WsianonError:
        return None
    if span is None or not span.encapsulated:
        return None
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return None


class _Installed:
    """``FrameScrub.installed``: registers the folder, installs the class-level wrapper of
    ``WsiDicomWriter.write_tiles`` for the first registration, removes it after the last."""

    def __init__(self, scrub: FrameScrub, folder: Path):
        self._scrub = scrub
        self._key = os.path.join(os.path.abspath(folder), "")

    def __enter__(self) -> FrameScrub:
        global _original
        from wsidicom.file.io.wsidicom_writer import WsiDicomWriter

        with _install_lock:
            if self._key in _sessions:
                raise RuntimeError("a frame scrub is already installed for this folder")
            if not _sessions:
                if _original is None:
                    _original = WsiDicomWriter.write_tiles
                WsiDicomWriter.write_tiles = _write_tiles  # type: ignore[method-assign]
            _sessions[self._key] = self._scrub
        return self._scrub

    def __exit__(self, *exc) -> None:
        from wsidicom.file.io.wsidicom_writer import WsiDicomWriter

        with _install_lock:
            _sessions.pop(self._key, None)
            if not _sessions and _original is not None:
                WsiDicomWriter.write_tiles = _original  # type: ignore[method-assign]


def _session(writer) -> FrameScrub | None:
    path = os.path.abspath(str(writer.filepath))
    with _install_lock:
        for key, scrub in _sessions.items():
            if path.startswith(key):
                return scrub
    return None


def _write_tiles(self, tiles: Iterable[bytes]) -> int:
    """The installed ``WsiDicomWriter.write_tiles``: frames of a registered conversion are judged
    (and scrubbed) on their way to the original."""
    original = _original
    assert original is not None, "installed before it can be called"
    scrub = _session(self)
    if scrub is not None:
        tiles = scrub._judge(self, tiles)
    return original(self, tiles)


def installed_hooks() -> int:
    """How many conversions have the hook installed now (for tests)."""
    with _install_lock:
        return len(_sessions)
