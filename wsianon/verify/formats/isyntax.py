"""iSyntax verification, independent of the redactor (its own header reader; never imports the converter).

OpenSlide does not read iSyntax (``OPENSLIDE_READS = False``: the pipeline skips its OpenSlide
structure checks), so everything is proven here from the output's bytes:

* structure: the header ends at the first 0x04 byte, preceded by CR LF; it is UTF-8, well-formed
  XML with a ``DataObject DPUfsImport`` root, nothing after the root but whitespace (no comment,
  processing instruction or DOCTYPE anywhere), exactly one WSI ``DPScannedImage`` with its geometry;
* closed world: every leaf ``Attribute`` that carries a value is allowed by
  ``profiles/data/isyntax.json`` (a safe name on its own tag with a safe value, a keyed dummy UID,
  a date the policy allows, a derivation description of safe items only); no XML attribute but the
  schema's, no text outside leaf attributes;
* images: no label / macro object left unless the policy keeps one (a blank label must decode to
  one uniform colour; a kept macro is reported);
* body identity (``HANDLES_TILES``): the header length and the SHA-256 of everything from CR LF EOT
  to the end equal the source's, taken before anything was written (``snapshot``);
* pyisyntax (libisyntax), where installed and able to open the source: the output opens with the
  same level count and dimensions, and its barcode is empty.

The canary scan over every byte is the pipeline's; the vocabulary scan of the header (every printable
run, coded tables parsed as bounded numbers) is :mod:`wsianon.verify.isyntax_text`.  Without the
source the body's coded data is opaque: ``body-identical`` above is its only proof.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import cast

from wsianon.io import digests
from wsianon.profiles import dpufs_table, load
from wsianon.verify import keyedtokens

HANDLES_TILES = True
OPENSLIDE_READS = False
_CHUNK = 8 << 20
MAX_LEVELS = 32  # a pyramid of more levels than this (2^32 px a side at level 0) is no scanner's: its geometry is not read


def _terminator(fd: int) -> int | None:
    pos = 0
    while True:
        buf = os.pread(fd, _CHUNK, pos)
        if not buf:
            return None
        i = buf.find(b"\x04")
        if i >= 0:
            return pos + i
        pos += len(buf)


def read_layout(path: Path) -> dict:
    """{'header': bytes | None, 'eot': int | None, 'crlf': bool, 'body_sha256': str | None, 'size': int}."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        eot = _terminator(fd)
        if eot is None:
            return {"header": None, "eot": None, "crlf": False, "body_sha256": None, "size": size}
        crlf = eot >= 2 and os.pread(fd, 2, eot - 2) == b"\r\n"
        header = os.pread(fd, eot - 2, 0) if crlf else None
        # the body is everything from CR LF EOT on (the terminator included)
        return {"header": header, "eot": eot, "crlf": crlf, "body_sha256": digests.sha256_of(fd, eot - 2, _CHUNK), "size": size}
    finally:
        os.close(fd)


_OPEN_PROBE = r"""
import json, sys
from isyntax import ISyntax
with ISyntax.open(sys.argv[1]) as s:
    try:
        barcode = s.barcode
    except Exception:
        barcode = "?"
    print(json.dumps({"levels": s.level_count, "dims": [list(d) for d in s.level_dimensions], "barcode": barcode}))
"""


