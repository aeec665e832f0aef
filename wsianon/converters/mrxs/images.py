"""The associated images an MRXS slide keeps in NONHIER records of the "Scan data layer"
(label, macro, whole slide, thumbnail): what the policy does with each, the blank
label that can take a label's place, and the layer renumbering after removal."""

from __future__ import annotations

from wsianon.converters.mrxs.index import NonHierRecord
from wsianon.converters.mrxs.ini import IniDoc, renumber_nonhier
from wsianon.converters.mrxs.rules import associated_kind
from wsianon.converters.mrxs.slide import Slide
from wsianon.errors import CorruptInput
from wsianon.io.jpeg_images import blank_jpeg, blank_size_ok, count_barcodes
from wsianon.profiles.policy import Policy

_DEFAULT_LABEL_SIZE = (400, 300)


def associated_actions(slide: Slide, policy: Policy) -> dict[int, str]:
    """table slot -> 'remove' | 'blank' | 'keep' for the associated-image records."""
    out: dict[int, str] = {}
    for rec in slide.records:
        kind = associated_kind(rec)
        if kind is None:
            continue
        if kind == "label":
            out[rec.table_slot] = "blank" if policy.label == "blank" else "remove"
        elif kind in ("macro", "wholeslide"):
            out[rec.table_slot] = "keep" if policy.macro == "keep" else "remove"
        elif policy.thumbnail == "remove":
            out[rec.table_slot] = "remove"
        else:  # thumbnail / preview: kept only when no barcode is found in it
            n = count_barcodes(slide.blob(rec)) if rec.present else 0
            out[rec.table_slot] = "keep" if n == 0 else "remove"
    return out


def _label_size(ini: IniDoc, rec: NonHierRecord) -> tuple[int, int]:
    w = ini.get(rec.section or "", "BARCODE_IMAGE_WIDTH")
    h = ini.get(rec.section or "", "BARCODE_IMAGE_HEIGHT")
    return (int(w or 0), int(h or 0)) if (w or "").isdigit() and (h or "").isdigit() else _DEFAULT_LABEL_SIZE


def label_blanks(slide: Slide, actions: dict[int, str]) -> dict[int, bytes]:
    """table slot -> white JPEG for each label to blank, when it fits in the old blob's place;
    a label it does not fit (or that cannot be located) is switched to 'remove' in ``actions``."""
    blanks: dict[int, bytes] = {}
    for slot, action in actions.items():
        if action != "blank":
            continue
        rec = slide.records[slot]
        size = _label_size(slide.ini, rec)
        # a size of no pixels, or past any label's (a damaged Slidedat.ini: 0 was an internal
        # error, 30000 x 30000 took 3.6 GB to draw): removed, as a blank that does not fit is
        data = blank_jpeg(size) if blank_size_ok(size) else None
        if data is not None and slide.index.supported and rec.present and len(data) <= rec.size:
            blanks[slot] = data
        else:
            actions[slot] = "remove"
    return blanks


def remove_records(slide: Slide, ini: IniDoc, removed: set[int]) -> list[NonHierRecord]:
    """Drop the removed records from ``ini`` (the plan's copy of the slide's Slidedat.ini): their
    sections deleted, the remaining values of each layer renumbered.  Returns the removed records,
    layer by layer."""
    by_layer: dict[int, list[NonHierRecord]] = {}
    for rec in slide.records:
        by_layer.setdefault(rec.layer, []).append(rec)
    out: list[NonHierRecord] = []
    for li, recs in by_layer.items():
        gone = [r for r in recs if r.table_slot in removed]
        if not gone:
            continue
        if len(gone) == len(recs):
            raise CorruptInput(ini.path, f"NONHIER layer {li} would be left empty; this layout is not supported")
        kept = [r for r in recs if r.table_slot not in removed]
        renumber_nonhier(ini, li, {r.val: n for n, r in enumerate(kept)})
        for r in gone:
            if r.section:
                ini.delete_section(r.section)
        out.extend(gone)
    return out
