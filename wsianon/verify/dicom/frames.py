"""``dicom: frames`` and ``dicom: frame segments``: every output frame proven against the source
(DICOM inputs: frame for frame; TIFF sources: tile bitstreams, re-tiled samples or a PSNR bound).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from wsianon.io import codestreams
from wsianon.io.dicomframes import decode_rgb, iter_frames
from wsianon.io.jpeg import JpegError, clean_by_known_header, dirty_segments, follows_jpeg_rules, is_jpeg, learn_clean_header, marker_name, normalized
from wsianon.verify.dicom.common import J2K_TIFF_CODECS, JPEG_TIFF_CODECS, Checks, image_kind, read_dataset
from wsianon.verify.dicom.decode import (
    JPEG_TS,
    MAX_DECODED_FRAMES,
    BLOCK,
    BLOCK_RMSE_FACTOR,
    BLOCK_RMSE_SLACK,
    MIN_PSNR_DB,
    REENCODE_MARGIN_DB,
    REENCODE_QUALITY,
    REENCODE_SUBSAMPLING,
    ReencodeBound,
    WHOLE_DECODE_BYTES,
    _crop_planes,
    _decode_planes,
    _frames_at,
    _JpegLevel,
    _OpenSlideReference,
    _sample,
    _Tally,
    _tj,
    declares_reencoding,
    first_picture,
    frame_origins,
    pictures,
)
from wsianon.verify.dicom.jpeg import ProvenHeaders, _fragments, fragments_at
from wsianon.verify.shown_levels import ShownLevels, shown_levels


def _compare_bytes(
    path: Path, ds: Dataset, page, fds: int, problems: list[str], frags: list[tuple[int, int]] | None | bool = False, absent: list[int] | None = None
) -> int:
    """Every frame against the source tile with the same index; returns frames equal.  ``frags``:
    the frames' fragments as this verifier's item walk found them (``FrameSegments.fragments``;
    None: not one fragment per frame), or False to walk the items here.  One ``pread`` a frame and
    a tile (measured cheaper than large buffers over runs of them: the small reads land in cache
    where the comparison reads them).  A tile the source leaves out (byte count 0: an un-scanned
    Philips tile, which OpenSlide draws transparent) has no bitstream to equal: its frame must be
    exactly the blank fill (``_absent_fill``); the indices of such frames go to ``absent``."""
    same = ProvenHeaders(getattr(page, "jpegtables", None)).same  # _same_mv, proven headers not parsed again
    n = 0
    offs, cnts = page.dataoffsets, page.databytecounts
    blank: list = []  # the fill a tile the source leaves out stands for (``_absent_fill``), made on first need
    with open(path, "rb") as fo:
        fdo = fo.fileno()
        located = _fragments(fdo, path, ds) if isinstance(frags, bool) else frags
        frames_iter = iter_frames(path) if located is None else (os.pread(fdo, ln, o) for o, ln in located)
        for k, fv in enumerate(frames_iter):
            if k >= len(offs):
                problems.append(f"{path.name}: more frames than source tiles")
                return n
            if cnts[k] == 0:  # a tile the source leaves out (not scanned): the frame must be the blank fill
                if not blank:
                    blank.append(_absent_fill(page, fds, ds))
                if blank[0] is None or not ProvenHeaders(None).same(blank[0], fv):
                    problems.append(f"{path.name}: frame {k} stands for a tile the source leaves out and is not the blank fill")
                    return n
                if absent is not None:
                    absent.append(k)
                n += 1
                continue
            if not same(os.pread(fds, cnts[k], offs[k]), fv):
                problems.append(f"{path.name}: frame {k} differs from source tile {k}")
                return n
            n += 1
    if n != len(offs):
        problems.append(f"{path.name}: {n} frames for {len(offs)} source tiles")
    return n


# a blank fill decodes to one grey value at least this light: opentile fills with the DC
# coefficient round(1023 / q) of luminance 1.0, which decodes within q / 16 of 255 for any DC
# quantizer q of 1..255
BLANK_MIN_VALUE = 239


def _absent_fill(page, fds: int, ds: Dataset) -> bytes | None:
    """The frame a converter reading the source with opentile writes for a tile ``page`` leaves out
    (``SparseTiledLevelImage``: the page's first stored tile, its JPEG tables spliced in, every DCT
    coefficient replaced by the DC of white; tables and headers the source's and libjpeg-turbo's),
    made here from the source with opentile's own fill encoder, and proven blank by decoding it:
    one grey value (R = G = B) in every pixel, at least ``BLANK_MIN_VALUE``.  None when it cannot be
    made or is not blank (every frame standing for such a tile then fails: nothing else proves
    what it shows).  The frame's bytes are compared with this, so they hold nothing the source's
    tables and this fill do not."""
    import numpy as np

    try:
        from opentile.jpeg.jpeg import Jpeg, find_turbojpeg_path

        cnts, offs = page.databytecounts, page.dataoffsets
        k = next(i for i, c in enumerate(cnts) if c)
        tile = os.pread(fds, cnts[k], offs[k])
        tables = getattr(page, "jpegtables", None)
        if tables is not None:
            prefix, scan = Jpeg.calculate_prefix_and_scan_offset(tile, tables, False)
            tile = Jpeg.add_jpeg_prefix(prefix, scan, tile)
        fill = bytes(Jpeg(find_turbojpeg_path()).fill_frame(tile, 1.0))
        px = np.asarray(decode_rgb(fill, ds))
    except Exception:
        return None
    if px.ndim != 3 or px.shape[:2] != (int(ds.Rows), int(ds.Columns)) or px.size == 0:
        return None
    v = int(px.flat[0])
    return fill if v >= BLANK_MIN_VALUE and bool((px == v).all()) else None


def _compare_retiled(path: Path, ds: Dataset, levels: list[_JpegLevel], wanted: list[int], problems: list[str], tally: _Tally) -> int:
    """Each wanted frame against its picture's source page (``levels``: one per picture, in the
    instance's order), decoded to raw planes, sample for sample."""
    import numpy as np

    origins = frame_origins(ds)
    per_picture = len(first_picture(ds, origins) or [])
    if origins is None or len(origins) != per_picture * len(levels):
        problems.append(f"{path.name}: frame positions cannot be determined")
        return 0
    if str(ds.file_meta.get("TransferSyntaxUID", "")) not in JPEG_TS:
        problems.append(f"{path.name}: re-tiled from JPEG but the frames are not JPEG (re-encoded without saying so)")
        return 0
    cols, rows = int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
    n = 0
    for k, fv in _frames_at(path, ds, wanted):
        x, y = origins[k]
        level = levels[k // per_picture]
        w, h = min(int(ds.Columns), cols - x), min(int(ds.Rows), rows - y)
        try:
            fplanes, fdivs = _decode_planes(level.tj, fv)
            splanes, sdivs = level.region(x, y, w, h)
        except Exception as exc:
            problems.append(f"{path.name}: frame {k} cannot be decoded for comparison ({type(exc).__name__})")
            return n
        fplanes = _crop_planes(fplanes, fdivs, 0, 0, w, h)
        tally.samples.add("RGB with block-local upsampling" if fplanes[0].ndim == 3 else "raw Y/Cb/Cr planes")
        if fdivs != sdivs or any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(fplanes, splanes)):
            problems.append(f"{path.name}: frame {k} decodes differently from the source region (not a lossless re-tiling)")
            return n
        n += 1
    return n


