"""Red team B (stop 40): what the console, the record and a file's attributes say, and one false
positive of the canary scan.

F8. ``wsianon-report.json`` named OUT's own folder: ``"manifest": "private, beside OUT
    (S19-4711_Doe_Jane.wsianon-job.sqlite)"`` for ``-o exports/S19-4711_Doe_Jane``.
F4. FORCE_COLOR or TTY_COMPATIBLE made piped output name the sources: ``run … > log 2> err`` wrote
    ``OK /…/MRN98765432/Doe_Jane_19790101.svs``, progress-bar text and ANSI codes into the files,
    ``TTY_COMPATIBLE=1 wsianon status OUT | …`` listed failures by source path (rich's
    ``is_terminal`` believes the environment; the choice now follows the file descriptor).
F3. ``io/fsattrs.SAFE_PREFIXES`` accepted the whole ``security.`` namespace: ``security.patient``
    with a name and MRN, free text as ``security.selinux``, survived an in-place run and
    ``verify`` said "closed-world: file attributes: ok".  Now: known names, each in its one form.
FP1. ``CMU-1-Small-Region.svs`` copied as ``46000.svs``, ``32914.svs`` or ``000424.svs`` was
    quarantined by the canary scan: its own kept OriginalWidth, OriginalHeight and LineCameraSkew
    digits.  A numeric file name standing as a field the profile keeps as a number is no hit;
    anywhere else it still is.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
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


# -- F3: extended attributes: known names in their forms only --------------------------------------

PLANTED = {"security.patient": b"Doe^Jane MRN 98765432 DOB 19790101", "user.note": b"Doe^Jane"}
LABEL = b"system_u:object_r:user_home_t:s0\x00"
# a POSIX ACL in the kernel's form: user::rw- user:1000:r-- group::r-- mask::r-- other::r--
ACL = struct.pack("<I", 2) + b"".join(
    struct.pack("<HHI", *e) for e in ((0x01, 6, 0xFFFFFFFF), (0x02, 4, 1000), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF), (0x20, 4, 0xFFFFFFFF))
)


def _set(path: Path, attrs: dict[str, bytes]) -> None:
    for name, value in attrs.items():
        try:
            os.setxattr(path, name, value)
        except OSError as exc:  # not root (security.* needs CAP_SYS_ADMIN), or no xattrs here
            pytest.skip(f"the file system refuses to set {name} ({os.strerror(exc.errno or 0)}): needs root on a file system with extended attributes")


def _attrs(path: Path) -> dict[str, bytes]:
    return {n: os.getxattr(path, n) for n in os.listxattr(path)}


def test_attribute_forms():
    from wsianon.io.fsattrs import acl_in_form, known_safe, selinux_in_form

    for good in (
        LABEL,
        b"system_u:object_r:user_home_t:s0",
        b"u:object_r:app_data_file:s0:c512,c768",
        b"staff_u:object_r:var_t:s0-s15:c0.c1023",
        b"user_u:object_r:tmp_t",
    ):
        assert selinux_in_form(good), good
    for bad in (
        b"S19-4711 Doe^Jane",
        b"Doe^Jane:object_r:user_home_t:s0",
        b"system_u:object_r:user_home_t:s0 Doe Jane",
        b"system_u:system_r:user_home_t:s0",  # a file's role is object_r
        b"system_u:object_r:user_home_t:s0\x00Doe^Jane",
        b"system_u:object_r:" + b"t" * 300 + b":s0",
        b"",
    ):
        assert not selinux_in_form(bad), bad
    assert acl_in_form(ACL)
    assert not acl_in_form(ACL + b"Doe^Jane")  # not whole entries
    assert not acl_in_form(struct.pack("<I", 2) + b"Doe^Jane")  # tag/perm not an entry's
    assert not acl_in_form(struct.pack("<I", 2) + struct.pack("<HHI", 0x20, 4, 98765432))  # an id on an unnamed entry
    assert known_safe("security.selinux", LABEL) and known_safe("system.posix_acl_access", ACL)
    for name in ("security.patient", "security.capability", "security.ima", "security.evm", "security.SMACK64", "user.note", "trusted.x", "system.nfs4_acl"):
        assert not known_safe(name, LABEL), name


def test_in_place_removes_security_attributes_it_does_not_know(tmp_path, cli, key):
    """An in-place run removes every attribute but a label and an ACL in their forms; free text as
    ``security.selinux`` is removed too.  Verified after."""
    src = tmp_path / "in"
    src.mkdir()
    a = write_svs(src / "a.svs", levels=1, size=(768, 512)).path
    b = write_svs(src / "b.svs", levels=1, size=(768, 512)).path
    _set(a, {**PLANTED, "security.selinux": b"S19-4711 Doe^Jane"})
    _set(b, {**PLANTED, "security.selinux": LABEL})
    try:
        os.setxattr(b, "system.posix_acl_access", ACL)
        acl = True
    except OSError:  # a file system without POSIX ACLs
        acl = False
    code, stdout, stderr = cli("run", "--in-place", src, "--key-file", key, "--mapping", tmp_path / "map.csv", "--no-review-sheet")
    assert code == 0, stdout + stderr
    outs = sorted(src.glob("WSI-*.svs"))
    assert len(outs) == 2
    left = [_attrs(p) for p in outs]
    assert {} in left  # a's: all gone, its free-text label too
    kept = next(x for x in left if x)
    assert kept.get("security.selinux") == LABEL and (not acl or kept.get("system.posix_acl_access") == ACL), kept
    assert set(kept) <= {"security.selinux", "system.posix_acl_access"}
    code, stdout, _ = cli("verify", src)
    assert code == 0 and "closed-world: file attributes" in stdout, stdout


@pytest.mark.parametrize(
    "name, value",
    [("security.patient", PLANTED["security.patient"]), ("security.selinux", b"S19-4711 Doe^Jane"), ("security.x", LABEL)],
    ids=["unknown-name", "free-text-label", "label-under-another-name"],
)
def test_verify_refuses_unknown_security_attributes(tmp_path, cli, key, name, value):
    """The verifier on its own: an output carrying a ``security.*`` attribute of an unknown name,
    or free text as the SELinux label, is not clean; a label in its form is."""
    src = tmp_path / "in"
    src.mkdir()
    write_svs(src / "a.svs", levels=1, size=(768, 512))
    out = tmp_path / "out"
    assert cli("run", src, "-o", out, "--key-file", key, "--no-review-sheet")[0] == 0
    target = next(out.glob("WSI-*.svs"))
    _set(target, {"security.selinux": LABEL})
    code, stdout, _ = cli("verify", out)
    assert code == 0, stdout
    _set(target, {name: value})
    code, stdout, stderr = cli("verify", out)
    assert code == 1, stdout + stderr
    line = next(ln for ln in stdout.splitlines() if "closed-world: file attributes" in ln)
    assert "FAIL" in line.upper() and "Doe" not in stdout + stderr and name not in stdout + stderr, line


# -- FP1: a numeric file name equal to a number the slide keeps as structure -------------------------

CMU = Path(__file__).parent / "data" / "CMU-1-Small-Region.svs"


def test_numeric_file_names_equal_to_kept_numbers_are_verified(tmp_path, cli, key):
    """The real slide under its own numbers' names: every one verified clean (was: 3 quarantined)."""
    src = tmp_path / "in"
    src.mkdir()
    for stem in ("46000", "32914", "000424"):
        shutil.copyfile(CMU, src / f"{stem}.svs")
    code, stdout, stderr = cli("run", src, "-o", tmp_path / "out", "--key-file", key, "--workers", "3", "--no-review-sheet")
    assert code == 0, stdout + stderr
    assert stdout.count("OK ") == 3 and "FAILED" not in stdout + stderr, stdout


