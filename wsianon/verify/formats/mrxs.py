"""MRXS-specific verification, independent of the redactor's parser.

Reads the output with Python's ``configparser`` (not the redactor's line
model) and a separate, minimal walk of Index.dat written from OpenSlide's
documented reading order; OpenSlide itself is run by the generic checks.

Checks:
* mrxs-tiles-identical: every pyramid tile blob the output's Index.dat names
  is byte-identical to the blob the source's Index.dat names at the same
  position (sha256 per zoom level), zeros where OpenSlide places the image
  nowhere (camera positions not scanned: ``mrxs_hidden.placement``);
* tiles-frame-size, mrxs-beyond-grid, mrxs-unscanned: :mod:`wsianon.verify.mrxs_hidden`;
* mrxs-associated-records: no SlideBarcode / SlideThumbnail / WholeSlide value
  left in [HIERARCHICAL] (unless asked to keep), and OpenSlide lists no
  label / macro;
* mrxs-slide-id: the new SLIDE_ID is the same in Slidedat.ini, the Index.dat
  header and every Data file header, and differs from the source's; the Index.dat header
  is the version OpenSlide reads ("01.02") and that SLIDE_ID, and every Data file starts
  with exactly the same bytes (whatever its source held there);
* mrxs-index-form: the Index.dat values no reader uses are zero (the pages of non-zoom HIER
  records hold no item, a NONHIER page one item or none, no next page, zero reserved values);
* mrxs-preview: the .mrxs preview is a JPEG without COM / APPn text segments
  and without a barcode;
* mrxs-unread-records-zero: the blobs of NONHIER records OpenSlide does not read (all but the
  Scan data layer images and the tile-position layers) and of HIER layers other than the zoom
  levels are all zero;
* mrxs-member-names: the index and Data files are named Index.dat and DataNNNN.dat;
* mrxs-files-contained: every output file lies inside the output folder, none
  is a symbolic link, and the folder name matches the .mrxs name.
"""

from __future__ import annotations

import configparser
import hashlib
import struct
from pathlib import Path

from wsianon.io.ini import read_ini
from wsianon.verify.dates import check_kept_dates
from wsianon.io.jpeg import normalized_checked
from wsianon.verify import keyedtokens, mrxs_hidden

HANDLES_TILES = True  # tiles live in Data files: compared here, not through tifffile

_LABEL_MACRO = {"ScanDataLayer_SlideBarcode": "label", "ScanDataLayer_SlideThumbnail": "macro", "ScanDataLayer_WholeSlide": "macro"}


def _ini(folder: Path) -> configparser.RawConfigParser:
    raw = (folder / "Slidedat.ini").read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    cp = read_ini(text)
    return cp


def _level_tiles(folder: Path, cp: configparser.RawConfigParser, scrub: bool = False, malformed: list[int] | None = None) -> list[list[str]]:
    """sha256 of every tile blob inside the grid, per zoom level, in Index.dat order (the walk of
    :func:`mrxs_hidden.zoom_items`).  ``scrub``: what the output must hold — the blob with its
    non-essential JPEG payloads zeroed, and zeros for an image OpenSlide places nowhere (positions
    not scanned, by this slide's position record) unless its blob is also a placed image's;
    ``malformed`` gets one entry per such JPEG blob that cannot be followed to its end."""
    idx = (folder / cp.get("HIERARCHICAL", "INDEXFILE")).read_bytes()
    files = [folder / cp.get("DATAFILE", f"FILE_{i}") for i in range(cp.getint("DATAFILE", "FILE_COUNT"))]
    levels = mrxs_hidden.zoom_items(idx, cp)
    undrawn = mrxs_hidden.placement(folder, cp, idx, levels)[0] if scrub else [set() for _ in levels]
    shown = {it[1:] for lvl, items in enumerate(levels) for k, it in enumerate(items) if k not in undrawn[lvl]}
    out: list[list[str]] = []
    handles = [open(f, "rb") for f in files]
    try:
        for lvl, items in enumerate(levels):
            hashes = []
            for k, (image, off, ln, fno) in enumerate(items):
                if k in undrawn[lvl] and (off, ln, fno) not in shown:
                    hashes.append(f"{image}:{hashlib.sha256(bytes(ln)).hexdigest()}")  # zeroed by the redactor
                    continue
                fh = handles[fno]
                fh.seek(off)
                blob = fh.read(ln)
                if scrub:
                    blob, _zeroed, bad = normalized_checked(blob)
                    if bad and malformed is not None:
                        malformed.append(image)
                hashes.append(f"{image}:{hashlib.sha256(blob).hexdigest()}")
            out.append(hashes)
    finally:
        for h in handles:
            h.close()
    return out


