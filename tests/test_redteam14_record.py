"""Red team 14 (rtC): what the record and the console say.

1. ``run --target dicom --accept-unrun-checks`` without dciodvfy: the certificate (JSON, PDF) listed
   ``dicom: dciodvfy`` under "Checks run", its method said the outputs were checked "with ...
   dciodvfy", the recorded policy left the flag out and the console said ``verified: 21/21 checks``.
2. ``certify OUT`` after a verified output was replaced: exit 0, and a certificate that silently
   left the changed file out.
3. ``run > run.log`` with stderr a terminal: the OK lines in the file named the sources.
4. ``status OUT`` piped named the failures by the sources' paths.
5. A damaged TIFF's error reason printed bytes of the file as numbers ("offset 1852142929": "Quen").
6. The certificate's method said "associated images (label, macro) checked to be gone" with
   ``--macro keep --label blank``.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
from pathlib import Path

import pytest

from tests.fixtures.svs_gen import write_svs
from wsianon.pipeline import record

NAME = "Smithereens_Quentin_98765432"


def _pdf_text(path: Path) -> str:
    """The PDF's text lines (wsianon's own PDF: one Tj a line), wrapped lines joined by a space."""
    import re

    from wsianon.io import pdf

    objs = pdf.content(path.read_bytes())
    assert objs is not None
    shown = [m.decode("latin-1") for o in objs for m in re.findall(rb"\(((?:\\.|[^\\)])*)\) Tj", o)]
    return " ".join(re.sub(r"\\(.)", r"\1", t) for t in shown)


@pytest.fixture
def no_dciodvfy(monkeypatch):
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **kw: None if cmd == "dciodvfy" else real(cmd, *a, **kw))


def test_certificate_and_console_say_which_checks_did_not_run(tmp_path, cli, no_dciodvfy):
    src = tmp_path / "in" / f"{NAME}.svs"
    src.parent.mkdir()
    write_svs(src, levels=1, size=(768, 512))
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", src, "-o", out, "--target", "dicom", "--accept-unrun-checks", "--no-review-sheet")
    assert code == 0, stderr
    ok = next(ln for ln in stdout.splitlines() if ln.startswith("OK"))
    # the line counts the checks that ran, and names the one that did not
    assert "NOT RUN, accepted by --accept-unrun-checks: dicom: dciodvfy" in ok, ok
    report = json.loads((out / record.REPORT_NAME).read_text())
    checks = report["slides"][0]["verification"]["checks"]
    ran = [c for c in checks if not c.get("not_run")]
    assert f"verified: {len(ran)}/{len(ran)} checks" in ok and f"{len(checks)}/{len(checks)}" not in ok, ok
    assert "checks NOT RUN on 1 slide(s), accepted by --accept-unrun-checks" in stdout and "dicom: dciodvfy" in stdout.splitlines()[-1] + stdout
    assert report["policy"]["accept_unrun_checks"] is True

    cert = json.loads((out / record.CERT_JSON).read_text())
    method = cert["verification_method"]
    assert "dicom: dciodvfy" not in method["checks"]  # "Checks run" lists what ran
    assert method["not_run_accepted"] == {"dicom: dciodvfy": 1}
    assert "and dciodvfy" not in method["description"] and "dciodvfy was not run" in method["description"]
    assert "NOT RUN" in method["description"] and "--accept-unrun-checks" in method["description"]
    assert cert["policy"]["command_line"].endswith("--accept-unrun-checks")
    assert any("ACCEPTED as not run" in w for w in cert["policy"]["in_words"])
    pdf_text = _pdf_text(out / record.CERT_PDF)
    run_line = pdf_text[pdf_text.index("Checks run: ") : pdf_text.index("Checks NOT RUN (accepted")]
    assert "dicom: frames" in run_line and "dciodvfy" not in run_line, run_line
    assert "Checks NOT RUN (accepted with --accept-unrun-checks; the slides were shared without them): dicom: dciodvfy (1 slide(s))" in pdf_text
    assert "dciodvfy was not run" in pdf_text and "--accept-unrun-checks" in pdf_text.split("Policy", 1)[1].split("- Label")[0]
    page = (out / record.REPORT_HTML).read_text()
    assert "NOT RUN" in page and "dciodvfy was not run" in page
    assert cli("certify", "--check", out)[0] == 0  # the PDF is the certificate's rendering


def test_a_certificate_without_unrun_checks_renders_as_before(tmp_path, cli):
    """Every check ran: the method reads as it always did (certificates issued before still pass
    ``certify --check``: their PDF is compared with this rendering)."""
    src = tmp_path / "CASE-1.svs"
    write_svs(src, levels=1, size=(768, 512))
    out = tmp_path / "out"
    assert cli("run", src, "-o", out, "--no-review-sheet")[0] == 0
    cert = json.loads((out / record.CERT_JSON).read_text())
    assert "not_run_accepted" not in cert["verification_method"]
    assert cert["verification_method"]["description"] == (
        "Each output was re-opened after it was written, independently of the code that wrote it: its structure parsed, every metadata "
        "field checked against the format's allowlist, associated images (label, macro) checked to be gone, remaining images searched "
        "for barcodes, every output byte scanned for the source's identifying values (in several encodings), the pyramid tiles compared "
        "with the source's, and the output opened with OpenSlide (native). An output failing any check was quarantined outside the "
        "shared folder and is not part of this certificate."
    )
    assert "--accept-unrun-checks" not in cert["policy"]["command_line"] and cert["policy"]["accept_unrun_checks"] is False
    assert "NOT RUN" not in _pdf_text(out / record.CERT_PDF) and "Checks run: " in _pdf_text(out / record.CERT_PDF)


def test_method_follows_the_policy(tmp_path, cli):
    src = tmp_path / "CASE-1.svs"
    write_svs(src, levels=1, size=(768, 512))
    out = tmp_path / "out"
    assert cli("run", src, "-o", out, "--macro", "keep", "--label", "blank", "--no-review-sheet")[0] == 0
    desc = json.loads((out / record.CERT_JSON).read_text())["verification_method"]["description"]
    assert "checked to be gone" not in desc, desc
    assert "the label checked to be a uniform blank image" in desc and "macro photograph KEPT as scanned" in desc
    assert "review sheet" in desc and "dciodvfy" not in desc  # a native job: no DICOM verifier named
    assert "macro photograph KEPT" in (out / record.REPORT_HTML).read_text()
    # the thumbnail removed is named among the images checked to be gone
    words = record.method_text({"label": "remove", "macro": "remove", "thumbnail": "remove"}, [])
    assert "associated images (label, macro, thumbnail) checked to be gone" in words


def test_certify_refuses_an_output_changed_after_verification(tmp_path, cli):
    src = tmp_path / "in" / f"{NAME}.svs"
    src.parent.mkdir()
    write_svs(src, levels=1, size=(768, 512))
    out = tmp_path / "out"
    assert cli("run", src, "-o", out, "--no-review-sheet")[0] == 0
    victim = next(out.glob("WSI-*.svs"))
    before = {n: (out / n).read_bytes() for n in (record.CERT_JSON, record.CERT_PDF, record.REPORT_HTML)}
    shutil.copyfile(src, victim)  # the identifying source, under the output's name
    code, stdout, stderr = cli("certify", out)
    assert code == 1
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert f"{victim.name}: changed since the run verified it" in lines[0] and "no certificate issued" in lines[0], lines
    assert "Smithereens" not in stderr + stdout and "certificate:" not in stdout
    # nothing was issued: the certificate is the run's (listing the file as verified), which --check compares
    assert {n: (out / n).read_bytes() for n in before} == before
    code, _, stderr = cli("certify", "--check", out)
    assert code == 1 and f"{victim.name}: " in stderr
    # a verified output gone is refused the same way
    victim.unlink()
    code, _, stderr = cli("certify", out)
    assert code == 1 and f"{victim.name}: missing (verified by the run, gone since)" in stderr, stderr


def test_certify_says_when_out_holds_a_file_the_certificate_does_not(tmp_path, cli):
    src = tmp_path / "CASE-1.svs"
    write_svs(src, levels=1, size=(768, 512))
    out = tmp_path / "out"
    assert cli("run", src, "-o", out, "--no-review-sheet")[0] == 0
    (out / "notes.txt").write_text("x")
    code, stdout, stderr = cli("certify", out)
    assert code == 1 and "certificate:" in stdout
    assert "OUT is NOT ready to share: 1 file(s)" in stderr and "notes.txt" not in stderr
    (out / "notes.txt").unlink()
    assert cli("certify", out)[0] == 0


def _outcome(status="ok"):
    from wsianon.pipeline.model import Outcome, Verdict

    v = Verdict()
    v.add("a", True, "")
    v.add("dicom: dciodvfy", True, "not run", not_run=True)
    o = Outcome(input_label="WSI-0123456789abcdef", format="aperio", status=status, outputs=["WSI-0123456789abcdef.svs"], target="native")
    o.verdict = v
    return o


@pytest.mark.parametrize("out_terminal, err_terminal", [(False, True), (True, False), (False, False), (True, True)])
def test_slide_line_names_the_source_only_on_the_stream_that_is_a_terminal(out_terminal, err_terminal):
    """``run > run.log`` with stderr a terminal: the OK lines (stdout) named the source, because
    the choice followed stderr.  (A terminal is a real one, a pseudo-terminal: the choice follows
    the file descriptor, red team B F4, ``tests/test_redteam17_console_attrs.py``.)"""
    from rich.console import Console

    from tests.fixtures.helpers import PtyStream
    from wsianon.jobconsole import BatchConsole

    def stream(terminal: bool):
        return PtyStream() if terminal else io.StringIO()

    def written(s) -> str:
        if isinstance(s, PtyStream):
            s.close()
            return s.text()
        return s.getvalue()

    for status, to_out in (("ok", True), ("failed", False)):
        bo, be = stream(out_terminal), stream(err_terminal)
        with BatchConsole(Console(file=getattr(bo, "file", bo), width=300), Console(file=getattr(be, "file", be), width=300), quiet=True, json_out=False) as bc:
            bc("slide", outcome=_outcome(status), display=f"in/{NAME}.svs", source=Path(f"/x/in/{NAME}.svs"), size=0)
        texts = {"out": written(bo), "err": written(be)}
        text = texts["out" if to_out else "err"]
        assert text.strip(), (status, texts)
        terminal = out_terminal if to_out else err_terminal
        assert (NAME in text) == terminal, (status, out_terminal, err_terminal, text)
        if not terminal:
            assert "WSI-0123456789abcdef" in text


def test_status_names_failures_by_pseudonym_unless_a_terminal(tmp_path, cli):
    from wsianon.jobconsole import status_text

    (tmp_path / "in").mkdir()
    good = tmp_path / "in" / "CASE-1.svs"
    write_svs(good, levels=1, size=(768, 512))
    (tmp_path / "in" / f"{NAME}.svs").write_bytes(good.read_bytes()[:20000])  # truncated: an error
    out = tmp_path / "out"
    assert cli("run", tmp_path / "in", "-o", out, "--no-review-sheet")[0] == 1
    code, stdout, stderr = cli("status", out)  # captured: no terminal
    assert code == 1 and "failures:" in stdout
    assert NAME not in stdout + stderr and "WSI-" in stdout.split("failures:")[1], stdout
    assert NAME in status_text(out, sources=True)[0]  # the user's own terminal
    assert NAME not in status_text(out)[0]
    code, stdout, _ = cli("status", "--help")
    assert "pseudonym" in " ".join(stdout.split())


def _tiff_error(tmp_path, data: bytes) -> str:
    from wsianon.errors import WsianonError
    from wsianon.io.tiff import TiffStructure

    p = tmp_path / "t.tif"
    p.write_bytes(data)
    with pytest.raises(WsianonError) as exc:
        with TiffStructure(p) as ts:
            for ifd in ts.ifds:
                for e in ifd.entries.values():
                    ts.values(e)
    return exc.value.reason


def _numbers(data: bytes) -> set[str]:
    """Every 2-, 4- and 8-byte integer the file's bytes read as (both byte orders), as decimal text."""
    out = set()
    for size, code in ((2, "H"), (4, "I"), (8, "Q")):
        for i in range(len(data) - size + 1):
            for bo in "<>":
                n = struct.unpack(bo + code, data[i : i + size])[0]
                if n > 99:  # small numbers (an IFD index, a count of our own) say nothing of the bytes
                    out.add(str(n))
    return out


