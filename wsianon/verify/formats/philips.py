"""Philips-specific verification (independent of the redactor: OpenSlide properties, tifffile, raw XML text)."""

from __future__ import annotations

import re
from pathlib import Path

from wsianon.profiles import load
from wsianon.verify import keyedtokens
from wsianon.verify.dates import year_only
from wsianon.verify.reportnames import safe_name


def keyed_tokens(out_main: Path) -> frozenset[bytes]:
    """The keyed UIDs of the output's XML, in the attributes the profile calls UIDs."""
    import tifffile

    with tifffile.TiffFile(out_main) as tf:
        text = tf.pages.first.description
    return keyedtokens.from_philips_xml(text, load("philips")["uid_attribute_pattern"])


def check(inv, out_main: Path, out_files: list[Path], policy, verdict) -> None:
    import openslide
    import tifffile

    r = load("philips")
    safe = set(r["safe_attributes"])
    date_rx = re.compile(r["date_attribute_pattern"])
    uid_rx = re.compile(r["uid_attribute_pattern"])
    try:
        with openslide.OpenSlide(str(out_main)) as s:
            props = dict(s.properties)
    except Exception:
        verdict.add("philips-profile", False, "output not readable by OpenSlide")
        return
    bad = []
    for k, v in props.items():
        if not k.startswith("philips.") or not v.strip():
            continue
        name = k.rsplit(".", 1)[-1]
        if name in safe:
            continue
        if uid_rx.search(name) and all(t.strip('"').startswith("2.25.") for t in v.split()):
            continue
        if date_rx.search(name) and (policy.dates != "remove" or year_only(v)):  # --dates year's form: the year only
            continue
        if name == r["derivation_attribute"] and "sourceFilename" not in v:
            continue
        bad.append(name)
    verdict.add(
        "philips-profile", not bad, f"non-safe attributes with values: {sorted({safe_name(b) for b in bad})}" if bad else "only safe attributes carry values"
    )
    try:
        with tifffile.TiffFile(out_main) as tf:
            descs = []
            for p in tf.pages:
                assert isinstance(p, tifffile.TiffPage), "TiffFile.pages yields TiffPage objects (frames are not asked for)"
                descs.append(p.description)
            software = tf.pages.first.software
    except Exception as exc:
        verdict.add("philips-structure", False, f"tifffile cannot read the output: {type(exc).__name__}")
        return
    xml = descs[0] if descs else ""
    ok = software.startswith("Philips") and xml.rstrip().endswith("</DataObject>")
    verdict.add("philips-structure", ok, "Software and XML ending as readers expect" if ok else "Software tag or XML ending broken")
    linked = [d for d in descs[1:] if d.startswith(("Label", "Macro"))]
    allowed = 1 if policy.macro == "keep" else 0
    verdict.add("philips-ifd-images", len(linked) <= allowed, f"{len(linked)} Label/Macro directories linked")
    n_data = xml.count("PIM_DP_IMAGE_DATA")
    allowed_data = (1 if policy.label == "blank" else 0) + (1 if policy.macro == "keep" else 0)
    verdict.add("philips-xml-images", n_data <= allowed_data, f"{n_data} embedded image(s) left in the XML")
