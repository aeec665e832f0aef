"""``wsianon verify FOLDER`` is closed world over the folder: a file that is neither part of a slide
nor one of the record's own files is NOT CLEAN (the slide checks judge only a slide's files, so a
``notes.txt`` with a name beside them used to pass)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .fixtures.mrxs_gen import make_mrxs
from .fixtures.svs_gen import write_svs

NAME = "Doe^Jane MRN4711"


def _key(tmp_path: Path) -> Path:
    k = tmp_path / "key"
    k.write_text("cd" * 32)
    k.chmod(0o600)
    return k


@pytest.fixture(scope="module")
def outs(tmp_path_factory) -> dict[str, Path]:
    """Two OUTs with their records: native (an SVS and an MRXS) and DICOM (an SVS converted)."""
    from typer.testing import CliRunner

    from wsianon.cli import app

    tmp = tmp_path_factory.mktemp("stray")
    (tmp / "in").mkdir()
    write_svs(tmp / "in" / "a.svs")
    make_mrxs(tmp / "in", "m")
    (tmp / "dcm").mkdir()
    write_svs(tmp / "dcm" / "b.svs")
    for target, src in (("native", tmp / "in"), ("dicom", tmp / "dcm")):
        res = CliRunner().invoke(app, ["run", "--target", target, str(src), "-o", str(tmp / target), "--key-file", str(_key(tmp))], catch_exceptions=False)
        assert res.exit_code == 0, res.stdout
    return {"native": tmp / "native", "dicom": tmp / "dicom"}


def _verify(cli, folder: Path) -> tuple[int, list[dict]]:
    code, stdout, _ = cli("verify", "--json", str(folder))
    return code, json.loads(stdout)


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_an_output_folder_with_its_record_is_clean(cli, outs, target):
    out = outs[target]
    assert {"wsianon-report.json", "wsianon-report.html", "wsianon-certificate.json"} <= {p.name for p in out.iterdir()}
    code, report = _verify(cli, out)
    n = 2 if target == "native" else 1
    assert code == 0 and len(report) == n and all(r["ok"] for r in report), [(r["path"], [c for c in r["checks"] if not c["ok"]]) for r in report]


@pytest.mark.parametrize("where", ["top", "dicom-folder", "mrxs-folder"])
def test_a_stray_file_is_not_clean(cli, outs, where, tmp_path):
    import shutil

    o = tmp_path / "out"
    shutil.copytree(outs["dicom" if where == "dicom-folder" else "native"], o)
    if where == "top":
        folder = o
    elif where == "dicom-folder":
        folder = next(p for p in o.iterdir() if p.is_dir() and any(p.glob("*.dcm")))
    else:
        folder = next(o.glob("*.mrxs")).with_suffix("")
    (folder / "notes.txt").write_text(NAME)
    code, report = _verify(cli, o)
    stray = [r for r in report if Path(r["path"]).name == "notes.txt"]
    assert code == 1 and len(stray) == 1 and not stray[0]["ok"]
    assert [c["check"] for c in stray[0]["checks"] if not c["ok"]] == ["closed-world: files"]
    slides = [r for r in report if Path(r["path"]).name != "notes.txt"]
    assert len(slides) == (1 if where == "dicom-folder" else 2)
    if where != "mrxs-folder":  # (an MRXS folder's own checks may see the file too)
        assert all(r["ok"] for r in slides)
    assert NAME not in json.dumps(report)  # the file is named, its content never


def test_a_slide_linked_into_the_folder_is_no_stray(cli, outs, tmp_path):
    """The folder's files are matched to the slides by what they resolve to: a slide given
    through a symbolic link is the slide, not a stray file.  (The link's target as written is
    judged as a name since red team 17: a relative one here, of wsianon's own names.)"""
    import shutil

    svs = Path(shutil.copy(next(outs["native"].glob("*.svs")), tmp_path))
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / svs.name).symlink_to(Path("..") / svs.name)
    code, report = _verify(cli, tmp_path / "linked")
    assert code == 0 and len(report) == 1 and report[0]["ok"], report
