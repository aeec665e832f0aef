"""``wsianon verify --pseudonyms MAP``: pseudonyms a map chose (``run --pseudonyms``) are not
vocabulary and not keyed, so ``verify`` without the map cannot tell them from an identifier and
fails the output (as it should: fail closed); with the map it accepts them exactly where ``run``'s
own verification did — and still fails a real identifier left beside them."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from .test_dicom_formats import _fixture

SLIDE, PATIENT = "Qwzrt-Slide-0042", "Xkcdv-0042"


def _map(tmp_path: Path, src: Path) -> Path:
    m = tmp_path / "map.csv"
    m.write_text(f"source,slide,patient\n{src},{SLIDE},{PATIENT}\n")
    return m


def _run(cli, tmp_path: Path, target: str, pmap: Path, src: Path) -> Path:
    key = tmp_path / "k"
    if not key.exists():
        assert cli("key", "init", key)[0] == 0
    out = tmp_path / "out"
    code, o, e = cli("run", "--target", target, "--pseudonyms", pmap, src, "-o", out, "--key-file", key)
    assert code == 0, o + e
    return out


def _verify(cli, *args):
    code, out, err = cli("verify", "--json", *map(str, args))
    return code, json.loads(out) if out.strip().startswith("[") else out + err


def _failed(report) -> set[str]:
    return {c["check"] for slide in report for c in slide["checks"] if not c["ok"]}


@pytest.mark.parametrize("fmt", ["svs", "mrxs"])
@pytest.mark.parametrize("target", ["dicom", "native"])
def test_run_verifies_map_pseudonyms_and_verify_accepts_them_only_with_the_map(tmp_path, cli, fmt, target):
    src, _canaries, _root = _fixture(fmt, tmp_path / "in")
    pmap = _map(tmp_path, src)
    out = _run(cli, tmp_path, target, pmap, src)
    # the slide: a DICOM folder, or the native main file (an MRXS's data folder is part of it)
    written = [p for p in out.iterdir() if p.name.startswith(SLIDE) and (p.is_dir() if target == "dicom" else p.is_file())]
    assert len(written) == 1, sorted(p.name for p in out.iterdir())
    if target == "dicom":
        ds = pydicom.dcmread(next(written[0].glob("*.dcm")), stop_before_pixels=True)
        assert ds.PatientID == PATIENT  # the map's value is in the output: the case this is about
    # without the map, a name nobody can tell from an identifier fails the audit (closed world)
    code, report = _verify(cli, *written)
    if target == "dicom":  # PatientID, PatientName
        assert code == 1 and "dicom: text vocabulary" in _failed(report), report
    elif fmt == "mrxs":  # SLIDE_NAME in Slidedat.ini
        assert code == 1 and {"vocabulary", "residual-metadata"} <= _failed(report), report
    else:  # an SVS carries its pseudonym only in its file name, judged since red team 17
        assert code == 1 and _failed(report) == {"names"}, report
    # with it, the same outputs are clean
    code, report = _verify(cli, "--pseudonyms", pmap, *written)
    assert code == 0, report
    assert not _failed(report)


def test_verify_with_the_map_still_fails_an_identifier_beside_the_pseudonym(tmp_path, cli):
    src, _canaries, _root = _fixture("svs", tmp_path / "in")
    pmap = _map(tmp_path, src)
    out = _run(cli, tmp_path, "dicom", pmap, src)
    folder = next(p for p in out.iterdir() if p.name == SLIDE)
    f = next(folder.glob("*.dcm"))
    ds = pydicom.dcmread(f)
    ds.PatientName = "Doe^Jane"  # a name, not the map's pseudonym
    ds.save_as(f)
    code, report = _verify(cli, "--pseudonyms", pmap, folder)
    assert code == 1 and "dicom: text vocabulary" in _failed(report), report
    assert "Doe" not in json.dumps(report) and "Jane" not in json.dumps(report)  # never the value


def test_verify_refuses_an_unreadable_map_in_one_line(tmp_path, cli):
    code, out, err = cli("verify", "--pseudonyms", tmp_path / "missing.csv", tmp_path)
    assert code == 1
    assert "missing.csv" in err and "cannot read pseudonym map" in err and "Traceback" not in err


def test_a_name_is_accepted_whole_and_only_whole():
    from wsianon.verify.vocabulary import unknown_tokens, vocabulary

    plain = vocabulary("mrxs")
    named = plain.with_names({PATIENT, ""})
    assert plain.with_names(()) is plain and named.names == {PATIENT}
    assert unknown_tokens(f"SLIDE_NAME = {PATIENT}", plain)  # not vocabulary without the name
    assert unknown_tokens(f"SLIDE_NAME = {PATIENT}", named) == []
    assert unknown_tokens(f"{PATIENT}/{PATIENT}_1", named) == []
    # inside a longer word or number it is not the name: still judged
    assert unknown_tokens(f"A{PATIENT}", named) and unknown_tokens(f"{PATIENT}7", named)
    # and a word beside it is judged as before
    assert unknown_tokens(f"{PATIENT} Qwzrtson", named) == ["Qwzrtson"]
