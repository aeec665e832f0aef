"""Names a report may show: a field, key, record or element name read from a source is text the
source's writer chose (another tool may have named a key after the patient), so it is shown only
when every part of it is the format's vocabulary (``vocab_<format>.json``, ``vocab_common.json``
and the words of the format's profile) or a number; otherwise a fixed placeholder stands for it.

The same word lists as :mod:`wsianon.verify.vocabulary` (which judges the outputs' bytes), read
here below the converters, which may not import the verifiers."""

from __future__ import annotations

import re
from functools import lru_cache

from wsianon.profiles import load

# what stands for a name that is not vocabulary, here and in the report (``verify/reportnames.py``)
WITHHELD = "[withheld]"

_SPLIT = re.compile(r"[^A-Za-z0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_WORDISH = re.compile(r"[A-Za-z][A-Za-z0-9_.\- ]{1,60}")


def _strings(obj, out: set[str]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "description" or k.endswith("pattern") or k.endswith("note"):
                continue
            if _WORDISH.fullmatch(k):
                out.add(k)
            _strings(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _strings(v, out)
    elif isinstance(obj, str) and _WORDISH.fullmatch(obj):
        out.add(obj)


def vocab_files(fmt: str) -> list[dict]:
    """The vocabulary files of ``fmt``: ``vocab_common``, ``vocab_<fmt>`` and those they include
    (a format sharing another's schema includes its vocabulary: iSyntax, Philips DPUfsImport)."""
    out = []
    names = ["vocab_common", f"vocab_{fmt}"]
    for name in names:
        try:
            data = load(name)
        except FileNotFoundError:
            continue
        names += [f"vocab_{i}" for i in data.get("include", []) if f"vocab_{i}" not in names]
        out.append(data)
    return out


@lru_cache(maxsize=None)
def words(fmt: str) -> frozenset[str]:
    """Lower-case vocabulary words of ``fmt`` (its vocabulary files and its profile's names)."""
    found: set[str] = set()
    for data in vocab_files(fmt):
        _strings(data.get("words", []), found)
    try:
        _strings(load(fmt), found)
    except FileNotFoundError:
        pass
    out: set[str] = set()
    for w in found:
        out.add(w.lower())
        out.update(p.lower() for p in _SPLIT.split(w) if p)
    return frozenset(out)


# a run of 4 or more digits in a name a source chose is a case number, an MRN or a date as often as
# structure ("S19-4711", "19790101"); real names carry indices of 1 to 3 digits (FILE_0, LEVEL_12,
# AOI0).  The one rule for the converters (``shown``), the report (``verify/reportnames.py``) and
# the verifier's name findings (``verify/vocabulary.py``).
_LONG_NUMBER = re.compile(r"[0-9]{4}")
# digit groups anywhere in one name are one number written in parts ("12.03.79", "987 654 32",
# "S19-47-11": red team stop 38, a birth date and an MRN shown in the report as key names; rounds 2
# and 3 moved the groups apart by more separators, letters, words): a name whose digit runs hold 4
# or more digits together shows none of them
_DIGITS = re.compile(r"[0-9]+")


def has_long_number(name: str) -> bool:
    """Whether ``name`` holds a run of 4 or more digits (not shown, withheld, a finding; digit runs
    that hold 4 or more together are withheld from the report too: :func:`grouped_numbers`)."""
    return _LONG_NUMBER.search(name) is not None


def _index(part: str) -> bool:
    """A number in a name is an index (FILE_0, LEVEL_12) up to 3 digits; longer, a source's key may
    be a case number, an MRN or a date ("S19-4711", "19790101"): not shown."""
    return part.isdigit() and len(part) <= 3


def _part_ok(part: str, vocab: frozenset[str]) -> bool:
    if has_long_number(part):
        return False
    if _index(part) or len(part) <= 2 or part.lower() in vocab:
        return True
    sub = _CAMEL.findall(part)
    return len(sub) > 1 and "".join(sub) == part and all(_index(s) or len(s) <= 2 or s.lower() in vocab for s in sub)


def grouped_numbers(name: str) -> list[tuple[int, int]]:
    """(start, end) of every digit run of ``name`` when its runs hold 4 or more digits together
    ("12.03.79", "987 654 32", "19aa79aa03aa12"): no single word of it shows the number; else []."""
    runs = [m.span() for m in _DIGITS.finditer(name)]
    return runs if len(runs) > 1 and sum(b - a for a, b in runs) >= 4 else []


def shown(fmt: str, name: str) -> bool:
    """Whether ``name`` is made of ``fmt``'s vocabulary (and numbers) only."""
    vocab = words(fmt)
    return not grouped_numbers(name) and all(_part_ok(p, vocab) for p in _SPLIT.split(name) if p)


def public(fmt: str, name: str, placeholder: str = WITHHELD) -> str:
    """``name`` when :func:`shown`, else ``placeholder``."""
    return name if shown(fmt, name) else placeholder
