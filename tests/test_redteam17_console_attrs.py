"""Red team B (stop 40): what the console, the record and a file's attributes say, and one false
positive of the canary scan.

F8. ``wsianon-report.json`` named OUT's own folder: ``"manifest": "private, beside OUT
    (S19-4711_Doe_Jane.wsianon-job.sqlite)"`` for ``-o exports/S19-4711_Doe_Jane``.
F4. FORCE_COLOR or TTY_COMPATIBLE made piped output name the sources: ``run … > log 2> err`` wrote
    ``OK /…/MRN98765432/Doe_Jane_19790101.svs``, progress-bar text and ANSI codes into the files,
    ``TTY_COMPATIBLE=1 wsianon status OUT | …`` listed failures by source path (rich's
    ``is_terminal`` believes the environment; the choice now follows the file descriptor).
"""

from __future__ import annotations

import io
import json
import os
import re
import zlib
from pathlib import Path

import pytest

from tests.conftest import run_subprocess
from tests.fixtures.helpers import PtyStream
from tests.fixtures.svs_gen import write_svs

CASE = "S19-4711_Doe_Jane"


def _record_texts(out: Path) -> dict[str, bytes]:
    """Every file in OUT that is not a slide output, as bytes, a PDF's compressed streams inflated."""
    texts = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file() or p.name.startswith("WSI-"):
            continue
        data = p.read_bytes()
        if p.suffix == ".pdf":
            for m in re.finditer(rb"stream\r?\n(.*?)endstream", data, re.S):
                try:
                    data += zlib.decompress(m.group(1))
                except zlib.error:
                    pass
        texts[p.relative_to(out).as_posix()] = data
    return texts


# -- F8: the record never names OUT's folder ----------------------------------------------------


def test_record_files_never_name_out_folder(tmp_path, cli, key):
    """A per-case export (``-o exports/S19-4711_Doe_Jane``): no record file in OUT (report JSON
    and HTML, certificate JSON and PDF, card pages) carries OUT's folder name or any part of it."""
    (tmp_path / "in").mkdir()
    write_svs(tmp_path / "in" / "slide1.svs", levels=1, size=(768, 512))
    out = tmp_path / "exports" / CASE
    code, _, err = cli("run", tmp_path / "in", "-o", out, "--key-file", key, "--no-review-sheet")
    assert code == 0, err
    texts = _record_texts(out)
    assert {"wsianon-report.json", "wsianon-report.html", "wsianon-certificate.json", "wsianon-certificate.pdf"} <= set(texts)
    for name, data in texts.items():
        for word in (CASE, "S19-4711", "Doe_Jane", "Doe"):
            assert word.encode() not in data, (name, word)
            assert word.encode("utf-16-le") not in data, (name, word)
    assert json.loads(texts["wsianon-report.json"])["job"]["manifest"] == "private, beside OUT"


def test_verify_refuses_a_report_that_names_out_folder(tmp_path, cli, key):
    """The verifier on its own: a report whose job section names the manifest beside OUT (what
    earlier versions wrote), re-certified so that the certificate vouches for it, is a record
    file wsianon does not write: ``verify OUT`` fails (the folder renamed first, as for sharing)."""
    (tmp_path / "in").mkdir()
    write_svs(tmp_path / "in" / "slide1.svs", levels=1, size=(768, 512))
    out = tmp_path / "exports" / CASE
    assert cli("run", tmp_path / "in", "-o", out, "--key-file", key, "--no-review-sheet")[0] == 0
    shared = out.rename(tmp_path / "exports" / "batch_001")
    assert cli("verify", shared)[0] == 0  # clean as written
    rp = shared / "wsianon-report.json"
    data = json.loads(rp.read_text())
    data["job"]["manifest"] = f"private, beside OUT ({CASE}.wsianon-job.sqlite)"
    rp.write_text(json.dumps(data, indent=2))
    assert cli("certify", shared, "--key-file", key)[0] == 0  # the certificate vouches for it again
    code, stdout, stderr = cli("verify", shared)
    assert code == 1, stdout + stderr
    assert CASE not in stdout + stderr  # the finding does not repeat the name


# -- F4: piped output names no source and carries no control code, whatever the environment says --

# every variable that made rich call a pipe a terminal, or would wrap a line
FORCING = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "PY_COLORS": "1", "COLUMNS": "20"}
SOURCE_WORDS = ("MRN98765432", "Doe_Jane", "Roe_Rick")


def _sources(tmp_path: Path) -> Path:
    src = tmp_path / "in" / "MRN98765432"
    src.mkdir(parents=True)
    write_svs(src / "Doe_Jane_19790101.svs", levels=1, size=(768, 512))
    (src / "Roe_Rick_S19-4711.svs").write_bytes(b"II*\x00" + b"\x00" * 100)  # broken: an error
    return tmp_path / "in"


