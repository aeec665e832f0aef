"""Background write-back of freshly written files, so that the disk writes them while the
caller does something else (the DICOM route: while the verifier reads them back), and the
fsync that makes them durable before they are placed then finds clean pages.

``Writeback(paths)`` starts a daemon thread that ``fdatasync``s each file in turn (opened
read-only, by path, only while the thread runs).  It never replaces that fsync: durability and
its place stay with the caller (``Staging.commit``); this only moves the disk's work earlier.

* :meth:`Writeback.finish` waits for it and raises the first write-back error (``ENOSPC``,
  ``EIO``) as a one-line :class:`OutputError`.  An error a background ``fdatasync`` saw is
  not reported again by a later ``fsync`` on a newly opened descriptor (Linux reports each
  write-back error once per open file description, and a descriptor opened after the error
  was seen samples it as already seen), so it must reach the caller from here.
* :meth:`Writeback.stop` (idempotent) cancels what is not started yet and waits for the file
  in progress: call it before the files are moved or removed, so the thread never touches a
  file after that.

Measured on a 0.6 GB slide converted to DICOM (2 cores): the placing fsync went from 0.27 s to
under 0.01 s, the verification it overlaps took as long as before.  ``fdatasync`` rather than
``POSIX_FADV_DONTNEED`` (which starts write-back too, but also drops the clean pages the
verifier is about to read back: its read-back then came from the disk, 1.1-1.9 s instead of 0.9 s).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from wsianon.errors import OutputError
from wsianon.io.safetext import os_reason

THREAD_PREFIX = "wsianon-writeback"


class Writeback:
    """The write-back of ``paths`` in a daemon thread (see the module docstring)."""

    def __init__(self, paths: list[Path], label: str = "", error_path: Path | None = None):
        self.paths = [Path(p) for p in paths]
        self.error_path = error_path  # the path a write-back error is reported against
        self.synced: list[Path] = []  # files written back, in order (read after finish/stop)
        self._cancel = threading.Event()
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}-{label}" if label else THREAD_PREFIX, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for p in self.paths:
            if self._cancel.is_set():
                return
            try:
                fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))
            except OSError:
                continue  # gone or replaced: the caller's own fsync judges what it places
            try:
                os.fdatasync(fd)
                self.synced.append(p)
            except OSError as exc:
                self._error = exc
                return
            finally:
                os.close(fd)

    def stop(self) -> None:
        """Cancel the files not started yet and wait for the one in progress."""
        self._cancel.set()
        self._thread.join()

    def finish(self) -> None:
        """Wait for every file to be written back; a write-back error becomes an :class:`OutputError`."""
        self._thread.join()
        if self._error is not None:
            raise OutputError(self.error_path, f"cannot write output: {os_reason(self._error)}")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
