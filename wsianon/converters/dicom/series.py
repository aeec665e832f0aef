"""DICOM WSI inputs: detection, grouping into slides, inventory, and de-identification."""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from wsianon.converters.base import Field, Inventory, SlideContext
from wsianon.converters.dicom.engine import DATE_VRS, Engine, Identity, WrongVR, remap
from wsianon.io.dicomframes import concatenation_problems, offset_table_problem, unplaced_frames
from wsianon.io.keyed import date_offset_days, keyed_token, keyed_uid
from wsianon.converters.dicom.stream import read_header, write_instance
from wsianon.errors import CorruptInput, NothingToShare, UnsupportedFormat
from wsianon.io.plan import Removal
from wsianon.io.scan import Scanner
from wsianon.verify import keyedtokens
from wsianon.profiles.actions import Action
from wsianon.profiles.names import has_long_number
from wsianon.profiles.dicom import FRAMES_JUDGED_TS, FREE_TEXT_VRS, DicomProfile, in_standard_text, iod, profile_for_policy, standard_meanings, vr_allowed

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
IMAGE_KINDS = ("VOLUME", "THUMBNAIL", "OVERVIEW", "LABEL")


@dataclass
class DicomResult:
    """What the DICOM route wrote for one slide."""

    files: list[Path] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    transcoded: bool = False
    # (source instance or None, output instance): pairs whose frames must be byte-identical
    frame_map: list[tuple[Path | None, Path]] = field(default_factory=list)
    identity: Identity | None = None
    profile: DicomProfile | None = None


# ---------------------------------------------------------------------------
# detection and grouping


MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage (DICOMDIR)


def _has_preamble(path: Path) -> bool:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False  # a FIFO, socket or device: opening or reading it could block forever
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom(path: Path) -> bool:
    """A file with the DICM preamble, or a folder holding at least one such file (recursively)."""
    path = Path(path)
    if path.is_file():
        return _has_preamble(path)
    if path.is_dir():
        return any(True for _ in dicom_files(path))
    return False


def dicom_files(folder: Path):
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            if _has_preamble(p):
                yield p


