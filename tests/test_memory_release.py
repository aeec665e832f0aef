"""Peak memory that does not grow with the slide (issue 14): what a native copy holds per tile is
let go as soon as it has served, and verification holds the output's tile table once.

Measured (``benchmarks/bench_memory.py``): the source-side tile identity, kept alive by the copy's
bound ``feed`` through the whole verification, and the deferred JPEG scrub's tile tables, kept by
the plan, were about half of the 90 bytes a tile; OpenSlide's tile cache (32 MiB) was the run's
largest allocation while the thumbnail check reads every tile once.  No size or time is asserted:
these tests check that the references are gone, which is what the figures depend on."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import openslide
import pytest

from wsianon.io.jpeg_plan import DeferredScrub
from wsianon.pipeline import anonymize
from wsianon.verify import tileid

from .fixtures.svs_gen import write_svs


@pytest.fixture
def svs(tmp_path) -> Path:
    return write_svs(tmp_path / "CASE-0815-memory.svs", size=(1536, 1024), tile=256).path


def _dims(path: Path) -> set[tuple[int, int]]:
    with openslide.OpenSlide(str(path)) as s:
        return {tuple(d) for d in s.level_dimensions}


def test_copy_lets_go_of_its_tile_tables_before_verification(cli, svs, tmp_path, monkeypatch):
    feeders: list[tuple[bool, weakref.ref]] = []
    level_feeder = tileid.level_feeder

    def recording(path, fmt, dims, scrub):
        f = level_feeder(path, fmt, dims, scrub)
        if f is not None:
            feeders.append((scrub, weakref.ref(f)))
        return f

    scrubs: list[DeferredScrub] = []
    scrub_jpeg_segments = anonymize.scrub_jpeg_segments

    def planning(plan, defer=False):
        n = scrub_jpeg_segments(plan, defer)
        scrubs.extend(fp.deferred_scrub for fp in plan.files if fp.deferred_scrub is not None)
        return n

    seen: dict[str, object] = {}
    verify_native = anonymize.verify_native

    def verifying(*args, **kw):
        gc.collect()
        seen["source feeders alive"] = [s for s, ref in feeders if s and ref() is not None]
        seen["source feeders made"] = sum(1 for s, _ in feeders if s)
        seen["scrub tables held"] = sum(len(d.streams) for d in scrubs)
        return verify_native(*args, **kw)

    monkeypatch.setattr(tileid, "level_feeder", recording)
    monkeypatch.setattr(anonymize, "scrub_jpeg_segments", planning)
    monkeypatch.setattr(anonymize, "verify_native", verifying)
    code, o, e = cli("run", "--target", "native", svs, "-o", tmp_path / "out")
    assert code == 0, o + e
    assert seen["source feeders made"] == 1  # the copy fed the source-side identity
    assert seen["source feeders alive"] == []  # ... and nothing holds it once its identities are taken
    assert scrubs  # the copy judged the JPEG tiles from its buffers
    assert seen["scrub tables held"] == 0  # ... and the plan no longer holds their tile tables


def test_streaming_feeder_holds_one_tile_table(svs):
    pages = tileid.level_pages(svs, "aperio", _dims(svs))
    assert pages and len(pages[0].counts) > 20
    f = tileid.Feeder(pages, scrub=False)
    assert f.streamable
    assert all(st.page.offsets.size == 0 and st.page.counts.size == 0 for st in f.states)
    spans = f.spans()
    assert spans._off is f._off and spans._end is f._end  # shared, not copied
    # the pages the caller passed are its own: untouched
    assert len(pages[0].counts) > 20
    # and the identities are those of a feeder that keeps the pages' tables (tile-order reads)
    tileid.feed_file(svs, f)
    assert f.finish(svs) == tileid.Feeder(pages, scrub=False, direct=True).finish(svs)


def test_thumbnail_check_reads_without_openslide_tile_cache(cli, svs, tmp_path, monkeypatch):
    capacities: list[int] = []
    set_cache = openslide.OpenSlide.set_cache

    def recording(self, cache):
        capacities.append(cache._capacity)
        return set_cache(self, cache)

    monkeypatch.setattr(openslide.OpenSlide, "set_cache", recording)
    code, o, e = cli("run", "--target", "native", svs, "-o", tmp_path / "out")
    assert code == 0, o + e
    assert 0 in capacities


def test_padding_check_lets_go_of_the_pages_it_read(svs, monkeypatch):
    """The edge-padding check reads every page with tifffile (its tile table as Python tuples,
    ~80 bytes a tile): nothing of them may outlive the check, or they are held through the
    thumbnail check that follows (measured: +12 MB of peak at 4 GiB)."""
    import tifffile

    from wsianon.pipeline.model import Verdict
    from wsianon.verify import padding

    files: list[weakref.ref] = []
    init = tifffile.TiffFile.__init__

    def recording(self, *a, **kw):
        files.append(weakref.ref(self))
        return init(self, *a, **kw)

    monkeypatch.setattr(tifffile.TiffFile, "__init__", recording)
    v = Verdict()
    padding.check_tiff(svs, v)
    assert [c.name for c in v.checks] == ["tiles-padding"] and v.checks[0].ok
    assert files  # it read the file with tifffile
    assert all(ref() is None for ref in files)  # and no collection was needed after it returned


def test_absent_tiles_reads_one_page_at_a_time_and_lets_go(svs, monkeypatch):
    """The left-out-tiles lookup of the pyramid check read the output with tifffile's page cache
    on: every page's tile table (tuples of Python ints) stayed alive until it returned, and that
    was the peak that grew with the slide (measured: 12.4 MiB of 92 at 4.5 GB, 3 of 80 at
    1.1 GB).  Now at most tifffile's first page and the one being read are alive at a time."""
    import tifffile

    from wsianon.verify import levels

    pages: list[weakref.ref] = []
    alive_at_read: list[int] = []
    init = tifffile.TiffPage.__init__

    def recording(self, *a, **kw):
        alive_at_read.append(sum(1 for ref in pages if ref() is not None))
        pages.append(weakref.ref(self))
        return init(self, *a, **kw)

    monkeypatch.setattr(tifffile.TiffPage, "__init__", recording)
    dims = sorted(_dims(svs), reverse=True)
    assert levels.absent_tiles(svs, dims) == {}  # the fixture stores every tile
    assert len(pages) >= 4  # it read every page of the slide (levels, thumbnail, label, macro)
    assert max(alive_at_read) <= 2, alive_at_read
    assert all(ref() is None for ref in pages)


