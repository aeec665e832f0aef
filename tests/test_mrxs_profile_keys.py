"""The MRXS profile holds only keys the code reads: every key of
``wsianon/profiles/data/mrxs.json`` (and of its ``closed_world`` block) is named as a
string literal somewhere in ``wsianon/`` — an unused rule would otherwise look like
protection that nothing applies.  Descriptions and notes are documentation."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import wsianon

PKG = Path(wsianon.__file__).parent
PROFILE = PKG / "profiles" / "data" / "mrxs.json"


def _code_strings() -> set[str]:
    out: set[str] = set()
    for py in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.add(node.value)
    return out


def _documentation(key: str) -> bool:
    return key == "description" or key.endswith("_note")


def test_every_mrxs_profile_key_is_read_by_code():
    prof = json.loads(PROFILE.read_text(encoding="utf-8"))
    keys = [k for k in prof if not _documentation(k)]
    keys += [k for k in prof["closed_world"] if not _documentation(k)]
    strings = _code_strings()
    unread = [k for k in keys if k not in strings]
    assert unread == [], f"keys in mrxs.json that no code in wsianon/ names: {unread}"
    # the check is not vacuous: the keys the redactor reads are among those found
    assert {"safe_keys", "identifying_keys", "index_version", "ini_key_patterns"} <= set(keys) & strings
