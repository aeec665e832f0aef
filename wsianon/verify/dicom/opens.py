"""``dicom: opens``: wsidicom opens the folder and OpenSlide opens the instances as DICOM."""

from __future__ import annotations

import warnings
from pathlib import Path

from wsianon.verify.dicom.common import Checks, image_kind, read_dataset

# ---------------------------------------------------------------------------
# readers


def check_opens(outputs: list[Path], verdict: Checks, sources: list[Path] | None, policy=None) -> None:
    folder = outputs[0].parent
    try:
        from wsidicom import WsiDicom

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with WsiDicom.open(folder) as w:
                w.read_tile(0, (0, 0))
        verdict.add("dicom: opens with wsidicom", True, "")
        wsidicom_ok = True
    except Exception as exc:
        wsidicom_ok = False
        wsidicom_error = type(exc).__name__
    openslide_ok = False
    try:
        import openslide

        vol = next((p for p in outputs if image_kind(read_dataset(p)) == "VOLUME"), outputs[0])
        with openslide.OpenSlide(str(vol)) as s:
            vendor = s.properties.get("openslide.vendor")
            ok = vendor == "dicom" and s.level_count >= 1
            s.read_region((0, 0), s.level_count - 1, (16, 16))
            assoc = sorted(s.associated_images.keys())
        allowed = set()
        if policy is not None and policy.label == "blank":
            allowed.add("label")  # our blank LABEL (its content is checked by "dicom: barcodes")
        if policy is not None and policy.macro == "keep":
            allowed.add("macro")
        bad = [a for a in assoc if a in ("label", "macro") and a not in allowed]
        verdict.add("dicom: opens with OpenSlide", ok and not bad, f"vendor {vendor}, associated images {assoc}")
        openslide_ok = ok
    except Exception as exc:
        # with a source: fine only when the source does not open either; auditing
        # without one (wsianon verify): fine when wsidicom read it (OpenSlide lacks
        # some codecs, e.g. JPEG-LS)
        src_ok = not wsidicom_ok
        if sources:
            src_ok = True
            try:
                import openslide

                with openslide.OpenSlide(str(sources[0])):
                    pass
            except Exception:
                src_ok = False
        why = "" if src_ok else (" (the source does not open either)" if sources else " (wsidicom reads it)")
        verdict.add("dicom: opens with OpenSlide", not src_ok, f"{type(exc).__name__}{why}")
    if not wsidicom_ok:
        # with a source: fine only when the source does not open either; without one: fine when
        # OpenSlide read it (wsidicom reads no frame split over several fragments, PS3.5 A.4)
        src_ok = _source_opens_wsidicom(sources) if sources else not openslide_ok
        why = "" if src_ok else (" (the source does not open either)" if sources else " (OpenSlide reads it)")
        verdict.add("dicom: opens with wsidicom", not src_ok, f"{wsidicom_error}{why}")


def _source_opens_wsidicom(sources: list[Path]) -> bool:

    try:
        from wsidicom import WsiDicom

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with WsiDicom.open(sources) as w:
                w.read_tile(0, (0, 0))
        return True
    except Exception:
        return False
