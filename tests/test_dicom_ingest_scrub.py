"""The converted frames' JPEG scrub runs while wsidicom writes them (``FrameScrub``, the hook on
``WsiDicomWriter.write_tiles``), and gives the same files, byte for byte, and the same count of
segments emptied as the second pass over the written instances (``scrub_frames``) it replaces.

The slide's tiles carry COM / APP1 segments in the header, a COM after the entropy-coded data,
non-zero bytes after EOI, odd lengths (the item's zero padding), and a COM that runs into that
padding byte (found only when the frame is judged as its item is stored)."""

from __future__ import annotations

import itertools
import json
import struct
import threading
from pathlib import Path

import pytest

from wsianon.converters import dicom as dicom_mod
from wsianon.converters.base import Inventory, SlideContext
from wsianon.converters.dicom import FrameScrub, convert_slide, scrub_frames
from wsianon.converters.dicom import ingest
from wsianon.io.dicomframes import iter_frames
from wsianon.profiles.policy import Policy

from .fixtures.plant_jpeg import plant_jpeg, plant_tiff_jpeg
from .fixtures.svs_gen import write_svs

KEY = b"k" * 32


def _seg(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


ALL_KINDS = (0, 1, 2, 3, 4)


def _planter(kinds: tuple[int, ...] = ALL_KINDS):
    """A different planting for each stream, in turn (the JPEGTables get the default one)."""
    n = itertools.count()

    def edit(data: bytes, token: str) -> bytes:
        assert data[-2:] == b"\xff\xd9", "the generator's tiles end with EOI"
        t = token.encode()
        k = kinds[next(n) % len(kinds)]
        if k == 0:  # COM + APP1 Exif after SOI
            return plant_jpeg(data, token)
        if k == 1:  # a COM after the entropy-coded data, before EOI
            return data[:-2] + _seg(0xFE, b"tail " + t) + data[-2:]
        if k == 2:  # non-zero bytes after EOI
            return data + b"after " + t
        if k == 3:  # an odd length: the item is padded with a zero byte
            out = data[:2] + _seg(0xFE, b"odd " + t) + data[2:]
            return out if len(out) % 2 else data[:2] + _seg(0xFE, b"odd! " + t) + data[2:]
        # no EOI; a COM whose length runs one byte past the tile, into the item's padding
        body = data[:-2]
        return body + (b"\xff\xfe\x00\x04X" if len(body) % 2 == 0 else b"\xff\xfe\x00\x05XY")

    return edit


def _slide(tmp_path: Path, name: str, token: str, kinds: tuple[int, ...] = ALL_KINDS, size=(2048, 1536)) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    src = write_svs(tmp_path / "src" / f"{name}.svs", size=size, levels=2).path
    assert plant_tiff_jpeg(src, token, edit=_planter(kinds)) > 0
    return src


def _convert(src: Path, out: Path, frames: FrameScrub | None = None):
    ctx = SlideContext(pseudonym="SLIDE1", key=KEY, policy=Policy())
    return convert_slide(src, Inventory("aperio", src, [src]), ctx, out, frames=frames)


def _old_route(src: Path, out: Path) -> tuple[list[Path], int]:
    """Converted without the hook, then every instance scrubbed in place after writing."""
    res = _convert(src, out)
    return res.files, sum(scrub_frames(f) for f in res.files)


def _tokens_in_frames(files, token: str) -> int:
    return sum(token.encode() in bytes(fr) for f in files for fr in iter_frames(f))


@pytest.mark.parametrize("batch", [7, ingest.BATCH_FRAMES], ids=["batches-of-7", "default-batches"])
def test_hook_gives_the_second_pass_bytes_and_count(tmp_path, monkeypatch, batch):
    src = _slide(tmp_path, "a", "SEGTOK-1180")
    old_files, old_count = _old_route(src, tmp_path / "old")
    raw = _convert(src, tmp_path / "raw").files  # what wsidicom writes without any scrub
    assert _tokens_in_frames(raw, "SEGTOK-1180") > 0
    monkeypatch.setattr(ingest, "BATCH_FRAMES", batch)  # 7: many batches a level, the last one short
    frames = FrameScrub()
    res = _convert(src, tmp_path / "new", frames)
    count, rest = frames.outcome(res.files)
    assert rest == []  # every instance seen whole by the hook: no second pass needed
    assert count == old_count > 5 * 3  # five plantings, three of them one segment each, on many tiles
    assert [p.name for p in res.files] == [p.name for p in old_files]
    for new, old in zip(res.files, old_files):
        assert new.read_bytes() == old.read_bytes(), new.name
    # the frames were written clean: a second pass finds nothing left to empty
    assert _tokens_in_frames(res.files, "SEGTOK-1180") == 0
    assert sum(scrub_frames(f) for f in res.files) == 0
    assert ingest.installed_hooks() == 0
    from wsidicom.file.io.wsidicom_writer import WsiDicomWriter

    assert WsiDicomWriter.write_tiles is not ingest._write_tiles  # uninstalled after the conversion


def test_padding_byte_is_judged_as_stored(tmp_path):
    """A COM that runs one byte into the item's padding is emptied (the frame judged as its item
    is stored, with the padding byte), as scrub_frames empties it in the file."""
    src = _slide(tmp_path, "p", "PADTOK-2")
    frames = FrameScrub()
    res = _convert(src, tmp_path / "new", frames)
    hits = 0
    for f in res.files:
        for fr in iter_frames(f):
            b = bytes(fr)
            if b.endswith(b"\xff\xfe\x00\x04\x00\x00") or b.endswith(b"\xff\xfe\x00\x05\x00\x00\x00\x00"):
                hits += 1
            assert not (b.endswith(b"\xff\xfe\x00\x04X\x00") or b.endswith(b"\xff\xfe\x00\x05XY")), "a COM into the padding left"
    assert hits > 0


def _bypassing_direct_sink(monkeypatch):
    """wsidicom writing a pyramid level's frames around ``write_tiles`` (a code path the hook does
    not cover): frames reach the file through the pixel-data writer directly."""
    from wsidicom.file import file_writer

    def write(self, tiles):
        for tile in tiles:
            self._writer._frame_positions.append(self._writer._pixel_data_writer.write_tile(tile))

    monkeypatch.setattr(file_writer.DirectPartSink, "write", write)


def test_instances_the_hook_did_not_see_whole_fall_back_to_scrub_frames(tmp_path, monkeypatch):
    src = _slide(tmp_path, "f", "FALLTOK-3")
    old_files, old_count = _old_route(src, tmp_path / "old")
    _bypassing_direct_sink(monkeypatch)
    frames = FrameScrub()
    res = _convert(src, tmp_path / "new", frames)
    count, rest = frames.outcome(res.files)
    # the pyramid levels went around the hook; the thumbnail (another writer) through it
    assert [p.name for p in rest] == [p.name for p in res.files if "volume" in p.name] and len(rest) == 2
    assert _tokens_in_frames(rest, "FALLTOK-3") > 0  # left as wsidicom wrote them
    assert count + sum(scrub_frames(f) for f in rest) == old_count
    for new, old in zip(res.files, old_files):
        assert new.read_bytes() == old.read_bytes(), new.name
    assert _tokens_in_frames(res.files, "FALLTOK-3") == 0


def test_a_native_pixel_data_writer_is_not_judged_and_falls_back(tmp_path):
    """A writer of native (not encapsulated) Pixel Data: the hook leaves its bytes as they are
    (scrub_frames does not read such Pixel Data either) and the instance is not counted as scrubbed."""
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit
    from wsidicom.file.io import OffsetTableType, WsiDicomWriter

    from .fixtures.plant_jpeg import noise_jpeg

    planted = plant_jpeg(noise_jpeg(3, 16), "NATIVETOK-7")
    folder = tmp_path / "conv"
    folder.mkdir()
    frames = FrameScrub()
    with frames.installed(folder):
        for name, ts in (("native.dcm", ExplicitVRLittleEndian), ("encapsulated.dcm", JPEGBaseline8Bit)):
            w = WsiDicomWriter.open(folder / name, ts, OffsetTableType.BASIC)
            assert w.write_tiles([planted]) == 1
            if name == "encapsulated.dcm":  # held until its batch is full or the writer's finalize
                assert frames._file(w).pending == [planted]
                frames._flush(w, frames._file(w))
            w.close()
    native, encapsulated = (folder / "native.dcm").read_bytes(), (folder / "encapsulated.dcm").read_bytes()
    assert planted in native  # written as handed over
    assert b"NATIVETOK-7" not in encapsulated and len(encapsulated) >= len(planted)  # judged: payloads zeroed
    recs = {Path(p).name: r for p, r in frames._files.items()}
    assert not recs["native.dcm"].judged and recs["encapsulated.dcm"].judged and recs["encapsulated.dcm"].emptied == 2
    assert frames.outcome([folder / "native.dcm"]) == (0, [folder / "native.dcm"])


def test_a_frame_count_short_of_the_header_falls_back(tmp_path):
    """An instance whose header declares more frames than the hook judged is not counted as
    scrubbed (here: the hook's record of a level made one frame short)."""
    src = _slide(tmp_path, "c", "CNTTOK-4")
    frames = FrameScrub()
    res = _convert(src, tmp_path / "new", frames)
    assert frames.outcome(res.files)[1] == []
    rec = next(r for r in frames._files.values() if r.frames > 1)
    rec.frames -= 1
    assert len(frames.outcome(res.files)[1]) == 1


def test_conversions_in_threads_each_scrub_only_their_own(tmp_path, monkeypatch):
    """Two hooked conversions at once (both inside wsidicom's writers at the same moment) and one
    without a hook: each hooked output equals its second-pass reference; the unhooked one is left
    as wsidicom wrote it (the hook judges only its own conversion's files)."""
    a = _slide(tmp_path, "ta", "THRTOK-A", size=(2048, 2048))
    b = _slide(tmp_path, "tb", "THRTOK-B", size=(3072, 1536))
    ref_a, count_a = _old_route(a, tmp_path / "ref-a")
    ref_b, count_b = _old_route(b, tmp_path / "ref-b")
    both_inside = threading.Barrier(2, timeout=60)
    orig_write = FrameScrub._write
    waited: set[int] = set()
    lock = threading.Lock()

    def write(self, writer, tiles):
        with lock:
            first = id(self) not in waited
            waited.add(id(self))
        if first:
            both_inside.wait()  # both conversions have a writer in the hook now
        return orig_write(self, writer, tiles)

    monkeypatch.setattr(FrameScrub, "_write", write)
    results: dict[str, tuple] = {}
    errors: list[BaseException] = []

    def job(name, src, hooked):
        try:
            frames = FrameScrub() if hooked else None
            res = _convert(src, tmp_path / name, frames)
            results[name] = (res.files, frames.outcome(res.files) if frames else None)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=job, args=a_) for a_ in (("ha", a, True), ("hb", b, True), ("plain", a, False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(waited) == 2
    for name, ref, count in (("ha", ref_a, count_a), ("hb", ref_b, count_b)):
        files, (got, rest) = results[name]
        assert rest == [] and got == count > 0
        assert all(n.read_bytes() == o.read_bytes() for n, o in zip(files, ref, strict=True))
    plain, _ = results["plain"]
    assert _tokens_in_frames(plain, "THRTOK-A") > 0
    assert sum(scrub_frames(f) for f in plain) == count_a
    assert all(n.read_bytes() == o.read_bytes() for n, o in zip(plain, ref_a, strict=True))
    assert ingest.installed_hooks() == 0


def _report_slide(out: Path) -> dict:
    (s,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    return s


def test_pipeline_scrubs_in_the_hook_and_reports_the_same_count(cli, tmp_path, monkeypatch):
    """``run --target dicom``: the default route empties the segments in the hook (``scrub_frames``
    never runs on a converted instance); ``WSIANON_FRAME_SCRUB=after`` runs the second pass; both
    place the same files and report the same removal; the verifier passes both, including the
    frames whose tile had a segment after its entropy-coded data or bytes after EOI (``dicom:
    frames`` compares such a frame with its tile as a correct redaction leaves it).  The fifth
    planting (no EOI, a segment running past the tile) is a malformed stream: see the next test."""
    src = _slide(tmp_path, "CASE-77", "PIPETOK-5", kinds=(0, 1, 2, 3))
    key = tmp_path / "key"
    key.write_text(KEY.hex())
    key.chmod(0o600)
    outs, lines = {}, {}
    calls: dict[str, list] = {}
    orig = dicom_mod.scrub_frames
    for r in ("after", "ingest"):
        if r == "after":
            monkeypatch.setenv("WSIANON_FRAME_SCRUB", "after")
        else:
            monkeypatch.delenv("WSIANON_FRAME_SCRUB", raising=False)
        calls[r] = []

        def counting(path, _r=r):
            n = orig(path)
            calls[_r].append(n)
            return n

        monkeypatch.setattr(dicom_mod, "scrub_frames", counting)
        out = tmp_path / f"out-{r}"
        code, _o, err = cli("run", "--target", "dicom", str(src), "-o", str(out), "--key-file", str(key))
        assert code == 0, err
        outs[r] = out
        s = _report_slide(out)
        assert s["status"] == "ok"
        checks = {c["check"]: c for c in s["verification"]["checks"]}
        assert checks["dicom: frame segments"]["ok"], checks["dicom: frame segments"]
        assert checks["dicom: frames"]["ok"] and "equal the source tile" in checks["dicom: frames"]["detail"], checks["dicom: frames"]
        lines[r] = [x for x in s["removed"] if x["name"] == "JPEG COM/APPn in frames"]
    assert lines["ingest"] == lines["after"] and len(lines["ingest"]) == 1
    assert calls["ingest"] == []  # no second pass over any instance
    assert sum(calls["after"]) > 0 and len(calls["after"]) == len(list(outs["after"].rglob("*.dcm")))
    one, two = (sorted(o.rglob("*.dcm")) for o in (outs["ingest"], outs["after"]))
    assert [p.name for p in one] == [p.name for p in two] and one
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(one, two))


def test_a_malformed_tile_fails_the_frames_check_and_is_quarantined(cli, tmp_path):
    """A tile without EOI whose last segment runs past its end is not a stream ``normalized``
    can follow: its scrubbed frame cannot be proven against it, so the slide fails closed
    (quarantined, nothing placed), and the planted text is in no placed file."""
    src = _slide(tmp_path, "CASE-78", "PIPETOK-6", kinds=(0, 4))
    key = tmp_path / "key"
    key.write_text(KEY.hex())
    key.chmod(0o600)
    out = tmp_path / "out"
    code, _o, err = cli("run", "--target", "dicom", str(src), "-o", str(out), "--key-file", str(key))
    assert code != 0 and "failed: dicom: frames" in err
    s = _report_slide(out)
    assert s["status"] == "failed"
    assert not list(out.rglob("*.dcm"))


@pytest.mark.parametrize("fmt", ["ndpi", "philips", "scn", "bif", "mrxs"])
def test_other_formats_retiled_and_reencoded_levels_are_scrubbed_in_the_hook(tmp_path, fmt):
    """The hook sits where every frame is written, so NDPI's re-tiled levels, BIF's and MRXS's
    re-encoded ones and the other readers' tiles are judged there too: no instance is left to the
    second pass, and the files and the count equal the second pass's (planted TIFF streams)."""
    from .test_dicom_formats import _fixture, _native

    src, _canaries, _root = _fixture(fmt, tmp_path / "in")
    if fmt != "mrxs":
        assert plant_tiff_jpeg(src, "FMTTOK-9", **({"is_ndpi": False} if fmt == "ndpi" else {})) > 0
    inv = _native(src)
    ctx = SlideContext(pseudonym="T1", key=KEY, policy=Policy())
    old = convert_slide(src, inv, ctx, tmp_path / "old").files
    old_count = sum(scrub_frames(f) for f in old)
    frames = FrameScrub()
    new = convert_slide(src, inv, ctx, tmp_path / "new", frames=frames).files
    count, rest = frames.outcome(new)
    assert rest == [] and count == old_count
    if fmt in ("ndpi", "philips", "scn"):  # tiles passed through (NDPI's re-tiled): planted segments
        assert count > 0
    assert [p.name for p in new] == [p.name for p in old] and new
    assert all(n.read_bytes() == o.read_bytes() for n, o in zip(new, old))
    assert _tokens_in_frames(new, "FMTTOK-9") == 0
