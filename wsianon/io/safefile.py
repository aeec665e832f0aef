"""Opening inputs safely: regular files only, bounded reads.

A FIFO, socket or device named like a slide (``x.svs``) would block a plain
``open()``/``read()`` forever or stream without end.  Inputs are opened with
``O_NONBLOCK`` (so opening a FIFO returns at once), checked with ``fstat`` on the
open descriptor (no check-then-open race), and refused unless they are regular
files; reads are bounded.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from wsianon.errors import CorruptInput, UnsupportedFormat
from wsianon.io.safetext import os_reason

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


def kind_of(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def is_regular(path: Path) -> bool:
    """True when ``path`` (symlinks followed) is a regular file; never blocks."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def open_regular(path: Path) -> int:
    """A read-only descriptor on ``path``, refused unless it is a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise UnsupportedFormat(path, "is a directory") from None
    except (OSError, ValueError) as exc:
        raise CorruptInput(path, f"cannot read: {os_reason(exc)}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UnsupportedFormat(path, "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise UnsupportedFormat(path, f"is {kind_of(st.st_mode)}, not a regular file: refused")
        # back to blocking reads for a regular file (O_NONBLOCK has no effect there anyway)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes from the start of a regular file (refused otherwise)."""
    fd = open_regular(path)
    try:
        chunks = []
        left = limit
        while left > 0:
            try:
                b = os.read(fd, min(left, 1 << 20))
            except OSError as exc:
                raise CorruptInput(path, f"cannot read: {os_reason(exc)}") from None
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_whole_regular(path: Path, limit: int = 256 * 1024 * 1024) -> bytes:
    """A whole (small) regular file: its size as ``fstat`` reports it, at most ``limit`` bytes."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise CorruptInput(path, f"implausibly large ({size} bytes) for a metadata file")
    finally:
        os.close(fd)
    return read_regular(path, size)


def same_file(a: Path | str | None, b: Path | str) -> bool:
    """Whether ``a`` and ``b`` name the same existing file (a link, another path to it); False
    when ``a`` is None or either cannot be reached."""
    if a is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
