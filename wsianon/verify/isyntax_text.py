"""Vocabulary scan of a Philips iSyntax file, from the file alone (issue 8, 4(b); issue 15).

An iSyntax file is ``XML header | CR LF EOT | body``.  What this module proves without the source:

* header: every byte is text (no control byte but TAB/CR/LF, UTF-8); every printable run in it —
  element and XML attribute names, every XML attribute value, every attribute text, whatever sits in
  the padding between the root's end and CR LF EOT — is the iSyntax vocabulary
  (``profiles/data/vocab_isyntax.json``, which includes the Philips DPUfsImport words, plus the
  ``isyntax`` profile's names), a number, a date, or a keyed UID; every XML attribute value has its
  schema form (``xml_attribute_patterns``); the header is well-formed XML;
* the coded tables the decoder needs (``binary_attributes``: the block header table, base64) are
  never read as text: they must parse as tagged records of known tags whose every numeric field is
  bounded (coordinates, template ids; offsets and sizes within the file), so no field can spell
  text; image data (``image_attributes``) must be a base64 JPEG without a text segment (whether
  such an image may be there at all is the isyntax images check's business);
* body: a seek table at its start (0x301D,0x2015), where present, is parsed the same way.

What it cannot prove without the source: the rest of the body (codeblocks of wavelet coefficients,
entropy-coded; everything after CR LF EOT and the seek table) is opaque — text planted there is
indistinguishable from coded data.  With the source, the isyntax check proves the body (from CR LF
EOT to the end) byte-identical to the source's (``body-identical``), which is the only proof for it.

Findings carry the file, the offset and a kind, never the value.
"""

from __future__ import annotations

import base64
import binascii
import html
import os
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from wsianon.io.xmlform import markup_after, prolog_end
from wsianon.profiles import load
from wsianon.verify.formats.isyntax import _terminator

_CHUNK = 8 << 20
SEEK_TABLE = (0x301D, 0x2015)
ITEM = (0xFFFE, 0xE000)

_TAG_RX = re.compile(rb"<(/?)([A-Za-z_][\w.\-]*)((?:\s+[^\s=>/]+\s*=\s*\"[^\"]*\")*)\s*(/?)>")
_XATTR_RX = re.compile(rb"\s([^\s=>/]+)\s*=\s*\"([^\"]*)\"")
_LEAF_RX = re.compile(rb"<Attribute\b([^>]*)>([^<]*)</Attribute>")
_NAME_RX = re.compile(rb"\bName\s*=\s*\"([^\"]*)\"")
_PIECE_RX = re.compile(rb"[^<>\"=\s][^<>\"=\r\n]*")
_BAD_BYTE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@lru_cache(maxsize=1)
def _rules() -> dict:
    r = load("vocab_isyntax")
    tags = {}
    for k, v in r["table_tags"].items():
        if k == "about":
            continue
        g, e = (int(x, 16) for x in k.split(","))
        tags[(g, e)] = v
    return {
        "binary": frozenset(r["binary_attributes"]),
        "image": frozenset(r["image_attributes"]),
        "elements": frozenset(r["elements"]),
        "xattr": {k: re.compile(v) for k, v in r["xml_attribute_patterns"].items()},
        "tags": tags,
    }


