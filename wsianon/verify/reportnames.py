"""Names in the report and the dry-run plan are vocabulary, never a source's text.

A removal is reported by the NAME of what was removed (a key, an XML attribute or element, an
ImageDescription key), never its value.  But those names come from the source too: an
``|RTQX Doe^Jane = 1|`` Aperio key, a Philips ``<Attribute Name="...">``, an unknown Leica
element, a Ventana XMP attribute, an NDPI property key, an INI section.  Closed world for the
report: every word of a name and of its place (``where``) must be structural or vocabulary —
the words of every format's vocabulary (:mod:`wsianon.verify.vocabulary`, the check the outputs
themselves pass), the TIFF tag names, DICOM keywords and the report's own words
(``vocab_report.json``); any other word is replaced by ``[withheld]`` (the record says *that*
something was removed there, never what its name said)."""

from __future__ import annotations

import re
from functools import lru_cache

from wsianon.profiles.closed_world import known_tag_name
from wsianon.profiles.names import WITHHELD, grouped_numbers, has_long_number  # one placeholder and one number rule, in the converters and the report

FORMATS = ("aperio", "dicom", "generic", "isyntax", "leica", "mrxs", "ndpi", "philips", "ventana")

# words: maximal runs of letters and digits (any script); everything else is kept as it is
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# a word holding a number of 4 or more digits is withheld (``names.has_long_number``).  Our own
# wording "tag N" (a TIFF tag number, 16 bits) at the head of a name is kept.
_TAG = re.compile(r"tag ([0-9]{1,5})(?![0-9])")


@lru_cache(maxsize=1)
def _vocab():
    from dataclasses import replace

    from wsianon.profiles import load
    from wsianon.verify.vocabulary import vocabulary

    words: set[str] = set()
    patterns: list = []
    for fmt in FORMATS:
        v = vocabulary(fmt)
        words |= v.words
        patterns += v.patterns
    own = load("vocab_report")["words"] + list(load("tiff_closed_world")["names"].values())
    for w in own:
        words.update(p.lower() for p in [w, *_WORD.findall(w), *_CAMEL.findall(w)])
    return replace(vocabulary("common"), fmt="report", words=frozenset(words), patterns=patterns)


def _dicom_keyword(w: str) -> bool:
    try:
        from pydicom.datadict import dictionary_has_tag, tag_for_keyword
    except ImportError:  # pragma: no cover - pydicom is a dependency
        return False
    t = tag_for_keyword(w)
    return t is not None and dictionary_has_tag(t)


def word_ok(w: str) -> bool:
    return w.isascii() and (_vocab().token_ok(w) or _dicom_keyword(w))


def safe_name(text: str) -> str:
    """``text`` with every word that is neither structural nor vocabulary withheld; characters
    that are not printable ASCII, letters or digits (zero-width, control) are dropped.  One
    vocabulary for every format (a report may hold several), so no format is named here."""
    if not text:
        return text
    text = "".join(c for c in text if " " <= c <= "~" or c.isalnum())
    m = _TAG.match(text)
    # wsianon's own "tag N" for a tag the profile or tifffile knows; an unknown tag's number is the
    # source's choice (red team stop 39: "tag 4711", "tag 9876" spelled a case number)
    head, rest = "", text
    if m and int(m.group(1)) <= 0xFFFF:
        head, rest = (m.group(0) if known_tag_name(int(m.group(1))) else f"tag {WITHHELD}"), text[len(m.group(0)) :]
    # a number written in parts ("12.03.79", "987 654 32", "19aa79aa03aa12"): every digit run of
    # it is withheld, no one word of it being long (``names.grouped_numbers``)
    parts, at = [], 0
    for start, end in grouped_numbers(rest):
        parts += [_words_safe(rest[at:start]), WITHHELD]
        at = end
    return head + "".join(parts) + _words_safe(rest[at:])


def _words_safe(text: str) -> str:
    return _WORD.sub(lambda m: m.group(0) if _name_word_ok(m.group(0)) else WITHHELD, text)


def _name_word_ok(w: str) -> bool:
    return not has_long_number(w) and word_ok(w)


def safe_removal(d: dict) -> dict:
    """A removal's report entry (``Removal.as_dict()``) with its name and place made safe."""
    return {**d, "name": safe_name(d.get("name", "")), "where": safe_name(d.get("where", ""))}


__all__ = ["WITHHELD", "safe_name", "safe_removal", "word_ok"]
