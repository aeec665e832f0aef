"""Every profile file holds only keys something reads.

For each ``wsianon/profiles/data/*.json``: every top-level key, and every key of the
blocks whose keys are rule names (a vendor profile's ``closed_world``, the Annex E
table's ``private``), is named as a string literal somewhere in ``wsianon/``,
``tools/``, ``benchmarks/`` or ``tests/`` (other than this file).  A rule that no code
reads would look like protection that nothing applies.  Keys holding data (tag
numbers, DICOM keywords, section names) are not checked: their names are values.
Documentation keys (``description``, ``about``, ``*_note``) are exempt."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import wsianon

PKG = Path(wsianon.__file__).parent
REPO = PKG.parent
DATA = PKG / "profiles" / "data"
# blocks (per file, "*" = every file) whose keys are rule names, not data
NAMED_BLOCKS = {"*": ("closed_world",), "dicom_annex_e.json": ("private",)}


def _code_strings() -> set[str]:
    out: set[str] = set()
    here = Path(__file__).resolve()
    for top in ("wsianon", "tools", "benchmarks", "tests"):
        for py in (REPO / top).rglob("*.py"):
            if py.resolve() == here:
                continue
            for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    out.add(node.value)
    return out


def _documentation(key: str) -> bool:
    return key in ("description", "about") or key.endswith("_note")


def _rule_keys(name: str, prof: dict) -> list[str]:
    keys = [k for k in prof if not _documentation(k)]
    for block in NAMED_BLOCKS["*"] + NAMED_BLOCKS.get(name, ()):
        if isinstance(prof.get(block), dict):
            keys += [f"{block}.{k}" for k in prof[block] if not _documentation(k)]
    return keys


def test_every_profile_key_is_read_by_code():
    strings = _code_strings()
    files = sorted(DATA.glob("*.json"))
    assert len(files) >= 10  # the vendor, DICOM, closed-world and vocabulary profiles
    unread: dict[str, list[str]] = {}
    checked = 0
    for f in files:
        keys = _rule_keys(f.name, json.loads(f.read_text(encoding="utf-8")))
        checked += len(keys)
        missing = [k for k in keys if k.rsplit(".", 1)[-1] not in strings]
        if missing:
            unread[f.name] = missing
    assert unread == {}, f"profile keys that no code in wsianon/, tools/, benchmarks/ or tests/ names: {unread}"
    # the check is not vacuous: blocks are descended into, and a made-up key would be caught
    assert checked > 100
    assert "closed_world.tiff_tags" in _rule_keys("aperio.json", json.loads((DATA / "aperio.json").read_text(encoding="utf-8")))
    assert "safe_keys_nobody_reads" not in strings
