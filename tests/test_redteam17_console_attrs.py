"""Red team B (stop 40): what the console, the record and a file's attributes say, and one false
positive of the canary scan.

F8. ``wsianon-report.json`` named OUT's own folder: ``"manifest": "private, beside OUT
    (S19-4711_Doe_Jane.wsianon-job.sqlite)"`` for ``-o exports/S19-4711_Doe_Jane``.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

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
