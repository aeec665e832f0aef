"""A small PDF writer for text documents (the certificate): standard fonts, automatic line wrapping
and pagination, compressed page streams, a footer with page numbers.  No dependency; the text is
extractable (pdftotext) because it is plain WinAnsi-encoded text in Helvetica / Courier."""

from __future__ import annotations

import re
import zlib

PAGE_W, PAGE_H = 595.28, 841.89  # A4 in points
MARGIN = 50.0
_FONTS = {"F1": "Helvetica", "F2": "Helvetica-Bold", "F3": "Courier"}
_ASCII = {"\u2192": "->", "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "}


def _latin1(s: str) -> str:
    s = "".join(_ASCII.get(ch, ch) for ch in s)
    return s.encode("latin-1", "replace").decode("latin-1")


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").replace("\r", " ").replace("\n", " ")


def _width(s: str, font: str, size: float) -> float:
    per = 0.6 if font == "F3" else (0.58 if font == "F2" else 0.53)
    return len(s) * per * size


class Document:
    def __init__(self, title: str = "", footer: str = ""):
        self.title, self.footer = title, footer
        self.pages: list[list[str]] = [[]]
        self.y = PAGE_H - MARGIN

    def _newline(self, h: float) -> None:
        if self.y - h < MARGIN + 20:
            self.pages.append([])
            self.y = PAGE_H - MARGIN
        self.y -= h

    def space(self, h: float) -> None:
        self._newline(h)

    def _wrap(self, text: str, font: str, size: float) -> list[str]:
        avail = PAGE_W - 2 * MARGIN
        lines: list[str] = []
        for para in text.split("\n"):
            cur = ""
            for word in para.split(" "):
                cand = f"{cur} {word}" if cur else word
                if _width(cand, font, size) <= avail or not cur:
                    cur = cand
                else:
                    lines.append(cur)
                    cur = word
                while _width(cur, font, size) > avail:  # a single over-long token (a hash, a path)
                    n = max(1, int(avail / _width("M", font, size)))
                    lines.append(cur[:n])
                    cur = cur[n:]
            lines.append(cur)
        return lines

    def text(self, text: str, bold: bool = False, mono: bool = False, size: float = 10) -> None:
        font = "F3" if mono else ("F2" if bold else "F1")
        for line in self._wrap(_latin1(text), font, size):
            self._newline(size * 1.3)
            self.pages[-1].append(f"BT /{font} {size:g} Tf {MARGIN:.2f} {self.y:.2f} Td ({_escape(line)}) Tj ET")

    def heading(self, text: str) -> None:
        self.text(text, bold=True, size=18)
        self.space(6)

    def subheading(self, text: str) -> None:
        self.space(8)
        self.text(text, bold=True, size=12)
        self.space(2)

    def render(self) -> bytes:
        objs: list[bytes] = []

        def add(b: bytes) -> int:
            objs.append(b)
            return len(objs)

        catalog = add(b"")  # filled below
        pages_id = add(b"")
        font_ids = {k: add(f"<< /Type /Font /Subtype /Type1 /BaseFont /{v} /Encoding /WinAnsiEncoding >>".encode()) for k, v in _FONTS.items()}
        fonts = " ".join(f"/{k} {i} 0 R" for k, i in font_ids.items())
        kids = []
        n = len(self.pages)
        for i, ops in enumerate(self.pages, 1):
            foot = _escape(_latin1(f"{self.footer} - page {i} of {n}"))
            content = "\n".join(ops + [f"BT /F1 8 Tf {MARGIN:.2f} {MARGIN - 20:.2f} Td ({foot}) Tj ET"]).encode("latin-1")
            z = zlib.compress(content, 6)
            cid = add(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(z) + z + b"\nendstream")
            kids.append(
                add(
                    f"<< /Type /Page /Parent {pages_id} 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] /Resources << /Font << {fonts} >> >> /Contents {cid} 0 R >>".encode()
                )
            )
        objs[catalog - 1] = f"<< /Type /Catalog /Pages {pages_id} 0 R >>".encode()
        objs[pages_id - 1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {n} >>".encode()
        info = add(f"<< /Title ({_escape(_latin1(self.title))}) /Producer (wsianon) >>".encode("latin-1"))
        buf = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for i, body in enumerate(objs, 1):
            offsets.append(len(buf))
            buf += b"%d 0 obj\n" % i + body + b"\nendobj\n"
        xref = len(buf)
        buf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
        for off in offsets:
            buf += b"%010d 00000 n \n" % off
        buf += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, catalog, info, xref)
        return bytes(buf)


_HEAD = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
_STREAM = re.compile(rb"<< /Length (\d+) /Filter /FlateDecode >>\nstream\n")
_OBJ_START = re.compile(rb"(\d+) 0 obj\n")


def content(data: bytes) -> list[bytes] | None:
    """The objects of a PDF this module wrote, in order, streams inflated — what two renderings of
    one document share (compressed bytes, and so offsets, may differ between zlib builds); None
    for anything else (another writer's PDF, an edited one)."""
    if not data.startswith(_HEAD):
        return None
    objs: list[bytes] = []
    pos = len(_HEAD)
    while (m := _OBJ_START.match(data, pos)) is not None:
        if int(m.group(1)) != len(objs) + 1:
            return None
        pos = m.end()
        s = _STREAM.match(data, pos)
        if s is not None:
            n = int(s.group(1))
            z = data[s.end() : s.end() + n]
            end = s.end() + n
            if data[end : end + 18] != b"\nendstream\nendobj\n":
                return None
            try:
                d = zlib.decompressobj()
                body = d.decompress(z, 1 << 26)
                if d.unconsumed_tail or not d.eof or d.unused_data:
                    return None
            except zlib.error:
                return None
            objs.append(b"stream:" + body)
            pos = end + 18
        else:
            end = data.find(b"\nendobj\n", pos)
            if end < 0:
                return None
            objs.append(data[pos:end])
            pos = end + 8
    tail = re.fullmatch(rb"xref\n0 (\d+)\n0000000000 65535 f \n(?:\d{10} 00000 n \n)*trailer\n(<< [^\n]* >>)\nstartxref\n\d+\n%%EOF\n", data[pos:])
    if tail is None or int(tail.group(1)) != len(objs) + 1:
        return None
    return objs + [tail.group(2)]
