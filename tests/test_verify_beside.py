"""The DICOM verification's frame checks judged in a thread beside the picture checks
(``verify_dicom._Beside``): the same checks, in the same order, with the same answers as in line;
a check that raises still raises."""

from __future__ import annotations

import json
import threading

import pytest

from tests.fixtures.helpers import verified_dicom_run
from wsianon.pipeline import verify_dicom as VD
from wsianon.pipeline.model import Verdict


def _checks(names: list[str], log: list) -> list:
    def make(n):
        def check(v: Verdict) -> None:
            log.append((n, threading.current_thread().name))
            v.add(n, n != "bad", f"detail {n}")

        return check

    return [make(n) for n in names]


@pytest.mark.parametrize("threaded", [False, True])
def test_the_checks_are_merged_in_their_order_after_the_callers(threaded):
    log: list = []
    verdict = Verdict()
    verdict.add("first", True)
    with VD._Beside(_checks(["a", "bad", "c"], log), threaded) as beside:
        verdict.add("caller", True)
        beside.join(verdict)
    verdict.add("last", True)
    assert [c.name for c in verdict.checks] == ["first", "caller", "a", "bad", "c", "last"]
    assert [c.ok for c in verdict.checks] == [True, True, True, False, True, True]
    threads = {t for _n, t in log}
    assert [n for n, _t in log] == ["a", "bad", "c"]
    if threaded:
        assert threads == {t for t in threads if t.startswith("wsianon-frames")}, threads
    else:
        assert threads == {threading.current_thread().name}


@pytest.mark.parametrize("threaded", [False, True])
def test_a_check_that_raises_raises_at_join(threaded):
    def boom(v: Verdict) -> None:
        raise ValueError("reader failed")

    verdict = Verdict()
    with pytest.raises(ValueError, match="reader failed"):
        with VD._Beside([boom], threaded) as beside:
            beside.join(verdict)
    assert verdict.checks == []


def test_leaving_without_join_waits_for_the_thread_and_adds_nothing():
    started, release = threading.Event(), threading.Event()
    done = []

    def slow(v: Verdict) -> None:
        started.set()
        release.wait(5)
        done.append(1)
        v.add("slow", True)

    verdict = Verdict()
    with pytest.raises(RuntimeError):
        with VD._Beside([slow], True):
            started.wait(5)
            threading.Timer(0.2, release.set).start()
            raise RuntimeError("the caller's check raised")
    assert done == [1]  # the block waited for the thread
    assert verdict.checks == []


def test_leaving_without_join_starts_no_further_check():
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def first(v: Verdict) -> None:
        started.set()
        release.wait(5)
        ran.append("first")

    def second(v: Verdict) -> None:
        ran.append("second")

    with pytest.raises(KeyboardInterrupt):
        with VD._Beside([first, second], True):
            started.wait(5)
            threading.Timer(0.2, release.set).start()
            raise KeyboardInterrupt
    assert ran == ["first"]  # the running check ended, the next one never started


def test_a_dicom_run_judges_the_frame_checks_beside_and_in_order(cli, tmp_path, monkeypatch):
    """The whole DICOM route: the frame checks run in the frames thread, the picture checks in
    the verifier's, and the report lists every check in the in-line order."""
    where: dict[str, str] = {}

    def spy(mod, name, label):
        real = getattr(mod, name)

        def wrapped(*a, **k):
            where[label] = threading.current_thread().name
            return real(*a, **k)

        monkeypatch.setattr(mod, name, wrapped)

    spy(VD, "_check_frames_converted", "frames")
    spy(VD.ecs, "check_dicom", "ecs")
    spy(VD.padding, "check_dicom", "padding")
    spy(VD.sof, "check_dicom", "sof")
    spy(VD, "check_pyramid", "pyramid")
    _out, s = verified_dicom_run(cli, tmp_path)
    for k in ("frames", "ecs", "padding", "sof"):
        assert where[k].startswith("wsianon-frames"), where
    assert not where["pyramid"].startswith("wsianon-frames"), where
    names = [c["check"] for c in s["verification"]["checks"]]
    # the in-line order: the picture checks, then the frame checks, then the validator
    assert names[names.index("dicom: barcode pyramid") : names.index("dicom: opens with wsidicom")] == [
        "dicom: barcode pyramid",
        "dicom: uids",
        "dicom: pyramid",
        "dicom: photometric",
        "dicom: frames",
        "dicom: entropy tight",
        "dicom: frame padding",
        "dicom: frame size",
        "dicom: dciodvfy",
    ], names


def test_wsianon_verify_of_dicom_outputs_judges_the_frame_checks_beside_and_in_order(cli, tmp_path, monkeypatch):
    """``wsianon verify`` of DICOM outputs: the frame checks (segments, entropy, padding, size) in
    the frames thread, the report's order the in-line one, and the same verdict."""
    out, _s = verified_dicom_run(cli, tmp_path)
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    where: dict[str, str] = {}
    for mod, name, label in (
        (VD, "check_frame_segments", "segments"),
        (VD.ecs, "check_dicom", "ecs"),
        (VD.sof, "check_dicom", "sof"),
        (VD, "check_pyramid", "pyramid"),
    ):
        real = getattr(mod, name)

        def wrapped(*a, _real=real, _label=label, **k):
            where[_label] = threading.current_thread().name
            return _real(*a, **k)

        monkeypatch.setattr(mod, name, wrapped)
    code, stdout, _err = cli("verify", str(folder), "--json")
    assert code == 0, stdout
    reports = json.loads(stdout)
    for k in ("segments", "ecs", "sof"):
        assert where[k].startswith("wsianon-frames"), where
    assert not where["pyramid"].startswith("wsianon-frames"), where
    names = [c["check"] for c in reports[0]["checks"]]
    assert names[names.index("dicom: uids") : names.index("dicom: dciodvfy") + 1] == [
        "dicom: uids",
        "dicom: pyramid",
        "dicom: photometric",
        "dicom: frame segments",
        "dicom: entropy tight",
        "dicom: frame padding",
        "dicom: frame size",
        "dicom: dciodvfy",
    ], names
    assert all(r["ok"] for r in reports), [c for r in reports for c in r["checks"] if not c["ok"]]
