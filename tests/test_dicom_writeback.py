"""The staged DICOM files' write-back in the background (io/writeback.py, started by
``DicomStaged``): it runs while the slide is verified, the placing fsync still runs for every
file before it is placed, a write-back error is the slide's one-line error (nothing placed),
and a discarded, cancelled or finished slide leaves no write-back thread behind.

Phases are ordered with events, never timings: a wait that the other side should release has a
generous timeout, so a missing overlap fails the test instead of hanging it."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from wsianon.converters.base import SlideContext
from wsianon.errors import OutputError
from wsianon.io import writeback as wb_mod
from wsianon.io.writeback import Writeback
from wsianon.pipeline import anonymize as anon
from wsianon.pipeline.detect import expand_inputs
from wsianon.pipeline.jobs import JobConfig, run_job, start_slide
from wsianon.pipeline.model import Status
from wsianon.profiles.policy import Policy

from .conftest import small_svs_folder

WAIT = 60.0  # generous: only reached when the expected order does not happen


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _wb_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(wb_mod.THREAD_PREFIX)]


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> Path:
    return small_svs_folder(tmp_path_factory, "wb-in", 2)


def _files(tmp_path: Path, n: int = 3) -> list[Path]:
    out = []
    for i in range(n):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(bytes([i]) * 4096)
        out.append(p)
    return out


# --- the write-back on its own -------------------------------------------------------------


def test_writeback_syncs_every_file_in_order(tmp_path, monkeypatch):
    files = _files(tmp_path)
    seen: list[str] = []
    real = os.fdatasync

    def spy(fd):
        seen.append(_fd_path(fd))
        real(fd)

    monkeypatch.setattr(wb_mod.os, "fdatasync", spy)
    wb = Writeback(files, "t")
    wb.finish()
    assert seen == [str(p) for p in files]
    assert wb.synced == files
    assert not wb.alive and not _wb_threads()


def test_writeback_error_is_a_one_line_output_error(tmp_path, monkeypatch):
    files = _files(tmp_path)

    def spy(fd):
        raise OSError(errno.ENOSPC, "No space left on device: /secret/Jane Doe.svs")

    monkeypatch.setattr(wb_mod.os, "fdatasync", spy)
    wb = Writeback(files, "t", error_path=tmp_path)
    with pytest.raises(OutputError) as ei:
        wb.finish()
    assert ei.value.reason == "cannot write output: No space left on device"
    assert wb.synced == []
    wb.stop()  # idempotent after finish
    assert not _wb_threads()


def _gated_fdatasync(monkeypatch) -> tuple[threading.Event, threading.Event, list[str]]:
    """``os.fdatasync`` of the write-back replaced: it notes the file, sets ``entered``, then
    waits for ``release``; returns (entered, release, the files it was called for)."""
    entered, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def spy(fd):
        seen.append(_fd_path(fd))
        entered.set()
        assert release.wait(WAIT)

    monkeypatch.setattr(wb_mod.os, "fdatasync", spy)
    return entered, release, seen


def test_stop_cancels_the_files_not_started_and_waits_for_the_one_in_progress(tmp_path, monkeypatch):
    files = _files(tmp_path)
    entered, release, seen = _gated_fdatasync(monkeypatch)
    wb = Writeback(files, "t")
    assert entered.wait(WAIT)
    stopper = threading.Thread(target=wb.stop)
    stopper.start()
    assert wb._cancel.wait(WAIT)  # stop() has cancelled and now waits for the file in progress
    assert stopper.is_alive()
    release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive() and not wb.alive
    assert seen == [str(files[0])]  # the other files were never touched
    assert wb.synced == [files[0]]


def test_a_file_gone_before_its_turn_is_left_to_the_caller(tmp_path, monkeypatch):
    files = _files(tmp_path)
    files[1].unlink()
    wb = Writeback(files, "t")
    wb.finish()
    assert wb.synced == [files[0], files[2]]


# --- on the DICOM route ----------------------------------------------------------------------


def test_writeback_overlaps_the_verification_and_placing_still_fsyncs_every_file(slides, tmp_path, key, monkeypatch):
    log: list[tuple[str, str]] = []
    lock = threading.Lock()
    started: list[Writeback] = []
    all_synced = threading.Event()
    real_fdatasync, real_fsync = os.fdatasync, os.fsync
    orig_init = Writeback.__init__

    def init(self, paths, *a, **k):
        started.append(self)
        all_synced.clear()
        orig_init(self, paths, *a, **k)

    def fdatasync(fd):
        real_fdatasync(fd)
        with lock:
            log.append(("writeback", _fd_path(fd)))
            if len([e for e in log if e[0] == "writeback"]) >= sum(len(w.paths) for w in started):
                all_synced.set()

    def fsync(fd):
        with lock:
            log.append(("fsync", _fd_path(fd)))
        real_fsync(fd)

    orig_verify = anon._verify_dicom_phase
    overlapped: list[bool] = []

    def verify(*a, **k):
        v = orig_verify(*a, **k)
        # the verification ends only once the background write-back has written every staged
        # file: it ran while the slide was verified (not after it)
        overlapped.append(all_synced.wait(WAIT))
        with lock:
            log.append(("verify-end", ""))
        return v

    monkeypatch.setattr(Writeback, "__init__", init)
    monkeypatch.setattr(wb_mod.os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(anon, "_verify_dicom_phase", verify)
    out = tmp_path / "out"
    res = run_job(JobConfig(inputs=[slides / "CASE-1.svs"], out=out, target="dicom", key_file=key))
    assert [o.status for o in res.outcomes] == [Status.OK]
    assert overlapped == [True]
    (wb,) = started
    placed = sorted((out / res.outcomes[0].input_label).glob("*.dcm"))
    assert len(placed) >= 2
    staged = {p.name: p for p in wb.paths}
    assert sorted(staged) == sorted(p.name for p in placed)  # every output file was written back
    end = log.index(("verify-end", ""))
    for name, p in staged.items():
        assert log.index(("writeback", str(p))) < end
        # the placing fsync of each staged file, after the verification, before the rename
        assert ("fsync", str(p)) in log[end:], name
    assert not _wb_threads()


def test_writeback_error_is_the_slides_error_and_nothing_is_placed(slides, tmp_path, key, monkeypatch):
    """ENOSPC from the background write-back of slide 1: that slide ends with the one-line
    error (no traceback, nothing of it in OUT), slide 2 is processed as usual."""
    calls: list[int] = []
    real = os.fdatasync
    first_files: list[Path] = []
    orig_init = Writeback.__init__

    def init(self, paths, *a, **k):
        if not first_files:
            first_files.extend(Path(p) for p in paths)
        orig_init(self, paths, *a, **k)

    def fdatasync(fd):
        calls.append(fd)
        if Path(_fd_path(fd)) in first_files:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(Writeback, "__init__", init)
    monkeypatch.setattr(wb_mod.os, "fdatasync", fdatasync)
    out = tmp_path / "out"
    res = run_job(JobConfig(inputs=[slides / "CASE-1.svs", slides / "CASE-2.svs"], out=out, target="dicom", key_file=key))
    first, second = res.outcomes[:2]
    assert first.status == Status.ERROR
    assert first.error == "cannot write output: No space left on device"
    assert second.status == Status.OK
    assert res.exit_code != 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [second.input_label]  # no staging folder left
    text = (out / "wsianon-report.json").read_text()
    assert "Traceback" not in text and "cannot write output: No space left on device" in text
    db = sqlite3.connect(out.parent / f"{out.name}.wsianon-job.sqlite")
    try:
        assert [s for (s,) in db.execute("SELECT state FROM slides ORDER BY id")] == ["error", "ok"]
    finally:
        db.close()
    assert not _wb_threads()


def test_a_discarded_slide_leaves_no_writeback_thread_and_no_file_touched_after(slides, tmp_path, key, monkeypatch):
    """The run stops before a converted slide's verification (``Deferred.discard``) while its
    write-back is inside a file: the discard cancels the rest, waits for that file, then removes
    the staging folder; no write-back thread is left and no file was touched after that."""
    entered, release, seen = _gated_fdatasync(monkeypatch)
    (src,) = expand_inputs([slides / "CASE-1.svs"])
    ctx = SlideContext(pseudonym="WSI-DISCARD", key=b"K" * 32, policy=Policy())
    dest = anon.Destinations(out=tmp_path / "out", quarantine=tmp_path / "q")
    outcome, _plans, deferred = start_slide(src, ctx, "dicom", dest, defer=True)
    assert deferred is not None, outcome.error
    wb = deferred.staged.writeback
    assert wb is not None and len(wb.paths) >= 2
    root = deferred.staged.staging.root
    assert entered.wait(WAIT)
    stopper = threading.Thread(target=deferred.discard)
    stopper.start()
    assert wb._cancel.wait(WAIT)
    release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert not _wb_threads()
    assert seen == [str(wb.paths[0])]
    assert not root.exists()
    assert not any((tmp_path / "out").iterdir())
