"""A coded image holds exactly the pixels its container declares: no rows or columns beyond them.

A JPEG stream says in its frame header (SOF) how many lines and samples per line it codes; a TIFF
page says how large a tile is (TileWidth/TileLength) or how many rows a strip holds (RowsPerStrip,
the last strip the rest of ImageLength) and how wide the image is; a DICOM instance says Rows and
Columns of every frame.  When the stream codes more than that — a tile of 256 x 288 in a page of
256 x 256 tiles, a thumbnail strip with 32 rows under its 192 — readers crop the extra pixels or
refuse the tile, and none shows them: a writer can put a patient's name there.  The tiles are the
source's, copied unchanged, so tile identity, the thumbnail's provenance and the padding check
(which judges the pixels *inside* the declared tile) all passed such a slide (red team 6).

This check proves, from the output alone, for every tile and strip of every IFD of a TIFF-family
file and every frame of a DICOM instance:

* JPEG (every SOF, JPEG-LS's SOF55 too): the frame header's size equals the declared size exactly
  — a tile's TileLength x TileWidth, a DICOM frame's Rows x Columns, a strip's rows (RowsPerStrip,
  the last strip what is left of ImageLength) x ImageWidth.  Every real writer measured agrees
  (Aperio tiles and strips, the thumbnail's last strip included; NDPI: each level one JPEG of the
  page's size; wsi2dcm, highdicom and PixelMed frames; every fixture generator).  A size that
  cannot be written in 16 bits (an NDPI level over 65,535 px) must be 0 there.  A frame header of
  0 lines (the height given by a DNL marker after the scan) fails.  Only the last strip may code
  more rows than the image has left, up to a whole strip (a writer that rounds it up): those rows
  are decoded and must be padding by the models of :mod:`wsianon.verify.padding`.
* JPEG 2000: the codestream's SIZ image size (Xsiz - XOsiz, Ysiz - YOsiz) alike.
* LZW, Deflate, PackBits and uncompressed strips: the last strip of each plane may decode to more
  rows than the image has left (RowsPerStrip rows): those rows must be padding, as above; an
  uncompressed tile or other strip holds no more bytes than its pixels (LZW / Deflate tiles that
  decode to more than the tile are ``tiles-coded-tight``'s finding, in the tiles it judges).
* A page has no more tiles or strips than its image needs.

MCU padding inside a JPEG (a frame of 200 lines codes 208 in 16-line MCUs) is not declared pixels:
the decoder drops it.  The cost is one small read per tile (the header up to the frame header;
tiles whose header bytes equal an earlier tile's up to the SOF are settled by that comparison).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from wsianon.io import jpeg

CHECK = "tiles-frame-size"
DICOM_CHECK = "dicom: frame size"
SOF55 = 0xF7  # JPEG-LS frame header (the same fields as a SOF)
_SIZE_MARKERS = jpeg.SOF_MARKERS | {SOF55}
_HEAD = 1024
_WINDOW = 8 << 20  # how much of the file ``_Sizes.settle`` maps at a time
_J2K = frozenset([33003, 33004, 33005, 34712])
_DEFLATE = frozenset([8, 32946])
_LZW, _PACKBITS, _NONE, _JPEG = 5, 32773, 1, 7
_BYTE_STREAMS = frozenset([_LZW, _PACKBITS, 50000, 34926, 34925]) | _DEFLATE  # no size of their own
_MCU = 16  # the tallest JPEG MCU: a strip rounded up to it is rounded, not extended
# DICOM transfer syntaxes whose frames carry a size: JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000
_TS_JPEG = frozenset(
    ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"]
)
_TS_J2K = frozenset(["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"])


class _Unsized(Exception):
    """The stream gives no size this check can read (no frame header / SIZ).  ``reason``: this
    module's own wording (never a library's message), safe in a detail."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _sof(data: bytes) -> tuple[int, int, int] | None:
    """(lines, samples per line, end of the SOF segment) of the first frame header of the JPEG
    stream ``data``; None when ``data`` ends before it (read more); raises _Unsized when the
    header holds none, or holds a DNL segment."""
    try:
        segs, complete = jpeg.header_segments(data)
    except jpeg.JpegError as exc:
        raise _Unsized("no readable JPEG header") from exc
    for g in segs:
        if g.marker == jpeg.DNL:
            raise _Unsized("a DNL segment in the header")
        if g.marker in _SIZE_MARKERS:
            if g.end > len(data) or g.payload_length < 5:
                return None if not complete else _raise("frame header cut short")
            b = data[g.payload_offset : g.payload_offset + 5]
            return int.from_bytes(b[1:3], "big"), int.from_bytes(b[3:5], "big"), g.end
    if complete:
        raise _Unsized("no frame header")
    return None


