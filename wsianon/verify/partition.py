"""Closed-world proof for TIFF-family outputs, from the output alone.

Parses the output (``wsianon.io.tiff`` for byte locations, tifffile as a
second reader of the same directories) and proves the partition of every
byte: the header, each IFD of the chain with only the tags the format profile
allows for that IFD's kind, the values of those tags, and the strips/tiles the
kept IFDs reference.  Any other byte must be zero.  Violations are reported by
tag number and name and by offset, never by value.

Knows nothing about how the output was made (no converter code): the rules
are the profile data (``wsianon/profiles/data/tiff_closed_world.json`` and
each format's ``closed_world`` key).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsianon.io.spans import as_int64, gaps_arrays, iter_pairs, union_parts
from wsianon.errors import WsianonError
from wsianon.io.extents import data_extents
from wsianon.io.scan import Finding
from wsianon.io import icc
from wsianon.io.jpeg import restart_intervals
from wsianon.io.tiff import TYPES, Kind, TiffStructure, chunk_count, compression_of, value_bytes_only
from wsianon.profiles import load
from wsianon.profiles.closed_world import allowed_tags, per_sample_count_ok, per_sample_tags, tag_name, value_allowed
from wsianon.verify.tileid import release_cycles

MAX_FINDINGS = 50
_CHUNK = 4 << 20


class _Ranges:
    """[start, end) ranges collected from a file's structure: the few of the IFDs and values as
    a list, the tiles of each IFD as numpy arrays (16 bytes a tile, never a Python object a tile)."""

    def __init__(self) -> None:
        self.small: list[tuple[int, int]] = []
        self.starts: list[np.ndarray] = []
        self.ends: list[np.ndarray] = []

    def append(self, r: tuple[int, int]) -> None:
        self.small.append(r)

    def add_arrays(self, starts, ends) -> None:
        """uint64 offsets of a file (all below 2**63) are taken as an int64 view, not copied."""
        self.starts.append(as_int64(starts))
        self.ends.append(as_int64(ends))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        small = np.array(self.small, dtype=np.int64).reshape(-1, 2)
        return np.concatenate([small[:, 0], *self.starts]), np.concatenate([small[:, 1], *self.ends])


def _union(spans) -> tuple[np.ndarray, np.ndarray]:
    """The union of the non-empty [start, end) ranges ``spans`` (a list of pairs or ``_Ranges``)
    as sorted (starts, ends) arrays; overlapping or touching ranges join."""
    if not isinstance(spans, _Ranges):
        r = _Ranges()
        r.small = list(spans)
        spans = r
    small = np.array(spans.small, dtype=np.int64).reshape(-1, 2)
    return union_parts([(small[:, 0], small[:, 1]), *zip(spans.starts, spans.ends)], drop_empty=True)


def _structure(path: Path, fmt: str):
    """(referenced spans, tag violations [(ifd, tag, offset)], per-IFD kept tag sets, kind)."""
    spans = _Ranges()
    bad: list[tuple[int, int, int]] = []
    tagsets: list[set[int]] = []
    icc: list[tuple[int, int, int]] = []  # (IFD, offset, problems)
    # entries whose tag and type are allowed but whose bytes are not all structure: (IFD, tag,
    # entry offset, why)
    loose: list[tuple[int, int, int, str]] = []
    rules = load("tiff_closed_world")
    safe = {t.encode("latin-1") for t in rules["icc_safe_types"]}
    with TiffStructure(path) as ts:
        big = ts.kind is Kind.BIG
        spans.append((0, 16 if big else (12 if ts.kind is Kind.NDPI else 8)))
        cs, es = (8, 20) if big else (2, 12)
        for ifd in ts.ifds:
            (n,) = ts.unpack("Q" if big else "H", ts.read(ifd.offset, cs))
            raw = ts.read(ifd.offset + cs, n * es)
            allowed = allowed_tags(fmt, set(ifd.entries), compression_of(ts, ifd))
            seen: set[int] = set()
            highs = ts.read(ifd.next_field_offset + 8, 4 * n) if ts.kind is Kind.NDPI else b""
            for i in range(n):
                tag, typ, count = ts.unpack("HHQ" if big else "HHI", raw[i * es : i * es + (12 if big else 8)])
                if tag in seen or tag not in allowed or typ not in TYPES or not value_allowed(tag, typ, count):
                    bad.append((ifd.index, tag, ifd.offset + cs + i * es))
                elif value_bytes_only(ts.kind, entry := raw[i * es : (i + 1) * es], high := highs[4 * i : 4 * i + 4], typ, count) != (entry, high):
                    loose.append((ifd.index, tag, ifd.offset + cs + i * es, "bytes of its entry that hold no value are not zero"))
                elif tag in _PER_INTERVAL and count > _restart_intervals(ts, ifd):
                    loose.append((ifd.index, tag, ifd.offset + cs + i * es, "more values than its strip has restart intervals"))
                elif tag in per_sample_tags() and not per_sample_count_ok(count, ts.samples_per_pixel(ifd) or 0):  # 0: no count matches
                    loose.append((ifd.index, tag, ifd.offset + cs + i * es, "a per-sample tag whose count is neither SamplesPerPixel nor 1"))
                seen.add(tag)
            tagsets.append(seen)
            spans.append((ifd.offset, min(ifd.end, ts.size)))
            for tag, e in ifd.entries.items():
                if tag in allowed and not e.inline and e.size:
                    spans.append((e.value_offset, e.value_offset + e.size))
                if tag == rules["icc_tag"] and tag in allowed and e.size:
                    icc.append((ifd.index, e.value_offset, icc_problems(ts.raw(e), safe)))
            if (324 in ifd and 325 in ifd) or (273 in ifd and 279 in ifd):
                o, c = ts.data_span_arrays(ifd)
                loose += _chunk_problems(ts, ifd, o, c)
                used = c > 0
                if not used.all():
                    o, c = o[used], c[used]
                spans.add_arrays(o, o + c)
                del o, c, used
        return spans, bad + [x[:3] for x in loose], tagsets, ts.kind, ts.size, icc, {(i, t): why for i, t, _, why in loose}


def _chunk_problems(ts: TiffStructure, ifd, offsets, counts) -> list[tuple[int, int, int, str]]:
    """An offset/byte-count array with more values than the image has tiles (strips), or an empty
    tile's (count 0) offset that is not 0: values no reader uses, which could hold anything."""
    tag = 324 if 324 in ifd else 273
    e = ifd.entries[tag]
    out = []
    n = chunk_count(ts, ifd)
    if n is not None and len(offsets) > n:
        out.append((ifd.index, tag, e.entry_offset, "more values than the image has tiles or strips"))
    elif bool(((counts == 0) & (offsets != 0)).any()):
        out.append((ifd.index, tag, e.entry_offset, "an empty tile's or strip's offset is not 0"))
    return out