def _entry(tag, typ, count, value):
    return struct.pack("<HHII", tag, typ, count, value)


CORRUPT = {
    # the red team's file: a name written where the first IFD's offset is
    "offset from text": b"II*\x00" + b"Quentin Smithereens MRN 98765432 " * 8,
    "version": b"II" + struct.pack("<H", 4711) + b"\x08\x00\x00\x00" + b"\x00" * 16,
    "entry count": b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 9999) + b"\x00" * 40,
    "loop": b"II*\x00" + struct.pack("<I", 200) + b"\x00" * 192 + struct.pack("<H", 1) + _entry(256, 4, 1, 7) + struct.pack("<I", 200) + b"\x00" * 8,
    "tag beyond the end": b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 1) + _entry(4711, 2, 64, 0x4D52) + b"\x00\x00\x00\x00" + b"\x00" * 8,
    "read beyond the end": b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 500) + _entry(256, 4, 1, 7) + b"\x00" * 8,
    "unknown type": b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 1) + _entry(4711, 77, 1, 7) + b"\x00\x00\x00\x00" + b"\x00" * 8,
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_tiff_error_reasons_print_no_value_read_from_the_file(tmp_path, case):
    data = CORRUPT[case]
    import re

    reason = _tiff_error(tmp_path, data)
    assert reason
    leaked = sorted(n for n in _numbers(data) if n in reason and n != str(len(data)))
    assert not leaked, (case, reason)
    # nor any number worked out from them (a read's size, an offset plus a count): the numbers
    # left are the file's own size, an IFD's place in the chain and the parser's own limits
    numbers = [t for t in re.findall(r"\d+(?:,\d{3})*", reason) if t not in (str(len(data)), "42", "43", "4,096") and int(t.replace(",", "")) > 9]
    assert not numbers, (case, reason)


def test_run_report_of_a_damaged_tiff_holds_no_file_bytes(tmp_path, cli):
    data = CORRUPT["offset from text"]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "slide1.svs").write_bytes(data)
    out = tmp_path / "out"
    assert cli("run", tmp_path / "in" / "slide1.svs", "-o", out, "--no-review-sheet")[0] == 1
    n = str(struct.unpack("<I", b"Quen")[0])
    for name in (record.REPORT_NAME, record.REPORT_HTML, record.CERT_JSON):
        assert n not in (out / name).read_text(), name
    err = json.loads((out / record.REPORT_NAME).read_text())["slides"][0]["error"]
    assert "outside the file" in err, err