def _raise(why: str):
    raise _Unsized(why)


def _siz(data: bytes) -> tuple[int, int] | None:
    """(height, width) of a JPEG 2000 codestream's image (SIZ); None when ``data`` is too short."""
    if len(data) < 24:
        return None
    if data[:4] != b"\xff\x4f\xff\x51":
        raise _Unsized("no SIZ marker after SOC")
    x, y, xo, yo = (int.from_bytes(data[i : i + 4], "big") for i in (8, 12, 16, 20))
    if xo > x or yo > y:
        raise _Unsized("SIZ origin beyond its size")
    return y - yo, x - xo


class _Sizes:
    """The coded size of streams read at (offset, length) through ``read(offset, n)``; a stream
    whose bytes up to its frame header equal an earlier stream's has its size (no parse)."""

    def __init__(self, read, j2k: bool = False, fd: int | None = None):
        self.read = read
        self.j2k = j2k
        self.fd = fd  # the file ``read`` reads, for :meth:`settle` (None: no batch comparison)
        self.known: list[tuple[bytes, tuple[int, int]]] = []  # (bytes up to the SOF's end, size)
        self.longest = 0  # the longest known prefix: one read covers every comparison

    def settle(self, offs: np.ndarray, cnts: np.ndarray) -> np.ndarray:
        """For each stream (``offs``, ``cnts``), the index into ``known`` of the first prefix its
        bytes start with (what :meth:`size` compares first), or -1 (int8: ``known`` holds at most
        8): all streams at once, through the file mapped a window at a time (the C comparison, no
        Python call or read a stream; a slide has ~10^5 tiles). The windows are small, so the
        mapping adds little to the process's resident memory; streams already in file order (a
        slide's tiles, nearly always) are compared in place, without sorted copies of the table
        (they were ~40 bytes a tile of the verification's peak)."""
        out = np.full(len(offs), -1, dtype=np.int8)
        if not self.known or self.fd is None or not len(offs):
            return out
        import mmap

        size = os.fstat(self.fd).st_size
        order = None if bool(np.all(offs[1:] >= offs[:-1])) else np.argsort(offs, kind="stable")
        so, sc = (offs, cnts) if order is None else (offs[order], cnts[order])
        res = out if order is None else np.full(len(so), -1, dtype=np.int8)
        i = 0
        while i < len(so):
            start = int(so[i]) - int(so[i]) % mmap.ALLOCATIONGRANULARITY
            end = min(size, start + _WINDOW)
            # every prefix inside the window (the bound in the table's own dtype: a Python int against
            # a uint64 table makes numpy copy the whole table for each search)
            j = int(np.searchsorted(so, so.dtype.type(max(0, end - self.longest)), side="right"))
            if j <= i:  # near the file's end: compared one at a time by size()
                break
            with mmap.mmap(self.fd, end - start, offset=start, access=mmap.ACCESS_READ) as mm:
                rel = so[i:j].astype(np.int64) - start
                for k, (prefix, _size) in enumerate(self.known):
                    hit = jpeg.prefix_mask(mm, rel, prefix) & (sc[i:j] >= len(prefix)) & (res[i:j] < 0)
                    res[i:j][hit] = k
            i = j
        if order is not None:
            out[order] = res
        return out

    def size(self, off: int, cnt: int) -> tuple[int, int]:
        if self.known:
            head = self.read(off, min(cnt, self.longest))
            for prefix, size in self.known:
                if head.startswith(prefix):
                    return size
        n = min(cnt, 64 if self.j2k else _HEAD)
        while True:
            data = self.read(off, n)
            got = _siz(data) if self.j2k else _sof(data)
            if got is not None:
                break
            if n >= cnt:
                raise _Unsized("stream ends before its frame header")
            n = min(cnt, 4 * n)
        if self.j2k:
            return got  # type: ignore[return-value]
        h, w, end = got  # type: ignore[misc]
        if len(self.known) < 8:
            self.known.append((data[:end], (h, w)))
            self.longest = max(self.longest, end)
        return h, w


