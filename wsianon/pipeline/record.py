"""The record a privacy officer can sign: the HTML report, the certificate (JSON + PDF), and the
private review sheet.

Everything is built from ``OUT/wsianon-report.json`` (the job's public record, cumulative when the
job manifest regenerates it) and from the outputs in OUT themselves: thumbnails and kept associated
images are rendered FROM THE OUTPUT (OpenSlide; wsidicom for DICOM), never from a source, and every
output file is hashed (SHA-256).  Nothing identifying goes into OUT: pseudonyms, field names, check
results and hashes only; the key appears as a one-way fingerprint.

* ``OUT/wsianon-report.html`` — self-contained (inline CSS, images as ``data:`` URIs, a small inline
  script for sort / filter / pagination; without scripts every card is shown).
* ``OUT/wsianon-certificate.json`` + ``.pdf`` — certificate ID (a hash of its content), policy,
  verification method, per-output SHA-256 and size, the hashes of the JSON and HTML reports.
  :func:`check_certificate` re-hashes and confirms it (``wsianon certify --check OUT``).
* the review sheet (outside OUT, mode 0600): the source's label and macro beside the output's
  thumbnail and kept images.  It carries identifying images by design and is refused inside OUT.

A small cache beside OUT (``OUT.wsianon-record.sqlite``: output size/mtime -> SHA-256, rendered
thumbnails) keeps the record cheap when a job is resumed over thousands of slides.  In a batch with
worker processes, each worker renders its slide's output images (:func:`prerender`) and the
coordinator puts them in that cache as the slide finishes (:class:`ImageSeeder`): the record at the
end of the job then renders nothing.  What it does render (a serial job's slides, a cache lost) is
rendered by two threads (``RENDER_THREADS``), in the report's order.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import hashlib
import html
import io
import json
import math
import os
import re
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from wsianon.io import cache as io_cache
from wsianon.io import digests as io_digests
from wsianon.io.safefile import same_file
from wsianon.io.safetext import human_bytes, os_reason
from wsianon.pipeline.cachedb import BestEffortDB, record_cache_path
from wsianon.pipeline.keys import key_fingerprint  # one fingerprint for manifest, report and certificate
from wsianon import __version__
from wsianon.errors import OutputError, WsianonError
from wsianon.io.atomic import write_atomic, write_private_if_changed
from wsianon.io import pdf
from wsianon.pipeline.report import MANIFEST_NOTE, REPORT_NAME
from wsianon.pipeline.model import State, Status
from wsianon.verify.ecs import SAMPLE as CODED_SAMPLE
from wsianon.verify.thumbnail import tile_size

REPORT_HTML = "wsianon-report.html"
CERT_JSON = "wsianon-certificate.json"
CERT_PDF = "wsianon-certificate.pdf"
RECORD_FILES = (REPORT_NAME, REPORT_HTML, CERT_JSON, CERT_PDF)
THUMB_PX = 224
ASSOC_PX = 120
LIBRARIES = ("openslide-python", "openslide-bin", "tifffile", "pydicom", "highdicom", "wsidicom", "wsidicomizer", "opentile", "pillow", "numpy", "imagecodecs")
SHARED_STATES = (State.OK,)
LAZY_AFTER = 200  # above this many slides the cards are built page by page in the browser
# Above PAGE_SLIDES slides the record is paged: wsianon-report.html is an index (summary, policy,
# run facts, a compact table of every slide) and the cards are in numbered, self-contained card
# pages of PAGE_SLIDES slides each in CARDS_DIR beside it (one HTML file of 10^5 slides held a store
# of cards longer than the longest string a browser's JavaScript engine holds, and was built in
# memory whole).  ``WSIANON_RECORD_PAGE_SLIDES`` sets another page size: a test / tuning knob.
PAGE_SLIDES = 5000
PAGE_SLIDES_ENV = "WSIANON_RECORD_PAGE_SLIDES"
CARDS_DIR = "wsianon-report-cards"
NOT_SHARED: dict[str, str] = {Status.FAILED: State.QUARANTINED, State.QUARANTINED: State.QUARANTINED, State.ERROR: State.ERROR}


# ---------------------------------------------------------------------------
# facts


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read whole (``check_certificate`` always reads; the record's output
    hashes come from the verifier's read-back pass where this process verified the output)."""
    with open(path, "rb", buffering=0) as fh:
        return io_digests.sha256_of(fh.fileno())


def page_slides(page_size: int | None = None) -> int:
    """Slides a card page holds, and the most a record keeps in one file: ``page_size``, else
    ``$WSIANON_RECORD_PAGE_SLIDES`` (a test / tuning knob), else PAGE_SLIDES."""
    if page_size is None:
        try:
            page_size = int(os.environ.get(PAGE_SLIDES_ENV) or PAGE_SLIDES)
        except ValueError:
            raise WsianonError(Path(PAGE_SLIDES_ENV), "not a whole number of slides") from None
    if page_size < 1:
        raise WsianonError(Path(PAGE_SLIDES_ENV), "a card page holds at least one slide")
    return page_size


def library_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        import openslide

        out["OpenSlide (C library)"] = openslide.__library_version__
    except Exception:
        pass
    return out


def policy_in_words(policy: dict, dicom: bool = True) -> list[str]:
    """What the command-line policy means, one plain sentence per choice."""
    label: dict[str | None, str] = {
        "remove": "Label image (the sticker with case number, barcode or name): removed from every output.",
        "blank": "Label image: replaced by a blank image of the same size (no text, no barcode).",
    }
    macro: dict[str | None, str] = {
        "remove": "Macro / overview photograph of the whole glass slide (it usually shows the label): removed.",
        "keep": "Macro / overview photograph: KEPT as scanned — check on the review sheet that it shows no label text.",
    }
    thumbnail: dict[str | None, str] = {
        "keep": "Thumbnail (the slide downsampled, where the format has one): kept, proven to be the slide's own pyramid downsampled.",
        "remove": "Thumbnail: removed; nothing but the pyramid remains of the slide's images.",
    }
    dates: dict[str | None, str] = {
        "remove": "Acquisition dates and times: removed (a fixed dummy where the format requires a value).",
        "year": "Acquisition dates: reduced to the year; month, day and time removed.",
        "keep": "Acquisition dates and times: kept unchanged.",
    }
    rename = {
        "pseudonym": "File names: a keyed pseudonym (WSI-…); the source file name is not in the shared folder.",
        "keep": "File names: the source file names were kept (they may themselves be identifying).",
    }
    words = [
        label.get(policy.get("label"), f"Label image: {policy.get('label')}."),
        macro.get(policy.get("macro"), f"Macro image: {policy.get('macro')}."),
        thumbnail.get(policy.get("thumbnail", "keep"), f"Thumbnail: {policy.get('thumbnail')}."),
        dates.get(policy.get("dates"), f"Dates: {policy.get('dates')}."),
        rename.get(policy.get("rename", "pseudonym"), f"File names: {policy.get('rename')}."),
        "Metadata: closed world — every field not known to be safe was removed or blanked; the slide's pyramid tiles were copied unchanged where the format allows.",
    ]
    opts = policy.get("dicom_options") or []
    if dicom:
        words.append(
            "DICOM outputs: PS3.15 Annex E Basic Application Level Confidentiality Profile" + (f" with the options {', '.join(opts)}." if opts else ".")
        )
    coded = {
        "sample": f"Tiles' coded image data (passed through unchanged): a sample of up to {CODED_SAMPLE} tiles a pyramid level was decoded to prove it holds no bytes a decoder skips (hidden text after the coded data).",
        "all": "Tiles' coded image data (passed through unchanged): every tile was decoded to prove it holds no bytes a decoder skips (hidden text after the coded data).",
    }
    if policy.get("coded_data") in coded:
        words.append(coded[policy["coded_data"]])
    if policy.get("in_place"):
        words.append("In-place mode: the input files themselves were patched (journaled, rolled back on failure).")
    if policy.get("allow_generic"):
        words.append("Generic TIFFs no vendor redactor claims were anonymized fail-closed (--allow-generic).")
    if policy.get("accept_unrun_checks"):
        words.append(
            "Verification checks that could not run (a tool or library not available, e.g. dciodvfy) were ACCEPTED as not run "
            "(--accept-unrun-checks): a slide could pass without them; the verification method names the checks not run."
        )
    return words


def policy_flags(policy: dict, dicom: bool = True) -> str:
    flags = f"--label {policy.get('label')} --macro {policy.get('macro')} --dates {policy.get('dates')} --rename {policy.get('rename', 'pseudonym')}"
    if policy.get("thumbnail", "keep") != "keep":
        flags += f" --thumbnail {policy.get('thumbnail')}"
    for o in (policy.get("dicom_options") or []) if dicom else []:
        flags += f" --profile {o}"
    if policy.get("coded_data") == "all":
        flags += " --coded-data all"
    if policy.get("accept_unrun_checks"):
        flags += " --accept-unrun-checks"
    return flags


def _has_dicom(data: "RecordData") -> bool:
    return any(s.target == "dicom" for s in data.slides)


DCIODVFY = "dicom: dciodvfy"


def ran_checks(slides: list["SlideRecord"]) -> list[str]:
    """The checks that ran on at least one slide (a check reported "not run" did not)."""
    return sorted({ch for s in slides for c in s.checks if (ch := c.get("check")) and not c.get("not_run")})


def unrun_checks(slides: list["SlideRecord"]) -> dict[str, int]:
    """``{check: slides}``: the checks that did not run (a tool not installed) and were accepted
    (--accept-unrun-checks: the slide passed without them), with how many slides lack them."""
    counts: dict[str, int] = {}
    for s in slides:
        for ch in sorted({str(c["check"]) for c in s.checks if c.get("not_run") and c.get("ok") and c.get("check")}):
            counts[ch] = counts.get(ch, 0) + 1
    return dict(sorted(counts.items()))


def effective_policy(data: "RecordData") -> dict:
    """The report's policy, with --accept-unrun-checks also where a slide's checks show it was used
    (a job resumed without it keeps the slides an earlier run accepted)."""
    pol = dict(data.report.get("policy") or {})
    if unrun_checks(data.slides):
        pol["accept_unrun_checks"] = True
    return pol


