"""Red team, round 2: identifiers that reach what wsianon shares or prints through a surface other
than the slide's bytes — a file's extended attributes, a library's message, a file added to OUT
after the run, a private file written over an input.  Each test fails on the code before its fix."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.conftest import REPO, run_subprocess
from tests.fixtures import orthanc as orth
from tests.fixtures.plant_rt import replace_tag
from tests.fixtures.svs_gen import write_svs

NAME = "Doe^Jane"
TOKEN = "RTQX7"  # grep-able: never in a clean output or message


def _key(tmp: Path) -> Path:
    k = tmp / "key"
    if not k.exists():
        k.write_text("ab" * 32)
        k.chmod(0o600)
    return k


def _leaks(text: str) -> bool:
    return TOKEN in text or NAME in text or "Traceback" in text


def _xattrs_supported(folder: Path) -> bool:
    probe = folder / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


# ---------------------------------------------------------------------------
# extended attributes: an in-place output kept the input's; verify did not look


def test_in_place_output_keeps_no_extended_attribute(tmp_path):
    if not _xattrs_supported(tmp_path):
        pytest.skip("this file system has no user extended attributes")
    src = write_svs(tmp_path / "case.svs", levels=1, size=(512, 384)).path
    os.setxattr(src, "user.note", f"{NAME} {TOKEN}-xattr".encode())
    res = run_subprocess("run", "--in-place", src, "--key-file", _key(tmp_path), "--mapping", _private(tmp_path) / "map.csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (out,) = [p for p in tmp_path.iterdir() if p.name.startswith("WSI-") and p.suffix == ".svs"]
    assert os.listxattr(out) == []
    assert not _leaks(res.stdout + res.stderr)


def test_verify_fails_a_file_with_a_foreign_extended_attribute(tmp_path):
    if not _xattrs_supported(tmp_path):
        pytest.skip("this file system has no user extended attributes")
    key = _key(tmp_path)
    (tmp_path / "in").mkdir()
    write_svs(tmp_path / "in" / "case.svs", levels=1, size=(512, 384))
    assert run_subprocess("run", tmp_path / "in", "-o", tmp_path / "out", "--key-file", key).returncode == 0
    (out,) = (tmp_path / "out").glob("*.svs")
    clean = run_subprocess("verify", "--json", out)
    assert clean.returncode == 0, clean.stdout
    os.setxattr(out, f"user.{TOKEN}", NAME.encode())
    res = run_subprocess("verify", "--json", out)
    failed = [c["check"] for r in json.loads(res.stdout) for c in r["checks"] if not c["ok"]]
    assert res.returncode == 1 and failed == ["closed-world: file attributes"]
    assert not _leaks(res.stdout + res.stderr)  # neither the attribute's name nor its value is shown


# ---------------------------------------------------------------------------
# a library's message quoting the slide: a traceback on inspect/verify, a log record on any console


def _ome_tiff(path: Path, tiffdata: str) -> Path:
    import tifffile

    desc = (
        '<?xml version="1.0"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        f'<Image ID="Image:0" Name="label"><Pixels><TiffData {tiffdata}/></Pixels></Image></OME>'
    )
    img = np.zeros((512, 512, 3), np.uint8)
    with tifffile.TiffWriter(path) as tw:
        tw.write(img, tile=(256, 256), compression="jpeg", photometric="rgb", description=desc, metadata=None)
        tw.write(img[::2, ::2], tile=(256, 256), compression="jpeg", photometric="rgb", subfiletype=1, metadata=None)
    return path


def test_inspect_and_verify_never_print_a_parser_message(tmp_path):
    src = _ome_tiff(tmp_path / "ome.tif", f'IFD="{NAME}-{TOKEN}"')
    for cmd in ("inspect", "verify"):
        res = run_subprocess(cmd, "--allow-generic", src)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"error: {src}:"), res.stderr
        assert not _leaks(res.stdout + res.stderr)


def test_ome_plane_count_is_bounded_by_the_file(tmp_path):
    src = _ome_tiff(tmp_path / "ome.tif", 'IFD="1" PlaneCount="100000000000"')
    res = run_subprocess("inspect", "--allow-generic", "--json", src)  # looped over 1e11 IFD numbers before
    assert res.returncode == 0, res.stderr
    assert any(i["kind"] == "label" for i in json.loads(res.stdout)[0]["associated_images"])


@pytest.fixture(scope="module")
def nodata_svs(tmp_path_factory) -> Path:
    """An SVS whose GDAL_NODATA tag holds a name: tifffile logs its parse error, quoting it."""
    d = tmp_path_factory.mktemp("nodata") / "in"
    d.mkdir()
    src = write_svs(d / "case.svs", levels=1, size=(512, 384)).path
    replace_tag(src, 0, 42113, 2, f"{NAME} {TOKEN}-nodata\0".encode())
    return src


def test_library_log_records_never_reach_the_console(nodata_svs, tmp_path):
    res = run_subprocess("run", nodata_svs.parent, "-o", tmp_path / "out", "--key-file", _key(tmp_path))
    assert res.returncode == 0, res.stderr
    assert not _leaks(res.stdout + res.stderr)
    res = run_subprocess("verify", nodata_svs)
    assert not _leaks(res.stdout + res.stderr)


def test_a_worker_process_prints_no_library_log_record(nodata_svs, tmp_path):
    """What a Dask worker runs (``remote_process``) in a fresh interpreter our CLI did not start."""
    code = f"""
