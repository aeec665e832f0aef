"""A resumed job whose earlier outputs were deleted from OUT processes those slides again.

Before, the manifest alone decided: a slide marked done was counted "already done" even when its
output had been deleted by hand (or OUT emptied), the run exited 0 and the record listed a file
that no longer existed."""

from __future__ import annotations

import json
import shutil

from tests.conftest import small_svs_folder


def _report(out):
    return json.loads((out / "wsianon-report.json").read_text())


def test_deleted_output_is_processed_again(tmp_path, tmp_path_factory, cli):
    src = small_svs_folder(tmp_path_factory, "lost", 2)
    out = tmp_path / "out"
    code, _, e = cli("run", src, "-o", out)
    assert code == 0, e
    outputs = sorted(p.name for p in out.glob("*.svs"))
    assert len(outputs) == 2
    gone = out / outputs[0]
    gone.unlink()

    code, _, e = cli("run", src, "-o", out, "--log", tmp_path / "job.log")
    assert code == 0, e
    assert "1 slide(s) done earlier have outputs missing or changed in OUT: processing them again" in " ".join(e.split())
    assert "1 slide(s) already done" in e  # the other one is left alone
    assert gone.exists()  # the same pseudonym: the output is written again
    assert sorted(p.name for p in out.glob("*.svs")) == outputs
    events = [json.loads(line)["event"] for line in (tmp_path / "job.log").read_text().splitlines()]
    assert events.count("slide") == 1 and "outputs-missing" in events
    code, o, e = cli("certify", "--check", out)
    assert code == 0 and "CONFIRMED" in o + e


def test_emptied_out_is_rebuilt_and_an_intact_one_is_not(tmp_path, tmp_path_factory, cli):
    src = small_svs_folder(tmp_path_factory, "lostall", 2)
    out = tmp_path / "out"
    assert cli("run", src, "-o", out)[0] == 0
    shutil.rmtree(out)
    code, _, e = cli("run", src, "-o", out)
    assert code == 0, e
    assert "2 slide(s) done earlier have outputs missing or changed in OUT" in e
    assert len(list(out.glob("*.svs"))) == 2 and _report(out)["summary"]["ok"] == 2
    # nothing missing now: the next run processes nothing
    code, _, e = cli("run", src, "-o", out)
    assert code == 0 and "missing or changed in OUT" not in e and "2 slide(s) already done, 0 to process" in e


def test_a_dicom_slide_missing_one_instance_or_with_a_changed_size_is_processed_again(tmp_path, tmp_path_factory, cli):
    """The resume checks every file the verification placed (the report entry's ``files``), not
    only the slide's folder: one instance deleted from it, or a file of another size."""
    src = small_svs_folder(tmp_path_factory, "lostdcm", 2)
    out = tmp_path / "out"
    code, _, e = cli("run", "--target", "dicom", src, "-o", out)
    assert code == 0, e
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(folders) == 2
    (first,) = sorted(folders[0].glob("*.dcm"))[:1]
    first.unlink()
    code, _, e = cli("run", "--target", "dicom", src, "-o", out)
    assert code == 0, e
    assert "1 slide(s) done earlier have outputs missing or changed in OUT" in e and first.exists()
    with open(first, "ab") as fh:  # another size: not what was verified
        fh.write(b"\0\0")
    code, _, e = cli("run", "--target", "dicom", src, "-o", out)
    assert code == 0, e
    assert "1 slide(s) done earlier have outputs missing or changed in OUT" in e
    code, o, e = cli("certify", "--check", out)
    assert code == 0 and "CONFIRMED" in o + e


def test_a_kill_after_the_requeue_leaves_a_slide_the_next_run_redoes(tmp_path, tmp_path_factory, cli):
    """kill -9 between marking a slide with missing outputs pending and processing it: the next run
    has no 'ok' row to find missing, yet what is left of the slide's outputs (its folder, the other
    instances) is replaced, not refused as an existing output."""
    import sqlite3

    src = small_svs_folder(tmp_path_factory, "lostkill", 1)
    out = tmp_path / "out"
    assert cli("run", "--target", "dicom", src, "-o", out)[0] == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    (first,) = sorted(folder.glob("*.dcm"))[:1]
    first.unlink()
    db = sqlite3.connect(tmp_path / "out.wsianon-job.sqlite")
    with db:
        db.execute("UPDATE slides SET state='pending'")  # what requeue_lost commits before the kill
    db.close()
    code, _, e = cli("run", "--target", "dicom", src, "-o", out)
    assert code == 0, e
    assert first.exists() and "missing or changed in OUT" not in e
    code, o, e = cli("certify", "--check", out)
    assert code == 0 and "CONFIRMED" in o + e
