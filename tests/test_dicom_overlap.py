"""The serial runner's overlap of a slide's DICOM verification with the next slide's conversion
(pipeline/workers.py ``run_serial``): real overlap, the same outputs and outcomes with it off,
a failing or crashing verification settled as that slide's outcome, and Ctrl-C or a coordinator
error while a verification is in flight (nothing of that slide left in OUT; the next run redoes it).

Each test orders the two phases with events (never with timings): a wait that should be
released by the other phase has a generous timeout, so a missing overlap fails the test
instead of hanging it."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

import wsianon.converters.dicom as dicom_mod
from wsianon.pipeline import anonymize as anon
from wsianon.pipeline import batch
from wsianon.pipeline.batch import JobInterrupted
from wsianon.pipeline.jobs import JobConfig, run_job
from wsianon.pipeline.model import Status

from .conftest import small_svs_folder, tree_hashes

WAIT = 60.0  # generous: only reached when the expected order does not happen (the test then fails)


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> Path:
    return small_svs_folder(tmp_path_factory, "overlap-in", 3)


def _run(inputs: list[Path], out: Path, key: Path):
    return run_job(JobConfig(inputs=inputs, out=out, target="dicom", key_file=key))


def _two(slides: Path) -> list[Path]:
    return [slides / "CASE-1.svs", slides / "CASE-2.svs"]


def _report(out: Path) -> list[dict]:
    return json.loads((out / "wsianon-report.json").read_text())["slides"]


def _states(out: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(out.parent / f"{out.name}.wsianon-job.sqlite")
    try:
        return db.execute("SELECT state, attempts FROM slides ORDER BY id").fetchall()
    finally:
        db.close()


def _slide_dirs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.is_dir())


def _verify_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("wsianon-verify")]


class _Conversions:
    """Counts conversions; ``on_start(n)`` runs as conversion ``n`` (1-based) starts."""

    def __init__(self, monkeypatch, on_start=None):
        self.n = 0
        self.log: list[str] = []
        orig = dicom_mod.convert_slide

        def convert(*a, **k):
            self.n += 1
            n = self.n
            self.log.append(f"convert{n}-start")
            if on_start is not None:
                on_start(n)
            return orig(*a, **k)

        monkeypatch.setattr(dicom_mod, "convert_slide", convert)


@pytest.mark.parametrize("mode", ["on", "off"])
def test_verification_overlaps_the_next_conversion_unless_off(slides, tmp_path, key, monkeypatch, mode):
    if mode == "off":
        monkeypatch.setenv("WSIANON_OVERLAP", "off")
    second_started = threading.Event()
    released: list[bool] = []
    conv = _Conversions(monkeypatch, lambda n: second_started.set() if n == 2 else None)
    orig = anon._verify_dicom_phase

    def verify(*a, **k):
        first = not released
        if first:  # slide 1's verification ends only once slide 2's conversion has started
            released.append(second_started.wait(WAIT if mode == "on" else 0.2))
        v = orig(*a, **k)
        conv.log.append("verify-end" if first else "verify-end-later")
        return v

    monkeypatch.setattr(anon, "_verify_dicom_phase", verify)
    res = _run(_two(slides), tmp_path / "out", key)
    assert [o.status for o in res.outcomes] == [Status.OK, Status.OK]
    if mode == "on":
        assert released == [True], "slide 1's verification did not run while slide 2 converted"
        assert conv.log.index("convert2-start") < conv.log.index("verify-end")
    else:
        assert released == [False]
        assert conv.log.index("verify-end") < conv.log.index("convert2-start")
    assert not _verify_threads()


def _checks(entry: dict) -> list:
    v = entry.get("verification") or {}
    return sorted((c["check"], c["ok"], c.get("detail")) for c in v.get("checks", []))


def test_same_outputs_and_outcomes_with_overlap_on_and_off(slides, tmp_path, key, monkeypatch):
    inputs = sorted(slides.glob("*.svs"))
    runs = {}
    for mode in ("on", "off"):
        monkeypatch.setenv("WSIANON_OVERLAP", mode)
        out = tmp_path / f"out-{mode}"
        res = _run(inputs, out, key)
        assert res.exit_code == 0
        dcm = {k: v for k, v in tree_hashes(out).items() if k.endswith(".dcm")}
        assert len(dcm) >= 6
        entries = sorted(_report(out), key=lambda e: e["slide"])
        summary = [
            (e["slide"], e["status"], e["outputs"], _checks(e), e["removed"], e["notes"], sorted(e["timings_s"]), e["bytes_written"], e["closed_world"])
            for e in entries
        ]
        runs[mode] = (dcm, summary)
        assert all(set(s[6]) >= {"convert", "verify", "total", "inspect"} for s in summary)
        for o in res.outcomes:  # total: both phases' own time, never less than its parts
            assert o.timings["total"] >= o.timings["convert"] + o.timings["verify"]
    assert runs["on"][0] == runs["off"][0]  # byte-identical DICOM outputs
    assert runs["on"][1] == runs["off"][1]


def _first_verification_replaced(monkeypatch, slides: Path, out: Path, key: Path, first_verify):
    """Two slides run with the first slide's verification done by ``first_verify(orig, *args)``
    (the second's as it is); returns their outcomes, the first checked to be that slide."""
    orig = anon._verify_dicom_phase
    calls: list[str] = []

    def verify(src, inv, ctx, outcome, staging, result):
        calls.append(ctx.pseudonym)
        if len(calls) == 1:
            return first_verify(orig, src, inv, ctx, outcome, staging, result)
        return orig(src, inv, ctx, outcome, staging, result)

    monkeypatch.setattr(anon, "_verify_dicom_phase", verify)
    res = _run(_two(slides), out, key)
    first, second = res.outcomes[:2]
    assert first.input_label == calls[0]
    return first, second


def test_failed_verification_quarantines_that_slide_only(slides, tmp_path, key, monkeypatch):
    def failing(orig, *args):
        v = orig(*args)
        v.add("planted failure", False, "made to fail by the test")
        return v

    out = tmp_path / "out"
    first, second = _first_verification_replaced(monkeypatch, slides, out, key, failing)
    assert first.status == Status.FAILED and second.status == Status.OK
    assert _slide_dirs(out) == [second.input_label]
    qdir = tmp_path / "out.quarantine" / first.input_label
    findings = json.loads((qdir / "findings.json").read_text())
    assert findings["ok"] is False
    assert sorted(p.name for p in (qdir / first.input_label).glob("*.dcm"))
    assert [s for s, _ in _states(out)] == ["quarantined", "ok"]


def test_exception_in_verification_is_that_slides_error(slides, tmp_path, key, monkeypatch):
    def raising(orig, *args):
        raise RuntimeError("Jane Doe 1970-01-01 must not reach the report")

    out = tmp_path / "out"
    first, second = _first_verification_replaced(monkeypatch, slides, out, key, raising)
    assert first.status == Status.ERROR and second.status == Status.OK
    assert first.error == "internal error (RuntimeError); nothing was written for this slide"
    assert any(n.startswith("internal error at ") and "test_dicom_overlap.py" in n for n in first.notes)
    text = (out / "wsianon-report.json").read_text()
    assert "Jane Doe" not in text and "Traceback" not in text
    assert _slide_dirs(out) == [second.input_label]  # nothing of slide 1, no staging folder left
    assert [s for s, _ in _states(out)] == ["error", "ok"]


@pytest.mark.parametrize("when", ["before-placing", "after-placing"])
def test_ctrl_c_while_a_verification_is_in_flight(slides, tmp_path, key, monkeypatch, when):
    """Ctrl-C lands in slide 2's conversion while slide 1's verification is in flight: either it
    is cancelled before it places anything, or (it had already placed) what it placed is
    withdrawn; slide 1 is requeued and the next run completes both."""
    second_started, placed = threading.Event(), threading.Event()
    seen: list[bool] = []
    orig = anon.DicomStaged.verify_and_place

    def verify_and_place(self, gate=None):
        if seen:
            return orig(self, gate)
        cancel = gate.__self__.cancel  # the runner's cancel event for this slide
        if when == "before-placing":
            seen.append(second_started.wait(WAIT) and cancel.wait(WAIT))
            return orig(self, gate)  # the gate refuses: nothing placed
        orig(self, gate)
        assert (out / self.ctx.pseudonym).is_dir()
        placed.set()
        seen.append(cancel.wait(WAIT))

    def on_start(n):
        if n == 2:
            second_started.set()
            if when == "after-placing":
                assert placed.wait(WAIT)
            raise KeyboardInterrupt

    orig_convert = dicom_mod.convert_slide
    _Conversions(monkeypatch, on_start)
    monkeypatch.setattr(anon.DicomStaged, "verify_and_place", verify_and_place)
    out = tmp_path / "out"
    with pytest.raises(JobInterrupted):
        _run(_two(slides), out, key)
    assert seen == [True]
    assert not _verify_threads()
    assert _slide_dirs(out) == []  # no output and no staging folder of either slide
    assert not (tmp_path / "out.quarantine").exists() or not any((tmp_path / "out.quarantine").iterdir())
    assert _states(out) == [("pending", 1), ("pending", 1)]
    monkeypatch.setattr(dicom_mod, "convert_slide", orig_convert)
    monkeypatch.setattr(anon.DicomStaged, "verify_and_place", orig)
    res = _run(_two(slides), out, key)
    assert [o.status for o in res.outcomes] == [Status.OK, Status.OK]
    assert len(_slide_dirs(out)) == 2
    assert [s for s, _ in _states(out)] == ["ok", "ok"]


def test_coordinator_error_while_a_verification_is_in_flight(slides, tmp_path, key, monkeypatch):
    """An error in the coordinator (committing slide 1) while slide 2's verification runs: the
    call returns only once that verification has ended, and slide 2 is not left in OUT."""
    failing = threading.Event()
    orig_commit = batch._Run.commit
    orig_vp = anon.DicomStaged.verify_and_place
    entered: list[str] = []

    def commit(self, it, o, p):
        failing.set()
        raise RuntimeError("coordinator broke")

    def verify_and_place(self, gate=None):
        entered.append(self.ctx.pseudonym)
        if len(entered) == 2:
            assert failing.wait(WAIT)
        return orig_vp(self, gate)

    monkeypatch.setattr(batch._Run, "commit", commit)
    monkeypatch.setattr(anon.DicomStaged, "verify_and_place", verify_and_place)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="coordinator broke") as ei:
        _run(_two(slides), out, key)
    # `ei` keeps the traceback (and so the runner's frames) alive, as a caller handling the error
    # would: the runner must have been closed by the coordinator itself, not by garbage collection
    assert len(entered) == 2  # slide 2's verification had started
    assert not _verify_threads()  # and had ended when the call returned
    assert entered[1] not in _slide_dirs(out)
    assert not [n for n in _slide_dirs(out) if n.startswith(".wsianon-tmp-")]
    assert ei.traceback
    monkeypatch.setattr(batch._Run, "commit", orig_commit)
