"""Module docstrings, comments and the README point to files that exist (issue 9: "module
docstrings that point to files that exist"): every path-like reference to a .py/.json/.md file
in the package and the README resolves in the tree, but for the names of files a run writes."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# files wsianon writes into OUT (or a test's scratch name), not files of the tree
WRITTEN = {"certificate.json", "findings.json", "report.json", "r.json"}
_REF = re.compile(r"(?<![\w/.<>*{}-])((?:[a-z_]+/)*[a-z_0-9]+\.(?:py|json|md))\b")
_BASES = ["", "wsianon", "wsianon/profiles/data", "wsianon/converters", "wsianon/pipeline", "wsianon/verify", "wsianon/io"]


def _refs(text: str) -> set[str]:
    return {m.group(1) for m in _REF.finditer(text) if "/" in m.group(1) or m.group(1).endswith(".json")}


def _dangling(path: Path) -> list[str]:
    out = []
    for ref in sorted(_refs(path.read_text(encoding="utf-8"))):
        if ref.rsplit("/", 1)[-1] in WRITTEN:
            continue
        if not any((REPO / b / ref).exists() for b in _BASES) and not (path.parent / ref).exists():
            out.append(ref)
    return out


def test_every_referenced_file_exists():
    files = sorted((REPO / "wsianon").rglob("*.py")) + [REPO / "README.md", REPO / "benchmarks" / "PROFILE.md"]
    dangling = {str(f.relative_to(REPO)): d for f in files if (d := _dangling(f))}
    assert dangling == {}


def test_a_dangling_reference_is_found(tmp_path):
    f = tmp_path / "mod.py"
    f.write_text('"""See pipeline/verify_removed.py and converters/registry.py."""\n')
    assert _dangling(f) == ["pipeline/verify_removed.py"]
