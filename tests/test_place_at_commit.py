"""With --workers (and --scheduler) the coordinator places each slide's verified output when it
records the slide: a worker leaves it in its staging folder inside OUT and its outcome says how
to place it (``Outcome.place``).  A stop between a worker's verification and the coordinator's
record then leaves nothing in OUT that the record does not list (it used to leave the whole,
verified output of a slide that finished as the job stopped, counted as "not yet in the record":
OUT was NOT ready to share until the resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wsianon.io.atomic import STAGING_PREFIX
from wsianon.pipeline import anonymize as anon
from wsianon.pipeline import batch as B
from wsianon.pipeline import record as R
from wsianon.pipeline.batch import JobInterrupted
from wsianon.pipeline.jobs import JobConfig, run_job
from wsianon.pipeline.model import Check, Status

from .conftest import small_svs_folder, tree_hashes

N = 4


def _in_out(out: Path) -> list[str]:
    """Every file in OUT (relative), the record's own files and staging folders included."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() or p.is_symlink())


def _outputs(out: Path) -> list[str]:
    return [f for f in _in_out(out) if f not in R.RECORD_FILES]


def _certified(out: Path) -> list[str]:
    cert = json.loads((out / R.CERT_JSON).read_text())
    return sorted(o["file"] for o in cert["outputs"])


def _entries(out: Path) -> dict[str, dict]:
    """The report's slide entries by slide, without their timings (the only part that differs
    from one run to another)."""
    slides = json.loads((out / R.REPORT_NAME).read_text())["slides"]
    return {e["slide"]: {k: v for k, v in e.items() if k != "timings_s"} for e in slides}


def _on_first_placing(monkeypatch, action) -> list[str]:
    """``action(out, outcome)`` once, as the coordinator places the first slide a worker left
    staged (then it places it); returns the list that gets that slide's label."""
    real = anon.place_staged
    hit: list[str] = []

    def hook(o_out, o):
        if not hit:
            hit.append(o.input_label)
            action(o_out, o)
        return real(o_out, o)

    monkeypatch.setattr(anon, "place_staged", hook)
    return hit


def test_a_stop_before_the_commit_leaves_no_unlisted_output(tmp_path, tmp_path_factory, monkeypatch):
    """The coordinator stops (Ctrl-C) when the first slide a worker verified reaches it, before
    it records it: the run is interrupted with every slide pending, OUT holds nothing the record
    does not list (no output, no staging folder), and the resume completes every slide with a
    record that lists exactly the files in OUT."""
    src = small_svs_folder(tmp_path_factory, "in", N)
    out = tmp_path / "out"
    reached: list[str] = []

    def stop_before_recording(self, it, o, p):
        reached.append(o.status)  # a worker verified this slide (and, before, placed it)
        raise KeyboardInterrupt  # as the CLI's SIGINT handler raises it in the coordinator

    real = B._Run.commit
    monkeypatch.setattr(B._Run, "commit", stop_before_recording)
    with pytest.raises(JobInterrupted) as exc:
        run_job(JobConfig(inputs=[src], out=out, workers=2))
    assert reached == [Status.OK]
    assert exc.value.unlisted == 0, "a verified output was left in OUT that the record does not list"
    assert (exc.value.done_now, exc.value.done_total, exc.value.pending) == (0, 0, N)
    assert R.unlisted_files(out) == []
    assert _outputs(out) == [], "nothing of a slide the record does not list may stay in OUT"
    assert not [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]
    assert _certified(out) == []

    monkeypatch.setattr(B._Run, "commit", real)
    res = run_job(JobConfig(inputs=[src], out=out, workers=2))
    assert res.exit_code == 0 and res.unlisted == []
    assert [o.status for o in res.outcomes] == [Status.OK] * N and res.processed == N
    assert _certified(out) == _outputs(out) and len(_outputs(out)) == N
    ok, problems = R.check_certificate(out)
    assert ok is not None and problems == []


