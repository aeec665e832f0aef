"""The packets of a JPEG 2000 codestream, followed to their last byte (ISO/IEC 15444-1 Annex B).

A tile-part's data after SOD is a run of packets, each a header (which code-blocks of one
precinct contribute how many coding passes, and how many bytes) and the bytes it announces.  A
decoder reads exactly the packets the coding style and the progression give; bytes after the
last one, inside the length the tile-part's SOT gives, are read by nothing.  :func:`surplus`
parses every packet header (tag trees, pass counts, Lblock, codeword segments, SOP and EPH
markers) and answers whether the packets account for every byte of every tile-part — text
appended there is then found structurally, without decoding anything.

What it does not prove: the bytes a packet announces are taken as its code-blocks' coded data
(bytes a writer hid *inside* a code-block's segment pass through, as in JPEG's entropy-coded
data).  Not followed (answered :data:`NOT_FOLLOWED`, not judged): HTJ2K code-blocks (Part 15's
packet syntax differs), Part 2 arbitrary decompositions (DFS/ADS), packed packet headers
(PPM/PPT, which the marker walk refuses before this).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

NOT_FOLLOWED = "not followed"
# bounds on the work one codestream may ask for (a header's numbers are the writer's): code-blocks
# in one precinct's band (a 2,048 px frame in 4 x 4 px code-blocks has 262,144), and the steps of
# a progression (layers x resolutions x components x precinct positions; a 256 px tile of 3
# components, 6 resolutions and 1 layer takes 18): a codestream beyond them is refused
MAX_BLOCKS = 1 << 18
MAX_STEPS = 1 << 22
# packets read in one codestream (a 256 px tile of 20 layers, 8 resolutions, 3 components and 64
# precincts a resolution has 30,720): 65,535 layers of one-byte empty packets took 13 s a tile
# (red team stop 37, round 3)
MAX_PACKETS = 1 << 16

_SIZ, _COD, _COC, _POC, _SOT, _SOD, _EOC = 0xFF51, 0xFF52, 0xFF53, 0xFF5F, 0xFF90, 0xFF93, 0xFFD9
_SOP, _EPH = b"\xff\x91", b"\xff\x92"
_PPM, _PPT, _DFS, _ADS = 0xFF60, 0xFF61, 0xFF72, 0xFF73
_HT = 0x40  # code-block style: HT (Part 15) code-blocks
_LAZY, _TERMALL = 0x01, 0x04
_LRCP, _RLCP, _RPCL, _PCRL, _CPRL = range(5)


class _Bad(Exception):
    """A packet that cannot be what the coding style says (the reason is the message)."""


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------------------
# the coding style a tile uses


@dataclass
class _Style:
    levels: int  # decomposition levels NL
    xcb: int  # code-block width exponent
    ycb: int
    cblk_style: int
    precincts: list[tuple[int, int]]  # (PPx, PPy) of each resolution 0..NL


def _spcod(body: bytes, precincts_defined: bool) -> _Style:
    nl, xcb, ycb, style = body[0], body[1] + 2, body[2] + 2, body[3]
    if precincts_defined:
        pp = body[5 : 5 + nl + 1]
        if len(pp) != nl + 1:
            raise _Bad("precinct sizes missing")
        prec = [(b & 0x0F, b >> 4) for b in pp]
    else:
        prec = [(15, 15)] * (nl + 1)
    if xcb > 10 or ycb > 10 or xcb + ycb > 12 or nl > 32:
        raise _Bad("code-block size out of range")
    return _Style(nl, xcb, ycb, style, prec)


@dataclass
class _Coding:
    """The packet-shaping parts of COD, COC and POC segments of one header."""

    scod: int | None = None
    order: int = 0
    layers: int = 0
    cod: _Style | None = None
    coc: dict[int, _Style] = field(default_factory=dict)
    poc: list[tuple[int, int, int, int, int, int]] | None = None


def _coding(data: bytes, segs: list[tuple[int, int, int]], csiz: int) -> _Coding:
    out = _Coding()
    c = 1 if csiz < 257 else 2
    for m, pos, ln in segs:
        body = data[pos + 4 : pos + 2 + ln]
        if m == _COD:
            out.scod, out.order = body[0], body[1]
            (out.layers,) = struct.unpack_from(">H", body, 2)
            out.cod = _spcod(body[5:], bool(body[0] & 1))
        elif m == _COC:
            comp = int.from_bytes(body[:c], "big")
            out.coc[comp] = _spcod(body[c + 1 :], bool(body[c] & 1))
        elif m == _POC:
            entries = out.poc or []
            step = 5 + 2 * c
            for k in range(0, len(body) - step + 1, step):
                e = body[k : k + step]
                rs, cs = e[0], int.from_bytes(e[1 : 1 + c], "big")
                lye = int.from_bytes(e[1 + c : 3 + c], "big")
                re_, ce, order = e[3 + c], int.from_bytes(e[4 + c : 4 + 2 * c], "big"), e[4 + 2 * c]
                entries.append((rs, cs, lye, re_, (ce or 256) if c == 1 else (ce or 16384), order))
            out.poc = entries
        elif m in (_PPM, _PPT, _DFS, _ADS):
            raise LookupError
    return out


# ---------------------------------------------------------------------------
# tag trees (B.10.2)


class _TagTree:
    __slots__ = ("w", "levels", "value", "low")

    def __init__(self, w: int, h: int) -> None:
        self.w = w
        self.levels: list[tuple[int, int]] = []  # (first node, width) of each level, leaves first
        base = 0
        lw, lh = w, h
        while True:
            self.levels.append((base, lw))
            base += lw * lh
            if lw * lh <= 1:
                break
            lw, lh = _ceil_div(lw, 2), _ceil_div(lh, 2)
        self.value = [1 << 30] * base
        self.low = [0] * base

    def decode(self, bits: _Bits, leaf: int, threshold: int) -> bool:
        """Whether leaf's value is below ``threshold`` (reading what that takes)."""
        x, y = leaf % self.w, leaf // self.w
        stack = [first + (y >> k) * lw + (x >> k) for k, (first, lw) in enumerate(self.levels)]
        node = stack.pop()  # the root
        low = 0
        value, lows = self.value, self.low
        while True:
            if low > lows[node]:
                lows[node] = low
            else:
                low = lows[node]
            while low < threshold and low < value[node]:
                if bits.bit():
                    value[node] = low
                else:
                    low += 1
            lows[node] = low
            if not stack:
                break
            node = stack.pop()
        return value[node] < threshold


