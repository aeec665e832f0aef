"""JPEG streams inside tiles, strips and JPEGTables keep only the segments a decoder needs.

Unit tests of wsianon/io/jpeg.py, then whole runs on slides whose every JPEG
tile carries a COM and an APP1 segment with a token (and a COM inside
JPEGTables): the token never reaches OUT, the output still opens in OpenSlide
with the same levels, and the tiles differ from the source only by the zeroed
payloads (entropy-coded data identical).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

from wsianon.io import jpeg

from .conftest import BUNDLED
from .fixtures import mrxs_gen
from .fixtures.native_helpers import scan_for
from .fixtures.ndpi_gen import make_ndpi_info
from .fixtures.philips_gen import make_philips
from .fixtures.plant_jpeg import plant_jpeg, plant_tiff_jpeg
from .fixtures.svs_gen import write_svs

TOKEN = "JPEGTOKEN-CASE-7731"


def _jpeg(progressive: bool = False) -> bytes:
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, progressive=progressive)
    return buf.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _entropy(data: bytes) -> list[bytes]:
    """The bytes of every scan (SOS header end to the next marker), read independently."""
    out = []
    pos = data.find(b"\xff\xda")
    while pos >= 0:
        ln = int.from_bytes(data[pos + 2 : pos + 4], "big")
        start = pos + 2 + ln
        end = start
        while True:
            end = data.index(b"\xff", end)
            if data[end + 1] not in (0x00, 0xFF) and not 0xD0 <= data[end + 1] <= 0xD7:
                break
            end += 1
        out.append(data[start:end])
        pos = data.find(b"\xff\xda", end)
    return out


@pytest.mark.parametrize("progressive", [False, True])
def test_scrub_zeroes_com_and_app_payloads_and_keeps_a_valid_identical_jpeg(progressive):
    src = _jpeg(progressive)
    planted = plant_jpeg(src, TOKEN)
    if progressive:  # a COM between two scans as well
        second = planted.find(b"\xff\xda", planted.find(b"\xff\xda") + 2)
        planted = planted[:second] + b"\xff\xfe\x00\x16" + f"mid {TOKEN}".encode()[:20] + planted[second:]
    planted += TOKEN.encode()  # bytes after EOI
    assert TOKEN.encode() in planted
    clean, n = jpeg.scrub(planted)
    assert len(clean) == len(planted)
    assert TOKEN.encode() not in clean and TOKEN[:8].encode() not in clean
    assert n == (4 if progressive else 3)  # COM, APP1, (mid COM), trailing bytes
    # still a JPEG, decodes to the same pixels, same entropy-coded data
    assert (_pixels(clean) == _pixels(src)).all()
    import imagecodecs

    assert (imagecodecs.jpeg_decode(clean) == imagecodecs.jpeg_decode(src)).all()
    assert _entropy(clean) == _entropy(src)
    # JFIF APP0 (essential) keeps its payload; the dirty-segment check agrees
    assert b"JFIF\0" in clean
    assert jpeg.dirty_segments(clean) == []
    assert {jpeg.marker_name(s.marker) for s in jpeg.dirty_segments(planted)} >= {"COM", "APP1"}


def test_header_segments_and_stream_spans_read_only_the_header(tmp_path):
    planted = plant_jpeg(_jpeg(), TOKEN)
    segs, complete = jpeg.header_segments(planted)
    assert complete and segs[-1].marker == jpeg.SOS
    names = [jpeg.marker_name(s.marker) for s in jpeg.nonessential(planted, segs)]
    assert names == ["COM", "APP1"]
    f = tmp_path / "t.bin"
    f.write_bytes(b"x" * 100 + planted + b"y" * 7)
    import os

    fd = os.open(f, os.O_RDONLY)
    try:
        spans = jpeg.stream_spans(fd, 100, len(planted))
        assert [(s.marker) for s in spans] == [0xFE, 0xE1]
        for s in spans:
            assert TOKEN.encode() in f.read_bytes()[s.offset : s.offset + s.length]
        # a non-JPEG span: nothing to do; a malformed one: nothing claimed
        assert jpeg.stream_spans(fd, 0, 100) == []
    finally:
        os.close(fd)
    with pytest.raises(jpeg.JpegError):
        jpeg.walk(b"\xff\xd8\xff\xfe\x00\x01")


def _levels(path: Path) -> tuple:
    with openslide.OpenSlide(str(path)) as s:
        for lvl in range(s.level_count):
            w, h = s.level_dimensions[lvl]
            s.read_region((0, 0), lvl, (min(128, w), min(128, h)))
        return s.level_count, tuple(s.level_dimensions)


def _run(cli, src_dir: Path, out: Path, *extra) -> dict:
    code, stdout, stderr = cli("run", str(src_dir), "-o", str(out), *extra)
    report = json.loads((out / "wsianon-report.json").read_text())
    return {"code": code, "report": report, "text": stdout + stderr}


def _tiff_planted(tmp_path: Path) -> tuple[Path, dict[str, tuple]]:
    src = tmp_path / "src"
    src.mkdir()
    write_svs(src / "a.svs")
    shutil.copy(BUNDLED / "CMU-1-Small-Region.svs", src / "cmu.svs")  # real Aperio, JPEGTables
    make_ndpi_info(src / "n.ndpi")
    make_philips(src / "p.tiff")
    levels = {}
    for name, kw in (("a.svs", {}), ("cmu.svs", {}), ("n.ndpi", {"is_ndpi": True}), ("p.tiff", {})):
        assert plant_tiff_jpeg(src / name, TOKEN, **kw) > 0
        assert TOKEN.encode() in (src / name).read_bytes()
        levels[name] = _levels(src / name)
    return src, levels


def test_planted_jpeg_segments_never_reach_out_tiff_formats(cli, tmp_path):
    src, levels = _tiff_planted(tmp_path)
    out = tmp_path / "out"
    res = _run(cli, src, out)
    assert res["code"] == 0, res["text"][-2000:]
    slides = res["report"]["slides"]
    assert len(slides) == 4 and all(s["status"] == "ok" for s in slides)
    for s in slides:
        removed = {r["name"] for r in s["removed"] if r["kind"] == "structure"}
        assert {"JPEG COM", "JPEG APP1"} <= removed, s["format"]
        checks = {c["check"]: c for c in s["verification"]["checks"]}
        assert checks["tiles-identical"]["ok"]
    outs = sorted(p for p in out.iterdir() if p.suffix in (".svs", ".ndpi", ".tiff"))
    assert len(outs) == 4
    for p in outs:
        assert scan_for(p, {"token": TOKEN, "token-head": TOKEN[:12]}) == [], p.name
        assert _levels(p) in levels.values()
    # the JPEGTables of the real slide still decode the tiles: same pixels as the source
    cmu_out = next(p for p in outs if p.suffix == ".svs" and p.stat().st_size > 1_000_000)
    with tifffile.TiffFile(src / "cmu.svs") as a, tifffile.TiffFile(cmu_out) as b:
        assert b.pages[0].jpegtables is not None and TOKEN.encode() not in bytes(b.pages[0].jpegtables)
        assert (a.pages[0].asarray() == b.pages[0].asarray()).all()


def test_verifier_catches_a_jpeg_segment_the_redactor_left(cli, tmp_path, monkeypatch):
    """Without the scrub step, verification must refuse the output (the source-side
    normalization differs from the output's tiles): quarantined, nothing in OUT."""
    import wsianon.pipeline.anonymize as anon

    src = tmp_path / "src"
    src.mkdir()
    write_svs(src / "a.svs")
    plant_tiff_jpeg(src / "a.svs", TOKEN)
    monkeypatch.setattr(anon, "scrub_jpeg_segments", lambda plan, **kw: 0)
    out = tmp_path / "out"
    res = _run(cli, src, out)
    assert res["code"] == 1
    (s,) = res["report"]["slides"]
    assert s["status"] == "failed"
    bad = {c["check"] for c in s["verification"]["checks"] if not c["ok"]}
    assert "tiles-identical" in bad
    assert not [p for p in out.iterdir() if p.suffix == ".svs"]


def test_planted_jpeg_segments_never_reach_out_mrxs(cli, tmp_path, monkeypatch):
    orig = mrxs_gen._jpeg
    monkeypatch.setattr(mrxs_gen, "_jpeg", lambda img, quality=85, **kw: plant_jpeg(orig(img, quality, **kw), TOKEN))
    src = tmp_path / "src"
    src.mkdir()
    info = mrxs_gen.make_mrxs(src, "CASE-MRXS-0042")
    data = b"".join(p.read_bytes() for p in info.folder.iterdir())
    assert data.count(TOKEN.encode()) >= 2 * len(info.tiles)
    before = _levels(info.mrxs)
    out = tmp_path / "out"
    res = _run(cli, src, out)
    assert res["code"] == 0, res["text"][-2000:]
    (s,) = res["report"]["slides"]
    checks = {c["check"]: c for c in s["verification"]["checks"]}
    assert checks["mrxs-tiles-identical"]["ok"]
    assert {"JPEG COM", "JPEG APP1"} <= {r["name"] for r in s["removed"]}
    files = [p for p in out.rglob("*") if p.is_file()]
    for f in files:
        assert scan_for(f, {"token": TOKEN}) == [], f.name
    (main,) = [p for p in out.iterdir() if p.suffix == ".mrxs"]
    assert _levels(main) == before


def _planted_dicom(src: Path, dest: Path) -> int:
    """A copy of ``src`` whose every JPEG frame carries a COM and an APP1 with the token."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(str(src))
    n = int(ds.get("NumberOfFrames", 1) or 1)
    frames = [plant_jpeg(f, TOKEN) for f in generate_frames(ds.PixelData, number_of_frames=n)]
    ds.PixelData = encapsulate(frames)
    for kw in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if kw in ds:
            delattr(ds, kw)
    ds.save_as(str(dest), enforce_file_format=True)
    return len(frames)


def test_planted_jpeg_segments_never_reach_out_dicom_route(cli, tmp_path):
    from .conftest import shared

    src = tmp_path / "src"
    src.mkdir()
    n = _planted_dicom(shared("dicom/openslide-python_boxes_0.dcm"), src / "boxes.dcm")
    assert (src / "boxes.dcm").read_bytes().count(TOKEN.encode()) == 2 * n
    out = tmp_path / "out"
    res = _run(cli, src, out, "--target", "dicom")
    assert res["code"] == 0, res["text"][-2000:]
    (s,) = res["report"]["slides"]
    checks = {c["check"]: c for c in s["verification"]["checks"]}
    assert checks["dicom: frame segments"]["ok"] and checks["dicom: frames"]["ok"]
    assert any(r["name"] == "JPEG COM/APPn in frames" for r in s["removed"])
    dcms = sorted(out.rglob("*.dcm"))
    assert dcms
    for f in dcms:
        assert scan_for(f, {"token": TOKEN}) == [], f.name
        # the frames still decode: the same pixels as the planted source's frames
        import pydicom

        a, b = pydicom.dcmread(str(src / "boxes.dcm")), pydicom.dcmread(str(f))
        assert (a.pixel_array == b.pixel_array).all()
    # and verification without a source flags a frame that still carries one
    code, stdout, _ = cli("verify", str(src / "boxes.dcm"), "--json")
    seg = [c for c in json.loads(stdout)[0]["checks"] if c["check"] == "dicom: frame segments"]
    assert code == 1 and seg and not seg[0]["ok"]
    assert TOKEN not in stdout


def test_svs_to_dicom_frames_carry_no_planted_segments(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_svs(src / "a.svs")
    plant_tiff_jpeg(src / "a.svs", TOKEN)
    out = tmp_path / "out"
    res = _run(cli, src, out, "--target", "dicom")
    assert res["code"] == 0, res["text"][-2000:]
    (s,) = res["report"]["slides"]
    checks = {c["check"]: c for c in s["verification"]["checks"]}
    assert checks["dicom: frame segments"]["ok"]
    for f in out.rglob("*.dcm"):
        assert scan_for(f, {"token": TOKEN}) == [], f.name
