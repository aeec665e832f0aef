"""The PS3.15 Annex E de-identification engine (works on pydicom datasets, headers only).

One :class:`Engine` per slide: it applies the resolved :class:`~wsianon.profiles.dicom.DicomProfile`
to every element, recursively inside sequences (the Type used to resolve a compound action is
looked up at the element's sequence path), removes private tags and the repeating curve/overlay
groups, replaces UIDs with keyed ``2.25.`` UIDs, substitutes the slide/patient/study pseudonyms and
records what was done (PatientIdentityRemoved, DeidentificationMethod(+CodeSequence, CID 7050),
LongitudinalTemporalInformationModified, a ContributingEquipmentSequence item with purpose
DCM 109104).  It never sees pixel data: callers stream that byte for byte.

:meth:`Engine.scrub` is a second, value-based pass for converted slides: Annex E keeps attributes
it does not list (Manufacturer, ManufacturerModelName, ...), and a converter may copy a source's
identifying metadata into any of them; every element still holding one of the source's canary
values is then given a dummy, blanked or removed by its Type, whatever its keyword.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from wsianon import __version__ as _version
from wsianon.io.keyed import keyed_uid
from wsianon.io.plan import Removal
from wsianon.io.scan import chance_in_value
from wsianon.io.palette import well_known
from wsianon.profiles.actions import Action
from wsianon.profiles.dicom import (
    BINARY_VRS,
    CODE_VALUE_KWS,
    FREE_TEXT_VRS,
    OFFSET_TABLE_KWS,
    PALETTE_DATA_KWS,
    DEVICE_TEXT_KWS,
    PSEUDONYM_KEYWORDS,
    DicomProfile,
    action_by_type,
    device_text_ok,
    binary_judged,
    code_meaning,
    code_schemes,
    code_value,
    dictionary_tags,
    iod,
    standard_uid,
    unknown_code_form,
    unsafe_text,
    vr_allowed,
)

TEXT_VRS = {"AE", "AS", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"}
DATE_VRS = {"DA", "DT", "TM"}
NUM_VRS = {"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "AT"}

DUMMY = {
    "AE": "ANONYMOUS",
    "AS": "000D",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "UR": "",
    "DS": "0",
    "IS": "0",
}
# report words: what the profile decided is an Action (its word: Action.done); the closed world's
# own reasons are these
NOT_IN_IOD = "removed: not in the VL WSI IOD"
UNSHARED_REFERENCE = "removed: referenced an instance that is not shared"
CONDITION_ABSENT = "removed: its condition attribute is absent"
STANDARD_MEANING = "standard meaning of its code"
SECOND_CODE_VALUE = "removed: a second code value beside the code (no dictionary judges it)"
UNREGISTERED_UID = "replaced: a UID outside the DICOM registry"
UNKNOWN_TAG_POINTER = "removed: points to no attribute of the DICOM dictionary"
OFFSET_TABLE = "removed: an offset table of Pixel Data (readers walk the items)"
UNJUDGED_BINARY = "removed: bytes no check of the output can judge"
# Pixel Data's index attributes (``OFFSET_TABLE_KWS``): the items are copied as they are, so the
# index goes (the Basic Offset Table inside Pixel Data is judged by the verifier)
UNKNOWN_CODE = "dummy: code not in the DICOM/SNOMED dictionary"
WRONG_VR = "removed: written with a VR its dictionary entry does not give it"
STRING_VRS = TEXT_VRS | DATE_VRS | {"DS", "IS", "UI"}

# tags the engine writes itself (identity and de-identification record)
CONTAINER_ID = Tag(0x0040, 0x0512)
SPECIMEN_ID = Tag(0x0040, 0x0551)


class WrongVR(ValueError):
    """A Type 1 attribute the instance needs, written with a VR its dictionary entry does not
    give it: no dummy stands for its value (the caller refuses the instance). ``args[0]``: the
    element's keyword path."""


