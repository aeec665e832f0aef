"""Hardening (issue 12): hostile names and files, journals, in-place refusals, the byte
scanner on long values, dry-run refusals.  Each test reproduces a failure that was seen."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from wsianon.io.safetext import os_reason, plain_text, redact_paths, safe_text

from .conftest import run_subprocess, sha256, shared
from .fixtures.svs_gen import write_svs


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    """In-place runs write their mapping into the working directory: keep it out of the repository,
    and out of the folder of the slides they patch (refused there: red team stop 40, F2)."""
    (tmp_path / "cwd").mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path / "cwd")


def _report(out: Path) -> dict:
    return json.loads((out / "wsianon-report.json").read_text())


# ---------------------------------------------------------------------------
# safe console text


def test_safe_text_escapes_controls_markup_and_undecodable_bytes():
    from io import StringIO

    from rich.console import Console

    nasty = "a\x1b[2J\x1b]0;t\x07\r\nOK       x verified\u202egpj.svs [/x] [bold]b[/bold] tail\\"
    s = safe_text(nasty)
    assert "\x1b" not in s and "\n" not in s and "\r" not in s and "\x07" not in s and "\u202e" not in s
    assert "\\x1b" in s and "\\x0a" in s and "\\u202e" in s
    # printed through a markup console it shows the text literally (escaped controls, brackets kept)
    c = Console(file=StringIO(), width=500, color_system=None)
    c.print(f"[red]error:[/red] {s}", highlight=False, soft_wrap=True)
    shown = c.file.getvalue()
    assert shown == f"error: {plain_text(nasty)}\n"
    assert "[/x] [bold]b[/bold]" in shown
    # a non-UTF-8 file name (surrogateescape) prints as \xNN instead of crashing the encoder
    name = os.fsdecode(b"caf\xe9.svs")
    assert safe_text(name) == "caf\\xe9.svs"
    safe_text(name).encode("utf-8")
    # OSError wording never carries the file name
    exc = OSError(2, "No such file or directory", "/data/Doe^Jane/x.svs")
    assert os_reason(exc) == "No such file or directory" and "Doe" not in os_reason(OSError("custom /Doe^Jane"))
    assert redact_paths("cannot open /data/Doe^Jane/x.svs (x.svs)", [Path("/data/Doe^Jane/x.svs")]) == "cannot open <source> (<source>)"


@pytest.fixture
def markup_dir(tmp_path):
    d = tmp_path / "[/x] [bold]Doe[/bold]"  # "[" / "x] [bold]Doe[" / "bold]"
    d.mkdir(parents=True)
    good = write_svs(d / "slide [red].svs").path
    bad = d / "[red]broken [i].svs"
    bad.write_bytes(good.read_bytes()[:3000])
    return d, good, bad


def test_markup_in_paths_run_inspect_verify(markup_dir, tmp_path, cli):
    d, good, bad = markup_dir
    out = tmp_path / "o[/o]"
    code, stdout, stderr = cli("run", good, bad, "-o", out)
    assert code == 1  # the broken one fails, the good one is anonymized
    assert f"error: {bad}: " in stderr  # the path printed literally, one line
    assert sorted(s["status"] for s in _report(out)["slides"]) == ["error", "ok"]
    assert f"outputs: {out}" in stdout
    code, stdout, stderr = cli("inspect", good, bad)
    # the whole path on one line, however long (a table title wrapped it at the console's width)
    assert code == 1 and f"{good} — " in stdout and f"error: {bad}: " in stderr, stdout
    produced = next(out.glob("*.svs"))
    code, stdout, stderr = cli("verify", produced, "--source", good)
    assert code == 0, stdout + stderr
    code, stdout, stderr = cli("verify", good)
    assert code == 1 and f"NOT CLEAN {good}" in stdout


def test_control_characters_in_names_are_escaped(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    fake = "x\x1b[2K\rOK       WSI-0000000000000000 (aperio) -> fake.svs  verified: 9 of 9 checks\n.svs"
    good = write_svs(d / fake).path
    broken = d / "y\nOK  verified\x1b[0m.svs"
    broken.write_bytes(b"not a slide at all" * 10)
    res = run_subprocess("run", good, broken, "--dry-run")
    text = res.stdout + res.stderr
    assert "\x1b" not in text and "\r" not in text
    # no line of output starts with a fake status taken from a file name
    lines = text.splitlines()
    assert not [l for l in lines if l.startswith("OK")], lines
    assert sum("\\x1b[2K\\x0dOK" in l for l in lines) == 1  # the dry-run line names the source, escaped
    err = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and "y\\x0aOK  verified\\x1b[0m.svs" in err[0]
    assert res.returncode == 1 and "Traceback" not in text


# ---------------------------------------------------------------------------
# report reasons come from our vocabulary, never from a library's message


def test_report_never_quotes_library_messages_or_source_paths(tmp_path):
    patient = "Doe^Jane_19700101"
    d = tmp_path / patient
    d.mkdir()
    unreadable = d / f"{patient}.svs"
    shutil.copy(shared("aperio/openslide-python_unreadable.svs"), unreadable)
    # an MRXS whose Slidedat.ini names a Windows path with the patient's name as data file
    from .fixtures.mrxs_gen import make_mrxs

    make_mrxs(d, "CASE-1")
    ini = d / "CASE-1" / "Slidedat.ini"
    ini.write_text(ini.read_text().replace("FILE_0 = Data0000.dat", f"FILE_0 = D:\\Scans\\{patient}\\Data0000.dat"))
    out = tmp_path / "out"
    res = run_subprocess("run", unreadable, d / "CASE-1.mrxs", "-o", out)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    report = (out / "wsianon-report.json").read_text()
    assert "Doe" not in report and str(tmp_path) not in report and "Scans" not in report
    errs = [s["error"] for s in json.loads(report)["slides"]]
    assert any("cannot be decoded" in e for e in errs) and any("leaves the slide folder" in e for e in errs), errs
    # the console still names the source (that is where paths belong)
    assert str(unreadable) in res.stderr


# ---------------------------------------------------------------------------
# FIFOs and other non-regular inputs


def test_fifo_inputs_never_block(tmp_path):
    fifo = tmp_path / "x.svs"
    os.mkfifo(fifo)
    d = tmp_path / "batch"
    d.mkdir()
    os.mkfifo(d / "stall.svs")
    write_svs(d / "good.svs")
    res = run_subprocess("run", fifo, d, "-o", tmp_path / "o")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    err = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert err == [f"error: {fifo}: is a FIFO, not a regular file: refused"]
    assert sorted(s["status"] for s in _report(tmp_path / "o")["slides"]) == ["error", "ok"]
    for cmd in (["inspect", fifo], ["verify", fifo], ["verify", d / "good.svs", "--source", fifo]):
        res = run_subprocess(*cmd)
        assert res.returncode == 1 and "is a FIFO, not a regular file" in res.stderr, (cmd, res.stderr)


def test_fifo_inside_mrxs_folder_is_refused(tmp_path):
    from .fixtures.mrxs_gen import make_mrxs

    make_mrxs(tmp_path, "CASE-2")
    data = tmp_path / "CASE-2" / "Data0001.dat"
    data.unlink()
    os.mkfifo(data)
    res = run_subprocess("run", tmp_path / "CASE-2.mrxs", "-o", tmp_path / "o")
    assert res.returncode == 1 and "not a regular file" in res.stderr and "Traceback" not in res.stderr


# ---------------------------------------------------------------------------
# journals


@pytest.fixture
def slide(tmp_path):
    return write_svs(tmp_path / "s.svs").path


def _journal(p: Path) -> Path:
    return p.with_name(p.name + ".wsianon-journal")


@pytest.mark.parametrize(
    "content",
    [b'{"size": 5, "regions": []}', b"", b'{"format": "wsianon-journal", "version": 2, "na'],
    ids=["forged-size", "empty", "truncated"],
)
def test_untrusted_journal_is_refused_then_discarded(slide, cli, content):
    before = sha256(slide)
    _journal(slide).write_bytes(content)
    code, out, err = cli("rollback", slide)
    assert code == 1 and sha256(slide) == before
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {slide}: journal is damaged") and "--discard" in lines[0]
    # run --in-place refuses while the journal exists, with the way out
    code, out, err = cli("run", "--in-place", slide)
    assert code == 1 and "rollback" in err and sha256(slide) == before
    code, out, err = cli("rollback", "--discard", slide)
    assert code == 0 and not _journal(slide).exists() and sha256(slide) == before
    # the refused attempt is a failed slide of the job: a plain re-run leaves it alone and says how to retry
    code, out, err = cli("run", "--in-place", slide)
    assert code == 1 and "--retry-failed" in err and sha256(slide) == before
    code, out, err = cli("run", "--in-place", "--retry-failed", slide)
    assert code == 0, err


def _interrupted(slide: Path) -> bytes:
    """Patch ``slide`` in place and keep the journal (as an interrupted run leaves it)."""
    from wsianon.io.plan import FilePlan, Patch, apply_in_place

    orig = slide.read_bytes()
    apply_in_place(FilePlan("s.svs", slide, [Patch(8, 4, b"XXXX", "t"), Patch(100, 6, None, "t")], append=b"TAIL"), slide, keep_journal=True)
    assert slide.read_bytes() != orig
    return orig


def test_journal_restores_its_own_file(slide, cli):
    orig = _interrupted(slide)
    j = json.loads(_journal(slide).read_text())
    st = slide.stat()
    assert (j["dev"], j["ino"], j["size"]) == (st.st_dev, st.st_ino, len(orig))
    assert all(len(r["old_sha256"]) == 64 and len(r["new_sha256"]) == 64 for r in j["regions"])
    assert oct(_journal(slide).stat().st_mode & 0o777) == "0o600"
    code, out, err = cli("rollback", slide)
    assert code == 0 and slide.read_bytes() == orig and not _journal(slide).exists()


@pytest.mark.parametrize("how", ["other-inode", "bytes-changed", "size-changed", "edited-journal"])
def test_journal_not_matching_the_file_is_refused(slide, cli, how):
    _interrupted(slide)
    if how == "other-inode":  # the same content, but another file (restored from a copy)
        tmp = slide.with_name("copy")
        shutil.copy(slide, tmp)
        os.replace(tmp, slide)
    elif how == "bytes-changed":
        with open(slide, "r+b") as fh:
            fh.seek(8)
            fh.write(b"YYYY")
    elif how == "size-changed":
        with open(slide, "ab") as fh:
            fh.write(b"more")
    else:
        j = json.loads(_journal(slide).read_text())
        j["size"] = 5
        _journal(slide).write_text(json.dumps(j))
    before = sha256(slide)
    code, out, err = cli("rollback", slide)
    assert code == 1 and sha256(slide) == before and _journal(slide).exists()
    assert len(err.strip().splitlines()) == 1 and "nothing was changed" in err


# ---------------------------------------------------------------------------
# in-place refusals


def test_in_place_refuses_when_the_pseudonym_name_exists(slide, cli):
    from wsianon.pipeline.keys import load_or_create_key, slide_pseudonym

    name = slide_pseudonym(load_or_create_key(None), slide) + ".svs"
    other = slide.with_name(name)
    other.write_bytes(b"somebody else's file")
    before = sha256(slide)
    code, out, err = cli("run", "--in-place", "--pseudonym-from", "path", slide)
    assert code == 1 and "already exists" in err
    assert sha256(slide) == before and other.read_bytes() == b"somebody else's file"
    assert not _journal(slide).exists()
    # --dry-run says the same before anything is tried
    code, out, err = cli("run", "--in-place", "--dry-run", "--pseudonym-from", "path", slide)
    assert code == 1 and "already exists" in err


def test_in_place_name_appearing_during_the_run_rolls_back(slide, cli, monkeypatch):
    import wsianon.pipeline.anonymize as anon
    from wsianon.pipeline.keys import load_or_create_key, slide_pseudonym

    other = slide.with_name(slide_pseudonym(load_or_create_key(None), slide) + ".svs")
    real_verify = anon.verify_native

    def verify_then_race(*a, **k):
        v = real_verify(*a, **k)
        other.write_bytes(b"raced")
        return v

    monkeypatch.setattr(anon, "verify_native", verify_then_race)
    before = sha256(slide)
    code, out, err = cli("run", "--in-place", "--pseudonym-from", "path", slide)
    assert code == 1 and "already exists" in err
    assert sha256(slide) == before and other.read_bytes() == b"raced" and not _journal(slide).exists()


def test_in_place_through_a_symlink_or_hard_link_is_refused(slide, tmp_path, cli):
    link = tmp_path / "Doe^Jane.svs"
    link.symlink_to(slide)
    before = sha256(slide)
    code, out, err = cli("run", "--in-place", link)
    assert code == 1 and "symbolic link" in err
    assert sha256(slide) == before and slide.exists() and link.is_symlink()
    hard = tmp_path / "Doe^Jane-2.svs"
    os.link(slide, hard)
    code, out, err = cli("run", "--in-place", hard)
    assert code == 1 and "hard links" in err and sha256(slide) == before


# ---------------------------------------------------------------------------
# byte scanner on values harvested from a QPTIFF


def test_allow_generic_qptiff_with_long_odd_values(tmp_path, cli):
    from .fixtures.native_helpers import scan_for
    from .fixtures.qptiff_gen import make_qptiff

    fx = make_qptiff(tmp_path / "scan.qptiff")
    out = tmp_path / "o"
    code, stdout, stderr = cli("run", "--allow-generic", fx.path, "-o", out)
    slides = _report(out)["slides"]
    assert code == 0 and slides[0]["status"] == "ok", (slides[0]["error"], slides[0]["notes"])
    produced = next(p for p in out.iterdir() if p.suffix == ".tif")
    assert scan_for(produced, {k: v[:200] for k, v in fx.canaries.items()}) == []


def test_scanner_falls_back_per_pattern(tmp_path, monkeypatch):
    import wsianon.io.scan as scan

    if scan._hs is None:
        pytest.skip("hyperscan is not installed on this platform (the regex engine is the only engine)")
    long_value = "".join(chr(33 + (i * 7919) % 90) for i in range(6000))
    monkeypatch.setattr(scan, "MAX_PATTERN", 10**6)  # let a pattern reach hyperscan's length limit
    sc = scan.Scanner([scan.Canary("long", long_value), scan.Canary("short", "Doe^Jane")])
    assert sc.engine == "hyperscan" and sc._fb_ci is not None  # the long one fell back, the short one did not
    f = tmp_path / "blob"
    f.write_bytes(os.urandom(3000) + long_value.encode() + b"--" + "doe^jane".encode() + os.urandom(50))
    found = {x.canary for x in sc.scan_file(f)}
    assert found == {"long", "short"}


# ---------------------------------------------------------------------------
# dry-run


def test_dry_run_applies_the_refusals_and_names_the_source(tmp_path, cli):
    good = write_svs(tmp_path / "good.svs").path
    unreadable = tmp_path / "u.svs"
    shutil.copy(shared("aperio/openslide-python_unreadable.svs"), unreadable)
    code, out, err = cli("run", "--dry-run", good, unreadable)
    assert code == 1
    assert f"error: {unreadable}: image data cannot be decoded" in err
    dry = [l for l in out.splitlines() + err.splitlines() if l.startswith("DRY-RUN")]
    assert len(dry) == 1 and dry[0].endswith(f"<- {good}")
    # an output that exists is refused by the real run, so by the dry run too
    o = tmp_path / "o"
    assert cli("run", good, "-o", o)[0] == 0
    code, out, err = cli("run", "--dry-run", good, "-o", o)
    assert code == 1 and "already exists" in err
    assert cli("run", "--dry-run", good, "-o", o, "--overwrite")[0] == 0


def test_help_shows_flags_without_a_value(cli):
    code, out, _ = cli("run", "--help")
    line = next(l for l in out.splitlines() if "--dry-run" in l)
    assert "<bool>" not in line.lower() and "boolean" not in line.lower() and "text" not in line.lower()
    code, _, err = cli("run", "--dry-run", "--help")
    assert code == 0


# ---------------------------------------------------------------------------
# decoders that abort the process (found by tests/test_fuzz.py)


def _overflow_tile_byte_counts(path: Path) -> None:
    """Point the last IFD's TileByteCounts (tag 325) value field at 2**40 (BigTIFF)."""
    import struct

    from .test_fuzz import _ifds

    data = bytearray(path.read_bytes())
    bo, big, ifds = _ifds(bytes(data))
    assert big
    for ifd in reversed(ifds):
        for e in ifd["entries"]:
            if struct.unpack(bo + "H", data[e : e + 2])[0] == 325:
                struct.pack_into(bo + "Q", data, e + 12, 1 << 40)
                path.write_bytes(bytes(data))
                return
    raise AssertionError("no TileByteCounts")


