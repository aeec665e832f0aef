"""``dicom: uids``: one study/series/frame of reference per slide, unique instances."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from wsianon.verify.dicom.common import Checks, image_kind, read_dataset


def check_uids(dsets: list[tuple[Path, Dataset]], verdict: Checks, sources: list[Path] | None = None) -> None:
    bad = []
    src = [read_dataset(s) for s in sources] if sources else []
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID"):
        vals = {str(ds.get(kw, "")) for _p, ds in dsets}
        allowed = max(1, len({str(ds.get(kw, "")) for ds in src})) if kw == "FrameOfReferenceUID" else 1
        if len(vals) > allowed:  # a DICOM source with several frames of reference keeps that many
            bad.append(f"{kw} differs between instances")
    pyr = {str(ds.get("PyramidUID", "")) for _p, ds in dsets if image_kind(ds) == "VOLUME"}
    if len(pyr) > 1:
        bad.append("PyramidUID differs between levels")
    missing = [p.name for p, ds in dsets if not str(ds.get("SOPInstanceUID", "") or "").strip()]
    if missing:  # a required (type 1) attribute: an instance nobody can address
        bad.append(f"{', '.join(missing[:3])}: SOPInstanceUID missing or empty")
    sops = [str(ds.get("SOPInstanceUID", "") or "") for _p, ds in dsets]
    if len(set(sops)) != len(sops):
        bad.append("SOPInstanceUID repeated")
    for p, ds in dsets:
        meta = getattr(ds, "file_meta", None)
        if str(meta.get("MediaStorageSOPInstanceUID", "") if meta is not None else "") != str(ds.get("SOPInstanceUID", "") or ""):
            bad.append(f"{p.name}: MediaStorageSOPInstanceUID differs from SOPInstanceUID")
    verdict.add("dicom: uids", not bad, "; ".join(bad[:5]) or "one study/series/frame of reference; unique instances")