def _compare_reencoded(
    path: Path, ds: Dataset, ref: _OpenSlideReference, level: tuple[int, float], wanted: list[int], problems: list[str], tally: _Tally
) -> int:
    """Each wanted frame against the source region re-encoded here as the route encodes
    (``decode.ReencodeBound``): within the error that re-encode has, globally and per block."""
    origins = frame_origins(ds)
    if origins is None or len(origins) != len(first_picture(ds, origins) or []):
        problems.append(f"{path.name}: frame positions cannot be determined")
        return 0
    cols, rows = int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
    fw, fh = int(ds.Columns), int(ds.Rows)
    jpeg = str(ds.file_meta.get("TransferSyntaxUID", "")) in JPEG_TS
    n = 0
    for k, fv in _frames_at(path, ds, wanted):
        x, y = origins[k]
        w, h = min(fw, cols - x), min(fh, rows - y)
        try:
            got = decode_rgb(fv, ds)[:h, :w]
            found = _reencode_judged(got, ref, level, x, y, w, h, fw, fh, jpeg)
        except Exception as exc:
            problems.append(f"{path.name}: frame {k} cannot be decoded for comparison ({type(exc).__name__})")
            return n
        if found is None:
            problems.append(f"{path.name}: frame {k} has another shape than the source region")
            return n
        tally.note(found)
        why = found.failure()
        if why:
            problems.append(f"{path.name}: frame {k} differs from the source region beyond a lossy re-encode ({why})")
            return n
        n += 1
    return n