def test_byte_count_overflow_is_refused_not_an_abort(tmp_path):
    from .fixtures.bif_gen import make_bif

    (tmp_path / "in").mkdir()
    src = make_bif(tmp_path / "in" / "case.bif").path
    _overflow_tile_byte_counts(src)
    good = write_svs(tmp_path / "in" / "good.svs").path
    out = tmp_path / "o"
    res = run_subprocess("run", src, good, "-o", out)
    # before: glib aborted the whole process ("failed to allocate 1099511627776 bytes"), no report
    assert res.returncode == 1 and "Traceback" not in res.stderr and "GLib" not in res.stderr
    err = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and str(src) in err[0] and "beyond the end of the file" in err[0]
    assert sorted(s["status"] for s in _report(out)["slides"]) == ["error", "ok"]


def test_decoder_crash_or_hang_in_the_probe_refuses_only_that_slide(tmp_path, monkeypatch):
    import wsianon.pipeline.preflight as pf

    src = write_svs(tmp_path / "s.svs").path
    monkeypatch.setattr(pf, "_probe", lambda path: os.abort())  # what glib does on a huge allocation
    from wsianon.errors import CorruptInput

    with pytest.raises(CorruptInput, match="decoder crashed"):
        pf.check_decodes(src)
    import time

    monkeypatch.setattr(pf, "_probe", lambda path: time.sleep(60))
    with pytest.raises(CorruptInput, match="did not finish"):
        pf.check_decodes(src, timeout=1)
    monkeypatch.undo()
    pf.check_decodes(src)  # the real probe passes on a good slide