def test_dicom_verification_starts_without_the_conversions_reader(cli, svs, tmp_path, monkeypatch):
    """The conversion's tifffile reader (opentile's, inside wsidicomizer) is closed when the
    verification starts, but its objects form cycles the collector had not reached: measured at
    the 4.5 GB DICOM verification's peak, the source's tile tables as tuples (12.4 MiB). Every
    TiffFile opened before the verification must be gone when it starts."""
    import tifffile

    from wsianon.pipeline import verify_dicom

    files: list[weakref.ref] = []
    init = tifffile.TiffFile.__init__

    def recording(self, *a, **kw):
        files.append(weakref.ref(self))
        return init(self, *a, **kw)

    seen: dict[str, object] = {}
    verify_output = verify_dicom.verify_dicom_output

    def verifying(*args, **kw):
        seen["opened before"] = len(files)
        seen["alive"] = sum(1 for ref in files if ref() is not None)
        return verify_output(*args, **kw)

    monkeypatch.setattr(tifffile.TiffFile, "__init__", recording)
    monkeypatch.setattr(verify_dicom, "verify_dicom_output", verifying)
    code, o, e = cli("run", "--target", "dicom", svs, "-o", tmp_path / "out")
    assert code == 0, o + e
    assert seen["opened before"]  # the conversion read the source with tifffile
    assert seen["alive"] == 0  # ... and none of those readers outlives it
