"""The Philips DPUfsImport XML, shared by Philips TIFF (IFD 0 ImageDescription) and iSyntax (file header).

Facts (OpenSlide's Philips reader, libisyntax): the document is a
``<DataObject ObjectType="DPUfsImport">`` of ``<Attribute Name=.. Group=..
Element=.. PMSVR=..>`` elements; containers hold an ``<Array>`` of nested
``DataObject``s.  ``PIM_DP_SCANNED_IMAGES`` lists ``DPScannedImage`` objects
whose ``PIM_DP_IMAGE_TYPE`` is WSI, LABELIMAGE or MACROIMAGE, the latter two
with a base64 JPEG in ``PIM_DP_IMAGE_DATA``; the barcode is base64 in
``PIM_DP_UFS_BARCODE``.

:class:`XmlCleaner` rewrites a parsed tree fail-closed against a profile
(``wsianon/profiles/data/<format>.json``): attributes whose Name is listed
safe keep their text, dates follow the date policy, UIDs become keyed dummies,
everything else is blanked; label/macro objects are removed (or the label's
JPEG replaced by a blank one with ``--label blank``).  Optional profile keys
(used by iSyntax, absent for Philips TIFF):

* ``attribute_tags`` — Name -> "0xGGGG,0xEEEE": a safe Name is only safe with
  its own DICOM tag (readers such as libisyntax dispatch on the tag, not the
  name);
* ``safe_value_patterns`` — Name -> regex the whole value must match to stay;
* ``derivation_separator`` / ``derivation_joiner`` — how the derivation
  description's items are split and joined (default ``-``).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import xml.etree.ElementTree as ET
from typing import AbstractSet

from wsianon.converters._tiffmeta import compile_all
from wsianon.io.keyed import keyed_uid
from wsianon.converters.base import AssociatedImage, Field
from wsianon.io.scan import Canary
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy


def year_value(name: str, value: str) -> str:
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


def blank_jpeg_b64(b64: str) -> str:
    """Base64 of a white JPEG the size of the JPEG in ``b64`` (1x1 when it does not decode)."""
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


def _tag_of(a: ET.Element) -> str:
    """'0xGGGG,0xEEEE' of an Attribute element (case-normalised), '' when absent."""
    g, e = (a.get("Group") or "").strip(), (a.get("Element") or "").strip()
    if not g or not e:
        return ""
    try:
        return f"0x{int(g, 16):04X},0x{int(e, 16):04X}"
    except ValueError:
        return ""


# what the report says was done to an image embedded in the DPUfsImport XML (Philips TIFF, iSyntax)
XML_IMAGE_DONE = {Action.REMOVE: "removed from XML", Action.BLANK: "replaced by blank JPEG", Action.KEEP: Action.KEEP.done}


class XmlCleaner:
    """Fail-closed rewrite of a DPUfsImport tree (in place) against the rules ``r``."""

    def __init__(self, rules: dict, policy: Policy, key: bytes):
        r = rules
        self.r = r
        self.safe = set(r["safe_attributes"])
        self.date_rx = re.compile(r["date_attribute_pattern"])
        self.uid_rx = re.compile(r["uid_attribute_pattern"])
        self.deriv_items = compile_all(r["derivation_safe_items"])
        self.tags = {k: v.upper().replace("X", "x") for k, v in r.get("attribute_tags", {}).items()}
        self.value_rx = {k: re.compile(v, re.S) for k, v in r.get("safe_value_patterns", {}).items()}
        self.deriv_sep = r.get("derivation_separator", "-")
        self.deriv_join = r.get("derivation_joiner", self.deriv_sep)
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
                action = Action.REMOVE
                if kind == "macro" and self.policy.macro == "keep":
                    action = Action.KEEP
                elif kind == "label" and self.policy.label == "blank":
                    action = Action.BLANK
                self.images.append(AssociatedImage(kind, f"XML DPScannedImage {t or '?'}", True, action))
                if action is Action.REMOVE:
                    arr.remove(obj)
                elif action is Action.BLANK:
                    for a in obj.findall("Attribute"):
                        if a.get("Name") == self.r["image_data_attribute"]:
                            a.text = blank_jpeg_b64(data)
                    self._clean_attrs(obj, "DPScannedImage", skip={self.r["image_data_attribute"]})
                else:  # keep (macro on request): clean its metadata but keep the picture
                    self.canaries = [c for c in self.canaries if not c.name.startswith("PIM_DP_IMAGE_DATA (" + t)]
                    self._clean_attrs(obj, "DPScannedImage", skip={self.r["image_data_attribute"]})
        # image data left in the tree is what the policy keeps (a kept macro, a blank label)
        self._clean_attrs(root, "DPUfsImport", skip={self.r["image_data_attribute"]})
        return levels

    def _is_safe(self, name: str, a: ET.Element, value: str) -> bool:
        if name not in self.safe:
            return False
        want = self.tags.get(name)
        if want is not None and _tag_of(a) != want:
            return False  # a safe name on another attribute's tag is not that attribute
        rx = self.value_rx.get(name)
        if rx is not None and value and not rx.fullmatch(value):
            return False
        return True

    def _clean_attrs(self, obj: ET.Element, where: str, skip: AbstractSet[str] = frozenset()) -> None:
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
            if self._is_safe(name, a, v):
                continue
            if name == self.r["derivation_attribute"]:
                new, removed = self._derivation(text)
                if removed:
                    self.fields.append(Field(f"{fname}:sourceFilename", removed, Action.BLANK, where))
                a.text = new
                continue
            if not v:
                continue
            if name == self.r["barcode_attribute"]:
                try:
                    dec = base64.b64decode(v, validate=True).decode("utf-8", "replace").strip()
                    if dec:
                        self.fields.append(Field(f"{fname} (decoded)", dec, Action.BLANK, where))
                except (binascii.Error, ValueError):
                    pass
            if self.uid_rx.search(name):
                self.fields.append(Field(fname, v.strip('"'), Action.DUMMY, where))
                toks = [t.strip('"') for t in v.split()]
                a.text = " ".join(('"%s"' % keyed_uid(self.key, t)) if v.startswith('"') else keyed_uid(self.key, t) for t in toks)
                continue
            if self.date_rx.search(name):
                if self.policy.dates == "keep":
                    self.fields.append(Field(fname, v.strip('"'), Action.KEEP, where))
                    continue
                if self.policy.dates == "year":
                    y = year_value(name, v)
                    self.fields.append(Field(fname, v.strip('"'), Action.YEAR if y else Action.BLANK, where))
                    a.text = y
                    continue
                self.fields.append(Field(fname, v.strip('"'), Action.BLANK, where))
                a.text = ""
                continue
            self.fields.append(Field(fname, v.strip('"'), Action.BLANK, where))
            a.text = ""

    def _derivation(self, text: str) -> tuple[str, str]:
        m = re.search(r'-?sourceFilename="([^"]*)"', text)
        removed = m.group(1) if m else ""
        rest = text[: m.start()] + text[m.end() :] if m else text
        items = [i for i in rest.split(self.deriv_sep) if i]
        if self.deriv_sep != "-":
            items = [i.strip() for i in items if i.strip()]
        kept = [i for i in items if any(p.fullmatch(i) for p in self.deriv_items)]
        dropped = [i for i in items if i not in kept]
        if dropped:
            removed = (removed + " " + " ".join(dropped)).strip()
        return self.deriv_join.join(kept), removed


def normalize_markup(root: ET.Element, allowed_xml_attributes: set[str]) -> list[tuple[str, str]]:
    """Closed world for the markup itself: no text outside leaf Attribute elements but whitespace,
    no XML attributes but the schema's, no elements but DataObject / Attribute / Array.  Returns
    (what, value) for each thing dropped (the value is a canary, never printed).

    Whitespace between elements is kept: libisyntax learns a container attribute's tag from the
    character data inside it (no whitespace between ``<Attribute ..IDataObjectArray>`` and
    ``<Array>`` and it misreads the header); stray text is replaced by a newline for that reason."""
    dropped: list[tuple[str, str]] = []
    for el in root.iter():
        if el.tail is not None and el.tail.strip():
            dropped.append((f"text after <{el.tag}>", el.tail.strip()))
            el.tail = "\n"
        if len(el) and el.text is not None and el.text.strip():
            dropped.append((f"text inside <{el.tag}>", el.text.strip()))
            el.text = "\n"
        for k in list(el.attrib):
            if k not in allowed_xml_attributes:
                dropped.append((f"XML attribute {k} of <{el.tag}>", el.attrib[k]))
                del el.attrib[k]
    # unknown elements are removed with their content
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag not in ("DataObject", "Attribute", "Array"):
                dropped.append((f"element <{child.tag}>", "".join(child.itertext()).strip()))
                parent.remove(child)
    return dropped


__all__ = ["XmlCleaner", "blank_jpeg_b64", "keyed_uid", "normalize_markup", "year_value"]
