"""Aperio SVS (TIFF or BigTIFF, incl. GT450) native redactor.

Facts (DESIGN.md §3): IFD0 is the tiled level 0, IFD1 the stripped thumbnail,
more tiled levels follow, then the stripped label and macro.  The label and
macro are found by their description line (``label WxH`` / ``macro WxH``) and,
for GT450 files whose descriptions can be empty, by NewSubfileType 1 / 9.
ImageDescription is ``banner|key = value|key = value``: handled fail-closed in
every IFD (keep safe keys, blank every other value).
"""

from __future__ import annotations

import re
from pathlib import Path

from wsianon.converters._tiffmeta import tiff_datetime_for_policy
from wsianon.converters._vocab import vocabulary_value
from wsianon.converters.base import Field, Inventory, NativeConverter, SlideContext
from wsianon.converters.decisions import Action, Decisions, ImageDecision, TagEdit, apply_tag_edits
from wsianon.errors import CorruptInput
from wsianon.io import tiffedit
from wsianon.io.plan import FilePlan, Patch, Plan
from wsianon.io.tiff import (
    ASCII,
    COMPRESSION,
    DATETIME,
    IMAGE_DESCRIPTION,
    NEW_SUBFILE_TYPE,
    TIFF_MAGIC,
    TILE_WIDTH,
    IFD,
    TiffStructure,
)
from wsianon.profiles import aperio_banner, load
from wsianon.profiles.names import shown
from wsianon.profiles.policy import Policy, clock_only, year_only


def _rules() -> dict:
    return load("aperio")


def _lines(desc: str) -> list[str]:
    return [p.strip() for p in re.split(r"\r\n|\n|;", desc.split("|", 1)[0])]


def classify_ifd(ts: TiffStructure, ifd: IFD) -> str:
    """'level' | 'thumbnail' | 'label' | 'macro' | 'other' for one SVS IFD."""
    desc = ts.text(ifd, IMAGE_DESCRIPTION) or ""
    lines = _lines(desc)
    for line in lines:
        if line.startswith("label ") or line == "label":
            return "label"
        if line.startswith("macro ") or line == "macro":
            return "macro"
    tiled = TILE_WIDTH in ifd
    if tiled:
        return "level"
    nst = ts.value(ifd, NEW_SUBFILE_TYPE, 0)
    if nst == 1:
        return "label"
    if nst == 9:
        return "macro"
    return "thumbnail" if ifd.index <= 1 else "other"


