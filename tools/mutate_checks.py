"""Mutation audit of the verifier's checks: does some test fail when a check always passes?

For each check name (``verdict.add("NAME", CONDITION, ...)``, the name written out or held in a
module constant such as ``NAME = "barcode-pyramid"``), a clean clone of the repository gets every
non-constant CONDITION of that name replaced by ``True``, and the tests that mention the name
(or ``--tests``) run against it, stopping at the first failure.  ``CAUGHT``: some test failed, the
check's breakage would be seen.  ``SURVIVED``: no test failed; the check needs a test of its own
(``tests/test_format_checks_direct.py`` holds those written after the first audit, stop 46).

    .venv/bin/python tools/mutate_checks.py [NAME ...] [--tests FILE ...] [--list]

Without NAME: every check found.  ``--list``: print the names and their sites, run nothing.
The clone is of the committed tree (``git clone``): commit a new test before auditing with it.
Costs: a clone and a pytest run per name (seconds to minutes).  Not a test: nothing here runs in
``make test``.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _constants(tree: ast.Module) -> dict[str, object]:
    return {
        n.targets[0].id: n.value.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Constant)
    }


def sites(root: Path) -> dict[str, list[tuple[Path, ast.expr]]]:
    """Check name -> (file, condition) of every ``.add(NAME, CONDITION, ...)`` whose condition is
    not a constant (a constant True/False is a branch already decided)."""
    out: dict[str, list[tuple[Path, ast.expr]]] = {}
    for f in sorted((root / "wsianon").rglob("*.py")):
        tree = ast.parse(f.read_text())
        consts = _constants(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add" and len(node.args) >= 2):
                continue
            first = node.args[0]
            name = first.value if isinstance(first, ast.Constant) else consts.get(first.id) if isinstance(first, ast.Name) else None
            if isinstance(name, str) and not isinstance(node.args[1], ast.Constant):
                out.setdefault(name, []).append((f.relative_to(root), node.args[1]))
    return out


def mutate(clone: Path, places: list[tuple[Path, ast.expr]]) -> None:
    """Replace each condition by ``True`` in the clone (bottom-up within a file: offsets stay valid)."""
    by_file: dict[Path, list[ast.expr]] = {}
    for rel, cond in places:
        by_file.setdefault(rel, []).append(cond)
    for rel, conds in by_file.items():
        text = (clone / rel).read_text()
        starts = [0]
        for line in text.splitlines(keepends=True):
            starts.append(starts[-1] + len(line))
        for c in sorted(conds, key=lambda c: (c.lineno, c.col_offset), reverse=True):
            a = starts[c.lineno - 1] + c.col_offset
            b = starts[c.end_lineno - 1] + c.end_col_offset  # type: ignore[operator]
            text = text[:a] + "True" + text[b:]
        (clone / rel).write_text(text)


def tests_naming(root: Path, name: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "tests").glob("test_*.py") if name in p.read_text())


def run_one(name: str, places: list[tuple[Path, ast.expr]], tests: list[str]) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="wsianon-mutant-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        if (ROOT.parent / "shared").is_dir():  # the real slides the tests look for beside the checkout
            (Path(tmp) / "shared").symlink_to(ROOT.parent / "shared")
        for so in (ROOT / "wsianon" / "io").glob("_markers*.so"):  # the built C extension (not tracked)
            shutil.copy(so, clone / "wsianon" / "io")
        mutate(clone, places)
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp}/bt", *tests],
            cwd=clone,
            env={**os.environ, "PYTHONPATH": str(clone)},
            capture_output=True,
            text=True,
        )
        tail = next((ln for ln in reversed(r.stdout.splitlines()) if " passed" in ln or " failed" in ln or " error" in ln), "")
        return r.returncode != 0, tail


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="check names (default: all found)")
    ap.add_argument("--tests", nargs="*", default=None, help="test files to run (default: those that mention the name)")
    ap.add_argument("--list", action="store_true", help="list the checks and their sites; run nothing")
    args = ap.parse_args()
    found = sites(ROOT)
    names = args.names or sorted(found)
    if args.list:
        for n in names:
            print(f"{n}: " + ", ".join(f"{rel}:{c.lineno}" for rel, c in found.get(n, [])))
        return 0
    survived = 0
    for n in names:
        places = found.get(n, [])
        tests = args.tests if args.tests is not None else tests_naming(ROOT, n)
        if not places or not tests:
            print(f"{n}: skipped ({len(places)} site(s), {len(tests)} test file(s))", flush=True)
            continue
        caught, tail = run_one(n, places, tests)
        survived += not caught
        print(f"{n}: {'CAUGHT' if caught else 'SURVIVED'} ({len(places)} site(s), {len(tests)} test file(s)) {tail}", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