def method_text(policy: dict, slides: list["SlideRecord"]) -> str:
    """The verification method in words, as the policy and the recorded checks have it: the
    associated images as the policy treated them, dciodvfy only where it ran, and the checks that
    did not run (accepted with --accept-unrun-checks)."""
    label, macro, thumbnail = policy.get("label", "remove"), policy.get("macro", "remove"), policy.get("thumbnail", "keep")
    gone = [k for k, v in (("label", label), ("macro", macro), ("thumbnail", thumbnail)) if v == "remove"]
    images = []
    if gone:
        images.append(f"associated images ({', '.join(gone)}) checked to be gone")
    if label == "blank":
        images.append("the label checked to be a uniform blank image")
    if macro == "keep":
        images.append(
            "the macro photograph KEPT as scanned, as the policy asked (a label or barcode in it is not held against it: check it on the review sheet)"
        )
    ran = set(ran_checks(slides))
    names = ran | set(unrun_checks(slides))
    targets = {s.target for s in slides} or {"native", "dicom"}
    # which verifiers judged the outputs: as the recorded checks show (a DICOM input kept native is
    # judged as DICOM), else as the targets say (slides that all ended in an error)
    native = "openslide-detect" in names if names else bool(targets - {"dicom"})
    dicom = any(n.startswith("dicom: ") for n in names) if names else "dicom" in targets
    if not (native or dicom):
        native, dicom = bool(targets - {"dicom"}), "dicom" in targets
    opened = []
    if native:
        opened.append("OpenSlide (native)")
    if dicom:
        if DCIODVFY in ran or not slides:
            opened.append("wsidicom, the Annex E profile and dciodvfy (DICOM)")
        else:
            opened.append("wsidicom and the Annex E profile (DICOM; dciodvfy was not run)")
    text = (
        "Each output was re-opened after it was written, independently of the code that wrote it: its "
        f"structure parsed, every metadata field checked against the format's allowlist, {', '.join(images + [''])}"
        "remaining images searched for barcodes, every output byte "
        "scanned for the source's identifying values (in several encodings), the pyramid tiles compared "
        f"with the source's, and the output opened with {' or '.join(opened)}. An output failing any check was "
        "quarantined outside the shared folder and is not part of this certificate."
    )
    unrun = unrun_checks(slides)
    if unrun:
        text += (
            " Checks NOT RUN (a tool or library they need was not available), accepted with --accept-unrun-checks: the slides "
            f"were shared without them: {'; '.join(f'{c} on {n} slide(s)' for c, n in unrun.items())}."
        )
    return text


# the method as it reads for the default policy with every check run
METHOD = method_text({}, [])


def _status(s: dict) -> str:
    st = s.get("status") or "pending"
    return NOT_SHARED.get(st, st)


def _run_dates(report: dict) -> list[str]:
    dates = []
    for r in report.get("runs") or []:
        if isinstance(r, dict):
            a, b = r.get("started") or r.get("start"), r.get("finished") or r.get("end")
            dates.append(f"{a or '?'} → {b or '?'}")
        elif isinstance(r, str):
            dates.append(r)
    for k in ("started", "finished", "created", "updated"):
        if report.get(k) and not dates:
            dates.append(f"{k}: {report[k]}")
        elif report.get(k) and k in ("created", "updated"):
            dates.append(f"{k}: {report[k]}")
    return list(dict.fromkeys(dates))


# ---------------------------------------------------------------------------
# cache beside OUT (not identifying, but kept out of the shared folder)


class _Cache(BestEffortDB):
    """Best effort: a cache that cannot be opened or written is simply not used."""

    def __init__(self, out: Path):
        self.db = None
        self.reads = 0  # output files read to hash them (not found in the cache unchanged, nor known from the run)
        path = record_cache_path(out)
        try:
            self.db = sqlite3.connect(path)
            self.db.execute("create table if not exists files (rel text primary key, size int, mtime int, sha text)")
            self.db.execute("create table if not exists images (slide text primary key, sig text, data text)")
        except sqlite3.Error:
            self._drop()

    def sha(self, rel: str, p: Path, st=None) -> str:
        st = st or p.stat()
        row = self._get("select size, mtime, sha from files where rel=?", (rel,))
        if row and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return row[2]
        # the verifier's read-back pass hashed this very file (same inode, size, mtime) already
        digest = io_digests.lookup(p)
        if digest is None:
            self.reads += 1
            digest = sha256_file(p)
        self._put("insert or replace into files values (?,?,?,?)", (rel, st.st_size, st.st_mtime_ns, digest))
        return digest

    def images(self, slide: str, sig: str):
        row = self._get("select sig, data from images where slide=?", (slide,))
        return json.loads(row[1]) if row and row[0] == sig else None

    def put_images(self, slide: str, sig: str, data) -> None:
        self._put("insert or replace into images values (?,?,?)", (slide, sig, json.dumps(data)))

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.commit()
            except sqlite3.Error:
                pass
            self._drop()


# ---------------------------------------------------------------------------
# images rendered from the outputs


def data_uri(img, px: int, quality: int = 78) -> str:
    from PIL import Image

    img = img.copy()
    img.thumbnail((px, px))
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(img, mask=img.split()[-1])
        img = bg
    elif img.mode != "RGB":
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


_PLACEHOLDERS: dict[str, str] = {}


