"""The verifier decodes no page or tile larger than ``decoded.MAX_DECODED_BYTES`` (fuzz seeds 92
and 93: a SamplesPerPixel of 40,893 on a 280 x 300 label page made ``image-pages`` decode that
page whole, 3.4 GB filled, and ``wsianon verify`` peaked at 6.6-10.5 GB).  Width x height alone
never bounded it: tifffile allocates every sample of every pixel.  Such a page is judged as any
page the check cannot read: it fails (fail closed)."""

from __future__ import annotations

import struct
from pathlib import Path

import tifffile

from tests.fixtures.svs_gen import write_svs
from wsianon.verify import decoded, padding

HUGE_SAMPLES = 40_893


def _with_samples(tmp_path: Path, page_index: int, samples: int = HUGE_SAMPLES) -> Path:
    """A generated SVS whose page ``page_index`` declares ``samples`` SamplesPerPixel (the SHORT
    held in its entry, as the fuzz case had it)."""
    p = write_svs(tmp_path / "s.svs", size=(512, 384)).path
    with tifffile.TiffFile(p) as t:
        tag = t.pages[page_index].tags["SamplesPerPixel"]
        assert tag.dtype == 3 and tag.count == 1
        at = tag.valueoffset
    data = bytearray(p.read_bytes())
    data[at : at + 2] = struct.pack("<H", samples)
    p.write_bytes(bytes(data))
    return p


def _strip_page(p: Path) -> int:
    """The index of the first page in strips (the label)."""
    with tifffile.TiffFile(p) as t:
        return next(i for i, pg in enumerate(t.pages) if not pg.is_tiled and i > 1)


def test_the_bound_counts_every_sample(tmp_path):
    p = write_svs(tmp_path / "ok.svs", size=(512, 384)).path
    i = _strip_page(p)
    with tifffile.TiffFile(p) as t:
        page = t.pages[i]
        assert decoded.page_fits(page) and decoded.tile_fits(page)
        assert decoded.page_bytes(page) == page.imagewidth * page.imagelength * 3
    (tmp_path / "x").mkdir()
    bad = _with_samples(tmp_path / "x", i)
    with tifffile.TiffFile(bad) as t:
        page = t.pages[i]
        assert page.imagewidth * page.imagelength <= 16 << 20  # width x height alone is small
        assert decoded.page_bytes(page) == page.imagewidth * page.imagelength * HUGE_SAMPLES
        assert not decoded.page_fits(page) and not decoded.tile_fits(page)


def test_verify_never_decodes_the_page_and_fails_it(tmp_path, monkeypatch):
    from wsianon.pipeline.audit import audit_paths

    (tmp_path / "x").mkdir()
    p = _with_samples(tmp_path / "x", 3)
    decodes: list[int] = []
    orig = tifffile.TiffPage.asarray

    def asarray(self, *a, **k):
        decodes.append(decoded.page_bytes(self))
        return orig(self, *a, **k)

    monkeypatch.setattr(tifffile.TiffPage, "asarray", asarray)
    results = audit_paths([p])
    assert all(n <= decoded.MAX_DECODED_BYTES for n in decodes), decodes
    ((_path, verdict, err),) = results
    assert err is None and verdict is not None
    checks = {c.name: c for c in verdict.checks}
    assert not checks["image-pages"].ok and "IFD 3" in checks["image-pages"].detail


def test_verify_of_such_a_page_stays_small_in_its_own_process(tmp_path):
    """The whole command in a process of its own: its peak memory, not a spy's count
    (``helpers.cli_peak``: the process's own high-water mark and its probes')."""
    from tests.fixtures.helpers import cli_peak

    (tmp_path / "x").mkdir()
    p = _with_samples(tmp_path / "x", 3)
    code, _text, peak_mib = cli_peak("verify", p)
    assert code == 1  # NOT CLEAN: the source's label is there
    assert peak_mib < 1024, f"verify peaked at {peak_mib} MiB"


def test_padding_does_not_decode_tiles_of_too_many_samples(tmp_path):
    from wsianon.pipeline.model import Verdict

    (tmp_path / "x").mkdir()
    p = _with_samples(tmp_path / "x", 0)
    v = Verdict()
    padding.check_tiff(p, v)
    (c,) = [c for c in v.checks if c.name == padding.CHECK]
    assert not c.ok and "more than this check decodes" in c.detail, c


def test_an_ndpi_segment_is_a_restart_interval_not_the_page(tmp_path):
    """tifffile decodes an NDPI level page by its restart intervals (McuStarts): one segment is
    their size, so a large NDPI level (one JPEG of gigapixels) is still sampled segment by segment
    by ``focal-planes``, never refused for its page's size."""
    from tests.fixtures.ndpi_gen import make_ndpi

    p, _ = make_ndpi(tmp_path / "s.ndpi", width=1024, height=768)
    with tifffile.TiffFile(p) as t:
        page = t.pages[0]
        seg = page.chunks
        assert seg[0] * seg[1] < page.imagewidth * page.imagelength  # cut into segments
        assert decoded.tile_bytes(page) == seg[0] * seg[1] * seg[2]
        assert decoded.tile_fits(page)
