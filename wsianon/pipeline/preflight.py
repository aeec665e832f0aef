"""Before anything is written: does the source's structure hold, and does its image data decode?

Third-party decoders (OpenSlide, libjpeg, libtiff, glib) can *abort the process*
on a hostile or broken file — glib aborts when a corrupt byte count asks it for
a terabyte — which would take the whole batch (and its report) down.  So

1. for TIFF-family sources, every strip/tile span of every IFD must lie inside
   the file (our own parser, no allocation from file values); an MRXS slide is
   loaded by its converter's checks (records inside the Data files, camera-image
   positions near the declared grid);
2. the OpenSlide decode probe runs in a forked child process with a time limit:
   a crash or a hang there refuses this slide with a one-line reason, and the
   batch goes on. DICOM slides (inputs, and outputs judged by ``verify``) get the
   same child probe of what the DICOM checks decode (``check_decodes_dicom``).
"""

from __future__ import annotations

import itertools
import multiprocessing
import sys
from pathlib import Path

from wsianon.errors import CorruptInput

PROBE_TIMEOUT_S = 300
_OK, _UNREADABLE, _DECODE_ERROR, _TOO_LARGE = 0, 4, 3, 5
# an associated image (label, macro, thumbnail) larger than this is damaged: OpenSlide decodes it
# whole, width x height x 4 bytes (a macro whose ImageWidth a bit flip made 1,049,176 px took 1.6 GB:
# fuzz seed 85); real ones are a few Mpx
MAX_ASSOCIATED_PIXELS = 1 << 26
DECODE_REASON = "image data cannot be decoded (OpenSlide cannot read a tile or an associated image)"


def check_structure(path: Path) -> None:
    """Every data span of a TIFF-family file lies inside the file; an MRXS slide's records lie
    inside its Data files and its camera-image positions near its declared grid (OpenSlide spins
    for minutes on positions far outside it) (CorruptInput otherwise)."""
    from wsianon.io.tiff import TIFF_MAGIC, TiffStructure

    if path.suffix.lower() == ".mrxs":
        from wsianon.converters.mrxs.slide import load_slide

        load_slide(path)
        return
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
            _check_tile_size(ts, ifd)


def _check_tile_size(ts, ifd) -> None:
    """A tiled page's TileWidth x TileLength is at most ``padding.MAX_TILE_PIXELS`` (CorruptInput
    otherwise). OpenSlide allocates a tile's pixels before decoding it, and glib aborts the process
    when the machine cannot give them: a bit flip in a Leica SCN's TileLength (256 -> 67,109,120
    rows) asked for 64 GiB where the verifier's sampled reads met the tile, after the decode probe
    had read a corner of each level that lies outside the image (fuzz seed 73, SCN case 1). A tile
    that large is never shown clean anyway: the padding check does not decode it and fails it."""
    from wsianon.io.tiff import TILE_LENGTH, TILE_OFFSETS, TILE_WIDTH
    from wsianon.verify.padding import MAX_TILE_PIXELS

    if TILE_OFFSETS not in ifd:
        return
    sides = []
    for tag in (TILE_WIDTH, TILE_LENGTH):
        v = ts.value(ifd, tag, 0)
        v = v[0] if isinstance(v, tuple) and v else v
        if not isinstance(v, int):
            raise CorruptInput(ts.path, f"IFD {ifd.index}: the tile size is not a number (field type corrupt); refused")
        sides.append(v)
    if sides[0] * sides[1] > MAX_TILE_PIXELS:
        raise CorruptInput(ts.path, f"IFD {ifd.index}: tiles of more than {MAX_TILE_PIXELS >> 20} Mpx a tile (damaged?); refused")


def _probe(path: str) -> int:
    import openslide

    try:
        slide = openslide.OpenSlide(path)
    except Exception:
        return _UNREADABLE
    try:
        for name in list(slide.associated_images.keys()):
            w, h = (int(slide.properties.get(f"openslide.associated.{name}.{k}", 0) or 0) for k in ("width", "height"))
            if w * h > MAX_ASSOCIATED_PIXELS:
                return _TOO_LARGE
            slide.associated_images[name]
        for lvl in range(slide.level_count):
            w, h = slide.level_dimensions[lvl]
            slide.read_region((0, 0), lvl, (min(256, w), min(256, h)))
    except Exception:
        return _DECODE_ERROR
    finally:
        slide.close()
    return _OK


