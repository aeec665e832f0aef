"""One walk of encapsulated Pixel Data's items (wsianon/io/dicomframes.py) for every reader: the
8-byte-read walk (``walk_items``: read_header, the verifier's ``_fragments``) and the buffered walk
(``item_buffers``: scrub_frames) give the same items as an independent reference walk on real and
generated instances, and the same one-line reason on a truncated or malformed item list; and
scrub_frames' one buffered pass zeroes a COM / APPn payload wherever it sits in a frame (in the
header, after the entropy-coded data, after EOI), in place and at the same length, leaving every
other byte as it was."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pydicom
import pytest

from tests.conftest import shared
from tests.test_frame_segment_shortcut import _com
from tests.test_frame_segments_streamed import _frames, _instance
from wsianon.converters.dicom import stream
from wsianon.errors import CorruptInput
from wsianon.io import dicomframes as D
from wsianon.io.jpeg import dirty_segments
from wsianon.verify.dicom.jpeg import _fragments


def _reference(path: Path) -> tuple[list[tuple[int, int]], int | None, str | None, int]:
    """Items by a plain walk over the whole file in memory (the test's own reading of PS3.5 A.4)."""
    data = path.read_bytes()
    with open(path, "rb") as fh:
        pydicom.dcmread(fh, stop_before_pixels=True)
        off = fh.tell()
    assert data[off : off + 4] == b"\xe0\x7f\x10\x00" and data[off + 8 : off + 12] == b"\xff" * 4
    pos, out = off + 12, []
    while True:
        if pos + 8 > len(data):
            return out, None, D.TRUNCATED, off + 12
        g, e, n = struct.unpack_from("<HHI", data, pos)
        if (g, e) == (0xFFFE, 0xE0DD):
            return out, pos + 8, None, off + 12
        if (g, e) != (0xFFFE, 0xE000) or n == 0xFFFFFFFF:
            return out, None, D.MALFORMED, off + 12
        out.append((pos + 8, n))
        pos += 8 + n


def _walks(path: Path, chunk: int) -> tuple[D.Items, D.Items, list[tuple[int, int]]]:
    _values, _end, _problem, start = _reference(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        a = D.walk_items(fd, start, size)
        b = D.Items()
        yielded: list[tuple[int, int]] = []
        for base, buf, i0, i1 in D.item_buffers(fd, start, size, b, chunk):
            for off, ln in b.values[i0:i1]:
                if buf is not None:  # the yielded buffer holds the item's value
                    assert base <= off and off + ln <= base + len(buf)
                    assert buf[off - base : off - base + ln] == os.pread(fd, ln, off)
                else:
                    assert i1 - i0 == 1 and (ln + 8 > chunk or off + ln > size)  # too big, or past the end
            yielded += b.values[i0:i1]
    finally:
        os.close(fd)
    return a, b, yielded


def _instances(tmp_path: Path) -> list[Path]:
    return [
        shared("dicom/openslide-python_boxes_0.dcm"),
        shared("dicom/highdicom_sm_image.dcm"),
        _instance(tmp_path / "gen.dcm", _frames(40)),
    ]


@pytest.mark.parametrize("chunk", [8 << 20, 4096, 1000, 64])
def test_both_walks_give_the_reference_items(tmp_path, chunk):
    for path in _instances(tmp_path):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if str(ds.file_meta.TransferSyntaxUID) in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"):
            continue
        values, end, problem, _start = _reference(path)
        assert problem is None and len(values) > 1
        a, b, yielded = _walks(path, chunk)
        assert (a.values, a.end, a.problem) == (values, end, None), path.name
        assert (b.values, b.end, b.problem) == (values, end, None), path.name
        assert yielded == values  # every item handed over once, in file order
        with open(path, "rb") as fh:
            frags = _fragments(fh.fileno(), path, ds)
        assert frags == values[1:]


def _broken(tmp_path: Path, how: str) -> Path:
    path = _instance(tmp_path / f"{how}.dcm", _frames(12))
    values, _end, _p, _s = _reference(path)
    data = bytearray(path.read_bytes())
    off5, len5 = values[5]
    if how == "cut-in-a-frame":
        del data[off5 + len5 // 2 :]
    elif how == "cut-in-an-item-header":
        del data[off5 - 4 :]
    elif how == "no-delimiter":
        del data[values[-1][0] + values[-1][1] :]
    elif how == "wrong-tag":
        data[off5 - 8 : off5 - 4] = struct.pack("<HH", 0xFFFE, 0xE00D)
    elif how == "undefined-item-length":
        data[off5 - 4 : off5] = b"\xff" * 4
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how", ["cut-in-a-frame", "cut-in-an-item-header", "no-delimiter", "wrong-tag", "undefined-item-length"])
def test_truncated_or_malformed_items_same_reason_everywhere(tmp_path, how):
    path = _broken(tmp_path, how)
    values, end, problem, _start = _reference(path)
    assert problem is not None and end is None
    for chunk in (8 << 20, 1000, 64):
        a, b, _y = _walks(path, chunk)
        assert (a.values, a.end, a.problem) == (values, None, problem)
        assert (b.values, b.end, b.problem) == (values, None, problem)
    with pytest.raises(CorruptInput) as exc:
        stream.read_header(path)
    assert str(exc.value).endswith(problem) and "\n" not in str(exc.value)
    with pytest.raises(CorruptInput) as exc2:
        stream.scrub_frames(path)
    assert str(exc2.value) == str(exc.value)
    with open(path, "rb") as fh:
        assert _fragments(fh.fileno(), path, pydicom.dcmread(path, stop_before_pixels=True)) is None


def _plant(f: bytes, where: str, text: bytes) -> bytes:
    if where == "com-in-header":
        sos = f.index(b"\xff\xda")
        return f[:sos] + _com(text) + f[sos:]
    if where == "app1-in-header":
        sos = f.index(b"\xff\xda")
        return f[:sos] + b"\xff\xe1" + (len(text) + 2).to_bytes(2, "big") + text + f[sos:]
    if where == "com-after-entropy-data":
        return f[:-2] + _com(text) + f[-2:]
    assert where == "after-eoi"
    return f + text


@pytest.mark.parametrize("where", ["com-in-header", "app1-in-header", "com-after-entropy-data", "after-eoi"])
@pytest.mark.parametrize("chunk", [8 << 20, 3000])
def test_scrub_frames_finds_a_payload_anywhere_in_a_frame(tmp_path, monkeypatch, where, chunk):
    monkeypatch.setattr(stream, "SCRUB_CHUNK", chunk)  # 3000: buffer edges and frames on their own
    frames = _frames(40)
    text = b"Patient Jane Roe 1957"
    for k in (0, 17, 39):  # before any clean header is known, and after
        frames[k] = _plant(frames[k], where, text)
    path = _instance(tmp_path / "planted.dcm", frames)
    before = path.read_bytes()
    assert before.count(text) == 3
    assert stream.scrub_frames(path) == 3
    after = path.read_bytes()
    assert len(after) == len(before) and text not in after
    changed = [i for i, (x, y) in enumerate(zip(before, after)) if x != y]
    start = before.index(text)
    assert all(before[i] != 0 and after[i] == 0 for i in changed)  # only zeroed, nothing else moved
    assert start in changed
    for f in pydicom.encaps.generate_frames(pydicom.dcmread(path).PixelData, number_of_frames=40):
        assert dirty_segments(f) == []
    assert stream.scrub_frames(path) == 0 and path.read_bytes() == after


def test_scrub_frames_leaves_a_clean_instance_untouched(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "SCRUB_CHUNK", 3000)
    path = _instance(tmp_path / "clean.dcm", _frames(40))
    before = path.read_bytes()
    assert stream.scrub_frames(path) == 0
    assert path.read_bytes() == before


def test_pairs_read_as_the_list_of_tuples_they_pack():
    """A walk's (offset, length) pairs are packed (``Pairs``): every way the readers use the list
    of tuples they replace gives the same answers, and 100,000 pairs cost 16 bytes each, not the
    ~120 of tuples (measured: 22.5 MiB of a 4.5 GB slide's DICOM verification peak)."""
    import tracemalloc

    from wsianon.io.dicomframes import Pairs

    ref = [(8 * k + 100, 3 * k + 1) for k in range(50)]
    p = Pairs()
    for t in ref:
        p.append(t)
    assert p == ref and list(p) == ref and len(p) == 50
    assert p[0] == ref[0] and p[-1] == ref[-1] and p[7] == ref[7]
    v = p[1:]
    assert v == ref[1:] and v[0] == ref[1] and v[-1] == ref[-1] and len(v) == 49
    assert v[2:5] == ref[3:6] and p[::7] == ref[::7] and p[10:3] == [] and p[-3:] == ref[-3:]
    assert v[1:] + v[:1] == ref[2:] + ref[1:2]
    assert [o for o, _ln in v] == [o for o, _ln in ref[1:]]
    with pytest.raises(IndexError):
        v[49]
    with pytest.raises(TypeError):
        v.append((1, 2))  # a view of a walk is read-only
    assert p.pop() == ref[-1] and p == ref[:-1] and v == ref[1:-1]  # a view ends at its walk's end at most
    assert Pairs() == [] and Pairs() != [(1, 2)] and not Pairs()

    tracemalloc.start()
    try:
        big = Pairs()
        for k in range(100_000):
            big.append((k * 30_000, 29_999))
        held = tracemalloc.get_traced_memory()[0]
        frames = big[1:]  # the frames after the offset table: a view, no copy
        assert tracemalloc.get_traced_memory()[0] - held < 1000
    finally:
        tracemalloc.stop()
    assert len(frames) == 99_999 and frames[-1] == (99_999 * 30_000, 29_999)
    assert held < 20 * 100_000, held  # array growth over-allocates a little over 16 bytes a pair