def placeholder(text: str) -> str:
    """A small grey image naming why there is no thumbnail (decodable like any other)."""
    if text not in _PLACEHOLDERS:
        from PIL import Image, ImageDraw, ImageFont

        img = Image.new("RGB", (THUMB_PX, THUMB_PX * 2 // 3), (236, 236, 236))
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, img.width - 1, img.height - 1], outline=(170, 170, 170))
        try:
            font = ImageFont.load_default(size=14)
        except TypeError:  # Pillow < 10.1
            font = ImageFont.load_default()
        d.text((12, img.height // 2 - 8), text, fill=(90, 90, 90), font=font)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        _PLACEHOLDERS[text] = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return _PLACEHOLDERS[text]


def render_slide_images(path: Path | list[Path], thumbnail: bool = True, kinds: tuple[str, ...] | None = None) -> dict:
    """Thumbnail and kept associated images of one slide (an output, or a source for the review
    sheet): ``{"thumbnail": uri | None, "images": [[kind, uri], ...], "error": str | None}``.
    ``thumbnail=False``: the associated images only (the review sheet shows no source thumbnail);
    ``kinds``: only the associated images of these kinds are rendered (None: all)."""
    res: dict = {"thumbnail": None, "images": [], "error": None}
    files = list(path) if isinstance(path, list) else None
    path = Path(path[0] if isinstance(path, list) else path)
    try:
        if files or path.is_dir() or path.suffix.lower() == ".dcm":
            from wsidicom import WsiDicom

            files = files or (sorted(path.rglob("*.dcm")) if path.is_dir() else [path])
            with WsiDicom.open(files) as wsi:
                if thumbnail:
                    smallest = min(wsi.levels, key=lambda lv: lv.size.width * lv.size.height)
                    if smallest.size.width * smallest.size.height <= MAX_THUMB_SOURCE_PIXELS:
                        res["thumbnail"] = data_uri(wsi.read_thumbnail((THUMB_PX, THUMB_PX)), THUMB_PX)
                    else:  # wsidicom would decode that level whole: sampled through OpenSlide's reader instead
                        res["thumbnail"] = _dicom_bounded_thumbnail(files)
                for kind, n, read in (("label", len(wsi.labels or []), wsi.read_label), ("overview", len(wsi.overviews or []), wsi.read_overview)):
                    for i in range(n if kinds is None or kind in kinds else 0):
                        res["images"].append([kind, data_uri(read(i), ASSOC_PX * 2)])
        else:
            import openslide

            with openslide.OpenSlide(str(path)) as s:
                if thumbnail:
                    res["thumbnail"] = data_uri(bounded_thumbnail(s, THUMB_PX), THUMB_PX)
                assoc = s.associated_images  # read one by one, as asked for
                for name in sorted(n for n in assoc if kinds is None or n in kinds):
                    res["images"].append([name, data_uri(assoc[name], ASSOC_PX * 2)])
    except Exception as exc:  # a card says why; the rest of the record is still written
        res["error"] = f"could not be rendered ({type(exc).__name__})"
    return res


# A smallest level above this many pixels is not decoded whole (OpenSlide's get_thumbnail would:
# a slide without a pyramid can need gigabytes); it is sampled on a grid of small regions instead.
MAX_THUMB_SOURCE_PIXELS = 16_000_000
MOSAIC_GRID = 16
MOSAIC_PATCH = 64  # px of the level read per cell: one tile decoded per cell (see _in_one_tile)


def _in_one_tile(a: int, b: int, n: int, tile: int) -> int:
    """Where an ``n``-px run starts in the cell ``[a, b)``: at the cell's centre, moved into the
    tile holding that centre when it fits there and stays in the cell.  A centred run crossed a
    tile edge in about a third of the cells of a 256-px-tiled level (1.56 tiles decoded a cell
    instead of 1); ``tile`` 0 (unknown): centred."""
    start = (a + b - n) // 2
    if tile >= n > 0:
        t0 = (a + b) // 2 // tile * tile
        moved = min(max(start, t0), t0 + tile - n)
        if a <= moved and moved + n <= b:
            return moved
    return start


def _whole_thumbnail(slide, px: int):
    """OpenSlide's ``get_thumbnail((px, px))`` — the level its best-level rule picks, over the
    background colour, LANCZOS down to ``px`` — with the level read in strips and box-averaged to
    about twice ``px`` as it is read (``read_level_reduced``): ``get_thumbnail`` holds the level
    whole, 20 MiB of a 4 GiB slide's peak RSS for its 1,668 px level."""
    from PIL import Image

    from wsianon.verify.thumbnail import read_level_reduced

    dims, downs = list(slide.level_dimensions), list(slide.level_downsamples)
    d = max(dims[0][0] / px, dims[0][1] / px)
    lvl = max([k for k, ds in enumerate(downs) if ds <= d] or [0], key=lambda k: downs[k])
    lw, lh = dims[lvl]
    img = Image.fromarray(read_level_reduced(slide, lvl, max(1, max(lw, lh) // (2 * px))))
    size = _thumbnail_size(lw, lh, px)  # PIL's thumbnail() of the whole level: the same size as get_thumbnail's
    return img.resize(size, Image.Resampling.LANCZOS) if size != img.size else img


def _thumbnail_size(w: int, h: int, px: int) -> tuple[int, int]:
    """The size PIL's ``Image.thumbnail((px, px))`` gives a ``w`` x ``h`` image (aspect kept by its
    rounding rule; never enlarged)."""
    if w <= px and h <= px:
        return w, h
    aspect = w / h

    def round_aspect(number: float, key) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    x, y = px, px
    if x / y >= aspect:
        x = round_aspect(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = round_aspect(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    return x, y


def bounded_thumbnail(slide, px: int, workers: int = 2):
    """A thumbnail of an OpenSlide slide whose cost does not grow with the slide: the smallest
    level when it is small enough, otherwise a mosaic of MOSAIC_GRID² small regions of it, read
    by ``workers`` threads (OpenSlide decodes with the GIL released; the record is drawn after
    the verification, when the other core is idle)."""
    from PIL import Image

    lvl = slide.level_count - 1
    w, h = slide.level_dimensions[lvl]
    if w * h <= MAX_THUMB_SOURCE_PIXELS:
        return _whole_thumbnail(slide, px)
    scale = min(px / w, px / h)
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    ds = slide.level_downsamples[lvl]
    tile_w, tile_h = tile_size(slide, lvl)
    cells = []
    for gy in range(MOSAIC_GRID):
        for gx in range(MOSAIC_GRID):
            x0, x1 = gx * w // MOSAIC_GRID, (gx + 1) * w // MOSAIC_GRID
            y0, y1 = gy * h // MOSAIC_GRID, (gy + 1) * h // MOSAIC_GRID
            dx0, dx1 = gx * tw // MOSAIC_GRID, (gx + 1) * tw // MOSAIC_GRID
            dy0, dy1 = gy * th // MOSAIC_GRID, (gy + 1) * th // MOSAIC_GRID
            if dx1 <= dx0 or dy1 <= dy0:
                continue
            # a region near the cell's centre (in one tile), at most MOSAIC_PATCH px square, scaled into the cell
            cw, ch = min(x1 - x0, MOSAIC_PATCH), min(y1 - y0, MOSAIC_PATCH)
            cx, cy = _in_one_tile(x0, x1, cw, tile_w), _in_one_tile(y0, y1, ch, tile_h)
            cells.append(((int(cx * ds), int(cy * ds)), (cw, ch), (dx0, dy0), (dx1 - dx0, dy1 - dy0)))

    def patch(cell):
        loc, size, _at, into = cell
        return slide.read_region(loc, lvl, size).convert("RGB").resize(into)

    out = Image.new("RGB", (tw, th), "white")
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as ex:
            patches = list(ex.map(patch, cells))
    else:
        patches = [patch(c) for c in cells]
    for cell, img in zip(cells, patches):
        out.paste(img, cell[2])
    return out


def _dicom_bounded_thumbnail(files: list[Path]) -> str | None:
    """``bounded_thumbnail`` of a DICOM slide whose smallest level is too large to decode whole,
    through OpenSlide (which opens the series from any of its VOLUME instances); None where
    OpenSlide opens none of them.  wsidicom's ``read_thumbnail`` decodes the level whole: a
    quarantined output whose one level declared 370,024 x 768 px took the record to 2.2 GB (fuzz
    seed 147, Philips #3 through --target dicom)."""
    import openslide

    for f in files:
        try:
            s = openslide.OpenSlide(str(f))
        except Exception:
            continue
        with s:
            return data_uri(bounded_thumbnail(s, THUMB_PX), THUMB_PX)
    return None


# ---------------------------------------------------------------------------
# the record's data


@dataclass
class OutputFile:
    rel: str
    size: int
    sha256: str


@dataclass
class SlideRecord:
    slide: str
    format: str | None
    target: str
    status: str  # ok | quarantined | error | ...
    outputs: list[str]
    files: list[OutputFile] = field(default_factory=list)
    thumbnail: str | None = None
    images: list[list[str]] = field(default_factory=list)
    image_error: str | None = None
    removed: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    findings: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    image_sig: str | None = None  # a paged record: the images are in the record's cache under this key, not held

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class RecordData:
    report: dict
    slides: list[SlideRecord]
    fingerprint: str | None
    libraries: dict[str, str]
    generated: str


def _main_output(out: Path, s: dict) -> Path | None:
    """The output a viewer opens: a DICOM folder, or the file OpenSlide recognises."""
    cands = [out / o for o in s.get("outputs") or [] if is_inside(out / o, out)]
    for p in cands:
        if p.is_dir() and any(p.glob("*.dcm")):
            return p
    import openslide

    for p in cands:
        if p.is_file():
            try:
                if openslide.OpenSlide.detect_format(str(p)):
                    return p
            except Exception:
                continue
    return next((p for p in cands if p.is_file()), None)


def _verified_main(out: Path, s: dict, files: list[OutputFile], verified: list[dict] | None) -> Path | list[Path] | None:
    """What the record renders a shared slide's images from: a DICOM slide's verified instances
    only, else its main output (a slide whose outputs changed after verification is not rendered:
    an instance or data file added to its folder, a label, must not be pictured)."""
    main = _main_output(out, s)
    if verified is not None and main is not None and main.is_dir():
        return [out / f.rel for f in files if f.rel.lower().endswith(".dcm")] or None
    return main


def _output_files(out: Path, outputs: list[str]) -> list[Path]:
    files: list[Path] = []
    top = Path(out).resolve()
    for o in outputs:
        p = out / o
        where = p.resolve()
        if where == top or top not in where.parents:
            continue  # a report naming something outside OUT (or OUT itself) is not followed
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file()))
        elif p.is_file():
            files.append(p)
    return files


CHANGED = "changed since the run verified it (its content differs)"
ADDED = "not verified by the run (added to the slide's outputs after it)"
MISSING = "missing (verified by the run, gone since)"


def _hashed_files(
    out: Path, outputs: list[str], cache: _Cache, verified: list[dict] | None = None, changed: list[tuple[str, str]] | None = None
) -> tuple[list[OutputFile], int]:
    """The slide's output files with their SHA-256, and how many files its outputs hold that its
    verification did not list (``verified``: the report entry's ``files``; None: a report an older
    wsianon wrote, every file counts): a file added to or changed in the slide's folder after the
    run was never verified, and is never certified.  ``changed`` gets ``(file, reason)`` of each
    such file and of each verified file that is gone (``certify`` refuses to issue over them)."""
    listed = None if verified is None else {f.get("file"): f for f in verified if isinstance(f, dict)}
    files = []
    unverified = 0
    seen = set()
    for p in _output_files(out, outputs):
        rel = p.relative_to(out).as_posix()
        seen.add(rel)
        st = p.stat()
        f = OutputFile(rel, st.st_size, cache.sha(rel, p, st))
        entry = listed.get(rel) if listed is not None else None
        if listed is not None and (entry is None or entry.get("size") != f.size or entry.get("sha256") not in (None, f.sha256)):
            unverified += 1
            if changed is not None:
                changed.append((rel, ADDED if entry is None else CHANGED))
            continue
        files.append(f)
    if changed is not None:
        if listed is not None:
            changed.extend((rel, MISSING) for rel in sorted(r for r in listed if isinstance(r, str)) if rel not in seen)
        else:
            changed.extend((o, MISSING) for o in outputs if not (out / o).exists())
    return files, unverified


def changed_outputs_line(changed: list[tuple[str, str]], most: int = 5) -> str:
    """One line for ``certify``'s refusal: the output files (their names in OUT) that no longer
    match what the run verified, and why."""
    named = "; ".join(f"{rel}: {why}" for rel, why in changed[:most])
    if len(changed) > most:
        named += f"; and {len(changed) - most} more"
    return (
        f"{named} -- no certificate issued: {len(changed)} output file(s) no longer match what the run verified "
        "(restore them, or delete them and run the job again to process their slides again)"
    )


UNVERIFIED_NOTE = "{} file(s) in this slide's outputs were not verified by the job (added or changed after the run): not certified, never delivered"


def _images_sig(files: list[OutputFile]) -> str:
    """The key of a slide's rendered images in the cache: its output files and their SHA-256."""
    return hashlib.sha256("|".join(f"{f.rel}:{f.sha256}" for f in files).encode()).hexdigest()


def prerender(out: Path, outputs: list[str]) -> dict | None:
    """The images :func:`collect` would render for a slide shared with these outputs, rendered
    where the slide was processed (a batch worker, in parallel with the other workers) rather
    than by the coordinator at the end of the job; None when there is nothing to render here."""
    try:
        main = _main_output(Path(out), {"outputs": outputs})
    except Exception:  # the coordinator renders it (and says why it cannot) at the end
        return None
    return render_slide_images(main) if main else None


class ImageSeeder:
    """The coordinator's side of :func:`prerender`: the images a worker rendered go into the
    record's cache under the key :func:`collect` looks up (the outputs' SHA-256 come from the
    worker's read-back digests), so the record at the end of the job renders nothing again.
    Commits at most once per ``every`` seconds and on :meth:`close` (call it before the record
    is written: an open write transaction would lock the cache for :func:`collect`)."""

    def __init__(self, out: Path, every: float = 1.0):
        self.out = Path(out)
        self.every = every
        self._cache: _Cache | None = None
        self._last = 0.0

    def seed(self, slide: str, outputs: list[str], imgs: dict, verified: list[dict] | None = None) -> None:
        import time

        if self._cache is None:
            self._cache = _Cache(self.out)
            self._last = time.monotonic()
        cache = self._cache
        try:
            sig = _images_sig(_hashed_files(self.out, outputs, cache, verified)[0])
        except OSError:
            return  # an output that vanished: the record says so at the end
        cache.put_images(slide, sig, imgs)
        if time.monotonic() - self._last >= self.every and cache.db is not None:
            self._last = time.monotonic()
            try:
                cache.db.commit()
            except sqlite3.Error:
                cache._drop()

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None


@dataclass
class _Render:
    """A shared slide whose images are not in the record's cache: rendered from ``main``."""

    rec: SlideRecord
    sig: str
    main: Path | list[Path] | None


# slides rendered at once for the record: OpenSlide, wsidicom's decoders and Pillow work with the
# GIL released, so two threads render about twice as fast on two cores (a serial job renders every
# slide at its end: 40 small slides without a pyramid, 18.8 of the job's 20.5 s)
RENDER_THREADS = 2
RENDERING = "record: rendering the thumbnails of {} slide(s) for the HTML report"  # the console's line
RENDER_BATCH = 64  # rendered images held at once before they go into the cache


def _render_main(main: Path | list[Path] | None) -> dict:
    """A shared slide's images rendered from what ``_verified_main`` gives (None: its output is gone)."""
    if main is None:
        return {"thumbnail": None, "images": [], "error": "output missing"}
    return render_slide_images(main)


def _render_all(todo: list[_Render]):
    """(job, images) for each of ``todo``, in order, rendered by up to ``RENDER_THREADS`` threads."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    def render(job: _Render) -> dict:
        return _render_main(job.main)

    threads = max(1, min(RENDER_THREADS, os.cpu_count() or 1, len(todo)))
    if threads == 1:
        for job in todo:
            yield job, render(job)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsianon-render") as ex:
        for i in range(0, len(todo), RENDER_BATCH):
            part = todo[i : i + RENDER_BATCH]
            # on Ctrl-C or an error, ``Executor.map`` cancels the batch's renders not yet started
            yield from zip(part, ex.map(render, part))


def _show(out: Path, rec: SlideRecord, imgs: dict, read: bool = True, sig: str | None = None) -> None:
    """``imgs`` on the slide's card; ``read``: the record read its outputs (rendered or hashed them);
    ``sig``: the images are in the record's cache under this key and are not held (a paged record
    loads them page by page, :func:`_load_images`)."""
    rec.image_error = imgs["error"]
    if sig is not None and (imgs["thumbnail"] or imgs["images"]):
        rec.image_sig = sig
    else:
        rec.thumbnail, rec.images = imgs["thumbnail"], imgs["images"]
    if not read:
        return  # images and hashes from the cache: nothing of the outputs was read
    for p in _output_files(out, rec.outputs):  # read for the record: pages the run dropped stay dropped
        io_cache.drop_tree(p, only_synced=True)


def collect(
    out: Path,
    report: dict | None = None,
    key: bytes | None = None,
    on_render: Callable[[int, int], None] | None = None,
    page_size: int | None = None,
    refuse_changed: bool = False,
) -> RecordData:
    """Read the report and the outputs: hashes, thumbnails, kept images.  ``on_render(done, total)``:
    progress of the slides whose images are not cached (from (0, total) on; not called when none).
    ``refuse_changed``: an output file of a shared slide that no longer matches what the run verified
    (changed, added, gone) raises :class:`OutputError` naming it, before anything is rendered.
    A report of more slides than the page size (:func:`page_slides`) gives a paged record: the
    images stay in the record's cache (``SlideRecord.image_sig``) and are loaded page by page, so
    what is held does not grow with the images of every slide (held anyway when the cache is off)."""
    out = Path(out)
    if report is None:
        try:
            report = json.loads((out / REPORT_NAME).read_text())
        except (OSError, ValueError) as exc:
            raise WsianonError(out / REPORT_NAME, f"no readable run report ({type(exc).__name__})") from None
    fp = report.get("key_fingerprint")
    if not fp and isinstance(report.get("key"), dict):
        fp = report["key"].get("fingerprint")
    if fp and key is not None and key_fingerprint(key) != fp:
        # the job's manifest recorded which key made these pseudonyms: another key cannot vouch for them
        raise WsianonError(out / REPORT_NAME, "this key is not the job's key (its fingerprint differs from the one the job recorded)")
    if not fp and key is not None:
        fp = key_fingerprint(key)
    if not fp:  # re-issued without the key: keep the fingerprint the run recorded
        try:
            fp = json.loads((out / CERT_JSON).read_text()).get("key_fingerprint")
        except (OSError, ValueError, AttributeError):
            fp = None
    cache = _Cache(out)
    slides: list[SlideRecord] = []
    todo: list[_Render] = []
    lean = len(report.get("slides") or []) > page_slides(page_size)
    changed: list[tuple[str, str]] = []
    try:
        for s in report.get("slides") or []:
            ver = s.get("verification") or {}
            rec = SlideRecord(
                slide=s.get("slide") or "?",
                format=s.get("format"),
                target=s.get("target") or report.get("target") or "native",
                status=_status(s),
                outputs=list(s.get("outputs") or []),
                removed=list(s.get("removed") or []),
                checks=list(ver.get("checks") or []),
                findings=len(ver.get("findings") or []),
                notes=list(s.get("notes") or []),
                error=s.get("error"),
            )
            if rec.status in SHARED_STATES:
                verified = s.get("files") if isinstance(s.get("files"), list) else None
                reads = cache.reads
                rec.files, unverified = _hashed_files(out, rec.outputs, cache, verified, changed)
                if unverified:
                    rec.notes.append(UNVERIFIED_NOTE.format(unverified))
                sig = _images_sig(rec.files)
                imgs = cache.images(rec.slide, sig)
                if imgs is None and unverified:  # a reader would read the changed files too: nothing is rendered from them
                    rec.image_error = "not rendered: the outputs changed after verification"
                elif imgs is None:
                    todo.append(_Render(rec, sig, _verified_main(out, s, rec.files, verified)))
                else:
                    _show(out, rec, imgs, read=cache.reads != reads, sig=sig if lean and cache.db is not None else None)
            slides.append(rec)
        if refuse_changed and changed:
            raise OutputError(out, changed_outputs_line(changed))
        if todo and on_render is not None:
            on_render(0, len(todo))
        for done, (job, imgs) in enumerate(_render_all(todo), 1):
            cache.put_images(job.rec.slide, job.sig, imgs)
            _show(out, job.rec, imgs, sig=job.sig if lean and cache.db is not None else None)
            if on_render is not None:
                on_render(done, len(todo))
    finally:
        cache.close()
    libs = report.get("libraries")
    if not isinstance(libs, dict):
        libs = library_versions()
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    return RecordData(report, slides, fp, libs, now)


# ---------------------------------------------------------------------------
# HTML


_CSS = """
:root{--ok:#1b7f3b;--bad:#b3261e;--warn:#8a5a00;--mut:#5f6368;--bd:#d7dbe0}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f7f9}
header{background:#1f3b57;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0;opacity:.85}
main{padding:18px 28px;max-width:1400px}section{background:#fff;border:1px solid var(--bd);border-radius:8px;padding:14px 18px;margin-bottom:16px}
h2{font-size:17px;margin:0 0 10px}.tiles{display:flex;gap:12px;flex-wrap:wrap}.tile{border:1px solid var(--bd);border-radius:8px;padding:8px 14px;min-width:110px}
.tile b{display:block;font-size:24px}.tile.ok b{color:var(--ok)}.tile.bad b{color:var(--bad)}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}@media(max-width:900px){.grid2{grid-template-columns:1fr}}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceef1;vertical-align:top}
th{background:#f0f2f5;font-weight:600}th[data-sort]{cursor:pointer;user-select:none}th[data-sort]:after{content:" \\2195";color:#999}
code,.mono{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}
.badge.ok{background:var(--ok)}.badge.quarantined,.badge.error,.badge.failed{background:var(--bad)}.badge.other{background:var(--mut)}
.controls{display:flex;gap:10px;flex-wrap:wrap;align-items:center;margin-bottom:10px}.controls input,.controls select{padding:4px 6px}
.pager button{padding:3px 10px}.muted{color:var(--mut)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
.card{background:#fff;border:1px solid var(--bd);border-radius:8px;padding:12px;content-visibility:auto;contain-intrinsic-size:auto 420px}
.card h3{margin:0 0 8px;font-size:15px;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.card .pics{display:flex;gap:10px;align-items:flex-start;flex-wrap:wrap}.card figure{margin:0;text-align:center;font-size:12px;color:var(--mut)}
.card img.thumb{max-width:224px;max-height:224px;border:1px solid var(--bd);background:#fafafa}.card img.assoc{max-width:120px;max-height:120px;border:1px solid var(--bd)}
.card details{margin-top:6px}.card summary{cursor:pointer;font-weight:600}.pass{color:var(--ok)}.fail{color:var(--bad)}.warn{color:var(--warn)}
ul.plain{margin:4px 0;padding-left:18px}
@media print{.controls,.pager{display:none}.card{break-inside:avoid;content-visibility:visible}}
"""

# the slide table's controls (sort, filter, page size, pager), wired the same in the one-file record and in a paged record's index
_JS_CONTROLS = r"""  [].forEach.call(document.querySelectorAll('th[data-sort]'),function(th){th.addEventListener('click',function(){var k=th.getAttribute('data-sort');dir=(k===key)?-dir:1;key=k;apply();});});
  q.addEventListener('input',function(){page=0;apply();}); st.addEventListener('change',function(){page=0;apply();});
  fm.addEventListener('change',function(){page=0;apply();}); ps.addEventListener('change',function(){page=0;apply();});
  document.getElementById('prev').addEventListener('click',function(){page--;apply();});
  document.getElementById('next').addEventListener('click',function(){page++;apply();});
  document.getElementById('controls').hidden=false;
"""

_JS = (
    r"""
(function(){
  var rows=[].slice.call(document.querySelectorAll('#slides tbody tr'));
  var cards={}, lazy={};
  [].forEach.call(document.querySelectorAll('.card'),function(c){cards[c.id]=c;});
  var store=document.getElementById('lazy-cards');
  if(store){var d=JSON.parse(store.textContent); for(var k in d){lazy['card-'+k]=d[k];}}
  var tbody=document.querySelector('#slides tbody'), grid=document.getElementById('cards');
  var q=document.getElementById('q'), st=document.getElementById('fstatus'), fm=document.getElementById('fformat');
  var ps=document.getElementById('psize'), info=document.getElementById('pinfo');
  var key='slide', dir=1, page=0, view=rows;
  function card(id){  /* cards of big reports are kept as text (JSON) and built when first shown */
    if(!cards[id]&&lazy[id]){var t=document.createElement('template'); t.innerHTML=lazy[id]; var c=t.content.firstElementChild; grid.appendChild(c); cards[id]=c; delete lazy[id];}
    return cards[id];
  }
  function val(r,k){var v=r.getAttribute('data-'+k)||'';return (k==='size'||k==='checks')?parseFloat(v)||0:v;}
  function apply(){
    var text=q.value.trim().toLowerCase(), s=st.value, f=fm.value;
    view=rows.filter(function(r){return (!s||r.getAttribute('data-status')===s)&&(!f||r.getAttribute('data-format')===f)&&(!text||r.textContent.toLowerCase().indexOf(text)>=0);});
    view.sort(function(a,b){var x=val(a,key),y=val(b,key);return (x<y?-1:x>y?1:0)*dir;});
    var n=parseInt(ps.value,10)||50, pages=Math.max(1,Math.ceil(view.length/n));
    if(page>=pages)page=pages-1; if(page<0)page=0;
    var lo=page*n, hi=Math.min(lo+n,view.length);
    rows.forEach(function(r){r.hidden=true;});
    Object.keys(cards).forEach(function(k){cards[k].hidden=true;});
    var frag=document.createDocumentFragment();
    view.forEach(function(r){frag.appendChild(r);}); tbody.appendChild(frag);
    for(var i=lo;i<hi;i++){var r=view[i]; r.hidden=false; var c=card('card-'+r.getAttribute('data-slide')); if(c){c.hidden=false; grid.appendChild(c);}}
    info.textContent=view.length?('slides '+(lo+1)+'\u2013'+hi+' of '+view.length+' (page '+(page+1)+'/'+pages+')'):'no slide matches';
  }
"""
    + _JS_CONTROLS
    + r"""  function go(){  /* #card-NAME (a link from the index of a paged record): the table page showing that card */
    var h=location.hash.slice(1); try{h=decodeURIComponent(h);}catch(e){return;}
    if(h.indexOf('card-')!==0)return;
    var n=parseInt(ps.value,10)||50;
    for(var i=0;i<view.length;i++){if('card-'+view[i].getAttribute('data-slide')===h){page=Math.floor(i/n); apply(); var c=card(h); if(c){c.scrollIntoView();} return;}}
  }
  window.addEventListener('hashchange',go);
  apply(); go();
})();
"""
)


def _e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _counts(slides: list[SlideRecord]) -> dict[str, int]:
    c: dict[str, int] = {}
    for s in slides:
        c[s.status] = c.get(s.status, 0) + 1
    return c


def _badge(status: str) -> str:
    cls = status if status in ("ok", "quarantined", "error") else "other"
    return f'<span class="badge {cls}">{_e(status)}</span>'


def _card(s: SlideRecord) -> str:
    if s.thumbnail:
        thumb = f'<figure><img class="thumb" alt="thumbnail of {_e(s.slide)} rendered from the output" src="{s.thumbnail}"><figcaption>slide (from the output)</figcaption></figure>'
    else:
        why = "not shared: quarantined" if s.status == "quarantined" else ("not shared: error" if s.status == "error" else (s.image_error or "no image"))
        thumb = f'<figure><img class="thumb" alt="{_e(why)}" src="{placeholder(why)}"><figcaption>{_e(why)}</figcaption></figure>'
    assoc = "".join(f'<figure><img class="assoc" alt="kept {_e(k)}" src="{u}"><figcaption>kept: {_e(k)}</figcaption></figure>' for k, u in s.images)
    ran = [c for c in s.checks if not c.get("not_run")]
    ok = sum(1 for c in ran if c.get("ok"))
    unrun = sum(1 for c in s.checks if c.get("not_run"))
    checks = "".join(
        f'<li class="{"warn" if c.get("not_run") else "pass" if c.get("ok") else "fail"}">{"&#8211; NOT RUN" if c.get("not_run") else "&#10003;" if c.get("ok") else "&#10007;"} <b>{_e(c.get("check"))}</b>{": " + _e(c.get("detail")) if c.get("detail") else ""}</li>'
        for c in s.checks
    )
    fields = sorted({(r.get("name"), r.get("action")) for r in s.removed if r.get("kind") != "image"}, key=lambda x: (str(x[0]), str(x[1])))
    images = sorted({(r.get("name"), r.get("action")) for r in s.removed if r.get("kind") == "image"}, key=lambda x: (str(x[0]), str(x[1])))
    removed = ""
    if images:
        removed += "<p><b>Images:</b> " + "; ".join(f"{_e(n)} ({_e(a)})" for n, a in images) + "</p>"
    if fields:
        removed += '<ul class="plain">' + "".join(f"<li>{_e(n)} <span class=muted>({_e(a)})</span></li>" for n, a in fields) + "</ul>"
    files = "".join(f"<tr><td><code>{_e(f.rel)}</code></td><td>{f.size:,}</td><td><code>{f.sha256}</code></td></tr>" for f in s.files)
    extra = ""
    if s.error:
        extra += f"<p class=fail><b>Reason:</b> {_e(s.error)}</p>"
    if s.findings:
        extra += f"<p class=fail>{s.findings} residual identifier(s) found by the verifier (values not shown)</p>"
    if s.notes:
        extra += '<details><summary>Notes</summary><ul class="plain">' + "".join(f"<li>{_e(n)}</li>" for n in s.notes) + "</ul></details>"
    return (
        f'<article class="card" id="card-{_e(s.slide)}" data-slide="{_e(s.slide)}" data-status="{_e(s.status)}">'
        f"<h3>{_e(s.slide)} {_badge(s.status)} <span class=muted>{_e(s.format)} &rarr; {_e(s.target)}</span></h3>"
        f'<div class="pics">{thumb}{assoc}</div>{extra}'
        + (
            f"<details{' open' if len(s.files) <= 3 else ''}><summary>Output files ({len(s.files)}, {human_bytes(s.size)})</summary><table><tr><th>file</th><th>bytes</th><th>SHA-256</th></tr>{files}</table></details>"
            if s.files
            else ""
        )
        + f"<details><summary>Removed ({len(images)} image kind(s), {len(fields)} field(s))</summary>{removed or '<p class=muted>nothing recorded</p>'}</details>"
        + f'<details><summary>Verification: {ok}/{len(ran)} checks passed{f", {unrun} NOT RUN" if unrun else ""}</summary><ul class="plain">{checks}</ul></details>'
        + "</article>"
    )


_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _head(title: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>{title}</title><style>{_CSS}</style></head>
"""


def _summary(data: RecordData) -> str:
    """The record's summary, policy, run facts, method and versions (over all the slides)."""
    r = data.report
    pol = effective_policy(data)
    slides = data.slides
    counts = _counts(slides)
    formats: dict[str, int] = {}
    targets: dict[str, int] = {}
    for s in slides:
        formats[s.format or "unknown"] = formats.get(s.format or "unknown", 0) + 1
        targets[s.target] = targets.get(s.target, 0) + 1
    total_bytes = sum(s.size for s in slides)
    tiles = f'<div class="tile"><b>{len(slides)}</b>slides</div>'
    tiles += f'<div class="tile ok"><b>{counts.get("ok", 0)}</b>verified &amp; shared</div>'
    tiles += f'<div class="tile bad"><b>{counts.get("quarantined", 0)}</b>quarantined</div>'
    tiles += f'<div class="tile bad"><b>{counts.get("error", 0)}</b>error</div>'
    for k, v in sorted(counts.items()):
        if k not in ("ok", "quarantined", "error"):
            tiles += f'<div class="tile"><b>{v}</b>{_e(k)}</div>'
    tiles += f'<div class="tile"><b>{human_bytes(total_bytes)}</b>shared output</div>'
    fmt_rows = ", ".join(f"{_e(k)}: {v}" for k, v in sorted(formats.items()))
    tgt = ", ".join(f"{_e(k)}: {v}" for k, v in sorted(targets.items()))
    libs = " &middot; ".join(f"{_e(k)} {_e(v)}" for k, v in data.libraries.items())
    dates = "".join(f"<li>{_e(d)}</li>" for d in _run_dates(r)) or "<li>unknown</li>"
    pol_words = "".join(f"<li>{_e(w)}</li>" for w in policy_in_words(pol, _has_dicom(data)))
    return f"""<section><h2>Summary</h2><div class="tiles">{tiles}</div></section>
<div class="grid2">
<section><h2>Policy</h2><ul class="plain">{pol_words}</ul><p class="muted">Command line: <code>{_e(policy_flags(pol, _has_dicom(data)))}</code></p></section>
<section><h2>Run</h2><table><tr><th>Key fingerprint</th><td><code>{_e(data.fingerprint or "not recorded")}</code><br><span class=muted>a one-way hash of the project key, never the key</span></td></tr>
<tr><th>Run dates</th><td><ul class="plain">{dates}</ul></td></tr>
<tr><th>Targets</th><td>{tgt}</td></tr><tr><th>Formats</th><td>{fmt_rows}</td></tr></table></section>
</div>
<div class="grid2"><section><h2>Verification method</h2><p>{_e(method_text(pol, slides))}</p></section>
<section><h2>Tool and library versions</h2><p>wsianon {_e(r.get("version") or __version__)} &middot; Python {_e(r.get("python"))} &middot; {libs}</p></section></div>
"""


def _controls(slides: list[SlideRecord]) -> str:
    """The slide table's filter, sort and pager controls (shown by the script)."""
    fmt_opts = "".join(f'<option value="{_e(k)}">{_e(k)}</option>' for k in sorted({s.format or "unknown" for s in slides}))
    st_opts = "".join(f'<option value="{_e(k)}">{_e(k)}</option>' for k in sorted({s.status for s in slides}))
    return f"""<div class="controls" id="controls" hidden><input id="q" type="search" placeholder="filter (pseudonym, format, status…)">
<select id="fstatus"><option value="">all states</option>{st_opts}</select><select id="fformat"><option value="">all formats</option>{fmt_opts}</select>
<label>per page <select id="psize"><option>25</option><option selected>50</option><option>100</option><option>500</option></select></label>
<span class="pager"><button id="prev" type="button">&lsaquo; prev</button> <button id="next" type="button">next &rsaquo;</button></span> <span id="pinfo" class="muted"></span></div>
"""


_TABLE_HEAD = (
    '<thead><tr><th data-sort="slide">slide</th><th data-sort="format">format</th><th data-sort="target">target</th><th data-sort="status">status</th>'
    '<th data-sort="checks">checks</th><th data-sort="size">size</th><th>SHA-256</th></tr></thead>'
)


def _script_json(obj) -> str:
    """JSON for a ``<script type="application/json">`` (no ``</`` nor ``<!--`` inside)."""
    return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/").replace("<!--", "\\u003c!--")


def _slides_and_cards(slides: list[SlideRecord]) -> str:
    """The slide table (every row) and the slides' cards (kept as text above LAZY_AFTER)."""
    rows = []
    for i, s in enumerate(slides):
        ok = sum(1 for c in s.checks if c.get("ok") and not c.get("not_run"))
        unrun = sum(1 for c in s.checks if c.get("not_run"))
        sha = s.files[0].sha256[:16] + "…" if s.files else ""
        rows.append(
            f'<tr data-slide="{_e(s.slide)}" data-format="{_e(s.format)}" data-status="{_e(s.status)}" data-target="{_e(s.target)}" data-size="{s.size}" data-checks="{ok}" data-i="{i}">'
            f'<td><a href="#card-{_e(s.slide)}">{_e(s.slide)}</a></td><td>{_e(s.format)}</td><td>{_e(s.target)}</td><td>{_badge(s.status)}</td>'
            f"<td>{ok}/{len(s.checks) - unrun}{f' ({unrun} not run)' if unrun else ''}</td><td>{human_bytes(s.size) if s.files else ''}</td><td><code>{sha}</code></td></tr>"
        )
    if len(slides) > LAZY_AFTER:  # kept as text until shown: no DOM, no layout, no image decoding for the other pages
        cards = f'<script type="application/json" id="lazy-cards">{_script_json({s.slide: _card(s) for s in slides})}</script>'
        cards += (
            "<noscript><p>This report holds many slides: their cards are shown page by page with JavaScript. The table above lists every slide.</p></noscript>"
        )
    else:
        cards = "".join(_card(s) for s in slides)
    return f"""<section><h2>Slides</h2>
{_controls(slides)}<table id="slides">{_TABLE_HEAD}
<tbody>{"".join(rows)}</tbody></table></section>
<div class="cards" id="cards">{cards}</div>
"""


def render_html(data: RecordData) -> str:
    """The whole record in one self-contained page (up to the page size, :func:`page_slides`)."""
    r = data.report
    return f"""{_head("wsianon de-identification report")}<body><header><h1>wsianon de-identification report</h1>
<p>{len(data.slides)} slide(s) &middot; generated {_e(data.generated)} &middot; wsianon {_e(r.get("version") or __version__)} &middot; certificate: {CERT_JSON} / {CERT_PDF} in this folder</p></header>
<main>
{_summary(data)}{_slides_and_cards(data.slides)}</main><script>{_JS}</script></body></html>
"""


def card_page_name(no: int) -> str:
    """The ``no``-th (from 1) card page of a paged record, relative to OUT."""
    return f"{CARDS_DIR}/{no:04d}.html"


_PAGE_NAME = re.compile(r"[0-9]{4,}\.html")


def _page_order(rel: str) -> tuple[int, str]:
    """Card pages in their numbers' order (``9999.html`` before ``10000.html``)."""
    return len(rel), rel


def is_card_page(rel: str) -> bool:
    """Whether ``rel`` (relative to OUT) is named as a card page of a paged record."""
    head, _, name = rel.partition("/")
    return head == CARDS_DIR and _PAGE_NAME.fullmatch(name) is not None


def render_card_page(data: RecordData, slides: list[SlideRecord], no: int, pages: int) -> str:
    """One card page of a paged record: the cards of ``slides`` (self-contained like the report,
    the same Content-Security-Policy), their table, and links to the index and the next pages."""
    nav = f'<a href="../{REPORT_HTML}">&larr; index: summary, policy and every slide</a>'
    if no > 1:
        nav += f' &middot; <a href="{no - 1:04d}.html" rel="prev">&lsaquo; cards page {no - 1}</a>'
    if no < pages:
        nav += f' &middot; <a href="{no + 1:04d}.html" rel="next">cards page {no + 1} &rsaquo;</a>'
    return f"""{_head(f"wsianon report: cards page {no} of {pages}")}<body><header><h1>wsianon de-identification report &mdash; cards page {no} of {pages}</h1>
<p>{len(slides)} slide(s): {_e(slides[0].slide)} &hellip; {_e(slides[-1].slide)} &middot; of {len(data.slides)} in the report &middot; generated {_e(data.generated)} &middot; key fingerprint <code>{_e(data.fingerprint or "not recorded")}</code></p></header>
<main><section><p id="nav">{nav}</p><p class="muted">The summary, the policy, the run and the certificate ({CERT_JSON} / {CERT_PDF}) are in the report's folder, one level up.</p></section>
{_slides_and_cards(slides)}</main><script>{_JS}</script></body></html>
"""


_INDEX_JS = (
    r"""
(function(){
  var d=JSON.parse(document.getElementById('slide-index').textContent);
  var F=d.formats, T=d.targets, S=d.states, per=d.page, dirname=d.dir;
  var rows=d.rows.map(function(r,i){return {slide:r[0],format:F[r[1]],target:T[r[2]],status:S[r[3]],checks:r[4],n:r[5],size:r[6],sha:r[7],i:i};});
  d=null;
  var tbody=document.querySelector('#slides tbody');
  var q=document.getElementById('q'), st=document.getElementById('fstatus'), fm=document.getElementById('fformat');
  var ps=document.getElementById('psize'), info=document.getElementById('pinfo');
  var key='slide', dir=1, page=0, view=rows;
  function pad(n){var s=String(n); while(s.length<4){s='0'+s;} return s;}
  function href(r){return dirname+'/'+pad(Math.floor(r.i/per)+1)+'.html#card-'+encodeURIComponent(r.slide);}
  function hb(n){if(n<1024){return n+' B';} var u=['KiB','MiB','GiB','TiB'], i=0; n/=1024; while(n>=1024&&i<u.length-1){n/=1024;i++;} return n.toFixed(1)+' '+u[i];}
  function cell(tr,text){var td=document.createElement('td'); td.textContent=text; tr.appendChild(td); return td;}
  function apply(){
    var text=q.value.trim().toLowerCase(), s=st.value, f=fm.value;
    view=rows.filter(function(r){return (!s||r.status===s)&&(!f||r.format===f)&&(!text||(r.slide+' '+r.format+' '+r.target+' '+r.status).toLowerCase().indexOf(text)>=0);});
    view.sort(function(a,b){var x=a[key],y=b[key];return ((x<y?-1:x>y?1:0)||(a.i-b.i))*dir;});
    var n=parseInt(ps.value,10)||50, pages=Math.max(1,Math.ceil(view.length/n));
    if(page>=pages)page=pages-1; if(page<0)page=0;
    var lo=page*n, hi=Math.min(lo+n,view.length), frag=document.createDocumentFragment();
    for(var i=lo;i<hi;i++){
      var r=view[i], tr=document.createElement('tr'); tr.setAttribute('data-slide',r.slide); tr.setAttribute('data-status',r.status);
      var a=document.createElement('a'); a.href=href(r); a.textContent=r.slide; cell(tr,'').appendChild(a);
      cell(tr,r.format); cell(tr,r.target);
      var b=document.createElement('span'); b.className='badge '+(['ok','quarantined','error'].indexOf(r.status)>=0?r.status:'other'); b.textContent=r.status; cell(tr,'').appendChild(b);
      cell(tr,r.checks+'/'+r.n); cell(tr,r.size?hb(r.size):'');
      var c=document.createElement('code'); c.textContent=r.sha?r.sha+'\u2026':''; cell(tr,'').appendChild(c);
      frag.appendChild(tr);
    }
    tbody.textContent=''; tbody.appendChild(frag);
    info.textContent=view.length?('slides '+(lo+1)+'\u2013'+hi+' of '+view.length+' (page '+(page+1)+'/'+pages+')'):'no slide matches';
  }
"""
    + _JS_CONTROLS
    + r"""  apply();
})();
"""
)


def render_index(data: RecordData, page_size: int) -> str:
    """The entry point of a paged record: the summary over every slide, a compact table of every
    slide (kept as JSON, shown page by page by the script, each row linking to its card) and the
    list of the card pages (links that work without scripts, from file:// and a USB stick)."""
    r = data.report
    slides = data.slides
    formats = sorted({s.format or "unknown" for s in slides})
    targets = sorted({s.target for s in slides})
    states = sorted({s.status for s in slides})
    fi, ti, si = ({v: i for i, v in enumerate(x)} for x in (formats, targets, states))
    rows = [
        [
            s.slide,
            fi[s.format or "unknown"],
            ti[s.target],
            si[s.status],
            sum(1 for c in s.checks if c.get("ok") and not c.get("not_run")),
            sum(1 for c in s.checks if not c.get("not_run")),
            s.size,
            s.files[0].sha256[:16] if s.files else "",
        ]
        for s in slides
    ]
    table = _script_json({"formats": formats, "targets": targets, "states": states, "page": page_size, "dir": CARDS_DIR, "rows": rows})
    del rows
    pages = []
    for no, lo in enumerate(range(0, len(slides), page_size), 1):
        part = slides[lo : lo + page_size]
        pages.append(
            f'<li><a href="{card_page_name(no)}">cards page {no}</a> <span class=muted>slides {lo + 1}&ndash;{lo + len(part)}: {_e(part[0].slide)} &hellip; {_e(part[-1].slide)}</span></li>'
        )
    return f"""{_head("wsianon de-identification report")}<body><header><h1>wsianon de-identification report</h1>
<p>{len(slides)} slide(s) &middot; generated {_e(data.generated)} &middot; wsianon {_e(r.get("version") or __version__)} &middot; certificate: {CERT_JSON} / {CERT_PDF} in this folder &middot; the slides' cards: {len(pages)} page(s) in {CARDS_DIR}/</p></header>
<main>
{_summary(data)}<section><h2>Slides</h2>
{_controls(slides)}<table id="slides">{_TABLE_HEAD}<tbody></tbody></table>
<noscript><p>The table of every slide is shown with JavaScript; without it, open the card pages below (each lists its slides).</p></noscript>
<script type="application/json" id="slide-index">{table}</script></section>
<section><h2>Cards</h2><p class="muted">Each slide's card (thumbnail from the output, kept images, what was removed, every check, the output files' SHA-256) is on a card page of {page_size} slides, in the report's order.</p>
<ul class="plain" id="card-pages">{"".join(pages)}</ul></section>
</main><script>{_INDEX_JS}</script></body></html>
"""


# ---------------------------------------------------------------------------
# certificate


def _canonical(d: dict) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def certificate_id(body: dict) -> str:
    h = hashlib.sha256(_canonical({k: v for k, v in body.items() if k != "certificate_id"})).hexdigest()[:20].upper()
    return "WSIANON-" + "-".join(h[i : i + 5] for i in range(0, 20, 5))


def build_certificate(out: Path, data: RecordData, written: dict[str, tuple[int, str]] | None = None) -> dict:
    """The certificate's content; its reports: the JSON and HTML reports and every card page in
    OUT (what is there: a paged record's pages, :func:`card_pages`).  ``written``: ``{file: (size,
    SHA-256)}`` of record files this process just wrote (not read again while their size agrees)."""
    out = Path(out)
    pol = effective_policy(data)
    checks = ran_checks(data.slides)
    unrun = unrun_checks(data.slides)
    counts = _counts(data.slides)
    written = written or {}

    def rec(name: str) -> dict:
        p = out / name
        size = p.stat().st_size
        known = written.get(name)
        return {"file": name, "size": size, "sha256": known[1] if known and known[0] == size else sha256_file(p)}

    body = {
        "certificate": "wsianon de-identification certificate",
        "issued": data.generated,
        "tool": {"name": "wsianon", "version": data.report.get("version") or __version__, "python": data.report.get("python")},
        "libraries": data.libraries,
        "run_dates": _run_dates(data.report),
        "key_fingerprint": data.fingerprint,
        "policy": {**pol, "command_line": policy_flags(pol, _has_dicom(data)), "in_words": policy_in_words(pol, _has_dicom(data))},
        "verification_method": {
            "description": method_text(pol, data.slides),
            "checks": checks,
            # checks that did not run (a tool not installed), accepted with --accept-unrun-checks: {check: slides}
            **({"not_run_accepted": unrun} if unrun else {}),
        },
        "summary": {"slides": len(data.slides), **counts, "files": sum(len(s.files) for s in data.slides), "bytes": sum(s.size for s in data.slides)},
        "reports": [rec(REPORT_NAME), rec(REPORT_HTML), *(rec(n) for n in card_pages(out))],
        "outputs": [
            {"slide": s.slide, "format": s.format, "target": s.target, "file": f.rel, "size": f.size, "sha256": f.sha256}
            for s in data.slides
            if s.status in SHARED_STATES
            for f in s.files
        ],
        "not_shared": [{"slide": s.slide, "status": s.status, "reason": s.error} for s in data.slides if s.status not in SHARED_STATES],
    }
    body["certificate_id"] = certificate_id(body)
    return body


def certificate_pdf(cert: dict) -> bytes:
    doc = pdf.Document(title=f"wsianon certificate {cert['certificate_id']}", footer=f"{cert['certificate_id']}")
    doc.heading("De-identification certificate")
    doc.text(f"Certificate ID: {cert['certificate_id']}", bold=True)
    doc.text(f"Issued: {cert['issued']}    Tool: wsianon {cert['tool']['version']} (Python {cert['tool'].get('python')})")
    doc.text(f"Key fingerprint: {cert.get('key_fingerprint') or 'not recorded'} (one-way hash of the project key)")
    for d in cert.get("run_dates") or []:
        doc.text(f"Run: {d}")
    s = cert["summary"]
    doc.text(
        f"Slides: {s['slides']}  -  verified and shared: {s.get('ok', 0)}  -  quarantined: {s.get('quarantined', 0)}  -  error: {s.get('error', 0)}  -  "
        f"{s['files']} output file(s), {s['bytes']:,} bytes"
    )
    doc.subheading("Policy")
    doc.text(f"Command line: {cert['policy']['command_line']}", mono=True)
    for w in cert["policy"]["in_words"]:
        doc.text("- " + w)
    doc.subheading("Verification method")
    doc.text(cert["verification_method"]["description"])
    doc.text("Checks run: " + ", ".join(cert["verification_method"]["checks"]), size=8)
    unrun = cert["verification_method"].get("not_run_accepted")
    if unrun:  # (a certificate without it renders as before: certify --check compares the PDF with this rendering)
        doc.text(
            "Checks NOT RUN (accepted with --accept-unrun-checks; the slides were shared without them): "
            + ", ".join(f"{c} ({n} slide(s))" for c, n in unrun.items()),
            bold=True,
            size=8,
        )
    doc.subheading("Reports")
    for r in cert["reports"]:
        doc.text(f"{r['file']}  {r['size']:,} bytes  SHA-256 {r['sha256']}", mono=True, size=7.5)
    doc.subheading("Libraries")
    doc.text(", ".join(f"{k} {v}" for k, v in cert["libraries"].items()), size=8)
    doc.subheading(f"Outputs ({len(cert['outputs'])} files)")
    for o in cert["outputs"]:
        doc.text(f"{o['file']}  ({o['slide']}, {o['format']} -> {o['target']}, {o['size']:,} bytes)", size=8)
        doc.text(f"    SHA-256 {o['sha256']}", mono=True, size=7.5)
    if cert["not_shared"]:
        doc.subheading(f"Not shared ({len(cert['not_shared'])})")
        for n in cert["not_shared"]:
            doc.text(f"{n['slide']}: {n['status']} - {n.get('reason') or ''}", size=8)
    doc.subheading("Check and signature")
    doc.text("Confirm the outputs still match this certificate with:  wsianon certify --check <folder>", size=9)
    doc.space(10)
    for line in (
        "Reviewed by (name, role): ______________________________________________",
        "Date: ____________________      Signature: __________________________________",
    ):
        doc.text(line)
        doc.space(12)
    return doc.render()


# ---------------------------------------------------------------------------
# entry points


def card_pages(out: Path) -> list[str]:
    """The card pages in OUT (relative names, in order): files named as card pages in CARDS_DIR."""
    folder = Path(out) / CARDS_DIR
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted((f"{CARDS_DIR}/{e.name}" for e in os.scandir(folder) if _PAGE_NAME.fullmatch(e.name) and e.is_file(follow_symlinks=False)), key=_page_order)


def _load_images(out: Path, slides: list[SlideRecord], cache: _Cache) -> list[SlideRecord]:
    """The images of a paged record's ``slides`` (those not held: ``image_sig``) from the record's
    cache, or rendered again from the output when the cache lost them; returns the slides given
    images here (the caller drops them once their page is written)."""
    loaded = []
    for rec in slides:
        if rec.image_sig is None or rec.thumbnail is not None or rec.images:
            continue
        imgs = cache.images(rec.slide, rec.image_sig)
        if imgs is None:  # rendered as collect renders it (a DICOM slide: its certified instances only)
            imgs = _render_main(_verified_main(out, {"outputs": rec.outputs}, rec.files, []))
        rec.thumbnail, rec.images, rec.image_error = imgs["thumbnail"], imgs["images"], imgs["error"]
        loaded.append(rec)
    return loaded


def _remove_stale_pages(out: Path, keep: set[str]) -> None:
    """Card pages (and temp files) a previous record left in CARDS_DIR that this one did not write;
    the folder too once empty.  Other files are left where they are (``certify --check`` names them)."""
    folder = out / CARDS_DIR
    if not folder.is_dir() or folder.is_symlink():
        return
    for e in list(os.scandir(folder)):
        rel = f"{CARDS_DIR}/{e.name}"
        if (_PAGE_NAME.fullmatch(e.name) or e.name.startswith(".tmp-")) and rel not in keep and not e.is_dir(follow_symlinks=False):
            os.unlink(e.path)
    if not keep:
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: a file wsianon did not write, named by the check


def write_html(out: Path, data: RecordData, page_size: int | None = None) -> dict[str, tuple[int, str]]:
    """The HTML record: one self-contained ``wsianon-report.html`` up to the page size; beyond it,
    the card pages (written one by one, each page's images loaded and dropped with it, so what is
    held grows with the page, not the job) and the index.  Stale card pages are removed.  Returns
    ``{file: (size, SHA-256)}`` of what was written."""
    out = Path(out)
    size = page_slides(page_size)
    folder = out / CARDS_DIR
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise OutputError(folder, f"{CARDS_DIR} in OUT is not the folder of card pages wsianon writes; move it away")
    clash = sorted({s.slide for s in data.slides for o in s.outputs if o.split("/", 1)[0] in (CARDS_DIR, REPORT_HTML)})
    if clash:
        raise OutputError(out, f"{len(clash)} slide(s) have an output named like the record's own files ({CARDS_DIR}, {REPORT_HTML}); rename them")
    written: dict[str, tuple[int, str]] = {}

    def put(rel: str, text: str) -> None:
        body = text.encode("utf-8")
        write_atomic(out / rel, body)
        written[rel] = (len(body), hashlib.sha256(body).hexdigest())

    if len(data.slides) <= size:
        put(REPORT_HTML, render_html(data))
        _remove_stale_pages(out, set())
        return written
    pages = (len(data.slides) + size - 1) // size
    cache = _Cache(out)
    try:
        for no in range(1, pages + 1):
            part = data.slides[(no - 1) * size : no * size]
            loaded = _load_images(out, part, cache)
            try:
                put(card_page_name(no), render_card_page(data, part, no, pages))
            finally:
                for rec in loaded:
                    rec.thumbnail, rec.images = None, []
    finally:
        cache.close()
    _remove_stale_pages(out, set(written))
    put(REPORT_HTML, render_index(data, size))
    return written


def write_record(
    out: Path,
    key: bytes | None = None,
    on_render: Callable[[int, int], None] | None = None,
    keep: dict | None = None,
    page_size: int | None = None,
    refuse_changed: bool = False,
) -> dict[str, Path]:
    """Write the HTML report, the certificate JSON and its PDF into OUT (from the report JSON);
    ``on_render``: see :func:`collect`.  ``keep``: ``keep["record"]`` is set to what was collected
    (the review sheet written next shows the same, without collecting it again).  ``page_size``:
    see :func:`page_slides`.  The certificate is removed before anything else is written and
    written last: an interrupted record has no certificate (nothing that looks finished).
    ``refuse_changed`` (``certify``): see :func:`collect`; nothing is written then."""
    out = Path(out)
    size = page_slides(page_size)
    try:
        data = collect(out, key=key, on_render=on_render, page_size=size, refuse_changed=refuse_changed)
    except OSError as exc:
        raise OutputError(out, f"cannot read the outputs for the report/certificate: {os_reason(exc)}") from None
    if keep is not None:
        keep["record"] = data
    paths = {"html": out / REPORT_HTML, "certificate": out / CERT_JSON, "pdf": out / CERT_PDF}
    try:
        for p in (paths["certificate"], paths["pdf"]):
            if p.is_file() or p.is_symlink():
                p.unlink()
        written = write_html(out, data, size)
        cert = build_certificate(out, data, written)
        write_atomic(paths["certificate"], (json.dumps(cert, indent=2) + "\n").encode())
        write_atomic(paths["pdf"], certificate_pdf(cert))
    except OSError as exc:
        raise OutputError(out, f"cannot write the report/certificate: {os_reason(exc)}") from None
    return paths


def _read_certificate(out: Path) -> tuple[dict | None, list[str]]:
    """The certificate JSON and its own problems: unreadable, edited after issue, or a PDF beside
    it that is not the certificate's rendering (the PDF is in OUT: a signed or annotated copy saved
    over it, another PDF, is judged by nothing else)."""
    try:
        cert = json.loads((out / CERT_JSON).read_text())
        if not isinstance(cert, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as exc:
        return None, [f"{CERT_JSON}: not readable ({type(exc).__name__})"]
    problems = []
    if cert.get("certificate_id") != certificate_id(cert):
        problems.append(f"{CERT_JSON}: the certificate ID does not match its content (edited after issue)")
    if (out / CERT_PDF).exists() or (out / CERT_PDF).is_symlink():
        try:
            same = (out / CERT_PDF).is_file() and pdf.content((out / CERT_PDF).read_bytes()) == pdf.content(certificate_pdf(cert))
        except (OSError, KeyError, TypeError, ValueError, AttributeError):
            same = False
        if not same:
            problems.append(f"{CERT_PDF}: not the rendering of {CERT_JSON} (edited or replaced after issue)")
    return cert, problems


def record_file_names(out: Path) -> list[str]:
    """The record's own files present in OUT (relative names): the reports, the certificate and
    the card pages of a paged record (:func:`card_pages`; symlinks named so included)."""
    out = Path(out)
    present = [n for n in RECORD_FILES if (out / n).exists() or (out / n).is_symlink()]
    folder = out / CARDS_DIR
    if folder.is_dir() and not folder.is_symlink():
        present += sorted((f"{CARDS_DIR}/{e.name}" for e in os.scandir(folder) if _PAGE_NAME.fullmatch(e.name)), key=_page_order)
    return present


def record_file_problems(out: Path) -> dict[str, str]:
    """The record files in OUT that are not what wsianon wrote: ``{name: problem}`` for the
    certificate (JSON, PDF), the reports and the card pages it hashes (the outputs are
    ``check_certificate``'s).  Without a readable certificate no record file is vouched for."""
    out = Path(out)
    present = record_file_names(out)
    cert, problems = _read_certificate(out)
    if cert is None:
        return {n: problems[0] for n in present}
    bad = {p.split(":", 1)[0]: p for p in problems}
    reports = {e.get("file"): e for e in cert.get("reports") or [] if isinstance(e, dict)}
    for n in present:
        if n in (CERT_JSON, CERT_PDF):
            continue
        e, p = reports.get(n), out / n
        if e is None or not p.is_file() or p.is_symlink() or p.stat().st_size != e.get("size") or sha256_file(p) != e.get("sha256"):
            bad[n] = f"{n}: differs from the certificate"
    if REPORT_NAME in present and REPORT_NAME not in bad and not _job_names_nothing(out / REPORT_NAME):
        bad[REPORT_NAME] = f"{REPORT_NAME}: its job section names a file beside OUT (OUT's own folder name)"
    return {n: bad[n] for n in present if n in bad}


def _job_names_nothing(report: Path) -> bool:
    """The report's ``job`` section says where the manifest is without naming it: earlier versions
    wrote "private, beside OUT (<OUT's folder name>.wsianon-job.sqlite)" (red team B, F8: a
    per-case export, ``-o exports/S19-4711_Doe_Jane``, put the case number and name into the shared
    report).  Judged from the report alone: the text is ours, one fixed sentence."""
    try:
        job = json.loads(report.read_text()).get("job")
    except (OSError, ValueError, AttributeError):
        return False
    return job is None or (isinstance(job, dict) and job.get("manifest", MANIFEST_NOTE) == MANIFEST_NOTE)


def unlisted_entries(out: Path, listed: set[str]) -> list[str]:
    """Every entry of OUT (relative, sorted; a folder with a trailing ``/``) that is neither a
    regular file ``listed`` names, a record file, nor a folder on the way to a listed file: a file,
    an empty folder, a FIFO, socket or device, a symbolic link (to anything, also one at a listed
    name: the certificate lists files), walked without following links.  OUT is shared whole, and
    a folder's name is shared with it (red team 17: an empty folder and a FIFO named after the
    patient passed ``certify --check`` and a resumed run, which counted regular files only)."""
    out = Path(out)
    on_the_way = {p.as_posix() for rel in listed for p in Path(rel).parents if p.as_posix() != "."}
    found = []
    for root, dirs, files in os.walk(out):
        dirs.sort()
        for name in [*dirs, *files]:
            p = os.path.join(root, name)
            rel = Path(p).relative_to(out).as_posix()
            try:
                mode = os.lstat(p).st_mode
            except OSError:
                continue  # gone meanwhile
            if stat.S_ISDIR(mode):
                if rel not in on_the_way:
                    found.append(rel + "/")
            elif not stat.S_ISREG(mode) or (rel not in listed and rel not in RECORD_FILES):
                found.append(rel)
    return sorted(found)


def unlisted_files(out: Path) -> list[str]:
    """The entries of OUT (relative, sorted; :func:`unlisted_entries`) that are neither an output
    the certificate lists nor a record file (a card page counts when the certificate lists it): a
    file or folder put into OUT between two runs of a job, an output that changed after its
    verification.  Cheap: names only (``check_certificate`` re-hashes)."""
    out = Path(out)
    try:
        cert = json.loads((out / CERT_JSON).read_text())
        listed = {o.get("file") for o in cert.get("outputs") or [] if isinstance(o, dict)}
        listed |= {n for e in cert.get("reports") or [] if isinstance(e, dict) and is_card_page(n := str(e.get("file")))}
    except (OSError, ValueError, AttributeError):
        listed = set()
    return unlisted_entries(out, {str(n) for n in listed if n})


def check_certificate(out: Path) -> tuple[dict | None, list[str]]:
    """Re-hash everything the certificate lists; one line per mismatch (empty: confirmed)."""
    out = Path(out)
    cert, problems = _read_certificate(out)
    if cert is None:
        return None, problems
    listed = set()
    for entry in list(cert.get("reports") or []) + list(cert.get("outputs") or []):
        rel = entry.get("file", "")
        listed.add(rel)
        p = out / rel
        if not is_inside(p, out):
            problems.append(f"{rel}: outside the output folder")
            continue
        if not p.is_file():
            problems.append(f"{rel}: missing")
            continue
        if p.is_symlink():  # (one whose target lies inside OUT: the certificate lists files)
            problems.append(f"{rel}: a symbolic link, not the file the certificate lists")
            continue
        size = p.stat().st_size
        if size != entry.get("size"):
            problems.append(f"{rel}: size {size:,} bytes, certificate says {entry.get('size'):,}")
        elif sha256_file(p) != entry.get("sha256"):
            problems.append(f"{rel}: SHA-256 differs from the certificate")
    # every entry: a folder, a FIFO or a link is shared with OUT as much as a file (its name)
    for rel in unlisted_entries(out, {str(n) for n in listed if n}):
        if rel in listed:  # a listed name that is no regular file: said above (missing, a link)
            continue
        q = out / rel
        what = " (a folder)" if rel.endswith("/") else " (a symbolic link)" if q.is_symlink() else "" if q.is_file() else " (a FIFO, socket or device)"
        problems.append(f"{rel}: not listed in the certificate{what}")
    return cert, problems


def read_mapping(path: Path) -> list[dict]:
    rows = []
    # the mapping keeps undecodable file names as written (surrogateescape), so must its reader
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        for row in csv.DictReader(fh):
            src = row.get("source") or row.get("path")
            outs = row.get("output") or row.get("outputs") or ""
            if src:
                rows.append({"source": src, "outputs": [o.strip() for o in outs.split(";") if o.strip()], "slide": row.get("slide") or row.get("pseudonym")})
    return rows


def _dicom_series_folder(src: Path) -> Path | list[Path]:
    """The instances of a DICOM source's series (the mapping names one of its files)."""
    from wsianon.converters.dicom.series import group_series

    try:
        return next((g for g in group_series([src.parent]) if src in g), src)
    except WsianonError:
        return src


def is_inside(path: Path, folder: Path) -> bool:
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


SOURCE_KINDS = ("label", "macro", "overview")  # what the review sheet shows of a source


def _source_images(src: Path) -> dict:
    """A source's label and macro for the review sheet: ``{"images": [[kind, uri], ...], "error"}``."""
    simg = render_slide_images(_dicom_series_folder(src) if src.suffix.lower() == ".dcm" else src, thumbnail=False, kinds=SOURCE_KINDS)
    return {"images": [[k, u] for k, u in simg["images"] if k in SOURCE_KINDS], "error": simg["error"]}


def write_review_sheet(
    out: Path,
    sheet: Path,
    mapping: Path | None = None,
    quarantine: Path | None = None,
    on_render: Callable[[Path], None] | None = None,
    data: RecordData | None = None,
) -> Path:
    """The private review sheet (identifying by design): refused inside OUT, written mode 0600.
    A quarantined slide shows its quarantined output (private too), so the reviewer sees what failed.
    The sources' images (and the quarantined outputs') are rendered once and kept in the sheet's
    private cache (:mod:`wsianon.pipeline.sheetcache`); ``on_render(path)`` is called for each
    one rendered now (not found there unchanged).  ``data``: what :func:`write_record` collected
    just before (see its ``keep``); None: collected here."""
    from wsianon.pipeline.sheetcache import SheetImages, signature

    out, sheet = Path(out), Path(sheet)
    quarantine = Path(quarantine) if quarantine else out.parent / f"{out.name}.quarantine"
    if is_inside(sheet, out):
        raise OutputError(sheet, "the review sheet shows the sources' labels and macros (identifying) and is never written inside OUT")
    from wsianon.pipeline.sharedout import refuse_private_in_shared

    refuse_private_in_shared([("the review sheet", sheet)], own=out)  # nor inside another job's OUT
    mapping = Path(mapping) if mapping else out.parent / f"{out.name}.mapping.csv"
    try:
        rows = read_mapping(mapping)
    except OSError as exc:
        raise WsianonError(mapping, f"cannot read the private mapping: {os_reason(exc)}") from None
    for row in rows:  # a source (the sheet would replace the slide: inputs are never modified)
        if same_file(sheet, row["source"]):
            raise OutputError(sheet, "the review sheet path names an input slide; nothing was written there (inputs are never modified)")
    if data is None:
        data = collect(out)
    by_out: dict[str, dict] = {}
    for row in rows:
        for o in row["outputs"]:
            by_out[o] = row
        if row.get("slide"):
            by_out[row["slide"]] = row
    cache = SheetImages(sheet, out)

    salt = f"{THUMB_PX}:{ASSOC_PX}:{','.join(SOURCE_KINDS)}"  # what a render looks like: another one is not reused

    def rendered(key: bytes, path: Path, files: list[Path] | None, fn: Callable[[], dict]) -> dict:
        """``fn()`` for ``path`` (a source when ``files`` is None), or the same from the cache."""

        def render() -> dict:
            if on_render is not None:
                on_render(path)
            return fn()

        sig = cache.source_signature(path, salt) if files is None else signature(files, salt) if cache.enabled else None
        return cache.render(key, sig, render)

    record_cache = _Cache(out)  # a paged record's output images are in the record's cache, not held
    loaded = _load_images(out, data.slides, record_cache)
    record_cache.close()
    try:
        with cache:  # on an error, nothing is pruned
            cards = _sheet_cards(data, by_out, quarantine, rendered)
    finally:
        for rec in loaded:
            rec.thumbnail, rec.images = None, []
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>PRIVATE wsianon review sheet</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<style>{_CSS} .card img{{max-width:300px;max-height:240px;border:1px solid var(--bd)}} .warn{{background:#b3261e}}</style></head>
<body><header class="warn"><h1>PRIVATE — review sheet (identifying)</h1><p>Shows the sources' labels and macros and their paths. Keep it with the private mapping, never share it, delete it after review.</p></header>
<main>{"".join(cards)}</main></body></html>"""
    try:
        # undecodable file names stay visible, escaped; a sheet that would not change is not written again
        write_private_if_changed(sheet, doc.encode("utf-8", "backslashreplace"))
    except OSError as exc:
        raise OutputError(sheet, f"cannot write the review sheet: {os_reason(exc)}") from None
    return sheet


def _sheet_cards(data: RecordData, by_out: dict[str, dict], quarantine: Path, rendered) -> list[str]:
    """The review sheet's cards: each slide's source images beside its output's (``rendered(key,
    path, files, render)``: a render, or the same from the sheet's private cache)."""
    cards = []
    for s in data.slides:
        mrow = next((by_out[o] for o in s.outputs + [s.slide] if o in by_out), None)
        src = Path(mrow["source"]) if mrow else None
        if src is not None and src.exists():
            simg = rendered(b"source:" + os.fsencode(src), src, None, lambda src=src: _source_images(src))
            src_imgs = [(k, u) for k, u in simg["images"]]
            src_note = simg["error"] or ("" if src_imgs else "the source has no label or macro image")
        else:
            src_imgs, src_note = [], "source not available"
        left = "".join(f'<figure><img src="{u}" alt="source {_e(k)}"><figcaption>SOURCE {_e(k)}</figcaption></figure>' for k, u in src_imgs)
        right = f'<figure><img src="{s.thumbnail or placeholder("not shared: " + s.status)}" alt="output"><figcaption>OUTPUT slide</figcaption></figure>'
        qdir = quarantine / s.slide
        if s.status == State.QUARANTINED and qdir.is_dir():
            qfiles = sorted(p for p in qdir.rglob("*") if p.is_file() or p.is_symlink())
            qimg = rendered(b"quarantined:" + os.fsencode(qdir), qdir, qfiles, lambda qdir=qdir: _quarantined_images(qdir))
            if qimg["thumbnail"]:
                right += f'<figure><img src="{qimg["thumbnail"]}" alt="quarantined output"><figcaption>QUARANTINED output (not shared)</figcaption></figure>'
        right += "".join(f'<figure><img src="{u}" alt="kept {_e(k)}"><figcaption>OUTPUT kept {_e(k)}</figcaption></figure>' for k, u in s.images)
        cards.append(
            f'<article class="card" data-slide="{_e(s.slide)}"><h3>{_e(s.slide)} {_badge(s.status)} <span class=muted>{_e(s.format)}</span></h3>'
            f'<p class="mono">{_e(src) if src else "(no mapping row)"}</p>'
            f'<div class="grid2"><div><b>Source (identifying)</b><div class="pics">{left}</div><p class=muted>{_e(src_note)}</p></div>'
            f'<div><b>Shared output</b><div class="pics">{right}</div></div></div>'
            "<p><label><input type=checkbox> label gone and macro free of text, confirmed by eye</label></p></article>"
        )
    return cards


def _quarantined_images(qdir: Path) -> dict:
    """A quarantined output's thumbnail (the review sheet shows what failed)."""
    main = _main_output(qdir, {"outputs": sorted(p.name for p in qdir.iterdir() if p.name != "findings.json")})
    return render_slide_images(main) if main else {"thumbnail": None, "images": [], "error": None}