def expand(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        out.extend(dicom_files(p) if p.is_dir() else [p])
    return out


def group_series(paths: list[Path]) -> list[list[Path]]:
    """DICOM files (or folders) -> one sorted list per slide (SeriesInstanceUID). Unreadable: CorruptInput."""
    groups: dict[str, list[Path]] = {}
    directories: list[Path] = []
    for p in expand(paths):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SeriesInstanceUID", "SOPClassUID"])
                # pydicom converts an element's value when it is first read: a damaged VR (fuzz
                # seed 92, LABEL/NONE #59: 'Ui' for SeriesInstanceUID's 'UI') raises here, not in dcmread
                meta = getattr(ds, "file_meta", None)
                storage = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
                uid = str(ds.get("SeriesInstanceUID", "") or "")
        except Exception as exc:
            raise CorruptInput(p, f"not a readable DICOM file ({type(exc).__name__})") from None
        if storage == MEDIA_DIRECTORY:
            directories.append(p)  # a DICOMDIR (the media's index, PS3.10): no image, never copied to OUT
            continue
        if not uid:
            raise CorruptInput(p, "DICOM file has no SeriesInstanceUID")
        groups.setdefault(uid, []).append(p)
    if directories and not groups:
        raise CorruptInput(directories[0], "a media index (Media Storage Directory) holds no image: give the folder of the instances")
    return [sorted(g) for g in groups.values()]


# ---------------------------------------------------------------------------
# inventory


def _image_kind(ds: Dataset) -> str | None:
    it = ds.get("ImageType")
    if it is None:
        return None
    vals = [str(v).upper() for v in (it if isinstance(it, (list, tuple)) or hasattr(it, "__iter__") and not isinstance(it, str) else [it])]
    return vals[2] if len(vals) > 2 and vals[2] in IMAGE_KINDS else None


def _walk_values(ds: Dataset, path: tuple[str, ...], profile: DicomProfile, out: list, where: str) -> None:
    for elem in ds:
        tag = int(elem.tag)
        kw = elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
        name = "/".join(path + (kw,))
        if elem.tag.group % 2 == 1:
            action = Action.REMOVE
        else:
            action, _rule = profile.action(tag, path, elem.keyword or "", elem.VR)
            if not iod().allows(path, elem.keyword or ""):
                action = Action.REMOVE  # closed world: not in the VL WSI IOD
        if elem.VR == "SQ":
            for item in elem.value or []:
                _walk_values(item, path + (kw,), profile, out, where)
            continue
        if action is Action.KEEP:
            continue
        try:
            value = elem.value
        except Exception:
            continue
        if value is None or isinstance(value, (bytes, bytearray)):
            continue
        vals = list(value) if elem.VM > 1 else [value]
        for v in vals:
            s = str(v).strip()
            if not s:
                continue
            if elem.VR == "UI" and s.startswith("1.2.840.10008."):
                continue
            out.append((name, s, action, elem.VR, where))


def inspect_dicom(files: list[Path]) -> Inventory:
    """The identifying content of one DICOM slide: every non-kept value, by keyword path."""
    files = [Path(f) for f in files]
    if not files:
        raise CorruptInput(None, "no DICOM files given")
    profile = DicomProfile()
    raw: list[tuple[str, str, Action, str, str]] = []
    kept_values: set[str] = set()
    standard_texts: set[str] = set()
    kinds: list[tuple[str | None, Path]] = []
    levels = 0
    for i, f in enumerate(files):
        ds, _span = read_header(f)
        try:
            kind = _image_kind(ds)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _walk_values(ds, (), profile, raw, f"instance {i}")
                _kept_values(ds, profile, kept_values)
                standard_texts |= standard_meanings(ds)
        except Exception as exc:  # pydicom raises NotImplementedError, ValueError, ... on broken elements
            raise CorruptInput(f, f"broken DICOM data set: an element cannot be decoded ({type(exc).__name__})") from None
        kinds.append((kind, f))
        if kind == "VOLUME":
            levels += 1
        sm = getattr(ds, "file_meta", None)
        if sm is not None and sm.get("SourceApplicationEntityTitle"):
            raw.append(("file meta/SourceApplicationEntityTitle", str(sm.SourceApplicationEntityTitle).strip(), Action.REMOVE, "AE", f"instance {i}"))
    return _inventory(files, raw, kept_values, kinds, levels, standard_texts)


def _kept_values(ds: Dataset, profile: DicomProfile, kept_values: set[str]) -> None:
    """Values kept as vocabulary (CS terms, dictionary codes, UIDs...): a removed field holding one
    of them is no canary. Free text kept as the source wrote it (Manufacturer, OpticalPathIdentifier,
    ...) is not among them: an identifier copied there stays a canary, and the copy is scrubbed."""
    code_items = iod().code_items
    for elem in ds.iterall():
        try:
            if elem.VR in FREE_TEXT_VRS and (elem.keyword or "") not in code_items:
                continue
            if elem.VR != "SQ" and elem.tag.group % 2 == 0 and profile.action(int(elem.tag), (), elem.keyword or "")[0] is Action.KEEP:
                v = elem.value
                for x in v if elem.VM > 1 else [v]:
                    kept_values.add(str(x).strip().lower())
        except Exception:
            continue


def _inventory(files, raw, kept_values, kinds, levels, standard_texts: set[str] | frozenset[str] = frozenset()) -> Inventory:
    inv = Inventory(format="dicom", path=files[0].parent if len(files) > 1 else files[0], input_files=files, levels=levels)
    seen: set[tuple[str, str]] = set()
    for name, value, action, vr, where in raw:
        if (name, value) in seen:
            continue
        seen.add((name, value))
        # values that also occur as kept values (e.g. a description equal to an ImageType word)
        # or times of day are too generic to be proven absent from bytes
        # or part of a standard code meaning the output keeps ("Brightfield" in DCM 111744
        # "Brightfield illumination"): the standard's text, in every such output, not a copy.
        # A value with a run of 4 or more digits (an MRN, a date, a case number) stays a canary even
        # where it is also kept (a SeriesNumber, an unknown code's value equal to the PatientID):
        # red team stop 37 had that kept copy switch the scrub off for every other copy; the kept
        # copy itself is then found by the canary scan and the slide quarantined, fail-closed
        canary = (
            vr not in ("TM", "CS", "DS", "IS", "US", "UL", "SS", "SL", "FL", "FD", "AT", "UV", "SV")
            and (value.lower() not in kept_values or has_long_number(value))
            and not in_standard_text(value, standard_texts)
        )
        inv.fields.append(Field(name=name, value=value, action=action, where=where, canary=canary))
    from wsianon.converters.base import AssociatedImage

    for kind, f in kinds:
        if kind in ("LABEL", "OVERVIEW"):
            inv.images.append(AssociatedImage(kind=kind.lower(), where=f"instance {files.index(f)}", identifying=True))
        elif kind == "THUMBNAIL":
            inv.images.append(AssociatedImage(kind="thumbnail", where=f"instance {files.index(f)}", identifying=False, action=Action.KEEP))
        elif kind is None:
            inv.notes.append(f"instance {files.index(f)}: no ImageType value 3 (VOLUME/LABEL/OVERVIEW/THUMBNAIL)")
    return inv


# ---------------------------------------------------------------------------
# identity


def slide_identity(ctx: SlideContext, source_patient_id: str | None, source_study_uid: str | None) -> Identity:
    """Pseudonyms for one slide: the map's values when given, otherwise keyed hashes."""
    key = ctx.key
    if ctx.patient_pseudonym:
        patient = ctx.patient_pseudonym
    elif source_patient_id:
        patient = "P" + keyed_token(key, "patient", source_patient_id)
    else:
        patient = ctx.pseudonym
    if ctx.study_pseudonym:
        study = keyed_uid(key, ctx.study_pseudonym, "study")
    elif source_study_uid:
        study = remap(key, source_study_uid)
    else:
        study = keyed_uid(key, patient + "\0" + ctx.pseudonym, "study")
    return Identity(slide=ctx.pseudonym, patient=patient, study_uid=study, date_offset_days=date_offset_days(key, patient))


def finalize_meta(ds: Dataset) -> None:
    """File meta that agrees with the de-identified data set and names no source application."""
    fm = ds.file_meta
    for elem in list(fm):
        if not vr_allowed(int(elem.tag), elem.VR):  # read as another VR than its own: rewritten or left out
            del fm[elem.tag]
    fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fm.MediaStorageSOPClassUID = ds.SOPClassUID
    for kw in (
        "SourceApplicationEntityTitle",
        "SendingApplicationEntityTitle",
        "ReceivingApplicationEntityTitle",
        "PrivateInformationCreatorUID",
        "PrivateInformation",
        "SourcePresentationAddress",
        "SendingPresentationAddress",
        "ReceivingPresentationAddress",
    ):
        if kw in fm:
            delattr(fm, kw)
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = "WSIANON"


# ---------------------------------------------------------------------------
# de-identification of DICOM inputs

_KIND_ORDER = {"VOLUME": 0, "THUMBNAIL": 1, "OVERVIEW": 2, "LABEL": 3}


def _dropped(kind: str, policy, keep_label: bool) -> bool:
    """An instance the run does not share: a LABEL (unless our blank one), an OVERVIEW unless
    --macro keep, a THUMBNAIL with --thumbnail remove."""
    return (kind == "LABEL" and not keep_label) or (kind == "OVERVIEW" and policy.macro != "keep") or (kind == "THUMBNAIL" and policy.thumbnail == "remove")


def _width(ds) -> int:
    """The image's width for the order of the instances: TotalPixelMatrixColumns, else Columns; 0
    when it is not a number. Only an instance the run drops can hold such a value here (a shared
    one's frame geometry is checked before, ``unplaced_frames``): fuzz seed 90, a LABEL's
    TotalPixelMatrixColumns retyped IS "x" ended in an internal error (ValueError)."""
    try:
        return int(ds.get("TotalPixelMatrixColumns", 0) or ds.get("Columns", 0) or 0)
    except (TypeError, ValueError):
        return 0


def process_instances(
    sources: list[Path], ctx: SlideContext, out_dir: Path, result: DicomResult, label_note: str, keep_label: bool = False, scanner: Scanner | None = None
) -> None:
    """Engine on every instance of one slide; LABEL/OVERVIEW per policy; write into ``out_dir``.
    ``scanner``: the source's identifying values (its inventory's canaries); an element the
    engine kept that still holds one (an accession number copied into OpticalPathIdentifier) is
    given a dummy, emptied or removed by its Type (``Engine.scrub``)."""
    profile = profile_for_policy(ctx.policy)
    headers = []
    for f in sources:
        ds, span = read_header(f)
        sop = str(ds.get("SOPClassUID", ""))
        if sop != WSI_SOP_CLASS:
            raise UnsupportedFormat(f, "not a VL Whole Slide Microscopy Image instance (other SOP classes are refused)")
        kind = _image_kind(ds)
        if kind is None:
            raise UnsupportedFormat(
                f,
                "non-conformant WSI instance: ImageType value 3 (VOLUME/LABEL/OVERVIEW/THUMBNAIL) missing, "
                "so it cannot be told whether it shows the slide label; refused, nothing written",
            )
        if span is None:
            raise UnsupportedFormat(f, "WSI instance without Pixel Data")
        if not _dropped(kind, ctx.policy, keep_label):
            if not str(ds.get("SOPInstanceUID", "") or ""):  # Type 1: the output's file meta and references name it
                raise CorruptInput(f, "WSI instance without a SOP Instance UID; refused, nothing written")
            # an instance that will be shared: its frames are copied as they are, so they must be
            # ones the checks judge, each with a place of its own (a frame no viewer shows could
            # be any image); a LABEL/OVERVIEW that is removed is not held to it
            ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "") if getattr(ds, "file_meta", None) is not None else ""
            if ts not in FRAMES_JUDGED_TS:
                raise UnsupportedFormat(
                    f, "a transfer syntax whose frames no check judges (e.g. RLE Lossless: bytes after a frame's segments); refused, nothing written"
                )
            table = offset_table_problem(f)
            if table is not None:
                raise UnsupportedFormat(f, f"{table}; refused, nothing written")
            unplaced = unplaced_frames(ds)
            if unplaced is not None:
                raise UnsupportedFormat(f, f"frames without a place of their own in the image ({unplaced}); refused, nothing written")
        headers.append((kind, f, ds, span))
    # a level split over several instances (a concatenation): its parts must make the one whole
    # exactly (no overlap, no gap, no part missing, the same image described by each)
    shared = [(f, ds) for kind, f, ds, _s in headers if not _dropped(kind, ctx.policy, keep_label)]
    broken = concatenation_problems(shared)
    if broken:
        raise UnsupportedFormat(shared[0][0], f"a concatenation that is not one whole image ({broken[0]}); refused, nothing written")
    first = next((ds for k, _f, ds, _s in headers if k == "VOLUME"), headers[0][2])
    identity = slide_identity(ctx, str(first.get("PatientID", "") or "") or None, str(first.get("StudyInstanceUID", "") or "") or None)
    engine = Engine(profile, ctx.key, identity)
    # before the engine changes them: the tokens the source's own headers and fields hold
    engine.foreign = keyedtokens.of_source([c.value for c in (scanner.canaries if scanner is not None else ())]) | frozenset(
        t for _k, _f, ds, _s in headers for t in keyedtokens.of_dataset(ds)
    )
    result.identity, result.profile = identity, profile
    headers.sort(key=lambda h: (_KIND_ORDER[h[0]], -_width(h[2]), str(h[1])))
    # the instances that will be shared, by their output SOP Instance UID: references to any
    # other instance (a dropped LABEL/OVERVIEW, another series) are removed
    kept_uids = {engine.uid_out(str(ds.get("SOPInstanceUID", ""))) for kind, _f, ds, _s in headers if not _dropped(kind, ctx.policy, keep_label)}
    n = 0
    frame_of_reference: str | None = None  # PS3.3 C.7.4.1.1.1: one Frame of Reference UID per series
    for kind, f, ds, span in headers:
        where = f"instance {sources.index(f)}"
        if _dropped(kind, ctx.policy, keep_label):
            result.removals.append(Removal("image", kind.lower(), Action.REMOVE.done, where))
            continue
        try:
            engine.apply(ds)
        except WrongVR as exc:
            raise CorruptInput(
                f, f"broken DICOM data set: {exc.args[0]} is written with a VR its dictionary entry does not give it; refused, nothing written"
            ) from None
        frame_of_reference = one_frame_of_reference(ds, frame_of_reference, result)
        engine.prune_references(ds, kept_uids)
        engine.scrub(ds, scanner)
        clean_pixels = kind != "OVERVIEW"
        if kind == "OVERVIEW":
            ds.BurnedInAnnotation = "YES"
            ds.SpecimenLabelInImage = "YES"
            result.notes.append("WARNING: the OVERVIEW image was kept (--macro keep); it may show the slide label")
        if kind == "LABEL":  # our own blank label (--label blank on a conversion)
            ds.BurnedInAnnotation = "NO"
            ds.SpecimenLabelInImage = "NO"
        engine.record(ds, clean_pixel_data=clean_pixels)
        finalize_meta(ds)
        try:
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
        except (TypeError, ValueError):  # a damaged element (fuzz seed 81: retyped IS "x")
            raise CorruptInput(f, "Samples per Pixel is not a number") from None
        if samples == 1 and "PlanarConfiguration" in ds:
            del ds.PlanarConfiguration  # PS3.3 C.7.6.3.1.3: present only when Samples per Pixel > 1
        n += 1
        dest = out_dir / f"{n:04d}-{kind.lower()}.dcm"
        write_instance(ds, f, span, dest)  # the Pixel Data element's header made canonical (OW, zeros)
        result.files.append(dest)
        result.frame_map.append((f, dest))
    if not result.files:
        raise NothingToShare(
            sources[0], "skipped: nothing to share after removing the label" + (" and overview" if any(h[0] == "OVERVIEW" for h in headers) else "")
        )
    if label_note:
        result.notes.append(label_note)
    result.removals.extend(engine.removals.values())


