"""Conversion of non-DICOM slides to DICOM WSI through wsidicomizer, then the Annex E engine.

wsidicomizer (opentile for SVS/NDPI/Philips/SCN/BIF-style TIFFs, OpenSlide otherwise) writes the
instances into a temporary folder inside the staging folder with ``include_confidential=False``,
no LABEL (or our blank one for ``--label blank``) and no OVERVIEW (unless ``--macro keep``), and
UIDs from a keyed, deterministic generator.  The Annex E engine runs as wsidicomizer's metadata
post-processor, followed by a value-based scrub: any element still holding one of the source's
identifying values (the native inventory's canaries and the file stem) is given a dummy, blanked or
removed by its Type and reported by keyword.  What wsidicom adds while writing is fixed by a
same-length header rewrite in place (or a streaming rewrite, Pixel Data copied byte for byte).
With a ``FrameScrub`` (ingest.py; the pipeline passes one), the frames' JPEG COM / APPn payloads
are zeroed as wsidicom writes them, judged exactly as ``scrub_frames`` judges a written instance.

Pixels: opentile sources pass tiles through (NDPI strips are re-tiled by joining JPEG restart
intervals, not re-encoded).  Pixel-reading sources (tiffslide for BIF, OpenSlide for MRXS) decode and
re-encode every frame (lossy JPEG): the report says ``transcoded``, and every such instance declares
it in-band with a DerivationCodeSequence item (DCM 113040 "Lossy Compression"), which is what lets the
verifier compare its frames with a lossy-re-encode tolerance instead of demanding identity.

Refused up front, with a one-line reason: BIF whose EncodeInfo declares overlapping scanner tiles
(wsidicomizer reads BIF through tiffslide, which does not stitch overlaps, so the DICOM pyramid would
not be the slide OpenSlide and the scanner show).  A thumbnail the native inventory removes (MRXS
preview with a barcode) is not written as a THUMBNAIL instance.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import re
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from wsianon.converters.base import Inventory, SlideContext
from wsianon.io.keyed import keyed_uid
from wsianon.converters.dicom.engine import Engine
from wsianon.converters.dicom.ingest import FrameScrub
from wsianon.converters.dicom.series import _KIND_ORDER, DicomResult, _image_kind, finalize_meta, slide_identity
from wsianon.converters.dicom.stream import header_bytes, read_header, write_instance
from wsianon.converters.registry import DicomVia, spec_of
from wsianon.profiles.actions import Action
from wsianon.profiles.dicom import profile_for_policy
from wsianon.errors import WsianonError, CorruptInput, UnsupportedFormat
from wsianon.io import icc
from wsianon.io.jpeg_images import blank_size_ok
from wsianon.io.plan import Removal
from wsianon.io.scan import Scanner
from wsianon.verify import keyedtokens

log = logging.getLogger(__name__)


class KeyedUidGenerator:
    """UIDs ``2.25.<HMAC(key, slide, n)>`` in generation order: the same slide and key give the same UIDs."""

    def __init__(self, key: bytes, slide: str):
        self._key, self._slide = key, slide
        self._n = itertools.count()
        self._lock = threading.Lock()

    def __call__(self) -> UID:
        with self._lock:
            n = next(self._n)
        return UID(keyed_uid(self._key, f"{self._slide}\0{n}", "convert"))

    def instance(self, n: int) -> UID:
        """The SOP Instance UID of the ``n``-th instance in output order.  wsidicom asks
        ``__call__`` for instance UIDs from its writer threads, in whichever order they run, so
        two runs of one slide could swap two levels' UIDs; these replace them (``_place_instances``)."""
        return UID(keyed_uid(self._key, f"{self._slide}\0instance\0{n}", "convert"))


def _reason(exc: Exception) -> str:
    """A one-line reason that names no value from the file (messages may quote paths or metadata)."""
    msg = str(exc).lower()
    if "pixel spacing" in msg or "mpp" in msg:
        return "cannot convert to DICOM: the slide states no pixel spacing (MPP), which DICOM WSI requires; give it with --mpp"
    if "not supported" in msg or "could not find" in msg or "no source" in msg:
        return "cannot convert to DICOM: no wsidicomizer source reads this format"
    return f"cannot convert to DICOM: wsidicomizer failed to read the slide ({type(exc).__name__})"


def _blank_label(wsi):
    from PIL import Image

    size = (512, 256)
    try:
        size = wsi.read_label().size
    except Exception:
        pass
    if not blank_size_ok(size):  # no label's size (a damaged header's): the default stand-in
        size = (512, 256)
    return Image.new("RGB", size, (255, 255, 255))


