"""Bounded, seeded fuzzing of ``wsianon run`` over every fixture format.

Each generated fixture (tests/fixtures/*_gen.py) is mutated the ways broken or
hostile files are broken: truncations, bit flips in the header and in IFDs,
offsets and counts pointing far beyond the file, IFD chains that loop (for MRXS:
Index.dat, Slidedat.ini and data-file damage).  Every case runs through the CLI
entry point in-process and must end with

* no traceback and no hang (a per-case alarm; a hard watchdog behind it), and no case raising
  the process's peak memory by more than ``MAX_GROWTH_MIB``,
* the input unchanged (hash of every input file),
* nothing half-written: only the report and verified outputs in OUT,
* exit 0 with the slide verified, or exit 1 with one ``error:`` line naming the
  file (or the slide quarantined after failed verification) — never an
  internal error.

``WSIANON_FUZZ_CASES`` sets the cases per format (default 36; seed
``WSIANON_FUZZ_SEED``, default 12).  A failing case prints its id
(format, case number, mutation), which reproduces it exactly.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import resource
import shutil
import signal
import struct
from pathlib import Path

import pytest

from .conftest import tree_hashes

CASES = int(os.environ.get("WSIANON_FUZZ_CASES", "36"))
SEED = int(os.environ.get("WSIANON_FUZZ_SEED", "12"))
CASE_TIMEOUT = 60
# a damaged slide is judged in bounded memory: seed 9's SVS with a 6.2e18-px ImageWidth grew the
# process to 24 GB before the kernel killed it (a case is flagged when it raises the process's peak
# by more than this: whatever the tests before it left, no sane case needs that much more)
MAX_GROWTH_MIB = 1536


class CaseTimeout(BaseException):
    """Raised by the per-case alarm (a BaseException: the pipeline must not swallow it)."""


# ---------------------------------------------------------------------------
# fixtures: one small slide per format


def _make(fmt: str, d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    if fmt == "svs":
        from .fixtures.svs_gen import write_svs

        return write_svs(d / "case.svs", size=(512, 384)).path
    if fmt == "svs-bigtiff":
        from .fixtures.svs_gen import write_svs

        return write_svs(d / "case.svs", size=(512, 384), bigtiff=True).path
    if fmt == "ndpi":
        from .fixtures.ndpi_gen import make_ndpi

        return make_ndpi(d / "case.ndpi", levels=2, width=256, height=192)[0]
    if fmt == "mrxs":
        from .fixtures.mrxs_gen import make_mrxs

        return make_mrxs(d, "case", images=2, levels=2).mrxs
    if fmt == "bif":
        from .fixtures.bif_gen import make_bif

        return make_bif(d / "case.bif").path
    if fmt == "philips":
        from .fixtures.philips_gen import make_philips

        return make_philips(d / "case.tiff").path
    if fmt == "scn":
        from .fixtures.scn_gen import make_scn

        return make_scn(d / "case.scn").path
    if fmt == "qptiff":
        from .fixtures.qptiff_gen import make_qptiff

        return make_qptiff(d / "case.qptiff", long_len=600).path
    raise ValueError(fmt)


FORMATS = ["svs", "svs-bigtiff", "ndpi", "mrxs", "bif", "philips", "scn", "qptiff"]


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-originals")
    return {fmt: _make(fmt, root / fmt) for fmt in FORMATS}


# ---------------------------------------------------------------------------
# a minimal TIFF walker (our own: the fuzzer must not trust the code under test)


def _ifds(data: bytes) -> tuple[str, bool, list[dict]]:
    """(byte order, bigtiff, IFDs as {off, n, entries: [entry offsets], next_at})."""
    bo = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(bo + "H", data[2:4])[0] == 43
    if big:
        off = struct.unpack(bo + "Q", data[8:16])[0]
    else:
        off = struct.unpack(bo + "I", data[4:8])[0]
    out, seen = [], set()
    while 0 < off < len(data) and off not in seen and len(out) < 64:
        seen.add(off)
        if big:
            n = struct.unpack(bo + "Q", data[off : off + 8])[0]
            first, esize, nsize = off + 8, 20, 8
        else:
            n = struct.unpack(bo + "H", data[off : off + 2])[0]
            first, esize, nsize = off + 2, 12, 4
        if first + n * esize + nsize > len(data):
            break
        entries = [first + i * esize for i in range(n)]
        next_at = first + n * esize
        out.append({"off": off, "n": n, "entries": entries, "next_at": next_at})
        off = struct.unpack(bo + ("Q" if big else "I"), data[next_at : next_at + nsize])[0]
    return bo, big, out


def _mutate_tiff(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    bo, big, ifds = _ifds(data)
    ptr = "Q" if big else "I"
    psize = 8 if big else 4
    kind = rng.choice(["truncate", "truncate-ifd", "flip-header", "flip-ifd", "offset-overflow", "count-overflow", "ifd-loop", "entry-count", "type"])
    if not ifds and kind not in ("truncate", "flip-header"):
        kind = "truncate"
    if kind == "truncate":
        cut = rng.choice([rng.randrange(0, 64), rng.randrange(0, len(b)), len(b) - rng.randrange(1, 4096)])
        return bytes(b[: max(0, cut)]), f"truncate at {max(0, cut)}"
    if kind == "truncate-ifd":
        ifd = rng.choice(ifds)
        cut = rng.randrange(ifd["off"], ifd["next_at"] + psize)
        return bytes(b[:cut]), f"truncate inside IFD at {ifd['off']} ({cut})"
    if kind == "flip-header":
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(0, 16 if big else 8)
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b), "bit flips in the header"
    ifd = rng.choice(ifds)
    if kind == "flip-ifd":
        lo, hi = ifd["off"], ifd["next_at"] + psize
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(lo, hi)
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b), f"bit flips in IFD at {ifd['off']}"
    if kind == "ifd-loop":
        target = rng.choice([ifds[0]["off"], ifd["off"]])
        struct.pack_into(bo + ptr, b, ifd["next_at"], target)
        return bytes(b), f"IFD at {ifd['off']} links back to {target}"
    if kind == "entry-count":
        struct.pack_into(bo + ("Q" if big else "H"), b, ifd["off"], rng.choice([0xFFFF, 0x7FFF, ifd["n"] + 1, 0]))
        return bytes(b), f"entry count of IFD at {ifd['off']} changed"
    if not ifd["entries"]:
        return bytes(b[: len(b) // 2]), "truncate at half"
    e = rng.choice(ifd["entries"])
    tag = struct.unpack(bo + "H", b[e : e + 2])[0]
    if kind == "type":
        struct.pack_into(bo + "H", b, e + 2, rng.choice([0, 13, 19, 255, 1, 2, 16]))
        return bytes(b), f"type of tag {tag} in IFD at {ifd['off']} changed"
    cnt_fmt, cnt_at, val_at = (bo + "Q", e + 4, e + 12) if big else (bo + "I", e + 4, e + 8)
    if kind == "count-overflow":
        huge = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 0x10000000] + ([1 << 40, (1 << 63) - 1] if big else []))
        struct.pack_into(cnt_fmt, b, cnt_at, huge)
        return bytes(b), f"count of tag {tag} in IFD at {ifd['off']} set to {huge}"
    # offset-overflow: the value/offset field points far beyond the file
    far = rng.choice([len(b) + 1, len(b) + 4096, 0xFFFFFFF0] + ([1 << 40, (1 << 64) - 16] if big else []))
    struct.pack_into(bo + ptr, b, val_at, far)
    return bytes(b), f"value offset of tag {tag} in IFD at {ifd['off']} set to {far}"


def _mutate_mrxs(case_dir: Path, rng: random.Random) -> str:
    folder = case_dir / "case"
    kind = rng.choice(["index-truncate", "index-flip", "index-int", "ini-truncate", "ini-line", "data-truncate", "data-flip", "mrxs-truncate"])
    if kind.startswith("index"):
        p = folder / "Index.dat"
    elif kind.startswith("ini"):
        p = folder / "Slidedat.ini"
    elif kind.startswith("data"):
        p = rng.choice(sorted(folder.glob("Data*.dat")))
    else:
        p = case_dir / "case.mrxs"
    b = bytearray(p.read_bytes())
    if kind.endswith("truncate"):
        cut = rng.randrange(0, max(1, len(b)))
        p.write_bytes(bytes(b[:cut]))
        return f"{p.name} truncated at {cut}"
    if kind.endswith("flip"):
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(0, min(len(b), 4096)) if rng.random() < 0.7 else rng.randrange(0, len(b))
            b[i] ^= 1 << rng.randrange(8)
        p.write_bytes(bytes(b))
        return f"bit flips in {p.name}"
    if kind == "index-int":
        i = rng.randrange(0, max(1, len(b) - 4))
        struct.pack_into("<i", b, i, rng.choice([0x7FFFFFFF, -1, -0x80000000, len(b) * 4]))
        p.write_bytes(bytes(b))
        return f"Index.dat int at {i} overflowed"
    lines = b.decode("utf-8", "surrogateescape").splitlines(keepends=True)
    i = rng.randrange(len(lines))
    if rng.random() < 0.5:
        del lines[i]
        what = f"Slidedat.ini line {i} deleted"
    else:
        k = lines[i].split("=")[0]
        lines[i] = f"{k}= {rng.choice(['-1', '2147483648', '99999999999', 'x', '', '../../etc/passwd', '0', '30000'])}\n"
        what = f"Slidedat.ini line {i} value replaced"
    p.write_bytes("".join(lines).encode("utf-8", "surrogateescape"))
    return what


# ---------------------------------------------------------------------------
# the check of one case


def _alarm(signum, frame):
    raise CaseTimeout()


def _run_case(
    case_dir: Path, src: Path, out: Path, allow_generic: bool, command: str = "run", extra: tuple[str, ...] = ()
) -> tuple[int, str, str, BaseException | None]:
    """One CLI command in-process under the per-case alarm; ``extra``: more options (``run`` only,
    e.g. ``("--target", "dicom")``)."""
    args = [command, str(src)] + (["-o", str(out), *extra] if command == "run" else []) + (["--allow-generic"] if allow_generic else [])
    return _invoke(args)


def _invoke(args: list[str]) -> tuple[int, str, str, BaseException | None]:
    """The CLI with ``args`` in-process under the per-case alarm."""
    from typer.testing import CliRunner

    from wsianon.cli import app

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_TIMEOUT)
    try:
        res = CliRunner().invoke(app, args, catch_exceptions=True)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    exc = res.exception if not isinstance(res.exception, SystemExit) else None
    return res.exit_code, res.stdout, res.stderr, exc


# the options ``verify`` is told of (as given to ``run``), and those it has no option for: an output
# made with one of these (a kept macro, which shows the label) is not ``verify``'s to accept; a blank
# label is (``verify`` accepts the stand-in ``--label blank`` writes)
VERIFY_OPTIONS = ("--rename", "--coded-data", "--dates")
RUN_ONLY = ("--macro",)


def _verify_agrees(case_id: str, out: Path, src: Path, options: tuple[str, ...], allow_generic: bool) -> list[str]:
    """A slide ``run`` verified (with ``options``) is verified by ``verify --source`` too, given the
    options it has: the two verifiers judge the same output, and one that fails what the other
    passed is either too lax or quarantines clean slides. Slides made with ``RUN_ONLY`` options
    are not judged here."""
    report = out / "wsianon-report.json"
    if not report.exists() or any(o in options for o in RUN_ONLY):
        return []
    data = json.loads(report.read_text())
    if len(data["slides"]) != 1 or data["skipped_inputs"]:
        return []  # ``--source`` takes one slide: a source folder holding more (or files no slide is made of) is not one
    given = dict(zip(options[::2], options[1::2]))
    extra = [x for k in VERIFY_OPTIONS if k in given and (k != "--dates" or given.get("--target") == "dicom") for x in (k, given[k])]
    found = []
    for s in data["slides"]:
        if s["status"] != "ok":
            continue
        for name in s["outputs"]:
            args = ["verify", str(out / name), "--source", str(src), *extra] + (["--allow-generic"] if allow_generic else [])
            code, stdout, stderr, exc = _invoke(args)
            if broke := _broke(f"{case_id} [verify --source]", stdout, stderr, exc):
                found += broke
            elif code != 0:
                failed = [line.strip() for line in stdout.splitlines() if "FAIL" in line][:3]
                found.append(f"{case_id} [verify --source]: run verified {name}, verify says exit {code}: {failed or stderr[-300:]!r}")
    return found


def _broke(cid: str, stdout: str, stderr: str, exc: BaseException | None) -> list[str]:
    """The finding when a command hung or raised (a traceback reached its output), else []."""
    if isinstance(exc, CaseTimeout):
        return [f"{cid}: hang (> {CASE_TIMEOUT} s)"]
    if exc is not None or "Traceback" in stdout + stderr:
        return [f"{cid}: exception {type(exc).__name__ if exc else ''} / traceback in output"]
    return []


def _check_dry_run(case_id: str, case_dir: Path, src: Path, out: Path, allow_generic: bool, options: tuple[str, ...], canaries: dict[str, str]) -> list[str]:
    """``run --dry-run`` on a damaged file: no traceback or hang, nothing written (the input
    unchanged, OUT never made), exit 0, or 1 with one error line naming the file; and no value of
    the slide in what it prints (the plan names fields and reasons, never their values)."""
    before = tree_hashes(case_dir)
    damaged = _tree_bytes(case_dir)
    code, stdout, stderr, exc = _invoke(["run", str(src), "-o", str(out), "--dry-run", *options] + (["--allow-generic"] if allow_generic else []))
    cid = f"{case_id} [--dry-run]"
    if broke := _broke(cid, stdout, stderr, exc):
        return broke
    problems = [] if tree_hashes(case_dir) == before else [f"{cid}: input changed"]
    if out.exists():
        problems.append(f"{cid}: OUT was made")
    err = [line for line in stderr.splitlines() if line.startswith("error:")]
    if code not in (0, 1) or (code == 1 and (len(err) != 1 or str(case_dir) not in err[0])):
        problems.append(f"{cid}: exit {code}, error lines {err or stderr[-300:]!r}")
    elif err and "internal error" in err[0]:
        problems.append(f"{cid}: {err[0]}")
    shown = sorted(k for k, v in canaries.items() if v.encode() in damaged and v in stdout + stderr)
    if shown:
        problems.append(f"{cid}: prints the slide's values {shown}")
    return problems


def _check_read_only(case_id: str, case_dir: Path, src: Path, allow_generic: bool, command: str) -> list[str]:
    """``inspect`` / ``verify`` (no source) on a mutated file: no traceback or hang, input
    unchanged, and exit 0, or 1 with at most one error line, naming the file."""
    before = tree_hashes(case_dir)
    code, stdout, stderr, exc = _run_case(case_dir, src, case_dir, allow_generic, command)
    cid = f"{case_id} [{command}]"
    if broke := _broke(cid, stdout, stderr, exc):
        return broke
    problems = [] if tree_hashes(case_dir) == before else [f"{cid}: input changed"]
    err = [l for l in stderr.splitlines() if l.startswith("error:")]
    if code not in (0, 1) or len(err) > 1 or (err and str(case_dir) not in err[0]) or (code == 1 and command == "inspect" and not err):
        problems.append(f"{cid}: exit {code}, error lines {err or stderr[-300:]!r}")
    elif err and "internal error" in err[0]:  # a bug, not a judgement of the damage (its line names the file all the same)
        problems.append(f"{cid}: {err[0]}")
    return problems


def _check_case(case_id: str, case_dir: Path, src: Path, out: Path, allow_generic: bool, extra: tuple[str, ...] = (), one_slide: bool = True) -> list[str]:
    """``one_slide=False``: the input may be reported as several slides (a DICOM folder whose
    damaged instance no longer groups with the others: each is judged on its own)."""
    problems: list[str] = []
    before = tree_hashes(case_dir)
    code, stdout, stderr, exc = _run_case(case_dir, src, out, allow_generic, extra=extra)
    if broke := _broke(case_id, stdout, stderr, exc):
        return broke
    if tree_hashes(case_dir) != before:
        problems.append(f"{case_id}: input changed")
    report_path = out / "wsianon-report.json"
    if not report_path.exists():
        return problems + [f"{case_id}: no report (exit {code}): {stderr[-300:]!r}"]
    slides = json.loads(report_path.read_text())["slides"]
    if (len(slides) != 1) if one_slide else not slides:
        problems.append(f"{case_id}: {len(slides)} slides reported")
    ok_outputs = {n for s in slides if s["status"] == "ok" for n in s["outputs"]}
    for s in slides:
        if "internal error" in (s["error"] or ""):
            problems.append(f"{case_id}: {s['error']} {s['notes'][-1:]}")
        elif (s["error"] or "").startswith("I/O error"):  # the disk is healthy here: damage not recognised as such
            problems.append(f"{case_id}: {s['error']} (a damaged file reported as an I/O error)")
    # nothing half-written: OUT holds the report and verified outputs only
    from wsianon.pipeline.record import RECORD_FILES  # the report, its HTML view and the certificate

    for p in out.iterdir():
        if p.name not in RECORD_FILES and p.name not in ok_outputs:
            problems.append(f"{case_id}: unexpected {p.name} in OUT")
    statuses = [s["status"] for s in slides]
    if not one_slide and len(slides) > 1:
        err = [l for l in stderr.splitlines() if l.startswith("error:")]
        bad = [s for s in statuses if s in ("error", "failed")]
        if code not in (0, 1) or (code == 0) != (not bad):
            problems.append(f"{case_id}: exit {code} with {statuses}")
        if len(err) != statuses.count("error") or any(str(case_dir) not in l for l in err):
            problems.append(f"{case_id}: {statuses.count('error')} slide(s) in error, error lines {err or stderr[-300:]!r}")
        return problems
    if code == 0:
        if statuses != ["ok"]:
            problems.append(f"{case_id}: exit 0 with {statuses}")
    elif code == 1:
        err = [l for l in stderr.splitlines() if l.startswith("error:")]
        if statuses == ["failed"]:
            if err:
                problems.append(f"{case_id}: quarantined slide also printed {err}")
        elif len(err) != 1 or str(case_dir) not in err[0]:
            problems.append(f"{case_id}: expected one error line naming the file, got {err or stderr[-300:]!r}")
    else:
        problems.append(f"{case_id}: exit {code}")
    return problems


def _canaries(fmt: str) -> dict[str, str]:
    """The identifying values the fixture of ``fmt`` plants (its generator's canaries)."""
    import importlib

    if fmt == "qptiff":
        return {}
    mod = importlib.import_module(f"tests.fixtures.{ {'svs-bigtiff': 'svs'}.get(fmt, fmt) }_gen")
    out = dict(mod.CANARIES)
    for extra in ("DATETIME_CANARY", "PRIVATE_CANARY", "ARTIST_CANARY"):
        if hasattr(mod, extra):
            out[extra] = getattr(mod, extra)
    return out


def _tree_bytes(root: Path) -> bytes:
    """Every regular file's bytes under ``root`` (or ``root`` itself), joined."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return b"\0".join(p.read_bytes() for p in files)


def _leaks(case_id: str, damaged: bytes, out: Path, canaries: dict[str, str]) -> list[str]:
    """A verified output holds none of the canaries that the damaged source (``damaged``: its
    bytes) still holds: damage may make the redactor read a file otherwise than the fixture was
    written, and what it then keeps must still be clean, or the slide must not be verified."""
    report = out / "wsianon-report.json"
    if not report.exists():
        return []
    kept = {k: v.encode() for k, v in canaries.items() if v.encode() in damaged}
    found = []
    from wsianon.pipeline.record import RECORD_FILES  # shared with the outputs: never a value of a slide, verified or not

    for name in RECORD_FILES:
        body = (out / name).read_bytes() if (out / name).is_file() else b""
        hits = sorted(k for k, v in kept.items() if v in body)
        if hits:
            found.append(f"{case_id}: the record's {name} holds canaries {hits}")
    for s in json.loads(report.read_text())["slides"]:
        if s["status"] != "ok":
            continue
        for name in s["outputs"]:
            body = _tree_bytes(out / name)
            hits = sorted(k for k, v in kept.items() if v in body)
            if hits:
                found.append(f"{case_id}: verified output {name} holds canaries {hits}")
    return found


def _outcome(out: Path, outcomes: dict[str, int]) -> list[dict]:
    """The slides OUT's report lists (none without a report), their statuses joined and tallied in
    ``outcomes``."""
    report = out / "wsianon-report.json"
    slides = json.loads(report.read_text())["slides"] if report.exists() else []
    status = "/".join(s["status"] for s in slides) or "no report"
    outcomes[status] = outcomes.get(status, 0) + 1
    return slides


def _judge_cases(label: str, problems: list[str], outcomes: dict[str, int], cases: int) -> None:
    """The end of a fuzz run: no problem found, and the control that the damage was real (at
    least a quarter of the cases refused or quarantined)."""
    print(f"{label}: {outcomes}")
    assert not problems, "\n".join(problems)
    assert sum(n for s, n in outcomes.items() if s != "ok") >= cases // 4, outcomes


def _grew(case_id: str, peak_before: int) -> list[str]:
    """The finding when the process's peak memory, which only grows, grew by more than
    ``MAX_GROWTH_MIB`` since ``peak_before`` (MiB): measured after each command, so a command's
    growth is never put down to the next case's (fuzz seeds 92 and 93: ``verify`` of one case grew
    it by 5-6 GiB, and the report named the run of the case after it)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10  # MiB (Linux counts KiB)
    if peak - peak_before > MAX_GROWTH_MIB:
        return [f"{case_id}: the process's peak memory grew by {peak - peak_before} MiB in this command (bound {MAX_GROWTH_MIB} MiB)"]
    return []


