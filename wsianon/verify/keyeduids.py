"""The keyed UIDs an output's structure holds, read from the output itself.

The canary scan does not count a run of a few digits found inside one of them: the digits of a
keyed UID are a keyed hash's, and a short run of a value's digits stands there by chance
(:func:`wsianon.io.scan.chance_uid_hit`).  Only UIDs in UID positions are taken: DICOM elements
of VR UI (at any depth, and the file meta), and the Philips XML attributes whose name the
format's profile calls a UID (Philips TIFF, iSyntax).  Free text shaped like a UID is not one.
"""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

from wsianon.io.scan import keyed_form


def _tokens(value: str) -> set[bytes]:
    out = set()
    for t in re.split(r"[\s\\]+", value):
        b = t.strip().strip('"').strip("\0").encode("ascii", "replace")
        if keyed_form(b):
            out.add(b)
    return out


def from_dicom(files: list[Path]) -> frozenset[bytes]:
    """Every keyed UID among the UI elements of the DICOM files (sequences and file meta
    included); a file pydicom cannot read gives none."""
    import pydicom

    out: set[bytes] = set()

    def walk(ds) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value or ():
                    walk(item)
            elif elem.VR == "UI" and elem.value is not None:
                values = elem.value if isinstance(elem.value, (list, tuple, pydicom.multival.MultiValue)) else [elem.value]
                for v in values:
                    out.update(_tokens(str(v)))

    for f in files:
        if Path(f).suffix.lower() != ".dcm":
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(str(f), stop_before_pixels=True)
            walk(ds)
            if getattr(ds, "file_meta", None) is not None:
                walk(ds.file_meta)
        except Exception:
            continue
    return frozenset(out)


def from_philips_xml(text: str, name_pattern: str) -> frozenset[bytes]:
    """Every keyed UID in the values of the XML's ``Attribute`` elements whose ``Name`` matches
    ``name_pattern`` (the format profile's ``uid_attribute_pattern``); XML that does not parse
    gives none."""
    try:
        root = ET.fromstring(text.strip().lstrip("\ufeff"))
    except ET.ParseError:
        return frozenset()
    rx = re.compile(name_pattern)
    out: set[bytes] = set()
    for el in root.iter("Attribute"):
        if rx.search(el.get("Name") or "") and not len(el):
            out.update(_tokens(el.text or ""))
    return frozenset(out)


def of_output(out_main: Path, out_files: list[Path], hook=None) -> frozenset[bytes]:
    """The output's keyed UIDs: its DICOM instances', and what its format's verification module
    reads (``hook``'s ``keyed_uids(out_main)``, where it has one)."""
    uids = set(from_dicom([Path(f) for f in out_files]))
    own = getattr(hook, "keyed_uids", None)
    if own is not None:
        try:
            uids |= own(out_main)
        except Exception:
            pass
    return frozenset(uids)
