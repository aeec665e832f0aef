"""Entropy-coded data holds coded units only: no bytes a decoder skips.

A JPEG scan's entropy-coded data runs from its SOS segment to the next marker.  Between the last
coded unit and that marker a writer can put any bytes that contain no 0xFF (a name, an MRN): a
decoder skips them ("extraneous bytes before marker") or, at the end of a stream without EOI,
reads them as padding, and the picture is unchanged — so tile identity with the source, which
carries the same bytes, does not see them, and the vocabulary check never reads pixel data as
text.  This check proves, from the output alone, that every JPEG tile/strip of a TIFF-family
output (every IFD) is coded tightly:

1. decoding it (libjpeg-turbo, scaled to 1/8: the entropy decoder still reads every coded unit)
   gives no warning: bytes skipped at a restart marker or before the next marker (beyond the few
   the decoder's bit buffer had already taken), a missing EOI, a marker inside the data;
2. for the end of every scan (where the bit buffer's read-ahead hides up to a few bytes from 1.),
   the same stream with the scan's last data byte removed must make the decoder run short
   ("premature end of data segment"): if it does not, that byte was not needed, i.e. not coded.

A stream that is not tight fails the check (the slide is quarantined; the bytes are part of the
source's tile, so the redactor cannot zero them without breaking the tile identity proof).
A stream libjpeg-turbo cannot decode (a 12-bit or lossless frame) fails the check.  Streams over
256 MiB or 2^30 pixels, or whose frame header gives no size (an NDPI level of tens of gigapixels is
one JPEG), are not decoded here: the detail counts them (a documented limitation).  Without the
decoder library the check is "not run" (fails unless --accept-unrun-checks).

Deflate and LZW tiles/strips are judged by their own stream ends (``judge_deflate``,
``judge_lzw``), JPEG 2000 codestreams by their markers (``judge_j2k``: comments, bytes after
EOC; in the sample, every packet header, which must account for each tile-part's bytes), uncompressed ones by their size; other
compressions (PackBits, ...) are named in the detail as not judged.
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from wsianon.io import jpeg

CHECK = "tiles-coded-tight"
# a stream whose markers cannot be followed: judged (and failed) by the JPEG segment checks too
NOT_WALKABLE = "markers cannot be followed"
# streams too large to decode here (an NDPI level is one JPEG of up to 2^32 bytes, its frame header
# may say 0 x 0): not judged, counted in the detail (a documented limitation)
TOO_LARGE = "too large to judge"
MAX_PIXELS = 1 << 30
# tiles/frames judged per IFD or instance unless every one is asked for (--coded-data all): decoding
# every tile costs about 10 ms of CPU per MB of tiles (libjpeg-turbo, twice per tile), 20 s or more
# for a 2 GB slide, against ~0.02 s for a sample (benchmarks/PROFILE.md, seventh stop)
SAMPLE = 32
MAX_STREAM = 256 << 20
# the LZW walk runs in Python (about 2 MB/s): a file's first 32 MiB of LZW data are judged, the rest
# counted as not judged (LZW pyramids are rare: vendors write JPEG / JPEG 2000 levels)
LZW_BUDGET = 32 << 20
_NEXT = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


class _Warned(Exception):
    """libjpeg-turbo's warning for one decode (raised, not sent through ``warnings``)."""


@lru_cache(maxsize=1)
def _decoder():
    try:
        from turbojpeg import TJERR_WARNING, TurboJPEG
    except Exception:  # the library (libturbojpeg0) or the binding is missing
        return None

    class _Strict(TurboJPEG):
        """PyTurboJPEG reports a decoder warning with ``warnings.warn``: global state that other
        threads change meanwhile (``catch_warnings`` is not thread-safe; a pydicom read elsewhere
        ignores warnings), so a recorded warning could be lost (a clean stream judged to have bytes
        after its coded data) or land in another thread's record (a stream with such bytes judged
        tight). Here the warning is raised in the decoding thread itself."""

        def _TurboJPEG__report_error(self, handle):
            code = self._TurboJPEG__get_error_code
            if code is not None and code(handle) == TJERR_WARNING:
                raise _Warned(self._TurboJPEG__get_error_string(handle))
            return super()._TurboJPEG__report_error(handle)

    try:
        return _Strict()
    except Exception:
        return None


