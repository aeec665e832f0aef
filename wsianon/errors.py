"""Error types shared by every layer.

A ``WsianonError`` is a *user* error (bad input, unwritable output, refused
format): the CLI prints it as one line naming the file and the reason, never a
traceback.
"""

from __future__ import annotations

from pathlib import Path


class WsianonError(Exception):
    """A user-facing error about one file."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)

    def one_line(self) -> str:
        msg = str(self).replace("\n", " ")
        return msg


class UnsupportedFormat(WsianonError):
    """The file is not a format any redactor claims."""


class CorruptInput(WsianonError):
    """The file claims a supported format but its structure is broken."""


class OutputError(WsianonError):
    """The output cannot be written (permissions, full disk, ...)."""


class NothingToShare(WsianonError):
    """The input holds nothing that may be shared (e.g. a DICOM series of only a LABEL): the
    slide is skipped, which is not a failure."""
