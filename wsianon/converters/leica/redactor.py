"""Leica SCN (BigTIFF) native redactor.

Facts (DESIGN.md §3, OpenSlide's Leica reader): IFD 0 (tiled) carries the
``<scn xmlns="http://www.leica-microsystems.com/scn/...">`` XML.  Its
``<collection>`` lists ``<image>`` elements; the macro is the image whose
``<view>`` spans the whole collection at offset 0,0, and its
``<dimension ifd=..>`` entries name its IFDs (often IFD 0 and 1).

``analyze`` walks the file once and decides everything below under the
policy; ``inspect`` shows those decisions and ``plan`` only carries them out.

The plan: macro IFDs wiped (tiles zeroed) and unlinked, the macro ``<image>``
removed from the XML, every ``dimension@ifd`` renumbered to the new chain, the
XML cleaned fail-closed (profile ``leica.json``).  When the macro held IFD 0,
the new first IFD is re-written at the end of the file with the cleaned XML as
its ImageDescription (OpenSlide and tifffile read the XML from IFD 0 only).
"""

from __future__ import annotations

import base64
import binascii
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
    local,
    open_tiff,
    parse_xml,
    xml_declaration,
)
from wsianon.converters._vocab import vocabulary_value
from wsianon.converters.base import Field, Inventory, NativeConverter, SlideContext
from wsianon.converters.decisions import Decisions, ImageDecision, ImageKind, TagEdit
from wsianon.errors import CorruptInput
from wsianon.io import tiffedit
from wsianon.io.ifdcopy import drop_ifds, orphan_values
from wsianon.io.plan import FilePlan, Patch, Plan
from wsianon.io.tiff import ASCII, IMAGE_DESCRIPTION, TILE_OFFSETS, TiffStructure
from wsianon.io.xmlform import c14n
from wsianon.profiles import load
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy, year_only


def _rules() -> dict:
    return load("leica")


def _int(el: ET.Element, name: str, path: Path) -> int:
    try:
        return int(el.get(name, ""))
    except ValueError:
        raise CorruptInput(path, f"Leica XML: <{local(el.tag)}> has no integer {name}") from None


@dataclass
class _Analysis:
    """The SCN walk under one policy: what ``plan`` applies (kept in ``Decisions.analysis``)."""

    ns: str = ""
    root: ET.Element | None = None
    decl: str = ""
    macro_ifds: list[int] = field(default_factory=list)
    macro_images: list[ET.Element] = field(default_factory=list)
    main_images: int = 0
    # images OpenSlide does not show (an illuminationSource other than brightfield): no check
    # judges their pixels, so they are removed whatever the flags (red team stop 39)
    unshown_ifds: list[int] = field(default_factory=list)
    unshown_images: list[ET.Element] = field(default_factory=list)
    fields: list[Field] = field(default_factory=list)
    ascii: list[AsciiDecision] = field(default_factory=list)
    levels: int = 0
    remove: set[int] = field(default_factory=set)  # macro IFDs wiped and unlinked (none with --macro keep)
    new_xml: bytes = b""  # the cleaned XML, the removed macro <image>s taken out and dimension@ifd renumbered
    plan_notes: list[str] = field(default_factory=list)


