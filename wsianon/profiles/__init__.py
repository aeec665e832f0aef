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
