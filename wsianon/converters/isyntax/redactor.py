"""Philips iSyntax native redactor: the XML header rewritten fail-closed, the body untouched.

Facts (libisyntax, the Philips iSyntax format description it cites, the public
isyntax-deidentifier): an iSyntax file is

    XML header | CR LF EOT (0x0D 0x0A 0x04) | seek table (optional) | codeblocks

The header is the DPUfsImport XML of the Philips TIFF description (see
``dpufs.py``); its end is the first 0x04 byte of the file (no 0x04 can occur in
XML 1.0 text).  Offsets in the body (seek table, cluster and block header
tables) are absolute, so the header keeps its exact length: the redacted XML is
followed by newline padding up to the old length (whitespace after the root
element is what XML readers tolerate there — yxml, used by libisyntax, and the
public de-identifier pads the same way) and the CR LF EOT terminator and the
body stay byte for byte.  The plan is one patch over the header; the body is
streamed (``copy_file_range``) or, in place, never touched.

Label and macro ``DPScannedImage`` objects are removed (the label replaced by a
blank JPEG with ``--label blank``); every attribute is judged against
``profiles/data/isyntax.json``; the barcode and its decoded value are
identifiers.  Decided once: ``analyze`` decides the header without the key
(``inspect`` is a view of it), ``plan`` renders the decided tree with the key
(the keyed dummy UIDs) and decides nothing.

Refused with a one-line reason: no terminator, a terminator not preceded by CR
LF, a header that is not UTF-8 or not well-formed XML, a root that is not
DPUfsImport, no WSI image, or a redacted header that would not fit (by
``analyze`` when even the shortest UIDs would not, by ``plan`` with the keyed
ones).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from wsianon.io.safetext import os_reason
from wsianon.converters.base import AssociatedImage, Field, Inventory, NativeConverter, SlideContext
from wsianon.converters.decisions import Decisions
from wsianon.converters.dpufs import DecidedXml, XmlCleaner, XmlFieldDecision, normalize_markup
from wsianon.errors import CorruptInput, UnsupportedFormat
from wsianon.io.plan import FilePlan, Patch, Plan
from wsianon.io.xmlform import dpufs_canonical, source_declaration
from wsianon.profiles import dpufs_table, load
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy

PAD = b"\n"
BLOCK_HEADER_TABLE = "UFS_IMAGE_BLOCK_HEADER_TABLE"
_READ = 8 << 20
_ROOT_RX = re.compile(rb'^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*)?<DataObject\s+ObjectType\s*=\s*"DPUfsImport"\s*>')


def _rules() -> dict:
    return load("isyntax")


def find_terminator(path: Path) -> int:
    """Offset of the EOT byte ending the header (the first 0x04 of the file); CorruptInput otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise CorruptInput(path, f"cannot read: {os_reason(exc)}") from None
    try:
        pos = 0
        while True:
            buf = os.pread(fd, _READ, pos)
            if not buf:
                raise CorruptInput(path, "iSyntax header has no CR LF EOT terminator (truncated or not iSyntax)")
            i = buf.find(b"\x04")
            if i >= 0:
                eot = pos + i
                if eot < 2 or os.pread(fd, 2, eot - 2) != b"\r\n":
                    raise CorruptInput(path, "iSyntax header terminator (EOT) is not preceded by CR LF")
                return eot
            pos += len(buf)
    finally:
        os.close(fd)


def read_header(path: Path) -> tuple[bytes, int]:
    """(the XML header bytes before CR LF EOT, offset of the EOT byte)."""
    eot = find_terminator(path)
    with open(path, "rb") as fh:
        data = fh.read(eot - 2)
    if len(data) != eot - 2:
        raise CorruptInput(path, "iSyntax header is truncated")
    return data, eot