from pathlib import Path
from wsianon.converters.base import SlideContext
from wsianon.pipeline.anonymize import Destinations
from wsianon.pipeline.detect import expand_inputs
from wsianon.pipeline.workers import remote_process
from wsianon.profiles.policy import Policy
(src,) = expand_inputs([Path({str(nodata_svs)!r})])
ctx = SlideContext(pseudonym="WSI-0123456789abcdef", key=b"k" * 32, policy=Policy())
o, _ = remote_process(src, ctx, "native", Destinations(Path({str(tmp_path / "out")!r}), Path({str(tmp_path / "q")!r})))
print("STATUS", o.status)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert "STATUS ok" in res.stdout, res.stderr[-2000:]
    assert not _leaks(res.stdout + res.stderr), res.stderr[-2000:]


# ---------------------------------------------------------------------------
# a file added to a verified slide's folder after the run: certified and delivered


@pytest.fixture(scope="module")
def dicom_out(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A DICOM OUT (one small slide) and the job's input and key."""
    tmp = tmp_path_factory.mktemp("dcmout")
    (tmp / "in").mkdir()
    write_svs(tmp / "in" / "case.svs", levels=1, size=(512, 384))
    res = run_subprocess("run", "--target", "dicom", tmp / "in", "-o", tmp / "out", "--key-file", _key(tmp))
    assert res.returncode == 0, res.stderr
    return tmp / "out", tmp / "in", _key(tmp)


def _copy_job(dicom_out, tmp: Path) -> Path:
    out, _, _ = dicom_out
    shutil.copytree(out, tmp / "out")
    for side in out.parent.glob(f"{out.name}.*"):  # the job's manifest and record cache, beside OUT
        if side.is_file():
            shutil.copy(side, tmp / side.name)
    return tmp / "out"


def _add_named_instance(out: Path, patient_id: str) -> Path:
    """A copy of an instance with a name and a new UID in the slide's folder, dated before the
    report (as ``cp -p`` or ``rsync -t`` would leave it)."""
    folder = next(p for p in out.iterdir() if p.is_dir())
    ds = pydicom.dcmread(sorted(folder.glob("*.dcm"))[0])
    ds.PatientName, ds.PatientID = NAME, patient_id
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    extra = folder / "zz-added.dcm"
    ds.save_as(extra)
    old = time.time() - 3600
    os.utime(extra, (old, old))
    return extra


def test_the_record_certifies_only_verified_files(dicom_out, tmp_path):
    from wsianon.pipeline import record

    out = _copy_job(dicom_out, tmp_path)
    extra = _add_named_instance(out, f"{TOKEN}-cert")
    # certify refuses (one line naming the instance) and issues nothing
    res = run_subprocess("certify", out)
    assert res.returncode == 1 and f"{extra.relative_to(out).as_posix()}: not verified by the run" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and TOKEN not in res.stderr.replace(extra.relative_to(out).as_posix(), "")
    record.write_record(out)  # the record written again (as a resumed job does)
    cert = json.loads((out / "wsianon-certificate.json").read_text())
    listed = {o["file"] for o in cert["outputs"]}
    assert listed and extra.relative_to(out).as_posix() not in listed
    check = run_subprocess("certify", "--check", out)
    assert check.returncode == 1 and f"{extra.relative_to(out).as_posix()}: not listed in the certificate" in check.stderr
    html = (out / "wsianon-report.html").read_text()
    assert "not verified by the job" in html and TOKEN not in html


def test_the_record_never_pictures_an_instance_added_after_the_run(dicom_out, tmp_path):
    """A LABEL instance dropped into a verified slide's folder: the HTML report (in OUT) showed it as
    a kept label, rendered from the folder."""
    from wsianon.pipeline import record

    out = _copy_job(dicom_out, tmp_path)
    (tmp_path / "out.wsianon-record.sqlite").unlink()  # the images are rendered again, not taken from the cache
    folder = next(p for p in out.iterdir() if p.is_dir())
    ds = pydicom.dcmread(sorted(folder.glob("*.dcm"))[-1])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.SpecimenLabelInImage = "YES"
    ds.save_as(folder / "zz-label.dcm")
    assert run_subprocess("certify", out).returncode == 1  # refused, nothing written
    record.write_record(out)  # the record written again (as a resumed job does)
    html = (out / "wsianon-report.html").read_text()
    assert "kept: label" not in html and "not rendered: the outputs changed after verification" in html


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    yield from orth.serve(tmp_path_factory)


def _on_store(server: orth.Orthanc, patient_id: str) -> list:
    r = server.post("/tools/find", None, json={"Level": "Instance", "Query": {"PatientID": patient_id}})
    assert r.status_code == 200
    return r.json()


def test_only_verified_files_are_delivered(orthanc, dicom_out, tmp_path):
    out = _copy_job(dicom_out, tmp_path)
    _, inp, key = dicom_out
    dimse = ["--dimse", f"127.0.0.1:{orth.DICOM_PORT}", "--aet", orth.CLIENT_AET, "--aec", orth.AET]

    def wsianon(*args):
        return subprocess.run(orthanc.in_ns([sys.executable, "-m", "wsianon.cli", *map(str, args)]), capture_output=True, text=True, timeout=300, cwd=REPO)

    def uid(f: Path) -> str:
        return pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID

    added = _add_named_instance(out, f"{TOKEN}-push")
    # a verified instance changed after the run, same size and dates: not the file that was verified
    changed = sorted(f for f in out.rglob("*.dcm") if f != added)[-1]
    st = changed.stat()
    data = bytearray(changed.read_bytes())
    data[-1] ^= 0xFF
    changed.write_bytes(bytes(data))
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))
    push = wsianon("push", out, *dimse)
    assert push.returncode == 1 and "2 refused" in push.stderr and "did not verify" in push.stderr, push.stderr
    assert _on_store(orthanc, f"{TOKEN}-push") == [] and orthanc.post("/tools/lookup", uid(changed)).json() == []
    verified = [uid(f) for f in sorted(out.rglob("*.dcm")) if f not in (added, changed)]
    assert verified and all(orthanc.post("/tools/lookup", u).json() for u in verified)  # the verified instances went
    # a resumed run (the same command) delivers what an earlier run verified: the report it
    # rewrites is newer than a file added in between, which was sent before
    added.unlink()
    _add_named_instance(out, f"{TOKEN}-resume")
    again = wsianon("run", "--target", "dicom", inp, "-o", out, "--key-file", key, *dimse)
    assert again.returncode == 1 and "did not verify" in again.stderr, again.stderr
    assert _on_store(orthanc, f"{TOKEN}-resume") == []


