"""Policy options shared by every converter (what the user chose)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

LabelPolicy = Literal["remove", "blank"]
MacroPolicy = Literal["remove", "keep"]
DatesPolicy = Literal["remove", "year", "keep"]
RenamePolicy = Literal["pseudonym", "keep"]


@dataclass(frozen=True)
class Policy:
    label: LabelPolicy = "remove"
    macro: MacroPolicy = "remove"
    dates: DatesPolicy = "remove"
    rename: RenamePolicy = "pseudonym"
    dry_run: bool = False
    in_place: bool = False
    allow_generic: bool = False
    overwrite: bool = False
    # DICOM profile options (names of Annex E option columns), see profiles/dicom.py
    dicom_options: frozenset[str] = field(default_factory=frozenset)
    # pixel spacing (µm/pixel) for slides that state none (DICOM target; --mpp)
    mpp: float | None = None
    # a verification check that could not run (missing tool) does not fail the slide (--accept-unrun-checks)
    accept_unrun_checks: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (
            ("label", ("remove", "blank")),
            ("macro", ("remove", "keep")),
            ("dates", ("remove", "year", "keep")),
            ("rename", ("pseudonym", "keep")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name} must be one of {', '.join(allowed)}")
        if self.mpp is not None and not (0 < float(self.mpp) < 1000):
            raise ValueError("--mpp must be a pixel spacing in micrometres per pixel, above 0 and below 1000")


def year_only(value: str) -> str:
    """Reduce a date/time string to its year where one can be found, else ''."""
    import re

    m = re.search(r"(19|20)\d\d", value)
    if m:
        return m.group(0)
    m = re.search(r"\b\d{1,2}/\d{1,2}/(\d\d)\b", value)  # Aperio mm/dd/yy
    if m:
        return "20" + m.group(1)
    return ""
