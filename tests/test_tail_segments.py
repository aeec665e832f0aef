"""A COM segment after a tile's entropy-coded data (before EOI) on the native copy route.

The copy reads every tile whole, so its JPEG scrub (``io.jpeg.StreamScrub`` in the copy's tap)
judges each tile from all its bytes: the segment is found and its payload zeroed, and the slide is
verified (before, the scrub looked at a tile's header only when the header was one found clean,
the verifier's tile identity found the difference and the slide was quarantined).  The marker
search is done once a buffer and shared by the scrub and the source-side tile identity.  In-place
runs plan from the tiles' heads (they do not read the pixel data), so there such a slide still
fails closed and is restored."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from wsianon.io.jpeg import StreamScrub, marker_positions, tiff_jpeg_streams

from .fixtures.plant_jpeg import plant_tiff_jpeg
from .fixtures.svs_gen import write_svs

TOKEN = "TAILCOM-5521"


def _tail_com(data: bytes, token: str) -> bytes:
    payload = b"tail " + token.encode()
    return data[:-2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + data[-2:]


@pytest.fixture
def tailed(tmp_path) -> Path:
    (tmp_path / "in").mkdir()
    src = write_svs(tmp_path / "in" / "CASE-5521.svs", size=(2048, 1536), tile=256, levels=2).path
    assert plant_tiff_jpeg(src, TOKEN, edit=_tail_com) > 40
    return src


def _in(folder: Path) -> int:
    return sum(p.read_bytes().count(TOKEN.encode()) for p in folder.rglob("*") if p.is_file())


def test_copy_route_zeroes_a_segment_after_the_entropy_coded_data(cli, tailed, tmp_path):
    out = tmp_path / "out"
    code, _o, err = cli("run", "--target", "native", str(tailed), "-o", str(out))
    assert code == 0, err
    assert _in(out) == 0
    (s,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    v = s["verification"]
    assert s["status"] == "ok" and v["ok"] and all(c["ok"] for c in v["checks"])
    assert {"tiles-identical", "vocabulary"} <= {c["check"] for c in v["checks"]}
    coms = [r for r in s["removed"] if r["name"] == "JPEG COM"]
    assert coms and all(r["action"] == "payload zeroed" for r in coms)
    assert _in(tailed.parent) > 0  # the input is untouched


def test_in_place_still_fails_closed_and_restores_the_file(cli, tailed, tmp_path):
    target = tmp_path / "ip" / "CASE-5521.svs"
    target.parent.mkdir()
    shutil.copy2(tailed, target)
    before = target.read_bytes()
    code, _o, err = cli("run", "--target", "native", "--in-place", str(target), "--mapping", str(tmp_path / "m.csv"))
    assert code != 0 and "tiles-identical" in err
    assert target.read_bytes() == before


@pytest.mark.parametrize("size", [4099, 65536, 8 << 20])
def test_stream_scrub_finds_the_tail_the_plan_does_not(tailed, size):
    """Fed the file (any buffer size, tiles crossing buffers), the scrub finds every tile's tail
    COM, with the buffer's markers handed over or searched itself; the plan's head-only search
    (``rest``) finds none of them."""
    import wsianon.io.jpeg as jpeg_mod

    _tables, streams = tiff_jpeg_streams(tailed)
    n_tiles = sum(len(o) for o, _c in streams)
    data = tailed.read_bytes()
    found = []
    with open(tailed, "rb") as fh:
        fd = fh.fileno()
        for shared in (True, False):
            sc = StreamScrub(streams)
            got = []
            for pos in range(0, len(data), size):
                buf = data[pos : pos + size]
                got += sc.feed(fd, pos, buf, marker_positions(buf) if shared else None)
            got += sc.rest(fd)
            found.append(sorted((s.offset, s.length, s.marker) for s in got))
        assert found[0] == found[1]
        tails = [f for f in found[0] if f[2] == 0xFE and data[f[0] : f[0] + 5] == b"tail "]
        assert len(tails) == n_tiles  # every tile's tail (the JPEGTables carry none)
        assert not [s for s in StreamScrub(streams).rest(fd) if data[s.offset : s.offset + 5] == b"tail "]
    assert jpeg_mod.WHOLE_MAX >= max(int(c.max()) for _o, c in streams)


def test_the_tile_identity_refuses_markers_of_another_buffer(tailed):
    from wsianon.verify import tileid

    import tifffile

    with tifffile.TiffFile(tailed) as tf:
        dims = {(p.imagewidth, p.imagelength) for p in tf.pages if p.is_tiled}
    pages = tileid.level_pages(tailed, "aperio", dims)
    assert pages
    f = tileid.Feeder(pages, scrub=True)
    with pytest.raises(ValueError, match="not this buffer's"):
        f.feed(0, b"\0" * 100, marker_positions(b"\0" * 200 + b"\xff\xfe"))


def test_only_streams_that_may_carry_a_tail_are_read_whole(tmp_path, tailed, monkeypatch):
    """A tile with a dirty header whose scan header is its last marker before EOI is judged from
    its head, as before (walking every such tile whole cost 27 us a tile); a tile with a segment
    after the scan is judged from all its bytes."""
    import wsianon.io.jpeg as jpeg_mod

    monkeypatch.setattr(jpeg_mod, "_HEAD", 64)  # tiles longer than a head read, as real ones are
    (tmp_path / "h").mkdir()
    headed = write_svs(tmp_path / "h" / "CASE-5522.svs", size=(2048, 1536), tile=256, levels=2).path
    assert plant_tiff_jpeg(headed, TOKEN) > 40  # COM and APP1 after SOI: a dirty header, nothing after the scan

    def heads(path: Path) -> tuple[int, int, int]:
        seen: list[tuple[int, int]] = []
        real = StreamScrub._judge

        def judge(self, fd, off, cnt, g, head, tail):
            seen.append((len(head), cnt))
            return real(self, fd, off, cnt, g, head, tail)

        monkeypatch.setattr(StreamScrub, "_judge", judge)
        _tables, streams = tiff_jpeg_streams(path)
        data = path.read_bytes()
        with open(path, "rb") as fh:
            sc = StreamScrub(streams)
            spans = sc.feed(fh.fileno(), 0, data) + sc.rest(fh.fileno())
        monkeypatch.setattr(StreamScrub, "_judge", real)
        long = [(h, c) for h, c in seen if c > 4096]
        return len(spans), sum(h == c for h, c in long), len(long)

    spans, whole, long = heads(headed)
    assert spans > 80 and long > 40 and whole == 0
    spans, whole, long = heads(tailed)
    assert long > 40 and whole == long
