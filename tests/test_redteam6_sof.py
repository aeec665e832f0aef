"""Red team, round 6: pixels a JPEG holds beyond what its container declares.

A JPEG stream's frame header (SOF) says how many lines and columns it codes; the TIFF page says
the tile size (or a strip's rows and the image width), a DICOM instance Rows x Columns.  A tile
re-encoded as 256 x 288 (or 288 x 256) in a page of 256 x 256 tiles, with "DOE^JANE 1961" in its
32 extra rows, and a thumbnail or kept macro strip with 32 such rows under the image, went to OUT,
verified, on the native route and on the DICOM route (wsidicomizer passes the tiles and the
thumbnail/overview strips through as frames): decoders crop the extra pixels (libtiff warns,
tifffile crops) or refuse the tile (OpenSlide: only the tile (0, 0) the preflight reads was
refused), none shows them, and tile identity, thumbnail provenance and the padding check (the
pixels *inside* the tile) all held.  A SOF smaller than the tile passed alike.  `wsianon verify`
passed such a planted output.

Now ``tiles-frame-size`` / ``dicom: frame size`` (``wsianon/verify/sof.py``) require every tile's
and frame's coded size to equal the declared one exactly, a strip's to be its rows x ImageWidth;
only a last strip may code more rows (a writer rounding it up), and those rows must be padding by
the models of ``wsianon/verify/padding.py``.  Every real sample and fixture generator agrees.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wsianon.pipeline.model import Verdict
from wsianon.verify import sof

from .conftest import shared
from .fixtures import sof_plant as sp
from .fixtures.svs_gen import PAD_TEXT, write_svs

KEY = "cd" * 32
NAME_PARTS = ("DOE", "JANE")
INTERIOR = 5  # level 0 of the 1024 x 768 fixture: 4 x 3 tiles, tile 5 inside (the preflight reads tile 0)


def _key(tmp_path: Path) -> Path:
    key = tmp_path / "key"
    if not key.exists():
        key.write_text(KEY)
        key.chmod(0o600)
    return key


def _svs(tmp_path: Path, name: str = "CASE-6601") -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    return write_svs(tmp_path / "src" / f"{name}.svs").path


def _run(cli, tmp_path: Path, src: Path, target: str, *extra: str) -> tuple[int, dict, Path]:
    out = tmp_path / f"out-{target}-{src.stem}"
    code, stdout, stderr = cli("run", "--target", target, str(src), "-o", str(out), "--key-file", str(_key(tmp_path)), "--no-review-sheet", *extra)
    assert not any(p in stdout + stderr for p in NAME_PARTS)
    return code, json.loads((out / "wsianon-report.json").read_text()), out


def _failed(report: dict) -> dict[str, str]:
    return {c["check"]: c["detail"] for s in report["slides"] for c in ((s.get("verification") or {}).get("checks") or []) if not c["ok"]}


def _placed(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.suffix in (".svs", ".tif", ".tiff", ".dcm")]


def _verify(cli, path: Path) -> tuple[int, dict[str, str]]:
    code, out, _ = cli("verify", "--json", str(path))
    assert not any(p in out for p in NAME_PARTS)
    return code, {c["check"]: c["detail"] for slide in json.loads(out) for c in slide.get("checks", []) if not c["ok"]}


# --- the fixtures hide a name where no viewer looks -------------------------------------------


def test_fixture_tile_codes_a_name_beyond_the_tile(tmp_path):
    src = _svs(tmp_path)
    before = sp.decoded_chunk(src, 0, INTERIOR)
    sp.oversize_tile(src, 0, INTERIOR)
    tile = sp.decoded_chunk(src, 0, INTERIOR)
    assert tile.shape[:2] == (256 + sp.EXTRA, 256)
    # the rows beyond the tile hold the name (white strokes on black), the tile itself the picture
    assert (tile[256:] > 128).mean() > 0.02 and tile[256:].min() < 40
    assert np.abs(tile[:256].astype(int) - before.astype(int)).mean() < 3


# --- 1. a tile's (frame's) SOF larger or smaller than the tile ---------------------------------


def test_the_picture_checks_do_not_depend_on_which_thread_meets_a_bad_tile_first(tmp_path, cli, monkeypatch):
    """The levels check meeting the damaged tile first (forced here) leaves its OpenSlide handle
    in error; the thumbnail and barcode checks read through a handle of their own, so their
    verdicts are what they read. Before, they shared the handle, and thumbnail-provenance failed
    as often as the levels thread came first (a clean-clone make test saw it)."""
    import threading

    from wsianon.pipeline import verify as V

    src = _svs(tmp_path)
    sp.oversize_tile(src, 0, INTERIOR)
    met = threading.Event()
    real_levels, real_thumb = V.pyramid_levels.check_openslide, V.thumbnail_provenance.check_openslide

    def levels_first(slide, *a, **k):
        try:
            slide.read_region((0, 0), 0, slide.level_dimensions[0])  # every level-0 tile, the damaged one too
        except Exception:
            pass
        finally:
            met.set()
        return real_levels(slide, *a, **k)

    def thumb_after(slide, *a, **k):
        assert met.wait(60)
        return real_thumb(slide, *a, **k)

    monkeypatch.setattr(V.pyramid_levels, "check_openslide", levels_first)
    monkeypatch.setattr(V.thumbnail_provenance, "check_openslide", thumb_after)
    code, report, out = _run(cli, tmp_path, src, "native")
    failed = _failed(report)
    assert code == 1 and "tiles-frame-size" in failed and "pyramid-consistency" in failed, failed
    assert "thumbnail-provenance" not in failed, failed


@pytest.mark.parametrize("kind", ["rows", "columns", "smaller"])
def test_tile_sof_other_than_the_tile_is_quarantined(tmp_path, cli, kind):
    src = _svs(tmp_path)
    if kind == "smaller":
        sp.undersize_tile(src, 0, INTERIOR)
    else:
        sp.oversize_tile(src, 0, INTERIOR, columns=kind == "columns")
    code, report, out = _run(cli, tmp_path, src, "native")
    assert code == 1 and _placed(out) == []
    failed = _failed(report)
    # OpenSlide cannot decode the tile either: pyramid-consistency and barcode-pyramid, which read
    # it, fail closed too
    assert set(failed) - {"pyramid-consistency", "barcode-pyramid"} == {"tiles-frame-size"}, failed
    assert "IFD 0, tile: JPEG frame header " + ("smaller" if kind == "smaller" else "larger") + " than the tile" in failed["tiles-frame-size"]
    # the DICOM route passes the tile through as a frame
    code, report, out = _run(cli, tmp_path, src, "dicom")
    assert code == 1 and _placed(out) == []
    failed = _failed(report)
    assert set(failed) == {"dicom: frame size"}, failed
    assert f"frame {INTERIOR + 1}: JPEG frame header" in failed["dicom: frame size"]


def test_dicom_input_with_a_frame_larger_than_rows_columns_is_quarantined(tmp_path, cli):
    from .fixtures.dicom_gen import make_dicom

    seed = _svs(tmp_path, "seed")
    sp.oversize_tile(seed, 0, INTERIOR)
    fx = make_dicom(tmp_path / "dcm-in", seed_svs=seed)  # a scanner's export: the tile as a frame
    code, report, out = _run(cli, tmp_path, fx.path, "dicom")
    assert code == 1 and _placed(out) == []
    assert set(_failed(report)) == {"dicom: frame size"}, _failed(report)
    code, failed = _verify(cli, fx.path)  # the instances themselves
    assert code != 0 and "dicom: frame size" in failed


def test_verify_finds_a_planted_tile_in_a_clean_output(tmp_path, cli):
    code, report, out = _run(cli, tmp_path, _svs(tmp_path), "native")
    assert code == 0, _failed(report)
    (slide,) = _placed(out)
    assert _verify(cli, slide) == (0, {})
    sp.oversize_tile(slide, 0, INTERIOR)  # another tool's output, judged by `wsianon verify`
    code, failed = _verify(cli, slide)
    assert code != 0 and set(failed) - {"pyramid-consistency", "barcode-pyramid"} == {"tiles-frame-size"}, failed  # (as above)


def test_verify_finds_a_planted_frame_in_a_clean_dicom_output(tmp_path, cli):
    code, report, out = _run(cli, tmp_path, _svs(tmp_path), "dicom")
    assert code == 0, _failed(report)
    folder = _placed(out)[0].parent
    vol = sorted(folder.glob("*volume*.dcm"))[0]
    sp.replace_dicom_frame(vol, INTERIOR, sp.oversize_stream)
    code, failed = _verify(cli, folder)
    assert code != 0 and "dicom: frame size" in failed, failed
    assert f"{vol.name} frame {INTERIOR + 1}: JPEG frame header larger than Rows x Columns" in failed["dicom: frame size"]


def test_frames_of_several_fragments_are_judged(tmp_path):
    """Frames split over several fragments (PS3.5 allows it) are read whole and judged alike."""
    from wsianon.verify.dicom.common import read_dataset

    from .fixtures.dicom_gen import make_dicom

    fx = make_dicom(tmp_path / "dcm")
    vol = next(f for f in fx.files if int(read_dataset(f).get("NumberOfFrames", 1)) == 12)  # level 0

    def judged() -> tuple[bool, str]:
        v = Verdict()
        sof.check_dicom([(vol, read_dataset(vol))], v)
        return v.checks[-1].ok, v.checks[-1].detail

    sp.replace_dicom_frame(vol, 0, lambda f: f, fragments=2)
    ok, detail = judged()
    assert ok and detail.startswith("12 JPEG"), detail
    sp.replace_dicom_frame(vol, INTERIOR, sp.oversize_stream, fragments=2)
    ok, detail = judged()
    assert not ok and f"frame {INTERIOR + 1}: JPEG frame header larger than Rows x Columns" in detail


def test_ndpi_level_with_rows_under_the_page_fails(tmp_path, monkeypatch):
    """An NDPI level is one JPEG of the page's size; one coding 32 rows of a name under it (its
    McuStarts for the page's rows only) fails here.  OpenSlide already refused to open such a
    level (native route), and the DICOM route's frames are cut from the page's rows only."""
    from PIL import Image

    from .fixtures import ndpi_gen

    orig_jpeg, orig_starts = ndpi_gen._jpeg_with_restarts, ndpi_gen.mcu_starts
    cut: list[int] = []

    def taller(img, interval, quality=88):
        if img.size == (512, 384):
            cut.append((512 // (8 * interval)) * (384 // 8))
            img = Image.fromarray(sp.with_hidden_rows(np.asarray(img.convert("RGB"))))
        return orig_jpeg(img, interval, quality)

    def starts(jp):
        out = orig_starts(jp)
        return out[: cut.pop()] if cut else out

    monkeypatch.setattr(ndpi_gen, "_jpeg_with_restarts", taller)
    monkeypatch.setattr(ndpi_gen, "mcu_starts", starts)
    path, _can = ndpi_gen.make_ndpi(tmp_path / "CASE-6604.ndpi")
    ok, detail = _check(path)
    assert not ok and "IFD 0, strip: JPEG frame header taller than the strip" in detail


# --- 2. stripped pages: rows under the thumbnail / kept macro ----------------------------------


@pytest.mark.parametrize("page,extra", [(1, ()), (4, ("--macro", "keep"))], ids=["thumbnail", "macro-kept"])
def test_strip_with_rows_under_the_image_is_quarantined(tmp_path, cli, page, extra):
    src = _svs(tmp_path)
    sp.replace_chunk(src, page, 0, sp.encode(sp.with_hidden_rows(sp.decoded_chunk(src, page, 0))))
    code, report, out = _run(cli, tmp_path, src, "native", *extra)
    assert code == 1 and _placed(out) == []
    failed = _failed(report)
    # OpenSlide cannot decode the tile either: pyramid-consistency, which reads it, fails closed too
    assert set(failed) - {"pyramid-consistency"} == {"tiles-frame-size"}, failed
    assert "strip: JPEG frame header taller than the strip" in failed["tiles-frame-size"]
    # the DICOM route writes the strip as the THUMBNAIL's (OVERVIEW's) frame, unchanged
    code, report, out = _run(cli, tmp_path, src, "dicom", *extra)
    assert code == 1 and _placed(out) == []
    assert set(_failed(report)) == {"dicom: frame size"}, _failed(report)


@pytest.mark.parametrize("page,extra", [(1, ("--thumbnail", "remove")), (4, ())], ids=["thumbnail-removed", "macro-removed"])
def test_hidden_rows_in_a_page_not_shared_do_not_stop_the_slide(tmp_path, cli, page, extra):
    """The rule judges what is shared: the same sources, their page removed, verify (the reason
    the redactors do not refuse such a source at plan time)."""
    src = _svs(tmp_path)
    sp.replace_chunk(src, page, 0, sp.encode(sp.with_hidden_rows(sp.decoded_chunk(src, page, 0))))
    for target in ("native", "dicom"):
        code, report, out = _run(cli, tmp_path, src, target, *extra)
        assert code == 0, (target, _failed(report))
        assert _placed(out)


def _stripped(tmp_path: Path, name: str, compression: str | None, rows: int = 100, rps: int = 64, predictor: bool = False) -> Path:
    import tifffile

    from .fixtures.svs_gen import _tissue

    path = tmp_path / f"{name}.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(_tissue(rows, 200, 4), compression=compression, photometric="rgb", rowsperstrip=rps, metadata=None, predictor=predictor or None)
    return path


def _check(path: Path) -> tuple[bool, str]:
    v = Verdict()
    sof.check_tiff(path, v)
    return v.checks[-1].ok, v.checks[-1].detail


def _other_checks_pass(path: Path) -> None:
    """What judged such a page before this check: its coded data and its (tiled-only) padding."""
    from wsianon.verify import ecs, padding

    v = Verdict()
    ecs.check_tiff(path, v, every=True)
    padding.check_tiff(path, v)
    assert all(c.ok for c in v.checks), [(c.name, c.detail) for c in v.checks]


@pytest.mark.parametrize("compression,predictor", [("lzw", False), ("lzw", True), ("zlib", False), (None, False)])
def test_last_strip_rows_beyond_the_image_are_judged(tmp_path, compression, predictor):
    """The last strip of an LZW / Deflate / uncompressed page decoding to RowsPerStrip rows (a
    writer may): the rows beyond ImageLength must be padding; a name there fails."""
    import imagecodecs

    from .fixtures.svs_gen import render_text

    codec = {"lzw": imagecodecs.lzw_encode, "zlib": imagecodecs.zlib_encode, None: bytes}[compression]
    for label, fill in (("name", None), ("white", 255)):
        path = _stripped(tmp_path, f"{compression}-{predictor}-{label}", compression, predictor=predictor)
        assert _check(path)[0]  # as written: the last strip holds its 36 rows
        import tifffile

        with tifffile.TiffFile(path) as tf:
            last = tf.pages[0].asarray()[64:]
        full = np.full((64, 200, 3), 255, np.uint8)
        full[:36] = last
        if fill is None:
            full[36:] = render_text((28, 200), PAD_TEXT)[..., None]
        raw = full
        if predictor:
            raw = np.concatenate([full[:, :1], np.diff(full.astype(np.int16), axis=1).astype(np.uint8)], axis=1)
        sp.replace_chunk(path, 0, 1, codec(np.ascontiguousarray(raw).tobytes()))
        _other_checks_pass(path)  # nothing judged those rows before
        ok, detail = _check(path)
        if fill is None:
            assert not ok and "IFD 0, last strip: rows beyond the image:" in detail and "not uniform, replicated" in detail
        else:
            assert ok, detail


def test_uncompressed_tile_with_rows_beyond_the_tile_fails_every_tile(tmp_path):
    """An uncompressed tile stored with 16 rows more than the tile: readers take the tile's bytes
    and drop the rest.  ``tiles-coded-tight`` judged that only in its sample (32 tiles a level):
    tile 1 of 100 is outside it; the count is judged here for every tile."""
    import tifffile

    from wsianon.verify import ecs

    from .fixtures.svs_gen import _tissue, render_text

    path = tmp_path / "raw.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(_tissue(640, 640, 5), tile=(64, 64), photometric="rgb", metadata=None)
    assert _check(path)[0]
    with tifffile.TiffFile(path) as tf:
        tile = tf.pages[0].asarray()[:64, 64:128]
    hidden = np.repeat(render_text((16, 64), "DOE", size=10)[..., None], 3, axis=2)
    sp.replace_chunk(path, 0, 1, np.ascontiguousarray(np.concatenate([tile, hidden])).tobytes())
    v = Verdict()
    ecs.check_tiff(path, v)  # the default sample
    assert v.checks[-1].ok, v.checks[-1].detail
    ok, detail = _check(path)
    assert not ok and "IFD 0, uncompressed tile holds more than its pixels" in detail


def test_last_jpeg_strip_rounded_up_is_judged_as_padding(tmp_path):
    from .fixtures.svs_gen import render_text

    for label in ("white", "name"):
        path = _stripped(tmp_path, f"jpeg-{label}", "jpeg")
        img = sp.decoded_chunk(path, 0, 1)  # 36 rows
        full = np.full((48, 200, 3), 255, np.uint8)  # rounded up to the 16-row MCU
        full[:36] = img
        if label == "name":
            full[36:] = render_text((12, 200), PAD_TEXT, size=10)[..., None]
        sp.replace_chunk(path, 0, 1, sp.encode(full))
        _other_checks_pass(path)
        ok, detail = _check(path)
        assert ok is (label == "white"), detail


def test_more_strips_than_the_image_has_fail(tmp_path):
    """A third strip of 32 rows under an image of 64 rows (two strips of 32): rows no reader
    shows."""
    import struct

    import tifffile

    from .fixtures.plant_rt2 import edit_entries, set_entry

    path = _stripped(tmp_path, "extra", "jpeg", rows=64, rps=32)
    assert _check(path)[0]
    blob = sp.encode(sp.with_hidden_rows(sp.decoded_chunk(path, 0, 1), 32)[32:])
    with tifffile.TiffFile(path) as tf:
        offs, cnts = list(tf.pages[0].dataoffsets), list(tf.pages[0].databytecounts)
    with open(path, "ab") as fh:
        at = fh.seek(0, 2)
        fh.write(blob)

    def more(ents, alloc):
        ents = set_entry(ents, alloc, 273, 4, 3, struct.pack("<3I", *offs, at), False)
        return set_entry(ents, alloc, 279, 4, 3, struct.pack("<3I", *cnts, len(blob)), False)

    edit_entries(path, 0, more)
    _other_checks_pass(path)
    ok, detail = _check(path)
    assert not ok and "IFD 0, more strips than its image has" in detail


def test_a_codec_with_its_own_size_not_judged_is_named(tmp_path):
    import tifffile

    path = tmp_path / "webp.tif"
    tifffile.imwrite(path, np.zeros((300, 300, 3), np.uint8), tile=(256, 256), compression="webp", photometric="rgb", metadata=None)
    ok, detail = _check(path)
    assert ok and detail.endswith("; pages of compression 50001 not judged")


# --- 3. DNL: a frame header of 0 lines, the height after the scan ------------------------------


def test_dnl_tile_fails(tmp_path, cli):
    src = _svs(tmp_path)
    with open(src, "rb") as fh:
        import tifffile

        with tifffile.TiffFile(src) as tf:
            pg = tf.pages[0]
            fh.seek(pg.dataoffsets[INTERIOR])
            tile = fh.read(pg.databytecounts[INTERIOR])
    sp.replace_chunk(src, 0, INTERIOR, sp.with_dnl(tile, 256))
    ok, detail = _check(src)
    assert not ok and "IFD 0, tile: JPEG frame header gives no height (DNL)" in detail


@pytest.mark.parametrize("restarts", [True, False], ids=["restart-markers", "plain"])
def test_rows_coded_beyond_the_frame_header_are_bytes_after_the_last_coded_unit(tmp_path, restarts):
    """Coded data for 32 rows more than the frame header says (the SOF set back to the tile's 256
    lines): a decoder stops after 256 rows.  The size is the declared one, so this check passes
    it; ``tiles-coded-tight`` judges the rest as bytes after the scan's last coded unit (in the
    tiles it judges: every one with --coded-data all; README "Limitations")."""
    import imagecodecs

    from wsianon.verify import ecs

    src = _svs(tmp_path)
    with open(src, "rb") as fh:
        import tifffile

        with tifffile.TiffFile(src) as tf:
            pg = tf.pages[0]
            fh.seek(pg.dataoffsets[INTERIOR])
            tile = fh.read(pg.databytecounts[INTERIOR])
    short = sp.short_frame(tile, restarts=restarts)
    assert np.asarray(imagecodecs.jpeg8_decode(short)).shape[:2] == (256, 256)
    sp.replace_chunk(src, 0, INTERIOR, short)
    assert _check(src)[0]
    why = ecs.judge(short)
    if restarts:
        # more restart markers than the frame's MCUs ask for: the JPEG walk itself refuses the
        # stream (every tile, not only the judged sample; tests/test_redteam16_jpeg.py)
        from wsianon.io.jpeg import JpegError, walk

        assert why == ecs.NOT_WALKABLE
        with pytest.raises(JpegError, match="restart markers"):
            walk(short)
        return
    assert why is not None and why.startswith("decoder:") and "extraneous bytes" in why


# --- real samples: every writer measured codes exactly what it declares --------------------------


@pytest.mark.parametrize(
    "rel,judged",
    [
        ("aperio/CMU-1-Small-Region.svs", 272),  # JPEG tiles, thumbnail/macro JPEG strips, LZW label
        ("aperio/histolab_tcga-cr-7395-01a-01-ts1.svs", 363),  # JPEG 2000 tiles (SIZ), JPEG thumbnail strips
        ("aperio/openslide-python_small.svs", 2),
    ],
)
def test_real_svs_codes_what_it_declares(rel, judged):
    ok, detail = _check(shared(rel))
    assert ok, detail
    assert detail.startswith(f"{judged} tile(s)/strip(s)")


@pytest.mark.parametrize(
    "rel,judged",
    [
        ("dicom/wsi2dcm-cmu-1-small-region", 52),
        ("dicom/pathml_small_dicom.dcm", 42),
        ("dicom/highdicom_sm_image_jpegls.dcm", 25),
        ("dicom/openslide-python_boxes_0.dcm", 1),
    ],
)
def test_real_dicom_codes_what_it_declares(rel, judged):
    from wsianon.verify.dicom.common import read_dataset

    p = shared(rel)
    files = sorted(p.glob("*.dcm")) if p.is_dir() else [p]
    v = Verdict()
    sof.check_dicom([(f, read_dataset(f)) for f in files], v)
    assert v.checks[-1].ok, v.checks[-1].detail
    assert v.checks[-1].detail.startswith(f"{judged} JPEG")


def test_fixture_generators_code_what_they_declare(tmp_path):
    from .fixtures.bif_gen import make_bif
    from .fixtures.generic_gen import make_generic_tiff
    from .fixtures.ndpi_gen import make_ndpi
    from .fixtures.philips_gen import make_philips
    from .fixtures.qptiff_gen import make_qptiff
    from .fixtures.scn_gen import make_scn

    paths = [
        write_svs(tmp_path / "a.svs").path,
        write_svs(tmp_path / "odd.svs", size=(1000, 700)).path,  # a thumbnail of 175 rows in a strip of 176
        make_generic_tiff(tmp_path / "g.tif").path,
        make_ndpi(tmp_path / "n.ndpi")[0],  # each level one JPEG of the page's size
        make_philips(tmp_path / "p.tiff").path,
        make_qptiff(tmp_path / "q.qptiff").path,
        make_scn(tmp_path / "s.scn").path,
        make_bif(tmp_path / "b.bif").path,
    ]
    for p in paths:
        ok, detail = _check(p)
        assert ok, (p.name, detail)