def _reencode_judged(got, ref, level: tuple[int, float], x: int, y: int, w: int, h: int, fw: int, fh: int, jpeg: bool) -> ReencodeBound | None:
    """The frame ``got`` judged against the source region read by OpenSlide and, at a level of a
    non-integer downsample (where OpenSlide interpolates its placement), against the level's
    exact pixels: the reading closer to the frame is the one the converter encoded."""
    import numpy as np

    bg = np.asarray(getattr(ref, "bg", (255, 255, 255)), np.uint8)

    def framed(a):
        """The region as the converter encodes it: the frame's full size, the part beyond the total
        pixel matrix the background colour (what OpenSlide renders there; no reader is asked
        for pixels outside the slide)."""
        if a.shape[:2] != (fh, fw):
            full = np.empty((fh, fw, 3), np.uint8)
            full[...] = bg
            full[:h, :w] = a
            a = full
        return np.asarray(a.mean(axis=2), np.uint8) if got.ndim == 2 else a

    region = ref.region(level[0], level[1], x, y, w, h)
    if region.shape[:2] != (h, w):
        return None
    source = framed(region)
    if got.shape != source[:h, :w].shape:
        return None
    best = ReencodeBound(got, source, w, h, jpeg)
    if getattr(ref, "exact_region", None) is not None:
        exact = ref.exact_region(level[0], level[1], x, y, w, h)
        if exact is not None and exact.shape[:2] == (h, w):
            other = ReencodeBound(got, framed(exact), w, h, jpeg)
            if (not other.failure(), other.frame_psnr - other.own_psnr) > (not best.failure(), best.frame_psnr - best.own_psnr):
                best = other
    return best


def _source_pictures(pages: list, size: tuple[int, int], n: int) -> list | None:
    """The source pages of ``size`` that are the ``n`` focal planes of one level, in the order a
    TILED_FULL instance holds its pictures (Z offset rising: NDPI tag 65424), or None when the
    source has not exactly ``n`` such pages."""
    from wsianon.verify.planes import LENS, Z_OFFSET, number

    same = [pg for pg in pages if (pg.imagewidth, pg.imagelength) == size and (number(pg.tags.valueof(LENS)) or 0) > 0]
    z = [number(pg.tags.valueof(Z_OFFSET) or 0) for pg in same]
    if len(same) != n or any(v is None or v != v for v in z):
        return None
    return [pg for _z, _k, pg in sorted(zip(z, range(len(same)), same))]


NOT_THE_SLIDE = "the DICOM pyramid is not the slide OpenSlide shows"


