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
remains.  Label/Macro IFDs are wiped and unlinked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import re
import xml.etree.ElementTree as ET
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
from wsianon.errors import CorruptInput
from wsianon.io import tiffedit
from wsianon.io.ifdcopy import drop_ifds, orphan_values
from wsianon.io.plan import FilePlan, Patch, Plan
from wsianon.io.scan import Canary
from wsianon.io.tiff import IMAGE_DESCRIPTION, SOFTWARE, TILE_OFFSETS, TiffStructure
from wsianon.profiles import load
from wsianon.profiles.policy import Policy

_ACTION = {"blank": "blanked", "year": "reduced to year", "dummy": "dummy UID", "remove": "removed"}


def _rules() -> dict:
    return load("philips")


def keyed_uid(key: bytes, old: str) -> str:
    digest = hmac.new(key, old.encode(), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def _year_value(name: str, value: str) -> str:
    """A DICOM DA/DT value reduced to its year, quotes kept; '' for times or when no year."""
    if "DATE" not in name:
        return ""

    def one(tok: str) -> str:
        q = '"' if tok.startswith('"') else ""
        core = tok.strip('"')
        m = re.match(r"^((?:19|20)\d\d)(\d{0,4})(.*)$", core)
        if not m:
            return ""
        rest = re.sub(r"\d", "0", m.group(3))
        md = "0101"[: len(m.group(2))]
        return f"{q}{m.group(1)}{md}{rest}{q}"

    toks = value.split()
    out = [one(t) for t in toks]
    return "" if not all(out) else " ".join(out)


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


def _blank_jpeg_b64(b64: str) -> str:
    from PIL import Image

    w, h = 1, 1
    try:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            w, h = im.size
    except Exception:
        pass
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (255, 255, 255)).save(buf, "JPEG", quality=50)
    return base64.b64encode(buf.getvalue()).decode()


