"""``dicom: record``, ``dicom: images`` and ``dicom: barcodes``: the de-identification record,
which associated images remain, and that none of them shows a barcode.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from wsianon.io import barcodes
from wsianon.io.dicomframes import decode_rgb
from wsianon.verify.dicom.common import Checks, image_kind
from wsianon.verify.dicom.decode import Part, _frames_at, first_picture, frame_origins, whole_count, whole_frames_at
from wsianon.verify.dicom.profile import _is_deid_item


def check_record_and_images(dsets: list[tuple[Path, Dataset]], policy, verdict: Checks) -> None:
    rec_bad, img_bad = [], []
    for path, ds in dsets:
        codes = {str(i.get("CodeValue", "")) for i in ds.get("DeidentificationMethodCodeSequence") or []}
        if str(ds.get("PatientIdentityRemoved", "")) != "YES" or "113100" not in codes:
            rec_bad.append(f"{path.name}: PatientIdentityRemoved/DeidentificationMethodCodeSequence")
        if not str(ds.get("LongitudinalTemporalInformationModified", "")):
            rec_bad.append(f"{path.name}: LongitudinalTemporalInformationModified")
        if not any(_is_deid_item(i) for i in ds.get("ContributingEquipmentSequence") or []):
            rec_bad.append(f"{path.name}: no De-identifying Equipment (109104) item")
        kind = image_kind(ds)
        if kind == "LABEL" and not (policy is not None and policy.label == "blank" and str(ds.get("BurnedInAnnotation")) == "NO"):
            img_bad.append(f"{path.name}: LABEL instance")
        if kind not in ("LABEL", "OVERVIEW") and "YES" in (str(ds.get("BurnedInAnnotation", "")).strip(), str(ds.get("SpecimenLabelInImage", "")).strip()):
            # the instance says its pixels show the label or other burned-in text: nothing here
            # cleans pixels, so it cannot be shared as de-identified
            img_bad.append(f"{path.name}: {kind or 'image'} instance flagged as showing the label or burned-in text")
        if kind == "THUMBNAIL" and policy is not None and policy.thumbnail == "remove":
            img_bad.append(f"{path.name}: THUMBNAIL instance (--thumbnail remove)")
        if kind == "OVERVIEW":
            if policy is None or policy.macro != "keep":
                img_bad.append(f"{path.name}: OVERVIEW instance")
            elif str(ds.get("BurnedInAnnotation")) != "YES":
                img_bad.append(f"{path.name}: kept OVERVIEW not flagged BurnedInAnnotation YES")
            elif "113101" in codes:
                img_bad.append(f"{path.name}: kept OVERVIEW claims Clean Pixel Data")
    verdict.add("dicom: record", not rec_bad, "; ".join(rec_bad[:5]) or f"{len(dsets)} instances record the de-identification")
    verdict.add("dicom: images", not img_bad, "; ".join(img_bad[:5]) or "no label or overview instance (unless asked)")


MAX_IMAGE_PIXELS = 64 << 20  # a THUMBNAIL/OVERVIEW/LABEL larger than this is searched at reduced size


def _assemble(path: Path, ds: Dataset, parts: list[Part] | None = None, reduce: int = 1):
    """An instance's whole image as an RGB/grey array, frame by frame; at most MAX_IMAGE_PIXELS
    (larger images are reduced by a power of two more). ``parts``: the instances of a
    concatenation whose first part ``ds`` is (``decode.wholes``). ``reduce`` > 1: the image
    reduced by that factor (``ceil`` of each side). A reduced image is box-averaged, each frame as
    it is decoded (PIL ``reduce``: only the reduced picture and one frame are held), where the
    frame size and every frame origin are multiples of the factor (each frame then covers whole
    boxes); else every n-th pixel is kept."""
    import numpy as np
    from PIL import Image

    cols = int(ds.get("TotalPixelMatrixColumns", 0) or ds.Columns)
    rows = int(ds.get("TotalPixelMatrixRows", 0) or ds.Rows)
    if parts is not None and len(parts) > 1:
        origins = first_picture(ds, frame_origins(ds, whole_count(parts)))
        frames = whole_frames_at(parts, list(range(len(origins or []))))
    else:
        origins = first_picture(ds, frame_origins(ds)) if "TotalPixelMatrixColumns" in ds else [(0, 0)]
        frames = _frames_at(path, ds, list(range(len(origins or []))))
    if origins is None:
        raise ValueError("frame positions cannot be determined")
    step = max(1, int(reduce))
    while (cols // step) * (rows // step) > MAX_IMAGE_PIXELS:
        step *= 2
    box = step > 1 and int(ds.Columns) % step == 0 and int(ds.Rows) % step == 0 and all(x % step == 0 and y % step == 0 for x, y in origins)
    out = None
    for k, fv in frames:
        a = decode_rgb(fv, ds)
        x, y = origins[k]
        h, w = min(a.shape[0], rows - y), min(a.shape[1], cols - x)
        if out is None:
            out = np.full((-(-rows // step), -(-cols // step)) + a.shape[2:], 255, np.uint8)
        if h <= 0 or w <= 0:  # a frame wholly outside the matrix
            continue
        if box:
            part = np.asarray(Image.fromarray(np.ascontiguousarray(a[:h, :w])).reduce(step))
            oy, ox = y // step, x // step
        else:
            # frame origins are multiples of the frame size; keep the pixels on the step grid
            oy, ox = -(-y // step), -(-x // step)
            part = a[(oy * step - y) : h : step, (ox * step - x) : w : step]
        out[oy : oy + part.shape[0], ox : ox + part.shape[1]] = part
    return out


def frame_divisor(ds: Dataset, factors, default: int) -> int:
    """The first of ``factors`` that divides both sides of ``ds``'s frames (``_assemble`` then
    box-averages each frame whole), else ``default``."""
    fw, fh = int(ds.Columns), int(ds.Rows)
    return next((f for f in factors if fw % f == 0 and fh % f == 0), default)


def check_barcodes(dsets: list[tuple[Path, Dataset]], policy, verdict: Checks) -> None:
    """``dicom: barcodes`` — no barcode in any image that remains besides the pyramid (THUMBNAIL,
    our blank LABEL, which must moreover be one uniform colour); a kept OVERVIEW (--macro keep) is
    searched and the count reported."""
    others = [(p, ds) for p, ds in dsets if image_kind(ds) in ("THUMBNAIL", "OVERVIEW", "LABEL")]
    if not others:
        verdict.add("dicom: barcodes", True, "no image besides the pyramid levels")
        return
    if not barcodes.available():
        verdict.add("dicom: barcodes", True, "skipped: zxing-cpp is not installed")
        return
    bad, notes = [], []
    for path, ds in others:
        kind = image_kind(ds)
        try:
            img = _assemble(path, ds)
            found = len(barcodes.read(img))
        except Exception as exc:
            bad.append(f"{path.name}: {kind} cannot be decoded to search it ({type(exc).__name__})")
            continue
        if kind == "LABEL" and not (img.size and (img == img.flat[0]).all()):
            bad.append(f"{path.name}: the LABEL instance is not blank (only a blank stand-in label may remain)")
        elif kind == "OVERVIEW" and policy is not None and policy.macro == "keep":
            notes.append(f"{path.name}: {found} barcode(s) in the OVERVIEW kept on request")
        elif found:
            bad.append(f"{path.name}: {found} barcode(s) in the {kind} instance")
    detail = "; ".join(bad[:5]) or "; ".join([f"{len(others)} non-pyramid image(s) searched: no barcode"] + notes)
    verdict.add("dicom: barcodes", not bad, detail)