class TableError(ValueError):
    """A coded table that does not parse; ``reason`` is our own wording (never a value)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _why(exc: Exception, other: str) -> str:
    return exc.reason if isinstance(exc, TableError) else other


def _uniform(raw: bytes, file_size: int, tags: dict) -> int | None:
    """Fast path for a table of identical records (every real one): the first record's layout,
    then every record's element headers equal to it and every field within its bound, checked
    column-wise.  None when the records are not alike (the element-by-element walk decides)."""
    import numpy as np

    if len(raw) < 8 or struct.unpack_from("<HH", raw, 0) != ITEM:
        return None
    heads: list[int] = [0]
    fields: list[tuple[int, int, int]] = []  # (offset, width, limit)
    pos = 8
    while pos + 8 <= len(raw):
        g, e, size = struct.unpack_from("<HHI", raw, pos)
        if (g, e) == ITEM or (g, e) not in tags:
            break
        bound = tags[(g, e)]
        width = 8 if bound is None else 4
        if size % width or pos + 8 + size > len(raw):
            return None
        heads.append(pos)
        fields += [(pos + 8 + k, width, file_size if bound is None else int(bound)) for k in range(0, size, width)]
        pos += 8 + size
    rec = pos
    if rec <= 8 or len(raw) % rec:
        return None
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(-1, rec)
    for h in heads:
        if not (arr[:, h : h + 8] == arr[0, h : h + 8]).all():
            return None
    for off, width, limit in fields:
        col = np.ascontiguousarray(arr[:, off : off + width]).view("<u8" if width == 8 else "<u4").ravel()
        if int(col.max()) > limit:
            return None
    return int(arr.shape[0])


def parse_table(raw: bytes, file_size: int, tags: dict | None = None) -> int:
    """Records of a coded table (tagged little-endian elements: group u16, element u16, size u32,
    value), every tag known and every numeric field bounded. Returns the number of records (items);
    raises TableError naming what is wrong (never a value)."""
    tags = _rules()["tags"] if tags is None else tags
    fast = _uniform(raw, file_size, tags)
    if fast is not None:
        return fast
    n = len(raw)
    pos = items = 0
    while pos < n:
        if pos + 8 > n:
            raise TableError("truncated element header")
        g, e, size = struct.unpack_from("<HHI", raw, pos)
        if (g, e) == ITEM:
            items += 1
            pos += 8  # the item's elements follow
            continue
        if (g, e) not in tags:
            raise TableError(f"unknown tag ({g:04X},{e:04X})")
        val = raw[pos + 8 : pos + 8 + size]
        if len(val) != size:
            raise TableError(f"truncated value of ({g:04X},{e:04X})")
        bound = tags[(g, e)]
        if size % 8 == 0 and bound is None:
            nums = struct.unpack(f"<{size // 8}Q", val)
            limit = file_size
        elif size % 4 == 0 and bound is not None:
            nums = struct.unpack(f"<{size // 4}I", val)
            limit = int(bound)
        else:
            raise TableError(f"value of ({g:04X},{e:04X}) has an unexpected size")
        if any(x > limit for x in nums):
            raise TableError(f"value of ({g:04X},{e:04X}) out of range")
        pos += 8 + size
    return items


def parse_block_header_table(raw: bytes, file_size: int) -> int:
    """UFS_IMAGE_BLOCK_HEADER_TABLE: u32 byte count, then the tagged records."""
    if len(raw) < 4:
        raise TableError("truncated")
    (count,) = struct.unpack_from("<I", raw, 0)
    if count != len(raw) - 4:
        raise TableError("byte count differs from the table's length")
    return parse_table(raw[4:], file_size)


@dataclass(frozen=True)
class BlockGrid:
    """The WSI's codeblock grid as libisyntax computes it from the header (``isyntax.c``: the
    UFS_IMAGE_GENERAL_HEADERS dimension ranges x, y, colour, scale; the block size of the first
    UFS_IMAGE_BLOCK_HEADER_TEMPLATES entry; the per-level padding of 3)."""

    offset_x: int
    offset_y: int
    width: int  # including the padding
    height: int
    levels: int
    block_w: int
    block_h: int
    templates: int

    def grid(self) -> tuple[int, int]:
        """Tiles across and down at scale 0 (libisyntax: grid_width, grid_height)."""
        L = self.levels
        gw = ((self.width + (self.block_w << L) - 1) // (self.block_w << L)) << (L - 1)
        gh = ((self.height + (self.block_h << L) - 1) // (self.block_h << L)) << (L - 1)
        return gw, gh


def _ranges(obj: ET.Element) -> list[tuple[int, int, int]]:
    out = []
    for a in obj.iter("Attribute"):
        if a.get("Name") == "UFS_IMAGE_DIMENSION_RANGE":
            nums = re.findall(r"-?\d+", a.text or "")
            if len(nums) != 3:
                return []
            out.append((int(nums[0]), int(nums[1]), int(nums[2])))
    return out


def _steps(r: tuple[int, int, int]) -> int:
    start, step, end = r
    return ((end + step) - start) // (step or 1)


def block_grid(wsi: ET.Element) -> BlockGrid | None:
    """The codeblock grid of a WSI ``DPScannedImage`` object, None when its header lacks what it
    takes (then its block header table cannot be bounded)."""
    general = templates = None
    for a in wsi.findall("Attribute"):
        if a.get("Name") == "UFS_IMAGE_GENERAL_HEADERS" and general is None:
            general = a
        elif a.get("Name") == "UFS_IMAGE_BLOCK_HEADER_TEMPLATES" and templates is None:
            templates = a
    if general is None or templates is None:
        return None
    g = _ranges(general)
    objs = [d for d in templates.iter("DataObject") if d.get("ObjectType") == "UFSImageBlockHeaderTemplate"]
    t0 = _ranges(objs[0]) if objs else []
    if len(g) < 4 or len(t0) < 2:
        return None
    levels, bw, bh = _steps(g[3]), _steps(t0[0]), _steps(t0[1])
    if not (1 <= levels <= 16 and 1 <= bw <= 4096 and 1 <= bh <= 4096):
        return None
    return BlockGrid(g[0][0], g[1][0], _steps(g[0]), _steps(g[1]), levels, bw, bh, len(objs))


# the two record layouts of a UFS_IMAGE_BLOCK_HEADER_TABLE (libisyntax: isyntax_partial_block_header_t,
# the data offset and size in the seek table; isyntax_full_block_header_t): item size -> (record
# size, its element headers (offset, group, element, size))
_LAYOUTS = {
    40: (48, ((8, 0x301D, 0x200E, 20), (36, 0x301D, 0x2012, 4))),
    72: (80, ((8, 0x301D, 0x200E, 20), (36, 0x301D, 0x2010, 8), (52, 0x301D, 0x2011, 8), (68, 0x301D, 0x2012, 4))),
}


def block_records(table: bytes):
    """The records of a block header table (after its u32 byte count) as an (n, 6) int64 array of x,
    y, colour, scale, coefficient, template id; None when the table is not records of one of
    libisyntax's two layouts, every element header as the layout says."""
    import numpy as np

    if len(table) < 8 or struct.unpack_from("<HH", table, 0) != ITEM:
        return None
    (size,) = struct.unpack_from("<I", table, 4)
    if size not in _LAYOUTS:
        return None
    rec, heads = _LAYOUTS[size]
    if len(table) % rec:
        return None
    arr = np.frombuffer(table, np.uint8).reshape(-1, rec)
    want = [(0, ITEM[0], ITEM[1], size)] + list(heads)
    for off, g, e, n in want:
        head = np.frombuffer(struct.pack("<HHI", g, e, n), np.uint8)
        if not (arr[:, off : off + 8] == head).all():
            return None
    coords = np.ascontiguousarray(arr[:, 16:36]).view("<u4").astype(np.int64)
    tid = np.ascontiguousarray(arr[:, rec - 4 : rec]).view("<u4").astype(np.int64)
    return np.hstack([coords, tid])


