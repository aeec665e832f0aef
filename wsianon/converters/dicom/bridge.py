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
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

from pydicom.uid import UID

from wsianon.converters.base import Inventory, SlideContext
from wsianon.converters.dicom.keys import keyed_uid
from wsianon.converters.dicom.series import DicomResult, process_instances
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


def convert_slide(source: Path, inv: Inventory, ctx: SlideContext, out_dir: Path, workers: int | None = None) -> DicomResult:
    """Convert ``source`` (a non-DICOM slide, ``inv`` from its native converter) into de-identified
    DICOM WSI instances in ``out_dir``."""
    from wsidicomizer import WsiDicomizer

    source = Path(source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    policy = ctx.policy
    result = DicomResult()
    tmp = Path(tempfile.mkdtemp(prefix=".wsidicomizer-", dir=out_dir))
    uids = KeyedUidGenerator(ctx.key, ctx.pseudonym)
    try:
        conv = tmp / "conv"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                wsi = WsiDicomizer.open(source, include_confidential=False, uid_generator=uids)
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
        files = sorted(Path(str(p)) for p in created)
        if had_label:
            result.removals.append(Removal("image", "label", "replaced by blank" if policy.label == "blank" else "removed"))
        if had_overview and policy.macro != "keep":
            result.removals.append(Removal("image", "macro/overview", "removed"))
        process_instances(files, ctx, out_dir, result, "", keep_label=policy.label == "blank")
        # conversion outputs are compared with the source's tiles by the verifier, not with tmp files
        result.frame_map = [(None, dest) for _src, dest in result.frame_map]
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
