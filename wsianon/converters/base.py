"""The contract between the pipeline and per-format converters.

A native converter knows one vendor family.  It

* ``sniff``s a file by content (never by extension alone),
* ``analyze``s it once into :class:`~wsianon.converters.decisions.Decisions`
  (every identifying field and associated image with its action),
* ``inspect``s it into an :class:`Inventory` (identifying fields with their
  values, associated images, pyramid levels; values never leave the process
  unless the user asks): a view of the decisions,
* ``plan``s the redaction as a :class:`~wsianon.io.plan.Plan` of byte patches
  and small rewritten files from the same decisions; it never writes.

The pipeline applies the plan into a staging folder, verifies the result with
independent readers, and only then moves it into place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from wsianon.converters.decisions import Decisions, FieldDecision, ImageDecision
from wsianon.io.plan import Plan
from wsianon.io.scan import Canary
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy


# The inventory's fields and images are the converter's decisions (one model, decided once).
Field = FieldDecision
AssociatedImage = ImageDecision


@dataclass
class Inventory:
    format: str  # converter name, e.g. "aperio"
    path: Path  # the main input file (NAME.mrxs for MRXS, a folder for DICOM series)
    input_files: list[Path] = field(default_factory=list)  # every file that belongs to the slide
    fields: list[Field] = field(default_factory=list)
    images: list[AssociatedImage] = field(default_factory=list)
    levels: int = 0
    notes: list[str] = field(default_factory=list)
    extra_canaries: list[Canary] = field(default_factory=list)  # e.g. decoded barcodes, the file stem
    decisions: Decisions | None = field(default=None, repr=False, compare=False)  # what this view was derived from

    def canaries(self) -> list[Canary]:
        out: dict[tuple[str, str], Canary] = {}
        for f in self.fields:
            if f.canary and f.action is not Action.KEEP and f.value and f.value.strip():
                out.setdefault((f.name, f.value.strip()), Canary(f.name, f.value.strip()))
        for c in self.extra_canaries:
            if c.value.strip():
                out.setdefault((c.name, c.value.strip()), c)
        return list(out.values())

    def public(self, show_values: bool = False) -> dict:
        return {
            "format": self.format,
            "levels": self.levels,
            "fields": [f.public(show_values) for f in self.fields],
            "associated_images": [i.public() for i in self.images],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class SlideContext:
    """Per-slide facts the pipeline hands to converters."""

    pseudonym: str  # output base name (no extension)
    key: bytes = field(repr=False)  # the project key (HMAC for UIDs, SLIDE_IDs, date shifts): never in a repr (a Dask worker logs a failed task's arguments)
    policy: Policy
    patient_pseudonym: str | None = None
    study_pseudonym: str | None = None
    map_line: int = 0  # the pseudonym map's line that chose the names above (0: keyed pseudonyms, no map entry)

    def names(self) -> frozenset[str]:
        """The pseudonyms an output of this slide may carry as text (its name, MRXS's SLIDE_NAME,
        DICOM's PatientID): the verifiers accept them, whatever a pseudonym map chose."""
        return frozenset(n for n in (self.pseudonym, self.patient_pseudonym) if n)


class NativeConverter:
    """Base class for per-vendor native redactors."""

    name: ClassVar[str] = ""  # short id, used in reports: "aperio"
    title: ClassVar[str] = ""  # human name: "Aperio SVS"
    openslide_vendor: ClassVar[str | None] = None  # what OpenSlide must detect on the output
    extension: ClassVar[str] = ""  # output extension, e.g. ".svs"

    def sniff(self, path: Path, head: bytes) -> bool:
        """True when ``path`` (first 64 KiB in ``head``) is this converter's format."""
        raise NotImplementedError

    def analyze(self, source: Path, policy: Policy) -> Decisions:
        """Walk ``source`` once and decide every field and image under ``policy`` (the one walk:
        ``inspect`` shows these decisions, ``plan`` carries them out, the report names them)."""
        raise NotImplementedError

    def decisions_for(self, inv: Inventory, policy: Policy) -> Decisions:
        """The decisions ``inv`` was derived from when they hold for ``policy``, else a fresh ``analyze``."""
        if inv.decisions is not None and inv.decisions.made_for(policy):
            return inv.decisions
        return self.analyze(inv.path, policy)

    def inspect(self, path: Path, policy: Policy | None = None) -> Inventory:
        """The inventory ``wsianon inspect`` shows: a view of ``analyze``'s decisions."""
        return self.analyze(path, policy or Policy()).inventory()

    def plan(self, inv: Inventory, ctx: SlideContext) -> Plan:
        raise NotImplementedError

    def output_name(self, ctx: SlideContext, source: Path) -> str:
        """The main output file's name (relative to the output folder)."""
        if ctx.policy.rename == "keep":
            return source.name
        return ctx.pseudonym + (self.extension or source.suffix.lower())

    def commit_last(self, plan: Plan) -> list[str]:
        """Top-level staged entries to move into place last (the one that 'looks finished')."""
        return []
