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
from collections.abc import Iterable
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


def of_dataset(ds) -> set[bytes]:
    """Every keyed UID among the UI elements and every keyed pseudonym in the pseudonym
    attributes of a pydicom data set (its sequences at any depth, and its file meta)."""
    import pydicom

    out: set[bytes] = set()

    def walk(ds) -> None:
        for tag in list(ds.keys()):
            try:
                elem = ds[tag]
            except Exception:  # a damaged element no reader takes (the engine drops it): no token of it
                continue
            if elem.VR == "SQ":
                for item in elem.value or ():
                    walk(item)
            elif elem.value is not None and (elem.VR == "UI" or elem.keyword in PSEUDONYM_KEYWORDS):
                values = elem.value if isinstance(elem.value, (list, tuple, pydicom.multival.MultiValue)) else [elem.value]
                for v in values:
                    out.update(uid_tokens(str(v)) if elem.VR == "UI" else pseudonym_tokens(str(v)))

    walk(ds)
    if getattr(ds, "file_meta", None) is not None:
        walk(ds.file_meta)
    return out


def from_dicom(files: list[Path], any_name: bool = False) -> frozenset[bytes]:
    """:func:`of_dataset` of every DICOM file (``.dcm``, or any file with ``any_name``: a source's
    instances may have no extension); a file pydicom cannot read gives none."""
    files = [Path(f) for f in files if any_name or Path(f).suffix.lower() == ".dcm"]
    if not files:
        return frozenset()  # (a native run imports no DICOM library)
    from wsianon.verify.dicom.common import read_dataset

    out: set[bytes] = set()
    for f in files:
        try:
            out |= of_dataset(read_dataset(f))
        except Exception:
            continue
    return frozenset(out)


def in_values(values: Iterable[str]) -> set[bytes]:
    """The keyed-form tokens (UIDs, pseudonyms) written whole in any of ``values``, and a value
    that is an identifier of upper-case hex digits (an MRXS SLIDE_ID's form) as a whole."""
    out: set[bytes] = set()
    for v in values:
        text = str(v)
        out |= uid_tokens(text) | keyed_tokens(text.encode("utf-8", "replace"))
        if re.fullmatch(r"[0-9A-Fa-f]{16,64}", text.strip()):
            out |= {text.strip().encode("ascii"), text.strip().upper().encode("ascii")}
    return out


def of_source(values: Iterable[str], dicom_files: Iterable[Path] = ()) -> frozenset[bytes]:
    """The keyed-form tokens a slide's *source* holds: those written whole in the values read
    from it (``values``: its inventory's fields and canaries) and, for a DICOM source, of its
    instances' UI and pseudonym attributes (:func:`from_dicom`, any file name).

    A token of the output that the source holds too was copied from it (a UID ``retain-uids``
    keeps, a pseudonym of an earlier run): its characters are the source's, not a keyed hash's
    drawn for this output, so a short run of a value's characters in it is no chance and is
    counted (callers take these out of the tokens :func:`wsianon.io.scan.chance_token_hit` may
    use).  Without it a StudyDate written into a source's ``2.25.`` UID and kept by
    ``retain-uids`` was verified (stop 45)."""
    files = [Path(f) for f in dicom_files if Path(f).is_file()]
    return frozenset(in_values(values) | (from_dicom(files, any_name=True) if files else set()))


def of_inventory(inv, canaries, dicom: bool = False) -> frozenset[bytes]:
    """:func:`of_source` of a slide's source as an inventory reads it: its fields' values and the
    values searched for (``canaries``), and (``dicom``: a DICOM source) its instances' UI and
    pseudonym attributes.  ``inv``: any object with ``fields`` (``.value``) and ``input_files``
    (the converters' Inventory, which this module does not import)."""
    values = [str(f.value) for f in inv.fields if f.value] + [c.value for c in canaries]
    return of_source(values, list(inv.input_files) if dicom else [])


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