class _XmlCleaner:
    def __init__(self, policy: Policy, key: bytes):
        r = _rules()
        self.r = r
        self.safe = set(r["safe_attributes"])
        self.date_rx = re.compile(r["date_attribute_pattern"])
        self.uid_rx = re.compile(r["uid_attribute_pattern"])
        self.deriv_items = compile_all(r["derivation_safe_items"])
        self.policy = policy
        self.key = key
        self.fields: list[Field] = []
        self.images: list[AssociatedImage] = []
        self.canaries: list[Canary] = []

    def _type_of(self, obj: ET.Element) -> str:
        for a in obj.findall("Attribute"):
            if a.get("Name") == "PIM_DP_IMAGE_TYPE":
                return (a.text or "").strip()
        return ""

    def clean(self, root: ET.Element) -> int:
        if root.tag != "DataObject" or root.get("ObjectType") != "DPUfsImport":
            raise ValueError("root is not DataObject DPUfsImport")
        levels = 0
        # associated images first: find DPScannedImage objects by their type (any order of children)
        for arr in root.iter("Array"):
            for obj in list(arr):
                if obj.tag != "DataObject" or obj.get("ObjectType") != "DPScannedImage":
                    continue
                t = self._type_of(obj)
                if t == "WSI":
                    levels = len(
                        [
                            d
                            for a in obj.findall("Attribute")
                            if a.get("Name") == "PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE"
                            for d in a.iter("DataObject")
                            if d.get("ObjectType") == "PixelDataRepresentation"
                        ]
                    )
                    continue
                kind = "label" if t in self.r["label_types"] else "macro" if t in self.r["macro_types"] else "other"
                data = ""
                for a in obj.findall("Attribute"):
                    if a.get("Name") == self.r["image_data_attribute"]:
                        data = (a.text or "").strip()
                if data:
                    # a long stretch of its base64 is a canary (no stale XML bytes may remain)
                    mid = len(data) // 2
                    self.canaries.append(Canary(f"PIM_DP_IMAGE_DATA ({t or 'unknown'})", data[mid : mid + 48]))
                action = "remove"
                if kind == "macro" and self.policy.macro == "keep":
                    action = "keep"
                elif kind == "label" and self.policy.label == "blank":
                    action = "blank"
                self.images.append(AssociatedImage(kind, f"XML DPScannedImage {t or '?'}", True, action))
                if action == "remove":
                    arr.remove(obj)
                elif action == "blank":
                    for a in obj.findall("Attribute"):
                        if a.get("Name") == self.r["image_data_attribute"]:
                            a.text = _blank_jpeg_b64(data)
                    self._clean_attrs(obj, "DPScannedImage", skip={self.r["image_data_attribute"]})
                else:  # keep (macro on request): clean its metadata but keep the picture
                    self.canaries = [c for c in self.canaries if not c.name.startswith("PIM_DP_IMAGE_DATA (" + t)]
                    self._clean_attrs(obj, "DPScannedImage", skip={self.r["image_data_attribute"]})
        # image data left in the tree is what the policy keeps (a kept macro, a blank label)
        self._clean_attrs(root, "DPUfsImport", skip={self.r["image_data_attribute"]})
        return levels

    def _clean_attrs(self, obj: ET.Element, where: str, skip: set[str] = frozenset()) -> None:
        for a in list(obj):
            if a.tag != "Attribute":
                if a.tag in ("Array", "DataObject"):
                    self._clean_attrs(a, where, skip)
                continue
            name = a.get("Name") or ""
            if name in skip:
                continue
            if len(a):  # container: recurse
                for child in a:
                    self._clean_attrs(child, f"{where}/{name}", skip)
                continue
            text = a.text or ""
            v = text.strip()
            fname = f"XML {name}"
            if name in self.safe:
                continue
            if name == self.r["derivation_attribute"]:
                new, removed = self._derivation(text)
                if removed:
                    self.fields.append(Field(f"{fname}:sourceFilename", removed, "blank", where))
                a.text = new
                continue
            if not v:
                continue
            if name == self.r["barcode_attribute"]:
                try:
                    dec = base64.b64decode(v, validate=True).decode("utf-8", "replace").strip()
                    if dec:
                        self.fields.append(Field(f"{fname} (decoded)", dec, "blank", where))
                except (binascii.Error, ValueError):
                    pass
            if self.uid_rx.search(name):
                self.fields.append(Field(fname, v.strip('"'), "dummy", where))
                toks = [t.strip('"') for t in v.split()]
                a.text = " ".join(('"%s"' % keyed_uid(self.key, t)) if v.startswith('"') else keyed_uid(self.key, t) for t in toks)
                continue
            if self.date_rx.search(name):
                if self.policy.dates == "keep":
                    self.fields.append(Field(fname, v.strip('"'), "keep", where))
                    continue
                if self.policy.dates == "year":
                    y = _year_value(name, v)
                    self.fields.append(Field(fname, v.strip('"'), "year" if y else "blank", where))
                    a.text = y
                    continue
                self.fields.append(Field(fname, v.strip('"'), "blank", where))
                a.text = ""
                continue
            self.fields.append(Field(fname, v.strip('"'), "blank", where))
            a.text = ""

    def _derivation(self, text: str) -> tuple[str, str]:
        m = re.search(r'-?sourceFilename="([^"]*)"', text)
        removed = m.group(1) if m else ""
        rest = text[: m.start()] + text[m.end() :] if m else text
        items = [i for i in rest.split("-") if i]
        kept = [i for i in items if any(p.fullmatch(i) for p in self.deriv_items)]
        dropped = [i for i in items if i not in kept]
        if dropped:
            removed = (removed + " " + " ".join(dropped)).strip()
        return "-".join(kept), removed


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
        cleaner = _XmlCleaner(policy, key)
        try:
            levels = cleaner.clean(root)
        except ValueError as exc:
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
        inv.levels = len(an.levels)
        inv.fields = [f if f.action != "dummy" else Field(f.name, f.value, "dummy", f.where) for f in an.fields]
        inv.images = list(an.xml.images) + [
            AssociatedImage(k, f"IFD {i}", True, "keep" if (k == "macro" and policy.macro == "keep") else "remove")
            for i, k in an.label_ifds.items()
        ]
        inv.extra_canaries = list(an.xml.canaries)
        return inv

    def plan(self, inv: Inventory, ctx: SlideContext) -> Plan:
        policy = ctx.policy
        path = inv.path
        plan = Plan(format=self.name)
        with open_tiff(path) as ts:
            an = self._analyze(ts, policy, ctx.key)
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
                plan.remove("image", img.kind, {"remove": "removed from XML", "blank": "replaced by blank JPEG", "keep": "kept"}[img.action], img.where)
            for f in an.fields:
                idx = int(f.where.split()[-1]) if f.where.startswith("IFD ") and f.where.split()[-1].isdigit() else -1
                plan.remove("field", f.name, "removed" if idx in remove else _ACTION.get(f.action, f.action), f.where)
            plan.files.append(FilePlan(dest=self.output_name(ctx, path), source=path, patches=patches, append=app.data))
        return plan
