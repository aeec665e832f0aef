#!/usr/bin/env python3
"""Regenerate wsianon's DICOM de-identification rule data.

Inputs
  * PS3.15 Annex E Table E.1-1, machine readable (default:
    ``../shared/reference/confidentiality_profile_attributes.json`` relative to the repo; one
    object per attribute: name, tag, basicProfile and the option columns).
  * highdicom's copy of the standard (``highdicom/_standard/*.json``) for the attribute Types of
    the VL Whole Slide Microscopy Image IOD (used to resolve compound actions X/Z, Z/D, X/Z/D, X/D,
    X/Z/U* by Type: 1 -> D, 2 -> Z, 3 -> X).

Outputs (``wsianon/profiles/data/``)
  * ``dicom_annex_e.json``: the rule table (exact tags, tag patterns, option columns).
  * ``dicom_wsi_types.json``: (sequence path, keyword) -> Type for the WSI IOD.

Drop in a newer edition of the table and run ``python tools/gen_dicom_profile.py``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TABLE = ROOT.parent / "shared" / "reference" / "confidentiality_profile_attributes.json"
OUT_DIR = ROOT / "wsianon" / "profiles" / "data"

# JSON column name -> wsianon option name (see wsianon/profiles/dicom.py)
OPTION_COLUMNS = {
    "rtnSafePrivOpt": "retain-safe-private",
    "rtnUIDsOpt": "retain-uids",
    "rtnDevIdOpt": "retain-device-identity",
    "rtnInstIdOpt": "retain-institution-identity",
    "rtnPatCharsOpt": "retain-patient-characteristics",
    "rtnLongFullDatesOpt": "retain-full-dates",
    "rtnLongModifDatesOpt": "retain-modified-dates",
    "cleanDescOpt": "clean-descriptors",
    "cleanStructContOpt": "clean-structured-content",
    "cleanGraphOpt": "clean-graphics",
}
ACTIONS = {"X", "Z", "D", "K", "C", "U", "X/Z", "Z/D", "X/D", "X/Z/D", "X/Z/U*", "Z/U*", "X/Z/U"}

WSI_IOD = "vl-whole-slide-microscopy-image"
TYPE_RANK = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}


def _keyword(tag_hex: str) -> str:
    try:
        from pydicom.datadict import keyword_for_tag

        return keyword_for_tag(int(tag_hex, 16)) or ""
    except Exception:  # pydicom absent: keywords are a convenience only
        return ""


def build_rules(table: list[dict]) -> dict:
    exact: list[dict] = []
    patterns: list[dict] = []
    private: dict | None = None
    for e in table:
        basic = e["basicProfile"].strip()
        if basic not in ACTIONS:
            raise SystemExit(f"unknown action {basic!r} for {e['tag']}")
        opts = {OPTION_COLUMNS[k]: v for k, v in e.items() if k in OPTION_COLUMNS and v}
        unknown = [k for k in e if k.endswith("Opt") and k not in OPTION_COLUMNS]
        if unknown:
            raise SystemExit(f"unknown option columns {unknown}: update OPTION_COLUMNS")
        tag = e["tag"].upper()
        rule = {"name": e["name"], "basic": basic, "options": opts, "std_comp_iod": e.get("stdCompIOD") == "Y"}
        if "ODD" in tag:
            private = rule | {"pattern": "private"}
            continue
        m = re.fullmatch(r"\(([0-9A-FX]{4}),([0-9A-FX]{4})\)", tag)
        if not m:
            raise SystemExit(f"cannot parse tag {e['tag']!r}")
        group, elem = m.groups()
        if "X" in group or "X" in elem:
            # repeating groups (50xx curves, 60xx overlays): mask/value over the 32-bit tag
            hexpat = group + elem
            mask = int("".join("0" if c == "X" else "F" for c in hexpat), 16)
            value = int(hexpat.replace("X", "0"), 16)
            patterns.append(rule | {"pattern": hexpat, "mask": f"{mask:08X}", "value": f"{value:08X}"})
        else:
            exact.append(rule | {"tag": group + elem, "keyword": _keyword(group + elem)})
    exact.sort(key=lambda r: r["tag"])
    return {"exact": exact, "patterns": patterns, "private": private}


def build_wsi_types(standard_dir: Path) -> dict:
    iods = json.loads((standard_dir / "iod_module_map.json").read_text())
    modules = json.loads((standard_dir / "module_attribute_map.json").read_text())
    types: dict[str, str] = {}
    for mod in iods[WSI_IOD]:
        for attr in modules.get(mod["key"], []):
            key = "/".join(attr["path"] + [attr["keyword"]])
            t = attr["type"].strip().upper()
            if t not in TYPE_RANK:
                continue
            old = types.get(key)
            if old is None or TYPE_RANK[t] < TYPE_RANK[old]:  # strictest Type wins
                types[key] = t
    return {
        "iod": WSI_IOD,
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.77.1.6",
        "modules": [m["key"] for m in iods[WSI_IOD]],
        "types": dict(sorted(types.items())),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    ap.add_argument("--standard", type=Path, default=None, help="highdicom/_standard folder")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args(argv)
    table = json.loads(args.table.read_text(encoding="utf-8"))
    std = args.standard
    if std is None:
        import highdicom

        std = Path(highdicom.__file__).parent / "_standard"
    rules = build_rules(table)
    rules["source"] = {
        "table": args.table.name,
        "entries": len(table),
        "generated": _dt.date.today().isoformat(),
        "generator": "tools/gen_dicom_profile.py",
    }
    types = build_wsi_types(std)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dicom_annex_e.json").write_text(json.dumps(rules, indent=1) + "\n", encoding="utf-8")
    (args.out / "dicom_wsi_types.json").write_text(json.dumps(types, indent=1) + "\n", encoding="utf-8")
    print(f"{len(rules['exact'])} exact rules, {len(rules['patterns'])} patterns, {len(types['types'])} WSI Types", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
