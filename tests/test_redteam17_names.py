"""Red team 17, finding 6: verification never judged names.

``wsianon verify`` said CLEAN (exit 0) for a slide file ``Doe_Jane_19790101.svs``, a DICOM folder
``MRN98765432_Doe_Jane/`` of instances ``S19-4711_0001-volume.dcm``, an empty folder named after
the patient and a symbolic link whose target path held the MRN.  In a run's OUT an empty folder or
a FIFO named after the patient passed ``certify --check`` (CONFIRMED) and a resumed run (exit 0):
both counted regular files and links only.  Now every entry of OUT the certificate does not list
is a mismatch, and ``verify`` judges the names of what it audits (``wsianon/verify/filenames.py``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from tests.fixtures.mrxs_gen import make_mrxs
from tests.fixtures.svs_gen import write_svs
from wsianon.pipeline import record

PATIENT = "Doe_Jane_19790101"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One small SVS source, a native and a DICOM run of it (the same key)."""
    from typer.testing import CliRunner

    from wsianon.cli import app

    root = tmp_path_factory.mktemp("rt17names")
    (root / "in").mkdir()
    write_svs(root / "in" / "a.svs", levels=1, size=(768, 512))
    key = root / "key"
    runner = CliRunner()
    assert runner.invoke(app, ["key", "init", str(key)]).exit_code == 0
    for out, extra in (("out", []), ("outd", ["--target", "dicom"])):
        res = runner.invoke(app, ["run", str(root / "in"), "-o", str(root / out), "--key-file", str(key), "--no-review-sheet", *extra])
        assert res.exit_code == 0, res.stderr
    return root


def _verdicts(cli, *args) -> tuple[int, dict[str, dict]]:
    code, stdout, _ = cli("verify", "--json", *args)
    return code, {Path(r["path"]).name: r for r in json.loads(stdout)}


def _check(r: dict, name: str) -> dict:
    return next(c for c in r["checks"] if c["check"] == name)


def test_verify_judges_file_folder_and_link_names(runs, cli, tmp_path):
    audit = tmp_path / "audit"
    audit.mkdir()
    svs = next((runs / "out").glob("WSI-*.svs"))
    shutil.copy(svs, audit / f"{PATIENT}.svs")
    (audit / "MRN98765432_Doe_Jane").mkdir()
    for f in sorted((runs / "outd").glob("WSI-*/*.dcm")):
        shutil.copy(f, audit / "MRN98765432_Doe_Jane" / f"S19-4711_{f.name}")
    (audit / f"{PATIENT}_DOB").mkdir()
    (tmp_path / "MRN98765432").mkdir()
    shutil.copy(svs, tmp_path / "MRN98765432" / "x.svs")
    (audit / "WSI-0000000000000000.svs").symlink_to(tmp_path / "MRN98765432" / "x.svs")
    code, v = _verdicts(cli, audit)
    assert code == 1
    assert set(v) == {f"{PATIENT}.svs", "S19-4711_0001-volume.dcm", "WSI-0000000000000000.svs", f"{PATIENT}_DOB"}, sorted(v)
    assert not any(r["ok"] for r in v.values())
    # each is refused by its names (the contents are what a clean run wrote)
    assert [c["check"] for c in v[f"{PATIENT}.svs"]["checks"] if not c["ok"]] == ["names"]
    assert "1 file name(s)" in _check(v[f"{PATIENT}.svs"], "names")["detail"]
    dcm = _check(v["S19-4711_0001-volume.dcm"], "names")["detail"]
    n = len(list((runs / "outd").glob("WSI-*/*.dcm")))
    assert f"{n} file name(s)" in dcm and "1 folder name(s)" in dcm, dcm
    assert [c["check"] for c in v["WSI-0000000000000000.svs"]["checks"] if not c["ok"]] == ["names"]
    assert "link target(s)" in _check(v["WSI-0000000000000000.svs"], "names")["detail"]
    # the empty folder: no slide in it (its name is shared with it)
    empty = v[f"{PATIENT}_DOB"]
    assert [c["check"] for c in empty["checks"] if not c["ok"]] == ["closed-world: files"]
    assert "a folder that holds no audited slide" in _check(empty, "closed-world: files")["detail"]
    # the names check's details never name a name
    text = json.dumps([c for r in v.values() for c in r["checks"] if c["check"] in ("names", "closed-world: files")])
    for word in ("Doe", "Jane", "1979", "98765432", "4711"):
        assert word not in text


def test_verify_judges_names_below_the_given_path_only(runs, cli, tmp_path):
    """The folder given to verify is the user's (not judged); what lies below it is shared."""
    given = tmp_path / f"{PATIENT}_share"
    shutil.copytree(runs / "out", given)
    code, v = _verdicts(cli, given)
    assert code == 0 and all(r["ok"] for r in v.values()), v
    assert all(_check(r, "names")["ok"] for r in v.values())
    code, v = _verdicts(cli, next(given.glob("WSI-*.svs")))
    assert code == 0
    (given / "Case_98765432").mkdir()
    shutil.move(next(given.glob("WSI-*.svs")), given / "Case_98765432")
    code, v = _verdicts(cli, given)
    assert code == 1 and not _check(next(iter(v.values())), "names")["ok"]