def _probe_dicom(paths: list[str]) -> int:
    """What the DICOM checks decode in-process (``verify.dicom.opens``), done first here: wsidicom
    opens the instances and reads the first tile; OpenSlide opens the first VOLUME instance (and
    with it the series' other levels) and reads one region of every level. A Python exception is the checks' to judge (they report it); only
    a crash or a hang of the decoders (glib aborts when a tile's size asks for more memory than
    the machine gives) matters here, so every outcome that returns is ``_OK``."""
    import warnings

    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from wsidicom import WsiDicom

            with WsiDicom.open([Path(p) for p in paths]) as w:
                w.read_tile(0, (0, 0))
        except Exception:
            pass
        import openslide

        for p in paths:  # OpenSlide finds the other levels of the series beside the first VOLUME
            try:
                it = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["ImageType"]).get("ImageType")
            except Exception:
                continue
            if [str(v).upper() for v in list(it or [])[2:3]] != ["VOLUME"]:
                continue
            try:
                with openslide.OpenSlide(p) as s:
                    for lvl in range(s.level_count):
                        w_, h_ = s.level_dimensions[lvl]
                        s.read_region((0, 0), lvl, (min(16, w_), min(16, h_)))
            except Exception:
                pass
            break
    return _OK


def _probe_child(path: str | list[str]) -> None:
    import faulthandler
    import os

    # a decoder that aborts prints its own message (which may quote the file): keep it off the console
    faulthandler.disable()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.exit(_probe_dicom(path) if isinstance(path, list) else _probe(path))


def _forked(arg: str | list[str], timeout: float) -> int | None:
    """The probe's exit code in a child forked with ``os.fork`` (minus the signal's number when a
    signal ended it), or None when it ran past ``timeout`` (then killed). Not multiprocessing's
    Process: a daemonic process may not start one, and a Dask worker under its nanny is daemonic
    (every slide ended as an internal error there: red team stop 38)."""
    import os
    import signal
    import time
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork in a threaded process: the child only probes
        pid = os.fork()
    if pid == 0:  # the child: probe, then leave without the parent's exit handlers
        code = 1
        try:
            _probe_child(arg)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - any failure is the probe's exit code 1
            code = 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    try:
        import select

        fd = os.pidfd_open(pid)  # Linux 5.3+: woken the moment the child ends
    except (AttributeError, OSError):
        fd = None
    try:
        delay = 0.001
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
            if fd is not None:
                select.select([fd], [], [], left)
            else:
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.05)
    finally:
        if fd is not None:
            os.close(fd)


def _in_child(path: Path, arg: str | list[str], timeout: float) -> int | None:
    """Run the probe for ``arg`` in a forked child; a crash or a hang refuses ``path``."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return _probe_dicom(arg) if isinstance(arg, list) else _probe(arg)  # no fork on this platform: probe in-process
    code = _forked(arg, timeout)
    if code is None:
        raise CorruptInput(path, f"decoding the image data did not finish within {timeout:.0f} s; refused")
    if code < 0:
        raise CorruptInput(path, "image data cannot be decoded (the decoder crashed on it); refused")
    return code


def check_decodes(path: Path, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Refuse ``path`` when OpenSlide fails, crashes or hangs decoding its image data; whether
    OpenSlide opened it (and so probed it). Sources OpenSlide cannot open at all are left to the
    format's own checks."""
    code = _in_child(path, str(path), timeout)
    if code == _DECODE_ERROR:
        raise CorruptInput(path, DECODE_REASON)
    if code == _TOO_LARGE:
        raise CorruptInput(path, f"an associated image (label, macro, thumbnail) of more than {MAX_ASSOCIATED_PIXELS >> 20} Mpx (damaged?); refused")
    if code not in (_OK, _UNREADABLE):
        raise CorruptInput(path, "image data cannot be decoded (the decoder failed); refused")
    return code == _OK


def check_output_decodes(source: Path, output: Path, timeout: float = PROBE_TIMEOUT_S) -> None:
    """The probe of ``check_decodes`` on a written output whose source OpenSlide could not open:
    the redactor drops what it cannot keep (a DateTime of a corrupt field type), and OpenSlide may
    then open the output and abort the whole process on what the source hid (a TileLength of
    8,388,864 rows asked glib for 8.6 GB: fuzz seed 35, SVS case 12). A crash, hang or decode
    error refuses ``source``; the verifier then never reads the output in-process."""
    try:
        check_decodes(output, timeout)
    except CorruptInput as exc:
        raise CorruptInput(source, "once redacted, " + exc.reason.replace("; refused", "") + "; refused, nothing written") from None


