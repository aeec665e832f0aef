"""``dicom: photometric``: every instance's Photometric Interpretation is one its transfer syntax
allows (PS3.5 8.2), with the samples a pixel it names (PS3.3 C.7.6.3.1.2).

A viewer turns a frame's samples into colours by the Photometric Interpretation; the checks
decode frames by their own markers (a JPEG's components, a JPEG 2000 codestream's transform).
An instance whose value is empty, one the codec never carries (YBR_ICT under JPEG baseline) or
a greyscale value over three samples is shown unlike what was judged, or not at all.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from wsianon.verify.dicom.common import Checks

GREY = frozenset({"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"})  # one sample a pixel
_NATIVE = GREY | {"RGB", "YBR_FULL", "YBR_FULL_422"}
_JPEG_LOSSY = frozenset({"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422"})
_LOSSLESS = GREY | {"RGB", "YBR_FULL"}  # JPEG lossless, JPEG-LS lossless, RLE
_J2K_LOSSLESS = _LOSSLESS | {"YBR_FULL_422", "YBR_RCT"}  # YBR_FULL_422: CP-2650 (wsidicomizer writes it)
_J2K = (_J2K_LOSSLESS - {"PALETTE COLOR"}) | {"YBR_ICT"}
# transfer syntax -> (its name in a detail, the values PS3.5 8.2 allows)
ALLOWED: dict[str, tuple[str, frozenset[str]]] = {
    "1.2.840.10008.1.2": ("Implicit VR Little Endian", _NATIVE),
    "1.2.840.10008.1.2.1": ("Explicit VR Little Endian", _NATIVE),
    "1.2.840.10008.1.2.1.99": ("Deflated Explicit VR Little Endian", _NATIVE),
    "1.2.840.10008.1.2.2": ("Explicit VR Big Endian", _NATIVE),
    "1.2.840.10008.1.2.4.50": ("JPEG Baseline", _JPEG_LOSSY),
    "1.2.840.10008.1.2.4.51": ("JPEG Extended", _JPEG_LOSSY),
    "1.2.840.10008.1.2.4.57": ("JPEG Lossless", _LOSSLESS),
    "1.2.840.10008.1.2.4.70": ("JPEG Lossless SV1", _LOSSLESS),
    "1.2.840.10008.1.2.4.80": ("JPEG-LS Lossless", _LOSSLESS),
    "1.2.840.10008.1.2.4.81": ("JPEG-LS Near-Lossless", _LOSSLESS - {"PALETTE COLOR"}),
    "1.2.840.10008.1.2.4.90": ("JPEG 2000 Lossless", _J2K_LOSSLESS),
    "1.2.840.10008.1.2.4.91": ("JPEG 2000", _J2K),
    "1.2.840.10008.1.2.4.92": ("JPEG 2000 Part 2 Lossless", _J2K_LOSSLESS),
    "1.2.840.10008.1.2.4.93": ("JPEG 2000 Part 2", _J2K),
    "1.2.840.10008.1.2.4.201": ("HTJ2K Lossless", _J2K_LOSSLESS),
    "1.2.840.10008.1.2.4.202": ("HTJ2K Lossless RPCL", _J2K_LOSSLESS),
    "1.2.840.10008.1.2.4.203": ("HTJ2K", _J2K),
    "1.2.840.10008.1.2.5": ("RLE Lossless", _LOSSLESS),
}
KNOWN = frozenset().union(*(values for _name, values in ALLOWED.values()))


def photometric_problem(ds: Dataset) -> str | None:
    """Why ``ds``'s Photometric Interpretation does not fit its transfer syntax or its Samples per
    Pixel, or None (also for a transfer syntax not in ``ALLOWED``: not judged here). The reason
    names only values of ``ALLOWED`` (never the instance's own text)."""
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
    if ts not in ALLOWED:
        return None
    name, allowed = ALLOWED[ts]
    value = str(ds.get("PhotometricInterpretation", "") or "").strip()
    if value not in allowed:
        shown = value if value in KNOWN else ("an empty value" if not value else "a value outside PS3.3 C.7.6.3.1.2")
        return f"Photometric Interpretation {shown} under {name} (PS3.5 8.2 allows {', '.join(sorted(allowed))})"
    try:
        samples = int(ds.get("SamplesPerPixel", 0) or 0)
    except (TypeError, ValueError):
        return "Samples per Pixel unreadable"
    want = 1 if value in GREY else 3
    if samples != want:
        return f"Photometric Interpretation {value} with {samples} samples per pixel ({want} expected)"
    return None


def check_photometric(dsets: list[tuple[Path, Dataset]], verdict: Checks) -> None:
    bad = [f"{path.name}: {why}" for path, ds in dsets if (why := photometric_problem(ds)) is not None]
    verdict.add("dicom: photometric", not bad, "; ".join(bad[:5]) or f"{len(dsets)} instances: Photometric Interpretation fits the transfer syntax and samples")