# the options a case runs with besides the defaults, each drawn on its own (its chance, its
# values): ``--label blank`` draws a new label into the damaged page, ``--macro keep`` keeps a page
# the default removes, and so on; a stop-42 bug (a label whose ImageWidth had 40 values ended as
# an internal error with --label blank only) hid from fuzzing of the defaults alone.  Not drawn:
# ``--in-place`` (it changes the input), ``--dates keep`` (a kept date is the fixture's canary).
# ``--target dicom`` (the conversion reads the damaged source through wsidicomizer and opentile)
# only where the fuzzer's target is not DICOM already (``TO_DICOM``)
OPTIONS: list[tuple[float, tuple[tuple[str, ...], ...]]] = [
    (1 / 3, (("--label", "blank"),)),
    (1 / 4, (("--macro", "keep"),)),
    (1 / 4, (("--thumbnail", "remove"),)),
    (1 / 4, (("--dates", "year"), ("--dates", "remove"))),
    (1 / 6, (("--rename", "keep"),)),
    (1 / 6, (("--coded-data", "all"),)),
]


TO_DICOM = (1 / 5, (("--target", "dicom"),))


def generators(label: str) -> tuple[random.Random, random.Random]:
    """A fuzz run's generators: of the damage (``label``, as before options were drawn, so a
    seed's case ids stay the same) and of the options (``draw_options``)."""
    return random.Random(label), random.Random(f"{label}:options")