def _set_blank_label(wsi) -> None:
    """Make our blank image the slide's only label, for ``save(include_labels=True)``.

    Not through ``save(label=...)``: wsidicom builds that LABEL instance by updating the
    pyramid's base dataset in place, so level 0 is then written as a malformed LABEL (and no
    level 0). Here the label is built from a copy of level 0's (already de-identified) dataset."""
    import copy

    from wsidicom.instance import WsiInstance
    from wsidicom.series import Labels

    base = copy.deepcopy(wsi.levels[0].default_instance.dataset.as_dataset())
    instance = WsiInstance.create_label(_blank_label(wsi), base)
    wsi._labels = Labels.open([instance])


def _instances(group) -> list:
    inst = getattr(group, "instances", None)
    if inst is None:
        return []
    return list(inst.values()) if isinstance(inst, dict) else list(inst)


def _reencoded_images(wsi) -> tuple[list[str], set[tuple[str, int, int]]]:
    """(pyramid levels wsidicomizer re-encodes, {(kind, columns, rows)} of every re-encoded image).

    An image is re-encoded when its image data has a transcoder (opentile passes tiles through and
    has none; tiffslide/OpenSlide sources decode and encode every frame)."""
    levels: list[str] = []
    images: set[tuple[str, int, int]] = set()

    def visit(kind: str, group, name: str | None = None) -> None:
        for inst in _instances(group):
            data = inst.image_data
            if getattr(data, "transcoder", None) is not None:
                size = data.image_size
                images.add((kind, int(size.width), int(size.height)))
                if name:
                    levels.append(name)

    for pyramid in getattr(wsi, "pyramids", None) or [wsi.levels]:
        for i, level in enumerate(pyramid):
            visit("VOLUME", level, f"level {i}")
        for thumb in getattr(pyramid, "thumbnails", None) or []:
            visit("THUMBNAIL", thumb)
    for label in getattr(wsi, "labels", None) or []:
        visit("LABEL", label)
    for overview in getattr(wsi, "overviews", None) or []:
        visit("OVERVIEW", overview)
    return sorted(set(levels)), images


# Tiles wsidicom reads and writes per batch when every pyramid level passes its tiles through.
# wsidicom's default is each source's ``suggested_minimum_chunk_size``, 1 for tiled TIFF levels
# (then 2: one thread-pool task, queue item and writer call per two tiles).  Measured on a
# 0.6 GB generated Aperio slide, bare ``WsiDicomizer`` conversion time: default 2.3-2.9 s,
# 8 tiles 1.3 s, 16 tiles 1.04-1.08 s, 32 tiles 0.95-1.02 s, 64 tiles 1.3-1.6 s; peak RSS
# 160 MB default, 181-188 MB at 16, 226 MB at 32.  The frames, their order (raster order either
# way) and so the instances are byte-identical (tested).  Memory: wsidicom keeps up to 2 x its
# threads batches in flight (its threads: ``workers``, by default one a CPU), so the batch shrinks
# on machines with many CPUs to keep at most ``MAX_INFLIGHT_TILES`` compressed tiles in flight
# (16 tiles up to 8 CPUs, 8 at 16, wsidicom's 2 from 64).
PASSTHROUGH_CHUNK = 16
MAX_INFLIGHT_TILES = 256


