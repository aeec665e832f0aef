"""The one-pass native route (issue 14): the source is read once by the copy, which hands its
buffers to the verifier's source-side tile identity; the output is read back once for the
canary scan, the tile identity and the SHA-256 the record needs.  These tests make sure the
shortcuts did not weaken anything: a tampered tile, a planted canary in an unreferenced region
and a dirty JPEG segment are still caught, the identities do not depend on how the bytes were
chunked, and the certificate's digests are those of the files.  No timing is asserted."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import tifffile

from wsianon.converters.aperio import AperioConverter
from wsianon.io import digests
from wsianon.io.plan import FilePlan, Patch, apply_copy
from wsianon.io.scan import Canary, Scanner, ScanStream
from wsianon.pipeline.verify import snapshot_source, verify_native
from wsianon.profiles.policy import Policy
from wsianon.verify import tileid
from wsianon.verify.readback import read_back

from .fixtures.svs_gen import write_svs


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _level0(path: Path) -> tuple[list[int], list[int]]:
    with tifffile.TiffFile(path) as tf:
        p = tf.pages[0]
        return list(p.dataoffsets), list(p.databytecounts)


def _dims(path: Path) -> set[tuple[int, int]]:
    with tifffile.TiffFile(path) as tf:
        return {(tf.pages[0].imagewidth, tf.pages[0].imagelength)}


def _with_com_segment(path: Path, tile: int = 3, text: bytes = b"COM-CANARY-5531") -> None:
    """Overwrite a level-0 tile's first bytes after SOI with a COM segment (same length: the
    tile's following bytes are shifted out at its end; its entropy data are garbage then, but
    it is still a JPEG stream whose header parses)."""
    offs, cnts = _level0(path)
    data = bytearray(Path(path).read_bytes())
    a, n = offs[tile], cnts[tile]
    seg = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    tile_bytes = bytes(data[a : a + n])
    new = tile_bytes[:2] + seg + tile_bytes[2:]
    data[a : a + n] = new[: n - 2] + b"\xff\xd9"
    Path(path).write_bytes(bytes(data))


@pytest.fixture
def svs(tmp_path) -> Path:
    return write_svs(tmp_path / "CASE-0815-onepass.svs", size=(1536, 1024), tile=256).path


@pytest.mark.parametrize("scrub", [True, False])
def test_identity_independent_of_chunking(svs, scrub):
    """Fed in odd chunk sizes (tiles split across buffers, one byte at a time at places), read
    whole, or read tile by tile (the fallback): the same identities."""
    _with_com_segment(svs)
    pages = tileid.level_pages(svs, "aperio", _dims(svs))
    assert pages and len(pages[0].counts) > 20
    whole = tileid.identities_of_file(svs, pages, scrub)
    direct = tileid.Feeder(pages, scrub, direct=True)
    assert direct.finish(svs) == whole
    rng = random.Random(7)
    data = svs.read_bytes()
    for _ in range(3):
        f = tileid.Feeder(pages, scrub)
        pos = 0
        while pos < len(data):
            n = rng.choice([1, 3, 100, 4096, 20_000, 70_000])
            f.feed(pos, data[pos : pos + n])
            pos += n
        assert f.finish(svs) == whole
    # the scrubbed and the raw identity differ exactly because a tile has a dirty COM segment
    assert tileid.identities_of_file(svs, pages, not scrub) != whole


def test_identity_sees_one_changed_byte(svs):
    pages = tileid.level_pages(svs, "aperio", _dims(svs))
    before = tileid.identities_of_file(svs, pages, True)
    offs, cnts = _level0(svs)
    data = bytearray(svs.read_bytes())
    i = offs[5] + cnts[5] // 2
    data[i] ^= 0x01
    svs.write_bytes(bytes(data))
    assert tileid.identities_of_file(svs, pages, True) != before
    # a short file: the page is marked short, not silently equal
    svs.write_bytes(bytes(data[: offs[-1] + 10]))
    assert tileid.identities_of_file(svs, pages, True)[0][3].endswith(":short")


def test_tiles_out_of_file_order_fall_back_to_direct_reads(svs):
    pages = tileid.level_pages(svs, "aperio", _dims(svs))
    p = pages[0]
    ref = tileid.identities_of_file(svs, pages, True)
    # the same tiles listed in reverse: another concatenation, and not streamable
    rev = [tileid.Page(p.width, p.height, p.offsets[::-1].copy(), p.counts[::-1].copy(), p.jpeg, p.tables)]
    f = tileid.Feeder(rev, True)
    assert not f.streamable
    tileid.feed_file(svs, f)
    out = f.finish(svs)
    assert out[0][:3] == ref[0][:3] and out != ref


def test_copy_tap_sees_the_source_and_the_output_is_patched(tmp_path):
    src = tmp_path / "src.bin"
    data = os.urandom((3 << 20) + 12345)
    src.write_bytes(data)
    fp = FilePlan("out.bin", source=src, patches=[Patch(100, 10, b"X" * 10, "t"), Patch(2 << 20, 5000, None, "z")])
    seen = bytearray()

    def tap(off: int, buf: bytes, markers, ff) -> None:
        assert off == len(seen) and markers is None and ff is None  # no JPEG scrub planned: the copy searched nothing
        seen.extend(buf)

    apply_copy(fp, tmp_path / "out.bin", tap=tap)
    assert bytes(seen) == data  # the source as it is, every byte, in order
    out = (tmp_path / "out.bin").read_bytes()
    assert out[100:110] == b"X" * 10 and out[2 << 20 : (2 << 20) + 5000] == bytes(5000)
    assert out[:100] == data[:100] and out[(2 << 20) + 5000 :] == data[(2 << 20) + 5000 :]


def test_copy_tap_gets_the_marker_positions_the_scrub_searched(tmp_path):
    """With a deferred JPEG scrub the copy searches each buffer's markers once and hands them to
    the tap (the tile identity uses them rather than searching again), with the fill-byte pairs and
    restart markers from the same pass."""
    from wsianon.io.jpeg import marker_positions, pairs_and_restarts
    from wsianon.io.jpeg_plan import DeferredScrub

    src = tmp_path / "src.bin"
    data = os.urandom((2 << 20) + 777) + b"\xff\xd8\xff\xfe\x00\x04ab\xff\xff\xd0\xff\xd9"
    src.write_bytes(data)
    got: list[tuple[int, bool]] = []

    def tap(off: int, buf: bytes, markers, ff) -> None:
        assert markers is not None and ff is not None
        pairs, rst = pairs_and_restarts(buf)
        got.append((off, np.array_equal(markers, marker_positions(buf)) and np.array_equal(ff[0], pairs) and np.array_equal(ff[1], rst) and len(rst) > 0))

    apply_copy(FilePlan("o.bin", source=src, deferred_scrub=DeferredScrub([], [])), tmp_path / "o.bin", tap=tap)
    assert got and all(same for _, same in got) and got[0][0] == 0
    assert (tmp_path / "o.bin").read_bytes() == data  # no stream listed: nothing zeroed


def test_copy_tap_error_is_reported(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(1 << 20))

    def tap(off: int, buf: bytes, markers, ff) -> None:
        raise ValueError("tap failed")

    with pytest.raises(ValueError, match="tap failed"):
        apply_copy(FilePlan("o.bin", source=src), tmp_path / "o.bin", tap=tap)


def test_scan_stream_matches_scan_file(tmp_path):
    cans = [Canary("patient", "Jane Doe-12345"), Canary("id", "ABCDE-991")]
    blob = os.urandom(300_000) + b"..JANE DOE-12345.." + "ABCDE-991".encode("utf-16-le") + os.urandom(5000)
    f = tmp_path / "b.bin"
    f.write_bytes(blob)
    for engine in (None, "re"):
        sc = Scanner(cans, engine=engine)
        ref = [x.as_dict() for x in sc.scan_file(f)]
        assert len(ref) == 2
        for step in (5, 4096, 1 << 20):
            st = ScanStream(sc, "b.bin")
            for i in range(0, len(blob), step):
                st.feed(blob[i : i + step])
            assert [x.as_dict() for x in st.close()] == ref


def test_read_back_digest_and_remembered(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(os.urandom((2 << 20) + 7))
    rb = read_back(f, "x.bin", chunk=1 << 20)
    assert rb.sha256 == _sha(f) and rb.size == f.stat().st_size
    assert digests.lookup(f) == rb.sha256
    with open(f, "r+b") as fh:  # changed afterwards: the remembered digest no longer applies
        fh.seek(10)
        fh.write(b"\x00\x01")
        os.utime(fh.fileno(), ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000))
    assert digests.lookup(f) is None


def run_native(conv, src: Path, out_dir: Path):
    """inspect + the pipeline's whole plan (closed world, JPEG segment scrub) + apply_copy."""
    from wsianon.converters.base import SlideContext
    from wsianon.converters.closed_world import close_plan
    from wsianon.io.jpeg_plan import scrub_jpeg_segments

    inv = conv.inspect(src)
    plan = conv.plan(inv, SlideContext(pseudonym="anon0001", key=b"k" * 32, policy=Policy()))
    close_plan(plan, inv.format)
    scrub_jpeg_segments(plan)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / plan.files[0].dest
    apply_copy(plan.files[0], out)
    return inv, plan, out