# ---------------------------------------------------------------------------
# a private file given the path of an input: the slide was replaced or appended to


@pytest.mark.parametrize("option", ["--mapping", "--log", "--review-sheet"])
def test_a_private_file_never_replaces_an_input(option, tmp_path):
    src = write_svs(tmp_path / "case.svs", levels=1, size=(512, 384)).path
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    res = run_subprocess("run", src, "-o", tmp_path / "out", "--key-file", _key(tmp_path), option, src)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    assert f"error: {src}:" in res.stderr and "Traceback" not in res.stderr


def test_a_pseudonym_map_that_is_not_text_is_one_line(tmp_path):
    m = tmp_path / "map.csv"
    m.write_bytes(b"source,slide\n" + "Doe^Jäne.svs,WSI-1\n".encode("latin-1"))
    res = run_subprocess("verify", "--pseudonyms", m, tmp_path)
    assert res.returncode == 1 and res.stderr.strip() == f"error: {m}: pseudonym map is not UTF-8 text", res.stderr


@pytest.mark.parametrize("text", ["", "source,slide\n", "# exported 2026-12-07\n\n"])
def test_a_pseudonym_map_naming_no_slide_is_refused(text, tmp_path, cli):
    """A map given with --pseudonyms that names nobody (an empty export) was taken as a map of no
    slides: every slide got a keyed pseudonym instead, and nothing said the map was not used
    (stop 42). It is refused before anything is read or written."""
    src = write_svs(tmp_path / "case.svs", levels=1, size=(512, 384)).path
    m = tmp_path / "map.csv"
    m.write_text(text)
    code, _out, err = cli("run", src, "-o", tmp_path / "out", "--pseudonyms", m)
    assert code == 1 and err.strip() == f"error: {m}: pseudonym map lists no slide (empty, or only a header and comments)", err
    assert not (tmp_path / "out").exists()


