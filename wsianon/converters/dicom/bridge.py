"""Conversion of non-DICOM slides to DICOM WSI through wsidicomizer, then the Annex E engine.

wsidicomizer (opentile for SVS/NDPI/Philips/SCN/BIF-style TIFFs, OpenSlide otherwise) writes the
instances into a temporary folder inside the staging folder with ``include_confidential=False``,
no LABEL (or our blank one for ``--label blank``) and no OVERVIEW (unless ``--macro keep``), and
UIDs from a keyed, deterministic generator.  Every instance then goes through the same streaming
rewrite as DICOM inputs (header de-identified, Pixel Data copied byte for byte) into the staging
folder, and the temporary folder is removed.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

from pydicom.uid import UID

from wsianon.converters.base import Inventory, SlideContext
from wsianon.converters.dicom.keys import keyed_uid
from wsianon.converters.dicom.engine import Engine
from wsianon.converters.dicom.series import _KIND_ORDER, DicomResult, _image_kind, finalize_meta, slide_identity
from wsianon.converters.dicom.stream import header_bytes, read_header, write_instance
from wsianon.profiles.dicom import profile_for_policy
from wsianon.errors import CorruptInput, UnsupportedFormat
from wsianon.io.plan import Removal

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


def _reason(exc: Exception) -> str:
    """A one-line reason that names no value from the file (messages may quote paths or metadata)."""
    msg = str(exc).lower()
    if "pixel spacing" in msg or "mpp" in msg:
        return "cannot convert to DICOM: the slide states no pixel spacing (MPP), which DICOM WSI requires"
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
    return Image.new("RGB", size, (255, 255, 255))


def _transcoded_levels(wsi) -> list[str]:
    out = []
    try:
        for p, pyramid in enumerate(wsi.pyramids):
            for i, level in enumerate(pyramid):
                for inst in level.instances.values() if isinstance(level.instances, dict) else level.instances:
                    if getattr(inst.image_data, "transcoder", None) is not None:
                        out.append(f"level {i}")
    except Exception:  # introspection only: when unsure, say so
        try:
            for i, level in enumerate(wsi.levels):
                if getattr(level.default_instance.image_data, "transcoder", None) is not None:
                    out.append(f"level {i}")
        except Exception:
            out.append("unknown")
    return sorted(set(out))


def _post_write_fixups(ds, engine: Engine) -> None:
    """What wsidicom sets while writing, after our post-processor ran."""
    for kw in ("InstanceCreationDate", "InstanceCreationTime", "InstanceCreatorUID"):
        if kw in ds:
            delattr(ds, kw)
            engine._log(kw, "X")
    kind = _image_kind(ds)
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
    elif kind == "LABEL":  # only our blank label is ever written
        ds.BurnedInAnnotation = "NO"
        ds.SpecimenLabelInImage = "NO"
    finalize_meta(ds)


def _fix_header_in_place(path: Path, engine: Engine) -> bool:
    """Remove what wsidicom adds after our post-processor (InstanceCreationDate/Time) by rewriting
    the header in place, same length (our ContributionDescription absorbs the difference as ST
    trailing spaces), so the pixel data is never copied. False: the caller must rewrite the file."""
    ds, span = read_header(path)
    _post_write_fixups(ds, engine)
    if span is None:
        return False
    new = header_bytes(ds)
    delta = span.offset - len(new)
    items = ds.get("ContributingEquipmentSequence") or []
    if delta < 0 or delta % 2 or delta > 900 or not items:
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


def convert_slide(source: Path, inv: Inventory, ctx: SlideContext, out_dir: Path, workers: int | None = None) -> DicomResult:
    """Convert ``source`` (a non-DICOM slide, ``inv`` from its native converter) into de-identified
    DICOM WSI instances in ``out_dir``.

    The engine runs as wsidicomizer's metadata post-processor, so each instance is written once;
    the few attributes wsidicom adds while writing are removed by an in-place, same-length header
    rewrite. Pixel data is never read back or copied.
    """
    from wsidicomizer import WsiDicomizer

    source = Path(source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    policy = ctx.policy
    result = DicomResult()
    profile = profile_for_policy(policy)
    identity = slide_identity(ctx, None, None)
    engine = Engine(profile, ctx.key, identity)
    result.identity, result.profile = identity, profile
    seen_kinds: list[str] = []

    def post(dataset, _metadata):
        kind = _image_kind(dataset) or "VOLUME"
        seen_kinds.append(kind)
        engine.apply(dataset)
        if kind == "OVERVIEW":
            dataset.BurnedInAnnotation = "YES"
            dataset.SpecimenLabelInImage = "YES"
        elif kind == "LABEL":  # only our blank label reaches here
            dataset.BurnedInAnnotation = "NO"
            dataset.SpecimenLabelInImage = "NO"
        engine.record(dataset, clean_pixel_data=kind != "OVERVIEW")
        return dataset

    tmp = Path(tempfile.mkdtemp(prefix=".wsidicomizer-", dir=out_dir))
    uids = KeyedUidGenerator(ctx.key, ctx.pseudonym)
    try:
        conv = tmp / "conv"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                wsi = WsiDicomizer.open(source, include_confidential=False, uid_generator=uids, metadata_post_processor=post)
            except Exception as exc:
                raise UnsupportedFormat(source, _reason(exc)) from None
            with wsi:
                transcoded = _transcoded_levels(wsi)
                label = _blank_label(wsi) if policy.label == "blank" else None
                had_label = bool(list(getattr(wsi, "labels", None) or []))
                had_overview = bool(list(getattr(wsi, "overviews", None) or []))
                try:
                    created = wsi.save(
                        conv,
                        uid_generator=uids,
                        workers=workers,
                        include_labels=policy.label == "blank",
                        include_overviews=policy.macro == "keep",
                        include_thumbnails=True,
                        label=label,
                    )
                except OSError as exc:
                    raise CorruptInput(source, f"conversion to DICOM failed: {exc.strerror or type(exc).__name__}") from None
                except Exception as exc:
                    raise UnsupportedFormat(source, _reason(exc)) from None
        if had_label:
            result.removals.append(Removal("image", "label", "replaced by blank" if policy.label == "blank" else "removed"))
        if had_overview and policy.macro != "keep":
            result.removals.append(Removal("image", "macro/overview", "removed"))
        if policy.macro == "keep" and had_overview:
            result.notes.append("WARNING: the OVERVIEW image was kept (--macro keep); it may show the slide label")
        files = []
        for p in sorted(Path(str(c)) for c in created):
            ds, _span = read_header(p)
            kind = _image_kind(ds) or "VOLUME"
            if kind == "LABEL" and policy.label != "blank" or kind == "OVERVIEW" and policy.macro != "keep":
                raise UnsupportedFormat(source, f"wsidicomizer wrote a {kind} instance although asked not to; refused")
            files.append((_KIND_ORDER.get(kind, 9), -int(ds.get("TotalPixelMatrixColumns", 0) or 0), kind, p))
        files.sort(key=lambda t: t[:2])
        for n, (_o, _w, kind, p) in enumerate(files, 1):
            dest = out_dir / f"{n:04d}-{kind.lower()}.dcm"
            if _fix_header_in_place(p, engine):
                os.replace(p, dest)
            else:  # header grew: stream a rewritten copy (pixel data copied byte for byte)
                ds, span = read_header(p)
                _post_write_fixups(ds, engine)
                write_instance(ds, p, span, dest)
            result.files.append(dest)
            result.frame_map.append((None, dest))
        result.removals.extend(engine.removals.values())
        if transcoded:
            result.transcoded = True
            result.notes.append("transcoded: wsidicomizer re-encoded " + ", ".join(transcoded) + " (source codec not allowed in DICOM)")
        else:
            result.notes.append("pyramid tiles passed through without re-encoding")
        return result
    except BaseException:
        for p in result.files:
            p.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
