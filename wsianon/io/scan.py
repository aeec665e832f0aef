"""Raw byte scanning for canary values.

Every identifying value harvested from a source is searched for in every byte
of every output file, in the encodings a writer might have used: ASCII/UTF-8
(case-insensitive), UTF-16LE/BE, and base64 at the three byte alignments — but the base64
forms skip pixel data the verifier proves identical to the source's (``SplitScanner``).
Hyperscan (when installed: x86-64) matches all patterns in one streaming pass
at several GB/s; elsewhere one multi-pattern regular expression runs over
overlapping chunks.  Either way memory stays bounded and each file is read once.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from wsianon.io.extents import data_extents

if TYPE_CHECKING:
    import hyperscan

CHUNK = 16 * 1024 * 1024
# Values shorter than this are too likely to occur by chance inside compressed
# pixel data; they are checked in parsed metadata only.
MIN_SCAN_LENGTH = 5
# Longer patterns are cut to their first MAX_PATTERN bytes: a file holding the
# whole value holds its prefix, so nothing the full pattern finds is missed (and
# pattern engines have length limits: hyperscan refuses ~16 KB expressions).
MAX_PATTERN = 1024


@dataclass(frozen=True)
class Canary:
    """One identifying value to look for. ``name`` says where it came from (a field name)."""

    name: str
    value: str

    @property
    def scannable(self) -> bool:
        return len(self.value.strip()) >= MIN_SCAN_LENGTH


def base64_fragments(data: bytes) -> list[bytes]:
    """Base64 text that any encoding of ``data`` must contain, for each of the 3 alignments."""
    out = []
    n = len(data)
    for a in range(3):
        enc = base64.b64encode(b"\0" * a + data)
        i0 = -(-8 * a // 6)  # first char made of value bits only
        i1 = (8 * (a + n)) // 6  # one past last such char
        frag = enc[i0:i1]
        if len(frag) >= 4:
            out.append(frag)
    return out


# one separator between two groups of digits (round 2 of stop 38 added ":", ",", "+", "#", "_")
DIGIT_SEPARATORS = ("-", " ", "/", ":", ",", "+", "#", "_")


def digit_forms(v: str) -> list[str]:
    """Other ways a writer puts a number of 6 to 20 digits (an MRN, an accession number, a birth
    date) into text: one separator (``-``, space, ``/``) between any two groups of 2 or more
    digits ("9876-5432"), groups of three from the right ("98 765 432", "98.765.432"), and for a
    date written YYYYMMDD its usual orders with ``-``, ``/`` or ``.`` ("1979-01-01", "01.01.1979",
    "1/1/1979", "01/01/79").  Red team stop 37: such a copy in kept free text passed the canary
    scan, which searched the value only as written."""
    if not (v.isascii() and v.isdigit() and 6 <= len(v) <= 20):
        return []
    # (not "." between two groups: "25.0000" is a decimal number, as "Left = 25.000000" holds)
    out = [v[:i] + sep + v[i:] for i in range(2, len(v) - 1) for sep in DIGIT_SEPARATORS]
    head = len(v) % 3 or 3
    groups = [v[:head]] + [v[i : i + 3] for i in range(head, len(v), 3)]
    out += [sep.join(groups) for sep in (" ", ".", ",", "'")]
    if len(v) % 2 == 0:  # pairs ("98:76:54:32": red team stop 38, round 2)
        out += [sep.join(v[i : i + 2] for i in range(0, len(v), 2)) for sep in (" ", "-", ":", ".")]
    if len(v) == 8:
        y, m, d = v[:4], v[4:6], v[6:]
        if 1 <= int(m) <= 12 and 1 <= int(d) <= 31:
            for sep in ("-", "/", "."):
                out += [sep.join((y, m, d)), sep.join((d, m, y)), sep.join((m, d, y))]
                out += [sep.join((str(int(d)), str(int(m)), y)), sep.join((str(int(m)), str(int(d)), y))]
                out += [sep.join((d, m, y[2:])), sep.join((m, d, y[2:]))]
    return list(dict.fromkeys(f for f in out if f != v))


_ALNUM_GROUPS = re.compile(r"[A-Za-z0-9]+(?:[-./_ :,+#][A-Za-z0-9]+)+")
ALNUM_SEPARATORS = ("", " ", "-", ".", "/", "_", ":", ",", "+", "#")


def alnum_forms(v: str) -> list[str]:
    """Other ways a writer puts an identifier of letters and digits into text: a value of two or
    more groups of letters/digits split by one separator each (``-``, ``.``, ``/``, ``_``,
    space), 6 or more letters and digits in all, one of them a digit ("S19-4711", "JD 4711"),
    with its groups joined by each of nothing, space, ``-``, ``.``, ``/``, ``_`` ("S194711",
    "S19 4711", "S19.4711"); the scan is case-insensitive anyway. Two groups of digits only
    are not joined by ``.`` (a decimal number, as ``digit_forms`` leaves it out). Red team stop
    38: an accession number S19-4711 passed as "Leica S19 4711" and "Aperio S194711" in kept
    DICOM text, the scan having searched it only as written."""
    if not (v.isascii() and _ALNUM_GROUPS.fullmatch(v)):
        return []
    groups = re.split(r"[-./_ :,+#]", v)
    chars = "".join(groups)
    if len(chars) < 6 or not any(c.isdigit() for c in chars):
        return []
    decimal = len(groups) == 2 and all(g.isdigit() for g in groups)
    out = [sep.join(groups) for sep in ALNUM_SEPARATORS if not (decimal and sep == ".")]
    return list(dict.fromkeys(f for f in out if f != v))


def variants(value: str) -> tuple[list[bytes], list[bytes]]:
    """(case-insensitive patterns, case-sensitive patterns) for a value."""
    ci: list[bytes] = []
    cs: list[bytes] = []
    v = value.strip()
    if not v:
        return ci, cs
    # a file name's undecodable bytes (os.fsdecode's surrogate escapes) are scanned as the bytes they were
    raw = v.encode("utf-8", "surrogateescape")
    ci.append(raw)
    ci.extend(f.encode("ascii") for f in digit_forms(v))
    ci.extend(f.encode("ascii") for f in alnum_forms(v))
    try:
        ci.append(v.encode("latin-1"))
    except UnicodeEncodeError:
        pass
    cs.append(v.encode("utf-16-le", "surrogatepass"))
    cs.append(v.encode("utf-16-be", "surrogatepass"))
    cs.extend(base64_fragments(raw))
    return list(dict.fromkeys(ci)), list(dict.fromkeys(cs))


@dataclass
class Finding:
    file: str
    offset: int
    canary: str  # the canary's field NAME, never its value
    encoding: str

    def as_dict(self) -> dict:
        return {"file": self.file, "offset": self.offset, "field": self.canary, "encoding": self.encoding}


_hs: ModuleType | None
try:  # optional accelerator
    import hyperscan as _hs
except Exception:  # pragma: no cover - platform without hyperscan wheels
    _hs = None


ENCODINGS = ("text", "utf-16", "base64")


class Scanner:
    """Every canary in the encodings of ``ENCODINGS`` (``encodings``: a subset of them)."""

    def __init__(self, canaries: list[Canary], engine: str | None = None, encodings: tuple[str, ...] = ENCODINGS):
        self.canaries = [c for c in canaries if c.scannable]
        self.skipped = [c for c in canaries if not c.scannable]
        self.encodings = tuple(e for e in ENCODINGS if e in encodings)
        self._lookup: dict[bytes, tuple[str, str]] = {}
        self._text_patterns: frozenset[bytes] | None = None
        ci_pats: list[bytes] = []
        cs_pats: list[bytes] = []
        for c in self.canaries:
            ci, cs = variants(c.value)
            for p in ci if "text" in self.encodings else []:
                p = p[:MAX_PATTERN]
                self._lookup.setdefault(p.lower(), (c.name, "text"))
                ci_pats.append(p)
            for p in cs:
                enc = "utf-16" if b"\0" in p else "base64"
                if enc not in self.encodings:
                    continue
                p = p[:MAX_PATTERN]
                self._lookup.setdefault(p, (c.name, enc))
                cs_pats.append(p)
        self.maxlen = max((len(p) for p in ci_pats + cs_pats), default=1)

        def build(pats: list[bytes], flags: int):
            if not pats:
                return None
            pats = sorted(set(pats), key=len, reverse=True)
            return re.compile(b"|".join(re.escape(p) for p in pats), flags)

        self._ci = build(ci_pats, re.IGNORECASE)
        self._cs = build(cs_pats, 0)
        self._hs_db: hyperscan.Database | None = None
        self._hs_ids: list[tuple[str, str, int]] = []
        # patterns hyperscan would not compile are searched by the regex engine instead
        self._fb_ci = None
        self._fb_cs = None
        use_hs = engine == "hyperscan" or (engine is None and _hs is not None)
        if use_hs and _hs is not None and (ci_pats or cs_pats):
            self._build_hs(ci_pats, cs_pats, build)
        self.engine = "hyperscan" if self._hs_db is not None else "re"

    def _build_hs(self, ci_pats: list[bytes], cs_pats: list[bytes], build) -> None:
        """Compile the hyperscan database; a pattern it refuses falls back to the regex
        engine on its own (per pattern), and if hyperscan fails as a whole the regex
        engine does everything — never an error."""
        assert _hs is not None, "called only when hyperscan imported"
        items: list[tuple[bytes, int, bool]] = []
        for pats, flag, ci in ((ci_pats, _hs.HS_FLAG_CASELESS, True), (cs_pats, 0, False)):
            for p in dict.fromkeys(pats):
                items.append((p, flag, ci))

        def compile_db(sel: list[tuple[bytes, int, bool]]):
            db = _hs.Database(mode=_hs.HS_MODE_STREAM)
            exprs = [b"".join(b"\\x%02x" % c for c in p) for p, _, _ in sel]
            db.compile(expressions=exprs, ids=list(range(len(sel))), elements=len(sel), flags=[f for _, f, _ in sel])
            return db

        good: list[tuple[bytes, int, bool]] = items
        bad: list[tuple[bytes, int, bool]] = []
        try:
            db = compile_db(good)
        except Exception:
            good, bad = [], []
            for it in items:
                try:
                    compile_db([it])
                    good.append(it)
                except Exception:
                    bad.append(it)
            db = None
            if good:
                try:
                    db = compile_db(good)
                except Exception:
                    good, bad, db = [], items, None  # hyperscan unusable here: regex engine for all
        if db is None:
            return  # self._hs_db stays None: the regex engine scans every pattern
        self._hs_db = db
        for p, _, ci in good:
            name, enc = self._lookup.get(p.lower() if ci else p, ("?", "text"))
            self._hs_ids.append((name, enc, len(p)))
        self._fb_ci = build([p for p, _, ci in bad if ci], re.IGNORECASE)
        self._fb_cs = build([p for p, _, ci in bad if not ci], 0)

    def text_patterns(self) -> frozenset[bytes]:
        """The plain-text patterns searched (lower case, as matched: case-insensitive)."""
        if self._text_patterns is None:
            self._text_patterns = frozenset(p for p, (_name, enc) in self._lookup.items() if enc == "text")
        return self._text_patterns

    def stream(self, name: str, limit: int = 50, skip=None) -> "ScanStream":
        """A scan of one file fed with its bytes in order (``ScanStream``).  ``skip`` is what a
        ``SplitScanner``'s encoded forms may leave out; this scanner searches every form in every
        byte (a superset), so it takes no notice of it."""
        return ScanStream(self, name, limit)

    def _match_info(self, m: re.Match, ci: bool) -> tuple[str, str]:
        key = m.group(0).lower() if ci else m.group(0)
        return self._lookup.get(key, ("?", "text"))

    def scan_bytes(self, data: bytes, name: str = "<bytes>", base: int = 0, limit: int = 50, _rx=None) -> list[Finding]:
        out: list[Finding] = []
        for rx, ci in _rx or ((self._ci, True), (self._cs, False)):
            if rx is None:
                continue
            for m in rx.finditer(data):
                cname, enc = self._match_info(m, ci)
                out.append(Finding(name, base + m.start(), cname, enc))
                if len(out) >= limit:
                    return out
        return out

    def _regions(self, fh) -> list[tuple[int, int, int, int]]:
        """(start, end, zeros before, zeros after) of the file's data, holes skipped.

        A sparse file's holes read as zeros and no canary is all zeros, so only
        data extents are read; each is padded with as many zeros as a pattern
        could straddle into the neighbouring hole."""
        pad = self.maxlen
        size = os.fstat(fh.fileno()).st_size
        extents = data_extents(fh.fileno(), 0, size, merge_gap=CHUNK)
        out = []
        prev_end = 0
        for i, (a, b) in enumerate(extents):
            nxt = extents[i + 1][0] if i + 1 < len(extents) else size
            out.append((a, b, min(pad, a - prev_end), min(pad, nxt - b)))
            prev_end = b
        return out

    @staticmethod
    def _chunks(fh, a: int, b: int, pre: int, post: int):
        if pre:
            yield bytes(pre)
        fh.seek(a)
        pos = a
        while pos < b:
            chunk = fh.read(min(CHUNK, b - pos))
            if not chunk:
                break
            pos += len(chunk)
            yield chunk
        if post:
            yield bytes(post)

    def _scan_file_hs(self, path: Path, name: str, limit: int) -> list[Finding]:
        assert _hs is not None and self._hs_db is not None, "called only with a hyperscan database"
        hs, hs_db = _hs, self._hs_db
        findings: list[Finding] = []
        base = 0

        def on_match(idx, start, end, flags, ctx):
            cname, enc, ln = self._hs_ids[idx]
            findings.append(Finding(name, base + end - ln, cname, enc))
            return 1 if len(findings) >= limit else None

        with open(path, "rb") as fh:
            for a, b, pre, post in self._regions(fh):
                base = a - pre
                with hs_db.stream(match_event_handler=on_match) as stream:
                    try:
                        for chunk in self._chunks(fh, a, b, pre, post):
                            stream.scan(chunk)
                    except hs.ScanTerminated:
                        break
                if len(findings) >= limit:
                    break
        uniq = {(f.offset, f.canary): f for f in findings}
        return sorted(uniq.values(), key=lambda f: f.offset)[:limit]

    def scan_file(self, path: Path, name: str | None = None, limit: int = 50) -> list[Finding]:
        name = name or path.name
        if self._ci is None and self._cs is None:
            return []
        if self._hs_db is not None:
            found = self._scan_file_hs(path, name, limit)
            if self._fb_ci is not None or self._fb_cs is not None:
                seen = {(f.offset, f.canary) for f in found}
                more = self._scan_file_re(path, name, limit, ((self._fb_ci, True), (self._fb_cs, False)))
                found = sorted(found + [f for f in more if (f.offset, f.canary) not in seen], key=lambda f: f.offset)[:limit]
            return found
        return self._scan_file_re(path, name, limit, None)

    def _scan_file_re(self, path: Path, name: str, limit: int, rx) -> list[Finding]:
        findings: list[Finding] = []
        seen: set[tuple[int, str]] = set()
        overlap = self.maxlen - 1
        with open(path, "rb") as fh:
            for a, b, pre, post in self._regions(fh):
                pos = a - pre
                tail = b""
                for chunk in self._chunks(fh, a, b, pre, post):
                    buf = tail + chunk
                    start = pos - len(tail)
                    for f in self.scan_bytes(buf, name, start, limit, rx):
                        key = (f.offset, f.canary)
                        if key not in seen:
                            seen.add(key)
                            findings.append(f)
                    if len(findings) >= limit:
                        return findings
                    tail = buf[-overlap:] if overlap > 0 else b""
                    pos += len(chunk)
        return findings


class ScanStream:
    """One file's canary scan fed with its bytes in order (``feed``), for a caller that reads the
    file anyway (the verifier's single read-back pass): the same matches as ``Scanner.scan_file``
    over the whole file, holes included as the zeros they read as."""

    def __init__(self, scanner: "Scanner", name: str, limit: int = 50):
        self.scanner = scanner
        self.name = name
        self.limit = limit
        self.findings: list[Finding] = []
        self._pos = 0
        self._tail = b""
        self._stopped = False
        self._hs_stream = None
        self._rx = None
        if scanner._ci is None and scanner._cs is None:
            self._stopped = True
            return
        if scanner._hs_db is not None:
            ids = scanner._hs_ids
            found = self.findings

            def on_match(idx, start, end, flags, ctx):
                cname, enc, ln = ids[idx]
                found.append(Finding(name, end - ln, cname, enc))
                return 1 if len(found) >= limit else None

            # hyperscan keeps only a borrowed reference to the handler: this object holds it
            self._on_match = on_match
            self._hs_stream = scanner._hs_db.stream(match_event_handler=on_match)
            self._hs_stream.__enter__()
            if scanner._fb_ci is not None or scanner._fb_cs is not None:
                self._rx = ((scanner._fb_ci, True), (scanner._fb_cs, False))
        else:
            self._rx = ((scanner._ci, True), (scanner._cs, False))
        self._seen: set[tuple[int, str]] = set()
        self._re_found: list[Finding] = []

    def feed(self, chunk: bytes) -> None:
        if self._stopped:
            self._pos += len(chunk)
            return
        if self._hs_stream is not None:
            assert _hs is not None, "a hyperscan stream exists only when hyperscan imported"
            try:
                self._hs_stream.scan(chunk)
            except _hs.ScanTerminated:
                self._stopped = True
        if self._rx is not None:
            overlap = self.scanner.maxlen - 1
            buf = self._tail + chunk
            start = self._pos - len(self._tail)
            for f in self.scanner.scan_bytes(buf, self.name, start, self.limit, self._rx):
                key = (f.offset, f.canary)
                if key not in self._seen:
                    self._seen.add(key)
                    self._re_found.append(f)
            if len(self._re_found) >= self.limit:
                self._stopped = True
            self._tail = buf[-overlap:] if overlap > 0 else b""
        self._pos += len(chunk)

    def close(self) -> list[Finding]:
        if self._hs_stream is not None:
            try:
                self._hs_stream.__exit__(None, None, None)
            except Exception:  # ScanTerminated at close: the limit was reached
                pass
            self._hs_stream = None
        found = self.findings + getattr(self, "_re_found", [])
        uniq = {(f.offset, f.canary): f for f in found}
        return sorted(uniq.values(), key=lambda f: f.offset)[: self.limit]


# Where a file's pixel data is proven to be the source's compressed pixels (the tile identity),
# the encoded forms of a value (base64) are not searched: encoded text lives in text containers
# (XML, XMP, DICOM values, orphaned bytes), all of which are outside that pixel data and scanned
# whole; the plain forms (text, UTF-16) are still searched in every byte.  Measured on a 2.26 GB
# slide with six canaries: hyperscan at 2.7 GB/s with the base64 fragments in the stream,
# 6.3 GB/s without them, 40 GB/s over zeros.
RAW_ENCODINGS = ("text", "utf-16")
ENCODED = ("base64",)
_ZEROS = bytes(CHUNK)
_MANY = 32  # skipped ranges in one chunk fed as views; more are zeroed in copies of _WINDOW bytes
_WINDOW = 1 << 20


def _zeros(n: int):
    """``n`` zero bytes as views of one zero buffer."""
    z = memoryview(_ZEROS)
    while n > 0:
        yield z[: min(n, len(z))]
        n -= len(z)


class SplitScanner:
    """The canary scan of files whose proven pixel data the encoded forms skip: one stream
    with the plain forms over every byte, one with the encoded forms over every byte but those
    ranges (read as zeros there: offsets stay the file's, and no match spans a skipped range)."""

    def __init__(self, canaries: list[Canary], engine: str | None = None):
        self.plain = Scanner(canaries, engine, RAW_ENCODINGS)
        self.encoded = Scanner(canaries, engine, ENCODED)
        self.canaries, self.skipped = self.plain.canaries, self.plain.skipped

    def text_patterns(self) -> frozenset[bytes]:
        return self.plain.text_patterns()

    def stream(self, name: str, limit: int = 50, skip=None) -> "SplitScanStream":
        """``skip``: (starts, ends) of sorted, disjoint byte ranges the encoded forms are not
        searched in (numpy int64 arrays), or None for none."""
        return SplitScanStream(self.plain.stream(name, limit), self.encoded.stream(name, limit), skip, limit)


class SplitScanStream:
    def __init__(self, plain: ScanStream, encoded: ScanStream, skip, limit: int):
        import numpy as np

        self.plain, self.encoded, self.limit = plain, encoded, limit
        starts, ends = skip if skip is not None else ((), ())
        self._s: np.ndarray = np.asarray(starts, np.int64)
        self._e: np.ndarray = np.asarray(ends, np.int64)
        self._pos = 0

    def feed(self, chunk: bytes) -> None:
        self.plain.feed(chunk)
        for piece in self._masked(chunk):
            self.encoded.feed(piece)

    def _masked(self, chunk: bytes):
        """``chunk`` with the skipped ranges it overlaps read as zeros, in pieces: views of
        ``chunk`` and of a zero buffer (no copy of the chunk, so no third buffer of its size in
        memory); where many ranges fall in one chunk (tiles with gaps between them), copies of
        at most ``_WINDOW`` bytes with the ranges zeroed."""
        a, b = self._pos, self._pos + len(chunk)
        self._pos = b
        i = int(self._e.searchsorted(a, side="right"))  # first range ending after a
        j = int(self._s.searchsorted(b, side="left"))  # ranges from i to j start before b
        if i >= j:
            yield chunk
            return
        mv = memoryview(chunk)
        if j - i > _MANY:
            yield from self._windows(mv, a, i, j)
            return
        cur = a
        for k in range(i, j):
            lo, hi = max(int(self._s[k]), a), min(int(self._e[k]), b)
            if lo > cur:
                yield mv[cur - a : lo - a]
            yield from _zeros(hi - lo)
            cur = max(cur, hi)
        if cur < b:
            yield mv[cur - a :]

    def _windows(self, mv: memoryview, a: int, i: int, j: int):
        for w in range(0, len(mv), _WINDOW):
            wa, wb = a + w, a + min(w + _WINDOW, len(mv))
            out = bytearray(mv[w : wb - a])
            view = memoryview(out)
            k0 = i + int(self._e[i:j].searchsorted(wa, side="right"))
            k1 = i + int(self._s[i:j].searchsorted(wb, side="left"))
            for k in range(k0, k1):
                lo, hi = max(int(self._s[k]), wa) - wa, min(int(self._e[k]), wb) - wa
                view[lo:hi] = bytes(hi - lo)
            yield out

    def close(self) -> list[Finding]:
        found = self.plain.close() + self.encoded.close()
        return sorted(found, key=lambda f: f.offset)[: self.limit]


STEM_CANARY = "file name"


def stem_canaries(path: Path) -> list[Canary]:
    """The source file's stem (and the part before the first dot) are identifiers too.

    Stems that are plain words ("slide", "image") would match format keywords
    everywhere; a stem is scanned when it has a digit (case numbers do) or at
    least 10 characters."""
    stems = {path.stem, path.stem.split(".")[0]}
    return [Canary(STEM_CANARY, s) for s in sorted(stems) if any(c.isdigit() for c in s) or len(s) >= 10]


_NUMBER_BYTES = frozenset(b"0123456789.+-")
_WORD_BYTES = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def numeric_stems(path: Path) -> frozenset[str]:
    """The parts of ``stem_canaries`` that are only digits (a database image ID, ``46000.svs``)."""
    return frozenset(c.value for c in stem_canaries(path) if c.value.isascii() and c.value.isdigit())


def _digit_runs(item: bytes, s: bytes) -> list[int]:
    """Where ``s`` (digits) stands in ``item`` as a whole run of digits."""
    out, i = [], item.find(s)
    while i >= 0:
        j = i + len(s)
        if (i == 0 or item[i - 1] not in b"0123456789") and (j == len(item) or item[j] not in b"0123456789"):
            out.append(i)
        i = item.find(s, i + 1)
    return out


def own_number_hit(path: Path, offset: int, stems: frozenset[str], items: frozenset[bytes]) -> bool:
    """Whether the text hit at ``offset`` of ``path`` is a numeric file name (``stems``) standing
    as a whole run of digits inside one of ``items``, found there whole: a field the format's
    profile keeps as a number, as the output writes it with its leading separator
    (``|OriginalWidth = 46000``, the format module's ``numeric_items``), and no number or word
    going on after it.  That is the slide's own structure, not its name.

    False positive of red team B (FP1): ``CMU-1-Small-Region.svs`` stored as ``46000.svs``,
    ``32914.svs`` or ``000424.svs`` was quarantined, those being its own OriginalWidth,
    OriginalHeight and LineCameraSkew digits.  Still caught: the same digits anywhere else (free text
    ``case 46000``, a free-text field holding only them, a longer number, a word around them), every
    other encoding (UTF-16, base64, the digit forms ``9876-5432``) and every other canary."""
    if not stems or not items:
        return False
    span = max(map(len, items)) + 1
    start = max(offset - span, 0)
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            window = fh.read(offset - start + span + 1)
    except OSError:
        return False
    i = offset - start
    for s in (x.encode("ascii") for x in stems):
        if window[i : i + len(s)] != s:
            continue
        for item in items:
            for p in _digit_runs(item, s):
                a, b = i - p, i - p + len(item)
                if a >= 0 and window[a:b] == item and (b == len(window) or window[b] not in _NUMBER_BYTES | _WORD_BYTES):
                    return True
    return False


def drop_own_number_hits(findings: list[Finding], path: Path, stems: frozenset[str], items: frozenset[bytes], limit: int = 50) -> tuple[list[Finding], int]:
    """``findings`` of one file without the hits :func:`own_number_hit` explains, and how many
    were dropped.  A scan that stopped at ``limit`` findings keeps them all (a hit it did not
    report might be one no kept number explains)."""
    if len(findings) >= limit or not stems or not items:
        return findings, 0
    kept = [f for f in findings if not (f.canary == STEM_CANARY and f.encoding == "text" and own_number_hit(path, f.offset, stems, items))]
    return kept, len(findings) - len(kept)


# A keyed UID is "2.25." and the decimal digits of a 128-bit keyed hash; a keyed slide pseudonym
# "WSI-" and 16 hex digits of one; a keyed patient token "P" and 16; the keyed MRXS SLIDE_ID
# upper-case hex digits (``wsianon.io.keyed``, ``wsianon.pipeline.keys``): characters no one chose.
# A short run of them (a time "15:09:26" searched as "150926", a five- or six-digit file name or
# accession number) stands somewhere in them by chance: about 34 in 10^6 UIDs hold a given six
# digits, and a DICOM output of one slide holds about eight; about 12 in 10^6 pseudonyms and 27 in
# 10^6 SLIDE_IDs hold a given five.  Counting such a hit failed about one clean slide in 4,000 (one
# in 360 for a five-digit file name on the DICOM route), for ever, since the UIDs and pseudonyms
# are keyed from the slide; the DICOM route's value scrub blanked the slide's PatientID and
# replaced its ContainerIdentifier.  Runs of up to CHANCE_RUN such characters found inside a keyed
# token of the output's structure are therefore not counted; a longer run (chance below 3 in 10^7
# a slide), any other form of a value, and a token that is itself one of the values searched for
# (a source UID kept, an earlier run's pseudonym) still are.
CHANCE_RUN = 8
KEYED_UID_PREFIX = b"2.25."
_TOKEN_SPAN = 64 + 1  # the longest token (a UID) and a delimiter
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdef")  # as matched: the scan is case-insensitive
_UID_BYTES = frozenset(b"0123456789.")
_WORD = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
KEYED_TOKENS = re.compile(rb"2\.25\.[0-9]{1,39}|WSI-[0-9a-f]{16}|P[0-9A-F]{16}")


def keyed_form(uid: bytes) -> bool:
    """Whether ``uid`` has a keyed UID's form: ``2.25.`` and the decimal value (no leading zero)
    of 128 bits or fewer."""
    digits = uid[len(KEYED_UID_PREFIX) :]
    return (
        uid.startswith(KEYED_UID_PREFIX)
        and 0 < len(digits) <= 39
        and digits.isdigit()
        and (digits == b"0" or not digits.startswith(b"0"))
        and int(digits) < 1 << 128
    )


def _keyed_part(token: bytes) -> tuple[int, frozenset[int], frozenset[int]] | None:
    """(where the keyed hash's characters start in ``token``, the characters they are drawn
    from, the characters that may not stand beside the token) for a keyed UID, slide pseudonym
    or patient token; None for anything else."""
    if keyed_form(token):
        return len(KEYED_UID_PREFIX), _DIGITS, _UID_BYTES
    if re.fullmatch(rb"WSI-[0-9a-f]{16}|P[0-9A-F]{16}", token):
        return token.index(b"-") + 1 if token.startswith(b"WSI-") else 1, _HEX, _WORD
    if re.fullmatch(rb"[0-9A-F]{16,64}", token):
        # a keyed identifier a format module names (MRXS SLIDE_ID), which the format writes
        # against other bytes ("01.02" and the SLIDE_ID in Index.dat and every Data file)
        return 0, _HEX, frozenset()
    return None


def keyed_tokens(text: bytes) -> frozenset[bytes]:
    """The keyed tokens (UIDs, pseudonyms) written whole in ``text``."""
    out = set()
    for m in KEYED_TOKENS.finditer(text):
        part = _keyed_part(m.group())
        a, b = m.span()
        if part is not None and (a == 0 or text[a - 1] not in part[2]) and (b == len(text) or text[b] not in part[2]):
            out.add(m.group())
    return frozenset(out)


def chance_token_hit(window: bytes, i: int, patterns: frozenset[bytes], tokens: frozenset[bytes]) -> bool:
    """Whether the text hit at ``window[i]`` is a run of at most ``CHANCE_RUN`` characters of a
    keyed hash standing inside the hash part of one of ``tokens`` (keyed UIDs and pseudonyms the
    output's structure holds), that token written whole there (no character of its kind on
    either side), and no other pattern matching at ``i``."""
    here = [p for p in patterns if window[i : i + len(p)].lower() == p]
    if not here or any(len(p) > CHANCE_RUN for p in here):
        return False
    n = max(map(len, here))
    for u in tokens:
        part = _keyed_part(u)
        if part is None or not all(set(p) <= part[1] for p in here):
            continue
        start, _chars, beside = part
        j = window.find(u, max(i - len(u), 0))
        while 0 <= j <= i:
            end = j + len(u)
            whole = (j == 0 or window[j - 1] not in beside) and (end == len(window) or window[end] not in beside)
            if whole and j + start <= i and i + n <= end:
                return True
            j = window.find(u, j + 1)
    return False


def _usable(tokens, patterns: frozenset[bytes]) -> frozenset[bytes]:
    return frozenset(u for u in tokens if _keyed_part(u) is not None and u.lower() not in patterns)


def drop_chance_hits(findings: list[Finding], path: Path, patterns: frozenset[bytes], tokens: frozenset[bytes], limit: int = 50) -> tuple[list[Finding], int]:
    """``findings`` of one file without the hits :func:`chance_token_hit` explains, and how many
    were dropped.  ``patterns``: the scan's plain-text patterns (``Scanner.text_patterns``);
    ``tokens``: the keyed UIDs and pseudonyms the output's structure holds (only those of keyed
    form that are not themselves a pattern are taken).  A scan that stopped at ``limit`` findings
    keeps them all."""
    tokens = _usable(tokens, patterns)
    if not findings or len(findings) >= limit or not tokens or not any(len(p) <= CHANCE_RUN for p in patterns):
        return findings, 0
    kept = []
    try:
        with open(path, "rb") as fh:
            for f in findings:
                if f.encoding == "text":
                    start = max(f.offset - _TOKEN_SPAN, 0)
                    fh.seek(start)
                    if chance_token_hit(fh.read(f.offset - start + _TOKEN_SPAN + 1), f.offset - start, patterns, tokens):
                        continue
                kept.append(f)
    except OSError:
        return findings, 0
    return kept, len(findings) - len(kept)


def chance_in_value(value: bytes, findings: list[Finding], patterns: frozenset[bytes], uid: bool, foreign: frozenset[bytes] = frozenset()) -> bool:
    """Whether every one of ``findings`` (of ``value`` scanned alone: one element's bytes) is a
    run :func:`chance_token_hit` explains inside one of the keyed tokens written whole in it: its
    keyed UIDs where ``uid`` (a UI element), else its keyed pseudonyms (a text element), as the
    verifier reads them (``wsianon.verify.keyedtokens``).  The converter's value scrub asks it
    before it replaces a value as holding a source value, so that the UIDs and pseudonyms it
    writes are the ones the verifier accepts.  ``foreign``: the tokens the source holds (a UID a
    Retain option keeps is the source's characters, not a keyed hash's): never chance."""
    tokens = _usable((t for t in keyed_tokens(value) if t.startswith(KEYED_UID_PREFIX) == uid and t not in foreign), patterns)
    return bool(tokens and findings) and all(f.encoding == "text" and chance_token_hit(value, f.offset, patterns, tokens) for f in findings)
