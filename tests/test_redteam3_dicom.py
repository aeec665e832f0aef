"""Red team, round 3, DICOM (rt3dcm): a DICOM slide whose decoding aborts the process (``verify``
and ``run`` decoded DICOM in-process: one hostile instance took every other slide's verdict with
it); a clean slide that plain ``wsianon verify`` failed (several Frames of Reference in one
series); and new hiding places."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pydicom

from .conftest import shared
from .fixtures import dicom_redteam3 as rt

BOXES = "dicom/openslide-python_boxes_0.dcm"
W2D = "dicom/wsi2dcm-cmu-1-small-region"


def _read(p: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(p, stop_before_pixels=True)


def _wsianon(*args, limit: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wsianon.cli", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=rt.limited_memory(limit) if limit else None,
    )


def _report(out: Path) -> dict:
    return json.loads((out / "wsianon-report.json").read_text())


# ---------------------------------------------------------------------------
# 1. a decoder that aborts the process on a DICOM slide


def test_verify_of_a_dicom_slide_that_aborts_the_decoder_judges_the_others(tmp_path, cli):
    """Before: OpenSlide's DICOM reader asked glib for 16.9 GB for the one tile of a 65000x65000
    level; on a machine that cannot give it glib aborted ``wsianon verify`` (exit 134) and the
    other slide got no verdict. Now the DICOM instances are probed in a child first."""
    src = tmp_path / "in" / "a.dcm"
    src.parent.mkdir()
    shutil.copy(shared(BOXES), src)
    out = tmp_path / "out"
    assert cli("run", "--target", "dicom", str(src), "-o", str(out))[0] == 0
    (good,) = [p for p in out.iterdir() if p.is_dir()]
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    vol = next(p for p in sorted(bad.iterdir()) if "volume" in p.name)
    rt.with_huge_tile(vol, vol)
    res = _wsianon("verify", bad, good, limit=8 << 30)
    assert res.returncode == 1 and "Traceback" not in res.stderr and "GLib" not in res.stderr + res.stdout, res.stderr[-500:]
    assert f"CLEAN {good / '0001-volume.dcm'}" in res.stdout.splitlines()
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert err == [f"error: {vol}: image data cannot be decoded (the decoder crashed on it); refused"]


def test_run_of_a_dicom_input_that_aborts_the_decoder_processes_the_others(tmp_path):
    """The same instance as a DICOM input of ``run`` (its frames are passed through, so the
    output would carry the same tile): refused with one line, the other slide is shared."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    bad = rt.with_huge_tile(shared(BOXES), tmp_path / "bad" / "x.dcm")
    shutil.copy(shared(BOXES), tmp_path / "good" / "y.dcm")
    out = tmp_path / "out"
    res = _wsianon("run", "--target", "dicom", tmp_path / "bad", tmp_path / "good", "-o", out, limit=8 << 30)
    assert res.returncode == 1 and "Traceback" not in res.stderr and "GLib" not in res.stderr + res.stdout, res.stderr[-500:]
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert err == [f"error: {bad}: image data cannot be decoded (the decoder crashed on it); refused"]
    assert sorted(s["status"] for s in _report(out)["slides"]) == ["error", "ok"]