class _XmlCleaner:
    """Fail-closed walk of the SCN XML: attributes and texts the profile lists are kept,
    every other value is blanked (barcodes removed); each change is a field of ``an``."""

    def __init__(self, policy: Policy, an: _Analysis):
        r = _rules()
        self.safe_attrs = {k: set(v) for k, v in r["safe_attributes"].items()}
        self.safe_text = set(r["safe_text_elements"])
        self.dates = set(r["date_elements"])
        self.model_ok = re.compile(r["model_safe_pattern"])
        self.version_prefix = re.compile(r["version_safe_prefix"])
        self.policy = policy
        self.an = an

    def _field(self, name: str, value: str, action: Action) -> None:
        self.an.fields.append(Field(name, value, action, "IFD 0"))

    def walk(self, el: ET.Element, path: str) -> None:
        tag = local(el.tag)
        for name in list(el.attrib):
            self._attribute(el, tag, path, name)
        self._text(el, tag, path)
        self._children(el, path)

    # -- attributes
    def _attribute(self, el: ET.Element, tag: str, path: str, name: str) -> None:
        val = el.attrib[name]
        if tag == "collection" and name == "barcode":
            if val.strip():
                self._field("XML collection@barcode", val.strip(), Action.REMOVE)
            del el.attrib[name]
            return
        if self._safe_attribute(tag, name, val):
            return
        if tag == "device" and name == "version":
            self._version(el, path, name, val)
            return
        if val.strip():
            self._field(f"XML {path}@{name}", val.strip(), Action.BLANK)
        el.attrib[name] = ""

    def _safe_attribute(self, tag: str, name: str, val: str) -> bool:
        """Listed by the profile (a device model only when it has the shape of a model name), and
        only as the format's vocabulary (red team stop 37: "Leica SCN400 QuEnTiN SmItHeReEnS"
        has a model name's shape; kept, the verifier quarantined the slide): blanked otherwise."""
        if name not in self.safe_attrs.get(tag, ()):
            return False
        if tag == "device" and name == "model" and not self.model_ok.fullmatch(val):
            return False
        return not val.strip() or vocabulary_value(val, "leica")

    def _version(self, el: ET.Element, path: str, name: str, val: str) -> None:
        """device@version keeps only its leading version number."""
        m = self.version_prefix.match(val)
        new = m.group(0) if m else ""
        if new == val:
            return
        self._field(f"XML {path}@version", val.strip(), Action.BLANK)
        # each part after the version number on its own (a serial, say): other
        # writers (the DICOM route) may copy just a part
        for part in re.split(r"[;,]", val[len(new) :]):
            if part.strip():
                self._field(f"XML {path}@version (part)", part.strip(), Action.BLANK)
        el.attrib[name] = new

    # -- element text
    def _text(self, el: ET.Element, tag: str, path: str) -> None:
        txt = (el.text or "").strip()
        if tag == "barcode":
            self._barcode(txt)
        elif txt and tag in self.dates:
            self._date(el, path, txt)
        elif txt and (tag not in self.safe_text or (tag != "objective" and not vocabulary_value(txt, "leica"))):
            # a safe text only as vocabulary; but <objective> is never blanked: OpenSlide 4 reading
            # a Leica SCN whose objective is empty or missing crashes (SIGSEGV), and the verifier
            # opens the output in-process (one not vocabulary is kept for the verifier to refuse)
            self._field(f"XML {path}", txt, Action.BLANK)
            el.text = ""

    def _barcode(self, txt: str) -> None:
        """A <barcode> element is removed (by its parent); its text and the text it
        base64-encodes are recorded."""
        if not txt:
            return
        self._field("XML barcode", txt, Action.REMOVE)
        try:
            dec = base64.b64decode(txt, validate=True).decode("utf-8", "replace").strip()
            if dec:
                self._field("XML barcode (decoded)", dec, Action.REMOVE)
        except (binascii.Error, ValueError):
            pass

    def _date(self, el: ET.Element, path: str, txt: str) -> None:
        if self.policy.dates == "keep":
            self._field(f"XML {path}", txt, Action.KEEP)
        elif self.policy.dates == "year" and year_only(txt):
            self._field(f"XML {path}", txt, Action.YEAR)
            el.text = f"{year_only(txt)}-01-01T00:00:00Z"
        else:
            self._field(f"XML {path}", txt, Action.BLANK)
            el.text = ""

    # -- children
    def _children(self, el: ET.Element, path: str) -> None:
        for child in list(el):
            if local(child.tag) == "barcode":
                self.walk(child, f"{path}/barcode")
                el.remove(child)
                continue
            self.walk(child, f"{path}/{local(child.tag)}")
            if child.tail and child.tail.strip():
                self._field(f"XML {path}#tail", child.tail.strip(), Action.BLANK)
                child.tail = ""