class DescriptionRewrite:
    """Fail-closed rewrite of an Aperio ImageDescription."""

    def __init__(self, policy: Policy):
        r = _rules()
        self.safe = set(r["safe_keys"])
        self.forms = {k: re.compile(f) for k, f in r["safe_value_forms"].items()}
        self.date_keys = set(r["date_keys"])
        self.time_keys = set(r["time_keys"])
        self.policy = policy
        self.first: str | None = None  # the first page's banner as written: its version and quality are every page's

    def rewrite(self, desc: str, geometry: tuple) -> tuple[str, list[Field]]:
        """``desc`` cleaned, and what went.  ``geometry`` (the slide's first page's size, this
        page's size, its tile size or None: ``aperio_banner.geometry``): the banner is written in
        its one form (``profiles.aperio_banner``), the product line and quality the first page's.
        The items after it are written ``KEY = VALUE`` (one space between a value's words), each
        key once (a key given twice by its last value, as OpenSlide reads it), in key order, no
        empty item: spacing, repeats and order a writer chose were free bits (red team stop 39)."""
        fields: list[Field] = []
        banner, sep, rest = desc.partition("|")
        base, size, tile = geometry
        out = aperio_banner.canonical(banner, base, size, tile, first=self.first)
        if self.first is None:
            self.first = out
        kept = {line for line in aperio_banner.SPLIT.split(out)[0::2] if line}
        for line in aperio_banner.SPLIT.split(banner)[0::2]:
            if line.strip() and line.strip() not in kept:
                # the line as written stays a canary only where it is not what is kept
                fields.append(Field("ImageDescription:banner-text", line.strip(), Action.BLANK))
        if sep:
            items = rest.split("|")
            last = {" ".join(item.partition("=")[0].split()): i for i, item in enumerate(items) if "=" in item}
            new_items = []
            for i, item in enumerate(items):
                key, eq, value = item.partition("=")
                k = " ".join(key.split())
                v = value.strip()
                if not eq:
                    # free text without a key: fail-closed
                    if item.strip():
                        fields.append(Field("ImageDescription:unkeyed-text", item.strip(), Action.BLANK))
                    continue
                if last[k] != i:  # given again later: OpenSlide shows the last only
                    if v:
                        fields.append(Field(f"ImageDescription:{k}", v, Action.REMOVE))
                    continue
                item = f"{k} = {' '.join(v.split())}"
                # a safe key's value only as the format's vocabulary (numbers, 'USM Filter'): a free
                # word there (Parmset names the scan settings as the operator chose: 'COVERSLIP', or
                # a name) would quarantine the slide at the vocabulary check, so it is blanked; so is
                # a value holding control characters ('DO\x01E^\x01JA': pieces too short to judge)
                # a safe number in its form only (at most so many digits: an MRN as AppMag is blanked)
                form = self.forms.get(k)
                if k in self.safe and v.isprintable() and vocabulary_value(v, "aperio") and (not v or form is None or form.fullmatch(v)):
                    new_items.append(item)
                    continue
                # the key itself is the source's text: one that is not the format's vocabulary
                # ("Doe^Jane", "S19-4711", markup, control characters) is taken out with its value,
                # not kept as "key = " for the vocabulary check to quarantine the slide
                if not (k.isprintable() and shown("aperio", k)):
                    fields.append(Field(f"ImageDescription:{k}", item.strip(), Action.REMOVE))
                    continue
                action = Action.BLANK
                new_v = ""
                if k in self.date_keys or k in self.time_keys:
                    if self.policy.dates == "keep" and clock_only(v):  # free text there is no date: blanked
                        action = Action.KEEP
                        new_v = v
                    elif self.policy.dates == "year" and k in self.date_keys:
                        y = year_only(v)
                        action = Action.YEAR
                        new_v = f"01/01/{y[-2:]}" if y else ""
                if action is Action.KEEP:
                    new_items.append(item)
                else:
                    new_items.append(f"{k} = {new_v}" if new_v else f"{k} = ")
                if v:
                    fields.append(Field(f"ImageDescription:{k}", v, action))
            if new_items:
                out += "|" + "|".join(sorted(new_items, key=lambda it: it.partition(" = ")[0]))
        return out, fields