def draw_options(rng: random.Random, to_dicom: bool = False) -> tuple[str, ...]:
    """One case's options (``OPTIONS``, and ``TO_DICOM`` when asked), drawn from ``rng``: a
    generator of its own, so that a seed's damage (its case ids) is the same whatever options are
    drawn."""
    out: list[str] = []
    for chance, values in OPTIONS + ([TO_DICOM] if to_dicom else []):
        if rng.random() < chance:
            out += rng.choice(values)
    return tuple(out)


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzz_run(fmt, originals, tmp_path):
    faulthandler.dump_traceback_later(CASE_TIMEOUT * 3, exit=True)  # a hang in C code still ends the test run
    try:
        rng, options_rng = generators(f"{SEED}:{fmt}")
        orig = originals[fmt]
        canaries = _canaries(fmt)
        problems: list[str] = []
        outcomes: dict[int, int] = {}
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
        for i in range(CASES):
            case_dir = tmp_path / f"c{i}"
            if fmt == "mrxs":
                shutil.copytree(orig.parent, case_dir)
                src = case_dir / orig.name
                what = _mutate_mrxs(case_dir, rng)
            else:
                case_dir.mkdir()
                src = case_dir / orig.name
                data, what = _mutate_tiff(orig.read_bytes(), rng)
                src.write_bytes(data)
            out = tmp_path / f"o{i}"
            options = draw_options(options_rng, to_dicom=True)
            cid = f"{fmt} #{i} ({what}){' ' + ' '.join(options) if options else ''}"
            found = _check_case(cid, case_dir, src, out, fmt == "qptiff", options)
            found += _leaks(cid, _tree_bytes(case_dir), out, canaries)
            found += _verify_agrees(cid, out, src, options, fmt == "qptiff")
            found += _grew(cid, peak_before)
            peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
            if i % 4 == 2:  # --dry-run on another quarter
                found += _check_dry_run(cid, case_dir, src, tmp_path / f"dry{i}", fmt == "qptiff", options, canaries)
            if i % 4 == 0:  # the read-only commands on a quarter of the cases
                for command in ("inspect", "verify"):  # each measured on its own: the case's own id names the command that grew
                    found += _check_read_only(f"{fmt} #{i} ({what})", case_dir, src, fmt == "qptiff", command)
                    found += _grew(f"{fmt} #{i} ({what}) [{command}]", peak_before)
                    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
            problems += found
            code = json.loads((out / "wsianon-report.json").read_text())["summary"].get("ok", 0) if (out / "wsianon-report.json").exists() else -1
            outcomes[code] = outcomes.get(code, 0) + 1
            shutil.rmtree(case_dir, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(tmp_path / f"o{i}.quarantine", ignore_errors=True)
            faulthandler.dump_traceback_later(CASE_TIMEOUT * 3, exit=True)
        assert not problems, "\n".join(problems)
        # the control: the mutations really break files (most cases are refused)
        assert outcomes.get(0, 0) >= CASES // 3, outcomes
    finally:
        faulthandler.cancel_dump_traceback_later()


AS_LIMIT = 4 << 30  # the run's address space in the regression below: a run needs well under 2 GiB


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def test_an_output_openslide_reads_where_the_source_it_could_not_is_probed_first(tmp_path):
    """Seed 35, SVS case 12: bit flips in IFD 0 gave DateTime field type 130 and Artist type 0
    (OpenSlide refuses such a source, so the decode probe had nothing to read) and a TileLength of
    8,388,864 rows. The redactor drops the two corrupt fields; OpenSlide then opened the output,
    and the verifier's in-process read asked glib for 8.6 GB: glib aborts on a failed allocation,
    and the whole batch died (under a memory limit, as on a machine short of memory). The output
    is now probed in a child first: the slide is refused with one line, the batch goes on."""
    import subprocess
    import sys

    from .fixtures.svs_gen import write_svs

    (tmp_path / "src").mkdir()
    bad = write_svs(tmp_path / "src" / "a-bad.svs", size=(512, 384)).path
    good = write_svs(tmp_path / "src" / "b-good.svs", size=(512, 384)).path
    b = bytearray(bad.read_bytes())
    (ifd,) = struct.unpack_from("<I", b, 4)
    for k in range(struct.unpack_from("<H", b, ifd)[0]):
        at = ifd + 2 + 12 * k
        tag = struct.unpack_from("<H", b, at)[0]
        if tag == 323:  # TileLength
            struct.pack_into("<I", b, at + 8, 8388864)
        elif tag == 306:  # DateTime: a field type no reader knows
            struct.pack_into("<H", b, at + 2, 130)
        elif tag == 315:  # Artist
            struct.pack_into("<H", b, at + 2, 0)
    bad.write_bytes(bytes(b))
    key = tmp_path / "key"
    key.write_text("ab" * 32)
    key.chmod(0o600)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "wsianon.cli", "run", str(bad), str(good), "-o", str(out), "--key-file", str(key)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=_limit_memory)  # a hang guard, not a timing
    assert r.returncode == 1, (r.returncode, (r.stdout + r.stderr)[-2000:])
    assert "Traceback" not in r.stdout + r.stderr and "GLib" not in r.stderr
    slides = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert [s["status"] for s in slides] == ["error", "ok"], slides
    # since fuzz seed 73 the structure check refuses tiles of more than 2^26 px before anything is
    # written or decoded (``preflight._check_tile_size``); the output probe behind it is tested below
    assert slides[0]["error"] == "IFD 0: tiles of more than 64 Mpx a tile (damaged?); refused", slides[0]["error"]
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and str(bad) in err[0], err
    assert len(list(out.glob("*.svs"))) == 1


def test_an_output_whose_decode_probe_crashes_is_refused_in_the_sources_name(tmp_path, monkeypatch):
    """``check_output_decodes``: the probe of a written output runs in a forked child; a decoder
    that aborts there (here the probe itself aborts, as glib does on a failed allocation) refuses
    the source with one line, and the calling process lives on."""
    import os

    from wsianon.errors import CorruptInput
    from wsianon.pipeline import preflight

    from .fixtures.svs_gen import write_svs

    src = write_svs(tmp_path / "a.svs", size=(512, 384)).path
    output = write_svs(tmp_path / "out.svs", size=(512, 384)).path
    preflight.check_output_decodes(src, output)  # a clean output passes the real probe
    monkeypatch.setattr(preflight, "_probe", lambda path: os.abort())  # the forked child inherits it
    with pytest.raises(CorruptInput) as err:
        preflight.check_output_decodes(src, output)
    assert err.value.path == src
    assert err.value.reason == "once redacted, image data cannot be decoded (the decoder crashed on it); refused, nothing written"
