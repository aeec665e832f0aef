"""Bounded, seeded fuzzing of ``wsianon run --in-place``: the one mode that writes into the input.

Each single-file fixture format (test_fuzz's generators) is damaged as ``test_fuzz`` damages it
and patched in place, with options drawn as ``test_fuzz`` draws them (no ``--target dicom``: in
place is the native route).  Every case must end with

* no traceback and no hang (the per-case alarm of ``test_fuzz``);
* exit 0: the slide verified (``--json`` prints the report), the file at its output name (the
  pseudonym, or its own with ``--rename keep``), holding none of the canaries the damaged file
  held, no journal and nothing else beside it;
* exit 1: the file byte for byte the damaged input at its own name (never patched, or rolled back
  after a failed verification), no journal and nothing else beside it; one ``error:`` line naming
  the file, or the slide reported failed (verification failed, changes rolled back) with none.

``WSIANON_FUZZ_CASES`` and ``WSIANON_FUZZ_SEED`` as for ``test_fuzz``.  A failing case prints its
id (format, case number, damage, options), which reproduces it exactly.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from .test_fuzz import CASE_TIMEOUT, CASES, RUN_ONLY, SEED, _broke, _canaries, _invoke, _make, _mutate_tiff, draw_options, generators

FORMATS = ["svs", "svs-bigtiff", "ndpi", "bif", "philips", "scn", "qptiff"]


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-in-place-originals")
    return {fmt: _make(fmt, root / fmt) for fmt in FORMATS}


def _run(src: Path, side: Path, options: tuple[str, ...], allow_generic: bool) -> tuple[int, str, str, BaseException | None]:
    args = ["run", str(src), "--in-place", "--json", "--mapping", str(side / "map.csv"), *options] + (["--allow-generic"] if allow_generic else [])
    return _invoke(args)


def _verify_agrees(cid: str, patched: Path, src: Path, damaged: bytes, options: tuple[str, ...]) -> list[str]:
    """``verify PATCHED --source`` (the damaged input, kept aside) passes what ``run --in-place``
    verified (``test_fuzz._verify_agrees``; not for ``RUN_ONLY`` options, which verify has none of)."""
    if any(o in options for o in RUN_ONLY):
        return []
    given = dict(zip(options[::2], options[1::2]))
    aside = patched.parent.parent / f"{patched.parent.name}-source" / src.name
    aside.parent.mkdir()
    aside.write_bytes(damaged)
    args = ["verify", str(patched), "--source", str(aside)] + [x for k in ("--rename", "--coded-data") if k in given for x in (k, given[k])]
    code, stdout, stderr, exc = _invoke(args + (["--allow-generic"] if src.suffix == ".qptiff" else []))
    shutil.rmtree(aside.parent, ignore_errors=True)
    if broke := _broke(f"{cid} [verify --source]", stdout, stderr, exc):
        return broke
    if code != 0:
        failed = [line.strip() for line in stdout.splitlines() if "FAIL" in line][:3]
        return [f"{cid} [verify --source]: run verified it in place, verify says exit {code}: {failed or stderr[-300:]!r}"]
    return []


def _judge(cid: str, case_dir: Path, src: Path, damaged: bytes, canaries: dict[str, str], result, options: tuple[str, ...] = ()) -> list[str]:
    code, stdout, stderr, exc = result
    if broke := _broke(cid, stdout, stderr, exc):
        return broke
    try:
        slides = json.loads(stdout)["slides"] if stdout.strip() else []
    except (ValueError, KeyError):
        return [f"{cid}: --json printed no report: {stdout[-300:]!r}"]
    statuses = [s["status"] for s in slides]
    err = [line for line in stderr.splitlines() if line.startswith("error:")]
    left = sorted(p.name for p in case_dir.iterdir())
    problems: list[str] = []
    if code == 0:
        if statuses != ["ok"]:
            return [f"{cid}: exit 0 with {statuses}"]
        (name,) = slides[0]["outputs"] or [None]
        if name is None or left != [name]:
            return [f"{cid}: exit 0, output {name!r}, the folder holds {left}"]
        body = (case_dir / name).read_bytes()
        hits = sorted(k for k, v in canaries.items() if v.encode() in damaged and v.encode() in body)
        if hits:
            problems.append(f"{cid}: the verified file holds canaries {hits}")
        problems += _verify_agrees(cid, case_dir / name, src, damaged, options)
    elif code == 1:
        if left != [src.name] or hashlib.sha256(src.read_bytes()).digest() != hashlib.sha256(damaged).digest():
            problems.append(f"{cid}: exit 1 ({statuses}), but the input is not given back as it was: the folder holds {left}")
        if statuses == ["failed"]:
            if err:
                problems.append(f"{cid}: a failed slide also printed {err}")
        elif statuses not in (["error"], []) or len(err) != 1 or str(src) not in err[0]:
            problems.append(f"{cid}: expected one error line naming the file, got {err or stderr[-300:]!r} ({statuses})")
        elif "internal error" in err[0]:
            problems.append(f"{cid}: {err[0]}")
    else:
        problems.append(f"{cid}: exit {code}")
    return problems


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzz_in_place(fmt, originals, tmp_path):
    faulthandler.dump_traceback_later(CASE_TIMEOUT * 3, exit=True)  # a hang in C code still ends the test run
    try:
        rng, options_rng = generators(f"{SEED}:{fmt}:in-place")
        orig = originals[fmt]
        canaries = _canaries(fmt)
        problems: list[str] = []
        outcomes: dict[str, int] = {}
        for i in range(-1, CASES):  # -1: the undamaged fixture, the control that the mode works here
            case_dir, side = tmp_path / f"c{i}", tmp_path / f"s{i}"
            case_dir.mkdir()
            side.mkdir()
            src = case_dir / orig.name
            damaged, what = _mutate_tiff(orig.read_bytes(), rng) if i >= 0 else (orig.read_bytes(), "undamaged")
            src.write_bytes(damaged)
            options = draw_options(options_rng) if i >= 0 else ()
            cid = f"{fmt} #{i} ({what}){' ' + ' '.join(options) if options else ''}"
            result = _run(src, side, options, fmt == "qptiff")
            problems += _judge(cid, case_dir, src, damaged, canaries, result, options)
            if i < 0:
                assert result[0] == 0 and not problems, (cid, result[2][-500:], problems)
                continue
            key = "ok" if result[0] == 0 else "refused"
            outcomes[key] = outcomes.get(key, 0) + 1
            shutil.rmtree(case_dir, ignore_errors=True)
            shutil.rmtree(side, ignore_errors=True)
            faulthandler.dump_traceback_later(CASE_TIMEOUT * 3, exit=True)
        assert not problems, "\n".join(problems)
        # the control: the damage is real (at least a quarter of the cases refused)
        assert outcomes.get("refused", 0) >= CASES // 4, outcomes
    finally:
        faulthandler.cancel_dump_traceback_later()