def _scan(path: Path, stem: str) -> tuple[bool, int]:
    """The verifier's canary scan of ``path`` for the file name ``stem``.svs, with the numbers the
    output keeps as OpenSlide reads them: (passed, hits)."""
    import openslide

    from wsianon.io.scan import stem_canaries
    from wsianon.pipeline.model import Verdict
    from wsianon.pipeline.verify import own_numbers, scan_outputs

    with openslide.OpenSlide(str(path)) as s:
        props = dict(s.properties)
    source = Path(f"/x/{stem}.svs")
    verdict = Verdict()
    scan_outputs(stem_canaries(source), [path], verdict, numbers=(source, own_numbers("aperio", props)))
    (check,) = [c for c in verdict.checks if c.name == "canary-scan"]
    return check.ok, len(verdict.findings)


@pytest.mark.parametrize(
    "stem, addition",
    [
        ("46000", "|Parmset = case 46000"),  # free text around it
        ("46000", "|Parmset = 46000"),  # a free-text field holding only it
        ("46000", "|Notes = 460001"),  # inside a longer number
        ("46000", "|Notes = 46000x32914"),  # a word after it
        ("98765432", "|Parmset = 98765432"),  # a number no kept field holds
        ("000424", "|Parmset = 1.000424"),  # the same digits in another number
    ],
    ids=["free-text", "free-text-field", "longer-number", "word-after", "not-kept", "other-number"],
)
def test_numeric_file_name_elsewhere_is_still_caught(tmp_path, cli, key, stem, addition):
    """The verifier on its own (its canary scan, the output's own kept numbers): the clean output
    of the real slide passes for the file name ``46000.svs``; the same output with the name's
    digits planted anywhere but a kept numeric field fails."""
    from tests.fixtures.helpers import planted_aperio_copy

    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(CMU, src / f"{stem}.svs")
    out = tmp_path / "out"
    assert cli("run", src, "-o", out, "--key-file", key, "--no-review-sheet")[0] == 0
    (clean,) = out.glob("WSI-*.svs")
    assert _scan(clean, stem)[0]
    planted = planted_aperio_copy(out, tmp_path, addition)
    ok, hits = _scan(planted, stem)
    assert not ok and hits >= 1, addition
