"""``dicom: frames`` (passed-through levels): ``ProvenHeaders.same``, the comparison that skips
the header parse for (tile header, frame header) pairs it has proven, answers exactly as
``_same_mv`` does, frame for frame: on whole levels (abbreviated tiles with JPEGTables, as real
Aperio slides have them; a converted generated slide; a converted real slide) and on mutations
of the entropy-coded data, the tables, the length, the padding and the headers."""

from __future__ import annotations

import os
import random
import struct
import warnings
from pathlib import Path

import pydicom
import pytest
import tifffile

from wsianon.converters.base import Inventory, SlideContext
from wsianon.verify.dicom import frames as frames_mod
from wsianon.verify.dicom import jpeg as jpeg_mod
from wsianon.verify.dicom.jpeg import ProvenHeaders, _same_mv
from wsianon.profiles.policy import Policy
from wsianon.verify.shown_levels import shown_levels

from .conftest import shared
from .fixtures.plant_jpeg import noise_jpeg
from .fixtures.svs_gen import write_svs

DQT, DHT, SOS, COM = 0xDB, 0xC4, 0xDA, 0xFE


def _segments(b: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """(marker, whole segment) from SOI to the end of the first SOS, and that end."""
    out, i = [], 2
    while True:
        m = b[i + 1]
        (ln,) = struct.unpack(">H", b[i + 2 : i + 4])
        out.append((m, b[i : i + 2 + ln]))
        i += 2 + ln
        if m == SOS:
            return out, i


def _abbreviate(full: bytes) -> tuple[bytes, bytes]:
    """(JPEGTables, abbreviated tile) of a full JPEG, as an Aperio scanner stores them."""
    segs, end = _segments(full)
    tables = b"\xff\xd8" + b"".join(s for m, s in segs if m in (DQT, DHT)) + b"\xff\xd9"
    tile = b"\xff\xd8" + b"".join(s for m, s in segs if m not in (DQT, DHT)) + full[end:]
    return tables, tile


def _frame(tile: bytes, tables: bytes) -> bytes:
    """A DICOM frame of ``tile``: the level's tables inline after SOI (and an APP14 Adobe segment),
    padded to even length as a DICOM item."""
    adobe = b"\xff\xee" + struct.pack(">H", 14) + b"Adobe\x00\x64\x00\x00\x00\x00\x00"
    f = b"\xff\xd8" + adobe + tables[2:-2] + tile[2:]
    return f + b"\x00" if len(f) % 2 else f


@pytest.fixture(scope="module")
def level() -> tuple[bytes, list[bytes], list[bytes]]:
    """One level of 40 abbreviated tiles (one shared JPEGTables) and their frames."""
    tables, tiles = None, []
    for seed in range(40):
        t, tile = _abbreviate(noise_jpeg(seed, 48 + (seed % 3)))  # a few header variants (sizes)
        tables = tables or t
        assert t == tables
        tiles.append(tile)
    assert tables is not None
    assert any(len(t) % 2 for t in tiles) and any(len(t) % 2 == 0 for t in tiles)  # padded and unpadded frames
    return tables, tiles, [_frame(t, tables) for t in tiles]


def _reference(pairs, tables) -> list[bool]:
    return [_same_mv(t, f, tables, {}) for t, f in pairs]


def _fast(pairs, tables, learn_from=()) -> tuple[list[bool], ProvenHeaders]:
    ph = ProvenHeaders(tables)
    for t, f in learn_from:
        assert ph.same(t, f)
    return [ph.same(t, f) for t, f in pairs], ph


def test_a_level_is_proven_with_one_header_parse_per_header_pair(level, monkeypatch):
    tables, tiles, frames = level
    pairs = list(zip(tiles, frames))
    expected = _reference(pairs, tables)
    assert all(expected)
    calls = []
    orig = jpeg_mod._same_mv
    monkeypatch.setattr(jpeg_mod, "_same_mv", lambda *a: calls.append(1) or orig(*a))
    got, ph = _fast(pairs, tables)
    assert got == expected
    assert 1 <= len(ph.pairs) <= 3  # one pair per tile size
    assert len(calls) == len(ph.pairs)  # every other frame took the fast path


def _mutations(tile: bytes, frame: bytes, tables: bytes | None):
    """(name, tile, frame, tables, must be refused) for one clean pair."""
    fsegs, fend = _segments(frame)
    tend = _segments(tile)[1]

    def flip(b: bytes, i: int, x: int = 0x01) -> bytes:
        return b[:i] + bytes([b[i] ^ x]) + b[i + 1 :]

    def seg_at(segs, marker) -> int:
        off = 2
        for m, seg in segs:
            if m == marker:
                return off
            off += len(seg)
        raise AssertionError(marker)

    com = b"\xff\xfe" + struct.pack(">H", 9) + b"scanner"
    padded = len(frame) - fend == len(tile) - tend + 1  # the frame's item carries one padding zero
    out = [
        ("entropy byte", tile, flip(frame, fend + (len(frame) - fend) // 2), tables, True),
        ("entropy byte in the tile", flip(tile, tend + (len(tile) - tend) // 2), frame, tables, True),
        ("EOI byte", tile, flip(frame, len(frame) - (3 if padded else 1)), tables, True),
        ("DQT in the frame", tile, flip(frame, seg_at(fsegs, DQT) + 10), tables, True),
        ("DHT in the frame", tile, flip(frame, seg_at(fsegs, DHT) + 30), tables, True),
        ("frame one byte shorter", tile, frame[:-1], tables, not padded),
        ("frame one byte longer (zero)", tile, frame + b"\x00", tables, padded),
        ("frame one byte longer (non-zero)", tile, frame + b"\x01", tables, True),
        ("tile one byte shorter", tile[:-1], frame, tables, True),
        ("COM in the tile header", tile[:2] + com + tile[2:], frame, tables, False),
        ("COM in the frame header", tile, frame[:2] + com + frame[2:], tables, False),
        ("SOF in the frame", tile, flip(frame, seg_at(fsegs, 0xC0) + 5), tables, False),
        ("tile header only", tile[:tend], frame[:fend], tables, tile[:tend] != frame[:fend]),
    ]
    if tables:
        out += [
            ("DQT in JPEGTables", tile, frame, flip(tables, 10), True),
            ("DHT in JPEGTables", tile, frame, flip(tables, len(tables) - 6), True),
        ]
    if padded:
        out.append(("padding byte non-zero", tile, frame[:-1] + b"\x07", tables, True))
    return out


def test_every_mutation_is_judged_as_same_mv_judges_it(level):
    tables, tiles, frames = level
    clean = list(zip(tiles, frames))
    for k in (0, 1, 2, 7):
        for name, t, f, tb, refused in _mutations(tiles[k], frames[k], tables):
            expected = _same_mv(t, f, tb, {})
            got, ph = _fast([(t, f)], tb, learn_from=clean if tb == tables else ())
            assert got == [expected], (k, name)
            if refused:
                assert expected is False, (k, name)
            if tb == tables:
                assert ph.pairs  # judged after the clean pairs were learned: the fast path was there to take


def test_a_pair_proven_only_by_equal_bytes_is_not_taken_without_its_table_check(level):
    """A frame byte-equal to its abbreviated tile is accepted by ``_same_mv`` without a table
    check; the pair of headers it shows must not be taken as proven: an even-length tile whose
    frame is the tile plus a zero byte (not the item padding ``_same_mv`` accepts byte for byte)
    goes through the table check, and the frame lacks the level's tables."""
    tables, tiles, _ = level
    even = [t for t in tiles if len(t) % 2 == 0]
    ph = ProvenHeaders(tables)
    for t in tiles:
        assert ph.same(t, t)
    for t in even:
        assert _same_mv(t, t + b"\x00", tables, {}) is False
        assert ph.same(t, t + b"\x00") is False


def test_random_byte_changes_are_judged_as_same_mv_judges_them(level):
    tables, tiles, frames = level
    clean = list(zip(tiles, frames))
    rng = random.Random(14)
    cases = []
    for _ in range(400):
        k = rng.randrange(len(tiles))
        t, f = tiles[k], frames[k]
        which = rng.random()
        src = bytearray(f if which < 0.6 else t)
        head = _segments(bytes(src))[1]
        i = rng.randrange(head) if rng.random() < 0.7 else rng.randrange(len(src))
        src[i] = rng.randrange(256)
        if rng.random() < 0.1:
            del src[rng.randrange(len(src)) :]
        cases.append((t, bytes(src)) if which < 0.6 else (bytes(src), f))
    got, _ = _fast(cases, tables, learn_from=clean)
    assert got == _reference(cases, tables)
    assert not all(got) and any(got)


def test_a_header_whose_parse_reads_past_it_is_not_learned(level):
    """An SOS with a length field under 2 ends the parsed header before the bytes the parse
    read: such a pair is never taken as proven (a stream that starts with that header may parse
    differently)."""
    tables, tiles, frames = level
    t_segs, t_end = _segments(tiles[0])
    f_segs, f_end = _segments(frames[0])
    # the SOS length set to 0: the header ends 2 bytes into the SOS segment
    t = tiles[0][: t_end - len(t_segs[-1][1]) + 2] + b"\x00\x00" + tiles[0][t_end - len(t_segs[-1][1]) + 4 :]
    f = frames[0][: f_end - len(f_segs[-1][1]) + 2] + b"\x00\x00" + frames[0][f_end - len(f_segs[-1][1]) + 4 :]
    assert _same_mv(t, f, tables, {})  # _same_mv takes it (its answer is the reference, not judged here)
    ph = ProvenHeaders(tables)
    assert ph.same(t, f)
    assert ph.pairs == []
    # the same 'header' followed by other bytes: judged by _same_mv, as before
    t2 = t[: t_end - len(t_segs[-1][1]) + 2] + b"\x00\x05" + t[t_end - len(t_segs[-1][1]) + 4 :]
    assert ph.same(t2, f) == _same_mv(t2, f, tables, {})


def _level_pairs(src: Path, out_dir: Path) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:
    """(JPEGTables, [(tile, frame)]) of the converted slide's passed-through base level."""
    pages = list(tifffile.TiffFile(src).pages)
    for p in sorted(out_dir.glob("*.dcm")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        if frames_mod.image_kind(ds) != "VOLUME":
            continue
        (plan,) = frames_mod._plan_levels([(p, ds)], pages, [], shown_levels(src, pages))
        mode, path, ds, (page,) = plan  # one source page a picture: this level has one
        assert mode == "bytes"
        frags = frames_mod._located(path)
        assert frags is not None
        with open(src, "rb") as fs, open(path, "rb") as fo:
            pairs = [(os.pread(fs.fileno(), page.databytecounts[k], page.dataoffsets[k]), os.pread(fo.fileno(), ln, o)) for k, (o, ln) in enumerate(frags)]
        return page.jpegtables, pairs
    raise AssertionError("no VOLUME instance")


def _convert(src: Path, out: Path) -> None:
    from wsianon.converters.dicom import convert_slide

    ctx = SlideContext(pseudonym="FAST", key=b"F" * 32, policy=Policy())
    convert_slide(src, Inventory("aperio", src, [src]), ctx, out)


def _judge_real(src: Path, out: Path) -> None:
    tables, pairs = _level_pairs(src, out)
    expected = _reference(pairs, tables)
    assert all(expected)
    got, _ = _fast(pairs, tables)
    assert got == expected
    for k in range(0, len(pairs), max(1, len(pairs) // 4)):
        for name, t, f, tb, refused in _mutations(*pairs[k], tables):
            got, _ = _fast([(t, f)], tb, learn_from=pairs if tb == tables else ())
            assert got == [_same_mv(t, f, tb, {})], (k, name)
            if refused:
                assert got == [False], (k, name)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("fast-gen")
    write_svs(d / "gen.svs", levels=1, size=(1024, 768))
    _convert(d / "gen.svs", d / "out")
    return d / "gen.svs", d / "out"


def test_a_converted_generated_slide(generated):
    _judge_real(*generated)


def test_a_converted_real_aperio_slide_with_jpegtables(tmp_path):
    src = shared("aperio/CMU-1-Small-Region.svs")
    _convert(src, tmp_path / "out")
    tables, _ = _level_pairs(src, tmp_path / "out")
    assert tables  # abbreviated tiles: the case the fast path is for
    _judge_real(src, tmp_path / "out")


def test_compare_bytes_names_the_first_changed_frame(generated, tmp_path):
    """``_compare_bytes`` over a level whose frame 5 has one entropy-coded byte changed: the
    frames before it are counted, frame 5 is named."""
    import shutil

    src, out = generated
    pages = list(tifffile.TiffFile(src).pages)
    for p0 in sorted(out.glob("*.dcm")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(p0, stop_before_pixels=True)
        if frames_mod.image_kind(ds) == "VOLUME":
            break
    p = tmp_path / p0.name
    shutil.copyfile(p0, p)
    frags = frames_mod._located(p)
    assert frags is not None and len(frags) > 6
    o, ln = frags[5]
    with open(p, "r+b") as fh:
        fh.seek(o + ln // 2)
        b = fh.read(1)
        fh.seek(o + ln // 2)
        fh.write(bytes([b[0] ^ 0x20]))
    ((_, path, ds, (page,)),) = frames_mod._plan_levels([(p, ds)], pages, [], shown_levels(src, pages))
    for located in (frags, False):  # fragments from FrameSegments' walk, or walked here
        problems: list[str] = []
        with open(src, "rb") as fs:
            n = frames_mod._compare_bytes(path, ds, page, fs.fileno(), problems, located)
        assert n == 5
        assert problems == [f"{p.name}: frame 5 differs from source tile 5"]


def test_a_frame_scrubbed_after_the_entropy_data_is_proven_against_the_normalized_tile():
    """A tile with a comment after its entropy-coded data, or text after EOI: its frame as the
    frame scrub leaves it (payload zeroed) is proven against the tile as a correct redaction
    leaves it; the same frame with the payload left, changed, or an entropy byte changed is not."""
    from wsianon.io.jpeg import scrub

    tables, tile = _abbreviate(noise_jpeg(5, 64))
    secret = b"tail PATIENT-4711"
    com = struct.pack(">BBH", 0xFF, COM, len(secret) + 2) + secret
    for dirty in (tile[:-2] + com + tile[-2:], tile + b"after PATIENT-4711"):
        clean, zeroed = scrub(dirty)
        assert zeroed == 1 and clean != dirty and secret[5:] not in clean
        ph = ProvenHeaders(tables)
        assert ph.same(dirty, _frame(clean, tables))  # scrubbed: proven
        assert not _same_mv(dirty, _frame(clean, tables), tables, {})  # (the raw comparison alone would fail it)
        assert ph.same(dirty, _frame(dirty, tables))  # left as it is: the bitstreams are equal (the segment check fails it)
        other = clean.replace(bytes(len(secret) - 5), b"X" * (len(secret) - 5))
        assert other != clean and not ph.same(dirty, _frame(other, tables))  # another payload: not the redaction
        mutated = bytearray(clean)
        mutated[len(clean) // 2] ^= 0x01
        assert not ph.same(dirty, _frame(bytes(mutated), tables))