def test_a_slide_failing_an_overwrite_run_leaves_no_earlier_output(tmp_path):
    """Run with --macro keep, then again with --macro remove --overwrite after the source broke: the
    earlier output (with the macro photo, which may show the label) stayed in OUT under a report
    saying the slide failed and the macro was removed."""
    key = _key(tmp_path)
    (tmp_path / "in").mkdir()
    src = write_svs(tmp_path / "in" / "case.svs", levels=1, size=(512, 384)).path
    out = tmp_path / "out"
    assert run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", key, "--macro", "keep").returncode == 0
    assert list(out.glob("*.svs"))
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    res = run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", key, "--macro", "remove", "--overwrite")
    assert res.returncode == 1
    assert not list(out.glob("*.svs"))
    assert run_subprocess("certify", "--check", out).returncode == 0  # OUT holds what the record certifies


def test_an_existing_log_becomes_private(tmp_path):
    (tmp_path / "in").mkdir()
    write_svs(tmp_path / "in" / "case.svs", levels=1, size=(512, 384))
    log = tmp_path / "job.log"
    log.write_text("")
    log.chmod(0o644)
    res = run_subprocess("run", tmp_path / "in", "-o", tmp_path / "out", "--key-file", _key(tmp_path), "--log", log)
    assert res.returncode == 0, res.stderr
    assert "case.svs" in log.read_text() and log.stat().st_mode & 0o777 == 0o600  # it names the sources


