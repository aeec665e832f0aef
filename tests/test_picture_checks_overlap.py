"""The native route's picture checks after the read-back: ``pyramid-consistency`` beside the two
checks that read one small level whole.

``check_thumbnail`` ran ``thumbnail-provenance``, ``pyramid-consistency`` and ``barcode-pyramid``
one after the other. The levels check decodes in two threads but leaves a core idle between its
reads, and zxing-cpp's search is one thread; the thumbnail's provenance and the barcode search
now run in a thread of their own beside the levels check (on the 2.25 GB benchmark output the
three took 0.81 s, now 0.61 s). These tests hold the verdict to what the checks said one after
the other: the same checks, in the same order, with a failure in either thread kept.
"""

from __future__ import annotations

import threading

import pytest

from .fixtures.svs_gen import write_svs


@pytest.fixture
def slide(tmp_path):
    return write_svs(tmp_path / "CASE-1401.svs", size=(2048, 1536), levels=3, with_label=False, with_macro=False).path


def _record(monkeypatch, fail: str | None = None) -> list[tuple[str, str]]:
    """Replace the three checks with ones that record (check, thread) and add a named check."""
    from wsianon.pipeline import verify as V

    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def fake(name):
        def check(slide, verdict, *a, **k):
            with lock:
                seen.append((name, threading.current_thread().name))
            assert slide.level_dimensions  # the handle is open while the checks run
            verdict.add(name, name != fail, f"{name} judged")

        return check

    monkeypatch.setattr(V.thumbnail_provenance, "check_openslide", fake("thumbnail-provenance"))
    monkeypatch.setattr(V.pyramid_levels, "check_openslide", fake("pyramid-consistency"))
    monkeypatch.setattr(V.pyramid_barcodes, "check_openslide", fake("barcode-pyramid"))
    return seen


def test_the_levels_check_runs_beside_the_other_two(slide, monkeypatch):
    from wsianon.pipeline.model import Verdict
    from wsianon.pipeline.verify import check_thumbnail
    from wsianon.profiles.policy import Policy

    seen = _record(monkeypatch)
    v = Verdict()
    check_thumbnail(None, slide, Policy(), v)  # the thumbnail kept: its provenance judged
    threads = dict(seen)
    assert threads["pyramid-consistency"] == threading.current_thread().name
    assert threads["barcode-pyramid"].startswith("wsianon-pictures")
    assert threads["thumbnail-provenance"].startswith("wsianon-pictures")
    assert [c.name for c in v.checks] == ["thumbnail-provenance", "pyramid-consistency", "barcode-pyramid"]
    assert all(c.ok for c in v.checks)


@pytest.mark.parametrize("fail", ["pyramid-consistency", "barcode-pyramid"])
def test_a_failure_in_either_thread_is_kept(slide, monkeypatch, fail):
    from wsianon.pipeline.model import Verdict
    from wsianon.pipeline.verify import check_thumbnail
    from wsianon.profiles.policy import Policy

    _record(monkeypatch, fail)
    v = Verdict()
    check_thumbnail(None, slide, Policy(), v)
    assert not v.ok
    assert [c.name for c in v.checks if not c.ok] == [fail]
