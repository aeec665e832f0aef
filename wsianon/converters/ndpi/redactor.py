"""Hamamatsu NDPI native redactor.

Facts (DESIGN.md §3): a classic little-endian TIFF with 8-byte first-IFD and
next-IFD offsets and, after each IFD, 4 bytes per entry holding the high 32
bits of the entry's value/offset (files > 4 GiB are normal).  Tag 65420 marks
NDPI; 65421 (SourceLens, float) is > 0 on pyramid levels, -1 on the macro
(a photo of the whole glass slide, label included) and -2 on the map.
Identifying text: 65427 Reference (in EVERY IFD), 65442 scanner serial, 65468
barcode, 65449 property map, 306 DateTime, 271/272/305 and any other ASCII tag.

The redactor wipes the macro's and the map's strips, unlinks their IFDs
(``--macro keep`` keeps the macro), blanks every ASCII tag in every IFD
(unlinked ones too) except values known to be safe, rewrites the property map
fail-closed, and zeroes the slide-position tags.  Tile bytes are untouched.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Literal

from wsianon.converters._vocab import vocabulary_value
from wsianon.converters.base import Field, Inventory, NativeConverter, SlideContext
from wsianon.converters.decisions import Action, Decisions, ImageDecision, TagEdit, apply_tag_edits
from wsianon.errors import CorruptInput, UnsupportedFormat
from wsianon.io import tiffedit
from wsianon.io.plan import FilePlan, Plan
from wsianon.io.tiff import IFD, IMAGE_LENGTH, IMAGE_WIDTH, Kind, TiffStructure
from wsianon.profiles import load
from wsianon.profiles.policy import Policy, date_only, year_only


def _rules() -> dict:
    return load("ndpi")


def _tag_name(tag: int) -> str:
    name = _rules()["tag_names"].get(str(tag))
    return f"tag {tag} {name}" if name else f"tag {tag}"


def _lens(ts: TiffStructure, ifd: IFD) -> float | None:
    e = ifd.get(_rules()["lens_tag"])
    if e is None or e.size == 0:
        return None
    try:
        if e.type == 11:
            return struct.unpack("<f", ts.read(e.value_offset, 4))[0]
        v = ts.values(e)
        return float(v[0]) if len(v) == 1 else float(v[0]) / float(v[1] or 1)
    except (struct.error, ZeroDivisionError):
        return None


def classify(ts: TiffStructure, ifd: IFD) -> str:
    """'level' | 'macro' | 'map' | 'other'."""
    r = _rules()
    lens = _lens(ts, ifd)
    if lens is None:
        return "other"
    if lens > 0:
        return "level"
    if lens == r["macro_lens"]:
        return "macro"
    if lens == r["map_lens"]:
        return "map"
    return "other"


def split_property_map(text: str) -> list[tuple[str, str, bool]]:
    """(key, value, has_equals) per non-empty line of a 65449 property map."""
    out = []
    for line in re.split(r"\r\n|\n|\r", text):
        if not line.strip():
            continue
        k, eq, v = line.partition("=")
        out.append((k.strip(), v, bool(eq)))
    return out


class PropertyMapRewrite:
    def __init__(self, policy: Policy):
        r = _rules()
        self.safe = set(r["safe_property_keys"])
        self.dates = set(r["date_property_keys"])
        self.policy = policy

    def rewrite(self, text: str) -> tuple[str, list[Field]]:
        kept: list[str] = []
        fields: list[Field] = []
        for k, v, eq in split_property_map(text):
            if not eq:
                fields.append(Field("tag 65449 PropertyMap:unkeyed-text", k, Action.REMOVE))
                continue
            # a safe key's value is kept only as printable ASCII (as MRXS's): the map is read byte for
            # byte (Latin-1), so a Shift-JIS or Latin-1 name there would be kept as bytes no vocabulary can read
            # and only as the format's vocabulary: a free word there (a lens or mode name the
            # vocabulary lacks, or a name) would quarantine the slide at the vocabulary check, so
            # the key goes instead (fail closed)
            if k in self.safe and v.isascii() and v.isprintable() and vocabulary_value(v, "ndpi"):
                kept.append(f"{k}={v}")
                continue
            action, new_v = Action.REMOVE, ""
            if k in self.dates and self.policy.dates != "remove":
                if self.policy.dates == "keep":
                    action, new_v = (Action.KEEP, v) if date_only(v) else (Action.REMOVE, "")
                else:
                    y = year_only(v)
                    action, new_v = (Action.YEAR, y) if y else (Action.REMOVE, "")
            if new_v:
                kept.append(f"{k}={new_v}")
            if v.strip():
                fields.append(Field(f"tag 65449 PropertyMap:{k}", v.strip(), action))
        return "".join(line + "\r\n" for line in kept), fields


def _ascii_action(tag: int, value: str, policy: Policy) -> tuple[Action, bytes | None]:
    """(KEEP | BLANK | YEAR, new bytes or None for keep) for a plain ASCII tag."""
    r = _rules()
    pat = r["safe_ascii_values"].get(str(tag))
    if pat and re.match(pat, value.strip()):
        return Action.KEEP, None
    if tag in r["date_tags"]:
        if policy.dates == "keep" and date_only(value):
            return Action.KEEP, None
        if policy.dates == "year":
            y = year_only(value)
            if y:
                return Action.YEAR, f"{y}:01:01 00:00:00".encode()
    return Action.BLANK, b""


class NdpiConverter(NativeConverter):
    name = "ndpi"
    title = "Hamamatsu NDPI"
    openslide_vendor = "hamamatsu"
    extension = ".ndpi"

    def sniff(self, path: Path, head: bytes) -> bool:
        if head[:4] != b"II*\0":
            return False
        try:
            with TiffStructure(path) as ts:
                return ts.kind is Kind.NDPI
        except Exception:
            return False

    def _open(self, path: Path) -> TiffStructure:
        ts = TiffStructure(path)
        if ts.kind is not Kind.NDPI:
            ts.close()
            raise UnsupportedFormat(path, "not a Hamamatsu NDPI file (no NDPI format tag)")
        return ts

    # -- analyze: the one walk --------------------------------------------------
    def analyze(self, source: Path, policy: Policy) -> Decisions:
        """Classify every IFD and decide every text and position entry once (inspect and plan derive from this)."""
        path = Path(source)
        d = Decisions(format=self.name, source=path, policy=policy, input_files=[path])
        r = _rules()
        pm = PropertyMapRewrite(policy)
        with self._open(path) as ts:
            d.ifds = len(ts.ifds)
            level_sizes: list[tuple] = []
            for ifd in ts.ifds:
                where = f"IFD {ifd.index}"
                kind = classify(ts, ifd)
                spans = ts.data_spans(ifd)  # validates strips lie inside the file
                image = None
                if kind == "level":
                    if not spans:
                        raise CorruptInput(path, f"NDPI level IFD {ifd.index} has no image data")
                    # a z-stack stores a level once per focal plane: a level is a size
                    size = (ts.value(ifd, IMAGE_WIDTH), ts.value(ifd, IMAGE_LENGTH))
                    if size not in level_sizes:
                        level_sizes.append(size)
                        d.levels += 1
                elif kind == "macro":
                    image = ImageDecision("macro", where, True, Action.KEEP if policy.macro == "keep" else Action.REMOVE)
                elif kind == "map":
                    image = ImageDecision("map", where, False, Action.REMOVE)
                else:
                    image = ImageDecision("unknown", where, True, Action.REMOVE)
                if image is not None:
                    d.images.append(image)
                    d.image_at[ifd.index] = image
                # text: every IFD, unlinked ones included (their bytes stay in the file)
                for e in ts.iter_ascii_entries(ifd):
                    value = ts.ascii(e)
                    if e.tag == r["property_map_tag"]:
                        new, fields = pm.rewrite(value)
                        for f in fields:
                            f.where = where
                        d.fields += fields
                        changed = new.encode("latin-1") + b"\0" != ts.raw(e)
                        op: Literal["set", "none"] = "set" if changed else "none"
                        d.edits.append(TagEdit(ifd.index, e.tag, op, new.encode("latin-1"), "property map cleaned", fields))
                        continue
                    action, new_v = _ascii_action(e.tag, value, policy)
                    fields = []
                    if value.strip():
                        fields = [Field(_tag_name(e.tag), value.strip(), action, where)]
                        d.fields += fields
                    if action is Action.KEEP or (not value.strip() and not ts.raw(e).strip(b"\0")):
                        continue
                    d.edits.append(TagEdit(ifd.index, e.tag, "set", new_v or b"", f"{_tag_name(e.tag)} blanked", fields))
                for tag in r["position_tags_zeroed"]:
                    te = ifd.get(tag)
                    if te is not None and te.size:
                        v = ts.values(te)
                        f = Field(_tag_name(tag), str(v[0]), Action.ZERO, where, canary=False)
                        d.fields.append(f)
                        if te.inline:
                            d.edits.append(TagEdit(ifd.index, tag, "zero", reason=f"{_tag_name(tag)} zeroed", fields=[f]))
            if d.levels == 0:
                raise CorruptInput(path, "NDPI without any pyramid level")
        return d

    # -- plan ----------------------------------------------------------------
    def plan(self, inv: Inventory, ctx: SlideContext) -> Plan:
        """Byte patches carrying out the decisions (no IFD is classified, no text decided here)."""
        d = self.decisions_for(inv, ctx.policy)
        path = d.source
        plan = Plan(format=self.name)
        fp = FilePlan(dest=self.output_name(ctx, path), source=path)
        plan.files.append(fp)
        with self._open(path) as ts:
            appender = tiffedit.Appender(ts.size)
            remove: set[int] = set()
            edits = d.edits_by_ifd(len(ts.ifds))
            for ifd in ts.ifds:
                where = f"IFD {ifd.index}"
                image = d.image_at.get(ifd.index)
                if image is not None and image.action is Action.KEEP:
                    plan.notes.append("macro image kept on request: it shows the slide label")
                elif image is not None:
                    remove.add(ifd.index)
                    fp.patches += tiffedit.wipe_image_data(ts, ifd, f"{image.kind} pixels destroyed")
                    plan.remove("image", image.kind, "wiped+unlinked", where)
                apply_tag_edits(ts, ifd, edits.get(ifd.index, []), fp, plan, appender, path)
            if remove:
                if len(remove) == len(ts.ifds):
                    raise CorruptInput(path, "NDPI without any pyramid level")
                fp.patches += tiffedit.unlink_ifds(ts, remove, "associated image unlinked")
            fp.append = appender.data
        return plan
