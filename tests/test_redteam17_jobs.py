"""Red team B, stop 40 (jobs: what a run may write, and under which stated policy).

* F1 — ``--overwrite`` with other options (what the refusal suggested) processed only the slides
  named this time, swapped the job's policy, and the report and the certificate then stated the
  new policy ("Macro removed", "File names: a keyed pseudonym") over an earlier output named after
  the patient with its macro; ``certify --check`` confirmed it.  Now a run with other options must
  name every slide the job shared (else refused, nothing changed), and what earlier runs shared
  leaves OUT and is made again under the new options.
* F2 — a second job's OUT inside an earlier job's OUT (or its ``--mapping``, ``--log``,
  ``--review-sheet``, ``--quarantine`` there, or ``certify --review-sheet`` there) wrote its
  private files into the certified, shared folder; an ``--in-place`` run started from the slide's
  folder wrote the mapping and the manifest beside the patched slide.  Now refused, nothing written.
* F5 — a ``--pseudonyms`` map naming a slide after one of its own identifiers (its barcode, the
  patient folder it came from) was verified: the guard compared map names with the source's file
  name only, and the verifiers accept map names wherever they appear.  Now the run refuses such an
  entry (naming the map's line, never the value), the verifiers fail it on their own
  (``pseudonym-names``), and a changed map is part of the job's compared options.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fixtures.svs_gen import write_svs


def _svs(path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_svs(path, levels=1, size=(768, 512), **kw)
    return path


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _policy_words(out: Path) -> list[str]:
    return json.loads((out / "wsianon-certificate.json").read_text())["policy"]["in_words"]


# ---------------------------------------------------------------- F1: --overwrite and the policy


def test_overwrite_with_other_options_must_name_every_slide_of_the_job(cli, tmp_path, key):
    a = _svs(tmp_path / "in" / "A" / "Doe_Jane_19790101.svs")
    b = _svs(tmp_path / "in" / "B" / "Roe_Rick_19800202.svs")
    out = tmp_path / "out"
    code, so, se = cli("run", str(a.parent), "-o", str(out), "--key-file", str(key), "--rename", "keep", "--macro", "keep")
    assert code == 0, so + se
    before = {p: (out / p).read_bytes() for p in _listing(out) if (out / p).is_file()}
    # the refusal's old advice: only slide B, default options, --overwrite
    code, so, se = cli("run", str(b.parent), "-o", str(out), "--key-file", str(key), "--overwrite")
    assert code == 1, so + se
    assert "not among this run's inputs" in se
    assert "Doe_Jane" not in se and "Roe_Rick" not in se
    # nothing changed: A's output, its record, under the options it was made with
    assert {p: (out / p).read_bytes() for p in _listing(out) if (out / p).is_file()} == before
    assert any(w.startswith("File names: the source file names were kept") for w in _policy_words(out))
    # a plain re-run without --overwrite is refused too (other options)
    code, so, se = cli("run", str(b.parent), "-o", str(out), "--key-file", str(key))
    assert code == 1 and "other options" in se
    # every slide of the job named again: A is made again under the new options, its earlier
    # output (named after the patient, with its macro) leaves OUT
    code, so, se = cli("run", str(a.parent), str(b.parent), "-o", str(out), "--key-file", str(key), "--overwrite")
    assert code == 0, so + se
    names = [n for n in os.listdir(out) if not n.startswith("wsianon-")]
    assert len(names) == 2 and all(n.startswith("WSI-") for n in names), names
    words = _policy_words(out)
    assert any(w.startswith("File names: a keyed pseudonym") for w in words)
    assert any(w.startswith("Macro") and "removed" in w for w in words)
    code, so, se = cli("certify", "--check", str(out))
    assert code == 0, so + se
    code, so, se = cli("verify", str(out))
    assert code == 0, so + se


def test_policy_switch_withdraws_and_requeues_what_earlier_runs_shared(tmp_path, key):
    """The switch itself (before any slide is made again) leaves no output of the old options in
    OUT and queues every slide again: a run stopped right after it resumes them."""
    from wsianon.pipeline import batch
    from wsianon.pipeline.jobs import JobConfig, run_job
    from wsianon.pipeline.manifest import Manifest, manifest_path
    from wsianon.profiles.policy import Policy

    a = _svs(tmp_path / "in" / "Doe_Jane_19790101.svs")
    out = tmp_path / "out"
    cfg = JobConfig(inputs=[a], out=out, policy=Policy(rename="keep"), key_file=key)
    assert run_job(cfg).exit_code == 0
    assert (out / a.name).exists()

    class Stop(Exception):
        pass

    def stop(self, items, mapping_path):
        raise Stop

    cfg2 = JobConfig(inputs=[a], out=out, policy=Policy(overwrite=True), key_file=key)
    orig = batch._Run.drive
    batch._Run.drive = stop  # type: ignore[method-assign]
    try:
        with pytest.raises(Stop):
            run_job(cfg2)
    finally:
        batch._Run.drive = orig  # type: ignore[method-assign]
    assert not (out / a.name).exists()
    man = Manifest(manifest_path(out))
    try:
        assert [r.state for r in man.rows()] == ["pending"]
    finally:
        man.close()
    # the resume (same new options, no --overwrite) makes it again
    res = run_job(JobConfig(inputs=[a], out=out, policy=Policy(), key_file=key))
    assert res.exit_code == 0
    assert [n for n in os.listdir(out) if not n.startswith("wsianon-")][0].startswith("WSI-")


# ---------------------------------------------------------------- F2: private files, shared folders


@pytest.fixture
def shared_out(cli, tmp_path, key):
    a = _svs(tmp_path / "in" / "A" / "slide1.svs")
    share = tmp_path / "share"
    code, so, se = cli("run", str(a.parent), "-o", str(share), "--key-file", str(key))
    assert code == 0, so + se
    return share


def _second(tmp_path) -> Path:
    return _svs(tmp_path / "in" / "MRN98765432" / "Doe_Jane_19790101.svs")


def test_out_inside_another_jobs_out_is_refused(cli, tmp_path, key, shared_out):
    src = _second(tmp_path)
    before = _listing(tmp_path)
    code, so, se = cli("run", str(src.parent), "-o", str(shared_out / "batch2"), "--key-file", str(key))
    assert code == 1, so + se
    assert "inside another wsianon output folder" in se
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("option,name", [("--mapping", "map.csv"), ("--log", "job.log"), ("--review-sheet", "sheet.html"), ("--quarantine", "q")])
def test_private_file_inside_another_jobs_out_is_refused(cli, tmp_path, key, shared_out, option, name):
    src = _second(tmp_path)
    before = _listing(tmp_path)
    code, so, se = cli("run", str(src.parent), "-o", str(tmp_path / "out3"), "--key-file", str(key), option, str(shared_out / "sub" / name))
    assert code == 1, so + se
    assert "inside a wsianon output folder" in se
    assert _listing(tmp_path) == before


def test_run_api_refuses_private_files_in_another_jobs_out(tmp_path, key, shared_out):
    from wsianon.errors import WsianonError
    from wsianon.pipeline.jobs import JobConfig, run_job
    from wsianon.profiles.policy import Policy

    src = _second(tmp_path)
    before = _listing(tmp_path)
    with pytest.raises(WsianonError, match="inside another wsianon output folder"):
        run_job(JobConfig(inputs=[src], out=shared_out / "b2", policy=Policy(), key_file=key))
    with pytest.raises(WsianonError, match="inside a wsianon output folder"):
        run_job(JobConfig(inputs=[src], out=tmp_path / "o", policy=Policy(), key_file=key, mapping=shared_out / "m.csv"))
    assert _listing(tmp_path) == before


def test_certify_review_sheet_inside_a_shared_out_is_refused(cli, tmp_path, key, shared_out):
    other = tmp_path / "other"
    code, so, se = cli("run", str(_second(tmp_path).parent), "-o", str(other), "--key-file", str(key), "--no-review-sheet")
    assert code == 0, so + se
    before = _listing(tmp_path)
    code, so, se = cli("certify", str(other), "--review-sheet", str(shared_out / "sheet.html"))
    assert code == 1, so + se
    assert _listing(tmp_path) == before


def test_in_place_refuses_its_mapping_beside_the_patched_slide(tmp_path, key, monkeypatch):
    from tests.conftest import run_subprocess

    folder = tmp_path / "to_share"
    src = _svs(folder / "Doe_Jane_19790101.svs")
    before = src.read_bytes()
    r = run_subprocess("run", "--in-place", src.name, "--key-file", str(key), cwd=folder)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "beside the slides --in-place patches" in r.stderr
    assert os.listdir(folder) == [src.name] and src.read_bytes() == before
    # a folder given as input, with the mapping inside it, likewise
    r = run_subprocess("run", "--in-place", str(folder), "--key-file", str(key), "--mapping", str(folder / "sub" / "m.csv"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert os.listdir(folder) == [src.name]


# ---------------------------------------------------------------- F5: a map naming a slide after itself


def _barcoded(tmp_path: Path, folder: str) -> Path:
    return _svs(tmp_path / "in" / folder / "slide1.svs", extra={"Barcode": "S19-4711", "Title": "S19-4711"})


def _map(tmp_path: Path, src: Path, *names: str, name: str = "map.csv") -> Path:
    m = tmp_path / name
    m.write_text("source,slide,patient\n" + f"{src},{','.join(names)}\n")
    return m


# (the source's folder, the map's slide and patient names, the value not to show, the reason's words)
_MAP_CASES = {
    "patient-folder": ("MRN98765432", ("Case001", "MRN98765432"), "MRN98765432", "folder name"),
    "slides-barcode": ("A", ("S19-4711", "P001"), "S19-4711", "identifying values"),
}


@pytest.mark.parametrize("case", sorted(_MAP_CASES))
@pytest.mark.parametrize("target", ["native", "dicom"])
def test_map_name_that_is_the_slides_own_identifier_is_refused(cli, tmp_path, key, target, case):
    """A map naming the slide after its folder (a patient's MRN) or its own barcode is refused,
    naming the map's line, never the value; nothing is written for it."""
    folder, names, value, words = _MAP_CASES[case]
    src = _barcoded(tmp_path, folder)
    m = _map(tmp_path, src, *names)
    out = tmp_path / "out"
    code, so, se = cli("run", "--target", target, str(src.parent), "-o", str(out), "--key-file", str(key), "--pseudonyms", str(m))
    assert code == 1, so + se
    assert "(line 2)" in se and words in se
    assert value not in se.replace(str(src), "")
    assert [n for n in os.listdir(out) if not n.startswith("wsianon-")] == []
    report = json.loads((out / "wsianon-report.json").read_text())
    assert [s["status"] for s in report["slides"]] == ["error"]
    # the shared record lists the slide under a keyed label, never under the refused name
    for f in ("wsianon-report.json", "wsianon-report.html", "wsianon-certificate.json"):
        assert b"S19-4711" not in (out / f).read_bytes(), f


@pytest.mark.parametrize("target", ["native", "dicom"])
def test_verifier_fails_a_map_name_that_is_the_slides_barcode_on_its_own(cli, tmp_path, key, target, monkeypatch):
    """The run's refusal switched off: the verification itself quarantines the slide."""
    from wsianon.pipeline import jobs

    monkeypatch.setattr(jobs, "refuse_map_identifiers", lambda *a: None)
    src = _barcoded(tmp_path, "A")
    m = _map(tmp_path, src, "S19-4711", "P001")
    out = tmp_path / "out"
    code, so, se = cli("run", "--target", target, "--workers", "1", str(src.parent), "-o", str(out), "--key-file", str(key), "--pseudonyms", str(m))
    assert code == 1, so + se
    assert [n for n in os.listdir(out) if not n.startswith("wsianon-")] == []
    (entry,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert entry["status"] == "failed"
    (check,) = [c for c in entry["verification"]["checks"] if c["check"] == "pseudonym-names"]
    assert not check["ok"]
    for f in ("wsianon-report.json", "wsianon-report.html", "wsianon-certificate.json"):
        assert b"S19-4711" not in (out / f).read_bytes(), f


def test_map_names_that_are_no_identifier_of_the_slide_pass(cli, tmp_path, key):
    """No false positive: names unlike the slide's values and folders, in a folder named 'in'."""
    src = _barcoded(tmp_path, "A")
    m = _map(tmp_path, src, "Case001", "P001")
    out = tmp_path / "out"
    code, so, se = cli("run", str(src.parent), "-o", str(out), "--key-file", str(key), "--pseudonyms", str(m))
    assert code == 0, so + se
    assert (out / "Case001.svs").exists()
    (entry,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert [c["ok"] for c in entry["verification"]["checks"] if c["check"] == "pseudonym-names"] == [True]


def test_mapnames_rules():
    from wsianon.verify.mapnames import repeated

    src = Path("/data/in/MRN98765432/case/slide1.svs")
    assert repeated(["MRN98765432"], [], src) == ["MRN98765432"]
    assert repeated(["X-MRN98765432-1"], [], src) == ["X-MRN98765432-1"]
    assert repeated(["s19-4711"], ["S19-4711"], None) == ["s19-4711"]
    assert repeated(["P-S19-4711"], ["S19-4711 "], None) == ["P-S19-4711"]
    assert repeated(["Case001", "P001", "WSI-0123456789abcdef"], ["0123", "in", "S19-4711"], src) == []  # short words, keyed names


def test_a_changed_map_is_a_changed_job(cli, tmp_path, key):
    src = _svs(tmp_path / "in" / "A" / "slide1.svs")
    out = tmp_path / "out"
    code, so, se = cli("run", str(src.parent), "-o", str(out), "--key-file", str(key), "--pseudonyms", str(_map(tmp_path, src, "Case001")))
    assert code == 0, so + se
    fixed = _map(tmp_path, src, "Case002", name="map2.csv")
    code, so, se = cli("run", str(src.parent), "-o", str(out), "--key-file", str(key), "--pseudonyms", str(fixed))
    assert code == 1 and "pseudonym map" in se, so + se
    assert (out / "Case001.svs").exists()
    code, so, se = cli("run", str(src.parent), "-o", str(out), "--key-file", str(key), "--pseudonyms", str(fixed), "--overwrite")
    assert code == 0, so + se
    assert [n for n in os.listdir(out) if not n.startswith("wsianon-")] == ["Case002.svs"]
    # the same map again: resumes as done
    code, so, se = cli("run", str(src.parent), "-o", str(out), "--key-file", str(key), "--pseudonyms", str(fixed))
    assert code == 0 and "already done" in so + se, so + se
