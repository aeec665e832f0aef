"""The format table: every format wsianon knows, as one typed :class:`FormatSpec` each, in one
ordered table (:data:`FORMATS`), in the spirit of OpenSlide's format table.

A format is a unit: ``wsianon/converters/<format>/`` holds its redactor and whatever else
belongs only to it, and its ``__init__.py`` declares ``SPEC = FormatSpec(...)``.  The rules are
data in ``wsianon/profiles/data/<format>.json``; the format's verification hook (if the shared
checks are not the whole proof) is ``wsianon/verify/formats/<format>.py``, written against the
output only.

Detection order is the table's order: DICOM (by its preamble), then the specific vendor formats,
then the generic TIFF fallback (used only with ``--allow-generic``).

Construction fails (at import time) when a spec lacks a verification hook — a format may say
that the shared checks are sufficient only explicitly, with :data:`SHARED_CHECKS_SUFFICE` — or
when the table is inconsistent (duplicate names, a redactor whose own facts disagree with its
spec, the generic fallback not last).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from wsianon.converters.base import NativeConverter
from wsianon.profiles import tifffile_open
from wsianon.profiles.closed_world import tiff_closed_world


class VerifiedBy(enum.Enum):
    """Named stand-ins for a verification hook module (never a missing entry)."""

    SHARED_CHECKS = "the shared checks are sufficient (OpenSlide structure, tiles, closed-world partition, vocabulary, canaries)"
    DICOM_VERIFIER = "the DICOM route's own verifier (attribute profile, frames, external validator)"


SHARED_CHECKS_SUFFICE = VerifiedBy.SHARED_CHECKS


class DicomVia(enum.Enum):
    """How ``--target dicom`` gets a format into DICOM."""

    WSIDICOMIZER = "converted by wsidicomizer (tiles passed through where the reader yields them)"
    PYISYNTAX = "converted by wsidicomizer reading through pyisyntax (libisyntax)"
    NATIVE = "already DICOM: de-identified instance by instance"
    REFUSED = "refused"


@dataclass(frozen=True)
class DicomRoute:
    """A format's DICOM route: how, and what refuses a slide before anything is written."""

    via: DicomVia
    reason: str = ""  # why, when ``via`` is REFUSED
    # cheap refusals of slides the route cannot convert faithfully (dry-run and run)
    refuse: Callable[[Path], None] | None = None
    # run only before a real conversion (may be slow: e.g. a decoding probe in a child process)
    preflight: Callable[[Path], None] | None = None
    # the report note on how the pyramid was carried, when tiles were not transcoded
    passthrough_note: str = "pyramid tiles passed through without re-encoding"

    def __post_init__(self) -> None:
        if (self.via is DicomVia.REFUSED) != bool(self.reason):
            raise TypeError("a refused DICOM route needs its reason, and only a refused one has one")


class ClosedWorld(enum.Enum):
    """Which closed-world post-pass and partition proof a format's outputs get."""

    TIFF = "tiff"  # every TIFF byte accounted for (profile closed_world.tiff_tags)
    MRXS = "mrxs"  # Slidedat.ini sections/keys and Index/Data file partition
    NONE = "none"  # the format's own hook proves its structure (iSyntax: header + body hash)