_UNSEEN = object()


def _fits(coded: int, declared: int) -> bool:
    """A frame-header dimension against the declared one: equal, or 0 when 16 bits cannot hold it."""
    return coded == declared or (declared > 0xFFFF and coded == 0)


def coded_fits(data: bytes, th: int, tw: int) -> bool:
    """Whether the JPEG stream ``data``'s frame header says ``th`` x ``tw`` (or holds no size to
    compare: no frame header, a DNL height — the decoder and this check refuse those)."""
    try:
        size = _sof(data)
    except _Unsized:
        return True
    return size is None or (_fits(size[0], th) and _fits(size[1], tw))


def _decode_strip(data: bytes, comp: int, tables: bytes | None) -> bytes | np.ndarray:
    import imagecodecs

    if comp == _JPEG:
        if tables and len(tables) > 4 and tables[:2] == b"\xff\xd8" and data[:2] == b"\xff\xd8":
            data = (tables[:-2] if tables[-2:] == b"\xff\xd9" else tables) + data[2:]
        return np.asarray(imagecodecs.jpeg8_decode(data))
    if comp == _LZW:
        return bytes(imagecodecs.lzw_decode(data))
    if comp in _DEFLATE:
        return bytes(imagecodecs.zlib_decode(data))
    if comp == _PACKBITS:
        return bytes(imagecodecs.packbits_decode(data))
    return data


def _judge_rows(a: np.ndarray, rows: int, width: int) -> str | None:
    """The rows of a decoded last strip ``a`` beyond the image's ``rows``: padding by the models
    of ``wsianon.verify.padding``, or why not."""
    from wsianon.verify.padding import judge_tile

    why, _stats = judge_tile(a, rows, width)
    return None if why is None else f"rows beyond the image: {why}"


