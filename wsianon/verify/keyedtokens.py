"""The keyed tokens an output's structure holds (keyed UIDs, keyed pseudonyms), read from the
output itself.

The canary scan does not count a short run of characters found inside one of them: they are a
keyed hash's, and a short run of a value's characters stands there by chance
(:func:`wsianon.io.scan.chance_token_hit`).  Only tokens in their own positions are taken: the
keyed UIDs of DICOM elements of VR UI (at any depth, and the file meta) and of the Philips XML
attributes whose name the format's profile calls a UID (Philips TIFF, iSyntax); the keyed
pseudonyms (``WSI-`` and 16 hex digits, ``P`` and 16) of the DICOM attributes the engine writes
them into (``PSEUDONYM_KEYWORDS``) and of the values a format writes its slide's name into (MRXS
``SLIDE_NAME``); the keyed MRXS ``SLIDE_ID``.  A UID-shaped run of free text is not
a UID.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from wsianon.io.scan import KEYED_UID_PREFIX, keyed_form, keyed_tokens
from wsianon.profiles.dicom import PSEUDONYM_KEYWORDS


def uid_tokens(value: str) -> set[bytes]:
    """The keyed UIDs among a UID value's parts (split by backslashes, spaces; quotes and
    padding stripped)."""
    out = set()
    for t in re.split(r"[\s\\]+", value):
        b = t.strip().strip('"').strip("\0").encode("ascii", "replace")
        if keyed_form(b):
            out.add(b)
    return out


def pseudonym_tokens(value: str) -> set[bytes]:
    """The keyed pseudonyms written whole in a text value."""
    return {t for t in keyed_tokens(value.encode("utf-8", "replace")) if not t.startswith(KEYED_UID_PREFIX)}


def from_dicom(files: list[Path]) -> frozenset[bytes]:
    """Every keyed UID among the UI elements and every keyed pseudonym in the pseudonym
    attributes of the DICOM files (sequences and file meta included); a file pydicom cannot read
    gives none."""
    files = [Path(f) for f in files if Path(f).suffix.lower() == ".dcm"]
    if not files:
        return frozenset()  # (a native run imports no DICOM library)
    import pydicom

    from wsianon.verify.dicom.common import read_dataset

    out: set[bytes] = set()

    def walk(ds) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value or ():
                    walk(item)
            elif elem.value is not None and (elem.VR == "UI" or elem.keyword in PSEUDONYM_KEYWORDS):
                values = elem.value if isinstance(elem.value, (list, tuple, pydicom.multival.MultiValue)) else [elem.value]
                for v in values:
                    out.update(uid_tokens(str(v)) if elem.VR == "UI" else pseudonym_tokens(str(v)))

    for f in files:
        try:
            ds = read_dataset(f)
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
            out.update(uid_tokens(el.text or ""))
    return frozenset(out)


def of_output(out_main: Path, out_files: list[Path], hook=None) -> frozenset[bytes]:
    """The output's keyed tokens: its DICOM instances', and what its format's verification
    module reads (``hook``'s ``keyed_tokens(out_main)``, where it has one)."""
    tokens = set(from_dicom([Path(f) for f in out_files]))
    own = getattr(hook, "keyed_tokens", None)
    if own is not None:
        try:
            tokens |= own(out_main)
        except Exception:
            pass
    return frozenset(tokens)
