"""Fail-closed handling of any TIFF no vendor redactor claims (OME-TIFF, Akoya QPTIFF, plain TIFF ...).

Used only when the user passes ``--allow-generic``; otherwise the pipeline
refuses the file and names what it saw (``describe``).

``analyze`` walks the file once and decides everything below under the
policy; ``inspect`` shows those decisions and ``plan`` only carries them out.

The plan: every ASCII tag of every IFD is blanked (DateTime follows the date
policy) — for OME-TIFF and QPTIFF that drops the XML metadata, which is the
fail-closed choice; XMP / IPTC / Photoshop blobs are zeroed; IFDs that are a
label, macro or overview (by their description, or by the OME ``<Image
Name>`` / QPTIFF ``<ImageType>`` that maps to them) are wiped and unlinked.
Pyramid tiles are untouched.  TIFFs with SubIFDs are refused: their
directories are outside the chain this redactor walks.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from wsianon.converters._tiffmeta import TIFF_MAGIC, decide_ascii, decision_field, local, open_tiff
from wsianon.converters.base import Field, Inventory, NativeConverter, SlideContext
from wsianon.converters.decisions import Decisions, ImageDecision, TagEdit, apply_tag_edits
from wsianon.errors import CorruptInput, UnsupportedFormat
from wsianon.io import tiffedit
from wsianon.io.ifdcopy import drop_ifds, orphan_values
from wsianon.io.plan import FilePlan, Plan
from wsianon.io.tiff import IFD, IMAGE_DESCRIPTION, TILE_WIDTH, Kind, TiffStructure
from wsianon.profiles import load
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy

SUBIFDS = 330


def _rules() -> dict:
    return load("generic")


def describe_structure(ts: TiffStructure) -> str:
    d = (ts.text(ts.ifds[0], IMAGE_DESCRIPTION) or "")[:65536]
    if ts.kind is Kind.NDPI:
        return "Hamamatsu NDPI"
    if "<OME" in d:
        return "OME-TIFF"
    if "PerkinElmer-QPI-ImageDescription" in d:
        return "Akoya QPTIFF"
    if d.startswith("Aperio"):
        return "Aperio-like TIFF"
    if "ImageJ=" in d:
        return "ImageJ TIFF"
    if d.lstrip().startswith("<?xml") or d.lstrip().startswith("<"):
        return "XML-described TIFF"
    return "generic TIFF" if ts.kind is Kind.CLASSIC else "generic BigTIFF"


def _ome_associated(desc: str, n_ifds: int, path: Path | None = None) -> dict[int, str]:
    """IFD index (below ``n_ifds``) -> kind for OME Images named like a label/macro/overview.  A
    TiffData of such an image whose IFD or plane count is not a number leaves the label's IFD
    unknown: refused (fail closed; the value is never quoted)."""
    out: dict[int, str] = {}
    try:
        root = ET.fromstring(desc)
    except ET.ParseError:
        return out
    rx = re.compile(_rules()["associated_pattern"])
    for img in root.iter():
        if local(img.tag) != "Image":
            continue
        m = rx.search(img.get("Name", ""))
        if not m:
            continue
        kind = m.group(1).lower()
        kind = "label" if kind in ("label", "slide label", "slidelabel", "barcode") else kind
        for td in img.iter():
            if local(td.tag) == "TiffData":
                try:
                    start = int(td.get("IFD", "0") or 0)
                    n = int(td.get("PlaneCount", "1") or 1)
                except ValueError:
                    raise CorruptInput(path, f"OME-XML: the TiffData of a {kind} image names no IFD number") from None
                for i in range(max(start, 0), min(start + n, n_ifds)):  # only IFDs the file has (a huge count is no loop)
                    out[i] = kind
    return out


class GenericTiffConverter(NativeConverter):
    name = "generic-tiff"
    title = "Generic TIFF (fail-closed)"
    openslide_vendor = "generic-tiff"  # tiled pyramids stay readable by OpenSlide's generic TIFF reader
    extension = ".tif"

    def sniff(self, path: Path, head: bytes) -> bool:
        return head[:4] in TIFF_MAGIC

    def describe(self, path: Path) -> str:
        """A name for the kind of TIFF ``path`` is (for refusal messages and reports)."""
        with open_tiff(path) as ts:
            return describe_structure(ts)

    def _associated(self, ts: TiffStructure) -> dict[int, str]:
        rx = re.compile(_rules()["associated_pattern"])
        found: dict[int, str] = {}
        d0 = ts.text(ts.ifds[0], IMAGE_DESCRIPTION) or ""
        if "<OME" in d0:
            found.update(_ome_associated(d0, len(ts.ifds), ts.path))
        for ifd in ts.ifds:
            d = ts.text(ifd, IMAGE_DESCRIPTION) or ""
            if "<OME" in d:
                continue
            m = re.search(r"<ImageType>\s*([^<]*?)\s*</ImageType>", d)  # QPTIFF
            probe = m.group(1) if m else d[:256]
            mm = rx.search(probe)
            if mm:
                k = mm.group(1).lower()
                found[ifd.index] = "label" if k in ("label", "slide label", "slidelabel", "barcode") else k
        return found

    def analyze(self, source: Path, policy: Policy) -> Decisions:
        """The one walk: the kind of TIFF, its label/macro IFDs and every ASCII tag and blob decided
        (inspect and plan derive from it)."""
        path = Path(source)
        d = Decisions(format=self.name, source=path, policy=policy, input_files=[path])
        with open_tiff(path) as ts:
            self._refuse_subifds(ts)
            an = _Analysis(kind=describe_structure(ts), associated=self._associated(ts))
            d.ifds = len(ts.ifds)
            d.notes.append(f"handled as {an.kind} by the fail-closed generic TIFF redactor (--allow-generic)")
            for i, k in sorted(an.associated.items()):
                action = Action.KEEP if (k != "label" and policy.macro == "keep") else Action.REMOVE
                d.images.append(ImageDecision(k, f"IFD {i}", True, action))
                d.image_at[i] = d.images[-1]
                if action is Action.REMOVE:
                    an.remove.add(i)
            blobs = set(_rules()["blob_tags"])
            for ifd in ts.ifds:
                self._decide_ifd(ts, ifd, policy, d, blobs, ifd.index not in an.remove)
            d.levels = sum(1 for ifd in ts.ifds if TILE_WIDTH in ifd) or len(ts.ifds)
        d.analysis = an
        return d

    def _decide_ifd(self, ts: TiffStructure, ifd: IFD, policy: Policy, d: Decisions, blobs: set[int], kept: bool) -> None:
        """Every ASCII tag of one IFD blanked (DateTime: the date policy); in an IFD that stays, the
        edits that carry it out and every XMP/IPTC/Photoshop blob zeroed (an unlinked IFD's values
        are zeroed with it)."""
        for a in decide_ascii(ts, ifd, policy, {}):
            f = decision_field(a) if a.action is not Action.KEEP and a.old.strip() else None
            if f is not None:
                d.fields.append(f)
            if kept and a.new is not None:
                d.edits.append(TagEdit(ifd.index, a.tag, "set", a.new.encode("latin-1"), f"IFD {ifd.index} tag {a.tag} blanked", [f] if f else []))
        if not kept:
            return
        for tag in blobs:
            e = ifd.get(tag)
            if e is not None and e.size:
                f = Field(f"tag {tag}", "", Action.ZERO, f"IFD {ifd.index}", canary=False)
                d.fields.append(f)
                d.edits.append(TagEdit(ifd.index, tag, "zero", reason=f"IFD {ifd.index} tag {tag} zeroed", fields=[f]))

    def _refuse_subifds(self, ts: TiffStructure) -> None:
        if any(SUBIFDS in ifd for ifd in ts.ifds):
            raise UnsupportedFormat(
                ts.path,
                f"{describe_structure(ts)} with SubIFDs: its sub-directories cannot be checked fail-closed by the generic redactor",
            )

    def plan(self, inv: Inventory, ctx: SlideContext) -> Plan:
        """Byte patches carrying out the decisions (no IFD classified, no value decided here)."""
        d = self.decisions_for(inv, ctx.policy)
        an = d.analysis
        assert isinstance(an, _Analysis), "GenericTiffConverter.analyze keeps its walk"
        path = d.source
        plan = Plan(format=self.name)
        with open_tiff(path) as ts:
            edits = d.edits_by_ifd(len(ts.ifds))
            plan.notes.append(f"{an.kind}: generic fail-closed path taken (--allow-generic); free-text metadata dropped")
            app = tiffedit.Appender(ts.size, align=8)
            fp = FilePlan(dest=self.output_name(ctx, path), source=path)
            if an.remove and len(an.remove) >= len(ts.ifds):
                raise UnsupportedFormat(path, f"{an.kind}: every image looks like a label/macro; nothing left to keep")
            for ifd in ts.ifds:
                apply_tag_edits(ts, ifd, edits.get(ifd.index, []), fp, plan, app, path)
            if an.remove:
                ps, _ = drop_ifds(ts, an.remove, app, reason="unlink label/macro")
                fp.patches.extend(ps)
                fp.patches.extend(orphan_values(ts, an.remove, types=(1, 2, 7)))
                for i in sorted(an.remove):
                    kind = d.image_at[i].kind.value
                    fp.patches.extend(tiffedit.wipe_image_data(ts, ts.ifds[i], f"wipe {kind} pixels (IFD {i})"))
                    plan.remove("image", kind, "wiped+unlinked", f"IFD {i}")
            fp.append = app.data
            plan.files.append(fp)
        return plan


@dataclass
class _Analysis:
    """The generic walk under one policy: what ``plan`` applies (kept in ``Decisions.analysis``)."""

    kind: str  # what kind of TIFF it is (describe_structure)
    associated: dict[int, str]  # IFD index -> label/macro/overview, by description or OME/QPTIFF metadata
    remove: set[int] = field(default_factory=set)  # the associated IFDs wiped and unlinked