def _strip_pixels(raw: bytes, width: int, spp: int, bps: int, predictor: int) -> np.ndarray | None:
    """Decoded strip bytes as rows x width x samples (None: a layout the padding models do not
    judge: not 8/16 bits, or a floating-point predictor)."""
    if bps not in (8, 16) or predictor not in (1, 2):
        return None
    dt = np.dtype(f"<u{bps // 8}")
    row = width * spp * dt.itemsize
    a = np.frombuffer(raw[: len(raw) // row * row], dt).reshape(-1, width, spp)
    if predictor == 2:  # horizontal differencing undone (modulo the sample size, as a reader does)
        a = np.cumsum(a, axis=1, dtype=dt)
    return a


def _value(ts, ifd, tag: int, default: int) -> int:
    v = ts.value(ifd, tag, default)
    if isinstance(v, (tuple, list)):
        v = v[0] if v else default
    return int(v)


def _plain_last_strip(raw: bytes, want_h: int, rps: int, width: int, spp: int, bps: int, predictor: int) -> str | None:
    """Why the decoded last strip ``raw`` of an LZW / Deflate / PackBits / uncompressed page holds
    more than its ``want_h`` rows that are not padding, or None."""
    row = -(-(width * spp * bps) // 8)
    if len(raw) <= want_h * row:
        return None
    a = _strip_pixels(raw, width, spp, bps, predictor)
    if a is None or len(raw) > max(rps, want_h) * row:
        return "last strip holds rows beyond the image"
    why = _judge_rows(a, want_h, width)
    return None if why is None else f"last strip: {why}"


def _sized(h: int, w: int, want_h: int, want_w: int, what: str, kind: str, last: bool, rounded: int, decode) -> str | None:
    """Why a stream coding ``h`` x ``w`` is not the ``want_h`` x ``want_w`` its page declares, or
    None; a last strip (``last``) may code up to ``rounded`` rows, the rows beyond the image
    (``decode()``: its pixels) being padding."""
    if _fits(h, want_h) and _fits(w, want_w):
        return None
    if h == 0 and want_h:
        return f"{what}: {kind} gives no height (DNL)"
    if what == "tile":
        return f"{what}: {kind} {'larger' if h > want_h or w > want_w else 'smaller'} than the tile"
    if not _fits(w, want_w):
        return f"{what}: {kind} not the image's width"
    if not last or h < want_h or h > rounded:
        return f"{what}: {kind} {'shorter' if h < want_h else 'taller'} than the strip"
    # the last strip rounded up by its writer: the rows beyond the image must be padding
    try:
        a = decode()
    except Exception as exc:
        return f"last strip does not decode ({type(exc).__name__})"
    why = _judge_rows(a, want_h, w)
    return None if why is None else f"last strip: {why}"


def _judge_ifd(ts, ifd, bad: list[tuple[int, int, str]], unjudged: set[str]) -> int:
    """Judge every tile/strip of one IFD; returns how many were judged."""
    from wsianon.io.tiff import TILE_OFFSETS, chunk_count, compression_of

    comp = compression_of(ts, ifd)
    tiled = TILE_OFFSETS in ifd
    width, height = _value(ts, ifd, 256, 0), _value(ts, ifd, 257, 0)
    offs, cnts = ts.data_span_arrays(ifd)
    if not width or not height or not len(offs):
        return 0
    what = "tile" if tiled else "strip"
    need = chunk_count(ts, ifd)
    if need is not None and len(offs) > need:
        bad.append((ifd.index, int(offs[need]), f"more {what}s than its image has"))
    planar, spp = _value(ts, ifd, 284, 1), _value(ts, ifd, 277, 1)
    per_plane = max(len(offs) // (spp if planar == 2 else 1), 1)
    sized = comp == _JPEG or comp in _J2K
    bps = _value(ts, ifd, 258, 8)
    if comp == _NONE and tiled:  # every uncompressed tile holds no more bytes than its pixels
        th, tw = _value(ts, ifd, 323, 0), _value(ts, ifd, 322, 0)
        over = np.flatnonzero(cnts > th * -(-(tw * (spp if planar == 1 else 1) * bps) // 8))
        bad.extend((ifd.index, int(offs[j]), "uncompressed tile holds more than its pixels") for j in over[:20].tolist())
        return len(offs)
    if not sized and (tiled or comp not in _DEFLATE | {_LZW, _NONE, _PACKBITS}):
        # LZW / Deflate / PackBits / Zstandard / LZMA tiles decoding to more than the tile are
        # tiles-coded-tight's finding; a codec that states its own size (WebP, JPEG XL, ...) is
        # named in the detail as not judged
        if not tiled or comp not in _BYTE_STREAMS:
            unjudged.add(f"compression {comp}")
        return 0
    fd = ts.fh.fileno()

    def read(o: int, n: int) -> bytes:
        return os.pread(fd, n, o)

    t = ifd.get(jpeg.JPEG_TABLES) if comp == _JPEG else None
    tables = ts.read(t.value_offset, t.size) if t is not None and t.size >= 4 else None
    th, tw = (_value(ts, ifd, 323, 0), _value(ts, ifd, 322, 0)) if tiled else (0, 0)
    rps = 0 if tiled else min(_value(ts, ifd, 278, 0xFFFFFFFF) or 0xFFFFFFFF, height)
    predictor = _value(ts, ifd, 317, 1)
    kind = "JPEG 2000 image size" if comp in _J2K else "JPEG frame header"
    sizes = _Sizes(read, j2k=comp in _J2K, fd=fd)
    if tiled:
        return _judge_tiles(ifd.index, offs, cnts, need, th, tw, kind, sizes, bad)
    judged = 0
    for i, (off, cnt) in enumerate(zip(offs.tolist(), cnts.tolist())):
        k = i % per_plane
        want_h, want_w = (th, tw) if tiled else (min(rps, height - k * rps), width)
        if not cnt or (need is not None and i >= need) or want_h <= 0:
            continue
        last = not tiled and (k + 1) * rps >= height
        judged += 1
        try:
            if not sized:  # LZW / Deflate / PackBits / uncompressed strips: only the last of a plane can hold more
                if comp == _NONE and not last and cnt > want_h * -(-(width * (spp if planar == 1 else 1) * bps) // 8):
                    bad.append((ifd.index, off, "uncompressed strip holds more than its rows"))
                    continue
                raw = _decode_strip(read(off, cnt), comp, None) if last else None
                why = _plain_last_strip(raw, want_h, rps, width, spp if planar == 1 else 1, bps, predictor) if isinstance(raw, bytes) else None
            else:
                h, w = sizes.size(off, cnt)
                rounded = max(rps, -(-want_h // _MCU) * _MCU) if comp == _JPEG else want_h
                why = _sized(h, w, want_h, want_w, what, kind, last, rounded, lambda o=off, n=cnt: _decode_strip(read(o, n), comp, tables))
        except _Unsized as exc:
            why = f"{what}: {exc.reason}"
        except Exception as exc:
            why = f"{what} does not decode ({type(exc).__name__})"
        if why is not None:
            bad.append((ifd.index, off, why))
    return judged


def _judge_tiles(index: int, offs: np.ndarray, cnts: np.ndarray, need: int | None, th: int, tw: int, kind: str, sizes: _Sizes, bad: list) -> int:
    """The tiles of one tiled IFD (every one declared ``th`` x ``tw``): each stream's coded size,
    judged once per distinct size (the loop of ``_judge_ifd`` without its per-strip work: a
    slide has ~10^5 tiles); returns how many were judged. Tiles whose bytes start with a frame
    header already parsed are settled all at once (``_Sizes.settle``); the others one by one,
    in order, each teaching its header (at most 8) to the next batch."""
    if th <= 0:
        return 0
    n = len(offs) if need is None else min(need, len(offs))
    # the tiles with data: views of the table where every tile has some (no copies a tile)
    sel = None if bool(np.all(cnts[:n])) else np.flatnonzero(cnts[:n])
    o_all, c_all = (offs[:n], cnts[:n]) if sel is None else (offs[sel], cnts[sel])
    why_of: dict[tuple[int, int], str | None] = {}
    found: list[tuple[int, tuple]] = []  # (tile position, finding): in tile order at the end

    def judged(hw: tuple[int, int]) -> str | None:
        why = why_of.get(hw, _UNSEEN)
        if why is _UNSEEN:
            why = why_of[hw] = _sized(hw[0], hw[1], th, tw, "tile", kind, False, th, None)
        return why  # type: ignore[return-value]

    # the tiles still to judge: every tile from ``first`` on, or (after a batch) the indices ``todo``
    first: int | None = 0
    todo = np.zeros(0, np.int64)
    while first is not None or len(todo):
        taught = len(sizes.known)
        if taught:
            if first is not None:
                k = sizes.settle(o_all[first:], c_all[first:])
                left = np.flatnonzero(k < 0) + first
            else:
                k = sizes.settle(o_all[todo], c_all[todo])
                left = todo[k < 0]
            for j, (_prefix, hw) in enumerate(sizes.known):
                why = judged(hw)
                if why is not None:
                    hits = np.flatnonzero(k == j) + first if first is not None else todo[k == j]
                    found.extend((int(t), (index, int(o_all[t]), why)) for t in hits.tolist())
            first, todo = None, left
        # one by one, until a tile teaches a new header (then the rest in a batch again)
        rest = range(first, len(o_all)) if first is not None else todo.tolist()
        for m, t in enumerate(rest):
            off = int(o_all[t])
            try:
                hw = sizes.size(off, int(c_all[t]))
            except _Unsized as exc:
                found.append((t, (index, off, f"tile: {exc.reason}")))
                continue
            except Exception as exc:
                found.append((t, (index, off, f"tile does not decode ({type(exc).__name__})")))
                continue
            why = judged(hw)
            if why is not None:
                found.append((t, (index, off, why)))
            if len(sizes.known) > taught and sizes.fd is not None:
                if first is not None:
                    first += m + 1
                else:
                    todo = todo[m + 1 :]
                break
        else:
            first, todo = None, todo[:0]
    found.sort(key=lambda f: f[0])
    bad.extend(f for _t, f in found)
    return len(o_all)


def check_tiff(path: Path, verdict, name: str | None = None) -> None:
    """``tiles-frame-size`` for every IFD of the TIFF-family file ``path``."""
    from wsianon.errors import WsianonError
    from wsianon.io.scan import Finding
    from wsianon.io.tiff import TiffStructure

    label = name or path.name
    bad: list[tuple[int, int, str]] = []
    unjudged: set[str] = set()
    judged = 0
    try:
        with TiffStructure(path) as ts:
            for ifd in ts.ifds:
                judged += _judge_ifd(ts, ifd, bad, unjudged)
    except WsianonError as exc:
        verdict.add(CHECK, False, f"the output's TIFF structure cannot be walked: {exc.reason}")
        return
    except Exception as exc:
        verdict.add(CHECK, False, f"the output's tiles cannot be read ({type(exc).__name__})")
        return
    for index, off, why in bad[:20]:
        verdict.findings.append(Finding(label, off, f"IFD {index}: {why}", CHECK))
    note = f"; pages of {', '.join(sorted(unjudged))} not judged" if unjudged else ""
    verdict.add(
        CHECK,
        not bad,
        f"{judged} tile(s)/strip(s): each codes exactly the pixels its page declares{note}"
        if not bad
        else f"{len(bad)} tile(s)/strip(s) code pixels other than their page declares (first: IFD {bad[0][0]}, {bad[0][2]}){note}",
    )


def _frame_spans(path: Path, count: int, located) -> list[tuple[int, int]] | None:
    """(offset, length) of each frame when every frame is one fragment, else None."""
    from wsianon.verify.ecs import _located

    if located is False:
        located = _located(path)
    return located if located is not None and len(located) == count else None


def _frame_sizes(path: Path, spans: list[tuple[int, int]], j2k: bool) -> list[tuple[int, tuple[int, int]]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        sizes = _Sizes(lambda o, n: os.pread(fd, n, o), j2k=j2k)
        return [(i, sizes.size(off, ln)) for i, (off, ln) in enumerate(spans)]
    finally:
        os.close(fd)


def check_dicom(dsets, verdict, fragments=None) -> None:
    """``dicom: frame size``: every JPEG / JPEG-LS / JPEG 2000 frame of every instance codes
    exactly Rows x Columns (``fragments``: {path: the frames' (offset, length)} as the verifier's
    read-back found them)."""
    from wsianon.io.dicomframes import iter_frames

    judged = 0
    bad: list[str] = []
    for key, ds in dsets:
        path = Path(key)
        ts_uid = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
        if ts_uid not in _TS_JPEG and ts_uid not in _TS_J2K:
            continue
        try:
            rows, cols = int(ds.Rows), int(ds.Columns)
            count = int(ds.get("NumberOfFrames", 1) or 1)
        except (AttributeError, TypeError, ValueError):
            bad.append(f"{path.name}: frame size unreadable")
            continue
        j2k = ts_uid in _TS_J2K
        try:
            spans = _frame_spans(path, count, (fragments or {}).get(key, False))
            if spans is not None:
                got = _frame_sizes(path, spans, j2k)
            else:  # frames of several fragments: each read whole
                got = []
                for i, f in enumerate(iter_frames(path)):
                    b = bytes(f)
                    sizes = _Sizes(lambda o, n, b=b: b[o : o + n], j2k=j2k)
                    got.append((i, sizes.size(0, len(b))))
        except _Unsized as exc:
            bad.append(f"{path.name}: a frame's size unreadable ({exc.reason})")
            continue
        except Exception as exc:
            bad.append(f"{path.name}: frames unreadable ({type(exc).__name__})")
            continue
        for i, (h, w) in got:
            judged += 1
            if (h, w) != (rows, cols):
                kind = "JPEG 2000 image size" if j2k else "JPEG frame header"
                how = "gives no height (DNL)" if h == 0 else f"{'larger' if h > rows or w > cols else 'smaller'} than Rows x Columns"
                bad.append(f"{path.name} frame {i + 1}: {kind} {how}")
                break  # one finding an instance
    verdict.add(
        DICOM_CHECK,
        not bad,
        "; ".join(bad[:5]) if bad else f"{judged} JPEG / JPEG-LS / JPEG 2000 frame(s): each codes exactly Rows x Columns",
    )


__all__ = ["CHECK", "DICOM_CHECK", "check_dicom", "check_tiff"]