def _pyisyntax_view(path: Path) -> dict | None:
    """libisyntax's view (levels, dimensions, barcode), or None when pyisyntax is absent or cannot open
    the file.  Run in a child process: libisyntax can crash (SIGFPE/SIGSEGV) on a file it misreads."""
    try:
        if importlib.util.find_spec("isyntax") is None:
            return None
    except (ImportError, ValueError):
        return None
    try:
        r = subprocess.run([sys.executable, "-c", _OPEN_PROBE, str(path)], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0 or not r.stdout.strip():
        return None
    try:
        v = json.loads(r.stdout.strip().splitlines()[-1])
    except ValueError:
        return None
    return {"levels": int(v["levels"]), "dims": [tuple(d) for d in v["dims"]], "barcode": str(v["barcode"])}


def snapshot(path: Path) -> dict:
    """What the check needs from the source, taken before anything is written."""
    lay = read_layout(path)
    return {
        "header_len": None if lay["eot"] is None else lay["eot"] - 2,
        "body_sha256": lay["body_sha256"],
        "size": lay["size"],
        "pyisyntax": _pyisyntax_view(path),
    }


def _tag(a: ET.Element) -> str:
    try:
        return f"0x{int(a.get('Group', ''), 16):04X},0x{int(a.get('Element', ''), 16):04X}"
    except ValueError:
        return ""


def _image_type(obj: ET.Element) -> str:
    for a in obj.findall("Attribute"):
        if a.get("Name") == "PIM_DP_IMAGE_TYPE":
            return (a.text or "").strip()
    return ""


def _geometry(wsi: ET.Element) -> tuple[int, int, int] | None:
    for a in wsi.iter("Attribute"):
        if a.get("Name") != "UFS_IMAGE_GENERAL_HEADERS":
            continue
        ranges = []
        for r in a.iter("Attribute"):
            if r.get("Name") == "UFS_IMAGE_DIMENSION_RANGE":
                nums = [int(n) for n in re.findall(r"-?\d+", r.text or "")]
                if len(nums) == 3:
                    start, step, end = nums
                    ranges.append(((end + step) - start) // (step or 1))
        if len(ranges) < 4 or not 0 < ranges[3] <= MAX_LEVELS:
            return None  # (a level count past any scanner's: no ``3 << n`` of a header's number, as MRXS's concat factor)
        pad = (3 << ranges[3]) - 3
        return ranges[0] - 2 * pad, ranges[1] - 2 * pad, ranges[3]
    return None


def _year_form(v: str) -> bool:
    return all(re.fullmatch(r'"?(19|20)\d\d(0101|01)?[0.]*"?', t) for t in v.split()) if v else True


def _value_allowed(name: str, a: ET.Element, v: str, r: dict, policy) -> bool:
    # the names libisyntax dispatches on by tag: safe only on their own (the shared table's)
    tags = {k: f"{t[0]},{t[1]}".upper().replace("X", "x") for k in r.get("tag_bound_attributes", ()) if (t := dpufs_table().get(k))}
    if name in set(r["safe_attributes"]):
        want = tags.get(name)
        rx = r.get("safe_value_patterns", {}).get(name)
        if (want is None or _tag(a) == want) and (rx is None or re.fullmatch(rx, v, re.S)):
            return True
    if re.search(r["uid_attribute_pattern"], name):
        return all(t.strip('"').startswith("2.25.") and len(t.strip('"')) <= 64 for t in v.split())
    if re.search(r["date_attribute_pattern"], name):
        if policy.dates == "keep":
            return True
        # the year only (--dates year's form) whatever the policy: `wsianon verify` knows none
        return "DATE" in name and _year_form(v)
    if name == r["derivation_attribute"]:
        sep = r.get("derivation_separator", "-")
        items = [i.strip() for i in v.split(sep) if i.strip()]
        return all(any(re.fullmatch(p, i) for p in r["derivation_safe_items"]) for i in items)
    return False


def _shown(name: str) -> str:
    """A name from the output's header as a finding may show it (vocabulary, or a placeholder)."""
    from wsianon.profiles.names import public

    return public("isyntax", str(name))


def _image_kind(obj: ET.Element | None, r: dict) -> str | None:
    """label | macro for a label / macro DPScannedImage object, else None."""
    if obj is None or obj.tag != "DataObject" or obj.get("ObjectType") != "DPScannedImage":
        return None
    t = _image_type(obj)
    return "label" if t in r["label_types"] else "macro" if t in r["macro_types"] else None


def _uniform_jpeg(b64: str) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            lo, hi = cast("tuple[float, float]", im.convert("L").getextrema())  # one band: one (min, max) pair
            return hi - lo <= 2  # JPEG of one flat colour
    except Exception:
        return False


def blank_label(path: Path) -> bool:
    """The output holds exactly one label image object and every image datum of it is a uniform
    JPEG (``_uniform_jpeg``, the rule of this hook's ``label-blank`` check): the stand-in ``run
    --label blank`` writes, which ``verify`` (knowing no policy) accepts as ``run`` does.  OpenSlide
    does not read iSyntax, so the audit's OpenSlide rule never saw it (stop 42: every such output
    ``run`` verified failed ``verify``).  The header only is read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            eot = _terminator(fd)
            raw = os.pread(fd, eot, 0) if eot is not None else b""
        finally:
            os.close(fd)
        root = ET.fromstring(raw.decode("utf-8").lstrip("\ufeff").strip())
    except Exception:  # no header, not UTF-8, not XML: no blank label (the checks report why)
        return False
    r = load("isyntax")
    labels = [o for o in root.iter("DataObject") if o.get("ObjectType") == "DPScannedImage" and _image_kind(o, r) == "label"]
    if len(labels) != 1:
        return False
    data = [(a.text or "").strip() for a in labels[0].findall("Attribute") if a.get("Name") == r["image_data_attribute"]]
    return any(data) and all(_uniform_jpeg(d) for d in data if d)


def keyed_tokens(out_main: Path) -> frozenset[bytes]:
    """The keyed UIDs of the output's XML header, in the attributes the profile calls UIDs."""
    return keyedtokens.from_philips_xml(read_layout(out_main)["header"].decode("utf-8", "replace"), load("isyntax")["uid_attribute_pattern"])


def check(inv, out_main: Path, out_files: list[Path], policy, verdict, source_state: dict | None = None) -> None:
    r = load("isyntax")
    lay = read_layout(out_main)
    if lay["eot"] is None or not lay["crlf"]:
        verdict.add("isyntax-structure", False, "no CR LF EOT header terminator in the output")
        return
    raw = lay["header"]
    try:
        text = raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        verdict.add("isyntax-structure", False, "output header is not UTF-8")
        return
    body = re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)
    markup_ok = not any(tok in body for tok in ("<!--", "<?", "<!DOCTYPE", "<!ENTITY", "<![CDATA["))
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        verdict.add("isyntax-structure", False, f"output header is not well-formed XML (line {exc.position[0]}, column {exc.position[1]})")
        return
    trailing_ok = text.rstrip().endswith("</DataObject>")
    wsis = [o for o in root.iter("DataObject") if o.get("ObjectType") == "DPScannedImage" and _image_type(o) == "WSI"]
    geo = _geometry(wsis[0]) if len(wsis) == 1 else None
    ok = root.tag == "DataObject" and root.get("ObjectType") == "DPUfsImport" and len(wsis) == 1 and trailing_ok
    verdict.add(
        "isyntax-structure",
        ok,
        (f"header {len(raw)} bytes parses: DPUfsImport root, 1 WSI image" + (f" {geo[0]}x{geo[1]}, {geo[2]} levels" if geo else ""))
        if ok
        else f"header root/WSI/ending wrong ({len(wsis)} WSI images; ends with </DataObject>: {trailing_ok})",
    )
    if inv is not None and geo is not None and inv.levels:
        verdict.add("levels", geo[2] == inv.levels, f"{geo[2]} levels in the output header (source {inv.levels})")

    # closed world
    allowed_xml = set(r["allowed_xml_attributes"])
    bad: set[str] = set()
    markup: set[str] = set()
    images = {"label": 0, "macro": 0, "other": 0}
    blank_ok = True
    data_name = r["image_data_attribute"]
    parent = {id(c): p for p in root.iter() for c in p}
    for el in root.iter():
        if el.tag not in ("DataObject", "Attribute", "Array"):
            markup.add(f"element <{_shown(el.tag)}>")
        if any(k not in allowed_xml for k in el.attrib):
            markup.add(f"XML attributes of <{_shown(el.tag)}>")
        if (el.tail or "").strip() or (len(el) and (el.text or "").strip()):
            markup.add(f"text around <{_shown(el.tag)}>")
        if el.tag == "DataObject" and el.get("ObjectType") == "DPScannedImage":
            t = _image_type(el)
            if t == "WSI":
                continue
            kind = "label" if t in r["label_types"] else "macro" if t in r["macro_types"] else "other"
            images[kind] += 1
            if kind == "label":
                data = [(a.text or "").strip() for a in el.findall("Attribute") if a.get("Name") == data_name]
                blank_ok = blank_ok and all(_uniform_jpeg(d) for d in data if d)
        if el.tag != "Attribute" or len(el):
            continue
        name = el.get("Name") or ""
        v = (el.text or "").strip()
        if not v:
            continue
        obj = parent.get(id(el))
        if name == data_name and _image_kind(obj, r) in ("label", "macro"):
            continue  # judged with its image object; image data anywhere else is no value the profile allows
        if not _value_allowed(name, el, v, r, policy):
            bad.add(_shown(name))
    if not markup_ok:
        markup.add("comment / processing instruction / DOCTYPE / CDATA")
    verdict.add(
        "isyntax-profile",
        not bad,
        f"attributes with values the profile does not allow: {sorted(bad)}" if bad else "every attribute with a value is allowed by the iSyntax profile",
    )
    verdict.add("isyntax-markup", not markup, f"markup outside the schema: {sorted(markup)}" if markup else "no markup outside the DPUfsImport schema")
    allowed_label = 1 if policy.label == "blank" else 0
    allowed_macro = 1 if policy.macro == "keep" else 0
    img_ok = images["label"] <= allowed_label and images["macro"] <= allowed_macro and images["other"] == 0
    verdict.add(
        "isyntax-images",
        img_ok,
        f"label {images['label']}, macro {images['macro']}, other {images['other']} "
        f"image object(s) left (allowed: label {allowed_label}, macro {allowed_macro})",
    )
    if images["label"]:
        verdict.add("label-blank", blank_ok, "label is a uniform blank image" if blank_ok else "label is not blank")

    # body identity against the snapshot taken before writing
    if source_state is not None:
        same_len = source_state.get("header_len") == len(raw)
        same_body = source_state.get("body_sha256") == lay["body_sha256"]
        verdict.add(
            "body-identical",
            same_len and same_body and source_state.get("size") == lay["size"],
            f"header {len(raw)} bytes (source {source_state.get('header_len')}); body from CR LF EOT "
            f"({lay['size'] - len(raw)} bytes) {'byte-identical' if same_body else 'DIFFERS'}; total size "
            f"{lay['size']} (source {source_state.get('size')})",
        )
        src_view = source_state.get("pyisyntax")
        if src_view is not None:
            out_view = _pyisyntax_view(out_main)
            same = out_view is not None and out_view["levels"] == src_view["levels"] and out_view["dims"] == src_view["dims"]
            verdict.add(
                "pyisyntax-open",
                same,
                f"pyisyntax opens the output: {out_view['levels']} levels, dimensions {'match' if same else 'differ'}"
                if out_view
                else "pyisyntax opens the source but not the output",
            )
            if out_view is not None:
                verdict.add(
                    "pyisyntax-barcode",
                    not out_view["barcode"].strip(),
                    "barcode read by libisyntax is empty" if not out_view["barcode"].strip() else "libisyntax still reads a barcode",
                )


class FrameReference:
    """The source's pixels as pyisyntax (libisyntax) renders them, for the DICOM verifier's comparison of
    re-encoded frames (OpenSlide does not read iSyntax).  Same interface as the verifier's OpenSlide
    reference: ``level_for(columns, rows)``, ``region(level, downsample, x, y, w, h)`` (level
    coordinates; RGBA composited over white), ``close()``.  Used only after the DICOM route's child-process
    probe proved that libisyntax decodes this file (the conversion itself decoded every tile)."""

    def __init__(self, source: Path):
        from isyntax import ISyntax

        self.s = ISyntax.open(source)
        self.dims = [tuple(d) for d in self.s.level_dimensions]

    def close(self) -> None:
        self.s.close()

    def level_for(self, cols: int, rows: int) -> tuple[int, float] | None:
        for i, d in enumerate(self.dims):
            if d == (cols, rows):
                return i, float(1 << i)
        return None

    def region(self, level: int, d: float, x: int, y: int, w: int, h: int):
        import numpy as np

        rgba = np.asarray(self.s.read_region(int(x), int(y), int(w), int(h), level=level), dtype=np.int32)
        a = rgba[..., 3:4]
        return ((rgba[..., :3] * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def frame_reference(source: Path) -> FrameReference:
    return FrameReference(source)
