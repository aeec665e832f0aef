"""The contract between the pipeline and per-format converters.

A native converter knows one vendor family.  It

* ``sniff``s a file by content (never by extension alone),
* ``inspect``s it into an :class:`Inventory` (identifying fields with their
  values, associated images, pyramid levels; values never leave the process
  unless the user asks),
* ``plan``s the redaction as a :class:`~wsianon.io.plan.Plan` of byte patches
  and small rewritten files; it never writes.

The pipeline applies the plan into a staging folder, verifies the result with
independent readers, and only then moves it into place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from wsianon.io.plan import Plan
from wsianon.io.scan import Canary
from wsianon.profiles.policy import Policy


@dataclass
class Field:
    """One identifying (or possibly identifying) metadata field of a source."""

    name: str  # e.g. "ImageDescription:ScanScope ID", "tag 306 DateTime"
    value: str  # the identifying value: never printed unless --show-values
    action: str  # "blank" | "remove" | "dummy" | "year" | "keep"
    where: str = ""  # e.g. "IFD 0", "Slidedat.ini [GENERAL]"
    canary: bool = True  # whether its value must not survive anywhere in the output

    def public(self, show_values: bool = False) -> dict:
        d = {"name": self.name, "action": self.action, "where": self.where}
        if show_values:
            d["value"] = self.value
        return d


@dataclass
class AssociatedImage:
    kind: str  # "label" | "macro" | "thumbnail" | "map" | "preview" | "overview" | "wholeslide"
    where: str  # "IFD 3", "Data0002.dat", ...
    identifying: bool  # shows the label or may show it
    action: str = "remove"


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

    def canaries(self) -> list[Canary]:
        out: dict[tuple[str, str], Canary] = {}
        for f in self.fields:
            if f.canary and f.action != "keep" and f.value and f.value.strip():
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
            "associated_images": [
                {"kind": i.kind, "where": i.where, "identifying": i.identifying, "action": i.action} for i in self.images
            ],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class SlideContext:
    """Per-slide facts the pipeline hands to converters."""

    pseudonym: str  # output base name (no extension)
    key: bytes  # the project key (HMAC for UIDs, SLIDE_IDs, date shifts)
    policy: Policy
    patient_pseudonym: str | None = None
    study_pseudonym: str | None = None


class NativeConverter:
    """Base class for per-vendor native redactors."""

    name: ClassVar[str] = ""  # short id, used in reports: "aperio"
    title: ClassVar[str] = ""  # human name: "Aperio SVS"
    openslide_vendor: ClassVar[str | None] = None  # what OpenSlide must detect on the output
    extension: ClassVar[str] = ""  # output extension, e.g. ".svs"

    def sniff(self, path: Path, head: bytes) -> bool:
        """True when ``path`` (first 64 KiB in ``head``) is this converter's format."""
        raise NotImplementedError

    def inspect(self, path: Path) -> Inventory:
        raise NotImplementedError

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