def test_a_placing_error_in_the_coordinator_is_the_slides_error(tmp_path, tmp_path_factory, monkeypatch):
    """Placing fails in the coordinator (the staging folder a worker left is gone): that slide
    ends as an error with nothing of it listed or left in OUT; the others are placed."""
    src = small_svs_folder(tmp_path_factory, "in", 2)
    out = tmp_path / "out"
    lost = _on_first_placing(monkeypatch, lambda o_out, o: anon.Staging.reopen(o_out, o.place.staging).discard())
    res = run_job(JobConfig(inputs=[src], out=out, workers=2))
    assert res.exit_code == 1 and res.unlisted == []
    by = {o.input_label: o for o in res.outcomes}
    bad = by[lost[0]]
    assert bad.status == Status.ERROR and "staging folder is gone" in (bad.error or "")
    assert bad.outputs == [] and bad.files == []
    assert [o.status for o in res.outcomes if o is not bad] == [Status.OK]
    assert _certified(out) == _outputs(out) and len(_outputs(out)) == 1


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_pool_outputs_and_record_equal_the_serial_run(tmp_path, tmp_path_factory, target):
    """A normal --workers 2 run writes byte for byte the outputs of a --workers 1 run, and the
    same report entries (names, files, sizes, SHA-256, checks)."""
    if target == "dicom":
        pytest.importorskip("wsidicomizer")
    src = small_svs_folder(tmp_path_factory, "in", 3)
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        res = run_job(JobConfig(inputs=[src], out=out, workers=workers, target=target))
        assert res.exit_code == 0 and res.unlisted == [], [o.error for o in res.outcomes]
        assert not [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]
        assert _certified(out) == _outputs(out)
        runs[workers] = out
    one, two = runs[1], runs[2]
    assert _outputs(one) == _outputs(two) and len(_outputs(one)) >= 3
    h1, h2 = tree_hashes(one), tree_hashes(two)
    assert {f: h1[f] for f in _outputs(one)} == {f: h2[f] for f in _outputs(two)}
    e1, e2 = _entries(one), _entries(two)
    assert e1 == e2
    assert all(e["files"] and all(f["sha256"] for f in e["files"]) for e in e1.values())


def test_quarantine_from_pool_workers(tmp_path, tmp_path_factory, monkeypatch):
    """A slide that fails verification in a pool worker is placed by the coordinator in the
    quarantine folder (with its findings, private), never in OUT; the others are shared."""
    src = small_svs_folder(tmp_path_factory, "in", 3)
    out = tmp_path / "out"
    real = anon.verify_native

    def failing_case_2(inv, *a, **k):
        verdict = real(inv, *a, **k)
        if Path(inv.path).name == "CASE-2.svs":
            verdict.checks.append(Check("test-planted", False, "planted failure"))
        return verdict

    monkeypatch.setattr(anon, "verify_native", failing_case_2)  # the forked workers inherit it
    res = run_job(JobConfig(inputs=[src], out=out, workers=2))
    assert res.exit_code == 1 and res.unlisted == []
    failed = [o for o in res.outcomes if o.status == Status.FAILED]
    assert len(failed) == 1 and [o.status for o in res.outcomes].count(Status.OK) == 2
    bad = failed[0]
    assert bad.outputs == [] and bad.files == []
    qdir = tmp_path / "out.quarantine" / bad.input_label
    assert sorted(p.name for p in qdir.iterdir()) == sorted(["findings.json", f"{bad.input_label}.svs"])
    assert (qdir.stat().st_mode & 0o777) == 0o700 and ((qdir / "findings.json").stat().st_mode & 0o777) == 0o600
    findings = json.loads((qdir / "findings.json").read_text())
    assert findings["ok"] is False and any(c["check"] == "test-planted" for c in findings["checks"])
    assert not any(bad.input_label in f for f in _in_out(out) if f not in R.RECORD_FILES)
    assert not [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]
    assert _certified(out) == _outputs(out) and len(_outputs(out)) == 2