@pytest.mark.parametrize("name", ["wsianon-certificate.pdf", "wsianon-report.html"])
def test_record_files_in_out_are_judged(name, tmp_path):
    """The record's files were trusted by name: a signed or annotated certificate PDF saved over
    the one in OUT, or a report edited there, passed ``verify OUT`` (and the PDF ``certify --check``)."""
    from wsianon.io import pdf

    key = _key(tmp_path)
    (tmp_path / "in").mkdir()
    write_svs(tmp_path / "in" / "case.svs", levels=1, size=(512, 384))
    out = tmp_path / "out"
    assert run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", key).returncode == 0
    assert run_subprocess("verify", out).returncode == 0 and run_subprocess("certify", "--check", out).returncode == 0
    if name.endswith(".pdf"):
        doc = pdf.Document(title="reviewed")
        doc.text(f"Reviewed for patient {NAME} MRN4711 {TOKEN}")
        (out / name).write_bytes(doc.render())
    else:
        html = (out / name).read_text()
        (out / name).write_text(html.replace("</main>", f"<p>{NAME} {TOKEN}</p></main>"))
    res = run_subprocess("verify", "--json", out)
    bad = [(Path(r["path"]).name, [c["check"] for c in r["checks"] if not c["ok"]]) for r in json.loads(res.stdout) if not r["ok"]]
    assert res.returncode == 1 and bad == [(name, ["closed-world: files"])]
    check = run_subprocess("certify", "--check", out)
    assert check.returncode == 1 and f"mismatch: {name}:" in check.stderr
    assert not _leaks(res.stdout + res.stderr + check.stdout + check.stderr)


def test_pdf_content_ignores_how_the_streams_were_compressed():
    """``certify --check`` compares the PDF's content with its rendering: another zlib build may
    compress the pages differently (and so move every offset) without a false mismatch."""
    import re
    import zlib

    from wsianon.io import pdf

    doc = pdf.Document(title="t", footer="f")
    for i in range(120):
        doc.text(f"line {i} of the certificate")
    data = doc.render()

    def recompress(m: re.Match) -> bytes:
        z = zlib.compress(zlib.decompress(m.group(2)), 1)
        return b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(z) + z + b"\nendstream"

    other = re.sub(rb"<< /Length (\d+) /Filter /FlateDecode >>\nstream\n(.*?)\nendstream", recompress, data, flags=re.S)
    assert other != data and pdf.content(other) == pdf.content(data) is not None
    assert pdf.content(data.replace(b"/Title (t)", b"/Title (x)")) not in (None, pdf.content(data))  # same shape, other text
    assert pdf.content(data + b"%extra\n") is None  # anything after the trailer


def test_the_job_manifest_is_never_inside_out(tmp_path):
    """``JobConfig(manifest=...)`` (Python API): the manifest holds the source paths, it was
    accepted inside the shareable OUT."""
    from wsianon.errors import WsianonError
    from wsianon.pipeline.jobs import JobConfig, run_job

    (tmp_path / "in").mkdir()
    write_svs(tmp_path / "in" / "case.svs", levels=1, size=(512, 384))
    out = tmp_path / "out"
    with pytest.raises(WsianonError, match="must be outside the output folder"):
        run_job(JobConfig(inputs=[tmp_path / "in"], out=out, key_file=_key(tmp_path), manifest=out / "job.sqlite"))
    assert not (out / "job.sqlite").exists()


def test_a_slide_context_never_shows_the_project_key():
    """A Dask worker logs a failed task's arguments (``SlideContext`` among them) with their repr."""
    from wsianon.converters.base import SlideContext
    from wsianon.profiles.policy import Policy

    key = bytes(range(32))
    text = repr(SlideContext("WSI-0123456789abcdef", key, Policy()))
    assert "WSI-0123456789abcdef" in text and repr(key) not in text and key.hex() not in text and "key=" not in text


def test_a_folder_of_other_files_is_refused_as_out(tmp_path):
    """``-o`` naming a folder that holds other files (a notes file naming the patient): the run put
    its outputs beside them, said the outputs were verified, and the folder was shared whole."""
    (tmp_path / "in").mkdir()
    write_svs(tmp_path / "in" / "case.svs", levels=1, size=(512, 384))
    out = tmp_path / "share"
    out.mkdir()
    (out / "notes.txt").write_text(f"{NAME} MRN4711 {TOKEN}")
    res = run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", _key(tmp_path))
    assert res.returncode == 1 and res.stderr.startswith(f"error: {out}: the output folder already holds 1 file(s)"), res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and not _leaks(res.stdout + res.stderr)
    # a job's own OUT is resumed as before
    (out / "notes.txt").unlink()
    assert run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", _key(tmp_path)).returncode == 0
    assert run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", _key(tmp_path)).returncode == 0