def _plan_levels(volumes: list[tuple[Path, Dataset]], pages: list, problems: list[str], shown: ShownLevels | str) -> list[tuple]:
    """How each VOLUME instance is proven: (mode, path, ds, source pages: one per picture) with
    mode "bytes" (passed through), "re-tiled" (JPEG, decoded sample for sample) or "re-encoded"
    (declared lossy). An instance of several pictures (an NDPI z-stack's focal planes) is proven
    re-tiled only, each picture against its own source page.

    ``shown`` (``verify.shown_levels``): the page OpenSlide reads for each of its levels. A level
    passed through or re-tiled is proven against that page only, never against any page of its
    size (red team stop 40: an NDPI's macro first in the IFD chain, a hidden focal plane, a Leica
    fluorescence image OpenSlide does not show were each the DICOM pyramid, proven against
    themselves); the page OpenSlide reads as level 0 (of the region written) must be written, and a
    re-encoded pyramid must hold OpenSlide's level 0 (``check_frames_converted``: its frames are
    compared with OpenSlide's own rendering of the level of their size)."""
    plan = []
    by_page = shown.pages() if isinstance(shown, ShownLevels) else {}
    written: set[int] = set()  # pages OpenSlide reads for a level, written as a level
    regions: set[int] = set()
    for path, ds in volumes:
        size = (int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows))
        n = pictures(ds)
        if declares_reencoding(ds) and n == 1:
            plan.append(("re-encoded", path, ds, [None]))
            continue
        if not isinstance(shown, ShownLevels):
            why = shown or "OpenSlide's levels of the source are not known"
            problems.append(f"{path.name}: {why}: which source page is the level cannot be told")
            continue
        own = [k for k, pg in enumerate(pages) if k in by_page and (pg.imagewidth, pg.imagelength) == size]
        if len(own) != 1:
            problems.append(
                f"{path.name}: not a level OpenSlide shows of the source: no source page OpenSlide reads for a level of its size "
                "to prove its frames against (and no re-encode declared)"
            )
            continue
        page = pages[own[0]]
        written.add(own[0])
        regions.add(by_page[own[0]])
        if n > 1:
            stack = _source_pictures(pages, size, n)
            if stack is None or declares_reencoding(ds) or any(int(pg.compression) not in JPEG_TIFF_CODECS for pg in stack):
                problems.append(f"{path.name}: {n} focal planes or optical paths, and no JPEG source level page for each to prove them against")
                continue
            if not any(pg is page for pg in stack):
                problems.append(f"{path.name}: its focal planes do not include the page OpenSlide shows for the level")
                continue
            plan.append(("re-tiled", path, ds, stack))
            continue
        codec = int(page.compression)
        same_tiling = (
            page.is_tiled and getattr(page, "jpegheader", None) is None and (int(page.tilewidth), int(page.tilelength)) == (int(ds.Columns), int(ds.Rows))
        )
        if same_tiling and codec in JPEG_TIFF_CODECS | J2K_TIFF_CODECS:
            plan.append(("bytes", path, ds, [page]))
        elif codec in JPEG_TIFF_CODECS:
            plan.append(("re-tiled", path, ds, [page]))
        else:
            problems.append(f"{path.name}: source codec {codec} cannot be passed through, yet no re-encode is declared")
    if isinstance(shown, ShownLevels) and not problems:
        bases = shown.bases()
        if any(bases.get(r) not in written for r in regions):
            problems.append(f"the page OpenSlide shows as level 0 is not written as a level: {NOT_THE_SLIDE}")
    return plan


class _Sources:
    """The source as the comparisons read it: the TIFF file (passed-through and re-tiled levels)
    and, opened on first need, a pixel reference (OpenSlide, else the format's own reader)."""

    def __init__(self, source: Path, frame_reference, whole_limit: int):
        import tifffile

        self.source, self.frame_reference, self.whole_limit = source, frame_reference, whole_limit
        self.tf = None
        self.pages: list = []
        try:
            self.tf = tifffile.TiffFile(source)
            self.pages = list(self.tf.pages)
        except Exception:
            self.tf = None
        self.fs = open(source, "rb") if self.tf is not None else None
        self.ref: _OpenSlideReference | None = None
        self.tj = None
        self.reencoded_levels: set[int] = set()  # OpenSlide's levels the re-encoded frames were compared with

    def shown(self) -> ShownLevels | str:
        """OpenSlide's levels of the source and the page it reads for each (``shown_levels``)."""
        return shown_levels(self.source, self.pages if self.tf is not None else [])

    def reference(self, name: str, problems: list[str]):
        if self.ref is None:
            try:
                self.ref = _OpenSlideReference(self.source)
            except Exception as exc:
                # a format OpenSlide does not read may bring its own reader (iSyntax: pyisyntax)
                try:
                    self.ref = self.frame_reference(self.source) if self.frame_reference is not None else None
                except Exception:
                    self.ref = None
                if self.ref is None:
                    problems.append(f"{name}: re-encoded, and OpenSlide cannot read the source to compare ({type(exc).__name__})")
        return self.ref

    def close(self) -> None:
        for h in (self.fs, self.tf, self.ref):
            if h is not None:
                h.close()


def _compare_level(src: _Sources, mode: str, path: Path, ds: Dataset, pages: list, wanted: list[int], problems: list[str], t: _Tally) -> int | None:
    """Frames of one level compared in ``mode`` (``pages``: the source page of each picture);
    None when the level cannot be proven at all."""
    if mode == "re-tiled":
        assert src.fs is not None  # re-tiled levels come from the TIFF source, which is open
        levels = [_JpegLevel(src.fs.fileno(), page, src.tj, src.whole_limit) for page in pages]
        for level in levels:
            if level.unsupported:
                problems.append(f"{path.name}: re-tiled from the source but not provable: {level.unsupported}")
                return None
            t.hows.add(level.how)
        return _compare_retiled(path, ds, levels, wanted, problems, t)
    ref = src.reference(path.name, problems)
    if ref is None:
        return None
    lv = ref.level_for(int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows))
    if lv is None:
        problems.append(f"{path.name}: re-encoded, and the source has no level of the same size")
        return None
    src.reencoded_levels.add(lv[0])
    return _compare_reencoded(path, ds, ref, lv, wanted, problems, t)


