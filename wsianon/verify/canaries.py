"""Canary values for the byte scan, harvested by readers independent of the redactors.

The redactor's own inventory (``inspect``) names what the redactor knows about;
a verifier that only looks for those values proves little.  Here the source is
read again with third-party readers — tifffile (every ASCII/BYTE/UNDEFINED tag
of every page, descriptions split into their fields and XML texts), OpenSlide
(properties), configparser (Slidedat.ini) and pydicom (text attributes) — and
every value that is not the format's own vocabulary becomes a canary.  The
union with the inventory's canaries feeds the existing byte scan
(wsianon/io/scan.py), as defence in depth beside the vocabulary scan.

Values that are the format's vocabulary are never identifying: a scanner model
printed in the kept banner ("GT450"), ordinary profile words ("Brightfield",
"Default").  :func:`not_vocabulary` drops such canaries, whoever harvested them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from wsianon.io.ini import read_ini
from wsianon.io.scan import Canary
from wsianon.profiles import tifffile_open
from wsianon.verify.vocabulary import _PARTS, _STRUCTURAL, _TOKEN, unknown_tokens, vocabulary

MAX_VALUES = 5000
_SPLIT = re.compile(r"[|\r\n;]+")
_XML_TEXT = re.compile(r">([^<>]+)<")
_XML_ATTR = re.compile(r"=\s*\"([^\"]*)\"|=\s*'([^']*)'")


def is_vocabulary(value: str, fmt: str) -> bool:
    """True when every token of ``value`` is a vocabulary word and at least one is
    alphabetic: a scanner model, an enumeration, a profile word.  Numbers, dates and
    digests are not vocabulary here — they stay canaries."""
    vocab = vocabulary(fmt)
    toks = [t for t in (m.group(0).strip("_") for m in _TOKEN.finditer(value)) if t]
    if not toks or unknown_tokens(value, vocab):
        return False
    # the vocabulary check lets letter-and-digit pieces pass as model numbers ("GT450", "S360"),
    # and so "S19-4711", an accession number, was dropped from the canaries as "vocabulary" (red
    # team stop 40): a token of two or more pieces holding digits, or with a piece of 4 or more
    # digits alone, is no vocabulary here unless it is a vocabulary word or pattern itself
    for t in toks:
        numbered = [p for p in _PARTS.split(t) if p and any(c.isdigit() for c in p)]
        if not vocab.word_ok(t) and (len(numbered) > 1 or any(p.isdigit() and len(p) >= 4 for p in numbered)):
            return False
    return all(not _STRUCTURAL.fullmatch(t) and len(t) > 2 for t in toks)


def not_vocabulary(canaries: list[Canary], fmt: str) -> list[Canary]:
    """Drop the canaries whose value is the format's own vocabulary."""
    return [c for c in canaries if not is_vocabulary(c.value, fmt)]


def _pieces(text: str) -> list[str]:
    """A description or XML split into the values a writer put in it."""
    out: list[str] = []
    if "<" in text and ">" in text:
        out += [t.strip() for t in _XML_TEXT.findall(text)]
        out += [(a or b).strip() for a, b in _XML_ATTR.findall(text)]
        return out
    for part in _SPLIT.split(text):
        part = part.strip()
        if "=" in part:
            part = part.split("=", 1)[1].strip()
        out.append(part)
    return out


def _tiff_values(path: Path, fmt: str) -> list[tuple[str, str]]:
    import tifffile

    out: list[tuple[str, str]] = []
    kw: dict[str, Any] = tifffile_open(fmt)  # the format's profile (NDPI: is_ndpi)
    with tifffile.TiffFile(str(path), **kw) as tf:
        for page in tf.pages:
            if not isinstance(page, tifffile.TiffPage):
                continue
            for tag in page.tags.values():
                if tag.code in (273, 279, 324, 325, 347, 34675, 65426):
                    continue  # pixel data pointers, JPEG tables, ICC, NDPI MCU starts
                v = tag.value
                if isinstance(v, bytes):
                    v = v.split(b"\0", 1)[0].decode("latin-1", errors="replace")
                if not isinstance(v, str) or not v.strip():
                    continue
                for piece in _pieces(v):
                    out.append((f"tag {tag.code}", piece))
                if len(out) > MAX_VALUES:
                    return out
    return out


def _openslide_values(path: Path) -> list[tuple[str, str]]:
    try:
        import openslide

        with openslide.OpenSlide(str(path)) as s:
            props = dict(s.properties)
    except Exception:
        return []
    out = []
    for k, v in props.items():
        if k.startswith("openslide.") or not v:
            continue
        for piece in _pieces(v) if len(v) > 200 else [v]:
            out.append((f"property {k}", piece))
    return out


def _mrxs_values(path: Path) -> list[tuple[str, str]]:
    ini = path.with_suffix("") / "Slidedat.ini"
    try:
        text = ini.read_bytes().decode("utf-8-sig", errors="replace")
        cp = read_ini(text)
    except Exception:
        return []
    out = []
    for sec in cp.sections():
        if sec in ("HIERARCHICAL", "DATAFILE"):
            continue  # layer, section and file names: structure, renumbered on output
        for k, v in cp.items(sec):
            out.append((f"Slidedat.ini:{k}", v))
    return out


_DICOM_TEXT_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "AE", "UC"}