def test_no_exception_text_is_interpolated_into_messages():
    """Report and console reasons come from our vocabulary: no f-string in wsianon/ quotes a
    caught exception (``{exc}``, ``{str(exc)}``, ``{exc.strerror or exc}``); ``type(exc).__name__``
    and ``os_reason(exc)`` are the allowed ways to name it.  (Guards merges from other branches.)"""
    import ast

    root = Path(__file__).resolve().parent.parent / "wsianon"
    allowed = {("pipeline/keys.py", "load_or_create_key")}  # the key file's own error, console only, before any report
    bad = []
    for py in sorted(root.rglob("*.py")):
        tree = ast.parse(py.read_text())
        funcs = {}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for n in ast.walk(fn):
                    funcs.setdefault(id(n), fn.name)
        for h in ast.walk(tree):
            if not isinstance(h, ast.ExceptHandler) or not h.name:
                continue
            for node in ast.walk(h):
                if not isinstance(node, ast.FormattedValue):
                    continue
                v = node.value
                operands = v.values if isinstance(v, ast.BoolOp) else [v]
                for o in operands:
                    if isinstance(o, ast.Call) and isinstance(o.func, ast.Name) and o.func.id in ("str", "repr") and o.args:
                        o = o.args[0]
                    if isinstance(o, ast.Subscript):
                        o = o.value
                    if isinstance(o, ast.Call) and isinstance(o.func, ast.Name) and o.func.id in ("str", "repr") and o.args:
                        o = o.args[0]
                    if isinstance(o, ast.Name) and o.id == h.name:
                        where = (str(py.relative_to(root)), funcs.get(id(node), ""))
                        if where not in allowed:
                            bad.append(f"{where[0]}:{node.lineno} ({where[1]})")
    assert not bad, bad