class AperioConverter(NativeConverter):
    name = "aperio"
    title = "Aperio SVS"
    openslide_vendor = "aperio"
    extension = ".svs"

    def sniff(self, path: Path, head: bytes) -> bool:
        if head[:4] not in TIFF_MAGIC:
            return False
        try:
            with TiffStructure(path) as ts:
                d = ts.text(ts.ifds[0], IMAGE_DESCRIPTION) or ""
                return d.startswith("Aperio")
        except Exception:
            return False

    # -- analyze: the one walk --------------------------------------------------
    def analyze(self, source: Path, policy: Policy) -> Decisions:
        """Classify every IFD and decide every text entry once (inspect and plan derive from this)."""
        path = Path(source)
        d = Decisions(format=self.name, source=path, policy=policy, input_files=[path])
        private_tags = _rules()["private_tags_blanked"] + [700, 33723, 34377, 37510]
        rewriter = DescriptionRewrite(policy)
        with TiffStructure(path) as ts:
            d.ifds = len(ts.ifds)
            for ifd in ts.ifds:
                where = f"IFD {ifd.index}"
                kind = classify_ifd(ts, ifd)
                image = None
                if kind == "level":
                    d.levels += 1
                    ts.data_span_arrays(ifd)  # validates that tiles lie inside the file (compact: no per-tile objects)
                elif kind in ("label", "macro"):
                    action = Action.REMOVE
                    if kind == "label" and policy.label == "blank":
                        action = Action.BLANK
                    if kind == "macro" and policy.macro == "keep":
                        action = Action.KEEP
                    image = ImageDecision(kind, where, True, action)
                elif kind == "thumbnail":
                    image = ImageDecision("thumbnail", where, False, Action.REMOVE if policy.thumbnail == "remove" else Action.KEEP)
                else:
                    image = ImageDecision("unknown", where, True, Action.REMOVE)
                if image is not None:
                    d.images.append(image)
                    d.image_at[ifd.index] = image
                for e in ts.iter_ascii_entries(ifd):
                    value = ts.ascii(e)
                    if e.tag == IMAGE_DESCRIPTION:
                        new, fields = rewriter.rewrite(value, aperio_banner.geometry(ts, ifd))
                        for f in fields:
                            f.where = where
                        d.fields += fields
                        if new != value:
                            d.edits.append(TagEdit(ifd.index, e.tag, "set", new.encode("latin-1"), "ImageDescription cleaned", fields))
                    elif value.strip():
                        if e.tag == DATETIME:
                            new_value, how = tiff_datetime_for_policy(value.strip(), policy)
                        else:
                            new_value, how = "", Action.BLANK
                        f = Field(f"tag {e.tag}", value.strip(), how, where)
                        d.fields.append(f)
                        if f.action is not Action.KEEP:
                            d.edits.append(TagEdit(ifd.index, e.tag, "set", new_value.encode(), f"tag {e.tag} blanked", [f]))
                for tag in private_tags:
                    te = ifd.get(tag)
                    if te is not None and te.size and te.type != ASCII:
                        txt = ts.raw(te).replace(b"\0", b" ").decode("latin-1").strip()
                        f = Field(f"tag {tag}", txt, Action.BLANK, where, canary=len(txt) >= 5 and txt.isprintable())
                        d.fields.append(f)
                        d.edits.append(TagEdit(ifd.index, tag, "blank", reason=f"tag {tag} blanked", fields=[f]))
            if d.levels == 0:
                raise CorruptInput(path, "Aperio SVS without any tiled pyramid level")
        return d

    # -- plan ----------------------------------------------------------------
    def plan(self, inv: Inventory, ctx: SlideContext) -> Plan:
        """Byte patches carrying out the decisions (no IFD is classified, no text decided here)."""
        d = self.decisions_for(inv, ctx.policy)
        path = d.source
        plan = Plan(format=self.name)
        fp = FilePlan(dest=self.output_name(ctx, path), source=path)
        plan.files.append(fp)
        with TiffStructure(path) as ts:
            appender = tiffedit.Appender(ts.size)
            remove: set[int] = set()
            edits = d.edits_by_ifd(len(ts.ifds))
            for ifd in ts.ifds:
                where = f"IFD {ifd.index}"
                image = d.image_at.get(ifd.index)
                if image is not None and image.action is Action.REMOVE:
                    remove.add(ifd.index)
                    kind = image.kind
                    fp.patches += tiffedit.wipe_image_data(ts, ifd, f"{kind} pixels destroyed")
                    fp.patches += tiffedit.blank_all_ascii(ts, ifd, f"{kind} IFD text blanked")
                    plan.remove("image", kind, "wiped+unlinked", where)
                    continue
                if image is not None and image.kind == "label" and image.action is Action.BLANK:
                    fp.patches += blank_label_patches(ts, ifd)
                    plan.remove("image", "label", "replaced by blank image", where)
                if image is not None and image.kind == "macro" and image.action is Action.KEEP:
                    plan.notes.append("macro image kept on request: it usually shows the slide label")
                apply_tag_edits(ts, ifd, edits.get(ifd.index, []), fp, plan, appender, path)
            if remove:
                fp.patches += tiffedit.unlink_ifds(ts, remove, "associated image unlinked")
            fp.append = appender.data
        return plan