def _jpeg_segments(data: bytes) -> list[int]:
    markers = []
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        m = data[pos + 1]
        if m in (0xDA, 0xD9):
            break
        markers.append(m)
        (ln,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + ln
    return markers


def _grid_size(cp: configparser.RawConfigParser) -> int | None:
    """IMAGENUMBER_X * IMAGENUMBER_Y: image indices OpenSlide places (None when not stated)."""
    try:
        return cp.getint("GENERAL", "IMAGENUMBER_X") * cp.getint("GENERAL", "IMAGENUMBER_Y")
    except (configparser.Error, ValueError):
        return None


def _pages(idx: bytes, ptr: int, item: int, at: int, grid: int | None = None, outside: list | None = None) -> list[tuple[int, int, int]]:
    """(offset, length, file number) of every item of the record at ``ptr`` (ValueError when cut);
    with ``grid``, a hier item whose image index is not below it goes to ``outside`` instead."""
    out = []
    (page,) = struct.unpack_from("<i", idx, ptr + 4)
    seen: set[int] = set()
    while page and page not in seen:
        seen.add(page)
        count, nxt = struct.unpack_from("<ii", idx, page)
        if count < 0 or page + 8 + item * count > len(idx):
            raise ValueError(page)
        for k in range(count):
            entry = struct.unpack_from("<iii", idx, page + 8 + item * k + at)
            if grid is not None and outside is not None and not 0 <= struct.unpack_from("<i", idx, page + 8 + item * k)[0] < grid:
                outside.append(entry)
            else:
                out.append(entry)
        page = nxt
    return out


def unread_blobs(folder: Path, cp: configparser.RawConfigParser) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """(blobs of NONHIER records OpenSlide does not read, blobs of HIER records that are not zoom
    levels), each (offset, length, file number); zoom-level tile blobs are left out of the second."""
    from wsianon.profiles import load

    rules = load("mrxs")
    reads = set(rules["openslide_reads_nonhier"])
    assoc = set(rules["associated"])
    sid = cp.get("GENERAL", "SLIDE_ID")
    idx = (folder / cp.get("HIERARCHICAL", "INDEXFILE")).read_bytes()
    hier_t, non_t = struct.unpack_from("<ii", idx, 5 + len(sid))
    counts = [cp.getint("HIERARCHICAL", f"HIER_{i}_COUNT") for i in range(cp.getint("HIERARCHICAL", "HIER_COUNT"))]
    zoom: set[tuple[int, int, int]] = set()
    other: list[tuple[int, int, int]] = []
    grid = _grid_size(cp)
    for i in range(sum(counts)):
        (ptr,) = struct.unpack_from("<i", idx, hier_t + 4 * i)
        if i < counts[0]:
            zoom.update(_pages(idx, ptr, 16, 4, grid, other))  # items outside the grid: not drawn
        else:
            other.extend(_pages(idx, ptr, 16, 4))
    nonhier: list[tuple[int, int, int]] = []
    slot = 0
    for li in range(cp.getint("HIERARCHICAL", "NONHIER_COUNT")):
        layer = cp.get("HIERARCHICAL", f"NONHIER_{li}_NAME", fallback="")
        for vi in range(cp.getint("HIERARCHICAL", f"NONHIER_{li}_COUNT")):
            name = cp.get("HIERARCHICAL", f"NONHIER_{li}_VAL_{vi}", fallback="")
            (ptr,) = struct.unpack_from("<i", idx, non_t + 4 * slot)
            slot += 1
            if not ptr or layer in reads or (layer == "Scan data layer" and name in assoc):
                continue
            nonhier += _pages(idx, ptr, 20, 8)
    return nonhier, [b for b in other if b not in zoom]


def _check_unread(folder: Path, cp: configparser.RawConfigParser, verdict) -> None:
    """mrxs-unread-records-zero: what OpenSlide does not read is zero (nothing proves what it holds)."""
    try:
        nonhier, other = unread_blobs(folder, cp)
        files = [folder / cp.get("DATAFILE", f"FILE_{i}") for i in range(cp.getint("DATAFILE", "FILE_COUNT"))]
        dirty = 0
        for off, ln, fno in nonhier + other:
            if ln <= 0:
                continue
            with open(files[fno], "rb") as fh:
                fh.seek(off)
                if any(fh.read(ln)):
                    dirty += 1
        verdict.add(
            "mrxs-unread-records-zero",
            dirty == 0,
            f"{len(nonhier)} NONHIER and {len(other)} non-zoom HIER blob(s) OpenSlide does not read: all zero"
            if not dirty
            else f"{dirty} blob(s) OpenSlide does not read hold non-zero bytes",
        )
    except (KeyError, ValueError, IndexError, OSError, struct.error, configparser.Error) as exc:
        verdict.add("mrxs-unread-records-zero", False, f"cannot walk the records: {type(exc).__name__}")


def _index_version() -> bytes:
    """The one Index.dat version OpenSlide reads (it refuses any other)."""
    from wsianon.profiles import load

    return load("mrxs")["index_version"].encode("latin-1")


def index_form_problems(idx: bytes, cp: configparser.RawConfigParser) -> int:
    """Values of Index.dat no reader uses that are not in their one form (the redactor writes them
    so): a HIER record of a layer other than the zoom levels whose first page holds an item count
    or next-page pointer (OpenSlide draws no such layer), a NONHIER record's page with more than
    one item, a next-page pointer, or non-zero reserved values before its (offset, size, file)
    (OpenSlide reads the count, skips the pointer, requires the two values 0 and reads one item).
    ValueError / struct.error when the tables cannot be walked."""
    sid = cp.get("GENERAL", "SLIDE_ID")
    hier_t, non_t = struct.unpack_from("<ii", idx, 5 + len(sid))
    n_zoom = cp.getint("HIERARCHICAL", "HIER_0_COUNT")
    n_hier = sum(cp.getint("HIERARCHICAL", f"HIER_{i}_COUNT") for i in range(cp.getint("HIERARCHICAL", "HIER_COUNT")))
    n_non = sum(cp.getint("HIERARCHICAL", f"NONHIER_{i}_COUNT") for i in range(cp.getint("HIERARCHICAL", "NONHIER_COUNT")))

    def page_of(table: int, i: int) -> int | None:
        (ptr,) = struct.unpack_from("<i", idx, table + 4 * i)
        if not ptr:
            return None
        head, page = struct.unpack_from("<ii", idx, ptr)
        if head != 0 or page < 0:
            raise ValueError("record")
        return page

    bad = 0
    for i in range(n_zoom, n_hier):
        page = page_of(hier_t, i)
        if page is None or struct.unpack_from("<ii", idx, page) != (0, 0):
            bad += 1
    for slot in range(n_non):
        page = page_of(non_t, slot)
        if page is None:
            continue
        count, nxt = struct.unpack_from("<ii", idx, page)
        if count not in (0, 1) or nxt != 0 or (count and struct.unpack_from("<ii", idx, page + 8) != (0, 0)):
            bad += 1
    return bad


def _check_index_form(folder: Path, cp: configparser.RawConfigParser, verdict) -> None:
    """mrxs-index-form: the Index.dat values no reader uses are in their one form (zero)."""
    try:
        idx = (folder / cp.get("HIERARCHICAL", "INDEXFILE")).read_bytes()
        bad = index_form_problems(idx, cp)
        verdict.add(
            "mrxs-index-form",
            bad == 0,
            "Index.dat: non-zoom HIER records without items, NONHIER pages one item with zero reserved values and no next page"
            if not bad
            else f"{bad} Index.dat record page(s) holding values no reader uses (items of a non-zoom layer, reserved values, next-page pointers)",
        )
    except (KeyError, ValueError, IndexError, OSError, struct.error, configparser.Error) as exc:
        verdict.add("mrxs-index-form", False, f"cannot walk the records: {type(exc).__name__}")


def _check_member_names(cp: configparser.RawConfigParser, verdict) -> None:
    """mrxs-member-names: Index.dat and DataNNNN.dat, 3DHistech's own names (a source's names are
    text its writer chose: a case number passes as a number, so none is accepted)."""
    try:
        n = cp.getint("DATAFILE", "FILE_COUNT")
        ok = cp.get("HIERARCHICAL", "INDEXFILE") == "Index.dat" and all(cp.get("DATAFILE", f"FILE_{i}") == f"Data{i:04d}.dat" for i in range(n))
    except (configparser.Error, ValueError):
        ok = False
    verdict.add("mrxs-member-names", ok, "Index.dat and DataNNNN.dat names only" if ok else "index or Data file names other than Index.dat / DataNNNN.dat")


def keyed_tokens(out_main: Path) -> frozenset[bytes]:
    """The keyed pseudonym Slidedat.ini's SLIDE_NAME holds and the keyed SLIDE_ID (the
    ``mrxs-slide-id`` check proves it the same in every file), for ``wsianon.verify.keyedtokens``."""
    cp = _ini(Path(out_main).with_suffix(""))
    out = {t for sec in cp.sections() if cp.has_option(sec, "SLIDE_NAME") for t in keyedtokens.pseudonym_tokens(cp.get(sec, "SLIDE_NAME"))}
    if cp.has_option("GENERAL", "SLIDE_ID"):
        out.add(cp.get("GENERAL", "SLIDE_ID").strip().encode("ascii", "replace"))
    return frozenset(out)


def check(inv, out_main: Path, out_files: list[Path], policy, verdict) -> None:
    out_main = Path(out_main)
    folder = out_main.with_suffix("")
    src_folder = Path(inv.path).with_suffix("")
    # containment
    root = out_main.parent.resolve()
    bad = [f for f in out_files if Path(f).is_symlink() or root not in Path(f).resolve().parents]
    verdict.add(
        "mrxs-files-contained",
        not bad and folder.is_dir(),
        f"{len(out_files)} output file(s) inside the output folder, no links" if not bad else f"{len(bad)} file(s) outside or linked",
    )
    try:
        cp = _ini(folder)
    except Exception as exc:
        verdict.add("mrxs-slidedat", False, f"output Slidedat.ini unreadable: {type(exc).__name__}")
        return
    try:
        src_cp = _ini(src_folder)
    except Exception:
        src_cp = None

    _check_unread(folder, cp, verdict)
    _check_index_form(folder, cp, verdict)
    _check_member_names(cp, verdict)
    general = dict(cp.items("GENERAL")) if cp.has_section("GENERAL") else {}
    check_kept_dates({k: v for k, v in general.items() if "CREATIONDATETIME" in k.upper()}, policy, verdict)
    mrxs_hidden.check(folder, cp, verdict)

    # associated records
    allowed = set()
    if policy.macro == "keep":
        allowed |= {"ScanDataLayer_SlideThumbnail", "ScanDataLayer_WholeSlide"}
    if policy.label == "blank":
        allowed.add("ScanDataLayer_SlideBarcode")
    left = sorted(v for k, v in cp.items("HIERARCHICAL") if k.startswith("NONHIER_") and "_VAL_" in k and v in _LABEL_MACRO and v not in allowed)
    verdict.add("mrxs-associated-records", not left, "no label/macro records in Slidedat.ini" if not left else f"still listed: {left}")

    # SLIDE_ID consistency
    try:
        sid = cp.get("GENERAL", "SLIDE_ID")
        # audited without its source (src is the output itself): consistency only
        old = src_cp.get("GENERAL", "SLIDE_ID") if src_cp and src_folder.resolve() != folder.resolve() else None
        ok = bool(sid) and sid != old
        idx = (folder / cp.get("HIERARCHICAL", "INDEXFILE")).read_bytes()
        header = _index_version() + sid.encode()
        ok = ok and idx[: len(header)] == header
        missing = []
        for i in range(cp.getint("DATAFILE", "FILE_COUNT")):
            with open(folder / cp.get("DATAFILE", f"FILE_{i}"), "rb") as fh:
                head = fh.read(4096)
            if head[: len(header)] != header:  # every Data file's header: Index.dat's, exactly
                missing.append(i)
            elif old and old.encode() in head:
                missing.append(i)
            elif (
                old
                and src_cp is not None
                and sid.encode() not in head
                and old.encode() in (src_folder / src_cp.get("DATAFILE", f"FILE_{i}")).read_bytes()[:4096]
            ):
                missing.append(i)
        ok = ok and not missing
        verdict.add(
            "mrxs-slide-id",
            ok,
            "new SLIDE_ID consistent in Slidedat.ini, Index.dat and Data headers (each header: the index version and that SLIDE_ID, exactly)"
            if ok
            else "SLIDE_ID inconsistent or unchanged, or an Index.dat / Data file header not exactly the index version and the SLIDE_ID",
        )
    except Exception as exc:
        verdict.add("mrxs-slide-id", False, f"cannot read SLIDE_ID locations: {type(exc).__name__}")

    # tiles
    try:
        malformed: list[int] = []
        src_tiles = _level_tiles(src_folder, src_cp, scrub=True, malformed=malformed) if src_cp else None
        out_tiles = _level_tiles(folder, cp)
        same = src_tiles is not None and src_tiles == out_tiles
        n = sum(len(x) for x in out_tiles)
        if same and malformed:
            verdict.add("mrxs-tiles-identical", False, f"{len(malformed)} JPEG tile blobs cannot be followed to their end: what they carry cannot be proven")
        else:
            verdict.add(
                "mrxs-tiles-identical",
                same,
                f"{n} tile blobs in {len(out_tiles)} zoom levels identical to the source (entropy-coded data; non-essential JPEG payloads zeroed)"
                if same
                else "tile blobs differ from the source",
            )
    except Exception as exc:
        verdict.add("mrxs-tiles-identical", False, f"cannot walk Index.dat: {type(exc).__name__}")

    # preview
    try:
        data = out_main.read_bytes()
        segs = _jpeg_segments(data)
        text_segs = [m for m in segs if m == 0xFE or 0xE1 <= m <= 0xEF]
        barcodes = 0
        try:
            import io

            from PIL import Image

            from wsianon.io import barcodes as barcode_reader

            if barcode_reader.available():  # (absent: not searched)
                barcodes = len(barcode_reader.read(Image.open(io.BytesIO(data)).convert("RGB")))
        except ImportError:
            pass
        ok = data[:2] == b"\xff\xd8" and not text_segs and barcodes == 0
        verdict.add("mrxs-preview", ok, f"preview JPEG: {len(text_segs)} text segment(s), {barcodes} barcode(s)")
    except Exception as exc:
        verdict.add("mrxs-preview", False, f"preview unreadable: {type(exc).__name__}")