def check_decodes_dicom(files: list[Path], timeout: float = PROBE_TIMEOUT_S, name: Path | None = None) -> None:
    """Refuse a DICOM slide (its instances ``files``) when an instance declares more frames than
    it can hold (``check_structure_dicom``), or wsidicom or OpenSlide crashes or hangs reading it
    as the DICOM checks do; an error they report is left to those checks. ``name``: the file the
    one-line error names (default: the first instance)."""
    if not files:
        return
    try:
        _check_decodes_dicom(files, timeout)
    except CorruptInput as exc:
        if name is None:
            raise
        raise CorruptInput(name, exc.reason) from None


def check_structure_dicom(path: Path) -> None:
    """The frames an instance declares fit in its file: every encapsulated frame needs an item
    header (8 bytes), a native one its Rows x Columns x samples x bits; a TILED_SPARSE one has
    per-frame positions. The checks size lists and
    arrays by Number of Frames (a frame's position in the matrix, the frames to judge), so an
    instance declaring 2^31 frames in a few kB held the process (CPU and memory) until the
    kernel killed it."""
    import warnings

    import pydicom

    try:
        size = path.stat().st_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the whole header once: pydicom converts a value when it is first read, so the few
            # read here cost no more than before, and the checks below reuse the same data set
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        n = int(ds.get("NumberOfFrames", 1) or 1)
        ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
        native = ts in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
        per_frame = max(1, int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.get("BitsAllocated", 8) or 8) // 8) if native else 8
        sparse = str(ds.get("DimensionOrganizationType", "") or "").upper() == "TILED_SPARSE"
    except Exception:
        return  # the checks report a file they cannot read
    if n < 1 or n * per_frame > size:
        raise CorruptInput(path, "Number of Frames is larger than the file can hold; refused")
    _values_convert(path, ds)
    if sparse and not _per_frame_groups(ds):  # its frames have no place (OpenSlide crashed on it)
        from wsianon.io.dicomframes import SPARSE_UNPLACED

        raise CorruptInput(path, f"{SPARSE_UNPLACED}; refused")


# elements whose values ``_values_convert`` converts at most (~15 us each): a header larger than
# this (a TILED_SPARSE instance's per-frame groups of 10^5 frames) is converted that far
MAX_CONVERTED_ELEMENTS = 100_000


def _values_convert(path: Path, ds) -> None:
    """Every element of ``path``'s header ``ds`` (File Meta Information, data set, sequence items,
    up to ``MAX_CONVERTED_ELEMENTS``) converts to a value.  pydicom converts an element when it is
    first read, not in ``dcmread``: a damaged VR (fuzz seed 95, ``UK`` for
    MediaStorageSOPInstanceUID's ``UI``) raised NotImplementedError in whichever check read it
    first, and the slide ended as an internal error."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for n, _elem in enumerate(itertools.chain(ds.file_meta.iterall() if ds.file_meta is not None else (), ds.iterall())):
                if n >= MAX_CONVERTED_ELEMENTS:
                    break
    except Exception as exc:
        raise CorruptInput(path, f"broken DICOM data set: an element cannot be decoded ({type(exc).__name__}); refused") from None  # (the inventory's words)


def _per_frame_groups(ds) -> bool:
    """Whether the header ``ds`` has a Per-Frame Functional Groups Sequence with an item (True when
    it cannot be read: the checks report that)."""
    try:
        return bool(ds.get("PerFrameFunctionalGroupsSequence"))
    except Exception:
        return True


def _check_decodes_dicom(files: list[Path], timeout: float) -> None:
    for f in files:
        check_structure_dicom(Path(f))
    import openslide  # noqa: F401  imported here, once: the DICOM checks use both anyway, and a
    import wsidicom  # noqa: F401  forked child then need not import them (0.8 s a slide otherwise)

    code = _in_child(Path(files[0]), [str(f) for f in files], timeout)
    if code != _OK:
        raise CorruptInput(Path(files[0]), "image data cannot be decoded (the decoder failed); refused")


def preflight(path: Path) -> bool:
    """``check_structure`` and ``check_decodes``: whether OpenSlide opened (and probed) ``path``."""
    check_structure(path)
    return check_decodes(path)


__all__ = ["preflight", "check_structure", "check_structure_dicom", "check_decodes", "check_decodes_dicom", "check_output_decodes"]