def _verify(src: Path, out: Path):
    conv = AperioConverter()
    inv = conv.inspect(src)
    snap = snapshot_source(inv)
    return verify_native(inv, conv, out, [out], Policy(), root=out.parent, snap=snap)


def _checks(verdict) -> dict[str, bool]:
    return {c.name: c.ok for c in verdict.checks}


def test_verifier_passes_a_clean_output_and_catches_a_tampered_tile(svs, tmp_path):
    _, _, out = run_native(AperioConverter(), svs, tmp_path / "o")
    v = _verify(svs, out)
    assert _checks(v)["tiles-identical"] and v.ok, v.as_dict()
    offs, cnts = _level0(out)
    data = bytearray(out.read_bytes())
    data[offs[7] + cnts[7] // 2] ^= 0x40
    out.write_bytes(bytes(data))
    v = _verify(svs, out)
    assert _checks(v)["tiles-identical"] is False and not v.ok


def test_verifier_catches_a_canary_planted_in_an_unreferenced_region(svs, tmp_path):
    _, _, out = run_native(AperioConverter(), svs, tmp_path / "o")
    barcode = "BARCODE-CANARY-7710"
    with open(out, "ab") as fh:  # past every referenced byte
        at = fh.tell()
        fh.write(b"\0" * 3 + barcode.encode("utf-16-le"))
    v = _verify(svs, out)
    hits = [f for f in v.findings if getattr(f, "encoding", "") == "utf-16"]
    assert at + 3 in {f.offset for f in hits}, v.as_dict()
    assert not v.ok


def test_dirty_jpeg_segment_left_in_a_tile_is_caught(svs, tmp_path):
    """A COM segment in a source tile: a correct output has its payload zeroed; an output that
    kept it (a copy without the scrub) fails the tile identity."""
    _with_com_segment(svs)
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    leaked = out_dir / "leak.svs"
    leaked.write_bytes(svs.read_bytes())  # no redaction at all
    v = _verify(svs, leaked)
    assert _checks(v)["tiles-identical"] is False


def test_run_certificate_digests_are_the_files(cli, svs, tmp_path):
    out = tmp_path / "out"
    code, o, e = cli("run", "--target", "native", svs, "-o", out)
    assert code == 0, o + e
    report = json.loads((out / "wsianon-report.json").read_text())
    checks = {c["check"]: c["ok"] for c in report["slides"][0]["verification"]["checks"]}
    assert checks["tiles-identical"] and checks["canary-scan"] and checks["vocabulary"]
    cert = json.loads((out / "wsianon-certificate.json").read_text())
    files = [o for o in cert["outputs"]]
    assert files
    for entry in files:
        p = out / entry["file"]
        assert entry["sha256"] == _sha(p)
        assert entry["size"] == p.stat().st_size
    # the run's verifier hashed the committed output itself (the record did not need to read it)
    assert digests.lookup(out / files[0]["file"]) == files[0]["sha256"]


def test_big_tiles_split_and_streamed_match_direct_reads(svs, monkeypatch):
    """Tiles longer than SCRUB_MAX (NDPI strips) are normalized over their first SCRUB_MAX
    bytes and hashed raw after that, fed across buffers: the same as reading them directly."""
    monkeypatch.setattr(tileid, "SCRUB_MAX", 700)
    _with_com_segment(svs)
    pages = tileid.level_pages(svs, "aperio", _dims(svs))
    direct = tileid.Feeder(pages, True, direct=True)
    ref = direct.finish(svs)
    data = svs.read_bytes()
    for step in (333, 5000, 1 << 20):
        f = tileid.Feeder(pages, True)
        for pos in range(0, len(data), step):
            f.feed(pos, data[pos : pos + step])
        assert f.finish(svs) == ref


def test_stream_spans_header_shortcut_gives_the_full_answer(tmp_path):
    """``stream_spans(known=...)`` (the plan's and the DICOM frame scrub's shortcut for repeated
    clean headers) answers exactly as the full parse, for clean streams and for the dirty ones
    that share the clean header: a COM after the scan, bytes after EOI, short and long streams."""
    from wsianon.io.jpeg import stream_spans

    from .fixtures.plant_jpeg import noise_jpeg as jpeg

    small, big = jpeg(1, 16), jpeg(2, 96)
    assert len(small) < 4096 < len(big)
    com = b"\xff\xfe\x00\x0cCOM-CANARY"

    def mid_com(j: bytes) -> bytes:  # a COM segment after the scan, before EOI
        return j[:-2] + com + b"\xff\xd9"

    streams = [
        big,
        small,
        jpeg(3, 96),
        jpeg(4, 16),
        mid_com(small),
        mid_com(big),
        small + b"TRAILING",
        big + b"TRAIL",
        big,
        small,
        big + b"\0",
        small + b"\0",
        big + b"\0\0X",
    ]
    f = tmp_path / "streams.bin"
    spans = []
    with open(f, "wb") as fh:
        for s in streams:
            spans.append((fh.tell(), len(s)))
            fh.write(s)
    fd = os.open(f, os.O_RDONLY)
    try:
        full = [stream_spans(fd, o, n) for o, n in spans]
        known: list[bytes] = []
        fast = [stream_spans(fd, o, n, known) for o, n in spans]
    finally:
        os.close(fd)
    assert known  # the clean headers were learned and used
    assert [[(s.offset, s.length, s.marker) for s in r] for r in fast] == [[(s.offset, s.length, s.marker) for s in r] for r in full]
    assert full[4] and full[6]  # the short dirty streams are found (the long ones only when the tail is not EOI)
    assert full[7] and full[12] and not full[10] and not full[11]  # padding zeros after EOI are fine, other bytes are not


def test_digests_travel_from_a_worker_process(tmp_path):
    """A worker's outcome carries its read-back digests; the coordinator adopts them, so the
    record (written by the coordinator) finds them without reading the outputs."""
    import subprocess
    import sys

    d = tmp_path / "series"
    d.mkdir()
    f = d / "a.dcm"
    f.write_bytes(os.urandom(100_000))
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from wsianon.verify.readback import read_back\n"
        "from wsianon.io import digests\n"
        f"read_back(Path({str(f)!r}), 'a.dcm')\n"
        f"print(json.dumps(digests.entries([Path({str(d)!r})])))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert digests.lookup(f) is None  # this process never read it
    digests.adopt(json.loads(out))
    assert digests.lookup(f) == _sha(f)
    digests.adopt([("x", 1, 2, 3, "bad"), None])  # malformed entries are ignored


def test_tile_spans_contains_agrees_with_one_by_one(svs):
    """The vectorised membership test of the proven tiles (what the vocabulary scan uses to skip
    the headers of tiles the identity proved) answers as the one-by-one test, several tiles at
    one offset and spans off by one included."""
    pages = tileid.level_pages(svs, "aperio", _dims(svs))
    assert pages
    # a second page that shares its first tile's offset with a different length
    extra = dataclasses.replace(pages[0], offsets=pages[0].offsets[:1].copy(), counts=pages[0].counts[:1] + 7)
    spans = tileid.TileSpans([*pages, extra])
    offs, cnts = _level0(svs)
    rng = random.Random(5)
    q_off = offs + [o + 1 for o in offs[:5]] + offs[:5] + [offs[0]] + [rng.randrange(1 << 40) for _ in range(20)]
    q_cnt = cnts + cnts[:5] + [c - 1 for c in cnts[:5]] + [cnts[0] + 7] + [rng.randrange(1 << 20) for _ in range(20)]
    got = spans.contains(q_off, q_cnt).tolist()
    assert got == [spans(o, c) for o, c in zip(q_off, q_cnt)]
    assert got[: len(offs)] == [True] * len(offs)
    assert got[len(offs) : len(offs) + 10] == [False] * 10
    assert got[len(offs) + 10] is True  # the shared offset with the other length


def test_vocabulary_scan_skips_only_proven_tiles(svs, tmp_path):
    """A COM segment with text in one tile: found by the vocabulary scan when that tile is not
    among the proven spans, skipped when it is (its identity with the scrubbed source would have
    failed instead)."""
    from wsianon.verify import vocabulary

    _with_com_segment(svs, text=b"Dr Hospitalname Pathology")
    pages = tileid.level_pages(svs, "aperio", _dims(svs))
    all_proven = tileid.TileSpans(pages)
    offs, cnts = _level0(svs)
    others = tileid.TileSpans([dataclasses.replace(p, counts=p.counts + (p.offsets == offs[3]).astype(p.counts.dtype)) for p in pages])

    def in_tile(found) -> list:  # (the unredacted source has findings in its descriptions too)
        return [f for f in found if offs[3] <= f.offset < offs[3] + cnts[3]]

    assert in_tile(vocabulary.scan_tiff(svs, "aperio", proven=all_proven)) == []
    assert in_tile(vocabulary.scan_tiff(svs, "aperio", proven=others))
    assert in_tile(vocabulary.scan_tiff(svs, "aperio", proven=None))
