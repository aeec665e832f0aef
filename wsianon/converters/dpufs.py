"""The Philips DPUfsImport XML, shared by Philips TIFF (IFD 0 ImageDescription) and iSyntax (file header).

Facts (OpenSlide's Philips reader, libisyntax): the document is a
``<DataObject ObjectType="DPUfsImport">`` of ``<Attribute Name=.. Group=..
Element=.. PMSVR=..>`` elements; containers hold an ``<Array>`` of nested
``DataObject``s.  ``PIM_DP_SCANNED_IMAGES`` lists ``DPScannedImage`` objects
whose ``PIM_DP_IMAGE_TYPE`` is WSI, LABELIMAGE or MACROIMAGE, the latter two
with a base64 JPEG in ``PIM_DP_IMAGE_DATA``; the barcode is base64 in
``PIM_DP_UFS_BARCODE``.

:class:`XmlCleaner` decides a parsed tree fail-closed against a profile
(``wsianon/profiles/data/<format>.json``), once and without the key: attributes
whose Name is listed safe keep their text, dates follow the date policy, UIDs
are decided dummies, everything else is blanked; label/macro objects are
removed (or the label's JPEG replaced by a blank one with ``--label blank``).
Every Attribute kept is of a Name in the shared DPUfsImport attribute table
(``profiles.dpufs_table``): one of another Name is taken out with its content,
and the render (``io.xmlform.dpufs_canonical`` with the table) writes each kept
one's Group, Element and PMSVR from the table and the siblings of each
DataObject in (Group, Element) order, whatever the source wrote (red team stop 38:
both were free values, bits an MRN could be written in).
What needs no key is carried out on the tree; :class:`DecidedXml` keeps the
decided tree and renders it with a key (the keyed dummy UIDs), as often as
plans ask, without deciding again.  Optional profile keys (used by iSyntax,
absent for Philips TIFF):

* ``tag_bound_attributes`` — Names that are only safe with their own DICOM tag
  (the shared table's, ``profiles/data/dpufs_attributes.json``: readers such as
  libisyntax dispatch on the tag, not the name);
* ``safe_value_patterns`` — Name -> regex the whole value must match to stay;
* ``derivation_separator`` / ``derivation_joiner`` — how the derivation
  description's items are split and joined (default ``-``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import AbstractSet

from wsianon.converters._tiffmeta import compile_all
from wsianon.converters._vocab import vocabulary_value
from wsianon.io import icc
from wsianon.io.jpeg_images import blank_jpeg, blank_size_ok
from wsianon.io.keyed import keyed_uid
from wsianon.converters.base import AssociatedImage, Field
from wsianon.io.plan import Removal
from wsianon.io.scan import Canary
from wsianon.io.xmlform import dpufs_container
from wsianon.profiles import dpufs_table
from wsianon.profiles.names import public as public_name
from wsianon.profiles.names import shown as shown_name
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
    if not blank_size_ok((w, h)):  # a header's size past any label's: not drawn (up to 537 MB)
        w, h = 1, 1
    return base64.b64encode(blank_jpeg((w, h))).decode()


def _tag_of(a: ET.Element) -> str:
    """'0xGGGG,0xEEEE' of an Attribute element (case-normalised), '' when absent."""
    g, e = (a.get("Group") or "").strip(), (a.get("Element") or "").strip()
    if not g or not e:
        return ""
    try:
        return f"0x{int(g, 16):04X},0x{int(e, 16):04X}"
    except ValueError:
        return ""


# a keyed dummy UID as redaction writes it (2.25.<128-bit>)
_KEYED_UID = re.compile(r"2\.25\.\d{1,39}")
# the shortest value a keyed UID can have: the render without a key (size checks before the key is known)
SHORTEST_UID = "2.25.0"


@dataclass
class XmlFieldDecision:
    """One decided field of the XML and what the render does to its bytes (the report's word):
    the field's own action, except for a UID that already looks keyed (kept as no identifier, yet
    re-keyed like every UID)."""

    field: Field
    done: Action

    def removal(self) -> Removal:
        r = self.field.removal()
        return Removal(r.kind, r.name, self.done.done, r.where)


@dataclass
class DecidedXml:
    """A DPUfsImport tree with every key-independent decision carried out (images removed or
    blanked, values blanked or reduced to their year), and the UID attributes to key on render.

    :meth:`render` is a pure function of the decided tree and the key: it keys a copy, so any
    number of plans (other keys) can render from the same decisions."""

    root: ET.Element
    uids: list[int]  # positions in root.iter() of the UID attributes, once per decision (in walk order)

    @classmethod
    def freeze(cls, root: ET.Element, uid_elements: list[ET.Element]) -> DecidedXml:
        """Record the UID attributes by position (after the last change of the tree's structure)."""
        pos = {id(el): i for i, el in enumerate(root.iter())}
        return cls(root, [pos[id(el)] for el in uid_elements])

    def render(self, key: bytes | None) -> ET.Element:
        """A copy of the decided tree with each UID attribute's value replaced by its keyed dummy
        (``key`` None: the shortest possible UID, for size checks before the key is known).

        Each UID decision keys the value as it then is: an attribute of an image object the policy
        keeps (a kept macro, a blanked label) is decided in the object's walk and again in the
        document's, so it is keyed twice (as it always was)."""
        out = copy.deepcopy(self.root)
        elements = list(out.iter())
        for i in self.uids:
            el = elements[i]
            v = (el.text or "").strip()
            new = [keyed_uid(key, t.strip('"')) if key is not None else SHORTEST_UID for t in v.split()]
            el.text = " ".join(('"%s"' % u) if v.startswith('"') else u for u in new)
        return out


class XmlCleaner:
    """Fail-closed decisions for a DPUfsImport tree against the rules ``r``, made once and without
    the key: everything that does not depend on the key is carried out on the tree (in place); the
    UID attributes are recorded (``uid_elements``) for :class:`DecidedXml` to key when a plan renders.

    ``keyed_uids_kept``: a UID attribute whose value already is keyed dummy UIDs is no identifier
    (decided KEEP, not a canary; the render re-keys it like every UID)."""

    def __init__(self, rules: dict, policy: Policy, keyed_uids_kept: bool = False, fmt: str | None = None):
        r = rules
        self.r = r
        self.fmt = fmt
        self.safe = set(r["safe_attributes"])
        self.date_rx = re.compile(r["date_attribute_pattern"])
        self.uid_rx = re.compile(r["uid_attribute_pattern"])
        self.deriv_items = compile_all(r["derivation_safe_items"])
        # every kept Attribute is of a Name in the shared table, written with its Group, Element and
        # PMSVR (``io.xmlform.dpufs_canonical``); the Names a reader dispatches on by tag
        # (``tag_bound_attributes``, iSyntax) are safe only on their own tag in the source
        self.table = dpufs_table()
        self.tags = {k: f"{t[0]},{t[1]}".upper().replace("X", "x") for k in r.get("tag_bound_attributes", ()) if (t := self.table.get(k))}
        self.value_rx = {k: re.compile(v, re.S) for k, v in r.get("safe_value_patterns", {}).items()}
        self.icc = frozenset(r.get("icc_attributes", ()))
        self.deriv_sep = r.get("derivation_separator", "-")
        self.deriv_join = r.get("derivation_joiner", self.deriv_sep)
        self.policy = policy
        self.keyed_uids_kept = keyed_uids_kept
        self.fields: list[Field] = []
        self.decided: list[XmlFieldDecision] = []  # the fields with the render's word, in walk order
        self.images: list[AssociatedImage] = []
        self.canaries: list[Canary] = []
        self.uid_elements: list[ET.Element] = []
        # the image data of the label / macro objects the policy keeps (blank or as they are): the only
        # PIM_DP_IMAGE_DATA left as it is; one anywhere else (the WSI, the root) is an unknown value
        self._image_ok: set[int] = set()
        # the image objects _decide_image cleaned (a blank label, a kept macro): the walk of the
        # root passes them by (a second pass would take their year-reduced dates for the source's)
        self._objects_done: set[int] = set()

    def _type_of(self, obj: ET.Element) -> str:
        for a in obj.findall("Attribute"):
            if a.get("Name") == "PIM_DP_IMAGE_TYPE":
                return (a.text or "").strip()
        return ""

    def _add(self, f: Field, done: Action | None = None) -> None:
        self.fields.append(f)
        self.decided.append(XmlFieldDecision(f, done or f.action))

    def clean(self, root: ET.Element) -> int:
        """Decide every image object and attribute of the tree once (carrying out what needs no key);
        the number of PixelDataRepresentation objects of the WSI."""
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
                self._decide_image(arr, obj, t)
        # image data left in the tree is what the policy keeps (a kept macro, a blank label)
        self._clean_attrs(root, "DPUfsImport", skip={self.r["image_data_attribute"]})
        return levels

    def _decide_image(self, arr: ET.Element, obj: ET.Element, t: str) -> None:
        """A label / macro / other image object: removed, its JPEG blanked, or kept (metadata cleaned)."""
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
        self.images.append(AssociatedImage(kind, f"XML DPScannedImage {_shown(t) if t else '?'}", True, action))
        if action is Action.REMOVE:
            arr.remove(obj)
        elif action is Action.BLANK:
            self._image_ok.update(id(a) for a in obj.findall("Attribute") if a.get("Name") == self.r["image_data_attribute"])
            for a in obj.findall("Attribute"):
                if a.get("Name") == self.r["image_data_attribute"]:
                    a.text = blank_jpeg_b64(data)
            self._clean_attrs(obj, "DPScannedImage", skip={self.r["image_data_attribute"]})
            self._objects_done.add(id(obj))
        else:  # keep (macro on request): clean its metadata but keep the picture
            self._image_ok.update(id(a) for a in obj.findall("Attribute") if a.get("Name") == self.r["image_data_attribute"])
            self.canaries = [c for c in self.canaries if not c.name.startswith("PIM_DP_IMAGE_DATA (" + t)]
            self._clean_attrs(obj, "DPScannedImage", skip={self.r["image_data_attribute"]})
            self._objects_done.add(id(obj))

    def _is_safe(self, name: str, a: ET.Element, value: str) -> bool:
        if name not in self.safe:
            return False
        want = self.tags.get(name)
        if want is not None and _tag_of(a) != want:
            return False  # a safe name on another attribute's tag is not that attribute
        rx = self.value_rx.get(name)
        if rx is not None and value and not rx.fullmatch(value):
            return False
        # with ``fmt`` (Philips TIFF; iSyntax's header values are read by pyisyntax as written) only
        # as the format's vocabulary (as the NDPI, MRXS and Aperio redactors keep safe values):
        # a free word there (a model name the vocabulary lacks, or a name) would be kept for the
        # verifier to quarantine the slide; blanked instead (red team stop 37)
        return not value or self.fmt is None or vocabulary_value(value, self.fmt)

    def _clean_attrs(self, obj: ET.Element, where: str, skip: AbstractSet[str] = frozenset()) -> None:
        for a in list(obj):
            if a.tag != "Attribute":
                if a.tag in ("Array", "DataObject") and id(a) not in self._objects_done:
                    self._clean_attrs(a, where, skip)
                continue
            name = a.get("Name") or ""
            if name in skip and id(a) in self._image_ok:
                continue
            container = name in self.table and self.table[name][2] == "IDataObjectArray"
            if name not in self.table or (len(a) and not container):
                # the Name itself is the writer's text ("PIM_DP_DOE_JANE", "PIM_DP_4711"), or a name
                # the attribute table lacks (no Group, Element and PMSVR to write but the source's own,
                # free values), or a leaf's name holding children: taken out with its content
                text = "" if len(a) else (a.text or "").strip()
                vocab = shown_name("isyntax", name)
                self._add(Field(f"XML {_shown(name)}", text or name, Action.REMOVE, where, canary=bool(text) or not vocab))
                obj.remove(a)
                continue
            if len(a):  # container: recurse
                for child in a:
                    self._clean_attrs(child, f"{where}/{_shown(name)}", skip)
                continue
            if container:  # an IDataObjectArray without children holds no value (the render drops its text)
                if (a.text or "").strip():
                    self._add(Field(f"XML {_shown(name)}", (a.text or "").strip(), Action.BLANK, where))
                    a.text = ""
                continue
            self._decide_attribute(a, name, where)

    def _decide_attribute(self, a: ET.Element, name: str, where: str) -> None:
        """One leaf attribute, decided once: kept (safe), cleaned, blanked, reduced to its year, or a
        UID recorded for the keyed render."""
        text = a.text or ""
        v = text.strip()
        fname = f"XML {_shown(name)}"
        if name in self.icc and name in self.safe and self.tags.get(name, _tag_of(a)) == _tag_of(a):
            self._decide_icc(a, fname, where)
            return
        if self._is_safe(name, a, v):
            return
        if name == self.r["derivation_attribute"]:
            new, removed = self._derivation(text)
            if removed:
                self._add(Field(f"{fname}:sourceFilename", removed, Action.BLANK, where))
            a.text = new
            return
        if not v:
            return
        if name == self.r["barcode_attribute"]:
            try:
                dec = base64.b64decode(v, validate=True).decode("utf-8", "replace").strip()
                if dec:
                    self._add(Field(f"{fname} (decoded)", dec, Action.BLANK, where))
            except (binascii.Error, ValueError):
                pass
        if self.uid_rx.search(name):
            value = v.strip('"')
            if self.keyed_uids_kept and all(_KEYED_UID.fullmatch(t.strip('"')) for t in value.split()):
                # already what redaction writes: not an identifier (re-keyed on render all the same)
                self._add(Field(fname, value, Action.KEEP, where, canary=False), Action.DUMMY)
            else:
                self._add(Field(fname, value, Action.DUMMY, where))
            self.uid_elements.append(a)
            return
        if self.date_rx.search(name):
            if self.policy.dates == "keep":
                self._add(Field(fname, v.strip('"'), Action.KEEP, where))
                return
            if self.policy.dates == "year":
                y = year_value(name, v)
                self._add(Field(fname, v.strip('"'), Action.YEAR if y else Action.BLANK, where))
                a.text = y
                return
            self._add(Field(fname, v.strip('"'), Action.BLANK, where))
            a.text = ""
            return
        self._add(Field(fname, v.strip('"'), Action.BLANK, where))
        a.text = ""

    def _decide_icc(self, a: ET.Element, fname: str, where: str) -> None:
        """The scanner's ICC profile (base64): rebuilt closed world as the TIFF routes rebuild theirs
        (``io.icc.sanitize``: colorimetric tags kept, every text emptied), so the colour management
        stays; blanked when it does not parse as a profile.  It was kept as it was (iSyntax: then
        refused by the vocabulary check, base64 that is no JPEG) or blanked (Philips TIFF: no
        vocabulary value); red team stop 38."""
        v = "".join((a.text or "").split())
        if not v:
            return
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        clean = icc.sanitize(raw, compact=True)[0] if raw else b""
        if not clean.strip(b"\0") or icc.closed_problems(clean, exact=True) != 0:
            self._add(Field(fname, "", Action.BLANK, where))
            a.text = ""
            return
        new = base64.b64encode(clean).decode("ascii")
        if new != v:
            self._add(Field(f"{fname} (ICC text tags)", "", Action.CLEAN, where))
        a.text = new

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


def _shown(name: str) -> str:
    """A name from the header as the report may show it: the schema's vocabulary, or a placeholder
    (an attribute or element name is text the header's writer chose)."""
    return public_name("isyntax", str(name))


def is_container(el: ET.Element) -> bool:
    """An element whose text is no value (``io.xmlform.dpufs_container``)."""
    return dpufs_container(el)


def normalize_markup(root: ET.Element, allowed_xml_attributes: set[str]) -> list[tuple[str, str]]:
    """Closed world for the markup itself: no text outside leaf Attribute elements but whitespace
    (a DataObject, an Array or an IDataObjectArray attribute holds none, children or not),
    no XML attributes but the schema's, no elements but DataObject / Attribute / Array.  Returns
    (what, value) for each thing dropped (the value is a canary, never printed).

    Whitespace between elements is kept: libisyntax learns a container attribute's tag from the
    character data inside it (no whitespace between ``<Attribute ..IDataObjectArray>`` and
    ``<Array>`` and it misreads the header); stray text is replaced by a newline for that reason."""
    dropped: list[tuple[str, str]] = []
    for el in root.iter():
        if el.tail is not None and el.tail.strip():
            dropped.append((f"text after <{_shown(el.tag)}>", el.tail.strip()))
            el.tail = "\n"
        # a container's text is no value, whether or not it holds children: an <Array> or a
        # <DataObject> without children (``<Array>S19-4711</Array>``) kept its text, red team stop 38
        if is_container(el) and el.text is not None and el.text.strip():
            dropped.append((f"text inside <{_shown(el.tag)}>", el.text.strip()))
            el.text = "\n"
        for k in list(el.attrib):
            if k not in allowed_xml_attributes:
                dropped.append((f"XML attribute {_shown(k)} of <{_shown(el.tag)}>", el.attrib[k]))
                del el.attrib[k]
    # unknown elements are removed with their content
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag not in ("DataObject", "Attribute", "Array"):
                dropped.append((f"element <{_shown(child.tag)}>", "".join(child.itertext()).strip()))
                parent.remove(child)
    return dropped


__all__ = ["DecidedXml", "XmlCleaner", "XmlFieldDecision", "blank_jpeg_b64", "keyed_uid", "normalize_markup", "year_value"]