def _warns(tj, data: bytes) -> str | None:
    """The decoder's first warning (or fatal error) for ``data``, None when it decodes cleanly."""
    try:
        tj.decode(data, scaling_factor=(1, 8))
    except _Warned as w:
        return str(w)
    except Exception as exc:  # a fatal libjpeg error
        return f"decoding failed ({type(exc).__name__})"
    return None


def _scan_ends(data: bytes, segs: list) -> list[tuple[int, int]]:
    """(first byte to drop, marker position) of the last data byte of every scan."""
    out = []
    for seg in segs:
        if seg.marker != jpeg.SOS:
            continue
        m = _NEXT.search(data, seg.end)
        stop = m.start() if m else len(data)
        e = stop
        while e > seg.end and data[e - 1] == 0xFF:  # fill bytes before the marker
            e -= 1
        if e <= seg.end:
            continue
        k = 2 if e - 2 >= seg.end and data[e - 1] == 0 and data[e - 2] == 0xFF else 1  # a stuffed 0xFF 0x00
        out.append((e - k, stop))
    return out


def judge(stream: bytes, tables: bytes | None = None) -> str | None:
    """Why ``stream`` (a TIFF tile/strip, abbreviated when ``tables`` is the IFD's JPEGTables) is not
    tightly coded, or None when it is.  Raises LookupError when no decoder is available."""
    tj = _decoder()
    if tj is None:
        raise LookupError("libturbojpeg is not available")
    data = stream
    if tables and len(tables) > 4 and tables[:2] == b"\xff\xd8" and stream[:2] == b"\xff\xd8":
        data = tables[:-2] + stream[2:] if tables[-2:] == b"\xff\xd9" else tables + stream[2:]
    try:
        segs = jpeg.walk(data)
        ends = _scan_ends(data, segs)
        frame = next((g for g in segs if g.marker in jpeg.SOF_MARKERS), None)
    except jpeg.JpegError:
        return NOT_WALKABLE
    if frame is not None:
        h, w_ = int.from_bytes(data[frame.offset + 5 : frame.offset + 7], "big"), int.from_bytes(data[frame.offset + 7 : frame.offset + 9], "big")
        if not h or not w_ or w_ * h > MAX_PIXELS:
            return TOO_LARGE  # an NDPI level of tens of gigapixels: not decoded here (see the module docstring)
    w = _warns(tj, data)
    if w is not None:
        return f"decoder: {w}"
    for cut, stop in ends:
        if _warns(tj, data[:cut] + data[stop:]) is None:
            return "bytes after the last coded unit of a scan"
    return None


