"""A pseudonym map's names must not be the slide's own identifiers.

The verifiers accept the names a ``--pseudonyms`` map gives a slide (its output file or folder
name, DICOM PatientID/PatientName) wherever they appear, so a map that names a slide after its
barcode, its case number or the patient folder it came from would share that identifier under
the verdict "clean".  This module judges the names against what the verifier itself read from
the source (its canary values) and the folder names of the source's path; it never says the
value (details and errors name the kind of name, never what it is).

Compared case-insensitively: a name equal to a value (or a folder name) of three or more
characters, a name containing one, or a name contained in one, where the contained string looks
like an identifier (a digit in it, or six or more characters: plain short words such as a folder
``data`` or ``case`` are not judged contained).  wsianon's own keyed pseudonyms (``WSI-`` and 16
hexadecimal digits) are not judged: the key, not the source, chose them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

KEYED = re.compile(r"WSI-[0-9a-f]{16}")


def _identifier_like(s: str) -> bool:
    return len(s) >= 4 and (any(c.isdigit() for c in s) or len(s) >= 6)


def _clash(name: str, value: str) -> bool:
    if len(value) < 3:
        return False
    if name == value:
        return True
    if _identifier_like(value) and value in name:
        return True
    return _identifier_like(name) and name in value


def folder_names(source: Path) -> list[str]:
    """The folder names of the source's path (the patient or case folder a slide came from)."""
    p = Path(source)
    return [part for part in p.parent.parts if part not in ("/", "\\", ".", "..") and not part.endswith((":", ":\\"))]


def repeated(names: Iterable[str], values: Iterable[str], source: Path | None = None) -> list[str]:
    """The names (of ``names``) that repeat one of ``values`` or a folder name of ``source``;
    keyed ``WSI-`` pseudonyms are not judged."""
    vals = {v.strip().casefold() for v in values if v and v.strip()}
    if source is not None:
        vals.update(f.casefold() for f in folder_names(source))
    out = []
    for n in names:
        if not n or KEYED.fullmatch(n):
            continue
        nn = n.casefold()
        if any(_clash(nn, v) for v in vals):
            out.append(n)
    return out


def add_check(verdict, names: Iterable[str], values: Iterable[str], source: Path | None) -> None:
    """The check ``pseudonym-names`` (a detail without any value), where a map chose a name."""
    names = [n for n in names if n and not KEYED.fullmatch(n)]
    if not names:
        return  # keyed pseudonyms only: nothing a map chose
    vals = [v for v in values if v]
    bad = repeated(names, vals, source)
    if bad:
        verdict.add(
            "pseudonym-names",
            False,
            f"{len(bad)} of the slide's {len(names)} pseudonym(s) repeat an identifying value read from the source or a folder name of its path",
        )
    else:
        verdict.add("pseudonym-names", True, f"{len(names)} pseudonym(s): none repeats an identifying value of the source or a folder name of its path")
