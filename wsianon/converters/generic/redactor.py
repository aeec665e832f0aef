"""Fail-closed handling of any TIFF no vendor redactor claims (OME-TIFF, Akoya QPTIFF, plain TIFF ...).

Used only when the user passes ``--allow-generic``; otherwise the pipeline
refuses the file and names what it saw (``describe``).

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
from pathlib import Path

from wsianon.converters._tiffmeta import TIFF_MAGIC, decide_ascii, decision_field, local, open_tiff
from wsianon.converters.base import AssociatedImage, Inventory, NativeConverter, SlideContext
from wsianon.errors import UnsupportedFormat
from wsianon.io import tiffedit
from wsianon.io.ifdcopy import drop_ifds, orphan_values
from wsianon.io.plan import FilePlan, Patch, Plan
from wsianon.io.tiff import IMAGE_DESCRIPTION, Kind, TiffStructure
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


def _ome_associated(desc: str) -> dict[int, str]:
    """IFD index -> kind for OME Images named like a label/macro/overview."""
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
                start = int(td.get("IFD", "0") or 0)
                n = int(td.get("PlaneCount", "1") or 1)
                for i in range(start, start + n):
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
            found.update({i: k for i, k in _ome_associated(d0).items() if i < len(ts.ifds)})
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

    def inspect(self, path: Path, policy: Policy | None = None) -> Inventory:
        policy = policy or Policy()
        inv = Inventory(format=self.name, path=path, input_files=[path])
        with open_tiff(path) as ts:
            self._refuse_subifds(ts)
            kind = describe_structure(ts)
            inv.notes.append(f"handled as {kind} by the fail-closed generic TIFF redactor (--allow-generic)")
            for ifd in ts.ifds:
                for d in decide_ascii(ts, ifd, policy, {}):
                    if d.action is not Action.KEEP and d.old.strip():
                        inv.fields.append(decision_field(d))
            for i, k in sorted(self._associated(ts).items()):
                inv.images.append(AssociatedImage(k, f"IFD {i}", True, Action.KEEP if (k != "label" and policy.macro == "keep") else Action.REMOVE))
            inv.levels = sum(1 for ifd in ts.ifds if 322 in ifd) or len(ts.ifds)
        return inv

    def _refuse_subifds(self, ts: TiffStructure) -> None:
        if any(SUBIFDS in ifd for ifd in ts.ifds):
            raise UnsupportedFormat(
                ts.path,
                f"{describe_structure(ts)} with SubIFDs: its sub-directories cannot be checked fail-closed by the generic redactor",
            )

    def plan(self, inv: Inventory, ctx: SlideContext) -> Plan:
        policy = ctx.policy
        path = inv.path
        plan = Plan(format=self.name)
        with open_tiff(path) as ts:
            self._refuse_subifds(ts)
            kind = describe_structure(ts)
            plan.notes.append(f"{kind}: generic fail-closed path taken (--allow-generic); free-text metadata dropped")
            app = tiffedit.Appender(ts.size, align=8)
            patches: list[Patch] = []
            assoc = self._associated(ts)
            remove = {i for i, k in assoc.items() if k == "label" or policy.macro != "keep"}
            if remove and len(remove) >= len(ts.ifds):
                raise UnsupportedFormat(path, f"{kind}: every image looks like a label/macro; nothing left to keep")
            blobs = set(_rules()["blob_tags"])
            for ifd in ts.ifds:
                if ifd.index in remove:
                    continue
                for d in decide_ascii(ts, ifd, policy, {}):
                    if d.new is None:
                        continue
                    patches.extend(tiffedit.set_bytes(ts, ifd.entries[d.tag], d.new.encode("latin-1"), f"IFD {ifd.index} tag {d.tag} blanked", app))
                    if d.old.strip():
                        plan.remove("field", decision_field(d).name, d.action.done, f"IFD {ifd.index}")
                for tag in blobs:
                    e = ifd.get(tag)
                    if e is not None and e.size:
                        patches.append(Patch(e.value_offset, e.size, None, f"IFD {ifd.index} tag {tag} zeroed"))
                        plan.remove("field", f"tag {tag}", "zeroed", f"IFD {ifd.index}")
            if remove:
                ps, _ = drop_ifds(ts, remove, app, reason="unlink label/macro")
                patches.extend(ps)
                patches.extend(orphan_values(ts, remove, types=(1, 2, 7)))
                for i in sorted(remove):
                    patches.extend(tiffedit.wipe_image_data(ts, ts.ifds[i], f"wipe {assoc[i]} pixels (IFD {i})"))
                    plan.remove("image", assoc[i], "wiped+unlinked", f"IFD {i}")
            plan.files.append(FilePlan(dest=self.output_name(ctx, path), source=path, patches=patches, append=app.data))
        return plan