def test_an_input_inside_out_is_refused(tmp_path):
    """Slides copied into the shared folder and run into it: the source (its name, label and
    metadata) stayed in OUT and the run said every slide verified (exit 0)."""
    key = _key(tmp_path)
    (tmp_path / "in").mkdir()
    write_svs(tmp_path / "in" / "a.svs", levels=1, size=(512, 384))
    out = tmp_path / "out"
    assert run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", key).returncode == 0
    (out / "new").mkdir()
    src = write_svs(out / "new" / "Doe_Jane.svs", levels=1, size=(512, 384)).path
    lst = tmp_path / "list.txt"
    lst.write_text(f"{src}\n")
    for args in ([out / "new"], [src], ["--from-file", lst]):
        res = run_subprocess("run", *args, "-o", out, "--key-file", key)
        assert res.returncode == 1 and "input lies inside the output folder" in res.stderr, res.stderr
    assert len(list(out.glob("WSI-*.svs"))) == 1


def test_a_run_says_when_out_holds_what_it_did_not_verify(tmp_path):
    """A file put into a job's OUT between two runs: the resumed run said every slide verified
    (exit 0) with the file beside the outputs."""
    key = _key(tmp_path)
    (tmp_path / "in").mkdir()
    write_svs(tmp_path / "in" / "a.svs", levels=1, size=(512, 384))
    out = tmp_path / "out"
    assert run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", key).returncode == 0
    (out / "notes.txt").write_text(f"{NAME} {TOKEN}")
    res = run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", key)
    assert res.returncode == 1 and "OUT is NOT ready to share: 1 file(s)" in res.stdout + res.stderr
    assert not _leaks(res.stdout + res.stderr)
    (out / "notes.txt").unlink()
    assert run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", key).returncode == 0


def test_a_pseudonym_map_repeating_the_source_name_is_refused(tmp_path):
    """An identity map (made from the file list by mistake) named the shared output after the
    source, and the verifier accepts the map's names: exit 0 with ``Doe_Jane_S12-4711.svs`` in OUT."""
    (tmp_path / "in").mkdir()
    write_svs(tmp_path / "in" / "Doe_Jane_S12-4711.svs", levels=1, size=(512, 384))
    m = tmp_path / "map.csv"
    m.write_text("source,slide,patient\nDoe_Jane_S12-4711.svs,S12-4711,P-0001\n")
    out = tmp_path / "out"
    res = run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", _key(tmp_path), "--pseudonyms", m)
    assert res.returncode == 1 and "repeats the source's file name" in res.stderr, res.stderr
    assert not [p for p in out.iterdir() if "4711" in p.name]


@pytest.mark.parametrize("option", ["--mapping", "--log", "--review-sheet"])
def test_a_private_file_never_replaces_the_key_or_the_manifest(option, tmp_path):
    """A typo naming the key file (or the manifest) as the mapping, log or review sheet replaced
    the project key (every pseudonym and UID of the project unreproducible) or corrupted the job."""
    key = _key(tmp_path)
    before = key.read_bytes()
    (tmp_path / "in").mkdir()
    write_svs(tmp_path / "in" / "case.svs", levels=1, size=(512, 384))
    out = tmp_path / "out"
    res = run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", key, option, key)
    assert res.returncode != 0 and "name the same file" in res.stderr, res.stderr
    assert key.read_bytes() == before
    assert run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", key).returncode == 0
    manifest = tmp_path / "out.wsianon-job.sqlite"
    head = manifest.read_bytes()[:100]
    res = run_subprocess("run", tmp_path / "in", "-o", out, "--key-file", key, option, manifest)
    assert res.returncode != 0 and "name the same file" in res.stderr, res.stderr
    assert manifest.read_bytes()[:100] == head


def _private(tmp_path):
    """A folder for the in-place run's private mapping and manifest: never the folder of the
    slides it patches (refused there: red team stop 40, F2)."""
    d = tmp_path / "private"
    d.mkdir(exist_ok=True)
    return d