def test_own_outputs_pass_the_name_check(runs, cli, tmp_path):
    """wsianon's own names: pseudonyms, DICOM instances, MRXS members, the record files."""
    from wsianon.verify import filenames, vocabulary

    make_mrxs(tmp_path / "in", "MRXS-CASE-0006", images=2, levels=1)
    code, _, err = cli("run", tmp_path / "in", "-o", tmp_path / "out", "--key-file", runs / "key", "--no-review-sheet")
    assert code == 0, err
    for out in (runs / "out", runs / "outd", tmp_path / "out"):
        code, v = _verdicts(cli, out)
        assert code == 0 and v and all(r["ok"] for r in v.values()), (out, v)
        assert all(_check(r, "names")["ok"] for r in v.values())
    vocab = vocabulary.vocabulary("mrxs")
    for name, parent in (
        ("WSI-0123456789abcdef", ""),
        ("WSI-0123456789abcdef.mrxs", ""),
        ("Data0012.dat", "WSI-0123456789abcdef"),
        ("Index.dat", "x"),
        ("Slidedat.ini", "x"),
        ("0004-thumbnail.dcm", ""),
        ("wsianon-report.json", ""),
        ("0001.html", "wsianon-report-cards"),
        ("slide.svs", ""),
    ):
        assert filenames.name_ok(name, vocab, parent), name
    for name in ("Doe_Jane.svs", "19790101.svs", "S19-4711", "12.03.79", "0001.html", "WSI-0123456789ABCDEF.svs", "0001-volume-Doe.dcm"):
        assert not filenames.name_ok(name, vocab), name


def test_rename_keep_outputs_need_verify_rename_keep(runs, cli, tmp_path):
    """``run --rename keep`` keeps the source's name on request: ``verify`` judges it unless
    given the same option; any other name is judged either way."""
    src = tmp_path / "in" / f"{PATIENT}.svs"
    src.parent.mkdir()
    write_svs(src, levels=1, size=(768, 512))
    out = tmp_path / "out"
    code, _, err = cli("run", src, "-o", out, "--key-file", runs / "key", "--no-review-sheet", "--rename", "keep")
    assert code == 0, err
    assert (out / f"{PATIENT}.svs").is_file()
    code, v = _verdicts(cli, out)
    assert code == 1 and [c["check"] for c in v[f"{PATIENT}.svs"]["checks"] if not c["ok"]] == ["names"]
    code, v = _verdicts(cli, out, "--rename", "keep")
    assert code == 0 and _check(v[f"{PATIENT}.svs"], "names")["ok"], v
    (out / "MRN98765432").mkdir()
    shutil.move(out / f"{PATIENT}.svs", out / "MRN98765432")
    code, v = _verdicts(cli, out, "--rename", "keep")
    assert code == 1 and not _check(v[f"{PATIENT}.svs"], "names")["ok"]


def test_pseudonym_map_names_are_accepted_with_the_map(runs, cli, tmp_path):
    src = tmp_path / "in" / "a.svs"
    src.parent.mkdir()
    write_svs(src, levels=1, size=(768, 512))
    mapping = tmp_path / "map.csv"
    with mapping.open("w", newline="") as fh:
        csv.writer(fh).writerows([["source", "slide", "patient"], ["a.svs", "TRIAL-7-S20240117", "TRIAL-7-P0042"]])
    out = tmp_path / "out"
    code, _, err = cli("run", src, "-o", out, "--key-file", runs / "key", "--no-review-sheet", "--pseudonyms", mapping)
    assert code == 0, err
    assert (out / "TRIAL-7-S20240117.svs").is_file()
    code, v = _verdicts(cli, out, "--pseudonyms", mapping)
    assert code == 0 and _check(v["TRIAL-7-S20240117.svs"], "names")["ok"], v
    shutil.move(out / "TRIAL-7-S20240117.svs", out / "TRIAL-7-S20240117_19790101.svs")
    code, v = _verdicts(cli, out, "--pseudonyms", mapping)
    assert code == 1 and not _check(v["TRIAL-7-S20240117_19790101.svs"], "names")["ok"]


def _copy_out(runs: Path, tmp_path: Path, which: str = "out") -> Path:
    out = tmp_path / which
    shutil.copytree(runs / which, out, symlinks=True)
    return out


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_certify_check_and_resume_notice_every_entry(runs, cli, tmp_path, target):
    """An empty folder, a FIFO, a socket and a link to a folder are entries of OUT the certificate
    does not list: ``certify --check`` names each, a resumed run says OUT is not ready (exit 1)."""
    out = tmp_path / "out"
    args = ["run", runs / "in", "-o", out, "--key-file", runs / "key", "--no-review-sheet", "--target", target]
    code, _, err = cli(*args)
    assert code == 0, err
    assert cli("certify", "--check", out)[0] == 0 and record.unlisted_files(out) == []
    (out / PATIENT).mkdir()
    os.mkfifo(out / f"{PATIENT}.svs")
    (tmp_path / "elsewhere").mkdir()
    (out / "MRN98765432").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(out / "S19-4711"))
    except OSError:  # (a path too long for a socket: the others say it)
        sock.close()
        sock = None
    expect = {f"{PATIENT}/", f"{PATIENT}.svs", "MRN98765432"} | ({"S19-4711"} if sock else set())
    try:
        assert set(record.unlisted_files(out)) == expect
        code, _, err = cli("certify", "--check", out)
        assert code == 1 and "NOT CONFIRMED" in err
        for rel in expect:
            assert f"{rel}: not listed in the certificate" in err, (rel, err)
        code, stdout, err = cli(*args)  # the same job again: nothing to do, and OUT is not ready to share
        assert code == 1 and "NOT ready to share" in stdout + err, (stdout, err)
    finally:
        if sock:
            sock.close()


def test_certify_check_refuses_a_link_at_a_listed_name(runs, cli, tmp_path):
    out = _copy_out(runs, tmp_path)
    svs = next(out.glob("WSI-*.svs"))
    real = out / "wsianon-real.bin"
    svs.rename(real)
    svs.symlink_to(real.name)  # inside OUT, the same bytes
    code, _, err = cli("certify", "--check", out)
    assert code == 1 and f"{svs.name}: a symbolic link" in err, err
    assert svs.name in record.unlisted_files(out)
