"""CLI behaviour: usage, exit codes, bad input, unwritable outputs, quarantine."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from wsianon import __version__

from .conftest import run_subprocess, sha256, shared, tree_hashes
from .fixtures.svs_gen import write_svs


def _no_staging_left(out: Path) -> None:
    if out.exists():
        assert not [p for p in out.iterdir() if p.name.startswith(".wsianon-tmp-")]


def test_version_and_help(cli):
    code, out, _ = cli("--version")
    assert code == 0 and __version__ in out
    code, out, _ = cli("run", "--help")
    assert code == 0
    for opt in ("--target", "--label", "--macro", "--dates", "--rename", "--dry-run", "--in-place", "--pseudonyms"):
        assert opt in out
    code, out, _ = cli("--help")
    assert code == 0 and "inspect" in out and "verify" in out


def test_usage_error_exit_2(cli, tmp_path):
    code, _, err = cli("run", tmp_path / "x.svs", "-o", tmp_path / "o", "--label", "bogus")
    assert code == 2


@pytest.fixture
def bad_inputs(tmp_path):
    (tmp_path / "in").mkdir()
    good = write_svs(tmp_path / "in" / "good.svs").path
    data = good.read_bytes()
    truncated = tmp_path / "in" / "truncated.svs"
    truncated.write_bytes(data[: len(data) // 3])
    nontiff = tmp_path / "in" / "notatiff.svs"
    nontiff.write_bytes(b"this is a text file, not a slide\n" * 10)
    empty_dir = tmp_path / "emptydir"
    empty_dir.mkdir()
    (empty_dir / "readme.txt").write_text("no slides here")
    missing = tmp_path / "missing.svs"
    return {"good": good, "truncated": truncated, "nontiff": nontiff, "empty_dir": empty_dir, "missing": missing}


def test_bad_inputs_each_get_one_line_and_batch_continues(tmp_path, bad_inputs):
    unreadable = shared("aperio/openslide-python_unreadable.svs")
    inputs = [bad_inputs["missing"], bad_inputs["empty_dir"], bad_inputs["truncated"], unreadable, bad_inputs["nontiff"], bad_inputs["good"]]
    before = {str(p): sha256(p) for p in inputs if p.is_file()}
    out = tmp_path / "out"
    res = run_subprocess("run", *inputs, "-o", out)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    err_lines = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    expect = {
        bad_inputs["missing"]: "no such file",
        bad_inputs["empty_dir"]: "no slide",
        bad_inputs["truncated"]: "truncated",
        unreadable: "cannot be decoded",
        bad_inputs["nontiff"]: "not a whole slide image",
    }
    for path, reason in expect.items():
        matching = [l for l in err_lines if str(path) in l]
        assert len(matching) == 1, (path, err_lines)
        assert reason in matching[0].lower(), matching[0]
    # the good slide was still processed and verified
    outs = [p for p in out.iterdir() if p.suffix == ".svs"]
    assert len(outs) == 1
    report = json.loads((out / "wsianon-report.json").read_text())
    statuses = sorted(s["status"] for s in report["slides"])
    assert statuses == ["error"] * 5 + ["ok"]
    _no_staging_left(out)
    assert not (tmp_path / "out.quarantine").exists()
    for p, h in before.items():
        assert sha256(Path(p)) == h


@pytest.mark.parametrize("kind", ["file-as-out", "out-under-file"])
def test_unwritable_output(tmp_path, kind):
    fx = write_svs(tmp_path / "s.svs")
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = blocker if kind == "file-as-out" else blocker / "out"
    res = run_subprocess("run", fx.path, "-o", out)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [l for l in res.stderr.splitlines() if "error" in l.lower()]
    assert lines and str(out) in lines[0] or str(blocker) in lines[0]


def test_full_disk_leaves_nothing(tmp_path, monkeypatch, cli):
    fx = write_svs(tmp_path / "s.svs")
    import wsianon.io.plan as planmod

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(planmod, "_copy_file_range", no_space)
    monkeypatch.setattr(planmod, "_os_write", no_space)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", fx.path, "-o", out)
    assert code == 1
    assert "no space left on device" in stderr.lower()
    assert not [p for p in out.iterdir() if p.suffix == ".svs"]
    _no_staging_left(out)


def test_failed_verification_is_quarantined(tmp_path, monkeypatch, cli):
    """A redactor that forgets a field: verification catches it, nothing lands in OUT."""
    from wsianon.converters.aperio import AperioConverter

    fx = write_svs(tmp_path / "s.svs")
    real_plan = AperioConverter.plan

    def leaky_plan(self, inv, ctx):
        plan = real_plan(self, inv, ctx)
        plan.files[0].patches = [p for p in plan.files[0].patches if "ImageDescription" not in p.reason]
        return plan

    monkeypatch.setattr(AperioConverter, "plan", leaky_plan)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", fx.path, "-o", out)
    assert code == 1
    assert not [p for p in out.iterdir() if p.suffix == ".svs"]
    q = tmp_path / "out.quarantine"
    qfiles = list(q.rglob("*.svs"))
    assert len(qfiles) == 1
    findings = json.loads(next(q.rglob("findings.json")).read_text())
    assert findings["ok"] is False and findings["findings"]
    # the findings name fields, never values
    text = json.dumps(findings)
    for v in fx.canaries.values():
        assert v not in text
    report = json.loads((out / "wsianon-report.json").read_text())
    assert report["slides"][0]["status"] == "failed"
    assert "quarantine" in stdout


def test_existing_output_needs_overwrite(tmp_path, cli):
    fx = write_svs(tmp_path / "s.svs")
    assert cli("run", fx.path, "-o", tmp_path / "o")[0] == 0
    # the same command again resumes the job: the slide is already done
    code, out, err = cli("run", fx.path, "-o", tmp_path / "o")
    assert code == 0 and "already done" in err + out
    # without the job manifest, an existing output is never replaced silently
    (tmp_path / "o.wsianon-job.sqlite").unlink()
    code, out, err = cli("run", fx.path, "-o", tmp_path / "o")
    assert code == 1 and "already exists" in err
    assert cli("run", fx.path, "-o", tmp_path / "o", "--overwrite")[0] == 0


def test_detection_by_content_not_extension(tmp_path, cli):
    fx = write_svs(tmp_path / "slide.SVS")
    renamed = tmp_path / "slide_as.tif"
    renamed.write_bytes(fx.path.read_bytes())
    code, out, err = cli("run", fx.path, renamed, "-o", tmp_path / "o")
    assert code == 0, out + err
    assert len([p for p in (tmp_path / "o").iterdir() if p.suffix == ".svs"]) == 2


def test_folder_input_and_workers(tmp_path, cli):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        write_svs(d / f"case{i}.svs")
    (d / "notes.txt").write_text("not a slide")
    before = tree_hashes(d)
    code, out, err = cli("run", d, "-o", tmp_path / "o", "--workers", "2")
    assert code == 0, out + err
    assert len([p for p in (tmp_path / "o").iterdir() if p.suffix == ".svs"]) == 3
    assert tree_hashes(d) == before


def test_generic_tiff_is_refused_with_its_kind(tmp_path, cli):
    import numpy as np
    import tifffile

    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, np.zeros((32, 32), np.uint8), description="patient JOHN")
    code, out, err = cli("run", p, "-o", tmp_path / "o")
    assert code == 1
    assert "not a supported slide format" in err and "--allow-generic" in err


def test_library_warnings_do_not_reach_the_console(tmp_path):
    """pydicom warns about this pyramid's UIDs (quoting values); the CLI keeps such noise off the console."""
    src = shared("dicom/wsi2dcm-cmu-1-small-region")
    res = run_subprocess("run", src, "-o", tmp_path / "o")
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr and "warn" not in res.stderr.lower()
    res = run_subprocess("run", src, "-o", tmp_path / "o2", env={"WSIANON_DEBUG": "1"})
    assert "UserWarning" in res.stderr  # the control: the warning exists and is only shown when debugging
