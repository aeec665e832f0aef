"""Vocabulary scan of the text left in DICOM headers (issue 8, 4(b), DICOM route).

Independent of the redactor and of the source: it reads the output instances only and judges every
value of every data element — file meta included, recursively into every sequence item — by its
value representation:

* numbers (US UL SS SL FL FD SV UV AT) are structure; DS and IS must be numbers; UI a UID; DA, TM,
  DT dates and times of their DICOM form;
* CS: one of the attribute's enumerated/defined terms where ``vocab_dicom.json`` lists them
  (``cs_terms``), otherwise every token a vocabulary word;
* a code item (CodeValue / CodingSchemeDesignator / CodeMeaning): a scheme of the concept dictionary
  (DCM, SCT, ...; :func:`wsianon.profiles.dicom.code_schemes`), a code of that scheme's dictionary,
  and a CodeMeaning equal to the standard meaning of the code — a code meaning nobody else wrote is
  a finding;
* identity attributes (PatientID, PatientName, ContainerIdentifier, SpecimenIdentifier): a keyed
  pseudonym (by pattern, ``identity_patterns``) or a pseudonym the caller names (a pseudonym map's
  values, known to the pipeline or given to ``verify --pseudonyms``); anything else — a word, an
  MRN's digits, the name of the folder the file lies in — is a finding;
* the de-identification record: the method texts and codes this tool writes;
* attributes a Retain option keeps on purpose (e.g. DeviceSerialNumber under Retain Device
  Identity): counted, not judged — the user asked for them. The options come from outside the
  output (``run``: its policy; ``wsianon verify``: its ``--profile``/``--dates``), never from what
  the output records: an output claiming a Retain option this verification was not given
  (DeidentificationMethodCodeSequence, CID 7050) is a finding, and its attributes are judged;
* every text value (a retained one too): only characters of the safe alphabet
  (:func:`wsianon.profiles.dicom.unsafe_text`: letters, marks and digits of any script, printable
  ASCII, a few unit symbols) — a symbol, format, private-use or unassigned character, U+FFFD or a
  control character yields no token and can spell a name by itself;
* every other text value (AE LO LT PN SH ST UC UR UT, and UN bytes): every token must be structural
  (a number, a date, a version, a UID, a keyed pseudonym) or a word of the vocabulary —
  ``vocab_common.json`` + ``vocab_dicom.json`` (scanner manufacturer and model words, dummies,
  equipment and codec words) + the words of the de-identification texts.

Findings name the file, the tag number and the keyword path, never the value.  Imports only pydicom,
:mod:`wsianon.profiles` and the verification layer.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from wsianon.profiles import load
from wsianon.profiles.actions import Action
from wsianon.profiles.dicom import (
    CODE_VALUE_KWS,
    DEVICE_TEXT_KWS,
    OPTIONS,
    DicomProfile,
    code_meaning,
    code_schemes,
    code_value,
    device_text_ok,
    iod,
    rule_for,
    unknown_code_form,
    unsafe_text,
)
from wsianon.verify.vocabulary import Vocab, unknown_tokens, vocabulary

NUMERIC_VRS = frozenset({"US", "UL", "SS", "SL", "FL", "FD", "SV", "UV", "AT", "OB", "OW", "OF", "OD", "OL", "OV"})
DATE_RE = {"DA": re.compile(r"^\d{8}$"), "TM": re.compile(r"^\d{2,6}(\.\d{1,6})?$"), "DT": re.compile(r"^\d{4,14}(\.\d{1,6})?([+-]\d{4})?$")}
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
NUM_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_RUN = re.compile(rb"[\x20-\x7e]{4,}")
MAX_FINDINGS = 50


@dataclass(frozen=True)
class _Rules:
    vocab: Vocab
    cs_terms: dict
    identity_patterns: tuple
    local_schemes: frozenset
    method_texts: frozenset
    method_patterns: tuple
    fixed_texts: dict


def identity_patterns() -> tuple[re.Pattern, ...]:
    """The shapes of wsianon's keyed pseudonyms an identity attribute may hold (``vocab_dicom.json``):
    the one test for this check and ``dicom: closed world`` (``verify.dicom_attrs``)."""
    return _rules().identity_patterns


@lru_cache(maxsize=1)
def _rules() -> _Rules:
    data = load("vocab_dicom")
    base = vocabulary("dicom")
    w = iod()
    # the words of the texts the de-identification writes are vocabulary too
    texts: list[str] = []
    for v in w.vocabulary.values():
        if isinstance(v, list):
            texts += v
    words = set(base.words)
    for t in texts:
        for tok in re.findall(r"[A-Za-z]+", t):
            words.add(tok.lower())
    vocab = Vocab("dicom", frozenset(words), list(base.patterns), phrases_rx=base.phrases_rx)
    method = frozenset(w.vocabulary.get("DeidentificationMethod", []))
    pats = tuple(re.compile(p) for p in (w.vocabulary.get("DeidentificationMethodPattern"),) if p)
    fixed = {k: frozenset(v) for k, v in w.vocabulary.items() if isinstance(v, list)}
    return _Rules(
        vocab,
        {k: frozenset(v) for k, v in data["cs_terms"].items()},
        tuple(re.compile(p) for p in data["identity_patterns"]),
        frozenset(data.get("local_schemes", [])),
        method,
        pats,
        fixed,
    )


def _read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True)


def _values(elem) -> list:
    v = elem.value
    if v is None:
        return []
    if isinstance(v, (bytes, bytearray)):
        return [bytes(v)]
    return list(v) if elem.VM > 1 else [v]


def _norm(s: str) -> str:
    return " ".join(s.split()).casefold()


def _marks_in_words(s: str) -> str:
    """``s`` with every combining mark as a letter no vocabulary word holds: a mark stays in the
    token it follows (the tokenizer reads marks as separators, so "Leica" followed by marks that
    spell a name was the word Leica)."""
    import unicodedata

    return "".join("\u00fe" if unicodedata.category(ch)[0] == "M" else ch for ch in s)


class _Scan:
    def __init__(self, profile: DicomProfile, pseudonyms: frozenset[str]):
        self.r = _rules()
        self.profile = profile
        self.pseudonyms = pseudonyms
        self.identity = iod().identity
        self.findings: list[str] = []
        self.n = self.kept = 0
        self.file = ""

    def add(self, tag, path: str, why: str) -> None:
        msg = f"{self.file}: ({tag.group:04X},{tag.element:04X}) {path}: {why}"
        if len(self.findings) < MAX_FINDINGS and msg not in self.findings:
            self.findings.append(msg)

    def walk(self, ds: Dataset, path: tuple[str, ...] = ()) -> None:
        for elem in ds:
            kw = elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
            where = "/".join(path + (kw,))
            if elem.VR == "SQ":
                for item in elem.value or []:
                    self.walk(item, path + (kw,))
                continue
            self.n += 1
            try:
                vals = _values(elem)
            except Exception:
                self.add(elem.tag, where, "unreadable value")
                continue
            why = self._judge(ds, elem, kw, path, vals)
            if why:
                self.add(elem.tag, where, why)

    def _retained(self, elem, path, kw) -> bool:
        """Kept on purpose by a Retain option this verification was given (the Basic Profile would not keep it)."""
        rule = rule_for(int(elem.tag))
        if rule is None or rule.basic is Action.KEEP:
            return False
        return any(rule.options.get(o) is Action.KEEP for o in self.profile.options if o.startswith("retain"))

    def _judge(self, ds: Dataset, elem, kw: str, path: tuple[str, ...], vals: list) -> str | None:
        vr = elem.VR
        if vr in NUMERIC_VRS or not vals:
            return None
        if vr == "UN":
            for v in vals:
                raw = v if isinstance(v, bytes) else str(v).encode("latin-1", "replace")
                if any(unknown_tokens(m.group(0).decode("ascii"), self.r.vocab) for m in _RUN.finditer(raw)):
                    return "text outside the DICOM vocabulary (UN bytes)"
            return None
        strs = [str(v).strip() for v in vals]
        strs = [s for s in strs if s]
        if not strs:
            return None
        if vr in DATE_RE:
            return None if all(DATE_RE[vr].match(s) for s in strs) else f"not a {vr} value"
        if vr == "UI":
            return None if all(UID_RE.match(s) for s in strs) else "not a UID"
        if vr in ("DS", "IS"):
            return None if all(NUM_RE.match(s) for s in strs) else f"{vr} value is not a number"
        if any(unsafe_text(s) for s in strs):
            return (
                "text with control characters or others outside the safe alphabet (format, private-use or unassigned"
                " characters, U+FFFD for bytes the declared character set does not decode, symbols)"
            )
        if self._retained(elem, path, kw):
            self.kept += 1
            return None
        if vr == "CS":
            terms = self.r.cs_terms.get(kw)
            if terms is not None:
                return None if all(s in terms for s in strs) else "not an enumerated/defined term of the attribute"
            return None if not any(unknown_tokens(_marks_in_words(s), self.r.vocab) for s in strs) else "code string outside the DICOM vocabulary"
        if kw == "CodingSchemeDesignator" or kw in CODE_VALUE_KWS + ("CodeMeaning",) and ("CodeMeaning" in ds or any(k in ds for k in CODE_VALUE_KWS)):
            return self._code(ds, kw, strs)
        if kw in self.identity:  # a pseudonym's shape or the caller's map, never "any word" (digits: an MRN)
            if all(s in self.pseudonyms or any(p.fullmatch(s) for p in self.r.identity_patterns) for s in strs):
                return None
            return "identity value is no keyed pseudonym and not one the pseudonym map names"
        if kw == "DeidentificationMethod":  # this tool's texts; another tool's are judged as text below
            if all(s in self.r.method_texts or any(p.match(s) for p in self.r.method_patterns) for s in strs):
                return None
        if kw in DEVICE_TEXT_KWS and not all(device_text_ok(s, str(ds.get("Manufacturer", "") or "")) for s in strs):
            # no scanner's name holds one; an MRN, a case number or a date does (a Leica SCN model
            # cut at its first ';' by the converter carried both: red team stop 40)
            return "a scanner's maker or model name holding a number of 4 or more digits"
        fixed = self.r.fixed_texts.get(kw)
        if fixed is not None and all(s in fixed for s in strs):
            return None
        bad = [s for s in strs if unknown_tokens(_marks_in_words(s).replace("^", " "), self.r.vocab)]
        return "text outside the DICOM vocabulary" if bad else None

    def _code(self, ds: Dataset, kw: str, strs: list[str]) -> str | None:
        scheme = str(ds.get("CodingSchemeDesignator", "") or "").strip()
        value_kw, value = code_value(ds)
        if kw in CODE_VALUE_KWS and kw != value_kw:
            return "a second code value beside the code"
        if kw == "CodingSchemeDesignator":
            ok = all(s in code_schemes() or s in self.r.local_schemes for s in strs)
            return None if ok else "coding scheme not in the concept dictionary"
        meaning = code_meaning(scheme, value)
        if meaning is not None:
            if kw == "CodeMeaning" and _norm(strs[0]) != _norm(meaning):
                return "code meaning is not the standard meaning of the code"
            return None
        # a code the dictionary does not know: its value a dummy or of its scheme's form
        # (``unknown_code_form``: SNOMED CT, DCM, NCIt, UMLS), its meaning a dummy
        dummies = iod().dummies
        if kw == "CodeMeaning":
            return None if all(s in dummies for s in strs) else "meaning of a code the dictionary does not know"
        if all(s in dummies or unknown_code_form(scheme, s) for s in strs):
            return None
        return "code not in its scheme's dictionary"


_METHOD_CODES = 0x00120064  # DeidentificationMethodCodeSequence


def unclaimed_options(ds: Dataset, profile: DicomProfile) -> list[str]:
    """The Retain options (CID 7050) ``ds`` records in its DeidentificationMethodCodeSequence that
    ``profile`` does not hold: an output's claim is no permission (red team stop 39: codes appended
    to a clean output made ``verify`` pass a serial number, an institution and a UID unjudged)."""
    by_code = {code: name for name, (code, _m) in OPTIONS.items()}
    found = []
    for item in ds.get("DeidentificationMethodCodeSequence") or []:
        name = by_code.get(str(item.get("CodeValue", "") or "").strip())
        if name and name.startswith("retain-") and name not in profile.options and name not in found:
            found.append(name)
    return found


def scan_dicom_text(
    files: list[Path], datasets: list[Dataset] | None = None, pseudonyms: set[str] | None = None, profile: DicomProfile | None = None
) -> tuple[list[str], int, int]:
    """(findings, values judged, values kept by a Retain option) for one slide's instances.
    ``profile``: the options the slide was de-identified with, as the caller knows them (``run``:
    its policy's; ``wsianon verify``: its flags'); None: the default options (no Retain option)."""
    files = [Path(f) for f in files]
    dsets = list(datasets) if datasets is not None and len(datasets) == len(files) else [_read(f) for f in files]
    # the names the caller gives (run: the slide's pseudonyms; verify: a --pseudonyms map's). The
    # folder an instance lies in is no name by itself: any tool's output filed per patient
    # ('OUT/Smithereens^Quentin/') would otherwise pass its real name as a pseudonym; a folder named
    # by wsianon's keyed pseudonym has that shape, which identity_patterns accept anyway
    names = set(pseudonyms or ())
    profile = profile if profile is not None else DicomProfile()
    scan = None
    for f, ds in zip(files, dsets):
        scan = scan or _Scan(profile, frozenset(n for n in names if n))
        scan.file = f.name
        for name in unclaimed_options(ds, profile):
            scan.add(
                Tag(_METHOD_CODES),
                "DeidentificationMethodCodeSequence",
                f"records {name}, an option this verification was not given (run's --profile/--dates; verify takes the same flags)",
            )
        if getattr(ds, "file_meta", None) is not None:
            scan.walk(ds.file_meta, ("meta",))
        scan.walk(ds)
    if scan is None:
        return [], 0, 0
    return scan.findings, scan.n, scan.kept


def add_check(
    verdict, files: list[Path], datasets: list[Dataset] | None = None, pseudonyms: set[str] | None = None, profile: DicomProfile | None = None
) -> list[str]:
    """Record ``dicom: text vocabulary`` on ``verdict`` (anything with ``add(name, ok, detail)``)."""
    found, n, kept = scan_dicom_text(files, datasets, pseudonyms, profile)
    more = f" (+{len(found) - 8} more)" if len(found) > 8 else ""
    verdict.add(
        "dicom: text vocabulary",
        not found,
        "; ".join(found[:8]) + more
        if found
        else f"{n} values of {len(files)} instances: numbers, dates, UIDs, defined terms, dictionary codes, keyed pseudonyms "
        f"or DICOM vocabulary" + (f"; {kept} kept by a Retain option given to this verification" if kept else ""),
    )
    return found