def _standard_meaning(item, meaning: str) -> bool:
    """True when ``meaning`` says no more than the dictionary meaning of the item's code
    ("Fixative" for the code whose meaning is "Tissue fixative (substance)")."""
    from wsianon.profiles.dicom import code_meaning

    std = code_meaning(str(item.get("CodingSchemeDesignator", "")), str(item.get("CodeValue", "")))
    return std is not None and bool(std) and meaning.strip().casefold() in std.casefold()


def _dicom_values(files: list[Path]) -> list[tuple[str, str]]:
    import pydicom

    out: list[tuple[str, str]] = []

    def walk(ds) -> None:
        for el in ds:
            if el.VR == "SQ":
                for item in el.value or []:
                    walk(item)
            elif el.VR in _DICOM_TEXT_VRS and el.value not in (None, ""):
                vals = el.value if isinstance(el.value, (list, pydicom.multival.MultiValue)) else [el.value]
                for v in vals:
                    if el.keyword == "CodeMeaning" and _standard_meaning(ds, str(v)):
                        continue  # PS3.16 terminology of a known code: vocabulary, not an identifier
                    out.append((f"DICOM {el.keyword or el.tag}", str(v)))

    for f in files[:50]:
        try:
            walk(pydicom.dcmread(str(f), stop_before_pixels=True))
        except Exception:
            continue
        if len(out) > MAX_VALUES:
            break
    return out


def drop_standard_text(canaries: list[Canary], outputs: list[Path]) -> list[Canary]:
    """Canaries whose value occurs inside a dictionary code meaning the DICOM outputs keep
    ("Brightfield" in "Brightfield illumination", DCM 111744): the byte scan would find the
    standard's own words in every such output. Free text holding the value is judged by the
    vocabulary check (``dicom: text vocabulary``), not by this scan."""
    import pydicom

    from wsianon.profiles.dicom import in_standard_text, standard_meanings

    texts: set[str] = set()
    for f in [Path(p) for p in outputs if Path(p).suffix.lower() == ".dcm"][:50]:
        try:
            texts |= standard_meanings(pydicom.dcmread(str(f), stop_before_pixels=True))
        except Exception:
            continue
    return [c for c in canaries if not in_standard_text(c.value, texts)]


def harvest(path: Path, fmt: str, files: list[Path] | None = None) -> list[Canary]:
    """Canaries from an independent reading of the source ``path`` (format ``fmt``)."""
    path = Path(path)
    values: list[tuple[str, str]] = []
    try:
        if fmt == "dicom":
            values = _dicom_values(files or ([path] if path.is_file() else sorted(path.rglob("*"))))
        elif fmt == "mrxs":
            values = _mrxs_values(path) + _openslide_values(path)
        else:
            values = _tiff_values(path, fmt) + _openslide_values(path)
    except Exception:
        values = values or []
    vocab = vocabulary(fmt)
    out: dict[str, Canary] = {}
    for name, v in values:
        v = v.strip()
        if len(v) < 3 or v in out:
            continue
        if not unknown_tokens(v, vocab):
            continue  # structural or vocabulary: kept on purpose by a correct redaction
        out[v] = Canary(f"{name} (independent)", v)
    return list(out.values())


def union(inventory: list[Canary], independent: list[Canary], fmt: str) -> list[Canary]:
    """Inventory and independent canaries together, vocabulary values dropped."""
    seen: dict[str, Canary] = {}
    for c in list(inventory) + list(independent):
        seen.setdefault(c.value.strip(), c)
    return not_vocabulary(list(seen.values()), fmt)


def for_dicom_outputs(read: list[Canary], independent: list[Canary], fmt: str, outputs: list[Path]) -> list[Canary]:
    """What the byte scan of DICOM outputs searches for: the source's values as read and as
    harvested (``union``: vocabulary dropped), less those inside the standard's own words the
    outputs keep (``drop_standard_text``).  ``run`` and ``verify --source`` both scan with this
    list, so that neither fails a slide the other passes (fuzz seed 160 #77: the audit scanned the
    values as read, and a scanner model in a damaged attribute failed an output ``run`` verified)."""
    return drop_standard_text(union(read, independent, fmt), outputs)


def independent_for_dicom(path: Path, fmt: str, input_files, outputs: list[Path], source_is_dicom: bool, harvested: list[Canary] | None = None) -> list[Canary]:
    """The verifier's own reading of the source that a DICOM output's byte scan adds to the values
    as read (``harvest``; ``harvested``: taken already), less, for a DICOM source, the attributes
    the outputs keep with the same value (``drop_kept_dicom``).  ``run`` and ``verify --source``
    both take it (before, ``verify --source`` scanned a DICOM output for the values as read only:
    a value the redactor's reading missed was found by ``run`` and not by the audit)."""
    independent = harvested if harvested is not None else harvest(path, fmt, list(input_files or ()) or None)
    return drop_kept_dicom(independent, outputs) if source_is_dicom else independent


def drop_kept_dicom(canaries: list[Canary], outputs: list[Path]) -> list[Canary]:
    """Independent DICOM canaries whose attribute the outputs keep with the same value:
    kept on purpose by the profile (judged by the DICOM attribute checks, not here)."""
    # compared as the byte scan matches: case-insensitive, without padding (a source "Water soluble
    # eosin stain" is the dictionary's "water soluble eosin stain" the profile writes back)
    kept = {(n, v.strip().casefold()) for n, v in _dicom_values([Path(p) for p in outputs if Path(p).suffix.lower() == ".dcm"])}
    return [c for c in canaries if not (c.name.endswith(" (independent)") and (c.name[: -len(" (independent)")], c.value.strip().casefold()) in kept)]
