"""Decisions: what a redactor decided about one source, made once.

``NativeConverter.analyze(source, policy)`` walks a source once and returns
:class:`Decisions`: one :class:`FieldDecision` per identifying (or possibly
identifying) field and one :class:`ImageDecision` per associated image, each
with an :class:`~wsianon.profiles.actions.Action`.  Everything else is derived
from them:

* the inventory ``inspect`` shows (:meth:`Decisions.inventory`; its fields and
  images ARE the decisions),
* the plan ``run`` applies (the converter turns the decisions' :class:`TagEdit`
  steps into byte patches without deciding again),
* the report's list of what was changed (:meth:`FieldDecision.removal`).

Values stay in memory: ``public()`` never shows them unless asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from wsianon.io.plan import Plan, Removal
from wsianon.io.scan import Canary
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy

if TYPE_CHECKING:
    from wsianon.converters.base import Inventory


@dataclass(init=False)
class FieldDecision:
    """One identifying (or possibly identifying) metadata field and what happens to it."""

    name: str  # e.g. "ImageDescription:ScanScope ID", "tag 306 DateTime"
    value: str = field(repr=False)  # the identifying value: in memory only, printed only with --show-values
    action: Action
    where: str = ""  # e.g. "IFD 0", "Slidedat.ini [GENERAL]"
    canary: bool = True  # whether its value must not survive anywhere in the output

    def __init__(self, name: str, value: str, action: Action | str, where: str = "", canary: bool = True) -> None:
        self.name = name
        self.value = value
        self.action = Action(action)  # an action's value ("blank") parses into the enum
        self.where = where
        self.canary = canary

    def public(self, show_values: bool = False) -> dict:
        d = {"name": self.name, "action": self.action, "where": self.where}
        if show_values:
            d["value"] = self.value
        return d

    def removal(self) -> Removal:
        """The report's line for this decision (the name and what was done, never the value)."""
        return Removal("field", self.name, self.action.done, self.where)


class ImageKind(StrEnum):
    """What an associated image is (the words reports and ``inspect`` show)."""

    LABEL = "label"
    MACRO = "macro"
    THUMBNAIL = "thumbnail"
    MAP = "map"  # NDPI slide map
    PREVIEW = "preview"  # the MRXS .mrxs preview JPEG
    OVERVIEW = "overview"
    WHOLESLIDE = "wholeslide"
    UNKNOWN = "unknown"  # an IFD no rule recognises (removed, fail-closed)
    OTHER = "other"  # a Philips/iSyntax image object of a type no rule names (removed, fail-closed)


@dataclass(init=False)
class ImageDecision:
    """One associated image (label, macro, thumbnail, ...) and what happens to it."""

    kind: ImageKind
    where: str  # "IFD 3", "Data0002.dat", ...
    identifying: bool  # shows the label or may show it
    action: Action = Action.REMOVE

    def __init__(self, kind: ImageKind | str, where: str, identifying: bool, action: Action | str = Action.REMOVE) -> None:
        self.kind = ImageKind(kind)  # an unknown word is a programming error, caught here
        self.where = where
        self.identifying = identifying
        self.action = Action(action)

    def public(self) -> dict:
        return {"kind": self.kind, "where": self.where, "identifying": self.identifying, "action": self.action}


@dataclass
class TagEdit:
    """How one TIFF entry is changed to carry out decisions (decided in ``analyze``, applied by ``plan``).

    ``op``: "set" writes ``data`` as the entry's new value, "blank" zeroes the
    entry's value bytes, "zero" zeroes an inline numeric value, "none" changes
    nothing (the decisions are reported, the bytes already comply).
    """

    ifd: int
    tag: int
    op: Literal["set", "blank", "zero", "none"]
    data: bytes = b""
    reason: str = ""
    fields: list[FieldDecision] = field(default_factory=list)  # the decisions this edit carries out


@dataclass
class Decisions:
    """Everything decided about one source under one policy."""

    format: str
    source: Path
    policy: Policy
    input_files: list[Path] = field(default_factory=list)
    fields: list[FieldDecision] = field(default_factory=list)
    images: list[ImageDecision] = field(default_factory=list)
    levels: int = 0
    notes: list[str] = field(default_factory=list)
    extra_canaries: list[Canary] = field(default_factory=list)
    edits: list[TagEdit] = field(default_factory=list)  # format-private steps (TIFF redactors), in walk order
    image_at: dict[int, ImageDecision] = field(default_factory=dict)  # IFD index -> its image decision
    ifds: int = 0  # IFDs walked (TIFF redactors): the plan refuses a file whose structure changed since
    analysis: object | None = field(default=None, repr=False)  # the format's own parsed walk, which its plan applies
    _inventory: Inventory | None = field(default=None, repr=False)

    def edits_by_ifd(self, ifds_now: int) -> dict[int, list[TagEdit]]:
        """The tag edits grouped by IFD index, for a file that still has the ``ifds`` IFDs walked;
        a file whose structure changed since analysis is refused."""
        if ifds_now != self.ifds:
            from wsianon.errors import CorruptInput

            raise CorruptInput(self.source, "the file changed between inspection and redaction")
        by_ifd: dict[int, list[TagEdit]] = {}
        for edit in self.edits:
            by_ifd.setdefault(edit.ifd, []).append(edit)
        return by_ifd

    def made_for(self, policy: Policy) -> bool:
        """True when these decisions hold for ``policy`` (the options that change a decision are equal)."""
        return (self.policy.label, self.policy.macro, self.policy.thumbnail, self.policy.dates) == (policy.label, policy.macro, policy.thumbnail, policy.dates)

    def inventory(self) -> Inventory:
        """The inventory ``inspect`` shows: a view of these decisions (the same objects)."""
        if self._inventory is None:
            from wsianon.converters.base import Inventory

            self._inventory = Inventory(
                format=self.format,
                path=self.source,
                input_files=list(self.input_files) or [self.source],
                fields=self.fields,
                images=self.images,
                levels=self.levels,
                notes=list(self.notes),
                extra_canaries=list(self.extra_canaries),
                decisions=self,
            )
        return self._inventory


def report_fields(plan: Plan, fields: list[FieldDecision]) -> None:
    """Add the report lines of the decisions an applied step carried out (kept fields are not reported)."""
    for f in fields:
        if f.action is not Action.KEEP:
            r = f.removal()
            plan.remove(r.kind, r.name, r.action, r.where)


__all__ = ["Action", "Decisions", "FieldDecision", "ImageDecision", "TagEdit", "report_fields"]


def apply_tag_edits(ts, ifd, edits: list[TagEdit], fp, plan: Plan, appender, source: Path) -> None:
    """Carry out one IFD's decided tag edits as byte patches of ``fp`` ("set": the new value, in
    place or appended; "blank": the value bytes zeroed; "zero": an inline value zeroed) and report
    their fields.  An entry that is no longer there means the file changed since analysis."""
    from wsianon.errors import CorruptInput
    from wsianon.io import tiffedit
    from wsianon.io.plan import Patch

    for edit in edits:
        entry = ifd.get(edit.tag)
        if entry is None:
            raise CorruptInput(source, "the file changed between inspection and redaction")
        if edit.op == "set":
            fp.patches += tiffedit.set_bytes(ts, entry, edit.data, edit.reason, appender)
        elif edit.op == "blank":
            fp.patches += tiffedit.blank_entry(ts, entry, edit.reason)
        elif edit.op == "zero":
            fp.patches.append(Patch(entry.value_offset, entry.size, None, edit.reason))
        report_fields(plan, edit.fields)
