"""A date that says its year only, as ``run --dates year`` writes it in each format.

``wsianon verify`` knows no policy: a date the output keeps is a finding unless it carries no
more than a year — January 1st, midnight, in the forms the redactors write (DICOM DA/DT
``20190101[000000.000000]``, ISO ``2019-01-01T00:00:00Z``, TIFF ``2019:01:01 00:00:00``, Aperio
``01/01/19``; Philips values quoted and several to a value). A year alone is not an identifier
(HIPAA Safe Harbor keeps years), and those forms leave no digit free to spell anything.
"""

from __future__ import annotations

import re

_YEAR_ONLY = re.compile(
    r'"?(?:'
    r"(?:19|20)[0-9]{2}(?:0101(?:000000(?:\.0{1,6})?)?)?"  # DICOM DA / DT
    r"|(?:19|20)[0-9]{2}-01-01(?:[T ]00:00:00(?:\.0{1,6})?(?:Z|[+-]00:?00)?)?"  # ISO 8601
    r"|(?:19|20)[0-9]{2}:01:01 00:00:00"  # TIFF DateTime
    r"|01/01/[0-9]{2}"  # Aperio mm/dd/yy
    r')"?'
)


def year_only(value: str) -> bool:
    """``value`` (non-empty) is one or more dates, each its year only."""
    parts = str(value).split() if "/" in value or '"' in value or ":" not in value else [value.strip()]
    return bool(parts) and all(_YEAR_ONLY.fullmatch(p) for p in parts)


def check_kept_dates(values: dict[str, str], policy, verdict) -> None:
    """``tiff-datetime``-like check for formats without their own: unless ``--dates keep`` was
    asked for, every date field (name -> value) is empty or its year only. ``wsianon verify`` knows
    no policy (remove), so a whole date fails it (findings name the field, never the value)."""
    if getattr(policy, "dates", "remove") == "keep" or not values:
        return
    from wsianon.verify.reportnames import safe_name

    bad = sorted(safe_name(k) for k, v in values.items() if str(v).strip() and not year_only(str(v).strip()))
    verdict.add("dates-year-only", not bad, f"{len(values)} date field(s) empty or the year only" if not bad else f"a whole date in: {bad}")