def bad_block_records(recs, grid: BlockGrid):
    """Boolean mask of the records (:func:`block_records`) that are no codeblock of the pyramid, as
    libisyntax places them (``isyntax.c``, the block id of a codeblock): colour 0-2, scale below the
    level count, coefficient 0 (LL, at the top scale only) or 1 (LH/HL/HH), x and y exactly the
    first valid pixel of their scale plus a whole number of tiles of that scale inside the padded
    grid, a template id below the number of templates — and each codeblock once (a second record
    of the same coordinates is marked).  Every field is then a function of where its codeblock
    is: no bit of it is free (red team stop 38 wrote a name into the coefficient and template id
    fields, bounded only by 2^24 and 2^16)."""
    import numpy as np

    x, y, c, s, k, t = (recs[:, i] for i in range(6))
    top = grid.levels - 1
    ok = (c <= 2) & (s <= top) & (k <= 1) & ((k == 1) | (s == top)) & (t < grid.templates)
    sc = np.minimum(s, top)
    first = (3 << sc) - 2 + np.where(k == 0, 1 << sc, 0)
    gw, gh = grid.grid()
    for v, origin, block, across in ((x, grid.offset_x, grid.block_w, gw), (y, grid.offset_y, grid.block_h, gh)):
        stride = (2 * block) << sc
        d = v - origin - first
        ok &= (d >= 0) & (d % stride == 0) & (d // stride < (across >> sc))
    dup = np.ones(len(recs), bool)
    if len(recs):
        _, once = np.unique(recs[:, :5], axis=0, return_index=True)
        dup[once] = False
    return ~ok | dup


BLOCK_HEADER_TABLE = "UFS_IMAGE_BLOCK_HEADER_TABLE"


def table_grids(text: str) -> dict[str, BlockGrid | None]:
    """The value of each WSI's block header table (whitespace stripped) -> the grid of its WSI
    (:func:`block_grid`); a table anywhere else is absent (no geometry bounds it)."""
    try:
        root = ET.fromstring(text.lstrip("\ufeff").strip())
    except ET.ParseError:
        return {}
    out: dict[str, BlockGrid | None] = {}
    for obj in root.iter("DataObject"):
        if obj.get("ObjectType") != "DPScannedImage":
            continue
        if not any(a.get("Name") == "PIM_DP_IMAGE_TYPE" and (a.text or "").strip() == "WSI" for a in obj.findall("Attribute")):
            continue
        grid = block_grid(obj)
        for a in obj.findall("Attribute"):
            if a.get("Name") == BLOCK_HEADER_TABLE:
                out["".join((a.text or "").split())] = grid
    return out


def block_table_check(raw: bytes, grid: BlockGrid | None) -> None:
    """Raises TableError when a decoded block header table (u32 byte count, records) holds a record
    that is no codeblock of its WSI's pyramid (:func:`bad_block_records`), or cannot be judged."""
    if grid is None:
        raise TableError("no WSI geometry bounds its records")
    recs = block_records(raw[4:])
    if recs is None:
        raise TableError("records not of libisyntax's partial or full block header layout")
    bad = int(bad_block_records(recs, grid).sum())
    if bad:
        raise TableError(f"{bad} record(s) no codeblock of the pyramid or a second record of one")


def _seek_table(fd: int, body: int, file_size: int) -> tuple[int, int] | None:
    """(records, bytes) of the seek table at the body's start, None when the body has none;
    raises TableError when it is there but does not parse."""
    head = os.pread(fd, 8, body)
    if len(head) < 8 or struct.unpack_from("<HH", head) != SEEK_TABLE:
        return None
    (size,) = struct.unpack_from("<I", head, 4)
    if body + 8 + size > file_size or size > (1 << 31):
        raise TableError("seek table runs past the end of the file")
    return parse_table(os.pread(fd, size, body + 8), file_size), 8 + size


def _header_form(text: str, name: str, out: list) -> None:
    """The header's XML form: the prolog is a real XML declaration and a line break, nothing else (a
    processing instruction in its place, <?xml-x 98765432?>, passed as numbers: red team stop 38),
    no processing instruction, comment or DOCTYPE follows, and the DPUfsImport document is in its one
    form, newline padding after it (``vocabulary.dpufs_findings``)."""
    from wsianon.verify.vocabulary import TextFinding, dpufs_findings

    start = prolog_end(text)
    if start is None:
        out.append(TextFinding(name, 0, "XML prolog other than an XML declaration"))
        return
    at = markup_after(text, start)
    if at is not None:
        out.append(TextFinding(name, len(text[:at].encode()), "processing instruction, comment or DOCTYPE in the XML header"))
    kind = dpufs_findings(text[start:].rstrip("\n"), short_empty_elements=False)  # padded with newlines
    if kind:
        out.append(TextFinding(name, len(text[:start].encode()), kind))


def scan_isyntax(path: Path, name: str | None = None) -> tuple[list, str]:
    """(findings, detail) for one iSyntax file; findings are vocabulary.TextFinding."""
    from wsianon.verify.vocabulary import MAX_FINDINGS, TextFinding, _base64_ok, odd_characters, unknown_tokens, vocabulary

    path = Path(path)
    name = name or path.name
    rules = _rules()
    out: list[TextFinding] = []
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        eot = _terminator(fd)
        if eot is None or eot < 2 or os.pread(fd, 2, eot - 2) != b"\r\n":
            out.append(TextFinding(name, 0, "no CR LF EOT header terminator: header and body cannot be told apart"))
            return out, ""
        header = os.pread(fd, eot - 2, 0)
        seek = None
        try:
            seek = _seek_table(fd, eot + 1, size)
        except (TableError, struct.error) as exc:
            out.append(TextFinding(name, eot + 1, f"seek table does not parse as bounded numeric records ({_why(exc, 'truncated')})"))
    finally:
        os.close(fd)

    # header bytes: text only
    m = _BAD_BYTE.search(header)
    if m:
        out.append(TextFinding(name, m.start(), "control byte in the XML header"))
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError as exc:
        out.append(TextFinding(name, exc.start, "XML header is not UTF-8"))
        text = None
    if text is not None:
        try:
            ET.fromstring(text.lstrip("\ufeff").strip())
        except ET.ParseError as exc:
            out.append(TextFinding(name, 0, f"XML header is not well-formed (line {exc.position[0]})"))
        _header_form(text, name, out)

    # coded tables and images: judged by structure, masked from the text scan
    masked = bytearray(header)
    tables = records = 0
    grids: dict[str, BlockGrid | None] | None = None  # the block header tables' grids, read when one is met
    for m in _LEAF_RX.finditer(header):
        nm = _NAME_RX.search(m.group(1))
        attr = nm.group(1).decode("ascii", "replace") if nm else ""
        if attr not in rules["binary"] and attr not in rules["image"]:
            continue
        a, b = m.span(2)
        val = header[a:b].strip()
        if val:
            if attr in rules["binary"]:
                try:
                    raw = base64.b64decode(val, validate=True)
                    records += parse_block_header_table(raw, size)
                    tables += 1
                    if attr == BLOCK_HEADER_TABLE:
                        if grids is None:
                            grids = table_grids(text or "")
                        block_table_check(raw, grids.get(val.decode("ascii")))
                except (binascii.Error, ValueError, struct.error) as exc:
                    why = _why(exc, "not base64")
                    out.append(TextFinding(name, a, f"coded table {attr} does not parse as bounded numeric records ({why})"))
            elif not _base64_ok(val.decode("ascii", "replace")):
                out.append(TextFinding(name, a, f"{attr} is not a base64 JPEG without text segments"))
        masked[a:b] = b"\n" * (b - a)

    # markup: known elements, known XML attributes with values of their schema form
    for m in _TAG_RX.finditer(header):
        el = m.group(2).decode("ascii", "replace")
        if el not in rules["elements"]:
            out.append(TextFinding(name, m.start(), "element outside the DPUfsImport schema"))
            continue
        for xm in _XATTR_RX.finditer(m.group(3)):
            key = xm.group(1).decode("ascii", "replace")
            rx = rules["xattr"].get(key)
            if rx is None:
                out.append(TextFinding(name, m.start(3) + xm.start(1), "XML attribute outside the DPUfsImport schema"))
            elif not rx.match(xm.group(2).decode("utf-8", "replace")):
                out.append(TextFinding(name, m.start(3) + xm.start(2), f"{key} value not of its schema form"))

    # every printable run of what is left (names, values, padding, comments) is vocabulary;
    # judged piece by piece between markup delimiters, so a finding points at its piece
    vocab = vocabulary("isyntax")
    for m in _PIECE_RX.finditer(bytes(masked)):
        piece = html.unescape(m.group(0).decode("utf-8", "replace"))
        if unknown_tokens(piece, vocab) or odd_characters(piece):  # a name in tag characters: no token
            out.append(TextFinding(name, m.start(), "text outside the iSyntax vocabulary"))
            if len(out) >= MAX_FINDINGS:
                break
    out = sorted(out, key=lambda f: f.offset)[:MAX_FINDINGS]
    body = size - (eot - 2)
    st_rec, st_len = seek if seek else (0, 0)
    opaque = size - (eot + 1) - st_len
    detail = (
        f"header {len(header)} bytes: every printable run in the iSyntax vocabulary, {tables} coded table(s) "
        f"({records} records) proven numeric; body {body} bytes from CR LF EOT: "
        + (f"seek table {st_rec} records proven numeric, " if seek else "no seek table, ")
        + f"{opaque} bytes of coded data opaque (not provable from the file; with the source: body-identical)"
    )
    return out, detail