@dataclass(frozen=True)
class Identity:
    """The pseudonymous identity a slide's instances get."""

    slide: str  # ContainerIdentifier, SpecimenIdentifier
    patient: str  # PatientID, PatientName
    study_uid: str | None = None  # None: the source's StudyInstanceUID, remapped
    date_offset_days: int = 0  # for Retain Modified Dates (shift)
    # --dates year on a conversion: the source's own year (the converter's dates are not the
    # scan's; "" when the source has none: dummies); None: each value's own year (DICOM inputs)
    source_year: str | None = None


def _shift_da(value: str, days: int) -> str | None:
    v = value.strip()
    try:
        d = _dt.datetime.strptime(v[:8], "%Y%m%d").date()
    except ValueError:
        return None
    return (d + _dt.timedelta(days=days)).strftime("%Y%m%d")


def clean_date(vr: str, value: str, mode: str, days: int, year: str | None = None) -> str:
    """Shift or reduce one DA/DT/TM value (mode 'shift' | 'year'); unparsable -> dummy.
    ``year`` (mode 'year'): the year to write instead of the value's own."""
    v = str(value).strip()
    if not v:
        return ""
    if vr == "TM":
        return v if mode == "shift" else "000000"
    if mode == "year":
        if year is not None:  # a conversion: the source's year, or a dummy when it has none
            if len(year) == 4 and year.isdigit():
                return year + ("0101" if vr == "DA" else "0101000000")
            return DUMMY[vr]
        if len(v) >= 4 and v[:4].isdigit():
            return v[:4] + ("0101" if vr == "DA" else "0101000000")
        return DUMMY[vr]
    shifted = _shift_da(v, days)
    if shifted is None:
        return DUMMY[vr]
    return shifted + v[8:] if vr == "DT" else shifted


def _no_value(elem: DataElement) -> bool:
    return elem.value in (None, "", b"") or (isinstance(elem.value, (list, tuple)) and not elem.value)


