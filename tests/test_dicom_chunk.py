"""wsidicom reads and writes passed-through tiles in batches of ``PASSTHROUGH_CHUNK``
(``converters/dicom/bridge.passthrough_chunk``), not its default of two tiles a batch: the
instances must stay byte-identical, re-encoded or stripe-read levels keep wsidicom's own
choice, and the batches really are larger (a batch read carries more than two tiles)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsianon.converters.base import Inventory, SlideContext
from wsianon.converters.dicom import bridge, convert_slide
from wsianon.profiles.policy import Policy

from .fixtures.svs_gen import write_svs

KEY = b"c" * 32


@pytest.fixture(autouse=True)
def _two_cpus(monkeypatch):
    """wsidicom's threads (and so the batch, see ``MAX_INFLIGHT_TILES``) follow the CPU count:
    the tests see the 2-CPU machine the figures were measured on, whatever runs them."""
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)


def _spy_batches(monkeypatch) -> list[int]:
    """The number of tiles in each batch wsidicom reads and hands to a level's sequencer.  (Not
    the writer's calls: a batch that arrives before its predecessor is cached and then written
    together with it, so a writer call can carry several batches, depending on thread timing.)"""
    from wsidicom.writing.tile_sequencer import TileSequencer

    sizes: list[int] = []
    original = TileSequencer._process_batch

    def process_batch(self, batch, written_tiles):
        sizes.append(len(batch.tiles))
        return original(self, batch, written_tiles)

    monkeypatch.setattr(TileSequencer, "_process_batch", process_batch)
    return sizes


def _chosen(monkeypatch) -> list[int | None]:
    chosen: list[int | None] = []
    original = bridge.passthrough_chunk

    def spy(wsi, transcoded, workers=None):
        chosen.append(original(wsi, transcoded, workers))
        return chosen[-1]

    monkeypatch.setattr(bridge, "passthrough_chunk", spy)
    return chosen


def _convert(src: Path, inv: Inventory, out: Path):
    ctx = SlideContext(pseudonym="CHUNK1", key=KEY, policy=Policy())
    return convert_slide(src, inv, ctx, out).files


def test_passed_through_levels_are_written_in_larger_batches_with_identical_bytes(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    src = write_svs(tmp_path / "src" / "c.svs", size=(4096, 2048), levels=2).path
    inv = Inventory("aperio", src, [src])
    monkeypatch.setenv("WSIANON_DICOM_CHUNK", "default")
    sizes = _spy_batches(monkeypatch)
    default = _convert(src, inv, tmp_path / "default")
    assert sizes and max(sizes) <= 2  # wsidicom's own batches: one or two tiles each
    monkeypatch.delenv("WSIANON_DICOM_CHUNK")
    chosen = _chosen(monkeypatch)
    sizes.clear()
    chunked = _convert(src, inv, tmp_path / "chunked")
    assert chosen == [bridge.PASSTHROUGH_CHUNK]
    # 4096 px = 16 tiles of 256 a row at the base, 8 at the next level (a batch stays in its row)
    assert max(sizes) == bridge.PASSTHROUGH_CHUNK and set(sizes) <= {bridge.PASSTHROUGH_CHUNK, 8}
    assert [p.name for p in chunked] == [p.name for p in default] and chunked
    for a, b in zip(chunked, default):
        assert a.read_bytes() == b.read_bytes(), a.name


@pytest.mark.parametrize(
    "fmt, expected",
    [("philips", bridge.PASSTHROUGH_CHUNK), ("scn", bridge.PASSTHROUGH_CHUNK), ("ndpi", bridge.PASSTHROUGH_CHUNK), ("bif", None), ("mrxs", None)],
)
def test_other_formats_keep_wsidicoms_choice_where_tiles_are_reencoded_or_read_in_stripes(tmp_path, monkeypatch, fmt, expected):
    """BIF and MRXS levels are decoded and re-encoded (a batch of decoded tiles is large):
    wsidicom's default.  The NDPI fixture's stripes are one tile wide (opentile suggests single
    tiles); where the chunk is used, the instances equal the default's byte for byte."""
    from .test_dicom_formats import _fixture, _native

    src, _canaries, _root = _fixture(fmt, tmp_path / "in")
    inv = _native(src)
    chosen = _chosen(monkeypatch)
    new = _convert(src, inv, tmp_path / "new")
    assert chosen == [expected]
    if expected is not None:
        monkeypatch.setenv("WSIANON_DICOM_CHUNK", "default")
        old = _convert(src, inv, tmp_path / "old")
        assert [p.name for p in new] == [p.name for p in old] and new
        assert all(n.read_bytes() == o.read_bytes() for n, o in zip(new, old))


class _Data:
    def __init__(self, suggested):
        self.suggested_minimum_chunk_size = suggested


class _Level:
    def __init__(self, *suggested):
        self.instances = {i: type("I", (), {"image_data": _Data(s)})() for i, s in enumerate(suggested)}


class _Wsi:
    def __init__(self, *levels):
        self.pyramids = [list(levels)]


def test_the_chunk_rule():
    assert bridge.passthrough_chunk(_Wsi(_Level(1), _Level(1, 1)), [], workers=2) == bridge.PASSTHROUGH_CHUNK
    assert bridge.passthrough_chunk(_Wsi(_Level(1), _Level(1)), ["level 1"]) is None  # a re-encoded level
    assert bridge.passthrough_chunk(_Wsi(_Level(1), _Level(4)), []) is None  # NDPI stripes of 4 tiles: opentile's choice
    assert bridge.passthrough_chunk(_Wsi(_Level(None)), []) is None  # a reader that says nothing


def test_the_chunk_shrinks_with_wsidicoms_threads(monkeypatch):
    """wsidicom keeps 2 x its threads batches in flight: at most MAX_INFLIGHT_TILES tiles."""
    wsi = _Wsi(_Level(1))
    assert bridge.passthrough_chunk(wsi, [], workers=8) == 16
    assert bridge.passthrough_chunk(wsi, [], workers=16) == 8
    assert bridge.passthrough_chunk(wsi, [], workers=64) == 2  # wsidicom's own batch of two
    for threads in (1, 2, 4, 8, 16, 32, 64, 128):
        chunk = bridge.passthrough_chunk(wsi, [], workers=threads)
        assert chunk is not None and (2 * threads * chunk <= bridge.MAX_INFLIGHT_TILES or chunk == 2)
    monkeypatch.setattr(bridge.os, "cpu_count", lambda: 32)  # workers None: wsidicom's default, a thread a CPU
    assert bridge.passthrough_chunk(wsi, []) == 4