def test_a_stop_signal_waits_for_the_slide_being_placed_and_recorded(tmp_path, tmp_path_factory, monkeypatch):
    """The CLI's Ctrl-C / SIGTERM handler raises KeyboardInterrupt wherever the coordinator is;
    a signal that comes while it places a slide and records it (``io.atomic.uninterrupted``)
    waits until both are done, then stops the job: the slide is placed AND recorded, OUT holds
    nothing unlisted.  (Raised at once, the signal cut the commit between the renames and the
    manifest row: the whole output stayed in OUT unrecorded, "OUT is NOT ready to share"; or it
    landed as the page-cache thread was being started, and the process hung at exit.)"""
    import os
    import signal

    from wsianon import cli

    src = small_svs_folder(tmp_path_factory, "in", N)
    out = tmp_path / "out"
    # the signal is delivered in the middle of the commit
    signalled = _on_first_placing(monkeypatch, lambda o_out, o: os.kill(os.getpid(), signal.SIGINT))
    stopped = cli._stop_on_signals()
    try:
        with pytest.raises(JobInterrupted) as exc:
            run_job(JobConfig(inputs=[src], out=out, workers=2))
        assert stopped() == 130
    finally:
        stopped(restore=True)
    assert len(signalled) == 1
    assert exc.value.unlisted == 0 and R.unlisted_files(out) == []
    assert exc.value.done_now == 1 and exc.value.done_total == 1 and exc.value.pending == N - 1
    assert len(_outputs(out)) >= 1 and _certified(out) == _outputs(out)  # the signalled slide: placed and recorded
    assert not [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_uninterrupted_defers_a_stop_to_its_end_and_only_on_the_main_thread():
    import os
    import signal
    import threading

    from wsianon import cli
    from wsianon.io.atomic import uninterrupted

    stopped = cli._stop_on_signals()
    try:
        reached = []
        with pytest.raises(KeyboardInterrupt):
            with uninterrupted():
                with uninterrupted():
                    os.kill(os.getpid(), signal.SIGINT)
                    reached.append("inner")  # not cut: deferred
                reached.append("outer")  # still not cut: the outermost section ends first
            reached.append("after")  # never: raised as the section ended
        assert reached == ["inner", "outer"] and stopped() == 130
    finally:
        stopped(restore=True)
    stopped = cli._stop_on_signals()
    try:
        with pytest.raises(KeyboardInterrupt):  # outside a section: at once
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
    finally:
        stopped(restore=True)
    # a section entered by another thread does not hold the main thread's stop back
    entered, leave = threading.Event(), threading.Event()

    def hold():
        with uninterrupted():
            entered.set()
            leave.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    entered.wait(10)
    stopped = cli._stop_on_signals()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
    finally:
        stopped(restore=True)
        leave.set()
        t.join()


def test_the_page_cache_thread_cannot_hold_the_exit(tmp_path):
    """``drop_tree_later``'s thread is a daemon (an interrupt while a ThreadPoolExecutor started
    its thread left one the interpreter waited for at exit, for ever), the exit still waits for
    what is queued (atexit ``settle``), and a forked child starts a thread of its own."""
    import os
    import threading

    from wsianon.io import cache

    if not cache.ENABLED or cache._fadvise is None:
        pytest.skip("no posix_fadvise here: drop_tree_later does nothing")
    f = tmp_path / "x.bin"
    f.write_bytes(b"x" * 4096)
    cache.drop_tree_later(f)
    cache.settle()
    threads = [t for t in threading.enumerate() if t.name == "wsianon-cache-drop"]
    assert threads and all(t.daemon for t in threads)
    pid = os.fork()
    if pid == 0:  # the child: its drop must run (a queue without a thread would hang settle())
        try:
            cache.drop_tree_later(f)
            done = threading.Event()
            threading.Thread(target=lambda: (cache.settle(), done.set()), daemon=True).start()
            os._exit(0 if done.wait(10) else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
