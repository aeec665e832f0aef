"""Aperio-specific verification: every ``aperio.*`` property OpenSlide reads from
the output is either a key the profile lists as safe, or empty; a safe key with a value form
(a number of at most so many digits) holds a value of that form; every banner line (before the
first ``|``) is in its one form for the page (``profiles.aperio_banner``)."""

from __future__ import annotations

import re
from pathlib import Path

from wsianon.io.tiff import IMAGE_DESCRIPTION, TiffStructure
from wsianon.profiles import aperio_banner, load
from wsianon.verify.dates import year_only
from wsianon.verify.reportnames import safe_name


def numeric_items(props: dict) -> frozenset[bytes]:
    """The description items of an output (OpenSlide's ``props`` of it) that the profile keeps as
    numbers, each holding a number of its field's form, as the output writes them
    (``|OriginalWidth = 46000``: the aperio-profile check holds every item to ``KEY = VALUE``): the
    slide's own structure, which a numeric file name may equal by chance
    (``wsianon.io.scan.own_number_hit``).  Free-text keys (``Parmset``, ``ICC Profile``) never are."""
    forms = load("aperio")["safe_value_forms"]
    out = set()
    for k, v in props.items():
        key = k.split(".", 1)[1] if k.startswith("aperio.") else None
        if key in forms and isinstance(v, str) and re.fullmatch(forms[key], v):
            out.add(f"|{key} = {v}".encode("ascii"))
    return frozenset(out)


def check(inv, out_main: Path, out_files: list[Path], policy, verdict) -> None:
    import openslide

    rules = load("aperio")
    allowed = set(rules["safe_keys"])
    if policy.dates == "keep":
        allowed |= set(rules["date_keys"]) | set(rules["time_keys"])
    if policy.dates == "year":
        allowed |= set(rules["date_keys"])
    try:
        with openslide.OpenSlide(str(out_main)) as s:
            props = dict(s.properties)
    except Exception:
        verdict.add("aperio-profile", False, "output not readable by OpenSlide")
        return
    # every page's description as written: OpenSlide shows a key given twice by its last value only
    # ("Filename = 4711|...|Filename = " read as empty), and the digits of the first are no word
    # the vocabulary check would see
    read = _described(out_main)
    dates = set(rules["date_keys"])
    forms = {k: re.compile(f) for k, f in rules["safe_value_forms"].items()}
    described, banners_ok, items_ok = read if read is not None else ([], False, False)
    if read is None:
        verdict.add("aperio-profile", False, "descriptions unreadable")
    elif not banners_ok:
        # every page's banner in its one form (``profiles.aperio_banner``): the product and one
        # version, the page's own geometry, a known codec, no empty or padded line (red team
        # stop 38: a case number after the product, an MRN as the scan's size, bits as whitespace)
        verdict.add(
            "aperio-profile",
            False,
            "a banner not in its one form (product and version, the page's own sizes, codec; the first page's version and quality on every page)",
        )
    elif bad := sorted({k for k, v in described if v and k not in allowed and not (k in dates and year_only(v))}):  # --dates year: the year only
        verdict.add("aperio-profile", False, f"non-safe keys with values: {[safe_name(b) for b in bad]}")
    elif off := sorted({k for k, v in described if k in forms and v and not forms[k].fullmatch(v)}):  # an MRN as AppMag
        verdict.add("aperio-profile", False, f"safe keys with values outside their form (a number of more digits than the field holds): {off}")
    elif not items_ok:
        # red team stop 39: spacing, a key given again and the order of keys carried an MRN
        verdict.add("aperio-profile", False, "description items not in their one form (KEY = VALUE, one space between words, each key once, in key order)")
    else:
        verdict.add("aperio-profile", True, "only safe keys carry values, each in its form")
    dt = props.get("tiff.DateTime", "")
    if policy.dates == "remove":
        ok = not dt.strip() or year_only(dt)
        verdict.add("tiff-datetime", ok, ("DateTime empty" if not dt.strip() else "DateTime the year only") if ok else "DateTime still set")
    for k in ("tiff.Artist", "tiff.HostComputer", "tiff.Make", "tiff.Model", "tiff.Software", "tiff.Copyright", "tiff.DocumentName"):
        if props.get(k, "").strip():
            verdict.add("tiff-text", False, f"{k} still set")
            break
    else:
        verdict.add("tiff-text", True, "no free-text TIFF tags carry values")


def _described(path: Path) -> tuple[list[tuple[str, str]], bool, bool] | None:
    """(every ``key = value`` item of every page's ImageDescription, as written (a key twice:
    both), stripped; whether every page's banner (before the first ``|``) is in its one form for
    the page's geometry), from one walk of the pages; None when the file does not parse (fail
    closed)."""
    items: list[tuple[str, str]] = []
    banners_ok = items_ok = True
    first: str | None = None
    try:
        with TiffStructure(path) as ts:
            for ifd in ts.ifds:
                desc = ts.text(ifd, IMAGE_DESCRIPTION)
                if desc is None:
                    continue
                banner = desc.partition("|")[0]
                banners_ok = banners_ok and aperio_banner.is_canonical(banner, *aperio_banner.geometry(ts, ifd), first=first)
                first = banner if first is None else first
                keys = []
                for item in desc.split("|")[1:]:
                    key, eq, value = item.partition("=")
                    k = " ".join(key.split())
                    # KEY = VALUE, one space between words, each key once, in key order (red team
                    # stop 39: spacing, repeats and order a writer chose carried an MRN)
                    items_ok = items_ok and bool(eq) and item == f"{k} = {' '.join(value.split())}"
                    keys.append(k)
                    if eq:
                        items.append((key.strip(), value.strip()))
                items_ok = items_ok and keys == sorted(set(keys))
    except Exception:
        return None
    return items, banners_ok, items_ok
