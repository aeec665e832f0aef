"""Policy options shared by every converter (what the user chose).

The option values are defined here once, as StrEnums: the CLI's choices and ``--help`` lists
(``wsianon/cli.py``), the Python API's validation (:class:`Policy`, ``pipeline.jobs.JobConfig``)
and the job manifest all derive from them.  A member equals its string, so reports, JSON and the
manifest keep the plain words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class LabelPolicy(StrEnum):
    remove = "remove"
    blank = "blank"


class MacroPolicy(StrEnum):
    remove = "remove"
    keep = "keep"


class ThumbnailPolicy(StrEnum):
    """A kept thumbnail is proven to be the slide downsampled (``thumbnail-provenance``); ``remove``
    drops it too, for those who want nothing beside the pyramid."""

    keep = "keep"
    remove = "remove"


class DatesPolicy(StrEnum):
    remove = "remove"
    year = "year"
    keep = "keep"


class RenamePolicy(StrEnum):
    pseudonym = "pseudonym"
    keep = "keep"


class Target(StrEnum):
    """``native`` keeps the vendor format; ``dicom`` converts to DICOM WSI."""

    native = "native"
    dicom = "dicom"


class CodedData(StrEnum):
    """How many tiles' coded image data verification decodes (--coded-data; see ``verify/ecs.py``)."""

    sample = "sample"
    all = "all"


class PseudonymFrom(StrEnum):
    """What the keyed slide pseudonym hashes (see ``pipeline/keys.py``)."""

    relpath = "relpath"
    content = "content"
    path = "path"


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(m.value for m in enum)


def check_choice(option: str, value: object, enum: type[StrEnum]) -> None:
    """Refuse a value that is not one of the option's words, naming the option and its words."""
    if value not in values(enum):
        raise ValueError(f"--{option} must be one of {', '.join(values(enum))}")


@dataclass(frozen=True)
class Policy:
    label: LabelPolicy | str = LabelPolicy.remove
    macro: MacroPolicy | str = MacroPolicy.remove
    thumbnail: ThumbnailPolicy | str = ThumbnailPolicy.keep
    dates: DatesPolicy | str = DatesPolicy.remove
    rename: RenamePolicy | str = RenamePolicy.pseudonym
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
    # how many tiles' coded data verification judges for bytes no decoder reads (--coded-data):
    # "sample" (up to ecs.SAMPLE tiles/frames per level, spread evenly) or "all" (every one)
    coded_data: str = "sample"

    def __post_init__(self) -> None:
        check_choice("coded-data", self.coded_data, CodedData)
        for name, enum in (("label", LabelPolicy), ("macro", MacroPolicy), ("thumbnail", ThumbnailPolicy), ("dates", DatesPolicy), ("rename", RenamePolicy)):
            check_choice(name, getattr(self, name), enum)
        if self.mpp is not None and not (0 < float(self.mpp) < 1000):
            raise ValueError("--mpp must be a pixel spacing in micrometres per pixel, above 0 and below 1000")


def date_only(value: str) -> bool:
    """``value`` is a date/time and nothing else: digits and date/time punctuation only, with a year
    (``--dates keep`` keeps such a value; free text in a date field is no date: it is removed)."""
    import re

    v = value.strip()
    return bool(v) and re.fullmatch(r"[0-9][0-9 :/.\-+TZ]*", v) is not None and bool(year_only(v))


def clock_only(value: str) -> bool:
    """``value`` is a date, a time of day or a time zone and nothing else ("12/29/09", "09:59:15",
    "GMT-05:00", "2021-03-11T10:22:09Z"): digits and date/time punctuation, a zone's GMT/UTC.
    ``--dates keep`` keeps such a value; free text in a date or time field is removed."""
    import re

    v = value.strip()
    return re.fullmatch(r"(?:GMT|UTC)?[0-9 :/.\-+TZ]*", v) is not None and any(c.isdigit() for c in v)


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