@pytest.mark.parametrize("env", [{k: v} for k, v in FORCING.items() if k != "COLUMNS"] + [FORCING], ids=lambda e: "+".join(e))
def test_piped_run_and_status_name_no_source_whatever_the_environment(tmp_path, key, env):
    """``wsianon run … > log 2> err`` and ``wsianon status OUT | …`` as real processes with
    pipes, under each variable that claims a terminal: the per-slide lines carry pseudonyms, no
    byte is a control code (no colour, no cursor, no progress bar), no line is wrapped.  The
    ``error:`` line names the input as given (documented), nothing else does."""
    src = _sources(tmp_path)
    out = tmp_path / "out"
    p = run_subprocess("run", src, "-o", out, "--key-file", key, "--no-review-sheet", env=env)
    assert p.returncode == 1, p.stderr
    for text in (p.stdout, p.stderr):
        assert "\x1b" not in text and "\r" not in text, text
    ok = [ln for ln in p.stdout.splitlines() if ln.startswith("OK")]
    err_lines = [ln for ln in p.stderr.splitlines() if ln.startswith("ERROR")]
    assert len(ok) == 1 and ok[0].split()[1].startswith("WSI-") and "verified:" in ok[0], p.stdout
    assert len(err_lines) == 1 and err_lines[0].split()[1].startswith("WSI-"), p.stderr
    assert not any(w in p.stdout for w in SOURCE_WORDS), p.stdout
    assert not any(w in ln for ln in p.stderr.splitlines() if not ln.startswith("error: ") for w in SOURCE_WORDS), p.stderr
    st = run_subprocess("status", out, env=env)
    assert st.returncode == 1 and "failures:" in st.stdout, st.stdout + st.stderr
    assert "\x1b" not in st.stdout + st.stderr
    assert not any(w in st.stdout + st.stderr for w in SOURCE_WORDS), st.stdout
    assert "WSI-" in st.stdout.split("failures:")[1]


def test_help_and_usage_errors_carry_no_control_codes_piped():
    """typer's own consoles (help, a usage error) follow the file descriptor too."""
    for args in (("run", "--help"), ("run", "--no-such-option"), ("status",)):
        p = run_subprocess(*args, env=FORCING)
        assert "\x1b" not in p.stdout + p.stderr, (args, p.stdout + p.stderr)


def test_terminal_decided_by_the_file_descriptor(monkeypatch):
    """``on_terminal``: a pseudo-terminal is one; a pipe, a file, a StringIO (no descriptor) are
    not, whatever the environment claims; a ``TerminalConsole`` writes control codes only to a
    terminal, and TTY_COMPATIBLE=0 still makes a terminal plain."""
    from wsianon.jobconsole import TerminalConsole, on_terminal

    for k, v in FORCING.items():
        monkeypatch.setenv(k, v)
    r, w = os.pipe()
    pipe_w = os.fdopen(w, "w")
    assert not on_terminal(pipe_w)
    c = TerminalConsole(file=pipe_w, force_terminal=True, force_interactive=True)
    assert not c.is_terminal and not c.is_interactive
    c.print("[red]ERROR[/red] x", highlight=False, soft_wrap=True)
    pipe_w.close()
    with os.fdopen(r) as pipe_r:
        assert pipe_r.read() == "ERROR x\n"
    buf = io.StringIO()
    assert not on_terminal(buf) and not TerminalConsole(file=buf).is_terminal
    tty = PtyStream()
    try:
        assert on_terminal(tty.file)
        c = TerminalConsole(file=tty.file)
        assert c.is_terminal
        c.print("[red]ERROR[/red] x", highlight=False, soft_wrap=True)
        monkeypatch.setenv("TTY_COMPATIBLE", "0")
        assert not c.is_terminal
    finally:
        tty.close()
    assert "\x1b[" in tty.text()  # colour on the terminal


def test_slide_line_follows_the_descriptor_not_force_terminal():
    """``BatchConsole`` (the Python API takes any rich Console): a console forced to be a
    terminal (``force_terminal=True``, what FORCE_COLOR does) writing into a StringIO gets the
    pseudonym; a real terminal gets the source's name."""
    from rich.console import Console

    from wsianon.jobconsole import BatchConsole
    from wsianon.pipeline.model import Outcome, Status

    def line(stream) -> None:
        o = Outcome(input_label="WSI-0123456789abcdef", format="aperio", status=Status.OK, outputs=["WSI-0123456789abcdef.svs"], target="native")
        with BatchConsole(Console(file=stream, force_terminal=True, width=300), Console(file=io.StringIO(), width=300), quiet=True, json_out=False) as bc:
            bc("slide", outcome=o, display="in/MRN98765432/Doe_Jane.svs", source=Path("/x/in/MRN98765432/Doe_Jane.svs"), size=0)

    buf = io.StringIO()
    line(buf)
    assert "Doe_Jane" not in buf.getvalue() and "WSI-0123456789abcdef" in buf.getvalue()
    tty = PtyStream()
    line(tty.file)
    tty.close()
    assert "Doe_Jane" in tty.text()
