"""A re-run of a finished job does no work it did before, and misses nothing that changed.

The report JSON is put together from the slide entries' indented text kept in the record's cache
(``pipeline/reportjson.py``): its bytes are exactly ``json.dumps(report, indent=2)``'s, on the first
run, a re-run, and after an entry changed.  A re-run with nothing to do takes output hashes and
images from the caches, yet an output changed after its verification (same size, bytes differ) is
still caught: not certified, and the run says OUT is not ready.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from wsianon.pipeline import record
from wsianon.pipeline.reportjson import TABLE, report_bytes

from .fixtures.svs_gen import write_svs


def _plain(d: dict) -> bytes:
    return (json.dumps(d, indent=2) + "\n").encode()


def _entries(tmp_path: Path) -> set[str]:
    with sqlite3.connect(tmp_path / "out.wsianon-record.sqlite") as db:
        return {t for (t,) in db.execute(f"select text from {TABLE}")}


def test_report_bytes_are_json_dumps_indented_from_the_cache(tmp_path):
    out = tmp_path / "out"
    report = {
        "tool": "wsianon",
        "summary": {"slides": 3},
        "slides": [{"slide": f"WSI-{i}", "checks": [{"ok": True, "detail": 'é\u2028"x"\n'}], "n": [1.5, None, []], "e": {}} for i in range(3)],
        "runs": [{"started": "a", "finished": "b"}],
    }
    assert report_bytes(report, out) == _plain(report)
    assert len(_entries(tmp_path)) == 3
    assert report_bytes(report, out) == _plain(report)  # from the cache
    report["slides"][1]["checks"][0]["ok"] = False  # an entry changed: encoded again, the old text leaves the cache
    assert report_bytes(report, out) == _plain(report)
    texts = _entries(tmp_path)
    assert len(texts) == 3 and any('"ok": false' in t for t in texts) and sum('"ok": true' in t for t in texts) == 2
    for other in ({"slides": []}, {"slides": [[1, 2], []], "z": {}}, {"a": 1}):
        assert report_bytes(other, out) == _plain(other)
    # a cache that cannot be opened: the plain encoding
    (tmp_path / "nowhere").write_text("a file where the folder of OUT would be")
    assert report_bytes(report, tmp_path / "nowhere" / "out") == _plain(report)


def test_a_rerun_with_nothing_to_do_still_catches_a_changed_output(tmp_path, cli):
    (tmp_path / "in").mkdir()
    for i in range(2):
        write_svs(tmp_path / "in" / f"CASE-{i}.svs", size=(512, 384), levels=1)
    key, out = tmp_path / "job.key", tmp_path / "out"
    assert cli("key", "init", key)[0] == 0
    assert cli("run", tmp_path / "in", "-o", out, "--key-file", key)[0] == 0
    text = (out / record.REPORT_NAME).read_bytes()
    assert text == _plain(json.loads(text))
    code, _o, err = cli("run", tmp_path / "in", "-o", out, "--key-file", key)
    assert code == 0 and "2 slide(s) already done" in err, err
    again = (out / record.REPORT_NAME).read_bytes()
    assert again == _plain(json.loads(again)) and json.loads(again)["slides"] == json.loads(text)["slides"]
    assert cli("certify", "--check", out)[0] == 0
    # one byte of an output changed after verification (same size): the re-run's record leaves it out
    victim = sorted(out.glob("*.svs"))[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, stdout, err = cli("run", tmp_path / "in", "-o", out, "--key-file", key)
    assert code == 1 and "NOT ready" in stdout + err, stdout + err
    cert = json.loads((out / record.CERT_JSON).read_text())
    assert victim.name not in {o["file"] for o in cert["outputs"]} and len(cert["outputs"]) == 1
    assert record.unlisted_files(out) == [victim.name]


def test_a_private_file_is_written_again_unless_it_holds_exactly_the_same(tmp_path):
    from wsianon.io.atomic import holds, write_private_if_changed

    p = tmp_path / "sheet.html"
    data = bytes(range(256)) * 5000  # more than one comparison block
    assert write_private_if_changed(p, data) is True and p.read_bytes() == data
    assert write_private_if_changed(p, data) is False and holds(p, data, 0o600)
    changed = bytearray(data)
    changed[-1] ^= 1  # same size, last byte differs
    assert write_private_if_changed(p, bytes(changed)) is True and p.read_bytes() == changed
    os.chmod(p, 0o644)  # readable by others: written again (mode 0600) though the same
    assert write_private_if_changed(p, bytes(changed)) is True and oct(p.stat().st_mode & 0o777) == "0o600"
    link = tmp_path / "link.html"
    link.symlink_to(p)
    assert not holds(link, bytes(changed), 0o600)  # a link is replaced, never written through
    assert write_private_if_changed(link, bytes(changed)) is True and not link.is_symlink()
