"""``dicom: frame segments`` fed from the verifier's read-back (verify/dicom/frames.py
``FrameSegments``): the frames are located by the verifier's own item walk, their bytes come from
the read-back's buffers (the instance is not read a second time for the check), and a frame that
still carries a COM payload after conversion is caught and named exactly as when the check reads
the instance itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_frame_segment_shortcut import _com
from tests.test_frame_segments_streamed import _frames, _instance, _Verdict
from wsianon.verify import tileid
from wsianon.verify.dicom import frames as F
from wsianon.verify.readback import read_back


def _count_file_reads(monkeypatch) -> list[Path]:
    """Every instance the tile identity reads by itself (``tileid.feed_file``)."""
    read: list[Path] = []
    orig = tileid.feed_file

    def counting(path, f, *a, **k):
        read.append(Path(path))
        return orig(path, f, *a, **k)

    monkeypatch.setattr(tileid, "feed_file", counting)
    return read


def _dirty(tmp_path: Path) -> Path:
    frames = _frames()
    f = frames[17]
    sos = f.index(b"\xff\xda")
    frames[17] = f[:sos] + _com(b"Patient Jane Roe 1957") + f[sos:]
    return _instance(tmp_path / "dirty.dcm", frames)


# the read-back's buffer: its default, and small ones that cut across frames
CHUNKS = pytest.mark.parametrize("chunk", [8 << 20, 5000, 7777])


@CHUNKS
def test_clean_instance_judged_from_the_read_back(tmp_path, monkeypatch, chunk):
    frames = _frames()
    path = _instance(tmp_path / "clean.dcm", frames)
    read = _count_file_reads(monkeypatch)
    segs = F.FrameSegments([path])
    feeders = segs.feeders_for([path])
    assert set(feeders) == {path}
    rb = read_back(path, path.name, None, feeders[path], chunk=chunk)
    assert rb.size == path.stat().st_size
    verdict = _Verdict()

    def no_walk(*a, **k):
        raise AssertionError("judged frame by frame")

    monkeypatch.setattr(F, "_frame_segments", no_walk)
    segs.check(verdict)
    assert verdict.checks == [("dicom: frame segments", True)]  # proven by the streamed judgement
    assert read == []  # the check took the read-back's bytes


@CHUNKS
def test_dirty_frame_after_conversion_caught_when_fed_from_the_read_back(tmp_path, chunk):
    path = _dirty(tmp_path)
    segs = F.FrameSegments([path])
    read_back(path, path.name, None, segs.feeders_for([path])[path], chunk=chunk)
    details: list[str] = []

    class V(_Verdict):
        def add(self, name, ok, detail=""):
            super().add(name, ok, detail)
            details.append(detail)

    verdict = V()
    segs.check(verdict)
    assert verdict.checks == [("dicom: frame segments", False)]
    assert "frame 17" in details[0] and "COM" in details[0]
    assert "Jane" not in details[0]


def test_keys_follow_the_read_backs_spelling_and_unfed_instances_are_read(tmp_path, monkeypatch):
    frames = _frames()
    real = _instance(tmp_path / "a.dcm", frames)
    (tmp_path / "link").symlink_to(tmp_path)
    other = tmp_path / "link" / "a.dcm"
    segs = F.FrameSegments([real])
    assert set(segs.feeders_for([other, tmp_path / "none.dcm"])) == {other}
    read = _count_file_reads(monkeypatch)
    verdict = _Verdict()
    segs.check(verdict)  # never fed: the check reads the instance itself
    assert verdict.checks == [("dicom: frame segments", True)]
    assert read == [real]


def _plant_run(cli, tmp_path: Path, monkeypatch, scrub: bool) -> tuple[dict, list[Path]]:
    from tests.fixtures.plant_jpeg import plant_tiff_jpeg
    from tests.fixtures.svs_gen import write_svs
    from wsianon.converters import dicom as dicom_mod

    src = tmp_path / "src"
    src.mkdir()
    write_svs(src / "a.svs")
    assert plant_tiff_jpeg(src / "a.svs", "SEGTOKEN-4471") > 0
    if not scrub:  # a redactor that forgets the frames' segments: the verifier must see it
        monkeypatch.setenv("WSIANON_FRAME_SCRUB", "after")  # no scrub while converting, and none after
        monkeypatch.setattr(dicom_mod, "scrub_frames", lambda path: 0)
    read = _count_file_reads(monkeypatch)
    out = tmp_path / "out"
    cli("run", str(src), "-o", str(out), "--target", "dicom")
    (s,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    return {c["check"]: c for c in s["verification"]["checks"]}, read


@pytest.mark.parametrize("scrub", [True, False], ids=["scrubbed", "redactor-forgot"])
def test_pipeline_feeds_frame_segments_from_the_read_back(cli, tmp_path, monkeypatch, scrub):
    checks, read = _plant_run(cli, tmp_path, monkeypatch, scrub)
    seg = checks["dicom: frame segments"]
    assert [p for p in read if p.suffix == ".dcm"] == []  # no instance read again for the check
    if scrub:
        assert seg["ok"], seg
    else:
        assert not seg["ok"] and "frame" in seg["detail"] and "COM" in seg["detail"], seg


def test_frame_comparison_reuses_the_verifiers_walk_and_stays_exact(cli, tmp_path, monkeypatch):
    """``dicom: frames`` takes the fragments ``FrameSegments`` found (no second walk of the items)
    and still compares every frame exactly: one flipped byte of one frame's entropy-coded data is
    named."""
    import shutil

    from tests.fixtures.svs_gen import write_svs
    from wsianon.verify.dicom.common import read_dataset

    src = tmp_path / "src"
    src.mkdir()
    write_svs(src / "a.svs")
    out = tmp_path / "out"
    cli("run", str(src), "-o", str(out), "--target", "dicom")
    files = [Path(shutil.copy(f, tmp_path / f.name)) for f in sorted(out.rglob("*.dcm"))]
    outputs = [(f, read_dataset(f)) for f in files]
    segs = F.FrameSegments(files)
    vol = next(f for f, ds in outputs if F.image_kind(ds) == "VOLUME" and segs.fragments.get(f))

    def no_walk(*a, **k):
        raise AssertionError("items walked a second time")

    monkeypatch.setattr(F, "_fragments", no_walk)
    details: list[tuple[bool, str]] = []

    class V:
        def add(self, name, ok, detail="", not_run=False):
            details.append((ok, detail))

    F.check_frames_converted(src / "a.svs", None, outputs, V(), fragments=segs.fragments)
    assert details[-1][0] is True, details
    off, ln = segs.fragments[vol][len(segs.fragments[vol]) // 2]
    k = len(segs.fragments[vol]) // 2
    data = bytearray(vol.read_bytes())
    data[off + ln - 10] ^= 0x01  # inside the entropy-coded data, before EOI
    vol.write_bytes(bytes(data))
    F.check_frames_converted(src / "a.svs", None, outputs, V(), fragments=segs.fragments)
    assert details[-1][0] is False and f"frame {k} differs" in details[-1][1], details