class LeicaConverter(NativeConverter):
    name = "leica"
    title = "Leica SCN"
    openslide_vendor = "leica"
    extension = ".scn"

    def sniff(self, path: Path, head: bytes) -> bool:
        if head[:4] not in TIFF_MAGIC:
            return False
        ns = [n.encode() for n in _rules()["namespaces"]]
        try:
            with TiffStructure(path) as ts:
                e = ts.ifds[0].get(IMAGE_DESCRIPTION)
                if e is None:
                    return False
                d = ts.raw(e)[:8192]
                return b"<scn" in d and any(n in d for n in ns)
        except Exception:
            return b"<scn" in head and any(n in head for n in ns)

    # -- analysis ---------------------------------------------------------------------
    def _analyze(self, ts: TiffStructure, policy: Policy) -> _Analysis:
        r = _rules()
        an = _Analysis()
        e = ts.ifds[0].get(IMAGE_DESCRIPTION)
        if e is None:
            raise CorruptInput(ts.path, "Leica SCN without XML in IFD 0")
        raw = ts.raw(e)
        text = raw.rstrip(b"\0").decode("utf-8", "replace")
        root = parse_xml(raw, ts.path, "Leica SCN XML")
        an.decl = xml_declaration(text)
        m = re.match(r"\{([^}]*)\}", root.tag)
        an.ns = m.group(1) if m else ""
        if local(root.tag) != "scn" or an.ns not in r["namespaces"]:
            raise CorruptInput(ts.path, "Leica XML root is not <scn> in a Leica namespace")
        q = lambda t: f"{{{an.ns}}}{t}"  # noqa: E731
        coll = root.find(q("collection"))
        if coll is None:
            raise CorruptInput(ts.path, "Leica XML has no <collection>")
        cw, ch = _int(coll, "sizeX", ts.path), _int(coll, "sizeY", ts.path)
        n_ifds = len(ts.ifds)
        for img in coll.findall(q("image")):
            view = img.find(q("view"))
            if view is None:
                raise CorruptInput(ts.path, "Leica XML <image> without <view>")
            is_macro = (
                _int(view, "offsetX", ts.path) == 0
                and _int(view, "offsetY", ts.path) == 0
                and _int(view, "sizeX", ts.path) == cw
                and _int(view, "sizeY", ts.path) == ch
            )
            ifds = [_int(d, "ifd", ts.path) for d in img.iter(q("dimension"))]
            for i in ifds:
                if not 0 <= i < n_ifds:
                    raise CorruptInput(ts.path, f"Leica XML names an IFD the file does not have (it has {n_ifds})")
            source = next((e.text or "" for e in img.iter(q("illuminationSource"))), "brightfield").strip()
            if source != "brightfield":  # before the macro's shape: a fluorescence "macro" is shown by nothing either
                an.unshown_images.append(img)
                an.unshown_ifds.extend(ifds)
            elif is_macro:
                an.macro_images.append(img)
                an.macro_ifds.extend(ifds)
            else:
                an.main_images += 1
                an.levels = max(an.levels, len([d for d in img.iter(q("dimension")) if d.get("z", "0") == "0"]))
        if an.main_images == 0:
            raise CorruptInput(ts.path, "Leica XML has no main image")
        # fail-closed XML cleaning (names only in fields)
        self._clean(root, policy, an)
        an.root = root
        keep = {int(k): compile_all(v) for k, v in r["ascii_keep"].items()}
        for ifd in ts.ifds:
            skip = {IMAGE_DESCRIPTION} if ifd.index == 0 else set()
            for d in decide_ascii(ts, ifd, policy, keep, skip=skip):
                an.ascii.append(d)
                if d.action is not Action.KEEP and d.old.strip():
                    an.fields.append(decision_field(d))
        return an

    def _clean(self, root: ET.Element, policy: Policy, an: _Analysis) -> None:
        _XmlCleaner(policy, an).walk(root, "scn")

    def _decide_macro(self, path: Path, an: _Analysis, policy: Policy) -> None:
        """The macro is wiped and unlinked unless ``--macro keep``: its <image> leaves the XML, the
        other images' IFD numbers follow the new chain, and the fields of its IFDs go with it
        (IFD 0's XML fields live on in the new first IFD)."""
        an.remove = set(an.unshown_ifds) if policy.macro == "keep" else set(an.macro_ifds) | set(an.unshown_ifds)
        if an.remove and an.main_images > 1:
            an.plan_notes.append("Leica: slide with several main images and no macro — OpenSlide may refuse it (it hashes the macro)")
        q = lambda t: f"{{{an.ns}}}{t}"  # noqa: E731
        root = an.root
        assert root is not None, "_analyze sets the root or raises"
        if an.remove:
            coll = root.find(q("collection"))
            assert coll is not None, "_analyze raises on a missing <collection>"
            for img in an.unshown_images + ([] if policy.macro == "keep" else an.macro_images):
                coll.remove(img)
            shift = sorted(an.remove)
            for dim in root.iter(q("dimension")):
                old = _int(dim, "ifd", path)
                dim.set("ifd", str(old - sum(1 for x in shift if x < old)))
        ET.register_namespace("", an.ns)
        # one form (Canonical XML, whitespace-only text removed): the source's whitespace between
        # elements and attribute order were copied (bits a reader never shows, red team stop 38)
        an.new_xml = (an.decl + c14n(ET.tostring(root, encoding="unicode"))).encode("utf-8")
        for f in an.fields:
            idx = int(f.where.split()[-1]) if f.where.startswith("IFD ") else -1
            if idx in an.remove and idx != 0:
                f.action = Action.REMOVE

    def analyze(self, source: Path, policy: Policy) -> Decisions:
        """The one walk: the XML cleaned, the macro found and decided, every ASCII tag decided
        (inspect and plan derive from it)."""
        path = Path(source)
        d = Decisions(format=self.name, source=path, policy=policy, input_files=[path])
        with open_tiff(path) as ts:
            an = self._analyze(ts, policy)
            d.ifds = len(ts.ifds)
        self._decide_macro(path, an, policy)
        d.analysis = an
        d.levels = an.levels
        d.fields = an.fields
        for a in an.ascii:
            if a.new is not None and a.ifd not in an.remove:
                d.edits.append(TagEdit(a.ifd, a.tag, "set", a.new.encode("latin-1"), f"IFD {a.ifd} tag {a.tag} cleaned"))
        action = Action.KEEP if policy.macro == "keep" else Action.REMOVE
        for i in an.macro_ifds:
            d.images.append(ImageDecision(ImageKind.MACRO, f"IFD {i}", True, action))
            d.image_at[i] = d.images[-1]
        for i in an.unshown_ifds:  # an image OpenSlide does not show: removed, fail-closed
            d.images.append(ImageDecision(ImageKind.OTHER, f"IFD {i}", True, Action.REMOVE))
            d.image_at[i] = d.images[-1]
        return d

    # -- plan -------------------------------------------------------------------------
    def plan(self, inv: Inventory, ctx: SlideContext) -> Plan:
        """Byte patches carrying out the decisions (no XML cleaned, no value decided here)."""
        d = self.decisions_for(inv, ctx.policy)
        an = d.analysis
        assert isinstance(an, _Analysis), "LeicaConverter.analyze keeps its walk"
        path = d.source
        remove = an.remove
        plan = Plan(format=self.name)
        with open_tiff(path) as ts:
            edits = d.edits_by_ifd(len(ts.ifds))
            app = tiffedit.Appender(ts.size, align=8)
            patches: list[Patch] = []
            if remove and len(remove) >= len(ts.ifds):
                raise CorruptInput(path, "Leica SCN has no image besides the macro")
            plan.notes.extend(an.plan_notes)
            first_overrides = None
            if 0 in remove:
                keep_first = next(i for i in ts.ifds if i.index not in remove)
                first_overrides = {IMAGE_DESCRIPTION: (ASCII, an.new_xml)}
                for edit in edits.pop(keep_first.index, []):
                    first_overrides[edit.tag] = (ASCII, edit.data)
                for tag in first_overrides:
                    e = keep_first.get(tag)
                    if e is not None and not e.inline and e.size:
                        patches.append(Patch(e.value_offset, e.size, None, f"old value of tag {tag} (IFD {keep_first.index} relocated)"))
                if TILE_OFFSETS not in keep_first:
                    raise CorruptInput(path, "Leica SCN: the first IFD after the macro is not tiled")
                plan.notes.append(f"Leica: the cleaned XML now lives in the new first IFD (was IFD {keep_first.index})")
            else:
                patches.extend(tiffedit.set_bytes(ts, ts.ifds[0].entries[IMAGE_DESCRIPTION], an.new_xml, "Leica XML rewritten fail-closed", app))
            for idx, group in edits.items():
                for edit in group:
                    patches.extend(tiffedit.set_bytes(ts, ts.ifds[idx].entries[edit.tag], edit.data, edit.reason, app))
            if remove:
                ps, _ = drop_ifds(ts, remove, app, first_overrides=first_overrides, reason="unlink macro")
                patches.extend(ps)
                patches.extend(orphan_values(ts, remove))
                for i in sorted(remove):
                    img = d.image_at[i]
                    patches.extend(tiffedit.wipe_image_data(ts, ts.ifds[i], f"wipe {img.kind.value} pixels (IFD {i})"))
                    plan.remove("image", img.kind.value, "wiped+unlinked", img.where)
            for f in d.fields:  # a kept XML date is reported too ("kept"), as the SCN report always did
                r = f.removal()
                plan.remove(r.kind, r.name, r.action, r.where)
            plan.files.append(FilePlan(dest=self.output_name(ctx, path), source=path, patches=patches, append=app.data))
        return plan