def parse_header(data: bytes, path: Path) -> tuple[ET.Element, str]:
    """(root element, XML declaration or '')."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptInput(path, "iSyntax header is not UTF-8 text") from None
    text = text.lstrip("\ufeff")
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise CorruptInput(path, f"iSyntax header is not well-formed XML (line {exc.position[0]}, column {exc.position[1]})") from None
    if root.tag != "DataObject" or root.get("ObjectType") != "DPUfsImport":
        raise CorruptInput(path, "iSyntax header root is not DataObject DPUfsImport")
    # a real XML declaration only: a processing instruction in its place (<?xml-x 98765432?>) is
    # not carried over (red team stop 38)
    return root, source_declaration(text)


def wsi_objects(root: ET.Element) -> list[ET.Element]:
    out = []
    for obj in root.iter("DataObject"):
        if obj.get("ObjectType") != "DPScannedImage":
            continue
        for a in obj.findall("Attribute"):
            if a.get("Name") == "PIM_DP_IMAGE_TYPE" and (a.text or "").strip() == "WSI":
                out.append(obj)
    return out


MAX_LEVELS = 32  # more levels than this (2^32 px a side at level 0) are no scanner's: no geometry is read


def wsi_geometry(wsi: ET.Element) -> tuple[int, int, int] | None:
    """(width, height, levels) from the WSI's UFS_IMAGE_GENERAL_HEADERS dimension ranges
    (libisyntax's arithmetic: x, y, colour, scale; the padding depends on the level count)."""
    ranges: list[tuple[int, int, int]] = []
    for a in wsi.iter("Attribute"):
        if a.get("Name") != "UFS_IMAGE_GENERAL_HEADERS":
            continue
        for r in a.iter("Attribute"):
            if r.get("Name") == "UFS_IMAGE_DIMENSION_RANGE":
                nums = re.findall(r"-?\d+", r.text or "")
                if len(nums) == 3:
                    ranges.append(tuple(int(n) for n in nums))  # type: ignore[arg-type]
        break
    if len(ranges) < 4:
        return None

    def steps(rg: tuple[int, int, int]) -> int:
        start, step, end = rg
        return ((end + step) - start) // (step or 1)

    levels = steps(ranges[3])
    if not 0 < levels <= MAX_LEVELS:
        # no scanner's pyramid: ``3 << levels`` of a damaged header's 4294967296 levels was a
        # 512 MiB integer, and the geometry 2 GiB more (fuzz seed 184, isyntax #59)
        return None
    padding = (3 << levels) - 3
    return steps(ranges[0]) - 2 * padding, steps(ranges[1]) - 2 * padding, levels


def drop_stray_block_records(wsi: ET.Element) -> int:
    """The WSI's block header table without the records that are no codeblock of its pyramid (or a
    second record of one): their fields were free numbers (a name in the coefficient and template id
    fields, bounded by 2^24 and 2^16, passed; red team stop 38).  libisyntax places a codeblock by
    its record's fields (its block id), so the pyramid's records are the ones it reads; the rule is
    the verifier's (``verify.isyntax_text.bad_block_records``).  A table that does not parse, or a
    WSI without the geometry, is left as it is (the verifier refuses it).  Returns the records
    dropped."""
    import base64
    import binascii
    import struct

    import numpy as np

    from wsianon.verify.isyntax_text import bad_block_records, block_grid, block_records

    grid = block_grid(wsi)
    dropped = 0
    for a in wsi.findall("Attribute"):
        if a.get("Name") != BLOCK_HEADER_TABLE or grid is None:
            continue
        try:
            raw = base64.b64decode("".join((a.text or "").split()), validate=True)
        except (binascii.Error, ValueError):
            continue
        recs = block_records(raw[4:]) if len(raw) >= 4 and struct.unpack_from("<I", raw)[0] == len(raw) - 4 else None
        if recs is None or not len(recs):
            continue
        bad = bad_block_records(recs, grid)
        if not bad.any():
            continue
        kept = np.frombuffer(raw[4:], np.uint8).reshape(len(recs), -1)[~bad].tobytes()
        a.text = base64.b64encode(struct.pack("<I", len(kept)) + kept).decode("ascii")
        dropped += int(bad.sum())
    return dropped


@dataclass
class _Analysis:
    """The one walk's result, which the plan carries out: the decided header tree (rendered with the
    key by the plan), the report's field decisions and the markup dropped."""

    header_len: int  # bytes before CR LF EOT
    eot: int
    declaration: str  # the source's XML declaration or ''
    xml: DecidedXml
    images: list[AssociatedImage]
    decided: list[XmlFieldDecision]  # every XML field with what the render does to it (the report's word)
    dropped_markup: list[tuple[str, str]]
    levels: int

    def render(self, key: bytes | None, path: Path) -> bytes:
        """The redacted header padded to its length (``key`` None: the shortest UIDs, for the size
        check before the key is known); refused when it would not fit."""
        # one form (io/xmlform.py): the source's whitespace, attribute order and spacing carried a
        # name as bits (space = 0, tab = 1) through run and verify, red team stop 38
        body = dpufs_canonical(self.xml.render(key), short_empty_elements=False, joined=frozenset(_rules().get("base64_attributes", ())), table=dpufs_table())
        new = ((self.declaration + "\n") if self.declaration else "").encode("utf-8") + body.encode("utf-8")
        if len(new) > self.header_len:
            raise CorruptInput(path, f"redacted iSyntax header would not fit ({len(new)} > {self.header_len} bytes); refused")
        return new + PAD * (self.header_len - len(new))


class ISyntaxConverter(NativeConverter):
    name = "isyntax"
    title = "Philips iSyntax"
    openslide_vendor = None  # OpenSlide does not read iSyntax
    extension = ".isyntax"

    def sniff(self, path: Path, head: bytes) -> bool:
        return bool(_ROOT_RX.match(head[:4096]))

    # -- analyze: the one walk --------------------------------------------------
    def analyze(self, source: Path, policy: Policy) -> Decisions:
        """Decide every attribute, image object and stray piece of markup of the header once, without
        the key (inspect and plan derive from this; the plan renders the decided tree with the key)."""
        path = Path(source)
        r = _rules()
        data, eot = read_header(path)
        root, decl = parse_header(data, path)
        if len(wsi_objects(root)) != 1:
            raise CorruptInput(path, f"iSyntax header holds {len(wsi_objects(root))} WSI images (expected 1)")
        # a keyed dummy UID (2.25.<128-bit>) is already what redaction writes: not an identifier
        cleaner = XmlCleaner(r, policy, keyed_uids_kept=True)
        try:
            pdr_levels = cleaner.clean(root)
        except ValueError:
            raise CorruptInput(path, "iSyntax header: its DPUfsImport structure cannot be cleaned") from None
        dropped = normalize_markup(root, set(r["allowed_xml_attributes"]))
        if len(wsi_objects(root)) != 1:
            # what marked the image as the WSI (its PIM_DP_IMAGE_TYPE) was not allowlisted as it
            # stands (damaged markup): cleaned, the header would hold no slide a reader opens
            raise CorruptInput(path, "iSyntax header: its WSI image object does not survive cleaning (damaged markup)")
        stray = drop_stray_block_records(wsi_objects(root)[0])
        if stray:
            dropped.append((f"{BLOCK_HEADER_TABLE}: {stray} items not in the pyramid", ""))  # the report's words
        geo = wsi_geometry(wsi_objects(root)[0])
        levels = geo[2] if geo else pdr_levels
        an = _Analysis(len(data), eot, decl, DecidedXml.freeze(root, cleaner.uid_elements), cleaner.images, cleaner.decided, dropped, levels)
        an.render(None, path)  # refused already when even the shortest UIDs would not fit
        d = Decisions(format=self.name, source=path, policy=policy, input_files=[path], levels=levels, analysis=an)
        d.fields = cleaner.fields + [Field(f"XML markup: {w}", v, Action.REMOVE, "header") for w, v in dropped]
        d.images = list(cleaner.images)
        d.extra_canaries = list(cleaner.canaries)
        d.notes.append(f"XML header {an.header_len} bytes, body from byte {an.eot + 1} kept byte for byte")
        return d

    # -- plan ----------------------------------------------------------------
    def plan(self, inv: Inventory, ctx: SlideContext) -> Plan:
        """One patch over the header: the decided tree rendered with the key (nothing decided here)."""
        d = self.decisions_for(inv, ctx.policy)
        an = d.analysis
        assert isinstance(an, _Analysis), "ISyntaxConverter.analyze keeps its walk"
        path = d.source
        if find_terminator(path) != an.eot:
            raise CorruptInput(path, "the file changed between inspection and redaction")
        plan = Plan(format=self.name)
        patch = Patch(0, an.header_len, an.render(ctx.key, path), "iSyntax XML header rewritten fail-closed, padded to its length")
        for img in an.images:
            plan.remove("image", img.kind, img.action.done, img.where)
        for x in an.decided:  # every XML field decision (kept dates too, as the report always listed them)
            r = x.removal()
            plan.remove(r.kind, r.name, r.action, r.where)
        for w, _v in an.dropped_markup:
            plan.remove("structure", w, "removed", "header")
        plan.notes.append(f"iSyntax header rewritten in place ({an.header_len} bytes, padded); body byte-identical")
        plan.files.append(FilePlan(dest=self.output_name(ctx, path), source=path, patches=[patch]))
        return plan


_DECODE_PROBE = r"""
import sys
from isyntax import ISyntax
with ISyntax.open(sys.argv[1]) as s:
    if s.level_count < 1:
        sys.exit(3)
    for level, (w, h) in enumerate(s.level_dimensions):
        s.read_region(0, 0, min(256, w), min(256, h), level=level)
print("decoded")
"""


def dicom_preflight(source: Path) -> None:
    """The DICOM route reads iSyntax through pyisyntax (libisyntax), which decodes every tile.

    libisyntax can crash the process on a file it does not understand (a SIGFPE or SIGSEGV, not an
    exception), so whether it opens the file and decodes a region of every level is first tried in a
    child process; the conversion goes ahead only when that worked, else the slide is refused."""
    import importlib.util
    import subprocess
    import sys

    try:
        found = importlib.util.find_spec("isyntax") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise UnsupportedFormat(source, "cannot convert iSyntax to DICOM: the pyisyntax package (libisyntax) is not installed; use --target native")
    try:
        r = subprocess.run([sys.executable, "-c", _DECODE_PROBE, str(source)], capture_output=True, text=True, timeout=600)
        ok = r.returncode == 0 and r.stdout.strip().endswith("decoded")
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        raise UnsupportedFormat(source, "cannot convert iSyntax to DICOM: pyisyntax (libisyntax) cannot decode this file; use --target native")


__all__ = ["ISyntaxConverter", "dicom_preflight", "find_terminator", "parse_header", "read_header", "wsi_geometry"]