def _frames_summary(tallies: dict[str, _Tally], sampled: bool, max_decoded: int) -> str:
    parts = []
    b, r, e = tallies["bytes"], tallies["re-tiled"], tallies["re-encoded"]
    if b.levels:
        parts.append(f"{b.frames} frames of {b.levels} levels equal the source tile bitstreams")
    if r.levels:
        parts.append(
            f"{r.frames} frames of {r.levels} levels re-tiled by the converter, not re-encoded: decoded "
            f"{' / '.join(sorted(r.samples)) or 'samples'} equal the source region's sample for sample, "
            f"both decoded by libjpeg-turbo ({'; '.join(sorted(r.hows))})"
        )
    if e.levels:
        bound = []
        if e.worst_margin != float("inf"):
            bound.append(
                f"as close to it as the route's own re-encode of the same region (JPEG quality {REENCODE_QUALITY}, "
                f"{REENCODE_SUBSAMPLING}): worst frame {e.worst_margin:+.1f} dB against that re-encode's PSNR "
                f"(allowed -{REENCODE_MARGIN_DB}), worst {BLOCK}x{BLOCK} block {max(e.worst_excess, 0.0):.1f} grey levels "
                f"RMSE beyond {BLOCK_RMSE_FACTOR:g}x the re-encode's there (allowed {BLOCK_RMSE_SLACK:g})"
            )
        if e.flat:
            bound.append(f"frames not JPEG: PSNR >= {MIN_PSNR_DB:.0f} dB")
        parts.append(
            f"{e.frames} frames of {e.levels} levels re-encoded (lossy; declared as Lossy Compression): decoded pixels compared "
            f"with the source read by OpenSlide (worst PSNR {e.worst:.1f} dB), {'; '.join(bound)}"
        )
    if sampled:
        dec = r.total + e.total
        parts.append(f"decoded comparisons sampled: {r.frames + e.frames} of {dec} frames, evenly spread (slide beyond the {max_decoded}-frame budget)")
    return "; ".join(parts)