def test_sealed_but_malformed_journal_is_refused(slide, cli):
    """A journal whose checksum was recomputed after editing (the seal is no secret) is still checked field by field."""
    from wsianon.io import journal as jmod

    _interrupted(slide)
    j = json.loads(_journal(slide).read_text())
    j.pop("seal")
    del j["regions"][0]["new_sha256"]
    j["seal"] = jmod._seal(j)
    _journal(slide).write_text(json.dumps(j))
    before = sha256(slide)
    code, out, err = cli("rollback", slide)
    assert code == 1 and "journal is damaged" in err and sha256(slide) == before


def test_dry_run_applies_the_dicom_route_refusals(tmp_path, cli):
    pathml = shared("dicom/pathml_small_dicom.dcm")
    no_mpp = shared("aperio/histolab_tcga-cr-7395-01a-01-ts1.svs")
    code, out, err = cli("run", "--dry-run", pathml)
    assert code == 1 and f"error: {pathml}: non-conformant WSI instance" in err
    code, out, err = cli("run", "--dry-run", "--target", "dicom", no_mpp)
    assert code == 1 and f"error: {no_mpp}: cannot convert to DICOM" in err and "pixel spacing" in err
    code, out, err = cli("run", "--dry-run", "--target", "dicom", shared("aperio/CMU-1-Small-Region.svs"))
    assert code == 0 and "DRY-RUN" in out + err