# NDPI McuStarts and McuStartsHighBytes: one value a restart interval of the IFD's (one) strip
_PER_INTERVAL = frozenset([65426, 65432])


def _restart_intervals(ts: TiffStructure, ifd) -> int:
    """The restart intervals of the JPEG strip of ``ifd`` (1 when its header gives none): values
    of a McuStarts array beyond them are read by no reader and could be anything."""
    try:
        o, c = ts.data_span_arrays(ifd)
    except WsianonError:
        return 1
    if len(o) != 1:
        return 1
    return restart_intervals(ts.read(int(o[0]), min(int(c[0]), 1 << 16))) or 1


def icc_problems(data: bytes, safe_types: set[bytes], exact: bool = False) -> int:
    """Bytes in which an ICC profile differs from its closed-world form, or -1: does not parse.

    The closed-world form is the profile rebuilt by ``io.icc.sanitize`` (one rule for the converter
    and the verifiers): the header's naming signatures, reserved bits and bytes zero; the tag table
    sorted, each signature once and with a type its signature allows; each tag's size exactly its
    type's fields, its data packed on 4-byte boundaries; every text empty, every byte between fields
    zero.  No tag-table entry, size, offset or padding is a free number: a profile equal to its own
    rebuild holds nothing else.  ``exact``: the profile must be as long as its header says (DICOM);
    otherwise only zeros may follow it (a TIFF route rewrites a profile in place)."""
    return icc.closed_problems(data, exact, safe_types)


