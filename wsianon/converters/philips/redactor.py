"""Philips TIFF native redactor.

Facts (DESIGN.md §3, OpenSlide's Philips reader): IFD 0's ImageDescription is
the ``<DataObject ObjectType="DPUfsImport">`` XML of ``<Attribute Name=..>``
elements; Software starts with ``Philips``; the XML must end with
``</DataObject>`` and keep one ``PixelDataRepresentation`` per level.  Label
and macro are ``DPScannedImage`` objects (PIM_DP_IMAGE_TYPE LABELIMAGE /
MACROIMAGE) with a base64 JPEG in PIM_DP_IMAGE_DATA, or (newer exports)
stripped IFDs described ``Label`` / ``Macro``.

The XML is parsed (attribute order never matters) and re-serialized
fail-closed: safe attributes kept, dates by policy, UIDs replaced by keyed
dummies, everything else blanked.  LABELIMAGE / MACROIMAGE objects are
removed (or, with ``--label blank``, the label's JPEG replaced by a blank one
of the same size).  The new XML is written over the old one and the rest of
the old value zero-filled, so no byte of the old XML (base64 images included)
remains.  Label/Macro IFDs are wiped and unlinked.  The XML rewrite itself is
``wsianon.converters.dpufs`` (shared with iSyntax).

Decided once: ``analyze`` walks the file and decides every ASCII tag, XML
attribute and image without the key (``inspect`` is a view of it); ``plan``
renders the decided XML with the key (the keyed dummy UIDs) and carries out
the rest, deciding nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from wsianon.converters._tiffmeta import (
    TIFF_MAGIC,
    AsciiDecision,
    compile_all,
    decide_ascii,
    decision_field,
    open_tiff,
    parse_xml,
    xml_declaration,
)
from wsianon.converters.base import AssociatedImage, Field, Inventory, NativeConverter, SlideContext
from wsianon.converters.decisions import Decisions
from wsianon.converters.dpufs import DecidedXml, XmlCleaner, keyed_uid, normalize_markup  # noqa: F401 (keyed_uid: public here before the extraction)
from wsianon.errors import CorruptInput
from wsianon.io import tiffedit
from wsianon.io.ifdcopy import drop_ifds, orphan_values
from wsianon.io.plan import FilePlan, Patch, Plan
from wsianon.io.scan import Canary
from wsianon.io.tiff import IMAGE_DESCRIPTION, SOFTWARE, TILE_OFFSETS, TiffStructure
from wsianon.io.xmlform import dpufs_canonical
from wsianon.profiles import dpufs_table, load
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy


def _rules() -> dict:
    return load("philips")


@dataclass
class _Analysis:
    """The one walk's result, which the plan carries out: the decided XML tree (rendered with the
    key by the plan), the ASCII-tag decisions, and the label/macro IFDs with their decisions."""

    xml: DecidedXml | None = None
    declaration: str = ""  # written before the XML body (the source's declaration and a newline)
    xml_images: list[AssociatedImage] = field(default_factory=list)
    canaries: list[Canary] = field(default_factory=list)  # the embedded images' base64 (no stale XML byte may remain)
    ascii: list[AsciiDecision] = field(default_factory=list)
    fields: list[Field] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)
    label_ifds: dict[int, str] = field(default_factory=dict)  # ifd -> "label" | "macro"
    removed_ifds: set[int] = field(default_factory=set)  # label/macro IFDs wiped and unlinked
    notes: list[str] = field(default_factory=list)  # the plan's notes

    def render(self, key: bytes | None) -> bytes:
        """The new XML: the decided tree with keyed dummy UIDs (``key`` None: the shortest UIDs)."""
        assert self.xml is not None, "analyze sets xml or raises"
        # one form (io/xmlform.py): the source's whitespace, attribute order and spacing carried a
        # name as bits (space = 0, tab = 1) through run and verify, red team stop 38
        body = dpufs_canonical(self.xml.render(key), short_empty_elements=True, joined=frozenset(_rules().get("base64_attributes", ())), table=dpufs_table())
        return (self.declaration + body).encode("utf-8")


class PhilipsConverter(NativeConverter):
    name = "philips"
    title = "Philips TIFF"
    openslide_vendor = "philips"
    extension = ".tiff"

    def sniff(self, path: Path, head: bytes) -> bool:
        if head[:4] not in TIFF_MAGIC:
            return False
        try:
            with TiffStructure(path) as ts:
                sw = ts.text(ts.ifds[0], SOFTWARE) or ""
                desc = ts.text(ts.ifds[0], IMAGE_DESCRIPTION) or ""
                return sw.startswith("Philips") and "DPUfsImport" in desc[:4096]
        except Exception:
            return b"DPUfsImport" in head and b"Philips" in head

    def _walk(self, ts: TiffStructure, policy: Policy) -> _Analysis:
        r = _rules()
        an = _Analysis()
        keep = {int(k): compile_all(v) for k, v in r["ascii_keep"].items()}
        label_d, macro_d = set(r["label_descriptions"]), set(r["macro_descriptions"])
        keep[IMAGE_DESCRIPTION] = [re.compile(re.escape(d)) for d in label_d | macro_d]
        for ifd in ts.ifds:
            desc = (ts.text(ifd, IMAGE_DESCRIPTION) or "").strip()
            if TILE_OFFSETS in ifd:
                an.levels.append(ifd.index)
            elif any(desc.startswith(d) for d in label_d):
                an.label_ifds[ifd.index] = "label"
            elif any(desc.startswith(d) for d in macro_d):
                an.label_ifds[ifd.index] = "macro"
            skip = {IMAGE_DESCRIPTION} if ifd.index == 0 else set()
            for d in decide_ascii(ts, ifd, policy, keep, skip=skip):
                an.ascii.append(d)
                if d.action != "keep" and d.old.strip():
                    an.fields.append(decision_field(d))
        an.removed_ifds = {i for i, k in an.label_ifds.items() if not (k == "macro" and policy.macro == "keep")}
        if policy.label == "blank" and any(k == "label" for k in an.label_ifds.values()):
            an.notes.append("Philips label IFD: --label blank is honoured for the XML label only; the label IFD was wiped and unlinked")
        raw = ts.raw(ts.ifds[0].entries[IMAGE_DESCRIPTION]) if IMAGE_DESCRIPTION in ts.ifds[0] else b""
        root = parse_xml(raw, ts.path, "Philips ImageDescription XML")
        cleaner = XmlCleaner(r, policy, fmt="philips")
        try:
            levels = cleaner.clean(root)
        except ValueError:
            raise CorruptInput(ts.path, "Philips XML: the root element is not DataObject DPUfsImport") from None
        # closed world for the markup, as iSyntax's (the same schema): XML attributes but the schema's
        # and elements but DataObject / Attribute / Array are dropped (their names are the writer's text)
        for w, v in normalize_markup(root, set(r["allowed_xml_attributes"])):
            cleaner.fields.append(Field(f"XML markup: {w}", v, Action.REMOVE, "IFD 0"))
        decl = xml_declaration(raw.rstrip(b"\0").decode("utf-8", "replace"))
        an.declaration = decl + ("\n" if decl else "")
        an.xml = DecidedXml.freeze(root, cleaner.uid_elements)
        if not an.render(None).rstrip().endswith(b"</DataObject>"):  # the UIDs' values do not change the end
            raise CorruptInput(ts.path, "Philips XML does not end with </DataObject>")
        if levels != len(an.levels):
            raise CorruptInput(ts.path, f"Philips XML lists another number of PixelDataRepresentation objects than its {len(an.levels)} tiled levels")
        an.xml_images = cleaner.images
        an.canaries = cleaner.canaries
        an.fields.extend(cleaner.fields)
        return an

    # -- analyze: the one walk --------------------------------------------------
    def analyze(self, source: Path, policy: Policy) -> Decisions:
        """Decide every ASCII tag, XML attribute and image once, without the key (inspect and plan
        derive from this; the plan renders the decided XML with the key)."""
        path = Path(source)
        with open_tiff(path) as ts:
            an = self._walk(ts, policy)
            n_ifds = len(ts.ifds)
        d = Decisions(format=self.name, source=path, policy=policy, input_files=[path], levels=len(an.levels), ifds=n_ifds, analysis=an)
        d.fields = an.fields
        d.images = list(an.xml_images) + [
            AssociatedImage(k, f"IFD {i}", True, Action.REMOVE if i in an.removed_ifds else Action.KEEP) for i, k in an.label_ifds.items()
        ]
        d.extra_canaries = list(an.canaries)
        return d

    # -- plan ----------------------------------------------------------------
    def plan(self, inv: Inventory, ctx: SlideContext) -> Plan:
        """Carry out the decisions: the decided XML rendered with the key, the decided ASCII values
        written, the removed label/macro IFDs wiped and unlinked (nothing is decided here)."""
        d = self.decisions_for(inv, ctx.policy)
        an = d.analysis
        assert isinstance(an, _Analysis), "PhilipsConverter.analyze keeps its walk"
        path = d.source
        plan = Plan(format=self.name)
        with open_tiff(path) as ts:
            d.edits_by_ifd(len(ts.ifds))  # a file whose structure changed since analysis is refused
            app = tiffedit.Appender(ts.size, align=8)
            patches: list[Patch] = []
            e = ts.ifds[0].entries[IMAGE_DESCRIPTION]
            patches.extend(tiffedit.set_bytes(ts, e, an.render(ctx.key), "Philips XML rewritten fail-closed", app))
            remove = an.removed_ifds
            plan.notes.extend(an.notes)
            for a in an.ascii:
                if a.ifd in remove or a.new is None:
                    continue
                patches.extend(tiffedit.set_bytes(ts, ts.ifds[a.ifd].entries[a.tag], a.new.encode("latin-1"), f"IFD {a.ifd} tag {a.tag} cleaned", app))
            if remove:
                if 0 in remove:
                    raise CorruptInput(path, "Philips label/macro in IFD 0 (where the XML must live)")
                ps, _ = drop_ifds(ts, remove, app, reason="unlink label/macro")
                patches.extend(ps)
                patches.extend(orphan_values(ts, remove))
                for i in sorted(remove):
                    patches.extend(tiffedit.wipe_image_data(ts, ts.ifds[i], f"wipe {an.label_ifds[i]} pixels (IFD {i})"))
                    plan.remove("image", an.label_ifds[i], "wiped+unlinked", f"IFD {i}")
            for img in an.xml_images:
                plan.remove("image", img.kind, img.action.done, img.where)
            for f in an.fields:  # every field decision (kept XML dates too, as the report always listed them)
                idx = int(f.where.split()[-1]) if f.where.startswith("IFD ") and f.where.split()[-1].isdigit() else -1
                plan.remove("field", f.name, Action.REMOVE.done if idx in remove else f.action.done, f.where)
            plan.files.append(FilePlan(dest=self.output_name(ctx, path), source=path, patches=patches, append=app.data))
        return plan
