"""De-identification rules as data: vendor field rules, the DICOM Annex E table, policy options."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def load(name: str) -> dict:
    """Load ``wsianon/profiles/data/<name>.json``."""
    with resources.files(__package__).joinpath("data", f"{name}.json").open("r", encoding="utf-8") as fh:
        return json.load(fh)


@lru_cache(maxsize=1)
def dpufs_table() -> dict[str, tuple[str, str, str]]:
    """The Philips DPUfsImport attribute table (``data/dpufs_attributes.json``, shared by Philips TIFF
    and iSyntax): Name -> (Group, Element, PMSVR), the one set of XML attributes an output's
    ``<Attribute>`` of that Name carries (``io.xmlform.dpufs_canonical`` writes them, the verifier
    requires them).  Do not change the mapping returned (it is cached)."""
    return {k: (v[0], v[1], v[2]) for k, v in load("dpufs_attributes")["attributes"].items()}


# format name -> profile file, where they differ
_PROFILE_FILE = {"generic-tiff": "generic"}


def format_profile(fmt: str) -> dict:
    """The format's own rules, ``wsianon/profiles/data/<format>.json`` ({} for a format without one,
    e.g. DICOM, whose rules are the Annex E tables)."""
    try:
        return load(_PROFILE_FILE.get(fmt, fmt))
    except FileNotFoundError:
        return {}


def tifffile_open(fmt: str) -> dict:
    """Keyword arguments tifffile needs to read the format (NDPI: ``is_ndpi``), from its profile."""
    return dict(format_profile(fmt).get("tifffile_open", {}))