def _tifffile_tagsets(path: Path, ndpi: bool) -> list[set[int]] | None:
    try:
        return _read_tagsets(path, ndpi)
    finally:
        release_cycles()  # tifffile's closed file and its first page's tile table (see level_pages)


def _read_tagsets(path: Path, ndpi: bool) -> list[set[int]] | None:
    try:
        import tifffile

        with tifffile.TiffFile(str(path), is_ndpi=ndpi) if ndpi else tifffile.TiffFile(str(path)) as tf:
            tf.pages.cache = False  # one page (and its tile table) at a time
            out = []
            for page in tf.pages:
                assert isinstance(page, tifffile.TiffPage), "tf.pages yields TiffPage unless useframes is set"
                out.append({t.code for t in page.tags.values()})
            return out
    except Exception:
        return None


def _nonzero(fd: int, lo: int, hi: int) -> tuple[int, int | None]:
    """(non-zero bytes in [lo, hi) of the file, offset of the first one)."""
    count, first = 0, None
    q = lo
    while q < hi:
        buf = os.pread(fd, min(_CHUNK, hi - q), q)
        if not buf:
            break
        z = buf.count(0)
        if z != len(buf):
            count += len(buf) - z
            if first is None:
                first = q + next(i for i, x in enumerate(buf) if x)
        q += len(buf)
    return count, first


def check_tiff_partition(path: Path, fmt: str, verdict, name: str | None = None) -> None:
    """Add the closed-world checks of one TIFF-family output to ``verdict``."""
    label = name or path.name
    try:
        spans, bad, tagsets, kind, size, icc, spare = _structure(path, fmt)
    except WsianonError as exc:
        verdict.add("closed-world-structure", False, f"the output's TIFF structure cannot be walked: {exc.reason}")
        return
    # a second, independent reader must see the same directories
    other = _tifffile_tagsets(path, kind is Kind.NDPI)
    if other is None:
        verdict.add("closed-world-structure", False, "tifffile cannot read the output's directories")
    else:
        same = [sorted(s) for s in other] == [sorted(s) for s in tagsets]
        verdict.add(
            "closed-world-structure",
            same,
            f"{len(tagsets)} IFDs, tag sets {'agree' if same else 'DIFFER'} between two readers (tifffile sees {len(other)} pages)",
        )
    for ifd_index, tag, off in bad[:MAX_FINDINGS]:
        why = spare.get((ifd_index, tag), f"not allowed by the {fmt} profile")
        verdict.findings.append(Finding(label, off, f"tag {tag_name(tag)} in IFD {ifd_index} ({why})", "closed-world-tag"))
    names = sorted({tag_name(t) for i, t, _ in bad if (i, t) not in spare})
    unused = sorted({tag_name(t) for i, t in spare})
    verdict.add(
        "closed-world-tags",
        not bad,
        f"every tag of every IFD allowed by the {fmt} profile, no byte of an entry outside its value set"
        if not bad
        else "; ".join(
            ([f"{len(bad) - len(spare)} entries not allowed: {names}"] if names else [])
            + ([f"{len(spare)} entries holding bytes no reader reads: {unused}"] if unused else [])
        ),
    )
    for ifd_index, off, problems in icc:
        if problems:
            verdict.findings.append(
                Finding(
                    label,
                    off,
                    f"ICC profile in IFD {ifd_index}: " + ("does not parse" if problems < 0 else f"{problems} non-zero byte(s) outside colorimetric tags"),
                    "closed-world-icc",
                )
            )
    if icc:
        bad_icc = [i for i, _, p in icc if p]
        verdict.add(
            "closed-world-icc",
            not bad_icc,
            f"{len(icc)} ICC profile(s): " + ("colorimetric tags only, every text empty" if not bad_icc else f"text or unreferenced bytes in IFD(s) {bad_icc}"),
        )
    g_lo, g_hi = gaps_arrays(*_union(spans), size)
    del spans
    nonzero = 0
    ranges = 0
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        extents = data_extents(fd, 0, size)
        j = 0
        for ga, gb in iter_pairs(g_lo, g_hi):
            while j < len(extents) and extents[j][1] <= ga:
                j += 1
            k = j
            first = None
            count = 0
            while k < len(extents) and extents[k][0] < gb:
                n, at = _nonzero(fd, max(ga, extents[k][0]), min(gb, extents[k][1]))
                count += n
                first = at if first is None else first
                k += 1
            if count:
                nonzero += count
                ranges += 1
                if ranges <= MAX_FINDINGS:
                    assert first is not None, "set with the first non-zero byte counted"
                    verdict.findings.append(Finding(label, first, f"{count} non-zero byte(s) in unreferenced range {ga}-{gb}", "closed-world-byte"))
    finally:
        os.close(fd)
    unref = int((g_hi - g_lo).sum())
    verdict.add(
        "closed-world-bytes",
        nonzero == 0,
        f"{unref} unreferenced byte(s) in {len(g_lo)} range(s), all zero"
        if nonzero == 0
        else f"{nonzero} non-zero byte(s) in {ranges} unreferenced range(s) (header, kept IFDs, allowed values and image data account for the rest)",
    )


