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


# the forms a date/time field's value may take to be kept by ``--dates keep``: every
# whitespace-separated token is a date, a time of day (optionally with its zone and AM/PM), an ISO
# date-time or a time zone, with real month, day, hour and minute numbers.  A run of digits that
# is none of these (an MRN "77123456", "4711" after a date, "55 66 77") is no date: removed.
_DATE_SEP = r"[-/:.]"
_TIME = r"(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,]\d{1,9})?)?"
_ZONE = r"(?:Z|(?:GMT|UTC)?[+-](?P<zh>\d{2})(?::?(?P<zm>\d{2}))?)"


def _date_ok(tok: str) -> bool:
    import re

    m = re.fullmatch(rf"(\d{{4}}){_DATE_SEP}(\d{{1,2}}){_DATE_SEP}(\d{{1,2}})", tok)  # 2019-07-23, 2019:07:23
    if m:
        y, mo, d = (int(g) for g in m.groups())
        return 1 <= mo <= 12 and 1 <= d <= 31
    m = re.fullmatch(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{2}|\d{4})", tok)  # 12/29/09, 23.07.2019
    if m:
        a, b = int(m.group(1)), int(m.group(3))
        return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31)
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", tok)  # 20190723 (DICOM DA)
    if m:
        y, mo, d = (int(g) for g in m.groups())
        return 1900 <= y <= 2099 and 1 <= mo <= 12 and 1 <= d <= 31
    return False


def _zone_ok(m) -> bool:
    zh, zm = m.group("zh"), m.group("zm")
    return (zh is None or int(zh) <= 14) and (zm is None or int(zm) <= 59)


def _time_ok(tok: str) -> bool:
    import re

    m = re.fullmatch(rf"{_TIME}{_ZONE}?", tok)
    if not m:
        return False
    h, mi, sec = int(m.group("h")), int(m.group("mi")), m.group("s")
    return h <= 24 and mi <= 59 and (sec is None or int(sec) <= 60) and _zone_ok(m)


def _clock_tokens(value: str) -> list[str] | None:
    """The kinds ("date", "time", "zone", "ampm") of ``value``'s tokens, or None when a token is
    none of them."""
    import re

    kinds: list[str] = []
    for tok in value.split():
        if re.fullmatch(r"(?i)AM|PM", tok) and kinds and kinds[-1] == "time":
            kinds.append("ampm")
            continue
        if tok in ("GMT", "UTC"):  # a bare zone; "Z" and offsets are _ZONE's
            kinds.append("zone")
            continue
        z = re.fullmatch(_ZONE, tok)
        if z and _zone_ok(z):
            kinds.append("zone")
            continue
        date, t, rest = tok.partition("T")  # ISO 8601: 2021-03-11T10:22:09Z
        if t and _date_ok(date) and _time_ok(rest):
            kinds += ["date", "time"]
        elif _date_ok(tok):
            kinds.append("date")
        elif _time_ok(tok):
            kinds.append("time")
        else:
            return None
    return kinds


def date_only(value: str) -> bool:
    """``value`` is a date (with its time and zone, if any) and nothing else, with a year
    (``--dates keep`` keeps such a value; free text or a bare number in a date field is no date: it is removed)."""
    kinds = _clock_tokens(value)
    return kinds is not None and "date" in kinds and bool(year_only(value))


def clock_only(value: str) -> bool:
    """``value`` is a date, a time of day or a time zone and nothing else ("12/29/09", "09:59:15",
    "09:59:15 AM", "GMT-05:00", "UTC", "2021-03-11T10:22:09Z").  ``--dates keep`` keeps such a
    value; free text or a bare number in a date or time field is removed."""
    return bool(_clock_tokens(value))


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
