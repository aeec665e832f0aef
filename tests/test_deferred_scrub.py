"""The copy route's JPEG scrub of TIFF tiles and strips is judged from the buffers the copy reads
(issue 14: one read of the source; a plan that first read every tile's head read a source that is
not in the page cache twice, the first time scattered).  The output, its digests and the report
are exactly what the plan-time scrub gives — whatever the buffer size, streams crossing buffers,
dirty streams in the header and after the entropy-coded data.  No timing is asserted."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import xxhash

from wsianon.converters.base import SlideContext
from wsianon.io import digests
from wsianon.io import plan as plan_mod
from wsianon.io.jpeg import StreamScrub, stream_spans, tiff_jpeg_streams
from wsianon.io.jpeg_plan import deferred_removals
from wsianon.io.plan import apply_copy
from wsianon.io.spans import iter_pairs
from wsianon.profiles.policy import Policy
from wsianon.verify.readback import read_back

from .fixtures.decide_helpers import pipeline_plan
from .fixtures.plant_jpeg import plant_tiff_jpeg
from .fixtures.svs_gen import write_svs

TOKEN = "DEFERRED-CASE-4471"


@pytest.fixture
def planted(tmp_path) -> Path:
    src = write_svs(tmp_path / "CASE-4471-deferred.svs", size=(1536, 1024), tile=256).path
    plant_tiff_jpeg(src, TOKEN)
    return src


def _ctx() -> SlideContext:
    return SlideContext(pseudonym="WSI-0001", key=b"k" * 32, policy=Policy())


def _copy(plan, out: Path) -> Path:
    fp = plan.files[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    apply_copy(fp, out)
    return out


@pytest.mark.parametrize("chunk", [plan_mod.CHUNK, 4099, 65536])
def test_deferred_scrub_writes_what_the_plan_time_scrub_writes(planted, tmp_path, monkeypatch, chunk):
    before = pipeline_plan(planted, _ctx())
    monkeypatch.setattr(plan_mod, "CHUNK", chunk)  # small buffers: streams cross them
    deferred = pipeline_plan(planted, _ctx(), copy=True)
    fp = deferred.files[0]
    assert fp.deferred_scrub is not None
    assert len(fp.patches) < len(before.files[0].patches)  # the tiles' zero fills are not planned
    a = _copy(before, tmp_path / "a" / fp.dest)
    b = _copy(deferred, tmp_path / "b" / fp.dest)
    assert a.read_bytes() == b.read_bytes()
    assert TOKEN.encode() not in b.read_bytes()
    assert sum(fp.deferred_scrub.counts.values()) > 0
    deferred_removals(deferred)
    assert [r for r in deferred.removals] == [r for r in before.removals]
    # the digests taken while writing are the file's (the read-back adopts the SHA-256)
    fd = os.open(b, os.O_RDONLY)
    try:
        assert digests.expected_xxh3(fd) == xxhash.xxh3_128(b.read_bytes()).hexdigest()
    finally:
        os.close(fd)
    rb = read_back(b, b.name)
    assert rb.sha256 == hashlib.sha256(b.read_bytes()).hexdigest() == digests.lookup(b)


@pytest.fixture
def mixed(tmp_path) -> Path:
    """Clean tiles (their header repeats: the batch shortcut) and a few with a COM segment."""
    from .test_onepass import _with_com_segment

    src = write_svs(tmp_path / "CASE-4472-mixed.svs", size=(8192, 4096), tile=256, levels=1).path
    for t in (3, 40, 41, 200):
        _with_com_segment(src, tile=t, text=TOKEN.encode())
    return src


@pytest.mark.parametrize(("which", "size"), [("planted", 97), ("planted", 5000), ("planted", 1 << 20), ("mixed", 65536), ("mixed", 1 << 20)])
def test_stream_scrub_answers_like_the_plan(request, which, size, monkeypatch):
    """``StreamScrub`` fed a file's bytes in buffers of any size gives each stream's own
    ``stream_spans`` answer, with and without its batch shortcut for clean tiles (which the mixed
    file's clean tiles take), as does the plan's one-read-a-tile walk (``rest`` alone)."""
    import wsianon.io.jpeg as jpeg_mod

    path = request.getfixturevalue(which)
    monkeypatch.setattr(jpeg_mod, "_HEAD", 64)  # tiles longer than a head read, as real ones are
    _tables, streams = tiff_jpeg_streams(path)
    data = path.read_bytes()
    stop = len(data) // 2 if size == 5000 else len(data)  # a file read only halfway: rest() reads the others
    skipped = []
    real_todo = StreamScrub._todo

    def counting(self, pos, buf, k0, kk):
        todo = real_todo(self, pos, buf, k0, kk)
        skipped.append(int((~todo).sum()))
        return todo

    results = []
    with open(path, "rb") as fh:
        fd = fh.fileno()
        plain = sorted((s.offset, s.length, s.marker) for o, c in streams for a, n in iter_pairs(o, c) for s in stream_spans(fd, a, n))
        walked = sorted((s.offset, s.length, s.marker) for s in StreamScrub(streams).rest(fd))
        for todo in (counting, lambda self, pos, buf, k0, kk: None):
            monkeypatch.setattr(StreamScrub, "_todo", todo)
            sc = StreamScrub(streams)
            got = []
            for pos in range(0, stop, size):
                got += sc.feed(fd, pos, data[pos : min(pos + size, stop)])
            got += sc.rest(fd)
            assert sc.done
            results.append(sorted((s.offset, s.length, s.marker) for s in got))
    assert results[0] == results[1] == walked == plain
    if which == "mixed":
        assert len(plain) == 4 and sum(skipped) > 100  # the clean tiles were judged by the shortcut
    else:
        assert len(plain) > 10


def test_deferred_scrub_in_a_whole_run(cli, planted, tmp_path):
    """``wsianon run``: verified, the planted token gone, the report's JPEG lines as planned."""
    import json

    out = tmp_path / "out"
    code, _o, err = cli("run", "--target", "native", str(planted), "-o", str(out))
    assert code == 0, err
    (svs,) = [p for p in out.iterdir() if p.suffix == ".svs"]
    assert TOKEN.encode() not in svs.read_bytes()
    report = json.loads((out / "wsianon-report.json").read_text())
    (s,) = report["slides"]
    lines = [r for r in s["removed"] if r["name"].startswith("JPEG ")]
    assert {r["name"] for r in lines} >= {"JPEG COM", "JPEG APP1"} and all(r["action"] == "payload zeroed" for r in lines)
    assert os.path.getsize(svs) == os.path.getsize(planted)


def test_stream_digest_takes_patches_added_while_fed():
    """Zero fills added between buffers — one inside a longer planned fill — give the digests of
    the bytes with every patch laid over them (a fill inside another once cut bytes out)."""
    from wsianon.io.plan import Patch

    data = bytes(range(256)) * 200  # 51,200 bytes
    planned = [Patch(100, 10_000, None, "planned"), Patch(20_000, 4, b"ABCD", "data")]
    added = [Patch(200, 10, None, "late"), Patch(30_000, 7, None, "late")]
    sd = digests.StreamDigest(planned, b"TAIL")
    for pos in range(0, len(data), 4096):
        if pos == 0:
            sd.add(added[:1])
        if pos == 28_672:
            sd.add(added[1:])
        sd.feed(pos, data[pos : pos + 4096])
    want = bytearray(data)
    for p in planned + added:
        want[p.offset : p.end] = p.bytes_for(p.offset, p.end)
    want += b"TAIL"
    sha, xxh = sd.finish(len(data))
    assert sha == hashlib.sha256(want).hexdigest() and xxh == xxhash.xxh3_128(bytes(want)).hexdigest()
    with pytest.raises(ValueError):
        sd.add([Patch(10, 2, None, "too late")])  # before what was fed: refused
    sd.close()
