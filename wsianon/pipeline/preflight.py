"""Before anything is written: does the source's structure hold, and does its image data decode?

Third-party decoders (OpenSlide, libjpeg, libtiff, glib) can *abort the process*
on a hostile or broken file — glib aborts when a corrupt byte count asks it for
a terabyte — which would take the whole batch (and its report) down.  So

1. for TIFF-family sources, every strip/tile span of every IFD must lie inside
   the file (our own parser, no allocation from file values);
2. the OpenSlide decode probe runs in a forked child process with a time limit:
   a crash or a hang there refuses this slide with a one-line reason, and the
   batch goes on.
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

from wsianon.errors import CorruptInput

PROBE_TIMEOUT_S = 300
_OK, _UNREADABLE, _DECODE_ERROR = 0, 4, 3
DECODE_REASON = "image data cannot be decoded (OpenSlide cannot read a tile or an associated image)"


def check_structure(path: Path) -> None:
    """Every data span of a TIFF-family file lies inside the file (CorruptInput otherwise)."""
    from wsianon.io.tiff import TIFF_MAGIC, TiffStructure

    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return  # the format's own checks report unreadable files
    if head not in TIFF_MAGIC:
        return
    with TiffStructure(path) as ts:
        for ifd in ts.ifds:
            ts.data_span_arrays(ifd)  # validated like data_spans, 16 bytes a tile (no per-tile tuples)


def _probe(path: str) -> int:
    import openslide

    try:
        slide = openslide.OpenSlide(path)
    except Exception:
        return _UNREADABLE
    try:
        for name in list(slide.associated_images.keys()):
            slide.associated_images[name]
        for lvl in range(slide.level_count):
            w, h = slide.level_dimensions[lvl]
            slide.read_region((0, 0), lvl, (min(256, w), min(256, h)))
    except Exception:
        return _DECODE_ERROR
    finally:
        slide.close()
    return _OK


def _probe_child(path: str) -> None:
    import faulthandler
    import os

    # a decoder that aborts prints its own message (which may quote the file): keep it off the console
    faulthandler.disable()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.exit(_probe(path))


def check_decodes(path: Path, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Refuse ``path`` when OpenSlide fails, crashes or hangs decoding its image data.
    Sources OpenSlide cannot open at all are left to the format's own checks."""
    code: int | None
    if "fork" not in multiprocessing.get_all_start_methods():
        code = _probe(str(path))  # no fork on this platform: probe in-process
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork in a threaded process: the child only probes
            proc = multiprocessing.get_context("fork").Process(target=_probe_child, args=(str(path),), daemon=True)
            proc.start()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            raise CorruptInput(path, f"decoding the image data did not finish within {timeout:.0f} s; refused")
        code = proc.exitcode
        if code is not None and code < 0:
            raise CorruptInput(path, "image data cannot be decoded (the decoder crashed on it); refused")
    if code == _DECODE_ERROR:
        raise CorruptInput(path, DECODE_REASON)
    if code not in (_OK, _UNREADABLE):
        raise CorruptInput(path, "image data cannot be decoded (the decoder failed); refused")


def preflight(path: Path) -> None:
    check_structure(path)
    check_decodes(path)


__all__ = ["preflight", "check_structure", "check_decodes"]
