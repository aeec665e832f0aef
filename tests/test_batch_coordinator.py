"""What the batch coordinator does per slide (issue 14, batch throughput): nothing in it may grow
with the slides done so far, and the expensive per-slide work of the record (rendering each
output's thumbnail and kept images) runs in the workers, in parallel, not serially in the
coordinator at the end of the job.  Counted by calls, never timed."""

from __future__ import annotations

import re
import json
import sqlite3
from pathlib import Path

from tests.fixtures.svs_gen import write_svs
from wsianon.pipeline import batch as B
from wsianon.pipeline import record as R
from wsianon.pipeline.jobs import JobConfig, run_job
from wsianon.pipeline.keys import init_key
from wsianon.pipeline.manifest import Manifest, manifest_path

N = 4


def _archive(root: Path, n: int) -> None:
    root.mkdir(parents=True)
    proto = root.parent / "proto.svs"
    write_svs(proto, size=(512, 384), levels=1)
    data = proto.read_bytes()
    for i in range(n):
        (root / f"slide{i:02d}.svs").write_bytes(data + f"pad{i:04d}".encode())  # distinct content


def _counting(monkeypatch, mod, name: str) -> list[int]:
    calls = [0]
    real = getattr(mod, name)

    def counted(*a, **k):
        calls[0] += 1
        return real(*a, **k)

    monkeypatch.setattr(mod, name, counted)
    return calls


def _images(html: str) -> list[str]:
    return sorted(re.findall(r"data:image/jpeg;base64,[A-Za-z0-9+/=]+", html))


def test_workers_render_the_record_images_and_the_record_is_unchanged(tmp_path, monkeypatch):
    arch = tmp_path / "arch"
    _archive(arch, N)
    key = tmp_path / "job.key"
    init_key(key)
    serial = run_job(JobConfig(inputs=[arch], out=tmp_path / "serial", key_file=key, workers=1))
    assert serial.exit_code == 0

    # in this (the coordinator's) process: the forked workers' calls are not counted here
    renders = _counting(monkeypatch, R, "render_slide_images")
    regens = _counting(monkeypatch, B, "regenerate")
    res = run_job(JobConfig(inputs=[arch], out=tmp_path / "pool", key_file=key, workers=2))
    assert res.exit_code == 0 and res.processed == N
    assert renders[0] == 0, "the coordinator rendered outputs the workers had rendered already"
    assert regens[0] == 1, "report and record are written once per run, not once per slide"
    assert all(o.images is None for o in res.outcomes)  # not kept in memory for the whole job

    # the record is the one the serial run (everything rendered by the coordinator) writes
    html = (tmp_path / "pool" / R.REPORT_HTML).read_text()
    assert len(_images(html)) >= N  # a thumbnail per slide (and the kept images)
    assert _images(html) == _images((tmp_path / "serial" / R.REPORT_HTML).read_text())
    for p in sorted((tmp_path / "pool").glob("WSI-*.svs")):
        assert R.render_slide_images(p)["thumbnail"] in html  # rendered from that very output
    ok, problems = R.check_certificate(tmp_path / "pool")
    assert ok is not None and problems == []


def test_a_changed_output_is_not_rendered(tmp_path, monkeypatch):
    """The images a worker sent are keyed by the output's SHA-256: an output that changed
    afterwards is not taken from the cache, and not rendered from itself either (it is not what
    was verified: the record leaves it out)."""
    arch = tmp_path / "arch"
    _archive(arch, 2)
    key = tmp_path / "job.key"
    init_key(key)
    out = tmp_path / "out"
    assert run_job(JobConfig(inputs=[arch], out=out, key_file=key, workers=2)).exit_code == 0
    cache = sqlite3.connect(tmp_path / "out.wsianon-record.sqlite")
    assert cache.execute("select count(*) from images").fetchone()[0] == 2  # seeded by the coordinator
    cache.close()
    renders = _counting(monkeypatch, R, "render_slide_images")
    R.write_record(out)
    assert renders[0] == 0  # the record found every worker's images
    victim = sorted(out.glob("WSI-*.svs"))[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    R.write_record(out)
    assert renders[0] == 0
    html = (out / R.REPORT_HTML).read_text()
    assert html.count("not rendered: the outputs changed after verification") == 2  # one card: its alt text and caption
    assert victim.name not in {o["file"] for o in json.loads((out / R.CERT_JSON).read_text())["outputs"]}


def test_replacing_a_slides_files_uses_an_index(tmp_path):
    """Every registered slide replaces its rows in ``files`` by slide id: a full scan of the table
    each time would make registering an archive quadratic in its size."""
    man = Manifest(manifest_path(tmp_path / "out"))
    try:
        plan = " ".join(str(r[-1]) for r in man.db.execute("EXPLAIN QUERY PLAN DELETE FROM files WHERE slide_id=?", (1,)))
    finally:
        man.close()
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
