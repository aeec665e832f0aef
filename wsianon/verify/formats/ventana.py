"""Ventana-specific verification (independent of the redactor: OpenSlide properties, tifffile pages)."""

from __future__ import annotations

import re
from pathlib import Path

from wsianon.profiles import load
from wsianon.verify.dates import year_only
from wsianon.verify.reportnames import safe_name


def kept_property(key: str, value: str) -> bool:
    """True when the profile keeps the source's OpenSlide property ``key`` = ``value`` on purpose:
    a known-safe iScan attribute (``ventana.<attr>``), or a Software value of a kept pattern.
    Such a value is no leak when it reappears in the output; any other value still is."""
    rules = load("ventana")
    if key.startswith("ventana."):
        return key.split(".", 1)[1] in set(rules["iscan_safe_attributes"])
    if key == "tiff.Software":
        return any(re.fullmatch(p, value.strip()) for p in rules["ascii_keep"]["305"])
    return False


def check(inv, out_main: Path, out_files: list[Path], policy, verdict) -> None:
    import openslide
    import tifffile

    safe = set(load("ventana")["iscan_safe_attributes"])
    try:
        with openslide.OpenSlide(str(out_main)) as s:
            props = dict(s.properties)
    except Exception:
        verdict.add("ventana-profile", False, "output not readable by OpenSlide")
        return
    bad = sorted(k.split(".", 1)[1] for k, v in props.items() if k.startswith("ventana.") and v.strip() and k.split(".", 1)[1] not in safe)
    verdict.add(
        "ventana-profile",
        not bad,
        f"non-safe iScan attributes with values: {[safe_name(b) for b in bad]}" if bad else "only safe iScan attributes carry values",
    )
    try:
        with tifffile.TiffFile(out_main) as tf:
            descs = []
            for p in tf.pages:
                assert isinstance(p, tifffile.TiffPage), "TiffFile.pages yields TiffPage objects (frames are not asked for)"
                descs.append(p.description)
            first_xmp = tf.pages.first.tags.get(700)
            xmp = bytes(first_xmp.value) if first_xmp is not None else b""
    except Exception as exc:
        verdict.add("ventana-structure", False, f"tifffile cannot read the output: {type(exc).__name__}")
        return
    labels = [d for d in descs if d in ("Label_Image", "Label Image")]
    verdict.add("ventana-label-unlinked", not labels, "no Label_Image directory in the chain" if not labels else "a label directory is still linked")
    verdict.add("ventana-iscan-first", b"iScan" in xmp, "IFD 0 carries the iScan XMP" if b"iScan" in xmp else "IFD 0 has no iScan XMP")
    dt = props.get("tiff.DateTime", "")
    if policy.dates == "remove":
        ok = not dt.strip() or year_only(dt)
        verdict.add("tiff-datetime", ok, ("DateTime empty" if not dt.strip() else "DateTime the year only") if ok else "DateTime still set")