@dataclass(frozen=True)
class FormatSpec:
    """Everything the pipeline needs to know about one format."""

    name: str  # short id used in reports and profiles: "aperio"
    title: str  # human name: "Aperio SVS"
    openslide_vendor: str | None  # what OpenSlide must detect on the output (None: OpenSlide does not read it)
    extension: str  # output extension (".svs"); "" for a folder of instances
    redactor: NativeConverter | None  # the native redactor (None: DICOM, handled by converters/dicom)
    verification: ModuleType | VerifiedBy  # wsianon.verify.formats.<name>, or an explicit VerifiedBy
    dicom: DicomRoute
    closed_world: ClosedWorld
    generic: bool = False  # the fallback for TIFFs no vendor claims (only with --allow-generic)

    def __post_init__(self) -> None:
        if not isinstance(self.verification, (ModuleType, VerifiedBy)):
            raise TypeError(
                f"format {self.name!r}: verification hook must be a module of wsianon.verify.formats or a VerifiedBy value, not {self.verification!r}"
            )
        if isinstance(self.verification, ModuleType):
            if not self.verification.__name__.startswith("wsianon.verify.formats."):
                raise TypeError(f"format {self.name!r}: verification hook {self.verification.__name__} is not in wsianon.verify.formats")
            if not callable(getattr(self.verification, "check", None)):
                raise TypeError(f"format {self.name!r}: verification hook {self.verification.__name__} has no check()")
        r = self.redactor
        if r is not None:
            own = (r.name, r.title, r.openslide_vendor, r.extension)
            if own != (self.name, self.title, self.openslide_vendor, self.extension):
                raise TypeError(f"format {self.name!r}: the redactor's name/title/vendor/extension {own} disagree with its spec")

    @classmethod
    def native(
        cls, redactor: NativeConverter, verification: ModuleType | VerifiedBy, dicom: DicomRoute, closed_world: ClosedWorld, generic: bool = False
    ) -> FormatSpec:
        """The spec of a native format: its name, title, OpenSlide vendor and extension are the redactor's own."""
        return cls(redactor.name, redactor.title, redactor.openslide_vendor, redactor.extension, redactor, verification, dicom, closed_world, generic)

    @property
    def hook(self) -> ModuleType | None:
        """The format's verification module, or None where the shared checks are the whole proof."""
        return self.verification if isinstance(self.verification, ModuleType) else None

    @property
    def handles_tiles(self) -> bool:
        """The hook compares the pyramid itself (MRXS Data files, Leica pages paired through its XML, iSyntax body)."""
        return bool(getattr(self.hook, "HANDLES_TILES", False))

    @property
    def openslide_reads(self) -> bool:
        return bool(getattr(self.hook, "OPENSLIDE_READS", True))

    @property
    def tifffile_kwargs(self) -> dict[str, Any]:
        """What tifffile needs to read the format (NDPI: ``is_ndpi``): profile data, shared with the verifier."""
        return tifffile_open(self.name)

    @property
    def is_dicom(self) -> bool:
        """DICOM inputs: inspected and de-identified by the DICOM route only (no native target)."""
        return self.dicom.via is DicomVia.NATIVE


def build_table(specs: Iterable[FormatSpec]) -> tuple[FormatSpec, ...]:
    """The detection-ordered table, checked: unique names, every entry a typed spec with its
    hook, DICOM first, exactly one generic fallback and it last."""
    table = tuple(specs)
    for s in table:
        if not isinstance(s, FormatSpec):
            raise TypeError(f"not a FormatSpec: {s!r}")
    names = [s.name for s in table]
    if len(set(names)) != len(names):
        raise TypeError(f"duplicate format names in the table: {names}")
    generic = [s for s in table if s.generic]
    if len(generic) != 1 or table[-1] is not generic[0]:
        raise TypeError("the table needs exactly one generic fallback, and it must come last")
    dicom = [s for s in table if s.is_dicom]
    if len(dicom) != 1 or table[0] is not dicom[0]:
        raise TypeError("the table needs exactly one DICOM entry, and it must come first")
    for s in table:
        if s.redactor is None and not s.is_dicom:
            raise TypeError(f"format {s.name!r} has no redactor")
        if (s.closed_world is ClosedWorld.TIFF) != tiff_closed_world(s.name):
            raise TypeError(f"format {s.name!r}: closed world {s.closed_world.name} disagrees with its profile's closed_world.tiff_tags")
    return table


DICOM = FormatSpec(
    name="dicom",
    title="DICOM WSI",
    openslide_vendor="dicom",
    extension="",
    redactor=None,  # converters/dicom: group_series, inspect_dicom, deidentify_series
    verification=VerifiedBy.DICOM_VERIFIER,
    dicom=DicomRoute(DicomVia.NATIVE),
    closed_world=ClosedWorld.NONE,
)

# the format packages import FormatSpec from this module; the table is built after it exists
from wsianon.converters import aperio, generic, isyntax, leica, mrxs, ndpi, philips, ventana  # noqa: E402

# detection order: DICOM, then specific formats before generic TIFF
FORMATS: tuple[FormatSpec, ...] = build_table(
    [
        DICOM,
        ndpi.SPEC,
        mrxs.SPEC,
        ventana.SPEC,
        philips.SPEC,
        isyntax.SPEC,
        leica.SPEC,
        aperio.SPEC,
        generic.SPEC,
    ]
)
_BY_NAME = {s.name: s for s in FORMATS}


def spec_of(name: str | None) -> FormatSpec:
    """The spec of a format by its name (KeyError for an unknown one)."""
    if name is None:
        raise KeyError(name)
    return _BY_NAME[name]


def native_converters() -> list[NativeConverter]:
    """The vendor redactors in detection order (without the generic fallback)."""
    return [s.redactor for s in FORMATS if s.redactor is not None and not s.generic]


def generic_converter() -> NativeConverter:
    r = FORMATS[-1].redactor
    assert r is not None, "build_table: the generic fallback has a redactor"
    return r


def by_name(name: str) -> NativeConverter:
    """The redactor of a format by its name (KeyError for DICOM or an unknown one)."""
    r = spec_of(name).redactor
    if r is None:
        raise KeyError(name)
    return r