@dataclass
class Engine:
    profile: DicomProfile
    key: bytes
    identity: Identity
    removals: dict[tuple[str, str], Removal] = field(default_factory=dict)
    # the keyed-form tokens the source holds (``wsianon.verify.keyedtokens.of_source``): a UID a
    # Retain option keeps is the source's characters, so the value scrub counts every hit in it
    foreign: frozenset[bytes] = frozenset()

    # -- bookkeeping -------------------------------------------------------
    def _log(self, name: str, what: Action | str, where: str = "") -> None:
        """Record ``name`` as changed: ``what`` is the Action done, or one of the reasons above."""
        word = what.done if isinstance(what, Action) else what
        self.removals.setdefault((name, word), Removal("field", name, word, where))

    # -- per-element actions -------------------------------------------------
    def _dummy(self, elem: DataElement):
        vr = elem.VR
        if vr == "UI":
            # keyed by the slide and the value replaced too: one key's dummy for the element alone
            # was the same UID in every slide (two slides' SOPInstanceUIDs alike, one overwriting
            # the other in a DICOM store)
            return keyed_uid(self.key, f"dummy:{int(elem.tag):08X}:{self.identity.slide}:{elem.value if elem.value is not None else ''}", "dummy")
        if vr in DUMMY:
            return DUMMY[vr]
        if vr in NUM_VRS:
            return 0
        return None  # binary: empty

    @staticmethod
    def _empty(elem: DataElement):
        if elem.VR == "SQ":
            return Sequence([])
        if elem.VR in TEXT_VRS or elem.VR in DATE_VRS or elem.VR in ("DS", "IS", "UI"):
            return ""
        return None

    def _clean(self, elem: DataElement, type_d: bool):
        vr = elem.VR
        if vr in DATE_VRS and self.profile.date_mode in ("shift", "year"):
            vals = elem.value if elem.VM > 1 else [elem.value]
            out = [clean_date(vr, str(v), self.profile.date_mode, self.identity.date_offset_days, self.identity.source_year) for v in vals]
            return out if elem.VM > 1 else out[0]
        if vr in DATE_VRS and self.profile.date_mode == "keep":
            return elem.value
        if vr in NUM_VRS:
            return elem.value
        # free text cannot be proven clean: blank it (a dummy where the IOD requires a value)
        return self._dummy(elem) if type_d else self._empty(elem)

    def apply(self, ds: Dataset) -> Dataset:
        """De-identify ``ds`` (in place; also returned). Record and identity are written too."""
        self._walk(ds, ())
        self._identity(ds)
        return ds

    def _walk(self, ds: Dataset, path: tuple[str, ...]) -> None:
        for tag in list(ds.keys()):
            self._element(ds, Tag(tag), path)
        if path and path[-1] == "OpticalPathSequence" and "PaletteColorLookupTableSequence" in ds:
            self._optical_palette(ds, "/".join(path + ("PaletteColorLookupTableSequence",)))
        self._conditions(ds, path)
        self._code_item(ds, path)

    def _element(self, ds: Dataset, tag: BaseTag, path: tuple[str, ...]) -> None:
        """Judge one element of ``ds``: removed, emptied, replaced, cleaned, kept, or (a
        sequence) descended into."""
        from wsianon.profiles.dicom import wsi_type

        elem = self._readable_public(ds, tag, path)
        if elem is None:
            return
        kw = elem.keyword or ""
        step = kw or f"({tag.group:04X},{tag.element:04X})"
        name = "/".join(path + (step,))
        if not iod().allows(path, kw):  # closed world: not in the VL WSI IOD (nor the record)
            del ds[tag]
            self._log(name, NOT_IN_IOD)
            return
        type_ = wsi_type(path, kw) if kw else None
        if not vr_allowed(int(tag), elem.VR):
            self._wrong_vr(ds, tag, name, type_)
            return
        action, _rule = self.profile.action(int(tag), path, kw, elem.VR)
        if elem.VR == "AT" and not _no_value(elem) and not dictionary_tags(elem):
            # a tag pointer is 4 free bytes: only one naming a DICOM attribute is a pointer
            del ds[tag]
            self._log(name, UNKNOWN_TAG_POINTER)
            return
        if not path and kw in OFFSET_TABLE_KWS:
            del ds[tag]
            self._log(name, OFFSET_TABLE)
            return
        if action is Action.KEEP and elem.VR == "UI" and not _no_value(elem) and "retain-uids" not in self.profile.options:
            # a UID no Annex E row names (a source instance's, a class or resource UID): the
            # registry's and coding schemes' stay, any other (an organisation's root, digits of an
            # identifier) is replaced by its keyed UID
            old = [str(v).strip() for v in (elem.value if elem.VM > 1 else [elem.value])]
            new = [remap(self.key, v) for v in old]
            if new != old:
                elem.value = new if elem.VM > 1 else new[0]
                self._log(name, UNREGISTERED_UID)
            return
        if action is Action.REMOVE:
            del ds[tag]
            self._log(name, Action.REMOVE)
            return
        if elem.VR == "SQ":
            if kw == "RealWorldValueMappingSequence" and any("RealWorldValueLUTData" in item for item in elem.value):
                # a table of free numbers (text fits in it as doubles) no check can judge; the
                # mapping is an optional functional group, so it goes whole (slope/intercept stays)
                del ds[tag]
                self._log(name, "removed: a real world value lookup table cannot be judged")
                return
            self._sequence(elem, action, name, path + (step,))
            return
        if kw.startswith("Segmented") and kw.endswith("PaletteColorLookupTableData") and well_known(ds):
            return  # a well-known palette of the standard (PS3.6 Annex B), its values exactly
        if elem.VR in BINARY_VRS and not _no_value(elem) and not binary_judged(path, kw):
            # closed world: a byte string kept as it is must be one a check judges (an ICC
            # profile, a palette); Encrypted Content, a signature, a UN value could hold anything
            del ds[tag]
            self._log(name, UNJUDGED_BINARY)
            return
        if action is Action.KEEP and elem.VR in FREE_TEXT_VRS and not _kept_text_ok(kw, elem):
            # kept text of a form the profile does not allow, or (also text a Retain option keeps)
            # with a character outside the safe alphabet (``unsafe_text``): X/Z/D by Type
            action = action_by_type(type_)
        if action is Action.KEEP and kw == "ICCProfile" and not _no_value(elem):
            self._icc(elem, name)
            return
        if action is Action.KEEP and kw in PALETTE_DATA_KWS and not _no_value(elem):
            if not well_known(ds):  # the standard's palette stays as the standard spells it
                self._palette(elem, name)
            return
        if action is Action.KEEP and elem.VR in ("DS", "IS") and elem.VM > 1:
            self._text_number_list(ds, elem, kw, name)
        if action is Action.KEEP or _no_value(elem):
            return  # kept, or nothing to remove (the empty element stays)
        self._log(name, self._apply(ds, tag, elem, action, type_ in ("1", "1C")))

    def _wrong_vr(self, ds: Dataset, tag: BaseTag, name: str, type_: str | None) -> None:
        """An element written with a VR its dictionary entry does not give it (text as FD: red
        team stop 38) is read as that VR and could not be judged as what it is: it goes, and
        where the IOD requires it, it comes back in its dictionary VR as a removed value does (a
        dummy for Type 1 free text, empty for Type 2). A Type 1 value of any other VR (a number,
        UID or defined term the image is read by) raises ``WrongVR``."""
        from pydicom.datadict import dictionary_VR

        action = action_by_type(type_)
        vr = dictionary_VR(tag).split(" or ")[0]
        if action is Action.DUMMY and vr not in FREE_TEXT_VRS:
            # a value the instance needs (SamplesPerPixel, a UID, a defined term): a dummy would
            # describe another image, or none (fuzz seed 81: SamplesPerPixel retyped IS "x")
            raise WrongVR(name)
        del ds[tag]
        if action is Action.DUMMY:
            ds.add(DataElement(tag, vr, self._dummy(DataElement(tag, vr, None))))
        elif action is not Action.REMOVE:
            ds.add(DataElement(tag, vr, self._empty(DataElement(tag, vr, None))))
        self._log(name, WRONG_VR if action is Action.REMOVE else f"{action.done}: {WRONG_VR.split(': ', 1)[1]}")

    def _icc(self, elem: DataElement, name: str) -> None:
        """An ICC profile keeps its colorimetric tags only (``io.icc.sanitize``: every text, date,
        private or unreferenced byte zeroed, the profile rebuilt with its table and sizes canonical
        and no padding), as on the TIFF routes (which keep the length: zeros follow)."""
        from wsianon.io.icc import sanitize

        value = bytes(elem.value)
        clean, _emptied = sanitize(value, compact=True)
        if clean != value:
            elem.value = clean
            self._log(name, "cleaned: ICC profile rebuilt (colorimetric tags only, texts empty, table canonical)")

    def _palette(self, elem: DataElement, name: str) -> None:
        """A palette channel within 1 of a few straight segments is made exactly that
        (``io.palette``: its increments can carry no bytes); any other is left for the verifier,
        which refuses it (a table of free numbers is no colour map)."""
        import struct

        from wsianon.io.palette import canonical

        data = bytes(elem.value)
        if len(data) % 2:
            return
        vals = np.frombuffer(data, "<u2")
        clean = canonical(vals)
        if clean is not None and not np.array_equal(clean, vals):
            elem.value = struct.pack(f"<{len(clean)}H", *clean.tolist())
            self._log(name, "cleaned: palette made exactly its straight segments (each entry moved by 1 at most)")

    def _text_number_list(self, ds: Dataset, elem: DataElement, kw: str, name: str) -> None:
        """A kept DS/IS list is trimmed to what the attribute holds (the verifier's rule: the
        dictionary's multiplicity; one value of a ``1-n`` attribute unless the profile data's
        ``numbers.text_lists`` allow more, e.g. one compression ratio a lossy method): a longer
        list is free numbers (decimal strings can spell text)."""
        from pydicom.datadict import dictionary_VM

        try:
            vm = dictionary_VM(elem.tag)
        except KeyError:
            return
        most = iod().text_list_bound(ds, kw) if "n" in vm else int(vm.split("-")[-1])
        if elem.VM > most:
            try:
                elem.value = list(elem.value)[:most] if most > 1 else elem.value[0]
            except ValueError:
                # a value that is no number (pydicom keeps it as text when reading and converts it
                # only when it is set again: fuzz seed 195, dicom #65, a length grown by bit flips
                # swallowing the next element's header): left as it is, for the verifier, which
                # refuses it ("dicom: text vocabulary": not a number), as it does any other
                return
            self._log(name, f"trimmed: {most} value(s) kept (a longer list of numbers could carry text)")

    def _optical_palette(self, op: Dataset, name: str) -> None:
        """An optical path's palette (Type 3) stays only when it is a well-known palette exactly or
        every channel a clipped ramp (``io.palette.is_ramp``, after ``_palette`` made it exact):
        the end points of a map of several segments are free numbers. Any other is removed (the
        image stays monochrome), so the route writes nothing the verifier refuses."""
        from wsianon.io.palette import is_ramp

        def ok(item: Dataset) -> bool:
            if well_known(item):
                return True
            channels = [e for e in item if (e.keyword or "").endswith("PaletteColorLookupTableData")]
            for e in channels:
                data = bytes(e.value or b"")
                if (e.keyword or "").startswith("Segmented") or len(data) % 2 or not is_ramp(np.frombuffer(data, "<u2")):
                    return False
            return True

        if not all(ok(item) for item in op.PaletteColorLookupTableSequence):
            del op.PaletteColorLookupTableSequence
            self._log(name, "removed: a palette that is no ramp a channel (its segments' end points are free numbers)")

    def _readable_public(self, ds: Dataset, tag: BaseTag, path: tuple[str, ...]) -> DataElement | None:
        """The element, or None when it went for what it is, whatever the profile says:
        a group length, a private tag, an unreadable value, a curve or overlay group."""
        group, elem_no = tag.group, tag.element
        where = "/".join(path)
        if elem_no == 0:  # group lengths: retired, recomputed by nobody
            del ds[tag]
            return None
        if group % 2 == 1:  # private (incl. private creators): Retain Safe Private has no safe list
            del ds[tag]
            self._log("private tags", Action.REMOVE, where)
            return None
        try:
            elem = ds[tag]
        except Exception:  # an unreadable value: never keep what cannot be judged
            del ds[tag]
            self._log(f"({group:04X},{elem_no:04X})", Action.REMOVE, where)
            return None
        if group in range(0x5000, 0x5100, 2) or group in range(0x6000, 0x6100, 2):
            # curves and overlays: the whole repeating group goes (Basic X; no Clean Graphics
            # implementation beyond removal)
            del ds[tag]
            self._log("curve/overlay groups (50xx/60xx)", Action.REMOVE, where)
            return None
        return elem

    def _sequence(self, elem: DataElement, action: Action, name: str, path: tuple[str, ...]) -> None:
        """BLANK empties a sequence; any other kept action judges its items one by one."""
        if action is Action.BLANK:
            if len(elem.value):
                elem.value = Sequence([])
                self._log(name, Action.BLANK)
            return
        for item in elem.value:
            self._walk(item, path)

    def _apply(self, ds: Dataset, tag: BaseTag, elem: DataElement, action: Action, type1: bool) -> Action:
        """Apply BLANK, DUMMY, REPLACE or CLEAN to a non-empty element; the action done."""
        if action is Action.BLANK:
            elem.value = self._empty(elem)
        elif action is Action.DUMMY:
            elem.value = self._dummy(elem)
        elif action is Action.REPLACE:
            elem.value = self._uid_or_dummy(elem)
        elif action is Action.CLEAN:
            elem.value = self._clean(elem, type1)
        else:  # an action Annex E does not name for a value: fail closed
            del ds[tag]
            action = Action.REMOVE
        return action

    def _uid_or_dummy(self, elem: DataElement):
        """U: a UID is replaced by its keyed equivalent (every value of a multi-valued one)."""
        if elem.VR != "UI":
            return self._dummy(elem)
        if elem.VM > 1:
            return [remap(self.key, str(v)) for v in elem.value]
        return remap(self.key, str(elem.value))

    # -- closed world: conditions, coded concepts, references -----------------
    def _conditions(self, ds: Dataset, path: tuple[str, ...]) -> None:
        """Conditional attributes go with their condition (e.g. ResponsiblePersonRole)."""
        for kw, needs in iod().conditions.items():
            if kw in ds and needs not in ds:
                delattr(ds, kw)
                self._log("/".join(path + (kw,)), CONDITION_ABSENT)

    def _code_item(self, ds: Dataset, path: tuple[str, ...]) -> None:
        """A coded concept keeps its code when the DICOM/SNOMED dictionary knows it, with the
        dictionary's meaning (a Code Meaning is free text); otherwise value and meaning are dummies."""
        where = "/".join(path)
        scheme = str(ds.get("CodingSchemeDesignator", "") or "").strip()
        value_kw, value = code_value(ds)
        for kw in CODE_VALUE_KWS:
            if kw != value_kw and kw in ds and not _no_value(ds[kw]):
                delattr(ds, kw)
                self._log(f"{where}/{kw}", SECOND_CODE_VALUE)
        if "CodeMeaning" not in ds and value_kw is None:
            if scheme and scheme not in code_schemes():  # e.g. CodingSchemeIdentificationSequence
                ds.CodingSchemeDesignator = "99WSIANON"
                self._log(f"{where}/CodingSchemeDesignator", UNKNOWN_CODE)
            return
        meaning = code_meaning(scheme, value) if scheme and value else None
        if meaning is not None:
            if str(ds.get("CodeMeaning", "")).strip() != meaning:
                ds.CodeMeaning = meaning
                self._log(f"{where}/CodeMeaning", STANDARD_MEANING)
            return
        changed = False
        if str(ds.get("CodeMeaning", "") or "") not in ("", DUMMY["LO"]):
            ds.CodeMeaning = DUMMY["LO"]
            changed = True
        for kw in ("CodeValue", "LongCodeValue", "URNCodeValue"):
            if kw in ds and str(ds.get(kw) or "") not in ("", DUMMY["SH"]) and not unknown_code_form(scheme, str(ds.get(kw))):
                setattr(ds, kw, DUMMY["SH"] if kw == "CodeValue" else "")
                changed = True
        if scheme and scheme not in code_schemes() and scheme != "99WSIANON":
            ds.CodingSchemeDesignator = "99WSIANON"
            changed = True
        if changed:
            self._log(f"{where}/CodeMeaning", UNKNOWN_CODE)

    def uid_out(self, uid: str) -> str:
        """What a source SOP Instance UID becomes in the output (REPLACE: keyed remap; KEEP: kept)."""
        action, _ = self.profile.action(0x00080018, (), "SOPInstanceUID")
        return remap(self.key, uid) if action is Action.REPLACE else uid

    def prune_references(self, ds: Dataset, kept: set[str], path: tuple[str, ...] = ()) -> None:
        """Remove every reference to an SOP instance that is not among the outputs (a dropped
        LABEL/OVERVIEW, an instance of another series): every remaining reference resolves."""
        from wsianon.profiles.dicom import wsi_type

        refs = iod().references
        for elem in list(ds):
            if elem.VR != "SQ":
                continue
            kw = elem.keyword or ""
            for item in elem.value:
                self.prune_references(item, kept, path + (kw,))
            if kw not in refs:
                continue
            items = [it for it in elem.value if _resolves(it, kept)]
            if len(items) == len(elem.value):
                continue
            name = "/".join(path + (kw,))
            self._log(name, UNSHARED_REFERENCE)
            if items:
                elem.value = Sequence(items)
            elif wsi_type(path, kw) in ("2", "2C"):
                elem.value = Sequence([])
            else:
                del ds[elem.tag]

    # -- value-based scrub (converted slides) ---------------------------------
    def scrub(self, ds: Dataset, scanner, path: tuple[str, ...] = ()) -> list[str]:
        """Fail closed on values: every element (recursively) whose value holds a canary that
        ``scanner`` (a :class:`~wsianon.io.scan.Scanner` over the source's identifying values)
        finds, in any of its encodings, gets a dummy (Type 1), is emptied (Type 2) or removed
        (Type 3 or not in the IOD). Returns the element paths changed (keywords, never values)."""
        from wsianon.profiles.dicom import wsi_type

        hits: list[str] = []
        canaries = scanner is not None and bool(scanner.canaries)
        for tag in list(ds.keys()):
            try:
                elem = ds[tag]
            except Exception:
                del ds[tag]
                continue
            kw = elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
            name = "/".join(path + (kw,))
            if elem.VR == "SQ":
                for item in elem.value or []:
                    hits += self.scrub(item, scanner, path + (kw,))
                continue
            data = _value_bytes(elem)
            if not data:
                continue
            ours = elem.VR == "UI" or elem.keyword in PSEUDONYM_KEYWORDS  # where keyed UIDs and pseudonyms stand
            if (
                canaries
                and (found := scanner.scan_bytes(data))
                and not (ours and chance_in_value(data, found, scanner.text_patterns(), elem.VR == "UI", self.foreign))
            ):
                # (a few of a value's characters inside a keyed UID or pseudonym we wrote stand
                # there by chance: the verifier's canary scan does not count them either; inside
                # one the source holds, kept by a Retain option, they are the source's)
                why = "held a source value"
            elif elem.keyword in DEVICE_TEXT_KWS and not _device_text_ok(ds, elem):
                # a scanner's name the converter derived from source fields (opentile's SCN model up
                # to its first ';'): judged itself, not only for the source's removed values
                why = "a scanner's name holding a number of 4 or more digits"
            else:
                continue
            type_ = wsi_type(path, elem.keyword) if elem.keyword else None
            action = action_by_type(type_)
            if action is Action.DUMMY and elem.VR in BINARY_VRS:
                action = Action.BLANK  # no meaningful binary dummy: empty
            if action is Action.REMOVE:
                del ds[tag]
            elif action is Action.BLANK:
                elem.value = self._empty(elem) if elem.VR not in BINARY_VRS else b""
            else:
                elem.value = self._dummy(elem)
            self.removals.setdefault((name, "scrub"), Removal("field", name, f"{action.done}: {why}"))
            hits.append(name)
        return hits

    # -- identity + record ---------------------------------------------------
    def _identity(self, ds: Dataset) -> None:
        idn = self.identity
        ds.PatientID = idn.patient
        ds.PatientName = idn.patient
        if idn.study_uid:
            ds.StudyInstanceUID = idn.study_uid
        if CONTAINER_ID in ds:
            ds.ContainerIdentifier = idn.slide
        for i, item in enumerate(ds.get("SpecimenDescriptionSequence") or []):
            if SPECIMEN_ID in item:
                item.SpecimenIdentifier = idn.slide if i == 0 else f"{idn.slide}-{i + 1}"

    def record(self, ds: Dataset, clean_pixel_data: bool = True) -> None:
        """Write the de-identification record (PS3.15 E.1.1 / PS3.3 C.12.1)."""
        ds.PatientIdentityRemoved = "YES"
        codes = self.profile.method_codes(clean_pixel_data)
        ds.DeidentificationMethod = [f"wsianon {_version}", "PS3.15 Annex E"] + [m[:64] for _, m in codes[1:]]
        items = []
        for value, meaning in codes:
            it = Dataset()
            it.CodeValue = value
            it.CodingSchemeDesignator = "DCM"
            it.CodeMeaning = meaning
            items.append(it)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = self.profile.temporal
        eq = Dataset()
        eq.Manufacturer = "wsianon"
        eq.ManufacturerModelName = "wsianon"
        eq.SoftwareVersions = _version
        purpose = Dataset()
        purpose.CodeValue = "109104"
        purpose.CodingSchemeDesignator = "DCM"
        purpose.CodeMeaning = "De-identifying Equipment"
        eq.PurposeOfReferenceCodeSequence = Sequence([purpose])
        eq.ContributionDescription = "De-identified (PS3.15 Annex E)"
        seq = ds.get("ContributingEquipmentSequence")
        ds.ContributingEquipmentSequence = Sequence(list(seq or []) + [eq])