# a blank label is drawn whole, a strip at a time: a label photo is a few Mpx; a damaged size (a
# bit flip in ImageWidth) would otherwise ask numpy for gigabytes
MAX_LABEL_SAMPLES = 3 << 26


def blank_label_patches(ts: TiffStructure, ifd: IFD) -> list[Patch]:
    """Replace a stripped label's pixels by a white image of the same size and codec.

    The blank strips are written over the old ones (they are always smaller),
    the rest of each old strip is zeroed, and the byte counts updated.
    """
    import numpy as np

    width, height = ts.dimensions(ifd)  # 0 where damaged (not one number)
    comp = ts.value(ifd, COMPRESSION, 1)
    spp = ts.samples_per_pixel(ifd) if 277 in ifd else 3
    rps = ts.value(ifd, 278, height) or height
    predictor = ts.value(ifd, 317, 1)
    if 273 not in ifd or 279 not in ifd:
        raise CorruptInput(ts.path, f"label IFD {ifd.index} is not stripped")
    if not (width and height and spp and isinstance(rps, int) and rps > 0 and isinstance(comp, int) and isinstance(predictor, int)):
        # a count or field type damaged (several values, text): no size to draw a blank label of
        raise CorruptInput(ts.path, f"label IFD {ifd.index}: its size or coding is not one number each (damaged?); cannot write a blank label")
    if width * height * spp > MAX_LABEL_SAMPLES:
        raise CorruptInput(ts.path, f"label IFD {ifd.index}: larger than {MAX_LABEL_SAMPLES >> 20} M samples (damaged?); cannot write a blank label")
    spans = ts.data_spans(ifd)
    counts_entry = ifd.entries[279]
    if counts_entry.type not in (3, 4, 16):
        # (fuzz seed 172, svs #40 in place: type IFD (13), an internal error (KeyError) before)
        raise CorruptInput(
            ts.path,
            f"label IFD {ifd.index}: its StripByteCounts are of TIFF field type {counts_entry.type}, not SHORT, LONG or LONG8 (damaged?); cannot write a blank label",
        )
    patches: list[Patch] = []
    new_counts = []
    for i, (off, cnt) in enumerate(spans):
        rows = min(rps, height - i * rps)
        if rows <= 0:
            raise CorruptInput(ts.path, f"label IFD {ifd.index}: more strips than its height holds (damaged?); cannot write a blank label")
        arr = np.full((rows, width, spp), 255, dtype=np.uint8)
        data = _encode_strip(arr, comp, predictor)
        if data is None or len(data) > cnt:
            raise CorruptInput(ts.path, f"label IFD {ifd.index}: cannot write a blank label in its compression")
        patches.append(Patch(off, cnt, data + bytes(cnt - len(data)), "label replaced by blank image"))
        new_counts.append(len(data))
    code = {3: "H", 4: "I", 16: "Q"}[counts_entry.type]
    patches.append(
        Patch(
            counts_entry.value_offset,
            counts_entry.size,
            ts.pack(f"{len(new_counts)}{code}", *new_counts) + bytes(counts_entry.size - len(new_counts) * {3: 2, 4: 4, 16: 8}[counts_entry.type]),
            "label strip byte counts",
        )
    )
    return patches


def _encode_strip(arr, comp: int, predictor: int) -> bytes | None:
    import imagecodecs
    import numpy as np

    if comp == 1:
        return arr.tobytes()
    if comp == 5:
        data = arr
        if predictor == 2:
            data = imagecodecs.delta_encode(arr, axis=1)
        return imagecodecs.lzw_encode(np.ascontiguousarray(data).tobytes())  # type: ignore[return-value]  # bytes when out=None; the stub says BytesResult
    if comp in (7, 6):
        return imagecodecs.jpeg8_encode(arr, level=90)
    if comp in (8, 32946):
        data = imagecodecs.delta_encode(arr, axis=1) if predictor == 2 else arr
        return imagecodecs.zlib_encode(np.ascontiguousarray(data).tobytes())  # type: ignore[return-value]  # bytes when out=None; the stub says BytesResult
    return None