# ---------------------------------------------------------------------------------------
# MRXS: Slidedat.ini keys/sections, Index.dat records, Data-file regions


def _gap_nonzero(path: Path, refs: list[tuple[int, int]]) -> tuple[int, int, int | None]:
    """(non-zero bytes outside ``refs``, unreferenced bytes, first offending offset)."""
    size = path.stat().st_size
    gaps = list(iter_pairs(*gaps_arrays(*_union(refs), size)))
    nonzero, first = 0, None
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        for a, b in gaps:
            n, at = _nonzero(fd, a, b)
            nonzero += n
            first = at if first is None else first
    finally:
        os.close(fd)
    return nonzero, sum(b - a for a, b in gaps), first


def _ini_lines(raw: bytes) -> list[str]:
    if raw.startswith(b"\xef\xbb\xbf"):
        text = raw[3:].decode("utf-8", "replace")
    elif raw.startswith(b"\xff\xfe"):
        text = raw[2:].decode("utf-16-le", "replace")
    elif raw.startswith(b"\xfe\xff"):
        text = raw[2:].decode("utf-16-be", "replace")
    else:
        text = raw.decode("latin-1")
    return text.splitlines()


def _ini_entries(lines: list[str]) -> tuple[list[tuple[int, str | None, str, str]], list[int]]:
    """(entries [(line number, section, key, value)], numbers of lines no structure holds).
    A section header is an entry with an empty key."""
    entries: list[tuple[int, str | None, str, str]] = []
    bad_lines: list[int] = []
    section = None
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1].strip()
            entries.append((n, section, "", ""))
        elif "=" in s and not s.startswith((";", "#")):
            k, _, v = s.partition("=")
            entries.append((n, section, k.strip(), v.strip()))
        else:
            bad_lines.append(n)  # comments and free text: no structure holds them
    return entries, bad_lines


def _ini_section(entries: list[tuple[int, str | None, str, str]], name: str) -> dict[str, str]:
    """key -> value of one section (the last of a repeated key)."""
    return {k: v for _, sec, k, v in entries if sec == name and k}


def _lines_not_allowed(entries: list[tuple[int, str | None, str, str]], hier: dict[str, str]) -> list[int]:
    """Line numbers of keys and sections the mrxs profile does not allow (the HIERARCHICAL
    section names the layer sections a slide may have)."""
    from wsianon.profiles.closed_world import mrxs_base_sections, mrxs_key_allowed

    allowed_sections = set(mrxs_base_sections()) | {v for k, v in hier.items() if k.endswith("_SECTION")}
    return [n for n, sec, key, _ in entries if sec is None or sec not in allowed_sections or (key and not mrxs_key_allowed(sec, key))]


