"""Helpers shared by the XML-carrying TIFF redactors (Ventana, Philips, Leica, generic).

Fail-closed ASCII-tag handling, date policy, and tolerant XML parsing.  No
vendor knowledge: each converter passes its own rules (profile data).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import AbstractSet

from wsianon.converters.base import Field
from wsianon.errors import CorruptInput, WsianonError
from wsianon.io.tiff import ASCII, DATETIME, IFD, TIFF_MAGIC, TiffStructure
from wsianon.io.xmlform import c14n, source_declaration
from wsianon.profiles.actions import Action
from wsianon.profiles.policy import Policy, year_only

TAG_NAMES = {
    269: "DocumentName",
    270: "ImageDescription",
    271: "Make",
    272: "Model",
    285: "PageName",
    305: "Software",
    306: "DateTime",
    315: "Artist",
    316: "HostComputer",
    33432: "Copyright",
    700: "XMP",
}


def tag_name(tag: int) -> str:
    return f"tag {tag} {TAG_NAMES.get(tag, '')}".rstrip()


def tiff_datetime_for_policy(value: str, policy: Policy) -> tuple[str, Action]:
    """(new value, action) of a TIFF DateTime ``YYYY:MM:DD HH:MM:SS`` under the date policy."""
    if policy.dates == "keep":
        return value, Action.KEEP
    if policy.dates == "year":
        y = year_only(value)
        if y:
            return f"{y}:01:01 00:00:00", Action.YEAR
    return "", Action.BLANK


@dataclass
class AsciiDecision:
    ifd: int
    tag: int
    old: str
    new: str | None  # None = keep as is
    action: Action


def decide_ascii(
    ts: TiffStructure,
    ifd: IFD,
    policy: Policy,
    keep: dict[int, list[re.Pattern]],
    skip: AbstractSet[int] = frozenset(),
) -> list[AsciiDecision]:
    """Fail-closed decisions for every ASCII tag of an IFD except ``skip``.

    ``keep`` maps tag -> patterns whose full match marks a value safe.
    DateTime follows the date policy; anything else not matched is blanked.
    """
    out: list[AsciiDecision] = []
    for e in ts.iter_ascii_entries(ifd):
        if e.tag in skip:
            continue
        old = ts.ascii(e)
        if e.tag == DATETIME:
            new, action = tiff_datetime_for_policy(old.strip(), policy)
            out.append(AsciiDecision(ifd.index, e.tag, old, None if action is Action.KEEP else new, action))
            continue
        pats = keep.get(e.tag, [])
        if not old.strip() or any(p.fullmatch(old) for p in pats):
            out.append(AsciiDecision(ifd.index, e.tag, old, None, Action.KEEP))
            continue
        out.append(AsciiDecision(ifd.index, e.tag, old, "", Action.BLANK))
    return out


def decision_field(d: AsciiDecision) -> Field:
    return Field(tag_name(d.tag), d.old.strip(), d.action, f"IFD {d.ifd}")


def parse_xml(data: bytes | str, path: Path, what: str) -> ET.Element:
    if isinstance(data, bytes):
        data = data.rstrip(b"\0").decode("utf-8", "replace")
    data = data.rstrip("\0").strip()
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        line, col = getattr(exc, "position", (0, 0))
        raise CorruptInput(path, f"{what} is not well-formed XML (line {line}, column {col})") from None


def xml_declaration(text: str) -> str:
    """The XML declaration to write before a rewritten XML: the source's own when it is a real one in
    the accepted spelling, the canonical one for any other ``<?xml`` start (a processing instruction
    ``<?xml-x 98765432?>`` was copied verbatim: red team stop 38), '' when the source has none."""
    return source_declaration(text)


def serialize(root: ET.Element, declaration: str = "", default_ns: str | None = None) -> str:
    if default_ns:
        ET.register_namespace("", default_ns)
    body = ET.tostring(root, encoding="unicode", short_empty_elements=True)
    # one form: the source's whitespace between elements and attribute order were copied (bits a
    # reader never shows, red team stop 38)
    return declaration + c14n(body)


def open_tiff(path: Path) -> TiffStructure:
    try:
        return TiffStructure(path)
    except WsianonError as exc:
        if exc.path is None:
            raise CorruptInput(path, exc.reason) from None
        raise


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def compile_all(patterns: list[str]) -> list[re.Pattern]:
    return [re.compile(p, re.S) for p in patterns]


__all__ = [
    "ASCII",
    "AsciiDecision",
    "TIFF_MAGIC",
    "compile_all",
    "decide_ascii",
    "decision_field",
    "local",
    "open_tiff",
    "parse_xml",
    "serialize",
    "tag_name",
    "tiff_datetime_for_policy",
    "xml_declaration",
]
