"""The one vocabulary of de-identification actions.

Every decision about a field or an associated image carries an :class:`Action`:
converters decide with it, ``inspect`` shows its value, the run report shows its
past-tense word (:attr:`Action.done`), and the DICOM profile's Annex E letters
(PS3.15 Table E.1-1: X remove, Z zero-length/blank, D dummy, K keep, C clean,
U replace UID) parse into it.  It is a ``StrEnum``: its values are the strings
the inventory always showed ("blank", "remove", ...), so JSON and comparisons
with plain strings stay as they were.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    KEEP = "keep"  # left as it is (safe vocabulary, or kept on request)
    BLANK = "blank"  # text emptied / image replaced by a blank one, the structure stays
    REMOVE = "remove"  # taken out (a key, a line, an image wiped and unlinked)
    DUMMY = "dummy"  # replaced by a dummy value (keyed, no source information)
    YEAR = "year"  # a date reduced to its year
    ZERO = "zero"  # a number set to zero (slide position)
    CLEAN = "clean"  # rewritten keeping only its safe part
    REPLACE = "replace"  # replaced by a derived equivalent (a UID, a rendered preview)

    @property
    def done(self) -> str:
        """The word the run report uses for what happened."""
        return _DONE[self]

    @property
    def dicom_code(self) -> str:
        """The Annex E letter of this action."""
        return _DICOM_CODE[self]

    @classmethod
    def _missing_(cls, value: object) -> Action | None:
        # Annex E letters and report words parse into the same members
        if isinstance(value, str):
            return _BY_CODE.get(value) or _BY_DONE.get(value)
        return None

    @classmethod
    def parse(cls, value: str | Action) -> Action:
        """An action from its value, its Annex E letter or its report word; ValueError otherwise."""
        return cls(value)


_DONE = {
    Action.KEEP: "kept",
    Action.BLANK: "blanked",
    Action.REMOVE: "removed",
    Action.DUMMY: "dummy",
    Action.YEAR: "reduced to year",
    Action.ZERO: "zeroed",
    Action.CLEAN: "cleaned",
    Action.REPLACE: "replaced",
}
_DICOM_CODE = {
    Action.KEEP: "K",
    Action.BLANK: "Z",
    Action.REMOVE: "X",
    Action.DUMMY: "D",
    Action.CLEAN: "C",
    Action.REPLACE: "U",
    Action.YEAR: "C",  # a date cleaned to its year
    Action.ZERO: "Z",
}
_BY_CODE = {"K": Action.KEEP, "Z": Action.BLANK, "X": Action.REMOVE, "D": Action.DUMMY, "C": Action.CLEAN, "U": Action.REPLACE}
_BY_DONE = {w: a for a, w in _DONE.items()}

__all__ = ["Action"]