def _report_ini(verdict, label: str, bad_lines: list[int]) -> None:
    for n in bad_lines[:MAX_FINDINGS]:
        verdict.findings.append(Finding(label, n, f"Slidedat.ini line {n}: key or section not allowed by the mrxs profile", "closed-world-ini"))
    verdict.add(
        "closed-world-ini",
        not bad_lines,
        "every Slidedat.ini key and section allowed by the mrxs profile"
        if not bad_lines
        else f"{len(bad_lines)} line(s) not allowed (line numbers in the findings; names never shown)",
    )


@dataclass
class _MrxsLayout:
    """What Slidedat.ini says about the slide's Index.dat and Data files."""

    sid: str
    n_zoom: int  # records of the zoom-level layer (HIER_0, "Slide zoom level")
    n_hier: int  # records of all hierarchical layers
    n_non: int  # records of all non-hierarchical layers
    idx_path: Path
    files: list[Path]
    idx: bytes  # Index.dat's bytes

    @classmethod
    def read(cls, folder: Path, entries: list[tuple[int, str | None, str, str]], hier: dict[str, str]) -> _MrxsLayout:
        """KeyError, ValueError or OSError when the ini does not describe the files."""
        general = _ini_section(entries, "GENERAL")
        datafile = _ini_section(entries, "DATAFILE")
        sid = general["SLIDE_ID"]
        n_zoom = int(hier["HIER_0_COUNT"])
        n_hier = sum(int(hier[f"HIER_{i}_COUNT"]) for i in range(int(hier["HIER_COUNT"])))
        n_non = sum(int(hier[f"NONHIER_{i}_COUNT"]) for i in range(int(hier["NONHIER_COUNT"])))
        idx_path = folder / hier["INDEXFILE"]
        files = [folder / datafile[f"FILE_{i}"] for i in range(int(datafile["FILE_COUNT"]))]
        return cls(sid, n_zoom, n_hier, n_non, idx_path, files, idx_path.read_bytes())


class _IndexWalk:
    """The byte ranges of Index.dat its records reference (``refs``) and the Data-file
    regions they point to (``data``: file number -> ranges).  ValueError or struct.error
    when Index.dat cannot be walked.

    Only the values a reader reads are referenced: a HIER record of a layer other than the zoom
    levels references no page (OpenSlide draws none of them: their page, count and next pointer
    zero, is unreferenced), a NONHIER record's page its item count and its first item's offset,
    size and file number (OpenSlide reads nothing else of it: the next-page pointer, the two
    reserved values and any further item are unreferenced, so zero).  ``mrxs-index-form`` checks
    the same form by value."""

    def __init__(self, layout: _MrxsLayout):
        self.idx = layout.idx
        self.refs: list[tuple[int, int]] = []
        self.data: dict[int, list[tuple[int, int]]] = {}
        # the header: version (5 bytes), SLIDE_ID, the two table pointers
        self.base = 5 + len(layout.sid.encode("latin-1"))
        self.refs.append((0, self.base + 8))
        ht, nt = self.i32(self.base), self.i32(self.base + 4)
        self.refs.append((ht, ht + 4 * layout.n_hier))
        for i in range(layout.n_hier):
            ptr = self.i32(ht + 4 * i)
            self.refs.append((ptr, ptr + 8))
            if i < layout.n_zoom:
                self.pages(self.i32(ptr + 4), 16, 4)
        self.refs.append((nt, nt + 4 * layout.n_non))
        for i in range(layout.n_non):
            ptr = self.i32(nt + 4 * i)
            if ptr:
                self.refs.append((ptr, ptr + 8))
                self.nonhier_page(self.i32(ptr + 4))

    def nonhier_page(self, page: int) -> None:
        """A NONHIER record's page: its count (0 or 1) and one item's (offset, size, file)."""
        count = self.i32(page)
        if count not in (0, 1):
            raise ValueError(page)
        self.refs.append((page, page + 4))
        if count:
            off, ln, fno = self.i32(page + 16), self.i32(page + 20), self.i32(page + 24)
            self.refs.append((page + 16, page + 28))
            if ln > 0:
                self.data.setdefault(fno, []).append((off, off + ln))

    def i32(self, off: int) -> int:
        if off < 0 or off + 4 > len(self.idx):
            raise ValueError(off)
        return struct.unpack_from("<i", self.idx, off)[0]

    def pages(self, page: int, item: int, at: int) -> None:
        """One record list: pages of ``item``-byte records, the (offset, length, file) triple at ``at``."""
        seen: set[int] = set()
        while page and page not in seen and len(seen) < 1_000_000:
            seen.add(page)
            count, nxt = self.i32(page), self.i32(page + 4)
            if count < 0 or page + 8 + item * count > len(self.idx):
                raise ValueError(page)
            self.refs.append((page, page + 8 + item * count))
            for k in range(count):
                off, ln, fno = struct.unpack_from("<iii", self.idx, page + 8 + item * k + at)
                if ln > 0:
                    self.data.setdefault(fno, []).append((off, off + ln))
            page = nxt


