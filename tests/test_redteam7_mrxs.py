"""Red team 7: pixels of a MIRAX slide that no viewer shows.

OpenSlide decodes each zoom-level image at the size its level's section declares and draws it at
its grid place; what it never draws passed every check before (the tiles are the source's, copied
unchanged, and `mrxs-tiles-identical` proves only that):

* a level-0 camera image coded with 64 rows more than DIGITIZER_HEIGHT, a name in them (OpenSlide
  refuses such an image, but the decode probe reads one region a level: an image elsewhere passed)
  -> ``tiles-frame-size``;
* a lower-level image reaching past the grid (IMAGENUMBER_X not a multiple of 4 at level 2), a
  name in its columns past it (OpenSlide skips those sub-tiles / clips the level) ->
  ``mrxs-beyond-grid`` (the columns must be padding: a white fill passes).

The DICOM route writes what OpenSlide draws (wsidicomizer reads the slide through it): the tall
image is refused there (OpenSlide cannot read it), the hidden columns never reach a frame.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.fixtures.mrxs_gen import make_mrxs
from tests.fixtures.mrxs_hidden import _items, plant_beyond_grid, plant_tall_frame

NAME = "RT7 DOE^JANE"


def _run(cli, inputs, out: Path, target: str = "native") -> tuple[int, dict]:
    code, _stdout, _stderr = cli("run", "--target", target, *[str(p) for p in inputs], "-o", str(out))
    return code, json.loads((out / "wsianon-report.json").read_text())


def _checks(slide: dict) -> dict[str, bool]:
    return {c["check"]: c["ok"] for c in (slide.get("verification") or {}).get("checks", [])}


def test_hidden_pixels_quarantine_the_slide(cli, tmp_path):
    src = tmp_path / "src"
    tall = make_mrxs(src, "SLIDE-T1")
    plant_tall_frame(tall, NAME, image=15)  # the last camera image: the decode probe reads (0, 0)
    beyond = make_mrxs(src, "SLIDE-B2", images=6)
    plant_beyond_grid(beyond, NAME, images=6)
    white = make_mrxs(src, "SLIDE-W3", images=6)
    plant_beyond_grid(white, None, images=6)  # white past the grid: padding, shared
    clean = make_mrxs(src, "SLIDE-C4")
    out = tmp_path / "out"
    code, report = _run(cli, [tall.mrxs, beyond.mrxs, white.mrxs, clean.mrxs], out)
    assert code == 1
    slides = report["slides"]
    assert [s["status"] for s in slides] == ["failed", "failed", "ok", "ok"], [s["status"] for s in slides]
    t, b, w, c = (_checks(s) for s in slides)
    assert t["tiles-frame-size"] is False and t["mrxs-tiles-identical"] is True
    assert b["mrxs-beyond-grid"] is False and b["tiles-frame-size"] is True
    assert w["mrxs-beyond-grid"] is True and c["mrxs-beyond-grid"] is True and c["tiles-frame-size"] is True
    assert len(list(out.glob("*.mrxs"))) == 2  # the two clean ones only
    details = " ".join(ch["detail"] for s in slides for ch in (s.get("verification") or {}).get("checks", []))
    assert "DOE" not in details


def test_verify_fails_on_an_output_holding_them(cli, tmp_path, monkeypatch):
    """Outputs made without these checks (as every run before them) fail ``verify``. The tall
    frame fails ``pyramid-consistency`` and ``barcode-pyramid`` too (OpenSlide cannot decode the
    image it draws), so the run that makes the outputs goes without those checks as well."""
    from wsianon.verify import levels, mrxs_hidden, pyramid_barcodes

    src = tmp_path / "src"
    tall = make_mrxs(src, "SLIDE-V1")
    plant_tall_frame(tall, NAME, image=15)
    beyond = make_mrxs(src, "SLIDE-V2", images=6)
    plant_beyond_grid(beyond, NAME, images=6)
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(mrxs_hidden, "check", lambda *a, **k: None)
        m.setattr(levels, "check_openslide", lambda *a, **k: None)
        m.setattr(pyramid_barcodes, "check_openslide", lambda *a, **k: None)
        code, report = _run(cli, [tall.mrxs, beyond.mrxs], out)
    assert code == 0, [s["status"] for s in report["slides"]]
    placed = sorted(out.glob("*.mrxs"))
    assert len(placed) == 2
    fails = []
    for main in placed:
        code, stdout, _ = cli("verify", str(main))
        assert code == 1, stdout[-2000:]
        fails += [ln.split(":")[0].strip() for ln in stdout.splitlines() if ln.strip().startswith("FAIL")]
        assert "DOE" not in stdout
    assert sorted(fails) == ["FAIL barcode-pyramid", "FAIL mrxs-beyond-grid", "FAIL pyramid-consistency", "FAIL tiles-frame-size"], fails


def test_dicom_route_carries_only_what_openslide_draws(cli, tmp_path):
    src = tmp_path / "src"
    tall = make_mrxs(src, "SLIDE-D1")
    plant_tall_frame(tall, NAME, image=15)
    out = tmp_path / "out"
    code, report = _run(cli, [tall.mrxs], out, target="dicom")
    assert code == 1
    assert report["slides"][0]["status"] != "ok"
    assert not list(out.rglob("*.dcm"))


class _Verdict:
    def __init__(self) -> None:
        self.checks: dict[str, bool] = {}

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks[name] = ok


def test_one_walker_refuses_a_negative_item_count(tmp_path):
    """``mrxs-tiles-identical`` read a negative page count as an empty page (its tiles unjudged),
    ``tiles-frame-size`` refused it: both now walk the pages with ``mrxs_hidden.zoom_items``."""
    from wsianon.verify import mrxs_hidden
    from wsianon.verify.formats.mrxs import _ini, _level_tiles

    info = make_mrxs(tmp_path, "SLIDE-N1")
    cp = _ini(info.folder)
    assert [len(x) for x in _level_tiles(info.folder, cp)] == [16, 4, 1]
    idx, items = _items(info, 0)
    last_page = items[8][0] - 8  # level 0: 16 items, the second page holds the last 8
    struct.pack_into("<i", idx, last_page, -1)
    (info.folder / "Index.dat").write_bytes(bytes(idx))
    with pytest.raises(ValueError):
        _level_tiles(info.folder, cp)
    with pytest.raises(ValueError):
        mrxs_hidden.zoom_items(bytes(idx), cp)
    verdict = _Verdict()
    mrxs_hidden.check(info.folder, cp, verdict)
    assert verdict.checks["tiles-frame-size"] is False
