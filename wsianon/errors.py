"""Error types shared by every layer.

A ``WsianonError`` is a *user* error (bad input, unwritable output, refused
format): the CLI prints it as one line naming the file and the reason, never a
traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

# a number of 4 or more digits in a reason about an input's content (digit groups joined by one
# of ``. , : / -`` counted together, "98:76:54:32" one number), except the codec's name "JPEG 2000"
_NUMBER = re.compile(r"(?<!JPEG )\d+(?:[.,:/-]\d+)*")


def withhold_numbers(reason: str) -> str:
    """``reason`` with every number of 4 or more digits shown as ``<number>``.

    A reason about a file's content often names a value read from it (an offset, a count, a
    position), and it reaches the console, the job manifest and the shared report and
    certificate; a damaged or crafted file chooses those values, so an MRN or a birth date could
    be one (red team stop 39: "Index.dat points to offset 98765432", "frames 98765432 to ...").
    Small numbers (an IFD's index, a level, a count of a few) stay: they say where, not what."""
    return _NUMBER.sub(lambda m: "<number>" if sum(c.isdigit() for c in m.group()) >= 4 else m.group(), reason)


class WsianonError(Exception):
    """A user-facing error about one file."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)

    def one_line(self) -> str:
        msg = str(self).replace("\n", " ")
        return msg


class _ContentError(WsianonError):
    """An error about what an input holds: its reason never shows a long number
    (:func:`withhold_numbers`)."""

    def __init__(self, path: str | Path | None, reason: str):
        super().__init__(path, withhold_numbers(reason))


class UnsupportedFormat(_ContentError):
    """The file is not a format any redactor claims."""


class CorruptInput(_ContentError):
    """The file claims a supported format but its structure is broken."""


class OutputError(WsianonError):
    """The output cannot be written (permissions, full disk, ...)."""


class NothingToShare(_ContentError):
    """The input holds nothing that may be shared (e.g. a DICOM series of only a LABEL): the
    slide is skipped, which is not a failure."""
