"""An OpenSlide handle left in error is a failed check, never an internal error.

OpenSlide's errors are sticky: once a tile fails to decode, every later call on that handle raises
``OpenSlideError``, a property or the levels' sizes too.  The picture checks of
``pipeline.verify.check_thumbnail`` share one handle from two threads, so a damaged tile met by the
levels check made the thumbnail check's read of the level sizes raise, and the slide ended in
"internal error (OpenSlideError)" whenever the threads met so (fuzz seed 95, svs-bigtiff #16,
one run in a few).  Here each picture check raises as such a handle makes it raise, every time."""

from __future__ import annotations

import openslide
import pytest

from tests.fixtures.svs_gen import write_svs
from wsianon.pipeline import verify as pv
from wsianon.pipeline.model import Verdict
from wsianon.profiles.policy import Policy
from wsianon.verify import levels, pyramid_barcodes
from wsianon.verify import thumbnail as thumb


def _raise(*_a, **_k):
    raise openslide.OpenSlideError("handle in error")


@pytest.mark.parametrize("which", ["thumbnail", "levels", "barcodes"])
def test_a_picture_check_on_a_handle_in_error_fails_that_check(tmp_path, monkeypatch, which):
    p = write_svs(tmp_path / "s.svs", size=(512, 384)).path
    target = {"thumbnail": thumb, "levels": levels, "barcodes": pyramid_barcodes}[which]
    name = {"thumbnail": thumb.NAME, "levels": levels.NAME, "barcodes": pyramid_barcodes.NAME}[which]
    monkeypatch.setattr(target, "check_openslide", _raise)
    v = Verdict()
    pv.check_thumbnail(None, p, Policy(thumbnail="keep"), v)  # never raises
    failed = [c for c in v.checks if c.name == name]
    assert failed and not failed[0].ok and "OpenSlideError" in failed[0].detail, v.checks
    others = [c for c in v.checks if c.name in {thumb.NAME, levels.NAME, pyramid_barcodes.NAME} - {name}]
    assert others and all(c.ok for c in others), others  # the other checks still judged the slide


def test_the_associated_image_barcode_search_on_a_handle_in_error_is_none(tmp_path):
    class InError:
        @property
        def associated_images(self):
            raise openslide.OpenSlideError("handle in error")

    assert pv.barcodes.available()  # zxing-cpp is a dependency: the search runs
    assert pv._barcodes(InError(), "macro") is None  # judged as a failed search: the check fails closed


@pytest.mark.parametrize("debug", [False, True])
def test_an_internal_error_shows_its_traceback_only_when_asked(tmp_path, monkeypatch, capsys, debug):
    """``settle`` keeps an internal error's message out of the outcome (it could quote the slide);
    ``WSIANON_DEBUG=1`` prints the whole traceback to stderr, as the CLI's own handler does (this
    session's fuzz finding above was found with it)."""
    from wsianon.pipeline.detect import SlideSource
    from wsianon.pipeline.jobs import settle
    from wsianon.pipeline.model import Outcome

    if debug:
        monkeypatch.setenv("WSIANON_DEBUG", "1")
    else:
        monkeypatch.delenv("WSIANON_DEBUG", raising=False)
    outcome = Outcome("input #1")
    with settle(outcome, SlideSource(tmp_path / "s.svs")):
        raise KeyError("Doe^Jane")
    assert outcome.error == "internal error (KeyError); nothing was written for this slide"
    assert "Doe^Jane" not in repr(outcome)
    err = capsys.readouterr().err
    assert ("Doe^Jane" in err and "Traceback" in err) == debug
    assert debug or err == ""
