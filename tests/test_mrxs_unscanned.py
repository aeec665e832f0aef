"""MRXS images at camera positions not scanned: OpenSlide places none of their pixels.

A position the position record leaves at (0, 0) (other than the first) was not scanned: OpenSlide's
mirax reader skips the level-0 image there, and on lower levels every image none of whose positions
holds a placed level-0 image.  Such an image was copied unchanged and judged by tile identity only,
so a label photo planted there was shared natively and passed ``wsianon verify``.  Now the redactor
zeroes those images (every pixel OpenSlide draws stays identical) and ``mrxs-unscanned`` proves
them zero from the output's own position record.
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import struct
from pathlib import Path

import numpy as np
import openslide
import pytest

from tests.fixtures.mrxs_gen import make_mrxs
from tests.fixtures.mrxs_hidden import _items, add_tile, label_picture, plant_unscanned, replace_tile, use_positions

NAME = "RT8 DOE^JANE"


def _run(cli, inputs, out: Path) -> tuple[int, dict]:
    code, _stdout, _stderr = cli("run", "--target", "native", *[str(p) for p in inputs], "-o", str(out))
    return code, json.loads((out / "wsianon-report.json").read_text())


def _checks(slide: dict) -> dict[str, bool]:
    return {c["check"]: c["ok"] for c in (slide.get("verification") or {}).get("checks", [])}


def _out_info(info, main: Path):
    """The fixture's info for an output slide (its folder, its SLIDE_ID)."""
    cp = configparser.RawConfigParser()
    cp.read(main.with_suffix("") / "Slidedat.ini", encoding="utf-8")
    return dataclasses.replace(info, mrxs=main, folder=main.with_suffix(""), canaries={"SLIDE_ID": cp.get("GENERAL", "SLIDE_ID")})


def _blob(info, level: int, image: int) -> bytes:
    for _at, im, off, ln, fno in _items(info, level)[1]:
        if im == image:
            return (info.folder / f"Data{fno:04d}.dat").read_bytes()[off : off + ln]
    raise KeyError(image)


def _levels(path: Path) -> list[np.ndarray]:
    with openslide.OpenSlide(str(path)) as s:
        return [np.asarray(s.read_region((0, 0), k, s.level_dimensions[k])) for k in range(s.level_count)]


@pytest.fixture(params=["position-buffer", "stitching-deflated"])
def planted(tmp_path, request):
    """Two slides: a label picture in level-0 image 5 (position 5 not scanned), and in level-1
    image 10 (positions 10, 11, 14, 15 not scanned); the positions in either record OpenSlide reads."""
    src = tmp_path / "src"
    deflated = request.param == "stitching-deflated"
    zero = make_mrxs(src, "SLIDE-U0")
    plant_unscanned(zero, NAME, level=0, image=5, deflated=deflated)
    one = make_mrxs(src, "SLIDE-U1")
    plant_unscanned(one, NAME, level=1, image=10, deflated=deflated)
    return zero, one


def test_unscanned_images_are_zeroed_and_every_drawn_pixel_is_kept(cli, tmp_path, planted):
    zero, one = planted
    out = tmp_path / "out"
    code, report = _run(cli, [zero.mrxs, one.mrxs], out)
    assert code == 0, [(s["status"], s.get("reason")) for s in report["slides"]]
    slides = report["slides"]
    assert all(_checks(s)["mrxs-unscanned"] and _checks(s)["mrxs-tiles-identical"] for s in slides)
    mains = [out / next(o for o in s["outputs"] if o.endswith(".mrxs")) for s in slides]
    o0, o1 = _out_info(zero, mains[0]), _out_info(one, mains[1])
    assert _blob(zero, 0, 5)[:2] == b"\xff\xd8" and not any(_blob(o0, 0, 5))  # the label picture is gone
    assert _blob(one, 1, 10)[:2] == b"\xff\xd8" and not any(_blob(o1, 1, 10))
    for i in (10, 11, 14, 15):  # its level-0 images are not placed either
        assert not any(_blob(o1, 0, i))
    assert any(_blob(o1, 0, 9)) and any(_blob(o1, 2, 0))  # placed images stay (level 2 placed in part)
    for src, main in ((zero, mains[0]), (one, mains[1])):
        a, b = _levels(src.mrxs), _levels(main)
        assert len(a) == 3 and all(np.array_equal(x, y) for x, y in zip(a, b))
    details = " ".join(ch["detail"] for s in slides for ch in (s.get("verification") or {}).get("checks", []))
    assert "DOE" not in details
    removed = [(r["name"], r["action"], r["where"]) for r in slides[0]["removed"]]
    assert ("zoom-level images at positions not scanned (OpenSlide places none of their pixels)", "zeroed", "1 blob(s)") in removed, removed
    unscanned = [next(c["detail"] for c in s["verification"]["checks"] if c["check"] == "mrxs-unscanned") for s in slides]
    # placed nowhere: level-0 image 5; level-1 image 10 and the four level-0 images under it.  Drawn
    # in part (the documented limitation): level-1 image 0 and level-2 image 0 over position 5,
    # level-2 image 0 over positions 10, 11, 14, 15
    assert unscanned[0].startswith("1 zoom-level image(s)") and "; 2 image(s) partly" in unscanned[0], unscanned
    assert unscanned[1].startswith("5 zoom-level image(s)") and "; 1 image(s) partly" in unscanned[1], unscanned


