"""Closed-world allowlists as data: which TIFF tags each format keeps, by IFD kind.

``tiff_allowlist(fmt)`` merges ``tiff_closed_world.json``'s baseline with the
format profile's ``closed_world.tiff_tags``; ``allowed_tags`` picks the set for
one IFD.  Used both by the redaction post-pass and by the independent verifier
(the rules are data; the two sides share nothing else).
"""

from __future__ import annotations

from functools import lru_cache

from wsianon.profiles import format_profile, load

KINDS = ("any", "tiled", "stripped")


def tiff_closed_world(fmt: str | None) -> bool:
    """Whether the format's outputs are TIFF files proven byte by byte: its profile has
    ``closed_world.tiff_tags`` (the TIFF family; not MRXS, iSyntax or DICOM)."""
    return fmt is not None and "tiff_tags" in format_profile(fmt).get("closed_world", {})


@lru_cache(maxsize=None)
def tiff_allowlist(fmt: str) -> dict[str, frozenset[int]]:
    base = load("tiff_closed_world")["baseline"]
    extra = format_profile(fmt).get("closed_world", {}).get("tiff_tags")
    if extra is None:
        raise KeyError(f"profile {fmt!r} has no closed_world.tiff_tags")
    return {k: frozenset(base.get(k, [])) | frozenset(extra.get(k, [])) for k in KINDS}


def allowed_tags(fmt: str, tags: set[int] | frozenset[int], compression: int | None = None) -> frozenset[int]:
    """The tags an IFD holding ``tags`` may keep (its kind follows from its data tags;
    ``compression``: its Compression value, when known — the JPEG-only tags go where it is not JPEG)."""
    al = tiff_allowlist(fmt)
    out = al["any"]
    if 324 in tags or 325 in tags:
        out = out | al["tiled"]
    if 273 in tags or 279 in tags:
        out = out | al["stripped"]
    if compression is not None:
        jpeg_only, jpeg_compressions = _jpeg_only()
        if compression not in jpeg_compressions:
            out = out - jpeg_only
    return out


@lru_cache(maxsize=None)
def _jpeg_only() -> tuple[frozenset[int], frozenset[int]]:
    r = load("tiff_closed_world")
    return frozenset(r["jpeg_only_tags"]), frozenset(r["jpeg_compressions"])


@lru_cache(maxsize=None)
def _fixed_counts() -> dict[int, int]:
    return {int(k): v for k, v in load("tiff_closed_world")["fixed_counts"].items()}


_NUMERIC = frozenset({3, 4, 5, 8, 9, 10, 11, 12, 13, 16, 17, 18})


@lru_cache(maxsize=None)
def _value_rules() -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
    r = load("tiff_closed_world")
    return frozenset(r["text_tags"]), frozenset(r["blob_tags"]), frozenset(r["array_tags"])


def value_allowed(tag: int, typ: int, count: int) -> bool:
    """Whether an allowed tag's entry has a type and count its tag may carry (no text hidden in a number)."""
    text, blob, array = _value_rules()
    if tag in text:
        return typ == 2
    if tag in blob:
        return typ in (1, 7)
    if typ not in _NUMERIC:
        return False
    fixed = _fixed_counts().get(tag)
    if fixed is not None:
        return count == fixed
    return tag in array or count == 1


@lru_cache(maxsize=None)
def per_sample_tags() -> frozenset[int]:
    """The tags holding one value a sample (``tiff_closed_world.json`` per_sample_tags)."""
    return frozenset(load("tiff_closed_world")["per_sample_tags"])


def per_sample_count_ok(count: int, samples: int) -> bool:
    """Whether a per-sample tag's ``count`` is one a reader reads whole: SamplesPerPixel, or 1."""
    return count in (1, samples)


def known_tag_name(tag: int) -> str | None:
    """The name of a TIFF tag the profile or tifffile knows, else None."""
    name = load("tiff_closed_world")["names"].get(str(tag))
    if name is None:
        try:
            import tifffile

            name = tifffile.TIFF.TAGS.get(tag)
        except Exception:
            name = None
    return name


def tag_name(tag: int) -> str:
    """A tag as the report names it: its number and name, or, for a tag no one knows, neither:
    its number is the source's choice (red team stop 39: unknown tags 4711, 5432, 9876, 19790
    spelled a case number in the shared record's list of dropped tags)."""
    from wsianon.profiles.names import WITHHELD

    name = known_tag_name(tag)
    return f"{tag} {name}" if name else f"{WITHHELD} (private/unknown)"


def mrxs_key_allowed(section: str | None, key: str) -> bool:
    """Whether a Slidedat.ini key may stay (the section itself is judged by the caller)."""
    import re

    r = load("mrxs")
    cw = r["closed_world"]
    if section is None:
        return False
    if key in cw["ini_keys"] or key in r["safe_keys"] or key in r["identifying_keys"] or key in r["date_keys"]:
        return True
    pats = cw["ini_key_patterns"].get(section, []) + cw["ini_key_patterns"]["*"]
    return any(re.match(p, key) for p in pats)


def mrxs_base_sections() -> frozenset[str]:
    return frozenset(load("mrxs")["closed_world"]["ini_sections"])
