"""Red team 17, finding 6: verification never judged names.

``wsianon verify`` said CLEAN (exit 0) for a slide file ``Doe_Jane_19790101.svs``, a DICOM folder
``MRN98765432_Doe_Jane/`` of instances ``S19-4711_0001-volume.dcm``, an empty folder named after
the patient and a symbolic link whose target path held the MRN.  In a run's OUT an empty folder or
a FIFO named after the patient passed ``certify --check`` (CONFIRMED) and a resumed run (exit 0):
both counted regular files and links only.  Now every entry of OUT the certificate does not list
is a mismatch, and ``verify`` judges the names of what it audits (``wsianon/verify/filenames.py``).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

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