# ---------------------------------------------------------------------------
# the packet header's bits (B.10.1: a byte after 0xFF carries 7 bits)


class _Bits:
    __slots__ = ("data", "pos", "end", "buf", "ct")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end, self.buf, self.ct = data, pos, end, 0, 0

    def bit(self) -> int:
        if self.ct == 0:
            self.buf = (self.buf << 8) & 0xFFFF
            self.ct = 7 if self.buf == 0xFF00 else 8
            if self.pos >= self.end:
                raise _Bad("a packet header runs past its tile-part")
            self.buf |= self.data[self.pos]
            self.pos += 1
        self.ct -= 1
        return (self.buf >> self.ct) & 1

    def bits(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | self.bit()
        return v


def _align(bits: _Bits) -> int:
    """Byte-align after a header (B.10.1): when its last byte was 0xFF, the next (whose first bit
    is the stuffed 0) belongs to the header too.  The bits that pad the header to its byte end
    must be zero, as encoders write them: red team stop 37 raised a COD's layer count so that
    text appended after the last packet read as empty packets (an ASCII byte's first bit is 0,
    and its other 7 bits are such padding)."""
    if bits.ct and bits.buf & ((1 << bits.ct) - 1):
        raise _Bad("a packet header's padding bits are not zero")
    if (bits.buf & 0xFF) == 0xFF:
        if bits.pos >= bits.end:
            raise _Bad("a packet header runs past its tile-part")
        nxt = bits.data[bits.pos]
        if nxt & 0x7F:
            raise _Bad("a packet header's padding bits are not zero")
        bits.buf = ((bits.buf << 8) & 0xFFFF) | nxt
        bits.pos += 1
    bits.ct = 0
    return bits.pos


# ---------------------------------------------------------------------------
# a tile's precincts and code-blocks


class _Block:
    __slots__ = ("lblock", "segs")

    def __init__(self) -> None:
        self.lblock = 3
        self.segs: list[list[int]] = []  # [maxpasses, passes] of each codeword segment


class _Band:
    __slots__ = ("n", "blocks", "incl", "zero")

    def __init__(self, w: int, h: int) -> None:
        self.n = w * h
        self.blocks: dict[int, _Block] = {}  # made when first included
        self.incl = _TagTree(w, h) if w * h else None
        self.zero = _TagTree(w, h) if w * h else None


@dataclass
class _Resolution:
    x0: int
    y0: int
    x1: int
    y1: int
    ppx: int
    ppy: int
    pw: int  # precincts across
    ph: int
    bands: list[tuple[int, int, int, int, int]]  # (x0, y0, x1, y1, band kind 0 LL 1 HL 2 LH 3 HH)
    xcb: int = 0
    ycb: int = 0
    precincts: dict[int, list[_Band]] = field(default_factory=dict)


def _resolutions(tcx0: int, tcy0: int, tcx1: int, tcy1: int, st: _Style) -> list[_Resolution]:
    out = []
    nl = st.levels
    for r in range(nl + 1):
        d = 1 << (nl - r)
        x0, y0, x1, y1 = _ceil_div(tcx0, d), _ceil_div(tcy0, d), _ceil_div(tcx1, d), _ceil_div(tcy1, d)
        ppx, ppy = st.precincts[r]
        pw = 0 if x0 == x1 else (_ceil_div(x1, 1 << ppx) - (x0 >> ppx))
        ph = 0 if y0 == y1 else (_ceil_div(y1, 1 << ppy) - (y0 >> ppy))
        bands = []
        if r == 0:
            bands.append((x0, y0, x1, y1, 0))
        else:
            nb = nl - r + 1
            for kind in (1, 2, 3):
                xo, yo = kind & 1, kind >> 1
                bands.append(
                    (
                        _ceil_div(tcx0 - (xo << (nb - 1)), 1 << nb),
                        _ceil_div(tcy0 - (yo << (nb - 1)), 1 << nb),
                        _ceil_div(tcx1 - (xo << (nb - 1)), 1 << nb),
                        _ceil_div(tcy1 - (yo << (nb - 1)), 1 << nb),
                        kind,
                    )
                )
        res = _Resolution(x0, y0, x1, y1, ppx, ppy, max(pw, 0), max(ph, 0), bands)
        if r > 0 and (ppx == 0 or ppy == 0):
            raise _Bad("a precinct of size 1 above resolution 0")
        res.xcb = min(st.xcb, ppx if r == 0 else ppx - 1)
        res.ycb = min(st.ycb, ppy if r == 0 else ppy - 1)
        out.append(res)
    return out


def _precinct(res: _Resolution, r: int, k: int) -> list[_Band]:
    """The code-block grids of precinct ``k`` of a resolution (made on first use)."""
    got = res.precincts.get(k)
    if got is not None:
        return got
    ex, ey = (res.ppx, res.ppy) if r == 0 else (res.ppx - 1, res.ppy - 1)
    # the precinct partition's origin, in the bands' coordinates (B.6)
    px0 = (res.x0 >> res.ppx) << res.ppx
    py0 = (res.y0 >> res.ppy) << res.ppy
    if r > 0:
        px0, py0 = _ceil_div(px0, 2), _ceil_div(py0, 2)
    i, j = k % res.pw, k // res.pw
    cx0, cy0 = px0 + (i << ex), py0 + (j << ey)
    cx1, cy1 = cx0 + (1 << ex), cy0 + (1 << ey)
    bands = []
    for bx0, by0, bx1, by1, _kind in res.bands:
        x0, y0, x1, y1 = max(cx0, bx0), max(cy0, by0), min(cx1, bx1), min(cy1, by1)
        if x1 <= x0 or y1 <= y0:
            bands.append(_Band(0, 0))
            continue
        w = (_ceil_div(x1, 1 << res.xcb)) - (x0 >> res.xcb)
        h = (_ceil_div(y1, 1 << res.ycb)) - (y0 >> res.ycb)
        if w * h > MAX_BLOCKS:
            raise _Bad("a precinct of more code-blocks than are followed here")
        bands.append(_Band(w, h))
    res.precincts[k] = bands
    return bands


# ---------------------------------------------------------------------------
# one packet (B.10)


def _passes(bits: _Bits) -> int:
    if not bits.bit():
        return 1
    if not bits.bit():
        return 2
    v = bits.bits(2)
    if v != 3:
        return 3 + v
    v = bits.bits(5)
    if v != 31:
        return 6 + v
    return 37 + bits.bits(7)


def _new_seg(block: _Block, style: int) -> list[int]:
    if style & _TERMALL:
        most = 1
    elif style & _LAZY:
        if not block.segs:
            most = 10
        else:
            most = 2 if block.segs[-1][0] in (1, 10) else 1
    else:
        most = 1 << 30
    seg = [most, 0]
    block.segs.append(seg)
    return seg


def _packet(data: bytes, pos: int, end: int, bands: list[_Band], layer: int, style: int, scod: int, seq: int, budget: list[int]) -> int:
    """Read the packet at ``pos``; returns where the next one starts.  ``budget``: the code-block
    visits left to the codestream (a header's numbers can ask for millions that read no bit)."""
    if scod & 2 and data[pos : pos + 2] == _SOP:
        if pos + 6 > end or data[pos + 2 : pos + 4] != b"\x00\x04":
            raise _Bad("an SOP marker of the wrong length")
        if int.from_bytes(data[pos + 4 : pos + 6], "big") != seq & 0xFFFF:
            raise _Bad("an SOP marker out of sequence")
        pos += 6
    bits = _Bits(data, pos, end)
    body = 0
    if bits.bit():
        for band in bands:
            if band.incl is None or band.zero is None:
                continue
            budget[0] -= band.n
            if budget[0] < 0:
                raise _Bad("more code-blocks than the codestream's bytes can describe")
            blocks = band.blocks
            for n in range(band.n):
                block = blocks.get(n)
                if block is None:
                    if not band.incl.decode(bits, n, layer + 1):
                        continue
                    t = 0
                    while not band.zero.decode(bits, n, t + 1):
                        t += 1
                        if t > 74:
                            raise _Bad("a code-block's zero bit-planes out of range")
                    block = blocks[n] = _Block()
                elif not bits.bit():
                    continue
                npasses = _passes(bits)
                while bits.bit():
                    block.lblock += 1
                    if block.lblock > 32:
                        raise _Bad("a code-block length field out of range")
                seg = block.segs[-1] if block.segs and block.segs[-1][1] < block.segs[-1][0] else _new_seg(block, style)
                left = npasses
                while True:
                    take = min(seg[0] - seg[1], left)
                    body += bits.bits(block.lblock + take.bit_length() - 1)
                    seg[1] += take
                    left -= take
                    if not left:
                        break
                    seg = _new_seg(block, style)
    pos = _align(bits)
    if scod & 4:
        if data[pos : pos + 2] != _EPH:
            raise _Bad("an EPH marker missing")
        pos += 2
    if pos + body > end:
        raise _Bad("a packet runs past its tile-part")
    return pos + body


# ---------------------------------------------------------------------------
# the order of a tile's packets (B.12)


@dataclass
class _Tile:
    comps: list[list[_Resolution]]
    styles: list[_Style]
    sub: list[tuple[int, int]]  # (XRsiz, YRsiz)
    box: tuple[int, int, int, int]  # tx0, ty0, tx1, ty1
    layers: int
    order: int
    scod: int
    poc: list[tuple[int, int, int, int, int, int]] | None


def _position_precincts(tile: _Tile, c: int, r: int, x: int, y: int) -> int | None:
    """The precinct of (component c, resolution r) a position progression visits at (x, y), or None."""
    st = tile.styles[c]
    res = tile.comps[c][r]
    if res.pw == 0 or res.ph == 0:
        return None
    xr, yr = tile.sub[c]
    lv = st.levels - r
    tx0, ty0 = tile.box[0], tile.box[1]
    ok_y = y % (yr << (res.ppy + lv)) == 0 or (y == ty0 and ((res.y0 << lv) % (1 << (res.ppy + lv))) != 0)
    ok_x = x % (xr << (res.ppx + lv)) == 0 or (x == tx0 and ((res.x0 << lv) % (1 << (res.ppx + lv))) != 0)
    if not (ok_x and ok_y):
        return None
    px = (_ceil_div(x, xr << lv) >> res.ppx) - (res.x0 >> res.ppx)
    py = (_ceil_div(y, yr << lv) >> res.ppy) - (res.y0 >> res.ppy)
    if not (0 <= px < res.pw and 0 <= py < res.ph):
        return None
    return py * res.pw + px


def _positions(tile: _Tile, comps: range, rs: range, axis: int, most: int = MAX_STEPS) -> list[int]:
    """Every coordinate along ``axis`` (0 x, 1 y) where a position progression may visit a precinct
    (refused beyond ``most``)."""
    lo, hi = tile.box[axis], tile.box[axis + 2]
    out = {lo}
    for c in comps:
        if c >= len(tile.comps):
            continue
        for r in rs:
            if r >= len(tile.comps[c]):
                continue
            res = tile.comps[c][r]
            pp = res.ppx if axis == 0 else res.ppy
            step = tile.sub[c][axis] << (pp + tile.styles[c].levels - r)
            first = _ceil_div(lo, step) * step
            if (hi - first) // step > most:
                raise _Bad("a progression of more steps than are followed here")
            out.update(range(first, hi, step))
    return sorted(out)


def _order(tile: _Tile):
    """(layer, resolution, component, precinct) of every packet in the tile, in codestream order."""
    ncomp = len(tile.comps)
    maxr = max(len(rs) for rs in tile.comps)
    volumes = tile.poc or [(0, 0, tile.layers, maxr, ncomp, tile.order)]
    done: set[tuple[int, int, int, int]] = set()
    for rs0, cs0, lye, re_, ce, order in volumes:
        lays = range(min(lye, tile.layers))
        rs = range(rs0, min(re_, maxr))
        cs = range(cs0, min(ce, ncomp))

        def visit(c: int, r: int, x: int, y: int, lays: range = lays):
            """The packets of the precinct a position progression visits at (x, y), every layer."""
            if r < len(tile.comps[c]) and (p := _position_precincts(tile, c, r, x, y)) is not None:
                for layer in lays:
                    yield (layer, r, c, p)

        def prec(c: int, r: int) -> range:
            if r >= len(tile.comps[c]):
                return range(0)
            res = tile.comps[c][r]
            return range(res.pw * res.ph)

        positions = 1
        if order in (_RPCL, _PCRL, _CPRL):
            positions = len(_positions(tile, cs, rs, 1, MAX_STEPS)) * len(_positions(tile, cs, rs, 0, MAX_STEPS))
        if len(lays) * len(rs) * len(cs) * positions > MAX_STEPS:
            raise _Bad("a progression of more steps than are followed here")
        if order == _LRCP:
            seq = ((l, r, c, p) for l in lays for r in rs for c in cs for p in prec(c, r))
        elif order == _RLCP:
            seq = ((l, r, c, p) for r in rs for l in lays for c in cs for p in prec(c, r))
        elif order == _RPCL:
            ys, xs = _positions(tile, cs, rs, 1), _positions(tile, cs, rs, 0)
            seq = (k for r in rs for y in ys for x in xs for c in cs for k in visit(c, r, x, y))
        elif order == _PCRL:
            ys, xs = _positions(tile, cs, rs, 1), _positions(tile, cs, rs, 0)
            seq = (k for y in ys for x in xs for c in cs for r in rs for k in visit(c, r, x, y))
        elif order == _CPRL:
            seq = (
                k
                for c in cs
                for y in _positions(tile, range(c, c + 1), rs, 1)
                for x in _positions(tile, range(c, c + 1), rs, 0)
                for r in rs
                for k in visit(c, r, x, y)
            )
        else:
            raise _Bad("an unknown progression order")
        for key in seq:
            if key not in done:
                done.add(key)
                yield key


# ---------------------------------------------------------------------------
# the codestream


def surplus(data: bytes) -> str | None:
    """Whether the packets of every tile-part of the JPEG 2000 codestream ``data`` end exactly at
    the tile-part's end: None when they do; :data:`NOT_FOLLOWED` for a codestream whose packets
    this module does not parse (HTJ2K code-blocks, Part 2 decompositions, packed packet headers);
    else the reason (bytes after a tile-part's last packet, or packets that do not fit).  Expects a
    codestream whose marker segments ``io.codestreams.j2k_segments`` has followed."""
    from wsianon.io.codestreams import _header

    try:
        walked = _header(data, 2, _SOT)
        if walked is None:
            return "the main header cannot be followed"
        main, pos = walked
        siz = next(((p, ln) for m, p, ln in main if m == _SIZ), None)
        if siz is None:
            return "no SIZ segment"
        b = data[siz[0] + 4 : siz[0] + 2 + siz[1]]
        xsiz, ysiz, xo, yo, xt, yt, xto, yto = struct.unpack_from(">8I", b, 2)
        (csiz,) = struct.unpack_from(">H", b, 34)
        sub = [(b[36 + 3 * k + 1], b[36 + 3 * k + 2]) for k in range(csiz)]
        if xt == 0 or yt == 0 or any(x == 0 or y == 0 for x, y in sub):
            return "SIZ values out of range"
        across = _ceil_div(xsiz - xto, xt)
        tiles_n = across * _ceil_div(ysiz - yto, yt)
        base = _coding(data, main, csiz)
        if base.cod is None or base.scod is None:
            return "no COD segment"
        tiles: dict[int, tuple[_Tile, object]] = {}
        budget = [32 * len(data) + 4096, 0]  # code-block visits: most read a bit (8 a byte), some none
        seen_parts: dict[int, int] = {}
        n = len(data)
        while True:
            (m,) = struct.unpack_from(">H", data, pos)
            if m == _EOC:
                break
            start = pos
            (isot,) = struct.unpack_from(">H", data, pos + 4)
            (psot,) = struct.unpack_from(">I", data, pos + 6)
            walked = _header(data, pos + 12, _SOD)
            if walked is None:
                return "a tile-part header cannot be followed"
            segs, hp = walked
            body_end = start + psot
            if psot == 0:  # the last tile-part runs to EOC (which an odd frame's pad byte may follow)
                body_end = n - 2
                while body_end > hp and data[body_end : body_end + 2] != b"\xff\xd9":
                    body_end -= 1
            if isot >= tiles_n:
                return "a tile index beyond the image's tiles"
            if isot not in tiles:
                if seen_parts.get(isot):
                    return "a tile's tile-parts out of order"
                tile = _make_tile(data, segs, csiz, base, sub, isot, across, (xsiz, ysiz, xo, yo, xt, yt, xto, yto))
                if tile is None:
                    return NOT_FOLLOWED
                tiles[isot] = (tile, _packets(tile, data, budget))
            tile, gen = tiles[isot]
            seen_parts[isot] = seen_parts.get(isot, 0) + 1
            q = hp + 2
            while q < body_end:
                step = next(gen, None)  # type: ignore[call-overload]
                if step is None:
                    return "bytes after the last packet of a tile-part"
                q = step(q, body_end)
            if q != body_end:
                return "a packet runs past its tile-part"
            if psot == 0:
                break
            pos = start + psot
        return None
    except LookupError:
        return NOT_FOLLOWED
    except _Bad as exc:
        return str(exc)
    except (IndexError, struct.error, ValueError):
        return "the packets cannot be followed"


def _make_tile(data: bytes, segs, csiz: int, base: _Coding, sub, t: int, across: int, siz) -> _Tile | None:
    xsiz, ysiz, xo, yo, xt, yt, xto, yto = siz
    own = _coding(data, segs, csiz)
    p, q = t % across, t // across
    tx0, ty0 = max(xto + p * xt, xo), max(yto + q * yt, yo)
    tx1, ty1 = min(xto + (p + 1) * xt, xsiz), min(yto + (q + 1) * yt, ysiz)
    styles = []
    for c in range(csiz):
        st = own.coc.get(c) or own.cod or base.coc.get(c) or base.cod
        assert st is not None
        if st.cblk_style & _HT:
            return None
        styles.append(st)
    comps = []
    for c, st in enumerate(styles):
        xr, yr = sub[c]
        comps.append(_resolutions(_ceil_div(tx0, xr), _ceil_div(ty0, yr), _ceil_div(tx1, xr), _ceil_div(ty1, yr), st))
    scod = own.scod if own.scod is not None else base.scod
    layers = own.layers if own.cod is not None else base.layers
    order = own.order if own.cod is not None else base.order
    poc = own.poc if own.poc is not None else base.poc
    if not 1 <= layers <= 0xFFFF:
        raise _Bad("a layer count out of range")
    return _Tile(comps, styles, sub, (tx0, ty0, tx1, ty1), layers, order, scod or 0, poc)


def _packets(tile: _Tile, data: bytes, budget: list[int]):
    """One reader per packet, in the tile's order: each reads its packet at a position (up to a
    tile-part's end) and returns where the next one starts."""
    for seq, (layer, r, c, k) in enumerate(_order(tile)):
        budget[1] += 1
        if budget[1] > MAX_PACKETS:
            raise _Bad("more packets than are followed here")
        bands = _precinct(tile.comps[c][r], r, k)
        style = tile.styles[c].cblk_style
        yield lambda pos, end, bands=bands, layer=layer, style=style, seq=seq: _packet(data, pos, end, bands, layer, style, tile.scod, seq, budget)
