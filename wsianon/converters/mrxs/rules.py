"""What the MRXS profile (``wsianon/profiles/data/mrxs.json``) decides, one value or
one record at a time: the action for a Slidedat.ini value, which NONHIER records are
associated images, and which carry free text."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from wsianon.converters._vocab import vocabulary_value
from wsianon.profiles import load
from wsianon.profiles.policy import Policy, year_only

if TYPE_CHECKING:
    from wsianon.converters.mrxs.index import NonHierRecord

# the NONHIER layer that holds the associated images (label, macro, whole slide, thumbnail)
SCAN_DATA_LAYER = "Scan data layer"


def rules() -> dict:
    return load("mrxs")


def ini_value_action(section: str, key: str, value: str, policy: Policy) -> tuple[str, str]:
    """(action, new value) for one ini value: keep | blank | dummy | year | replace."""
    r = rules()
    if section in r["structural_sections"]:
        return "keep", value
    if key == r["slide_id_key"] and section == "GENERAL":
        return "replace", value
    if key == r["slide_name_key"] and section == "GENERAL":
        return "dummy", value
    if key in r["date_keys"]:
        return _date_action(value, policy)
    if key in r["identifying_keys"]:
        return "blank", ""
    if key in r["safe_keys"] and value.isascii() and value.isprintable() and vocabulary_value(value, "mrxs"):
        # as printable ASCII only (a name in another script or code page is no model name), and
        # as the format's vocabulary (a free word would quarantine the slide: it is blanked)
        return "keep", value
    if not value or re.match(r["structural_value_pattern"], value):
        return "keep", value
    return "blank", ""


def _date_action(value: str, policy: Policy) -> tuple[str, str]:
    if policy.dates == "keep":
        return "keep", value
    if policy.dates == "year":
        y = year_only(value)
        return ("year", y) if y else ("blank", "")
    return "blank", ""


def associated_kind(rec: NonHierRecord) -> str | None:
    """label | macro | wholeslide | thumbnail for an associated-image record, else None."""
    if rec.layer_name != SCAN_DATA_LAYER:
        return None
    return rules()["associated"].get(rec.name)


def openslide_reads(rec: NonHierRecord) -> bool:
    """Whether OpenSlide reads the record: a Scan data layer image, or a tile-position layer."""
    if rec.layer_name == SCAN_DATA_LAYER and rec.name in rules()["associated"]:
        return True
    return rec.layer_name in rules()["openslide_reads_nonhier"]


def text_records(records: list[NonHierRecord]) -> list[NonHierRecord]:
    """Present records OpenSlide does not read (histograms, scan maps, ProfileXML, unknown layers):
    nothing proves what their bytes hold, so their blobs are zeroed (closed world)."""
    return [rec for rec in records if rec.present and not openslide_reads(rec)]
