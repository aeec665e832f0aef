"""3DHistech MRXS native redactor.

A slide is ``NAME.mrxs`` (a JPEG photo of the whole glass slide, label end
included) plus the folder ``NAME/`` with ``Slidedat.ini``, ``Index.dat`` and
``DataNNNN.dat`` (DESIGN.md §3; layout facts from OpenSlide's mirax reader).

The output is a complete renamed pair: ``PSEUDO.mrxs`` (a neutral preview
without metadata) and ``PSEUDO/`` with

* ``Slidedat.ini`` rewritten fail-closed (encoding, BOM, line endings and key
  order kept; SLIDE_ID replaced by a keyed value, SLIDE_NAME by the pseudonym,
  identifying and unknown free-text values blanked, the label / macro /
  whole-slide records removed and the remaining NONHIER values renumbered);
* ``Index.dat`` patched: the new SLIDE_ID in the header, the removed records
  dropped from the nonhier pointer table and their page entries zeroed;
* the Data files patched: the new SLIDE_ID in their headers, the removed
  blobs and every free-text blob (ProfileXML, XML headers, unknown records)
  zeroed.  Pyramid tile bytes are never touched.

Data-file and index names are never followed out of the slide folder.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from wsianon.converters.base import AssociatedImage, Field, Inventory, NativeConverter, SlideContext
from wsianon.errors import CorruptInput, UnsupportedFormat, WsianonError
from wsianon.io.plan import FilePlan, Patch, Plan
from wsianon.profiles import load
from wsianon.profiles.policy import Policy, year_only
from wsianon.io.safetext import os_reason
from wsianon.io.safefile import read_regular, read_whole_regular


def _rules() -> dict:
    return load("mrxs")


# ---------------------------------------------------------------------------------------
# Slidedat.ini, preserving bytes we do not change


@dataclass
class IniLine:
    text: str  # without line ending
    ending: str
    section: str | None = None
    key: str | None = None
    value: str | None = None
    kind: str = "other"  # "section" | "kv" | "blank" | "comment" | "other"
    deleted: bool = False

    def set_value(self, value: str) -> None:
        eq = self.text.index("=")
        rest = self.text[eq + 1 :]
        pad = rest[: len(rest) - len(rest.lstrip())]
        self.text = self.text[: eq + 1] + pad + value
        self.value = value

    def rename(self, new_key: str) -> None:
        eq = self.text.index("=")
        left = self.text[:eq]
        lead = left[: len(left) - len(left.lstrip())]
        trail = left[len(left.rstrip()) :]
        self.text = lead + new_key + trail + self.text[eq:]
        self.key = new_key


class IniDoc:
    def __init__(self, raw: bytes, path: Path):
        self.path = path
        self.bom = b""
        if raw.startswith(b"\xef\xbb\xbf"):
            self.bom, raw, self.encoding = b"\xef\xbb\xbf", raw[3:], "utf-8"
        elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            self.bom, self.encoding = raw[:2], "utf-16-le" if raw[:2] == b"\xff\xfe" else "utf-16-be"
            raw = raw[2:]
        else:
            try:
                raw.decode("utf-8")
                self.encoding = "utf-8"
            except UnicodeDecodeError:
                self.encoding = "cp1252"
        try:
            text = raw.decode(self.encoding)
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
            self.encoding = "latin-1"
        self.lines: list[IniLine] = []
        section = None
        for chunk in text.splitlines(keepends=True):
            body = chunk.rstrip("\r\n")
            ending = chunk[len(body) :]
            s = body.strip()
            ln = IniLine(body, ending, section)
            if s.startswith("[") and s.endswith("]"):
                section = s[1:-1].strip()
                ln.kind, ln.section = "section", section
            elif not s:
                ln.kind = "blank"
            elif s.startswith((";", "#")):
                ln.kind = "comment"
            elif "=" in s:
                k, _, v = body.partition("=")
                ln.kind, ln.key, ln.value = "kv", k.strip(), v.strip()
            self.lines.append(ln)
        if not any(l.kind == "section" for l in self.lines):
            raise CorruptInput(path, "Slidedat.ini has no sections (not an MRXS slide description)")

    def kv(self):
        return [l for l in self.lines if l.kind == "kv" and not l.deleted]

    def get(self, section: str, key: str) -> str | None:
        for l in self.kv():
            if l.section == section and l.key == key:
                return l.value
        return None

    def line(self, section: str, key: str) -> IniLine | None:
        for l in self.kv():
            if l.section == section and l.key == key:
                return l
        return None

    def int(self, section: str, key: str) -> int:
        v = self.get(section, key)
        try:
            return int(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise CorruptInput(self.path, f"Slidedat.ini [{section}] {key} missing or not an integer") from None

    def delete_section(self, name: str) -> None:
        inside = False
        for l in self.lines:
            if l.kind == "section":
                inside = l.section == name
            if inside:
                l.deleted = True

    def render(self) -> bytes:
        text = "".join(l.text + l.ending for l in self.lines if not l.deleted)
        return self.bom + text.encode(self.encoding, errors="replace")


# ---------------------------------------------------------------------------------------
# Index.dat


@dataclass
class NonHierRecord:
    layer: int
    val: int
    layer_name: str
    name: str
    section: str | None
    table_slot: int  # position in the flattened nonhier table
    pointer: int = 0  # value stored in the table
    entry_offset: int = 0  # Index.dat offset of (offset, size, fileno)
    offset: int = 0
    size: int = 0
    fileno: int = -1

    @property
    def present(self) -> bool:
        return self.fileno >= 0


@dataclass
class IndexInfo:
    supported: bool
    version: str
    size: int
    nonhier_table: int = 0
    hier_tiles: list[tuple[int, int, int]] = field(default_factory=list)  # (offset, length, fileno)


def _i32(data: bytes, off: int, path: Path, what: str) -> int:
    if off < 0 or off + 4 > len(data):
        raise CorruptInput(path, f"Index.dat truncated or corrupt: {what} at {off} is outside the file ({len(data)} bytes)")
    return struct.unpack_from("<i", data, off)[0]


def read_index(path: Path, slide_id: str, hier_counts: list[int], records: list[NonHierRecord]) -> IndexInfo:
    try:
        data = read_whole_regular(path)
    except OSError as exc:
        raise CorruptInput(path, f"cannot read Index.dat: {os_reason(exc)}") from None
    version = data[:5].decode("latin-1")
    info = IndexInfo(supported=False, version=version, size=len(data))
    if len(data) < 5 + len(slide_id):
        raise CorruptInput(path, "Index.dat truncated: shorter than its header")
    if data[5 : 5 + len(slide_id)] != slide_id.encode("latin-1"):
        raise CorruptInput(path, "Index.dat does not carry the slide's SLIDE_ID")
    if version != _rules()["index_version"]:
        return info  # a layout we cannot walk: handled fail-closed by the planner
    info.supported = True
    root = 5 + len(slide_id)
    hier_table = _i32(data, root, path, "hier table pointer")
    nonhier_table = _i32(data, root + 4, path, "nonhier table pointer")
    info.nonhier_table = nonhier_table
    n_hier = sum(hier_counts)
    for i in range(n_hier):
        ptr = _i32(data, hier_table + 4 * i, path, f"hier record {i} pointer")
        if _i32(data, ptr, path, f"hier record {i}") != 0:
            raise CorruptInput(path, f"Index.dat corrupt: hier record {i} does not start with 0")
        page = _i32(data, ptr + 4, path, f"hier record {i} page pointer")
        seen = set()
        while True:
            if page in seen:
                raise CorruptInput(path, "Index.dat corrupt: data pages loop")
            seen.add(page)
            count = _i32(data, page, path, "page item count")
            nxt = _i32(data, page + 4, path, "next page pointer")
            if count < 0:
                raise CorruptInput(path, "Index.dat corrupt: negative page item count")
            _i32(data, page + 8 + 16 * count - 4, path, "page items") if count else None
            if i < hier_counts[0]:  # zoom levels: tiles
                for k in range(count):
                    _, off, ln, fno = struct.unpack_from("<iiii", data, page + 8 + 16 * k)
                    if off < 0 or ln < 0 or fno < 0:
                        raise CorruptInput(path, "Index.dat corrupt: negative tile offset, length or file number")
                    info.hier_tiles.append((off, ln, fno))
            if nxt == 0:
                break
            page = nxt
    for slot, rec in enumerate(records):
        ptr = _i32(data, nonhier_table + 4 * slot, path, f"nonhier record {slot} pointer")
        rec.pointer = ptr
        if ptr == 0:
            continue
        if _i32(data, ptr, path, f"nonhier record {slot}") != 0:
            raise CorruptInput(path, f"Index.dat corrupt: nonhier record {slot} does not start with 0")
        page = _i32(data, ptr + 4, path, f"nonhier record {slot} page pointer")
        count = _i32(data, page, path, "nonhier page item count")
        if count < 1:
            continue
        rec.entry_offset = page + 16
        rec.offset = _i32(data, page + 16, path, "nonhier blob offset")
        rec.size = _i32(data, page + 20, path, "nonhier blob size")
        rec.fileno = _i32(data, page + 24, path, "nonhier blob file number")
        if rec.offset < 0 or rec.size < 0:
            raise CorruptInput(path, f"Index.dat corrupt: nonhier record {slot} has a negative offset or size")
    return info


# ---------------------------------------------------------------------------------------
# helpers


_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]*$")


def safe_member(folder: Path, name: str | None, what: str) -> Path:
    """``folder/name`` when ``name`` is a plain file name inside the slide folder; refuse otherwise."""
    if not name:
        raise CorruptInput(folder, f"Slidedat.ini names no {what}")
    if (
        "/" in name
        or "\\" in name
        or "\0" in name
        or name in (".", "..")
        or os.path.isabs(name)
        or re.match(r"^[A-Za-z]:", name)
        or not _SAFE_NAME.match(name)
    ):
        raise CorruptInput(folder, f"{what}: the name Slidedat.ini gives leaves the slide folder or is not a plain file name: refused")
    p = folder / name
    if p.is_symlink():
        raise CorruptInput(p, f"{what} is a symbolic link: refused")
    if not p.exists():
        raise CorruptInput(p, f"{what} is missing")
    if not p.is_file():
        raise CorruptInput(p, f"{what} is not a regular file: refused")
    return p


def keyed_slide_id(key: bytes, old: str) -> str:
    """A new SLIDE_ID of the same length (offsets in Index.dat depend on it), keyed, uppercase hex."""
    out = ""
    block = b"mrxs-slide-id:" + old.encode("latin-1")
    while len(out) < len(old):
        block = hmac.new(key, block, hashlib.sha256).digest()
        out += block.hex().upper()
    new = out[: len(old)]
    if new == old:  # astronomically unlikely; never keep the old identifier
        new = new[::-1]
    return new


def jpeg_text_segments(data: bytes) -> list[tuple[str, str]]:
    """(kind, text) of JPEG COM segments and printable runs inside APPn segments (EXIF, XMP ...)."""
    out: list[tuple[str, str]] = []
    if data[:2] != b"\xff\xd8":
        return out
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        m = data[pos + 1]
        if m in (0xD9, 0xDA):
            break
        (ln,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        payload = data[pos + 4 : pos + 2 + ln]
        if m == 0xFE:
            t = payload.split(b"\0", 1)[0].decode("latin-1").strip()
            if t:
                out.append(("JPEG comment", t))
        elif 0xE1 <= m <= 0xEF:
            for run in re.findall(rb"[\x20-\x7e]{5,}", payload):
                t = run.decode("latin-1").strip()
                if t and t not in ("Exif", "http://ns.adobe.com/xap/1.0/"):
                    out.append((f"APP{m - 0xE0} text", t))
        pos += 2 + ln
    return out


def neutral_jpeg(size: tuple[int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (224, 224, 224)).save(buf, "JPEG", quality=75)
    return buf.getvalue()


def blank_jpeg(size: tuple[int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (255, 255, 255)).save(buf, "JPEG", quality=50)
    return buf.getvalue()


def count_barcodes(jpeg: bytes) -> int | None:
    """Barcodes zxing-cpp finds in an image; None when it cannot be checked."""
    try:
        import zxingcpp
        from PIL import Image

        img = Image.open(io.BytesIO(jpeg)).convert("RGB")
        return len(zxingcpp.read_barcodes(img))
    except Exception:
        return None


def _xml_texts(blob: bytes) -> list[str]:
    text = blob.decode("utf-8", errors="replace")
    vals = re.findall(r">([^<>]+)<", text) + re.findall(r"=\s*\"([^\"]*)\"", text) + re.findall(r"=\s*'([^']*)'", text)
    return [v.strip() for v in vals if len(v.strip()) >= 5 and not re.fullmatch(r"[-0-9.,: ]+|utf-8|1\.0", v.strip())]


# ---------------------------------------------------------------------------------------
# the slide model


@dataclass
class Slide:
    mrxs: Path
    folder: Path
    ini: IniDoc
    slide_id: str
    index_path: Path
    datafiles: list[Path]
    records: list[NonHierRecord]
    index: IndexInfo
    zoom_levels: int


def load_slide(path: Path) -> Slide:
    path = Path(path)
    if path.suffix.lower() != ".mrxs":
        raise UnsupportedFormat(path, "an MRXS slide is opened through its NAME.mrxs file")
    folder = path.with_suffix("")
    if folder.is_symlink():
        raise CorruptInput(folder, "MRXS slide folder is a symbolic link: refused")
    if not folder.is_dir():
        raise CorruptInput(path, "MRXS slide folder is missing")
    ini_path = safe_member(folder, "Slidedat.ini", "Slidedat.ini")
    try:
        raw = read_whole_regular(ini_path)
    except OSError as exc:
        raise CorruptInput(ini_path, f"cannot read: {os_reason(exc)}") from None
    ini = IniDoc(raw, ini_path)
    slide_id = ini.get("GENERAL", _rules()["slide_id_key"])
    if not slide_id:
        raise CorruptInput(ini_path, "Slidedat.ini has no SLIDE_ID")
    index_path = safe_member(folder, ini.get("HIERARCHICAL", "INDEXFILE"), "index file")
    nfiles = ini.int("DATAFILE", "FILE_COUNT")
    if nfiles < 0 or nfiles > 100000:
        raise CorruptInput(ini_path, "implausible FILE_COUNT")
    datafiles = [safe_member(folder, ini.get("DATAFILE", f"FILE_{i}"), f"data file FILE_{i}") for i in range(nfiles)]
    hier_count = ini.int("HIERARCHICAL", "HIER_COUNT")
    hier_counts = [ini.int("HIERARCHICAL", f"HIER_{i}_COUNT") for i in range(hier_count)]
    if not hier_counts or ini.get("HIERARCHICAL", "HIER_0_NAME") != "Slide zoom level":
        raise CorruptInput(ini_path, "Slidedat.ini has no 'Slide zoom level' hierarchy")
    records: list[NonHierRecord] = []
    nonhier_count = ini.int("HIERARCHICAL", "NONHIER_COUNT")
    for li in range(nonhier_count):
        lname = ini.get("HIERARCHICAL", f"NONHIER_{li}_NAME") or ""
        for vi in range(ini.int("HIERARCHICAL", f"NONHIER_{li}_COUNT")):
            records.append(
                NonHierRecord(
                    li,
                    vi,
                    lname,
                    ini.get("HIERARCHICAL", f"NONHIER_{li}_VAL_{vi}") or "",
                    ini.get("HIERARCHICAL", f"NONHIER_{li}_VAL_{vi}_SECTION"),
                    len(records),
                )
            )
    index = read_index(index_path, slide_id, hier_counts, records)
    sizes = [p.stat().st_size for p in datafiles]
    if index.supported:
        for off, ln, fno in index.hier_tiles:
            if fno >= nfiles:
                raise CorruptInput(index_path, f"Index.dat names data file {fno}, Slidedat.ini lists {nfiles}")
            if off + ln > sizes[fno]:
                raise CorruptInput(datafiles[fno], "tile data beyond the end of the data file (truncated?)")
        for r in records:
            if r.present:
                if r.fileno >= nfiles:
                    raise CorruptInput(index_path, f"Index.dat names data file {r.fileno}, Slidedat.ini lists {nfiles}")
                if r.offset + r.size > sizes[r.fileno]:
                    raise CorruptInput(datafiles[r.fileno], f"{r.name or 'record'} data beyond the end of the data file (truncated?)")
    return Slide(path, folder, ini, slide_id, index_path, datafiles, records, index, hier_counts[0])


def read_blob(slide: Slide, rec: NonHierRecord, limit: int = 64 << 20) -> bytes:
    if not rec.present or rec.size > limit:
        return b""
    with open(slide.datafiles[rec.fileno], "rb") as fh:
        fh.seek(rec.offset)
        return fh.read(rec.size)


def _header_end(data: bytes, slide_id: str) -> int:
    i = data.find(slide_id.encode("latin-1"))
    return i + len(slide_id) if i >= 0 else 0


# ---------------------------------------------------------------------------------------


class MrxsConverter(NativeConverter):
    name = "mrxs"
    title = "3DHistech MRXS"
    openslide_vendor = "mirax"
    extension = ".mrxs"

    def sniff(self, path: Path, head: bytes) -> bool:
        path = Path(path)
        if path.suffix.lower() != ".mrxs":
            return False
        ini = path.with_suffix("") / "Slidedat.ini"
        try:
            start = read_regular(ini, 4096)
        except WsianonError:
            return False
        return b"[GENERAL]" in start and b"SLIDE_ID" in start

    def commit_last(self, plan: Plan) -> list[str]:
        return [f.dest for f in plan.files if "/" not in f.dest]

    def _base(self, ctx: SlideContext, source: Path) -> str:
        return source.stem if ctx.policy.rename == "keep" else ctx.pseudonym

    def output_name(self, ctx: SlideContext, source: Path) -> str:
        return self._base(ctx, source) + ".mrxs"

    # -- decisions shared by inspect and plan --------------------------------------------
    def _associated_actions(self, slide: Slide, policy: Policy) -> dict[int, str]:
        """table slot -> 'remove' | 'blank' | 'keep' for the associated-image records."""
        r = _rules()["associated"]
        out: dict[int, str] = {}
        for rec in slide.records:
            kind = r.get(rec.name)
            if kind is None or rec.layer_name != "Scan data layer":
                continue
            if kind == "label":
                out[rec.table_slot] = "blank" if policy.label == "blank" else "remove"
            elif kind in ("macro", "wholeslide"):
                out[rec.table_slot] = "keep" if policy.macro == "keep" else "remove"
            else:  # thumbnail / preview: kept only when no barcode is found in it
                n = count_barcodes(read_blob(slide, rec)) if rec.present else 0
                out[rec.table_slot] = "keep" if n == 0 else "remove"
        return out

    def _text_records(self, slide: Slide) -> list[NonHierRecord]:
        r = _rules()
        safe = set(r["safe_nonhier_records"])
        assoc = set(r["associated"])
        return [
            rec
            for rec in slide.records
            if rec.present and rec.name not in safe and rec.layer_name not in safe and not (rec.name in assoc and rec.layer_name == "Scan data layer")
        ]

    def _ini_value_action(self, section: str, key: str, value: str, policy: Policy) -> tuple[str, str]:
        """(action, new value) for one ini value: keep | blank | dummy | year | replace."""
        r = _rules()
        if section in r["structural_sections"]:
            return "keep", value
        if key == r["slide_id_key"] and section == "GENERAL":
            return "replace", value
        if key == r["slide_name_key"] and section == "GENERAL":
            return "dummy", value
        if key in r["date_keys"]:
            if policy.dates == "keep":
                return "keep", value
            if policy.dates == "year":
                y = year_only(value)
                return ("year", y) if y else ("blank", "")
            return "blank", ""
        if key in r["identifying_keys"]:
            return "blank", ""
        if key in r["safe_keys"]:
            return "keep", value
        if not value or re.match(r["structural_value_pattern"], value):
            return "keep", value
        return "blank", ""

    # -- inspect ------------------------------------------------------------------------------
    def inspect(self, path: Path, policy: Policy | None = None) -> Inventory:
        policy = policy or Policy()
        slide = load_slide(Path(path))
        inv = Inventory(
            format=self.name,
            path=slide.mrxs,
            input_files=[slide.mrxs, slide.ini.path, slide.index_path, *slide.datafiles],
            levels=slide.zoom_levels,
        )
        if not slide.index.supported:
            inv.notes.append(
                f"Index.dat layout {slide.index.version!r} is not one OpenSlide reads: image data cannot be located, "
                "so every Data file is zeroed after its header"
            )
        for l in slide.ini.kv():
            action, _ = self._ini_value_action(l.section or "", l.key or "", l.value or "", policy)
            if action != "keep" and l.value:
                inv.fields.append(Field(f"Slidedat.ini:{l.key}", l.value, action, f"[{l.section}]"))
        for l in slide.ini.lines:
            if l.kind in ("comment", "other") and l.text.strip():
                inv.fields.append(Field("Slidedat.ini:free text", l.text.strip().lstrip(";#").strip(), "remove", f"[{l.section}]"))
        kinds = _rules()["associated"]
        for slot, action in self._associated_actions(slide, policy).items():
            rec = slide.records[slot]
            kind = kinds[rec.name]
            inv.images.append(AssociatedImage(kind, f"{rec.name} (Data file {rec.fileno})", kind != "thumbnail" or action == "remove", action))
        for rec in self._text_records(slide):
            blob = read_blob(slide, rec)
            for t in _xml_texts(blob)[:200]:
                inv.fields.append(Field(f"{rec.name}:text", t, "blank", f"Data file {rec.fileno}"))
        try:
            preview = slide.mrxs.read_bytes()
        except OSError as exc:
            raise CorruptInput(slide.mrxs, f"cannot read: {os_reason(exc)}") from None
        for kind, t in jpeg_text_segments(preview):
            inv.fields.append(Field(f"preview:{kind}", t, "remove", slide.mrxs.name))
        inv.images.append(AssociatedImage("preview", slide.mrxs.name, True, "replace"))
        return inv

    # -- plan -----------------------------------------------------------------------------------
    def plan(self, inv: Inventory, ctx: SlideContext) -> Plan:
        policy = ctx.policy
        slide = load_slide(Path(inv.path))
        base = self._base(ctx, slide.mrxs)
        plan = Plan(format=self.name)
        new_id = keyed_slide_id(ctx.key, slide.slide_id)
        ini = slide.ini
        assoc_actions = self._associated_actions(slide, policy)
        kinds = _rules()["associated"]

        # label "blank": a white JPEG in the old blob's place, when it fits
        blanks: dict[int, bytes] = {}
        for slot, action in assoc_actions.items():
            if action == "blank":
                rec = slide.records[slot]
                w = ini.get(rec.section or "", "BARCODE_IMAGE_WIDTH")
                h = ini.get(rec.section or "", "BARCODE_IMAGE_HEIGHT")
                label_size = (int(w or 0), int(h or 0)) if (w or "").isdigit() and (h or "").isdigit() else (400, 300)
                data = blank_jpeg(label_size)
                if slide.index.supported and rec.present and len(data) <= rec.size:
                    blanks[slot] = data
                else:
                    assoc_actions[slot] = "remove"
        removed = {s for s, a in assoc_actions.items() if a == "remove"}

        # ---- Slidedat.ini
        for l in ini.kv():
            action, new = self._ini_value_action(l.section or "", l.key or "", l.value or "", policy)
            if action == "keep":
                continue
            if action == "replace":
                l.set_value(new_id)
                plan.remove("field", f"Slidedat.ini:{l.key}", "replaced (keyed)", f"[{l.section}]")
            elif action == "dummy":
                l.set_value(base)
                plan.remove("field", f"Slidedat.ini:{l.key}", "dummy", f"[{l.section}]")
            elif l.value:
                l.set_value(new)
                plan.remove("field", f"Slidedat.ini:{l.key}", "year only" if action == "year" else "blanked", f"[{l.section}]")
        for l in ini.lines:
            if l.kind in ("comment", "other") and l.text.strip():
                l.deleted = True
                plan.remove("field", "Slidedat.ini:free text", "removed", f"[{l.section}]")
        # remove associated records and renumber the remaining values of their layer
        by_layer: dict[int, list[NonHierRecord]] = {}
        for rec in slide.records:
            by_layer.setdefault(rec.layer, []).append(rec)
        for li, recs in by_layer.items():
            gone = [r for r in recs if r.table_slot in removed]
            if not gone:
                continue
            if len(gone) == len(recs):
                raise CorruptInput(ini.path, f"NONHIER layer {li} would be left empty; this layout is not supported")
            newpos: dict[int, int] = {}
            n = 0
            for r in recs:
                if r.table_slot not in removed:
                    newpos[r.val] = n
                    n += 1
            pat = re.compile(rf"^NONHIER_{li}_VAL_(\d+)(_.*)?$")
            for l in ini.kv():
                if l.section != "HIERARCHICAL":
                    continue
                m = pat.match(l.key or "")
                if not m:
                    continue
                j = int(m.group(1))
                if j not in newpos:
                    l.deleted = True
                elif newpos[j] != j:
                    l.rename(f"NONHIER_{li}_VAL_{newpos[j]}{m.group(2) or ''}")
            cl = ini.line("HIERARCHICAL", f"NONHIER_{li}_COUNT")
            if cl is not None:
                cl.set_value(str(n))
            for r in gone:
                if r.section:
                    ini.delete_section(r.section)
                plan.remove("image", kinds.get(r.name, r.name), "wiped+removed", r.name)
        for slot in blanks:
            plan.remove("image", "label", "replaced by blank image", slide.records[slot].name)
        for slot, action in assoc_actions.items():
            if action == "keep" and kinds[slide.records[slot].name] != "thumbnail":
                plan.notes.append(f"{slide.records[slot].name} kept on request: it shows the slide label")

        # ---- the .mrxs preview
        try:
            from PIL import Image

            with Image.open(slide.mrxs) as im:
                preview_size = im.size
        except Exception:
            preview_size = (640, 240)
        plan.files.append(FilePlan(dest=f"{base}.mrxs", content=neutral_jpeg(preview_size)))
        plan.remove("image", "preview", "replaced by a neutral image without metadata", slide.mrxs.suffix)
        plan.files.append(FilePlan(dest=f"{base}/{ini.path.name}", content=ini.render()))

        # ---- Index.dat and Data files
        idx_fp = FilePlan(dest=f"{base}/{slide.index_path.name}", source=slide.index_path)
        data_fps = [FilePlan(dest=f"{base}/{p.name}", source=p) for p in slide.datafiles]
        idx_fp.patches.append(Patch(5, len(slide.slide_id), new_id.encode("latin-1"), "SLIDE_ID replaced"))
        scan_n = _rules()["data_header_scan_bytes"]
        if slide.index.supported:
            table = [r.pointer for r in slide.records if r.table_slot not in removed]
            table += [0] * (len(slide.records) - len(table))
            if removed:
                idx_fp.patches.append(
                    Patch(slide.index.nonhier_table, 4 * len(table), struct.pack(f"<{len(table)}i", *table), "associated records removed")
                )
            for off, ln, fno in slide.index.hier_tiles:
                data_fps[fno].jpeg_spans.append((off, ln))  # COM/APPn payloads zeroed by the pipeline
            for rec in slide.records:  # kept associated images (the thumbnail) too
                if rec.present and rec.table_slot not in removed:
                    data_fps[rec.fileno].jpeg_spans.append((rec.offset, rec.size))
            zeroed_entries: set[int] = set()
            for slot in sorted(removed):
                rec = slide.records[slot]
                if rec.present:
                    data_fps[rec.fileno].patches.append(Patch(rec.offset, rec.size, None, f"{rec.name} pixels destroyed"))
                    if rec.entry_offset not in zeroed_entries:
                        zeroed_entries.add(rec.entry_offset)
                        idx_fp.patches.append(Patch(rec.entry_offset, 12, None, f"{rec.name} record zeroed"))
            for slot, data in blanks.items():
                rec = slide.records[slot]
                data_fps[rec.fileno].patches.append(Patch(rec.offset, rec.size, data + bytes(rec.size - len(data)), "label replaced by blank"))
                idx_fp.patches.append(Patch(rec.entry_offset + 4, 4, struct.pack("<i", len(data)), "label size"))
            for rec in self._text_records(slide):
                if rec.size:
                    data_fps[rec.fileno].patches.append(Patch(rec.offset, rec.size, None, f"{rec.name} free text zeroed"))
                    plan.remove("field", rec.name, "zeroed", f"Data file {rec.fileno}")
        else:
            plan.notes.append(f"Index.dat layout {slide.index.version!r} unsupported: Index.dat and Data files zeroed after their headers")
            end = 5 + len(slide.slide_id)
            if slide.index.size > end:
                idx_fp.patches.append(Patch(end, slide.index.size - end, None, "unreadable index zeroed (fail-closed)"))
            plan.remove("structure", "Index.dat", "zeroed after header (layout unsupported)")
        for p, fp in zip(slide.datafiles, data_fps):
            size = p.stat().st_size
            with open(p, "rb") as fh:
                head = fh.read(min(scan_n, size))
            old = slide.slide_id.encode("latin-1")
            pos = head.find(old)
            hits = 0
            while pos >= 0:
                fp.patches.append(Patch(pos, len(old), new_id.encode("latin-1"), "SLIDE_ID replaced"))
                hits += 1
                pos = head.find(old, pos + len(old))
            if not slide.index.supported:
                end = _header_end(head, slide.slide_id) or min(size, 5)
                if size > end:
                    fp.patches.append(Patch(end, size - end, None, "data of an unreadable index zeroed (fail-closed)"))
            if hits:
                plan.remove("field", "Data file header:SLIDE_ID", "replaced (keyed)", p.name)
        plan.files.append(idx_fp)
        plan.files.extend(data_fps)
        others = sorted(
            q.name for q in slide.folder.iterdir() if q.is_file() and q not in set(slide.datafiles) | {slide.index_path, ini.path}
        )
        if others:
            plan.notes.append(f"{len(others)} other file(s) in the slide folder are not part of the slide and were not copied")
        return plan


# the format's spec (moves into the package's __init__.py when mrxs becomes a package)
from wsianon.converters.registry import ClosedWorld, DicomRoute, DicomVia, FormatSpec  # noqa: E402
from wsianon.verify.formats import mrxs as _checks  # noqa: E402

_R = MrxsConverter()

SPEC: FormatSpec = FormatSpec(
    name=_R.name,
    title=_R.title,
    openslide_vendor=_R.openslide_vendor,
    extension=_R.extension,
    redactor=_R,
    verification=_checks,
    dicom=DicomRoute(DicomVia.WSIDICOMIZER),
    closed_world=ClosedWorld.MRXS,
)