def check_frames_converted(
    source: Path,
    frame_reference,
    outputs: list[tuple[Path, Dataset]],
    verdict: Checks,
    max_decoded: int = MAX_DECODED_FRAMES,
    whole_limit: int = WHOLE_DECODE_BYTES,
    fragments: dict | None = None,
) -> None:
    """``dicom: frames`` for a slide converted from another format (see the section comment in
    ``decode.py``).  ``frame_reference``: the format's own reader of the source for re-encoded
    frames when OpenSlide cannot read it (iSyntax: pyisyntax), or None.  ``fragments``: the
    instances' frame fragments as ``FrameSegments`` found them (walked here when absent)."""
    volumes = [(p, ds) for p, ds in outputs if image_kind(ds) == "VOLUME"]
    if not volumes:
        verdict.add("dicom: frames", False, "no VOLUME instance in the output")
        return
    problems: list[str] = []
    tallies = {"bytes": _Tally(), "re-tiled": _Tally(), "re-encoded": _Tally()}
    sampled = False
    absent: list[int] = []  # frames standing for tiles the source leaves out, proven the blank fill
    src = _Sources(Path(source), frame_reference, whole_limit)
    try:
        plan = _plan_levels(volumes, src.pages, problems, src.shown())
        decoded_total = sum(int(ds.get("NumberOfFrames", 1) or 1) for m, _p, ds, _x in plan if m != "bytes")
        src.tj = _tj() if any(m == "re-tiled" for m, *_ in plan) else None
        for mode, path, ds, pages in plan:
            if problems:
                break
            n_frames = int(ds.get("NumberOfFrames", 1) or 1)
            t = tallies[mode]
            t.levels += 1
            t.total += n_frames
            try:
                if mode == "bytes":
                    assert src.fs is not None  # passed-through levels come from the TIFF source, which is open
                    frags = (fragments or {}).get(path, False)
                    t.frames += _compare_bytes(path, ds, pages[0], src.fs.fileno(), problems, frags, absent)
                    continue
                wanted = _sample(n_frames, max(2, max_decoded * n_frames // max(decoded_total, 1)))
                sampled |= len(wanted) < n_frames
                got = _compare_level(src, mode, path, ds, pages, wanted, problems, t)
            except Exception as exc:  # a reader failing is a failed proof, never a crash
                problems.append(f"{path.name}: frames could not be compared ({type(exc).__name__})")
                continue
            if got is None:
                continue
            t.frames += got
            if not problems and got != len(wanted):
                problems.append(f"{path.name}: {got} of {len(wanted)} frames compared")
    finally:
        src.close()
    if not problems and tallies["re-encoded"].levels and not (tallies["bytes"].levels or tallies["re-tiled"].levels) and 0 not in src.reencoded_levels:
        # a re-encoded pyramid without the level OpenSlide shows as level 0 (a page-level pyramid is held to its level 0 page in _plan_levels)
        problems.append(f"no level is OpenSlide's level 0 of the source: {NOT_THE_SLIDE}")
    if problems:
        verdict.add("dicom: frames", False, "; ".join(problems[:5]))
        return
    summary = _frames_summary(tallies, sampled, max_decoded)
    if absent:
        # not counted: how many tiles a source leaves out is the source's choice (no source-chosen number in a detail)
        summary += " (frames standing for tiles the source leaves out: each exactly the blank fill, which decodes uniform white)"
    verdict.add("dicom: frames", True, summary)


def _frame_key(ds: Dataset) -> tuple:
    return (
        image_kind(ds),
        int(ds.get("TotalPixelMatrixColumns", 0) or 0),
        int(ds.get("TotalPixelMatrixRows", 0) or 0),
        int(ds.get("NumberOfFrames", 1) or 1),
        int(ds.get("Rows", 0)),
        int(ds.get("Columns", 0)),
        str(ds.file_meta.get("TransferSyntaxUID", "")),
    )


def _digest_frames(path: Path, scrub: bool = False) -> list[bytes]:
    """sha256 per frame (``scrub``: of the frame as a correct redaction leaves it, its
    non-essential JPEG payloads zeroed — the source side)."""
    ts = _codestream_ts(path) if scrub else None
    bits = _native_sample_bits(path) if scrub else None
    if bits is not None:  # native samples: their unused bits zeroed, as a correct redaction leaves them
        size = bits.allocated // 8
        return [hashlib.sha256(bits.canonical(f) if len(f) % size == 0 else f).digest() for f in iter_frames(path)]
    return [hashlib.sha256((codestreams.zeroed(f, ts) if ts else normalized(f)[0]) if scrub else f).digest() for f in iter_frames(path)]


def _native_sample_bits(path: Path):
    """The unused bits of a native instance's samples (``io.dicomframes.sample_bits``), or None
    (encapsulated, every bit used, or bits that do not fit: those frames are compared as they are)."""
    from wsianon.io.dicomframes import pixel_value_offset, sample_bits

    try:
        ds, voff, length = pixel_value_offset(path)
        return None if voff is None or length == 0xFFFFFFFF else sample_bits(ds)
    except Exception:
        return None


def check_frame_segments(files: list[Path], verdict: Checks) -> None:
    """No JPEG frame keeps a COM / APPn payload (anything but JFIF and Adobe); every instance
    read here (``FrameSegments`` takes the bytes from the verifier's read-back instead)."""
    FrameSegments([]).check(verdict, files)


class FrameSegments:
    """``dicom: frame segments`` fed from the verifier's single read-back of the outputs.

    Built before the read-back: each instance's frame fragments are located by this module's
    own walk of the output's item headers (``_fragments``; never the converter's bookkeeping),
    and a ``tileid.Feeder`` per instance takes the bytes from the read-back's buffers
    (``scan_outputs(..., feeders=segments.feeders_for(files))``).  ``check`` then judges each
    instance from its feeder; an instance that was not fed (not among the read-back's files)
    is read here, and anything the streamed judgement cannot prove clean is judged frame by
    frame (``_frame_segments``), which names the dirty frame."""

    def __init__(self, files: list[Path]):
        self.files = [Path(f) for f in files]
        self._feeders: dict[Path, tuple | None] = {}  # None: not streamable (judged by the walk)
        self.fragments: dict[Path, list[tuple[int, int]] | None] = {}  # for ``dicom: frames`` (the same walk)
        for path in self.files:
            try:
                frags = _located(path)
            except Exception:
                continue  # judged (and named as unreadable, if it is) by the walk in ``check``
            self.fragments[path] = frags
            self._feeders[path] = _feeder_for(frags)

    def feeders_for(self, paths: list[Path]) -> dict[Path, object]:
        """The feeders keyed by ``paths``' own spelling of the instances (the read-back's keys)."""
        real = {os.path.realpath(p): fed[0] for p, fed in self._feeders.items() if fed is not None}
        return {p: real[os.path.realpath(p)] for p in paths if os.path.realpath(p) in real}

    def check(self, verdict: Checks, files: list[Path] | None = None) -> None:
        bad: list[str] = []
        frames = 0
        for path in self.files if files is None else [Path(f) for f in files]:
            try:
                ts = _codestream_ts(path)
                if ts:  # JPEG 2000 / JPEG-LS: their own marker walks (io.codestreams)
                    frames += _codestream_segments(path, ts, bad)
                    continue
                fed = self._feeders[path] if path in self._feeders else _segment_feeder(path)
                n = _judge_streamed(path, *fed) if fed is not None else None
                if n is not None and _jpeg_family(path):
                    n = _all_start_with_soi(path, n, bad, self.fragments.get(path))
                frames += n if n is not None else _frame_segments(path, bad, _jpeg_family(path))
            except Exception as exc:
                bad.append(f"{path.name}: frames unreadable ({type(exc).__name__})")
        verdict.add(
            "dicom: frame segments",
            not bad,
            "; ".join(bad[:5]) if bad else f"{frames} frames: no JPEG comment or application segment with content",
        )


def _frame_segments_streamed(path: Path) -> int | None:
    """The frame count when every frame of ``path`` is one fragment and provably clean, judged
    in one sequential read with the tile identity's vectorised JPEG check (``tileid.Feeder``:
    a frame ``normalized`` would change has a non-essential payload that is not all zeros).
    None when that cannot be shown this way (frames not one fragment each, out of order, a
    frame over ``SCRUB_MAX``, a frame that does not parse, or any frame found dirty): ``_frame_segments`` then judges the
    file frame by frame and names what it finds."""
    fed = _segment_feeder(path)
    return _judge_streamed(path, *fed) if fed is not None else None


def _segment_feeder(path: Path):
    """(feeder, frame count) for ``path``'s frames as one "page" of one-fragment tiles located by
    this module's own item walk; None when the layout cannot be streamed."""
    return _feeder_for(_located(path))


def _located(path: Path) -> list[tuple[int, int]] | None:
    """Each frame's single fragment, by this verifier's own walk of the instance's items (the header
    parsed once: frame count and where Pixel Data starts); None when not one fragment per frame."""
    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(fh, stop_before_pixels=True)
        return fragments_at(fh.fileno(), fh.tell(), ds)


def _feeder_for(frags: list[tuple[int, int]] | None):
    import numpy as np

    from wsianon.verify import tileid

    if not frags:
        return None
    page = tileid.Page(0, 0, np.array([o for o, _ in frags], dtype=np.uint64), np.array([n for _, n in frags], dtype=np.uint64), True, None)
    f = tileid.Feeder([page], scrub=True)
    if not f.streamable:
        return None
    return f, len(frags)


def _judge_streamed(path: Path, f, n: int) -> int | None:
    """``n`` when the feeder ``f`` (fed with all of ``path``, or fed here when it was not fed at
    all) found every frame clean; None otherwise."""
    from wsianon.verify import tileid

    if f.fed == 0:
        tileid.feed_file(path, f)
    f.finish(path)
    st = f.states[0]
    if st.changed or st.unchecked or st.short or st.malformed:
        return None
    return n


def _frames_of(path: Path):
    """Every frame's bytes: one fragment per frame read straight from its item (offsets from the
    item headers), else pydicom's frame generator."""
    ds = read_dataset(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        frags = _fragments(fd, path, ds)
        for off, ln in frags or []:
            yield os.pread(fd, ln, off)
    finally:
        os.close(fd)
    if frags is None:
        yield from iter_frames(path)


def _codestream_ts(path: Path) -> str | None:
    """The transfer syntax when ``path``'s frames are JPEG 2000 or JPEG-LS, else None."""
    ts = str(read_dataset(path).file_meta.get("TransferSyntaxUID", ""))
    return ts if ts in codestreams.J2K_TS or ts in codestreams.JPEGLS_TS else None


def _codestream_segments(path: Path, ts: str, bad: list[str]) -> int:
    """JPEG 2000 / JPEG-LS frames: no COM (or JPEG-LS APPn) payload and no byte after the
    codestream's end may be non-zero; a frame whose markers cannot be followed fails (closed)."""
    n = 0
    for i, f in enumerate(_frames_of(path)):
        n += 1
        found = codestreams.dirty(f, ts)
        if found is None:
            bad.append(f"{path.name} frame {i}: codestream that cannot be followed to its end")
            break
        if found:
            bad.append(f"{path.name} frame {i}: comment or application segment (or bytes after the end) with content")
            break
    return n


# transfer syntaxes whose every frame is a JPEG stream (SOI first): baseline, extended, lossless
JPEG_FAMILY_TS = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"})


def _jpeg_family(path: Path) -> bool:
    return str(read_dataset(path).file_meta.get("TransferSyntaxUID", "")) in JPEG_FAMILY_TS


def _all_start_with_soi(path: Path, n: int, bad: list[str], frags: list[tuple[int, int]] | None = None) -> int:
    """The streamed judgement proves the JPEG frames clean; a frame that is no JPEG stream at all
    (no SOI) is not judged there: each located frame's first two bytes are read here (``frags``:
    the frames as this verifier's item walk located them; walked here when not given)."""
    frags = (frags if frags is not None else _located(path)) or []
    fd = os.open(path, os.O_RDONLY)
    try:
        for i, (off, ln) in enumerate(frags):
            if ln < 2 or os.pread(fd, 2, off) != b"\xff\xd8":
                bad.append(f"{path.name} frame {i}: not a JPEG stream in a JPEG transfer syntax")
                break
    finally:
        os.close(fd)
    return n


def _frame_segments(path: Path, bad: list[str], jpeg_only: bool = False) -> int:
    """``jpeg_only``: the instance's transfer syntax is a JPEG one, so a frame that is not a JPEG
    stream (no SOI: bytes no segment walk can judge) fails."""
    known: list[bytes] = []  # headers of frames found clean: their repeats need no walk
    n = 0
    for i, f in enumerate(_frames_of(path)):
        n += 1
        if not is_jpeg(f):
            if jpeg_only:
                bad.append(f"{path.name} frame {i}: not a JPEG stream in a JPEG transfer syntax")
            continue
        if clean_by_known_header(f, known):
            continue
        try:
            dirty = dirty_segments(f)
        except JpegError as exc:
            if follows_jpeg_rules(f):
                # a JPEG frame that cannot be followed to its end (a truncated segment, a table
                # after the last scan) or not in the one form the walk accepts (fill bytes, a
                # standalone marker outside a scan, a restart interval no scan reaches or defined
                # twice, restart markers other than the interval asks for): what it carries cannot
                # be proven.  The walk's reason is named when it holds no number (a number read
                # from the frame would carry its bits into the report)
                why = str(exc)
                bad.append(f"{path.name} frame {i}: JPEG stream that cannot be followed to its end" + ("" if any(c.isdigit() for c in why) else f" ({why})"))
            continue  # other codecs (JPEG-LS): judged by the frame checks
        if dirty:
            bad.append(f"{path.name} frame {i}: {', '.join(sorted({marker_name(s.marker) for s in dirty}))}")
        else:
            learn_clean_header(f, known)
    return n


def check_frames_dicom(sources: list[Path], outputs: list[tuple[Path, Dataset]], verdict: Checks) -> None:
    by_key: dict[tuple, list[Path]] = {}
    for s in sources:
        try:
            by_key.setdefault(_frame_key(read_dataset(s)), []).append(s)
        except Exception:
            continue
    problems, frames = [], 0
    for path, ds in outputs:
        cands = by_key.get(_frame_key(ds), [])
        out_d = _digest_frames(path)
        if not any(_digest_frames(c, scrub=True) == out_d for c in cands):
            problems.append(f"{path.name}: no source instance with identical frames")
        frames += len(out_d)
    if problems:
        verdict.add("dicom: frames", False, "; ".join(problems[:5]))
    else:
        verdict.add("dicom: frames", True, f"{frames} frames in {len(outputs)} instances identical to the source frames (non-essential JPEG payloads zeroed)")