def test_verify_fails_an_output_holding_them(cli, tmp_path, planted):
    """An output with a picture at a position not scanned (another tool's, or any run before the
    check) fails ``verify``; the same output zeroed there passes."""
    zero, one = planted
    out = tmp_path / "out"
    code, report = _run(cli, [zero.mrxs, one.mrxs], out)
    assert code == 0
    mains = [out / next(o for o in s["outputs"] if o.endswith(".mrxs")) for s in report["slides"]]
    code, stdout, _ = cli("verify", str(mains[0]))
    assert code == 0, stdout[-2000:]
    replace_tile(_out_info(zero, mains[0]), 0, 5, label_picture(NAME))
    replace_tile(_out_info(one, mains[1]), 1, 10, label_picture(NAME))
    for main in mains:
        code, stdout, _ = cli("verify", str(main))
        assert code == 1, stdout[-2000:]
        fails = [ln.split(":")[0].strip() for ln in stdout.splitlines() if ln.strip().startswith("FAIL")]
        assert "FAIL mrxs-unscanned" in fails, fails
        assert "DOE" not in stdout


def test_two_divisions_a_side(cli, tmp_path):
    """CameraImageDivisionsPerSide = 2 (real slides have 4): a position holds 2 x 2 level-0 images,
    and a level-1 image covers one position.  Position 5 not scanned: its four level-0 images and
    the level-1 image over it are zeroed (one of each holding the picture); what OpenSlide draws is
    unchanged (the 512 x 512 hole at level 0 included)."""
    info = make_mrxs(tmp_path / "src", "SLIDE-D2", images=8, levels=4)
    use_positions(info, {5}, divisions=2)
    replace_tile(info, 0, 2 * 8 + 3, label_picture(NAME))  # level-0 image (3, 2): position (1, 1)
    replace_tile(info, 1, 2 * 8 + 2, label_picture(NAME))  # level-1 image (2, 2): position (1, 1)
    out = tmp_path / "out"
    code, report = _run(cli, [info.mrxs], out)
    slide = report["slides"][0]
    assert code == 0 and slide["status"] == "ok"
    detail = next(c["detail"] for c in slide["verification"]["checks"] if c["check"] == "mrxs-unscanned")
    assert detail.startswith("5 zoom-level image(s)") and "; 2 image(s) partly" in detail, detail
    main = out / next(o for o in slide["outputs"] if o.endswith(".mrxs"))
    o = _out_info(info, main)
    assert not any(_blob(o, 0, 2 * 8 + 3)) and not any(_blob(o, 1, 2 * 8 + 2)) and any(_blob(o, 0, 2 * 8 + 1))
    a, b = _levels(info.mrxs), _levels(main)
    assert len(a) == 4 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert int((a[0][..., 3] == 0).sum()) == 512 * 512  # position 5 is not drawn, in both


class _Verdict:
    def __init__(self) -> None:
        self.checks: dict[str, tuple[bool, str]] = {}

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks[name] = (ok, detail)


def _hidden_checks(folder: Path) -> dict[str, tuple[bool, str]]:
    from wsianon.verify import mrxs_hidden
    from wsianon.verify.formats.mrxs import _ini

    v = _Verdict()
    mrxs_hidden.check(folder, _ini(folder), v)
    return v.checks


def _damage(folder: Path, how: str) -> None:
    """The position record's Index.dat entry: its size one byte short, or the record's table pointer 0."""
    cp = configparser.RawConfigParser()
    cp.read(folder / "Slidedat.ini", encoding="utf-8")
    idx = bytearray((folder / "Index.dat").read_bytes())
    (table,) = struct.unpack_from("<i", idx, 5 + len(cp.get("GENERAL", "SLIDE_ID")) + 4)
    slot = 5  # Scan data layer's 5 values, then VIMSLIDE_POSITION_BUFFER
    assert cp.get("HIERARCHICAL", "NONHIER_1_NAME") == "VIMSLIDE_POSITION_BUFFER" and cp.getint("HIERARCHICAL", "NONHIER_0_COUNT") == slot
    (ptr,) = struct.unpack_from("<i", idx, table + 4 * slot)
    if how == "short":
        (page,) = struct.unpack_from("<i", idx, ptr + 4)
        (size,) = struct.unpack_from("<i", idx, page + 20)
        struct.pack_into("<i", idx, page + 20, size - 1)
    else:
        struct.pack_into("<i", idx, table + 4 * slot, 0)
    (folder / "Index.dat").write_bytes(bytes(idx))


