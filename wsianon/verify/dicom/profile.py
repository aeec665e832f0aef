"""``dicom: profile``: every element of every output, recursively, judged against the resolved
Annex E profile (rule data from ``wsianon.profiles.dicom``, never the engine's code).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from wsianon.profiles.actions import Action
from wsianon.profiles.dicom import KEYED_ROOT, DicomProfile, standard_uid
from wsianon.verify.dicom.common import IDENTITY_KWS

# ---------------------------------------------------------------------------
# profile walk


def element_values(elem) -> list[str]:
    v = elem.value
    if v is None or isinstance(v, (bytes, bytearray)):
        return []
    vals = list(v) if elem.VM > 1 else [v]
    return [str(x).strip() for x in vals if str(x).strip()]


def _is_deid_item(item: Dataset) -> bool:
    for p in item.get("PurposeOfReferenceCodeSequence") or []:
        if str(p.get("CodeValue", "")) == "109104":
            return True
    return False


def _walk_sequence(
    elem, kw: str, name: str, action: Action, profile: DicomProfile, source_values: set[str], source_uids: set[str], problems: list[str], path: tuple[str, ...]
) -> int:
    """A sequence element: its own action (REMOVE, BLANK), then its items (our De-identifying Equipment item skipped)."""
    if action is Action.REMOVE and not (kw == "ContributingEquipmentSequence" and path == ()):
        problems.append(f"{name} present (profile: remove)")
    if action is Action.BLANK and len(elem.value):
        problems.append(f"{name} has items (profile: empty)")
    n = 0
    for item in elem.value:
        if kw == "ContributingEquipmentSequence" and _is_deid_item(item):
            continue
        n += walk_profile(item, profile, source_values, source_uids, problems, path + (kw,))
    return n


def _check_values(elem, name: str, action: Action, profile: DicomProfile, source_values: set[str], source_uids: set[str], problems: list[str]) -> None:
    """A non-sequence element's values against its action (KEEP, REMOVE, BLANK, REPLACE) and the source's values."""
    vals = element_values(elem)
    if action is Action.KEEP:
        return
    if action is Action.REMOVE:
        problems.append(f"{name} present (profile: remove)")
        return
    if action is Action.BLANK and vals and elem.keyword not in IDENTITY_KWS:
        problems.append(f"{name} not empty (profile: empty)")
    if action is Action.REPLACE:
        for v in vals:
            if v in source_uids or not (v.startswith(KEYED_ROOT) or standard_uid(v)):
                problems.append(f"{name} UID not replaced")
    if elem.VR == "TM" and action is Action.CLEAN and profile.date_mode == "shift":
        return  # Retain Modified Dates shifts dates by whole days: the time of day is kept (as in a DT)
    for v in vals:
        if v in source_values:
            problems.append(f"{name} still holds a source value")
            break


def walk_profile(ds: Dataset, profile: DicomProfile, source_values: set[str], source_uids: set[str], problems: list[str], path: tuple[str, ...] = ()) -> int:
    n = 0
    for elem in ds:
        n += 1
        tag = elem.tag
        kw = elem.keyword or f"({tag.group:04X},{tag.element:04X})"
        name = "/".join(path + (kw,))
        if tag.group % 2 == 1:
            problems.append(f"private tag {name}")
            continue
        if 0x5000 <= tag.group <= 0x60FF and (tag.group & 0xFF00) in (0x5000, 0x6000):
            problems.append(f"curve/overlay element {name}")
            continue
        action, _rule = profile.action(int(tag), path, elem.keyword or "")
        if elem.VR == "SQ":
            n += _walk_sequence(elem, kw, name, action, profile, source_values, source_uids, problems, path)
        else:
            _check_values(elem, name, action, profile, source_values, source_uids, problems)
    return n