def judge_deflate(data: bytes, expected: int) -> str | None:
    """A Deflate (zlib) tile/strip: the stream must end exactly at the count and decode to no
    more than the tile's bytes."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, expected + 1)
    except zlib.error:
        return "deflate stream does not decode"
    if len(out) > expected or d.unconsumed_tail:
        return "deflate stream decodes to more than the tile"
    if not d.eof or any(d.unused_data):
        return "bytes after the deflate stream" if any(d.unused_data) else "deflate stream not ended"
    return None


def judge_lzw(data: bytes, expected: int) -> str | None:
    """A TIFF LZW tile/strip (MSB-first codes, early change): the codes up to EOI must use every
    byte of the count (the last one padded), and decode to no more than the tile's bytes."""
    nbits, free, first, pos, total, end = 9, 258, True, 0, 0, len(data) * 8
    lengths = [1] * 258
    old = -1
    while pos + nbits <= end:
        byte = pos >> 3
        chunk = int.from_bytes(data[byte : byte + 3].ljust(3, b"\0"), "big")
        code = (chunk >> (24 - (pos & 7) - nbits)) & ((1 << nbits) - 1)
        pos += nbits
        if code == 257:
            break
        if code == 256:
            nbits, free, first, old = 9, 258, True, -1
            del lengths[258:]
            continue
        if code > len(lengths) or (code == len(lengths) and old < 0):
            return "LZW code out of range"
        n = lengths[code] if code < len(lengths) else lengths[old] + 1
        total += n
        if total > expected:
            return "LZW stream decodes to more than the tile"
        if not first:
            lengths.append(lengths[old] + 1)
            free += 1
            if free > (1 << nbits) - 2 and nbits < 12:
                nbits += 1
        first, old = False, code
    if any(data[(pos + 7) // 8 :]):  # zero bytes after EOI (an encoder's flush) carry nothing
        return "bytes after the LZW end-of-information code"
    return None


def judge_packbits(data: bytes, expected: int) -> str | None:
    """A PackBits tile/strip: its runs must give exactly the tile's bytes and end at the count
    (zero padding aside)."""
    pos, total, n = 0, 0, len(data)
    while total < expected and pos < n:
        h = data[pos]
        pos += 1
        if h < 128:  # a literal run of h + 1 bytes
            total += h + 1
            pos += h + 1
        elif h > 128:  # one byte repeated 257 - h times
            total += 257 - h
            pos += 1
    if total > expected or pos > n:
        return "PackBits runs do not end with the tile"
    if any(data[pos:]):
        return "bytes after the PackBits runs"
    return None


def judge_zstd(data: bytes, expected: int) -> str | None:
    """A Zstandard tile/strip (RFC 8878): one frame, followed by its block headers (the last block
    ends it, then its checksum when it has one), nothing after it but zero padding, and decoding
    to no more than the tile's bytes.  A skippable frame or a second frame is not accepted."""
    n = len(data)
    if n < 6 or data[:4] != b"\x28\xb5\x2f\xfd":
        return "not one Zstandard frame"
    fhd = data[4]
    if fhd & 0x08:
        return "Zstandard frame header has its reserved bit set"
    single = bool(fhd & 0x20)
    fcs = (0, 2, 4, 8)[fhd >> 6] or (1 if single else 0)
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
    while True:
        if pos + 3 > n:
            return "Zstandard frame truncated"
        head = int.from_bytes(data[pos : pos + 3], "little")
        kind, size = (head >> 1) & 3, head >> 3
        if kind == 3:
            return "Zstandard block of the reserved type"
        pos += 3 + (1 if kind == 1 else size)
        if head & 1:
            break
    pos += 4 if fhd & 0x04 else 0
    if pos > n:
        return "Zstandard frame truncated"
    if any(data[pos:]):
        return "bytes after the Zstandard frame"
    try:
        import imagecodecs

        out = imagecodecs.zstd_decode(data[:pos])
    except Exception:
        return "Zstandard frame does not decode"
    return "Zstandard frame decodes to more than the tile" if len(out) > expected else None


def judge_j2k(data: bytes, packets: bool = True) -> str | None:
    """A JPEG 2000 codestream (Aperio 33003/33005, TIFF 34712): its marker segments are followed
    (``io.codestreams.j2k_segments``: main header, every tile-part by its Psot length) and nothing
    but zero padding may follow EOC; a main-header COM segment must hold vocabulary text (an
    encoder's banner such as ``Kakadu-v7.10``) or zeros, a tile-part header's COM zeros.  With
    ``packets``, every packet header is parsed too (``io.j2k_packets.surplus``, about 1.5 ms a
    256 px tile): the packets must account for each tile-part's bytes, but zero padding."""
    from wsianon.io import codestreams, j2k_packets

    segs = codestreams.j2k_segments(data)
    if segs is None:
        return "JPEG 2000 codestream cannot be followed"
    for kind, o, ln in segs:
        body = data[o : o + ln]
        if not any(body):
            continue
        if kind == codestreams.TAIL:
            return "bytes after the JPEG 2000 end of codestream"
        if kind == codestreams.TILE_COM:
            return "JPEG 2000 comment in a tile-part header"
        if data[o - 2 : o] != b"\x00\x01":  # Rcom 1 = Latin text, else binary
            return "JPEG 2000 binary comment"
        if not _comment_ok(body):
            return "JPEG 2000 comment outside the vocabulary"
    if packets:
        why = j2k_packets.surplus(data)
        if why is not None and why != j2k_packets.NOT_FOLLOWED:
            return f"JPEG 2000 packets: {why}"
    return None


@lru_cache(maxsize=256)
def _comment_ok(body: bytes) -> bool:
    """Whether a main-header comment's text is vocabulary (an encoder's banner): every tile of a
    level carries the same one, judged once."""
    from wsianon.verify.reportnames import word_ok

    return all(word_ok(w) for w in re.findall(r"[^\W_]+", body.decode("latin-1")))


# TIFF Compression: Deflate (8, 32946), LZW (5), none (1), JPEG 2000 (Aperio 33003/33005, 34712);
# JPEG (7) is judged by the decoder
_DEFLATE, _LZW, _NONE, _J2K = frozenset([8, 32946]), 5, 1, frozenset([33003, 33005, 34712])
_PACKBITS, _ZSTD = 32773, frozenset([50000, 34926])
# every compression whose coded data ``check_tiff`` judges (a page of any other is not proven to
# hold its picture only: ``image-pages`` refuses it where no reader shows it)
JUDGED_COMPRESSIONS = frozenset({7, _LZW, _NONE, _PACKBITS}) | _DEFLATE | _J2K | _ZSTD
# walked in Python (about 2 MB/s): their bytes count against LZW_BUDGET
_WALKED = frozenset([_LZW, _PACKBITS])


def sample_indices(n: int, every: bool) -> np.ndarray:
    """The indices of ``n`` tiles that are judged: all of them when ``every``, else up to
    :data:`SAMPLE` spread evenly over the level (the first and the last always among them)."""
    if every or n <= SAMPLE:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, SAMPLE).round().astype(np.int64))