@pytest.mark.parametrize("how", ["short", "missing"])
def test_a_damaged_position_record_fails_one_line(tmp_path, how):
    info = make_mrxs(tmp_path, "SLIDE-D1")
    plant_unscanned(info, NAME, level=0, image=5)
    checks = _hidden_checks(info.folder)
    assert checks["mrxs-unscanned"][0] is False  # the source: the picture is there
    _damage(info.folder, how)
    checks = _hidden_checks(info.folder)
    ok, detail = checks["mrxs-unscanned"]
    assert ok is False and detail.startswith("cannot follow where OpenSlide places the images"), detail
    assert "\n" not in detail


def test_concat_factors_past_32_bits_fail_one_line(tmp_path):
    """IMAGE_CONCAT_FACTOR totals past 30 leave OpenSlide's 32-bit arithmetic (a block of 2^40
    positions a side): the placement is not modelled, the check fails at once."""
    info = make_mrxs(tmp_path, "SLIDE-C1")
    ini = info.folder / "Slidedat.ini"
    text = ini.read_text()
    at = text.index("[LAYER_0_LEVEL_2_SECTION]")
    ini.write_text(text[:at] + text[at:].replace("IMAGE_CONCAT_FACTOR = 1", "IMAGE_CONCAT_FACTOR = 40", 1))
    ok, detail = _hidden_checks(info.folder)["mrxs-unscanned"]
    assert ok is False and detail.startswith("cannot follow where OpenSlide places the images"), detail


@pytest.mark.parametrize("seed", range(4))
def test_both_models_read_a_block_as_openslide_does(seed):
    """The redactor's and the verifier's lookup of a lower-level block among the active positions
    (answered from the active set when the block is larger) agree with OpenSlide's loop, including
    a block past a row's end, which reads the next row."""
    import random

    from wsianon.converters.mrxs.positions import _block_active as redactor_block
    from wsianon.verify.mrxs_hidden import _block_active as verifier_block

    rng = random.Random(seed)
    for _ in range(3000):
        cols, rows, span = rng.randint(1, 7), rng.randint(1, 7), rng.randint(1, 9)
        active = set(rng.sample(range(cols * rows), rng.randint(0, cols * rows)))
        xp, yp = rng.randint(0, cols), rng.randint(0, rows)
        want = any((yp + j) * cols + xp + i in active for j in range(span) for i in range(span))
        assert verifier_block(active, cols, xp, yp, span) == want
        assert redactor_block(active, cols, yp * cols + xp, span) == want


def _past_the_record(tmp_path: Path, record: bool):
    """CameraImageDivisionsPerSide = 2 and IMAGENUMBER_Y odd: a level-0 image in the last row (not a
    multiple of 2) lies at a camera position past the position record (``record``: 16 positions of
    an 8 x 9 grid; else the 4 OpenSlide computes for a 4 x 5 grid without one).  OpenSlide reads
    past the record there."""
    if record:
        info = make_mrxs(tmp_path / "src", "SLIDE-P1", images=8, levels=4)
        use_positions(info, set(), divisions=2)
        n = 8
    else:
        info = make_mrxs(tmp_path / "src", "SLIDE-P0")
        n = 4
    ini = info.folder / "Slidedat.ini"
    text = ini.read_bytes()
    for a, b in ((f"IMAGENUMBER_Y = {n}\n", f"IMAGENUMBER_Y = {n + 1}\n"), ("CameraImageDivisionsPerSide = 1", "CameraImageDivisionsPerSide = 2")):
        if not record or "Camera" not in a:
            assert a.encode() in text
            text = text.replace(a.encode(), b.encode())
    ini.write_bytes(text)
    add_tile(info, 0, n * n, label_picture(NAME))  # image (0, n): position row n // 2, past the record's n // 2 rows
    return info


@pytest.mark.parametrize("record", [True, False], ids=["position-record", "no-record"])
def test_an_image_past_the_position_record_is_refused_and_fails_verify(cli, tmp_path, record):
    """The redactor kept such an image and its verifier failed the output (quarantined: the two
    disagreed).  Now the redactor refuses the slide with one line, and the verifier's finding
    names the reason."""
    info = _past_the_record(tmp_path, record)
    out = tmp_path / "out"
    code, report = _run(cli, [info.mrxs], out)
    slide = report["slides"][0]
    assert code == 1 and slide["status"] != "ok" and not list(out.glob("*.mrxs")), slide
    reason = slide.get("error") or ""
    assert "past the position record" in reason and "\n" not in reason and "DOE" not in reason, reason
    ok, detail = _hidden_checks(info.folder)["mrxs-unscanned"]
    assert ok is False and "past the position record" in detail and "\n" not in detail, detail
