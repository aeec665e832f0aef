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
    serialize,
    xml_declaration,
)
from wsianon.converters.base import AssociatedImage, Field, Inventory, NativeConverter, SlideContext
from wsianon.converters.dpufs import XML_IMAGE_DONE, XmlCleaner, keyed_uid  # noqa: F401 (keyed_uid: public here before the extraction)
from wsianon.errors import CorruptInput
from wsianon.io import tiffedit
from wsianon.io.ifdcopy import drop_ifds, orphan_values
from wsianon.io.plan import FilePlan, Patch, Plan
from wsianon.io.scan import Canary
from wsianon.io.tiff import IMAGE_DESCRIPTION, SOFTWARE, TILE_OFFSETS, TiffStructure
from wsianon.profiles import load
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy


def _rules() -> dict:
    return load("philips")


@dataclass
class _XmlResult:
    new_xml: bytes
    fields: list[Field]
    images: list[AssociatedImage]
    canaries: list[Canary]
    levels: int


@dataclass
class _Analysis:
    xml: _XmlResult | None = None
    ascii: list[AsciiDecision] = field(default_factory=list)
    fields: list[Field] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)
    label_ifds: dict[int, str] = field(default_factory=dict)  # ifd -> "label" | "macro"


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

    def _analyze(self, ts: TiffStructure, policy: Policy, key: bytes) -> _Analysis:
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
        raw = ts.raw(ts.ifds[0].entries[IMAGE_DESCRIPTION]) if IMAGE_DESCRIPTION in ts.ifds[0] else b""
        root = parse_xml(raw, ts.path, "Philips ImageDescription XML")
        cleaner = XmlCleaner(_rules(), policy, key)
        try:
            levels = cleaner.clean(root)
        except ValueError:
            raise CorruptInput(ts.path, "Philips XML: the root element is not DataObject DPUfsImport") from None
        text = raw.rstrip(b"\0").decode("utf-8", "replace")
        new = serialize(root, xml_declaration(text) + ("\n" if xml_declaration(text) else "")).encode("utf-8")
        if not new.rstrip().endswith(b"</DataObject>"):
            raise CorruptInput(ts.path, "Philips XML does not end with </DataObject>")
        if levels != len(an.levels):
            raise CorruptInput(ts.path, f"Philips XML lists {levels} PixelDataRepresentation objects for {len(an.levels)} tiled levels")
        an.xml = _XmlResult(new, cleaner.fields, cleaner.images, cleaner.canaries, levels)
        an.fields.extend(cleaner.fields)
        return an

    def inspect(self, path: Path, policy: Policy | None = None) -> Inventory:
        policy = policy or Policy()
        inv = Inventory(format=self.name, path=path, input_files=[path])
        with open_tiff(path) as ts:
            an = self._analyze(ts, policy, b"inspect")
        assert an.xml is not None, "_analyze sets xml or raises"
        inv.levels = len(an.levels)
        inv.fields = [f if f.action is not Action.DUMMY else Field(f.name, f.value, Action.DUMMY, f.where) for f in an.fields]
        inv.images = list(an.xml.images) + [
            AssociatedImage(k, f"IFD {i}", True, Action.KEEP if (k == "macro" and policy.macro == "keep") else Action.REMOVE) for i, k in an.label_ifds.items()
        ]
        inv.extra_canaries = list(an.xml.canaries)
        return inv

    def plan(self, inv: Inventory, ctx: SlideContext) -> Plan:
        policy = ctx.policy
        path = inv.path
        plan = Plan(format=self.name)
        with open_tiff(path) as ts:
            an = self._analyze(ts, policy, ctx.key)
            assert an.xml is not None, "_analyze sets xml or raises"
            app = tiffedit.Appender(ts.size, align=8)
            patches: list[Patch] = []
            e = ts.ifds[0].entries[IMAGE_DESCRIPTION]
            patches.extend(tiffedit.set_bytes(ts, e, an.xml.new_xml, "Philips XML rewritten fail-closed", app))
            remove = {i for i, k in an.label_ifds.items() if not (k == "macro" and policy.macro == "keep")}
            if policy.label == "blank" and any(k == "label" for k in an.label_ifds.values()):
                plan.notes.append("Philips label IFD: --label blank is honoured for the XML label only; the label IFD was wiped and unlinked")
            for d in an.ascii:
                if d.ifd in remove or d.new is None:
                    continue
                patches.extend(tiffedit.set_bytes(ts, ts.ifds[d.ifd].entries[d.tag], d.new.encode("latin-1"), f"IFD {d.ifd} tag {d.tag} cleaned", app))
            if remove:
                if 0 in remove:
                    raise CorruptInput(path, "Philips label/macro in IFD 0 (where the XML must live)")
                ps, _ = drop_ifds(ts, remove, app, reason="unlink label/macro")
                patches.extend(ps)
                patches.extend(orphan_values(ts, remove))
                for i in sorted(remove):
                    patches.extend(tiffedit.wipe_image_data(ts, ts.ifds[i], f"wipe {an.label_ifds[i]} pixels (IFD {i})"))
                    plan.remove("image", an.label_ifds[i], "wiped+unlinked", f"IFD {i}")
            for img in an.xml.images:
                plan.remove("image", img.kind, XML_IMAGE_DONE[img.action], img.where)
            for f in an.fields:
                idx = int(f.where.split()[-1]) if f.where.startswith("IFD ") and f.where.split()[-1].isdigit() else -1
                plan.remove("field", f.name, Action.REMOVE.done if idx in remove else f.action.done, f.where)
            plan.files.append(FilePlan(dest=self.output_name(ctx, path), source=path, patches=patches, append=app.data))
        return plan