def one_frame_of_reference(ds: Dataset, chosen: str | None, result: DicomResult) -> str | None:
    """Give ``ds`` the series' Frame of Reference UID: the first instance's (already de-identified)
    value. PS3.3 C.7.4.1.1.1: "Each Series shall have one and only one Frame of Reference UID";
    some writers (wsi2dcm) give every level its own, so the output did not agree with itself and
    ``wsianon verify`` without the source failed a clean slide. Returns the series' value."""
    value = str(ds.get("FrameOfReferenceUID", "") or "")
    if not value:
        return chosen
    if chosen is None:
        return value
    if value != chosen:
        ds.FrameOfReferenceUID = chosen
        note = "Frame of Reference UID: the source's instances had several in one series; the output has one (PS3.3 C.7.4.1.1.1)"
        if note not in result.notes:
            result.notes.append(note)
    return chosen


def align_inventory(inv: Inventory, profile: DicomProfile) -> None:
    """Mark fields the chosen options retain (e.g. --profile retain-device-identity) as kept, so
    that they are not treated as values that must vanish (``inspect_dicom`` knows no options)."""
    from pydicom.datadict import tag_for_keyword

    for f in inv.fields:
        parts = tuple(f.name.split("/"))
        tag = tag_for_keyword(parts[-1])
        if tag is None:
            continue
        if profile.action(tag, parts[:-1], parts[-1])[0] is Action.KEEP:
            f.action = Action.KEEP


def deidentify_series(inv: Inventory, ctx: SlideContext, out_dir: Path) -> DicomResult:
    """De-identify one DICOM WSI slide (``inv.input_files``) into ``out_dir``."""
    align_inventory(inv, profile_for_policy(ctx.policy))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = DicomResult()
    note = ""
    if ctx.policy.label == "blank":
        note = "--label blank: DICOM inputs get no blank LABEL instance; the label was removed"
    try:
        process_instances(list(inv.input_files), ctx, out_dir, result, note, scanner=Scanner(inv.canaries()))
    except BaseException:
        for p in result.files:
            p.unlink(missing_ok=True)
        raise
    return result


__all__ = ["DicomResult", "is_dicom", "group_series", "inspect_dicom", "deidentify_series", "slide_identity", "DATE_VRS"]