def remap(key: bytes, uid: str) -> str:
    """A source UID as the output carries it: a standard UID (the registry's, a coding scheme's)
    as it is, any other keyed (``keyed_uid``) — also one a writer put under the registry's root
    without the registry naming it."""
    old = str(uid).strip().rstrip("\0")
    return old if not old or standard_uid(old) else keyed_uid(key, old)


def _kept_text_ok(kw: str, elem: DataElement) -> bool:
    """A kept free-text value may stay: of the form ``kept_text`` allows where it lists the
    attribute, and (any kept text, also one a Retain option keeps) in the safe alphabet."""
    try:
        v = elem.value
    except Exception:
        return False
    vals = [str(x).strip() for x in (list(v) if elem.VM > 1 else [v]) if x is not None and str(x).strip()]
    if kw in iod().kept_text:
        return all(iod().kept_text_ok(kw, x) for x in vals)
    return not any(unsafe_text(x) for x in vals)


def _device_text_ok(ds: Dataset, elem: DataElement) -> bool:
    """A Manufacturer / ManufacturerModelName of free text holds no number of 4 or more digits
    (``profiles.dicom.device_text_ok``; the item's Manufacturer says whether a Hamamatsu catalogue
    number is a model designation)."""
    if elem.VR not in FREE_TEXT_VRS:
        return True  # another VR: judged as that VR (``vr_allowed`` removes a wrong one)
    try:
        v = elem.value
        maker = ds.get("Manufacturer", "")
    except Exception:
        return False
    vals = [str(x) for x in (list(v) if elem.VM > 1 else [v]) if x is not None]
    return all(device_text_ok(x, str(maker or "")) for x in vals)


def _resolves(item: Dataset, kept: set[str]) -> bool:
    """An item of a reference sequence points only to instances that are kept."""
    uid = item.get("ReferencedSOPInstanceUID")
    if uid is not None and str(uid) not in kept:
        return False
    for kw in ("ReferencedInstanceSequence", "ReferencedSeriesSequence", "ReferencedSOPSequence"):
        if kw in item and not len(item.get(kw) or []):
            return False  # all its references were pruned
    return uid is not None or any(kw in item for kw in ("ReferencedInstanceSequence", "ReferencedSeriesSequence", "ReferencedSOPSequence"))


def _value_bytes(elem: DataElement) -> bytes:
    """What an element's value looks like as text (strings) or raw bytes (binary VRs)."""
    try:
        v = elem.value
    except Exception:
        return b""
    if v is None:
        return b""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    if elem.VR not in STRING_VRS and elem.VR != "PN":
        return b""
    vals = list(v) if elem.VM > 1 else [v]
    return "\\".join(str(x) for x in vals).encode("utf-8", "replace")