def test_journal_temp_left_by_a_killed_run_is_removed(tmp_path):
    """kill -9 while the journal's temporary file was written leaves it beside the slide; the next
    journal written for that slide removes it (its writer is gone), a live writer's is kept."""
    import subprocess

    from wsianon.io import journal as jmod

    jpath = tmp_path / "slide.svs.wsianon-journal"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".{jpath.name}.tmp-{dead.pid}"
    stale.write_bytes(b"{partial")
    live = tmp_path / f".{jpath.name}.tmp-1"  # pid 1 is alive
    live.write_bytes(b"{")
    jmod.write(jpath, {"regions": []})
    assert jpath.exists() and not stale.exists() and live.exists()


def test_human_bytes_one_vocabulary_for_sizes():
    """The record's sizes and the delivery's limits say sizes the same way (binary units)."""
    from wsianon.io.safetext import human_bytes

    assert human_bytes(0) == "0 B" and human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(5 * 1024**2) == "5.0 MiB"
    assert human_bytes(2.5 * 1024**3) == "2.5 GiB" and human_bytes(3 * 1024**4) == "3.0 TiB"
    assert human_bytes(2048 * 1024**4) == "2048.0 TiB"  # the largest unit, not an empty string


def test_verify_of_a_file_that_aborts_the_decoder_judges_the_others(tmp_path):
    """`wsianon verify` decoded in-process: a byte count asking glib for a terabyte aborted the
    whole audit (no verdict for any file). Now the decode probe runs in a child first, as in `run`."""
    from .fixtures.bif_gen import make_bif

    (tmp_path / "in").mkdir()
    bad = make_bif(tmp_path / "in" / "case.bif").path
    _overflow_tile_byte_counts(bad)
    good = write_svs(tmp_path / "in" / "good.svs").path
    out = tmp_path / "o"
    assert run_subprocess("run", good, "-o", out).returncode == 0
    (placed,) = out.glob("*.svs")
    res = run_subprocess("verify", bad, placed)
    assert res.returncode == 1 and "Traceback" not in res.stderr and "GLib" not in res.stderr + res.stdout
    assert f"CLEAN {placed}" in res.stdout.splitlines() and "NOT CLEAN" not in res.stdout
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert err == [f"error: {bad}: IFD 4: image data beyond the end of the file (truncated?)"]