def _expected_bytes(ts, ifd, tiled: bool) -> int:
    """The most bytes one tile (or strip) of ``ifd`` decodes to (CorruptInput where a size field
    is not numbers: a damaged field type, e.g. ASCII, gives bytes, and a count of 0 no value)."""
    from wsianon.errors import CorruptInput

    def v(tag: int, default: int) -> int:
        x = ts.value(ifd, tag, default)
        xs = x if isinstance(x, (tuple, list)) else (x,)
        if not xs or not all(isinstance(n, int) for n in xs):
            raise CorruptInput(ts.path, f"IFD {ifd.index}: tag {tag} is not a number (field type or count corrupt)")
        return max(xs)

    w = v(322 if tiled else 256, 0)
    h = v(323, 0) if tiled else min(v(278, 1 << 32), v(257, 0))
    bps, spp, planar = v(258, 8), v(277, 1), v(284, 1)
    return -(-(w * (spp if planar == 1 else 1) * bps) // 8) * h


def check_tiff(path: Path, verdict, name: str | None = None, accept_unrun: bool = False, every: bool = False) -> None:
    """Add the check for the tiles/strips of every IFD of the TIFF-family file ``path``: a sample
    of each IFD's (:func:`sample_indices`), or all of them when ``every`` (--coded-data all); every
    JPEG 2000 tile always (its markers are followed, nothing is decoded)
    (``accept_unrun``: a missing decoder library does not fail the slide, --accept-unrun-checks)."""
    from wsianon.errors import WsianonError
    from wsianon.io.scan import Finding
    from wsianon.io.tiff import COMPRESSION, TiffStructure

    label = name or path.name
    bad: list[tuple[int, int, str]] = []
    other: set[int] = set()
    n = large = lzw_bytes = total = 0
    try:
        with TiffStructure(path) as ts:
            for ifd in ts.ifds:
                comp = ts.value(ifd, COMPRESSION, 1)
                if comp != 7 and comp not in _DEFLATE and comp not in _J2K and comp not in _ZSTD and comp not in (_LZW, _NONE, _PACKBITS):
                    other.add(comp)  # e.g. JPEG 2000: not judged here
                    continue
                t = ifd.get(jpeg.JPEG_TABLES)
                tables = ts.read(t.value_offset, t.size) if t is not None and t.size >= 4 else None
                expected = _expected_bytes(ts, ifd, ifd.get(324) is not None) if comp != 7 else 0
                offs, cnts = ts.data_span_arrays(ifd)
                total += int((cnts > 0).sum())
                # JPEG 2000 is judged by its marker segments (nothing is decoded): every tile,
                # whatever --coded-data says (a sample would pass a planted tile beside it); its
                # packet headers are parsed in the sample (all with --coded-data all)
                pick = sample_indices(len(offs), every or comp in _J2K)
                parsed = set(sample_indices(len(offs), every).tolist()) if comp in _J2K else set()
                for k, off, cnt in zip(pick.tolist(), offs[pick].tolist(), cnts[pick].tolist()):
                    if cnt <= 0:
                        continue
                    if cnt > MAX_STREAM or (comp in _WALKED and lzw_bytes + cnt > LZW_BUDGET):
                        large += 1
                        continue
                    lzw_bytes += cnt if comp in _WALKED else 0
                    n += 1
                    data = ts.read(off, cnt)
                    if comp == 7:
                        why = judge(data, tables)
                        if why == TOO_LARGE:
                            large, n, why = large + 1, n - 1, None
                    elif comp in _DEFLATE:
                        why = judge_deflate(data, expected)
                    elif comp == _LZW:
                        why = judge_lzw(data, expected)
                    elif comp == _PACKBITS:
                        why = judge_packbits(data, expected)
                    elif comp in _ZSTD:
                        why = judge_zstd(data, expected)
                    elif comp in _J2K:
                        why = judge_j2k(data, packets=k in parsed)
                    else:
                        why = None if cnt <= expected else "bytes after the uncompressed tile"
                    if why is not None:
                        bad.append((ifd.index, off, why))
    except LookupError:
        hint = "(accepted by --accept-unrun-checks)" if accept_unrun else "(install libturbojpeg0, or pass --accept-unrun-checks)"
        verdict.add(CHECK, accept_unrun, f"not run: libturbojpeg is not available {hint}", not_run=True)
        return
    except WsianonError as exc:
        verdict.add(CHECK, False, f"the output's TIFF structure cannot be walked: {exc.reason}")
        return
    for ifd_index, off, why in bad[:20]:
        verdict.findings.append(Finding(label, off, f"JPEG stream in IFD {ifd_index}: {why}", CHECK))
    verdict.add(
        CHECK,
        not bad,
        (
            f"{n} tile(s)/strip(s)"
            if every or n + large >= total
            else f"{n} of {total} tile(s)/strip(s) (up to {SAMPLE} a level, spread evenly, JPEG 2000 markers every one and its packets in the sample; --coded-data all judges every one)"
        )
        + " (JPEG, JPEG 2000, Deflate, LZW, PackBits, Zstandard, none): coded data only, nothing after it"
        + (f"; compression {sorted(other)} not judged here" if other else "")
        + (f"; {large} stream(s) too large to judge here" if large else "")
        if not bad
        else f"{len(bad)} of {n} tile(s)/strip(s) hold bytes no decoder reads (first: IFD {bad[0][0]}, {bad[0][2]})",
    )


# JPEG baseline / extended (8/12-bit DCT, Huffman): the transfer syntaxes whose frames are judged here
DICOM_JPEG = frozenset(["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"])
# JPEG 2000 (lossless / lossy): judged by their markers (``judge_j2k``)
DICOM_J2K = frozenset(["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"])


def _frames(path: Path, count: int, pick: set[int], located=False):
    """(index, bytes) of the frames ``pick`` of an instance of ``count`` frames.  With one fragment
    a frame (as WSI writers store them) only those frames are read: at the (offset, length)
    ``located`` gives (the verifier's read-back found them; False: found here by walking the
    items' headers, one small read each); otherwise (``located`` None: not one fragment a frame)
    every frame is read in turn and the others skipped."""
    import os

    from wsianon.io.dicomframes import iter_frames

    if len(pick) < count and located is not None:
        if located is False:
            located = _located(path)
        if located is not None and len(located) == count:
            fd = os.open(path, os.O_RDONLY)
            try:
                for i in sorted(pick):
                    off, ln = located[i]
                    yield i, os.pread(fd, ln, off)
                return
            finally:
                os.close(fd)
    for i, frame in enumerate(iter_frames(path)):
        if i in pick:
            yield i, frame


def _located(path: Path) -> list[tuple[int, int]] | None:
    """(offset, length) of every item after the Basic Offset Table of an encapsulated instance
    (None: not encapsulated, or the items cannot be walked)."""
    import os

    from wsianon.io.dicomframes import pixel_value_offset, walk_items

    _ds, voff, length = pixel_value_offset(path)
    if voff is None or length != 0xFFFFFFFF:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        items = walk_items(fd, voff, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return items.values[1:] if items.problem is None else None


def check_dicom(dsets, verdict, accept_unrun: bool = False, every: bool = False, fragments=None) -> None:
    """``dicom: entropy tight``: the same judgement for the JPEG / JPEG 2000 frames of DICOM
    instances (``dsets``: (path, dataset) pairs; frames of other transfer syntaxes are not judged
    here): a sample of each instance's frames (:func:`sample_indices`), every one when ``every``.
    ``fragments``: {path: the frames' (offset, length), or None} as the verifier's read-back found them."""
    name = "dicom: entropy tight"
    bad: list[str] = []
    n = total = 0
    try:
        for path, ds in dsets:
            ts_uid = str(ds.file_meta.get("TransferSyntaxUID", ""))
            if ts_uid not in DICOM_JPEG and ts_uid not in DICOM_J2K:
                continue
            count = int(ds.get("NumberOfFrames", 1) or 1)
            total += count
            pick = set(sample_indices(count, every).tolist())
            try:
                for i, frame in _frames(Path(path), count, pick, (fragments or {}).get(path, False)):
                    n += 1
                    why = judge(bytes(frame)) if ts_uid in DICOM_JPEG else judge_j2k(bytes(frame))
                    if why is not None and why not in (NOT_WALKABLE, TOO_LARGE):  # that one is ``dicom: frame segments``'s finding
                        bad.append(f"{Path(path).name} frame {i + 1}: {why}")
            except LookupError:
                raise
            except Exception as exc:
                bad.append(f"{Path(path).name}: frames unreadable ({type(exc).__name__})")
    except LookupError:
        hint = "(accepted by --accept-unrun-checks)" if accept_unrun else "(install libturbojpeg0, or pass --accept-unrun-checks)"
        verdict.add(name, accept_unrun, f"not run: libturbojpeg is not available {hint}", not_run=True)
        return
    judged = f"{n}" if every or n >= total else f"{n} of {total} (up to {SAMPLE} an instance, spread evenly; --coded-data all judges every one)"
    verdict.add(name, not bad, "; ".join(bad[:5]) if bad else f"{judged} JPEG / JPEG 2000 frame(s): coded data only, nothing after it")


__all__ = ["CHECK", "DICOM_JPEG", "SAMPLE", "check_dicom", "check_tiff", "judge", "sample_indices"]
