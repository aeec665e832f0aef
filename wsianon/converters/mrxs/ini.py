"""Slidedat.ini as a list of lines.

Parsed as OpenSlide's key-file reader reads it: a key given twice in a section counts by its
last value (the earlier lines are marked deleted at once), a section given twice is one section.
:meth:`IniDoc.canonical` then writes the kept lines in one form and one order. A value is rewritten in place (:meth:`IniLine.set_value`), a key renamed
(:meth:`IniLine.rename`), a line or a whole section marked deleted; :meth:`IniDoc.render`
writes the result.  :func:`renumber_nonhier` renumbers a NONHIER layer's
``[HIERARCHICAL]`` keys after records are removed from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from wsianon.errors import CorruptInput
from wsianon.io.ini import natural_key


@dataclass
class IniLine:
    text: str  # without line ending
    ending: str
    section: str | None = None
    key: str | None = None
    value: str | None = None
    kind: str = "other"  # "section" | "kv" | "blank" | "comment" | "other"
    deleted: bool = False

    def set_value(self, value: str) -> None:
        eq = self.text.index("=")
        rest = self.text[eq + 1 :]
        pad = rest[: len(rest) - len(rest.lstrip())]
        self.text = self.text[: eq + 1] + pad + value
        self.value = value

    def rename(self, new_key: str) -> None:
        eq = self.text.index("=")
        left = self.text[:eq]
        lead = left[: len(left) - len(left.lstrip())]
        trail = left[len(left.rstrip()) :]
        self.text = lead + new_key + trail + self.text[eq:]
        self.key = new_key


def _decode(raw: bytes) -> tuple[bytes, str, str]:
    """(byte-order mark, encoding, text): a BOM decides the encoding, else UTF-8, else cp1252, else latin-1."""
    bom = b""
    if raw.startswith(b"\xef\xbb\xbf"):
        bom, raw, encoding = b"\xef\xbb\xbf", raw[3:], "utf-8"
    elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        bom, encoding = raw[:2], "utf-16-le" if raw[:2] == b"\xff\xfe" else "utf-16-be"
        raw = raw[2:]
    else:
        try:
            raw.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "cp1252"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
        encoding = "latin-1"
    return bom, encoding, text


def _parse_line(chunk: str, section: str | None) -> IniLine:
    """One line (with its ending) in ``section``; a section header opens a new section."""
    body = chunk.rstrip("\r\n")
    ending = chunk[len(body) :]
    s = body.strip()
    ln = IniLine(body, ending, section)
    if s.startswith("[") and s.endswith("]"):
        ln.kind, ln.section = "section", s[1:-1].strip()
    elif not s:
        ln.kind = "blank"
    elif s.startswith((";", "#")):
        ln.kind = "comment"
    elif "=" in s:
        k, _, v = body.partition("=")
        ln.kind, ln.key, ln.value = "kv", k.strip(), v.strip()
    return ln


class IniDoc:
    def __init__(self, raw: bytes, path: Path):
        self.path = path
        self.bom, self.encoding, text = _decode(raw)
        self.lines: list[IniLine] = []
        section = None
        for chunk in text.splitlines(keepends=True):
            ln = _parse_line(chunk, section)
            section = ln.section
            self.lines.append(ln)
        if not any(l.kind == "section" for l in self.lines):
            raise CorruptInput(path, "Slidedat.ini has no sections (not an MRXS slide description)")
        seen: set[tuple[str | None, str | None]] = set()
        for l in reversed(self.lines):  # GKeyFile: a key given twice counts by its last value
            if l.kind == "kv":
                l.deleted = (l.section, l.key) in seen
                seen.add((l.section, l.key))

    def kv(self):
        return [l for l in self.lines if l.kind == "kv" and not l.deleted]

    def get(self, section: str, key: str) -> str | None:
        for l in self.kv():
            if l.section == section and l.key == key:
                return l.value
        return None

    def line(self, section: str, key: str) -> IniLine | None:
        for l in self.kv():
            if l.section == section and l.key == key:
                return l
        return None

    def int(self, section: str, key: str) -> int:
        v = self.get(section, key)
        try:
            return int(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise CorruptInput(self.path, f"Slidedat.ini [{section}] {key} missing or not an integer") from None

    def delete_section(self, name: str) -> None:
        inside = False
        for l in self.lines:
            if l.kind == "section":
                inside = l.section == name
            if inside:
                l.deleted = True

    def canonical(self) -> None:
        """Every kept line written one way and in one order (the verifier's form,
        ``verify.vocabulary.ini_text_findings``): a section as ``[NAME]``, a key as ``KEY = VALUE``
        (key and value stripped, a run of whitespace inside a value or a section's name one space:
        both alike, so a name a value gives still finds its section), sections and the keys of
        each in natural order (:func:`natural_key`), a section given twice merged, every line
        ending CRLF, blank lines gone, UTF-8 without a byte-order mark. Whitespace a writer chose
        is a free bit or more a line (red team stop 38), and the order of a few hundred keys some
        hundred bits more (stop 39); readers look keys up by name (GKeyFile), so the order and
        the form carry nothing they need."""
        sections: dict[str, list[IniLine]] = {}
        for l in self.lines:
            if l.deleted or l.kind not in ("section", "kv"):
                continue
            name = " ".join((l.section or "").split())
            keys = sections.setdefault(name, [])
            if l.kind == "kv":
                l.section, l.value = name, " ".join((l.value or "").split())
                l.text, l.ending = f"{l.key} = {l.value}", "\r\n"
                keys.append(l)
        lines: list[IniLine] = []
        for name in sorted(sections, key=natural_key):
            lines.append(IniLine(f"[{name}]", "\r\n", name, kind="section"))
            lines += sorted(sections[name], key=lambda l: natural_key(l.key or ""))
        self.lines, self.bom, self.encoding = lines, b"", "utf-8"

    def render(self) -> bytes:
        text = "".join(l.text + l.ending for l in self.lines if not l.deleted)
        return self.bom + text.encode(self.encoding, errors="replace")


def renumber_nonhier(ini: IniDoc, layer: int, newpos: dict[int, int]) -> None:
    """Renumber ``[HIERARCHICAL] NONHIER_<layer>_VAL_<j>*`` keys: ``j`` becomes ``newpos[j]``;
    keys of a ``j`` not in ``newpos`` are deleted; ``NONHIER_<layer>_COUNT`` is set to the number kept."""
    pat = re.compile(rf"^NONHIER_{layer}_VAL_(\d+)(_.*)?$")
    for l in ini.kv():
        if l.section != "HIERARCHICAL":
            continue
        m = pat.match(l.key or "")
        if not m:
            continue
        j = int(m.group(1))
        if j not in newpos:
            l.deleted = True
        elif newpos[j] != j:
            l.rename(f"NONHIER_{layer}_VAL_{newpos[j]}{m.group(2) or ''}")
    cl = ini.line("HIERARCHICAL", f"NONHIER_{layer}_COUNT")
    if cl is not None:
        cl.set_value(str(len(newpos)))