def _data_header(path: Path, header: bytes) -> list[tuple[int, int]]:
    """A Data file's header as a referenced span: only when it is exactly ``header`` (the output
    Index.dat's version and SLIDE_ID); any other bytes there are unreferenced (so must be zero)."""
    with open(path, "rb") as fh:
        return [(0, len(header))] if fh.read(len(header)) == header else []


def _report_mrxs_bytes(verdict, folder: Path, label, layout: _MrxsLayout, walk: _IndexWalk) -> None:
    total_nonzero = total_unref = 0
    header = layout.idx[: walk.base]
    for path, spans in [(layout.idx_path, walk.refs)] + [(f, _data_header(f, header) + walk.data.get(i, [])) for i, f in enumerate(layout.files)]:
        nz, unref, first = _gap_nonzero(path, spans)
        total_unref += unref
        if nz:
            total_nonzero += nz
            verdict.findings.append(Finding(label(path), first or 0, f"{nz} non-zero byte(s) that no kept Index record references", "closed-world-byte"))
    known = {folder / "Slidedat.ini", layout.idx_path, *layout.files}
    extra = sorted(p.name for p in folder.iterdir() if p not in known) if folder.is_dir() else []
    verdict.add(
        "closed-world-bytes",
        total_nonzero == 0 and not extra,
        (
            f"{total_unref} unreferenced byte(s) in Index.dat and {len(layout.files)} Data file(s), all zero"
            if total_nonzero == 0
            else f"{total_nonzero} non-zero unreferenced byte(s)"
        )
        + (f"; {len(extra)} file(s) that are not part of the slide" if extra else ""),
    )


def check_mrxs_partition(out_main: Path, verdict, root: Path | None = None) -> None:
    """Closed world of an MRXS output: only allowed ini keys and sections, only referenced Data regions."""
    folder = out_main.with_suffix("")
    label = lambda p: p.relative_to(root).as_posix() if root else p.name
    try:
        lines = _ini_lines((folder / "Slidedat.ini").read_bytes())
    except OSError:
        verdict.add("closed-world-ini", False, "Slidedat.ini cannot be read")
        return
    entries, bad_lines = _ini_entries(lines)
    hier = _ini_section(entries, "HIERARCHICAL")
    _report_ini(verdict, label(folder / "Slidedat.ini"), sorted(set(bad_lines + _lines_not_allowed(entries, hier))))
    try:
        layout = _MrxsLayout.read(folder, entries, hier)
    except (KeyError, ValueError, OSError):
        verdict.add("closed-world-bytes", False, "Slidedat.ini / Index.dat do not describe the Data files")
        return
    try:
        walk = _IndexWalk(layout)
    except (ValueError, struct.error):
        verdict.add("closed-world-bytes", False, "Index.dat cannot be walked")
        return
    _report_mrxs_bytes(verdict, folder, label, layout, walk)
