"""Stage 1: find the slides among the inputs and detect each one's format by content."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from wsianon.converters.registry import DICOM, FormatSpec, generic_converter, native_converters, spec_of
from wsianon.converters.base import NativeConverter
from wsianon.errors import CorruptInput, UnsupportedFormat, WsianonError
from wsianon.io.tiff import TIFF_MAGIC
from wsianon.io.safefile import is_regular, read_regular

HEAD = 64 * 1024


@dataclass
class SlideSource:
    """One slide to process: its main path, every file that belongs to it, and its detected format."""

    path: Path
    format: str | None = None  # the format's name in the table (``registry.FORMATS``)
    converter: NativeConverter | None = None
    files: list[Path] = field(default_factory=list)
    error: WsianonError | None = None  # detection failure (the slide is reported, the batch goes on)

    @property
    def spec(self) -> FormatSpec:
        """The detected format's spec (KeyError for a source whose detection failed)."""
        return spec_of(self.format)


def _is_dicom_file(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def read_head(path: Path) -> bytes:
    """The first bytes of a regular file (a FIFO, socket or device is refused, never read)."""
    return read_regular(path, HEAD)


def detect_file(path: Path, allow_generic: bool = False) -> tuple[str, NativeConverter | None]:
    """Format of one file, by content. Raises UnsupportedFormat/CorruptInput."""
    head = read_head(path)
    if not head:
        raise CorruptInput(path, "file is empty")
    if _is_dicom_file(head):
        return DICOM.name, None
    for conv in native_converters():
        try:
            if conv.sniff(path, head):
                return conv.name, conv
        except WsianonError:
            raise
        except Exception:
            continue
    if head[:4] in TIFF_MAGIC:
        from wsianon.io.tiff import TiffStructure

        # structurally valid? a truncated or broken TIFF gets a precise reason
        with TiffStructure(path):
            pass
        gen = generic_converter()
        kind = "TIFF"
        if hasattr(gen, "describe"):
            try:
                kind = gen.describe(path)
            except WsianonError:
                raise
            except Exception:
                kind = "TIFF"
        if allow_generic:
            return gen.name, gen
        raise UnsupportedFormat(
            path,
            f"{kind} is not a supported slide format (no vendor redactor claims it); pass --allow-generic to anonymize it fail-closed",
        )
    if head[:3] == b"\xff\xd8\xff" and path.suffix.lower() == ".mrxs":
        raise CorruptInput(path, "MRXS preview without a readable slide folder")
    slide = mrxs_slide_of(path.parent)
    if slide is not None:  # Data0000.dat, Slidedat.ini, ... given on their own: the slide is NAME.mrxs
        # the reason goes into the shared report and certificate: it does not repeat the slide's
        # name (an MRXS name is often the case number); the console line names the path
        raise UnsupportedFormat(path, "a file inside an MRXS slide's folder: give the slide's .mrxs file beside that folder (the folder goes with it)")
    raise UnsupportedFormat(path, "not a whole slide image format wsianon supports")


def missing_reason(p: Path) -> str:
    """Why an input is not there: a name with a wildcard is most often a shell pattern that
    matched no file (the shell then passes it on as it is, e.g. a literal ``*.svs``)."""
    if any(ch in p.name for ch in "*?["):
        return "no such file or directory (a pattern that matched no file: the shell passed it on as it is)"
    return "no such file or directory"


def mrxs_slide_of(folder: Path) -> Path | None:
    """The MRXS slide file (``NAME.mrxs`` beside it) of an MRXS slide folder ``NAME/`` holding a
    Slidedat.ini, or None: such a folder is part of that slide, never a folder of slides."""
    try:
        if not (folder / "Slidedat.ini").is_file():
            return None
        ap = Path(os.path.abspath(folder))
        slide = ap.parent / f"{ap.name}.mrxs"
        return slide if slide.is_file() else None
    except OSError:
        return None


def as_slide_input(p: Path) -> Path:
    """An input as the slide it names: an MRXS slide folder given on its own stands for its
    ``NAME.mrxs`` (the path as the user gave it, so that what is shown stays theirs)."""
    if not p.is_dir():
        return p
    slide = mrxs_slide_of(p)
    if slide is None:
        return p
    q = Path(os.path.normpath(p))
    return q.parent / slide.name if q.name == slide.stem else slide


# files that belong to another slide's folder and are never slides themselves
SKIP_NAMES = frozenset({"Slidedat.ini", "Index.dat"})


def _candidates(directory: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(directory):
        rootp = Path(root)
        # an MRXS slide folder (NAME/ beside NAME.mrxs) belongs to that slide
        dirs[:] = sorted(d for d in dirs if not (rootp / f"{d}.mrxs").exists() and not d.startswith(".wsianon-tmp-"))
        for f in sorted(files):
            if f in SKIP_NAMES or f.startswith(".") or f.endswith(".wsianon-journal"):
                continue
            if not is_regular(rootp / f):
                continue  # a FIFO, socket or device inside a folder is never a slide (and never opened)
            out.append(rootp / f)
    return out


def expand_inputs(inputs: list[Path], allow_generic: bool = False) -> list[SlideSource]:
    """Resolve the user's inputs into slides. Errors are recorded per input, not raised."""
    slides: list[SlideSource] = []
    dicom_files: list[Path] = []
    for inp in inputs:
        p = as_slide_input(Path(inp))
        if not p.exists() and not p.is_symlink():
            slides.append(SlideSource(p, error=CorruptInput(p, missing_reason(p))))
            continue
        if p.is_dir():
            found = 0
            for f in _candidates(p):
                try:
                    head = read_head(f)
                except WsianonError as exc:
                    slides.append(SlideSource(f, error=exc))
                    found += 1
                    continue
                if _is_dicom_file(head):
                    dicom_files.append(f)
                    found += 1
                    continue
                try:
                    fmt, conv = detect_file(f, allow_generic)
                except UnsupportedFormat:
                    continue  # other files in a folder are not slides
                except WsianonError as exc:
                    slides.append(SlideSource(f, error=exc))
                    found += 1
                    continue
                slides.append(SlideSource(f, fmt, conv, [f]))
                found += 1
            if not found:
                slides.append(SlideSource(p, error=UnsupportedFormat(p, "directory contains no slide wsianon can read")))
            continue
        try:
            fmt, conv = detect_file(p, allow_generic)
        except WsianonError as exc:
            slides.append(SlideSource(p, error=exc))
            continue
        if spec_of(fmt).is_dicom:
            dicom_files.append(p)
        else:
            slides.append(SlideSource(p, fmt, conv, [p]))
    if dicom_files:
        from wsianon.converters import dicom as dicom_mod

        try:
            groups = dicom_mod.group_series(dicom_files)
        except WsianonError:  # one unreadable file: name it, and group the others (the batch goes on)
            readable = []
            for f in dicom_files:
                try:
                    dicom_mod.group_series([f])
                    readable.append(f)
                except WsianonError as exc:
                    slides.append(SlideSource(f, error=exc))
            groups = dicom_mod.group_series(readable) if readable else []
        for g in groups:
            slides.append(SlideSource(g[0], DICOM.name, None, list(g)))
    return slides