def passthrough_chunk(wsi, transcoded: list[str], workers: int | None = None) -> int | None:
    """The ``chunk_size`` for ``wsi.save``: up to ``PASSTHROUGH_CHUNK`` (see above) when no
    pyramid level is re-encoded (decoded tiles would multiply the memory in flight) and every
    level's source suggests single-tile reads (NDPI suggests whole stripes: its own choice is
    kept); otherwise None, wsidicom's default.  ``workers``: wsidicom's threads (None: a CPU each)."""
    if transcoded:
        return None
    for pyramid in getattr(wsi, "pyramids", None) or [wsi.levels]:
        for level in pyramid:
            for inst in _instances(level):
                if getattr(inst.image_data, "suggested_minimum_chunk_size", None) != 1:
                    return None
    threads = workers or os.cpu_count() or 1
    return max(2, min(PASSTHROUGH_CHUNK, MAX_INFLIGHT_TILES // (2 * threads)))


def refuse_route(source: Path, inv: Inventory) -> None:
    """Refuse, before anything is written, a slide the format's DICOM route cannot convert
    faithfully (its spec: a refused route, or the format's own refusal, e.g. overlapping BIF tiles)."""
    route = spec_of(inv.format).dicom
    if route.via is DicomVia.REFUSED:
        raise UnsupportedFormat(source, route.reason)
    if route.refuse is not None:
        route.refuse(source)


FOREIGN_PYRAMID = (
    "cannot convert to DICOM: wsidicomizer's reader would build the DICOM pyramid from pages that are not the "
    "levels OpenSlide shows of this slide (another image, the macro or a focal plane OpenSlide does not show); "
    "refused, nothing written; use --target native"
)


def _tiff_page_index(data) -> int | None:
    """The IFD index of the TIFF page an opentile level image reads, or None (a pixel-reading source)."""
    page = getattr(getattr(data, "_tiff_image", None), "_page", None)
    idx = getattr(page, "index", None)
    return idx if isinstance(idx, int) else None


def refuse_foreign_pyramid(source: Path, wsi) -> None:
    """Refuse, before anything is written, a pyramid wsidicomizer's reader builds from pages that
    are not OpenSlide's levels of the source (``verify.shown_levels``: the page OpenSlide reads for
    each level). opentile takes tifffile's first series of an NDPI (a macro or a focal plane
    OpenSlide never shows, first in the IFD chain, became the DICOM pyramid) and the widest
    non-macro image of a Leica SCN, whatever its illumination (a fluorescence image OpenSlide does
    not show): red team stop 40. Each pyramid's level 0 must hold the page OpenSlide reads for a
    region's level 0, and every level the page OpenSlide reads for one of that region's levels
    (other pages of a level only of its size: focal planes, which ``dicom: pyramid`` judges). A
    pixel-reading source (tiffslide, OpenSlide) has no pages here: its levels must have OpenSlide's
    levels' sizes, level 0 first (``dicom: frames`` compares its frames with OpenSlide's own
    rendering of the level of their size)."""
    from wsianon.verify.shown_levels import ShownLevels, shown_levels

    pyramids = [
        [[_tiff_page_index(inst.image_data) for inst in _instances(level)] for level in pyramid] for pyramid in (getattr(wsi, "pyramids", None) or [wsi.levels])
    ]
    found = [i for pyramid in pyramids for level in pyramid for i in level]
    if not any(i is not None for i in found):
        _refuse_foreign_pixel_pyramid(source, wsi)
        return
    shown = shown_levels(source)
    if not isinstance(shown, ShownLevels) or any(i is None for i in found):
        raise UnsupportedFormat(source, FOREIGN_PYRAMID)
    by_page, bases, sizes = shown.pages(), shown.bases(), shown.page_sizes
    for pyramid in pyramids:
        region: int | None = None
        for level in pyramid:
            pages = [i for i in level if i is not None]
            own = [i for i in pages if i in by_page and (region is None or by_page[i] == region)]
            if len(own) != 1 or any(sizes.get(i) != sizes.get(own[0]) for i in pages):
                raise UnsupportedFormat(source, FOREIGN_PYRAMID)
            if region is None:  # the pyramid's level 0: the page OpenSlide reads for a region's level 0
                region = by_page[own[0]]
                if bases.get(region) != own[0]:
                    raise UnsupportedFormat(source, FOREIGN_PYRAMID)


def _refuse_foreign_pixel_pyramid(source: Path, wsi) -> None:
    """A pixel-reading source (tiffslide for BIF, OpenSlide for MRXS): every level's size must be
    one of OpenSlide's levels (within its bounds, as ``dicom: frames`` places it), each pyramid's
    level 0 OpenSlide's level 0. Where OpenSlide cannot read the source (iSyntax) its own reader is
    the reference and nothing is asked here."""
    from wsianon.verify.dicom.decode import _OpenSlideReference

    try:
        ref = _OpenSlideReference(source)
    except Exception:
        return
    try:
        for pyramid in getattr(wsi, "pyramids", None) or [wsi.levels]:
            for n, level in enumerate(pyramid):
                for inst in _instances(level):
                    size = inst.image_data.image_size
                    lv = ref.level_for(int(size.width), int(size.height))
                    if lv is None or n == 0 and lv[0] != 0:
                        raise UnsupportedFormat(source, FOREIGN_PYRAMID)
    finally:
        ref.close()


def missing_levels_note(source: Path, inv: Inventory, written: list[tuple[int, int]]) -> str | None:
    """A report note naming, by index only, OpenSlide's levels of the source that the DICOM output
    does not have (the converter's reader exposes only levels whose downsample is a power of two),
    or None. The levels are the pages OpenSlide reads for them (``verify.shown_levels``; a Leica
    SCN: the region written), never tifffile's first series (an SCN's can be the removed macro),
    and no size is named: the source chooses them (red team stop 40: "1979x1201", a birth date, as
    a macro level's size in OUT's report). Levels OpenSlide computes from a page (an NDPI's JPEG
    scaling) are no stored level: not counted, and the stored levels are numbered 0, 1, ... in
    OpenSlide's order."""
    from wsianon.verify.shown_levels import ShownLevels, shown_levels

    shown = shown_levels(source)
    if not isinstance(shown, ShownLevels):
        return None
    have = set(written)
    if shown.chains:
        sizes = shown.page_sizes
        chain = next((c for c in shown.chains if c and c[0] is not None and sizes.get(c[0]) in have), shown.chains[0])
        levels = list(enumerate(sizes.get(i) for i in chain if i is not None))  # stored levels, numbered in order
        missing = [k for k, size in levels if size not in have]
    else:  # OpenSlide reads the slide itself (MRXS): its levels are the converter's source
        levels = list(enumerate(shown.dims))
        missing = [k for k, size in levels if size not in have] if len(written) < len(levels) else []
    if not missing:
        return None
    named = ", ".join(f"level {k}" for k in missing)
    return (
        f"pyramid incomplete: the source has {len(levels)} levels, the DICOM output {len(written)}; not built: {named} "
        "(wsidicomizer's reader exposes only levels whose downsample is a power of two); viewers "
        "compute the missing resolutions from the levels present"
    )


TURBOJPEG_HINT = (
    "libturbojpeg is not installed: the DICOM target needs it to pass JPEG tiles through without "
    "re-encoding (without it they would be decoded and re-encoded lossy); install it: "
    "apt-get install libturbojpeg0"
)


def require_turbojpeg() -> None:
    """Refuse a DICOM-target conversion up front when libturbojpeg cannot be loaded."""
    try:
        from opentile.jpeg.jpeg import find_turbojpeg_path
        from turbojpeg import TurboJPEG

        TurboJPEG(str(find_turbojpeg_path()))
    except Exception:
        raise WsianonError(None, TURBOJPEG_HINT) from None


def _mpp_metadata(source: Path, policy) -> dict:
    """``--mpp``: the pixel spacing as wsidicomizer user metadata (only asked for when the slide
    states none, see :func:`_reason`). An sRGB ICC profile is declared as color space SRGB, which
    wsidicom would otherwise derive as a name too long for CS."""
    mpp = getattr(policy, "mpp", None)
    if not mpp:
        return {}
    from wsidicom.geometry import SizeMm

    mm = float(mpp) / 1000.0
    return _user_metadata(_icc_optical_paths(source, srgb_only=True), SizeMm(mm, mm))


def _user_metadata(paths: list, spacing=None) -> dict:
    """wsidicomizer user metadata: empty modules but the pyramid's optical paths (and pixel spacing)."""
    from wsidicom.metadata import Equipment, Image, Label, Patient, Pyramid, Series, Slide, Study, WsiMetadata

    image = Image(pixel_spacing=spacing) if spacing is not None else Image()
    md = WsiMetadata(
        study=Study(),
        series=Series(),
        patient=Patient(),
        equipment=Equipment(),
        slide=Slide(),
        pyramid=Pyramid(image=image, optical_paths=paths),
        label=Label(),
    )
    return {"metadata": md}


def _icc_optical_paths(source: Path, srgb_only: bool = False) -> list:
    """A user optical path whose color space stands in for the one wsidicom derives from the
    source's ICC description (a name, often longer than CS allows, which fails the conversion):
    SRGB for an sRGB profile, else a placeholder the post-processor removes (not a defined term)."""
    from wsidicom.metadata import OpticalPath

    try:
        import tifffile

        with tifffile.TiffFile(source) as tf:
            page0 = tf.pages[0]
            assert isinstance(page0, tifffile.TiffPage), "the first page is always a TiffPage"
            icc = page0.tags.valueof(34675)
    except Exception:
        return []
    if icc is None:
        return []
    if b"sRGB" in bytes(icc)[:1024]:
        return [OpticalPath(color_space="SRGB")]
    return [] if srgb_only else [OpticalPath(color_space="ANONYMIZED")]


def _icc_metadata(source: Path) -> dict:
    """wsidicomizer user metadata with only ``_icc_optical_paths`` (empty: the source has no ICC)."""
    paths = _icc_optical_paths(source)
    return _user_metadata(paths) if paths else {}


# the fields that say when a slide was scanned, by the last word of their inventory name, best
# first: Philips/iSyntax, MRXS, Leica XML, Aperio's ImageDescription "Date", TIFF DateTime (306)
ACQUISITION_DATES = ("dicom_acquisition_datetime", "slide_creationdatetime", "slide_utc_creationdatetime", "creationdate", "date", "datetime")


def source_year(inv: Inventory) -> str | None:
    """The scan's year from the native inventory's acquisition-date fields (``--dates year``), or
    None. Only the fields :data:`ACQUISITION_DATES` names count: any field whose name holds
    "date" took an Aperio ``Birth Date`` key written before ``Date`` for the scan's date, and
    every DICOM date became the birth year (red team stop 39)."""
    from wsianon.profiles.policy import year_only

    ranked = []
    for f in inv.fields:
        leaf = re.sub(r"^(?:tag \d+ |xml )", "", re.split(r"[:/.]", f.name)[-1].lower())
        if leaf in ACQUISITION_DATES and f.value and (y := year_only(str(f.value))):
            ranked.append((ACQUISITION_DATES.index(leaf), y))
    return min(ranked)[1] if ranked else None


def source_scanner(inv: Inventory) -> Scanner:
    """The identifying values the byte scan looks for (inventory canaries and the file stem)."""
    from wsianon.io.scan import stem_canaries

    return Scanner(inv.canaries() + stem_canaries(Path(inv.path)))


RESERVE = 160  # header bytes reserved (as trailing ST spaces) for what is added after writing


def _declare_reencoded(ds: Dataset) -> None:
    """PS3.3 C.7.6.1 Derivation Code Sequence: CID 7203 (DCM 113040) Lossy Compression."""
    seq = list(ds.get("DerivationCodeSequence") or [])
    if any(str(i.get("CodeValue", "")) == "113040" for i in seq):
        return
    item = Dataset()
    item.CodeValue = "113040"
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = "Lossy Compression"
    ds.DerivationCodeSequence = Sequence(seq + [item])
    ds.LossyImageCompression = "01"


def _blank_frames(path: Path) -> bool:
    """True when every frame of the instance decodes to one uniform colour (our blank label)."""
    import numpy as np

    from wsianon.io.dicomframes import decode_rgb, iter_frames

    ds, _span = read_header(path)
    n = 0
    for frame in iter_frames(path):
        a = decode_rgb(frame, ds)
        if a.size == 0 or not np.all(a == a.flat[0]):
            return False
        n += 1
    return n > 0


def _zero_origin(ds) -> None:
    """The image's origin in the slide coordinate system at (0, 0) mm (Z offset and orientation
    kept).  wsidicomizer takes it from the source: an NDPI's offset from the slide centre (tags
    65422/65423, which the native route zeroes) became TotalPixelMatrixOriginSequence's X and Y,
    a free number of the source's in a structural attribute (red team stop 40).  A shared slide
    needs no place on the glass.  Every instance of a conversion gets the same origin, so the
    levels stay aligned; wsidicomizer writes TILED_FULL instances (no per-frame positions)."""
    for item in ds.get("TotalPixelMatrixOriginSequence") or []:
        item.XOffsetInSlideCoordinateSystem = "0"
        item.YOffsetInSlideCoordinateSystem = "0"


def _post_write_fixups(ds, engine: Engine, scanner: Scanner | None = None, reencoded: set | None = None, instance: tuple[int, str] | None = None) -> None:
    """What wsidicom sets while writing, after our post-processor ran; the re-encode declaration
    (the image size is known only now); the value scrub once more over the final header.
    ``instance``: (InstanceNumber, SOP Instance UID) from the output order, the same in every run."""
    if instance is not None:
        ds.InstanceNumber = instance[0]
        ds.SOPInstanceUID = instance[1]
    for kw in ("InstanceCreationDate", "InstanceCreationTime", "InstanceCreatorUID"):
        if kw in ds:
            delattr(ds, kw)
            engine._log(kw, Action.REMOVE)
    kind = _image_kind(ds)
    size = (int(ds.get("TotalPixelMatrixColumns", 0) or ds.get("Columns", 0) or 0), int(ds.get("TotalPixelMatrixRows", 0) or ds.get("Rows", 0) or 0))
    if reencoded and (kind or "VOLUME", *size) in reencoded:
        _declare_reencoded(ds)
    engine.scrub(ds, scanner)  # also without canaries: a scanner's name is judged itself
    _zero_origin(ds)
    items = ds.get("ContributingEquipmentSequence") or []
    if items and "ContributionDescription" in items[-1]:
        items[-1].ContributionDescription = str(items[-1].ContributionDescription).rstrip(" ")
    if kind == "OVERVIEW":  # an overview shows the label (PS3.3 C.8.12.4.1.1): say so truthfully
        ds.BurnedInAnnotation = "YES"
        ds.SpecimenLabelInImage = "YES"
        from pydicom.sequence import Sequence

        seq = ds.get("DeidentificationMethodCodeSequence") or []
        ds.DeidentificationMethodCodeSequence = Sequence([i for i in seq if str(i.get("CodeValue")) != "113101"])
        meth = ds.get("DeidentificationMethod")
        if meth is not None:
            vals = list(meth) if not isinstance(meth, str) else [meth]
            ds.DeidentificationMethod = [v for v in vals if "Clean Pixel" not in str(v)]
    elif kind == "LABEL":  # only our blank label is ever kept (see _blank_frames)
        ds.BurnedInAnnotation = "NO"
        ds.SpecimenLabelInImage = "YES"  # required for LABEL images (it stands in for the label)
        for kw in ("LabelText", "BarcodeValue"):  # Slide Label module, Type 2
            if kw not in ds:
                setattr(ds, kw, "")
    finalize_meta(ds)


def _fix_header_in_place(
    path: Path, engine: Engine, scanner: Scanner | None = None, reencoded: set | None = None, instance: tuple[int, str] | None = None
) -> bool:
    """Apply :func:`_post_write_fixups` by rewriting the header in place, same length (our
    ContributionDescription, written with RESERVE trailing spaces, absorbs the difference as ST
    trailing spaces), so the pixel data is never copied. False: the caller must rewrite the file."""
    ds, span = read_header(path, walk=False)  # only where Pixel Data starts: the verifier walks the items
    _post_write_fixups(ds, engine, scanner, reencoded, instance)
    if span is None:
        return False
    new = header_bytes(ds)
    delta = span.offset - len(new)
    items = ds.get("ContributingEquipmentSequence") or []
    if delta < 0 or delta % 2 or delta > 900 + RESERVE or not items:
        return False
    if delta:
        item = items[-1]
        item.ContributionDescription = str(item.get("ContributionDescription", "")) + " " * delta
        new = header_bytes(ds)
    if len(new) != span.offset:
        return False
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, new, 0)
    finally:
        os.close(fd)
    return True


def convert_slide(source: Path, inv: Inventory, ctx: SlideContext, out_dir: Path, workers: int | None = None, frames: FrameScrub | None = None) -> DicomResult:
    """Convert ``source`` (a non-DICOM slide, ``inv`` from its native converter) into de-identified
    DICOM WSI instances in ``out_dir``.

    The engine (and the value scrub) runs as wsidicomizer's metadata post-processor, so each
    instance is written once; the few attributes wsidicom adds while writing are removed by an
    in-place, same-length header rewrite. Pixel data is never read back or copied.
    ``frames``: installed while wsidicom writes, it scrubs the frames' JPEG segments as they are
    written and records which instances it saw whole (``frames.outcome(result.files)``).
    """
    source = Path(source)
    out_dir = Path(out_dir)
    refuse_route(source, inv)
    route = spec_of(inv.format).dicom
    if route.preflight is not None:  # e.g. iSyntax: read through pyisyntax (libisyntax), or refused with the reason
        route.preflight(source)
    scanner = source_scanner(inv)
    # a thumbnail the native route would remove (e.g. an MRXS preview showing a barcode) is not written
    keep_thumbnail = ctx.policy.thumbnail != "remove" and not any(i.kind == "thumbnail" and i.action is not Action.KEEP for i in inv.images)
    # an MRXS preview (SlidePreview) is a photo of the glass, not the slide downsampled: a THUMBNAIL
    # instance must be the slide (``dicom: thumbnail``), so it is not written either
    preview = inv.format == "mrxs" and any(i.kind == "thumbnail" for i in inv.images)
    keep_thumbnail = keep_thumbnail and not preview
    out_dir.mkdir(parents=True, exist_ok=True)
    policy = ctx.policy
    result = DicomResult()
    profile = profile_for_policy(policy)
    identity = slide_identity(ctx, None, None)
    if profile.date_mode == "year":  # the converter's dates are not the scan's: the source's own year
        identity = dataclasses.replace(identity, source_year=source_year(inv) or "")
    engine = Engine(profile, ctx.key, identity, foreign=keyedtokens.of_inventory(inv, inv.canaries()))
    result.identity, result.profile = identity, profile
    tmp = Path(tempfile.mkdtemp(prefix=".wsidicomizer-", dir=out_dir))
    try:
        uids = KeyedUidGenerator(ctx.key, ctx.pseudonym)
        post = _post_processor(engine, scanner)
        if frames is None:
            conv = _convert(source, policy, uids, post, tmp / "conv", workers, keep_thumbnail, result)
        else:
            with frames.installed(tmp / "conv"):
                conv = _convert(source, policy, uids, post, tmp / "conv", workers, keep_thumbnail, result)
        _report_associated(result, inv, policy, conv)
        files = _written_instances(source, conv.created, policy)
        _place_instances(files, out_dir, engine, scanner, conv.reencoded, result, uids)
        if frames is not None:
            for (*_f, written), final in zip(files, result.files[-len(files) :] if files else []):
                frames.moved(written, final)
        if preview:
            result.removals.append(Removal("image", "thumbnail", "not written (an MRXS preview is no downsample of the slide)"))
        elif policy.thumbnail == "remove":
            result.removals.append(Removal("image", "thumbnail", "not written (--thumbnail remove)"))
        elif not keep_thumbnail:
            result.removals.append(Removal("image", "thumbnail", "not written (the native inventory removes it)"))
        note = missing_levels_note(source, inv, [(w, h) for _o, w, h, kind, _p in files if kind == "VOLUME"])
        if note:
            result.notes.append(note)
        _report_engine_and_pixels(result, engine, conv.transcoded, route.passthrough_note)
        return result
    except BaseException:
        for p in result.files:
            p.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _post_processor(engine: Engine, scanner: Scanner):
    """wsidicomizer's metadata post-processor: every dataset de-identified before it is written."""

    def post(dataset, _metadata):
        kind = _image_kind(dataset) or "VOLUME"
        for op in getattr(dataset, "OpticalPathSequence", None) or []:
            if "ICCProfile" in op:  # closed world: colour data kept, every ICC text emptied
                op.ICCProfile = icc.sanitize(bytes(op.ICCProfile), compact=True)[0]
            if "ColorSpace" in op and str(op.ColorSpace).upper() not in ("SRGB", "ADOBERGB", "ROMMRGB"):
                del op.ColorSpace  # wsidicom copies the ICC description here: only defined terms stay
        engine.apply(dataset)
        engine.scrub(dataset, scanner)
        if kind == "OVERVIEW":
            dataset.BurnedInAnnotation = "YES"
            dataset.SpecimenLabelInImage = "YES"
        elif kind == "LABEL":  # only our blank label is kept
            dataset.BurnedInAnnotation = "NO"
            dataset.SpecimenLabelInImage = "YES"
        engine.record(dataset, clean_pixel_data=kind != "OVERVIEW")
        item = dataset.ContributingEquipmentSequence[-1]
        item.ContributionDescription = str(item.ContributionDescription) + " " * RESERVE
        return dataset

    return post


@dataclasses.dataclass
class _Converted:
    """What wsidicomizer wrote, and what its reader said about the source."""

    created: list
    transcoded: list
    reencoded: object
    had_label: bool
    had_overview: bool


def _open(source: Path, policy, uids, post, result: DicomResult):
    """wsidicomizer's reader of the source (with --mpp when the slide states no pixel spacing)."""
    from wsidicomizer import WsiDicomizer

    try:
        try:
            return WsiDicomizer.open(source, include_confidential=False, uid_generator=uids, metadata_post_processor=post)
        except Exception as exc:
            extra = _mpp_metadata(source, policy) if "--mpp" in _reason(exc) else {}
            if not extra and isinstance(exc, ValueError):  # e.g. an ICC description too long for ColorSpace
                icc_md = _icc_metadata(source)
                if icc_md:
                    return WsiDicomizer.open(source, include_confidential=False, uid_generator=uids, metadata_post_processor=post, **icc_md)
            if not extra:  # a slide's own pixel spacing always wins over --mpp
                raise
            wsi = WsiDicomizer.open(source, include_confidential=False, uid_generator=uids, metadata_post_processor=post, **extra)
            assert policy.mpp is not None, "_mpp_metadata returns {} without --mpp"
            result.notes.append(f"pixel spacing: the slide states none; --mpp {float(policy.mpp):g} µm/pixel used")
            return wsi
    except Exception as exc:
        raise UnsupportedFormat(source, _reason(exc)) from None


def _convert(source: Path, policy, uids, post, conv: Path, workers, keep_thumbnail: bool, result: DicomResult) -> _Converted:
    """Write the instances wsidicomizer makes (only the associated images the policy keeps)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wsi = _open(source, policy, uids, post, result)
        with wsi:
            refuse_foreign_pyramid(source, wsi)
            from wsianon.converters.dicom.levels import align_levels

            align_levels(getattr(i, "image_data", None) for lvl in wsi.levels for i in _instances(lvl))  # non-integer downsamples
            transcoded, reencoded = _reencoded_images(wsi)
            had_label = bool(list(getattr(wsi, "labels", None) or []))
            had_overview = bool(list(getattr(wsi, "overviews", None) or []))
            if policy.label == "blank":
                _set_blank_label(wsi)
            try:
                created = wsi.save(
                    conv,
                    uid_generator=uids,
                    workers=workers,
                    chunk_size=passthrough_chunk(wsi, transcoded, workers) if os.environ.get("WSIANON_DICOM_CHUNK") != "default" else None,
                    include_labels=policy.label == "blank",
                    include_overviews=policy.macro == "keep",
                    include_thumbnails=keep_thumbnail,
                )
            except OSError as exc:
                raise CorruptInput(source, f"conversion to DICOM failed: {exc.strerror or type(exc).__name__}") from None
            except Exception as exc:
                raise UnsupportedFormat(source, _reason(exc)) from None
    return _Converted(list(created), transcoded, reencoded, had_label, had_overview)


def _report_associated(result: DicomResult, inv: Inventory, policy, conv: _Converted) -> None:
    """Label and macro/overview as the report says them (the native inventory knows associated
    images wsidicomizer's reader may not expose, e.g. the BIF label)."""
    inv_label = any(i.kind == "label" for i in inv.images)
    inv_overview = any(i.kind in ("macro", "overview", "wholeslide") for i in inv.images)
    if conv.had_label or inv_label:
        result.removals.append(Removal("image", "label", "replaced by blank" if policy.label == "blank" else Action.REMOVE.done))
    if (conv.had_overview or inv_overview) and (policy.macro != "keep" or not conv.had_overview):
        result.removals.append(Removal("image", "macro/overview", Action.REMOVE.done))
        if policy.macro == "keep":
            result.notes.append("--macro keep: the overview could not be kept (wsidicomizer's reader for this format does not expose it)")
    if policy.macro == "keep" and conv.had_overview:
        result.notes.append("WARNING: the OVERVIEW image was kept (--macro keep); it may show the slide label")


def _written_instances(source: Path, created: list, policy) -> list[tuple]:
    """The instances written, checked against the policy (a LABEL only as our blank one, an
    OVERVIEW only with --macro keep), as (order, width, height, kind, path) in output order."""
    files = []
    blank_labels = 0
    for p in sorted(Path(str(c)) for c in created):
        ds, _span = read_header(p, walk=False)  # the header only (the verifier walks the items)
        kind = _image_kind(ds) or "VOLUME"
        if kind == "LABEL" and policy.label != "blank" or kind == "OVERVIEW" and policy.macro != "keep":
            raise UnsupportedFormat(source, f"wsidicomizer wrote a {kind} instance although asked not to; refused")
        if kind == "LABEL":  # only our blank label may be written: prove it by its pixels
            if blank_labels or not _blank_frames(p):
                raise UnsupportedFormat(source, "wsidicomizer wrote a LABEL instance that is not the blank label; refused")
            blank_labels += 1
        files.append((_KIND_ORDER.get(kind, 9), -int(ds.get("TotalPixelMatrixColumns", 0) or 0), int(ds.get("TotalPixelMatrixRows", 0) or 0), kind, p))
    files.sort(key=lambda t: t[:2])
    return [(o, -w, h, kind, p) for o, w, h, kind, p in files]


def _place_instances(
    files: list[tuple], out_dir: Path, engine: Engine, scanner: Scanner, reencoded, result: DicomResult, uids: KeyedUidGenerator | None = None
) -> None:
    """Each instance's header fixed after writing (in place when it fits), then named NNNN-kind.dcm;
    with ``uids``, its InstanceNumber and SOP Instance UID follow that output order."""
    for n, (_o, _w, _h, kind, p) in enumerate(files, 1):
        dest = out_dir / f"{n:04d}-{kind.lower()}.dcm"
        instance = (n, uids.instance(n)) if uids is not None else None
        if _fix_header_in_place(p, engine, scanner, reencoded, instance):
            os.replace(p, dest)
        else:  # header grew: stream a rewritten copy (pixel data copied byte for byte)
            ds, span = read_header(p)
            _post_write_fixups(ds, engine, scanner, reencoded, instance)
            write_instance(ds, p, span, dest)
        result.files.append(dest)
        result.frame_map.append((None, dest))


def _report_engine_and_pixels(result: DicomResult, engine: Engine, transcoded: list, passthrough_note: str) -> None:
    """The engine's removals and value scrub, and whether pixels were passed through or transcoded."""
    result.removals.extend(engine.removals.values())
    scrubbed = sorted({r.name for r in engine.removals.values() if r.action.endswith("held a source value")})
    if scrubbed:
        result.notes.append(
            f"value scrub: {len(scrubbed)} attribute(s) still held a source value after the Annex E "
            f"profile and were given a dummy, blanked or removed by their Type: {', '.join(scrubbed)}"
        )
    if transcoded:
        result.transcoded = True
        result.notes.append(
            "transcoded: wsidicomizer decoded and re-encoded " + ", ".join(transcoded) + " with its default "
            "encoder (lossy JPEG), because its reader for this format yields pixels rather than tiles or the "
            "source codec is not allowed in DICOM; declared in each such instance as DerivationCodeSequence "
            "DCM 113040 Lossy Compression"
        )
    else:
        result.notes.append(passthrough_note)
