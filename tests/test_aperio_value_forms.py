"""Numbers in Aperio's safe keys (red team, this stop): an MRN written as ``AppMag = 98765432`` and
a birth date as ``StripeWidth = 19790101`` were kept as numbers and the slide shared as verified.
Each safe number now has a form in the profile data (``aperio.json`` ``safe_value_forms``: at most
so many digits); a value beyond it is blanked and reported by name, and the verifier refuses an
output that holds one. Values real slides hold (CMU-1: AppMag 20, MPP 0.4990, offsets with six
decimals) stay."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tifffile

from wsianon.profiles import load

from .conftest import shared
from .fixtures.svs_gen import write_svs

MRN, DOB = "98765432", "19790101"


def _bytes(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_numbers_beyond_their_form_are_blanked_and_the_slide_shared(cli, tmp_path):
    (tmp_path / "in").mkdir()
    src = write_svs(tmp_path / "in" / "case.svs", levels=1, size=(512, 384), extra={"AppMag": MRN, "StripeWidth": DOB, "LineCameraSkew": "-0.000424"}).path
    out = tmp_path / "out"
    code, stdout, err = cli("run", src, "-o", out, "--no-review-sheet")
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    assert code == 0 and slide["status"] == "ok", (stdout + err, slide["verification"])
    blob = _bytes(out)
    assert MRN.encode() not in blob and DOB.encode() not in blob
    assert MRN not in stdout + err and DOB not in stdout + err
    blanked = {r["name"] for r in slide["removed"]}
    assert {"ImageDescription:AppMag", "ImageDescription:StripeWidth"} <= blanked
    (svs,) = out.glob("*.svs")
    desc = tifffile.TiffFile(svs).pages[0].description
    # the planted keys follow the fixture's own (AppMag = 20, StripeWidth = 1000): OpenSlide reads a
    # key given twice by its last value, and since stop 39 the output holds each key once, that
    # value, here blanked; the six-decimal skew is in form: kept
    assert "|AppMag = |" in desc and "|StripeWidth = |" in desc and "LineCameraSkew = -0.000424" in desc
    assert desc.count("AppMag") == 1 and desc.count("StripeWidth") == 1


def test_the_verifier_refuses_a_number_beyond_its_form(cli, tmp_path):
    (tmp_path / "in").mkdir()
    src = write_svs(tmp_path / "in" / "case.svs", levels=1, size=(512, 384))
    out = tmp_path / "out"
    code, stdout, err = cli("run", src.path, "-o", out, "--no-review-sheet")
    assert code == 0, stdout + err
    (svs,) = out.glob("*.svs")
    code, stdout, _ = cli("verify", svs, "--json")
    assert code == 0, stdout
    # another tool's output: the MRN put back as AppMag
    check = _refused_after(cli, svs, "AppMag = 20", f"AppMag = {MRN}")
    assert "outside their form" in check["detail"] and "AppMag" in check["detail"]
    # the key twice, the MRN first: OpenSlide shows only the last (20); the verifier reads both
    check = _refused_after(cli, svs, f"AppMag = {MRN}", f"AppMag = {MRN}|AppMag = 20")
    assert "AppMag" in check["detail"]
    # the same for a key that is not safe: digits first, the key again empty (no word to see)
    check = _refused_after(cli, svs, f"AppMag = {MRN}|AppMag = 20", f"AppMag = 20|Filename = {MRN}|Filename = ")
    assert "non-safe keys with values" in check["detail"] and "Filename" in check["detail"]


def _refused_after(cli, svs: Path, old: str, new: str) -> dict:
    """Rewrite ``old`` to ``new`` in the output's ImageDescription; ``wsianon verify`` must exit 1
    with ``aperio-profile`` failed and no MRN in what it prints: that check's entry."""
    with tifffile.TiffFile(svs, mode="r+b") as tf:
        tag = tf.pages[0].tags[270]
        assert old in tag.value
        tag.overwrite(tag.value.replace(old, new))
    code, stdout, _ = cli("verify", svs, "--json")
    assert code == 1, stdout
    assert MRN not in stdout
    (rep,) = json.loads(stdout)
    (check,) = [c for c in rep["checks"] if c["check"] == "aperio-profile"]
    assert not check["ok"], check
    return check


@pytest.mark.parametrize("value,ok", [("20", True), ("40", True), ("0.625", True), (MRN, False), ("20.12345", False)])
def test_appmag_form(value, ok):
    assert bool(re.fullmatch(load("aperio")["safe_value_forms"]["AppMag"], value)) is ok


def test_a_real_slide_keeps_its_numbers():
    """CMU-1-Small-Region (Aperio Image Library): every safe number it holds is in its form."""
    path = shared("aperio/CMU-1-Small-Region.svs")
    desc = tifffile.TiffFile(path).pages[0].description
    forms = load("aperio")["safe_value_forms"]
    items = dict((k.strip(), v.strip()) for k, _eq, v in (i.partition("=") for i in desc.split("|")[1:]))
    checked = {k: v for k, v in items.items() if k in forms}
    assert {"AppMag", "MPP", "StripeWidth", "LineCameraSkew", "Focus Offset", "Filtered"} <= set(checked)
    assert all(re.fullmatch(forms[k], v) for k, v in checked.items()), checked
